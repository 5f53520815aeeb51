import TenantGateCore
import TenantGateStore
import TenantGateSystem

extension TenantPage {
    /// The tenant's budgets: spent, held by requests in flight, left, and when each resets.
    static func budgets(_ context: AdminContext, id: String) throws -> HTML {
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
    static func storage(_ context: AdminContext, id: String) throws -> HTML {
        guard let tenant = context.config.tenants[id] else { return HTML() }
        let used = try StorageUsage(context.db).bytes(tenant: id)
        let quota = tenant.storageQuotaBytes
        let percent = quota > 0 ? min(100, used.saturatingMultiply(100) / quota) : 100
        return """
            <section id="storage"><h2>Storage</h2><table><tbody>            <tr><th scope="row">Stored</th><td>\(String(used / 1024)) KiB of \(String(quota >> 20)) MiB             (\(String(percent)) %; limits.storage_mb)</td></tr>            </tbody></table></section>
            """
    }

    /// The tenant's cache: entries, hit rate and saved USD over 24 hours, and a purge button.
    static func cache(_ context: AdminContext, id: String) throws -> HTML {
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
    static func documents(_ context: AdminContext, id: String) throws -> HTML {
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
    static func policies(_ context: AdminContext, id: String) throws -> HTML {
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

    static func promptHistory(_ context: AdminContext, store: ConfigStore, id: String, tenant: JSONValue)
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

    static func keys(_ context: AdminContext, id: String) throws -> HTML {
        let keys = try KeyStore(context.db).list(tenant: id)
        let spend = try KeyStore(context.db).spend(tenant: id, day: Periods(epochMs: context.nowMs).day)
        let rows = keys.map { key -> HTML in
            let spent = spend[key.id] ?? (0, 0)
            let expired = key.revokedAt == nil && (key.expiresAt.map { $0 * 1000 <= context.nowMs } ?? false)
            // An expired key can still be revoked (`key set --expires` could revive it).
            let revoke: HTML = """
                <form method="post" action="/admin/tenants/\(id)/keys/revoke" class="inline">\(Layout.csrf(context.session))\
                <input type="hidden" name="key_id" value="\(key.id)"><button type="submit">Revoke</button></form>
                """
            let state: HTML =
                key.revokedAt.map { "revoked \(Layout.time($0 * 1000))" } ?? (expired ? "expired \(revoke)" : revoke)
            return """
                <tr><td><code>\(key.id)</code></td><td>\(key.name)</td><td><code>\(key.prefix)…</code></td>\
                <td>\(Layout.time(key.createdAt * 1000))</td><td>\(key.lastUsedAt.map { Layout.time($0 * 1000) } ?? "never")</td>\
                <td>\(key.expiresAt.map { Layout.time($0 * 1000) } ?? "never")</td>\
                <td>\(key.models.map { $0.joined(separator: ", ") } ?? "all")</td>\
                <td>\(Money.display(nano: spent.day)) / \(Money.display(nano: spent.month))</td><td>\(state)</td></tr>
                """
        }
        return """
            <section><h2>API keys</h2><div class="scroll"><table><thead><tr><th scope="col">Id</th><th scope="col">Name</th>\
            <th scope="col">Starts with</th><th scope="col">Created (UTC)</th><th scope="col">Last used</th>\
            <th scope="col">Expires</th><th scope="col">Models</th><th scope="col">Spent today / month (UTC)</th>\
            <th scope="col"></th></tr>\
            </thead><tbody>\(rows)</tbody></table></div>
            <form method="post" action="/admin/tenants/\(id)/keys" class="inline">\(Layout.csrf(context.session))\
            <input type="hidden" name="_once" value="\(Crypto.hex((try? Crypto.randomBytes(16)) ?? []))">\
            \(Layout.field("key_name", label: "New key name", values: [:], errors: [:]))\
            \(Layout.field("key_models", label: "Models (comma-separated; empty: all)", values: [:], errors: [:]))\
            \(Layout.field("key_expires", label: "Expires (YYYY-MM-DD; empty: never)", values: [:], errors: [:]))\
            <button type="submit">Create key</button></form>
            </section>
            """
    }
}
