import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// What a front end hands a worker for one request: FastCGI (nginx, Apache mod_fcgid, spawn-fcgi,
/// systemd) or classic CGI (one request per process).
protocol FrontEndConnection: AnyObject {
    func params() -> [String: String]
    func readBody(limit: Int, expected: Int?) -> BodyRead
    @discardableResult func write(_ bytes: [UInt8]) -> Bool
    @discardableResult func flush() -> Bool
    var clientGone: Bool { get }
}

extension FastCGIRequest: FrontEndConnection {}
extension CGIConnection: FrontEndConnection {}

/// Writes a response in the CGI form FastCGI also uses (`Status:` and headers, a blank line, the body).
final class FastCGISink: ResponseSink {
    private let request: any FrontEndConnection
    private(set) var headWritten = false
    private(set) var status = 0
    /// Written but not yet handed to the front end (sent at the next flush or at `release`).
    private var pending: [UInt8] = []
    /// The answer's last bytes, held until `release`.
    private var tail: [UInt8] = []
    /// Whether anything has reached the front end.
    private var sent = false
    private var gone = false

    init(_ request: any FrontEndConnection) { self.request = request }

    func head(status: Int, headers: [(String, String)]) {
        guard !headWritten else { return }
        headWritten = true
        self.status = status
        pending = FastCGISink.headBytes(status: status, headers: headers)
    }

    private static func headBytes(status: Int, headers: [(String, String)]) -> [UInt8] {
        var text = "Status: \(status) \(HTTPStatus.reason(status))\r\n"
        for (name, value) in headers {
            // Header values we write never contain CR/LF; strip them defensively, byte by byte ("\r\n" is a
            // single Character in Swift, so a Character filter would let the pair through).
            let clean = String(decoding: value.utf8.filter { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
            text += "\(name): \(clean)\r\n"
        }
        text += "\r\n"
        return Array(text.utf8)
    }

    func body(_ bytes: [UInt8]) -> Bool {
        pending += bytes
        return !clientGone
    }

    func flush() -> Bool {
        if !pending.isEmpty {
            sent = true
            if !request.write(pending) { gone = true }
            pending.removeAll(keepingCapacity: true)
        }
        if !request.flush() { gone = true }
        return !gone
    }

    func last(_ bytes: [UInt8]) { tail += bytes }

    func replaceEnd(status: Int, body: [UInt8], tail: [UInt8]) {
        if sent {
            self.tail = tail
        } else {
            pending = FastCGISink.headBytes(
                status: status,
                headers: [("Content-Type", "application/json"), ("Content-Length", String(body.count))])
            self.status = status
            self.tail = body
        }
    }

    func release() {
        let rest = pending + tail
        pending = []
        tail = []
        if !rest.isEmpty && !request.write(rest) { gone = true }
    }

    var clientGone: Bool { gone || request.clientGone }
}

enum FastCGIAdapter {
    /// Builds the request; a too-large body is reported as nil body.
    ///
    /// The front end's routing params (`TG_ROUTE`, `TG_TENANT`, `TG_PATH`) are set by its configuration,
    /// never by a client. Apache sets them with `RewriteRule … [E=…]`; in an `.htaccess` the rewrite is an
    /// internal redirect and Apache renames them `REDIRECT_TG_…`, which count the same. Without a
    /// request id from the front end (nginx's `$request_id`; Apache's `UNIQUE_ID`) one is made.
    static func makeRequest(_ connection: any FrontEndConnection, maxBody: Int) -> (Request, tooLarge: Bool) {
        let params = connection.params()
        var headers: [String: String] = [:]
        headers.reserveCapacity(16)
        for (key, value) in params where key.hasPrefix("HTTP_") { headers[headerName(key)] = value }
        if let type = params["CONTENT_TYPE"] { headers["content-type"] = type }
        func routing(_ name: String) -> String? { params[name] ?? params["REDIRECT_" + name] }
        let path = routing("TG_PATH") ?? params["DOCUMENT_URI"] ?? params["SCRIPT_NAME"] ?? "/"
        let tenant = routing("TG_TENANT").flatMap { $0.isEmpty ? nil : $0 }
        let requestID =
            params["REQUEST_ID"] ?? params["UNIQUE_ID"]
            ?? ((try? Crypto.randomBytes(16)).map(Crypto.hex) ?? String(Posix.wallMicros()))
        var request = Request(
            method: params["REQUEST_METHOD"] ?? "GET", path: path.isEmpty ? "/" : path,
            query: params["QUERY_STRING"] ?? "", headers: headers, pathTenant: tenant, requestID: requestID,
            remoteAddr: params["REMOTE_ADDR"] ?? "", route: Route(param: routing("TG_ROUTE")))
        if let prefix = routing("TG_PREFIX"), Request.isPrefix(prefix) { request.prefix = prefix }
        let expected = params["CONTENT_LENGTH"].flatMap { Int($0) }
        if request.method == "GET" || request.method == "HEAD" || expected == 0 {
            return (request, false)
        }
        switch connection.readBody(limit: maxBody, expected: expected) {
        case .body(let bytes):
            request.body = bytes
            request.bodyIncomplete = expected.map { bytes.count < $0 } ?? false
            return (request, false)
        case .tooLarge:
            return (request, true)
        }
    }

    /// `HTTP_X_TENANT_ID` → `x-tenant-id` (ASCII, byte by byte).
    static func headerName(_ param: String) -> String {
        String(
            decoding: param.utf8.dropFirst(5).map { b in
                b == UInt8(ascii: "_") ? UInt8(ascii: "-") : (b >= 0x41 && b <= 0x5A ? b + 32 : b)
            }, as: UTF8.self)
    }
}
