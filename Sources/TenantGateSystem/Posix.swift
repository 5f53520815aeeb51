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

    /// This machine's name (`gethostname`); `TENANTGATE_HOST` overrides it (hosts that share a name).
    public static let hostName: String = {
        if let name = env("TENANTGATE_HOST"), !name.isEmpty { return name }
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Exits at once without running atexit handlers.
    public static func exitNow(_ code: Int32) -> Never { _exit(code) }

    /// Monotonic milliseconds.
    public static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// CPU time of the calling thread, in nanoseconds (what a request's inspection budget charges).
    public static func threadCPUNanos() -> UInt64 {
        var ts = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0 else { return 0 }
        return UInt64(max(0, ts.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, ts.tv_nsec))
    }

    /// Monotonic microseconds.
    public static func monotonicMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// Wall-clock microseconds since the epoch.
    public static func wallMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// Sleeps `ms` milliseconds.
    public static func sleepMs(_ ms: Int) { usleep(UInt32(clamping: max(0, min(ms, 4_000_000)) * 1000)) }

    /// Appends `line` to the file at `fd` with one write (atomic for O_APPEND files below PIPE_BUF-ish sizes).
    @discardableResult
    public static func writeAll(fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            // The slice pointer is valid for the call.
            let n = bytes.withUnsafeBytes { buf in
                Glibc.write(fd, buf.baseAddress.map { $0 + offset }, bytes.count - offset)
            }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    /// Opens `path` for appending (created 0640); -1 on failure.
    public static func openAppend(_ path: String) -> Int32 {
        open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
    }

    /// Closes a file descriptor.
    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// The listening socket systemd passed (socket activation: LISTEN_PID is this process, LISTEN_FDS at
    /// least 1 and fd 3 a socket), as fd 3; else -1.
    public static var systemdListenFD: Int32 {
        guard let pid = env("LISTEN_PID").flatMap({ Int32($0) }), pid == getpid(),
            let count = env("LISTEN_FDS").flatMap({ Int($0) }), count >= 1
        else { return -1 }
        var info = stat()
        // Only a socket is a listening socket to hand on (else the pool binds `--listen` itself).
        guard fstat(3, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return -1 }
        return 3
    }

    /// The value of an environment variable.
    public static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    /// The name of the user this process runs as (`$USER`, else the password database's entry for the
    /// real user id), nil when neither knows.
    public static func userName() -> String? {
        if let user = env("USER"), !user.isEmpty { return user }
        guard let entry = getpwuid(getuid()), let name = entry.pointee.pw_name else { return nil }
        let text = String(cString: name)
        return text.isEmpty ? nil : text
    }

    /// The current working directory ("." if it cannot be read).
    public static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The real user id of this process.
    public static func userID() -> UInt32 { getuid() }

    /// Whether a file (or directory) exists at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

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

/// An exclusive `flock` on a file, tried as often as needed on one descriptor and held until `unlock`,
/// this object's end or the process's, however it ends (the kernel releases it with the descriptor).
/// Two holders never coexist, even within one process (each object has its own open file).
public final class FileLock {
    private let fd: Int32
    /// Whether this object holds the lock.
    public private(set) var held = false

    /// Opens `path` (created if missing, mode 0644: a lock needs only a read-only descriptor, so processes
    /// of other users that can read it share it); nil if it cannot be opened.
    public init?(path: String) {
        fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
    }

    /// Takes the lock if no one holds it; true when this object holds it.
    public func tryLock() -> Bool {
        if !held { held = flock(fd, LOCK_EX | LOCK_NB) == 0 }
        return held
    }

    /// Lets the lock go.
    public func unlock() {
        if held { _ = flock(fd, LOCK_UN) }
        held = false
    }

    deinit { Glibc.close(fd) }
}

/// A joinable-less OS thread whose pthread id can be signalled.
public final class OSThread: Sendable {
    private let handle = Locked(pthread_t())
    /// The pthread handle.
    public var id: pthread_t { handle.withLock { $0 } }
    private let body: @Sendable () -> Void

    private init(body: @escaping @Sendable () -> Void) { self.body = body }

    /// Starts `body` on a new detached thread with a 1 MiB stack.
    @discardableResult
    public static func start(_ body: @escaping @Sendable () -> Void) -> OSThread? {
        let thread = OSThread(body: body)
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 1 << 20)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(thread).toOpaque()
        // The retained context is released by the thread itself when it starts.
        var id = pthread_t()
        let rc = pthread_create(
            &id, &attr,
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
        thread.handle.withLock { $0 = id }
        return thread
    }

    /// Sends `signal` to this thread.
    public func signal(_ signal: Int32) { pthread_kill(id, signal) }
}

/// A mutex-protected value, shareable across threads. The mutex lives at a stable heap address (a
/// `pthread_mutex_t` must never move, which a stored property of a class does not promise).
public final class Locked<Value: Sendable>: @unchecked Sendable {  // every access to `value` holds `mutex`
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// Wraps `value`.
    public init(_ value: Value) {
        self.value = value
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access.
    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

/// A resource that is not safe to share (a database connection) but may move between threads when one
/// thread at a time uses it: what holds it guarantees that (a `Locked` around it, a pool's free list that
/// gives each out to one borrower). The one place that promise is made, instead of on every holder.
public struct Confined<Resource>: @unchecked Sendable {  // its holders hand it to one thread at a time
    public let resource: Resource

    public init(_ resource: Resource) { self.resource = resource }
}

extension Posix {
    /// The bytes of the file at `path`, if it is readable and at most `limit` bytes.
    public static func readFileBytes(_ path: String, limit: Int) -> [UInt8]? {
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
        return bytes
    }

    /// The whole file at `path` as UTF-8, if it is readable, valid and at most `limit` bytes.
    public static func readFile(_ path: String, limit: Int) -> String? {
        readFileBytes(path, limit: limit).flatMap { String(validating: $0, as: UTF8.self) }
    }
}

/// Signal numbers, so that modules above System need no C import.
public enum Signal {
    public static let term = SIGTERM
    public static let int = SIGINT
    public static let hup = SIGHUP
    public static let quit = SIGQUIT
    public static let kill = SIGKILL
    public static let pipe = SIGPIPE
    public static let usr1 = SIGUSR1
    public static let usr2 = SIGUSR2
}

/// A process id.
public typealias ProcessID = pid_t

/// Why a file could not be read whole.
public enum FileReadError: Error, Equatable {
    case cannotOpen, cannotRead, tooLarge
}

extension Posix {
    /// The whole of `path` (`-`: standard input), at most `limit` bytes.
    public static func readAll(_ path: String, limit: Int) throws(FileReadError) -> [UInt8] {
        let fd = path == "-" ? 0 : open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen }
        defer { if fd != 0 { Glibc.close(fd) } }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 { throw .cannotRead }
            if n == 0 { return bytes }
            bytes.append(contentsOf: buf[0..<n])
            if bytes.count > limit { throw .tooLarge }
        }
    }

    /// Removes the name `path`; false if it could not.
    @discardableResult public static func unlink(_ path: String) -> Bool { Glibc.unlink(path) == 0 }

    /// Gives the file at `existing` the second name `new`.
    public static func link(_ existing: String, _ new: String) -> Bool { Glibc.link(existing, new) == 0 }

    /// Renames `from` to `to`, replacing `to` atomically.
    @discardableResult public static func rename(_ from: String, _ to: String) -> Bool { Glibc.rename(from, to) == 0 }

    /// Writes `bytes` to `path` (created with `mode`, or truncated) and syncs it to disk.
    public static func writeFileSynced(_ path: String, _ bytes: [UInt8], mode: UInt32) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        return writeAll(fd: fd, bytes) && fsync(fd) == 0
    }
}
