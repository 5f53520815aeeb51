import TenantGateCore
import TenantGateHTTP
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// The thread that checkpoints the SQLite database when this process holds the role (`Checkpointer`),
/// five times a second on a connection of its own (opened once it holds the role): small, frequent checkpoints keep each file sync short
/// and let the WAL start over by itself between writes. Measured on a disk (2026-12-01, limits on, 45 s
/// per cell): p99 at 1 connection 12.6 → 2.5 ms, at 4 connections 13.4 → 5.4–8.4 ms, against every
/// process checkpointing in its commits; once a second instead gave 5–6 ms at 1 connection but 26–90 ms
/// at 4 (a RESTART every few seconds, stalling writers, as the WAL never started over by itself).
final class CheckpointLoop: Sendable {
    static let intervalMs = 200
    private let resigned = Locked(false)

    private init() {}

    /// Starts the loop on SQLite (PostgreSQL checkpoints by itself: nil).
    static func start(dbPath: String, log: AppLog) -> CheckpointLoop? {
        guard Database.url == nil else { return nil }
        let loop = CheckpointLoop()
        let started = OSThread.start {
            let checkpointer = Checkpointer(dbPath: dbPath)
            var db: (any SQLConnection)?
            var warned = false
            while true {
                Posix.sleepMs(CheckpointLoop.intervalMs)
                if loop.resigned.withLock({ $0 }) {
                    checkpointer.resign()
                    return
                }
                if checkpointer.claim() { log.event("checkpointer") }
                if checkpointer.lockUnavailable && !warned {
                    warned = true
                    log.event(
                        "checkpointer_unavailable", ["error": .string("cannot open \(dbPath)-checkpointer")],
                        level: "warn")
                }
                guard checkpointer.holds else { continue }
                do {
                    let conn = try db ?? Database.open(path: dbPath, cacheKiB: 64)
                    db = conn
                    try checkpointer.checkpoint(conn)
                } catch {
                    // Busy (a RESTART waits for readers and writers), or the store is failing: next time.
                    log.event("checkpoint_skipped", ["error": .string("\(error)")], level: "debug")
                    db = nil
                }
            }
        }
        return started == nil ? nil : loop
    }

    /// Gives the role up (within one interval): another worker's loop takes it.
    func resign() { resigned.withLock { $0 = true } }
}
