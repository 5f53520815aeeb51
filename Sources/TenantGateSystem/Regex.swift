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

    /// Bytes of subject one PCRE2 call may see past its start offset (twice the longest match kept):
    /// each call is bounded, and consecutive windows overlap by the longest match.
    static func window(maxSpan: Int) -> Int { 2 * max(1, maxSpan) }

    /// Most matches reported for one subject; past it the match fails (the caller's `on_error` decides).
    public static let maxMatches = 262_144

    /// Every non-overlapping match of at most `maxSpan` bytes in `subject` (valid UTF-8), as byte ranges,
    /// in time linear in its length: PCRE2 sees a window of `2 × maxSpan` bytes past each start offset
    /// (the text before it stays visible to lookbehind; `$` does not match at a window's end), so no call
    /// scans the rest of a long subject, and the subject's UTF-8 is not re-checked at every call. A match
    /// that may have been cut by its window is looked for again from a window that holds it whole. A
    /// match longer than `maxSpan` is skipped. `stop` is asked between calls; when it says so, or a PCRE2
    /// limit is reached, or there are more than `maxMatches` matches, it throws.
    public func matches(in subject: [UInt8], maxSpan: Int, stop: () -> Bool = { false }) throws -> [Range<Int>] {
        guard !subject.isEmpty else { return [] }
        guard let data = pcre2_match_data_create_from_pattern_8(code, nil) else {
            throw RegexError(message: "out of memory", offset: nil)
        }
        defer { pcre2_match_data_free_8(data) }
        let n = subject.count
        let span = max(1, maxSpan)
        let window = Regex.window(maxSpan: span)
        var out: [Range<Int>] = []
        var start = 0
        var calls = 0
        // The buffer pointer is valid for the whole loop; PCRE2 reads the subject only during each call,
        // and never past `end` (≤ the buffer's count). The caller's text is valid UTF-8 (normalized text
        // is re-encoded scalar by scalar), so the per-call check PCRE2_NO_UTF_CHECK skips is redundant.
        try subject.withUnsafeBufferPointer { buf in
            while start < n {
                calls += 1
                if calls & 7 == 0, stop() { throw RegexError(message: "inspection budget spent", offset: nil) }
                var end = n - start > window ? start + window : n
                // A window ends between characters (with PCRE2_NO_UTF_CHECK a cut character is undefined).
                while end < n, end > start + 1, buf[end] & 0xC0 == 0x80 { end -= 1 }
                let options = UInt32(PCRE2_NO_UTF_CHECK) | (end < n ? UInt32(PCRE2_NOTEOL) : 0)
                let rc = pcre2_match_8(code, buf.baseAddress, end, start, options, data, context)
                if rc == PCRE2_ERROR_NOMATCH {
                    if end == n { return }
                    // A match missed here starts in the last `span` bytes, cut by the window's end.
                    start = Regex.boundary(buf, end - span)
                    continue
                }
                guard rc > 0 else { throw RegexError(message: "match failed (PCRE2 \(rc))", offset: nil) }
                guard let vector = pcre2_get_ovector_pointer_8(data) else {
                    throw RegexError(message: "no match vector", offset: nil)
                }
                let (from, to) = (vector[0], vector[1])
                guard from >= start, from <= to, to <= end else {
                    throw RegexError(message: "match outside its window", offset: nil)
                }
                if end < n && from + span >= end {
                    // It, or an earlier match, may run past the window: look again from where a match
                    // of at most `span` bytes that the window cut could start.
                    start = Regex.boundary(buf, max(start + 1, end - span))
                    continue
                }
                if to > from && to - from <= span {
                    out.append(from..<to)
                    guard out.count <= Regex.maxMatches else {
                        throw RegexError(message: "too many matches", offset: nil)
                    }
                }
                start = Regex.boundary(buf, to > from ? to : to + 1)
            }
        }
        return out
    }

    /// `offset`, moved forward past UTF-8 continuation bytes (a match never starts inside a character).
    private static func boundary(_ buf: UnsafeBufferPointer<UInt8>, _ offset: Int) -> Int {
        var i = offset
        while i < buf.count, buf[i] & 0xC0 == 0x80 { i += 1 }
        return i
    }

    /// Refuses a pattern that is invalid, that can match the empty string (it would match everywhere), or
    /// that PCRE2's limits stop, or that runs slowly, on adversarial subjects: runs of the pattern's own
    /// characters and of common classes, 64 KiB each, matched as tenant traffic is (`maxSpan`).
    public static func validate(_ pattern: String, maxSpan: Int = 256) throws {
        let regex = try Regex(pattern, matchLimit: 100_000)
        var empty: UInt32 = 0
        guard pcre2_pattern_info_8(regex.code, UInt32(PCRE2_INFO_MATCHEMPTY), &empty) == 0, empty == 0 else {
            throw RegexError(message: "the pattern can match the empty string", offset: nil)
        }
        let size = 64 << 10
        func run(_ unit: [UInt8]) -> [UInt8] {
            guard !unit.isEmpty else { return [] }
            var out: [UInt8] = []
            out.reserveCapacity(size + unit.count + 1)
            while out.count < size { out += unit }
            return out + [0x21]
        }
        // The pattern's own printable ASCII characters, alone and together: what its quantifiers repeat.
        let own = Array(Set(pattern.utf8.filter { $0 > 0x20 && $0 < 0x7F && $0 != 0x5C })).sorted()
        var probes: [[UInt8]] = [
            run([0x61]), run([0x30]), run(Array("a ".utf8)), run(Array("ab".utf8)), run(Array("a@".utf8)),
            run(Array("a.".utf8)), run(Array("1 ".utf8)), run(Array(String(pattern.prefix(64)).utf8)),
        ]
        probes += own.prefix(16).map { run([$0]) }
        probes.append(run(own))
        for probe in probes where !probe.isEmpty {
            let started = Posix.threadCPUNanos()
            do {
                _ = try regex.matches(in: probe, maxSpan: maxSpan)
            } catch {
                throw RegexError(message: "the pattern backtracks without bound (catastrophic)", offset: nil)
            }
            // 64 KiB in more than 100 ms of CPU is over 1.5 s per MiB: no request's budget affords it.
            guard Posix.threadCPUNanos() &- started < 100_000_000 else {
                throw RegexError(message: "the pattern is too slow on long input (over 1.5 s per MiB)", offset: nil)
            }
        }
    }
}
