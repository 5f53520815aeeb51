import TenantGateCore
import TenantGateStore

/// The tenant settings form: its fields are named by their configuration key path, the submitted form
/// becomes a tenant document validated exactly like `config import`, and a `ConfigError` is shown next
/// to the field its path names.
enum TenantForm {
    static let numberFields = [
        "rate_limit.requests_per_minute", "rate_limit.tokens_per_minute", "budget.daily_usd", "budget.monthly_usd",
        "budget.daily_tokens", "budget.monthly_tokens", "circuit_breaker.errors", "circuit_breaker.within_s",
        "circuit_breaker.cooldown_s", "audit.retention_days",
    ]
    static let choiceFields = ["budget.enforcement", "prompt_mode"]
    /// Keys the form owns: they are replaced by what was submitted; every other key of the tenant is kept.
    static let ownedKeys = [
        "name", "models", "fallbacks", "system_prompt", "prompt_mode", "prompts", "variables", "features",
        "auth_passthrough",
    ]

    /// The tenant document for a submitted form, on top of the tenant's current settings.
    static func document(_ form: Form, current: JSONValue?) -> ConfigNode {
        var base = current ?? .object([])
        for key in ownedKeys { base = base.removing(key) }
        // The policies textarea (a YAML list of rules; JSON is YAML too) owns `policies` when the form has it.
        let policies = form["policies"]
        if policies != nil { base = base.removing("policies") }
        for path in numberFields + ["budget.enforcement"] { base = remove(base, path) }
        var node = ConfigNode(json: base)
        func set(_ path: String, _ value: ConfigNode) {
            node = ConfigNode.setting(node, path.split(separator: "."), value)
        }
        func text(_ s: String) -> ConfigNode { .scalar(s, quoted: true, line: nil) }
        func plain(_ s: String) -> ConfigNode { .scalar(s, quoted: false, line: nil) }

        if let name = form.text("name") { set("name", text(name)) }
        var models = list(form["models"] ?? "")
        // The default model is the first of the allow-list: the chosen one moves to the front.
        if let chosen = form.text("default_model") {
            models.removeAll { $0 == chosen }
            models.insert(chosen, at: 0)
        }
        set("models", .sequence(models.map(text), line: nil))
        var fallbacks: [(key: String, value: ConfigNode, line: Int?)] = []
        for (model, rest) in pairs(form["fallbacks"] ?? "") {
            fallbacks.append((key: model, value: .sequence(list(rest).map(text), line: nil), line: nil))
        }
        if !fallbacks.isEmpty { set("fallbacks", .mapping(fallbacks, line: nil)) }
        if let prompt = form["system_prompt"], !prompt.trimmingASCII().isEmpty { set("system_prompt", text(prompt)) }
        if let mode = form.text("prompt_mode") { set("prompt_mode", plain(mode)) }
        var prompts: [(key: String, value: ConfigNode, line: Int?)] = []
        for (name, value) in form.fields where name.hasPrefix("prompts.") && !value.trimmingASCII().isEmpty {
            prompts.append((key: String(name.dropFirst("prompts.".count)), value: text(value), line: nil))
        }
        if let name = form.text("new_prompt_name"), let value = form["new_prompt_text"], !value.trimmingASCII().isEmpty
        {
            prompts.append((key: name, value: text(value), line: nil))
        }
        if !prompts.isEmpty { set("prompts", .mapping(prompts, line: nil)) }
        let variables = pairs(form["variables"] ?? "").map {
            (key: $0.0, value: text($0.1), line: Int?.none)
        }
        if !variables.isEmpty { set("variables", .mapping(variables, line: nil)) }
        var flags: [(key: String, value: ConfigNode, line: Int?)] = []
        var submitted = form.fields.filter { $0.0.hasPrefix("features.") }.map {
            (String($0.0.dropFirst("features.".count)), $0.1)
        }
        if let name = form.text("new_flag_name") { submitted.append((name, form["new_flag_value"] ?? "")) }
        for (flag, raw) in submitted {
            let value = raw.trimmingASCII().lowercased()
            guard !value.isEmpty else { continue }
            let mapped = value == "on" ? "true" : value == "off" ? "false" : value
            flags.append((key: flag, value: plain(mapped), line: nil))
        }
        if !flags.isEmpty { set("features", .mapping(flags, line: nil)) }
        for path in numberFields {
            if let value = form.text(path) { set(path, plain(value)) }
        }
        if let enforcement = form.text("budget.enforcement") { set("budget.enforcement", plain(enforcement)) }
        if form["auth_passthrough"] == "on" { set("auth_passthrough", plain("true")) }
        if let policies, !policies.trimmingASCII().isEmpty {
            // Not YAML: kept as text, which the schema refuses naming `policies` (shown under the field).
            set("policies", (try? YAMLConfig.parse(policies)) ?? text(policies))
        }
        for (name, value) in form.fields where name.hasPrefix("upstream_keys.") && !value.trimmingASCII().isEmpty {
            set(name, text(value.trimmingASCII()))
        }
        for (name, value) in form.fields where name.hasPrefix("remove_key.") && value == "on" {
            set("upstream_keys." + name.dropFirst("remove_key.".count), plain("null"))
        }
        return node
    }

    /// The form's field values for a tenant's stored settings.
    static func values(_ tenant: JSONValue) -> [String: String] {
        var out: [String: String] = [:]
        out["name"] = tenant["name"]?.stringValue ?? ""
        out["models"] = (tenant["models"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
        out["default_model"] = tenant["models"]?.arrayValue?.first?.stringValue ?? ""
        out["fallbacks"] = (tenant["fallbacks"]?.objectValue ?? []).map { model, chain in
            "\(model): " + (chain.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
        }.joined(separator: "\n")
        out["system_prompt"] = tenant["system_prompt"]?.stringValue ?? ""
        out["policies"] =
            (tenant["policies"]?.arrayValue).map { rules in rules.isEmpty ? "" : YAMLConfig.render(list: rules) } ?? ""
        out["prompt_mode"] = tenant["prompt_mode"]?.stringValue ?? ""
        for (name, value) in tenant["prompts"]?.objectValue ?? [] { out["prompts.\(name)"] = value.stringValue ?? "" }
        out["variables"] = (tenant["variables"]?.objectValue ?? []).map { "\($0): \($1.stringValue ?? "")" }
            .joined(separator: "\n")
        for (flag, value) in tenant["features"]?.objectValue ?? [] {
            if let b = value.boolValue {
                out["features.\(flag)"] = b ? "on" : "off"
            } else if let n = value.intValue {
                out["features.\(flag)"] = String(n)
            }
        }
        for path in numberFields {
            if case .number(let n)? = lookup(tenant, path) { out[path] = n }
        }
        out["budget.enforcement"] = tenant["budget"]?["enforcement"]?.stringValue ?? ""
        out["auth_passthrough"] = tenant["auth_passthrough"]?.boolValue == true ? "on" : ""
        return out
    }

    /// The values of a submitted form, to show again next to its errors.
    static func values(_ form: Form) -> [String: String] {
        var out: [String: String] = [:]
        for (name, value) in form.fields where out[name] == nil && !name.hasPrefix("upstream_keys.") {
            out[name] = value
        }
        return out
    }

    /// The form field a configuration error belongs to (the longest field name its path starts with).
    static func field(for error: ConfigError, tenant: String, fields: [String]) -> String? {
        let prefix = "tenants.\(tenant)."
        guard error.path.hasPrefix(prefix) else { return nil }
        let path = String(error.path.dropFirst(prefix.count))
        return fields.filter { path == $0 || path.hasPrefix($0 + ".") || path.hasPrefix($0 + "[") }.max {
            $0.count < $1.count
        }
    }

    /// Items separated by commas or line breaks.
    static func list(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == "\r\n" }).map { String($0).trimmingASCII() }
            .filter { !$0.isEmpty }
    }

    /// `key: value` lines.
    static func pairs(_ text: String) -> [(String, String)] {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).compactMap { line in
            guard let colon = line.firstIndex(of: ":") else {
                let key = String(line).trimmingASCII()
                return key.isEmpty ? nil : (key, "")
            }
            let key = String(line[..<colon]).trimmingASCII()
            return key.isEmpty ? nil : (key, String(line[line.index(after: colon)...]).trimmingASCII())
        }
    }

    private static func lookup(_ json: JSONValue, _ path: String) -> JSONValue? {
        var node: JSONValue? = json
        for part in path.split(separator: ".") { node = node?[String(part)] }
        return node
    }

    private static func remove(_ json: JSONValue, _ path: String) -> JSONValue {
        let parts = path.split(separator: ".").map(String.init)
        guard parts.count == 2, let inner = json[parts[0]] else { return json.removing(path) }
        let rest = inner.removing(parts[1])
        return (rest.objectValue ?? []).isEmpty ? json.removing(parts[0]) : json.setting(parts[0], rest)
    }
}

extension ConfigNode {
    /// A copy with the mapping entry at `path` set to `value` (intermediate mappings created as needed).
    static func setting(_ node: ConfigNode, _ path: [Substring], _ value: ConfigNode) -> ConfigNode {
        guard let head = path.first else { return value }
        var entries: [(key: String, value: ConfigNode, line: Int?)] = []
        if case .mapping(let existing, _) = node { entries = existing }
        let key = String(head)
        if let i = entries.firstIndex(where: { $0.key == key }) {
            entries[i].value = setting(entries[i].value, Array(path.dropFirst()), value)
        } else {
            entries.append(
                (key: key, value: setting(.mapping([], line: nil), Array(path.dropFirst()), value), line: nil))
        }
        return .mapping(entries, line: nil)
    }
}
