extension StringProtocol {
    /// Without the ASCII characters of `set` at either end (space, tab, CR and LF by default), byte by byte.
    public func trimmingASCII(_ set: StaticString = " \t\r\n") -> String {
        let drop = set.withUTF8Buffer { Array($0) }
        var bytes = Substring(self).utf8[...]
        while let first = bytes.first, drop.contains(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, drop.contains(last) { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
