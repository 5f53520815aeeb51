// Atomic operations on plain integers in memory shared between processes (an mmap'd file), which
// Swift's own atomics cannot address. Sequentially consistent, lock-free on every 64-bit target.
#include <stdint.h>

static inline int32_t tg_atomic_load32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline int32_t tg_atomic_add32(int32_t *p, int32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline int32_t tg_atomic_exchange32(int32_t *p, int32_t v) {
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int tg_atomic_cas32(int32_t *p, int32_t expected, int32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline uint64_t tg_atomic_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline int tg_atomic_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
