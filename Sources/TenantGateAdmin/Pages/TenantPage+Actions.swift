import TenantGateCore
import TenantGateStore
import TenantGateSystem

extension TenantPage {
    /// POST/redirect/GET: the form's single-use token makes a reload create nothing; the new key waits,
    /// sealed under the cookie's key, for the page the redirect shows (once, within 5 minutes).
    static func createKey(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let form = try context.form()
        let name = String((form.text("key_name") ?? "").prefix(200))
        guard try ConfigStore(context.db).loadState().tenants[id] != nil else { throw AdminProblem.notFound }
        let settings = try keySettings(form, tenant: id, context: context)
        guard let once = form.text("_once"), once.utf8.count == 32, Crypto.unhex(once) != nil else {
            throw AdminProblem.badForm("This form is out of date: reload the page and try again.")
        }
        let admin = context.admin
        let session = context.cookieValue ?? ""
        var opener = ""
        do {
            // The key, its audit entry, the form token and the key kept for its one showing commit together.
            _ = try KeyStore(context.db).create(
                tenant: id, name: name, settings: settings,
                written: { keyID in
                    try admin.takeOnce(once, nowMs: context.nowMs)
                    try admin.audit(
                        user: context.user, address: context.address, action: "key_create", target: id, before: nil,
                        after: JSONValue.object([
                            ("key_id", .string(keyID)), ("name", .string(name)),
                            ("models", settings.models.map { .array($0.map { .string($0) }) } ?? .null),
                            ("expires_at", settings.expiresAt.map { .int(Int($0)) } ?? .null),
                        ]).jsonString,
                        atMs: context.nowMs)
                },
                keeping: { keyID, secret in
                    opener = try admin.keepNewKey(
                        tenant: id, keyID: keyID, secret: secret, session: session, nowMs: context.nowMs)
                })
        } catch is AdminStore.FormAlreadyUsed {
            return .redirect("/admin/tenants/\(id)?done=keyonce")
        }
        return .redirect(
            "/admin/tenants/\(id)?done=keycreated#newkey",
            headers: [
                (
                    "Set-Cookie",
                    "\(newKeyCookie)=\(opener); Path=/admin/tenants/\(id); HttpOnly; Secure; SameSite=Strict; Max-Age=300"
                )
            ])
    }

    /// A new key's models (a subset of the tenant's; empty: all of them) and expiry (a date, UTC midnight;
    /// empty: none) from the form.
    static func keySettings(_ form: Form, tenant id: String, context: AdminContext) throws -> KeySettings {
        var settings = KeySettings()
        let names = TenantForm.list(form.text("key_models") ?? "")
        if !names.isEmpty {
            let allowed = context.config.tenants[id]?.models ?? []
            guard let outside = names.first(where: { !allowed.contains($0) }) else {
                settings.models = names
                return try expiry(form, into: settings, context: context)
            }
            throw AdminProblem.badForm("Model '\(outside)' is not on this tenant's allow-list.")
        }
        return try expiry(form, into: settings, context: context)
    }

    private static func expiry(_ form: Form, into settings: KeySettings, context: AdminContext) throws
        -> KeySettings
    {
        var settings = settings
        let text = (form.text("key_expires") ?? "").trimmingASCII()
        guard !text.isEmpty else { return settings }
        let bytes = Array(text.utf8)
        let digits = bytes.indices.allSatisfy {
            [4, 7].contains($0) ? bytes[$0] == UInt8(ascii: "-") : (0x30...0x39).contains(bytes[$0])
        }
        let parts = text.split(separator: "-").compactMap { Int($0) }
        guard bytes.count == 10, digits, parts.count == 3, (1...12).contains(parts[1]), (1...31).contains(parts[2]),
            CivilDate.from(days: CivilDate.days(year: parts[0], month: parts[1], day: parts[2]))
                == (parts[0], parts[1], parts[2])
        else { throw AdminProblem.badForm("The expiry must be a date: YYYY-MM-DD.") }
        let at = Int64(CivilDate.days(year: parts[0], month: parts[1], day: parts[2])) * 86_400
        guard at > context.nowMs / 1000 else { throw AdminProblem.badForm("The expiry must be in the future.") }
        settings.expiresAt = at
        return settings
    }

    /// Deletes the tenant's cached answers, audited.
    static func purgeCache(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let admin = context.admin
        try admin.transaction {
            let n = try CacheStore(context.db).purgeRows(tenant: id)
            try admin.audit(
                user: context.user, address: context.address, action: "cache_purge", target: id,
                before: JSONValue.object([("entries", .int(n))]).jsonString, after: nil, atMs: context.nowMs)
        }
        return .redirect("/admin/tenants/\(id)?done=purged")
    }

    static func revokeKey(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let keyID = try context.form()["key_id"] ?? ""
        let keys = KeyStore(context.db)
        let admin = context.admin
        try admin.transaction {
            // Only an active key of this tenant: the URL's tenant scopes the update itself, and nothing is
            // audited when nothing was revoked (another key, or one revoked meanwhile: 404).
            guard try keys.revoke(id: keyID, tenant: id) else { throw AdminProblem.notFound }
            try admin.audit(
                user: context.user, address: context.address, action: "key_revoke", target: id,
                before: JSONValue.object([("key_id", .string(keyID))]).jsonString, after: nil, atMs: context.nowMs)
        }
        return .redirect("/admin/tenants/\(id)?done=revoked")
    }

    static func rollback(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let form = try context.form()
        let name = form["name"] ?? ""
        guard let version = form["version"].flatMap({ Int($0) }),
            let entry = try ConfigStore(context.db).promptHistory(tenant: id, name: name).first(where: {
                $0.version == version
            })
        else { throw AdminProblem.notFound }
        do {
            try apply(context, tenant: id, action: "prompt_rollback") { current in
                guard let current else { throw AdminProblem.notFound }
                let node =
                    name == "default"
                    ? ConfigNode.setting(
                        ConfigNode(json: current), ["system_prompt"], .scalar(entry.template, quoted: true, line: nil))
                    : ConfigNode.setting(
                        ConfigNode(json: current), ["prompts", Substring(name)],
                        .scalar(entry.template, quoted: true, line: nil))
                return try validated(id, node)
            }
        } catch let error as ConfigError {
            // A saved version that no longer passes validation (say, it names a variable since removed).
            return try show(
                context, tenant: id, errors: ["_": "Version \(version) cannot be restored: \(error)"], status: 422)
        }
        return .redirect("/admin/tenants/\(id)?done=rolledback")
    }

    static func delete(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        guard try context.form()["confirm"]?.trimmingASCII() == id else {
            return try show(
                context, tenant: id, errors: ["confirm": "Type the tenant id exactly to delete it."], status: 422)
        }
        try apply(context, tenant: id, action: "tenant_delete") { current in
            guard current != nil else { throw AdminProblem.notFound }
            return nil
        }
        return .redirect("/admin/?done=deleted")
    }
}
