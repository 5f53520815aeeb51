import TenantGateCore
import TenantGateHTTP
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Settings for one worker process.
public struct WorkerOptions: Sendable {
    public var dbPath: String
    public var threads: Int
    public var maxBodyBytes: Int
    public var logPath: String?
    public var logLevel: String
    /// How long in-flight requests may run after SIGTERM.
    public var drainTimeoutMs: Int
    /// Serves `/admin/…`, if set (the admin page lives in its own module, wired by the executable).
    public var admin: (any AdminResponder)?
    /// The pool's shared in-flight counters (`serve` makes the file) and this worker's row in them; without
    /// them the worker counts on its own (spawn-fcgi, mod_fcgid).
    public var countersPath: String?
    public var poolIndex = 0
    /// Request slots of the whole pool (threads × workers), for the fair-share defaults.
    public var poolSlots: Int?
    /// `--settle durable` (true, the default): a successful answer ends only once its settlement is
    /// committed, so a killed worker loses nothing a client saw succeed. `fast`: settlements are written a
    /// millisecond or so after the answer, in larger batches (more throughput; a SIGKILL loses the last
    /// few milliseconds of rows, whose reservations then expire).
    public var durableSettlements = true

    /// Creates options.
    public init(
        dbPath: String, threads: Int, maxBodyBytes: Int, logPath: String?, logLevel: String, drainTimeoutMs: Int
    ) {
        self.dbPath = dbPath
        self.threads = threads
        self.maxBodyBytes = maxBodyBytes
        self.logPath = logPath
        self.logLevel = logLevel
        self.drainTimeoutMs = drainTimeoutMs
    }
}
