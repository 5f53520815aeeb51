import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// Log in (throttled per user and per address), log out (the session ends server-side).
enum LoginPage {
    static func show(_ context: AdminContext, status: Int = 200, message: String? = nil, user: String = "")
        -> AdminReply
    {
        var notice = HTML()
        if let message { notice = "<p class=\"error\" role=\"alert\">\(message)</p>" }
        if (try? context.admin.userCount()) == 0 {
            notice += """
                <p class="muted">No admin user exists yet. Create one on the server with \
                <code>tenantgate admin password --user admin</code> (it reads the password from standard input).</p>
                """
        }
        let body: HTML = """
            <h1>Log in</h1>\(notice)
            <form method="post" action="/admin/login" class="login">
            <div class="field"><label for="user">User</label>\
            <input id="user" name="user" autocomplete="username" required value="\(user)"></div>
            <div class="field"><label for="password">Password</label>\
            <input id="password" name="password" type="password" autocomplete="current-password" required></div>
            <button type="submit">Log in</button></form>
            """
        return .page(status, Layout.page(title: "Log in", session: nil, body: body))
    }

    static func submit(_ context: inout AdminContext) throws -> AdminReply {
        try context.requireSameOrigin()
        let form = try context.form()
        let user = String((form["user"] ?? "").trimmingASCII().prefix(200))
        let password = form["password"] ?? ""
        let admin = context.admin
        let now = context.nowMs
        let since = now - AdminApp.throttleWindowMs
        // An IPv6 client owns its whole /64: rotating addresses inside it is one address here.
        let address = LoginGate.throttleAddress(context.address)
        let pair = "pair:\(user)|\(address)"
        let subjects = ["user:" + user, "addr:" + address, pair]
        // Locked per (account, address) and per address: a stranger locks out only itself.
        if try admin.failures([pair], sinceMs: since) >= AdminApp.userFailures
            || admin.failures([subjects[1]], sinceMs: since) >= AdminApp.addressFailures
        {
            return tooMany(context, user: user, message: "Too many failed logins. Try again in 15 minutes.")
        }
        // An account under attack from many addresses: only addresses it has logged in from before may try.
        if try admin.failures([subjects[0]], sinceMs: since) >= AdminApp.userFailures,
            try admin.hasKnownAddresses(user: user), !(try admin.isKnownAddress(user: user, address: context.address))
        {
            return tooMany(
                context, user: user,
                message: "This account is limited to addresses it has logged in from before. Try again in 15 minutes.")
        }
        guard !user.isEmpty, !password.isEmpty, password.utf8.count <= 1024 else {
            return try failed(context, user: user, subjects: subjects)
        }
        // Rotating names and addresses passes the per-subject limits: the worker's own rate of password
        // checks bounds the PBKDF2 work whatever the attacker varies. An account's known-good address is
        // never held up by it (a spray cannot lock the operators out).
        guard try admin.isKnownAddress(user: user, address: context.address) || context.logins.takeCheck(nowMs: now)
        else {
            return show(context, status: 429, message: GatewayError.loginBusy.message, user: user)
                .adding(("Retry-After", String(LoginGate.refillMs / 1000)))
        }
        // PBKDF2 (600k rounds) runs for at most `LoginGate.slots` logins at once per worker, so logins can
        // never hold more than that many of the threads that serve the API.
        guard let verified = try context.logins.run({ try admin.verify(user: user, password: password) }) else {
            return show(context, status: 503, message: GatewayError.loginBusy.message, user: user)
                .adding(("Retry-After", "1"))
        }
        guard verified else { return try failed(context, user: user, subjects: subjects) }
        try admin.clearFailures(pair)
        let (id, _) = try admin.createSession(user: user, address: context.address, nowMs: now)
        try admin.transaction {
            try admin.rememberAddress(user: user, address: context.address, nowMs: now)
            try admin.audit(
                user: user, address: context.address, action: "login", target: "", before: nil, after: nil, atMs: now)
        }
        let cookie = "\(AdminApp.cookie)=\(id); Path=/admin; HttpOnly; Secure; SameSite=Strict"
        return .redirect("/admin/", headers: [("Set-Cookie", cookie)])
    }

    private static func tooMany(_ context: AdminContext, user: String, message: String) -> AdminReply {
        show(context, status: 429, message: message, user: user)
            .adding(("Retry-After", String(AdminApp.throttleWindowMs / 1000)))
    }

    /// Records the failure (and its audit entry, in one transaction) and answers 401.
    private static func failed(_ context: AdminContext, user: String, subjects: [String]) throws -> AdminReply {
        let admin = context.admin
        try admin.recordFailure(subjects, atMs: context.nowMs) {
            try admin.audit(
                user: user, address: context.address, action: "login_failed", target: "", before: nil, after: nil,
                atMs: context.nowMs)
        }
        return show(context, status: 401, message: "Wrong user or password.", user: user)
    }

    static func logout(_ context: AdminContext) throws -> AdminReply {
        if let id = context.cookieValue { try context.admin.endSession(id: id) }
        let admin = context.admin
        try admin.transaction {
            try admin.audit(
                user: context.user, address: context.address, action: "logout", target: "", before: nil, after: nil,
                atMs: context.nowMs)
        }
        let cookie = "\(AdminApp.cookie)=; Path=/admin; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
        return .redirect("/admin/login", headers: [("Set-Cookie", cookie)])
    }
}

/// Bounds the admin logins checked at once in this worker process (each costs a 600k-round PBKDF2): one
/// per admin app, which a worker makes once.
final class LoginGate: Sendable {
    /// Concurrent password checks per worker; more are refused at once (503 with Retry-After).
    static let slots = 2
    private let busy = Locked(0)
    /// Password checks per worker: a burst of 30, then one a second (a 600k-round PBKDF2 costs about a third
    /// of a second of one core).
    static let refillMs: Int64 = 1_000
    private let bucket = Locked(CheckBucket(burst: 30, refillMs: LoginGate.refillMs))

    /// Takes one password check from the worker's bucket; false when it is empty.
    func takeCheck(nowMs: Int64) -> Bool { bucket.withLock { $0.take(nowMs: nowMs) } }

    /// The address failures are counted under: an IPv4 address as it is, an IPv6 one as its /64.
    static func throttleAddress(_ address: String) -> String {
        guard address.contains(":"), !address.contains(".") else {
            // IPv4, or IPv4-mapped IPv6 (`::ffff:192.0.2.1`): the IPv4 part.
            return address.split(separator: ":").last.map(String.init) ?? address
        }
        let halves = address.split(separator: "::", maxSplits: 1, omittingEmptySubsequences: false)
        func groups(_ part: Substring) -> [String] {
            part.isEmpty ? [] : part.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        let head = groups(halves[0])
        let tail = halves.count > 1 ? groups(halves[1]) : []
        let missing = 8 - head.count - tail.count
        guard halves.count == 2 ? missing >= 1 : missing == 0 else { return address }
        let groups = head + Array(repeating: "0", count: missing) + tail
        guard groups.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 4 && UInt16($0, radix: 16) != nil }) else {
            return address
        }
        return groups.prefix(4).map { String(UInt16($0, radix: 16) ?? 0, radix: 16) }.joined(separator: ":") + "::/64"
    }

    /// Runs `check` if a slot is free; nil when all are taken.
    func run(_ check: () throws -> Bool) throws -> Bool? {
        let entered = busy.withLock { count -> Bool in
            guard count < LoginGate.slots else { return false }
            count += 1
            return true
        }
        guard entered else { return nil }
        defer { busy.withLock { $0 -= 1 } }
        return try check()
    }
}

extension AdminReply {
    func adding(_ header: (String, String)) -> AdminReply {
        var copy = self
        copy.headers.append(header)
        return copy
    }
}

/// A token bucket of password checks: `burst` at once, then one per `refillMs`.
struct CheckBucket: Sendable {
    let burst: Int64
    let refillMs: Int64
    /// Time credit in milliseconds (a full bucket holds `burst × refillMs`).
    private var creditMs: Int64
    private var atMs: Int64?

    init(burst: Int, refillMs: Int64) {
        self.burst = Int64(max(1, burst))
        self.refillMs = max(1, refillMs)
        creditMs = self.burst * self.refillMs
    }

    /// Takes one check at `nowMs`; false when the bucket is empty (a clock going back earns nothing).
    mutating func take(nowMs: Int64) -> Bool {
        let elapsed = atMs.map { max(0, nowMs.saturatingAdd(-$0)) } ?? 0
        atMs = max(atMs ?? nowMs, nowMs)
        creditMs = min(burst * refillMs, creditMs.saturatingAdd(elapsed))
        guard creditMs >= refillMs else { return false }
        creditMs -= refillMs
        return true
    }
}
