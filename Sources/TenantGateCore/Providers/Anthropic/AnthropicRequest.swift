/// The `anthropic` provider: an OpenAI Chat Completions request translated to Anthropic's Messages API.
public enum AnthropicRequest {
    /// The Messages API URL for a backend `base_url` given with or without its `/v1`.
    public static func url(baseURL: String) -> String {
        baseURL.hasSuffix("/v1") ? baseURL + "/messages" : baseURL + "/v1/messages"
    }

    /// Translates `chat` for `upstreamModel`. `max_tokens` (required upstream) is `maxTokens`, the cap that
    /// was reserved (`ChatRequest.completionCap(for:)`).
    public static func body(_ chat: ChatRequest, upstreamModel: String, maxTokens: Int) throws(GatewayError)
        -> JSONValue
    {
        let source = chat.body
        if let n = source["n"]?.intValue, n > 1 {
            throw GatewayError.invalidRequest(
                "'n' greater than 1 is not supported by this model's provider.", param: "n")
        }
        var system: [String] = []
        var turns = Turns()
        for (i, message) in chat.messages.enumerated() {
            let role = message["role"]?.stringValue ?? "user"
            switch role {
            case "system", "developer":
                let text = plainText(message["content"])
                if !text.isEmpty { system.append(text) }
            case "assistant":
                turns.add("assistant", try assistantBlocks(message, index: i))
            case "tool":
                let id = message["tool_call_id"]?.stringValue ?? ""
                turns.add("user", [toolResult(id: id, content: message["content"])])
            case "function":
                let name = message["name"]?.stringValue ?? ""
                turns.add("user", [toolResult(id: name, content: message["content"])])
            default:
                turns.add("user", try userBlocks(message["content"], index: i))
            }
        }
        var out: [(String, JSONValue)] = [
            ("model", .string(upstreamModel)),
            ("max_tokens", .int(maxTokens)),
        ]
        if !system.isEmpty { out.append(("system", .string(system.joined(separator: "\n\n")))) }
        out.append(("messages", .array(turns.finished)))
        if let stop = source["stop"] {
            switch stop {
            case .string(let s): out.append(("stop_sequences", .array([.string(s)])))
            case .array(let list): out.append(("stop_sequences", .array(list.filter { $0.stringValue != nil })))
            default: break
            }
        }
        if let t = source["temperature"]?.doubleValue {
            // OpenAI accepts 0–2, Anthropic 0–1.
            out.append(("temperature", t > 1 ? .int(1) : source["temperature"] ?? .int(1)))
        }
        if let p = source["top_p"], p.doubleValue != nil { out.append(("top_p", p)) }
        let tools = (source["tools"]?.arrayValue ?? []).compactMap(tool)
        if !tools.isEmpty {
            out.append(("tools", .array(tools)))
            if let choice = toolChoice(source["tool_choice"], parallel: source["parallel_tool_calls"]?.boolValue) {
                out.append(("tool_choice", choice))
            }
        }
        if let user = chat.user { out.append(("metadata", .object([("user_id", .string(user))]))) }
        if chat.stream { out.append(("stream", .bool(true))) }
        return .object(out)
    }

    /// Consecutive messages of one role merged, as Anthropic requires alternating turns.
    private struct Turns {
        private var messages: [JSONValue] = []
        private var role: String?
        private var blocks: [JSONValue] = []

        mutating func add(_ role: String, _ new: [JSONValue]) {
            guard !new.isEmpty else { return }
            if role != self.role { flush() }
            self.role = role
            blocks += new
        }

        private mutating func flush() {
            guard let role, !blocks.isEmpty else { return }
            messages.append(.object([("role", .string(role)), ("content", .array(blocks))]))
            blocks = []
        }

        var finished: [JSONValue] {
            var copy = self
            copy.flush()
            return copy.messages
        }
    }

    /// The text of a string or of the text parts of an array.
    public static func plainText(_ content: JSONValue?) -> String {
        switch content {
        case .string(let s)?: return s
        case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
        default: return ""
        }
    }

    private static func text(_ s: String) -> JSONValue {
        .object([("type", .string("text")), ("text", .string(s))])
    }

    private static func userBlocks(_ content: JSONValue?, index: Int) throws(GatewayError) -> [JSONValue] {
        switch content {
        case .string(let s)?: return s.isEmpty ? [] : [text(s)]
        case .array(let parts)?:
            var out: [JSONValue] = []
            for part in parts {
                switch part["type"]?.stringValue {
                case "text":
                    if let s = part["text"]?.stringValue, !s.isEmpty { out.append(text(s)) }
                case "image_url":
                    guard let url = part["image_url"]?["url"]?.stringValue ?? part["image_url"]?.stringValue else {
                        throw GatewayError.invalidRequest(
                            "messages[\(index)]: an image_url part needs a url.", param: "messages[\(index)].content")
                    }
                    out.append(image(url))
                default:
                    throw GatewayError.invalidRequest(
                        "messages[\(index)]: content part type '\(part["type"]?.stringValue ?? "?")' is not supported by this model's provider.",
                        param: "messages[\(index)].content")
                }
            }
            return out
        default: return []
        }
    }

    /// A data URL becomes a base64 source, anything else a URL source.
    private static func image(_ url: String) -> JSONValue {
        if url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") {
            let meta = url[url.index(url.startIndex, offsetBy: 5)..<comma]
            let mediaType = meta.split(separator: ";").first.map(String.init) ?? "image/png"
            return .object([
                ("type", .string("image")),
                (
                    "source",
                    .object([
                        ("type", .string("base64")), ("media_type", .string(mediaType)),
                        ("data", .string(String(url[url.index(after: comma)...]))),
                    ])
                ),
            ])
        }
        return .object([
            ("type", .string("image")), ("source", .object([("type", .string("url")), ("url", .string(url))])),
        ])
    }

    private static func assistantBlocks(_ message: JSONValue, index: Int) throws(GatewayError) -> [JSONValue] {
        var out: [JSONValue] = []
        let said = plainText(message["content"])
        if !said.isEmpty { out.append(text(said)) }
        for call in message["tool_calls"]?.arrayValue ?? [] {
            guard let id = call["id"]?.stringValue, let name = call["function"]?["name"]?.stringValue else {
                throw GatewayError.invalidRequest(
                    "messages[\(index)].tool_calls entries need an id and function.name.",
                    param: "messages[\(index)].tool_calls")
            }
            out.append(toolUse(id: id, name: name, arguments: call["function"]?["arguments"]?.stringValue))
        }
        if let call = message["function_call"], let name = call["name"]?.stringValue {
            out.append(toolUse(id: name, name: name, arguments: call["arguments"]?.stringValue))
        }
        return out
    }

    private static func toolUse(id: String, name: String, arguments: String?) -> JSONValue {
        var input = JSONValue.object([])
        if let arguments, let parsed = try? JSONParser.parse(arguments), case .object = parsed { input = parsed }
        return .object([("type", .string("tool_use")), ("id", .string(id)), ("name", .string(name)), ("input", input)])
    }

    private static func toolResult(id: String, content: JSONValue?) -> JSONValue {
        .object([
            ("type", .string("tool_result")), ("tool_use_id", .string(id)), ("content", .string(plainText(content))),
        ])
    }

    private static func tool(_ spec: JSONValue) -> JSONValue? {
        guard spec["type"]?.stringValue ?? "function" == "function", let function = spec["function"],
            let name = function["name"]?.stringValue
        else { return nil }
        var out: [(String, JSONValue)] = [("name", .string(name))]
        if let description = function["description"]?.stringValue { out.append(("description", .string(description))) }
        var schema = function["parameters"] ?? .object([("type", .string("object")), ("properties", .object([]))])
        if schema["type"] == nil { schema = schema.setting("type", .string("object")) }
        out.append(("input_schema", schema))
        return .object(out)
    }

    private static func toolChoice(_ choice: JSONValue?, parallel: Bool?) -> JSONValue? {
        var out: JSONValue?
        switch choice {
        case .string("none")?: out = .object([("type", .string("none"))])
        case .string("required")?: out = .object([("type", .string("any"))])
        case .string("auto")?: out = .object([("type", .string("auto"))])
        case .object?:
            if let name = choice?["function"]?["name"]?.stringValue {
                out = .object([("type", .string("tool")), ("name", .string(name))])
            }
        default: break
        }
        if parallel == false {
            out = (out ?? .object([("type", .string("auto"))])).setting("disable_parallel_tool_use", .bool(true))
        }
        return out
    }
}
