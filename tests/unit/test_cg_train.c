// test_cg_train.c: the fused train kernel (grad and apply in one, each dW
// computed inside its parameter's update). train_step must equal grad then
// apply to float rounding (ABI.md), whatever path the product takes: the
// register tiles with their edges (rows and columns that do not fill a tile),
// nnrt_sgemm then the update loop, -O1 (no fusion), AVX2 instead of AVX-512.
#include "test_cg_util.h"

// Layer widths chosen for the edges: 45 rows = 7 tiles of 6 + 3; 37 columns
// = 2 vectors of 16 + 5 left over; 50 x 70 and 10 x 50 likewise.
static const char *momentum_src =
    "model mom { input x[37]; target y[7];\n"
    "h = dense(x, 45, relu); z = dense(h, 7);\n"
    "output z; loss mse(z, y); train sgd(lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 0.01); }";
static const char *adam_src =
    "model ad { input x[70]; target y[10];\n"
    "h = dense(x, 50, tanh); z = dense(h, 10);\n"
    "output softmax(z); loss softmax_cross_entropy(z, y); train adam(lr = 0.01); }";
static const char *plain_src =
    "model pl { input x[100]; target y[3];\n"
    "h = dense(x, 20, sigmoid); z = dense(h, 3);\n"
    "output z; loss mse(z, y); train sgd(lr = 0.1); }";

static void same_as_grad_then_apply(CgT *t, size_t batch) { cgt_same_as_grad_then_apply(t, batch, 1); }

static void check_model(const char *src) {
    static const size_t batches[] = { 1, 3, 17, 300 };
    CgT t;
    cgt_build(&t, src);
    cr_assert(t.d->train, "the model should have a fused train kernel");
    cr_assert_null(t.d->loss, "loss() should run the grad kernel (no loss kernel)");
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
        same_as_grad_then_apply(&t, batches[i]);
    cgt_free(&t);
}

// A weight used twice (its gradient is a sum of two products: only one of them,
// if any, can be computed inside the update), AdamW, a scalar parameter, and a
// parameter that does not reach the loss (its gradient is zero: weight decay only).
static const char *tied_src =
    "model tied { input x[40]; target y[40];\n"
    "param W[40, 40] = normal(0, 0.2); param s = constant(0.5); param unused[3] = ones();\n"
    "h = tanh(W @ x); o = s * (W @ h);\n"
    "output o; loss mse(o, y); train adam(lr = 0.01, weight_decay = 0.1); }";

Test(cg_train, momentum_nesterov_weight_decay) { check_model(momentum_src); }
Test(cg_train, tied_weights_adamw) { check_model(tied_src); }
Test(cg_train, adam) { check_model(adam_src); }
Test(cg_train, plain_sgd) { check_model(plain_src); }

// Every product through nnrt_sgemm: dW is stored, then its update group runs over it.
Test(cg_train, through_nnrt_sgemm) {
    setenv("NNC_SGEMM_MIN_MACS", "1", 1);
    check_model(momentum_src);
    check_model(adam_src);
    unsetenv("NNC_SGEMM_MIN_MACS");
}

Test(cg_train, at_o1_without_fusion) {
    cgt_opt_level = 1;
    check_model(adam_src);
    cgt_opt_level = 2;
}

Test(cg_train, avx2_vectors) {
    cgt_target_cpu = "x86-64-v3";
    check_model(momentum_src);
    cgt_target_cpu = NULL;
}

// A non-finite objective: train_step returns it and writes nothing (LANGUAGE.md §7).
Test(cg_train, non_finite_objective_changes_nothing) {
    CgT t;
    cgt_build(&t, adam_src);
    const nnc_model_info *info = &t.d->info;
    nnrt_model *a = info->create(5);
    size_t np = info->param_count, ns = t.d->state_count;
    float *x = cgt_random(4 * 70, -1, 1), *y = cgt_random(4 * 10, 0, 1);
    info->train_step(a, x, y, 4);
    float *p0 = malloc(np * sizeof(float)), *s0 = malloc(ns * sizeof(float));
    memcpy(p0, a->params, np * sizeof(float));
    memcpy(s0, a->state, ns * sizeof(float));
    x[5] = NAN;
    cr_assert(isnan(info->train_step(a, x, y, 4)));
    cr_assert_arr_eq(a->params, p0, np * sizeof(float));
    cr_assert_arr_eq(a->state, s0, ns * sizeof(float));
    cr_assert_eq(a->step, 1);
    info->destroy(a);
    free(x), free(y), free(p0), free(s0);
    cgt_free(&t);
}

// Three steps on one instance per thread count (1 first): the same objective,
// parameters and state, bit for bit; then train_step against grad + apply at 2.
static void same_bits_for_any_threads(CgT *t, size_t batch, const int *threads, int n) {
    const nnc_model_info *info = &t->d->info;
    size_t np = info->param_count, ns = t->d->state_count;
    nnrt_model *m[4];
    NN_ASSERT(n <= 4);
    for (int i = 0; i < n; i++) {
        m[i] = info->create(3);
        info->set_threads(m[i], threads[i]);
    }
    float *x = cgt_random(batch * info->input_size, -1, 1), *y = cgt_random(batch * info->target_size, 0, 1);
    for (int step = 0; step < 3; step++) {
        float l0 = info->train_step(m[0], x, y, batch);
        for (int i = 1; i < n; i++) {
            cr_assert_eq(info->train_step(m[i], x, y, batch), l0, "%d threads, step %d", threads[i], step);
            cr_assert_arr_eq(m[i]->params, m[0]->params, np * sizeof(float), "%d threads, step %d", threads[i], step);
            cr_assert_arr_eq(m[i]->state, m[0]->state, ns * sizeof(float), "%d threads, step %d", threads[i], step);
        }
    }
    for (int i = 0; i < n; i++)
        info->destroy(m[i]);
    free(x), free(y);
    cgt_same_as_grad_then_apply(t, batch, 2);
}

// Layers large enough for the loops split over threads (cg_parallel.c): the
// forward epilogue inside nnrt_sgemm (260 x 256 elements), the relu's
// derivative (260 x 256) and the weight's update (256 x 300); and the last
// layer, its softmax and the loss's derivative split by samples (cg_nest.c:
// 260 samples, 11 granules). 2 and 3 threads (more than this machine's cores)
// give the same bits as one.
Test(cg_train, large_loops_split_over_threads) {
    static const int threads[] = { 1, 2, 3 };
    CgT t;
    cgt_build(&t, "model big { input x[300]; target y[10];\n"
                  "h = dense(x, 256, relu); z = dense(h, 10);\n"
                  "output softmax(z); loss softmax_cross_entropy(z, y); train adam(lr = 0.001); }");
    same_bits_for_any_threads(&t, 260, threads, 3);
    cgt_free(&t);
}

// A layer of 1024 units at batch 80: the activation's derivative over [80][1024]
// is split over the threads too (emit_collapsed).
Test(cg_train, wide_activation_derivative_split_over_threads) {
    static const int threads[] = { 1, 2 };
    CgT t;
    cgt_build(&t, "model w { input x[16]; target y[4];\n"
                  "h = dense(x, 1024, relu); z = dense(h, 4);\n"
                  "output z; loss mse(z, y); train sgd(lr = 0.01); }");
    same_bits_for_any_threads(&t, 80, threads, 2);
    cgt_free(&t);
}

// Convolutions split their samples over the threads (emit_conv): each sample's
// output, input gradient and weight gradient is computed by one thread, so 1, 2
// and 3 threads give the same bits; and train_step still equals grad then apply.
Test(cg_train, convolutions_split_over_threads) {
    static const int threads[] = { 1, 2, 3 };
    CgT t;
    cgt_build(&t, "model cv { input x[2, 9, 9]; target y[3];\n"
                  "c1 = conv2d(x, 4, 3, padding = 1, act = relu); p1 = maxpool2d(c1, 2);\n"
                  "c2 = conv2d(p1, 3, 3, stride = 2, padding = 1, act = tanh);\n"
                  "z = dense(flatten(c2), 3);\n"
                  "output z; loss softmax_cross_entropy(z, y); train adam(lr = 0.01); }");
    same_bits_for_any_threads(&t, 7, threads, 3);
    for (size_t i = 0; i < 3; i++)
        cgt_same_as_grad_then_apply(&t, 7, threads[i]);
    cgt_free(&t);
}

// The shapes at the edges of the dW tiles (6 rows x 2 vectors of 16): widths below,
// at and just past a vector, a tile and two; batches 1 (rank-1 pass), 2, 31-33 (row
// tiles and the packed kernel on either side of AXPY_ROWS_MAX_K) and 65.
Test(cg_train, tile_edges_sweep, .timeout = 300) {
    static const int shapes[][2] = { { 1, 5 },   { 5, 1 },   { 15, 16 }, { 16, 17 }, { 17, 6 },  { 31, 7 },
                                     { 32, 12 }, { 33, 13 }, { 47, 5 },  { 48, 11 }, { 49, 18 }, { 65, 4 } };
    static const size_t batches[] = { 1, 2, 31, 33, 65 };
    char src[512];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        snprintf(src, sizeof src,
                 "model e { input x[%d]; target y[3];\n"
                 "h = dense(x, %d, sigmoid); z = dense(h, 3);\n"
                 "output z; loss mse(z, y); train sgd(lr = 0.1, momentum = 0.5); }",
                 shapes[s][0], shapes[s][1]);
        CgT t;
        cgt_build(&t, src);
        cr_assert(t.d->train);
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            cgt_same_as_grad_then_apply(&t, batches[b], 1);
        cgt_free(&t);
    }
}

// Small models have copies of the kernels for batches 1, 2, 4 and 8
// (cg_kernel.c, CG_CLONE_BATCHES): each copy, and the batches beside them that
// take the general body, against grad then apply.
Test(cg_train, small_batch_copies) {
    CgT t;
    cgt_build(&t, momentum_src);
    cr_assert_leq(t.d->info.param_count, 4096, "the model should be small enough for the copies");
    for (size_t batch = 1; batch <= 9; batch++)
        same_as_grad_then_apply(&t, batch);
    cgt_free(&t);
}

// At batch 1 a weight's update reads the input row once per row of the weight;
// an input that is not 64-byte aligned is first copied to an aligned row
// (cg_matmul.c, aligned_row). Whatever the input's address, the same bits.
Test(cg_train, batch_one_input_at_any_alignment) {
    CgT t;
    cgt_build(&t, momentum_src);
    const nnc_model_info *info = &t.d->info;
    size_t np = info->param_count, ns = t.d->state_count, in = info->input_size;
    float *x = cgt_random(in, -1, 1), *y = cgt_random(info->target_size, 0, 1);
    float *buf = nnrt_aligned_alloc((in + 16) * sizeof(float));
    nnrt_model *ref = info->create(7);
    for (int step = 0; step < 3; step++)
        info->train_step(ref, x, y, 1);
    for (int shift = 0; shift < 16; shift++) {
        memcpy(buf + shift, x, in * sizeof(float));
        nnrt_model *m = info->create(7);
        for (int step = 0; step < 3; step++)
            info->train_step(m, buf + shift, y, 1);
        cr_assert_arr_eq(m->params, ref->params, np * sizeof(float), "input at +%d floats", shift);
        cr_assert_arr_eq(m->state, ref->state, ns * sizeof(float), "input at +%d floats", shift);
        info->destroy(m);
    }
    info->destroy(ref);
    free(x), free(y), free(buf);
    cgt_free(&t);
}
