// `nnc check` (check.c): the symbolic gradient against central finite
// differences and pruned against unpruned, on one small model per op family,
// and proof that the check can fail: a test hook corrupts a gradient.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "sema.h"

extern void (*ir_check_test_hook)(Model *train, bool pruned);

typedef struct Checked {
    int   status;
    char *text;       // the table
    char *diag;       // diagnostics
} Checked;

static Checked run_check(const char *src, uint64_t seed) {
    Checked r = { 0 };
    size_t len = 0, dlen = 0;
    FILE *diag = open_memstream(&r.diag, &dlen);
    FILE *out = open_memstream(&r.text, &len);
    NnCtx c;
    nn_ctx_setup(&c, diag);
    int file = nn_add_source(&c, "m.nn", src, strlen(src));
    Model *m = nn_frontend(&c, file);
    cr_assert(m, "front end failed");
    r.status = ir_check_gradients(&c, m, out, seed);
    fclose(out);
    fclose(diag);
    nn_ctx_free(&c);
    return r;
}

static void expect_pass(const char *src) {
    Checked r = run_check(src, 1);
    cr_expect_eq(r.status, 0, "check failed:\n%s\n%s", r.text, r.diag);
    cr_expect(strstr(r.text, "ok: all"), "%s", r.text);
    free(r.text);
    free(r.diag);
}

Test(grad_check, dense_sigmoid_squared_error) {
    expect_pass("model seed { input x[2]; target y[2];\n"
                "h1 = dense(x, 3, sigmoid); h2 = dense(h1, 2, sigmoid); o = dense(h2, 2, sigmoid);\n"
                "output o; loss 0.5 * sum((y - o)^2); train sgd(lr = 0.5); }");
}

Test(grad_check, elementwise_smooth_functions) {
    expect_pass("model m { input x[3]; target y[3];\n"
                "param a[3] = ones(); param b[3] = uniform(-1, 1); param c = constant(2);\n"
                "u = tanh(a * x) + exp(b * x) / c + log(a * x + 1) - sqrt(a * a + x);\n"
                "v = softplus(u) * sin(b) + cos(u * c) + square(u - y) + u ^ 2 / (1 + x ^ 3);\n"
                "output v; loss sum(v) + mean(abs(v - y)); train sgd(lr = 0.1); }");
}

Test(grad_check, piecewise_functions) {
    expect_pass("model m { input x[4]; target y[4];\n"
                "h = dense(x, 5, relu); g = dense(h, 4, identity);\n"
                "k = leaky_relu(g, 0.1) + max(g, y) - min(g, 0.5 * y) + abs(g);\n"
                "output k; loss mse(k, y); train sgd(lr = 0.1); }");
}

Test(grad_check, softmax_family_and_losses) {
    expect_pass("model m { input x[4]; target y[3];\n"
                "h = dense(x, 5, tanh); z = dense(h, 3);\n"
                "p = softmax(z); q = log_softmax(z * 0.5);\n"
                "output p; loss softmax_cross_entropy(z, y) + cross_entropy(p, y) - sum(y * q)\n"
                "  + logsumexp(z) + binary_cross_entropy(sigmoid(z), y);\n"
                "train adam(lr = 0.01); }");
}

Test(grad_check, matmul_shapes_and_reshapes) {
    expect_pass("model m { input x[6]; target y[2];\n"
                "param A[3, 2] = normal(0, 0.5); param B[2, 3] = uniform(-0.5, 0.5); param v[3] = uniform(-1, 1);\n"
                "M = reshape(x, 2, 3); P = M @ transpose(B);\n"       // [2,3] @ [3,2] -> [2,2]
                "r = v @ A; s = flatten(P @ r);\n"                    // [3]@[3,2] -> [2]; [2,2]@[2] -> [2]
                "t = (v @ v) * s;\n"                                  // [3]@[3] -> scalar
                "output t; loss sse(t, y); train sgd(lr = 0.1, momentum = 0.9, nesterov = true); }");
}

Test(grad_check, convolution_and_pooling) {
    expect_pass("model m { input x[2, 6, 6]; target y[3];\n"
                "c1 = conv2d(x, 3, 3, padding = 1, act = tanh);\n"
                "p1 = maxpool2d(c1, 2);\n"
                "c2 = conv2d(p1, 2, 2, stride = 1, act = sigmoid);\n"
                "p2 = avgpool2d(c2, 2);\n"
                "z = dense(flatten(p2), 3);\n"
                "output z; loss softmax_cross_entropy(z, y); train sgd(lr = 0.1); }");
}

Test(grad_check, reduce_sum_with_adam_clip_and_weight_decay) {
    expect_pass("fn swish(z) = z * sigmoid(z);\n"
                "model m { input x[3]; target y[2];\n"
                "h = dense(x, 4, swish); o = dense(h, 2);\n"
                "output o; loss sse(o, y);\n"
                "train adam(lr = 0.01, weight_decay = 0.1, clip = 0.5, reduce = sum); }");
}

Test(grad_check, no_target_autoencoder) {
    expect_pass("model ae { input x[4];\n"
                "h = dense(x, 2, sigmoid); r = dense(h, 4, sigmoid);\n"
                "output r; loss binary_cross_entropy(r, x); train sgd(lr = 0.1); }");
}

// ---- The check must be able to fail.

static void scale_first_gradient(Model *m, bool pruned) {
    if (!pruned)
        return;
    Graph *g = m->g;
    m->grads[0] = ir_binary(g, IR_MUL, m->grads[0], ir_scalar(g, 1.001), (SrcRange){ 0 });
}

static void scale_unpruned_gradient(Model *m, bool pruned) {
    if (pruned)
        return;
    Graph *g = m->g;
    m->grads[1] = ir_binary(g, IR_MUL, m->grads[1], ir_scalar(g, 1 + 1e-6), (SrcRange){ 0 });
}

static const char *seed_model = "model seed { input x[2]; target y[2];\n"
                                "h1 = dense(x, 3, sigmoid); o = dense(h1, 2, sigmoid);\n"
                                "output o; loss 0.5 * sum((y - o)^2); train sgd(lr = 0.5); }";

Test(grad_check, fails_on_a_corrupted_gradient) {
    ir_check_test_hook = scale_first_gradient;
    Checked r = run_check(seed_model, 1);
    ir_check_test_hook = NULL;
    cr_expect_eq(r.status, 1, "%s", r.text);
    cr_expect(strstr(r.text, "FAIL"), "%s", r.text);
    cr_expect(strstr(r.text, "FAILED: 1 of 4 parameters"), "%s", r.text);
    free(r.text);
    free(r.diag);
}

Test(grad_check, fails_when_pruning_changes_a_gradient) {
    // A relative change of 1e-6: within the finite-difference tolerance of the
    // pruned gradient, but far beyond rounding between pruned and unpruned.
    ir_check_test_hook = scale_unpruned_gradient;
    Checked r = run_check(seed_model, 1);
    ir_check_test_hook = NULL;
    cr_expect_eq(r.status, 1, "%s", r.text);
    cr_expect(strstr(r.text, "FAILED: 1 of 4 parameters"), "%s", r.text);
    free(r.text);
    free(r.diag);
}

Test(grad_check, same_seed_same_table) {
    Checked a = run_check(seed_model, 7), b = run_check(seed_model, 7);
    cr_expect_str_eq(a.text, b.text);
    free(a.text);
    free(a.diag);
    free(b.text);
    free(b.diag);
}

Test(grad_check, strongly_curved_function_passes_with_a_smaller_step) {
    // The logistic map iterated 10 times: derivatives grow like 4^10, and the
    // O(h^2 f''') error of the first step is too large; the check refines h.
    expect_pass("fn step(l) = 4 * l * (1 - l);\n"
                "model m { input x[1]; target y[1]; param w = constant(0.3);\n"
                "o = step(step(step(step(step(step(step(step(step(step(sigmoid(w * x)))))))))));\n"
                "output o; loss 0.5 * (o - y)^2; train sgd(lr = 0.01); }");
}

Test(grad_check, non_finite_objective_is_an_error) {
    // constant(-1) stays negative at the random point, and log of a negative is NaN.
    Checked r = run_check("model m { input x[1]; target y[1]; param w = constant(-1);\n"
                          "output w * x; loss sum(log(w * x)); train sgd(lr = 0.1); }", 1);
    cr_expect_eq(r.status, 1, "%s", r.text);
    cr_expect(strstr(r.diag, "error: the objective of 'm' is not finite at the random point (seed 1)"), "%s", r.diag);
    free(r.text);
    free(r.diag);
}
