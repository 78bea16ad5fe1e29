// gemm.c: single-precision matrix products for the generated train step:
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C,   row-major,
// op(X) = X or X^T. Dense layers need all three forms: the forward product
// X W^T, dX = dY W and dW = dY^T X.
//
// The structure is the classic one of GotoBLAS/BLIS: B is packed into panels
// of NR columns and A into panels of MR rows, K is blocked by KC so that a B
// panel stays in L1 and an A block in L2, and a register-blocked micro-kernel
// keeps an MR x NR tile of C in 24 zmm registers (12 x 32 floats) while it
// streams the panels: two FMAs per broadcast of an element of A.
//
// The micro-kernel stores or adds its tile straight into C (prefetching C's
// rows first); `beta = 0` needs no pass over C (the first K block stores).
// op(A) = A and op(B) = B^T are packed through 16 x 16 register transposes.
//
// Threads split the columns of C into contiguous blocks of NR; each element of
// C is computed by one thread in the same order whatever the thread count, so
// results are bit-for-bit the same with 1 or N threads. With several threads a
// large op(A) is packed once, by all of them, and shared (pack_all_a).
// KC, MC and NC can be set with -D for tuning (docs/performance.md).
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MR 12
#define NR 32
#ifndef KC
#define KC 256
#endif
#ifndef MC
#define MC 96        // rows of A per packed block (a multiple of MR)
#endif
#ifndef NC
#define NC 1024      // columns of B per packed block (a multiple of NR)
#endif

typedef struct Gemm {
    bool         ta, tb;
    int64_t      M, N, K;
    float        alpha;
    const float *A; int64_t lda;
    const float *B; int64_t ldb;
    float       *C; int64_t ldc;
} Gemm;

static inline float a_at(const Gemm *g, int64_t i, int64_t k) {
    return g->ta ? g->A[k * g->lda + i] : g->A[i * g->lda + k];
}
static inline float b_at(const Gemm *g, int64_t k, int64_t j) {
    return g->tb ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j];
}

#if defined(__x86_64__)
// r[0..15] (16 rows of 16 floats) transposed in registers: afterwards r[k]
// holds element k of every input row.
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

// `rows` (<= 16) source rows of which element k goes to out[k * ld + row],
// for k in [0, kc16), kc16 a multiple of 16: 16 x 16 blocks transposed in
// registers, `rows` lanes stored per k (masked).
__attribute__((target("avx512f"))) static void pack_transposed(const float *src, int64_t lds, int rows,
                                                               int64_t kc16, float *out, int64_t ld) {
    __mmask16 keep = (__mmask16)((1u << rows) - 1);
    for (int64_t k = 0; k < kc16; k += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(src + i * lds + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(out + (k + i) * ld, keep, r[i]);
    }
}

// out[k * MR + r] = src[k * lds + r] for r < rows, 0 for rows <= r < MR: one
// masked 16-lane load and store per k.
__attribute__((target("avx512f"))) static void pack_rows12(const float *src, int64_t lds, int rows, int64_t kc,
                                                           float *out) {
    __mmask16 keep = (__mmask16)((1u << rows) - 1), all = (__mmask16)((1u << MR) - 1);
    for (int64_t k = 0; k < kc; k++)
        _mm512_mask_storeu_ps(out + k * MR, all, _mm512_maskz_loadu_ps(keep, src + k * lds));
}

static bool have_avx512(void) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    return have;
}
#endif

// Packs rows [i0, i0+mc) x [k0, k0+kc) of op(A) as MR-row panels, k-major
// inside a panel: panel[k * MR + r]; rows past M are zero.
static void pack_a(const Gemm *g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float *out) {
    for (int64_t p = 0; p < mc; p += MR) {
        float *panel = out + p * kc;
        int64_t rows = mc - p < MR ? mc - p : MR;
        if (g->ta) {   // op(A) = A^T: row r of a k is contiguous in A
#if defined(__x86_64__)
            if (have_avx512()) {
                pack_rows12(g->A + k0 * g->lda + i0 + p, g->lda, (int)rows, kc, panel);
                continue;
            }
#endif
            for (int64_t k = 0; k < kc; k++) {
                const float *src = g->A + (k0 + k) * g->lda + i0 + p;
                int64_t r = 0;
                for (; r < rows; r++) panel[k * MR + r] = src[r];
                for (; r < MR; r++) panel[k * MR + r] = 0;
            }
            continue;
        }
        // row by row: each source row is read sequentially (prefetched first)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < kc; k += 16)
                __builtin_prefetch(g->A + (i0 + p + r) * g->lda + k0 + k);
        int64_t k_done = 0;
#if defined(__x86_64__)
        if (have_avx512()) {   // 16 x 16 blocks through registers (12 rows used)
            k_done = kc / 16 * 16;
            pack_transposed(g->A + (i0 + p) * g->lda + k0, g->lda, (int)rows, k_done, panel, MR);
        }
#endif
        for (int64_t r = 0; r < rows; r++) {
            const float *src = g->A + (i0 + p + r) * g->lda + k0;
            for (int64_t k = k_done; k < kc; k++) panel[k * MR + r] = src[k];
        }
        for (int64_t r = rows; r < MR; r++)
            for (int64_t k = 0; k < kc; k++) panel[k * MR + r] = 0;
    }
}

// Packs [k0, k0+kc) x columns [j0, j0+nc) of op(B) as NR-column panels:
// panel[k * NR + c]; columns past N are zero.
static void pack_b(const Gemm *g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *out) {
    for (int64_t q = 0; q < nc; q += NR) {
        float *panel = out + q * kc;
        int64_t cols = nc - q < NR ? nc - q : NR;
        if (g->tb) {   // op(B) = B^T: column c is a contiguous row of B
            // Touch every line first so that the misses of the 32 rows overlap.
            for (int64_t c = 0; c < cols; c++)
                for (int64_t k = 0; k < kc; k += 16)
                    __builtin_prefetch(g->B + (j0 + q + c) * g->ldb + k0 + k);
            int64_t k_done = 0;
#if defined(__x86_64__)
            if (have_avx512()) {   // two 16 x 16 blocks through registers
                k_done = kc / 16 * 16;
                for (int64_t h = 0; h < cols; h += 16)
                    pack_transposed(g->B + (j0 + q + h) * g->ldb + k0, g->ldb, (int)(cols - h < 16 ? cols - h : 16),
                                    k_done, panel + h, NR);
            }
#endif
            for (int64_t c = 0; c < cols; c++) {
                const float *src = g->B + (j0 + q + c) * g->ldb + k0;
                for (int64_t k = k_done; k < kc; k++) panel[k * NR + c] = src[k];
            }
            for (int64_t c = cols; c < NR; c++)
                for (int64_t k = 0; k < kc; k++) panel[k * NR + c] = 0;
            continue;
        }
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->B + (k0 + k) * g->ldb + j0 + q;
            if (cols == NR) {
                memcpy(panel + k * NR, src, NR * sizeof(float));
                continue;
            }
            int64_t c = 0;
            for (; c < cols; c++) panel[k * NR + c] = src[c];
            for (; c < NR; c++) panel[k * NR + c] = 0;
        }
    }
}

// The micro-kernel computes T = sum over k of a_panel[k][r] * b_panel[k][c]
// (an MR x NR tile) and then either writes it to C (store: C = T), adds it
// (C += T), or, for a tile past the edges of C, writes it into `tile`.
typedef enum { TILE_STORE, TILE_ADD, TILE_BUF } TileMode;

// The portable kernel.
static void kernel_generic(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mode) {
    float t[MR * NR];
    memset(t, 0, sizeof t);
    for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) {
            float a = ap[k * MR + r];
            for (int j = 0; j < NR; j++) t[r * NR + j] += a * bp[k * NR + j];
        }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) {
            float *d = c + r * (mode == TILE_BUF ? NR : ldc) + j;
            *d = mode == TILE_ADD ? *d + t[r * NR + j] : t[r * NR + j];
        }
}

#if defined(__x86_64__)
// 24 accumulators (12 rows x 2 vectors of 16); per k, 2 loads of B, 12
// broadcasts of A, 24 FMAs. C's rows (a cache line pair each, often 4 KB
// apart and out of L2) are prefetched at the start so that the misses
// overlap the k loop instead of stalling the stores at the end.
__attribute__((target("avx512f,fma")))
static void kernel_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mode) {
    __m512 c0[MR], c1[MR];
    int64_t ld = mode == TILE_BUF ? NR : ldc;
    if (mode != TILE_BUF)
        for (int r = 0; r < MR; r++) {
            _mm_prefetch((const char *)(c + r * ld), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ld + 16), _MM_HINT_T0);
        }
    for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(ap[k * MR + r]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    if (mode == TILE_ADD) {
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            c0[r] = _mm512_add_ps(_mm512_loadu_ps(c + r * ld), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_loadu_ps(c + r * ld + 16), c1[r]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(c + r * ld, c0[r]);
        _mm512_storeu_ps(c + r * ld + 16, c1[r]);
    }
}
#endif

typedef void (*KernelFn)(int64_t, const float *, const float *, float *, int64_t, int);

static KernelFn pick_kernel(void) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return kernel_avx512;
#endif
    return kernel_generic;
}

// C[i0.., j0..] (+)= alpha * tile, for the valid rows and columns.
static void put_tile(const Gemm *g, int64_t i0, int64_t j0, const float *tile, bool add) {
    int64_t rows = g->M - i0 < MR ? g->M - i0 : MR;
    int64_t cols = g->N - j0 < NR ? g->N - j0 : NR;
    for (int64_t r = 0; r < rows; r++) {
        float *c = g->C + (i0 + r) * g->ldc + j0;
        const float *t = tile + r * NR;
        if (add) for (int64_t k = 0; k < cols; k++) c[k] += g->alpha * t[k];
        else for (int64_t k = 0; k < cols; k++) c[k] = g->alpha * t[k];
    }
}

// Rows of op(A) rounded up to whole MR panels.
static int64_t a_rows_padded(const Gemm *g) { return (g->M + MR - 1) / MR * MR; }

// The K blocks gemm_columns uses: equal blocks of at most KC.
static int64_t k_block(const Gemm *g) {
    int64_t nkb = (g->K + KC - 1) / KC;
    return (g->K + nkb - 1) / nkb;
}

// The columns [j_begin, j_end) of C (and all rows), with this thread's buffers.
// `overwrite`: C's old values are ignored (beta = 0), so the first block of K
// stores its tiles instead of adding them (no pre-pass over C).
static void gemm_columns(const Gemm *g, int64_t j_begin, int64_t j_end, float *abuf, float *bbuf,
                         bool overwrite, const float *apacked) {
    static KernelFn kernel;
    if (!kernel) kernel = pick_kernel();
    _Alignas(64) float tile[MR * NR];
    // K in equal blocks of at most KC (784 = 4 x 196, not 3 x 256 + 16: a
    // short last block costs a pass over C for little work)
    int64_t kcb = k_block(g);
    for (int64_t jc = j_begin; jc < j_end; jc += NC) {
        int64_t nc = j_end - jc < NC ? j_end - jc : NC;
        for (int64_t pc = 0; pc < g->K; pc += kcb) {
            int64_t kc = g->K - pc < kcb ? g->K - pc : kcb;
            bool add = !(overwrite && pc == 0);
            pack_b(g, pc, kc, jc, nc, bbuf);
            for (int64_t ic = 0; ic < g->M; ic += MC) {
                int64_t mc = g->M - ic < MC ? g->M - ic : MC;
                const float *ablk = abuf;
                if (apacked)   // packed once for every thread (pack_all_a)
                    ablk = apacked + pc * a_rows_padded(g) + ic * kc;
                else
                    pack_a(g, ic, mc, pc, kc, abuf);
                for (int64_t jr = 0; jr < nc; jr += NR)
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t i0 = ic + ir, j0 = jc + jr;
                        if (g->alpha == 1 && i0 + MR <= g->M && j0 + NR <= j_end) {
                            kernel(kc, ablk + ir * kc, bbuf + jr * kc, g->C + i0 * g->ldc + j0, g->ldc,
                                   add ? TILE_ADD : TILE_STORE);
                            continue;
                        }
                        kernel(kc, ablk + ir * kc, bbuf + jr * kc, tile, NR, TILE_BUF);
                        put_tile(g, i0, j0, tile, add);
                    }
            }
        }
    }
}

static void scale_c(const Gemm *g, float beta) {
    for (int64_t i = 0; i < g->M; i++) {
        float *c = g->C + i * g->ldc;
        if (beta == 0) memset(c, 0, (size_t)g->N * sizeof(float));
        else for (int64_t j = 0; j < g->N; j++) c[j] *= beta;
    }
}

typedef struct GemmJob {
    const Gemm *g;
    bool        overwrite;    // beta = 0: the first K block stores
    float      *apacked;      // all of op(A) packed (several threads), or NULL
    int64_t     n_blocks;     // column blocks of NR handed out to threads
} GemmJob;

// Packing buffers: one pair per thread, allocated on the thread's first
// product and kept, so that a train step allocates nothing in steady state.
typedef struct PackBuffers {
    float  *a;            // MC x KC
    float  *b;            // KC x NC
    float  *shared;       // all of op(A), for the threads of a product this thread calls
    int64_t shared_size;  // floats at shared
} PackBuffers;

static pthread_key_t  buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *p) {
    PackBuffers *pb = p;
    nnrt_free(pb->a);
    nnrt_free(pb->b);
    nnrt_free(pb->shared);
    nnrt_free(pb);
}

static void make_key(void) { pthread_key_create(&buffers_key, free_buffers); }

static PackBuffers *thread_buffers(void) {
    pthread_once(&buffers_once, make_key);
    PackBuffers *pb = pthread_getspecific(buffers_key);
    if (pb) return pb;
    pb = nnrt_malloc(sizeof *pb);
    if (!pb) return NULL;
    pb->shared = NULL;
    pb->shared_size = 0;
    pb->a = nnrt_aligned_alloc(MC * KC * sizeof(float));
    pb->b = nnrt_aligned_alloc(NC * KC * sizeof(float));
    if (!pb->a || !pb->b || pthread_setspecific(buffers_key, pb) != 0) {
        free_buffers(pb);
        return NULL;
    }
    return pb;
}

// Row panels [begin, end) of op(A), every K block: block (pc, kc) at
// apacked + pc * Mp, panel p at + p * MR * kc (the layout of pack_a).
static void pack_all_a(void *ctx, int64_t begin, int64_t end) {
    const GemmJob *job = ctx;
    const Gemm *g = job->g;
    int64_t kcb = k_block(g), mp = a_rows_padded(g);
    int64_t i0 = begin * MR, i1 = end * MR < g->M ? end * MR : g->M;
    for (int64_t pc = 0; pc < g->K; pc += kcb) {
        int64_t kc = g->K - pc < kcb ? g->K - pc : kcb;
        pack_a(g, i0, i1 - i0, pc, kc, job->apacked + pc * mp + i0 * kc);
    }
}

// The calling thread's buffer for a whole packed op(A), grown when too small
// (a steady-state train step allocates nothing). NULL: no memory (each thread
// then packs its own).
static float *shared_a_buffer(nnrt_model *rt, int64_t floats) {
    (void)rt;
    PackBuffers *pb = thread_buffers();
    if (!pb) return NULL;
    if (pb->shared_size < floats) {
        nnrt_free(pb->shared);
        pb->shared = nnrt_aligned_alloc((size_t)floats * sizeof(float));
        pb->shared_size = pb->shared ? floats : 0;
    }
    return pb->shared;
}

static void gemm_block_range(void *ctx, int64_t begin, int64_t end) {
    const GemmJob *job = ctx;
    const Gemm *g = job->g;
    PackBuffers *pb = thread_buffers();
    if (!pb) {   // out of memory: the unpacked, slow but allocation-free path
        for (int64_t i = 0; i < g->M; i++)
            for (int64_t j = begin * NR; j < end * NR && j < g->N; j++) {
                float s = 0;
                for (int64_t k = 0; k < g->K; k++) s += a_at(g, i, k) * b_at(g, k, j);
                g->C[i * g->ldc + j] = (job->overwrite ? 0 : g->C[i * g->ldc + j]) + g->alpha * s;
            }
        return;
    }
    int64_t j1 = end * NR < g->N ? end * NR : g->N;
    gemm_columns(g, begin * NR, j1, pb->a, pb->b, job->overwrite, job->apacked);
}

void nnrt_sgemm(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc) {
    Gemm g = { ta != 0, tb != 0, M, N, K, alpha, A, lda, B, ldb, C, ldc };
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) {
        if (beta != 1) scale_c(&g, beta);
        return;
    }
    bool overwrite = beta == 0;
    if (!overwrite && beta != 1) scale_c(&g, beta);
    GemmJob job = { &g, overwrite, NULL, (N + NR - 1) / NR };
    if (!rt || rt->threads <= 1 || job.n_blocks < 2) {
        gemm_block_range(&job, 0, job.n_blocks);
        return;
    }
    // Several threads and a large op(A) (at least 1 MB): it is packed once, its
    // row panels shared out over the threads, instead of every thread packing
    // all of it for its own columns. Worth the second parallel_for (about 28 us
    // on the 2-vCPU VM) only when packing A takes longer than that. Packing
    // moves data only, so the bits are those of the one-thread path.
    if (M * K >= (1 << 18)) job.apacked = shared_a_buffer(rt, a_rows_padded(&g) * K);
    if (job.apacked)
        nnrt_parallel_for(rt, pack_all_a, &job, a_rows_padded(&g) / MR);
    nnrt_parallel_for(rt, gemm_block_range, &job, job.n_blocks);
}
