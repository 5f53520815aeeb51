/// One part of a `multipart/form-data` body.
public struct FormPart: Sendable, Equatable {
    public let name: String
    public let filename: String?
    public let contentType: String?
    public let body: [UInt8]
}

/// A strict `multipart/form-data` reader (RFC 7578) for document uploads: the boundary from the
/// Content-Type, parts with a `Content-Disposition: form-data; name=…` header, at most `maxParts`.
/// Anything malformed is a 400; nothing is guessed.
public enum Multipart {
    public static let maxParts = 16
    static let maxHeaderBytes = 8192

    /// The boundary of a `multipart/form-data` content type, if it is one.
    public static func boundary(contentType: String) -> String? {
        let parts = contentType.split(separator: ";").map { String($0).trimmingASCII() }
        guard parts.first?.lowercased() == "multipart/form-data" else { return nil }
        for parameter in parts.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, pair[0].trimmingASCII().lowercased() == "boundary" else { continue }
            var value = pair[1].trimmingASCII()
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    public static func parse(_ body: [UInt8], boundary: String) throws(GatewayError) -> [FormPart] {
        let delimiter = Array("--\(boundary)".utf8)
        let separator = [UInt8(0x0D), 0x0A] + delimiter
        guard var at = find(delimiter, in: body, from: 0) else { throw malformed("no boundary found") }
        var parts: [FormPart] = []
        while true {
            at += delimiter.count
            // `--` after a delimiter ends the body.
            if body[at...].starts(with: [0x2D, 0x2D]) { break }
            guard body[at...].starts(with: [0x0D, 0x0A]) else {
                throw malformed("a boundary line is not ended by CRLF")
            }
            at += 2
            guard let headersEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: body, from: at),
                headersEnd - at <= maxHeaderBytes
            else { throw malformed("a part's headers do not end") }
            let headers = try partHeaders(body[at..<headersEnd])
            let contentStart = headersEnd + 4
            guard let end = find(separator, in: body, from: contentStart) else {
                throw malformed("a part is not ended by the boundary")
            }
            guard parts.count < maxParts else { throw malformed("more than \(maxParts) parts") }
            guard let disposition = headers["content-disposition"],
                let name = parameter("name", in: disposition)
            else { throw malformed("a part has no Content-Disposition name") }
            parts.append(
                FormPart(
                    name: name, filename: parameter("filename", in: disposition),
                    contentType: headers["content-type"], body: Array(body[contentStart..<end])))
            at = end + 2
        }
        return parts
    }

    private static func partHeaders(_ bytes: ArraySlice<UInt8>) throws(GatewayError) -> [String: String] {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw malformed("part headers are not UTF-8") }
        var headers: [String: String] = [:]
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else { throw malformed("a part header has no colon") }
            headers[String(line[..<colon]).trimmingASCII().lowercased()] = String(line[line.index(after: colon)...])
                .trimmingASCII()
        }
        return headers
    }

    /// `name="value"` (or unquoted) inside a header value.
    static func parameter(_ name: String, in header: String) -> String? {
        for piece in header.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, pair[0].trimmingASCII().lowercased() == name else { continue }
            var value = pair[1].trimmingASCII()
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            return value
        }
        return nil
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, from >= 0 else { return nil }
        var i = from
        let first = needle[0]
        while i + needle.count <= bytes.count {
            if bytes[i] == first && bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    private static func malformed(_ why: String) -> GatewayError {
        .invalidRequest("The multipart body is malformed: \(why).")
    }
}
