/// Maps one Unicode scalar to its compatibility form for matching: NFKD with marks stripped and look-alike
/// punctuation lumped (fullwidth `４` → `4`, `ﬁ` → `fi`, en dash → `-`); nothing for a default-ignorable
/// scalar (zero-width and bidi controls). The worker uses utf8proc's tables; `BasicFolding` is the fallback.
public protocol ScalarFolding: Sendable {
    /// Appends the folded form of `scalar` (non-ASCII only) to `out`.
    func fold(_ scalar: Unicode.Scalar, into out: inout [Unicode.Scalar])
}

/// Folding without Unicode tables: fullwidth ASCII, zero-width and bidi controls, common dashes and spaces.
public struct BasicFolding: ScalarFolding {
    /// Creates the folding.
    public init() {}

    public func fold(_ scalar: Unicode.Scalar, into out: inout [Unicode.Scalar]) {
        let v = scalar.value
        switch v {
        case 0xFF01...0xFF5E: out.append(Unicode.Scalar(v - 0xFEE0) ?? scalar)
        case 0x200B...0x200F, 0x202A...0x202E, 0x2060...0x2064, 0x2066...0x206F, 0xFEFF, 0xAD: return
        case 0x2010...0x2015, 0x2212, 0xFE63, 0xFF0D: out.append("-")
        case 0x00A0, 0x2000...0x200A, 0x202F, 0x205F, 0x3000: out.append(" ")
        default: out.append(scalar)
        }
    }
}

/// Text as detectors read it: normalized UTF-8 with, for every byte, the original bytes it came from, so a
/// match found in the normalized text redacts exactly the original span (ignorable characters inside it
/// included).
public struct NormalizedText: Sendable {
    /// The normalized UTF-8 bytes.
    public private(set) var bytes: [UInt8] = []
    /// For each normalized byte, the original byte offsets of the scalar it came from (empty when the text
    /// is ASCII: then normalized and original offsets are the same).
    private var starts: [Int32] = []
    private var ends: [Int32] = []
    private var identity = false

    /// Normalizes `original` (UTF-8) with `folding`.
    public init(_ original: [UInt8], folding: any ScalarFolding) {
        if NormalizedText.isASCII(original) {
            bytes = original
            identity = true
            return
        }
        bytes.reserveCapacity(original.count)
        starts.reserveCapacity(original.count)
        ends.reserveCapacity(original.count)
        var i = 0
        var folded: [Unicode.Scalar] = []
        while i < original.count {
            let b = original[i]
            if b < 0x80 {
                bytes.append(b)
                starts.append(Int32(i))
                ends.append(Int32(i + 1))
                i += 1
                continue
            }
            let (scalar, length) = NormalizedText.decode(original, at: i)
            folded.removeAll(keepingCapacity: true)
            folding.fold(scalar, into: &folded)
            for s in folded {
                let before = bytes.count
                NormalizedText.appendUTF8(s, to: &bytes)
                for _ in before..<bytes.count {
                    starts.append(Int32(i))
                    ends.append(Int32(i + length))
                }
            }
            i += length
        }
    }

    /// The original byte range of the normalized range `range` (which must not be empty).
    public func originalRange(_ range: Range<Int>) -> Range<Int> {
        if identity { return range }
        return Int(starts[range.lowerBound])..<Int(ends[range.upperBound - 1])
    }

    /// The original offset where normalized byte `index` starts (the original length past the end).
    public func originalOffset(_ index: Int, originalCount: Int) -> Int {
        if identity { return min(index, originalCount) }
        return index < starts.count ? Int(starts[index]) : originalCount
    }

    /// Whether every byte is ASCII (eight at a time).
    static func isASCII(_ bytes: [UInt8]) -> Bool {
        var i = 0
        let n = bytes.count
        while i + 8 <= n {
            var word: UInt64 = 0
            for k in 0..<8 { word |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            if word & 0x8080_8080_8080_8080 != 0 { return false }
            i += 8
        }
        while i < n {
            if bytes[i] >= 0x80 { return false }
            i += 1
        }
        return true
    }

    static func appendUTF8(_ s: Unicode.Scalar, to out: inout [UInt8]) {
        let v = s.value
        switch v {
        case ..<0x80: out.append(UInt8(v))
        case ..<0x800: out += [UInt8(0xC0 | v >> 6), UInt8(0x80 | v & 0x3F)]
        case ..<0x10000: out += [UInt8(0xE0 | v >> 12), UInt8(0x80 | v >> 6 & 0x3F), UInt8(0x80 | v & 0x3F)]
        default:
            out += [
                UInt8(0xF0 | v >> 18), UInt8(0x80 | v >> 12 & 0x3F), UInt8(0x80 | v >> 6 & 0x3F),
                UInt8(0x80 | v & 0x3F),
            ]
        }
    }

    /// One scalar of valid UTF-8 at `i` (an invalid byte reads as U+FFFD of length 1).
    static func decode(_ bytes: [UInt8], at i: Int) -> (Unicode.Scalar, Int) {
        let b = bytes[i]
        let length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
        guard length > 1, i + length <= bytes.count else { return ("\u{FFFD}", 1) }
        var value = UInt32(b) & (0xFF >> UInt32(length + 1))
        for k in 1..<length {
            let c = bytes[i + k]
            guard c & 0xC0 == 0x80 else { return ("\u{FFFD}", 1) }
            value = value << 6 | UInt32(c & 0x3F)
        }
        return (Unicode.Scalar(value) ?? "\u{FFFD}", length)
    }
}
