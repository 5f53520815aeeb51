import TenantGateCore
import TenantGateServing

/// A step every answer stream passes through between the provider's decoder and the client's API writer
/// (guardrails hold back, redact or stop here). It sees every piece, the final `.end` included.
protocol StreamFilter: Sendable {
    /// The pieces to pass on for `piece` (none to hold it back, several to release what was held).
    mutating func filter(_ piece: StreamPiece) -> [StreamPiece]
    /// It ended the answer (a block): the relay stops reading the upstream.
    var stopped: Bool { get }
}

extension StreamFilter {
    var stopped: Bool { false }
}

/// Relays one answer stream to the client: provider pieces → stream filters → the client's API writer →
/// the sink, flushed after each batch. Made per attempt: a failed attempt wrote nothing, so a retry or a
/// fallback starts from the same state.
struct StreamRelay {
    private var writer: ReplyWriter
    private(set) var filters: [any StreamFilter]
    private let sink: ResponseSink
    private let headers: [(String, String)]
    /// The client went away (a write or flush failed).
    private(set) var clientGone = false
    /// A filter ended the answer.
    private(set) var stoppedByFilter = false

    init(writer: ReplyWriter, filters: [any StreamFilter], sink: ResponseSink, headers: [(String, String)]) {
        self.writer = writer
        self.filters = filters
        self.sink = sink
        self.headers = headers
    }

    /// Whether the stream's head went out.
    var opened: Bool { sink.headWritten }

    /// Writes the stream's head (once).
    func open() {
        guard !sink.headWritten else { return }
        sink.head(
            status: 200,
            headers: [
                ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
            ] + headers)
    }

    /// Writes `pieces` and flushes; `usage` and `usageChunk` close the stream at `.end`. False once the
    /// client is gone.
    mutating func write(_ pieces: [StreamPiece], usage: Usage?, usageChunk: (Usage) -> JSONValue) -> Bool {
        var out = [UInt8]()
        var end = [UInt8]()
        for piece in pieces {
            var passed = [piece]
            for index in filters.indices {
                passed = passed.flatMap { filters[index].filter($0) }
            }
            for piece in passed {
                switch piece {
                case .chunk(let json, let raw): out += writer.chunk(json, raw: raw)
                case .frame(let bytes): out += bytes
                case .end: end += writer.done(usage: usage, usageChunk: usageChunk)
                }
            }
        }
        if filters.contains(where: \.stopped) { stoppedByFilter = true }
        // The client's stream opens with its first event: a failure before it is a plain error answer.
        if !out.isEmpty || !end.isEmpty { open() }
        if !out.isEmpty {
            sink.body(out)
            if !sink.flush() { clientGone = true }
        }
        // The stream's end is held until its settlement is written (`ResponseSink.last`).
        if !end.isEmpty { sink.last(end) }
        return !clientGone && !stoppedByFilter
    }

    /// A final error event and a clean end, so SDKs raise instead of hanging.
    func fail(_ error: GatewayError) {
        sink.last(writer.failure(error))
    }
}
