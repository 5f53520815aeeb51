import TenantGateCore
import Yams

/// Turns YAML text into a `ConfigNode` (with lines) and configuration JSON back into YAML.
public enum YAMLConfig {
    /// Parses YAML; refuses documents over 4 MiB or expanding (through aliases) to over 200,000 nodes or
    /// over `maxExpandedBytes` of scalar text.
    public static func parse(_ text: String) throws(ConfigError) -> ConfigNode {
        guard text.utf8.count <= 4 << 20 else {
            throw ConfigError(path: "", message: "configuration file larger than 4 MiB", line: nil)
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(path: "", message: "invalid YAML: \(error)", line: nil)
        } catch {
            throw ConfigError(path: "", message: "invalid YAML: \(error)", line: nil)
        }
        guard let node else { return .scalar("", quoted: false, line: nil) }
        var budget = 200_000
        var bytes = maxExpandedBytes
        return try convert(node, &budget, &bytes)
    }

    /// Scalar text a configuration may expand to (aliases of a long string count each time they are used).
    public static let maxExpandedBytes = 16 << 20

    private static func convert(_ node: Node, _ budget: inout Int, _ bytes: inout Int) throws(ConfigError)
        -> ConfigNode
    {
        let line = node.mark.map { $0.line }
        // Aliases can expand exponentially ("billion laughs"): bound the expanded size, in nodes and bytes.
        budget -= 1
        guard budget > 0 else {
            throw ConfigError(path: "", message: "configuration expands to more than 200000 nodes", line: line)
        }
        switch node {
        case .scalar(let scalar):
            bytes -= scalar.string.utf8.count
            guard bytes >= 0 else {
                throw ConfigError(
                    path: "", message: "configuration expands to more than \(maxExpandedBytes >> 20) MiB of text",
                    line: line)
            }
            let quoted = scalar.style != .plain
            return .scalar(scalar.string, quoted: quoted, line: line)
        case .mapping(let mapping):
            var pairs: [(key: String, value: ConfigNode, line: Int?)] = []
            for (key, value) in mapping {
                guard case .scalar(let k) = key else {
                    throw ConfigError(path: "", message: "mapping keys must be plain strings", line: key.mark?.line)
                }
                pairs.append((key: k.string, value: try convert(value, &budget, &bytes), line: key.mark?.line))
            }
            return .mapping(pairs, line: line)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            for item in sequence { items.append(try convert(item, &budget, &bytes)) }
            return .sequence(items, line: line)
        case .alias:
            throw ConfigError(path: "", message: "YAML aliases are not supported", line: line)
        }
    }

    /// Renders configuration JSON as YAML (block style, strings quoted).
    public static func render(_ value: JSONValue) -> String {
        var out = ""
        renderMembers(value, indent: 0, into: &out)
        return out
    }

    /// Renders a list (a tenant's policies) as a YAML block sequence.
    public static func render(list items: [JSONValue]) -> String {
        var out = ""
        renderItems(items, indent: 0, into: &out)
        return out
    }

    private static func scalar(_ value: JSONValue) -> String? {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n
        case .string(let s): return JSONValue.quoted(s)
        case .array(let items) where items.isEmpty: return "[]"
        case .object(let members) where members.isEmpty: return "{}"
        default: return nil
        }
    }

    private static func key(_ k: String) -> String {
        ConfigSchema.isName(k) && k.first.map({ $0.isLetter || $0.isNumber }) == true ? k : JSONValue.quoted(k)
    }

    private static func renderMembers(_ value: JSONValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for (k, v) in value.objectValue ?? [] {
            if let s = scalar(v) {
                out += "\(pad)\(key(k)): \(s)\n"
            } else if case .array(let items) = v {
                out += "\(pad)\(key(k)):\n"
                renderItems(items, indent: indent + 2, into: &out)
            } else {
                out += "\(pad)\(key(k)):\n"
                renderMembers(v, indent: indent + 2, into: &out)
            }
        }
    }

    private static func renderItems(_ items: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            if let s = scalar(item) {
                out += "\(pad)- \(s)\n"
            } else if case .object = item {
                var inner = ""
                renderMembers(item, indent: indent + 2, into: &inner)
                out += "\(pad)- " + inner.dropFirst(indent + 2)
            } else if case .array(let nested) = item {
                out += "\(pad)-\n"
                renderItems(nested, indent: indent + 2, into: &out)
            }
        }
    }
}
