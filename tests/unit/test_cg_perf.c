// Codegen's performance paths: products above the nnrt_sgemm threshold (a
// call to the runtime's packed, threaded GEMM, with the bias + activation
// epilogue applied after it) and below it (inline kernels) agree with the
// interpreter, and a whole train_step gives the same bits with 1 and 2 threads.
#include "test_cg_util.h"

static const char *mlp =
    "model mlp { input x[203]; target y[11];\n"
    "h1 = dense(x, 130, relu); h2 = dense(h1, 45, tanh); o = dense(h2, 11);\n"
    "output softmax(o); loss softmax_cross_entropy(o, y); train adam(lr = 0.001); }";

// NNC_SGEMM_MIN_MACS=1: every eligible product calls nnrt_sgemm, at any batch.
Test(cg_perf, every_product_through_sgemm_agrees_with_the_interpreter, .timeout = 300) {
    setenv("NNC_SGEMM_MIN_MACS", "1", 1);
    CgT t;
    cgt_build(&t, mlp);
    unsetenv("NNC_SGEMM_MIN_MACS");
    cgt_param_scale = 0.1f;
    cgt_compare(&t, 1, -1.0f, 1.0f);
    cgt_compare(&t, 13, -1.0f, 1.0f);
    cgt_compare(&t, 50, -1.0f, 1.0f);
    cgt_param_scale = 0.5f;
    cgt_free(&t);
}

// The default threshold: batch 64 is above it for the first layer's products
// (64 * 130 * 203 MACs), batch 2 below; NNC_SGEMM_MIN_MACS=0 never calls it.
Test(cg_perf, products_above_and_below_the_threshold, .timeout = 300) {
    for (int never = 0; never < 2; never++) {
        if (never)
            setenv("NNC_SGEMM_MIN_MACS", "0", 1);
        CgT t;
        cgt_build(&t, mlp);
        unsetenv("NNC_SGEMM_MIN_MACS");
        cgt_param_scale = 0.1f;
        cgt_compare(&t, 64, -1.0f, 1.0f);
        cgt_compare(&t, 2, -1.0f, 1.0f);
        cgt_param_scale = 0.5f;
        cgt_free(&t);
    }
}

static void run_steps(const nnc_model_info *info, int threads, const float *x, const float *y, size_t batch,
                      float *params_out, float *loss_out) {
    void *m = info->create(7);
    info->set_threads(m, threads);
    for (int s = 0; s < 3; s++)
        loss_out[s] = info->train_step(m, x, y, batch);
    memcpy(params_out, info->params(m), info->param_count * sizeof(float));
    info->destroy(m);
}

// Deterministic threads: the same bits for the parameters and the losses with
// 1 and 2 threads (nnrt_sgemm splits C into rows or columns; each element is
// computed by one thread in the same order).
// Built with NNC_SGEMM_MIN_MACS=1 so that every product takes the threaded path
// whatever the thread count (by default, products between the two thresholds
// run inline on one thread and through nnrt_sgemm on several).
Test(cg_perf, two_threads_give_the_same_bits_as_one, .timeout = 300) {
    CgT t;
    setenv("NNC_SGEMM_MIN_MACS", "1", 1);
    cgt_build(&t, mlp);
    unsetenv("NNC_SGEMM_MIN_MACS");
    const nnc_model_info *info = &t.d->info;
    size_t batch = 96, np = info->param_count;
    float *x = cgt_random(batch * info->input_size, -1.0f, 1.0f);
    float *y = calloc(batch * info->target_size, sizeof(float));
    for (size_t b = 0; b < batch; b++)
        y[b * info->target_size + b % info->target_size] = 1;
    float *p1 = calloc(np, sizeof(float)), *p2 = calloc(np, sizeof(float)), l1[3], l2[3];
    run_steps(info, 1, x, y, batch, p1, l1);
    run_steps(info, 2, x, y, batch, p2, l2);
    cr_assert(isfinite(l1[2]) && l1[2] < l1[0], "loss %g -> %g", (double)l1[0], (double)l1[2]);
    cr_assert_eq(memcmp(l1, l2, sizeof l1), 0, "losses differ: %.9g vs %.9g", (double)l1[2], (double)l2[2]);
    cr_assert_eq(memcmp(p1, p2, np * sizeof(float)), 0, "parameters differ between 1 and 2 threads");
    free(x), free(y), free(p1), free(p2);
    cgt_free(&t);
}

// A model of at most CG_BATCH1_CLONE_PARAMS parameters gets a batch-1 copy of
// its grad, loss and predict kernels (constant loop bounds): both copies agree
// with the interpreter.
Test(cg_perf, batch1_copy_of_a_tiny_model_agrees_with_the_interpreter) {
    CgT t;
    cgt_build(&t, "model xor_net { input x[2]; target y[1];\n"
                  "h = dense(x, 4, tanh); o = dense(h, 1, sigmoid);\n"
                  "output o; loss mse(o, y); train sgd(lr = 0.5); }");
    cgt_compare(&t, 1, -1.0f, 1.0f);
    cgt_compare(&t, 4, -1.0f, 1.0f);
    cgt_compare(&t, 1, -1.0f, 1.0f);
    cgt_free(&t);
}
