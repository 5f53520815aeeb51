import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// One tenant: every setting in one form (validated like `config import`), prompt versions with
/// rollback, keys, usage and recent executions; and the create-tenant page.
enum TenantPage {
    static let flashes = [
        "saved": "Saved. Every worker serves with the new settings within a second.",
        "revoked": "Key revoked.", "rolledback": "Prompt rolled back.", "created": "Tenant created.",
        "purged": "Cache purged. Every worker misses from within a second.",
        "keycreated": "Key created.",
        "keyonce": "That form was sent already (a reload?): no second key was created. Its key is in the list below.",
    ]

    /// The cookie that opens a new key's one showing after the redirect (`AdminStore.keepNewKey`).
    static let newKeyCookie = "tg_newkey"

    static func show(
        _ context: AdminContext, tenant id: String, values given: [String: String]? = nil,
        errors: [String: String] = [:], status: Int = 200, newKey: (id: String, secret: String)? = nil,
        notice: String? = nil
    ) throws -> AdminReply {
        let store = ConfigStore(context.db)
        let state = try store.loadState()
        guard let tenant = state.tenants[id] else { throw AdminProblem.notFound }
        let values = given ?? TenantForm.values(tenant)
        let defaults = state.settings["defaults"] ?? .object([])
        let session = context.session
        let flash = notice ?? ((try? context.form())?["done"]).flatMap { flashes[$0] }
        // The key created by the POST this page follows: shown this once, then gone (its cookie too).
        var headers: [(String, String)] = []
        var newKey = newKey
        if let opener = Form.cookies(context.request.headers["cookie"])[newKeyCookie] {
            headers.append(
                (
                    "Set-Cookie",
                    "\(newKeyCookie)=; Path=/admin/tenants/\(id); HttpOnly; Secure; SameSite=Strict; Max-Age=0"
                ))
            if newKey == nil, let session = context.cookieValue {
                newKey = try context.admin.takeNewKey(
                    tenant: id, opener: opener, session: session, nowMs: context.nowMs)
            }
        }

        var body: HTML = "<h1>\(tenant["name"]?.stringValue ?? id) <small class=\"muted\">\(id)</small></h1>"
        if let newKey {
            let base = "https://\(context.request.headers["host"] ?? "localhost")/tenant/\(id)/v1"
            let model = context.config.tenants[id]?.defaultModel ?? "MODEL"
            body += """
                <div class="newkey" role="alert" id="newkey"><h2>New key \(newKey.id)</h2>\
                <p>Copy it now: it is shown only this once and stored only as a hash.</p>\
                <p><code class="secret">\(newKey.secret)</code></p>\
                <p>Base URL: <code>\(base)</code></p>\
                <pre><code>curl \(base)/chat/completions -H "Authorization: Bearer \(newKey.secret)" \\
                  -H "Content-Type: application/json" -d '{"model":"\(model)","messages":[{"role":"user","content":"Hello!"}]}'</code></pre>\
                <pre><code>client = openai.OpenAI(base_url="\(base)", api_key="\(newKey.secret)")</code></pre></div>
                """
        }
        if !errors.isEmpty {
            body += """
                <div class="error" role="alert"><p>Nothing was saved: \(errors.count) \
                \(errors.count == 1 ? "setting needs" : "settings need") attention.</p>\
                \(errors["_"].map { "<p>\($0)</p>" as HTML } ?? HTML())\
                <ul>\(errors.keys.filter { $0 != "_" }.sorted().map { field -> HTML in
                    "<li><a href=\"#f-\(field.replacingDots)\">\(field)</a>: \(errors[field] ?? "")</li>"
                })</ul></div>
                """
        }
        body += settingsForm(context, id: id, tenant: tenant, values: values, errors: errors, defaults: defaults)
        body += try promptHistory(context, store: store, id: id, tenant: tenant)
        body += try keys(context, id: id)
        let usage = try context.admin.tenantDaily(id, nowMs: context.nowMs, days: 30)
        body += Chart.dailySpend(
            usage.map { (day: $0.day, nano: $0.nano) }, label: "Daily spend of \(id), last 30 days")
        body += try budgets(context, id: id)
        body += try policies(context, id: id)
        body += try storage(context, id: id)
        body += try cache(context, id: id)
        body += try documents(context, id: id)
        var filter = ExecutionFilter()
        filter.tenant = id
        let recent = try context.admin.executions(filter, limit: 20).rows
        body += """
            <section><h2>Recent executions</h2>\(ExecutionsPage.table(recent, showTenant: false))\
            <p><a href="/admin/executions?tenant=\(id)">All executions of \(id)</a> · \
            <a href="/admin/audit?target=\(id)">Audit log of \(id)</a></p></section>
            <section class="danger"><h2>Delete tenant</h2>\
            <form method="post" action="/admin/tenants/\(id)/delete">\(Layout.csrf(session))\
            \(Layout.field("confirm", label: "Type the tenant id to confirm", values: [:], errors: errors, attributes: " autocomplete=\"off\" required"))\
            <button type="submit" class="danger">Delete \(id) and revoke its keys</button></form></section>
            """
        var reply = AdminReply.page(status, Layout.page(title: id, session: session, body: body, flash: flash))
        reply.headers += headers
        return reply
    }

    private static func settingsForm(
        _ context: AdminContext, id: String, tenant: JSONValue, values: [String: String], errors: [String: String],
        defaults: JSONValue
    ) -> HTML {
        func inherited(_ path: String) -> HTML {
            var node: JSONValue? = defaults
            for part in path.split(separator: ".") { node = node?[String(part)] }
            guard let node, node != .null else { return " placeholder=\"not set\"" }
            let text = node.stringValue ?? node.jsonString
            return " placeholder=\"default: \(text)\""
        }
        func number(_ path: String, _ label: String) -> HTML {
            Layout.field(
                path, label: label, values: values, errors: errors,
                attributes: " inputmode=\"decimal\"" + inherited(path))
        }
        let catalog = context.config.models.keys.sorted().joined(separator: ", ")
        let allowed = TenantForm.list(values["models"] ?? "")
        let defaultChoices = (allowed.isEmpty ? [("", "none")] : []) + allowed.map { ($0, $0) }
        var flagNames = Set(FeatureFlags.builtins.keys)
        for (name, _) in tenant["features"]?.objectValue ?? [] { flagNames.insert(name) }
        for (name, _) in values where name.hasPrefix("features.") { flagNames.insert(String(name.dropFirst(9))) }
        // Each flag with the value that applies and where it comes from (the tenant, the defaults, built in).
        func flagText(_ value: JSONValue) -> String {
            switch value {
            case .bool(let on): return on ? "on" : "off"
            default: return value.stringValue ?? value.jsonString
            }
        }
        let flags = flagNames.sorted().map { name -> HTML in
            let effective: String
            if let own = tenant["features"]?[name], own != .null {
                effective = "\(flagText(own)) (this tenant)"
            } else if let inherited = defaults["features"]?[name], inherited != .null {
                effective = "\(flagText(inherited)) (defaults)"
            } else if let builtin = FeatureFlags.builtins[name] {
                effective = "\(builtin ? "on" : "off") (built in)"
            } else {
                effective = "off (not set anywhere)"
            }
            return Layout.field(
                "features.\(name)", label: name, values: values, errors: errors, hint: "Applies: \(effective)",
                attributes: " placeholder=\"inherit: \(effective)\"")
        }
        var promptFields: [HTML] = []
        let promptNames = Set(
            (tenant["prompts"]?.objectValue ?? []).map(\.0)
                + values.keys.filter { $0.hasPrefix("prompts.") }.map { String($0.dropFirst(8)) })
        for name in promptNames.sorted() {
            promptFields.append(
                Layout.textarea(
                    "prompts.\(name)", label: "Template “\(name)”", values: values, errors: errors,
                    hint: "Empty deletes it."))
        }
        var backends = Set((tenant["upstream_keys"]?.objectValue ?? []).map(\.0))
        for model in tenant["models"]?.arrayValue ?? [] {
            if let name = model.stringValue, let backend = context.config.models[name]?.backend,
                context.config.backends[backend]?.provider != .mock
            {
                backends.insert(backend)
            }
        }
        let keyFields = backends.sorted().map { backend -> HTML in
            let stored = tenant["upstream_keys"]?[backend]?.stringValue.map {
                String($0.dropFirst(Secret.referencePrefix.count))
            }
            let state: HTML =
                stored.map {
                    "stored: <code>\($0)</code> <label><input type=\"checkbox\" name=\"remove_key.\(backend)\"> remove</label>"
                }
                ?? "<span class=\"muted\">none stored (the backend's environment key is used)</span>"
            return """
                \(Layout.field("upstream_keys.\(backend)", label: "Key for \(backend)", values: [:], errors: errors, type: "password", attributes: " autocomplete=\"off\" placeholder=\"write-only: leave empty to keep\""))\
                <p class="keystate">\(state)</p>
                """
        }
        return """
            <form method="post" action="/admin/tenants/\(id)" class="settings" novalidate>\(Layout.csrf(context.session))
            <fieldset><legend>General</legend>
            \(Layout.field("name", label: "Name", values: values, errors: errors))
            \(Layout.field("models", label: "Allowed models", values: values, errors: errors, hint: "Comma-separated. Catalog: \(catalog)"))
            \(Layout.select("default_model", label: "Default model", options: defaultChoices, values: values, errors: errors))
            \(Layout.textarea("fallbacks", label: "Fallbacks", values: values, errors: errors, hint: "One line per model: model: fallback1, fallback2"))
            <div class="field check"><label><input type="checkbox" name="auth_passthrough"\(values["auth_passthrough"] == "on" ? " checked" as HTML : HTML())> \
            BYOK: forward the client's own provider key</label></div>
            </fieldset>
            <fieldset><legend>System prompt</legend>
            \(Layout.textarea("system_prompt", label: "System prompt (template “default”)", values: values, errors: errors, rows: 5, hint: "Variables: {{date}}, {{tenant.name}}, {{tenant.id}}, {{user}}, {{model}} and the tenant's own."))
            \(Layout.select("prompt_mode", label: "Mode", options: [("", "default (prepend)"), ("prepend", "prepend"), ("replace", "replace"), ("locked", "locked")], values: values, errors: errors))
            \(promptFields)
            \(Layout.field("new_prompt_name", label: "New template name", values: values, errors: errors))
            \(Layout.textarea("new_prompt_text", label: "New template text", values: values, errors: errors))
            \(Layout.textarea("variables", label: "Variables", values: values, errors: errors, hint: "One line per variable: name: value"))
            </fieldset>
            <fieldset><legend>Feature flags</legend><p class="muted">on, off, a rollout percentage 0–100, or empty to inherit.</p>
            <div class="grid">\(flags)</div>
            \(Layout.field("new_flag_name", label: "New flag", values: values, errors: errors))\
            \(Layout.field("new_flag_value", label: "Its value", values: values, errors: errors))
            </fieldset>
            <fieldset><legend>Rate limits and budgets</legend><div class="grid">
            \(number("rate_limit.requests_per_minute", "Requests per minute"))\(number("rate_limit.tokens_per_minute", "Tokens per minute"))
            \(number("budget.daily_usd", "Daily budget, USD"))\(number("budget.monthly_usd", "Monthly budget, USD"))
            \(number("budget.daily_tokens", "Daily tokens"))\(number("budget.monthly_tokens", "Monthly tokens"))
            \(Layout.select("budget.enforcement", label: "Enforcement", options: [("", "inherit"), ("hard", "hard (refuse)"), ("soft", "soft (warn)")], values: values, errors: errors))
            </div></fieldset>
            <fieldset><legend>Circuit breaker and retention</legend><div class="grid">
            \(number("circuit_breaker.errors", "Errors to open"))\(number("circuit_breaker.within_s", "Within seconds"))
            \(number("circuit_breaker.cooldown_s", "Cooldown seconds"))\(number("audit.retention_days", "Execution log retention, days"))
            </div></fieldset>
            <fieldset><legend>Guardrail policies</legend>\
            \(Layout.textarea("policies", label: "This tenant's rules (a YAML list, as in the configuration file)", values: values, errors: errors, rows: 8, hint: "e.g. “- {preset: secrets-block}” and “- {name: cards, phase: egress, detector: pii.card, action: redact}”, one rule per line. Empty: only the defaults' rules."))
            </fieldset>
            <fieldset><legend>Upstream keys</legend><p class="muted">Stored encrypted (AES-256-GCM); never shown again.</p>\(keyFields)</fieldset>
            <button type="submit">Save settings</button></form>
            """
    }

    // MARK: changes

    static func save(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let form = try context.form()
        let store = ConfigStore(context.db)
        guard let current = try store.loadState().tenants[id] else { throw AdminProblem.notFound }
        // Every invalid field at once: each one found is set back to its stored value, and the form checked
        // again for the next (at most 32 rounds; nothing is saved while any is left).
        var errors: [String: String] = [:]
        var attempt = form
        let stored = TenantForm.values(current)
        let fields =
            Array(TenantForm.values(form).keys) + TenantForm.numberFields + ["models", "fallbacks", "features"]
        for _ in 0..<32 {
            do {
                _ = try validated(id, TenantForm.document(attempt, current: current))
                break
            } catch let error as ConfigError {
                let field = TenantForm.field(for: error, tenant: id, fields: fields) ?? "_"
                guard errors[field] == nil else { break }  // no progress: what is left is reported
                errors[field] = error.message + (field == "_" ? " (\(error.path))" : "")
                if field == "_" { break }
                attempt = Form(
                    fields: attempt.fields.filter { $0.0 != field } + (stored[field].map { [(field, $0)] } ?? []))
            }
        }
        if !errors.isEmpty {
            return try show(context, tenant: id, values: TenantForm.values(form), errors: errors, status: 422)
        }
        let node = TenantForm.document(form, current: current)
        do {
            try apply(context, tenant: id, action: "tenant_update") { _ in try validated(id, node) }
        } catch let error as ConfigError {
            let fields =
                Array(TenantForm.values(form).keys) + TenantForm.numberFields + ["models", "fallbacks", "features"]
            let field = TenantForm.field(for: error, tenant: id, fields: fields) ?? "_"
            return try show(
                context, tenant: id, values: TenantForm.values(form),
                errors: [field: error.message + (field == "_" ? " (\(error.path))" : "")],
                status: 422)
        }
        return .redirect("/admin/tenants/\(id)?done=saved")
    }

    /// A tenant document validated exactly like a one-tenant `config import` file.
    static func validated(_ id: String, _ node: ConfigNode) throws -> JSONValue {
        let file = ConfigNode.mapping(
            [(key: "tenants", value: .mapping([(key: id, value: node, line: nil)], line: nil), line: nil)], line: nil)
        guard let tenant = try ConfigState.validateFile(file)["tenants"]?[id] else {
            throw ConfigError(path: "tenants.\(id)", message: "is required", line: nil)
        }
        return tenant
    }

    /// Replaces (or with nil deletes) one tenant in one transaction with its audit entry.
    static func apply(
        _ context: AdminContext, tenant id: String, action: String, _ change: (JSONValue?) throws -> JSONValue?
    )
        throws
    {
        let store = ConfigStore(context.db)
        let admin = context.admin
        try store.apply(
            masterKey: try MasterKey.load(dbPath: context.dbPath),
            { state in
                guard let tenant = try change(state.tenants[id]) else { return state.removingTenant(id) }
                var next = state
                next.tenants[id] = tenant
                return next
            },
            written: { before, after in
                try admin.audit(
                    user: context.user, address: context.address, action: action, target: id,
                    before: before.tenants[id]?.jsonString, after: after.tenants[id]?.jsonString, atMs: context.nowMs)
            })
    }

}
