import TenantGateCore
import TenantGateStore

/// The execution log: filters by tenant, status, model and time range; keyset pagination; totals for the
/// filter from the daily rollups.
enum ExecutionsPage {
    static let pageSize = 50

    static func show(_ context: AdminContext) throws -> AdminReply {
        let form = try context.form()
        var filter = ExecutionFilter()
        var errors: [String: String] = [:]
        if let tenant = form.text("tenant") {
            if TenantID(tenant) != nil { filter.tenant = tenant } else { errors["tenant"] = "Not a valid tenant id." }
        }
        switch form.text("status") {
        case nil: break
        case "ok"?, "refused"?, "failed"?: filter.outcome = form.text("status")
        case let code?:
            if let n = Int(code), (100...599).contains(n) {
                filter.status = n
            } else {
                errors["status"] = "Use ok, refused, failed or an HTTP status code."
            }
        }
        if let model = form.text("model") { filter.model = String(model.prefix(256)) }
        let from = form.text("from")
        let to = form.text("to")
        if let from {
            if let day = day(from) {
                filter.fromMs = Int64(day) * 86_400_000
            } else {
                errors["from"] = "Use YYYY-MM-DD."
            }
        }
        if let to {
            if let day = day(to) { filter.toMs = Int64(day + 1) * 86_400_000 } else { errors["to"] = "Use YYYY-MM-DD." }
        }
        if let cursor = form.text("before") {
            let parts = cursor.split(separator: "-")
            if parts.count == 2, let at = Int64(parts[0]), let id = Int64(parts[1]) { filter.before = (at, id) }
        }
        let (rows, scannedTo) = errors.isEmpty ? try context.admin.executions(filter, limit: pageSize) : ([], nil)
        var values: [String: String] = [:]
        for name in ["tenant", "status", "model", "from", "to"] { values[name] = form[name] ?? "" }

        // Totals for the whole filter come from the daily rollups (no status filter there).
        let today = Int(context.nowMs / 86_400_000)
        let firstDay = filter.fromMs.map { Int($0 / 86_400_000) } ?? today - 29
        let lastDay = filter.toMs.map { Int($0 / 86_400_000) - 1 } ?? today
        var summary = HTML()
        if errors.isEmpty && filter.status == nil && filter.outcome == nil {
            let fromDay = CivilDate.isoDate(epochSeconds: Int64(firstDay) * 86_400)
            let toDay = CivilDate.isoDate(epochSeconds: Int64(lastDay) * 86_400)
            let totals = try context.admin.rollupTotals(
                tenant: filter.tenant, model: filter.model, fromDay: fromDay, toDay: toDay)
            summary = """
                <p class="summary">\(fromDay) to \(toDay): \(totals.requests) requests, \(totals.refused) refused \
                (limits, budgets, policies, bad requests), \(totals.errors) failed, \
                \(Layout.usd(totals.nano)) spent.</p>
                """
        }
        var next = HTML()
        let cursor = rows.count == pageSize ? rows.last.map { ($0.atMs, $0.id) } : scannedTo
        if let (at, id) = cursor {
            var query = ""
            for name in ["tenant", "status", "model", "from", "to"] {
                if let v = form.text(name) { query += "\(name)=\(percentEncoded(v))&" }
            }
            query += "before=\(at)-\(id)"
            let searched: HTML =
                rows.count < pageSize
                ? "<span class=\"muted\">Searched back to \(Layout.time(at)) UTC. </span>" : HTML()
            next = "<p>\(searched)<a rel=\"next\" href=\"/admin/executions?\(query)\">Older →</a></p>"
        }
        let models = [("", "any")] + context.config.models.keys.sorted().map { ($0, $0) }
        let body: HTML = """
            <h1>Executions</h1>
            <form method="get" action="/admin/executions" class="filters">
            \(Layout.field("tenant", label: "Tenant", values: values, errors: errors))
            \(Layout.field("status", label: "Status", values: values, errors: errors, attributes: " placeholder=\"ok, refused, failed or a code\""))
            \(Layout.select("model", label: "Model", options: models, values: values, errors: errors))
            \(Layout.field("from", label: "From (UTC day)", values: values, errors: errors, type: "date"))
            \(Layout.field("to", label: "To (UTC day)", values: values, errors: errors, type: "date"))
            <button type="submit">Filter</button></form>
            \(summary)\(table(rows, showTenant: true))\(next)
            """
        return .page(errors.isEmpty ? 200 : 400, Layout.page(title: "Executions", session: context.session, body: body))
    }

    /// The execution rows as a table.
    static func table(_ rows: [ExecutionRow], showTenant: Bool) -> HTML {
        guard !rows.isEmpty else { return "<p class=\"muted\">No executions.</p>" }
        let body = rows.map { r -> HTML in
            let tenant: HTML = showTenant ? "<td><a href=\"/admin/tenants/\(r.tenant)\">\(r.tenant)</a></td>" : HTML()
            let flags = (r.streamed ? "stream " : "") + (r.fallbackUsed ? "fallback" : "")
            return """
                <tr class="\(r.status >= 400 ? "err" : "ok")"><td>\(Layout.time(r.atMs))</td>\(tenant)<td>\(r.model)</td>\
                <td class="num">\(r.status)</td><td>\(r.errorCode)</td><td class="num">\(r.latencyMs)</td>\
                <td class="num">\(r.tokensIn)</td><td class="num">\(r.tokensOut)</td>\
                <td class="num">\(Layout.usd(r.costNano))</td><td>\(flags)</td><td><code>\(r.requestID)</code></td></tr>
                """
        }
        let tenantHead: HTML = showTenant ? "<th scope=\"col\">Tenant</th>" : HTML()
        return """
            <div class="scroll"><table class="executions"><thead><tr><th scope="col">Time (UTC)</th>\(tenantHead)\
            <th scope="col">Model</th><th scope="col">Status</th><th scope="col">Error</th><th scope="col">ms</th>\
            <th scope="col">In</th><th scope="col">Out</th><th scope="col">USD</th><th scope="col"></th>\
            <th scope="col">Request id</th></tr></thead><tbody>\(body)</tbody></table></div>
            """
    }

    /// Days since the epoch for `YYYY-MM-DD`.
    static func day(_ text: String) -> Int? {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
            (1970...9999).contains(y), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        return CivilDate.days(year: y, month: m, day: d)
    }

    /// Percent-encodes everything but unreserved characters.
    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 15)])
            }
        }
        return out
    }
}
