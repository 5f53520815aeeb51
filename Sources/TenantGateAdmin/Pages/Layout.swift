import TenantGateCore
import TenantGateStore

/// The page frame, and small formatting helpers shared by the pages.
enum Layout {
    /// A whole page: head, navigation (with the logout form when logged in), main content.
    static func page(title: String, session: AdminSession?, body: HTML, flash: String? = nil) -> HTML {
        var nav = HTML()
        if let session {
            nav = """
                <nav aria-label="Main"><a href="/admin/">Dashboard</a> <a href="/admin/tenants/new">New tenant</a> \
                <a href="/admin/executions">Executions</a> <a href="/admin/catalog">Catalog</a> \
                <a href="/admin/audit">Audit log</a></nav>
                <form method="post" action="/admin/logout" class="logout">\(csrf(session))\
                <button type="submit">Log out \(session.user)</button></form>
                """
        }
        let notice: HTML = flash.map { "<p class=\"flash\" role=\"status\">\($0)</p>" } ?? HTML()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(title) · TenantGate admin</title>
            <link rel="stylesheet" href="/static/admin.css"></head>
            <body><header class="top"><a class="brand" href="/admin/">TenantGate</a>\(nav)</header>
            <main id="main">\(notice)\(body)</main></body></html>
            """
    }

    /// The hidden CSRF field every state-changing form carries.
    static func csrf(_ session: AdminSession?) -> HTML {
        "<input type=\"hidden\" name=\"_csrf\" value=\"\(session?.csrf ?? "")\">"
    }

    /// USD from nano-USD, as everywhere (`Money.display`: `$0.0500`, more decimals only below a cent).
    static func usd(_ nano: Int64) -> String { Money.display(nano: nano) }

    /// `2026-11-22 14:03:07` (UTC) from epoch ms.
    static func time(_ ms: Int64) -> String { CivilDate.dateTime(epochMs: ms) }

    /// A labelled text input with its error (if any) right below it.
    static func field(
        _ name: String, label: String, values: [String: String], errors: [String: String], type: String = "text",
        hint: String? = nil, attributes: HTML = HTML()
    ) -> HTML {
        let id = "f-" + name.replacingDots
        let error = errors[name]
        let describedBy: HTML = error != nil ? " aria-describedby=\"\(id)-error\" aria-invalid=\"true\"" : HTML()
        return """
            <div class="field\(error != nil ? " invalid" : "")"><label for="\(id)">\(label)</label>\
            <input type="\(type)" id="\(id)" name="\(name)" value="\(values[name] ?? "")"\(describedBy)\(attributes)>\
            \(hint.map { "<small>\($0)</small>" as HTML } ?? HTML())\(errorText(id, error))</div>
            """
    }

    /// A labelled textarea.
    static func textarea(
        _ name: String, label: String, values: [String: String], errors: [String: String], rows: Int = 3,
        hint: String? = nil
    ) -> HTML {
        let id = "f-" + name.replacingDots
        let error = errors[name]
        return """
            <div class="field wide\(error != nil ? " invalid" : "")"><label for="\(id)">\(label)</label>\
            <textarea id="\(id)" name="\(name)" rows="\(rows)"\(error != nil ? " aria-invalid=\"true\"" as HTML : HTML())>\
            \(values[name] ?? "")</textarea>\(hint.map { "<small>\($0)</small>" as HTML } ?? HTML())\(errorText(id, error))</div>
            """
    }

    /// A labelled select; `options` are (value, label).
    static func select(
        _ name: String, label: String, options: [(String, String)], values: [String: String], errors: [String: String]
    ) -> HTML {
        let id = "f-" + name.replacingDots
        let current = values[name] ?? ""
        let list = options.map { value, text -> HTML in
            "<option value=\"\(value)\"\(value == current ? " selected" as HTML : HTML())>\(text)</option>"
        }
        return """
            <div class="field\(errors[name] != nil ? " invalid" : "")"><label for="\(id)">\(label)</label>\
            <select id="\(id)" name="\(name)">\(list)</select>\(errorText(id, errors[name]))</div>
            """
    }

    private static func errorText(_ id: String, _ error: String?) -> HTML {
        guard let error else { return HTML() }
        return "<p class=\"error\" id=\"\(id)-error\">\(error)</p>"
    }

    /// A budget bar: a native `<meter>` (no inline style, so the CSP holds) with its figures as text.
    /// A budget meter: spent (settled) and held (worst cases in flight) against the limit, and what is left.
    static func meter(used: Int64, held: Int64 = 0, limit: Int64?, tokens: Bool = false) -> HTML {
        func amount(_ v: Int64) -> String { tokens ? "\(v) tokens" : usd(v) }
        let heldText: HTML = held > 0 ? " + \(amount(held)) held" : HTML()
        guard let limit, limit > 0 else { return "<span class=\"muted\">\(amount(used))\(heldText)</span>" }
        let shown = min(used.saturatingAdd(held), limit)
        let left = max(0, limit - used - held)
        return """
            <meter min="0" max="\(limit)" low="\(limit / 2)" high="\(limit * 4 / 5)" optimum="0" value="\(shown)">\
            </meter> <span>\(amount(used)) spent\(heldText) of \(amount(limit)); \(amount(left)) left</span>
            """
    }
}

extension String {
    var replacingDots: String { String(map { $0 == "." ? "-" : $0 }) }
}
