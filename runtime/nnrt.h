// nnrt.h: libnnrt's internal interface, between the code nnc generates and the
// runtime linked into every model.so. Not installed (the public face is
// <nnc/model.h> and the generated header). Only NNRT_API symbols are exported
// from a model.so; everything else is hidden.
//
// The generated module defines, for a model `m`:
//   - kernels (below), specialised to the model's shapes;
//   - `static const nnrt_desc m_desc` describing tensors, initialisers and sizes;
//   - the exported wrappers m_create, m_train_step, ... which call nnrt_* here,
//     and nnc_model_entry() returning &m_desc.info.
#ifndef NNRT_H
#define NNRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nnc/model.h"

#define NNRT_API __attribute__((visibility("default")))
#define NNRT_HIDDEN __attribute__((visibility("hidden")))

typedef struct nnrt_model nnrt_model;

// The threads' relative speeds in one product on several threads (gemm.c),
// 0: not measured; the product is known by its shape and C (its call site).
enum { NNRT_SPEED_THREADS = 16, NNRT_SPEED_PRODUCTS = 16 };
typedef struct nnrt_speeds {
    uint64_t key;                          // of the product, 0: unused
    uint64_t used;                         // when last used (the oldest is replaced)
    float    speed[NNRT_SPEED_THREADS];    // thread k's
} nnrt_speeds;

// Kernels, emitted by codegen (cg_*.c). `scratch` is the per-instance arena of
// nnrt_desc.scratch_fixed + batch * scratch_per_sample bytes, 64-aligned.
// `rt` is the instance, for runtime services (threads) only.
typedef float (*nnrt_grad_fn)(nnrt_model *rt, const float *params, const float *x,
                              const float *y, int64_t batch, float *grad, void *scratch);
typedef float (*nnrt_loss_fn)(nnrt_model *rt, const float *params, const float *x,
                              const float *y, int64_t batch, void *scratch);
typedef void  (*nnrt_predict_fn)(nnrt_model *rt, const float *params, const float *x,
                                 float *out, int64_t batch, void *scratch);
// One optimiser update from `grad` (already the batch objective's gradient):
// writes params and state; `step` is t of this update (1 for the first).
typedef void  (*nnrt_apply_fn)(nnrt_model *rt, float *params, float *state, const float *grad,
                               float lr, float step, void *scratch);
// grad then apply in one kernel, the gradient never stored: returns the
// objective, and writes nothing when it is not finite. `step` is t of this update.
typedef float (*nnrt_train_fn)(nnrt_model *rt, float *params, float *state, const float *x,
                               const float *y, int64_t batch, float lr, float step, void *scratch);

typedef enum {
    NNRT_INIT_ZEROS, NNRT_INIT_ONES, NNRT_INIT_CONSTANT, NNRT_INIT_UNIFORM,
    NNRT_INIT_NORMAL, NNRT_INIT_XAVIER, NNRT_INIT_HE
} nnrt_init_kind;

typedef struct nnrt_init {
    int32_t kind;               // nnrt_init_kind
    double  a, b;               // constant(a), uniform(a,b), normal(a = mean, b = std)
    int64_t fan_in, fan_out;
} nnrt_init;

typedef struct nnrt_desc {
    nnc_model_info         info;          // the public description (ABI.md §2)
    const nnrt_init       *inits;         // info.n_tensors entries
    size_t                 state_count;   // floats of optimiser state
    size_t                 n_states;
    const nnc_tensor_info *states;        // names like "h1.W.m"; offsets inside the state block
    size_t                 scratch_fixed;      // bytes
    size_t                 scratch_per_sample; // bytes per sample of the batch
    float                  default_lr;
    int32_t                default_threads;    // -j N (0: the runtime decides)
    const char            *signature;     // model signature stored in checkpoints
    nnrt_grad_fn           grad;
    nnrt_loss_fn           loss;          // NULL: grad with grad == NULL returns the objective
    nnrt_predict_fn        predict;
    nnrt_apply_fn          apply;
    nnrt_train_fn          train;         // NULL: train_step is grad then apply
} nnrt_desc;

struct nnrt_model {
    const nnrt_desc *desc;
    float   *params;            // desc->info.param_count
    float   *state;             // desc->state_count
    float   *grad;              // param_count, train_step's gradient buffer
    float    lr;
    int64_t  step;              // optimiser updates taken so far
    int      threads;
    void    *scratch;           // 64-aligned
    size_t   scratch_batch;     // the largest batch the scratch holds
    size_t   scratch_bytes;     // bytes allocated at scratch
    struct nnrt_pool *pool;     // worker threads (threads.c), created on first use; NULL: none
    nnrt_speeds speeds[NNRT_SPEED_PRODUCTS];   // gemm.c
    uint64_t    speed_uses;                    // products on several threads so far
};

// Generic implementations behind every model's API (runtime/model.c). Bad arguments never
// crash: with a NULL model or data pointer, a NULL y when the model has a target, batch 0, or
// no memory for a larger scratch arena, train_step/loss/grad return NAN and predict/apply do
// nothing (the model unchanged). set_threads takes n < 1 as 1.
NNRT_HIDDEN void  *nnrt_create(const nnrt_desc *d, uint64_t seed);
NNRT_HIDDEN void   nnrt_destroy(void *m);
NNRT_HIDDEN float  nnrt_train_step(void *m, const float *x, const float *y, size_t batch);
NNRT_HIDDEN float  nnrt_loss(void *m, const float *x, const float *y, size_t batch);
NNRT_HIDDEN void   nnrt_predict(void *m, const float *x, float *out, size_t batch);
NNRT_HIDDEN float  nnrt_grad(void *m, const float *x, const float *y, size_t batch, float *grad);
NNRT_HIDDEN void   nnrt_apply(void *m, const float *grad);
NNRT_HIDDEN float *nnrt_params(void *m);
NNRT_HIDDEN void   nnrt_set_lr(void *m, float lr);
NNRT_HIDDEN void   nnrt_set_threads(void *m, int n);
NNRT_HIDDEN int    nnrt_save(const void *m, const char *path);   // runtime/checkpoint.c
NNRT_HIDDEN int    nnrt_load(void *m, const char *path);
NNRT_HIDDEN const char *nnrt_strerror(int code);

// Deterministic initialisation (runtime/init.c): same seed, same floats on every machine.
NNRT_HIDDEN void nnrt_init_params(const nnrt_desc *d, float *params, uint64_t seed);

// Allocation (runtime/alloc.c): every allocation goes through here so tests can fail it.
NNRT_HIDDEN void *nnrt_malloc(size_t size);
NNRT_HIDDEN void *nnrt_aligned_alloc(size_t size);   // 64-aligned, zeroed
NNRT_HIDDEN void  nnrt_free(void *p);
NNRT_HIDDEN void *nnrt_realloc(void *p, size_t size);  // on failure NULL, p still valid
// Test hooks: make the n-th allocation from now fail (n <= 0: never), and count the
// allocations not yet freed.
NNRT_HIDDEN void    nnrt_alloc_fail_at(int64_t n);
NNRT_HIDDEN int64_t nnrt_alloc_live(void);

// Checkpoints (runtime/checkpoint.c). The detail of the last failed save or load on this
// thread ("tensor 'h1.W' has shape [128,784] in the checkpoint, [256,784] in the model"),
// or "" after a success. Never NULL.
NNRT_HIDDEN const char *nnrt_last_error(void);
// nnrt_load from a checkpoint already in memory (the fuzz target uses it).
NNRT_HIDDEN int nnrt_load_buffer(void *m, const void *buf, size_t size);

// Threads (runtime/threads.c): runs fn(ctx, begin, end) over [0, n) split into m->threads
// contiguous chunks, chunk k = [n*k/T, n*(k+1)/T); the split depends only on n and T, never
// on timing. Returns when every chunk is done. Inline when m->threads == 1. Not reentrant:
// fn must not call nnrt_parallel_for on the same model.
NNRT_HIDDEN void nnrt_parallel_for(nnrt_model *m, void (*fn)(void *ctx, int64_t begin, int64_t end),
                                   void *ctx, int64_t n);
NNRT_HIDDEN void nnrt_pool_destroy(nnrt_model *m);   // joins the workers; m->pool = NULL
NNRT_HIDDEN int64_t nnrt_clock_ns(void);   // a monotonic clock, in nanoseconds
#ifdef NNRT_TRACE
// Built with -DNNRT_TRACE: a log of the parallel regions and products (runtime/threads.c).
NNRT_HIDDEN void nnrt_trace(void *fn, int64_t start, int64_t own, int64_t end);
NNRT_HIDDEN void nnrt_trace_rename_last(void *fn);
#endif

// Matrix products (runtime/gemm.c): C[M,N] = alpha * op(A) op(B) + beta * C, row-major,
// op(X) = X^T when tX. Blocked and packed, AVX-512 micro-kernel where the CPU has it;
// one piece of C (rows, or blocks of columns) a thread, in proportion to the threads'
// speeds, and a thread done with its piece takes chunks of the others' (rt may be NULL:
// one thread). Results do not depend on the thread count.
NNRT_HIDDEN void nnrt_sgemm(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc);
// nnrt_sgemm, and then(ctx, begin, end) on C's flat indices [begin, end) (a stretch of one
// row, or whole rows when ldc = N) as soon as they are final, by the thread that computed
// them while they are still in its cache: a weight's update fused into the product of its
// gradient. The threads split C by rows. Each element of C is passed exactly once; then must
// touch nothing another call touches.
typedef void (*nnrt_range_fn)(void *ctx, int64_t begin, int64_t end);
NNRT_HIDDEN void nnrt_sgemm_then(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                                 float beta, float *C, int64_t ldc, nnrt_range_fn then, void *then_ctx);
// nnrt_sgemm_then with the threads splitting C as nnrt_sgemm does (by rows or by columns):
// then sees stretches of rows, or of one row, that one thread computed. For a layer's
// bias and activation, which need no whole rows.
NNRT_HIDDEN void nnrt_sgemm_each(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                                 float beta, float *C, int64_t ldc, nnrt_range_fn then, void *then_ctx);
// The threads' speeds nnrt_sgemm keeps for the product of this shape into C, found or
// started (all 0): for tests.
NNRT_HIDDEN float *nnrt_speeds_of(nnrt_model *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                                  const float *C);

#endif
