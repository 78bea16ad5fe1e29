// nnrt_sgemm against a double-precision reference, in every transpose form,
// at sizes around the block edges, and bit-identical with 1 and 2 threads.
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnrt.h"

static float *random_matrix(int64_t n, unsigned seed) {
    float *m = malloc((size_t)n * sizeof *m);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        m[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return m;
}

// Relative error of got = alpha op(A)[i,:] op(B)[:,j] + beta c0, against the
// sum in double, relative to the sum of the terms' magnitudes.
static double entry_error(int ta, int tb, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t i,
                          int64_t j, int64_t K, float alpha, float beta, float c0, float got) {
    double sum = 0, mag = 0;
    for (int64_t k = 0; k < K; k++) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
        mag += fabs(a * b);
    }
    double want = alpha * sum + beta * c0;
    return fabs(want - got) / (fabs(alpha) * mag + fabs(beta * c0) + 1e-30);
}

// Max error against sum_k op(A)[i,k] op(B)[k,j] in double, relative to sum |terms|.
static double check(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                    float alpha, float beta) {
    float *A = random_matrix(M * K, 1), *B = random_matrix(K * N, 2), *C = random_matrix(M * N, 3);
    float *C0 = malloc((size_t)(M * N) * sizeof *C0);
    memcpy(C0, C, (size_t)(M * N) * sizeof *C0);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    nnrt_sgemm(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double err = entry_error(ta, tb, A, lda, B, ldb, i, j, K, alpha, beta, C0[i * N + j], C[i * N + j]);
            if (err > worst) worst = err;
        }
    free(A); free(B); free(C); free(C0);
    return worst;
}

Test(gemm, matches_double_reference_in_every_transpose_form) {
    static const int64_t sizes[][3] = {
        { 1, 1, 1 }, { 1, 10, 784 }, { 12, 32, 256 }, { 13, 33, 257 }, { 37, 5, 3 },
        { 100, 130, 70 }, { 256, 128, 784 }, { 97, 1030, 300 },
    };
    for (int form = 0; form < 4; form++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            double err = check(NULL, form & 1, form >> 1, sizes[s][0], sizes[s][1], sizes[s][2], 1.0f, 0.0f);
            cr_assert_lt(err, 1e-5, "form %d size %ld %ld %ld: error %g", form,
                         (long)sizes[s][0], (long)sizes[s][1], (long)sizes[s][2], err);
        }
}

Test(gemm, alpha_and_beta_scale_as_blas_does) {
    cr_assert_lt(check(NULL, 0, 1, 20, 40, 50, 0.5f, 1.0f), 1e-5);
    cr_assert_lt(check(NULL, 1, 0, 20, 40, 50, -2.0f, 0.25f), 1e-5);
    cr_assert_lt(check(NULL, 0, 0, 20, 40, 0, 1.0f, 0.5f), 1e-6);   // K = 0: C = beta C
}

Test(gemm, two_threads_give_the_same_bits_as_one) {
    int64_t M = 64, N = 1000, K = 300;
    float *A = random_matrix(M * K, 4), *B = random_matrix(K * N, 5);
    float *C1 = calloc((size_t)(M * N), sizeof *C1), *C2 = calloc((size_t)(M * N), sizeof *C2);
    nnrt_model one = { 0 }, two = { 0 };
    one.threads = 1;
    two.threads = 2;
    nnrt_sgemm(&one, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N);
    nnrt_sgemm(&two, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C2, N);
    cr_assert_eq(memcmp(C1, C2, (size_t)(M * N) * sizeof *C1), 0);
    nnrt_pool_destroy(&two);
    free(A); free(B); free(C1); free(C2);
}

// Split by columns, each thread packs all of op(A) once for its piece. The
// same bits as one thread in every transpose form, with row and column edges
// and K split into blocks; and the same as the double reference.
Test(gemm, packing_all_of_a_on_each_thread_gives_the_same_bits_as_one_thread) {
    int64_t M = 301, N = 97, K = 900;
    for (int form = 0; form < 4; form++) {
        int ta = form & 1, tb = form >> 1;
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        float *A = random_matrix(M * K, 6), *B = random_matrix(K * N, 7);
        float *C1 = random_matrix(M * N, 8), *C2 = random_matrix(M * N, 8);
        nnrt_model one = { 0 }, two = { 0 };
        one.threads = 1;
        two.threads = 2;
        float beta = form == 3 ? 1.0f : 0.0f;
        nnrt_sgemm(&one, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C1, N);
        nnrt_sgemm(&two, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C2, N);
        cr_assert_eq(memcmp(C1, C2, (size_t)(M * N) * sizeof *C1), 0, "form %d", form);
        nnrt_pool_destroy(&two);
        free(A); free(B); free(C1); free(C2);
        nnrt_model two_b = { 0 };
        two_b.threads = 2;
        cr_assert_lt(check(&two_b, ta, tb, M, N, K, 1.0f, 0.0f), 1e-5, "form %d", form);
        nnrt_pool_destroy(&two_b);
    }
}

// Padded leading dimensions (op(A) = A and op(B) = B read in place when their
// rows are not a multiple of 1 KB apart, packed otherwise), edge tiles in both
// directions, alpha != 1 and beta = 1: 2 and 3 threads (one piece of C each:
// blocks of columns, one of them cut between rows where a piece ends, or rows
// when op(B) is small) give the bits of one thread, and one thread matches the
// double reference.
Test(gemm, any_thread_count_gives_the_same_bits_in_every_form) {
    static const int64_t sizes[][4] = {   // M, N, K, padding of the leading dimensions
        { 37, 200, 300, 5 }, { 256, 130, 784, 0 }, { 25, 97, 256, 0 }, { 130, 70, 1024, 0 }, { 13, 1030, 40, 3 },
        { 45, 250, 250, 6 },   // every leading dimension 256: A and B packed, with edges
        { 200, 60, 300, 0 }, { 97, 33, 500, 2 },   // small op(B), C tall: split by rows
    };
    static const float alphas[] = { 1.0f, 0.5f };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int form = 0; form < 4; form++)
            for (int al = 0; al < 2; al++) {
                int ta = form & 1, tb = form >> 1;
                int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2], pad = sizes[s][3];
                int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                float alpha = alphas[al], beta = al ? 1.0f : 0.0f;
                float *A = random_matrix((ta ? K : M) * lda, 11), *B = random_matrix((tb ? N : K) * ldb, 12);
                float *C[3];
                for (int t = 0; t < 3; t++) C[t] = random_matrix(M * ldc, 13);
                for (int t = 0; t < 3; t++) {
                    nnrt_model rt = { 0 };
                    rt.threads = t + 1;
                    nnrt_sgemm(&rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C[t], ldc);
                    nnrt_pool_destroy(&rt);
                }
                cr_assert_eq(memcmp(C[0], C[1], (size_t)(M * ldc) * sizeof(float)), 0, "size %zu form %d alpha %g: 2 threads",
                             s, form, (double)alpha);
                cr_assert_eq(memcmp(C[0], C[2], (size_t)(M * ldc) * sizeof(float)), 0, "size %zu form %d alpha %g: 3 threads",
                             s, form, (double)alpha);
                float *C0 = random_matrix(M * ldc, 13);   // C's old values
                double worst = 0;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        if (j >= N) {   // the padding is never written
                            cr_assert_eq(C[0][i * ldc + j], C0[i * ldc + j]);
                            continue;
                        }
                        double err = entry_error(ta, tb, A, lda, B, ldb, i, j, K, alpha, beta, C0[i * ldc + j],
                                                 C[0][i * ldc + j]);
                        if (err > worst) worst = err;
                    }
                cr_assert_lt(worst, 1e-5, "size %zu form %d alpha %g: error %g", s, form, (double)alpha, worst);
                free(A), free(B), free(C0);
                for (int t = 0; t < 3; t++) free(C[t]);
            }
}

// nnrt_sgemm_then and nnrt_sgemm_each: `then` sees every element of C exactly
// once, only within a row's columns (never the padding past N), and only once
// it is final: what it copies out at the time of the call equals C after the
// product. With 1, 2 and 3 threads; K past one block (the call waits for the
// last); alpha != 1 and beta = 1; K = 0 (C = beta C, still passed on); for
// nnrt_sgemm_each, C split by columns (M < N, and N past one block of NC
// columns) and by rows (300 x 70).
typedef struct ThenLog {
    const float *c;
    float       *seen;    // C's value when passed
    _Atomic int *count;   // times passed
    int64_t      n, ldc;
} ThenLog;

static void log_range(void *ctx, int64_t begin, int64_t end) {
    ThenLog *l = ctx;
    for (int64_t f = begin; f < end; f++) {
        l->seen[f] = l->c[f];
        l->count[f]++;
    }
}

// One product of `then_sees_each_final_element_once`: size s of M, N, K and
// ldc's padding, t threads, through nnrt_sgemm_each (each) or nnrt_sgemm_then.
static void check_then(int each, size_t s, const int64_t size[4], int t) {
    int64_t M = size[0], N = size[1], K = size[2], ldc = N + size[3];
    float alpha = t == 2 ? 0.5f : 1.0f, beta = t == 2 ? 1.0f : 0.0f;
    float *A = random_matrix(M * K + 1, 21), *B = random_matrix(K * N + 1, 22);
    float *C = random_matrix(M * ldc, 23), *ref = random_matrix(M * ldc, 23);
    ThenLog l = { C, calloc((size_t)(M * ldc), sizeof(float)), calloc((size_t)(M * ldc), sizeof(int)), N, ldc };
    nnrt_model rt = { 0 };
    rt.threads = t;
    (each ? nnrt_sgemm_each : nnrt_sgemm_then)(&rt, 1, 0, M, N, K, alpha, A, M, B, N, beta, C, ldc, log_range, &l);
    nnrt_sgemm(NULL, 1, 0, M, N, K, alpha, A, M, B, N, beta, ref, ldc);
    nnrt_pool_destroy(&rt);
    cr_assert_eq(memcmp(C, ref, (size_t)(M * ldc) * sizeof(float)), 0, "each %d, size %zu, %d threads: C", each, s, t);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            int64_t f = i * ldc + j;
            cr_assert_eq(l.count[f], j < N ? 1 : 0, "each %d, size %zu, %d threads: C[%ld][%ld] passed %d times",
                         each, s, t, (long)i, (long)j, l.count[f]);
            if (j < N)
                cr_assert_eq(l.seen[f], C[f], "each %d, size %zu, %d threads: C[%ld][%ld] passed before final", each,
                             s, t, (long)i, (long)j);
        }
    free(A), free(B), free(C), free(ref), free(l.seen), free((void *)l.count);
}

Test(gemm, then_sees_each_final_element_once) {
    static const int64_t sizes[][4] = {   // M, N, K, padding of ldc
        { 37, 200, 300, 5 }, { 256, 784, 256, 0 }, { 300, 70, 600, 3 }, { 13, 1030, 40, 0 }, { 20, 30, 0, 2 },
    };
    for (int each = 0; each < 2; each++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int t = 1; t <= 3; t++)
                check_then(each, s, sizes[s], t);
}

// Split by rows, the threads' stretches follow their speeds in the product:
// with speeds 3 and 1, 96 rows split at row 72, whichever thread computes
// each stretch (the blocks passed to `then` start at a stretch's first row
// and go by at most 96 rows). A thread given no rows, and speeds learnt
// from the product, still give the bits of one thread.
typedef struct Starts {
    int64_t      ldc;
    _Atomic int *at;   // then calls starting at each row
} Starts;

static void log_start(void *ctx, int64_t begin, int64_t end) {
    Starts *s = ctx;
    (void)end;
    s->at[begin / s->ldc]++;
}

Test(gemm, rows_split_in_proportion_to_the_threads_speeds) {
    int64_t M = 96, N = 64, K = 40;
    float *A = random_matrix(M * K, 31), *B = random_matrix(K * N, 32);
    float *ref = calloc((size_t)(M * N), sizeof(float));
    nnrt_sgemm(NULL, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, ref, N);
    static const float speeds[][2] = { { 3, 1 }, { 1e-6f, 1 }, { 1, 1e-6f } };
    for (int s = 0; s < 3; s++) {
        float *C = calloc((size_t)(M * N), sizeof(float));
        Starts st = { N, calloc((size_t)M, sizeof(int)) };
        nnrt_model rt = { 0 };
        rt.threads = 2;
        float *speed = nnrt_speeds_of(&rt, 1, 0, M, N, K, C);
        speed[0] = speeds[s][0], speed[1] = speeds[s][1];
        nnrt_sgemm_then(&rt, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N, log_start, &st);
        nnrt_pool_destroy(&rt);
        cr_assert_eq(memcmp(C, ref, (size_t)(M * N) * sizeof(float)), 0, "speeds %d: C", s);
        if (s == 0) {
            cr_assert_eq(st.at[0], 1);
            cr_assert_eq(st.at[72], 1, "no stretch starts at row 72");
            for (int64_t i = 1; i < M; i++)
                if (i != 72) cr_assert_eq(st.at[i], 0, "a block starts at row %ld", (long)i);
        }
        for (int k = 0; k < 2; k++)   // learnt, or kept when a thread had no rows
            cr_assert(speed[k] > 0 && isfinite(speed[k]), "speeds %d: thread %d", s, k);
        free(C), free((void *)st.at);
    }
    free(A), free(B), free(ref);
}

// Split by columns, the threads' pieces follow their speeds too, a block of
// 32 columns cut between rows where a piece ends: with speeds (3, 1), (1, 4),
// (1, 1e-6) (one thread given nothing) and (1, 2, 3) for three threads, and
// with the speeds each call learns (3 falls), the bits of one thread; C has 100 rows
// (not a multiple of 12) and 7 blocks of columns; op(A) packed (lda 256) or
// read in place.
Test(gemm, columns_split_in_proportion_to_the_threads_speeds) {
    int64_t M = 100, N = 200;
    static const float speeds[][3] = { { 3, 1, 0 }, { 1, 4, 0 }, { 1, 1e-6f, 0 }, { 1, 2, 3 } };
    for (int lda_case = 0; lda_case < 2; lda_case++) {
        int64_t K = lda_case ? 256 : 300;
        float *A = random_matrix(M * K, 41), *B = random_matrix(K * N, 42);
        float *ref = calloc((size_t)(M * N), sizeof(float));
        nnrt_sgemm(NULL, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, ref, N);
        for (int s = 0; s < 4; s++) {
            float *C = calloc((size_t)(M * N), sizeof(float));
            nnrt_model rt = { 0 };
            rt.threads = s == 3 ? 3 : 2;
            float *speed = nnrt_speeds_of(&rt, 0, 0, M, N, K, C);
            for (int k = 0; k < 3; k++) speed[k] = speeds[s][k];
            for (int rep = 0; rep < 3; rep++) {   // the speeds it learns move the pieces
                memset(C, 0, (size_t)(M * N) * sizeof(float));
                nnrt_sgemm(&rt, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
                cr_assert_eq(memcmp(C, ref, (size_t)(M * N) * sizeof(float)), 0, "lda %ld speeds %d call %d",
                             (long)K, s, rep);
            }
            // Learnt, once both threads have taken part in a call (a thread's rate
            // is under twice the mean, so 3 falls). A late worker can leave its
            // piece to the caller, and nothing is then learnt: calls are repeated
            // for up to two seconds, for a loaded machine.
            for (int rep = 0; s == 0 && speed[0] >= 3.0f && rep < 20000; rep++)
                nnrt_sgemm(&rt, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
            if (s == 0) cr_assert_lt(speed[0], 3.0f, "lda %ld: speeds not learnt", (long)K);
            nnrt_pool_destroy(&rt);
            free(C);
        }
        free(A), free(B), free(ref);
    }
}

// A thread done with its own piece takes the chunks still left of another's:
// here the worker's first `then` holds it (for at most two seconds) until the caller
// has passed on a block of the worker's piece, which the caller does only by
// taking chunks from it. Rows (nnrt_sgemm_then, 384 rows: two chunks of 96 a
// thread) and columns (nnrt_sgemm_each, 8 blocks of 32 columns: four a
// thread), each with the speeds set equal; the bits of one thread, and every
// element passed once.
typedef struct Held {
    pthread_t     caller;
    int64_t       ldc, from;   // the worker's piece starts at row or column `from`
    bool          by_rows;
    _Atomic bool  taken;       // the caller passed on a block of the worker's piece
    _Atomic bool  held;        // the worker waited for it
    _Atomic int  *count;
} Held;

static void hold_worker(void *ctx, int64_t begin, int64_t end) {
    Held *h = ctx;
    int64_t at = h->by_rows ? begin / h->ldc : begin % h->ldc;
    for (int64_t f = begin; f < end; f++) h->count[f]++;
    if (pthread_equal(pthread_self(), h->caller)) {
        if (at >= h->from) atomic_store(&h->taken, true);
        return;
    }
    if (atomic_exchange(&h->held, true)) return;   // held once
    for (int i = 0; i < 2000 && !atomic_load(&h->taken); i++) usleep(1000);
}

Test(gemm, a_thread_done_takes_what_is_left_of_another_piece) {
    for (int by_rows = 0; by_rows < 2; by_rows++) {
        int64_t M = by_rows ? 384 : 64, N = by_rows ? 64 : 256, K = 50;
        float *A = random_matrix(M * K, 51), *B = random_matrix(K * N, 52);
        float *C = calloc((size_t)(M * N), sizeof(float)), *ref = calloc((size_t)(M * N), sizeof(float));
        nnrt_sgemm(NULL, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, ref, N);
        Held h = { pthread_self(), N, by_rows ? M / 2 : N / 2, by_rows, false, false,
                   calloc((size_t)(M * N), sizeof(int)) };
        nnrt_model rt = { 0 };
        rt.threads = 2;
        float *speed = nnrt_speeds_of(&rt, 1, 0, M, N, K, C);
        speed[0] = speed[1] = 1;
        (by_rows ? nnrt_sgemm_then : nnrt_sgemm_each)(&rt, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N,
                                                      hold_worker, &h);
        nnrt_pool_destroy(&rt);
        cr_assert(atomic_load(&h.taken), "by rows %d: the caller took nothing of the worker's piece", by_rows);
        cr_assert_eq(memcmp(C, ref, (size_t)(M * N) * sizeof(float)), 0, "by rows %d: C", by_rows);
        for (int64_t f = 0; f < M * N; f++)
            cr_assert_eq(h.count[f], 1, "by rows %d: C[%ld] passed %d times", by_rows, (long)f, h.count[f]);
        free(A), free(B), free(C), free(ref), free((void *)h.count);
    }
}
