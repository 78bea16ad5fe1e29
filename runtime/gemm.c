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
// Edge tiles use the same kernel with fewer rows and masked columns. op(A) = A
// and op(B) = B are read in place, without packing, unless their rows are a
// multiple of 1 KB apart (then a panel's rows share L1 sets; see `direct`);
// op(A) = A (then) and op(B) = B^T are packed through 16 x 16 register
// transposes.
//
// Threads: one parallel_for per product, one piece of C a thread, in
// proportion to the speed each thread showed in the earlier calls of the
// product (split_pieces): a piece of rows (each thread then packs all of
// op(B) into its own buffer, unless it is read in place), or of NR-column
// blocks (likewise op(A)). Pieces are cut into chunks, and a thread done with
// its own takes the chunks left of the others' (gemm_pieces).
// Each element of C is computed by one thread with the same operations in the
// same order whatever the thread count or the piece it fell in, so results
// are bit-for-bit the same with 1 or N threads.
//
// nnrt_sgemm_then also hands each block of C, once final (after its last K
// block), to a function of the caller: the generated train step passes the
// optimiser's update of a weight there, so that the update reads dW from the
// cache of the thread that computed it, instead of from memory (and half of
// it from the other core's cache) in a loop after the product. Its pieces are
// rows of C: the update then streams whole rows of the weight and its state,
// and each thread updates about the same rows every step (docs/performance.md
// sections 16 and 17). nnrt_sgemm_each does the same with the pieces of
// nnrt_sgemm (rows or columns): the generated code passes a layer's bias and
// activation there (section 18).
//
// KC, MC, NC and GEMM_DIRECT(_B) can be set with -D for tuning
// (docs/performance.md, sections 2 and 9; bench/gemm_shapes.c times them).
#include <pthread.h>
#include <stdatomic.h>
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
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    // Unrolled (at -O2 GCC keeps these loops, and the arrays on the stack)
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 16
    for (int h = 0; h < 16; h += 8)
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
#pragma GCC unroll 16
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
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(i < rows ? 0xffff : 0, src + i * lds + k);
        transpose16(r);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(out + (k + i) * ld, keep, r[i]);
    }
}

// Rows of a source read PREFETCH_ROWS ahead: they are often 4 KB apart, a
// new page each, where the hardware prefetchers stop, and at two threads half
// of them are in the other core's cache (hundreds of ns each on the VM this
// was tuned on).
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 16
#endif

// out[k * MR + r] = src[k * lds + r] for r < rows, 0 for rows <= r < MR: one
// masked 16-lane load and store per k.
__attribute__((target("avx512f"))) static void pack_rows12(const float *src, int64_t lds, int rows, int64_t kc,
                                                           float *out) {
    __mmask16 keep = (__mmask16)((1u << rows) - 1), all = (__mmask16)((1u << MR) - 1);
    for (int64_t k = 0; k < kc; k++) {
        if (k + PREFETCH_ROWS < kc) {
            _mm_prefetch((const char *)(src + (k + PREFETCH_ROWS) * lds), _MM_HINT_T0);
            _mm_prefetch((const char *)(src + (k + PREFETCH_ROWS) * lds + MR - 1), _MM_HINT_T0);
        }
        _mm512_mask_storeu_ps(out + k * MR, all, _mm512_maskz_loadu_ps(keep, src + k * lds));
    }
}

// out[k * NR + c] = src[k * lds + c] for c < cols, 0 for cols <= c < NR.
__attribute__((target("avx512f"))) static void pack_cols32(const float *src, int64_t lds, int cols, int64_t kc,
                                                           float *out) {
    __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
    __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
    for (int64_t k = 0; k < kc; k++) {
        if (k + PREFETCH_ROWS < kc) {
            _mm_prefetch((const char *)(src + (k + PREFETCH_ROWS) * lds), _MM_HINT_T0);
            _mm_prefetch((const char *)(src + (k + PREFETCH_ROWS) * lds + NR - 1), _MM_HINT_T0);
        }
        _mm512_store_ps(out + k * NR, _mm512_maskz_loadu_ps(m0, src + k * lds));
        _mm512_store_ps(out + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + k * lds + 16));
    }
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
#if defined(__x86_64__)
        if (have_avx512()) {
            pack_cols32(g->B + k0 * g->ldb + j0 + q, g->ldb, (int)cols, kc, panel);
            continue;
        }
#endif
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

// The micro-kernels compute T = sum over k of op(A)[r][k] * b_panel[k][c] for
// the rows r < rows (<= MR) and columns c < cols (<= NR) of a tile, one fused
// multiply-add per k in k order from T = 0, then store T into C (C = T) or add
// it (C = C + T). op(A) comes from a packed panel (a[k * MR + r]) or, when
// op(A) = A and A's rows are read in place ("direct"), from a[r * lda + k].
// Every element of C gets the same operations whatever the size or position of
// its tile (edges are masked, not computed elsewhere), so how the tiles are
// shared out over threads cannot change a bit.

// The portable kernel: a full MR x NR tile of T into t[r * NR + c].
static void kernel_generic(int64_t kc, const float *ap, const float *bp, float *t) {
    memset(t, 0, MR * NR * sizeof *t);
    for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) {
            float a = ap[k * MR + r];
            for (int j = 0; j < NR; j++) t[r * NR + j] += a * bp[k * NR + j];
        }
}

#if defined(__x86_64__)
// R rows x 2 vectors of 16 accumulators (24 zmm for R = 12); per k, 2 loads of
// B, R broadcasts of A, 2R FMAs. C's rows (a cache line pair each, often 4 KB
// apart and out of L2) are prefetched at the start so that the misses overlap
// the k loop instead of stalling the stores at the end. m0, m1: the columns of
// the two vectors that exist in C. Inlined with constant R and direct.
__attribute__((target("avx512f,fma"), always_inline)) static inline void
micro_avx512(const int R, const bool direct, const bool direct_b, int64_t kc, const float *a, int64_t lda,
             const float *bp, int64_t ldb, float *c, int64_t ldc, bool add, __mmask16 m0, __mmask16 m1) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0, b1;
        if (direct_b) {   // op(B) = B read in place: the columns past N are masked
            b0 = _mm512_maskz_loadu_ps(m0, bp + k * ldb);
            b1 = _mm512_maskz_loadu_ps(m1, bp + k * ldb + 16);
        } else {
            b0 = _mm512_load_ps(bp + k * NR);
            b1 = _mm512_load_ps(bp + k * NR + 16);
        }
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 x = _mm512_set1_ps(direct ? a[r * lda + k] : a[k * MR + r]);
            c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
        }
    }
    if (add) {
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            c0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + r * ldc), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + r * ldc + 16), c1[r]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
    }
}

// One tile of `rows` x `cols` (1..MR, 1..NR) at c. With direct_b, bp is
// op(B) = B itself (row stride ldb) and its columns past `cols` are not read.
__attribute__((target("avx512f,fma"))) static void tile_avx512(int rows, int cols, bool direct, bool direct_b,
                                                               int64_t kc, const float *a, int64_t lda,
                                                               const float *bp, int64_t ldb, float *c, int64_t ldc,
                                                               bool add) {
    __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
    __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
#define TILE_CASE(R)                                                                                  \
    case R:                                                                                           \
        if (direct && direct_b) micro_avx512(R, true, true, kc, a, lda, bp, ldb, c, ldc, add, m0, m1);   \
        else if (direct) micro_avx512(R, true, false, kc, a, lda, bp, ldb, c, ldc, add, m0, m1);         \
        else if (direct_b) micro_avx512(R, false, true, kc, a, lda, bp, ldb, c, ldc, add, m0, m1);       \
        else micro_avx512(R, false, false, kc, a, lda, bp, ldb, c, ldc, add, m0, m1);                    \
        return;
    switch (rows) {
        TILE_CASE(12) TILE_CASE(11) TILE_CASE(10) TILE_CASE(9) TILE_CASE(8) TILE_CASE(7)
        TILE_CASE(6) TILE_CASE(5) TILE_CASE(4) TILE_CASE(3) TILE_CASE(2) TILE_CASE(1)
    default: return;
    }
#undef TILE_CASE
}
#endif

#ifndef GEMM_DIRECT
#define GEMM_DIRECT 1   // op(A) = A read in place: 0 never, 1 when lda is no multiple of 256, 2 always
#endif
#ifndef GEMM_DIRECT_B
#define GEMM_DIRECT_B 1   // op(B) = B read in place: 0 never, 1 when ldb is no multiple of 256, 2 always
#endif
#define MAX_PIECES 256   // threads past it take no part of a product
#ifndef ROWS_MAX_B
#define ROWS_MAX_B (1 << 16)   // floats of op(B) each thread packs whole when C is split by rows
#endif

// A product and how it is computed.
typedef struct Plan {
    Gemm    g;
    bool    avx512;
    bool    overwrite;     // beta = 0: the first K block stores its tiles (no pass over C)
    bool    direct;        // op(A) = A read in place, not packed
    bool    direct_b;      // op(B) = B read in place, not packed
    int64_t kcb;           // K in equal blocks of at most KC
    int64_t mp;            // rows of op(A) rounded up to whole MR panels
    bool    whole_a;       // each thread packs all of op(A) once, when it takes its first chunk
    // Several threads: one piece of C a thread, in proportion to the threads'
    // speeds (split_pieces), cut into chunks that a thread done with its own
    // piece takes from the others' (gemm_pieces); which thread computes a
    // tile never changes its bits. A piece is a stretch of C's
    // positions: by rows, rows of C (op(A) packed by each thread for its own
    // rows: nothing shared, no barrier), in nnrt_sgemm_then (whole rows of C,
    // so that an update streams whole rows of its weight and state) or when
    // op(B) is small; otherwise position b * M + i is row i of C's b-th block
    // of NR columns, so that a piece is whole blocks of columns and at its
    // ends a block cut between rows (at a multiple of MR).
    bool             by_rows;
    bool             whole_b;   // by rows, op(B) packed: each thread packs all of it once, likewise
    int              threads;
    int64_t          n_pieces;
    int64_t          piece_end[MAX_PIECES];   // piece u is [piece_end[u - 1] or 0, piece_end[u])
    // The chunks of piece u not yet taken: [front, back), front in the high
    // 32 bits. Its thread takes them from the front, the others from the back
    // once done with their own (gemm_pieces).
    _Atomic uint64_t left[MAX_PIECES];
    int64_t          start_ns;                // when the caller started the threads
    int64_t          took_work[NNRT_SPEED_THREADS], took_ns[NNRT_SPEED_THREADS];   // thread k's positions, time
    nnrt_range_fn    then;        // run on each finished block of C (run_then), or NULL
    void            *then_ctx;
} Plan;

// `then` over rows [i0, i1) of C, columns [j0, j1), on C's flat indices: one
// call a row, or one for all when they are whole rows without padding.
static void run_then(const Plan *p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    if (!p->then) return;
    const Gemm *g = &p->g;
    if (j0 == 0 && j1 == g->N && g->ldc == g->N) {
        p->then(p->then_ctx, i0 * g->ldc, i1 * g->ldc);
        return;
    }
    for (int64_t i = i0; i < i1; i++) p->then(p->then_ctx, i * g->ldc + j0, i * g->ldc + j1);
}

// C[i0.., j0..] (+)= alpha * tile, for its `rows` rows and the valid columns.
static void put_tile(const Gemm *g, int64_t i0, int rows, int64_t j0, const float *tile, bool add) {
    int64_t cols = g->N - j0 < NR ? g->N - j0 : NR;
    for (int64_t r = 0; r < rows; r++) {
        float *c = g->C + (i0 + r) * g->ldc + j0;
        const float *t = tile + r * NR;
        if (add) for (int64_t k = 0; k < cols; k++) c[k] += g->alpha * t[k];
        else for (int64_t k = 0; k < cols; k++) c[k] = g->alpha * t[k];
    }
}

// The tile of C at (i0, j0), `rows` (<= MR) high, from K block [.., + kc): a
// is op(A)'s panel (or its first row, direct), bp B's panel.
static void tile(const Plan *p, int64_t i0, int rows, int64_t j0, int64_t kc, const float *a, const float *bp,
                 bool add) {
    const Gemm *g = &p->g;
    _Alignas(64) float t[MR * NR];
#if defined(__x86_64__)
    if (p->avx512) {
        int cols = (int)(g->N - j0 < NR ? g->N - j0 : NR);
        if (g->alpha == 1) {
            tile_avx512(rows, cols, p->direct, p->direct_b, kc, a, g->lda, bp, g->ldb, g->C + i0 * g->ldc + j0,
                        g->ldc, add);
            return;
        }
        tile_avx512(rows, p->direct_b ? cols : NR, p->direct, p->direct_b, kc, a, g->lda, bp, g->ldb, t, NR, false);
        put_tile(g, i0, rows, j0, t, add);
        return;
    }
#endif
    kernel_generic(kc, a, bp, t);
    put_tile(g, i0, rows, j0, t, add);
}

// Where pack_whole_b puts the block of op(B) at K block pc, columns from jc
// (a multiple of NC) on, nc of them: the NC-column blocks one after the
// other, in each the K blocks, each kc x nc rounded up to whole NR panels.
static int64_t whole_b_at(const Plan *p, int64_t jc, int64_t pc, int64_t nc) {
    return jc * p->g.K + pc * ((nc + NR - 1) / NR * NR);
}

// The block [i_begin, i_end) x [j_begin, j_end) of C, with this thread's
// buffers (with apacked, i_begin is a multiple of MR; with bpacked, j_begin
// is 0 and j_end N).
// The first K block stores its tiles when C's old values are ignored.
// apacked, bpacked: all of op(A), op(B) packed by this thread (pack_whole_a,
// pack_whole_b), or NULL.
static void gemm_block(const Plan *p, int64_t i_begin, int64_t i_end, int64_t j_begin, int64_t j_end, float *abuf,
                       float *bbuf, const float *apacked, const float *bpacked) {
    const Gemm *g = &p->g;
    for (int64_t jc = j_begin; jc < j_end; jc += NC) {
        int64_t nc = j_end - jc < NC ? j_end - jc : NC;
        for (int64_t pc = 0; pc < g->K; pc += p->kcb) {
            int64_t kc = g->K - pc < p->kcb ? g->K - pc : p->kcb;
            bool add = !(p->overwrite && pc == 0);
            const float *bblk = bbuf;
            int64_t b_step = kc;   // from one NR panel to the next, per column
            if (p->direct_b) {
                bblk = g->B + pc * g->ldb + jc;
                b_step = 1;
            } else if (bpacked) {
                bblk = bpacked + whole_b_at(p, jc, pc, nc);
            } else {
                pack_b(g, pc, kc, jc, nc, bbuf);
            }
            for (int64_t ic = i_begin; ic < i_end; ic += MC) {
                int64_t mc = i_end - ic < MC ? i_end - ic : MC;
                const float *ablk = abuf;
                int64_t a_step = kc;   // from one MR panel to the next
                if (p->direct) {
                    ablk = g->A + ic * g->lda + pc;
                    a_step = g->lda;
                } else if (apacked) {
                    ablk = apacked + pc * p->mp + ic * kc;
                } else {
                    pack_a(g, ic, mc, pc, kc, abuf);
                }
                for (int64_t jr = 0; jr < nc; jr += NR)
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        tile(p, ic + ir, (int)(mc - ir < MR ? mc - ir : MR), jc + jr, kc, ablk + ir * a_step,
                             bblk + jr * b_step, add);
                if (pc + kc == g->K)   // this block of C is final, and still in cache
                    run_then(p, ic, ic + mc, jc, jc + nc);
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

// Packing buffers: one pair per thread, allocated on the thread's first
// product and kept, so that a train step allocates nothing in steady state.
typedef struct PackBuffers {
    float  *a;              // MC x KC
    float  *b;              // KC x NC
    float  *whole_a;        // all of op(A), packed (Plan.whole_a)
    int64_t whole_a_size;   // floats at whole_a
    float  *whole_b;        // all of op(B), packed (Plan.whole_b)
    int64_t whole_b_size;   // floats at whole_b
} PackBuffers;

static pthread_key_t  buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *p) {
    PackBuffers *pb = p;
    nnrt_free(pb->a);
    nnrt_free(pb->b);
    nnrt_free(pb->whole_a);
    nnrt_free(pb->whole_b);
    nnrt_free(pb);
}

static void make_key(void) { pthread_key_create(&buffers_key, free_buffers); }

static PackBuffers *thread_buffers(void) {
    pthread_once(&buffers_once, make_key);
    PackBuffers *pb = pthread_getspecific(buffers_key);
    if (pb) return pb;
    pb = nnrt_malloc(sizeof *pb);
    if (!pb) return NULL;
    pb->whole_a = pb->whole_b = NULL;
    pb->whole_a_size = pb->whole_b_size = 0;
    pb->a = nnrt_aligned_alloc(MC * KC * sizeof(float));
    pb->b = nnrt_aligned_alloc(NC * KC * sizeof(float));
    if (!pb->a || !pb->b || pthread_setspecific(buffers_key, pb) != 0) {
        free_buffers(pb);
        return NULL;
    }
    return pb;
}

// This thread's buffer *buf of *size floats, grown to `floats` when smaller
// (a steady-state train step allocates nothing). NULL: no memory.
static float *grown(float **buf, int64_t *size, int64_t floats) {
    if (*size < floats) {
        nnrt_free(*buf);
        *buf = nnrt_aligned_alloc((size_t)floats * sizeof(float));
        *size = *buf ? floats : 0;
    }
    return *buf;
}

// All of op(A) into this thread's buffer: K block pc at out + pc * mp, the layout of
// pack_a. NULL without memory (gemm_block then packs as it goes).
static const float *pack_whole_a(const Plan *p, PackBuffers *pb) {
    const Gemm *g = &p->g;
    float *out = grown(&pb->whole_a, &pb->whole_a_size, p->mp * g->K);
    if (!out) return NULL;
    for (int64_t pc = 0; pc < g->K; pc += p->kcb) {
        int64_t kc = g->K - pc < p->kcb ? g->K - pc : p->kcb;
        pack_a(g, 0, g->M, pc, kc, out + pc * p->mp);
    }
    return out;
}

// All of op(B) into this thread's buffer, as whole_b_at lays it out. NULL
// without memory (gemm_block then packs as it goes).
static const float *pack_whole_b(const Plan *p, PackBuffers *pb) {
    const Gemm *g = &p->g;
    float *out = grown(&pb->whole_b, &pb->whole_b_size, g->K * ((g->N + NR - 1) / NR * NR));
    if (!out) return NULL;
    for (int64_t jc = 0; jc < g->N; jc += NC) {
        int64_t nc = g->N - jc < NC ? g->N - jc : NC;
        for (int64_t pc = 0; pc < g->K; pc += p->kcb) {
            int64_t kc = g->K - pc < p->kcb ? g->K - pc : p->kcb;
            pack_b(g, pc, kc, jc, nc, out + whole_b_at(p, jc, pc, nc));
        }
    }
    return out;
}

// The slot of the product's key (its shape and C), or the least recently used
// slot, started again.
float *nnrt_speeds_of(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *C) {
    uint64_t key = (uint64_t)(uintptr_t)C;
    const uint64_t shape[] = { (uint64_t)M, (uint64_t)N, (uint64_t)K, (uint64_t)(ta * 2 + tb) };
    for (int i = 0; i < 4; i++) key = (key ^ shape[i]) * 0x100000001b3u;   // FNV-1a's prime
    key |= 1;   // never 0
    nnrt_speeds *slot = &rt->speeds[0];
    for (int i = 0; i < NNRT_SPEED_PRODUCTS; i++) {
        nnrt_speeds *s = &rt->speeds[i];
        if (s->key == key) {
            slot = s;
            break;
        }
        if (s->used < slot->used) slot = s;
    }
    if (slot->key != key) *slot = (nnrt_speeds){ .key = key };
    slot->used = ++rt->speed_uses;
    return slot->speed;
}

// The pieces of C, in proportion to the threads' speeds in earlier calls of
// the same product (0: not measured yet, taken as 1). The two vCPUs of the
// machine this was tuned on differ by up to 15 % from one minute to the next
// (another guest on one of the cores): with equal pieces the faster thread
// then waits at the end of every product, 4-6 % of fashion's step at two
// threads (docs/performance.md section 17). Per product, because a thread's
// speed depends on it too: on where the product's operands are (its own
// cache or the other core's). Which thread computes an element of C never
// changes its bits.
static void split_pieces(Plan *p, const float *speeds) {
    const Gemm *g = &p->g;
    int64_t blocks = (g->N + NR - 1) / NR, positions = p->by_rows ? g->M : blocks * g->M;
    double speed[MAX_PIECES], total = 0, sum = 0;
    for (int64_t u = 0; u < p->n_pieces; u++) {
        float s = u < NNRT_SPEED_THREADS ? speeds[u] : 0;
        speed[u] = s > 0 ? s : 1;
        total += speed[u];
    }
    for (int64_t u = 0; u + 1 < p->n_pieces; u++) {
        sum += speed[u];
        double x = positions * (sum / total);
        if (p->by_rows) {
            p->piece_end[u] = (int64_t)(x + 0.5);
            continue;
        }
        int64_t b = (int64_t)(x / g->M), i = (int64_t)((x - (double)b * g->M) / MR + 0.5) * MR;
        if (i >= g->M) b++, i = 0;
        p->piece_end[u] = b * g->M + i;
    }
    p->piece_end[p->n_pieces - 1] = positions;
}

// Each thread's positions per nanosecond in this product, over their mean,
// moved into its speed by a quarter: a thread's speed follows the machine
// within a few steps, and one disturbed product moves it little. The time is
// from the start of the product to the thread's end: with the time it took
// to wake up and to pack op(A), so that the threads' pieces converge to where
// they end together (a worker woken from sleep starts tens of µs late). Kept within
// [1/4, 4], so that a thread the host stopped for a while is never left
// without rows to measure its speed on.
static void learn_speeds(float *speeds, const Plan *p) {
    double rate[NNRT_SPEED_THREADS], mean = 0;
    int n = 0, t = p->threads < NNRT_SPEED_THREADS ? p->threads : NNRT_SPEED_THREADS;
    for (int k = 0; k < t; k++) {
        rate[k] = p->took_work[k] > 0 && p->took_ns[k] > 0 ? (double)p->took_work[k] / (double)p->took_ns[k] : 0;
        if (rate[k] > 0) mean += rate[k], n++;
    }
    if (n < 2) return;
    mean /= n;
    for (int k = 0; k < t; k++) {
        if (rate[k] == 0) continue;
        float s = speeds[k] > 0 ? speeds[k] : 1;
        s += 0.25f * ((float)(rate[k] / mean) - s);
        speeds[k] = s < 0.25f ? 0.25f : s > 4 ? 4 : s;
    }
}

// Positions [begin, end) of C (a chunk, never empty): rows, or blocks of
// columns and the rows of a block cut at either end.
static void gemm_piece(const Plan *p, int64_t begin, int64_t end, PackBuffers *pb, const float *apacked,
                       const float *bpacked) {
    const Gemm *g = &p->g;
    if (p->by_rows) {
        gemm_block(p, begin, end, 0, g->N, pb->a, pb->b, apacked, bpacked);
        return;
    }
    while (begin < end) {
        int64_t b = begin / g->M, i0 = begin % g->M, whole = end / g->M;   // blocks [b, whole) complete
        if (i0 == 0 && whole > b) {
            gemm_block(p, 0, g->M, b * NR, whole * NR < g->N ? whole * NR : g->N, pb->a, pb->b, apacked, NULL);
            begin = whole * g->M;
            continue;
        }
        int64_t i1 = end - b * g->M < g->M ? end - b * g->M : g->M;
        gemm_block(p, i0, i1, b * NR, (b + 1) * NR < g->N ? (b + 1) * NR : g->N, pb->a, pb->b, apacked, NULL);
        begin = b * g->M + i1;
    }
}

// The chunks of a piece, the unit a thread takes: by rows, MC rows from the
// piece's start (the blocks gemm_block would take, so that op(B) is read as
// often as without chunks); by columns, a quarter of the piece's blocks of NR
// columns (op(A) is read once a chunk: wide's products lost 1 % with a chunk
// a block), the first and last cut where the piece is.
#ifndef CHUNKS_BY_COLUMNS
#define CHUNKS_BY_COLUMNS 4
#endif

static int64_t piece_begin(const Plan *p, int64_t u) { return u ? p->piece_end[u - 1] : 0; }

// Blocks of columns of piece u: the first, how many, how many a chunk.
static void piece_blocks(const Plan *p, int64_t u, int64_t *first, int64_t *n, int64_t *per_chunk) {
    int64_t begin = piece_begin(p, u), end = p->piece_end[u];
    *first = begin / p->g.M;
    *n = begin < end ? (end - 1) / p->g.M - *first + 1 : 0;
    *per_chunk = (*n + CHUNKS_BY_COLUMNS - 1) / CHUNKS_BY_COLUMNS;
}

static int64_t chunks_of(const Plan *p, int64_t u) {
    int64_t begin = piece_begin(p, u), end = p->piece_end[u], first, n, per;
    if (begin >= end) return 0;
    if (p->by_rows) return (end - begin + MC - 1) / MC;
    piece_blocks(p, u, &first, &n, &per);
    return (n + per - 1) / per;
}

static void chunk_range(const Plan *p, int64_t u, int64_t c, int64_t *lo, int64_t *hi) {
    int64_t begin = piece_begin(p, u), end = p->piece_end[u], first, n, per;
    if (p->by_rows) {
        *lo = begin + c * MC;
        *hi = *lo + MC < end ? *lo + MC : end;
        return;
    }
    piece_blocks(p, u, &first, &n, &per);
    int64_t b = first + c * per;
    *lo = b * p->g.M > begin ? b * p->g.M : begin;
    *hi = (b + per) * p->g.M < end ? (b + per) * p->g.M : end;
}

// Takes a chunk of piece u, from its front or its back: false when none is left.
static bool take_chunk(Plan *p, int64_t u, bool front, int64_t *c) {
    uint64_t v = atomic_load_explicit(&p->left[u], memory_order_relaxed);
    for (;;) {
        uint64_t f = v >> 32, b = v & 0xffffffffu;
        if (f >= b) return false;
        uint64_t next = front ? (f + 1) << 32 | b : f << 32 | (b - 1);
        if (atomic_compare_exchange_weak_explicit(&p->left[u], &v, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *c = (int64_t)(front ? f : b - 1);
            return true;
        }
    }
}

// Thread k's piece from its front, then the chunks left of the others'
// pieces from their backs. A thread's piece moves only as the speeds do, so
// from one step to the next a thread reads and writes about the same data;
// taking the others' last chunks evens out what the speeds could not foresee
// (the host stopping one of the threads for a while in the middle of a
// product), and the piece of a thread that had no buffers. A thread packs the
// whole operand it needs (Plan.whole_a, whole_b) once it has a chunk: a
// worker that wakes up after the others took everything returns at once.
static void gemm_pieces(Plan *p, int k, PackBuffers *pb) {
    int64_t work = 0, c, lo, hi;
    const float *apacked = NULL, *bpacked = NULL;
    for (int64_t s = 0; s < p->n_pieces; s++) {
        int64_t u = (k + s) % p->n_pieces;
        bool own = u == k;
        while (take_chunk(p, u, own, &c)) {
            if (work == 0 && p->whole_a) apacked = pack_whole_a(p, pb);
            if (work == 0 && p->whole_b) bpacked = pack_whole_b(p, pb);
            chunk_range(p, u, c, &lo, &hi);
            gemm_piece(p, lo, hi, pb, apacked, bpacked);
            work += hi - lo;
        }
    }
    if (k < NNRT_SPEED_THREADS && work > 0) {
        p->took_work[k] = work;
        p->took_ns[k] = nnrt_clock_ns() - p->start_ns;
    }
}

// One thread's part of a product on several threads, all in one
// parallel_for over [0, threads) (this is thread `begin`): its piece and
// what it takes of the others' (gemm_pieces), with all of op(A) packed for it
// when it is columns, all of op(B) when rows (unless read in place). Each
// thread packs its own copy: packing it on each thread costs less than
// shared panels did, with their barrier and half of them read from the other
// core's cache (wide's products ran 4-9 % faster at two threads,
// docs/performance.md section 17). A thread without packing buffers
// does nothing: the others take its piece. The calling thread always has them.
static void gemm_region(void *ctx, int64_t begin, int64_t end) {
    (void)end;
    Plan *p = ctx;
    PackBuffers *pb = thread_buffers();
    if (!pb) return;
    gemm_pieces(p, (int)begin, pb);
}

// nnrt_sgemm, nnrt_sgemm_then (then_rows: pieces of whole rows) and
// nnrt_sgemm_each (then on the pieces nnrt_sgemm takes).
static void sgemm(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, nnrt_range_fn then,
                  void *then_ctx, bool then_rows) {
    Plan p = { .g = { ta != 0, tb != 0, M, N, K, alpha, A, lda, B, ldb, C, ldc }, .then = then,
               .then_ctx = then_ctx };
    const Gemm *g = &p.g;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) {
        if (beta != 1) scale_c(g, beta);
        run_then(&p, 0, M, 0, N);
        return;
    }
    p.overwrite = beta == 0;
    if (!p.overwrite && beta != 1) scale_c(g, beta);
#if defined(__x86_64__)
    p.avx512 = have_avx512();
#endif
    // op(A) = A is read in place by the AVX-512 kernel (no packing) unless its
    // rows are a multiple of 1 KB apart: then the 12 rows of a panel fall in
    // the same L1 sets and evict each other and B's panel.
    p.direct = p.avx512 && !g->ta && (GEMM_DIRECT == 2 || (GEMM_DIRECT == 1 && lda % 256 != 0));
    // Likewise op(B) = B (its rows of 32 columns, kc of them, must not share
    // L1 sets).
    p.direct_b = p.avx512 && !g->tb && (GEMM_DIRECT_B == 2 || (GEMM_DIRECT_B == 1 && ldb % 256 != 0));
    // K in equal blocks of at most KC (784 = 4 x 196, not 3 x 256 + 16: a
    // short last block costs a pass over C for little work)
    int64_t nkb = (K + KC - 1) / KC;
    p.kcb = (K + nkb - 1) / nkb;
    p.mp = (M + MR - 1) / MR * MR;
    PackBuffers *pb = thread_buffers();
    if (!pb) {   // out of memory: the unpacked, slow but allocation-free path
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float s = 0;
                for (int64_t k = 0; k < K; k++) s += a_at(g, i, k) * b_at(g, k, j);
                C[i * ldc + j] = (p.overwrite ? 0 : C[i * ldc + j]) + alpha * s;
            }
        run_then(&p, 0, M, 0, N);
        return;
    }
    int threads = rt && rt->threads > 1 ? rt->threads : 1;
    // Several threads split C by rows when op(B) is small (then each packs
    // all of it) and C no wider than tall: fashion's second layer (256 x 128
    // x 256 and its dX) ran 30 % faster, since each thread reads and writes
    // only its own samples, which the loops after it split the same way. With
    // a larger op(B) (mnist's first layer, 128 x 784) the step lost a fifth:
    // both cores then hold all of the weight that dW's update writes.
    p.by_rows = then_rows || (threads > 1 && M >= N && N * K <= ROWS_MAX_B);
    p.threads = threads;
    // One piece a thread; by rows, no more pieces than MR-row panels; by
    // columns, one thread for a single block of NR columns
    int64_t most = threads;
    if (p.by_rows) most = (M + MR - 1) / MR;
    else if (N <= NR) most = 1;
    p.n_pieces = threads < most ? threads : most;
    if (p.n_pieces > MAX_PIECES) p.n_pieces = MAX_PIECES;
    if (p.n_pieces > 1) {
        // Columns all read op(A): each thread packs it once
        p.whole_a = !p.direct && !p.by_rows;
        // Rows: each thread packs all of op(B) once, for its chunks
        p.whole_b = !p.direct_b && p.by_rows;
        float *speeds = nnrt_speeds_of(rt, ta, tb, M, N, K, C);
        split_pieces(&p, speeds);
        for (int64_t u = 0; u < p.n_pieces; u++) atomic_init(&p.left[u], (uint64_t)chunks_of(&p, u));
        p.start_ns = nnrt_clock_ns();
        nnrt_parallel_for(rt, gemm_region, &p, threads);
#ifdef NNRT_TRACE
        if (then) nnrt_trace_rename_last((void *)then);
#endif
        learn_speeds(speeds, &p);
        return;
    }
#ifdef NNRT_TRACE
    int64_t start = nnrt_clock_ns();
    gemm_block(&p, 0, M, 0, N, pb->a, pb->b, NULL, NULL);
    int64_t end = nnrt_clock_ns();
    nnrt_trace(then ? (void *)then : (void *)gemm_region, start, end, end);   // as the region it would be
#else
    gemm_block(&p, 0, M, 0, N, pb->a, pb->b, NULL, NULL);
#endif
}

void nnrt_sgemm(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc) {
    sgemm(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL, false);
}

void nnrt_sgemm_then(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc, nnrt_range_fn then, void *then_ctx) {
    sgemm(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, then, then_ctx, true);
}

void nnrt_sgemm_each(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc, nnrt_range_fn then, void *then_ctx) {
    sgemm(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, then, then_ctx, false);
}
