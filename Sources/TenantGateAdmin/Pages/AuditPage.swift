import TenantGateCore
import TenantGateStore

/// Who changed what and when, with the settings before and after (upstream keys appear only as masked
/// references; key secrets are never recorded).
enum AuditPage {
    static let pageSize = 50

    static func show(_ context: AdminContext) throws -> AdminReply {
        let form = try context.form()
        let target = form.text("target").flatMap { TenantID($0) != nil ? $0 : nil }
        let before = form.text("before").flatMap { Int64($0) }
        let entries = try context.admin.auditEntries(target: target, beforeID: before, limit: pageSize)
        let rows = entries.map { e -> HTML in
            """
            <tr><td>\(Layout.time(e.atMs))</td><td>\(e.user)</td><td>\(e.address)</td><td>\(e.action)</td>\
            <td>\(e.target.isEmpty ? "" as HTML : "<a href=\"/admin/tenants/\(e.target)\">\(e.target)</a>")</td>\
            <td>\(change(e))</td></tr>
            """
        }
        var next = HTML()
        if entries.count == pageSize, let last = entries.last {
            let scope = target.map { "target=\($0)&" } ?? ""
            next = "<p><a rel=\"next\" href=\"/admin/audit?\(scope)before=\(last.id)\">Older →</a></p>"
        }
        // The tamper-evident chain of the tenant shown (or of the system): its length and whether it verifies.
        let chainName = target ?? AuditChain.system
        var chainStatus = HTML()
        if let chain = try? AuditChain(context.db) {
            let length = (try? chain.events(tenant: chainName).count) ?? 0
            let faults = (try? chain.verify(tenant: chainName)) ?? []
            chainStatus =
                faults.isEmpty
                ? "<p class=\"ok\">Audit chain <code>\(chainName)</code>: \(String(length)) events, verified (key check \(chain.keyCheck)).</p>"
                : "<p class=\"error\" role=\"alert\">Audit chain <code>\(chainName)</code> does not verify: \(faults[0].description)</p>"
        }
        let body: HTML = """
            <h1>Audit log\(target.map { " of \($0)" } ?? "")</h1>\(chainStatus)
            <div class="scroll"><table class="audit"><thead><tr><th scope="col">Time (UTC)</th><th scope="col">User</th>\
            <th scope="col">Address</th><th scope="col">Action</th><th scope="col">Tenant</th><th scope="col">Change</th>\
            </tr></thead><tbody>\(rows)</tbody></table></div>\(next)
            """
        return .page(200, Layout.page(title: "Audit log", session: context.session, body: body))
    }

    /// The keys that changed, with their values before and after.
    static func change(_ entry: AuditEntry) -> HTML {
        let before = entry.before.flatMap { try? JSONParser.parse($0) }
        let after = entry.after.flatMap { try? JSONParser.parse($0) }
        var keys: [String] = []
        for (k, _) in (before?.objectValue ?? []) + (after?.objectValue ?? []) where !keys.contains(k) {
            keys.append(k)
        }
        let lines = keys.compactMap { key -> HTML? in
            let old = before?[key]
            let new = after?[key]
            guard old != new else { return nil }
            return """
                <li><code>\(key)</code>: <del>\(old.map { String($0.jsonString.prefix(500)) } ?? "—")</del> → \
                <ins>\(new.map { String($0.jsonString.prefix(500)) } ?? "—")</ins></li>
                """
        }
        return lines.isEmpty ? HTML() : "<ul class=\"diff\">\(lines)</ul>"
    }
}
