// parallel_for.c: the cost of one nnrt_parallel_for at 2 threads (not part of
// bench/run; docs/performance.md section 12): an empty job, and a job of about
// 2 us a chunk, each called back to back. The floor is the machine's
// core-to-core round trip (the job's publication seen by the worker, its
// count of done seen by the caller): about 0.55 us on this VM.
//
// Build (from the repository root):
//   cc -O2 -Iruntime -Iinclude bench/parallel_for.c runtime/threads.c runtime/alloc.c -lpthread -o parallel_for
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nnrt.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static volatile float sink;

// 'work' dependent adds per index of the range (about 3 cycles each).
static void job(void *ctx, int64_t begin, int64_t end) {
    int64_t work = *(const int64_t *)ctx;
    float s = 0;
    for (int64_t i = begin * work; i < end * work; i++) s += (float)i * 0.5f;
    sink = s;
}

int main(void) {
    static const int64_t works[] = { 0, 2000 };
    nnrt_model m;
    memset(&m, 0, sizeof m);
    m.threads = 2;
    for (size_t w = 0; w < sizeof works / sizeof works[0]; w++)
        for (int rep = 0; rep < 3; rep++) {
            enum { CALLS = 200000 };
            int64_t work = works[w];
            double t0 = now_ns();
            for (int i = 0; i < CALLS; i++) nnrt_parallel_for(&m, job, &work, 2);
            printf("work %4lld a chunk: %.3f us per nnrt_parallel_for\n", (long long)work, (now_ns() - t0) / CALLS / 1e3);
        }
    nnrt_pool_destroy(&m);
    return 0;
}
