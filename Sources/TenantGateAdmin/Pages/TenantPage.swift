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
            if newKey == nil { newKey = try context.admin.takeNewKey(tenant: id, opener: opener, nowMs: context.nowMs) }
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

    /// The tenant's budgets: spent, held by requests in flight, left, and when each resets.
    private static func budgets(_ context: AdminContext, id: String) throws -> HTML {
        guard let tenant = context.config.tenants[id] else { return HTML() }
        let meters = try AccountingStore(context.db).budgetMeters(
            tenant: id, limits: tenant.limits, nowMs: context.nowMs)
        guard !meters.isEmpty else { return HTML() }
        let rows = meters.map { m -> HTML in
            """
            <tr><th scope="row">\(m.budget) (\(m.enforcement.rawValue))</th>\
            <td>\(Layout.meter(used: m.spent, held: m.held, limit: m.cap, tokens: m.countsTokens))</td>\
            <td>resets \(Layout.time(m.resetsAt * 1000)) UTC</td></tr>
            """
        }
        return """
            <section id="budgets"><h2>Budgets</h2><table><tbody>\(rows)</tbody></table>\
            <p class="muted">Held: the worst cases of requests in flight (and leases), given back as they settle.</p></section>
            """
    }

    /// What the tenant stores against its `limits.storage_mb` (cache, responses, documents, audit trail).
    private static func storage(_ context: AdminContext, id: String) throws -> HTML {
        guard let tenant = context.config.tenants[id] else { return HTML() }
        let used = try StorageUsage(context.db).bytes(tenant: id)
        let quota = tenant.storageQuotaBytes
        let percent = quota > 0 ? min(100, used.saturatingMultiply(100) / quota) : 100
        return """
            <section id="storage"><h2>Storage</h2><table><tbody>            <tr><th scope="row">Stored</th><td>\(String(used / 1024)) KiB of \(String(quota >> 20)) MiB             (\(String(percent)) %; limits.storage_mb)</td></tr>            </tbody></table></section>
            """
    }

    /// The tenant's cache: entries, hit rate and saved USD over 24 hours, and a purge button.
    private static func cache(_ context: AdminContext, id: String) throws -> HTML {
        guard let stats = try CacheStore(context.db).stats(tenant: id, nowMs: context.nowMs).first,
            context.config.tenants[id].flatMap(CacheSettings.init) != nil || stats.entries > 0
        else { return HTML() }
        let lookups = stats.recentHits + stats.recentMisses
        let rate = lookups == 0 ? "–" : "\(stats.recentHits * 100 / lookups) %"
        return """
            <section><h2>Response cache</h2><table><tbody>\
            <tr><th scope="row">Entries</th><td>\(String(stats.entries)) (\(String(stats.bytes / 1024)) KiB)</td></tr>\
            <tr><th scope="row">Hit rate, 24 h</th><td>\(rate) of \(String(lookups)) lookups</td></tr>\
            <tr><th scope="row">Saved, 24 h</th><td>\(Layout.usd(stats.savedNano))</td></tr>\
            </tbody></table>\
            <form method="post" action="/admin/tenants/\(id)/cache/purge">\(Layout.csrf(context.session))\
            <button type="submit">Purge \(id)'s cache</button></form></section>
            """
    }

    /// The tenant's document collections with their newest documents, and a BM25 search box
    /// (`?collection=…&q=…` on this page; read-only, so a GET).
    private static func documents(_ context: AdminContext, id: String) throws -> HTML {
        guard let store = DocumentStore.of(context.db) else { return HTML() }
        let collections = try store.collections(tenant: id)
        guard !collections.isEmpty else { return HTML() }
        var body: HTML = """
            <section id="documents"><h2>Documents</h2><div class="scroll"><table><thead><tr>\
            <th scope="col">Collection</th><th scope="col">Documents</th><th scope="col">Chunks</th>\
            <th scope="col">Size</th><th scope="col">Embedding model</th></tr></thead><tbody>
            """
        for c in collections {
            body += """
                <tr><td>\(c.name)</td><td>\(String(c.documents))</td><td>\(String(c.chunks))</td>\
                <td>\(String(c.bytes / 1024)) KiB</td><td>\(c.embeddingModel ?? "–")</td></tr>
                """
        }
        body += "</tbody></table></div>"
        for c in collections where c.documents > 0 {
            let newest = try store.documents(tenant: id, collection: c.name, limit: 10)
            body += """
                <details><summary>\(c.name): newest \(String(newest.count)) of \(String(c.documents))</summary>\
                <table><thead><tr><th scope="col">Id</th><th scope="col">Source</th><th scope="col">Format</th>\
                <th scope="col">Bytes</th><th scope="col">Chunks</th></tr></thead><tbody>
                """
            for d in newest {
                body += """
                    <tr><td><code>\(d.id)</code></td><td>\(d.source ?? "–")</td><td>\(d.format)</td>\
                    <td>\(String(d.bytes))</td><td>\(String(d.chunks))</td></tr>
                    """
            }
            body += "</tbody></table></details>"
        }
        let asked = context.request.queryValue("q") ?? ""
        let picked = context.request.queryValue("collection") ?? collections[0].name
        var options = HTML()
        for c in collections {
            options += "<option\(c.name == picked ? " selected" : "")>\(c.name)</option>"
        }
        body += """
            <form method="get" action="/admin/tenants/\(id)#documents" class="inline" role="search">\
            <label>Collection <select name="collection">\(options)</select></label> \
            <label>Search <input type="search" name="q" value="\(asked)" maxlength="4096"></label> \
            <button type="submit">Search (BM25)</button></form>
            """
        if !asked.isEmpty, let collection = collections.first(where: { $0.name == picked }) {
            guard !FullTextQuery.terms(asked).isEmpty else {
                return body + "<p class=\"muted\">The query has no words to search for.</p></section>"
            }
            let found = try store.searchBM25(tenant: id, collection: collection, query: asked, k: 10).map(\.1)
            body += "<ol class=\"results\">"
            for hit in found {
                body += """
                    <li><code>\(hit.chunkID)</code> \(hit.source ?? "") <small class="muted">score \
                    \(ContextBlock.score(hit.score))</small><br>\(String(hit.text.prefix(300)))</li>
                    """
            }
            body += found.isEmpty ? "<li class=\"muted\">No match.</li></ol>" : "</ol>"
        }
        return body + "</section>"
    }

    /// The effective rules (defaults' and the tenant's) and the latest executions they acted on.
    private static func policies(_ context: AdminContext, id: String) throws -> HTML {
        guard let set = context.config.tenants[id]?.policies, !set.rules.isEmpty else { return HTML() }
        let rules = set.rules.map { rule -> HTML in
            let matcher: String
            switch rule.matcher {
            case .detectors(_, let label): matcher = label
            case .pattern(let pattern): matcher = "pattern " + pattern
            case .keywords(let list): matcher = "keywords " + list.words.joined(separator: ", ")
            }
            return """
                <tr><td>\(rule.name)</td><td>\(rule.phase.rawValue)</td><td>\(matcher)</td>\
                <td>\(rule.action.rawValue)</td><td>\(rule.mode.rawValue)</td></tr>
                """
        }
        let triggered = try context.admin.policyTriggers(tenant: id, limit: 20).map { row -> HTML in
            let what = (row.triggers.arrayValue ?? []).map { t -> String in
                let name = t["policy"]?.stringValue ?? "?"
                let action = t["action"]?.stringValue ?? "?"
                return t["mode"]?.stringValue == "shadow" ? "\(name): \(action) (shadow)" : "\(name): \(action)"
            }.joined(separator: "; ")
            return """
                <tr><td>\(Layout.time(row.atMs))</td><td><code>\(row.requestID)</code></td><td>\(String(row.status))</td>\
                <td>\(what)</td></tr>
                """
        }
        return """
            <section><h2>Guardrail policies</h2><p class="muted">Effective rules (defaults first); stream hold-back \
            \(String(set.holdBack)) bytes.</p><div class="scroll"><table><thead><tr><th scope="col">Rule</th>\
            <th scope="col">Phase</th><th scope="col">Matches</th><th scope="col">Action</th><th scope="col">Mode</th>\
            </tr></thead><tbody>\(rules)</tbody></table></div>\
            <h3>Recent triggers</h3>\(triggered.isEmpty ? "<p class=\"muted\">None among the latest executions.</p>" as HTML : """
            <div class="scroll"><table><thead><tr><th scope="col">Time (UTC)</th><th scope="col">Request</th>\
            <th scope="col">Status</th><th scope="col">Policies</th></tr></thead><tbody>\(triggered)</tbody></table></div>
            """)</section>
            """
    }

    private static func promptHistory(_ context: AdminContext, store: ConfigStore, id: String, tenant: JSONValue)
        throws -> HTML
    {
        var names = (tenant["prompts"]?.objectValue ?? []).map(\.0)
        names.insert("default", at: 0)
        var sections: [HTML] = []
        for name in names {
            let history = try store.promptHistory(tenant: id, name: name)
            guard !history.isEmpty else { continue }
            let rows = history.prefix(10).enumerated().map { index, entry -> HTML in
                let action: HTML =
                    index == 0
                    ? "<span class=\"muted\">current</span>"
                    : """
                    <form method="post" action="/admin/tenants/\(id)/rollback" class="inline">\(Layout.csrf(context.session))\
                    <input type="hidden" name="name" value="\(name)"><input type="hidden" name="version" value="\(entry.version)">\
                    <button type="submit">Roll back to v\(entry.version)</button></form>
                    """
                return """
                    <tr><td>v\(entry.version)</td><td>\(Layout.time(entry.createdAt * 1000))</td>\
                    <td><pre>\(String(entry.template.prefix(2000)))</pre></td><td>\(action)</td></tr>
                    """
            }
            sections.append(
                """
                <h3>“\(name)”</h3><div class="scroll"><table><thead><tr><th scope="col">Version</th>\
                <th scope="col">Saved (UTC)</th><th scope="col">Template</th><th scope="col"></th></tr></thead>\
                <tbody>\(rows)</tbody></table></div>
                """)
        }
        guard !sections.isEmpty else { return HTML() }
        return "<section><h2>Prompt versions</h2>\(sections)</section>"
    }

    private static func keys(_ context: AdminContext, id: String) throws -> HTML {
        let keys = try KeyStore(context.db).list(tenant: id)
        let rows = keys.map { key -> HTML in
            let state: HTML =
                key.revokedAt.map { "revoked \(Layout.time($0 * 1000))" }
                    ?? """
                    <form method="post" action="/admin/tenants/\(id)/keys/revoke" class="inline">\(Layout.csrf(context.session))\
                    <input type="hidden" name="key_id" value="\(key.id)"><button type="submit">Revoke</button></form>
                    """
            return """
                <tr><td><code>\(key.id)</code></td><td>\(key.name)</td><td><code>\(key.prefix)…</code></td>\
                <td>\(Layout.time(key.createdAt * 1000))</td><td>\(key.lastUsedAt.map { Layout.time($0 * 1000) } ?? "never")</td>\
                <td>\(state)</td></tr>
                """
        }
        return """
            <section><h2>API keys</h2><div class="scroll"><table><thead><tr><th scope="col">Id</th><th scope="col">Name</th>\
            <th scope="col">Starts with</th><th scope="col">Created (UTC)</th><th scope="col">Last used</th><th scope="col"></th></tr>\
            </thead><tbody>\(rows)</tbody></table></div>
            <form method="post" action="/admin/tenants/\(id)/keys" class="inline">\(Layout.csrf(context.session))\
            <input type="hidden" name="_once" value="\(Crypto.hex((try? Crypto.randomBytes(16)) ?? []))">\
            \(Layout.field("key_name", label: "New key name", values: [:], errors: [:]))<button type="submit">Create key</button></form>
            </section>
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

    /// POST/redirect/GET: the form's single-use token makes a reload create nothing; the new key waits,
    /// sealed under the cookie's key, for the page the redirect shows (once, within 5 minutes).
    static func createKey(_ context: AdminContext, tenant id: String) throws -> AdminReply {
        let form = try context.form()
        let name = String((form.text("key_name") ?? "").prefix(200))
        guard try ConfigStore(context.db).loadState().tenants[id] != nil else { throw AdminProblem.notFound }
        guard let once = form.text("_once"), once.utf8.count == 32, Crypto.unhex(once) != nil else {
            throw AdminProblem.badForm("This form is out of date: reload the page and try again.")
        }
        let admin = context.admin
        let key: (id: String, secret: String)
        do {
            key = try KeyStore(context.db).create(tenant: id, name: name) { keyID in
                try admin.takeOnce(once, nowMs: context.nowMs)
                try admin.audit(
                    user: context.user, address: context.address, action: "key_create", target: id, before: nil,
                    after: JSONValue.object([("key_id", .string(keyID)), ("name", .string(name))]).jsonString,
                    atMs: context.nowMs)
            }
        } catch is AdminStore.FormAlreadyUsed {
            return .redirect("/admin/tenants/\(id)?done=keyonce")
        }
        let opener = try admin.keepNewKey(tenant: id, keyID: key.id, secret: key.secret, nowMs: context.nowMs)
        return .redirect(
            "/admin/tenants/\(id)?done=keycreated#newkey",
            headers: [
                (
                    "Set-Cookie",
                    "\(newKeyCookie)=\(opener); Path=/admin/tenants/\(id); HttpOnly; Secure; SameSite=Strict; Max-Age=300"
                )
            ])
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
        // Only a key of this tenant: the URL's tenant scopes the action.
        guard try keys.list(tenant: id).contains(where: { $0.id == keyID && $0.revokedAt == nil }) else {
            throw AdminProblem.notFound
        }
        let admin = context.admin
        try admin.transaction {
            _ = try keys.revoke(id: keyID)
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

/// Create a tenant: id, name and models; the rest is set on its own page.
enum NewTenantPage {
    static func show(_ context: AdminContext, values: [String: String], errors: [String: String], status: Int = 200)
        -> AdminReply
    {
        let catalog = context.config.models.keys.sorted().joined(separator: ", ")
        let body: HTML = """
            <h1>New tenant</h1>
            <form method="post" action="/admin/tenants" class="settings">\(Layout.csrf(context.session))
            \(Layout.field("id", label: "Tenant id", values: values, errors: errors, hint: "Lowercase letters, digits, - and _; at most 63; starts with a letter or digit.", attributes: " required autocomplete=\"off\""))
            \(Layout.field("name", label: "Name", values: values, errors: errors))
            \(Layout.field("models", label: "Allowed models (first is the default)", values: values, errors: errors, hint: "Comma-separated. Catalog: \(catalog)"))
            <button type="submit">Create tenant</button></form>
            """
        return .page(status, Layout.page(title: "New tenant", session: context.session, body: body))
    }

    static func submit(_ context: AdminContext) throws -> AdminReply {
        let form = try context.form()
        let values = TenantForm.values(form)
        let id = form.text("id") ?? ""
        guard TenantID(id) != nil else {
            return show(
                context, values: values,
                errors: ["id": "Use 1–63 of a–z, 0–9, - and _, starting with a letter or digit."],
                status: 422)
        }
        var pairs: [(key: String, value: ConfigNode, line: Int?)] = [
            (key: "name", value: .scalar(form.text("name") ?? id, quoted: true, line: nil), line: nil)
        ]
        let models = TenantForm.list(form["models"] ?? "").map { ConfigNode.scalar($0, quoted: true, line: nil) }
        pairs.append((key: "models", value: .sequence(models, line: nil), line: nil))
        do {
            try TenantPage.apply(context, tenant: id, action: "tenant_create") { current in
                guard current == nil else {
                    throw ConfigError(path: "tenants.\(id)", message: "a tenant with this id already exists", line: nil)
                }
                return try TenantPage.validated(id, .mapping(pairs, line: nil))
            }
        } catch let error as ConfigError {
            let field = TenantForm.field(for: error, tenant: id, fields: ["name", "models"]) ?? "id"
            return show(context, values: values, errors: [field: error.message], status: 422)
        }
        return .redirect("/admin/tenants/\(id)?done=created")
    }
}
