/// A validated OpenAI embeddings request.
public struct EmbeddingsRequest: Sendable {
    public let model: String?
    /// The inputs as texts (token-id inputs are kept in `body` and counted by their length).
    public let texts: [String]
    /// Number of token ids given directly (for estimates).
    public let tokenIDs: Int
    public let user: String?
    public let body: JSONValue

    /// Parses and validates raw bytes.
    public static func parse(_ bytes: [UInt8]) throws(GatewayError) -> EmbeddingsRequest {
        let json = try JSONParser.parseRequestBody(bytes)
        let model = try ModelSelection.requested(in: json)
        var texts: [String] = []
        var tokenIDs = 0
        let bad = GatewayError.invalidRequest(
            "'input' must be a non-empty string, an array of strings, or an array of token-id arrays.", param: "input")
        switch json["input"] {
        case .string(let s)?:
            guard !s.isEmpty else { throw bad }
            texts = [s]
        case .array(let items)? where !items.isEmpty && items.count <= 2048:
            for item in items {
                switch item {
                case .string(let s) where !s.isEmpty: texts.append(s)
                case .number: tokenIDs += 1
                case .array(let ids) where !ids.isEmpty && ids.allSatisfy({ $0.intValue != nil }): tokenIDs += ids.count
                default: throw bad
                }
            }
        default:
            throw bad
        }
        if let format = json["encoding_format"], format != .null {
            guard let f = format.stringValue, f == "float" || f == "base64" else {
                throw GatewayError.invalidRequest(
                    "'encoding_format' must be 'float' or 'base64'.", param: "encoding_format")
            }
        }
        if let d = json["dimensions"], d != .null, (d.intValue ?? 0) < 1 {
            throw GatewayError.invalidRequest("'dimensions' must be a positive integer.", param: "dimensions")
        }
        let user = try ChatRequest.user(json["user"], field: "user")
        return EmbeddingsRequest(model: model, texts: texts, tokenIDs: tokenIDs, user: user, body: json)
    }

    /// An upper bound of the input tokens (UTF-8 bytes of the texts plus the token ids given).
    public var tokenBound: Int { texts.reduce(0) { $0 + $1.utf8.count } + tokenIDs }
}
