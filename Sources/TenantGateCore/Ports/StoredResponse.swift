/// A response to keep (`store: true`).
public struct StoredResponse: Sendable {
    public let id: String
    public let createdMs: Int64
    public let previous: String?
    /// The response object as the client got it.
    public let response: JSONValue
    /// The request's own input items, as `input_items` lists them.
    public let inputItems: [JSONValue]
    /// This turn as Chat Completions messages: the input, then the output as an assistant message.
    public let turn: [JSONValue]

    public init(
        id: String, createdMs: Int64, previous: String?, response: JSONValue, inputItems: [JSONValue],
        turn: [JSONValue]
    ) {
        self.id = id
        self.createdMs = createdMs
        self.previous = previous
        self.response = response
        self.inputItems = inputItems
        self.turn = turn
    }

    /// Whether `id` has the shape of an id this gateway issues (`resp_` + 48 lowercase hex digits).
    public static func isID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return bytes.count == 53 && id.hasPrefix("resp_")
            && bytes.dropFirst(5).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
