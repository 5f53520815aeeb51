/// A compiled system-prompt template: literal text and `{{variable}}` references, checked when saved.
public struct PromptTemplate: Sendable, Equatable {
    /// One piece of a template.
    public enum Segment: Sendable, Equatable {
        case text(String)
        case variable(String)
    }

    /// The template's pieces in order.
    public let segments: [Segment]
    /// The source text.
    public let source: String

    /// Variables every template may use.
    public static let builtins: Set<String> = ["tenant.id", "tenant.name", "model", "date", "user"]
    /// Largest template accepted, in bytes.
    public static let maxBytes = 32_768

    /// Why a template was refused.
    public struct Invalid: Error, Equatable, Sendable {
        public let message: String
    }

    /// Compiles `source`; `variables` are the tenant's own variable names.
    public init(_ source: String, variables: Set<String>) throws(Invalid) {
        guard source.utf8.count <= PromptTemplate.maxBytes else {
            throw Invalid(message: "template is larger than \(PromptTemplate.maxBytes) bytes")
        }
        var segments: [Segment] = []
        var rest = Substring(source)
        while let open = rest.firstRange(of: "{{") {
            let before = rest[..<open.lowerBound]
            if before.contains("}}") { throw Invalid(message: "'}}' without a matching '{{'") }
            if !before.isEmpty { segments.append(.text(String(before))) }
            let afterOpen = rest[open.upperBound...]
            guard let close = afterOpen.firstRange(of: "}}") else { throw Invalid(message: "'{{' is never closed") }
            let inner = afterOpen[..<close.lowerBound]
            if inner.contains("{") || inner.contains("}") {
                throw Invalid(message: "nested braces inside '{{…}}' are not allowed")
            }
            let name = String(inner.filter { $0 != " " })
            guard PromptTemplate.builtins.contains(name) || variables.contains(name) else {
                let known = (PromptTemplate.builtins.union(variables)).sorted().joined(separator: ", ")
                throw Invalid(message: "unknown variable '{{\(name.prefix(64))}}' (known: \(known))")
            }
            segments.append(.variable(name))
            rest = afterOpen[close.upperBound...]
        }
        if rest.contains("}}") { throw Invalid(message: "'}}' without a matching '{{'") }
        if !rest.isEmpty { segments.append(.text(String(rest))) }
        self.segments = segments
        self.source = source
    }

    /// Renders with `values` (a missing value renders empty).
    public func render(_ values: [String: String]) -> String {
        var out = ""
        out.reserveCapacity(source.utf8.count + 64)
        for segment in segments {
            switch segment {
            case .text(let t): out += t
            case .variable(let name): out += values[name] ?? ""
            }
        }
        return out
    }
}

/// A tenant's template as served: its name, current version and compiled form.
public struct ServedPrompt: Sendable, Equatable {
    /// `default` for `system_prompt`, else the key under `prompts`.
    public let name: String
    /// The version number (1 for the first save); 0 when versions are unknown.
    public let version: Int
    public let template: PromptTemplate
}

/// Applies a tenant prompt to OpenAI-style messages according to the tenant's mode.
public enum PromptApplier {
    /// Roles that carry a system prompt.
    static let systemRoles: Set<String> = ["system", "developer"]

    /// The new message list: `prepend` puts the tenant's prompt first and keeps the client's system
    /// messages; `replace` drops them; `locked` refuses a request that carries one.
    public static func apply(_ rendered: String?, mode: PromptMode, to messages: [JSONValue]) throws(GatewayError)
        -> [JSONValue]
    {
        let hasClientSystem = messages.contains { systemRoles.contains($0["role"]?.stringValue ?? "") }
        if mode == .locked && hasClientSystem {
            throw GatewayError.systemPromptLocked
        }
        guard let rendered, !rendered.isEmpty else { return messages }
        let tenantMessage = JSONValue.object([("role", .string("system")), ("content", .string(rendered))])
        switch mode {
        case .prepend, .locked:
            return [tenantMessage] + messages
        case .replace:
            return [tenantMessage] + messages.filter { !systemRoles.contains($0["role"]?.stringValue ?? "") }
        }
    }
}
