// Unit tests of the reference interpreter (interp.c): every op on small
// hand-computed inputs, the per-sample / invariant conventions, and models
// built by hand with the ir.h constructors (seeds 004 and 000).
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "ir_test.h"

static Arena arena;
static Model *m;
static Graph *g;
static const SrcRange at0 = { 0, 0, 0 };
enum { MAX_PARAMS = 16 };

// A fresh empty model in the arena.
static void new_model(void) {
    m = NN_NEW(&arena, Model);
    m->name = "t";
    m->g = g = ir_graph_new(&arena);
    m->params = nn_alloc_array(&arena, MAX_PARAMS, sizeof(IrParam));
    m->states = nn_alloc_array(&arena, MAX_PARAMS, sizeof(IrState));
}

static void setup(void) {
    memset(&arena, 0, sizeof arena);
    new_model();
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(interp, .init = setup, .fini = teardown);

static NodeId add_param(const char *name, Shape s) {
    cr_assert_lt(m->n_params, MAX_PARAMS);
    return ir_test_param(m, name, s);
}

static NodeId add_state(const char *name, uint32_t param) {
    IrState *st = &m->states[m->n_states];
    st->name = name;
    st->shape = m->params[param].shape;
    st->param = param;
    st->offset = m->state_count;
    m->state_count += (size_t)ir_numel(st->shape);
    return ir_leaf(g, IR_STATE, m->n_states++, st->shape, at0);
}

static NodeId input(Shape s) {
    m->input = ir_leaf(g, IR_INPUT, 0, s, at0);
    return m->input;
}

static NodeId target(Shape s) {
    m->target = ir_leaf(g, IR_TARGET, 0, s, at0);
    return m->target;
}

static NodeId cnst(double v) {
    return ir_scalar(g, v);
}

// Evaluates the graph with the given data and returns node id's values.
static const double *run(NodeId id, size_t batch, const double *x, const double *y, const double *params) {
    InterpArgs args = { .batch = batch, .x = x, .y = y, .params = params, .lr = 0.1, .step = 3 };
    double **vals = ir_interp(m, &args, &arena);
    return vals[id];
}

// Every parameter's values, given in declaration order, concatenated.
static const double *run1(NodeId id, const double *params) {
    return run(id, 1, NULL, NULL, params);
}

static void assert_values(const double *got, const double *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]))
            cr_assert(isnan(got[i]), "[%zu]: got %.17g, want nan", i, got[i]);
        else if (isinf(want[i]))
            cr_assert_eq(got[i], want[i], "[%zu]: got %.17g, want %g", i, got[i], want[i]);
        else
            cr_assert(fabs(got[i] - want[i]) <= tol, "[%zu]: got %.17g, want %.17g", i, got[i], want[i]);
    }
}

#define ASSERT_VALUES(got, tol, ...)                                                 \
    do {                                                                             \
        const double want_[] = { __VA_ARGS__ };                                      \
        assert_values((got), want_, sizeof want_ / sizeof want_[0], (tol));          \
    } while (0)

// ---- Leaves

Test(interp, const_fills_its_shape) {
    NodeId c = ir_const(g, 2.5, ir_shape2(2, 2), at0);
    ASSERT_VALUES(run1(c, NULL), 0, 2.5, 2.5, 2.5, 2.5);
}

Test(interp, params_read_at_their_offsets) {
    NodeId a = add_param("a", ir_shape1(2));
    NodeId b = add_param("b", ir_shape2(1, 3));
    double p[] = { 1, 2, 3, 4, 5 };
    ASSERT_VALUES(run1(a, p), 0, 1, 2);
    ASSERT_VALUES(run1(b, p), 0, 3, 4, 5);
}

Test(interp, input_and_target_per_sample) {
    NodeId x = input(ir_shape1(2));
    NodeId y = target(ir_shape1(1));
    double xs[] = { 1, 2, 3, 4, 5, 6 }, ys[] = { 7, 8, 9 };
    ASSERT_VALUES(run(x, 3, xs, ys, NULL), 0, 1, 2, 3, 4, 5, 6);
    ASSERT_VALUES(run(y, 3, xs, ys, NULL), 0, 7, 8, 9);
}

Test(interp, missing_target_reads_as_nan) {
    NodeId y = target(ir_shape1(2));
    ASSERT_VALUES(run(y, 1, NULL, NULL, NULL), 0, NAN, NAN);
}

Test(interp, state_and_grad_in_read_their_blocks) {
    add_param("a", ir_shape1(2));
    NodeId bp = add_param("b", ir_shape1(3));
    (void)bp;
    add_state("a.m", 0);
    NodeId sb = add_state("b.m", 1);
    NodeId gb = ir_leaf(g, IR_GRAD_IN, 1, ir_shape1(3), at0);
    double state[] = { 10, 20, 30, 40, 50 }, grad[] = { -1, -2, -3, -4, -5 };
    InterpArgs args = { .batch = 1, .state = state, .grad_in = grad };
    double **vals = ir_interp(m, &args, &arena);
    ASSERT_VALUES(vals[sb], 0, 30, 40, 50);
    ASSERT_VALUES(vals[gb], 0, -3, -4, -5);
}

Test(interp, scalar_args) {
    NodeId lr = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_LR, ir_scalar_shape(), at0);
    NodeId step = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_STEP, ir_scalar_shape(), at0);
    NodeId inv = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at0);
    InterpArgs args = { .batch = 4, .lr = 0.25, .step = 7 };
    double **vals = ir_interp(m, &args, &arena);
    ASSERT_VALUES(vals[lr], 0, 0.25);
    ASSERT_VALUES(vals[step], 0, 7);
    ASSERT_VALUES(vals[inv], 0, 0.25);
}

// ---- Elementwise

// op applied to a parameter holding in[0..n-1], in a fresh model.
static const double *unary(IrOp op, const double *in, int n) {
    new_model();
    NodeId a = add_param("a", ir_shape1(n));
    return run1(ir_unary(g, op, a, at0), in);
}

Test(interp, unary_ops) {
    const double v[] = { -2, 0, 0.5 };
    ASSERT_VALUES(unary(IR_NEG, v, 3), 0, 2, -0.0, -0.5);
    ASSERT_VALUES(unary(IR_ABS, v, 3), 0, 2, 0, 0.5);
    ASSERT_VALUES(unary(IR_RELU, v, 3), 0, 0, 0, 0.5);
    ASSERT_VALUES(unary(IR_STEP, v, 3), 0, 0, 0, 1);
    ASSERT_VALUES(unary(IR_SIGN, v, 3), 0, -1, 0, 1);
    ASSERT_VALUES(unary(IR_SQUARE, v, 3), 0, 4, 0, 0.25);
    ASSERT_VALUES(unary(IR_EXP, v, 3), 1e-15, 0.13533528323661267, 1, 1.6487212707001282);
    ASSERT_VALUES(unary(IR_TANH, v, 3), 1e-15, -0.9640275800758169, 0, 0.46211715726000974);
    ASSERT_VALUES(unary(IR_SIGMOID, v, 3), 1e-15, 0.11920292202211755, 0.5, 0.6224593312018546);
    ASSERT_VALUES(unary(IR_SIN, v, 3), 1e-15, -0.9092974268256816, 0, 0.47942553860420295);
    ASSERT_VALUES(unary(IR_COS, v, 3), 1e-15, -0.4161468365471424, 1, 0.8775825618903725);
    ASSERT_VALUES(unary(IR_SOFTPLUS, v, 3), 1e-15, 0.1269280110429725, 0.6931471805599453, 0.9740769841801067);
}

Test(interp, log_and_sqrt) {
    const double v[] = { 0, 1, 4 };
    ASSERT_VALUES(unary(IR_LOG, v, 3), 1e-15, -INFINITY, 0, 1.3862943611198906);
    ASSERT_VALUES(unary(IR_SQRT, v, 3), 0, 0, 1, 2);
}

Test(interp, softplus_is_stable) {
    const double v[] = { 1000, -1000, 40 };
    ASSERT_VALUES(unary(IR_SOFTPLUS, v, 3), 1e-12, 1000, 0, 40);
}

Test(interp, leaky_relu_uses_its_slope) {
    NodeId a = add_param("a", ir_shape1(3));
    double v[] = { -2, 0, 3 };
    ASSERT_VALUES(run1(ir_leaky_relu(g, a, 0.1, at0), v), 1e-15, -0.2, 0, 3);
}

// op applied to two scalar parameters, in a fresh model.
static const double *binary(IrOp op, double a, double b) {
    new_model();
    NodeId pa = add_param("a", ir_scalar_shape());
    NodeId pb = add_param("b", ir_scalar_shape());
    double p[] = { a, b };
    return run1(ir_binary(g, op, pa, pb, at0), p);
}

Test(interp, binary_ops) {
    ASSERT_VALUES(binary(IR_ADD, 2, 3), 0, 5);
    ASSERT_VALUES(binary(IR_SUB, 2, 3), 0, -1);
    ASSERT_VALUES(binary(IR_MUL, 2, 3), 0, 6);
    ASSERT_VALUES(binary(IR_DIV, 3, 2), 0, 1.5);
    ASSERT_VALUES(binary(IR_POW, 2, 10), 0, 1024);
    ASSERT_VALUES(binary(IR_POW, 4, -0.5), 0, 0.5);
    ASSERT_VALUES(binary(IR_MAX, 2, 3), 0, 3);
    ASSERT_VALUES(binary(IR_MIN, 2, 3), 0, 2);
    ASSERT_VALUES(binary(IR_GE, 2, 3), 0, 0);
    ASSERT_VALUES(binary(IR_GE, 3, 3), 0, 1);
    ASSERT_VALUES(binary(IR_GE, 4, 3), 0, 1);
}

Test(interp, max_and_min_ties_return_a) {
    // -0.0 and 0.0 compare equal: the tie goes to a.
    const double *mx = binary(IR_MAX, -0.0, 0.0);
    cr_assert(signbit(mx[0]), "max(-0, 0) is a = -0");
    const double *mn = binary(IR_MIN, 0.0, -0.0);
    cr_assert(!signbit(mn[0]), "min(0, -0) is a = 0");
}

Test(interp, binary_broadcasts_rows_and_columns) {
    NodeId a = add_param("a", ir_shape2(2, 3));
    NodeId r = add_param("r", ir_shape1(3));
    NodeId c = add_param("c", ir_shape2(2, 1));
    double p[] = { 1, 2, 3, 4, 5, 6, 10, 20, 30, 100, 200 };
    ASSERT_VALUES(run1(ir_binary(g, IR_ADD, a, r, at0), p), 0, 11, 22, 33, 14, 25, 36);
    ASSERT_VALUES(run1(ir_binary(g, IR_SUB, r, a, at0), p), 0, 9, 18, 27, 6, 15, 24);
    ASSERT_VALUES(run1(ir_binary(g, IR_MUL, c, a, at0), p), 0, 100, 200, 300, 800, 1000, 1200);
    // [2,1] with [3] -> [2,3] (both stretch)
    ASSERT_VALUES(run1(ir_binary(g, IR_ADD, c, r, at0), p), 0, 110, 120, 130, 210, 220, 230);
    ASSERT_VALUES(run1(ir_binary(g, IR_DIV, a, cnst(2), at0), p), 0, 0.5, 1, 1.5, 2, 2.5, 3);
}

Test(interp, per_sample_with_invariant_operands) {
    NodeId x = input(ir_shape1(2));
    NodeId w = add_param("w", ir_shape1(2));
    double xs[] = { 1, 2, 3, 4, 5, 6 }, p[] = { 10, 100 };
    // invariant on either side; batch of 3
    ASSERT_VALUES(run(ir_binary(g, IR_MUL, x, w, at0), 3, xs, NULL, p), 0, 10, 200, 30, 400, 50, 600);
    ASSERT_VALUES(run(ir_binary(g, IR_SUB, w, x, at0), 3, xs, NULL, p), 0, 9, 98, 7, 96, 5, 94);
    // per-sample with per-sample
    ASSERT_VALUES(run(ir_binary(g, IR_MUL, x, x, at0), 3, xs, NULL, p), 0, 1, 4, 9, 16, 25, 36);
    // a scalar per sample against a per-sample vector
    NodeId s = ir_reduce(g, IR_SUM, x, at0);
    ASSERT_VALUES(run(ir_binary(g, IR_MUL, s, x, at0), 3, xs, NULL, p), 0, 3, 6, 21, 28, 55, 66);
}

// ---- Linear algebra and shapes

Test(interp, matmul_four_cases) {
    NodeId A = add_param("A", ir_shape2(2, 3));
    NodeId B = add_param("B", ir_shape2(3, 2));
    NodeId v = add_param("v", ir_shape1(3));
    NodeId u = add_param("u", ir_shape1(2));
    double p[] = { 1, 2, 3, 4, 5, 6,    // A
                   1, 0, 0, 1, 2, 3,    // B
                   1, -1, 2,            // v
                   3, -2 };             // u
    ASSERT_VALUES(run1(ir_matmul(g, A, v, at0), p), 0, 5, 11);           // [2,3]@[3]
    ASSERT_VALUES(run1(ir_matmul(g, A, B, at0), p), 0, 7, 11, 16, 23);  // [2,3]@[3,2]
    ASSERT_VALUES(run1(ir_matmul(g, u, A, at0), p), 0, -5, -4, -3);      // [2]@[2,3]
    ASSERT_VALUES(run1(ir_matmul(g, v, v, at0), p), 0, 6);               // [3]@[3]
}

Test(interp, matmul_per_sample) {
    NodeId x = input(ir_shape1(2));
    NodeId W = add_param("W", ir_shape2(2, 2));
    double xs[] = { 1, 0, 0, 1 }, p[] = { 1, 2, 3, 4 };
    ASSERT_VALUES(run(ir_matmul(g, W, x, at0), 2, xs, NULL, p), 0, 1, 3, 2, 4);
    ASSERT_VALUES(run(ir_matmul(g, x, W, at0), 2, xs, NULL, p), 0, 1, 2, 3, 4);
}

Test(interp, outer_transpose_reshape) {
    NodeId a = add_param("a", ir_shape1(2));
    NodeId b = add_param("b", ir_shape1(3));
    NodeId M = add_param("M", ir_shape2(2, 3));
    double p[] = { 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6 };
    ASSERT_VALUES(run1(ir_outer(g, a, b, at0), p), 0, 3, 4, 5, 6, 8, 10);
    ASSERT_VALUES(run1(ir_transpose(g, M, at0), p), 0, 1, 4, 2, 5, 3, 6);
    NodeId r = ir_reshape(g, M, ir_shape2(3, 2), at0);
    ASSERT_VALUES(run1(r, p), 0, 1, 2, 3, 4, 5, 6);
    ASSERT_VALUES(run1(ir_transpose(g, r, at0), p), 0, 1, 3, 5, 2, 4, 6);
}

Test(interp, broadcast_and_reduce_to) {
    NodeId r = add_param("r", ir_shape1(3));
    NodeId c = add_param("c", ir_shape2(2, 1));
    NodeId M = add_param("M", ir_shape2(2, 3));
    double p[] = { 1, 2, 3, 10, 20, 1, 2, 3, 4, 5, 6 };
    ASSERT_VALUES(run1(ir_broadcast(g, r, ir_shape2(2, 3), at0), p), 0, 1, 2, 3, 1, 2, 3);
    ASSERT_VALUES(run1(ir_broadcast(g, c, ir_shape2(2, 3), at0), p), 0, 10, 10, 10, 20, 20, 20);
    ASSERT_VALUES(run1(ir_broadcast(g, cnst(7), ir_shape1(2), at0), p), 0, 7, 7);
    ASSERT_VALUES(run1(ir_reduce_to(g, M, ir_shape1(3), at0), p), 0, 5, 7, 9);
    ASSERT_VALUES(run1(ir_reduce_to(g, M, ir_shape2(2, 1), at0), p), 0, 6, 15);
    ASSERT_VALUES(run1(ir_reduce_to(g, M, ir_shape2(1, 3), at0), p), 0, 5, 7, 9);
    ASSERT_VALUES(run1(ir_reduce_to(g, M, ir_scalar_shape(), at0), p), 0, 21);
}

// ---- Reductions and softmax

Test(interp, sums) {
    NodeId M = add_param("M", ir_shape2(2, 3));
    double p[] = { 1, 2, 3, 4, 5, 6 };
    ASSERT_VALUES(run1(ir_reduce(g, IR_SUM, M, at0), p), 0, 21);
    ASSERT_VALUES(run1(ir_reduce(g, IR_SUM_LAST, M, at0), p), 0, 6, 15);
}

Test(interp, logsumexp_is_stable) {
    NodeId a = add_param("a", ir_shape1(3));
    double p1[] = { 1, 2, 3 }, p2[] = { 1000, 1000, -INFINITY }, p3[] = { -INFINITY, -INFINITY, -INFINITY };
    NodeId l = ir_reduce(g, IR_LOGSUMEXP, a, at0);
    ASSERT_VALUES(run1(l, p1), 1e-14, 3.40760596444438);
    ASSERT_VALUES(run1(l, p2), 1e-12, 1000.6931471805599453);
    ASSERT_VALUES(run1(l, p3), 0, -INFINITY);
}

Test(interp, softmax_over_the_last_axis) {
    NodeId M = add_param("M", ir_shape2(2, 3));
    double p[] = { 1, 2, 3, 1000, 1000, 1000 };
    ASSERT_VALUES(run1(ir_softmax(g, IR_SOFTMAX, M, at0), p), 1e-15,
                  0.09003057317038046, 0.24472847105479767, 0.6652409557748219, 1.0 / 3, 1.0 / 3, 1.0 / 3);
    ASSERT_VALUES(run1(ir_softmax(g, IR_LOG_SOFTMAX, M, at0), p), 1e-14,
                  -2.40760596444438, -1.4076059644443801, -0.4076059644443803,
                  -1.0986122886681096, -1.0986122886681096, -1.0986122886681096);
}

Test(interp, log_softmax_of_large_logits_is_finite) {
    NodeId a = add_param("a", ir_shape1(2));
    double p[] = { -1000, 1000 };
    ASSERT_VALUES(run1(ir_softmax(g, IR_LOG_SOFTMAX, a, at0), p), 1e-12, -2000, 0);
    ASSERT_VALUES(run1(ir_softmax(g, IR_SOFTMAX, a, at0), p), 0, 0, 1);
}

Test(interp, batch_sum_adds_the_samples) {
    NodeId x = input(ir_shape1(2));
    NodeId bs = ir_reduce(g, IR_BATCH_SUM, x, at0);
    double xs[] = { 1, 2, 3, 4, 5, 6 };
    ASSERT_VALUES(run(bs, 3, xs, NULL, NULL), 0, 9, 12);
    cr_assert_not(g->nodes[bs].flags & IR_F_BATCH);
    // the mean over the batch, as sema writes the objective
    NodeId mean = ir_binary(g, IR_MUL, bs, ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at0), at0);
    ASSERT_VALUES(run(mean, 3, xs, NULL, NULL), 0, 3, 4);
}

Test(interp, batch_sum_of_an_invariant_counts_each_sample) {
    NodeId w = add_param("w", ir_shape1(1));
    input(ir_shape1(1));
    double p[] = { 2.5 }, xs[] = { 0, 0, 0, 0 };
    ASSERT_VALUES(run(ir_reduce(g, IR_BATCH_SUM, w, at0), 4, xs, NULL, p), 0, 10);
}

// ---- Convolution and pooling

// Direct convolution with an explicitly zero-padded copy of x, written
// independently of interp.c's loop.
static void direct_conv(const double *x, int c, int h, int w, const double *W, int f, int k, int stride,
                        int pad, double *out, int oh, int ow) {
    int ph = h + 2 * pad, pw = w + 2 * pad;
    double padded[4 * 16 * 16] = { 0 };
    cr_assert_leq(c * ph * pw, (int)(sizeof padded / sizeof padded[0]));
    for (int ch = 0; ch < c; ch++)
        for (int r = 0; r < h; r++)
            for (int q = 0; q < w; q++)
                padded[(ch * ph + r + pad) * pw + q + pad] = x[(ch * h + r) * w + q];
    for (int o = 0; o < f; o++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double acc = 0;
                for (int ch = 0; ch < c; ch++)
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++)
                            acc += padded[(ch * ph + i * stride + u) * pw + j * stride + v] *
                                   W[((o * c + ch) * k + u) * k + v];
                out[(o * oh + i) * ow + j] = acc;
            }
}

Test(interp, conv2d_by_hand) {
    // x[1,3,3] = 1..9, W[1,1,2,2] = [[1,0],[0,-1]], stride 1, no padding -> [1,2,2]
    NodeId x = input(shape_n(3, 1, 3, 3));
    NodeId W = add_param("W", shape_n(4, 1, 1, 2, 2));
    double xs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, p[] = { 1, 0, 0, -1 };
    NodeId c = ir_conv2d(g, x, W, 1, 0, at0);
    ASSERT_VALUES(run(c, 1, xs, NULL, p), 0, -4, -4, -4, -4);
    // padding 1, stride 2 -> (3+2-2)/2+1 = 2: windows at (-1,-1), (-1,1), (1,-1), (1,1)
    NodeId c2 = ir_conv2d(g, x, W, 2, 1, at0);
    ASSERT_VALUES(run(c2, 1, xs, NULL, p), 0, -1, -3, -7, -4);
}

Test(interp, conv2d_matches_a_direct_loop) {
    enum { C = 2, H = 7, Wd = 6, F = 3, K = 3 };
    static const int configs[][2] = { { 1, 0 }, { 2, 1 }, { 3, 2 }, { 2, 0 } };  // stride, padding
    NodeId x = input(shape_n(3, C, H, Wd));
    NodeId W = add_param("W", shape_n(4, F, C, K, K));
    double xs[2 * C * H * Wd], p[F * C * K * K];
    for (int i = 0; i < 2 * C * H * Wd; i++)
        xs[i] = sin(0.7 * i) + 0.1 * (i % 5);
    for (int i = 0; i < F * C * K * K; i++)
        p[i] = cos(1.3 * i) - 0.2;
    for (size_t t = 0; t < NN_COUNTOF(configs); t++) {
        int stride = configs[t][0], pad = configs[t][1];
        NodeId c = ir_conv2d(g, x, W, stride, pad, at0);
        Shape s = g->nodes[c].shape;
        int oh = s.dim[1], ow = s.dim[2];
        const double *got = run(c, 2, xs, NULL, p);
        for (int n = 0; n < 2; n++) {
            double want[F * 16 * 16];
            direct_conv(xs + n * C * H * Wd, C, H, Wd, p, F, K, stride, pad, want, oh, ow);
            assert_values(got + n * F * oh * ow, want, (size_t)F * oh * ow, 1e-12);
        }
    }
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

Test(interp, conv2d_adjoints_are_exact) {
    // <conv(x, W), adj> = <x, conv_dx(adj, W)> = <W, conv_dw(adj, x)>
    enum { C = 2, H = 5, Wd = 6, F = 2, K = 3 };
    NodeId x = add_param("x", shape_n(3, C, H, Wd));
    NodeId W = add_param("W", shape_n(4, F, C, K, K));
    NodeId c = ir_conv2d(g, x, W, 2, 1, at0);
    Shape cs = g->nodes[c].shape;   // [2,3,3]
    NodeId adj = add_param("adj", cs);
    NodeId dx = ir_node_shaped(g, IR_CONV2D_DX, adj, W, g->nodes[x].shape, 2, 1, at0);
    NodeId dw = ir_node_shaped(g, IR_CONV2D_DW, adj, x, g->nodes[W].shape, 2, 1, at0);
    size_t nx = C * H * Wd, nw = F * C * K * K, nc = (size_t)ir_numel(cs);
    double p[C * H * Wd + F * C * K * K + 64];
    for (size_t i = 0; i < nx + nw + nc; i++)
        p[i] = sin(0.37 * i + 0.5);
    InterpArgs args = { .batch = 1, .params = p };
    double **v = ir_interp(m, &args, &arena);
    const double *px = p, *pw = p + nx, *pa = p + nx + nw;
    double lhs = dot(v[c], pa, nc);
    cr_assert_float_eq(dot(px, v[dx], nx), lhs, 1e-12);
    cr_assert_float_eq(dot(pw, v[dw], nw), lhs, 1e-12);
}

Test(interp, conv2d_dx_by_hand) {
    // adj[1,1,1] = 2 against W[1,1,2,2] = [[1,2],[3,4]], x[1,2,2], no padding
    NodeId adj = add_param("adj", shape_n(3, 1, 1, 1));
    NodeId W = add_param("W", shape_n(4, 1, 1, 2, 2));
    double p[] = { 2, 1, 2, 3, 4 };
    NodeId dx = ir_node_shaped(g, IR_CONV2D_DX, adj, W, shape_n(3, 1, 2, 2), 1, 0, at0);
    ASSERT_VALUES(run1(dx, p), 0, 2, 4, 6, 8);
}

Test(interp, maxpool_and_its_gradient) {
    // x[1,4,4], 2x2 windows, stride 2
    NodeId x = add_param("x", shape_n(3, 1, 4, 4));
    double p[] = { 1, 5, 2, 2,
                   3, 4, 2, 2,     // top right: all ties -> first element (0,2)
                   0, 0, 9, 8,
                   7, 0, 9, 1 };   // bottom right: 9 twice -> the first, (2,2)
    NodeId mp = ir_pool2d(g, IR_MAXPOOL2D, x, 2, 2, at0);
    ASSERT_VALUES(run1(mp, p), 0, 5, 2, 7, 9);
    NodeId adj = ir_const(g, 1, shape_n(3, 1, 2, 2), at0);
    NodeId dx = ir_node_shaped(g, IR_MAXPOOL2D_DX, x, adj, g->nodes[x].shape, 2, 2, at0);
    ASSERT_VALUES(run1(dx, p), 0, 0, 1, 1, 0,
                                  0, 0, 0, 0,
                                  0, 0, 1, 0,
                                  1, 0, 0, 0);
}

Test(interp, maxpool_overlapping_windows_accumulate) {
    // x[1,1,3], size 1x... use [1,3,3] with size 2 stride 1: the centre 9 wins all four windows.
    NodeId x = add_param("x", shape_n(3, 1, 3, 3));
    double p[] = { 1, 2, 3, 4, 9, 6, 7, 8, 5, 1, 2, 3, 4 };
    NodeId mp = ir_pool2d(g, IR_MAXPOOL2D, x, 2, 1, at0);
    ASSERT_VALUES(run1(mp, p), 0, 9, 9, 9, 9);
    NodeId adj = add_param("adj", shape_n(3, 1, 2, 2));
    NodeId dx = ir_node_shaped(g, IR_MAXPOOL2D_DX, x, adj, g->nodes[x].shape, 1, 2, at0);
    ASSERT_VALUES(run1(dx, p), 0, 0, 0, 0, 0, 10, 0, 0, 0, 0);
}

Test(interp, avgpool_and_its_gradient) {
    NodeId x = add_param("x", shape_n(3, 1, 4, 5));   // the last column does not fit a window
    double p[] = { 1, 2, 3, 4, 100,
                   5, 6, 7, 8, 100,
                   1, 1, 2, 2, 100,
                   1, 1, 2, 6, 100 };
    NodeId ap = ir_pool2d(g, IR_AVGPOOL2D, x, 2, 2, at0);
    ASSERT_VALUES(run1(ap, p), 0, 3.5, 5.5, 1, 3);
    NodeId adj = ir_const(g, 4, shape_n(3, 1, 2, 2), at0);
    NodeId dx = ir_node_shaped(g, IR_AVGPOOL2D_DX, adj, 0, g->nodes[x].shape, 2, 2, at0);
    ASSERT_VALUES(run1(dx, p), 0, 1, 1, 1, 1, 0,
                                  1, 1, 1, 1, 0,
                                  1, 1, 1, 1, 0,
                                  1, 1, 1, 1, 0);
}

Test(interp, pool_per_sample_channels) {
    NodeId x = input(shape_n(3, 2, 2, 2));
    NodeId mp = ir_pool2d(g, IR_MAXPOOL2D, x, 2, 2, at0);
    double xs[] = { 1, 2, 3, 4, -1, -2, -3, -4,    // sample 0: channels 0 and 1
                    8, 7, 6, 5, 0, 0, 0, 0 };      // sample 1
    ASSERT_VALUES(run(mp, 2, xs, NULL, NULL), 0, 4, -1, 8, 0);
}

// ---- Models built by hand

// seeds/004: f(x; w, b) = 1 / (exp(-(w * x + b)) + 1)
Test(interp, seed_004_sigmoid_at_zero_weights) {
    NodeId x = input(ir_shape1(1));
    NodeId w = add_param("w", ir_shape1(1));
    NodeId b = add_param("b", ir_shape1(1));
    NodeId z = ir_binary(g, IR_ADD, ir_binary(g, IR_MUL, w, x, at0), b, at0);
    NodeId e = ir_unary(g, IR_EXP, ir_unary(g, IR_NEG, z, at0), at0);
    m->output = ir_binary(g, IR_DIV, cnst(1), ir_binary(g, IR_ADD, e, cnst(1), at0), at0);
    double xs[] = { 1 }, p[] = { 0, 0 };
    ASSERT_VALUES(run(m->output, 1, xs, NULL, p), 0, 0.5);
    double p2[] = { 2, -1 };   // w x + b = 1: 1/(1+e^-1)
    ASSERT_VALUES(run(m->output, 1, xs, NULL, p2), 1e-15, 0.7310585786300049);
}

// dense(h, units, sigmoid) as sema expands it: sigmoid(W @ h + b)
static NodeId dense_sigmoid(NodeId h, const char *wname, const char *bname, int units) {
    int in = g->nodes[h].shape.dim[0];
    NodeId W = add_param(wname, ir_shape2(units, in));
    NodeId b = add_param(bname, ir_shape1(units));
    return ir_unary(g, IR_SIGMOID, ir_binary(g, IR_ADD, ir_matmul(g, W, h, at0), b, at0), at0);
}

// The [2,3,2,2] network of seeds/000 (LANGUAGE.md §1); expected values from
// tests/unit/seed_network_reference.py (NumPy, float64).
static void build_seed_network(void) {
    NodeId x = input(ir_shape1(2));
    NodeId y = target(ir_shape1(2));
    NodeId h1 = dense_sigmoid(x, "h1.W", "h1.b", 3);
    NodeId h2 = dense_sigmoid(h1, "h2.W", "h2.b", 2);
    NodeId o = dense_sigmoid(h2, "o.W", "o.b", 2);
    m->output = o;
    NodeId d = ir_binary(g, IR_SUB, y, o, at0);
    NodeId sq = ir_binary(g, IR_POW, d, cnst(2), at0);
    m->loss = ir_binary(g, IR_MUL, cnst(0.5), ir_reduce(g, IR_SUM, sq, at0), at0);
    NodeId inv = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at0);
    m->objective = ir_binary(g, IR_MUL, ir_reduce(g, IR_BATCH_SUM, m->loss, at0), inv, at0);
}

static const double seed_params[] = {
    0.1, -0.2, 0.3, 0.4, -0.5, 0.6,   // h1.W [3,2]
    0.01, -0.02, 0.03,                // h1.b
    0.7, -0.8, 0.9, -0.1, 0.2, -0.3,  // h2.W [2,3]
    0.05, -0.05,                      // h2.b
    0.25, -0.35, 0.45, 0.55,          // o.W [2,2]
    -0.1, 0.1,                        // o.b
};
static const double seed_x[] = { 0.5, -1.0, 1.5, 2.0 };
static const double seed_y[] = { 1.0, 0.0, 0.0, 1.0 };

Test(interp, seed_network_output_and_loss) {
    build_seed_network();
    cr_assert_eq(m->param_count, NN_COUNTOF(seed_params));
    InterpArgs args = { .batch = 2, .x = seed_x, .y = seed_y, .params = seed_params };
    double **v = ir_interp(m, &args, &arena);
    ASSERT_VALUES(v[m->output], 1e-15, 0.4707505874855293, 0.6516437398203434,
                                       0.469836592488651, 0.6492748054969306);
    ASSERT_VALUES(v[m->loss], 1e-15, 0.35237225214697787, 0.17187729285028128);
    ASSERT_VALUES(v[m->objective], 1e-15, 0.2621247724986296);
}

Test(interp, seed_network_output_needs_no_target) {
    build_seed_network();
    InterpArgs args = { .batch = 1, .x = seed_x + 2, .params = seed_params };
    double **v = ir_interp(m, &args, &arena);
    ASSERT_VALUES(v[m->output], 1e-15, 0.469836592488651, 0.6492748054969306);
    ASSERT_VALUES(v[m->loss], 0, NAN);
}

// ---- Coverage: every op of ir_ops.def has an interpreter rule

// One node of `op` on small operands (a per-sample image and vector, parameters).
static NodeId build_any(IrOp op) {
    NodeId img = m->input;                                   // [2,4,4] batch
    NodeId v = m->params[0].node;                            // [3]
    NodeId M = m->params[1].node;                            // [3,3]
    NodeId W = m->params[2].node;                            // [2,2,3,3]
    NodeId pos = ir_unary(g, IR_EXP, v, at0);                // positive, for log/sqrt/pow
    switch (ir_op_info[op].kind) {
    case IR_KIND_UNARY:
        return op == IR_LEAKY_RELU ? ir_leaky_relu(g, v, 0.1, at0) : ir_unary(g, op, pos, at0);
    case IR_KIND_BINARY:
        return ir_binary(g, op, pos, M, at0);
    default:
        break;
    }
    Shape sx = g->nodes[img].shape;
    switch (op) {
    case IR_CONST:        return ir_const(g, 1.5, ir_shape1(2), at0);
    case IR_INPUT:        return img;
    case IR_TARGET:       return target(ir_shape1(3));
    case IR_PARAM:        return v;
    case IR_STATE:        return ir_leaf(g, IR_STATE, 0, ir_shape1(3), at0);
    case IR_GRAD_IN:      return ir_leaf(g, IR_GRAD_IN, 0, ir_shape1(3), at0);
    case IR_SCALAR_ARG:   return ir_leaf(g, IR_SCALAR_ARG, IR_ARG_STEP, ir_scalar_shape(), at0);
    case IR_MATMUL:       return ir_matmul(g, M, v, at0);
    case IR_OUTER:        return ir_outer(g, v, v, at0);
    case IR_TRANSPOSE:    return ir_transpose(g, M, at0);
    case IR_RESHAPE:      return ir_reshape(g, img, ir_shape1(32), at0);
    case IR_BROADCAST:    return ir_broadcast(g, v, ir_shape2(2, 3), at0);
    case IR_REDUCE_TO:    return ir_reduce_to(g, M, ir_shape1(3), at0);
    case IR_SUM:
    case IR_SUM_LAST:
    case IR_LOGSUMEXP:
    case IR_BATCH_SUM:    return ir_reduce(g, op, img, at0);
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX:  return ir_softmax(g, op, img, at0);
    case IR_CONV2D:       return ir_conv2d(g, img, W, 1, 1, at0);
    case IR_CONV2D_DX:    return ir_node_shaped(g, op, ir_conv2d(g, img, W, 1, 1, at0), W, sx, 1, 1, at0);
    case IR_CONV2D_DW:
        return ir_node_shaped(g, op, ir_conv2d(g, img, W, 1, 1, at0), img, g->nodes[W].shape, 1, 1, at0);
    case IR_MAXPOOL2D:
    case IR_AVGPOOL2D:    return ir_pool2d(g, op, img, 2, 2, at0);
    case IR_MAXPOOL2D_DX:
        return ir_node_shaped(g, op, img, ir_pool2d(g, IR_MAXPOOL2D, img, 2, 2, at0), sx, 2, 2, at0);
    case IR_AVGPOOL2D_DX:
        return ir_node_shaped(g, op, ir_pool2d(g, IR_AVGPOOL2D, img, 2, 2, at0), 0, sx, 2, 2, at0);
    default:
        cr_assert_fail("no coverage test for op '%s': add it here", ir_op_info[op].name);
        return 0;
    }
}

Test(interp, every_op_has_a_rule) {
    for (int op = 0; op < IR_N_OPS; op++) {
        new_model();
        input(shape_n(3, 2, 4, 4));
        add_param("v", ir_shape1(3));
        add_param("M", ir_shape2(3, 3));
        add_param("W", shape_n(4, 2, 2, 3, 3));
        add_state("v.m", 0);
        NodeId id = build_any((IrOp)op);
        cr_assert_eq(g->nodes[id].op, op);
        ir_verify(g);
        double xs[2 * 2 * 4 * 4], ys[2 * 3], p[3 + 9 + 36], st[3], gi[3 + 9 + 36];
        for (size_t i = 0; i < NN_COUNTOF(xs); i++)
            xs[i] = sin(0.9 * i);
        for (size_t i = 0; i < NN_COUNTOF(p); i++)
            p[i] = gi[i] = cos(0.4 * i) * 0.5;
        for (size_t i = 0; i < NN_COUNTOF(ys); i++)
            ys[i] = st[i % 3] = 0.25 * i;
        InterpArgs args = { .batch = 2, .x = xs, .y = ys, .params = p, .state = st, .grad_in = gi,
                            .lr = 0.1, .step = 1 };
        double **vals = ir_interp(m, &args, &arena);
        size_t n = (size_t)ir_numel(g->nodes[id].shape) * (g->nodes[id].flags & IR_F_BATCH ? 2 : 1);
        for (size_t i = 0; i < n; i++)
            cr_assert(isfinite(vals[id][i]), "%s [%zu] = %g", ir_op_info[op].name, i, vals[id][i]);
    }
}
