// gemm_shapes.c: nnrt_sgemm on the products of the reference models, alone
// (not part of bench/run; docs/performance.md section 9). For each shape and
// thread count: warm-up, then REPS repetitions of a batch of calls lasting
// about 40 ms; prints the best and the median GFLOP/s (the best is the least
// disturbed figure on a shared machine) and the best by the process's CPU time
// over the thread count (spinning counts; time taken by other processes or
// the hypervisor does not, on this VM only partly). "wide" is the 8 products
// of a wide 1024^3 step at batch 256 in the step's order (3 forward NT, then
// per layer from the top dW TN and dX NN, the first layer without dX), each
// with its own weights as in the model; "mnist" is the 2 large products of the
// 784-128-10 step at batch 256, with the leading dimensions the generated code
// passes. --check compares the bits of every shape with 1 and 2 threads and
// prints a hash of them (to compare builds).
// With -DGEMM_AB and a second build of gemm.c whose nnrt_sgemm is renamed
// nnrt_sgemm_b, both builds are timed in turn, batch by batch, in one process
// (lines a: and b:): on a shared machine the only comparison that holds.
//
// Build (from the repository root, against the sources of the runtime):
//   cc -O2 -Iruntime -Iinclude bench/gemm_shapes.c runtime/gemm.c runtime/threads.c
//      runtime/alloc.c -lpthread -o gemm_shapes
// A/B (OLD.c: another gemm.c):
//   cc -O2 -Iruntime -Iinclude -c OLD.c -o a.o
//   cc -O2 -Iruntime -Iinclude -c runtime/gemm.c -Dnnrt_sgemm=nnrt_sgemm_b \
//      -Dnnrt_sgemm_then=nnrt_sgemm_then_b -o b.o
//   cc -O2 -Iruntime -Iinclude -DGEMM_AB bench/gemm_shapes.c a.o b.o runtime/threads.c
//      runtime/alloc.c -lpthread -o gemm_ab
// Run:  ./gemm_shapes [--check] [-v] [--reps N] [--only TEXT] [THREADS...]
//       (default threads 1 2; -v: each product's time inside a sequence)
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnrt.h"

static int reps = 9;
static const char *only;   // --only TEXT: the lines whose name contains TEXT
static int verbose;        // -v: each product's time inside a sequence

typedef struct Shape {
    const char *name;
    int         ta, tb;
    int64_t     M, N, K;
} Shape;

static const Shape shapes[] = {
    { "wide fwd  NT 256x1024x1024", 0, 1, 256, 1024, 1024 },
    { "wide dW   TN 1024x1024x256", 1, 0, 1024, 1024, 256 },
    { "wide dX   NN 256x1024x1024", 0, 0, 256, 1024, 1024 },
    { "mnist fwd NT 256x128x784", 0, 1, 256, 128, 784 },
    { "mnist dW  TN 128x784x256", 1, 0, 128, 784, 256 },
};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// CPU time of the process (all threads): unlike the wall clock, it does not
// count the time other processes take the core, so it is the steadier figure
// for one thread on a shared machine.
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *random_matrix(int64_t n, unsigned seed) {
    float *m = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        m[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return m;
}

// One product with its own operands (op(A) M x K, op(B) K x N, C M x N, all dense).
typedef struct Op {
    const Shape *s;
    float       *A, *B, *C;
} Op;

static void op_new(Op *o, const Shape *s, unsigned seed) {
    o->s = s;
    o->A = random_matrix(s->M * s->K, seed);
    o->B = random_matrix(s->K * s->N, seed + 1);
    o->C = random_matrix(s->M * s->N, seed + 2);
}

static void op_free(Op *o) { free(o->A), free(o->B), free(o->C); }

typedef void SgemmFn(nnrt_model *, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                     const float *, int64_t, float, float *, int64_t);
#ifdef GEMM_AB
// A second build of gemm.c (compiled with -Dnnrt_sgemm=nnrt_sgemm_b): both
// are timed in turn, batch by batch, in one process, so that they see the same
// machine (on a shared machine, far steadier than two runs one after the other).
SgemmFn nnrt_sgemm_b;
static SgemmFn *const variants[] = { nnrt_sgemm, nnrt_sgemm_b };
#else
static SgemmFn *const variants[] = { nnrt_sgemm };
#endif
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };

static void op_run_with(SgemmFn *f, nnrt_model *rt, const Op *o) {
    const Shape *s = o->s;
    f(rt, s->ta, s->tb, s->M, s->N, s->K, 1.0f, o->A, s->ta ? s->M : s->K, o->B, s->tb ? s->K : s->N, 0.0f, o->C,
      s->N);
}

static void op_run(nnrt_model *rt, const Op *o) { op_run_with(nnrt_sgemm, rt, o); }

static double ops_flops(const Op *ops, int n) {
    double f = 0;
    for (int i = 0; i < n; i++) f += 2.0 * (double)ops[i].s->M * (double)ops[i].s->N * (double)ops[i].s->K;
    return f;
}

// Times a sequence of products (with each variant in turn); prints best and
// median GFLOP/s.
static void time_ops(const char *name, const Op *ops, int n, int threads) {
    if (only && !strstr(name, only)) return;
    nnrt_model rt = { 0 };
    rt.threads = threads;
    double t0 = now_s();
    int calls = 0;
    do {
        for (int v = 0; v < N_VARIANTS; v++)
            for (int i = 0; i < n; i++) op_run_with(variants[v], &rt, &ops[i]);
        calls++;
    } while (now_s() - t0 < 0.1 || calls < 3);
    int batch = (int)(0.04 * N_VARIANTS / ((now_s() - t0) / calls)) + 1;
    double flops = ops_flops(ops, n), gf[N_VARIANTS][64], best_op[N_VARIANTS][8], best_cpu[N_VARIANTS] = { 0 };
    if (reps > 64) reps = 64;
    for (int v = 0; v < N_VARIANTS; v++)
        for (int i = 0; i < 8; i++) best_op[v][i] = 1e30;
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < N_VARIANTS; v++) {
            double s = now_s(), c = cpu_s(), op_time[8] = { 0 };
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < n; i++) {
                    double s1 = now_s();
                    op_run_with(variants[v], &rt, &ops[i]);
                    op_time[i] += now_s() - s1;
                }
            gf[v][r] = flops * batch / (now_s() - s) * 1e-9;
            double per_thread = flops * batch / ((cpu_s() - c) / threads) * 1e-9;
            if (per_thread > best_cpu[v]) best_cpu[v] = per_thread;
            for (int i = 0; i < n && i < 8; i++)
                if (op_time[i] / batch < best_op[v][i]) best_op[v][i] = op_time[i] / batch;
        }
    for (int v = 0; v < N_VARIANTS; v++) {
        qsort(gf[v], (size_t)reps, sizeof gf[v][0], cmp_double);
        printf("%s%-28s t=%d  best %6.1f  median %6.1f GFLOP/s  (%.1f us per call)  by CPU time %6.1f\n",
               N_VARIANTS > 1 ? (v ? "b: " : "a: ") : "", name, threads, gf[v][reps - 1], gf[v][reps / 2],
               flops / gf[v][reps - 1] * 1e-3, best_cpu[v]);
        if (n > 1 && verbose)   // each product's best time inside the sequence
            for (int i = 0; i < n && i < 8; i++)
                printf("    %-28s %6.1f GFLOP/s  %7.1f us\n", ops[i].s->name,
                       ops_flops(&ops[i], 1) / best_op[v][i] * 1e-9, best_op[v][i] * 1e6);
    }
    fflush(stdout);
    nnrt_pool_destroy(&rt);
}

// Bits of every shape at 1 and 2 threads, and with beta = 1 (accumulate).
static int check(void) {
    int bad = 0;
    for (int i = 0; i < N_SHAPES; i++) {
        Op o;
        op_new(&o, &shapes[i], 10 + 3 * (unsigned)i);
        size_t bytes = (size_t)(o.s->M * o.s->N) * sizeof(float);
        float *c1 = malloc(bytes);
        nnrt_model one = { 0 }, two = { 0 };
        one.threads = 1, two.threads = 2;
        op_run(&one, &o);
        memcpy(c1, o.C, bytes);
        memset(o.C, 0xff, bytes);
        op_run(&two, &o);
        int same = memcmp(c1, o.C, bytes) == 0;
        uint64_t h = 1469598103934665603ull;   // FNV-1a of the bits, to compare builds
        for (size_t b = 0; b < bytes; b++) h = (h ^ ((const unsigned char *)c1)[b]) * 1099511628211ull;
        printf("%-28s 1 vs 2 threads: %s  hash %016llx\n", o.s->name, same ? "same bits" : "DIFFERENT",
               (unsigned long long)h);
        bad += !same;
        nnrt_pool_destroy(&two);
        free(c1);
        op_free(&o);
    }
    return bad;
}

int main(int argc, char **argv) {
    int threads[8], nt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) return check() ? 1 : 0;
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (nt < 8) threads[nt++] = atoi(argv[i]);
    }
    if (reps < 1) reps = 1;
    if (nt == 0) threads[nt++] = 1, threads[nt++] = 2;
    // The wide step: per layer its own weights; 3 forward, 3 dW, 2 dX.
    static const int wide_order[8] = { 0, 0, 0, 1, 2, 1, 2, 1 };
    Op wide[8], mnist[2];
    for (int i = 0; i < 8; i++) op_new(&wide[i], &shapes[wide_order[i]], 100 + 3 * (unsigned)i);
    op_new(&mnist[0], &shapes[3], 200);
    op_new(&mnist[1], &shapes[4], 300);
    for (int t = 0; t < nt; t++) {
        time_ops(shapes[0].name, &wide[0], 1, threads[t]);
        time_ops(shapes[1].name, &wide[3], 1, threads[t]);
        time_ops(shapes[2].name, &wide[4], 1, threads[t]);
        time_ops("wide step (8 products)", wide, 8, threads[t]);
        time_ops(shapes[3].name, &mnist[0], 1, threads[t]);
        time_ops(shapes[4].name, &mnist[1], 1, threads[t]);
        time_ops("mnist pair", mnist, 2, threads[t]);
    }
    for (int i = 0; i < 8; i++) op_free(&wide[i]);
    op_free(&mnist[0]);
    op_free(&mnist[1]);
    return 0;
}
