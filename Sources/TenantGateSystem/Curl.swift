import CCurl

/// A transport failure reported by libcurl.
public struct CurlError: Error, CustomStringConvertible, Sendable {
    /// The CURLcode.
    public let code: Int32
    /// curl's text for it.
    public let message: String
    /// The transfer hit its time limit.
    public var isTimeout: Bool { code == Int32(CURLE_OPERATION_TIMEDOUT.rawValue) }
    /// The connection could not be made.
    public var isConnect: Bool {
        code == Int32(CURLE_COULDNT_CONNECT.rawValue) || code == Int32(CURLE_COULDNT_RESOLVE_HOST.rawValue)
    }
    /// The connection broke before an answer came (nothing received, send or receive failure): typically
    /// a kept-alive connection the upstream had closed. Worth one more try on a fresh connection.
    public var isBrokenConnection: Bool {
        code == Int32(CURLE_GOT_NOTHING.rawValue) || code == Int32(CURLE_SEND_ERROR.rawValue)
            || code == Int32(CURLE_RECV_ERROR.rawValue)
    }
    /// Our own callback stopped the transfer (the client went away).
    public var isAborted: Bool { code == Int32(CURLE_WRITE_ERROR.rawValue) }
    public var description: String { "curl error \(code): \(message)" }
}

/// An outgoing HTTP request.
public struct OutgoingRequest: Sendable {
    /// GET or POST.
    public var method: String
    /// Absolute URL.
    public var url: String
    /// Header lines, "Name: value".
    public var headers: [String]
    /// Request body (POST).
    public var body: [UInt8]
    /// Connect timeout in ms.
    public var connectTimeoutMs: Int
    /// Total timeout in ms.
    public var totalTimeoutMs: Int
    /// Time allowed until the response head arrives (checked at libcurl's progress ticks); nil: no limit.
    public var firstByteTimeoutMs: Int?

    /// Creates a request.
    public init(
        method: String, url: String, headers: [String], body: [UInt8], connectTimeoutMs: Int, totalTimeoutMs: Int
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeoutMs = connectTimeoutMs
        self.totalTimeoutMs = totalTimeoutMs
    }
}

/// What came back: status and headers (body went to the callback).
public struct ResponseHead: Sendable {
    /// HTTP status.
    public var status: Int
    /// The headers the gateway reads (`CurlClient.keptHeaders`), by lowercased name.
    public var headers: [String: String]
}

private final class TransferContext {
    var status = 0
    var headers: [String: String] = [:]
    let onData: (Int, [UInt8]) -> Bool
    /// CLOCK_MONOTONIC ms by which the response head must have arrived.
    var firstByteDeadline: Int64?
    var firstByteMissed = false

    init(onData: @escaping (Int, [UInt8]) -> Bool) { self.onData = onData }
}

private enum CurlCallbacks {
    static let write: tg_curl_write_cb = { ptr, size, nmemb, userdata in
        let total = size * nmemb
        guard let ptr, let userdata else { return 0 }
        // userdata is the TransferContext kept alive by perform() for the whole transfer.
        let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
        let bytes = Array(UnsafeRawBufferPointer(start: ptr, count: total))
        return context.onData(context.status, bytes) ? total : 0
    }

    static let header: tg_curl_write_cb = { ptr, size, nmemb, userdata in
        let total = size * nmemb
        guard let ptr, let userdata else { return total }
        // Same context as above; the header line is copied into a String at once.
        let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
        context.firstByteDeadline = nil
        // Parsed byte by byte (the buffer is curl's, valid for `total` bytes during this call).
        let line = UnsafeRawBufferPointer(start: ptr, count: total)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        if line.starts(with: "HTTP/".utf8) {
            let fields = line.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: true)
            context.status = fields.count > 1 ? Int(String(decoding: fields[1], as: UTF8.self)) ?? 0 : 0
            context.headers.removeAll(keepingCapacity: true)
        } else if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            // Only the headers the gateway reads are kept (compared in place, case-insensitively: the
            // others cost no copy).
            let raw = line[..<colon]
            guard
                let name = CurlClient.keptHeaders.first(where: { kept in
                    kept.utf8.count == raw.count
                        && zip(kept.utf8, raw).allSatisfy { k, b in k == (b >= 0x41 && b <= 0x5A ? b + 32 : b) }
                })
            else { return total }
            var value = line[(colon + 1)...]
            while let first = value.first, isSpace(first) { value = value.dropFirst() }
            while let last = value.last, isSpace(last) { value = value.dropLast() }
            context.headers[name] = String(decoding: value, as: UTF8.self)
        }
        return total
    }

    /// Aborts the transfer when no response head arrived by the first-byte deadline.
    static let progress: tg_curl_xferinfo_cb = { userdata, _, _, _, _ in
        guard let userdata else { return 0 }
        let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
        guard let deadline = context.firstByteDeadline, Posix.monotonicMs() > deadline else { return 0 }
        context.firstByteMissed = true
        return 1
    }
}

/// Process-wide libcurl set-up.
public enum CurlGlobal {
    /// Call once before any thread uses curl.
    public static func initialize() {
        curl_global_init(Int(CURL_GLOBAL_ALL))
    }
}

/// One reusable easy handle (keeps upstream connections alive); use from one thread only.
public final class CurlClient {
    /// The response headers kept in `ResponseHead.headers` (lowercase): the only ones the gateway reads.
    public static let keptHeaders = ["retry-after", "content-type"]

    private let handle: UnsafeMutableRawPointer?

    /// Creates the handle, with the options every transfer shares (set once: `curl_easy_reset` per call
    /// would free and copy them again each time).
    public init() {
        handle = curl_easy_init()
        guard let handle else { return }
        _ = tg_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = tg_curl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1)
        _ = tg_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        // Offer every encoding libcurl decodes (gzip, deflate, br, zstd as built) and get plain bytes back:
        // smaller transfers, and an upstream or proxy that compresses unasked still reads.
        _ = tg_curl_setopt_str(handle, CURLOPT_ACCEPT_ENCODING, "")
        _ = tg_curl_setopt_write(handle, CurlCallbacks.write)
        _ = tg_curl_setopt_header(handle, CurlCallbacks.header)
        _ = tg_curl_setopt_xferinfo(handle, CurlCallbacks.progress)
    }

    deinit { curl_easy_cleanup(handle) }

    /// Performs `request`, streaming the body to `onData(status, bytes)`; return false there to abort.
    public func perform(_ request: OutgoingRequest, onData: @escaping (Int, [UInt8]) -> Bool) -> Result<
        ResponseHead, CurlError
    > {
        guard let handle else { return .failure(CurlError(code: -1, message: "no curl handle")) }
        let context = TransferContext(onData: onData)
        let unmanaged = Unmanaged.passRetained(context)
        var headers: UnsafeMutablePointer<curl_slist>?
        for line in request.headers { headers = curl_slist_append(headers, line) }
        defer {
            // The handle outlives this transfer: it must not keep pointers to the list or the context.
            _ = tg_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)
            _ = tg_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, nil)
            _ = tg_curl_setopt_ptr(handle, CURLOPT_HEADERDATA, nil)
            _ = tg_curl_setopt_ptr(handle, CURLOPT_XFERINFODATA, nil)
            curl_slist_free_all(headers)
            unmanaged.release()
        }

        _ = tg_curl_setopt_str(handle, CURLOPT_URL, request.url)
        _ = tg_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMs)
        _ = tg_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, request.totalTimeoutMs)
        _ = tg_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        _ = tg_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, unmanaged.toOpaque())
        _ = tg_curl_setopt_ptr(handle, CURLOPT_HEADERDATA, unmanaged.toOpaque())
        _ = tg_curl_setopt_ptr(handle, CURLOPT_XFERINFODATA, unmanaged.toOpaque())
        if let firstByte = request.firstByteTimeoutMs, firstByte < request.totalTimeoutMs {
            context.firstByteDeadline = Posix.monotonicMs() + Int64(firstByte)
            _ = tg_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
        } else {
            _ = tg_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 1)
        }
        if request.method == "POST" {
            _ = tg_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, request.body.count)
            // COPYPOSTFIELDS copies the bytes: the array need not outlive this call.
            _ = request.body.withUnsafeBytes { buf in
                tg_curl_setopt_ptr(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buf.baseAddress))
            }
        } else {
            // Back to a plain GET (the handle's previous transfer may have been a POST).
            _ = tg_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)
        }
        let rc = curl_easy_perform(handle)
        if context.firstByteMissed {
            return .failure(
                CurlError(code: Int32(CURLE_OPERATION_TIMEDOUT.rawValue), message: "no response head in time"))
        }
        guard rc == CURLE_OK else {
            let message = String(cString: curl_easy_strerror(rc))
            return .failure(CurlError(code: Int32(rc.rawValue), message: message))
        }
        return .success(ResponseHead(status: context.status, headers: context.headers))
    }
}
