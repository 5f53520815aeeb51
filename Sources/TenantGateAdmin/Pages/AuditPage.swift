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
            <td>\(AuditPage.target(e.target, context))</td>\
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
                ? "<p class=\"ok\">Audit chain <code>\(chainName)</code>: \(String(length)) events (changes, and each request's policy triggers and refusals), verified (key check \(chain.keyCheck)).</p>"
                : "<p class=\"error\" role=\"alert\">Audit chain <code>\(chainName)</code> does not verify: \(faults[0].description)</p>"
        }
        let body: HTML = """
            <h1>Audit log\(target.map { " of \($0)" } ?? "")</h1>\(chainStatus)
            <p class="muted">Below: changes made by operators and the CLI, newest first\(entries.count == pageSize ? " (\(pageSize) a page)" : ": \(entries.count)").</p>
            <div class="scroll"><table class="audit"><thead><tr><th scope="col">Time (UTC)</th><th scope="col">User</th>\
            <th scope="col">Address</th><th scope="col">Action</th><th scope="col">Tenant</th><th scope="col">Change</th>\
            </tr></thead><tbody>\(rows)</tbody></table></div>\(next)
            """
        return .page(200, Layout.page(title: "Audit log", session: context.session, body: body))
    }

    /// A tenant's id links to its page; any other target (an admin user's name) is plain text.
    static func target(_ target: String, _ context: AdminContext) -> HTML {
        guard !target.isEmpty else { return HTML() }
        guard context.config.tenants[target] != nil else { return "\(target)" }
        return "<a href=\"/admin/tenants/\(target)\">\(target)</a>"
    }

    /// What changed, leaf by leaf (`models.gpt-4o.input_per_mtok: 0.15 → 0.2`, not the whole catalog
    /// twice), with the values before and after; at most 40 lines.
    static func change(_ entry: AuditEntry) -> HTML {
        let before = entry.before.flatMap { try? JSONParser.parse($0) }
        let after = entry.after.flatMap { try? JSONParser.parse($0) }
        var changes: [(String, JSONValue?, JSONValue?)] = []
        diff(before, after, path: "", into: &changes)
        let lines = changes.prefix(40).map { path, old, new -> HTML in
            """
            <li><code>\(path)</code>: <del>\(old.map { String($0.jsonString.prefix(500)) } ?? "—")</del> → \
            <ins>\(new.map { String($0.jsonString.prefix(500)) } ?? "—")</ins></li>
            """
        }
        let more: HTML = changes.count > 40 ? "<li>… and more</li>" : HTML()
        return lines.isEmpty ? HTML() : "<ul class=\"diff\">\(lines)\(more)</ul>"
    }

    /// The paths where `old` and `new` differ: into objects on both sides, else the value whole.
    static func diff(
        _ old: JSONValue?, _ new: JSONValue?, path: String, into out: inout [(String, JSONValue?, JSONValue?)]
    ) {
        guard old != new, out.count <= 40 else { return }
        if let a = old?.objectValue, let b = new?.objectValue {
            var keys: [String] = []
            for (k, _) in a + b where !keys.contains(k) { keys.append(k) }
            for key in keys {
                diff(old?[key], new?[key], path: path.isEmpty ? key : "\(path).\(key)", into: &out)
            }
            return
        }
        if old == nil, let b = new?.objectValue, !b.isEmpty, !path.isEmpty {
            out.append((path, nil, new))  // added whole
            return
        }
        out.append((path.isEmpty ? "(value)" : path, old, new))
    }
}
