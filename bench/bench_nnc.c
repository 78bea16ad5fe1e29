// bench_nnc.c: times an nnc-compiled model's train_step the way
// bench_torch.py (../shared/anchors) times PyTorch's: fresh random batches
// (made before timing), warm-up of at least 20 steps and 0.3 s, then REPS
// repetitions; each step timed alone. Prints one JSON line per configuration.
//
//   bench_nnc MODEL.so NAME THREADS ONEHOT BATCH [BATCH...]
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnc/model.h"

#define REPS 5
#define POOL 8              // distinct random batches, cycled
#define SECONDS_PER_REP 0.6

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)(rng >> 40) * (1.0f / 16777216.0f);
}

static void fill(const nnc_model_info *info, float *x, float *y, size_t batch, int onehot) {
    for (size_t i = 0; i < batch * info->input_size; i++) x[i] = frand();
    for (size_t b = 0; b < batch; b++) {
        float *t = y + b * info->target_size;
        if (onehot) {
            memset(t, 0, info->target_size * sizeof *t);
            t[(size_t)(frand() * info->target_size) % info->target_size] = 1;
        } else {
            for (size_t i = 0; i < info->target_size; i++) t[i] = frand();
        }
    }
}

static void bench(const nnc_model_info *info, const char *name, int threads, int onehot, size_t batch) {
    void *m = info->create(1);
    info->set_threads(m, threads);
    float *x = malloc(POOL * batch * info->input_size * sizeof(float));
    float *y = malloc(POOL * batch * (info->target_size ? info->target_size : 1) * sizeof(float));
    for (int p = 0; p < POOL; p++)
        fill(info, x + p * batch * info->input_size, y + p * batch * info->target_size, batch, onehot);
    long step = 0;
#define STEP() info->train_step(m, x + (step % POOL) * batch * info->input_size, \
                                y + (step % POOL) * batch * info->target_size, batch), step++
    double t0 = now_ns();
    while (step < 20 || now_ns() - t0 < 0.3e9) STEP();
    double per_step = (now_ns() - t0) / step;
    // Each timed sample is a group of `inner` consecutive steps lasting about
    // 2 us, divided by `inner`: for the tiny nets (0.1 us a step) a clock read
    // per step (about 20-40 ns here) would otherwise be a quarter of the figure.
    // FANN's figures are likewise per sample over a loop. Steps of 2 us and
    // more are timed one by one (inner = 1).
    long inner = per_step < 2000 ? (long)(2000 / per_step) : 1;
    if (inner < 1) inner = 1;
    long per_rep = (long)(SECONDS_PER_REP * 1e9 / (per_step * inner));
    if (per_rep < 5) per_rep = 5;
    double *all = malloc(REPS * per_rep * sizeof *all), rep_median[REPS];
    double *ts = malloc(per_rep * sizeof *ts);
    for (int r = 0; r < REPS; r++) {
        for (long i = 0; i < per_rep; i++) {
            double a = now_ns();
            for (long j = 0; j < inner; j++) STEP();
            ts[i] = (now_ns() - a) / inner;
            all[r * per_rep + i] = ts[i];
        }
        qsort(ts, per_rep, sizeof *ts, cmp_double);
        rep_median[r] = ts[per_rep / 2];
    }
    long n = REPS * per_rep;
    qsort(all, n, sizeof *all, cmp_double);
    float loss = info->loss(m, x, y, batch);
    printf("{\"model\": \"%s\", \"batch\": %zu, \"threads\": %d, \"params\": %zu, \"steps\": %ld, "
           "\"steps_per_timing\": %ld, \"median_us\": %.3f, \"p10_us\": %.3f, \"p90_us\": %.3f, \"min_us\": %.3f, "
           "\"rep_medians_us\": [", name, batch, threads, info->param_count, n * inner, inner,
           all[n / 2] / 1e3, all[n / 10] / 1e3, all[n * 9 / 10] / 1e3, all[0] / 1e3);
    for (int r = 0; r < REPS; r++) printf("%s%.3f", r ? ", " : "", rep_median[r] / 1e3);
    printf("], \"flop_per_step\": %.6g, \"final_loss\": %g}\n",
           6.0 * batch * info->param_count, loss);
    fflush(stdout);
    free(all); free(ts); free(x); free(y);
    info->destroy(m);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL.so NAME THREADS ONEHOT BATCH...\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fprintf(stderr, "%s\n", dlerror()), 1;
    const nnc_model_info *(*entry)(void) = (const nnc_model_info *(*)(void))dlsym(lib, "nnc_model_entry");
    if (!entry) return fprintf(stderr, "%s: no nnc_model_entry\n", argv[1]), 1;
    const nnc_model_info *info = entry();
    for (int i = 5; i < argc; i++)
        bench(info, argv[2], atoi(argv[3]), atoi(argv[4]), (size_t)atol(argv[i]));
    return 0;
}
