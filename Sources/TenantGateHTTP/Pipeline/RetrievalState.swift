import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// What retrieval added to a call (execution row, header, `tenantgate.sources`).
struct RetrievalState: Sendable {
    let collection: String
    let chunks: [FoundChunk]
    let ms: Int
    let sourcesField: Bool

    /// The execution row's `retrieval` column.
    var record: String {
        JSONValue.object([
            ("collection", .string(collection)), ("chunks", .array(chunks.map { .string($0.chunkID) })),
            ("ms", .int(ms)),
        ]).jsonString
    }

    var header: String { chunks.map(\.chunkID).joined(separator: ",") }

    var sources: JSONValue {
        .array(
            chunks.enumerated().map { index, chunk in
                .object([
                    ("index", .int(index + 1)), ("chunk_id", .string(chunk.chunkID)),
                    ("document_id", .string(chunk.documentID)), ("source", chunk.source.map { .string($0) } ?? .null),
                    ("score", .number(ContextBlock.score(chunk.score))),
                ])
            })
    }
}
