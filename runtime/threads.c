// threads.c: a small persistent thread pool per model instance. nnrt_parallel_for splits
// [0, n) into T = min(m->threads, n) contiguous chunks, chunk k = [n*k/T, n*(k+1)/T): the
// split depends only on n and T, so a kernel that writes each chunk's results to its own
// place gives the same bits whatever the timing. The caller runs chunk 0 itself and worker
// k runs chunk k. The pool starts on the first parallel_for with T > 1 and lives until
// set_threads changes the count or the model is destroyed. If threads cannot be started,
// the chunks run one after the other on the caller's thread (same split, same result).
#define _GNU_SOURCE   // clock_gettime; dladdr for the trace
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "nnrt.h"

int64_t nnrt_clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

#ifdef NNRT_TRACE
// A runtime built with -DNNRT_TRACE logs every parallel region of the calling
// thread, and every product nnrt_sgemm computes on one thread: its function,
// when it started, when the caller's own chunk ended and when the last chunk
// did; at exit the log goes to the file $NNRT_TRACE, for bench/trace.py
// (functions as offsets in their library, times in nanoseconds).
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

enum { TRACE_MAX = 1 << 20 };
static struct { void *fn; int64_t start, own, end; } trace_log[TRACE_MAX];
static int64_t trace_n;

void nnrt_trace(void *fn, int64_t start, int64_t own, int64_t end) {
    if (trace_n == TRACE_MAX) return;
    trace_log[trace_n].fn = fn;
    trace_log[trace_n].start = start, trace_log[trace_n].own = own, trace_log[trace_n].end = end;
    trace_n++;
}

// A product's region is logged as gemm_region; one with a callback is then
// renamed after it, so that bench/trace.py tells the products apart.
void nnrt_trace_rename_last(void *fn) {
    if (trace_n > 0) trace_log[trace_n - 1].fn = fn;
}

__attribute__((destructor)) static void trace_write(void) {
    const char *path = getenv("NNRT_TRACE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    for (int64_t i = 0; i < trace_n; i++) {
        Dl_info d;
        uintptr_t base = dladdr(trace_log[i].fn, &d) ? (uintptr_t)d.dli_fbase : 0;
        fprintf(f, "%lx %lld %lld %lld\n", (unsigned long)((uintptr_t)trace_log[i].fn - base),
                (long long)trace_log[i].start, (long long)trace_log[i].own, (long long)trace_log[i].end);
    }
    fclose(f);
}
#define TRACE_CLOCK() nnrt_clock_ns()
#else
#define TRACE_CLOCK() 0
#define nnrt_trace(fn, start, own, end) ((void)(start), (void)(own))
#endif

// Waking a sleeping thread costs tens of microseconds in a VM (a futex and a
// reschedule), as much as a whole small product. So both sides spin a little
// first: a worker watching for the next job, the caller for the workers'
// end. About 50 us at 3 GHz; then they sleep on the condition variables.
// With more threads than CPUs each round of the spin yields the CPU instead
// (spin_wait): fashion b256 at 3 threads on 2 CPUs took 1692 us a step with
// PAUSEs, 1126 us yielding (docs/performance.md section 19). 400 rounds of
// yields measured the same at 3 threads and 3 % slower at 4; 40, 3 % slower.
#define SPIN_ROUNDS 4000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct nnrt_pool {
    bool            yields;        // more threads than CPUs: waiting threads yield the CPU (spin_wait)
    pthread_mutex_t lock;
    pthread_cond_t  wake;          // workers wait here for a new job (or shutdown)
    pthread_cond_t  done;          // the caller waits here for n_done == n_workers
    int             n_workers;     // threads started (m->threads - 1)
    pthread_t      *workers;
    _Atomic uint64_t generation;   // incremented once per job (under lock)
    _Atomic int     n_done;        // workers finished with the current job
    bool            is_stopping;
    void          (*fn)(void *ctx, int64_t begin, int64_t end);   // the current job
    void           *ctx;
    int64_t         n;
    int             n_chunks;
} nnrt_pool;

// One round of a spin: with more threads than CPUs, the thread that has the
// work may be waiting for this CPU (a spin of PAUSEs would keep it off for up
// to SPIN_ROUNDS of them).
static inline void spin_wait(const nnrt_pool *p) {
    if (p->yields) sched_yield();
    else cpu_relax();
}

// Whether n threads are more than the CPUs this process may run on.
static bool too_many(int n) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return false;
    return n > CPU_COUNT(&set);
}

typedef struct Worker {
    nnrt_pool *pool;
    int        index;              // runs chunk index + 1
} Worker;

static void run_chunk(void (*fn)(void *, int64_t, int64_t), void *ctx, int64_t n, int k, int t) {
    // n*k/t without overflow for any n < 2^63 and t <= 1024: split n = q*t + r.
    int64_t q = n / t, r = n % t;
    int64_t begin = q * k + r * k / t, end = q * (k + 1) + r * (k + 1) / t;
    if (begin < end) fn(ctx, begin, end);
}

// The job's fields are written before generation is incremented (release)
// and read after it is seen (acquire), so a spinning worker takes no lock:
// taking the lock while the caller still held it put the worker to sleep on
// the futex for every job. The caller writes the next job only once every
// worker has counted itself in n_done, after its last read of the fields.
static void *worker_main(void *arg) {
    Worker w = *(Worker *)arg;
    nnrt_pool *p = w.pool;
    nnrt_free(arg);
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->generation, memory_order_acquire) == seen; i++)
            spin_wait(p);
        if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->lock);
            while (!p->is_stopping && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->lock);
            bool stop = p->is_stopping;
            pthread_mutex_unlock(&p->lock);
            if (stop) break;
        }
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (w.index + 1 < p->n_chunks) run_chunk(p->fn, p->ctx, p->n, w.index + 1, p->n_chunks);
        if (atomic_fetch_add(&p->n_done, 1) + 1 == p->n_workers) {
            // Signalled under the lock: the caller checks n_done under it before sleeping.
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

// Stops and joins the first n_started workers and frees the pool.
static void pool_free(nnrt_pool *p, int n_started) {
    pthread_mutex_lock(&p->lock);
    p->is_stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n_started; i++) pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    nnrt_free(p->workers);
    nnrt_free(p);
}

// A pool of n_workers threads, or NULL if memory or threads are lacking.
static nnrt_pool *pool_new(int n_workers) {
    nnrt_pool *p = nnrt_malloc(sizeof *p);
    if (!p) return NULL;
    *p = (nnrt_pool){ .n_workers = n_workers, .yields = too_many(n_workers + 1) };
    p->workers = nnrt_malloc(sizeof(pthread_t) * (size_t)n_workers);
    if (!p->workers) {
        nnrt_free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n_workers; i++) {
        Worker *w = nnrt_malloc(sizeof *w);
        if (w) *w = (Worker){ p, i };
        if (!w || pthread_create(&p->workers[i], NULL, worker_main, w) != 0) {
            nnrt_free(w);
            pool_free(p, i);
            return NULL;
        }
    }
    return p;
}

void nnrt_pool_destroy(nnrt_model *m) {
    if (!m || !m->pool) return;
    pool_free(m->pool, m->pool->n_workers);
    m->pool = NULL;
}

void nnrt_parallel_for(nnrt_model *m, void (*fn)(void *ctx, int64_t begin, int64_t end),
                       void *ctx, int64_t n) {
    if (!fn || n <= 0) return;
    int t = m && m->threads > 1 ? m->threads : 1;
    if (n < t) t = (int)n;
    int64_t start = TRACE_CLOCK(), own;
    if (t == 1) {
        fn(ctx, 0, n);
        own = TRACE_CLOCK();
        nnrt_trace((void *)fn, start, own, own);
        return;
    }
    if (!m->pool || m->pool->n_workers != m->threads - 1) {
        nnrt_pool_destroy(m);
        m->pool = pool_new(m->threads - 1);
    }
    nnrt_pool *p = m->pool;
    if (!p) {                              // no threads: the same chunks, one after the other
        for (int k = 0; k < t; k++) run_chunk(fn, ctx, n, k, t);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->n_chunks = t;
    atomic_store(&p->n_done, 0);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    // Sleeping workers check generation under the lock before they wait.
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_chunk(fn, ctx, n, 0, t);
    own = TRACE_CLOCK();
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n_workers; i++)
        spin_wait(p);
    if (atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n_workers) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->n_done) < p->n_workers) pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
    nnrt_trace((void *)fn, start, own, TRACE_CLOCK());
}
