// init.c: deterministic parameter initialisers (LANGUAGE.md §4): the same seed gives the
// same floats on every machine.
//
// Element i of tensor t is a pure function of (seed, t, i): a counter-based generator, so a
// tensor's values do not depend on the others or on the order of evaluation. The stream key
// of tensor t is splitmix64(seed ^ splitmix64(t)); element i draws the 64-bit words
// splitmix64(key + (2i+1)·φ) and splitmix64(key + (2i+2)·φ) (φ the golden-ratio constant).
// Uniforms are 53-bit doubles in [0, 1); normals use Box-Muller (cosine branch) in double;
// the final value is rounded to float once. Contraction into FMA is disabled below so the
// compiler cannot change a rounding on machines that have FMA. (log and cos come from libm:
// a last-bit difference between two libms changes the float only if the double lies within
// one double ulp of a float rounding boundary.)
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include "nnrt.h"

#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The j-th 53-bit uniform double in [0, 1) of the stream `key`.
static double uniform01(uint64_t key, uint64_t j) {
    return (double)(splitmix64(key + (j + 1) * GOLDEN) >> 11) * 0x1p-53;
}

// A standard normal for element i: Box-Muller on the stream's words 2i and 2i+1.
static double normal01(uint64_t key, uint64_t i) {
    double u1 = 1.0 - uniform01(key, 2 * i);          // (0, 1]: log(u1) is finite
    double u2 = uniform01(key, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int64_t tensor_numel(const nnc_tensor_info *t) {
    int64_t n = 1;
    for (int k = 0; k < t->rank && k < 4; k++) n *= t->shape[k];
    return n;
}

// Fills out[0..n) with tensor `index`'s values under `seed`.
static void init_tensor(const nnrt_init *in, float *out, int64_t n, uint64_t seed, uint64_t index) {
    uint64_t key = splitmix64(seed ^ splitmix64(index));
    double fan_in = in->fan_in > 0 ? (double)in->fan_in : 1.0;
    double fan_out = in->fan_out > 0 ? (double)in->fan_out : 1.0;
    switch (in->kind) {
    case NNRT_INIT_ZEROS:
    case NNRT_INIT_ONES:
    case NNRT_INIT_CONSTANT: {
        float v = in->kind == NNRT_INIT_ZEROS ? 0.0f : in->kind == NNRT_INIT_ONES ? 1.0f : (float)in->a;
        for (int64_t i = 0; i < n; i++) out[i] = v;
        break;
    }
    case NNRT_INIT_UNIFORM:                        // U(a, b)
        for (int64_t i = 0; i < n; i++) out[i] = (float)(in->a + (in->b - in->a) * uniform01(key, (uint64_t)i));
        break;
    case NNRT_INIT_NORMAL:                         // N(a, b²)
        for (int64_t i = 0; i < n; i++) out[i] = (float)(in->a + in->b * normal01(key, (uint64_t)i));
        break;
    case NNRT_INIT_XAVIER: {                       // Glorot uniform: U(-s, s), s = sqrt(6/(in+out))
        double s = sqrt(6.0 / (fan_in + fan_out));
        for (int64_t i = 0; i < n; i++) out[i] = (float)(-s + 2.0 * s * uniform01(key, (uint64_t)i));
        break;
    }
    case NNRT_INIT_HE: {                           // He normal: N(0, 2/in)
        double std = sqrt(2.0 / fan_in);
        for (int64_t i = 0; i < n; i++) out[i] = (float)(std * normal01(key, (uint64_t)i));
        break;
    }
    default:                                       // an unknown kind: zeros rather than garbage
        for (int64_t i = 0; i < n; i++) out[i] = 0.0f;
        break;
    }
}

void nnrt_init_params(const nnrt_desc *d, float *params, uint64_t seed) {
    if (!d || !params) return;
    for (size_t t = 0; t < d->info.n_tensors; t++) {
        const nnc_tensor_info *ti = &d->info.tensors[t];
        const nnrt_init *in = d->inits ? &d->inits[t] : &(nnrt_init){ .kind = NNRT_INIT_ZEROS };
        init_tensor(in, params + ti->offset, tensor_numel(ti), seed, (uint64_t)t);
    }
}
