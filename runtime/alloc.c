// alloc.c: every allocation of libnnrt goes through here (STYLE.md "Runtime errors"), so that
// tests can make the n-th allocation fail (like Lua's debug_realloc) and count what is live.
// Nothing here aborts: a failed allocation returns NULL and the caller returns NNC_ENOMEM.
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "nnrt.h"

static _Atomic int64_t fail_countdown;   // 0: never fail; k: the k-th allocation from now fails
static _Atomic int64_t n_live;           // allocations not yet freed (for leak tests)

void nnrt_alloc_fail_at(int64_t n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }

int64_t nnrt_alloc_live(void) { return atomic_load(&n_live); }

// True when the test hook says this allocation must fail.
static bool should_fail(void) {
    int64_t c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return c == 1;
    }
    return false;
}

void *nnrt_malloc(size_t size) {
    if (should_fail()) return NULL;
    void *p = malloc(size ? size : 1);
    if (p) atomic_fetch_add(&n_live, 1);
    return p;
}

void *nnrt_realloc(void *p, size_t size) {
    if (!p) return nnrt_malloc(size);
    if (should_fail()) return NULL;
    return realloc(p, size ? size : 1);    // on failure p stays valid and live
}

// 64-aligned and zeroed; the size is rounded up to a multiple of 64 so that vector loops may
// read a whole cache line past the last element of a buffer.
void *nnrt_aligned_alloc(size_t size) {
    if (size > SIZE_MAX - 63) return NULL;
    size = (size + 63) & ~(size_t)63;
    if (size == 0) size = 64;
    if (should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0) return NULL;
    memset(p, 0, size);
    atomic_fetch_add(&n_live, 1);
    return p;
}

void nnrt_free(void *p) {
    if (!p) return;
    atomic_fetch_sub(&n_live, 1);
    free(p);
}
