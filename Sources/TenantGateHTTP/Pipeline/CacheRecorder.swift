import TenantGateCore

/// Records what passes (the upstream's chunks, before any policy) so the cache can keep a finished stream.
struct CacheRecorder: StreamFilter {
    private(set) var recorder = StreamRecorder()

    mutating func filter(_ piece: StreamPiece) -> [StreamPiece] {
        if case .chunk(let json, _) = piece { recorder.record(json) }
        return [piece]
    }
}
