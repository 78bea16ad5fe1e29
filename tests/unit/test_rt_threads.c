// nnrt_parallel_for (runtime/threads.c): deterministic contiguous chunks, every index once,
// the same result with any thread count, and the pool restarts when the count changes.
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>
#include "nnrt.h"
#include "linear_model.h"

typedef struct Job {
    int64_t      begin[64], end[64];   // the chunks seen, by chunk start
    _Atomic int  n_chunks;
    int          hits[10000];          // how often each index was visited
} Job;

static void record(void *ctx, int64_t begin, int64_t end) {
    Job *j = ctx;
    int k = atomic_fetch_add(&j->n_chunks, 1);
    j->begin[k] = begin;
    j->end[k] = end;
    for (int64_t i = begin; i < end; i++) j->hits[i]++;
}

static Job job;

static void run(nnrt_model *m, int64_t n) {
    memset(&job, 0, sizeof job);
    nnrt_parallel_for(m, record, &job, n);
}

static nnrt_model *model_with(int threads) {
    nnrt_model *m = nnrt_create(nnrt_test_linear(), 1);
    cr_assert_not_null(m);
    nnrt_set_threads(m, threads);
    return m;
}

Test(rt_threads, inline_with_one_thread) {
    nnrt_model *m = model_with(1);
    run(m, 1000);
    cr_assert_eq(job.n_chunks, 1);
    cr_assert_eq(job.begin[0], 0);
    cr_assert_eq(job.end[0], 1000);
    cr_assert_null(m->pool);
    nnrt_destroy(m);
}

Test(rt_threads, chunks_are_the_formula) {
    nnrt_model *m = model_with(3);
    for (int rep = 0; rep < 50; rep++) {
        run(m, 10);
        cr_assert_eq(job.n_chunks, 3);
        static const int64_t begins[3] = { 0, 3, 6 }, ends[3] = { 3, 6, 10 };
        bool seen[3] = { 0 };
        for (int k = 0; k < 3; k++) {           // chunks [0,3) [3,6) [6,10) in any order
            int c = job.begin[k] == 0 ? 0 : job.begin[k] == 3 ? 1 : 2;
            cr_assert_eq(job.begin[k], begins[c]);
            cr_assert_eq(job.end[k], ends[c]);
            seen[c] = true;
        }
        cr_assert(seen[0] && seen[1] && seen[2]);
        for (int i = 0; i < 10; i++) cr_assert_eq(job.hits[i], 1);
    }
    nnrt_destroy(m);
}

Test(rt_threads, every_index_once_for_many_sizes) {
    nnrt_model *m = model_with(4);
    for (int64_t n = 1; n < 200; n += 7) {
        run(m, n);
        cr_assert_eq(job.n_chunks, n < 4 ? n : 4);
        for (int64_t i = 0; i < n; i++) cr_assert_eq(job.hits[i], 1, "n %ld i %ld", (long)n, (long)i);
    }
    run(m, 0);
    cr_assert_eq(job.n_chunks, 0);
    nnrt_destroy(m);
}

typedef struct Sum { const float *v; float partial[16]; int64_t chunk; } Sum;

static void sum_chunk(void *ctx, int64_t begin, int64_t end) {
    Sum *s = ctx;
    float acc = 0;
    for (int64_t i = begin; i < end; i++) acc += s->v[i];
    s->partial[begin / s->chunk] = acc;          // chunk k starts at k*chunk (n divisible)
}

// A reduction written per chunk gives the same bits on every run.
Test(rt_threads, deterministic_reduction) {
    static float v[4096];
    for (int i = 0; i < 4096; i++) v[i] = 1.0f / (float)(i + 1);
    nnrt_model *m = model_with(4);
    float first = 0;
    for (int rep = 0; rep < 100; rep++) {
        Sum s = { .v = v, .chunk = 1024 };
        nnrt_parallel_for(m, sum_chunk, &s, 4096);
        float total = ((s.partial[0] + s.partial[1]) + s.partial[2]) + s.partial[3];
        if (rep == 0) first = total;
        cr_assert_eq(total, first);
    }
    nnrt_destroy(m);
}

Test(rt_threads, set_threads_restarts_pool) {
    nnrt_model *m = model_with(2);
    run(m, 100);
    cr_assert_not_null(m->pool);
    nnrt_set_threads(m, 3);
    cr_assert_null(m->pool);
    run(m, 100);
    cr_assert_eq(job.n_chunks, 3);
    nnrt_set_threads(m, 1);
    cr_assert_null(m->pool);
    run(m, 100);
    cr_assert_eq(job.n_chunks, 1);
    nnrt_destroy(m);
}

// Without memory for the pool the chunks run on the caller's thread, same split.
Test(rt_threads, no_pool_falls_back_to_serial_chunks) {
    nnrt_model *m = model_with(4);
    nnrt_alloc_fail_at(1);
    run(m, 8);
    nnrt_alloc_fail_at(0);
    cr_assert_null(m->pool);
    cr_assert_eq(job.n_chunks, 4);
    for (int k = 0; k < 4; k++) cr_assert_eq(job.begin[k], 2 * k);
    nnrt_destroy(m);
}
