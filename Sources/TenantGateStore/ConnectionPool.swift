import Dispatch
import TenantGateSystem

/// A few SQLite connections shared by every thread of a worker, for what is not accounting (circuit
/// reads, readiness, the metrics scrape, the admin page). A thread per connection would cost each of
/// hundreds of request threads a page cache and a schema copy; these are checked out per use instead.
public final class ConnectionPool: Sendable {
    /// Idle connections; each is given to one borrower at a time.
    private let free: Locked<[Confined<any SQLConnection>]>
    private let available: DispatchSemaphore
    private let path: String
    private let cacheKiB: Int

    /// Opens `count` connections to `path` (`lazily`: each when first needed, for a pool most workers
    /// rarely use).
    public init(path: String, count: Int, cacheKiB: Int, waitMs: Int = 5_000, lazily: Bool = false) throws {
        self.waitMs = max(1, waitMs)
        self.path = path
        self.cacheKiB = cacheKiB
        var connections: [Confined<any SQLConnection>] = []
        if !lazily {
            for _ in 0..<max(1, count) {
                connections.append(Confined(try Database.open(path: path, cacheKiB: cacheKiB)))
            }
        }
        free = Locked(connections)
        available = DispatchSemaphore(value: max(1, count))
    }

    /// How long a thread waits for a free connection before the request is refused (`503`).
    public let waitMs: Int

    /// Runs `body` with a connection of its own, waiting at most `waitMs` for one if all are in use (then
    /// it throws `PoolExhausted`, a storage failure the gateway answers with `503`).
    public func with<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        guard available.wait(timeout: .now() + .milliseconds(waitMs)) == .success else { throw PoolExhausted() }
        let connection: any SQLConnection
        do {
            // The semaphore counts free and unopened connections alike: past it, one is ours.
            if let idle = free.withLock({ $0.popLast() }) {
                connection = idle.resource
            } else {
                connection = try Database.open(path: path, cacheKiB: cacheKiB)
            }
        } catch {
            available.signal()
            throw error
        }
        defer {
            free.withLock { $0.append(Confined(connection)) }
            available.signal()
        }
        return try body(connection)
    }
}

/// Every pooled connection stayed busy for the pool's whole wait.
public struct PoolExhausted: StorageFailure {
    public var isStorageFailure: Bool { true }
    public var reason: String { "busy" }
}
