import TenantGateCore
import TenantGateHTTP
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
        var out = [UInt8]()
        out.reserveCapacity(64 + headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
        out.append(contentsOf: "Status: ".utf8)
        out.append(contentsOf: String(status).utf8)
        out.append(0x20)
        out.append(contentsOf: HTTPStatus.reason(status).utf8)
        out.append(contentsOf: [0x0D, 0x0A])
        for (name, value) in headers {
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: [0x3A, 0x20])
            // Header values we write never contain CR/LF; dropped defensively, byte by byte ("\r\n" is a
            // single Character in Swift, so a Character filter would let the pair through).
            for b in value.utf8 where b != 0x0D && b != 0x0A { out.append(b) }
            out.append(contentsOf: [0x0D, 0x0A])
        }
        out.append(contentsOf: [0x0D, 0x0A])
        return out
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
        // The front end buffers both writes (libfcgi copies into its record buffer) and sends them together.
        if !pending.isEmpty && !request.write(pending) { gone = true }
        if !gone && !tail.isEmpty && !request.write(tail) { gone = true }
        pending = []
        tail = []
    }

    var clientGone: Bool { gone || request.clientGone }
}

enum FastCGIAdapter {
    /// Builds the request from the front end's params (`Request.init(params:makeID:)`) and reads its body;
    /// `tooLarge` when the body is over `maxBody`.
    static func makeRequest(_ connection: any FrontEndConnection, maxBody: Int) -> (Request, tooLarge: Bool) {
        var request = Request(params: connection.params()) {
            (try? Crypto.randomBytes(16)).map(Crypto.hex) ?? String(Posix.wallMicros())
        }
        guard request.expectsBody else { return (request, false) }
        switch connection.readBody(limit: maxBody, expected: request.expectedBodyBytes) {
        case .body(let bytes):
            request.attach(body: bytes)
            return (request, false)
        case .tooLarge:
            return (request, true)
        }
    }
}
