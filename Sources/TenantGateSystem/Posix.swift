#if canImport(Glibc)
    import Glibc
#endif

/// Process, signal and thread primitives used by the worker pool.
public enum Posix {
    /// The signals the pool handles synchronously with `sigwait`.
    public static let controlSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGQUIT]

    /// Blocks `signals` in the calling thread (and threads it creates later).
    public static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for one of `signals` (which must be blocked) and returns it.
    public static func wait(for signals: [Int32]) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var sig: Int32 = 0
        while sigwait(&set, &sig) != 0 {}
        return sig
    }

    /// Waits up to `timeoutMs` for one of `signals`; nil on timeout.
    public static func wait(for signals: [Int32], timeoutMs: Int) -> Int32? {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var ts = timespec(tv_sec: timeoutMs / 1000, tv_nsec: (timeoutMs % 1000) * 1_000_000)
        let sig = sigtimedwait(&set, nil, &ts)
        return sig > 0 ? sig : nil
    }

    /// Installs a do-nothing handler without SA_RESTART, so the signal interrupts blocking calls.
    public static func installInterruptHandler(_ signal: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(signal, &action, nil)
    }

    /// Ignores `signal` (SIGPIPE: a gone client shows up as a write error instead).
    public static func ignore(_ signal: Int32) {
        Glibc.signal(signal, SIG_IGN)
    }

    /// The path of the running executable.
    public static func executablePath() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return CommandLine.arguments.first ?? "tenantgate" }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Starts `path` with `args`, `listenFD` duplicated onto fd 0 and a clean signal state.
    public static func spawn(path: String, args: [String], listenFD: Int32) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if listenFD != 0 {
            posix_spawn_file_actions_adddup2(&actions, listenFD, 0)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        // argv and environ are NULL-terminated and alive for the duration of the call.
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, environ)
        return rc == 0 ? pid : nil
    }

    /// Reaps one exited child without blocking: (pid, exit status or signal).
    public static func reap() -> (pid: pid_t, status: Int32)? {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        guard pid > 0 else { return nil }
        return (pid, status)
    }

    /// Sends `signal` to process `pid`.
    public static func kill(_ pid: pid_t, _ signal: Int32) {
        _ = Glibc.kill(pid, signal)
    }

    /// This process's id.
    public static var pid: pid_t { getpid() }

    /// Exits at once without running atexit handlers.
    public static func exitNow(_ code: Int32) -> Never { _exit(code) }

    /// Monotonic milliseconds.
    public static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Wall-clock microseconds since the epoch.
    public static func wallMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// Sleeps `ms` milliseconds.
    public static func sleepMs(_ ms: Int) { usleep(UInt32(ms * 1000)) }

    /// Appends `line` to the file at `fd` with one write (atomic for O_APPEND files below PIPE_BUF-ish sizes).
    public static func writeAll(fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            // The slice pointer is valid for the call.
            let n = bytes.withUnsafeBytes { buf in
                Glibc.write(fd, buf.baseAddress.map { $0 + offset }, bytes.count - offset)
            }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            offset += n
        }
    }

    /// Opens `path` for appending (created 0640); -1 on failure.
    public static func openAppend(_ path: String) -> Int32 {
        open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
    }

    /// Closes a file descriptor.
    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// The value of an environment variable.
    public static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    /// Raises this process's soft limit on open files to its hard limit.
    public static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Sets an environment variable (call before any thread starts: `setenv` is not thread-safe).
    public static func setEnv(_ name: String, _ value: String) { _ = setenv(name, value, 1) }
}

/// A joinable-less OS thread whose pthread id can be signalled.
public final class OSThread: @unchecked Sendable {  // the id is written once before start returns
    /// The pthread handle.
    public private(set) var id = pthread_t()
    private let body: () -> Void

    private init(body: @escaping () -> Void) { self.body = body }

    /// Starts `body` on a new detached thread with a 512 KiB stack.
    @discardableResult
    public static func start(_ body: @escaping () -> Void) -> OSThread? {
        let thread = OSThread(body: body)
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 1 << 20)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(thread).toOpaque()
        // The retained context is released by the thread itself when it starts.
        let rc = pthread_create(
            &thread.id, &attr,
            { raw in
                guard let raw else { return nil }
                let t = Unmanaged<OSThread>.fromOpaque(raw).takeRetainedValue()
                t.body()
                return nil
            }, context)
        if rc != 0 {
            Unmanaged<OSThread>.fromOpaque(context).release()
            return nil
        }
        return thread
    }

    /// Sends `signal` to this thread.
    public func signal(_ signal: Int32) { pthread_kill(id, signal) }
}

/// A mutex-protected value, shareable across threads.
public final class Locked<Value>: @unchecked Sendable {  // every access goes through the mutex
    private var mutex = pthread_mutex_t()
    private var value: Value

    /// Wraps `value`.
    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    /// Runs `body` with exclusive access.
    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&value)
    }
}

extension Posix {
    /// The whole file at `path` as UTF-8, if it is readable, valid and at most `limit` bytes.
    public static func readFile(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: buf[0..<n])
            if bytes.count > limit { return nil }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
