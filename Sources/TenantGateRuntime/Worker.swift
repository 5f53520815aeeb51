import TenantGateCore
import TenantGateHTTP
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// One worker process: up to T threads accepting on the inherited socket (fd 0), drained on SIGTERM.
///
/// It starts `initialThreads` and, whenever a request leaves no thread accepting, a quarter as many more as
/// it has (at least one), up to T, so a burst of a thousand calls is taken in a few steps:
/// an idle worker costs the memory of a few threads, a busy one holds T calls at once. Threads are never
/// started per request, only when the pool grows.
public final class Worker: Sendable {
    /// `pinned`: waiting for the next request on a connection the web server kept (not accepting new ones).
    private enum SlotState { case accepting, pinned, busy, exited }

    /// The threads and what each is doing; `accepting` counts the `.accepting` ones.
    private struct Slots {
        var states: [SlotState] = []
        var threads: [OSThread?] = []
        var accepting = 0
    }

    /// Threads started at once; the rest start as load needs them.
    static let initialThreads = 16
    /// How long a blocked accept waits before it looks for a drain; a drain takes up to this long.
    static let acceptWakeMs = 1000

    private let options: WorkerOptions
    private let draining = Locked(false)
    private let slots = Locked(Slots())
    /// Starts the thread of the next slot (set once the shared resources exist).
    private let starter = Locked<(@Sendable (Int) -> OSThread?)?>(nil)

    /// Creates a worker.
    public init(options: WorkerOptions) {
        self.options = options
    }

    /// Serves until SIGTERM/SIGINT; returns the exit code.
    public func run() -> Int32 {
        let log = AppLog(path: options.logPath, level: options.logLevel)
        // Control signals are taken synchronously by this thread; accept threads inherit the mask.
        Posix.block([Signal.term, Signal.int, Signal.hup, Signal.quit, Signal.usr2])
        Posix.ignore(Signal.pipe)
        // Each in-flight call holds a FastCGI connection and an upstream connection: raise the soft limit on
        // descriptors to the hard one.
        Posix.raiseOpenFileLimit()
        FastCGI.initialize()
        CurlGlobal.initialize()
        // Not on a FastCGI socket: a classic CGI request (the web server set GATEWAY_INTERFACE), or a mistake.
        let cgi = FastCGI.isCGI
        if cgi && Posix.env("GATEWAY_INTERFACE") == nil {
            log.event(
                "worker_error",
                ["error": .string("fd 0 is not a listening socket, and this is not a CGI request")], level: "error")
            return 2
        }
        // One long-lived process sharing the SQLite database checkpoints it, on a thread of its own
        // (`CheckpointLoop`); no commit waits for a checkpoint's file syncs. A CGI process lives for one
        // request and keeps SQLite's default.
        if !cgi { Maintenance.leaveCheckpointsToOneProcess() }
        // A store busy past its timeout (another process holding the write lock, a PostgreSQL failover) is
        // waited out for a minute rather than ending the worker (the supervisor would restart it into the
        // same wait, with a growing backoff).
        var loaded: ConfigCache?
        let waitUntil = Posix.monotonicMs() + 60_000
        while loaded == nil {
            do {
                loaded = try ConfigCache(dbPath: options.dbPath, log: log)
            } catch let error as any StorageFailure where error.isStorageFailure && Posix.monotonicMs() < waitUntil {
                log.event("worker_waiting", ["error": .string("store unavailable: \(error)")], level: "warn")
                Posix.sleepMs(500)
            } catch {
                log.event("worker_error", ["error": .string("cannot load configuration: \(error)")], level: "error")
                return 1
            }
        }
        guard let configs = loaded else { return 1 }
        if !cgi { configs.startPolling() }
        let shared = options.countersPath.flatMap { SharedCounters(path: $0, create: false) }
        if options.countersPath != nil && shared == nil {
            log.event("worker_error", ["error": .string("cannot map the pool's in-flight counters")], level: "error")
            return 1
        }
        guard let counters = shared ?? SharedCounters() else {
            log.event("worker_error", ["error": .string("cannot map in-flight counters")], level: "error")
            return 1
        }
        let row = shared == nil ? 0 : options.poolIndex
        counters.clear(row: row)  // a replaced worker's row starts empty (the supervisor cleared it already)
        let gate = ConcurrencyGate(counters: counters, row: row, poolSlots: options.poolSlots ?? options.threads)
        let gateway = Gateway(
            configs: configs, log: log,
            options: GatewayOptions.fromEnvironment(
                maxBodyBytes: options.maxBodyBytes, durableSettlements: options.durableSettlements),
            concurrency: gate, admin: options.admin)
        let services: WorkerServices
        let settlements: SettleQueue
        do {
            let writer = try SharedWriter(path: options.dbPath)
            settlements = SettleQueue(
                writer: writer, log: log, commitDelayMs: options.durableSettlements ? 0 : 1)
            settlements.start()
            let reservations = ReserveBatcher(writer: writer, log: log)
            reservations.start()
            // The composition root: the store's ports over this worker's connections (8 pooled readers; 2
            // scan connections, opened on first use, for long reads; the one write connection).
            let store = StorePorts.pooled(
                readers: try ConnectionPool(path: options.dbPath, count: 8, cacheKiB: 512),
                scans: try ConnectionPool(path: options.dbPath, count: 2, cacheKiB: 512, waitMs: 2_000, lazily: true),
                writer: writer)
            services = WorkerServices(
                store: store, settlements: settlements, reservations: reservations,
                leases: LeaseBook(settlements: settlements))
        } catch {
            log.event("worker_error", ["error": .string("cannot open the database: \(error)")], level: "error")
            return 1
        }
        let leases = services.leases
        if cgi {
            // One request, then every settlement and lease written back before the process ends.
            let connection = CGIConnection()
            let (request, tooLarge) = FastCGIAdapter.makeRequest(connection, maxBody: options.maxBodyBytes)
            gateway.handle(
                request, tooLarge: tooLarge, sink: FastCGISink(connection), resources: ThreadResources(services))
            leases.retireExpired(nowMs: Posix.wallMicros() / 1000, all: true)
            settlements.flush()
            return 0
        }
        let start: @Sendable (Int) -> OSThread? = { [self] index in
            OSThread.start { [self] in
                self.serve(slot: index, gateway: gateway, resources: ThreadResources(services), log: log)
            }
        }
        starter.withLock { $0 = start }
        // Idle accepts wake up this often to see a drain (fd 0 is the listening socket).
        FastCGI.setAcceptTimeout(0, ms: Worker.acceptWakeMs)
        for _ in 0..<min(options.threads, Worker.initialThreads) {
            guard grow() else {
                log.event("worker_error", ["error": .string("cannot start thread")], level: "error")
                return 1
            }
        }
        log.event("worker_start", ["threads": .int(options.threads)])
        let heartbeat = Heartbeat(dbPath: options.dbPath, log: log)
        let checkpoints = CheckpointLoop.start(dbPath: options.dbPath, log: log)
        while true {
            guard
                let sig = Posix.wait(
                    for: [Signal.term, Signal.int, Signal.hup, Signal.quit, Signal.usr2], timeoutMs: 1000)
            else {
                heartbeat.beat(inFlight: gateway.inFlight.withLock { $0 })
                // Leases that stopped admitting give their unused capacity back.
                leases.retireExpired(nowMs: Posix.wallMicros() / 1000)
                continue
            }
            if sig == Signal.usr2 || sig == Signal.hup {
                log.reopen()
                continue
            }
            break
        }
        log.event("worker_draining")
        // A drain can last as long as the longest stream in flight: another worker checkpoints meanwhile.
        checkpoints?.resign()
        drain()
        leases.retireExpired(nowMs: Posix.wallMicros() / 1000, all: true)
        settlements.flush()
        heartbeat.stop()
        log.event("worker_exit")
        return 0
    }

    /// Starts one more thread (if below the maximum and not draining); false if it could not start.
    @discardableResult
    private func grow() -> Bool {
        guard let start = starter.withLock({ $0 }), !draining.withLock({ $0 }) else { return true }
        let index = slots.withLock { table -> Int? in
            guard table.states.count < options.threads else { return nil }
            table.states.append(.busy)
            table.threads.append(nil)
            return table.states.count - 1
        }
        guard let index else { return true }
        let thread = start(index)
        slots.withLock { table in
            table.threads[index] = thread
            if thread == nil { table.states[index] = .exited }
        }
        return thread != nil
    }

    private func drain() {
        draining.withLock { $0 = true }
        FastCGI.markShutdownPending()
        let deadline = Posix.monotonicMs() + Int64(options.drainTimeoutMs)
        while Posix.monotonicMs() < deadline {
            let table = slots.withLock { $0 }
            // Wait for every thread to leave. No thread is signalled: accepting threads leave at their next
            // accept timeout (a signal could land after libfcgi's accept, while it waits for or reads the
            // params, and it would then drop that connection); a thread on a kept connection leaves when
            // the web server closes that connection (nginx: the upstream's keepalive_time and
            // keepalive_timeout), since closing it here could race a request nginx is sending on it.
            if table.states.allSatisfy({ $0 == .exited }) { return }
            Posix.sleepMs(10)
        }
    }

    private func serve(slot: Int, gateway: Gateway, resources: ThreadResources, log: AppLog) {
        guard let fcgi = FastCGIRequest(listenFD: 0) else {
            slots.withLock { $0.states[slot] = .exited }
            return
        }
        while true {
            // A thread on a kept connection serves only that connection's next request: it does not count
            // as accepting, so the pool grows for new connections.
            let pinned = fcgi.isKept
            let (stop, starved) = slots.withLock { table -> (Bool, Bool) in
                // A kept connection is served until the web server closes it, draining or not.
                if !pinned && draining.withLock({ $0 }) {
                    table.states[slot] = .exited
                    return (true, false)
                }
                table.states[slot] = pinned ? .pinned : .accepting
                if !pinned { table.accepting += 1 }
                return (false, table.accepting == 0)
            }
            if stop { return }
            // Pinned with nobody left accepting new connections: start one that does.
            if starved { grow() }
            let rc = fcgi.accept()
            let (stopNow, noneLeft) = slots.withLock { table -> (Bool, Bool) in
                if !pinned { table.accepting -= 1 }
                // Holding the slot lock while reading `draining` orders this with drain()'s scan.
                if rc < 0 && draining.withLock({ $0 }) {
                    table.states[slot] = .exited
                    return (true, false)
                }
                table.states[slot] = .busy
                return (false, rc >= 0 && table.accepting == 0)
            }
            if stopNow { return }
            // This request took the last accepting thread: start more for the next ones.
            if noneLeft {
                let running = slots.withLock { $0.states.count }
                for _ in 0..<max(1, running / 4) { grow() }
            }
            if rc < 0 {
                // -104 (connection reset) and EINTR happen under load, -11 when an idle accept times out:
                // try again.
                if rc != -104 && rc != -4 && rc != -11 { Posix.sleepMs(5) }
                continue
            }
            let (request, tooLarge) = FastCGIAdapter.makeRequest(fcgi, maxBody: options.maxBodyBytes)
            let sink = FastCGISink(fcgi)
            gateway.handle(request, tooLarge: tooLarge, sink: sink, resources: resources)
            fcgi.finish()
        }
    }
}
