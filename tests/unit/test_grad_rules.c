// Derivative rules (grad.c), one small model per rule: the symbolic gradient
// evaluated by the interpreter must match central finite differences of the
// interpreted objective (relative error <= 1e-6, double), and pruning
// (simplify + dce) must not change it.
#include <criterion/criterion.h>

#include "test_grad_util.h"

static Arena arena;
static Graph *g;

static void setup(void) {
    memset(&arena, 0, sizeof arena);
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(grad, .init = setup, .fini = teardown);

// Differentiates m, checks the gradient against finite differences on data
// in [lo, hi], then prunes and checks the gradient did not move.
static void check_model(Model *m, double lo, double hi) {
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 3, 7, lo, hi);
    double err = tm_check(&arena, m, &d);
    cr_assert_leq(err, 1e-6, "gradient error %g", err);

    double *before = tm_grads(&arena, m, &d);
    ir_pass_simplify(m);
    ir_pass_dce(m);
    double *after = tm_grads(&arena, m, &d);
    for (size_t j = 0; j < m->param_count; j++)
        cr_assert_leq(fabs(before[j] - after[j]), 1e-12 * fmax(1, fabs(before[j])),
                      "pruning moved gradient %zu: %.17g -> %.17g", j, before[j], after[j]);
}

// A model whose output f has shape `fs`: loss = sum(f * y), y a random target
// of f's shape, so that every element of f gets a different adjoint.
static Model *model(Shape xs, Shape fs) {
    Model *m = tm_new(&arena, xs, fs);
    g = m->g;
    return m;
}

static void finish(Model *m, NodeId f) {
    NodeId loss = ir_reduce(g, IR_SUM, ir_binary(g, IR_MUL, f, m->target, tm_at), tm_at);
    tm_finish(m, f, loss, true);
}

static NodeId mul(NodeId a, NodeId b) {
    return ir_binary(g, IR_MUL, a, b, tm_at);
}

// p * x, per sample, with p a parameter of x's shape.
static NodeId lin(Model *m) {
    return mul(tm_param(m, g->nodes[m->input].shape), m->input);
}

// ---- The table

Test(grad, every_non_leaf_op_has_a_rule) {
    for (int op = 0; op < IR_N_OPS; op++) {
        bool leaf = ir_op_info[op].kind == IR_KIND_LEAF;
        cr_assert_eq(ir_has_grad_rule((IrOp)op), !leaf, "op '%s': rule %s", ir_op_info[op].name,
                     leaf ? "on a leaf" : "missing");
    }
}

// ---- Elementwise, one operand: f = op(h) with h = p * x (exp(p * x) where
// the op needs a positive argument).

static void unary_case(IrOp op, double alpha, bool positive, bool plus_h) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId h = lin(m);
    if (positive)
        h = ir_unary(g, IR_EXP, h, tm_at);
    NodeId f = op == IR_LEAKY_RELU ? ir_leaky_relu(g, h, alpha, tm_at) : ir_unary(g, op, h, tm_at);
    if (plus_h)   // piecewise-constant ops: add h so that the parameter still has a gradient
        f = ir_binary(g, IR_ADD, f, h, tm_at);
    finish(m, f);
    check_model(m, -1, 1);
}

Test(grad, rule_neg) { unary_case(IR_NEG, 0, false, false); }
Test(grad, rule_exp) { unary_case(IR_EXP, 0, false, false); }
Test(grad, rule_log) { unary_case(IR_LOG, 0, true, false); }
Test(grad, rule_sqrt) { unary_case(IR_SQRT, 0, true, false); }
Test(grad, rule_abs) { unary_case(IR_ABS, 0, false, false); }
Test(grad, rule_tanh) { unary_case(IR_TANH, 0, false, false); }
Test(grad, rule_sigmoid) { unary_case(IR_SIGMOID, 0, false, false); }
Test(grad, rule_relu) { unary_case(IR_RELU, 0, false, false); }
Test(grad, rule_softplus) { unary_case(IR_SOFTPLUS, 0, false, false); }
Test(grad, rule_sin) { unary_case(IR_SIN, 0, false, false); }
Test(grad, rule_cos) { unary_case(IR_COS, 0, false, false); }
Test(grad, rule_square) { unary_case(IR_SQUARE, 0, false, false); }
Test(grad, rule_leaky_relu) { unary_case(IR_LEAKY_RELU, 0.1, false, false); }
Test(grad, rule_leaky_relu_negative_slope) { unary_case(IR_LEAKY_RELU, -0.5, false, false); }
Test(grad, rule_step_is_zero) { unary_case(IR_STEP, 0, false, true); }
Test(grad, rule_sign_is_zero) { unary_case(IR_SIGN, 0, false, true); }

// ---- Elementwise, two operands: a per sample, b a parameter of shape bs
// (a smaller bs exercises REDUCE_TO, an invariant b BATCH_SUM).

static void binary_case(IrOp op, Shape bs, bool positive_a, double lo, double hi) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId a = lin(m);
    if (positive_a)
        a = ir_unary(g, IR_EXP, a, tm_at);
    NodeId b = tm_param(m, bs);
    finish(m, ir_binary(g, op, a, b, tm_at));
    check_model(m, lo, hi);
}

Test(grad, rule_add) { binary_case(IR_ADD, shape_n(1, 4), false, -1, 1); }
Test(grad, rule_add_broadcast_scalar) { binary_case(IR_ADD, shape_n(0), false, -1, 1); }
Test(grad, rule_sub) { binary_case(IR_SUB, shape_n(1, 4), false, -1, 1); }
Test(grad, rule_sub_broadcast_one) { binary_case(IR_SUB, shape_n(1, 1), false, -1, 1); }
Test(grad, rule_mul) { binary_case(IR_MUL, shape_n(1, 4), false, -1, 1); }
Test(grad, rule_mul_broadcast_scalar) { binary_case(IR_MUL, shape_n(0), false, -1, 1); }
Test(grad, rule_div) { binary_case(IR_DIV, shape_n(1, 4), false, 0.5, 1.5); }
Test(grad, rule_pow_variable_exponent) { binary_case(IR_POW, shape_n(1, 4), true, -1, 1); }
Test(grad, rule_max) { binary_case(IR_MAX, shape_n(1, 4), false, -1, 1); }
Test(grad, rule_min) { binary_case(IR_MIN, shape_n(1, 4), false, -1, 1); }

Test(grad, rule_ge_is_zero) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId a = lin(m), b = tm_param(m, s);
    finish(m, ir_binary(g, IR_ADD, ir_binary(g, IR_GE, a, b, tm_at), mul(a, b), tm_at));
    check_model(m, -1, 1);
}

static void pow_const_case(double c) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId a = ir_unary(g, IR_EXP, lin(m), tm_at);
    NodeId f = ir_binary(g, IR_POW, a, ir_scalar(g, c), tm_at);
    finish(m, ir_binary(g, IR_ADD, f, a, tm_at));     // + a: c = 0 still has a gradient
    check_model(m, -1, 1);
}

Test(grad, rule_pow_const_3) { pow_const_case(3); }
Test(grad, rule_pow_const_2) { pow_const_case(2); }
Test(grad, rule_pow_const_1) { pow_const_case(1); }
Test(grad, rule_pow_const_half) { pow_const_case(0.5); }
Test(grad, rule_pow_const_0) { pow_const_case(0); }

// Ties: max(a, a) sends everything to the first operand, min too (§7).
Test(grad, rule_max_tie_goes_to_first_operand) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId p = tm_param(m, s), q = tm_param(m, s);
    finish(m, ir_binary(g, IR_MAX, p, q, tm_at));
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 2, 3, -1, 1);
    memcpy(d.params + 4, d.params, 4 * sizeof(double));        // q = p: every element ties
    double *gr = tm_grads(&arena, m, &d);
    for (int j = 0; j < 4; j++) {
        cr_assert_float_eq(gr[j], (d.y[j] + d.y[4 + j]) / 2, 1e-12);  // loss sum(f * y), mean of 2 samples
        cr_assert_eq(gr[4 + j], 0.0);
    }
}

// ---- Linear algebra

Test(grad, rule_matmul_matrix_vector) {          // [m,k] @ [k] -> [m]
    Model *m = model(shape_n(1, 3), shape_n(1, 2));
    NodeId w = tm_param(m, shape_n(2, 2, 3));
    finish(m, ir_matmul(g, w, lin(m), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_matmul_vector_matrix) {          // [k] @ [k,n] -> [n]
    Model *m = model(shape_n(1, 3), shape_n(1, 2));
    NodeId w = tm_param(m, shape_n(2, 3, 2));
    finish(m, ir_matmul(g, lin(m), w, tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_matmul_matrix_matrix) {          // [m,k] @ [k,n] -> [m,n]
    Model *m = model(shape_n(1, 6), shape_n(2, 2, 2));
    NodeId a = ir_reshape(g, lin(m), shape_n(2, 2, 3), tm_at);
    NodeId w = tm_param(m, shape_n(2, 3, 2));
    finish(m, ir_matmul(g, a, w, tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_matmul_dot) {                    // [k] @ [k] -> []
    Model *m = model(shape_n(1, 3), shape_n(0));
    NodeId w = tm_param(m, shape_n(1, 3));
    finish(m, ir_matmul(g, lin(m), w, tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_outer) {
    Model *m = model(shape_n(1, 3), shape_n(2, 3, 2));
    NodeId q = tm_param(m, shape_n(1, 2));
    finish(m, ir_outer(g, lin(m), q, tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_transpose) {
    Model *m = model(shape_n(1, 6), shape_n(2, 3, 2));
    finish(m, ir_transpose(g, ir_reshape(g, lin(m), shape_n(2, 2, 3), tm_at), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_reshape) {
    Model *m = model(shape_n(1, 6), shape_n(2, 2, 3));
    finish(m, ir_reshape(g, lin(m), shape_n(2, 2, 3), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_broadcast) {
    Model *m = model(shape_n(2, 2, 3), shape_n(2, 2, 3));
    NodeId p = tm_param(m, shape_n(1, 3));
    finish(m, mul(ir_broadcast(g, p, shape_n(2, 2, 3), tm_at), m->input));
    check_model(m, -1, 1);
}

Test(grad, rule_reduce_to) {
    Model *m = model(shape_n(2, 2, 3), shape_n(2, 2, 1));
    finish(m, ir_reduce_to(g, lin(m), shape_n(2, 2, 1), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_sum) {
    Model *m = model(shape_n(2, 2, 3), shape_n(0));
    finish(m, ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, lin(m), tm_at), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_sum_last) {
    Model *m = model(shape_n(2, 2, 3), shape_n(2, 2, 1));
    finish(m, ir_reduce(g, IR_SUM_LAST, ir_unary(g, IR_SIN, lin(m), tm_at), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_logsumexp) {
    Model *m = model(shape_n(2, 2, 3), shape_n(0));
    finish(m, ir_reduce(g, IR_LOGSUMEXP, lin(m), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_softmax) {
    Model *m = model(shape_n(2, 2, 3), shape_n(2, 2, 3));
    finish(m, ir_softmax(g, IR_SOFTMAX, lin(m), tm_at));
    check_model(m, -1, 1);
}

Test(grad, rule_log_softmax) {
    Model *m = model(shape_n(1, 4), shape_n(1, 4));
    finish(m, ir_softmax(g, IR_LOG_SOFTMAX, lin(m), tm_at));
    check_model(m, -1, 1);
}

// An invariant BATCH_SUM inside the per-sample loss: every sample's
// gradient depends on the others (as in batch normalisation).
Test(grad, rule_batch_sum_inside_loss) {
    Shape s = shape_n(1, 3);
    Model *m = model(s, s);
    NodeId h = lin(m);
    finish(m, mul(h, ir_reduce(g, IR_BATCH_SUM, ir_unary(g, IR_TANH, h, tm_at), tm_at)));
    check_model(m, -1, 1);
}

// ---- Cross-entropy: softmax followed by cross-entropy differentiates to
// g * (p * sum(y) - y), without dividing by p.

static Model *cross_entropy(bool via_log_of_softmax) {
    Model *m = model(shape_n(1, 3), shape_n(1, 4));
    NodeId w = tm_param(m, shape_n(2, 4, 3)), b = tm_param(m, shape_n(1, 4));
    NodeId z = ir_binary(g, IR_ADD, ir_matmul(g, w, m->input, tm_at), b, tm_at);
    NodeId lp = via_log_of_softmax ? ir_unary(g, IR_LOG, ir_softmax(g, IR_SOFTMAX, z, tm_at), tm_at)
                                   : ir_softmax(g, IR_LOG_SOFTMAX, z, tm_at);
    NodeId loss = ir_unary(g, IR_NEG, ir_reduce(g, IR_SUM, mul(m->target, lp), tm_at), tm_at);
    tm_finish(m, z, loss, true);
    return m;
}

Test(grad, rule_cross_entropy_log_softmax) {
    Model *m = cross_entropy(false);
    check_model(m, -1, 1);
    cr_assert_eq(tm_count_op(m, IR_DIV), 0);
}

Test(grad, rule_cross_entropy_log_of_softmax) {
    Model *m = cross_entropy(true);
    check_model(m, -1, 1);
    cr_assert_eq(tm_count_op(m, IR_DIV), 0, "log(softmax) must not divide by p");
}

// Probabilities that underflow: log(softmax(z)) is -inf where p = 0 but its
// gradient is finite (the fused rule), where g/p would give NaN.
Test(grad, rule_log_of_softmax_gradient_finite_when_p_underflows) {
    Model *m = cross_entropy(true);
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 1, 5, 0, 1);
    for (int i = 0; i < 4; i++)
        d.y[i] = i == 0 ? 1 : 0;                 // only class 0 counts
    d.params[12 + 3] = 2000;                     // b[3] huge: p[0..2] underflow to 0
    double *gr = tm_grads(&arena, m, &d);
    for (size_t j = 0; j < m->param_count; j++)
        cr_assert(isfinite(gr[j]), "gradient %zu is %g", j, gr[j]);
    cr_assert_float_eq(gr[12 + 0], -1.0, 1e-12);  // d/db0 = p0 - y0 = -1
    cr_assert_float_eq(gr[12 + 3], 1.0, 1e-12);   // d/db3 = p3 - y3 = 1
}

// ---- Convolution and pooling

static void conv_case(int stride, int padding) {
    Model *m = model(shape_n(3, 1, 5, 5), shape_n(0));
    NodeId w = tm_param(m, shape_n(4, 2, 1, 3, 3));
    NodeId c = ir_conv2d(g, lin(m), w, stride, padding, tm_at);
    NodeId loss = ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, c, tm_at), tm_at);
    tm_finish(m, c, loss, true);
    check_model(m, -1, 1);
}

Test(grad, rule_conv2d) { conv_case(1, 0); }
Test(grad, rule_conv2d_padded) { conv_case(1, 1); }
Test(grad, rule_conv2d_strided) { conv_case(2, 1); }

static void pool_case(IrOp op, int size, int stride) {
    Model *m = model(shape_n(3, 2, 4, 4), shape_n(0));
    NodeId pool = ir_pool2d(g, op, lin(m), size, stride, tm_at);
    NodeId loss = ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, pool, tm_at), tm_at);
    tm_finish(m, pool, loss, true);
    check_model(m, -1, 1);
}

Test(grad, rule_maxpool2d) { pool_case(IR_MAXPOOL2D, 2, 2); }
Test(grad, rule_maxpool2d_overlapping) { pool_case(IR_MAXPOOL2D, 2, 1); }
Test(grad, rule_avgpool2d) { pool_case(IR_AVGPOOL2D, 2, 2); }
Test(grad, rule_avgpool2d_overlapping) { pool_case(IR_AVGPOOL2D, 3, 1); }

// The gradient ops themselves (a train step differentiated again).
Test(grad, rule_conv2d_dx) {
    Model *m = model(shape_n(3, 2, 3, 3), shape_n(0));
    NodeId w = tm_param(m, shape_n(4, 2, 1, 3, 3));
    NodeId dx = ir_node_shaped(g, IR_CONV2D_DX, lin(m), w, shape_n(3, 1, 5, 5), 1, 0, tm_at);
    tm_finish(m, dx, ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, dx, tm_at), tm_at), true);
    check_model(m, -1, 1);
}

Test(grad, rule_conv2d_dw) {
    Model *m = model(shape_n(3, 1, 5, 5), shape_n(0));
    NodeId a = tm_param(m, shape_n(3, 2, 3, 3));
    NodeId dw = ir_node_shaped(g, IR_CONV2D_DW, a, lin(m), shape_n(4, 2, 1, 3, 3), 1, 0, tm_at);
    tm_finish(m, dw, ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, dw, tm_at), tm_at), true);
    check_model(m, -1, 1);
}

Test(grad, rule_avgpool2d_dx) {
    Model *m = model(shape_n(3, 1, 2, 2), shape_n(0));
    NodeId dx = ir_node_shaped(g, IR_AVGPOOL2D_DX, lin(m), 0, shape_n(3, 1, 4, 4), 2, 2, tm_at);
    tm_finish(m, dx, ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, dx, tm_at), tm_at), true);
    check_model(m, -1, 1);
}

// ---- Objective forms and sharing

Test(grad, objective_reduce_sum) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId f = ir_unary(g, IR_TANH, lin(m), tm_at);
    tm_finish(m, f, ir_reduce(g, IR_SUM, mul(f, m->target), tm_at), false);
    check_model(m, -1, 1);
}

// A parameter used many times: one accumulation, one BATCH_SUM.
Test(grad, parameter_used_many_times_has_one_batch_sum) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId p = tm_param(m, s);
    NodeId h = m->input;
    for (int i = 0; i < 5; i++)
        h = ir_unary(g, IR_TANH, mul(p, h), tm_at);
    finish(m, h);
    check_model(m, -1, 1);
    cr_assert_eq(tm_count_op(m, IR_BATCH_SUM), 2, "objective + one for p: got %d", tm_count_op(m, IR_BATCH_SUM));
}

// A parameter the objective does not depend on gets zeros.
Test(grad, unused_parameter_gets_zeros) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    finish(m, lin(m));
    tm_param(m, shape_n(1, 2));
    ir_differentiate(m);
    const Node *d = &m->g->nodes[m->grads[1]];
    cr_assert_eq(d->op, IR_CONST);
    cr_assert_eq(d->imm, 0.0);
    cr_assert_eq(d->shape.dim[0], 2);
}

// The checker itself: a wrong gradient (here: zeros) is caught.
Test(grad, checker_catches_a_wrong_gradient) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    finish(m, ir_unary(g, IR_SIGMOID, lin(m), tm_at));
    ir_differentiate(m);
    m->grads[0] = ir_unary(g, IR_NEG, m->grads[0], tm_at);
    TmData d = tm_data(&arena, m, 3, 7, -1, 1);
    cr_assert_gt(tm_check(&arena, m, &d), 1e-3);
}

// Class weights w[3] over log_softmax rows [2,3]: the adjoint w * g varies
// along the last axis, so the cross-entropy shortcut must not apply.
Test(grad, rule_log_softmax_with_class_weights) {
    Model *m = model(shape_n(2, 2, 3), shape_n(0));
    NodeId w = tm_param(m, shape_n(1, 3));
    NodeId ls = ir_softmax(g, IR_LOG_SOFTMAX, lin(m), tm_at);
    NodeId loss = ir_reduce(g, IR_SUM, mul(w, ls), tm_at);
    tm_finish(m, ls, loss, true);
    check_model(m, -1, 1);
}

// A parameter-only term in the per-sample loss (an L2 penalty written in the
// loss): the per-sample ADD's adjoint is the invariant 1/batch, but the
// penalty receives it once per sample, so its gradient is batch * (1/batch) * 2W.
static void invariant_term_case(bool mean) {
    Shape s = shape_n(1, 4);
    Model *m = model(s, s);
    NodeId p = tm_param(m, s);
    NodeId f = ir_unary(g, IR_TANH, mul(p, m->input), tm_at);
    NodeId fit = ir_reduce(g, IR_SUM, mul(f, m->target), tm_at);
    NodeId penalty = ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, p, tm_at), tm_at);
    tm_finish(m, f, ir_binary(g, IR_ADD, fit, penalty, tm_at), mean);
    check_model(m, -1, 1);
}

Test(grad, invariant_term_in_per_sample_loss_mean) { invariant_term_case(true); }
Test(grad, invariant_term_in_per_sample_loss_sum) { invariant_term_case(false); }

// ---- Binary cross-entropy: log(sigmoid(z)) and log(1 - sigmoid(z)) are
// differentiated straight to z (1 - s and -s), without dividing by s or 1 - s.

static Model *binary_cross_entropy(void) {
    Model *m = model(shape_n(1, 3), shape_n(1, 2));
    NodeId w = tm_param(m, shape_n(2, 2, 3)), b = tm_param(m, shape_n(1, 2));
    NodeId s = ir_unary(g, IR_SIGMOID, ir_binary(g, IR_ADD, ir_matmul(g, w, m->input, tm_at), b, tm_at), tm_at);
    NodeId one = ir_scalar(g, 1);
    NodeId pos = mul(m->target, ir_unary(g, IR_LOG, s, tm_at));
    NodeId neg = mul(ir_binary(g, IR_SUB, one, m->target, tm_at),
                     ir_unary(g, IR_LOG, ir_binary(g, IR_SUB, one, s, tm_at), tm_at));
    NodeId loss = ir_unary(g, IR_NEG, ir_reduce(g, IR_SUM, ir_binary(g, IR_ADD, pos, neg, tm_at), tm_at), tm_at);
    tm_finish(m, s, loss, true);
    return m;
}

Test(grad, rule_binary_cross_entropy) {
    Model *m = binary_cross_entropy();
    check_model(m, -1, 1);
    cr_assert_eq(tm_count_op(m, IR_DIV), 0, "bce must not divide by s or 1 - s");
}

// s saturates to 1 (z = 60): log(1 - s) = -inf but its gradient, -s, is finite.
Test(grad, rule_binary_cross_entropy_gradient_finite_when_saturated) {
    Model *m = binary_cross_entropy();
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 1, 5, 0, 1);
    d.params[6] = 60;                            // b[0]: s[0] = 1 in double
    d.y[0] = 1;
    double *gr = tm_grads(&arena, m, &d);
    for (size_t j = 0; j < m->param_count; j++)
        cr_assert(isfinite(gr[j]), "gradient %zu is %g", j, gr[j]);
    cr_assert_float_eq(gr[6], 0.0, 1e-12);      // d/db0 = s0 - y0 = 1 - 1
}

// ---- LANGUAGE.md §7 at the non-differentiable points, exactly

// loss = sum(op(p) * y) at p = 0: the gradient is 0 (relu'(0) = abs'(0) = 0).
static double *at_zero(IrOp op) {
    Shape s = shape_n(1, 2);
    Model *m = model(s, s);
    NodeId p = tm_param(m, s);
    finish(m, ir_binary(g, IR_ADD, ir_unary(g, op, p, tm_at), mul(m->input, ir_scalar(g, 0.5)), tm_at));
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 1, 3, 1, 2);
    d.params[0] = 0.0;
    d.params[1] = -0.0;
    return tm_grads(&arena, m, &d);
}

Test(grad, relu_derivative_at_zero_is_zero) {
    double *gr = at_zero(IR_RELU);
    cr_assert_eq(gr[0], 0.0);
    cr_assert_eq(gr[1], 0.0);
}

Test(grad, abs_derivative_at_zero_is_zero) {
    double *gr = at_zero(IR_ABS);
    cr_assert_eq(gr[0], 0.0);
    cr_assert_eq(gr[1], 0.0);
}

// min(a, b) with a = b sends everything to a.
Test(grad, min_tie_goes_to_first_operand) {
    Shape s = shape_n(1, 2);
    Model *m = model(s, s);
    NodeId p = tm_param(m, s), q = tm_param(m, s);
    finish(m, ir_binary(g, IR_MIN, p, q, tm_at));
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 1, 3, -1, 1);
    memcpy(d.params + 2, d.params, 2 * sizeof(double));
    double *gr = tm_grads(&arena, m, &d);
    for (int j = 0; j < 2; j++) {
        cr_assert_float_eq(gr[j], d.y[j], 1e-15);
        cr_assert_eq(gr[2 + j], 0.0);
    }
}

// maxpool2d over a window of equal values sends the adjoint to the first
// element in row-major order.
Test(grad, maxpool_tie_goes_to_first_element) {
    Model *m = model(shape_n(3, 1, 2, 2), shape_n(3, 1, 1, 1));
    NodeId p = tm_param(m, shape_n(3, 1, 2, 2));
    finish(m, ir_pool2d(g, IR_MAXPOOL2D, ir_binary(g, IR_ADD, p, m->input, tm_at), 2, 2, tm_at));
    ir_differentiate(m);
    TmData d = tm_data(&arena, m, 1, 3, -1, 1);
    for (int i = 0; i < 4; i++) {
        d.x[i] = 0;
        d.params[i] = 0.25;                      // all four equal
    }
    double *gr = tm_grads(&arena, m, &d);
    cr_assert_float_eq(gr[0], d.y[0], 1e-15);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(gr[i], 0.0);
}
