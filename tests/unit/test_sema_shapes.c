// sema: shapes and lowering of expressions and built-ins (LANGUAGE.md §5).
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "sema_test.h"

// A model whose output is EXPR over x[X_DIMS].
static Result *output_of(const char *x_dims, const char *expr) {
    static char src[2048];
    snprintf(src, sizeof src,
             "model t { input x[%s]; param p = constant(1);\n"
             "  o = %s;\n  output o; loss sum(o) * p; train sgd(lr = 0.1); }\n", x_dims, expr);
    return compile_text(src);
}

static void assert_shape(const Result *r, NodeId id, const char *want) {
    char buf[64];
    cr_assert(r->m, "did not compile: %s", r->diag);
    ir_shape_str(node(r, id)->shape, buf, sizeof buf);
    cr_assert_str_eq(buf, want);
}

static void assert_output_shape(const char *x_dims, const char *expr, const char *want) {
    Result *r = output_of(x_dims, expr);
    cr_assert(r->m, "%s: did not compile: %s", expr, r->diag);
    char buf[64];
    ir_shape_str(node(r, r->m->output)->shape, buf, sizeof buf);
    cr_assert_str_eq(buf, want, "%s over x[%s]: got %s, want %s", expr, x_dims, buf, want);
}

static void assert_error(const char *x_dims, const char *expr, const char *msg) {
    Result *r = output_of(x_dims, expr);
    cr_assert_null(r->m, "%s compiled", expr);
    cr_assert(strstr(r->diag, msg), "%s: want '%s', got: %s", expr, msg, r->diag);
}

Test(sema, elementwise_unary_keep_shape) {
    const char *fns[] = { "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "softplus",
                          "sin", "cos", "square", "identity", "softmax", "log_softmax", "-" };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        char e[64];
        snprintf(e, sizeof e, "%s(x)", fns[i]);
        assert_output_shape("2,3", e, "[2,3]");
    }
    assert_output_shape("2,3", "leaky_relu(x, 0.01)", "[2,3]");
}

Test(sema, unary_builtins_lower_to_their_ops) {
    struct { const char *fn; IrOp op; } t[] = {
        { "exp", IR_EXP }, { "log", IR_LOG }, { "sqrt", IR_SQRT }, { "abs", IR_ABS },
        { "tanh", IR_TANH }, { "sigmoid", IR_SIGMOID }, { "relu", IR_RELU },
        { "softplus", IR_SOFTPLUS }, { "sin", IR_SIN }, { "cos", IR_COS }, { "square", IR_SQUARE },
        { "softmax", IR_SOFTMAX }, { "log_softmax", IR_LOG_SOFTMAX },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char e[64];
        snprintf(e, sizeof e, "%s(x)", t[i].fn);
        Result *r = output_of("4", e);
        cr_assert(r->m, "%s", r->diag);
        cr_assert_eq(node(r, r->m->output)->op, t[i].op, "%s", t[i].fn);
        cr_assert_eq(node(r, r->m->output)->arg[0], r->m->input);
    }
}

Test(sema, leaky_relu_keeps_alpha) {
    Result *r = output_of("4", "leaky_relu(x, alpha = 0.2)");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_eq(node(r, r->m->output)->op, IR_LEAKY_RELU);
    cr_assert_float_eq(node(r, r->m->output)->imm, 0.2, 1e-12);
}

Test(sema, identity_is_its_argument) {
    Result *r = output_of("4", "identity(x)");
    cr_assert(r->m);
    cr_assert_eq(r->m->output, r->m->input);
}

Test(sema, broadcasting_numpy_rules) {
    assert_output_shape("3", "x + 1", "[3]");
    assert_output_shape("2,3", "x * x", "[2,3]");
    assert_output_shape("2,1", "x + reshape(x, 2)", "[2,2]");
    assert_output_shape("4,1,3", "x - reshape(flatten(x), 4, 3)", "[4,4,3]");
    assert_output_shape("2,3", "max(x, 0) + min(x, 1)", "[2,3]");
}

Test(sema, broadcasting_mismatch_prints_both_shapes) {
    assert_error("2,3", "x + transpose(x)", "operands of '+' have incompatible shapes [2,3] and [3,2]");
    assert_error("2,3", "max(x, flatten(x))", "operands of 'max' have incompatible shapes [2,3] and [6]");
    Result *r = compile_text("model t { input x[3]; target y[4]; o = x * y; output o;\n"
                             "loss sum(o); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:1:42: error: operands of '*' have incompatible shapes [3] and [4]"),
              "got: %s", r->diag);
}

Test(sema, matmul_shapes) {
    Result *r = compile_text(
        "model t { input x[3]; param A[4, 3] = zeros(); param B[3, 5] = zeros();\n"
        "a = A @ x; b = x @ B; c = A @ B; d = x @ x;\n"
        "output a; loss sum(a) + sum(b) + sum(c) + d; train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    // loss = ((sum(a) + sum(b)) + sum(c)) + d
    const Node *loss = node(r, r->m->loss);
    cr_assert_eq(loss->op, IR_ADD);
    assert_shape(r, r->m->output, "[4]");
    int found[4] = { 0 };
    for (NodeId id = 1; id < r->m->g->n_nodes; id++) {
        const Node *n = node(r, id);
        if (n->op != IR_MATMUL) continue;
        char buf[64];
        ir_shape_str(n->shape, buf, sizeof buf);
        if (!strcmp(buf, "[4]")) found[0]++;
        if (!strcmp(buf, "[5]")) found[1]++;
        if (!strcmp(buf, "[4,5]")) found[2]++;
        if (!strcmp(buf, "[]")) found[3]++;
    }
    for (int k = 0; k < 4; k++) cr_assert_eq(found[k], 1, "rule %d", k);
}

Test(sema, matmul_inner_mismatch_message) {
    Result *r = compile_text("model t { input x[784]; param W[128, 784] = zeros(); target y[10];\n"
                             "output W @ y; loss sum(W @ x); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:2:10: error: inner dimensions differ in '@': [128,784] @ [10]\n"
                              "output W @ y; loss sum(W @ x); train sgd(lr = 0.1); }\n"
                              "         ^\n"), "got: %s", r->diag);
}

Test(sema, reductions_are_scalars) {
    assert_output_shape("2,3", "sum(x)", "[]");
    assert_output_shape("2,3", "mean(x)", "[]");
    assert_output_shape("2,3", "logsumexp(x)", "[]");
}

Test(sema, mean_is_sum_times_inverse_count) {
    Result *r = output_of("2,4", "mean(x)");
    cr_assert(r->m, "%s", r->diag);
    const Node *o = node(r, r->m->output);
    cr_assert_eq(o->op, IR_MUL);
    const Node *a = node(r, o->arg[0]), *b = node(r, o->arg[1]);
    if (a->op == IR_CONST) { const Node *t = a; a = b; b = t; }
    cr_assert_eq(a->op, IR_SUM);
    cr_assert_eq(b->op, IR_CONST);
    cr_assert_float_eq(b->imm, 1.0 / 8, 1e-15);
}

Test(sema, square_for_power_two) {
    Result *r = output_of("3", "x ^ 2");
    cr_assert(r->m);
    cr_assert_eq(node(r, r->m->output)->op, IR_SQUARE);
    r = output_of("3", "x ^ 3");
    cr_assert(r->m);
    cr_assert_eq(node(r, r->m->output)->op, IR_POW);
    r = output_of("3", "x ^ x");     // a non-constant exponent is allowed
    cr_assert(r->m);
    cr_assert_eq(node(r, r->m->output)->op, IR_POW);
}

Test(sema, power_is_right_associative_and_binds_tighter_than_minus) {
    Result *r = output_of("3", "-x ^ 2");      // -(x^2)
    cr_assert(r->m);
    cr_assert_eq(node(r, r->m->output)->op, IR_NEG);
    cr_assert_eq(node(r, node(r, r->m->output)->arg[0])->op, IR_SQUARE);
}

Test(sema, constants_fold) {
    Result *r = output_of("3", "x * (2 * 64 - 1)");
    cr_assert(r->m);
    const Node *o = node(r, r->m->output);
    const Node *k = node(r, o->arg[0])->op == IR_CONST ? node(r, o->arg[0]) : node(r, o->arg[1]);
    cr_assert_eq(k->op, IR_CONST);
    cr_assert_float_eq(k->imm, 127, 0);
}

Test(sema, shape_builtins) {
    assert_output_shape("2,3", "transpose(x)", "[3,2]");
    assert_output_shape("2,3,4", "flatten(x)", "[24]");
    assert_output_shape("24", "reshape(x, 2, 3, 4)", "[2,3,4]");
    assert_output_shape("24", "reshape(x, 2 * 2, 6)", "[4,6]");
    assert_error("3", "transpose(x)", "'transpose' expects a matrix, got [3]");
    assert_error("24", "reshape(x, 5)", "cannot reshape [24] (24 elements) to [5] (5 elements)");
    assert_error("24", "reshape(x, 1, 2, 3, 2, 2)", "'reshape' expects at most 5 arguments, got 6");
}

Test(sema, losses_are_scalars_and_check_shapes) {
    const char *losses[] = { "mse", "sse", "cross_entropy", "softmax_cross_entropy",
                             "binary_cross_entropy" };
    for (size_t i = 0; i < 5; i++) {
        char e[128];
        snprintf(e, sizeof e, "%s(sigmoid(x), x)", losses[i]);
        assert_output_shape("2,5", e, "[]");
        snprintf(e, sizeof e, "%s(x, reshape(x, 5, 2))", losses[i]);
        assert_error("2,5", e, "incompatible shapes [2,5] and [5,2]");
    }
}

Test(sema, mse_expands_to_mean_of_squares) {
    Result *r = output_of("4", "mse(x, 1)");
    cr_assert(r->m);
    const Node *o = node(r, r->m->output);        // sum(square(x - 1)) * 0.25
    cr_assert_eq(o->op, IR_MUL);
    const Node *s = node(r, o->arg[0])->op == IR_SUM ? node(r, o->arg[0]) : node(r, o->arg[1]);
    cr_assert_eq(s->op, IR_SUM);
    cr_assert_eq(node(r, s->arg[0])->op, IR_SQUARE);
    cr_assert_eq(node(r, node(r, s->arg[0])->arg[0])->op, IR_SUB);
}

Test(sema, softmax_cross_entropy_uses_log_softmax) {
    Result *r = output_of("4", "softmax_cross_entropy(x, x)");
    cr_assert(r->m);
    const Node *o = node(r, r->m->output);        // -sum(y * log_softmax(z))
    cr_assert_eq(o->op, IR_NEG);
    const Node *s = node(r, o->arg[0]);
    cr_assert_eq(s->op, IR_SUM);
    const Node *mul = node(r, s->arg[0]);
    cr_assert_eq(mul->op, IR_MUL);
    cr_assert(node(r, mul->arg[0])->op == IR_LOG_SOFTMAX || node(r, mul->arg[1])->op == IR_LOG_SOFTMAX);
}

Test(sema, loss_of_one_element_counts_as_scalar) {
    Result *r = compile_text("model t { input x[3]; target y[1]; o = dense(x, 1); output o;\n"
                             "loss (o - y)^2; train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    assert_shape(r, r->m->loss, "[]");
    cr_assert_eq(node(r, r->m->loss)->op, IR_RESHAPE);
}

Test(sema, loss_must_be_scalar) {
    Result *r = compile_text("model t { input x[3]; o = x * 2; output o;\n"
                             "loss o; train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:2:6: error: the loss must be a scalar, got [3]"), "%s", r->diag);
}

Test(sema, scalar_param_and_one_element_input) {
    Result *r = compile_text("model t { input x[1]; target y[1]; param w = constant(0.5);\n"
                             "output w * x; loss (w * x - y)^2; train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    assert_shape(r, r->m->params[0].node, "[]");
    assert_shape(r, r->m->output, "[1]");
    assert_shape(r, r->m->loss, "[]");
}

Test(sema, deep_nesting_does_not_recurse) {
    enum { DEPTH = 10000 };
    size_t cap = DEPTH * 8 + 256;
    char *src = malloc(cap), *p = src;
    p += sprintf(p, "model t { input x[2]; o = ");
    for (int i = 0; i < DEPTH; i++) p += sprintf(p, "-(");
    p += sprintf(p, "x");
    for (int i = 0; i < DEPTH; i++) *p++ = ')';
    p += sprintf(p, "; output o; loss sum(o); train sgd(lr = 0.1); }\n");
    Result *r = compile_text(src);
    cr_assert(r->m, "%.500s", r->diag);
    // -(-(x)) pairs: DEPTH is even, so a chain of DEPTH negations
    cr_assert_eq(node(r, r->m->output)->op, IR_NEG);
    free(src);
}

Test(sema, batch_objective_mean_and_sum) {
    Result *r = compile_text("model t { input x[3]; o = x * 2; output o; loss sum(o);\n"
                             "train sgd(lr = 0.1); }\n");
    cr_assert(r->m);
    const Node *obj = node(r, r->m->objective);
    cr_assert_eq(obj->op, IR_MUL);
    cr_assert_eq(node(r, obj->arg[0])->op, IR_BATCH_SUM);
    cr_assert_eq(node(r, obj->arg[1])->op, IR_SCALAR_ARG);
    cr_assert_eq((int)node(r, obj->arg[1])->imm, IR_ARG_INV_BATCH);
    r = compile_text("model t { input x[3]; o = x * 2; output o; loss sum(o);\n"
                     "train sgd(lr = 0.1, reduce = sum); }\n");
    cr_assert(r->m);
    cr_assert_eq(node(r, r->m->objective)->op, IR_BATCH_SUM);
    cr_assert_eq(node(r, r->m->objective)->arg[0], r->m->loss);
    cr_assert_eq(node(r, r->m->objective)->flags & IR_F_BATCH, 0);
}
