import TenantGateCore
import TenantGateStore

/// Every tenant's spend against its budgets, requests and error rate over 24 h, top spenders, and daily
/// spend over 30 days: all from the rollups and the worker's configuration snapshot.
enum DashboardPage {
    static func show(_ context: AdminContext) throws -> AdminReply {
        let (activity, daily) = try context.admin.activity(nowMs: context.nowMs, days: 30)
        let held = try AccountingStore(context.db).heldByTenant(nowMs: context.nowMs)
        let tenants = context.config.tenants.values.sorted { $0.id.rawValue < $1.id.rawValue }
        var totalToday: Int64 = 0
        var totalMonth: Int64 = 0
        var requests: Int64 = 0
        var errors: Int64 = 0
        var refused: Int64 = 0
        for a in activity.values {
            totalToday += a.todayNano
            totalMonth += a.monthNano
            requests += a.requests24h
            errors += a.errors24h
            refused += a.refused24h
        }
        let top = activity.filter { $0.value.monthNano > 0 }.sorted {
            ($0.value.monthNano, $1.key) > ($1.value.monthNano, $0.key)
        }.prefix(10)
        let topRows = top.map { id, a -> HTML in
            "<li><a href=\"/admin/tenants/\(id)\">\(id)</a> <span>\(Layout.usd(a.monthNano))</span></li>"
        }
        var rows: [HTML] = []
        rows.reserveCapacity(tenants.count)
        for tenant in tenants {
            let id = tenant.id.rawValue
            let a = activity[id] ?? TenantActivity()
            let h = held[id] ?? (0, 0)
            rows.append(
                """
                <tr><td><a href="/admin/tenants/\(id)">\(id)</a></td><td>\(tenant.name)</td>\
                <td>\(Layout.meter(used: a.todayNano, held: h.day, limit: tenant.limits.dailyNano))</td>\
                <td>\(Layout.meter(used: a.monthNano, held: h.month, limit: tenant.limits.monthlyNano))</td>\
                <td class="num">\(a.requests24h)</td><td class="num">\(a.refused24h)</td>\
                <td class="num">\(percent(a.errors24h, of: a.requests24h))</td></tr>
                """)
        }
        let errorRate = percent(errors, of: requests)
        let body: HTML = """
            <h1>Dashboard</h1>
            <section class="cards" aria-label="Totals">
            <div class="card"><h2>Tenants</h2><p>\(tenants.count)</p></div>
            <div class="card"><h2>Spend today</h2><p>\(Layout.usd(totalToday))</p></div>
            <div class="card"><h2>Spend this month</h2><p>\(Layout.usd(totalMonth))</p></div>
            <div class="card"><h2>Requests, 24 h</h2><p>\(requests)</p></div>
            <div class="card"><h2>Refused, 24 h</h2><p>\(refused) <small>limits, budgets, policies, bad requests</small></p></div>
            <div class="card"><h2>Failure rate, 24 h</h2><p>\(errorRate) <small>5xx: upstream errors, timeouts</small></p></div>
            </section>
            \(Chart.dailySpend(daily.map { (day: $0.0, nano: $0.1) }, label: "Daily spend, all tenants, last 30 days (UTC)"))
            <section><h2>Top spenders this month</h2>\
            \(topRows.isEmpty ? "<p class=\"muted\">No spend yet this month.</p>" as HTML : "<ol class=\"top\">\(topRows)</ol>")</section>
            <section><h2>Tenants</h2><div class="scroll"><table><thead><tr><th scope="col">Tenant</th>\
            <th scope="col">Name</th><th scope="col">Today vs daily budget</th><th scope="col">Month vs monthly budget</th>\
            <th scope="col">Requests 24 h</th><th scope="col">Refused 24 h</th><th scope="col">Failure rate 24 h</th></tr></thead><tbody>\(rows)</tbody></table></div>
            </section>
            """
        return .page(200, Layout.page(title: "Dashboard", session: context.session, body: body))
    }

    /// `12.5 %` of `total` (one decimal), `–` when there is nothing to count.
    static func percent(_ part: Int64, of total: Int64) -> String {
        total > 0 ? "\(part * 1000 / total / 10).\(part * 1000 / total % 10) %" : "–"
    }
}
