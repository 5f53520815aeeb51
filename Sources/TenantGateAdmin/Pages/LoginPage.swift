import TenantGateStore

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
        let user = String((form["user"] ?? "").trimmed.prefix(200))
        let password = form["password"] ?? ""
        let admin = context.admin
        let now = context.nowMs
        let since = now - AdminApp.throttleWindowMs
        let subjects = ["user:" + user, "addr:" + context.address]
        if try admin.failures([subjects[0]], sinceMs: since) >= AdminApp.userFailures
            || admin.failures([subjects[1]], sinceMs: since) >= AdminApp.addressFailures
        {
            var reply = show(
                context, status: 429, message: "Too many failed logins. Try again in 15 minutes.", user: user)
            reply.headers.append(("Retry-After", String(AdminApp.throttleWindowMs / 1000)))
            return reply
        }
        guard !user.isEmpty, !password.isEmpty, password.utf8.count <= 1024,
            try admin.verify(user: user, password: password)
        else {
            try admin.recordFailure(subjects, atMs: now)
            return show(context, status: 401, message: "Wrong user or password.", user: user)
        }
        try admin.clearFailures(subjects[0])
        let (id, _) = try admin.createSession(user: user, address: context.address, nowMs: now)
        try admin.transaction {
            try admin.audit(
                user: user, address: context.address, action: "login", target: "", before: nil, after: nil, atMs: now)
        }
        let cookie = "\(AdminApp.cookie)=\(id); Path=/admin; HttpOnly; Secure; SameSite=Strict"
        return .redirect("/admin/", headers: [("Set-Cookie", cookie)])
    }

    static func logout(_ context: AdminContext) throws -> AdminReply {
        if let id = context.cookieValue { try context.admin.endSession(id: id) }
        let cookie = "\(AdminApp.cookie)=; Path=/admin; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
        return .redirect("/admin/login", headers: [("Set-Cookie", cookie)])
    }
}
