import CAtomics

#if canImport(Glibc)
    import Glibc
#endif

/// Counters shared by every worker process of a pool through one memory-mapped file: a total per key
/// (a tenant's requests in flight across all workers) that `acquire` raises only below a limit, exactly,
/// with a compare-and-swap; and one row per worker holding its own part, so that the supervisor can take
/// a dead worker's part back out of the totals (`clear(row:)`).
///
/// Layout: header (64 bytes) ‖ keys `[UInt64] × slots` (0 = free) ‖ totals `[Int32] × slots` ‖ rows
/// `[Int32] × rows × slots`. Keys are claimed for good (open addressing); the file is sparse, so only
/// the pages of keys and rows in use take memory.
public final class SharedCounters: @unchecked Sendable {  // the mapping never moves; every access is atomic
    /// Distinct keys (tenants) the table holds until the pool restarts.
    public static let slots = 4096
    /// Worker rows (pool indices).
    public static let rows = 256

    private static let magic: UInt64 = 0x5447_494E_464C_5431  // "TGINFLT1"
    private static let headerBytes = 64
    private static var keysOffset: Int { headerBytes }
    private static var totalsOffset: Int { keysOffset + slots * 8 }
    private static var rowsOffset: Int { totalsOffset + slots * 4 }
    /// The mapping's size.
    public static var size: Int { rowsOffset + rows * slots * 4 }

    private let base: UnsafeMutableRawPointer

    /// Maps the file at `path`; `create` makes it anew (all zero). Nil if it cannot be opened or mapped,
    /// or is not a counters file.
    public init?(path: String, create: Bool) {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0)
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        if create { guard ftruncate(fd, off_t(SharedCounters.size)) == 0 else { return nil } }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == SharedCounters.size else { return nil }
        // A shared mapping of the whole file: every process that maps it sees the same integers.
        let mapped = mmap(nil, SharedCounters.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapped, mapped != MAP_FAILED else { return nil }
        base = mapped
        let header = base.assumingMemoryBound(to: UInt64.self)
        if create {
            _ = tg_atomic_cas64(header, 0, SharedCounters.magic)
        } else if tg_atomic_load64(header) != SharedCounters.magic {
            munmap(base, SharedCounters.size)
            return nil
        }
    }

    /// Counters private to this process (when no pool shares a file): the same API, one row.
    public init?() {
        let mapped = mmap(nil, SharedCounters.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { return nil }
        base = mapped
    }

    deinit { munmap(base, SharedCounters.size) }

    /// A stable non-zero key for a name (FNV-1a 64).
    public static func key(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash == 0 ? 1 : hash
    }

    // Every pointer below is inside the mapping: slot < slots and row < rows are checked by the callers.
    private func keyPointer(_ slot: Int) -> UnsafeMutablePointer<UInt64> {
        (base + SharedCounters.keysOffset).assumingMemoryBound(to: UInt64.self) + slot
    }

    private func totalPointer(_ slot: Int) -> UnsafeMutablePointer<Int32> {
        (base + SharedCounters.totalsOffset).assumingMemoryBound(to: Int32.self) + slot
    }

    private func rowPointer(_ row: Int, _ slot: Int) -> UnsafeMutablePointer<Int32> {
        (base + SharedCounters.rowsOffset).assumingMemoryBound(to: Int32.self) + row * SharedCounters.slots + slot
    }

    /// The slot of `key`, claiming a free one if `claim`; nil when absent (or the table is full).
    private func slot(_ key: UInt64, claim: Bool) -> Int? {
        var index = Int(key % UInt64(SharedCounters.slots))
        for _ in 0..<SharedCounters.slots {
            let current = tg_atomic_load64(keyPointer(index))
            if current == key { return index }
            if current == 0 {
                guard claim else { return nil }
                if tg_atomic_cas64(keyPointer(index), 0, key) != 0 { return index }
                if tg_atomic_load64(keyPointer(index)) == key { return index }
            }
            index = (index + 1) % SharedCounters.slots
        }
        return nil
    }

    /// Raises `key`'s total by one if it is below `limit` (and this worker's row with it); false if the
    /// limit is reached. A key that finds the table full is admitted (not limited).
    public func acquire(_ key: UInt64, row: Int, limit: Int32) -> Bool {
        guard (0..<SharedCounters.rows).contains(row), let slot = slot(key, claim: true) else { return true }
        let total = totalPointer(slot)
        while true {
            let now = tg_atomic_load32(total)
            guard now < limit else { return false }
            if tg_atomic_cas32(total, now, now + 1) != 0 { break }
        }
        _ = tg_atomic_add32(rowPointer(row, slot), 1)
        return true
    }

    /// Gives back one `acquire` of `key` by this worker.
    public func release(_ key: UInt64, row: Int) {
        guard (0..<SharedCounters.rows).contains(row), let slot = slot(key, claim: false) else { return }
        _ = tg_atomic_add32(rowPointer(row, slot), -1)
        _ = tg_atomic_add32(totalPointer(slot), -1)
    }

    /// Takes a (dead) worker's part out of every total and zeroes its row.
    public func clear(row: Int) {
        guard (0..<SharedCounters.rows).contains(row) else { return }
        for slot in 0..<SharedCounters.slots where tg_atomic_load64(keyPointer(slot)) != 0 {
            let held = tg_atomic_exchange32(rowPointer(row, slot), 0)
            if held != 0 { _ = tg_atomic_add32(totalPointer(slot), -held) }
        }
    }

    /// `key`'s total now.
    public func total(_ key: UInt64) -> Int {
        guard let slot = slot(key, claim: false) else { return 0 }
        return Int(tg_atomic_load32(totalPointer(slot)))
    }
}
