import CFastCGI

#if canImport(Glibc)
    import Glibc
#endif

/// Process-wide libfcgi set-up and the listening socket.
public enum FastCGI {
    /// Initialises libfcgi once per process (before any thread accepts). On a TCP socket libfcgi accepts
    /// connections only from the addresses in `FCGI_WEB_SERVER_ADDRS`; when that is unset it trusts every
    /// peer, which could then set `TG_TENANT`, `TG_ROUTE` and `REMOTE_ADDR` at will, so it defaults here to
    /// loopback (`serve --allow-from` widens it). Unix sockets are guarded by their file mode instead.
    public static func initialize() {
        if Posix.env("FCGI_WEB_SERVER_ADDRS") == nil { Posix.setEnv("FCGI_WEB_SERVER_ADDRS", "127.0.0.1") }
        _ = FCGX_Init()
    }

    /// True when the process was started as plain CGI (fd 0 is not a listening socket).
    public static var isCGI: Bool { FCGX_IsCGI() != 0 }

    /// Opens a listening socket: "unix:/path", "/path" or "host:port".
    public static func openSocket(_ listen: String, backlog: Int32 = 1024) -> Int32 {
        var spec = listen
        if spec.hasPrefix("unix:") {
            spec = String(spec.dropFirst(5))
            unlink(spec)
        }
        let fd = FCGX_OpenSocket(spec, backlog)
        if fd >= 0 && listen.hasPrefix("unix:") {
            chmod(spec, 0o660)
        }
        return fd
    }

    /// Makes a blocked accept on `fd` return after `ms` (-11, EAGAIN), so that accepting threads notice a
    /// shutdown without being signalled. Shared by every process on the socket; false if `fd` is no socket.
    @discardableResult
    public static func setAcceptTimeout(_ fd: Int32, ms: Int) -> Bool {
        tg_fcgx_accept_timeout(fd, Int32(clamping: ms)) == 0
    }

    /// Tells libfcgi that the process is shutting down: accepts interrupted by a signal stop retrying.
    public static func markShutdownPending() {
        FCGX_ShutdownPending()
    }
}

/// Result of reading a request body.
public enum BodyRead {
    /// The whole body.
    case body([UInt8])
    /// The body is larger than the limit.
    case tooLarge
}

/// One re-entrant libfcgi request slot, owned and reused by one thread.
public final class FastCGIRequest {
    private let raw: UnsafeMutablePointer<FCGX_Request>
    /// The last write or flush failed: the client has gone.
    public private(set) var clientGone = false

    /// Creates a slot accepting on `listenFD` (0 under the FastCGI convention).
    public init?(listenFD: Int32) {
        guard let raw = tg_fcgx_request_new() else { return nil }
        self.raw = raw
        guard FCGX_InitRequest(raw, listenFD, 0) == 0 else {
            tg_fcgx_request_free(raw)
            return nil
        }
    }

    deinit {
        FCGX_Free(raw, 1)
        tg_fcgx_request_free(raw)
    }

    /// Waits for the next request; returns 0 or a negative errno.
    public func accept() -> Int32 {
        clientGone = false
        let rc = FCGX_Accept_r(raw)
        if rc == 0 { tg_fcgx_clear_timeout(raw) }
        return rc
    }

    /// Completes the current request (flushes, and closes the connection unless the web server keeps it).
    public func finish() {
        FCGX_Finish_r(raw)
    }

    /// Whether the connection was kept: the next `accept` waits on it for the web server's next request
    /// instead of accepting a new connection.
    public var isKept: Bool { tg_fcgx_kept(raw) != 0 }

    /// All FastCGI params of the current request.
    public func params() -> [String: String] {
        var result: [String: String] = [:]
        result.reserveCapacity(48)
        guard var envp = tg_fcgx_envp(raw) else { return result }
        // envp is a NULL-terminated array of NUL-terminated "NAME=value" strings owned by libfcgi, valid
        // until Finish; each is read within its own length (strlen), split at its first '='.
        while let entry = envp.pointee {
            entry.withMemoryRebound(to: UInt8.self, capacity: strlen(entry)) { bytes in
                let all = UnsafeBufferPointer(start: bytes, count: strlen(entry))
                if let eq = all.firstIndex(of: UInt8(ascii: "=")) {
                    let name = String(decoding: UnsafeBufferPointer(rebasing: all[..<eq]), as: UTF8.self)
                    result[name] = String(decoding: UnsafeBufferPointer(rebasing: all[(eq + 1)...]), as: UTF8.self)
                }
            }
            envp += 1
        }
        return result
    }

    /// Reads the body, at most `limit` bytes.
    public func readBody(limit: Int, expected: Int?) -> BodyRead {
        if let expected, expected > limit { return .tooLarge }
        guard let input = tg_fcgx_in(raw) else { return .body([]) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(min(expected ?? 4096, limit) + 1)
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            // The chunk buffer is alive and has room for the requested count.
            let n = chunk.withUnsafeMutableBufferPointer { buf in
                buf.baseAddress.map { base in
                    base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                        FCGX_GetStr($0, Int32(buf.count), input)
                    }
                } ?? 0
            }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<Int(n)])
            if bytes.count > limit { return .tooLarge }
        }
        return .body(bytes)
    }

    /// Writes bytes to the client; false once the client has gone.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        guard !clientGone, !bytes.isEmpty, let out = tg_fcgx_out(raw) else { return !clientGone }
        // The array is alive for the call; libfcgi copies into its own buffer.
        let n = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                    FCGX_PutStr($0, Int32(buf.count), out)
                }
            } ?? 0
        }
        if n < 0 { clientGone = true }
        return !clientGone
    }

    /// Flushes buffered output; false if the client has gone (EPIPE and friends).
    @discardableResult
    public func flush() -> Bool {
        guard !clientGone, let out = tg_fcgx_out(raw) else { return !clientGone }
        if FCGX_FFlush(out) < 0 || FCGX_GetError(out) != 0 { clientGone = true }
        return !clientGone
    }
}
