// hash.c: FNV-1a, 64 bits, for the identities nnc stores and compares: a model's
// checkpoint signature (cg_module.c) and the cache key of `nnc train` (train.c).
// Not for hash tables (ir.c mixes its own keys).
#include "nnc.h"

uint64_t nn_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
