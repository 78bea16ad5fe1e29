// --stats (stats.c) on a model small enough to count by hand:
//   loss = sum(sigmoid(w * x)), x[2] the input, w[2] the parameter,
//   objective = batch_sum(loss) * inv_batch.
// The train step is built by hand too (what a pruned backward pass is), so
// the numbers below depend only on stats.c's definitions (docs/autodiff.md).
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "sema.h"

typedef struct Tiny {
    Arena  a;
    Model *m;
    NodeId x, w, s, inv;
} Tiny;

static void tiny_forward(Tiny *t) {
    SrcRange at = { 0 };
    Model *m = t->m = NN_NEW(&t->a, Model);
    Graph *g = m->g = ir_graph_new(&t->a);
    m->name = "tiny";
    m->n_params = 1;
    m->params = nn_alloc_array(&t->a, 1, sizeof(IrParam));
    m->params[0] = (IrParam){ .name = "w", .shape = ir_shape1(2) };
    m->param_count = 2;
    t->x = m->input = ir_leaf(g, IR_INPUT, 0, ir_shape1(2), at);                  // %1
    t->w = m->params[0].node = ir_leaf(g, IR_PARAM, 0, ir_shape1(2), at);         // %2
    t->s = ir_unary(g, IR_SIGMOID, ir_binary(g, IR_MUL, t->w, t->x, at), at);      // %3 mul, %4
    m->loss = m->output = ir_reduce(g, IR_SUM, t->s, at);                        // %5
    t->inv = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at);  // %7 after %6
    m->objective = ir_binary(g, IR_MUL, ir_reduce(g, IR_BATCH_SUM, m->loss, at), t->inv, at);
    m->opt = (IrOptimizer){ .kind = OPT_SGD, .lr = 0.1 };
}

// The pruned backward pass, by hand: batch_sum(s * (1 - s) * x) * inv_batch.
static void tiny_train(Tiny *t) {
    SrcRange at = { 0 };
    Model *m = t->m;
    Graph *g = m->g;
    NodeId ds = ir_binary(g, IR_MUL, t->s, ir_binary(g, IR_SUB, ir_scalar(g, 1), t->s, at), at);
    NodeId e = ir_binary(g, IR_MUL, ds, t->x, at);
    m->grads = nn_alloc_array(&t->a, 1, sizeof(NodeId));
    m->grads[0] = ir_binary(g, IR_MUL, ir_reduce(g, IR_BATCH_SUM, e, at), t->inv, at);
    ir_lower_optimizer(m);
}

static char *stats_text(const Model *fwd, const Model *train) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ir_print_stats(NULL, fwd, train, out);
    fclose(out);
    return buf;
}

// The numbers on the row whose label is `label`: nodes, FLOPs/sample, FLOPs/step.
static void row(const char *text, const char *label, double v[3]) {
    char key[64];
    snprintf(key, sizeof key, "  %s ", label);
    const char *p = strstr(text, key);
    cr_assert(p, "no row '%s' in:\n%s", label, text);
    cr_assert_eq(sscanf(p + strlen(key), "%lf %lf %lf", &v[0], &v[1], &v[2]), 3, "row '%s'", label);
}

Test(grad_stats, forward_counts_every_node_of_the_objective) {
    Tiny t = { 0 };
    tiny_forward(&t);
    char *text = stats_text(t.m, NULL);
    double v[3];
    row(text, "forward", v);
    // 8 nodes: x, w, mul, sigmoid, sum, batch_sum, inv_batch, mul.
    // Per sample: mul 2 + sigmoid 4*2 + sum 2 + batch_sum 1 = 13; per step: the final mul, 1.
    cr_expect_eq(v[0], 8);
    cr_expect_eq(v[1], 13);
    cr_expect_eq(v[2], 1);
    free(text);
    nn_arena_free(&t.a);
}

Test(grad_stats, naive_backward_counts_the_expanded_tree) {
    Tiny t = { 0 };
    tiny_forward(&t);
    char *text = stats_text(t.m, NULL);
    double v[3];
    row(text, "backward, naive (counted)", v);
    // d/dw as one tree, by the textbook rules from the leaves up:
    //   d(w*x) = 1 * x                                        3 nodes (1, mul, x)
    //   d sigmoid(m) = d(w*x) * (sigmoid(m) * (1 - sigmoid(m)))
    //     with m = w*x copied twice (3 nodes each):           3 + 1 + 5 + 6 = 15
    //   d sum(s) = sum(ds)                                    16
    //   d batch_sum(l) = batch_sum(dl)                        17
    //   d (b * inv) = db * inv                                19
    // FLOPs/sample: 1*x 2; mul 2 + sigmoid' 10*2 + two copies of w*x 2*2; sum 2; batch_sum 1
    // = 31; per step: the final mul by inv, 1.
    cr_expect_eq(v[0], 19);
    cr_expect_eq(v[1], 31);
    cr_expect_eq(v[2], 1);
    free(text);
    nn_arena_free(&t.a);
}

Test(grad_stats, pruned_backward_and_update) {
    Tiny t = { 0 };
    tiny_forward(&t);
    Model fwd = *t.m;            // the same graph: the forward roots are unchanged
    tiny_train(&t);
    char *text = stats_text(&fwd, t.m);
    double v[3];
    row(text, "backward, pruned", v);
    // const 1, sub [2], mul [2], mul by x [2], batch_sum [2], mul by inv [2]:
    // 6 nodes; per sample 2+2+2+2 = 8; per step the final mul, 2.
    cr_expect_eq(v[0], 6);
    cr_expect_eq(v[1], 8);
    cr_expect_eq(v[2], 2);
    row(text, "update", v);
    // grad_in, lr, lr * g [2], p - lr*g [2].
    cr_expect_eq(v[0], 4);
    cr_expect_eq(v[1], 0);
    cr_expect_eq(v[2], 4);
    // Kept for the backward pass: x and sigmoid(w*x), 2 floats each per sample.
    cr_expect(strstr(text, "kept for the backward pass: 2 per-sample, 16 bytes/sample"), "%s", text);
    cr_expect(strstr(text, "sigmoid"), "%s", text);
    cr_expect(strstr(text, "naive / pruned backward: 3.17x nodes"), "%s", text);
    free(text);
    nn_arena_free(&t.a);
}

Test(grad_stats, classify_nodes_into_parts) {
    Tiny t = { 0 };
    tiny_forward(&t);
    tiny_train(&t);
    Arena a = { 0 };
    uint8_t *part = ir_classify_nodes(t.m, &a);
    cr_expect_eq(part[t.x], IR_PART_FORWARD);
    cr_expect_eq(part[t.s], IR_PART_FORWARD);
    cr_expect_eq(part[t.m->grads[0]], IR_PART_BACKWARD);
    cr_expect_eq(part[t.m->stores[0].value], IR_PART_UPDATE);
    nn_arena_free(&a);
    nn_arena_free(&t.a);
}

Test(grad_stats, flops_of_a_matmul_are_two_per_multiply_add) {
    Arena a = { 0 };
    Graph *g = ir_graph_new(&a);
    SrcRange at = { 0 };
    NodeId w = ir_leaf(g, IR_PARAM, 0, ir_shape2(3, 4), at);
    NodeId x = ir_leaf(g, IR_INPUT, 0, ir_shape1(4), at);
    cr_expect_eq(ir_node_flops(g, ir_matmul(g, w, x, at)), 24);            // 3 outputs * 4 * 2
    cr_expect_eq(ir_node_flops(g, ir_outer(g, x, x, at)), 16);             // one multiply each
    cr_expect_eq(ir_node_flops(g, ir_reduce(g, IR_SUM, w, at)), 12);       // per input element
    cr_expect_eq(ir_node_flops(g, ir_unary(g, IR_TANH, x, at)), 16);       // 4 per element
    nn_arena_free(&a);
}

// ---- --emit=dot (dot.c)

static char *dot_text(const Model *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ir_print_dot(m, out);
    fclose(out);
    return buf;
}

Test(grad_dot, three_colours_labels_and_legend) {
    Tiny t = { 0 };
    tiny_forward(&t);
    tiny_train(&t);
    char *text = dot_text(t.m);
    cr_expect(strncmp(text, "digraph \"tiny\" {", 16) == 0, "%s", text);
    cr_expect(strstr(text, "legend_f [label=\"forward\", fillcolor=\"#cfe2ff\"]"), "%s", text);
    cr_expect(strstr(text, "legend_b [label=\"backward\", fillcolor=\"#ffd8a8\"]"), "%s", text);
    cr_expect(strstr(text, "legend_u [label=\"update\", fillcolor=\"#c3f0c8\"]"), "%s", text);
    // The sigmoid (%4) is forward, labelled with its op and per-sample shape.
    cr_expect(strstr(text, "n4 [label=\"%4 sigmoid\\n[2] x batch\", fillcolor=\"#cfe2ff\"]"), "%s", text);
    cr_expect(strstr(text, "n2 [label=\"%2 param w\\n[2]\""), "%s", text);
    cr_expect(strstr(text, "n3 -> n4;"), "%s", text);
    char want[96];
    snprintf(want, sizeof want, "n%u [label=\"%%%u mul\\n[2]\", fillcolor=\"#ffd8a8\"]", t.m->grads[0], t.m->grads[0]);
    cr_expect(strstr(text, want), "no '%s' in\n%s", want, text);
    snprintf(want, sizeof want, "fillcolor=\"#c3f0c8\"];\n");
    cr_expect(strstr(text, want), "%s", text);
    cr_expect(strstr(text, "label=\"w <-\""), "%s", text);
    cr_expect(strstr(text, "label=\"d/d w\""), "%s", text);
    cr_expect(text[strlen(text) - 2] == '}', "%s", text);
    free(text);
    nn_arena_free(&t.a);
}

Test(grad_dot, dead_nodes_are_left_out) {
    Tiny t = { 0 };
    tiny_forward(&t);
    NodeId dead = ir_unary(t.m->g, IR_EXP, t.s, (SrcRange){ 0 });
    tiny_train(&t);
    char *text = dot_text(t.m);
    char want[32];
    snprintf(want, sizeof want, "  n%u [", dead);
    cr_expect(!strstr(text, want), "%s", text);
    free(text);
    nn_arena_free(&t.a);
}

// ---- The numbers of issue 3 on real models (front end + the whole pipeline).

static char *stats_of_source(const char *src) {
    NnCtx c;
    nn_ctx_setup(&c, stderr);
    Model *m = nn_frontend(&c, nn_add_source(&c, "m.nn", src, strlen(src)));
    cr_assert(m, "front end failed on:\n%s", src);
    Model fwd = *m;                     // the forward roots, before the pipeline remaps them
    Graph g = *m->g;                    // a shallow copy: passes rebuild graphs, never edit nodes in place
    g.nodes = malloc(g.nodes_cap * sizeof(Node));
    memcpy(g.nodes, m->g->nodes, m->g->n_nodes * sizeof(Node));
    fwd.g = &g;
    cr_assert(ir_build_train_step(&c, m));
    char *text = stats_text(&fwd, m);
    free(g.nodes);
    nn_ctx_free(&c);
    return text;
}

Test(grad_stats, dense_64_wide_backward_within_twice_forward) {
    char *text = stats_of_source("model d { input x[64]; target y[10];\n"
                                 "h1 = dense(x, 64, sigmoid); h2 = dense(h1, 64, sigmoid); z = dense(h2, 10);\n"
                                 "output z; loss softmax_cross_entropy(z, y); train sgd(lr = 0.1); }");
    double fwd[3], bwd[3];
    row(text, "forward", fwd);
    row(text, "backward, pruned", bwd);
    // Forward: the products 2*(64*64 + 64*64 + 10*64) = 17664 FLOPs dominate.
    cr_expect_geq(fwd[1], 17664);
    cr_expect_leq(bwd[1] / fwd[1], 2.05, "%s", text);
    free(text);
}

static char *chain_source(int n) {
    size_t cap = 256 + (size_t)n * 32, len = 0;
    char *src = malloc(cap);
    len += (size_t)snprintf(src + len, cap - len, "fn step(l) = 4 * l * (1 - l);\nmodel c { input x[1]; target y[1];\n"
                            "param w[1] = constant(0.5); l0 = sigmoid(w * x);\n");
    for (int k = 1; k <= n; k++)
        len += (size_t)snprintf(src + len, cap - len, "l%d = step(l%d);\n", k, k - 1);
    snprintf(src + len, cap - len, "output l%d; loss sse(l%d, y); train sgd(lr = 0.1); }", n, n);
    return src;
}

Test(grad_stats, logistic_chain_pruned_linear_naive_exponential) {
    double pruned[2], naive[2];
    for (int i = 0; i < 2; i++) {
        char *src = chain_source(i ? 200 : 100);
        char *text = stats_of_source(src);
        double v[3];
        row(text, "backward, pruned", v);
        pruned[i] = v[0];
        row(text, "backward, naive (counted)", v);
        naive[i] = v[0];
        free(text);
        free(src);
    }
    // Linear: doubling n at most doubles the pruned count (plus a constant).
    cr_expect_leq(pruned[1], 2 * pruned[0] + 16, "%g then %g", pruned[0], pruned[1]);
    cr_expect_leq(pruned[0], 5 * 100 + 16);
    // Naive: at least 2^n, and 100 more steps multiply it by at least 2^100.
    cr_expect_geq(naive[0], 0x1p100);
    cr_expect_geq(naive[1] / naive[0], 0x1p100);
}
