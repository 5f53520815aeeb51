import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// An upstream failure worth retrying (connect error, timeout, broken connection, 429, 5xx), with the
/// upstream's Retry-After.
struct RetryableUpstream: Error {
    let error: GatewayError
    let retryAfterMs: Int?
}

/// Sends one HTTP exchange (libcurl in production).
public protocol UpstreamTransport: AnyObject {
    /// Performs `request`, handing each piece of the body to `onData` with the status (false stops it).
    func perform(_ request: OutgoingRequest, onData: @escaping (Int, [UInt8]) -> Bool) -> Result<
        ResponseHead, CurlError
    >
}

extension CurlClient: UpstreamTransport {}

/// Upstream calls for one request: builds the outgoing request from a provider's (key, request id, trace),
/// collects whole answers or hands a stream's bytes over, and maps every failure to the client's error,
/// retryable or final.
struct UpstreamClient {
    let transport: any UpstreamTransport
    let principal: Principal
    let requestID: String
    let trace: TraceContext
    /// This thread's id source: each upstream call is a span of its own.
    let ids: IDGenerator

    /// The outgoing request for a provider's `request` to `backend`; a provider header replaces the
    /// transport's of the same name.
    func outgoing(_ request: ProviderRequest, backend: BackendConfig, stream: Bool) throws -> OutgoingRequest {
        var lines = try UpstreamHeaders.upstreamHeaders(
            backend: backend, principal: principal, accept: stream ? "text/event-stream" : "application/json",
            requestID: requestID, trace: trace, spanID: ids.hex(bytes: 8))
        for (name, value) in request.headers {
            let prefix = name.lowercased() + ":"
            lines = lines.filter { !$0.lowercased().hasPrefix(prefix) } + ["\(name): \(value)"]
        }
        var outgoing = OutgoingRequest(
            method: "POST", url: request.url, headers: lines, body: request.body.bytes,
            connectTimeoutMs: backend.connectTimeoutMs, totalTimeoutMs: backend.timeoutMs)
        outgoing.firstByteTimeoutMs = backend.firstByteTimeoutMs
        return outgoing
    }

    /// One whole exchange: the 2xx body (at most `limit` bytes), else the failure, retryable or final.
    func fetch(_ outgoing: OutgoingRequest, limit: Int) throws -> [UInt8] {
        var collected = [UInt8]()
        let result = transport.perform(outgoing) { _, bytes in
            collected.append(contentsOf: bytes)
            return collected.count <= limit
        }
        let head = try UpstreamClient.check(result, bodyTooLarge: collected.count > limit)
        guard (200..<300).contains(head.status) else {
            throw UpstreamClient.failure(head.status, collected, retryAfter: head.headers["retry-after"])
        }
        return collected
    }

    /// `fetch`, parsed: the 2xx body must be a JSON object.
    func fetchJSON(_ outgoing: OutgoingRequest, limit: Int) throws -> (JSONValue, [UInt8]) {
        let raw = try fetch(outgoing, limit: limit)
        guard let json = try? JSONParser.parse(raw), case .object = json else {
            throw GatewayError.upstreamError("the upstream returned a body that is not a JSON object")
        }
        return (json, raw)
    }

    /// A client header value fit to forward: printable ASCII, at most 512 bytes.
    static func headerValue(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 512, Bounds.isPrintableASCII(value) else { return nil }
        return value
    }

    /// Maps a transport failure to the client's error.
    static func check(_ result: Result<ResponseHead, CurlError>, bodyTooLarge: Bool) throws -> ResponseHead {
        switch result {
        case .success(let head): return head
        case .failure(let error):
            if bodyTooLarge { throw GatewayError.upstreamError("the upstream response is too large") }
            if error.isTimeout { throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil) }
            if error.isConnect {
                throw RetryableUpstream(error: .upstreamError("could not connect to the upstream"), retryAfterMs: nil)
            }
            if error.isBrokenConnection {
                throw RetryableUpstream(
                    error: .upstreamError("the upstream connection broke before it answered"), retryAfterMs: nil)
            }
            throw GatewayError.upstreamError("transport failure (curl \(error.code))")
        }
    }

    /// An upstream non-2xx answer: 429 and 5xx are retryable (with the upstream's Retry-After), the rest
    /// final; client errors pass through.
    static func failure(_ status: Int, _ body: [UInt8], retryAfter: String?) -> any Error {
        let error = upstreamFailure(status, body)
        guard status == 429 || status >= 500 else { return error }
        return RetryableUpstream(error: error, retryAfterMs: retryAfterMs(retryAfter))
    }

    /// An upstream's `Retry-After` (delay-seconds) as milliseconds in `0…Bounds.maxRetryAfterSeconds` s;
    /// nil when absent or not a plain number (an HTTP date is not honoured). Never traps on any value.
    static func retryAfterMs(_ header: String?) -> Int? {
        guard let text = header?.trimmingASCII(" \t"), !text.isEmpty, text.utf8.count <= 32,
            text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        else { return nil }
        return min(Int(text) ?? Bounds.maxRetryAfterSeconds, Bounds.maxRetryAfterSeconds) * 1000
    }

    static func upstreamFailure(_ status: Int, _ body: [UInt8]) -> GatewayError {
        if [400, 404, 422].contains(status), let json = try? JSONParser.parse(body), let message = rejection(json) {
            return .invalidRequest("Upstream rejected the request: \(message.prefix(500))")
        }
        return .upstreamError("the upstream answered HTTP \(status)")
    }

    /// The message of an upstream's refusal of the request: OpenAI's and Anthropic's `error.message`,
    /// vLLM's top-level `message`, FastAPI's `detail` (a string, or a list of `{msg}`). Nil when the body
    /// says no such thing (an HTML 404 is a wrong route, the operator's problem: 502).
    static func rejection(_ json: JSONValue) -> String? {
        if let message = json["error"]?["message"]?.stringValue ?? json["message"]?.stringValue { return message }
        if let detail = json["detail"]?.stringValue { return detail }
        let messages = (json["detail"]?.arrayValue ?? []).compactMap { $0["msg"]?.stringValue }
        return messages.isEmpty ? nil : messages.joined(separator: "; ")
    }
}
