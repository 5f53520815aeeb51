/// A parsed configuration tree (from YAML or stored JSON), with source lines where known.
public indirect enum ConfigNode: Sendable {
    /// A scalar's text; `quoted` scalars are always strings.
    case scalar(String, quoted: Bool, line: Int?)
    /// Key/value pairs in order, each with the line of its key.
    case mapping([(key: String, value: ConfigNode, line: Int?)], line: Int?)
    case sequence([ConfigNode], line: Int?)

    /// The node's source line, if known.
    public var line: Int? {
        switch self {
        case .scalar(_, _, let line), .mapping(_, let line), .sequence(_, let line): return line
        }
    }

    /// Builds a node from stored JSON (no line information).
    public init(json: JSONValue) {
        switch json {
        case .null: self = .scalar("null", quoted: false, line: nil)
        case .bool(let b): self = .scalar(b ? "true" : "false", quoted: false, line: nil)
        case .number(let n): self = .scalar(n, quoted: false, line: nil)
        case .string(let s): self = .scalar(s, quoted: true, line: nil)
        case .array(let items): self = .sequence(items.map(ConfigNode.init(json:)), line: nil)
        case .object(let members):
            self = .mapping(members.map { (key: $0.0, value: ConfigNode(json: $0.1), line: nil) }, line: nil)
        }
    }
}

/// A configuration problem, naming the key path and the line.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Dotted key path, e.g. `tenants.acme.rate_limit.requests_per_minute`.
    public let path: String
    /// What is wrong.
    public let message: String
    /// Source line, when the input had lines.
    public let line: Int?

    /// Creates an error.
    public init(path: String, message: String, line: Int?) {
        self.path = path
        self.message = message
        self.line = line
    }

    public var description: String {
        let location = line.map { " (line \($0))" } ?? ""
        return path.isEmpty ? "\(message)\(location)" : "\(path): \(message)\(location)"
    }
}
