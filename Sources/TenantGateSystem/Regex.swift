import CPCRE2

/// Why a pattern was refused.
public struct RegexError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// Byte offset in the pattern, when PCRE2 names one.
    public let offset: Int?
    public var description: String { offset.map { "\(message) at offset \($0)" } ?? message }
}

/// A tenant pattern compiled by PCRE2 (UTF mode, JIT when available), matched with a match limit, a depth
/// limit and a heap limit so that no input can make it run away. The compiled code is read-only and shared
/// by every thread; each match makes its own match data.
public final class Regex: @unchecked Sendable {  // `code` is immutable after init; PCRE2 code is thread-safe to match
    private let code: OpaquePointer
    private let context: OpaquePointer
    /// Whether PCRE2 compiled it to machine code.
    public let jit: Bool
    /// Longest subject matched (longer texts are matched in the first part only).
    public static let maxSubject = 1 << 20

    /// Compiles `pattern`; refuses a pattern PCRE2 rejects, or one that runs into its limits on
    /// adversarial input (a catastrophic pattern is refused when saved, not when a tenant's traffic hits it).
    public init(_ pattern: String, matchLimit: UInt32 = 100_000) throws {
        var errorCode: Int32 = 0
        var errorOffset = 0
        let bytes = Array(pattern.utf8)
        // The pointer is valid for the call; PCRE2 copies the pattern into its compiled form.
        let compiled = bytes.withUnsafeBufferPointer { buf in
            pcre2_compile_8(
                buf.baseAddress, buf.count, UInt32(PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK), &errorCode,
                &errorOffset,
                nil)
        }
        guard let compiled else {
            var message = [UInt8](repeating: 0, count: 256)
            let n = message.withUnsafeMutableBufferPointer { pcre2_get_error_message_8(errorCode, $0.baseAddress, 256) }
            throw RegexError(
                message: String(decoding: message.prefix(max(0, Int(n))), as: UTF8.self), offset: errorOffset)
        }
        guard let context = pcre2_match_context_create_8(nil) else {
            pcre2_code_free_8(compiled)
            throw RegexError(message: "out of memory", offset: nil)
        }
        pcre2_set_match_limit_8(context, matchLimit)
        pcre2_set_depth_limit_8(context, 10_000)
        pcre2_set_heap_limit_8(context, 4096)  // KiB
        code = compiled
        self.context = context
        jit = pcre2_jit_compile_8(compiled, UInt32(PCRE2_JIT_COMPLETE)) == 0
    }

    deinit {
        pcre2_match_context_free_8(context)
        pcre2_code_free_8(code)
    }

    /// Every non-overlapping match in `subject` (UTF-8), as byte ranges; throws when a limit is reached.
    public func matches(in subject: [UInt8]) throws -> [Range<Int>] {
        guard let data = pcre2_match_data_create_from_pattern_8(code, nil) else {
            throw RegexError(message: "out of memory", offset: nil)
        }
        defer { pcre2_match_data_free_8(data) }
        let length = min(subject.count, Regex.maxSubject)
        var out: [Range<Int>] = []
        var start = 0
        // The buffer pointer is valid for the whole loop; PCRE2 reads the subject only during each call.
        try subject.withUnsafeBufferPointer { buf in
            while start <= length {
                let rc = pcre2_match_8(code, buf.baseAddress, length, start, 0, data, context)
                if rc == PCRE2_ERROR_NOMATCH { return }
                guard rc > 0 else {
                    throw RegexError(message: "match failed (PCRE2 \(rc))", offset: nil)
                }
                let vector = pcre2_get_ovector_pointer_8(data)
                guard let vector else { return }
                let (from, to) = (vector[0], vector[1])
                guard from <= to, to <= length else { return }
                if to > from { out.append(from..<to) }
                start = to > from ? to : to + 1
                // Never restart inside a UTF-8 sequence.
                while start < length, buf[start] & 0xC0 == 0x80 { start += 1 }
            }
        }
        return out
    }

    /// Refuses a pattern that is invalid or that PCRE2's limits stop on adversarial subjects.
    public static func validate(_ pattern: String) throws {
        let regex = try Regex(pattern, matchLimit: 100_000)
        let probes: [[UInt8]] = [
            [UInt8](repeating: 0x61, count: 4096) + [0x21], [UInt8](repeating: 0x30, count: 4096) + [0x2D],
            Array(String(repeating: "a ", count: 2048).utf8) + [0x21],
            Array(String(repeating: "ab", count: 2048).utf8) + [0x21],
        ]
        for probe in probes {
            do {
                _ = try regex.matches(in: probe)
            } catch {
                throw RegexError(message: "the pattern backtracks without bound (catastrophic)", offset: nil)
            }
        }
    }
}
