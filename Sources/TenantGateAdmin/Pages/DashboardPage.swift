import TenantGateCore
import TenantGateStore

/// Every tenant's spend against its budgets, requests and error rate over 24 h, top spenders, and daily
/// spend over 30 days: all from the rollups and the worker's configuration snapshot.
enum DashboardPage {
    static func show(_ context: AdminContext) throws -> AdminReply {
        let (activity, daily) = try context.admin.activity(nowMs: context.nowMs, days: 30)
        let tenants = context.config.tenants.values.sorted { $0.id.rawValue < $1.id.rawValue }
        var totalToday: Int64 = 0
        var totalMonth: Int64 = 0
        var requests: Int64 = 0
        var errors: Int64 = 0
        for a in activity.values {
            totalToday += a.todayNano
            totalMonth += a.monthNano
            requests += a.requests24h
            errors += a.errors24h
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
            let rate =
                a.requests24h > 0
                ? "\(a.errors24h * 1000 / a.requests24h / 10).\(a.errors24h * 1000 / a.requests24h % 10) %" : "–"
            rows.append(
                """
                <tr><td><a href="/admin/tenants/\(id)">\(id)</a></td><td>\(tenant.name)</td>\
                <td>\(Layout.meter(used: a.todayNano, limit: tenant.limits.dailyNano))</td>\
                <td>\(Layout.meter(used: a.monthNano, limit: tenant.limits.monthlyNano))</td>\
                <td class="num">\(a.requests24h)</td><td class="num">\(rate)</td></tr>
                """)
        }
        let errorRate = requests > 0 ? "\(errors * 1000 / requests / 10).\(errors * 1000 / requests % 10) %" : "–"
        let body: HTML = """
            <h1>Dashboard</h1>
            <section class="cards" aria-label="Totals">
            <div class="card"><h2>Tenants</h2><p>\(tenants.count)</p></div>
            <div class="card"><h2>Spend today</h2><p>\(Layout.usd(totalToday))</p></div>
            <div class="card"><h2>Spend this month</h2><p>\(Layout.usd(totalMonth))</p></div>
            <div class="card"><h2>Requests, 24 h</h2><p>\(requests)</p></div>
            <div class="card"><h2>Error rate, 24 h</h2><p>\(errorRate)</p></div>
            </section>
            \(Chart.dailySpend(daily.map { (day: $0.0, nano: $0.1) }, label: "Daily spend, all tenants, last 30 days (UTC)"))
            <section><h2>Top spenders this month</h2>\
            \(topRows.isEmpty ? "<p class=\"muted\">No spend yet this month.</p>" as HTML : "<ol class=\"top\">\(topRows)</ol>")</section>
            <section><h2>Tenants</h2><div class="scroll"><table><thead><tr><th scope="col">Tenant</th>\
            <th scope="col">Name</th><th scope="col">Today vs daily budget</th><th scope="col">Month vs monthly budget</th>\
            <th scope="col">Requests 24 h</th><th scope="col">Errors 24 h</th></tr></thead><tbody>\(rows)</tbody></table></div>
            </section>
            """
        return .page(200, Layout.page(title: "Dashboard", session: context.session, body: body))
    }
}
