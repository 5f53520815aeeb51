/// One cached answer, as the cache stage replays it.
public struct CachedAnswer: Sendable {
    /// The provider-neutral (Chat Completions shaped) answer.
    public let answer: JSONValue
    /// Tokens and cost the answer took when it was made (what a hit saves).
    public let tokens: Int64
    public let costNano: Int64
    /// When it was last used (the LRU order is kept to `touchEveryMs`).
    public let usedMs: Int64
    /// When it expires.
    public let expiresMs: Int64

    /// How stale the LRU order may get: a hit rewrites its entry's last use at most this often.
    public static let touchEveryMs: Int64 = 10_000

    public init(answer: JSONValue, tokens: Int64, costNano: Int64, usedMs: Int64, expiresMs: Int64) {
        self.answer = answer
        self.tokens = tokens
        self.costNano = costNano
        self.usedMs = usedMs
        self.expiresMs = expiresMs
    }
}

/// An answer to keep, handed to the settlement with its execution.
public struct CacheWrite: Sendable {
    public let key: [UInt8]
    public let answer: JSONValue
    public let tokens: Int64
    public let costNano: Int64
    public let ttlMs: Int64
    public let maxEntries: Int
    public let maxBytes: Int64
    /// For the semantic cache: the scope, the question's unit vector and its signature.
    public var semantic: (scope: [UInt8], vector: [Float], signature: String)?
    /// The tenant's `limits.storage_mb` in bytes: an answer that would pass it is not kept.
    public var storageQuota: Int64?

    /// Creates a write.
    public init(
        key: [UInt8], answer: JSONValue, tokens: Int64, costNano: Int64, ttlMs: Int64, maxEntries: Int, maxBytes: Int64
    ) {
        self.key = key
        self.answer = answer
        self.tokens = tokens
        self.costNano = costNano
        self.ttlMs = ttlMs
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }
}
