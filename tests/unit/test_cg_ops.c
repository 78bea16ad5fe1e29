// test_cg_ops.c: generated kernels against the interpreter, one model per op
// family (relative 1e-4 of each tensor's largest entry).
#include <float.h>

#include "test_cg_util.h"

static void check_model(const char *src, size_t batch) {
    CgT t;
    cgt_build(&t, src);
    cgt_compare(&t, batch, -1.0f, 1.0f);
    cgt_compare(&t, 1, -1.0f, 1.0f);
    cgt_free(&t);
}

Test(cg, seed_network_sigmoid_sgd) {
    check_model("model seed { input x[2]; target y[2];\n"
                "h1 = dense(x, 3, sigmoid); h2 = dense(h1, 2, sigmoid); o = dense(h2, 2, sigmoid);\n"
                "output o; loss 0.5 * sum((y - o)^2); train sgd(lr = 0.5); }", 7);
}

Test(cg, elementwise_chain) {
    check_model("model ew { input x[5]; target y[5]; param a[5] = uniform(-1, 1);\n"
                "h = tanh(x * a) + softplus(x - a) * exp(-square(x)) - relu(a - x) / (1 + abs(x));\n"
                "o = leaky_relu(h, 0.1) + max(h, a) - min(x, 0.2) + sqrt(1 + x^2) + sin(h) * cos(a);\n"
                "output o; loss sum((o - y)^2); train sgd(lr = 0.1, momentum = 0.9); }", 5);
}

Test(cg, broadcasting) {
    check_model("model bc { input x[3, 4]; target y[3, 4]; param r[4] = uniform(-1, 1);\n"
                "param c[3, 1] = uniform(-1, 1); param s = constant(0.5);\n"
                "o = x * r + c - s * x / (2 + r * r);\n"
                "output o; loss mean((o - y)^2); train adam(lr = 0.01); }", 4);
}

Test(cg, matmul_four_cases) {
    check_model("model mm { input x[4]; target y[3]; param A[3, 4] = uniform(-1, 1);\n"
                "param B[4, 3] = uniform(-1, 1); param C[3, 2] = uniform(-1, 1); param v[4] = uniform(-1, 1);\n"
                "h = A @ x; k = x @ B; M = reshape(x, 2, 2); P = M @ transpose(M);\n"
                "s = x @ v; q = reshape(P, 4) @ B;\n"
                "o = h * k + s + q + C @ (transpose(C) @ h);\n"
                "output o; loss sum((o - y)^2) + sum(P); train sgd(lr = 0.1); }", 3);
}

Test(cg, dense_relu_softmax_cross_entropy) {
    check_model("model mlp { input x[20]; target y[5];\n"
                "h1 = dense(x, 16, relu); h2 = dense(h1, 8, tanh); z = dense(h2, 5);\n"
                "output softmax(z); loss softmax_cross_entropy(z, y); train adam(lr = 0.001); }", 9);
}

Test(cg, logsumexp_log_softmax_mse) {
    check_model("model ls { input x[6]; target y[6]; param w[6] = uniform(-1, 1);\n"
                "z = w * x; o = log_softmax(z) + logsumexp(z) + mean(z);\n"
                "output o; loss mse(o, y) + cross_entropy(softmax(z), y); train sgd(lr = 0.1); }", 5);
}

// The convolution's loop nest (cg_kernel.c, emit_conv) takes each tap's rows
// and columns inside the input: kernels of 1, 3 and 5 (taps unrolled) and 9
// (taps in a loop), strides 1 to 3, padding 0 to larger than the kernel's
// half, widths other than heights, a kernel wider than the input; rows of 1
// to 11 as vectors of 16 or (AVX2) 8 lanes and smaller.
static const char *conv_edges_src =
    "model ce { input x[2, 7, 11]; target y[2];\n"
    "a = conv2d(x, 3, 5, stride = 2, padding = 3, act = tanh);\n"
    "b = conv2d(a, 2, 1, stride = 1, padding = 1);\n"
    "c = conv2d(b, 2, 3, stride = 3, padding = 2, act = relu);\n"
    "d = conv2d(x, 2, 9, stride = 1, padding = 4);\n"
    "e = conv2d(x, 1, 3, padding = 0, bias = false);\n"
    "zc = dense(flatten(c), 2); zd = dense(flatten(d), 2); ze = dense(flatten(e), 2);\n"
    "z = zc + zd + ze; output z; loss mse(z, y); train sgd(lr = 0.05); }";

Test(cg, conv_edges) { check_model(conv_edges_src, 3); }

Test(cg, conv_edges_avx2) {
    cgt_target_cpu = "x86-64-v3";
    check_model(conv_edges_src, 3);
    cgt_target_cpu = NULL;
}

Test(cg, conv_pool) {
    check_model("model cnn { input x[2, 8, 8]; target y[3];\n"
                "c1 = conv2d(x, 3, 3, padding = 1, act = relu); p1 = maxpool2d(c1, 2);\n"
                "c2 = conv2d(p1, 4, 2, stride = 2); p2 = avgpool2d(c2, 2);\n"
                "z = dense(flatten(p2), 3);\n"
                "output z; loss softmax_cross_entropy(z, y); train sgd(lr = 0.1); }", 3);
}

// Pooling windows that tile their input (the max-pool gradient stores into
// each window, cg_kernel.c pool_window), leave a gap (7 = 3 x 2 + 1: the last
// row and column get no gradient) or overlap (size 3, stride 2: the
// gradient adds up). Convolutions before them, so that every pool's gradient
// is needed; relu's zeros make ties, which go to the first maximum.
Test(cg, pool_windows_tiling_gapped_overlapping) {
    check_model("model pools { input x[2, 7, 7]; target y[3];\n"
                "c = conv2d(x, 2, 2, act = relu); d = conv2d(x, 2, 1, act = relu);\n"
                "t = maxpool2d(c, 2); g = maxpool2d(d, 2); o = maxpool2d(d, 3, stride = 2); a = avgpool2d(d, 2);\n"
                "z = dense(flatten(t) + flatten(g) + flatten(o) + flatten(a), 3);\n"
                "output z; loss mse(z, y); train sgd(lr = 0.1); }", 4);
}

Test(cg, autoencoder_without_target_and_scalar_param) {
    check_model("model ae { input x[6]; param s = constant(1.5);\n"
                "h = dense(x, 3, sigmoid); o = dense(h, 6) * s;\n"
                "output o; loss sse(o, x); train sgd(lr = 0.1, momentum = 0.5, nesterov = true,\n"
                "weight_decay = 0.01, clip = 0.5); }", 5);
}

Test(cg, sum_reduction_objective) {
    check_model("model rs { input x[4]; target y[2]; h = dense(x, 2, softplus);\n"
                "output h; loss binary_cross_entropy(sigmoid(h), y); train adam(lr = 0.1, reduce = sum,\n"
                "weight_decay = 0.1); }", 6);
}

Test(cg, all_optimisation_levels_agree_with_the_interpreter) {
    const char *src = "model lv { input x[2, 6, 6]; target y[4];\n"
                      "c = conv2d(x, 2, 3, stride = 2, padding = 1, act = tanh); p = maxpool2d(c, 2, stride = 1);\n"
                      "z = leaky_relu(dense(flatten(p), 4), 0.2);\n"
                      "output z; loss mse(z, y); train adam(lr = 0.01); }";
    for (int o = 0; o <= 3; o++) {
        cgt_opt_level = o;
        check_model(src, 3);
    }
    cgt_opt_level = 2;
}

// Products large enough for the blocked kernels: several packing chunks of k
// (k = 300 > 256 in dx, k = batch = 300 in dW), row and column edges. At
// batch 1 and 7, the forward products' rows one at a time (gemm_dot_rows):
// k = 300 is 18 vectors and 12 left over, k = 45 two vectors and 13; n = 300,
// 45 and 37 leave 4, 5 and 5 columns to gemm_dot (8 at a time; the reduction
// of 8 accumulators ends in halvings of one vector).
Test(cg, blocked_products_with_edges, .timeout = 300) {
    CgT t;
    cgt_build(&t, "model big { input x[300]; target y[37];\n"
                  "h = dense(x, 300, tanh); g = dense(h, 45, relu); o = dense(g, 37);\n"
                  "output o; loss mse(o, y); train sgd(lr = 0.1); }");
    cgt_param_scale = 0.1f;
    cgt_compare(&t, 300, -1.0f, 1.0f);
    cgt_compare(&t, 7, -1.0f, 1.0f);
    cgt_compare(&t, 1, -1.0f, 1.0f);
    cgt_param_scale = 0.5f;
    cgt_free(&t);
}

// exp, sigmoid and tanh as emitted (range reduction, polynomial in fused
// multiply-adds) against double precision, in ulps of the float result, over
// [-87, 88.7], +-100 and the special values: a cheaper polynomial or a lost
// correction term shows up here before it blurs a gradient check. (Results
// below FLT_MIN are flushed to 0.)
static void check_ulps(const char *fn, double (*want)(double), double max_ulps) {
    enum { N = 20000 };
    char src[256];
    snprintf(src, sizeof src, "model u { input x[%d]; target y[%d]; param a = constant(1);\n"
             "o = %s(x * a); output o; loss sum((o - y)^2); train sgd(lr = 0.1); }", N, N, fn);
    CgT t;
    cgt_build(&t, src);
    float *x = malloc(N * sizeof *x), *o = malloc(N * sizeof *o), one = 1;
    // Past either end of exp's range (cg_exp's 2^n is garbage there, replaced
    // by 0 or inf) and huge arguments, whose n does not fit an int.
    const float special[] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, 100.0f, -100.0f,
                              -87.5f, -88.0f, -103.9f, -1e30f, 88.5f, 88.72f, 88.73f, 1e30f };
    enum { S = NN_COUNTOF(special) };
    for (int i = 0; i < N - S; i++)
        x[i] = -87.0f + 175.7f * (float)i / (N - S - 1);
    memcpy(x + N - S, special, sizeof special);
    void *scratch = cgt_scratch(t.d, 1);
    t.d->predict(NULL, &one, x, o, 1, scratch);
    for (int i = 0; i < N; i++) {
        double w = want(x[i]);
        if (isnan(w)) {
            cr_assert(isnan(o[i]), "%s(%g) = %g, want nan", fn, (double)x[i], (double)o[i]);
            continue;
        }
        if (fabs(w) < FLT_MIN || fabs(w) > FLT_MAX) {   // denormal or overflowing results: the limit
            cr_assert(o[i] == (float)w || fabs(o[i] - w) <= FLT_MIN, "%s(%g) = %g, want %g", fn, (double)x[i], (double)o[i], w);
            continue;
        }
        // exp above 88.38: 2^n stops at 2^127 and the reduced argument r grows
        // from ln 2 / 2 to ln 2, past the polynomial's design range.
        double ulp = ldexp(1.0, ilogb((float)w) - 23), lim = x[i] > 88.38f ? 6 : max_ulps;
        cr_assert(fabs(o[i] - w) <= lim * ulp, "%s(%.9g) = %.9g, want %.9g (%.2f ulp)", fn, (double)x[i],
                  (double)o[i], w, fabs(o[i] - w) / ulp);
    }
    free(x), free(o), free(scratch);
    cgt_free(&t);
}

static double sigmoid_d(double a) { return 1 / (1 + exp(-a)); }

Test(cg, exp_sigmoid_tanh_within_ulps) {
    check_ulps("exp", exp, 2);
    check_ulps("sigmoid", sigmoid_d, 3);
    check_ulps("tanh", tanh, 3);
}

// The copies of the kernels for batches 1, 2, 4 and 8 of small models, and
// the general body at the batches between, against the interpreter.
Test(cg, small_batch_copies_agree_with_the_interpreter) {
    CgT t;
    cgt_build(&t, "model xor_net { input x[2]; target y[1];\n"
                  "h = dense(x, 4, tanh); o = dense(h, 1, sigmoid);\n"
                  "output o; loss mse(o, y); train sgd(lr = 0.5, momentum = 0.9); }");
    for (size_t batch = 1; batch <= 9; batch++)
        cgt_compare(&t, batch, -2.0f, 2.0f);
    cgt_free(&t);
}

// Layers narrower than a vector (1, 2, 4 and 8 units): their bias and
// activation run on vectors spanning several samples (cg_matmul.c,
// epilogue_lanes), the bias repeated across the lanes, the samples left over
// one row at a time; the small-batch copies and the general body, with
// vectors of 16 and (AVX2) 8 lanes; layer d's epilogue calls log, sin and
// cos (on vectors: LLVM calls the scalar functions lane by lane). Layer b's
// epilogue also reads a value per sample (mean(x)), which keeps it one row
// at a time (lanes_ok).
Test(cg, narrow_layers_as_vectors_across_samples) {
    static const size_t batches[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33 };
    static const char *cpus[] = { NULL, "x86-64-v3" };
    for (size_t k = 0; k < NN_COUNTOF(cpus); k++) {
        cgt_target_cpu = cpus[k];
        CgT t;
        cgt_build(&t, "model narrow { input x[3]; target y[1];\n"
                      "param w[4, 8] = uniform(-1, 1); param v[4] = uniform(-1, 1);\n"
                      "a = dense(x, 8, tanh); b = sigmoid(w @ a + v + mean(x)); c = dense(b, 2, softplus);\n"
                      "param u[2, 2] = uniform(-1, 1); param k[2] = uniform(-1, 1);\n"
                      "d = log(2 + sin(u @ c + k)) * cos(k) + leaky_relu(u @ c, 0.1);\n"
                      "o = dense(d, 1, tanh);\n"
                      "output o; loss mse(o, y); train sgd(lr = 0.5); }");
        for (size_t i = 0; i < NN_COUNTOF(batches); i++)
            cgt_compare(&t, batches[i], -2.0f, 2.0f);
        cgt_free(&t);
    }
    cgt_target_cpu = NULL;
}
