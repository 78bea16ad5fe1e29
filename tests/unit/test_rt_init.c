// Deterministic initialisers (runtime/init.c): golden values pin the generator, statistics
// check each distribution, and each tensor's values depend only on (seed, tensor index).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "nnrt.h"

enum { N = 20000 };

static float buf[4 * N];

// Initialises one tensor of n floats (at index `index` among tensors of n floats each).
static void init_one(nnrt_init in, int64_t n, uint64_t seed, int index, float *out) {
    nnc_tensor_info t[4];
    nnrt_init ins[4];
    for (int k = 0; k < 4; k++) {
        t[k] = (nnc_tensor_info){ "t", 1, { n }, (size_t)(k * n) };
        ins[k] = (nnrt_init){ .kind = NNRT_INIT_ZEROS };
    }
    ins[index] = in;
    nnrt_desc d = { .info = { .n_tensors = (size_t)index + 1, .tensors = t, .param_count = (size_t)((index + 1) * n) },
                    .inits = ins };
    nnrt_init_params(&d, buf, seed);
    memcpy(out, buf + index * n, (size_t)n * sizeof(float));
}

static void stats(const float *v, int n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *std = sqrt(s2 / (n - 1));
}

static float v[N];

Test(rt_init, golden_uniform) {
    init_one((nnrt_init){ .kind = NNRT_INIT_UNIFORM, .a = 0, .b = 1 }, 4, 42, 0, v);
    const float want[4] = { 0.596118867f, 0.160365388f, 0.16639781f, 0.0480257943f };
    for (int i = 0; i < 4; i++) cr_assert_eq(v[i], want[i], "v[%d] = %.9g", i, v[i]);
}

Test(rt_init, golden_normal) {
    init_one((nnrt_init){ .kind = NNRT_INIT_NORMAL, .a = 0, .b = 1 }, 4, 42, 0, v);
    const float want[4] = { 0.718919873f, 0.576062143f, 0.262475133f, 0.463787079f };
    for (int i = 0; i < 4; i++) cr_assert_eq(v[i], want[i], "v[%d] = %.9g", i, v[i]);
}

Test(rt_init, golden_second_tensor_and_seed) {
    init_one((nnrt_init){ .kind = NNRT_INIT_UNIFORM, .a = -1, .b = 1 }, 4, 12345, 1, v);
    const float want[4] = { -0.189619482f, -0.781266093f, 0.753638625f, 0.219678879f };
    for (int i = 0; i < 4; i++) cr_assert_eq(v[i], want[i], "v[%d] = %.9g", i, v[i]);
}

Test(rt_init, constants) {
    init_one((nnrt_init){ .kind = NNRT_INIT_ZEROS }, 100, 1, 0, v);
    for (int i = 0; i < 100; i++) cr_assert_eq(v[i], 0.0f);
    init_one((nnrt_init){ .kind = NNRT_INIT_ONES }, 100, 1, 0, v);
    for (int i = 0; i < 100; i++) cr_assert_eq(v[i], 1.0f);
    init_one((nnrt_init){ .kind = NNRT_INIT_CONSTANT, .a = -2.5 }, 100, 1, 0, v);
    for (int i = 0; i < 100; i++) cr_assert_eq(v[i], -2.5f);
}

Test(rt_init, uniform_statistics) {
    init_one((nnrt_init){ .kind = NNRT_INIT_UNIFORM, .a = -3, .b = 5 }, N, 7, 0, v);
    double mean, std, lo = 1e9, hi = -1e9;
    for (int i = 0; i < N; i++) lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    stats(v, N, &mean, &std);
    cr_assert(lo >= -3 && hi < 5, "range [%g, %g]", lo, hi);
    cr_assert(lo < -2.99 && hi > 4.99, "range [%g, %g]", lo, hi);
    cr_assert(fabs(mean - 1.0) < 0.05, "mean %g", mean);
    cr_assert(fabs(std - 8 / sqrt(12)) < 0.03, "std %g", std);
}

Test(rt_init, normal_statistics) {
    init_one((nnrt_init){ .kind = NNRT_INIT_NORMAL, .a = 2, .b = 0.5 }, N, 7, 0, v);
    double mean, std;
    stats(v, N, &mean, &std);
    cr_assert(fabs(mean - 2.0) < 0.01, "mean %g", mean);
    cr_assert(fabs(std - 0.5) < 0.01, "std %g", std);
    int within = 0;                                  // about 68.3% within one std
    for (int i = 0; i < N; i++) within += fabs(v[i] - 2.0) < 0.5;
    cr_assert(fabs(within / (double)N - 0.6827) < 0.01, "%d within", within);
}

Test(rt_init, xavier_bound_and_statistics) {
    init_one((nnrt_init){ .kind = NNRT_INIT_XAVIER, .fan_in = 784, .fan_out = 256 }, N, 3, 0, v);
    double a = sqrt(6.0 / (784 + 256)), mean, std;
    for (int i = 0; i < N; i++) cr_assert(fabs(v[i]) <= a, "%g", v[i]);
    stats(v, N, &mean, &std);
    cr_assert(fabs(mean) < 0.01 * a * 3, "mean %g", mean);
    cr_assert(fabs(std - a / sqrt(3)) < 0.01 * a, "std %g vs %g", std, a / sqrt(3));
}

Test(rt_init, he_statistics) {
    init_one((nnrt_init){ .kind = NNRT_INIT_HE, .fan_in = 100, .fan_out = 10 }, N, 3, 0, v);
    double mean, std;
    stats(v, N, &mean, &std);
    cr_assert(fabs(mean) < 0.005, "mean %g", mean);
    cr_assert(fabs(std - sqrt(2.0 / 100)) < 0.003, "std %g", std);
}

Test(rt_init, deterministic_and_seed_dependent) {
    float a[64], b[64], c[64];
    nnrt_init in = { .kind = NNRT_INIT_NORMAL, .a = 0, .b = 1 };
    init_one(in, 64, 99, 0, a);
    init_one(in, 64, 99, 0, b);
    init_one(in, 64, 100, 0, c);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    int same = 0;
    for (int i = 0; i < 64; i++) same += a[i] == c[i];
    cr_assert_eq(same, 0);
}

// A tensor's values depend on its index, not on its neighbours' kinds or sizes, and a
// prefix of a longer tensor equals a shorter tensor (element i depends only on i).
Test(rt_init, tensor_independent_of_others) {
    float a[16], b[16];
    nnc_tensor_info t[2] = { { "a", 1, { 100 }, 0 }, { "b", 1, { 16 }, 100 } };
    nnrt_init ins[2] = { { .kind = NNRT_INIT_NORMAL, .b = 1 }, { .kind = NNRT_INIT_UNIFORM, .b = 1 } };
    nnrt_desc d = { .info = { .n_tensors = 2, .tensors = t, .param_count = 116 }, .inits = ins };
    nnrt_init_params(&d, buf, 5);
    memcpy(a, buf + 100, sizeof a);
    t[0].shape[0] = 3;                               // a different first tensor
    t[1].offset = 3;
    ins[0].kind = NNRT_INIT_ONES;
    nnrt_init_params(&d, buf, 5);
    memcpy(b, buf + 3, sizeof b);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    init_one((nnrt_init){ .kind = NNRT_INIT_UNIFORM, .b = 1 }, 8, 5, 1, b);
    cr_assert_eq(memcmp(a, b, 8 * sizeof(float)), 0);
}

Test(rt_init, values_differ_between_tensors) {
    float a[32], b[32];
    nnrt_init in = { .kind = NNRT_INIT_UNIFORM, .b = 1 };
    init_one(in, 32, 5, 0, a);
    init_one(in, 32, 5, 2, b);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
}
