import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Turns a FastCGI request into a `Request` and a `ResponseSink`; always writes `Status:` and ends the request.
final class FastCGISink: ResponseSink {
    private let request: FastCGIRequest
    private(set) var headWritten = false
    private(set) var status = 0

    init(_ request: FastCGIRequest) { self.request = request }

    func head(status: Int, headers: [(String, String)]) {
        guard !headWritten else { return }
        headWritten = true
        self.status = status
        var text = "Status: \(status) \(HTTPStatus.reason(status))\r\n"
        for (name, value) in headers {
            // Header values we write never contain CR/LF; strip them defensively.
            let clean = value.filter { $0 != "\r" && $0 != "\n" }
            text += "\(name): \(clean)\r\n"
        }
        text += "\r\n"
        request.write(Array(text.utf8))
    }

    func body(_ bytes: [UInt8]) -> Bool { request.write(bytes) }

    func flush() -> Bool { request.flush() }

    var clientGone: Bool { request.clientGone }
}

enum FastCGIAdapter {
    /// Builds the request; a too-large body is reported as nil body.
    static func makeRequest(_ fcgi: FastCGIRequest, maxBody: Int) -> (Request, tooLarge: Bool) {
        let params = fcgi.params()
        var headers: [String: String] = [:]
        headers.reserveCapacity(16)
        for (key, value) in params where key.hasPrefix("HTTP_") { headers[headerName(key)] = value }
        if let type = params["CONTENT_TYPE"] { headers["content-type"] = type }
        let path = params["TG_PATH"] ?? params["DOCUMENT_URI"] ?? params["SCRIPT_NAME"] ?? "/"
        let tenant = params["TG_TENANT"].flatMap { $0.isEmpty ? nil : $0 }
        var request = Request(
            method: params["REQUEST_METHOD"] ?? "GET", path: path, query: params["QUERY_STRING"] ?? "",
            headers: headers, pathTenant: tenant, requestID: params["REQUEST_ID"] ?? "",
            remoteAddr: params["REMOTE_ADDR"] ?? "", route: Route(param: params["TG_ROUTE"]))
        let expected = params["CONTENT_LENGTH"].flatMap { Int($0) }
        if request.method == "GET" || request.method == "HEAD" || expected == 0 {
            return (request, false)
        }
        switch fcgi.readBody(limit: maxBody, expected: expected) {
        case .body(let bytes):
            request.body = bytes
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
