import TenantGateCore

/// Which family of endpoints a request may reach, as the front end's location decided it (nginx sets
/// `TG_ROUTE` per location), never the path: `/tenant/<id>/metrics` is a tenant API path, so it cannot
/// reach the operator's `/metrics`.
public enum Route: String, Sendable {
    /// `/tenant/<id>/v1/…` and bare `/v1/…`: only the tenant API.
    case api
    case healthz, readyz, metrics, admin

    /// The route for a `TG_ROUTE` value; a front end that sets none (or an unknown one) reaches only the
    /// tenant API: operator endpoints answer only where the front end marked them.
    public init(param: String?) { self = param.flatMap(Route.init(rawValue:)) ?? .api }
}

/// An HTTP request as the handlers see it (FastCGI is invisible past the adapter).
public struct Request: Sendable {
    public var method: String
    /// The endpoint family the front end's location allows.
    public var route: Route
    /// Path below the tenant prefix, e.g. `/v1/chat/completions`.
    public var path: String
    public var query: String
    /// Header values by lowercased name.
    public var headers: [String: String]
    public var body: [UInt8]
    /// `<id>` from `/tenant/<id>/`, passed by nginx.
    public var pathTenant: String?
    /// nginx's `$request_id`.
    public var requestID: String
    public var remoteAddr: String
    /// Where the front end mounts the gateway in its URL space (`TG_PREFIX`, e.g. `/llm` for the nginx
    /// snippet inside another site); empty at the root. Only pages that link to themselves use it.
    public var prefix = ""
    /// The body ended before the `Content-Length` the front end announced (a front end that cut it).
    public var bodyIncomplete = false

    /// Creates a request.
    public init(
        method: String, path: String, query: String = "", headers: [String: String] = [:], body: [UInt8] = [],
        pathTenant: String? = nil, requestID: String = "", remoteAddr: String = "", route: Route = .api
    ) {
        self.method = method
        self.route = route
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.pathTenant = pathTenant
        self.requestID = requestID
        self.remoteAddr = remoteAddr
    }

    /// The request a front end's params describe (FastCGI params, CGI environment), without its body;
    /// `makeID` gives a request id when the front end sent none.
    ///
    /// The front end's routing params (`TG_ROUTE`, `TG_TENANT`, `TG_PATH`, `TG_PREFIX`) are set by its
    /// configuration, never by a client. Apache sets them with `RewriteRule … [E=…]`; in an `.htaccess` the
    /// rewrite is an internal redirect and Apache renames them `REDIRECT_TG_…`, which count the same.
    /// Without a request id from the front end (nginx's `$request_id`; Apache's `UNIQUE_ID`) one is made.
    public init(params: [String: String], makeID: () -> String) {
        var headers: [String: String] = [:]
        headers.reserveCapacity(16)
        for (key, value) in params where key.hasPrefix("HTTP_") { headers[Request.headerName(key)] = value }
        if let type = params["CONTENT_TYPE"] { headers["content-type"] = type }
        func routing(_ name: String) -> String? { params[name] ?? params["REDIRECT_" + name] }
        let path = routing("TG_PATH") ?? params["DOCUMENT_URI"] ?? params["SCRIPT_NAME"] ?? "/"
        self.init(
            method: params["REQUEST_METHOD"] ?? "GET", path: path.isEmpty ? "/" : path,
            query: params["QUERY_STRING"] ?? "", headers: headers,
            pathTenant: routing("TG_TENANT").flatMap { $0.isEmpty ? nil : $0 },
            requestID: params["REQUEST_ID"] ?? params["UNIQUE_ID"] ?? makeID(), remoteAddr: params["REMOTE_ADDR"] ?? "",
            route: Route(param: routing("TG_ROUTE")))
        if let prefix = routing("TG_PREFIX"), Request.isPrefix(prefix) { self.prefix = prefix }
        expectedBodyBytes = params["CONTENT_LENGTH"].flatMap { Int($0) }
    }

    /// The body length the front end announced (`CONTENT_LENGTH`), if it did.
    public private(set) var expectedBodyBytes: Int?

    /// Whether a body is to be read: not for GET, HEAD or an announced length of 0.
    public var expectsBody: Bool { method != "GET" && method != "HEAD" && expectedBodyBytes != 0 }

    /// Sets the body read from the front end; shorter than announced marks it incomplete.
    public mutating func attach(body bytes: [UInt8]) {
        body = bytes
        bodyIncomplete = expectedBodyBytes.map { bytes.count < $0 } ?? false
    }

    /// `HTTP_X_TENANT_ID` → `x-tenant-id` (ASCII, byte by byte).
    public static func headerName(_ param: String) -> String {
        String(
            decoding: param.utf8.dropFirst(5).lazy.map { b in
                b == UInt8(ascii: "_") ? UInt8(ascii: "-") : (b >= 0x41 && b <= 0x5A ? b + 32 : b)
            }, as: UTF8.self)
    }

    /// Whether `prefix` is a mount point a front end may set: `/` and up to 64 letters, digits, `/`, `.`,
    /// `_` or `-`, no `..`, no trailing `/`.
    public static func isPrefix(_ prefix: String) -> Bool {
        let bytes = Array(prefix.utf8)
        guard bytes.count >= 2, bytes.count <= 65, bytes.first == 0x2F, bytes.last != 0x2F,
            !prefix.contains("..") && !prefix.contains("//")
        else { return false }
        return bytes.allSatisfy {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                || [0x2F, 0x2E, 0x5F, 0x2D].contains($0)
        }
    }

    /// The first value of a query parameter (percent-decoding `%XX` and `+`); nil when absent or not UTF-8.
    public func queryValue(_ name: String) -> String? { URLEncoding.value(name, inQuery: query) }

    /// The credential from `Authorization: Bearer …` or `x-api-key`.
    public var credential: String? {
        if let auth = headers["authorization"] {
            // "Bearer" (any case), one space, then the token (trimmed of blanks).
            let bytes = auth.utf8
            guard let space = bytes.firstIndex(of: 0x20),
                bytes[..<space].elementsEqual("bearer".utf8, by: { b, l in (b >= 0x41 && b <= 0x5A ? b + 32 : b) == l })
            else { return "" }
            return String(auth[bytes.index(after: space)...]).trimmingASCII(" \t")
        }
        return headers["x-api-key"]?.trimmingASCII(" \t")
    }
}

/// Where a response goes: head once, then body bytes; flush reports whether the client is still there.
public protocol ResponseSink: AnyObject {
    /// Writes the status line and headers (once).
    func head(status: Int, headers: [(String, String)])
    /// Buffers body bytes; false if the client has gone.
    @discardableResult func body(_ bytes: [UInt8]) -> Bool
    /// Sends what is buffered; false if the client has gone.
    @discardableResult func flush() -> Bool
    /// Whether the head was written.
    var headWritten: Bool { get }
    /// The response's last bytes: held back until `release()`, so that a client never sees an answer end
    /// before its settlement is written.
    func last(_ bytes: [UInt8])
    /// The settlement failed: instead of what is held, a whole `status` response with `body` if nothing
    /// has been sent yet, else `tail` after what was sent (a stream's error event).
    func replaceEnd(status: Int, body: [UInt8], tail: [UInt8])
    /// Sends everything held back (called once, when the request is done).
    func release()
}

extension ResponseSink {
    /// Sinks that hold nothing back write the last bytes at once.
    public func last(_ bytes: [UInt8]) { body(bytes) }
    public func replaceEnd(status: Int, body: [UInt8], tail: [UInt8]) {}
    public func release() {}

    /// A complete JSON response.
    public func json(_ status: Int, _ value: JSONValue, headers: [(String, String)] = []) {
        send(status, value.bytes, headers: headers)
    }

    /// A complete response with a JSON body already serialised.
    public func send(_ status: Int, _ bytes: [UInt8], headers: [(String, String)] = []) {
        head(
            status: status,
            headers: [("Content-Type", "application/json"), ("Content-Length", String(bytes.count))] + headers)
        last(bytes)
    }

    /// An OpenAI-shaped error.
    public func error(_ error: GatewayError, headers: [(String, String)] = []) {
        json(error.status, error.body, headers: headers)
    }
}

/// Reason phrases for the statuses we send.
public enum HTTPStatus {
    /// The reason phrase of `status`.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 413: return "Payload Too Large"
        case 415: return "Unsupported Media Type"
        case 422: return "Unprocessable Entity"
        case 429: return "Too Many Requests"
        case 499: return "Client Closed Request"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Status"
        }
    }
}
