import CUtf8proc

/// Compatibility folding over utf8proc's tables: NFKD, marks stripped, look-alike characters lumped,
/// default-ignorable code points (zero-width, bidi controls) removed.
public enum UnicodeFold {
    /// Appends the folded form of `scalar` to `out`.
    public static func fold(_ scalar: Unicode.Scalar, into out: inout [Unicode.Scalar]) {
        var buffer = [utf8proc_int32_t](repeating: 0, count: 18)
        let options = utf8proc_option_t(
            rawValue: UTF8PROC_COMPAT.rawValue | UTF8PROC_IGNORE.rawValue | UTF8PROC_STRIPMARK.rawValue
                | UTF8PROC_LUMP.rawValue | UTF8PROC_DECOMPOSE.rawValue)
        var boundary: Int32 = 0
        // The buffer holds the longest compatibility decomposition (18 code points).
        let n = buffer.withUnsafeMutableBufferPointer {
            utf8proc_decompose_char(utf8proc_int32_t(scalar.value), $0.baseAddress, 18, options, &boundary)
        }
        guard n >= 0, n <= 18 else {
            out.append(scalar)
            return
        }
        for value in buffer.prefix(Int(n)) {
            if let s = Unicode.Scalar(UInt32(bitPattern: value)) { out.append(s) }
        }
    }
}
