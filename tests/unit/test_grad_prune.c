// Pruning as a whole: dead-code elimination (pass_dce.c), pruned against
// unpruned gradients on several models, the logistic-map chain (expression
// swell: the pruned backward pass grows linearly in n), no derivative work
// for the input, and the flat pipeline (grad_pipeline.c).
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "test_grad_util.h"

static Arena arena;

static void setup(void) {
    memset(&arena, 0, sizeof arena);
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(prune, .init = setup, .fini = teardown);

// ---- Models (each builder makes a fresh model in `a`)

static NodeId dense(Model *m, NodeId x, int in, int out, IrOp act, NodeId *w_out) {
    Graph *g = m->g;
    NodeId w = tm_param(m, shape_n(2, out, in)), b = tm_param(m, shape_n(1, out));
    if (w_out)
        *w_out = w;
    NodeId z = ir_binary(g, IR_ADD, ir_matmul(g, w, x, tm_at), b, tm_at);
    return act == IR_CONST ? z : ir_unary(g, act, z, tm_at);
}

// x[8] -> sigmoid[16] -> tanh[16] -> [4], softmax cross-entropy (log_softmax).
static Model *mlp_cross_entropy(Arena *a) {
    Model *m = tm_new(a, shape_n(1, 8), shape_n(1, 4));
    Graph *g = m->g;
    NodeId h = dense(m, m->input, 8, 16, IR_SIGMOID, NULL);
    h = dense(m, h, 16, 16, IR_TANH, NULL);
    NodeId z = dense(m, h, 16, 4, IR_CONST, NULL);
    NodeId ce = ir_reduce(g, IR_SUM, ir_binary(g, IR_MUL, m->target, ir_softmax(g, IR_LOG_SOFTMAX, z, tm_at), tm_at), tm_at);
    tm_finish(m, ir_softmax(g, IR_SOFTMAX, z, tm_at), ir_unary(g, IR_NEG, ce, tm_at), true);
    return m;
}

// x[6] -> relu[10] -> [3], squared error, reduce = sum.
static Model *mlp_squared_error(Arena *a) {
    Model *m = tm_new(a, shape_n(1, 6), shape_n(1, 3));
    Graph *g = m->g;
    NodeId h = dense(m, m->input, 6, 10, IR_RELU, NULL);
    NodeId out = dense(m, h, 10, 3, IR_CONST, NULL);
    NodeId err = ir_binary(g, IR_SUB, out, m->target, tm_at);
    tm_finish(m, out, ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, err, tm_at), tm_at), false);
    return m;
}

// x[36] as [1,6,6] -> conv 3x3 (2 filters, padding 1) -> relu -> maxpool 2 ->
// [18] -> [3], cross-entropy written as log(softmax(z)).
static Model *conv_net(Arena *a) {
    Model *m = tm_new(a, shape_n(1, 36), shape_n(1, 3));
    Graph *g = m->g;
    NodeId img = ir_reshape(g, m->input, shape_n(3, 1, 6, 6), tm_at);
    NodeId k = tm_param(m, shape_n(4, 2, 1, 3, 3));
    NodeId c = ir_unary(g, IR_RELU, ir_conv2d(g, img, k, 1, 1, tm_at), tm_at);
    NodeId p = ir_pool2d(g, IR_MAXPOOL2D, c, 2, 2, tm_at);
    NodeId z = dense(m, ir_reshape(g, p, shape_n(1, 18), tm_at), 18, 3, IR_CONST, NULL);
    NodeId lp = ir_unary(g, IR_LOG, ir_softmax(g, IR_SOFTMAX, z, tm_at), tm_at);
    NodeId ce = ir_reduce(g, IR_SUM, ir_binary(g, IR_MUL, m->target, lp, tm_at), tm_at);
    tm_finish(m, z, ir_unary(g, IR_NEG, ce, tm_at), true);
    return m;
}

// The logistic map: l0 = sigmoid(w * x), l_{k+1} = 4 l_k (1 - l_k) (the
// inlined `fn step(l) = 4*l*(1-l)`), loss (l_n - y)^2.
static Model *logistic_map(Arena *a, int n) {
    Model *m = tm_new(a, shape_n(1, 1), shape_n(1, 1));
    Graph *g = m->g;
    NodeId w = tm_param(m, shape_n(1, 1));
    NodeId l = ir_unary(g, IR_SIGMOID, ir_binary(g, IR_MUL, w, m->input, tm_at), tm_at);
    for (int i = 0; i < n; i++) {
        NodeId four_l = ir_binary(g, IR_MUL, ir_scalar(g, 4), l, tm_at);
        l = ir_binary(g, IR_MUL, four_l, ir_binary(g, IR_SUB, ir_scalar(g, 1), l, tm_at), tm_at);
    }
    NodeId err = ir_binary(g, IR_SUB, l, m->target, tm_at);
    tm_finish(m, l, ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, err, tm_at), tm_at), true);
    return m;
}
static Model *logistic_map_10(Arena *a) {
    return logistic_map(a, 10);
}

// One weight matrix used by four chained layers (a recurrent-style net).
static Model *shared_weights(Arena *a) {
    Model *m = tm_new(a, shape_n(1, 5), shape_n(1, 5));
    Graph *g = m->g;
    NodeId w = tm_param(m, shape_n(2, 5, 5));
    NodeId h = m->input;
    for (int i = 0; i < 4; i++)
        h = ir_unary(g, IR_TANH, ir_binary(g, IR_ADD, ir_matmul(g, w, h, tm_at), m->input, tm_at), tm_at);
    NodeId err = ir_binary(g, IR_SUB, h, m->target, tm_at);
    tm_finish(m, h, ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, err, tm_at), tm_at), true);
    return m;
}

typedef Model *Builder(Arena *a);
static Builder *const models[] = { mlp_cross_entropy, mlp_squared_error, conv_net, logistic_map_10, shared_weights };

static void prune(Model *m) {
    ir_pass_simplify(m);
    ir_pass_dce(m);
}

// ---- Dead-code elimination

Test(prune, dce_keeps_exactly_the_live_nodes) {
    Model *m = mlp_squared_error(&arena);
    Graph *g = m->g;
    ir_unary(g, IR_EXP, m->input, tm_at);                       // dead
    ir_binary(g, IR_ADD, m->params[0].node, ir_scalar(g, 3), tm_at);   // dead
    ir_differentiate(m);
    uint32_t live = ir_count_live(m);
    cr_assert_lt(live, m->g->n_nodes - 1);
    ir_pass_dce(m);
    cr_assert_eq(m->g->n_nodes - 1, live);
    cr_assert_eq(ir_count_live(m), live);
}

Test(prune, dce_keeps_values_and_roots) {
    Model *a = conv_net(&arena), *b = conv_net(&arena);
    ir_differentiate(a);
    ir_differentiate(b);
    ir_pass_dce(b);
    TmData d = tm_data(&arena, a, 3, 5, -1, 1);
    cr_assert_eq(tm_objective(a, &d), tm_objective(b, &d));
    double *ga = tm_grads(&arena, a, &d), *gb = tm_grads(&arena, b, &d);
    cr_assert(memcmp(ga, gb, a->param_count * sizeof(double)) == 0);
    for (uint32_t i = 0; i < b->n_params; i++) {
        cr_assert_eq(b->g->nodes[b->params[i].node].op, IR_PARAM);
        cr_assert_eq(b->g->nodes[b->params[i].node].imm, (double)i);
    }
    cr_assert_eq(b->g->nodes[b->input].op, IR_INPUT);
    cr_assert_eq(b->g->nodes[b->target].op, IR_TARGET);
}

Test(prune, dce_is_idempotent_and_keeps_order) {
    Model *m = shared_weights(&arena);
    ir_differentiate(m);
    ir_pass_dce(m);
    uint32_t n = m->g->n_nodes;
    ir_pass_dce(m);
    cr_assert_eq(m->g->n_nodes, n);
    for (NodeId id = 1; id < m->g->n_nodes; id++)
        for (int k = 0; k < m->g->nodes[id].n_args; k++)
            cr_assert_lt(m->g->nodes[id].arg[k], id);
}

// ---- Pruned against unpruned, and both against finite differences

Test(prune, pruning_never_changes_the_gradient) {
    for (size_t i = 0; i < NN_COUNTOF(models); i++) {
        Model *plain = models[i](&arena), *pruned = models[i](&arena);
        ir_differentiate(plain);
        ir_differentiate(pruned);
        uint32_t before = ir_count_live(pruned);
        prune(pruned);
        cr_assert_leq(ir_count_live(pruned), before, "model %zu grew", i);
        TmData d = tm_data(&arena, plain, 4, 100 + i, -1, 1);
        double err = tm_check(&arena, plain, &d);
        cr_assert_leq(err, 1e-6, "model %zu: unpruned gradient error %g", i, err);
        double *ga = tm_grads(&arena, plain, &d), *gb = tm_grads(&arena, pruned, &d);
        for (size_t j = 0; j < plain->param_count; j++)
            cr_assert_leq(fabs(ga[j] - gb[j]), 1e-12 * fmax(1, fabs(ga[j])),
                          "model %zu, gradient %zu: %.17g unpruned, %.17g pruned", i, j, ga[j], gb[j]);
    }
}

Test(prune, simplify_never_grows_the_graph) {
    for (size_t i = 0; i < NN_COUNTOF(models); i++) {
        Model *m = models[i](&arena);
        ir_differentiate(m);
        for (int round = 0; round < 3; round++) {   // and reaches a fixed point
            uint32_t before = ir_count_live(m);
            ir_pass_simplify(m);
            cr_assert_leq(ir_count_live(m), before, "model %zu, round %d", i, round);
        }
    }
}

// ---- No derivative work for the input

Test(prune, dense_net_computes_nothing_for_the_input) {
    Model *m = tm_new(&arena, shape_n(1, 8), shape_n(1, 2));
    NodeId w1;
    NodeId h = dense(m, m->input, 8, 16, IR_RELU, &w1);
    NodeId out = dense(m, h, 16, 2, IR_CONST, NULL);
    Graph *g = m->g;
    NodeId err = ir_binary(g, IR_SUB, out, m->target, tm_at);
    tm_finish(m, out, ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, err, tm_at), tm_at), true);
    ir_differentiate(m);
    prune(m);
    w1 = m->params[0].node;
    // d/dx of W1 @ x would be adj @ W1: no matmul takes W1 as its right operand.
    cr_assert(!tm_has_use(m, IR_MATMUL, 1, w1), "a node computes d/d input");
    // and the input is used only by the forward matmul and dW1's outer product.
    bool *live = ir_live_mask(m);
    for (NodeId id = 1; id < m->g->n_nodes; id++) {
        const Node *n = &m->g->nodes[id];
        if (live[id] && n->n_args && (n->arg[0] == m->input || n->arg[1] == m->input))
            cr_assert(n->op == IR_MATMUL || n->op == IR_OUTER, "input used by '%s'", ir_op_info[n->op].name);
    }
}

// ---- Expression swell: the logistic map

// Backward nodes: live nodes of the differentiated, pruned model minus those
// of the forward model.
static uint32_t backward_nodes(int n, bool pruned) {
    Arena a = { 0 };
    Model *m = logistic_map(&a, n);
    uint32_t forward = ir_count_live(m);
    ir_differentiate(m);
    if (pruned)
        prune(m);
    uint32_t total = ir_count_live(m);
    nn_arena_free(&a);
    return total - forward;
}

Test(prune, logistic_map_backward_is_linear_in_n) {
    int ns[] = { 10, 100, 1000, 10000 };
    uint32_t counts[4];
    for (int i = 0; i < 4; i++) {
        counts[i] = backward_nodes(ns[i], true);
        cr_assert_leq(counts[i], 5u * (uint32_t)ns[i] + 20, "n = %d: %u backward nodes", ns[i], counts[i]);
    }
    // Exactly linear: every step of the chain adds the same number of nodes.
    uint32_t per_step = (counts[1] - counts[0]) / 90;
    cr_assert_eq(counts[1] - counts[0], 90 * per_step);
    cr_assert_eq(counts[2] - counts[1], 900 * per_step);
    cr_assert_eq(counts[3] - counts[2], 9000 * per_step);
    cr_assert_leq(per_step, 4u, "pruned: %u nodes per step", per_step);
    // Pruning helps: the unpruned sweep needs more per step (but is linear too:
    // reverse mode never builds the 2^n tree).
    uint32_t plain = backward_nodes(100, false);
    cr_assert_gt(plain, counts[1]);
}

Test(prune, logistic_map_gradient_matches_finite_differences) {
    Model *m = logistic_map(&arena, 10);
    ir_differentiate(m);
    prune(m);
    TmData d = tm_data(&arena, m, 3, 9, -0.5, 0.5);
    double err = tm_check(&arena, m, &d);
    cr_assert_leq(err, 1e-6, "error %g", err);
}

// ---- The pipeline

static Model *pipeline_model(NnCtx *c, bool no_prune, const char *dump) {
    nn_ctx_setup(c, stderr);
    c->opt.no_prune = no_prune;
    c->opt.dump_after = dump;
    Model *m = mlp_cross_entropy(&c->arena);
    cr_assert(ir_build_train_step(c, m));
    return m;
}

Test(prune, pipeline_builds_grads_and_stores) {
    NnCtx c;
    Model *m = pipeline_model(&c, false, NULL);
    cr_assert_eq(m->n_stores, m->n_params);              // sgd, no momentum: p <- p - lr g
    for (uint32_t i = 0; i < m->n_params; i++)
        cr_assert_neq(m->grads[i], 0);
    cr_assert_eq(m->g->n_nodes - 1, ir_count_live(m));    // dce ran last
    nn_ctx_free(&c);
}

Test(prune, pipeline_no_prune_keeps_more_nodes) {
    NnCtx c1, c2;
    Model *pruned = pipeline_model(&c1, false, NULL);
    Model *plain = pipeline_model(&c2, true, NULL);
    cr_assert_lt(ir_count_live(pruned), ir_count_live(plain));
    TmData d = tm_data(&c1.arena, pruned, 2, 1, -1, 1);
    double *ga = tm_grads(&c1.arena, pruned, &d), *gb = tm_grads(&c1.arena, plain, &d);
    for (size_t j = 0; j < pruned->param_count; j++)
        cr_assert_leq(fabs(ga[j] - gb[j]), 1e-12 * fmax(1, fabs(gb[j])));
    nn_ctx_free(&c1);
    nn_ctx_free(&c2);
}

Test(prune, pipeline_dump_after_prints_the_ir, .init = cr_redirect_stderr) {
    memset(&arena, 0, sizeof arena);
    NnCtx c;
    pipeline_model(&c, false, "simplify");
    fflush(stderr);
    char buf[64] = { 0 };
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    cr_assert_gt(n, 0, "nothing printed");
    nn_ctx_free(&c);
}

Test(prune, pipeline_pass_names) {
    cr_assert(ir_is_pipeline_pass("grad"));
    cr_assert(ir_is_pipeline_pass("simplify"));
    cr_assert(ir_is_pipeline_pass("dce"));
    cr_assert(ir_is_pipeline_pass("optim"));
    cr_assert(!ir_is_pipeline_pass("inline"));
}
