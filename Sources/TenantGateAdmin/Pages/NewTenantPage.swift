import TenantGateCore
import TenantGateStore
import TenantGateSystem

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
