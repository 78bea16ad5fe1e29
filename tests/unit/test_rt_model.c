// The generic model API of libnnrt (runtime/model.c) driven through the hand-written linear
// model of runtime/testmodel.c.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "nnrt.h"
#include "linear_model.h"

enum { B = 8 };

// A batch whose targets are t = A x + c for a fixed A, c.
static void make_batch(float *x, float *y, int n, int salt) {
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < 3; i++) x[s * 3 + i] = (float)((s * 7 + i * 3 + salt) % 11) / 5.0f - 1.0f;
        y[s * 2 + 0] = 0.5f * x[s * 3] - 1.0f * x[s * 3 + 1] + 0.25f * x[s * 3 + 2] + 0.1f;
        y[s * 2 + 1] = -0.3f * x[s * 3] + 0.8f * x[s * 3 + 2] - 0.2f;
    }
}

static nnrt_model *new_model(uint64_t seed) {
    nnrt_model *m = nnrt_create(nnrt_test_linear(), seed);
    cr_assert_not_null(m);
    return m;
}

Test(rt, create_initialises) {
    nnrt_model *m = new_model(42);
    const float *p = nnrt_params(m);
    float a = sqrtf(6.0f / 5.0f);               // xavier bound for fan_in 3, fan_out 2
    for (int k = 0; k < 6; k++) cr_assert(fabsf(p[k]) <= a && p[k] != 0.0f, "W[%d] = %g", k, p[k]);
    cr_assert_eq(p[6], 0.0f);
    cr_assert_eq(p[7], 0.0f);
    for (int k = 0; k < 16; k++) cr_assert_eq(m->state[k], 0.0f);
    cr_assert_eq(m->step, 0);
    cr_assert_float_eq(m->lr, 0.01f, 0);
    cr_assert_eq(m->threads, 1);
    nnrt_destroy(m);
}

Test(rt, same_seed_same_params) {
    nnrt_model *a = new_model(7), *b = new_model(7), *c = new_model(8);
    cr_assert_eq(memcmp(a->params, b->params, 8 * sizeof(float)), 0);
    cr_assert_neq(memcmp(a->params, c->params, 6 * sizeof(float)), 0);
    nnrt_destroy(a), nnrt_destroy(b), nnrt_destroy(c);
}

Test(rt, train_step_reduces_loss) {
    nnrt_model *m = new_model(1);
    float x[B * 3], y[B * 2];
    make_batch(x, y, B, 0);
    nnrt_set_lr(m, 0.05f);
    float first = nnrt_loss(m, x, y, B), last = first;
    for (int i = 0; i < 300; i++) last = nnrt_train_step(m, x, y, B);
    cr_assert_eq(m->step, 300);
    cr_assert(last < first * 0.01f, "loss %g -> %g", first, last);
    nnrt_destroy(m);
}

Test(rt, train_step_returns_objective_before_update) {
    nnrt_model *m = new_model(3);
    float x[B * 3], y[B * 2];
    make_batch(x, y, B, 1);
    float before = nnrt_loss(m, x, y, B);
    cr_assert_eq(nnrt_train_step(m, x, y, B), before);
    cr_assert_neq(nnrt_loss(m, x, y, B), before);
    nnrt_destroy(m);
}

Test(rt, train_step_equals_grad_then_apply) {
    nnrt_model *a = new_model(5), *b = new_model(5);
    float x[B * 3], y[B * 2], g[8];
    for (int it = 0; it < 5; it++) {
        make_batch(x, y, B, it);
        float la = nnrt_train_step(a, x, y, B);
        float lb = nnrt_grad(b, x, y, B, g);
        nnrt_apply(b, g);
        cr_assert_eq(la, lb);
    }
    cr_assert_eq(memcmp(a->params, b->params, 8 * sizeof(float)), 0);
    cr_assert_eq(memcmp(a->state, b->state, 16 * sizeof(float)), 0);
    cr_assert_eq(a->step, 5);
    cr_assert_eq(b->step, 5);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt, grad_does_not_update) {
    nnrt_model *m = new_model(5);
    float x[B * 3], y[B * 2], g[8], before[8];
    make_batch(x, y, B, 0);
    memcpy(before, m->params, sizeof before);
    float l = nnrt_grad(m, x, y, B, g);
    cr_assert(isfinite(l));
    cr_assert_eq(memcmp(before, m->params, sizeof before), 0);
    cr_assert_eq(m->step, 0);
    nnrt_destroy(m);
}

Test(rt, non_finite_objective_leaves_model_unchanged) {
    nnrt_model *m = new_model(9);
    float x[B * 3], y[B * 2], p[8], st[16];
    make_batch(x, y, B, 0);
    nnrt_train_step(m, x, y, B);
    memcpy(p, m->params, sizeof p);
    memcpy(st, m->state, sizeof st);
    x[4] = INFINITY;
    float l = nnrt_train_step(m, x, y, B);
    cr_assert(!isfinite(l));
    cr_assert_eq(memcmp(p, m->params, sizeof p), 0);
    cr_assert_eq(memcmp(st, m->state, sizeof st), 0);
    cr_assert_eq(m->step, 1);
    nnrt_destroy(m);
}

Test(rt, predict_computes_output) {
    nnrt_model *m = new_model(2);
    float *p = nnrt_params(m);
    for (int k = 0; k < 8; k++) p[k] = (float)(k + 1);    // W = [[1,2,3],[4,5,6]], b = [7,8]
    float x[3] = { 1, 0, -1 }, out[2];
    nnrt_predict(m, x, out, 1);
    cr_assert_eq(out[0], 1 - 3 + 7.0f);
    cr_assert_eq(out[1], 4 - 6 + 8.0f);
    nnrt_destroy(m);
}

Test(rt, bad_arguments_are_safe) {
    nnrt_model *m = new_model(2);
    float x[B * 3], y[B * 2], out[B * 2] = { 0 }, g[8];
    make_batch(x, y, B, 0);
    cr_assert(isnan(nnrt_train_step(m, x, y, 0)));
    cr_assert(isnan(nnrt_train_step(m, NULL, y, B)));
    cr_assert(isnan(nnrt_train_step(m, x, NULL, B)));     // the model has a target
    cr_assert(isnan(nnrt_train_step(NULL, x, y, B)));
    cr_assert(isnan(nnrt_loss(m, x, y, 0)));
    cr_assert(isnan(nnrt_grad(m, x, y, B, NULL)));
    nnrt_predict(m, x, NULL, B);
    nnrt_predict(m, x, out, 0);
    nnrt_predict(NULL, x, out, B);
    cr_assert_eq(out[0], 0.0f);
    nnrt_apply(m, NULL);
    nnrt_apply(NULL, g);
    cr_assert_eq(m->step, 0);
    cr_assert_null(nnrt_params(NULL));
    cr_assert_null(nnrt_create(NULL, 1));
    nnrt_set_lr(NULL, 1);
    nnrt_set_threads(NULL, 2);
    nnrt_destroy(NULL);
    nnrt_destroy(m);
}

Test(rt, scratch_grows_only_for_larger_batch) {
    nnrt_model *m = new_model(2);
    float x[64 * 3], y[64 * 2];
    make_batch(x, y, 64, 0);
    nnrt_train_step(m, x, y, 16);
    void *s16 = m->scratch;
    cr_assert_eq((uintptr_t)s16 % 64, 0);
    cr_assert_eq(m->scratch_batch, 16);
    int64_t live = nnrt_alloc_live();
    for (int i = 0; i < 10; i++) nnrt_train_step(m, x, y, 8 + i % 9);    // no larger batch
    cr_assert_eq(m->scratch, s16);
    cr_assert_eq(nnrt_alloc_live(), live);
    nnrt_train_step(m, x, y, 64);
    cr_assert_eq(m->scratch_batch, 64);
    cr_assert_geq(m->scratch_bytes, 64 + 64 * 2 * sizeof(float));
    cr_assert_eq(nnrt_alloc_live(), live);                 // the old arena was freed
    nnrt_destroy(m);
}

Test(rt, set_threads_validates) {
    nnrt_model *m = new_model(2);
    nnrt_set_threads(m, 0);
    cr_assert_eq(m->threads, 1);
    nnrt_set_threads(m, -5);
    cr_assert_eq(m->threads, 1);
    nnrt_set_threads(m, 4);
    cr_assert_eq(m->threads, 4);
    nnrt_destroy(m);
}

Test(rt, strerror_one_line_per_code) {
    cr_assert_str_eq(nnrt_strerror(NNC_OK), "not an error");
    cr_assert_str_eq(nnrt_strerror(NNC_EIO), "cannot open, read or write the file");
    cr_assert(strstr(nnrt_strerror(NNC_EFORMAT), "not a valid checkpoint"));
    cr_assert(strstr(nnrt_strerror(NNC_EMISMATCH), "another model"));
    cr_assert_str_eq(nnrt_strerror(NNC_ENOMEM), "out of memory");
    cr_assert_str_eq(nnrt_strerror(NNC_EINVAL), "bad argument");
    cr_assert_str_eq(nnrt_strerror(99), "unknown error");
    cr_assert_str_eq(nnrt_strerror(-1), "unknown error");
    for (int c = 0; c <= NNC_EINVAL; c++) cr_assert_null(strchr(nnrt_strerror(c), '\n'));
}

// Failure injection: every allocation of create fails in turn; each gives NULL, no leak.
Test(rt, create_fails_cleanly_at_every_allocation) {
    int64_t base = nnrt_alloc_live();
    int n_failed = 0;
    for (int k = 1; k < 50; k++) {
        nnrt_alloc_fail_at(k);
        nnrt_model *m = nnrt_create(nnrt_test_linear(), 1);
        nnrt_alloc_fail_at(0);
        if (m) {
            nnrt_destroy(m);
            break;
        }
        n_failed++;
        cr_assert_eq(nnrt_alloc_live(), base, "leak when allocation %d fails", k);
    }
    cr_assert_eq(n_failed, 4);                  // model, params, state, grad
    cr_assert_eq(nnrt_alloc_live(), base);
}

Test(rt, train_step_out_of_memory_leaves_model_unchanged) {
    nnrt_model *m = new_model(2);
    float x[B * 3], y[B * 2], p[8];
    make_batch(x, y, B, 0);
    memcpy(p, m->params, sizeof p);
    nnrt_alloc_fail_at(1);                      // the scratch arena
    cr_assert(isnan(nnrt_train_step(m, x, y, B)));
    nnrt_alloc_fail_at(0);
    cr_assert_eq(memcmp(p, m->params, sizeof p), 0);
    cr_assert_eq(m->step, 0);
    cr_assert(isfinite(nnrt_train_step(m, x, y, B)));
    nnrt_destroy(m);
}

Test(rt, model_info_drives_model) {
    const nnc_model_info *info = &nnrt_test_linear()->info;
    cr_assert_eq(info->abi_version, 1);
    cr_assert_eq(info->param_count, 8);
    void *m = info->create(11);
    cr_assert_not_null(m);
    float x[B * 3], y[B * 2];
    make_batch(x, y, B, 0);
    cr_assert(isfinite(info->train_step(m, x, y, B)));
    info->destroy(m);
}
