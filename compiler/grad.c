// grad.c: symbolic reverse-mode differentiation of the batch objective.
//
// Input: a forward Model (sema): m->objective is an invariant scalar,
// BATCH_SUM(loss) [* SCALAR_ARG(INV_BATCH)]. Output: m->grads[i], an invariant
// node of params[i]'s shape holding d objective / d params[i]. The new nodes
// are appended to the same graph through ir_node(), so an adjoint expression
// that equals a forward one *is* the forward node (sharing across forward and
// backward is free: hash-consing).
//
// How it works (docs/autodiff.md tells the story with examples):
// 1. reaches[id]: does node id depend on a PARAM? Only those nodes get an
//    adjoint: no derivative work for INPUT, TARGET, CONST, SCALAR_ARG or
//    anything that does not lead to a parameter (so never d/d input).
// 2. adj(objective) = 1. One sweep over the forward ids from the objective
//    down to 1 (a loop, never a recursion): when the sweep reaches a node, all
//    its users (larger ids) have been visited, so its contributions are
//    complete; they are summed into one adjoint (sum_contributions), and the
//    node's rule in grad_rules[op] sends one contribution to each operand
//    that reaches a parameter.
// 3. grads[i] = adj(params[i].node), or zeros for a parameter the objective
//    does not depend on (sema has warned).
//
// Conventions of the contributions (send):
// - a contribution has the shape of the node that sends it, or any shape the
//   operand broadcasts to: it is summed down with REDUCE_TO (broadcasting
//   binary ops, BROADCAST itself);
// - a per-sample contribution (sent by a per-sample node) to an invariant
//   operand (a parameter, or anything computed only from parameters) is summed
//   over the batch with BATCH_SUM: dW of W @ x is BATCH_SUM(OUTER(adj, x)).
//   Its value may itself be invariant (a per-sample node's adjoint can be the
//   same for every sample): BATCH_SUM then means batch * value;
// - contributions of one node used many times are summed as one balanced ADD
//   tree, after grouping those of equal shape so that a parameter used k times
//   costs one REDUCE_TO and one BATCH_SUM, not k.
// Non-differentiable points follow LANGUAGE.md §7 (see the rules).
#include <string.h>

#include "autodiff.h"

// A pending contribution to one node's adjoint.
typedef struct Contrib {
    NodeId          value;      // a node of the contribution's own shape
    bool            per_sample; // one value per sample: sent by (or computed as) a per-sample node
    struct Contrib *next;
} Contrib;

typedef struct Grad {
    Graph    *g;
    NodeId    n_fwd;            // forward ids are 1 .. n_fwd - 1: only they get adjoints
    bool     *reaches;          // [n_fwd] depends on a PARAM
    Contrib **pending;          // [n_fwd] contributions not yet summed
    NodeId   *softmax_of;       // [n_fwd] softmax_of[z] = SOFTMAX(z) if the forward graph has it
    bool      sender_batch;     // contributions being sent are per-sample (set per rule)
} Grad;

// ---- Small builders (all through ir.h's hash-consing constructors)

static NodeId k_const(Grad *gr, double v) {
    return ir_scalar(gr->g, v);
}
static NodeId add(Grad *gr, NodeId a, NodeId b, SrcRange at) {
    return ir_binary(gr->g, IR_ADD, a, b, at);
}
static NodeId sub(Grad *gr, NodeId a, NodeId b, SrcRange at) {
    return ir_binary(gr->g, IR_SUB, a, b, at);
}
static NodeId mul(Grad *gr, NodeId a, NodeId b, SrcRange at) {
    return ir_binary(gr->g, IR_MUL, a, b, at);
}
static NodeId div_(Grad *gr, NodeId a, NodeId b, SrcRange at) {
    return ir_binary(gr->g, IR_DIV, a, b, at);
}
static NodeId un(Grad *gr, IrOp op, NodeId a, SrcRange at) {
    return ir_unary(gr->g, op, a, at);
}
static Shape shape(const Grad *gr, NodeId id) {
    return gr->g->nodes[id].shape;
}

// Does operand `id` want a contribution? (Checked before building one.)
static bool wants(const Grad *gr, NodeId id) {
    return id < gr->n_fwd && gr->reaches[id];
}

// Queues `value` as a contribution to the adjoint of forward node `to`. A
// contribution is per-sample when its sender is, even if its value happens to
// be invariant: in loss = f(x) + sum(W^2), the adjoint of the per-sample ADD is
// the invariant 1/batch, but W's regulariser receives it once per sample.
static void send(Grad *gr, NodeId to, NodeId value) {
    if (!wants(gr, to))
        return;
    Contrib *c = NN_NEW(gr->g->arena, Contrib);
    c->value = value;
    c->per_sample = gr->sender_batch || (gr->g->nodes[value].flags & IR_F_BATCH);
    c->next = gr->pending[to];
    gr->pending[to] = c;
}

// Sums v[0..n-1] as a balanced tree of ADDs (depth log2 n, n-1 nodes). n >= 1.
static NodeId balanced_sum(Grad *gr, NodeId *v, size_t n, SrcRange at) {
    while (n > 1) {
        size_t half = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
            v[half++] = add(gr, v[i], v[i + 1], at);
        if (n % 2)
            v[half++] = v[n - 1];
        n = half;
    }
    return v[0];
}

// The adjoint of forward node `id`: the sum of its pending contributions, in
// the node's shape and batch kind. Contributions are grouped by (per-sample?,
// shape) and each group is summed before it is reduced, so reductions happen
// once per group, and the per-sample groups of an invariant node share one
// BATCH_SUM. Returns 0 when nothing was sent.
static NodeId sum_contributions(Grad *gr, NodeId id) {
    Node n = gr->g->nodes[id];          // a copy: building nodes may move nodes[]
    size_t count = 0;
    for (Contrib *c = gr->pending[id]; c; c = c->next)
        count++;
    if (count == 0)
        return 0;

    Arena *a = gr->g->arena;
    NodeId *vals = nn_alloc_array(a, count, sizeof(NodeId));
    bool *batch_of = nn_alloc_array(a, count, sizeof(bool));
    bool *used = nn_alloc_array(a, count, sizeof(bool));
    NodeId *group = nn_alloc_array(a, count, sizeof(NodeId));
    NodeId *per_sample = nn_alloc_array(a, count, sizeof(NodeId));
    NodeId *ready = nn_alloc_array(a, count, sizeof(NodeId));   // of the node's kind already
    size_t n_per_sample = 0, n_ready = 0;

    // The list is newest first; restore the order of the sweep (users by decreasing id).
    size_t k = count;
    for (Contrib *c = gr->pending[id]; c; c = c->next) {
        vals[--k] = c->value;
        batch_of[k] = c->per_sample;
    }

    for (size_t i = 0; i < count; i++) {
        if (used[i])
            continue;
        Node first = gr->g->nodes[vals[i]];
        bool batch = batch_of[i];
        size_t n_group = 0;
        for (size_t j = i; j < count; j++) {
            const Node *other = &gr->g->nodes[vals[j]];
            if (!used[j] && batch_of[j] == batch && ir_shape_eq(other->shape, first.shape)) {
                used[j] = true;
                group[n_group++] = vals[j];
            }
        }
        NodeId sum = balanced_sum(gr, group, n_group, n.at);
        if (!ir_shape_eq(first.shape, n.shape))
            sum = ir_reduce_to(gr->g, sum, n.shape, n.at);   // undo broadcasting
        if (batch && !(n.flags & IR_F_BATCH))
            per_sample[n_per_sample++] = sum;   // to an invariant node: summed over the batch below
        else
            ready[n_ready++] = sum;
    }
    if (n_per_sample)   // one sum over the batch for all of them
        ready[n_ready++] = ir_reduce(gr->g, IR_BATCH_SUM, balanced_sum(gr, per_sample, n_per_sample, n.at), n.at);
    return balanced_sum(gr, ready, n_ready, n.at);
}

// ---- The rules. One per op: `n` is (a copy of) the forward node `id`, `g` its
// adjoint (same shape; may be invariant for a per-sample node).

typedef void GradRule(Grad *gr, NodeId id, const Node *n, NodeId g);

// STEP, SIGN, GE: piecewise constant, the derivative is zero where it exists.
static void rule_zero(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)gr, (void)id, (void)n, (void)g;
}

static void rule_neg(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], un(gr, IR_NEG, g, n->at));
}

// exp' = e: the forward value itself.
static void rule_exp(Grad *gr, NodeId id, const Node *n, NodeId g) {
    send(gr, n->arg[0], mul(gr, g, id, n->at));
}

// sqrt' = 0.5 / s, with s the forward value.
static void rule_sqrt(Grad *gr, NodeId id, const Node *n, NodeId g) {
    send(gr, n->arg[0], mul(gr, g, div_(gr, k_const(gr, 0.5), id, n->at), n->at));
}

// abs'(0) = 0 (LANGUAGE.md §7): SIGN(0) = 0.
static void rule_abs(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], mul(gr, g, un(gr, IR_SIGN, n->arg[0], n->at), n->at));
}

// tanh' = 1 - t^2, with t the forward value.
static void rule_tanh(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId d = sub(gr, k_const(gr, 1), un(gr, IR_SQUARE, id, n->at), n->at);
    send(gr, n->arg[0], mul(gr, g, d, n->at));
}

// sigmoid' = s * (1 - s), with s the forward value.
static void rule_sigmoid(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId d = mul(gr, id, sub(gr, k_const(gr, 1), id, n->at), n->at);
    send(gr, n->arg[0], mul(gr, g, d, n->at));
}

// relu'(0) = 0 (LANGUAGE.md §7). STEP(relu(a)) = STEP(a), and reading the
// activation keeps only it alive for the backward pass, not the pre-activation.
static void rule_relu(Grad *gr, NodeId id, const Node *n, NodeId g) {
    send(gr, n->arg[0], mul(gr, g, un(gr, IR_STEP, id, n->at), n->at));
}

// softplus' = sigmoid.
static void rule_softplus(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], mul(gr, g, un(gr, IR_SIGMOID, n->arg[0], n->at), n->at));
}

static void rule_sin(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], mul(gr, g, un(gr, IR_COS, n->arg[0], n->at), n->at));
}

static void rule_cos(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], un(gr, IR_NEG, mul(gr, g, un(gr, IR_SIN, n->arg[0], n->at), n->at), n->at));
}

// (a^2)' = 2a.
static void rule_square(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], mul(gr, g, mul(gr, k_const(gr, 2), n->arg[0], n->at), n->at));
}

// leaky_relu' = 1 for a > 0, alpha otherwise (0 goes with the negative side,
// as relu'(0) = 0). alpha + (1 - alpha) * STEP(.). For alpha >= 0 the output
// is positive exactly where a is, so STEP reads the activation (see relu).
static void rule_leaky_relu(Grad *gr, NodeId id, const Node *n, NodeId g) {
    double alpha = n->imm;
    NodeId step = un(gr, IR_STEP, alpha >= 0 ? id : n->arg[0], n->at);
    NodeId d = add(gr, k_const(gr, alpha), mul(gr, k_const(gr, 1 - alpha), step, n->at), n->at);
    send(gr, n->arg[0], mul(gr, g, d, n->at));
}

// Binary elementwise ops: contributions have the result's shape;
// sum_contributions reduces them to the operand's shape (broadcasting).
static void rule_add(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], g);
    send(gr, n->arg[1], g);
}

static void rule_sub(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], g);
    if (wants(gr, n->arg[1]))
        send(gr, n->arg[1], un(gr, IR_NEG, g, n->at));
}

static void rule_mul(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId a = n->arg[0], b = n->arg[1];
    if (wants(gr, a))
        send(gr, a, mul(gr, g, b, n->at));
    if (wants(gr, b))
        send(gr, b, mul(gr, g, a, n->at));
}

// d(a/b) = g/b for a, -g * (a/b) / b for b: the quotient is the forward value.
static void rule_div(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId a = n->arg[0], b = n->arg[1];
    if (wants(gr, a))
        send(gr, a, div_(gr, g, b, n->at));
    if (wants(gr, b))
        send(gr, b, un(gr, IR_NEG, div_(gr, mul(gr, g, id, n->at), b, n->at), n->at));
}

// a^c with a constant c: c * a^(c-1) (c = 2: 2a, c = 1: 1, c = 0: nothing).
// Otherwise also d/db = a^b * log(a), the forward value times log(a).
static void rule_pow(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId a = n->arg[0], b = n->arg[1];
    Node nb = gr->g->nodes[b];
    if (nb.op == IR_CONST) {
        double c = nb.imm;
        if (c == 0 || !wants(gr, a))
            return;
        NodeId d;
        if (c == 1)
            d = g;
        else if (c == 2)
            d = mul(gr, g, mul(gr, k_const(gr, 2), a, n->at), n->at);
        else
            d = mul(gr, g, mul(gr, k_const(gr, c), ir_binary(gr->g, IR_POW, a, k_const(gr, c - 1), n->at),
                                n->at), n->at);
        send(gr, a, d);
        return;
    }
    if (wants(gr, a)) {
        NodeId p = ir_binary(gr->g, IR_POW, a, sub(gr, b, k_const(gr, 1), n->at), n->at);
        send(gr, a, mul(gr, g, mul(gr, b, p, n->at), n->at));
    }
    if (wants(gr, b))
        send(gr, b, mul(gr, g, mul(gr, id, un(gr, IR_LOG, a, n->at), n->at), n->at));
}

// max(a,b) sends to a when a >= b, min(a,b) to a when a <= b (LANGUAGE.md §7):
// the tie goes to a, the other operand gets g * (1 - mask).
static void send_masked(Grad *gr, const Node *n, NodeId g, NodeId mask) {
    if (wants(gr, n->arg[0]))
        send(gr, n->arg[0], mul(gr, g, mask, n->at));
    if (wants(gr, n->arg[1]))
        send(gr, n->arg[1], mul(gr, g, sub(gr, k_const(gr, 1), mask, n->at), n->at));
}

static void rule_max(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send_masked(gr, n, g, ir_binary(gr->g, IR_GE, n->arg[0], n->arg[1], n->at));
}

static void rule_min(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send_masked(gr, n, g, ir_binary(gr->g, IR_GE, n->arg[1], n->arg[0], n->at));
}

// The four rank cases of a @ b:
//   [m,k] @ [k]   -> [m]   da = OUTER(g, b)       db = g @ a       ([m] @ [m,k])
//   [m,k] @ [k,n] -> [m,n] da = g @ b^T           db = a^T @ g
//   [k]   @ [k,n] -> [n]   da = b @ g ([k,n]@[n]) db = OUTER(a, g)
//   [k]   @ [k]   -> []    da = g * b             db = g * a
static void rule_matmul(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    Graph *G = gr->g;
    NodeId a = n->arg[0], b = n->arg[1];
    int ra = shape(gr, a).rank, rb = shape(gr, b).rank;
    bool want_a = wants(gr, a), want_b = wants(gr, b);
    if (ra == 2 && rb == 1) {
        if (want_a) send(gr, a, ir_outer(G, g, b, n->at));
        if (want_b) send(gr, b, ir_matmul(G, g, a, n->at));
    } else if (ra == 2 && rb == 2) {
        if (want_a) send(gr, a, ir_matmul(G, g, ir_transpose(G, b, n->at), n->at));
        if (want_b) send(gr, b, ir_matmul(G, ir_transpose(G, a, n->at), g, n->at));
    } else if (ra == 1 && rb == 2) {
        if (want_a) send(gr, a, ir_matmul(G, b, g, n->at));
        if (want_b) send(gr, b, ir_outer(G, a, g, n->at));
    } else {
        if (want_a) send(gr, a, mul(gr, g, b, n->at));
        if (want_b) send(gr, b, mul(gr, g, a, n->at));
    }
}

// [m] (x) [n] -> [m,n]: da = g @ b ([m,n] @ [n]), db = a @ g ([m] @ [m,n]).
static void rule_outer(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId a = n->arg[0], b = n->arg[1];
    if (wants(gr, a))
        send(gr, a, ir_matmul(gr->g, g, b, n->at));
    if (wants(gr, b))
        send(gr, b, ir_matmul(gr->g, a, g, n->at));
}

static void rule_transpose(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], ir_transpose(gr->g, g, n->at));
}

static void rule_reshape(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], ir_reshape(gr->g, g, shape(gr, n->arg[0]), n->at));
}

// The adjoint of a broadcast is a reduction: sum_contributions does the REDUCE_TO.
static void rule_broadcast(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], g);
}

// REDUCE_TO, SUM, SUM_LAST: every element summed gets the adjoint of its sum.
static void rule_spread(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    send(gr, n->arg[0], ir_broadcast(gr->g, g, shape(gr, n->arg[0]), n->at));
}

// logsumexp' = softmax over all elements = exp(a - lse), lse the forward value.
static void rule_logsumexp(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId a = n->arg[0];
    send(gr, a, mul(gr, g, un(gr, IR_EXP, sub(gr, a, id, n->at), n->at), n->at));
}

// softmax' applied to g: s * (g - SUM_LAST(g * s)), s the forward value.
static void rule_softmax(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId dot = ir_reduce(gr->g, IR_SUM_LAST, mul(gr, g, id, n->at), n->at);
    send(gr, n->arg[0], mul(gr, id, sub(gr, g, dot, n->at), n->at));
}

// Is `id` the same along the last axis (a scalar or a [..,1] column, possibly
// under a BROADCAST)? Broadcasting aligns trailing axes, so a lower-rank [n]
// operand is NOT uniform: it varies along the last axis.
static bool uniform_on_last_axis(const Grad *gr, NodeId id) {
    const Node *u = &gr->g->nodes[id];
    if (u->op == IR_BROADCAST)
        u = &gr->g->nodes[u->arg[0]];
    return u->shape.rank == 0 || u->shape.dim[u->shape.rank - 1] == 1;
}

// The adjoint of z in log_softmax(z) (or log(softmax(z))), given the softmax p
// and the adjoint h of the log-probabilities: h - p * SUM_LAST(h). When h is
// c * y with c the same along the last axis (cross-entropy: h = -g * y), this
// is c * (y - p * SUM_LAST(y)) = g * (p * SUM_LAST(y) - y): softmax followed
// by cross-entropy differentiates to "p - y", exactly (SUM_LAST(y) is kept: we
// do not assume the target sums to 1).
static void send_log_softmax(Grad *gr, const Node *n, NodeId z, NodeId p, NodeId h) {
    Node hn = gr->g->nodes[h];
    if (hn.op == IR_MUL) {
        for (int k = 0; k < 2; k++) {
            NodeId c = hn.arg[k], y = hn.arg[1 - k];
            if (uniform_on_last_axis(gr, c) && ir_shape_eq(shape(gr, y), hn.shape)) {
                NodeId py = mul(gr, p, ir_reduce(gr->g, IR_SUM_LAST, y, n->at), n->at);
                // c = -g (possibly broadcast): write g * (p * SUM_LAST(y) - y).
                if (gr->g->nodes[c].op == IR_BROADCAST)
                    c = gr->g->nodes[c].arg[0];
                Node cn = gr->g->nodes[c];
                if (cn.op == IR_NEG)
                    send(gr, z, mul(gr, cn.arg[0], sub(gr, py, y, n->at), n->at));
                else
                    send(gr, z, mul(gr, c, sub(gr, y, py, n->at), n->at));
                return;
            }
        }
    }
    NodeId sh = ir_reduce(gr->g, IR_SUM_LAST, h, n->at);
    send(gr, z, sub(gr, h, mul(gr, p, sh, n->at), n->at));
}

// The softmax of z: the forward SOFTMAX(z) node if the model has one, else exp(log_softmax).
static void rule_log_softmax(Grad *gr, NodeId id, const Node *n, NodeId g) {
    NodeId z = n->arg[0];
    NodeId p = gr->softmax_of[z] ? gr->softmax_of[z] : un(gr, IR_EXP, id, n->at);
    send_log_softmax(gr, n, z, p, g);
}

static bool is_one(const Grad *gr, NodeId id) {
    return gr->g->nodes[id].op == IR_CONST && gr->g->nodes[id].imm == 1;
}

// log' = 1/a. Three compositions are differentiated as a whole, straight to
// the logits z: the same derivatives, without dividing by probabilities that
// may underflow to 0, and fewer nodes (binary and softmax cross-entropy):
//   log(softmax(z))     as log_softmax(z)     (send_log_softmax)
//   log(sigmoid(z))     d/dz = 1 - s          (s = sigmoid(z), the forward value)
//   log(1 - sigmoid(z)) d/dz = -s
static void rule_log(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId a = n->arg[0];
    Node na = gr->g->nodes[a];
    if (na.op == IR_SOFTMAX) {
        if (wants(gr, na.arg[0]))
            send_log_softmax(gr, n, na.arg[0], a, g);
        return;
    }
    if (na.op == IR_SIGMOID) {
        if (wants(gr, na.arg[0]))
            send(gr, na.arg[0], mul(gr, g, sub(gr, k_const(gr, 1), a, n->at), n->at));
        return;
    }
    if (na.op == IR_SUB && is_one(gr, na.arg[0]) && gr->g->nodes[na.arg[1]].op == IR_SIGMOID) {
        NodeId s = na.arg[1], z = gr->g->nodes[s].arg[0];
        if (wants(gr, z))
            send(gr, z, un(gr, IR_NEG, mul(gr, g, s, n->at), n->at));
        return;
    }
    send(gr, a, div_(gr, g, a, n->at));
}

// BATCH_SUM's adjoint is the same for every sample: g itself (invariant),
// received once per sample. So an invariant operand (BATCH_SUM(x) = batch * x)
// gets it summed over the batch, like any per-sample contribution.
static void rule_batch_sum(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    gr->sender_batch = true;
    send(gr, n->arg[0], g);
}

// conv2d(x, W): dx = CONV2D_DX(g, W), dW = CONV2D_DW(g, x) (attr as the conv).
static void rule_conv2d(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId x = n->arg[0], w = n->arg[1];
    if (wants(gr, x))
        send(gr, x, ir_node_shaped(gr->g, IR_CONV2D_DX, g, w, shape(gr, x), n->attr[0], n->attr[1], n->at));
    if (wants(gr, w))
        send(gr, w, ir_node_shaped(gr->g, IR_CONV2D_DW, g, x, shape(gr, w), n->attr[0], n->attr[1], n->at));
}

// The gradient ops are linear in each operand; their adjoints are the other
// readings of the same loop (interp.c conv_loop): for dx = CONV2D_DX(A, W),
// <G, dx> = <CONV2D(G, W), A> = <CONV2D_DW(A, G), W>.
static void rule_conv2d_dx(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId A = n->arg[0], w = n->arg[1];
    if (wants(gr, A))
        send(gr, A, ir_node_shaped(gr->g, IR_CONV2D, g, w, shape(gr, A), n->attr[0], n->attr[1], n->at));
    if (wants(gr, w))
        send(gr, w, ir_node_shaped(gr->g, IR_CONV2D_DW, A, g, shape(gr, w), n->attr[0], n->attr[1], n->at));
}

// dW = CONV2D_DW(A, x): <G, dW> = <CONV2D(x, G), A> = <CONV2D_DX(A, G), x>.
static void rule_conv2d_dw(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId A = n->arg[0], x = n->arg[1];
    if (wants(gr, A))
        send(gr, A, ir_node_shaped(gr->g, IR_CONV2D, x, g, shape(gr, A), n->attr[0], n->attr[1], n->at));
    if (wants(gr, x))
        send(gr, x, ir_node_shaped(gr->g, IR_CONV2D_DX, A, g, shape(gr, x), n->attr[0], n->attr[1], n->at));
}

// maxpool2d sends g to the first maximal element of each window (§7).
static void rule_maxpool2d(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId x = n->arg[0];
    send(gr, x, ir_node_shaped(gr->g, IR_MAXPOOL2D_DX, x, g, shape(gr, x), n->attr[0], n->attr[1], n->at));
}

static void rule_avgpool2d(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId x = n->arg[0];
    send(gr, x, ir_node_shaped(gr->g, IR_AVGPOOL2D_DX, g, 0, shape(gr, x), n->attr[0], n->attr[1], n->at));
}

// AVGPOOL2D_DX(A) spreads A / area over each window: its adjoint averages G back.
static void rule_avgpool2d_dx(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)id;
    NodeId A = n->arg[0];
    send(gr, A, ir_node_shaped(gr->g, IR_AVGPOOL2D, g, 0, shape(gr, A), n->attr[0], n->attr[1], n->at));
}

// MAXPOOL2D_DX(x, A) is piecewise constant in x; in A it is a scatter whose
// adjoint (a gather at the argmax) has no op: second derivatives through
// max-pooling are not supported. Sema never builds this op, so only a train
// step differentiated again could reach it.
static void rule_maxpool2d_dx(Grad *gr, NodeId id, const Node *n, NodeId g) {
    (void)gr, (void)id, (void)g;
    nn_bug("grad: no second derivative through '%s'", ir_op_info[n->op].name);
}

// The table, indexed by IrOp. Leaves have no rule (NULL): nothing flows
// through them. tests/unit/test_grad_rules.c walks IR_N_OPS and fails on a gap.
static GradRule *const grad_rules[IR_N_OPS] = {
    [IR_NEG] = rule_neg,                [IR_EXP] = rule_exp,
    [IR_LOG] = rule_log,                [IR_SQRT] = rule_sqrt,
    [IR_ABS] = rule_abs,                [IR_TANH] = rule_tanh,
    [IR_SIGMOID] = rule_sigmoid,        [IR_RELU] = rule_relu,
    [IR_SOFTPLUS] = rule_softplus,      [IR_SIN] = rule_sin,
    [IR_COS] = rule_cos,                [IR_SQUARE] = rule_square,
    [IR_STEP] = rule_zero,              [IR_SIGN] = rule_zero,
    [IR_LEAKY_RELU] = rule_leaky_relu,
    [IR_ADD] = rule_add,                [IR_SUB] = rule_sub,
    [IR_MUL] = rule_mul,                [IR_DIV] = rule_div,
    [IR_POW] = rule_pow,                [IR_MAX] = rule_max,
    [IR_MIN] = rule_min,                [IR_GE] = rule_zero,
    [IR_MATMUL] = rule_matmul,          [IR_OUTER] = rule_outer,
    [IR_TRANSPOSE] = rule_transpose,    [IR_RESHAPE] = rule_reshape,
    [IR_BROADCAST] = rule_broadcast,    [IR_REDUCE_TO] = rule_spread,
    [IR_SUM] = rule_spread,             [IR_SUM_LAST] = rule_spread,
    [IR_LOGSUMEXP] = rule_logsumexp,    [IR_SOFTMAX] = rule_softmax,
    [IR_LOG_SOFTMAX] = rule_log_softmax,[IR_BATCH_SUM] = rule_batch_sum,
    [IR_CONV2D] = rule_conv2d,          [IR_CONV2D_DX] = rule_conv2d_dx,
    [IR_CONV2D_DW] = rule_conv2d_dw,    [IR_MAXPOOL2D] = rule_maxpool2d,
    [IR_MAXPOOL2D_DX] = rule_maxpool2d_dx,
    [IR_AVGPOOL2D] = rule_avgpool2d,    [IR_AVGPOOL2D_DX] = rule_avgpool2d_dx,
};

bool ir_has_grad_rule(IrOp op) {
    return op < IR_N_OPS && grad_rules[op] != NULL;
}

void ir_differentiate(Model *m) {
    Graph *g = m->g;
    Arena *a = g->arena;
    Grad gr = { .g = g, .n_fwd = g->n_nodes };
    gr.reaches = nn_alloc_array(a, gr.n_fwd, sizeof(bool));
    gr.pending = nn_alloc_array(a, gr.n_fwd, sizeof(Contrib *));
    gr.softmax_of = nn_alloc_array(a, gr.n_fwd, sizeof(NodeId));

    // 1. Which nodes depend on a parameter (operands come first: one forward loop).
    for (NodeId id = 1; id < gr.n_fwd; id++) {
        const Node *n = &g->nodes[id];
        bool r = n->op == IR_PARAM;
        for (int k = 0; k < n->n_args; k++)
            r = r || gr.reaches[n->arg[k]];
        gr.reaches[id] = r;
        if (n->op == IR_SOFTMAX)
            gr.softmax_of[n->arg[0]] = id;
    }

    // 2. The reverse sweep.
    m->grads = nn_alloc_array(a, m->n_params ? m->n_params : 1, sizeof(NodeId));
    NodeId *adj = nn_alloc_array(a, gr.n_fwd, sizeof(NodeId));
    if (m->objective && gr.reaches[m->objective]) {
        gr.sender_batch = false;
        send(&gr, m->objective, ir_scalar(g, 1.0));
        for (NodeId id = m->objective; id > 0; id--) {
            if (!gr.pending[id])
                continue;                       // does not lead to the objective
            adj[id] = sum_contributions(&gr, id);
            Node n = g->nodes[id];              // a copy: the rule appends nodes
            if (ir_op_info[n.op].kind == IR_KIND_LEAF)
                continue;                       // a PARAM: its adjoint is the gradient
            GradRule *rule = grad_rules[n.op];
            NN_ASSERT(rule != NULL);
            gr.sender_batch = n.flags & IR_F_BATCH;
            rule(&gr, id, &n, adj[id]);
        }
    }

    // 3. The gradients, invariant and of the parameter's shape.
    for (uint32_t i = 0; i < m->n_params; i++) {
        NodeId p = m->params[i].node;
        NodeId d = p < gr.n_fwd ? adj[p] : 0;
        m->grads[i] = d ? d : ir_const(g, 0.0, m->params[i].shape, m->params[i].at);
        NN_ASSERT(ir_shape_eq(g->nodes[m->grads[i]].shape, m->params[i].shape));
        NN_ASSERT(!(g->nodes[m->grads[i]].flags & IR_F_BATCH));
    }
}
