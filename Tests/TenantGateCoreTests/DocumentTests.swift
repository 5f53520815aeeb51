import Testing

@testable import TenantGateCore

@Suite struct DocumentChunkerTests {
    let rule = ChunkingRule(chunkTokens: 64, overlapTokens: 8)  // 256 bytes, 32 of overlap

    @Test func shortParagraphsArePackedIntoOneChunk() {
        let text = "First paragraph.\n\nSecond paragraph.\n\n\n  Third one.  "
        #expect(DocumentChunker.chunks(text, rule: rule) == ["First paragraph.\n\nSecond paragraph.\n\nThird one."])
    }

    @Test func chunksStayWithinTheRuleAndOverlapAtWordBoundaries() {
        let words = (0..<400).map { "word\($0)" }
        let text = stride(from: 0, to: words.count, by: 25).map {
            words[$0..<min($0 + 25, words.count)].joined(separator: " ")
        }
        .joined(separator: "\n\n")
        let chunks = DocumentChunker.chunks(text, rule: rule)
        #expect(chunks.count > 10)
        for chunk in chunks { #expect(chunk.utf8.count <= 256) }
        for (previous, next) in zip(chunks, chunks.dropFirst()) {
            let firstWord = String(next.split(whereSeparator: { $0 == " " || $0 == "\n" })[0])
            // The next chunk starts inside the previous one's tail, on a whole word.
            #expect(previous.hasSuffix(next.prefix(while: { $0 != "\n" }).description) || previous.contains(firstWord))
            #expect(words.contains(firstWord))
        }
        // Every word of the document is in some chunk, in order.
        let seen = chunks.flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) }
        var last = -1
        for word in seen {
            let index = Int(word.dropFirst(4)) ?? -1
            #expect(index >= last - 8)
            last = max(last, index)
        }
        #expect(last == 399)
    }

    @Test func aLongParagraphIsSplitAtSentencesThenSpacesThenCharacters() {
        let sentence = "This sentence has exactly some words in it."
        let paragraph = Array(repeating: sentence, count: 20).joined(separator: " ")
        let chunks = DocumentChunker.chunks(paragraph, rule: ChunkingRule(chunkTokens: 64, overlapTokens: 0))
        #expect(chunks.count > 2)
        for chunk in chunks {
            #expect(chunk.utf8.count <= 256)
            #expect(chunk.hasSuffix("."))
        }
        // A run without spaces is cut at character boundaries, never inside a UTF-8 sequence.
        let run = String(repeating: "é", count: 400)
        let cut = DocumentChunker.chunks(run, rule: ChunkingRule(chunkTokens: 64, overlapTokens: 0))
        #expect(cut.count >= 3)
        #expect(cut.joined() == run)
        for chunk in cut { #expect(chunk.utf8.count <= 256 && chunk.allSatisfy { $0 == "é" }) }
    }

    @Test func theRuleIsBounded() {
        #expect(ChunkingRule(chunkTokens: 1, overlapTokens: 1000) == ChunkingRule(chunkTokens: 64, overlapTokens: 16))
        #expect(DocumentChunker.chunks("   \n\n \n").isEmpty)
    }
}

@Suite struct DocumentTextTests {
    @Test func htmlBecomesItsVisibleText() {
        let html = """
            <html><head><title>Hidden</title><style>p { color: red }</style></head>
            <body><h1>Title &amp; more</h1><p>One&nbsp;two <b>three</b>&#33; &#x263A;</p><script>var a = "<p>";</script>
            <!-- a <p>comment</p> --><ul><li>a</li><li>b</li></ul>x<br>y &bogus; &lt;tag&gt;</body></html>
            """
        #expect(HTMLText.plain(html) == "Title & more\n\nOne two three! ☺\n\na\n\nb\n\nx\ny &bogus; <tag>")
    }

    @Test func malformedMarkupDegradesToText() {
        #expect(HTMLText.plain("a < b and <p unclosed") == "a < b and <p unclosed")
        // Many '<' without '>' stay linear (a hostile 1 MiB document).
        let hostile = String(repeating: "<", count: 1 << 20)
        #expect(HTMLText.plain(hostile).utf8.count == 1 << 20)
        #expect(HTMLText.plain("<script>never closed") == "")
        #expect(HTMLText.plain("&#0; &#xFFFFFFFF; &#55296;") == "&#0; &#xFFFFFFFF; &#55296;")
    }

    @Test func documentsAreValidatedAndNormalised() throws {
        #expect(try DocumentText.prepare(Array("a\r\nb\rc".utf8), format: .text) == "a\nb\nc")
        #expect(throws: GatewayError.self) { try DocumentText.prepare([0x61, 0xFF], format: .text) }
        #expect(throws: GatewayError.self) { try DocumentText.prepare([0x61, 0x00], format: .text) }
        #expect(throws: GatewayError.self) { try DocumentText.prepare(Array(" \n\t".utf8), format: .text) }
        #expect(throws: GatewayError.self) { try DocumentText.prepare(Array("<p> </p>".utf8), format: .html) }
        #expect(try DocumentFormat.detect(named: nil, filename: "A.HTM", contentType: nil) == .html)
        #expect(
            try DocumentFormat.detect(named: nil, filename: nil, contentType: "text/markdown; charset=utf-8")
                == .markdown)
        #expect(throws: GatewayError.self) { try DocumentFormat.detect(named: "pdf", filename: nil, contentType: nil) }
    }
}

@Suite struct DocumentSearchTests {
    @Test func queriesBecomeQuotedWordsAndNeverSyntax() throws {
        #expect(try FullTextQuery.match("Apple pie") == #""apple" OR "pie""#)
        #expect(
            try FullTextQuery.match(#"NEAR(a b) "x" col:y * ^z AND a"#)
                == #""near" OR "a" OR "b" OR "x" OR "col" OR "y" OR "z" OR "and""#)
        #expect(try FullTextQuery.match("été café 42") == #""été" OR "café" OR "42""#)
        #expect(throws: GatewayError.self) { try FullTextQuery.match(#""*:^() -- ;"#) }
        let many = (0..<100).map { "w\($0)" }.joined(separator: " ")
        #expect(FullTextQuery.terms(many).count == FullTextQuery.maxTerms)
        #expect(FullTextQuery.terms(String(repeating: "a", count: 500)).first?.utf8.count == FullTextQuery.maxTermBytes)
    }

    @Test func searchBodiesAreValidated() throws {
        let ok = try SearchRequest.parse(try JSONParser.parse(#"{"query":"x","k":3,"mode":"hybrid"}"#))
        #expect(ok == SearchRequest(query: "x", k: 3, mode: .hybrid))
        for bad in [
            #"{"query":1}"#, #"{"query":"x","k":0}"#, #"{"query":"x","k":"3"}"#, #"{"query":"x","mode":"y"}"#, "[]",
        ] {
            #expect(throws: GatewayError.self) { try SearchRequest.parse(try JSONParser.parse(bad)) }
        }
    }

    @Test func reciprocalRankFusionRewardsAgreement() {
        let fused = ReciprocalRank.fuse([["a", "b", "c"], ["c", "a", "d"]], limit: 3)
        #expect(fused.map(\.0) == ["a", "c", "b"])
        #expect(abs(fused[0].1 - (1 / 61.0 + 1 / 62.0)) < 1e-12)
        #expect(ReciprocalRank.fuse([[String]](), limit: 3).isEmpty)
    }
}

@Suite struct MultipartTests {
    let body = Array(
        "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nnotes\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.md\"\r\nContent-Type: text/markdown\r\n\r\n# Hi\r\n\r\nbody\r\n--XyZ--\r\n"
            .utf8)

    @Test func partsAreRead() throws {
        #expect(Multipart.boundary(contentType: "multipart/form-data; boundary=\"XyZ\"") == "XyZ")
        #expect(Multipart.boundary(contentType: "application/json") == nil)
        let parts = try Multipart.parse(body, boundary: "XyZ")
        #expect(parts.map(\.name) == ["source", "file"])
        #expect(parts[1].filename == "a.md" && parts[1].contentType == "text/markdown")
        #expect(parts[1].body == Array("# Hi\r\n\r\nbody".utf8))
    }

    @Test func malformedBodiesAreRefused() {
        for bad in [
            "no boundary at all", "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nno end",
            "--XyZ\r\nno colon\r\n\r\nx\r\n--XyZ--", "--XyZ\r\nContent-Type: x\r\n\r\nx\r\n--XyZ--", "--XyZ",
            "--XyZ junk",
        ] {
            #expect(throws: GatewayError.self) { try Multipart.parse(Array(bad.utf8), boundary: "XyZ") }
        }
        let many =
            (0..<20).map { "--B\r\nContent-Disposition: form-data; name=\"p\($0)\"\r\n\r\nx\r\n" }.joined() + "--B--"
        #expect(throws: GatewayError.self) { try Multipart.parse(Array(many.utf8), boundary: "B") }
    }
}

@Suite struct RetrievalSettingsTests {
    let tenant = RetrievalSettings(tenant: try? JSONParser.parse(#"{"collection":"kb","k":3,"max_context_tokens":50}"#))

    @Test func aRequestMayPickTheCollectionOrTurnItOff() throws {
        #expect(try RetrievalSettings.resolve(tenant: tenant, request: nil) == tenant)
        #expect(try RetrievalSettings.resolve(tenant: tenant, request: .string("off")) == nil)
        #expect(try RetrievalSettings.resolve(tenant: tenant, request: .bool(false)) == nil)
        let other = try RetrievalSettings.resolve(tenant: tenant, request: .string("other"))
        #expect(other?.collection == "other" && other?.k == 3)
        let object = try RetrievalSettings.resolve(
            tenant: nil, request: try JSONParser.parse(#"{"collection":"x","k":2,"mode":"hybrid"}"#))
        #expect(object?.collection == "x" && object?.k == 2 && object?.mode == .hybrid)
        for bad in [#""bad name""#, #"{"k":2}"#, #"{"collection":"x","k":30}"#, #"{"collection":"x","mode":"z"}"#, "7"]
        {
            #expect(throws: GatewayError.self) {
                try RetrievalSettings.resolve(tenant: nil, request: try JSONParser.parse(bad))
            }
        }
    }

    @Test func theContextKeepsToItsTokenBudgetInRankOrder() throws {
        let settings = try #require(tenant)
        let chunks = [
            FoundChunk(documentID: "doc_a", source: "a.md", seq: 0, text: "short one", score: 3),
            FoundChunk(documentID: "doc_b", source: nil, seq: 2, text: String(repeating: "long ", count: 60), score: 2),
            FoundChunk(documentID: "doc_c", source: "c.md", seq: 1, text: "short two", score: 1),
        ]
        let (text, used) = try #require(ContextBlock.render(chunks, settings: settings))
        #expect(used.map(\.chunkID) == ["doc_a#0", "doc_c#1"])
        #expect(text.hasPrefix("Use the numbered sources"))
        #expect(
            text.contains("[1] (source: a.md, id: doc_a#0)\nshort one\n\n[2] (source: c.md, id: doc_c#1)\nshort two"))
        var custom = settings
        custom.template = "Sources: {{context}} -- end"
        #expect(
            ContextBlock.render(Array(chunks.prefix(1)), settings: custom)?.0
                == "Sources: [1] (source: a.md, id: doc_a#0)\nshort one -- end")
        custom.maxContextTokens = 1
        #expect(ContextBlock.render(chunks, settings: custom) == nil)
    }

    @Test func namesIdsAndScores() {
        #expect(DocumentSettings.isCollectionName("kb.v2_main-1"))
        for bad in ["", "-x", ".x", "a b", "a/b", String(repeating: "a", count: 65), "ä"] {
            #expect(!DocumentSettings.isCollectionName(bad))
        }
        #expect(DocumentSettings.isDocumentID("doc_0123456789abcdef01234567"))
        #expect(!DocumentSettings.isDocumentID("doc_0123456789ABCDEF01234567"))
        #expect(ContextBlock.score(1.5) == "1.500000" && ContextBlock.score(-0.0000015) == "-0.000002")
        #expect(ContextBlock.score(.nan) == "0" && ContextBlock.score(1e300) == "0")
    }
}
