// linear_model.c: a hand-written model in the shape of what codegen emits, for the
// runtime's tests (library nnc_test_models, linked into the rt tests and fuzzers, never
// into libnnrt): y = W x + b with W[2,3] xavier, b[2] zeros, per-sample loss
// sum((y - t)²), mean over the batch, trained by Adam (β1 0.9, β2 0.999, eps 1e-8) with
// state tensors W.m, b.m, W.v, b.v.
#include <math.h>
#include <string.h>
#include "adam_ref.h"
#include "linear_model.h"

enum { IN = 3, OUT = 2, N_PARAMS = OUT * IN + OUT };

static float tl_grad(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                     float *g, void *scratch) {
    (void)rt;
    float *r = scratch;                    // residuals of one sample: scratch_per_sample bytes
    const float *w = p, *b = p + OUT * IN;
    float obj = 0;
    memset(g, 0, N_PARAMS * sizeof(float));
    for (int64_t s = 0; s < batch; s++) {
        for (int j = 0; j < OUT; j++) {
            float v = b[j];
            for (int i = 0; i < IN; i++) v += w[j * IN + i] * x[s * IN + i];
            r[j] = v - y[s * OUT + j];
            obj += r[j] * r[j];
        }
        for (int j = 0; j < OUT; j++) {
            float d = 2 * r[j] / (float)batch;
            for (int i = 0; i < IN; i++) g[j * IN + i] += d * x[s * IN + i];
            g[OUT * IN + j] += d;
        }
    }
    return obj / (float)batch;
}

static float tl_loss(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                     void *scratch) {
    float g[N_PARAMS];
    return tl_grad(rt, p, x, y, batch, g, scratch);
}

static void tl_predict(nnrt_model *rt, const float *p, const float *x, float *out, int64_t batch,
                       void *scratch) {
    (void)rt, (void)scratch;
    for (int64_t s = 0; s < batch; s++)
        for (int j = 0; j < OUT; j++) {
            float v = p[OUT * IN + j];
            for (int i = 0; i < IN; i++) v += p[j * IN + i] * x[s * IN + i];
            out[s * OUT + j] = v;
        }
}

static void tl_apply(nnrt_model *rt, float *p, float *state, const float *g, float lr, float step,
                     void *scratch) {
    (void)rt, (void)scratch;
    adam_ref(p, state, state + N_PARAMS, g, N_PARAMS, lr, step);
}

static const nnc_tensor_info tl_tensors[] = {
    { "W", 2, { OUT, IN }, 0 },
    { "b", 1, { OUT }, OUT * IN },
};
static const nnrt_init tl_inits[] = {
    { .kind = NNRT_INIT_XAVIER, .fan_in = IN, .fan_out = OUT },
    { .kind = NNRT_INIT_ZEROS },
};
static const nnc_tensor_info tl_states[] = {
    { "W.m", 2, { OUT, IN }, 0 },
    { "b.m", 1, { OUT }, OUT * IN },
    { "W.v", 2, { OUT, IN }, N_PARAMS },
    { "b.v", 1, { OUT }, N_PARAMS + OUT * IN },
};

static void *tl_create(uint64_t seed);

static const nnrt_desc tl_desc = {
    .info = {
        .abi_version = 1, .name = "linear",
        .input_size = IN, .target_size = OUT, .output_size = OUT, .param_count = N_PARAMS,
        .n_tensors = 2, .tensors = tl_tensors,
        .create = tl_create, .destroy = nnrt_destroy, .train_step = nnrt_train_step,
        .loss = nnrt_loss, .predict = nnrt_predict, .grad = nnrt_grad, .apply = nnrt_apply,
        .params = nnrt_params, .set_lr = nnrt_set_lr, .set_threads = nnrt_set_threads,
        .save = nnrt_save, .load = nnrt_load,
    },
    .inits = tl_inits,
    .state_count = 2 * N_PARAMS, .n_states = 4, .states = tl_states,
    .scratch_fixed = 64, .scratch_per_sample = OUT * sizeof(float),
    .default_lr = 0.01f, .default_threads = 0,
    .signature = "linear(W[2,3],b[2]);loss=sum((W@x+b-y)^2);adam(0.9,0.999,1e-8)",
    .grad = tl_grad, .loss = tl_loss, .predict = tl_predict, .apply = tl_apply,
};

static void *tl_create(uint64_t seed) { return nnrt_create(&tl_desc, seed); }

const nnrt_desc *nnrt_test_linear(void) { return &tl_desc; }
