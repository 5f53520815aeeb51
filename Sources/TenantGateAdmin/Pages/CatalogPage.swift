import TenantGateCore
import TenantGateSystem

/// The catalog the workers serve with: backends (provider, address, where their key comes from and
/// whether it is set here) and models (backend, upstream name, prices, caps), and which tenants use each.
enum CatalogPage {
    static func show(_ context: AdminContext) -> AdminReply {
        let config = context.config
        var users: [String: [String]] = [:]
        for tenant in config.tenants.values {
            for model in tenant.models { users[model, default: []].append(tenant.id.rawValue) }
        }
        let missing = Set(config.missingBackendKeys(env: Posix.env).map(\.backend))
        let backends = config.backends.values.sorted { $0.name < $1.name }.map { b -> HTML in
            let key: HTML
            if let variable = b.apiKeyEnv {
                key =
                    missing.contains(b.name)
                    ? "<code>\(variable)</code> <strong class=\"error\">not set: calls are refused</strong>"
                    : "<code>\(variable)</code>"
            } else {
                key = b.provider == .mock ? "built in" : "none (keyless)"
            }
            return """
                <tr><td><code>\(b.name)</code></td><td>\(b.provider.rawValue)</td>\
                <td>\(b.provider == .mock ? "in process" : b.baseURL)</td><td>\(key)</td>\
                <td class="num">\(String(b.timeoutMs)) ms</td><td class="num">\(String(b.maxRetries))</td></tr>
                """
        }
        let models = config.models.values.sorted { $0.name < $1.name }.map { m -> HTML in
            let tenants = (users[m.name] ?? []).sorted()
            let shown = tenants.prefix(8).joined(separator: ", ") + (tenants.count > 8 ? ", …" : "")
            return """
                <tr><td><code>\(m.name)</code></td><td><code>\(m.backend)</code></td><td>\(m.upstreamModel)</td>\
                <td class="num">\(price(m.inputPerMTok))</td><td class="num">\(price(m.outputPerMTok))</td>\
                <td class="num">\(m.maxTokens.map(String.init) ?? "–")</td>\
                <td>\(tenants.isEmpty ? "<span class=\"muted\">none</span>" as HTML : "\(String(tenants.count)): \(shown)")</td></tr>
                """
        }
        let body: HTML = """
            <h1>Catalog</h1><p class="muted">What every worker serves with now (changed with <code>tenantgate config import</code>).</p>
            <section><h2>Backends</h2><div class="scroll"><table><thead><tr><th scope="col">Backend</th>\
            <th scope="col">Provider</th><th scope="col">Address</th><th scope="col">Key</th><th scope="col">Timeout</th>\
            <th scope="col">Retries</th></tr></thead><tbody>\(backends)</tbody></table></div></section>
            <section><h2>Models</h2><div class="scroll"><table><thead><tr><th scope="col">Model</th>\
            <th scope="col">Backend</th><th scope="col">Upstream model</th><th scope="col">Input, $/Mtok</th>\
            <th scope="col">Output, $/Mtok</th><th scope="col">Max tokens</th><th scope="col">Tenants</th></tr></thead>\
            <tbody>\(models)</tbody></table></div></section>
            """
        return .page(200, Layout.page(title: "Catalog", session: context.session, body: body))
    }

    /// A price per million tokens as configured (`0.15`), or – when free.
    static func price(_ perMTok: Double) -> String {
        perMTok == 0 ? "–" : String(Money.display(nano: Money.nano(usd: perMTok)).dropFirst())
    }
}
