// fake_model.c: hand-written models in the shape of what codegen emits (an nnrt_desc with
// kernels, linked with libnnrt, exporting nnc_model_entry), so that `nnc train` can be
// tested without the compiler's backend. Built as a shared library by the e2e tests:
//
//   cc -shared -fPIC -fvisibility=hidden -I runtime -I include tests/support/fake_model.c
//      libnnrt.a -lcjson -lz -lm -lpthread -o fake.so                 # the classifier
//   ... -DFAKE_CURVE ... -o curve.so                                   # the 1-D regression
//
// The classifier, model "fake": softmax regression, x[4] -> 3 classes (FAKE_IN, FAKE_OUT), per-sample loss
// softmax_cross_entropy(W x + b, y), mean over the batch, sgd(lr = 0.1, momentum = 0.9).
// The curve, model "curve" (LANGUAGE.md §8, universal approximation): x[1] -> 16 sigmoids
// -> 1, loss (o - y)^2, adam(lr = 0.01).
// In the environment, FAKE_NAN_AT_STEP=N makes the objective of update N not finite, and
// FAKE_STEP_DELAY_US=U makes every gradient take U more microseconds (a slow model).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "adam_ref.h"
#include "nnrt.h"

// Sleeps if asked; returns FAKE_NAN_AT_STEP (0: never).
static int64_t env_hooks(void) {
    const char *s = getenv("FAKE_NAN_AT_STEP");
    const char *d = getenv("FAKE_STEP_DELAY_US");
    if (d) {
        long us = strtol(d, NULL, 10);
        struct timespec t = { us / 1000000, us % 1000000 * 1000 };
        nanosleep(&t, NULL);
    }
    return s ? strtoll(s, NULL, 10) : 0;
}

#ifndef FAKE_CURVE
#ifndef FAKE_IN
#define FAKE_IN 4      // -DFAKE_IN=784 -DFAKE_OUT=10: softmax regression for Fashion-MNIST
#endif
#ifndef FAKE_OUT
#define FAKE_OUT 3
#endif
enum { IN = FAKE_IN, OUT = FAKE_OUT, N_PARAMS = OUT * IN + OUT };

// Objective and (when g) gradient of softmax cross-entropy over the batch.
static float fake_objective(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                            float *g, void *scratch) {
    if (rt && g && env_hooks() == rt->step + 1) return NAN;
    float *z = scratch;
    const float *w = p, *b = p + OUT * IN;
    double obj = 0;
    if (g) memset(g, 0, N_PARAMS * sizeof(float));
    for (int64_t s = 0; s < batch; s++) {
        float zmax = -INFINITY, sum = 0;
        for (int j = 0; j < OUT; j++) {
            float v = b[j];
            for (int i = 0; i < IN; i++) v += w[j * IN + i] * x[s * IN + i];
            z[j] = v;
            if (v > zmax) zmax = v;
        }
        for (int j = 0; j < OUT; j++) sum += expf(z[j] - zmax);
        float lse = zmax + logf(sum);
        for (int j = 0; j < OUT; j++) obj -= y[s * OUT + j] * (z[j] - lse);
        if (!g) continue;
        for (int j = 0; j < OUT; j++) {
            float d = (expf(z[j] - lse) - y[s * OUT + j]) / (float)batch;
            for (int i = 0; i < IN; i++) g[j * IN + i] += d * x[s * IN + i];
            g[OUT * IN + j] += d;
        }
    }
    return (float)(obj / (double)batch);
}

static float fake_grad(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch, float *g,
                       void *scratch) {
    return fake_objective(rt, p, x, y, batch, g, scratch);
}

static float fake_loss(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                       void *scratch) {
    return fake_objective(rt, p, x, y, batch, NULL, scratch);
}

static void fake_predict(nnrt_model *rt, const float *p, const float *x, float *out, int64_t batch,
                         void *scratch) {
    (void)rt, (void)scratch;
    for (int64_t s = 0; s < batch; s++) {
        float *z = out + s * OUT, zmax = -INFINITY, sum = 0;
        for (int j = 0; j < OUT; j++) {
            float v = p[OUT * IN + j];
            for (int i = 0; i < IN; i++) v += p[j * IN + i] * x[s * IN + i];
            z[j] = v;
            if (v > zmax) zmax = v;
        }
        for (int j = 0; j < OUT; j++) sum += (z[j] = expf(z[j] - zmax));
        for (int j = 0; j < OUT; j++) z[j] /= sum;
    }
}

// sgd with momentum 0.9 (LANGUAGE.md §7): buf = g on the first step, then 0.9 buf + g.
static void fake_apply(nnrt_model *rt, float *p, float *state, const float *g, float lr, float step,
                       void *scratch) {
    (void)rt, (void)scratch;
    for (int k = 0; k < N_PARAMS; k++) {
        state[k] = step == 1 ? g[k] : 0.9f * state[k] + g[k];
        p[k] -= lr * state[k];
    }
}

static const nnc_tensor_info fake_tensors[] = {
    { "W", 2, { OUT, IN }, 0 },
    { "b", 1, { OUT }, OUT * IN },
};
static const nnrt_init fake_inits[] = {
    { .kind = NNRT_INIT_XAVIER, .fan_in = IN, .fan_out = OUT },
    { .kind = NNRT_INIT_ZEROS },
};
static const nnc_tensor_info fake_states[] = {
    { "W.buf", 2, { OUT, IN }, 0 },
    { "b.buf", 1, { OUT }, OUT * IN },
};
#define FAKE_NAME "fake"
#define FAKE_STR2(x) #x
#define FAKE_STR(x) FAKE_STR2(x)
#define FAKE_SIGNATURE "fake(W[" FAKE_STR(FAKE_OUT) "," FAKE_STR(FAKE_IN) "],b[" FAKE_STR(FAKE_OUT) "]);" \
                       "softmax_cross_entropy;sgd(momentum=0.9)"
#define FAKE_LR 0.1f
#define FAKE_SCRATCH (OUT * sizeof(float))
#define FAKE_N_TENSORS 2
#define FAKE_N_STATES 2
#define FAKE_STATE_COUNT N_PARAMS

#else // FAKE_CURVE
enum { H = 16, N_PARAMS = 3 * H + 1 };   // h.W[16,1], h.b[16], o.W[1,16], o.b[1]
#define IN 1
#define OUT 1

static float curve_objective(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                             float *g, void *scratch) {
    if (rt && g && env_hooks() == rt->step + 1) return NAN;
    const float *hw = p, *hb = p + H, *ow = p + 2 * H, *ob = p + 3 * H;
    float *a = scratch;
    double obj = 0;
    if (g) memset(g, 0, N_PARAMS * sizeof(float));
    for (int64_t s = 0; s < batch; s++) {
        float o = ob[0];
        for (int j = 0; j < H; j++) {
            a[j] = 1 / (1 + expf(-(hw[j] * x[s] + hb[j])));
            o += ow[j] * a[j];
        }
        float r = o - y[s];
        obj += r * r;
        if (!g) continue;
        float d = 2 * r / (float)batch;
        g[3 * H] += d;
        for (int j = 0; j < H; j++) {
            g[2 * H + j] += d * a[j];
            float dz = d * ow[j] * a[j] * (1 - a[j]);
            g[j] += dz * x[s];
            g[H + j] += dz;
        }
    }
    return (float)(obj / (double)batch);
}

static float fake_grad(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch, float *g,
                       void *scratch) {
    return curve_objective(rt, p, x, y, batch, g, scratch);
}

static float fake_loss(nnrt_model *rt, const float *p, const float *x, const float *y, int64_t batch,
                       void *scratch) {
    return curve_objective(rt, p, x, y, batch, NULL, scratch);
}

static void fake_predict(nnrt_model *rt, const float *p, const float *x, float *out, int64_t batch,
                         void *scratch) {
    (void)rt, (void)scratch;
    for (int64_t s = 0; s < batch; s++) {
        float o = p[3 * H];
        for (int j = 0; j < H; j++) o += p[2 * H + j] / (1 + expf(-(p[j] * x[s] + p[H + j])));
        out[s] = o;
    }
}

// adam(0.9, 0.999, 1e-8)
static void fake_apply(nnrt_model *rt, float *p, float *state, const float *g, float lr, float step,
                       void *scratch) {
    (void)rt, (void)scratch;
    adam_ref(p, state, state + N_PARAMS, g, N_PARAMS, lr, step);
}

static const nnc_tensor_info fake_tensors[] = {
    { "h.W", 2, { H, 1 }, 0 },
    { "h.b", 1, { H }, H },
    { "o.W", 2, { 1, H }, 2 * H },
    { "o.b", 1, { 1 }, 3 * H },
};
static const nnrt_init fake_inits[] = {
    { .kind = NNRT_INIT_NORMAL, .a = 0, .b = 2 },
    { .kind = NNRT_INIT_UNIFORM, .a = -3, .b = 3 },
    { .kind = NNRT_INIT_XAVIER, .fan_in = H, .fan_out = 1 },
    { .kind = NNRT_INIT_ZEROS },
};
static const nnc_tensor_info fake_states[] = {
    { "h.W.m", 2, { H, 1 }, 0 },         { "h.b.m", 1, { H }, H },
    { "o.W.m", 2, { 1, H }, 2 * H },     { "o.b.m", 1, { 1 }, 3 * H },
    { "h.W.v", 2, { H, 1 }, N_PARAMS },  { "h.b.v", 1, { H }, N_PARAMS + H },
    { "o.W.v", 2, { 1, H }, N_PARAMS + 2 * H }, { "o.b.v", 1, { 1 }, N_PARAMS + 3 * H },
};
#define FAKE_NAME "curve"
#define FAKE_SIGNATURE "curve(h.W[16,1],h.b[16],o.W[1,16],o.b[1]);mse;adam(0.9,0.999,1e-8)"
#define FAKE_LR 0.01f
#define FAKE_SCRATCH (H * sizeof(float))
#define FAKE_N_TENSORS 4
#define FAKE_N_STATES 8
#define FAKE_STATE_COUNT (2 * N_PARAMS)
#endif

static void *fake_create(uint64_t seed);

static const nnrt_desc fake_desc = {
    .info = {
        .abi_version = 1, .name = FAKE_NAME,
        .input_size = IN, .target_size = OUT, .output_size = OUT, .param_count = N_PARAMS,
        .n_tensors = FAKE_N_TENSORS, .tensors = fake_tensors,
        .create = fake_create, .destroy = nnrt_destroy, .train_step = nnrt_train_step,
        .loss = nnrt_loss, .predict = nnrt_predict, .grad = nnrt_grad, .apply = nnrt_apply,
        .params = nnrt_params, .set_lr = nnrt_set_lr, .set_threads = nnrt_set_threads,
        .save = nnrt_save, .load = nnrt_load,
    },
    .inits = fake_inits,
    .state_count = FAKE_STATE_COUNT, .n_states = FAKE_N_STATES, .states = fake_states,
    .scratch_fixed = 64, .scratch_per_sample = FAKE_SCRATCH,
    .default_lr = FAKE_LR, .default_threads = 0,
    .signature = FAKE_SIGNATURE,
    .grad = fake_grad, .loss = fake_loss, .predict = fake_predict, .apply = fake_apply,
};

static void *fake_create(uint64_t seed) { return nnrt_create(&fake_desc, seed); }

NNRT_API const nnc_model_info *nnc_model_entry(void) { return &fake_desc.info; }
