extension StringProtocol {
    /// Without the ASCII characters of `set` at either end (space, tab, CR and LF by default), byte by byte.
    public func trimmingASCII(_ set: StaticString = " \t\r\n") -> String {
        // The set as a 128-bit mask of ASCII bytes (no array per call).
        let (low, high) = set.withUTF8Buffer { buf in
            buf.reduce(into: (UInt64(0), UInt64(0))) { mask, b in
                if b < 64 { mask.0 |= 1 << UInt64(b) } else if b < 128 { mask.1 |= 1 << UInt64(b - 64) }
            }
        }
        let drop: (UInt8) -> Bool = { b in
            b < 64 ? low & (1 << UInt64(b)) != 0 : b < 128 && high & (1 << UInt64(b - 64)) != 0
        }
        var bytes = Substring(self).utf8[...]
        while let first = bytes.first, drop(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, drop(last) { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    /// Every occurrence of `target` replaced by `replacement` (byte-wise, left to right, not overlapping).
    public func replacingAll(_ target: String, with replacement: String) -> String {
        let bytes = Array(utf8)
        let needle = Array(target.utf8)
        guard !needle.isEmpty, bytes.count >= needle.count else { return self }
        let with = Array(replacement.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == needle[0] && i + needle.count <= bytes.count
                && bytes[i..<(i + needle.count)].elementsEqual(needle)
            {
                out.append(contentsOf: with)
                i += needle.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
