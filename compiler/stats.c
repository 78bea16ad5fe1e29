// stats.c: `nnc model.nn --stats`. Input: the forward Model (sema) and the
// train-step Model (ir_build_train_step; NULL if it could not be built).
// Output: a small table, per sample, of node counts and FLOPs of
//   - the forward pass: the nodes the batch objective depends on;
//   - the backward pass as naive tree-style symbolic differentiation would
//     produce it: COUNTED with a recurrence below, never built;
//   - the backward pass nnc builds, after pruning (and the update);
// with the ratios, and the forward values the backward pass keeps alive.
//
// Conventions (docs/autodiff.md §6 "Counting nodes and FLOPs" and §8):
// - a node is any IR node, leaves (parameters, constants, the input) included;
// - FLOPs per sample: the FLOPs of nodes that vary with the sample, plus
//   BATCH_SUM (one add per element per sample); nodes that are the same for
//   every sample (parameter-only work, the update) are counted apart, once per
//   step ("FLOPs/step"), since their cost does not grow with the batch;
// - FLOPs of a node: ir_node_flops() below.
//
// The naive model. A computer-algebra system without sharing writes
// d objective / d p, for each parameter tensor p, as one expression tree, by
// recursion over the objective's expression with the textbook rules (sum rule,
// product rule d(a*b) = da*b + a*db, quotient rule, chain rule with
// sigmoid' = s(a)*(1-s(a)), ...): every operand a rule mentions is copied as a
// whole tree, nothing is shared, within or between gradients. With
//   T(n)    the size of n's expression as a tree: 1 + the T of its operands
//           (a node used twice is counted twice: shared subexpressions duplicate);
//   D_p(n)  the size of the tree of d n / d p: 1 (the constant 1) for p itself;
//           for a node u, one term per operand a_i that contains p: D_p(a_i)
//           + the nodes of u's rule for operand i + the T of each operand that
//           rule copies; plus (terms - 1) adds,
// the naive backward pass is the sum over the parameters of D_p(objective).
// This is kind to the naive system: an operand without p contributes no term
// (it is not written as a 0 to multiply), a rule's constants are single
// leaves, and a tensor parameter counts as one symbol (one tree per tensor,
// not per scalar). The rules' costs are in naive_rule().
// FLOPs of the naive trees follow the same recurrence; a new node of a rule
// for u has u's shape (the tangent of u), so it costs what the same op costs
// on u's shape: the tree evaluated once per parameter tensor.
// On the logistic-map chain l_{k+1} = 4 l_k (1 - l_k) every l_k is used twice:
// D(l_{k+1}) = 2 D(l_k) + 2 T(l_k) + c and T(l_k) ~ 2^k, so D(l_n) ~ n 2^n.
// Counts are long doubles (range beyond 10^4900); past that they print "inf".
#include <math.h>
#include <string.h>

#include "autodiff.h"

// ---- Node classes and FLOPs (shared with dot.c through autodiff.h)

enum { R_FORWARD = 1, R_GRAD = 2, R_STORE = 4 };

uint8_t *ir_classify_nodes(const Model *m, Arena *a) {
    const Graph *g = m->g;
    uint8_t *reach = nn_alloc_array(a, g->n_nodes + 1, 1);
    NodeId roots[3] = { m->output, m->loss, m->objective };
    for (int k = 0; k < 3; k++)
        if (roots[k])
            reach[roots[k]] |= R_FORWARD;
    if (m->grads)
        for (uint32_t i = 0; i < m->n_params; i++)
            if (m->grads[i])
                reach[m->grads[i]] |= R_GRAD;
    for (uint32_t i = 0; i < m->n_stores; i++)
        reach[m->stores[i].value] |= R_STORE;
    for (NodeId id = g->n_nodes - 1; id > 0; id--)   // users before operands
        for (int k = 0; k < g->nodes[id].n_args; k++)
            reach[g->nodes[id].arg[k]] |= reach[id];
    for (NodeId id = 1; id < g->n_nodes; id++)
        reach[id] = reach[id] & R_FORWARD ? IR_PART_FORWARD
                  : reach[id] & R_GRAD    ? IR_PART_BACKWARD
                  : reach[id] & R_STORE   ? IR_PART_UPDATE
                                          : IR_PART_NONE;
    return reach;
}

static double numel_of(const Graph *g, NodeId id) {
    return (double)ir_numel(g->nodes[id].shape);
}

// Product of dims 1..3 of a rank-4 shape: the c*k*k of a conv weight.
static double window_of(Shape w) {
    return (double)w.dim[1] * w.dim[2] * w.dim[3];
}

double ir_node_flops(const Graph *g, NodeId id) {
    const Node *n = &g->nodes[id];
    double f = ir_op_info[n->op].flops;
    double out = (double)ir_numel(n->shape);
    switch (n->op) {
    case IR_MATMUL: {                   // 2 per multiply-add, k per output
        Shape a = g->nodes[n->arg[0]].shape;
        return f * a.dim[a.rank - 1] * out;
    }
    case IR_SUM: case IR_SUM_LAST: case IR_LOGSUMEXP: case IR_BATCH_SUM: case IR_REDUCE_TO:
        return f * numel_of(g, n->arg[0]);   // per input element
    case IR_CONV2D:                     // (x, W): c*k*k multiply-adds per output
        return f * out * window_of(g->nodes[n->arg[1]].shape);
    case IR_CONV2D_DX:                  // (adj, W): the conv's multiply-adds
        return f * numel_of(g, n->arg[0]) * window_of(g->nodes[n->arg[1]].shape);
    case IR_CONV2D_DW:                  // (adj, x) -> [f,c,k,k]
        return f * numel_of(g, n->arg[0]) * window_of(n->shape);
    case IR_MAXPOOL2D: case IR_AVGPOOL2D:   // one per window element
        return f * out * n->attr[1] * n->attr[1];
    case IR_MAXPOOL2D_DX:               // (x, adj)
        return f * numel_of(g, n->arg[1]) * n->attr[1] * n->attr[1];
    case IR_AVGPOOL2D_DX:               // (adj)
        return f * numel_of(g, n->arg[0]) * n->attr[1] * n->attr[1];
    default:
        return f * out;                 // elementwise and the rest: per output element
    }
}

static bool per_sample(const Graph *g, NodeId id) {
    return (g->nodes[id].flags & IR_F_BATCH) || g->nodes[id].op == IR_BATCH_SUM;
}

// ---- Counts

typedef struct Cost {
    long double nodes;
    long double fs;      // FLOPs per sample
    long double fb;      // FLOPs per step (invariant nodes)
} Cost;

static void cost_add(Cost *c, Cost x) {
    c->nodes += x.nodes;
    c->fs += x.fs;
    c->fb += x.fb;
}

static void cost_new(Cost *c, long double flops, bool sample) {
    c->nodes += 1;
    if (sample)
        c->fs += flops;
    else
        c->fb += flops;
}

// The node set the objective depends on (the forward pass), as a mask.
static bool *objective_cone(const Model *m, Arena *a) {
    const Graph *g = m->g;
    bool *in = nn_alloc_array(a, g->n_nodes + 1, sizeof(bool));
    if (m->objective)
        in[m->objective] = true;
    for (NodeId id = g->n_nodes - 1; id > 0; id--)
        if (in[id])
            for (int k = 0; k < g->nodes[id].n_args; k++)
                in[g->nodes[id].arg[k]] = true;
    return in;
}

// Unary elementwise f(a): the tree of f'(a) as a naive system writes it, then
// one MUL by the adjoint. nodes and flops (per element) of f'(a) without the
// copies of a; copies: how many times f'(a) mentions a.
typedef struct UnaryRule {
    uint8_t nodes, flops, copies;
} UnaryRule;

static const UnaryRule unary_rules[IR_N_OPS] = {
    [IR_EXP] = { 1, 4, 1 },         // exp(a)
    [IR_LOG] = { 2, 1, 1 },         // 1 / a
    [IR_SQRT] = { 3, 5, 1 },        // 0.5 / sqrt(a)
    [IR_ABS] = { 1, 1, 1 },         // sign(a)
    [IR_TANH] = { 4, 6, 1 },        // 1 - tanh(a)^2
    [IR_SIGMOID] = { 5, 10, 2 },    // sigmoid(a) * (1 - sigmoid(a))
    [IR_RELU] = { 1, 1, 1 },        // step(a)
    [IR_SOFTPLUS] = { 1, 4, 1 },    // sigmoid(a)
    [IR_SIN] = { 1, 4, 1 },         // cos(a)
    [IR_COS] = { 2, 5, 1 },         // -sin(a)
    [IR_SQUARE] = { 2, 1, 1 },      // 2 * a
    [IR_LEAKY_RELU] = { 5, 3, 1 },  // alpha + (1 - alpha) * step(a)
};

// The term of d u / d p that comes through operand i, given D = D_p(operand i):
// false when the partial derivative is zero.
static bool naive_rule(const Graph *g, NodeId uid, int i, const Cost *T, Cost D, Cost *out) {
    const Node *u = &g->nodes[uid];
    NodeId a = u->arg[0], b = u->n_args > 1 ? u->arg[1] : 0;
    NodeId other = i == 0 ? b : a;
    bool s = per_sample(g, uid);
    long double en = numel_of(g, uid);
    Cost c = D;                                         // D_p(operand i), copied once
    switch (u->op) {
    case IR_ADD:
        break;                                          // da
    case IR_SUB:
        if (i == 1)
            cost_new(&c, en, s);                        // -db
        break;
    case IR_MUL:
        cost_new(&c, en, s);                            // da * b
        cost_add(&c, T[other]);
        break;
    case IR_DIV:
        if (i == 0) {
            cost_new(&c, en, s);                        // da / b
            cost_add(&c, T[b]);
        } else {
            for (int k = 0; k < 4; k++)                 // -(db * a / square(b))
                cost_new(&c, en, s);
            cost_add(&c, T[a]);
            cost_add(&c, T[b]);
        }
        break;
    case IR_POW:
        if (i == 0) {                                   // da * (b * a^(b - 1))
            cost_new(&c, en, s), cost_new(&c, en, s), cost_new(&c, 4 * en, s), cost_new(&c, en, s);
            cost_new(&c, 0, false);                     // the constant 1
            cost_add(&c, T[a]), cost_add(&c, T[b]), cost_add(&c, T[b]);
        } else {                                        // db * (a^b * log(a))
            cost_new(&c, en, s), cost_new(&c, en, s), cost_new(&c, 4 * en, s), cost_new(&c, 4 * en, s);
            cost_add(&c, T[a]), cost_add(&c, T[a]), cost_add(&c, T[b]);
        }
        break;
    case IR_MAX:
    case IR_MIN:                                        // da * ge(a, b), db * (1 - ge(a, b))
        cost_new(&c, en, s), cost_new(&c, en, s);
        if (i == 1)
            cost_new(&c, en, s), cost_new(&c, 0, false);
        cost_add(&c, T[a]), cost_add(&c, T[b]);
        break;
    case IR_GE: case IR_STEP: case IR_SIGN:
        return false;                                   // piecewise constant
    case IR_NEG:
        cost_new(&c, en, s);
        break;
    case IR_MATMUL: case IR_OUTER:                      // da @ b, a @ db: u's product again
    case IR_CONV2D: case IR_CONV2D_DX: case IR_CONV2D_DW:
        cost_new(&c, ir_node_flops(g, uid), s);
        cost_add(&c, T[other]);
        break;
    case IR_MAXPOOL2D:                                  // dx at the maxima of x
        cost_new(&c, ir_node_flops(g, uid), s);
        cost_add(&c, T[a]);
        break;
    case IR_MAXPOOL2D_DX:                               // (x, adj): linear in adj
        if (i == 0)
            return false;
        cost_new(&c, ir_node_flops(g, uid), s);
        cost_add(&c, T[a]);
        break;
    case IR_AVGPOOL2D: case IR_AVGPOOL2D_DX:            // linear: the same op on the tangent
    case IR_TRANSPOSE: case IR_RESHAPE: case IR_BROADCAST:
    case IR_REDUCE_TO: case IR_SUM: case IR_SUM_LAST: case IR_BATCH_SUM:
        cost_new(&c, ir_node_flops(g, uid), s);
        break;
    case IR_LOGSUMEXP: {                                // sum(softmax(a) * da)
        long double ea = numel_of(g, a);
        cost_new(&c, ea, s), cost_new(&c, ea, s), cost_new(&c, 6 * ea, s);
        cost_add(&c, T[a]);
        break;
    }
    case IR_SOFTMAX:        // softmax(a) * (da - sum_last(softmax(a) * da))
        cost_new(&c, en, s), cost_new(&c, 6 * en, s), cost_new(&c, en, s);
        cost_new(&c, en, s), cost_new(&c, en, s), cost_new(&c, 6 * en, s);
        cost_add(&c, T[a]), cost_add(&c, T[a]), cost_add(&c, D);
        break;
    case IR_LOG_SOFTMAX:    // da - sum_last(softmax(a) * da)
        cost_new(&c, en, s), cost_new(&c, en, s), cost_new(&c, en, s), cost_new(&c, 6 * en, s);
        cost_add(&c, T[a]), cost_add(&c, D);
        break;
    default: {
        const UnaryRule *r = &unary_rules[u->op];
        if (!r->nodes)
            return false;                               // a leaf: no operands
        cost_new(&c, en, s);                            // da * f'(a)
        c.nodes += r->nodes;
        if (s)
            c.fs += r->flops * en;
        else
            c.fb += r->flops * en;
        for (int k = 0; k < r->copies; k++)
            cost_add(&c, T[a]);
        break;
    }
    }
    *out = c;
    return true;
}

// The naive backward pass of m (see the top of the file), summed over the parameters.
static Cost naive_backward(const Model *m, Arena *a) {
    const Graph *g = m->g;
    Cost total = { 0 };
    if (!m->objective)
        return total;
    bool *cone = objective_cone(m, a);
    Cost *T = nn_alloc_array(a, g->n_nodes + 1, sizeof(Cost));
    Cost *D = nn_alloc_array(a, g->n_nodes + 1, sizeof(Cost));
    bool *has_p = nn_alloc_array(a, g->n_nodes + 1, sizeof(bool));
    for (NodeId id = 1; id <= m->objective; id++) {
        if (!cone[id])
            continue;
        Cost t = { 0 };
        cost_new(&t, ir_node_flops(g, id), per_sample(g, id));
        for (int k = 0; k < g->nodes[id].n_args; k++)
            cost_add(&t, T[g->nodes[id].arg[k]]);
        T[id] = t;
    }
    for (uint32_t p = 0; p < m->n_params; p++) {
        NodeId pid = m->params[p].node;
        if (!pid || pid > m->objective || !cone[pid])
            continue;                                   // the objective does not depend on p
        memset(has_p, 0, (g->n_nodes + 1) * sizeof(bool));
        has_p[pid] = true;
        D[pid] = (Cost){ 1, 0, 0 };                     // d p / d p: the constant 1
        for (NodeId id = pid + 1; id <= m->objective; id++) {
            const Node *n = &g->nodes[id];
            if (!cone[id])
                continue;
            Cost sum = { 0 }, term;
            uint32_t terms = 0;
            for (int i = 0; i < n->n_args; i++)
                if (has_p[n->arg[i]] && naive_rule(g, id, i, T, D[n->arg[i]], &term)) {
                    cost_add(&sum, term);
                    terms++;
                }
            for (uint32_t k = 1; k < terms; k++)        // the sum of the terms
                cost_new(&sum, numel_of(g, id), per_sample(g, id));
            has_p[id] = terms > 0;
            D[id] = sum;
        }
        if (has_p[m->objective])
            cost_add(&total, D[m->objective]);
    }
    return total;
}

// ---- Printing

// An integer while it is exact, else a power of ten ("3.17e+3013").
static const char *fmt_count(char *buf, size_t size, long double v) {
    if (isinf(v))
        snprintf(buf, size, "inf");
    else if (v < 1e15L)
        snprintf(buf, size, "%.0Lf", v);
    else {
        long double e = floorl(log10l(v));
        long double mant = v / powl(10, e);
        if (mant >= 9.995L)
            mant /= 10, e += 1;
        snprintf(buf, size, "%.2Lfe+%.0Lf", mant, e);
    }
    return buf;
}

static const char *fmt_ratio(char *buf, size_t size, long double num, long double den) {
    if (den <= 0)
        return snprintf(buf, size, "-"), buf;
    long double r = num / den;
    if (isinf(num))
        snprintf(buf, size, "inf");
    else if (r < 1e6L)
        snprintf(buf, size, "%.2Lfx", r);
    else {
        char tmp[64];
        snprintf(buf, size, "%sx", fmt_count(tmp, sizeof tmp, r));
    }
    return buf;
}

// ratios: whether the vs-forward columns mean something for this row.
static void print_row(FILE *out, const char *what, Cost c, Cost fwd, bool ratios) {
    char n[64], fs[64], fb[64], rn[64] = "-", rf[64] = "-";
    if (ratios) {
        fmt_ratio(rn, sizeof rn, c.nodes, fwd.nodes);
        fmt_ratio(rf, sizeof rf, c.fs, fwd.fs);
    }
    fprintf(out, "  %-26s %12s %14s %12s %10s %10s\n", what, fmt_count(n, sizeof n, c.nodes),
            fmt_count(fs, sizeof fs, c.fs), fmt_count(fb, sizeof fb, c.fb), rn, rf);
}

static Cost part_cost(const Model *m, const uint8_t *part, IrPart which) {
    Cost c = { 0 };
    for (NodeId id = 1; id < m->g->n_nodes; id++)
        if (part[id] == which)
            cost_new(&c, ir_node_flops(m->g, id), per_sample(m->g, id));
    return c;
}

enum { MAX_KEPT_LINES = 24 };

// Forward values that backward nodes read: they stay alive from the forward
// pass until the backward pass is done (per sample: activations).
static void print_kept(const Model *train, const uint8_t *part, Arena *a, FILE *out) {
    const Graph *g = train->g;
    bool *kept = nn_alloc_array(a, g->n_nodes + 1, sizeof(bool));
    for (NodeId id = 1; id < g->n_nodes; id++)
        if (part[id] == IR_PART_BACKWARD)
            for (int k = 0; k < g->nodes[id].n_args; k++)
                if (part[g->nodes[id].arg[k]] == IR_PART_FORWARD)
                    kept[g->nodes[id].arg[k]] = true;
    uint32_t n_sample = 0, n_invariant = 0;
    double bytes = 0;
    for (NodeId id = 1; id < g->n_nodes; id++) {
        if (!kept[id])
            continue;
        if (g->nodes[id].flags & IR_F_BATCH) {
            n_sample++;
            bytes += 4 * numel_of(g, id);               // float32
        } else
            n_invariant++;
    }
    fprintf(out, "\nforward values kept for the backward pass: %u per-sample, %.0f bytes/sample\n",
            n_sample, bytes);
    uint32_t shown = 0;
    for (NodeId id = 1; id < g->n_nodes && shown < MAX_KEPT_LINES; id++) {
        if (!kept[id] || !(g->nodes[id].flags & IR_F_BATCH))
            continue;
        char sh[64];
        fprintf(out, "  %%%-6u %-12s %-16s %10.0f bytes\n", id, ir_op_info[g->nodes[id].op].name,
                ir_shape_str(g->nodes[id].shape, sh, sizeof sh), 4 * numel_of(g, id));
        shown++;
    }
    if (shown < n_sample)
        fprintf(out, "  ... and %u more\n", n_sample - shown);
    fprintf(out, "  (and %u invariant values: parameters and what depends only on them)\n", n_invariant);
}

void ir_print_stats(NnCtx *c, const Model *forward, const Model *train, FILE *out) {
    Arena scratch = { 0 };
    Cost fwd = { 0 };
    bool *cone = objective_cone(forward, &scratch);
    for (NodeId id = 1; id < forward->g->n_nodes; id++)
        if (cone[id])
            cost_new(&fwd, ir_node_flops(forward->g, id), per_sample(forward->g, id));
    Cost naive = naive_backward(forward, &scratch);

    fprintf(out, "model '%s': the train step per sample (FLOPs as in docs/autodiff.md)\n\n",
            forward->name ? forward->name : "?");
    fprintf(out, "  %-26s %12s %14s %12s %10s %10s\n", "pass", "nodes", "FLOPs/sample", "FLOPs/step",
            "nodes/fwd", "FLOPs/fwd");
    print_row(out, "forward", fwd, fwd, true);
    print_row(out, "backward, naive (counted)", naive, fwd, true);
    if (train) {
        uint8_t *part = ir_classify_nodes(train, &scratch);
        Cost pruned = part_cost(train, part, IR_PART_BACKWARD);
        Cost update = part_cost(train, part, IR_PART_UPDATE);
        bool unpruned = c && c->opt.no_prune;          // -fno-prune: the same row, unpruned
        print_row(out, unpruned ? "backward, unpruned" : "backward, pruned", pruned, fwd, true);
        print_row(out, "update", update, fwd, false);
        char rn[64], rf[64];
        fprintf(out, "\nnaive / %s backward: %s nodes, %s FLOPs/sample\n", unpruned ? "unpruned" : "pruned",
                fmt_ratio(rn, sizeof rn, naive.nodes, pruned.nodes),
                fmt_ratio(rf, sizeof rf, naive.fs, pruned.fs));
        print_kept(train, part, &scratch, out);
    }
    nn_arena_free(&scratch);
}
