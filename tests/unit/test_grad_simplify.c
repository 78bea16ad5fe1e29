// pass_simplify.c, one test per rule: the rewrite fires (the output node has
// the expected form), the interpreter's values do not change (bit for bit,
// NaN included) and the live node count does not grow.
#include <criterion/criterion.h>

#include "test_grad_util.h"

static Arena arena;
static Graph *g;
static Model *m;
static NodeId h;       // sin(p * x): a per-sample [4] value with no special form

static void setup(void) {
    memset(&arena, 0, sizeof arena);
    Shape s = shape_n(1, 4);
    m = tm_new(&arena, s, s);
    g = m->g;
    h = ir_unary(g, IR_SIN, ir_binary(g, IR_MUL, tm_param(m, s), m->input, tm_at), tm_at);
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(simplify, .init = setup, .fini = teardown);

static NodeId k(double v) {
    return ir_scalar(g, v);
}
static NodeId bin(IrOp op, NodeId a, NodeId b) {
    return ir_binary(g, op, a, b, tm_at);
}
static NodeId un(IrOp op, NodeId a) {
    return ir_unary(g, op, a, tm_at);
}

// The output's values (batch * numel doubles for a per-sample output).
static double *output_values(const TmData *d, size_t *n) {
    Arena scratch = { 0 };
    double **vals = tm_interp(m, d, &scratch);
    const Node *o = &m->g->nodes[m->output];
    *n = (size_t)ir_numel(o->shape) * ((o->flags & IR_F_BATCH) ? d->batch : 1);
    double *out = nn_alloc_array(&arena, *n, sizeof(double));
    memcpy(out, vals[m->output], *n * sizeof(double));
    nn_arena_free(&scratch);
    return out;
}

// Makes f the output (and sum(f) the loss), simplifies, checks values and size;
// returns the simplified output node.
// Runs the simplifier on m: the output's values on d are the same bits (NaN
// for NaN) and the live node count does not grow. seed names the case.
static void simplify_keeps_values(TmData *d, unsigned long seed) {
    size_t n_before, n_after;
    double *before = output_values(d, &n_before);
    uint32_t live_before = ir_count_live(m);
    ir_pass_simplify(m);
    g = m->g;
    double *after = output_values(d, &n_after);
    cr_assert_eq(n_before, n_after);
    for (size_t i = 0; i < n_before; i++)
        cr_assert(memcmp(&before[i], &after[i], sizeof(double)) == 0 || (isnan(before[i]) && isnan(after[i])),
                  "seed %lu, value %zu changed: %.17g -> %.17g", seed, i, before[i], after[i]);
    cr_assert_leq(ir_count_live(m), live_before);
}

static const Node *simplify(NodeId f, double lo, double hi) {
    NodeId loss = ir_reduce(g, IR_SUM, f, tm_at);
    tm_finish(m, f, loss, true);
    TmData d = tm_data(&arena, m, 2, 11, lo, hi);
    simplify_keeps_values(&d, 11);
    return &m->g->nodes[m->output];
}

// The simplified output is h itself (sin of ...).
static void assert_is_h(const Node *o) {
    cr_assert_eq(o->op, IR_SIN, "got '%s'", ir_op_info[o->op].name);
}

static void assert_op(const Node *o, IrOp op) {
    cr_assert_eq(o->op, op, "expected '%s', got '%s'", ir_op_info[op].name, ir_op_info[o->op].name);
}

Test(simplify, mul_by_one) { assert_is_h(simplify(bin(IR_MUL, h, k(1)), -1, 1)); }
Test(simplify, one_times_x) { assert_is_h(simplify(bin(IR_MUL, k(1), h), -1, 1)); }
// x + 0 -> x needs x never to be -0 (-0 + 0 = +0): sigmoid's result never is.
Test(simplify, add_zero) {
    assert_op(simplify(bin(IR_ADD, un(IR_SIGMOID, h), k(0)), -1, 1), IR_SIGMOID);
}
Test(simplify, zero_plus_x) {
    assert_op(simplify(bin(IR_ADD, k(0), un(IR_EXP, h)), -1, 1), IR_EXP);
}
Test(simplify, add_negative_zero) { assert_is_h(simplify(bin(IR_ADD, h, k(-0.0)), -1, 1)); }
// sin(x) may be -0: sin(x) + 0 is kept (it turns -0 into +0).
Test(simplify, add_zero_kept_when_x_may_be_negative_zero) {
    assert_op(simplify(bin(IR_ADD, h, k(0)), -1, 1), IR_ADD);
}
Test(simplify, sub_zero) { assert_is_h(simplify(bin(IR_SUB, h, k(0)), -1, 1)); }
Test(simplify, div_by_one) { assert_is_h(simplify(bin(IR_DIV, h, k(1)), -1, 1)); }
Test(simplify, pow_one) { assert_is_h(simplify(bin(IR_POW, h, k(1)), -1, 1)); }
Test(simplify, double_negation) { assert_is_h(simplify(un(IR_NEG, un(IR_NEG, h)), -1, 1)); }
Test(simplify, quadruple_negation_in_one_pass) {
    assert_is_h(simplify(un(IR_NEG, un(IR_NEG, un(IR_NEG, un(IR_NEG, h)))), -1, 1));
}

// -0 - x is -x exactly; +0 - x is not (0 - 0 = +0, -(0) = -0), so it stays.
Test(simplify, negative_zero_minus_x_is_neg) {
    const Node *o = simplify(bin(IR_SUB, k(-0.0), h), -1, 1);
    assert_op(o, IR_NEG);
    assert_is_h(&g->nodes[o->arg[0]]);
}
Test(simplify, zero_minus_x_is_kept) {
    assert_op(simplify(bin(IR_SUB, k(0), h), -1, 1), IR_SUB);
}

Test(simplify, mul_by_minus_one_is_neg) { assert_op(simplify(bin(IR_MUL, h, k(-1)), -1, 1), IR_NEG); }
Test(simplify, div_by_minus_one_is_neg) { assert_op(simplify(bin(IR_DIV, h, k(-1)), -1, 1), IR_NEG); }
Test(simplify, x_times_x_is_square) { assert_op(simplify(bin(IR_MUL, h, h), -1, 1), IR_SQUARE); }
// x^2 -> x*x, the correctly rounded square. libm's pow(x, 2) is accurate to
// about half an ulp, not always correctly rounded: the one rewrite that may
// change a last bit (towards the exact value). LLVM makes the same rewrite.
Test(simplify, pow_two_is_square) { assert_op(simplify(bin(IR_POW, h, k(2)), -1, 1), IR_SQUARE); }

Test(simplify, add_neg_is_sub) {
    NodeId y = un(IR_COS, h);
    const Node *o = simplify(bin(IR_ADD, h, un(IR_NEG, y)), -1, 1);
    assert_op(o, IR_SUB);
    assert_is_h(&g->nodes[o->arg[0]]);
    assert_op(&g->nodes[o->arg[1]], IR_COS);
}

Test(simplify, sub_neg_is_add) {
    NodeId y = un(IR_COS, h);
    assert_op(simplify(bin(IR_SUB, h, un(IR_NEG, y)), -1, 1), IR_ADD);
}

Test(simplify, neg_times_neg) {
    const Node *o = simplify(bin(IR_MUL, un(IR_NEG, h), un(IR_NEG, un(IR_COS, h))), -1, 1);
    assert_op(o, IR_MUL);
    cr_assert_neq(g->nodes[o->arg[0]].op, IR_NEG);
    cr_assert_neq(g->nodes[o->arg[1]].op, IR_NEG);
}

Test(simplify, constant_folding_binary) {
    const Node *o = simplify(bin(IR_MUL, h, bin(IR_ADD, k(2), k(3))), -1, 1);
    assert_op(o, IR_MUL);
    const Node *c = g->nodes[o->arg[0]].op == IR_CONST ? &g->nodes[o->arg[0]] : &g->nodes[o->arg[1]];
    assert_op(c, IR_CONST);
    cr_assert_eq(c->imm, 5.0);
}

Test(simplify, constant_folding_unary_chain) {
    // exp(log(sqrt(4))) + h -> 2 + h (the folds compute what the interpreter would)
    const Node *o = simplify(bin(IR_ADD, un(IR_EXP, un(IR_LOG, un(IR_SQRT, k(4)))), h), -1, 1);
    assert_op(o, IR_ADD);
    int n_const = 0;
    for (int i = 0; i < 2; i++)
        n_const += g->nodes[o->arg[i]].op == IR_CONST;
    cr_assert_eq(n_const, 1);
}

// log(0) = -inf is not folded: folding refuses non-finite constants.
Test(simplify, folding_refuses_infinity) {
    const Node *o = simplify(bin(IR_ADD, un(IR_LOG, k(0)), h), -1, 1);
    assert_op(o, IR_ADD);
    bool has_log = g->nodes[o->arg[0]].op == IR_LOG || g->nodes[o->arg[1]].op == IR_LOG;
    cr_assert(has_log);
}

// 0 * x is kept: x may be inf or NaN (here log of a negative number: NaN),
// and 0 * NaN is NaN. The value is unchanged (simplify() checks it).
Test(simplify, zero_times_x_is_not_folded) {
    NodeId nan_maybe = un(IR_LOG, h);            // NaN where sin(p x) < 0
    const Node *o = simplify(bin(IR_MUL, nan_maybe, k(0)), -1, 1);
    assert_op(o, IR_MUL);
}

Test(simplify, zero_times_constant_is_folded) {
    const Node *o = simplify(bin(IR_SUB, h, bin(IR_MUL, k(0), k(7))), -1, 1);   // h - (0 * 7) = h - 0
    assert_is_h(o);
}

Test(simplify, broadcast_of_constant_is_constant) {
    NodeId c = ir_broadcast(g, k(3), shape_n(1, 4), tm_at);
    const Node *o = simplify(bin(IR_MUL, h, c), -1, 1);
    const Node *a = &g->nodes[o->arg[0]], *b = &g->nodes[o->arg[1]];
    const Node *cn = a->op == IR_CONST ? a : b;
    assert_op(cn, IR_CONST);
    cr_assert_eq(cn->shape.rank, 1);
    cr_assert_eq(cn->imm, 3.0);
}

Test(simplify, sum_of_constant_is_exact_product) {
    NodeId c = ir_reduce(g, IR_SUM, ir_const(g, 0.5, shape_n(2, 3, 4), tm_at), tm_at);
    const Node *o = simplify(bin(IR_MUL, h, c), -1, 1);
    const Node *a = &g->nodes[o->arg[0]], *b = &g->nodes[o->arg[1]];
    const Node *cn = a->op == IR_CONST ? a : b;
    assert_op(cn, IR_CONST);
    cr_assert_eq(cn->imm, 6.0);
}

// 0.1 summed 3 times is not 0.3 in double: not folded.
Test(simplify, inexact_sum_of_constant_is_kept) {
    NodeId c = ir_reduce(g, IR_SUM, ir_const(g, 0.1, shape_n(1, 3), tm_at), tm_at);
    const Node *o = simplify(bin(IR_MUL, h, c), -1, 1);
    bool has_sum = g->nodes[o->arg[0]].op == IR_SUM || g->nodes[o->arg[1]].op == IR_SUM;
    cr_assert(has_sum);
}

Test(simplify, reshape_to_same_shape) {
    assert_is_h(simplify(ir_reshape(g, h, shape_n(1, 4), tm_at), -1, 1));
}

Test(simplify, reshape_of_reshape) {
    NodeId r = ir_reshape(g, ir_reshape(g, h, shape_n(2, 2, 2), tm_at), shape_n(2, 1, 4), tm_at);
    const Node *o = simplify(r, -1, 1);
    assert_op(o, IR_RESHAPE);
    assert_is_h(&g->nodes[o->arg[0]]);
}

Test(simplify, reshape_round_trip) {
    assert_is_h(simplify(ir_reshape(g, ir_reshape(g, h, shape_n(2, 2, 2), tm_at), shape_n(1, 4), tm_at), -1, 1));
}

Test(simplify, transpose_of_transpose) {
    NodeId r = ir_reshape(g, h, shape_n(2, 2, 2), tm_at);
    const Node *o = simplify(ir_transpose(g, ir_transpose(g, r, tm_at), tm_at), -1, 1);
    assert_op(o, IR_RESHAPE);
}

Test(simplify, broadcast_to_same_shape) {
    assert_is_h(simplify(ir_broadcast(g, h, shape_n(1, 4), tm_at), -1, 1));
}

Test(simplify, reduce_to_same_shape) {
    assert_is_h(simplify(ir_reduce_to(g, h, shape_n(1, 4), tm_at), -1, 1));
}

Test(simplify, broadcast_of_broadcast) {
    NodeId s = ir_reduce(g, IR_SUM, h, tm_at);
    NodeId b = ir_broadcast(g, ir_broadcast(g, s, shape_n(1, 4), tm_at), shape_n(2, 3, 4), tm_at);
    const Node *o = simplify(b, -1, 1);
    assert_op(o, IR_BROADCAST);
    assert_op(&g->nodes[o->arg[0]], IR_SUM);
}

// A rewrite never changes whether a value varies with the sample: x * 1 with
// a constant x of a larger shape stays (its replacement would be invariant
// or of another shape).
Test(simplify, shape_changing_identity_is_refused) {
    NodeId s = ir_reduce(g, IR_SUM, h, tm_at);                  // [] per sample
    const Node *o = simplify(bin(IR_MUL, s, ir_const(g, 1, shape_n(1, 4), tm_at)), -1, 1);
    assert_op(o, IR_MUL);
    cr_assert_eq(o->shape.dim[0], 4);
}

// The seed of the reverse sweep (1) and the mean's 1/batch: after simplify no
// live multiplication by the constant 1 is left in a differentiated model.
Test(simplify, differentiated_model_has_no_mul_by_one) {
    NodeId f = ir_unary(g, IR_TANH, h, tm_at);
    tm_finish(m, f, ir_reduce(g, IR_SUM, ir_binary(g, IR_MUL, f, m->target, tm_at), tm_at), true);
    ir_differentiate(m);
    uint32_t before = ir_count_live(m);
    ir_pass_simplify(m);
    ir_pass_dce(m);
    cr_assert_lt(ir_count_live(m), before);
    bool *live = ir_live_mask(m);
    for (NodeId id = 1; id < m->g->n_nodes; id++) {
        const Node *n = &m->g->nodes[id];
        if (!live[id] || n->op != IR_MUL)
            continue;
        for (int i = 0; i < 2; i++) {
            const Node *a = &m->g->nodes[n->arg[i]];
            cr_assert(!(a->op == IR_CONST && a->imm == 1), "mul by 1 left at %%%u", id);
        }
    }
}

// An explicit broadcast feeding an elementwise op is the op's own broadcasting.
Test(simplify, broadcast_into_elementwise_op_is_dropped) {
    NodeId s = ir_reduce(g, IR_SUM, h, tm_at);                  // [] per sample
    const Node *o = simplify(bin(IR_SUB, h, ir_broadcast(g, s, shape_n(1, 4), tm_at)), -1, 1);
    assert_op(o, IR_SUB);
    assert_is_h(&g->nodes[o->arg[0]]);
    assert_op(&g->nodes[o->arg[1]], IR_SUM);
}

// ... but not when the broadcast is what gives the result its shape.
Test(simplify, broadcast_that_shapes_the_result_is_kept) {
    NodeId s = ir_reduce(g, IR_SUM, h, tm_at);
    NodeId b = ir_broadcast(g, s, shape_n(1, 4), tm_at);
    const Node *o = simplify(bin(IR_MUL, b, ir_reduce(g, IR_SUM, un(IR_COS, h), tm_at)), -1, 1);
    assert_op(o, IR_MUL);
    cr_assert_eq(o->shape.dim[0], 4);
}

// ---- Random expressions: values never change

static uint64_t rng;
static uint32_t pick(uint32_t n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng >> 33) % n);
}

// A random expression over x, p, and the constants that trigger the rules
// (0, -0, 1, -1, 2), with negations and shape chains, evaluated on data that
// includes 0, -0, inf and NaN. Every value must be the same after simplify,
// bit for bit: infinities, NaN and the sign of zeros included.
static void random_expression(uint64_t seed) {
    nn_arena_free(&arena);                       // the previous model (teardown frees the last)
    memset(&arena, 0, sizeof arena);
    rng = seed;
    Shape s = shape_n(1, 4);
    m = tm_new(&arena, s, s);
    g = m->g;
    NodeId pool[48];
    int n = 0;
    pool[n++] = m->input;
    pool[n++] = tm_param(m, s);
    const double consts[] = { 0, -0.0, 1, -1, 2 };
    for (int i = 0; i < 30; i++) {
        NodeId a = pool[n - 1 - pick(n < 4 ? n : 4)];
        NodeId b = pick(2) ? pool[pick(n)] : k(consts[pick(5)]);
        NodeId r;
        switch (pick(14)) {
        case 0: r = bin(IR_ADD, a, b); break;
        case 1: r = bin(IR_ADD, b, a); break;
        case 2: r = bin(IR_SUB, a, b); break;
        case 3: r = bin(IR_SUB, b, a); break;
        case 4: r = bin(IR_MUL, a, b); break;
        case 5: r = bin(IR_MUL, b, a); break;
        case 6: r = bin(IR_DIV, a, b); break;
        case 7: r = bin(IR_POW, a, k(consts[pick(4)])); break;   // not x^2: see pow_two_is_square
        case 8: r = un(IR_NEG, a); break;
        case 9: r = bin(IR_MUL, un(IR_NEG, a), un(IR_NEG, b)); break;
        case 10: r = ir_reshape(g, ir_reshape(g, a, shape_n(2, 2, 2), tm_at), s, tm_at); break;
        case 11: r = bin(IR_ADD, a, ir_broadcast(g, k(consts[pick(5)]), s, tm_at)); break;
        case 12: r = bin(IR_ADD, un(pick(2) ? IR_RELU : IR_SQUARE, a), b); break;
        default: r = bin(IR_SUB, b, un(IR_EXP, a)); break;
        }
        if (g->nodes[r].shape.rank == 0)
            r = ir_broadcast(g, r, s, tm_at);
        pool[n++] = r;
    }
    NodeId f = pool[n - 1];
    tm_finish(m, f, ir_reduce(g, IR_SUM, f, tm_at), true);
    TmData d = tm_data(&arena, m, 2, seed, -2, 2);
    const double special[] = { 0.0, -0.0, INFINITY, -INFINITY, NAN };
    for (int i = 0; i < 3; i++)
        d.x[pick(8)] = special[pick(5)];
    simplify_keeps_values(&d, (unsigned long)seed);
}

Test(simplify, random_expressions_keep_their_values) {
    for (uint64_t seed = 1; seed <= 300; seed++)
        random_expression(seed);
}
