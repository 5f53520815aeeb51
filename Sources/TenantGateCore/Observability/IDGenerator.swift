/// Random trace and span ids for one thread: xoshiro256** seeded from the system's CSPRNG, so an id costs
/// a few multiplications instead of an OpenSSL call (with its fork check, a `getpid` system call, each
/// time). The ids only have to be unique and unguessable enough for tracing (W3C Trace Context asks for
/// randomness, not secrecy); keys, sessions and tokens keep using `Crypto.randomBytes`. Not thread-safe:
/// each thread owns one.
public final class IDGenerator {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// `seed`: 32 random bytes (fewer are padded; an all-zero state, which xoshiro cannot leave, is moved).
    public init(seed: [UInt8]) {
        var words = [UInt64](repeating: 0, count: 4)
        for (i, b) in seed.prefix(32).enumerated() { words[i / 8] |= UInt64(b) << UInt64((i % 8) * 8) }
        if words.allSatisfy({ $0 == 0 }) { words = [0x9E37_79B9_7F4A_7C15, 0xBF58_476D_1CE4_E5B9, 1, 2] }
        (s0, s1, s2, s3) = (words[0], words[1], words[2], words[3])
    }

    /// The next 64 random bits.
    public func next() -> UInt64 {
        let result = (s1 &* 5).rotatedLeft(7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3.rotatedLeft(45)
        return result
    }

    /// `bytes` random bytes as lowercase hex (2 × `bytes` digits), never all zeros (an all-zero trace or
    /// span id is invalid in Trace Context).
    public func hex(bytes: Int) -> String {
        let digits = Hex.lowerDigits
        var out = [UInt8]()
        out.reserveCapacity(bytes * 2)
        var left = bytes
        var allZero = true
        while left > 0 {
            var word = next()
            for _ in 0..<min(8, left) {
                let b = Int(word & 0xFF)
                if b != 0 { allZero = false }
                out.append(digits[b >> 4])
                out.append(digits[b & 0x0F])
                word >>= 8
                left -= 1
            }
        }
        if allZero && !out.isEmpty { out[out.count - 1] = UInt8(ascii: "1") }
        return String(decoding: out, as: UTF8.self)
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(_ k: UInt64) -> UInt64 { (self << k) | (self >> (64 - k)) }
}
