#if canImport(Glibc)
    import Glibc
#endif

/// One request served as a classic CGI program: the params are the process environment, the body is
/// standard input (CONTENT_LENGTH bytes), the answer goes to standard output unbuffered (each write is a
/// `write(2)`, so a stream reaches the web server as it is produced).
public final class CGIConnection {
    /// The last write failed: the web server (or its client) has gone.
    public private(set) var clientGone = false

    public init() {}

    /// The process environment, as FastCGI params.
    public func params() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        // environ is a NULL-terminated array of NUL-terminated "NAME=value" strings owned by libc.
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let eq = text.utf8.firstIndex(of: UInt8(ascii: "=")) {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            entry += 1
        }
        return result
    }

    /// Reads the body from standard input: `expected` bytes (CONTENT_LENGTH), at most `limit`.
    public func readBody(limit: Int, expected: Int?) -> BodyRead {
        if let expected, expected > limit { return .tooLarge }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while expected.map({ bytes.count < $0 }) ?? true {
            let want = min(chunk.count, (expected ?? Int.max) - bytes.count)
            // The chunk buffer is alive and has room for `want` bytes.
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, want) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > limit { return .tooLarge }
        }
        return .body(bytes)
    }

    /// Writes bytes to standard output; false once the reader has gone.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        guard !clientGone else { return false }
        var offset = 0
        while offset < bytes.count {
            // The array is alive for the call; write(2) copies what it takes.
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress.map { $0 + offset }, bytes.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                clientGone = true
                return false
            }
            offset += n
        }
        return true
    }

    /// Output is unbuffered: nothing to flush.
    @discardableResult
    public func flush() -> Bool { !clientGone }
}
