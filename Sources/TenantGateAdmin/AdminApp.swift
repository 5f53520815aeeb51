import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// The server-rendered admin page under `/admin/`: password login, sessions in SQLite, CSRF tokens and
/// an Origin check on every state change, escaped output, strict security headers.
public struct AdminApp: AdminResponder {
    /// The database file (for the master key that seals upstream keys).
    let dbPath: String
    /// A session ends after this long without a request…
    static let idleMs: Int64 = 30 * 60_000
    /// …and this long after login, whatever happens.
    static let absoluteMs: Int64 = 12 * 3_600_000
    /// Failed logins allowed per user, and per address, within `throttleWindowMs`.
    static let userFailures = 5
    static let addressFailures = 20
    static let throttleWindowMs: Int64 = 15 * 60_000
    static let cookie = "tg_admin"

    /// The admin page's own connections (2, opened on first use): its work (a login's 600k-round PBKDF2, a
    /// page of executions) never holds one that the API's requests need.
    let pool: ConnectionPool
    /// Password checks at once and per second in this worker.
    let logins = LoginGate()

    /// An app over the database at `dbPath`.
    public init(dbPath: String) throws {
        self.dbPath = dbPath
        pool = try ConnectionPool(path: dbPath, count: 2, cacheKiB: 512, lazily: true)
    }

    public func respond(to request: Request, sink: any ResponseSink, config: GatewayConfig) throws -> AdminAnswer {
        try pool.with { respond(to: request, sink: sink, db: $0, config: config) }
    }

    func respond(to request: Request, sink: any ResponseSink, db: any SQLConnection, config: GatewayConfig)
        -> AdminAnswer
    {
        var context = AdminContext(request: request, db: db, config: config, dbPath: dbPath, logins: logins)
        var reply: AdminReply
        var answer = AdminAnswer(status: 0)
        do {
            reply = try route(&context)
        } catch let problem as AdminProblem {
            reply = problem.reply(context)
        } catch let error as any StorageFailure where error.isStorageFailure {
            // Busy past the timeout, full, an I/O error: the transaction rolled back, so nothing changed.
            reply = AdminReply.page(
                503,
                Layout.page(
                    title: "Try again", session: context.session,
                    body: """
                        <p class="error">The database cannot take this now (\(error.reason)). Nothing was \
                        changed; try again in a moment.</p>
                        """))
            reply.headers = [("Retry-After", "1")]
            answer.errorCode = "service_unavailable"
            answer.errorDetail = "storage: \(error.reason)"
        } catch {
            reply = AdminReply.page(
                500,
                Layout.page(title: "Error", session: context.session, body: "<p class=\"error\">Internal error.</p>"))
            answer.errorCode = "internal_error"
            answer.errorDetail = ErrorDetail.of(error)
        }
        answer.status = reply.status
        var headers: [(String, String)] = [
            (
                "Content-Security-Policy",
                "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "same-origin"), ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
        ]
        // Mounted under a prefix (the nginx snippet in another site): links, forms, redirects and the
        // session cookie's path move under it.
        let prefix = request.prefix
        func mounted(_ text: String) -> String {
            prefix.isEmpty
                ? text
                : text.replacingAll("\"/admin", with: "\"\(prefix)/admin").replacingAll(
                    "\"/static/", with: "\"\(prefix)/static/")
        }
        headers += reply.headers.map { name, value in
            (
                name,
                prefix.isEmpty || name != "Set-Cookie"
                    ? value : value.replacingAll("Path=/admin", with: "Path=\(prefix)/admin")
            )
        }
        if let location = reply.location {
            headers.append(("Location", location.hasPrefix("/") ? prefix + location : location))
            sink.head(status: reply.status, headers: headers + [("Content-Length", "0")])
            return answer
        }
        let body = Array(mounted(reply.body.text).utf8)
        headers += [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", String(body.count))]
        sink.head(status: reply.status, headers: headers)
        sink.body(body)
        return answer
    }

    private func route(_ context: inout AdminContext) throws -> AdminReply {
        let request = context.request
        var path = request.path
        if path == "/admin" { return .redirect("/admin/") }
        if path.count > 7, path.hasSuffix("/") { path.removeLast() }
        let rest = Array(path.split(separator: "/").map(String.init).dropFirst())  // after "admin"
        let page = rest.joined(separator: "/")
        switch (request.method, page) {
        case ("GET", "login"): return LoginPage.show(context)
        case ("POST", "login"): return try LoginPage.submit(&context)
        default: break
        }
        try context.requireSession()
        if request.method == "POST" { try context.requireCSRF() }
        if rest.count >= 2, rest[0] == "tenants", rest[1] != "new" {
            let id = try context.tenantID(rest[1])
            switch (request.method, rest.dropFirst(2).joined(separator: "/")) {
            case ("GET", ""): return try TenantPage.show(context, tenant: id)
            case ("POST", ""): return try TenantPage.save(context, tenant: id)
            case ("POST", "keys"): return try TenantPage.createKey(context, tenant: id)
            case ("POST", "keys/revoke"): return try TenantPage.revokeKey(context, tenant: id)
            case ("POST", "rollback"): return try TenantPage.rollback(context, tenant: id)
            case ("POST", "delete"): return try TenantPage.delete(context, tenant: id)
            case ("POST", "cache/purge"): return try TenantPage.purgeCache(context, tenant: id)
            case (_, "keys"), (_, "keys/revoke"), (_, "rollback"), (_, "delete"), (_, "cache/purge"), (_, ""):
                throw AdminProblem.methodNotAllowed
            default: throw AdminProblem.notFound
            }
        }
        switch (request.method, page) {
        case ("GET", ""): return try DashboardPage.show(context)
        case ("POST", "logout"): return try LoginPage.logout(context)
        case ("GET", "tenants/new"): return NewTenantPage.show(context, values: [:], errors: [:])
        case ("POST", "tenants"): return try NewTenantPage.submit(context)
        case ("GET", "executions"): return try ExecutionsPage.show(context)
        case ("GET", "audit"): return try AuditPage.show(context)
        case ("GET", "catalog"): return CatalogPage.show(context)
        case (_, ""), (_, "logout"), (_, "tenants"), (_, "executions"), (_, "audit"):
            throw AdminProblem.methodNotAllowed
        default: throw AdminProblem.notFound
        }
    }
}

/// What a handler answers: a page, or a redirect after a successful change (POST → 303 → GET).
struct AdminReply {
    var status: Int
    var body: HTML
    var headers: [(String, String)] = []
    var location: String?

    static func page(_ status: Int, _ body: HTML) -> AdminReply { AdminReply(status: status, body: body) }

    static func redirect(_ location: String, headers: [(String, String)] = []) -> AdminReply {
        AdminReply(status: 303, body: HTML(), headers: headers, location: location)
    }
}

/// Refusals that end a request with their own page.
enum AdminProblem: Error {
    case notFound
    case methodNotAllowed
    case loginRequired
    case csrf
    case badForm(String)

    func reply(_ context: AdminContext) -> AdminReply {
        switch self {
        case .loginRequired:
            if context.request.method == "GET" { return .redirect("/admin/login") }
            return .page(
                401,
                Layout.page(
                    title: "Session ended", session: nil,
                    body: "<p class=\"error\">Your session has ended. <a href=\"/admin/login\">Log in again</a>.</p>"))
        case .csrf:
            return .page(
                403,
                Layout.page(
                    title: "Refused", session: context.session,
                    body:
                        "<p class=\"error\">This form could not be verified (missing or wrong CSRF token, or a foreign origin). Nothing was changed. Reload the page and try again.</p>"
                ))
        case .notFound:
            return .page(404, Layout.page(title: "Not found", session: context.session, body: "<p>Not found.</p>"))
        case .methodNotAllowed:
            return .page(
                405,
                Layout.page(title: "Method not allowed", session: context.session, body: "<p>Method not allowed.</p>"))
        case .badForm(let why):
            return .page(
                400, Layout.page(title: "Bad request", session: context.session, body: "<p class=\"error\">\(why)</p>"))
        }
    }
}

/// One admin request: the request, its session, its form, and the stores it may use.
struct AdminContext {
    let request: Request
    let db: any SQLConnection
    let config: GatewayConfig
    let dbPath: String
    /// The worker's bound on password checks.
    let logins: LoginGate
    var session: AdminSession?

    init(request: Request, db: any SQLConnection, config: GatewayConfig, dbPath: String, logins: LoginGate) {
        self.logins = logins
        self.request = request
        self.db = db
        self.config = config
        self.dbPath = dbPath
    }

    var admin: AdminStore { AdminStore(db) }
    var nowMs: Int64 { Posix.wallMicros() / 1000 }
    var address: String { request.remoteAddr }
    var user: String { session?.user ?? "" }

    /// The session cookie's value.
    var cookieValue: String? { Form.cookies(request.headers["cookie"])[AdminApp.cookie] }

    /// Loads the session from the cookie or refuses.
    mutating func requireSession() throws {
        guard let id = cookieValue, id.utf8.count == 64,
            let session = try admin.session(
                id: id, nowMs: nowMs, idleMs: AdminApp.idleMs, absoluteMs: AdminApp.absoluteMs)
        else { throw AdminProblem.loginRequired }
        self.session = session
    }

    /// A state change must come from our own origin and carry the session's CSRF token.
    func requireCSRF() throws {
        try requireSameOrigin()
        guard let session, let token = try form()["_csrf"],
            Crypto.constantTimeEqual(Array(token.utf8), Array(session.csrf.utf8))
        else { throw AdminProblem.csrf }
    }

    /// `Origin` (or, without it, `Referer`) must name this host over HTTPS.
    func requireSameOrigin() throws {
        guard let host = request.headers["host"], !host.isEmpty else { throw AdminProblem.csrf }
        let expected = "https://" + host
        if let origin = request.headers["origin"] {
            guard origin == expected else { throw AdminProblem.csrf }
            return
        }
        guard let referer = request.headers["referer"], referer == expected || referer.hasPrefix(expected + "/") else {
            throw AdminProblem.csrf
        }
    }

    /// The urlencoded body (or the query, for GET).
    func form() throws -> Form {
        do {
            if request.method == "GET" { return try Form(query: request.query) }
            let type = request.headers["content-type"] ?? ""
            guard type.hasPrefix("application/x-www-form-urlencoded") else {
                throw AdminProblem.badForm("Forms must be sent as application/x-www-form-urlencoded.")
            }
            return try Form(urlencoded: request.body)
        } catch let problem as Form.Problem {
            throw AdminProblem.badForm(
                problem == .invalidUTF8
                    ? "The form contains text that is not valid UTF-8." : "The form has too many fields.")
        }
    }

    /// A tenant id from the URL; anything that is not a valid id is a 404, never a lookup.
    func tenantID(_ raw: String) throws -> String {
        guard TenantID(raw) != nil else { throw AdminProblem.notFound }
        return raw
    }
}
