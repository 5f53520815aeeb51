import Testing

@testable import TenantGateCore

@Suite struct JSONParserTests {
    @Test func parsesAndKeepsNumberText() throws {
        let value = try JSONParser.parse(#"{"a": 1.50, "b": [true, false, null], "c": "x\u00e9\n", "d": -2e3}"#)
        #expect(value["a"] == .number("1.50"))
        #expect(value["b"] == .array([.bool(true), .bool(false), .null]))
        #expect(value["c"]?.stringValue == "xé\n")
        #expect(value["d"]?.doubleValue == -2000)
        #expect(value.jsonString == #"{"a":1.50,"b":[true,false,null],"c":"xé\n","d":-2e3}"#)
    }

    /// Plain ASCII strings are read straight from the input; anything special after a plain start is
    /// copied and decoded from there on, and still checked (escapes, UTF-8, control characters).
    @Test func stringsWithAPlainStartDecodeTheRest() throws {
        let long = String(repeating: "abcdefgh", count: 8)
        let cases: [(String, String)] = [
            (#""""#, ""), (#""short""#, "short"), ("\"\(long)\"", long), (#""abc\ndef""#, "abc\ndef"),
            (#""abc\"""#, "abc\""), (#""plain é then \u00e9""#, "plain é then é"), (#""x\/y""#, "x/y"),
            ("\"\(long)🚀\"", long + "🚀"),
        ]
        for (text, expected) in cases {
            #expect(try JSONParser.parse(text).stringValue == expected, "\(text)")
            #expect(try JSONParser.parse("{\(text):1}")[expected] == .number("1"), "\(text) as a key")
        }
        for bad in ["\"abc", "\"abc\u{01}\"", "\"abc\\", "\"abc\\q\""] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONParser.parse(bad) }
        }
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0x61, 0x62, 0xFF, 0x22]) }
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00""#).stringValue == "😀")
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "tru", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "{} {}",
        "\"a\u{01}\"", "[1 2]", "{\"a\" 1}", "NaN", "'a'",
    ])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test(
        arguments: [
            [0x22, 0xFF, 0x22], [0x22, 0xC0, 0x80, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
            [0x22, 0xE2, 0x82, 0x22],
        ] as [[UInt8]])
    func rejectsInvalidUTF8(_ bytes: [UInt8]) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
    }

    @Test func limitsNesting() {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSONParser.parse(ok)) != nil)
    }

    @Test func writerEscapesControlCharacters() {
        #expect(JSONValue.string("a\"b\\c\u{01}\t").jsonString == #""a\"b\\c\u0001\t""#)
    }

    @Test func settingReplacesInPlaceAndDropsDuplicates() throws {
        // The parser refuses duplicate names; a built value may still carry them.
        let value = JSONValue.object([("model", .string("a")), ("x", .int(1)), ("model", .string("b"))])
        #expect(value.setting("model", .string("z")).jsonString == #"{"model":"z","x":1}"#)
        #expect(value.setting("new", .int(2)).jsonString == #"{"model":"a","x":1,"model":"b","new":2}"#)
    }
}

@Suite struct SSETests {
    @Test func splitsEventsAcrossArbitraryChunks() {
        let stream = Array("data: {\"a\":1}\n\n: comment\n\nevent: ping\ndata: x\ndata: y\r\n\r\ndata: [DONE]\n\n".utf8)
        for size in [1, 2, 3, 7, 64] {
            var parser = SSEParser()
            var events: [SSEEvent] = []
            var i = 0
            while i < stream.count {
                events += parser.feed(Array(stream[i..<min(stream.count, i + size)])) ?? []
                i += size
            }
            #expect(
                events == [
                    SSEEvent(event: nil, data: "{\"a\":1}"), SSEEvent(event: "ping", data: "x\ny"),
                    SSEEvent(event: nil, data: "[DONE]"),
                ])
        }
    }

    @Test func framesMultilineData() {
        #expect(
            String(decoding: SSEParser.frame(data: "a\nb", event: "e"), as: UTF8.self)
                == "event: e\ndata: a\ndata: b\n\n")
    }

    @Test func refusesOversizedEvent() {
        var parser = SSEParser(maxEventBytes: 10)
        #expect(parser.feed(Array("data: 0123456789abc".utf8)) == nil)
    }

    @Test func finishReturnsTrailingEvent() {
        var parser = SSEParser()
        _ = parser.feed(Array("data: tail".utf8))
        #expect(parser.finish() == SSEEvent(event: nil, data: "tail"))
    }
}
