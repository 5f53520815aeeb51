/// The semantic cache's rules: which requests it may answer, what must match beside the vectors, and the
/// scope (model, parameters, system prompt) an answer may be reused in.
public enum SemanticCache {
    /// The default and the lowest threshold a tenant may set (a request may only raise it).
    public static let defaultThreshold = 0.95
    public static let floor = 0.90

    /// The threshold a lookup uses: the tenant's, raised (never lowered) by a request's
    /// `X-TenantGate-Cache-Threshold` when that is a number no larger than 1.
    public static func threshold(tenant: Double, requested: String?) -> Double {
        guard let asked = requested.flatMap(Double.init), asked.isFinite, asked <= 1 else { return tenant }
        return max(tenant, asked)
    }

    /// The one user message of a single-turn request (system prompts before it allowed), else nil.
    public static func question(_ chat: ChatRequest) -> String? {
        var question: String?
        for message in chat.messages {
            switch message["role"]?.stringValue {
            case "system", "developer": continue
            case "user" where question == nil:
                guard let text = message["content"]?.stringValue else { return nil }
                question = text
            default: return nil
            }
        }
        return question
    }

    /// The request with its question removed: two requests in one scope differ only by their question.
    public static func scopeBody(_ chat: ChatRequest) -> JSONValue {
        let messages = (chat.body["messages"]?.arrayValue ?? []).map { message -> JSONValue in
            message["role"]?.stringValue == "user" ? message.setting("content", .string("")) : message
        }
        return chat.body.setting("messages", .array(messages))
    }

    static let stopWords: Set<String> = [
        "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "i", "me",
        "my", "you", "your", "we", "our", "he", "she", "it", "its", "they", "them", "their", "this", "that", "these",
        "those", "of", "in", "on", "at", "to", "for", "from", "by", "with", "about", "as", "into", "and", "or", "but",
        "so", "if", "then", "than", "please", "can", "could", "would", "should", "will", "shall", "may", "might",
        "must", "what", "which", "who", "whom", "how", "tell", "give", "show", "explain", "some", "any", "just",
        "really", "very", "kindly", "hi", "hello", "hey", "thanks", "thank", "let", "us", "know", "there", "here",
    ]
    static let negations: Set<String> = [
        "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "cant", "dont",
        "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "wouldnt", "shouldnt", "couldnt", "n't",
    ]

    /// The content words of `text` in order: lowercased, stop words removed, numbers kept, every negation
    /// as `¬`.
    public static func contentWords(_ text: String) -> [String] {
        var out: [String] = []
        for raw in text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "'") }) {
            let word = raw.replacingApostrophes()
            guard !word.isEmpty else { continue }
            if negations.contains(word) {
                out.append("¬")
            } else if !stopWords.contains(word) {
                out.append(word)
            }
        }
        return out
    }

    /// What must be equal beside the vectors: the content words in order (so numbers, negations and which
    /// entity comes first all count). "What is the capital of France?" and "Capital of France, please" are
    /// alike; "flights from Paris to Rome" and "from Rome to Paris" are not.
    public static func signature(_ question: String) -> String { contentWords(question).joined(separator: " ") }

    /// Cosine of two unit vectors (their dot product); 0 for different lengths.
    public static func similarity(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return 0 }
        var sum: Float = 0
        for i in 0..<a.count { sum += a[i] * b[i] }
        return sum
    }

    /// `values` scaled to unit length.
    public static func unit(_ values: [Double]) -> [Float] {
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? values.map { Float($0 / norm) } : values.map { Float($0) }
    }
}

extension Substring {
    fileprivate func replacingApostrophes() -> String {
        let text = String(self)
        // "don't" → "dont" style forms are negations; other apostrophes (o'neil) are dropped.
        if text.hasSuffix("n't") { return "n't" }
        return String(text.filter { $0 != "'" })
    }
}
