// model.c: the generic implementations behind every compiled model's API (ABI.md §2). The
// generated wrappers (fashion_train_step, ...) pass their instance here as `void *`; the
// model's shapes and kernels come from its nnrt_desc.
//
// Invariants: params, state and grad are allocated at create and never move; the scratch
// arena only grows, when a larger batch than any before arrives, so a train_step in steady
// state allocates nothing. Bad arguments (NULL pointers, batch 0) never crash: the float
// entry points return NAN, the void ones do nothing. Nothing here prints or aborts.
#include <math.h>
#include <string.h>
#include "nnrt.h"

void *nnrt_create(const nnrt_desc *d, uint64_t seed) {
    if (!d) return NULL;
    size_t n_params = d->info.param_count, n_state = d->state_count;
    if (n_params > SIZE_MAX / sizeof(float) || n_state > SIZE_MAX / sizeof(float)) return NULL;
    nnrt_model *m = nnrt_malloc(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->desc = d;
    m->params = nnrt_aligned_alloc(n_params * sizeof(float));
    m->state = nnrt_aligned_alloc(n_state * sizeof(float));   // zeroed: m = v = buf = 0
    m->grad = nnrt_aligned_alloc(n_params * sizeof(float));
    if (!m->params || !m->state || !m->grad) {
        nnrt_destroy(m);
        return NULL;
    }
    nnrt_init_params(d, m->params, seed);
    m->lr = d->default_lr;
    m->step = 0;
    m->threads = d->default_threads > 0 ? d->default_threads : 1;
    return m;
}

void nnrt_destroy(void *mv) {
    nnrt_model *m = mv;
    if (!m) return;
    nnrt_pool_destroy(m);
    nnrt_free(m->params);
    nnrt_free(m->state);
    nnrt_free(m->grad);
    nnrt_free(m->scratch);
    nnrt_free(m);
}

// Makes the scratch arena hold `batch` samples; false if out of memory (the old arena stays).
static bool ensure_scratch(nnrt_model *m, size_t batch) {
    if (m->scratch && batch <= m->scratch_batch) return true;
    const nnrt_desc *d = m->desc;
    size_t per = d->scratch_per_sample, bytes;
    if (per && batch > (SIZE_MAX - d->scratch_fixed - 64) / per) return false;
    bytes = d->scratch_fixed + batch * per;
    void *p = nnrt_aligned_alloc(bytes);   // rounds up to 64
    if (!p) return false;
    nnrt_free(m->scratch);
    m->scratch = p;
    m->scratch_batch = batch;
    m->scratch_bytes = bytes;
    return true;
}

// The checks shared by train_step, loss and grad: a model, inputs, targets when the model has
// them, a batch that fits int64 and is not 0, and a scratch arena for it.
static bool batch_ok(nnrt_model *m, const float *x, const float *y, size_t batch) {
    if (!m || !x || batch == 0 || batch > (size_t)INT64_MAX) return false;
    if (!y && m->desc->info.target_size > 0) return false;
    return ensure_scratch(m, batch);
}

float nnrt_train_step(void *mv, const float *x, const float *y, size_t batch) {
    nnrt_model *m = mv;
    if (!batch_ok(m, x, y, batch)) return NAN;
    const nnrt_desc *d = m->desc;
    if (d->train) {   // one kernel; it checks the objective before writing anything
        float objective = d->train(m, m->params, m->state, x, y, (int64_t)batch, m->lr,
                                   (float)(m->step + 1), m->scratch);
        if (isfinite(objective))
            m->step++;
        return objective;
    }
    float objective = d->grad(m, m->params, x, y, (int64_t)batch, m->grad, m->scratch);
    if (!isfinite(objective)) return objective;   // LANGUAGE.md §7: the model stays unchanged
    m->step++;
    d->apply(m, m->params, m->state, m->grad, m->lr, (float)m->step, m->scratch);
    return objective;
}

float nnrt_loss(void *mv, const float *x, const float *y, size_t batch) {
    nnrt_model *m = mv;
    if (!batch_ok(m, x, y, batch)) return NAN;
    if (!m->desc->loss)   // the grad kernel stops at the objective when it has no gradient to write
        return m->desc->grad(m, m->params, x, y, (int64_t)batch, NULL, m->scratch);
    return m->desc->loss(m, m->params, x, y, (int64_t)batch, m->scratch);
}

void nnrt_predict(void *mv, const float *x, float *out, size_t batch) {
    nnrt_model *m = mv;
    if (!m || !x || !out || batch == 0 || batch > (size_t)INT64_MAX) return;
    if (!ensure_scratch(m, batch)) return;
    m->desc->predict(m, m->params, x, out, (int64_t)batch, m->scratch);
}

float nnrt_grad(void *mv, const float *x, const float *y, size_t batch, float *grad) {
    nnrt_model *m = mv;
    if (!grad || !batch_ok(m, x, y, batch)) return NAN;
    return m->desc->grad(m, m->params, x, y, (int64_t)batch, grad, m->scratch);
}

void nnrt_apply(void *mv, const float *grad) {
    nnrt_model *m = mv;
    if (!m || !grad) return;
    if (!ensure_scratch(m, m->scratch_batch)) return;   // batch 0 if none yet: scratch_fixed
    m->step++;
    m->desc->apply(m, m->params, m->state, grad, m->lr, (float)m->step, m->scratch);
}

float *nnrt_params(void *mv) {
    nnrt_model *m = mv;
    return m ? m->params : NULL;
}

void nnrt_set_lr(void *mv, float lr) {
    nnrt_model *m = mv;
    if (m) m->lr = lr;
}

void nnrt_set_threads(void *mv, int n) {
    nnrt_model *m = mv;
    if (!m) return;
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    if (n != m->threads) nnrt_pool_destroy(m);   // the next parallel_for starts n - 1 workers
    m->threads = n;
}

// One fixed line per code (SQLite's sqlite3ErrStr).
const char *nnrt_strerror(int code) {
    static const char *const msg[] = {
        [NNC_OK] = "not an error",
        [NNC_EIO] = "cannot open, read or write the file",
        [NNC_EFORMAT] = "not a valid checkpoint (bad header, truncated or wrong dtype)",
        [NNC_EMISMATCH] = "the checkpoint belongs to another model (names, shapes or signature differ)",
        [NNC_ENOMEM] = "out of memory",
        [NNC_EINVAL] = "bad argument",
    };
    if (code < 0 || (size_t)code >= sizeof msg / sizeof msg[0] || !msg[code]) return "unknown error";
    return msg[code];
}
