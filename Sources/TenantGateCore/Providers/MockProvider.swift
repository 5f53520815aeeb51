/// The built-in `mock` backend: a deterministic reply with realistic usage, streamed in several chunks.
public enum MockProvider {
    /// The reply text for a request (depends only on the messages).
    public static func replyText(for request: ChatRequest) -> String {
        let lastUser = request.messages.last(where: { $0["role"]?.stringValue == "user" })
        var said = ""
        switch lastUser?["content"] {
        case .string(let s)?: said = s
        case .array(let parts)?: said = parts.compactMap { $0["text"]?.stringValue }.joined(separator: " ")
        default: break
        }
        let words = said.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        let echo = words.prefix(12).joined(separator: " ")
        var text = "This is TenantGate's mock backend. You wrote \(words.count) words"
        text += echo.isEmpty ? "." : ", starting with: \"\(echo)\"."
        if let maxTokens = request.maxTokens {
            let limit = maxTokens * 4
            if text.utf8.count > limit {
                text = String(decoding: Array(text.utf8.prefix(limit)), as: UTF8.self)
            }
        }
        return text
    }

    /// Usage numbers for `request` answered with `reply`.
    public static func usage(for request: ChatRequest, reply: String) -> Usage {
        Usage(promptTokens: TokenEstimate.prompt(request.promptText), completionTokens: TokenEstimate.text(reply))
    }

    /// The reply cut into `count` roughly equal pieces on word boundaries.
    public static func chunks(_ reply: String, count: Int = 6) -> [String] {
        let words = reply.split(separator: " ", omittingEmptySubsequences: false)
        let per = max(1, (words.count + count - 1) / count)
        var out: [String] = []
        var i = 0
        while i < words.count {
            let end = min(words.count, i + per)
            var piece = words[i..<end].joined(separator: " ")
            if end < words.count { piece += " " }
            out.append(piece)
            i = end
        }
        return out
    }
}
