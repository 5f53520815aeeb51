import TenantGateCore
import TenantGateHTTP
import TenantGateSystem

/// The pool: binds once, runs N worker processes on the shared socket, restarts the dead,
/// drains on SIGTERM and replaces workers one at a time on SIGHUP.
public final class Supervisor {
    private let listen: String
    private let workers: Int
    private let workerArgs: [String]
    private let log: AppLog
    private let drainTimeoutMs: Int
    private var children: [ProcessID: Int64] = [:]  // pid → start time (ms)
    /// Each live worker's row in the shared in-flight counters (a replacement may take a freed one).
    private var indices: [ProcessID: Int] = [:]
    private var retiring: Set<ProcessID> = []
    private var failures = 0
    private let countersPath: String?
    private var counters: SharedCounters?
    /// Whether systemd passed the listening socket (then `listen` is only for the log).
    private let inherited = Posix.systemdListenFD >= 0

    /// Creates a supervisor; `workerArgs` are passed to `tenantgate worker`. With `countersPath`, the
    /// workers share in-flight counters in that file (made anew here), each on its own row.
    public init(
        listen: String, workers: Int, workerArgs: [String], log: AppLog, drainTimeoutMs: Int,
        countersPath: String? = nil
    ) {
        self.listen = listen
        self.workers = workers
        self.workerArgs = workerArgs
        self.log = log
        self.drainTimeoutMs = drainTimeoutMs
        self.countersPath = countersPath
    }

    /// Runs until SIGTERM/SIGINT; returns the exit code.
    public func run() -> Int32 {
        Posix.block(Posix.controlSignals)
        Posix.ignore(Signal.pipe)
        // systemd socket activation hands the listening socket over as fd 3 (LISTEN_FDS, LISTEN_PID).
        let fd = inherited ? Posix.systemdListenFD : FastCGI.openSocket(listen)
        guard fd >= 0 else {
            log.event("pool_error", ["error": .string("cannot listen on \(listen)")], level: "error")
            return 1
        }
        let exe = Posix.executablePath()
        if let countersPath {
            counters = SharedCounters(path: countersPath, create: true)
            if counters == nil {
                log.event(
                    "pool_error", ["error": .string("cannot create the in-flight counters at \(countersPath)")],
                    level: "error")
                return 1
            }
        }
        log.event(
            "pool_start",
            ["listen": .string(inherited ? "systemd socket (fd 3)" : listen), "workers": .int(workers)])
        for _ in 0..<workers { spawn(exe, fd) }
        var restartAt: Int64?
        while true {
            let sig = Posix.wait(for: Posix.controlSignals, timeoutMs: 250)
            reapChildren()
            switch sig {
            case Signal.term?, Signal.int?, Signal.quit?:
                shutdown()
                return 0
            case Signal.hup?:
                rollingRestart(exe, fd)
            case Signal.usr1?:
                log.reopen()
                for pid in children.keys { Posix.kill(pid, Signal.usr2) }
            default: break
            }
            let alive = children.count - retiring.count
            if alive < workers {
                let now = Posix.monotonicMs()
                if let at = restartAt {
                    if now >= at {
                        restartAt = nil
                        for _ in alive..<workers { spawn(exe, fd) }
                    }
                } else {
                    // Back off 100 ms doubling to 5 s while workers keep dying young.
                    let delay = min(5000, 100 << min(failures, 6))
                    restartAt = now + Int64(delay)
                    log.event("worker_restart_scheduled", ["delay_ms": .int(delay)], level: "warn")
                }
            }
        }
    }

    private func spawn(_ exe: String, _ fd: Int32) {
        let used = Set(indices.values)
        guard let index = (0..<SharedCounters.rows).first(where: { !used.contains($0) }) else { return }
        var args = ["worker"] + workerArgs
        if let countersPath { args += ["--counters", countersPath, "--pool-index", String(index)] }
        guard let pid = Posix.spawn(path: exe, args: args, listenFD: fd) else {
            log.event("pool_error", ["error": .string("cannot spawn worker")], level: "error")
            failures += 1
            return
        }
        children[pid] = Posix.monotonicMs()
        indices[pid] = index
        log.event("worker_spawned", ["worker_pid": .int(Int(pid))])
    }

    private func reapChildren() {
        while let (pid, status) = Posix.reap() {
            guard let started = children.removeValue(forKey: pid) else { continue }
            // Whatever the worker held in flight is over: take it out of the shared totals.
            if let index = indices.removeValue(forKey: pid) { counters?.clear(row: index) }
            let wasRetiring = retiring.remove(pid) != nil
            if wasRetiring { continue }
            let lived = Posix.monotonicMs() - started
            // Killed from outside (SIGKILL: an operator, the OOM killer) is not a crash loop: replaced after
            // the shortest pause. Exits and crashes of its own back off while they come young.
            let killed = status & 0x7f == Signal.kill
            if !killed { failures = lived < 10_000 ? failures + 1 : 0 }
            log.event(
                "worker_died",
                ["worker_pid": .int(Int(pid)), "status": .int(Int(status)), "lived_ms": .int(Int(lived))],
                level: "error")
        }
    }

    /// Replaces workers one at a time: start the new one, then drain the old one.
    private func rollingRestart(_ exe: String, _ fd: Int32) {
        log.event("pool_reload")
        let old = Array(children.keys)
        for pid in old {
            spawn(exe, fd)
            Posix.sleepMs(200)  // let the new worker load its config and start accepting
            retiring.insert(pid)
            Posix.kill(pid, Signal.term)
            waitFor([pid], timeoutMs: drainTimeoutMs + 1000)
        }
    }

    private func waitFor(_ pids: [ProcessID], timeoutMs: Int) {
        let deadline = Posix.monotonicMs() + Int64(timeoutMs)
        while Posix.monotonicMs() < deadline && pids.contains(where: { children[$0] != nil }) {
            reapChildren()
            Posix.sleepMs(10)
        }
        for pid in pids where children[pid] != nil { Posix.kill(pid, Signal.kill) }
        reapChildren()
    }

    private func shutdown() {
        log.event("pool_draining")
        for pid in children.keys {
            retiring.insert(pid)
            Posix.kill(pid, Signal.term)
        }
        waitFor(Array(children.keys), timeoutMs: drainTimeoutMs + 1000)
        // A socket systemd made belongs to systemd (it keeps listening for the next start).
        if listen.hasPrefix("unix:") && !inherited { Posix.unlink(String(listen.dropFirst(5))) }
        log.event("pool_exit")
    }
}
