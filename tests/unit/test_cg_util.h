// test_cg_util.h: helpers of the codegen tests (test_cg_*.c). A model is
// compiled from .nn text (nn_frontend + ir_build_train_step + cg_compile) into
// a shared library in a temporary directory, loaded with dlopen, and its
// kernels are called directly through the nnrt_desc behind nnc_model_entry().
// cgt_compare() checks them against the double-precision interpreter.
#ifndef TEST_CG_UTIL_H
#define TEST_CG_UTIL_H

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autodiff.h"
#include "cg.h"
#include "nnrt.h"
#include "sema.h"

static int cgt_opt_level = 2;          // -O level of the next build
static float cgt_param_scale = 0.5f;   // random parameters in [-scale, scale]
static double cgt_tol = 1e-4;          // relative to each tensor's largest entry
static const char *cgt_target_cpu;     // --target-cpu of the next build (NULL: the host)
static bool cgt_one_process;           // the next build's code generated in one process (cg_fork.c)

typedef struct CgT {
    NnCtx            c;
    Model           *m;
    void            *dl;
    const nnrt_desc *d;
    char             dir[64];
    char             so[128];
} CgT;

// Compiles `src` with `emit` (EMIT_SO: also loads it). Fails the test on errors.
static __attribute__((unused)) void cgt_build_as(CgT *t, const char *src, EmitKind emit, const char *out_name) {
    memset(t, 0, sizeof *t);
    nn_ctx_setup(&t->c, stderr);
    snprintf(t->dir, sizeof t->dir, "/tmp/nnc-cgtest-XXXXXX");
    cr_assert(mkdtemp(t->dir));
    snprintf(t->so, sizeof t->so, "%s/%s", t->dir, out_name);
    t->c.opt.emit = emit;
    t->c.opt.output = t->so;
    t->c.opt.opt_level = cgt_opt_level;
    t->c.opt.target_cpu = cgt_target_cpu;
    t->c.opt.one_process = cgt_one_process;
    t->c.opt.runtime_lib = NNC_BINARY_DIR "/libnnrt.a";
    int f = nn_add_source(&t->c, "t.nn", src, strlen(src));
    cr_assert_geq(f, 0);
    if (setjmp(t->c.fatal))
        cr_assert_fail("fatal error while compiling");
    t->m = nn_frontend(&t->c, f);
    cr_assert(t->m, "the model has errors");
    cr_assert(ir_build_train_step(&t->c, t->m));
    cr_assert_eq(cg_compile(&t->c, t->m), 0);
    if (emit != EMIT_SO)
        return;
    t->dl = dlopen(t->so, RTLD_NOW | RTLD_LOCAL);
    cr_assert(t->dl, "dlopen: %s", dlerror());
    const nnc_model_info *(*entry)(void) = (const nnc_model_info *(*)(void))dlsym(t->dl, "nnc_model_entry");
    cr_assert(entry);
    t->d = (const nnrt_desc *)entry();
}

static __attribute__((unused)) void cgt_build(CgT *t, const char *src) { cgt_build_as(t, src, EMIT_SO, "m.so"); }

static __attribute__((unused)) void cgt_free(CgT *t) {
    if (t->dl)
        dlclose(t->dl);
    char cmd[128];
    if (getenv("CGT_KEEP")) {   // keep the outputs for inspection
        fprintf(stderr, "kept %s\n", t->dir);
        nn_ctx_free(&t->c);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", t->dir);
    nn_ctx_free(&t->c);
}

static uint64_t cgt_rng = 1;
static __attribute__((unused)) float cgt_uniform(float lo, float hi) {   // splitmix64: the same numbers everywhere
    uint64_t z = (cgt_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 11) / 9007199254740992.0);
}

static __attribute__((unused)) float *cgt_random(size_t n, float lo, float hi) {
    float *v = calloc(n ? n : 1, sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = cgt_uniform(lo, hi);
    return v;
}

static __attribute__((unused)) double *cgt_double(const float *v, size_t n) {
    double *d = calloc(n ? n : 1, sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static __attribute__((unused)) void *cgt_scratch(const nnrt_desc *d, size_t batch) {
    size_t bytes = d->scratch_fixed + batch * d->scratch_per_sample + 64;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    memset(p, 0xff, (bytes + 63) / 64 * 64);   // NaN garbage: reading before writing shows
    return p;
}

// |got - want| <= tol * scale elementwise, scale = max(|want|) over the tensor (at least 1e-3).
static __attribute__((unused)) void cgt_check_tensor(const char *what, const float *got, const double *want, size_t n, double tol) {
    double scale = 1e-3;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol * scale, "%s[%zu]: got %.9g, want %.9g (scale %g)", what, i,
                  (double)got[i], want[i], scale);
}

// grad, loss, predict and apply of the compiled model against ir_interp, on
// random parameters, inputs and targets (targets in [0,1], inputs in [lo,hi]).
static __attribute__((unused)) void cgt_compare(CgT *t, size_t batch, float lo, float hi) {
    const Model *m = t->m;
    const nnrt_desc *d = t->d;
    size_t in = d->info.input_size, tg = d->info.target_size, out = d->info.output_size, np = d->info.param_count;
    float *params = cgt_random(np, -cgt_param_scale, cgt_param_scale);
    float *x = cgt_random(batch * in, lo, hi);
    float *y = cgt_random(batch * tg, 0.0f, 1.0f);
    float *state = cgt_random(d->state_count, 0.0f, 0.1f);   // v of Adam must stay >= 0
    float *grad = calloc(np, sizeof(float));
    float *o = calloc(batch * out + 1, sizeof(float));
    void *scratch = cgt_scratch(d, batch);
    Arena a = { 0 };
    InterpArgs args = { .batch = batch, .x = cgt_double(x, batch * in), .y = tg ? cgt_double(y, batch * tg) : NULL,
                        .params = cgt_double(params, np), .state = cgt_double(state, d->state_count),
                        .lr = 0.01, .step = 3 };
    // The gradient the interpreter computes feeds GRAD_IN of apply: use our float one.
    float objective = d->grad(NULL, params, x, y, (int64_t)batch, grad, scratch);
    args.grad_in = cgt_double(grad, np);
    double **v = ir_interp(m, &args, &a);
    double want = v[m->objective][0];
    cr_assert(fabs(objective - want) <= cgt_tol * fmax(1.0, fabs(want)), "objective %.9g, want %.9g", objective, want);
    for (uint32_t i = 0; i < m->n_params; i++) {
        const IrParam *p = &m->params[i];
        cgt_check_tensor(p->name, grad + p->offset, v[m->grads[i]], (size_t)ir_numel(p->shape), cgt_tol);
    }
    // loss: its own kernel, or grad without a gradient (nnrt_loss)
    float l = d->loss ? d->loss(NULL, params, x, y, (int64_t)batch, scratch)
                      : d->grad(NULL, params, x, y, (int64_t)batch, NULL, scratch);
    cr_assert(fabs(l - want) <= cgt_tol * fmax(1.0, fabs(want)), "loss %.9g, want %.9g", l, want);
    d->predict(NULL, params, x, o, (int64_t)batch, scratch);
    const Node *on = &m->g->nodes[m->output];
    double *wo = calloc(batch * out + 1, sizeof(double));
    for (size_t b = 0; b < batch; b++)
        for (size_t j = 0; j < out; j++)
            wo[b * out + j] = v[m->output][(on->flags & IR_F_BATCH ? b * out : 0) + j];
    cgt_check_tensor("output", o, wo, batch * out, cgt_tol);
    // apply: every store's value as the interpreter computes it from the same inputs.
    d->apply(NULL, params, state, grad, 0.01f, 3.0f, scratch);
    for (uint32_t s = 0; s < m->n_stores; s++) {
        const IrStore *st = &m->stores[s];
        size_t off = st->to_state ? m->states[st->index].offset : m->params[st->index].offset;
        Shape sh = st->to_state ? m->states[st->index].shape : m->params[st->index].shape;
        cgt_check_tensor(st->to_state ? m->states[st->index].name : m->params[st->index].name,
                         (st->to_state ? state : params) + off, v[st->value], (size_t)ir_numel(sh), cgt_tol);
    }
    nn_arena_free(&a);
    free(params), free(x), free(y), free(state), free(grad), free(o), free(scratch), free(wo);
    free((void *)args.x), free((void *)args.y), free((void *)args.params), free((void *)args.state);
    free((void *)args.grad_in);
}

static __attribute__((unused)) void cgt_check_close(const char *what, const float *a, const float *b, size_t n, int step) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(a[i] - b[i]) <= 2e-6f * fmaxf(1.0f, fabsf(b[i])), "step %d %s[%zu]: %.9g vs %.9g", step, what,
                  i, (double)a[i], (double)b[i]);
}

// train_step (the fused train kernel) equals grad then apply (ABI.md): three steps of
// train_step on one instance, grad + apply on its twin, at `threads` threads.
static __attribute__((unused)) void cgt_same_as_grad_then_apply(CgT *t, size_t batch, int threads) {
    const nnc_model_info *info = &t->d->info;
    nnrt_model *a = info->create(11), *b = info->create(11);
    cr_assert(a && b);
    info->set_threads(a, threads);
    info->set_threads(b, threads);
    size_t np = info->param_count;
    float *x = cgt_random(batch * info->input_size, -1, 1), *y = cgt_random(batch * info->target_size, 0, 1);
    float *g = calloc(np, sizeof(float));
    for (int step = 0; step < 3; step++) {
        float la = info->train_step(a, x, y, batch);
        float lb = info->grad(b, x, y, batch, g);
        info->apply(b, g);
        cr_assert(fabsf(la - lb) <= 1e-6f * fmaxf(1.0f, fabsf(lb)), "batch %zu step %d: loss %.9g vs %.9g", batch,
                  step, (double)la, (double)lb);
        cgt_check_close("param", a->params, b->params, np, step);
        // loss() runs the grad kernel without a gradient: the same objective as grad's
        // on the same parameters (b has just been updated: compare with a fresh grad).
        float lg = info->grad(b, x, y, batch, g), ll = info->loss(b, x, y, batch);
        cr_assert_eq(ll, lg, "loss %.9g vs grad's objective %.9g", (double)ll, (double)lg);
        cgt_check_close("state", a->state, b->state, t->d->state_count, step);
        cr_assert_eq(a->step, b->step);
    }
    info->destroy(a);
    info->destroy(b);
    free(x), free(y), free(g);
}


#endif
