// pass_simplify.c: algebraic simplification and constant folding.
//
// Guarantees:
// - values: a rewrite never changes a value the interpreter computes, bit
//   for bit, NaN, infinities and the sign of zero included. Hence:
//   * 0 * x is NOT folded to 0: x may be inf or NaN, and inf * 0 is NaN. We
//     refuse the rewrite, as Lua's constant folder refuses to fold NaN,
//     rather than follow computer-algebra systems (0 * x = 0) and silently
//     turn a NaN objective finite;
//   * x + 0 -> x only when x cannot be -0 (-0 + 0 = +0, and 1/-0 = -inf while
//     1/+0 = +inf), and 0 - x -> -x only when the zero is -0 (0 - 0 = +0);
//   * constant folding computes in double, as the interpreter does, and
//     refuses a non-finite result.
//   The one exception: x^2 -> x*x gives the correctly rounded square where
//   libm's pow may be half an ulp off (LLVM makes the same rewrite).
// - size: the live node count never grows (asserted). Each rule returns an
//   existing node or exactly one new node standing for the one it replaces,
//   never a tree: no distributive expansion (Theano once built 7 million
//   nodes with one).
// - kind: a replacement has the node's shape and batch kind (pass_util.c checks).
//
// The rules, applied bottom-up in one forward rebuild (operands first, so a
// rule sees simplified operands and chains like --(--x) collapse in one pass):
//   c1 op c2, op(c)            -> constant           (elementwise, finite result)
//   broadcast/reshape/transpose(c) -> constant of the new shape
//   sum/sum_last/reduce_to(c)  -> constant * count   (when the sum is exact)
//   x + 0, 0 + x, x - 0        -> x     (when exact: see never_negative_zero)
//   -0 - x                     -> -x
//   x + (-y) -> x - y,  x - (-y) -> x + y,  (-x) * (-y) -> x * y
//   x * 1, 1 * x, x / 1        -> x
//   x * -1, -1 * x, x / -1     -> -x
//   x * x                      -> square(x)
//   --x                        -> x
//   x ^ 1 -> x,  x ^ 2 -> square(x)
//   reshape(x) to x's shape, broadcast(x) or reduce_to(x) to x's shape -> x
//   reshape(reshape(x))        -> reshape(x)
//   transpose(transpose(x))    -> x
//   broadcast(broadcast(x))    -> broadcast(x)
//   x op broadcast(y)          -> x op y   (elementwise op, same result shape)
#include <math.h>

#include "autodiff.h"

static const Node *node(const Graph *g, NodeId id) {
    return &g->nodes[id];
}

// Is `id` a CONST (a tensor filled with one value)? Its value in *v.
static bool const_value(const Graph *g, NodeId id, double *v) {
    if (node(g, id)->op != IR_CONST)
        return false;
    *v = node(g, id)->imm;
    return true;
}

static bool is_const(const Graph *g, NodeId id, double v) {
    double c;
    return const_value(g, id, &c) && c == v;
}

// Can node `id` never be -0? Then x + 0 is x exactly (-0 + 0 = +0 is the only
// case where adding a zero changes a value). Decided from the op alone: a
// constant other than -0, results that are +0 or positive when they are not
// NaN (exp, sigmoid, softplus, relu, abs, square, step, sign, ge, softmax, the
// run-time scalars), and sums, which the interpreter accumulates from +0.
static bool never_negative_zero(const Graph *g, NodeId id) {
    const Node *n = node(g, id);
    switch (n->op) {
    case IR_CONST:      return !(n->imm == 0 && signbit(n->imm));
    case IR_SCALAR_ARG: case IR_EXP: case IR_SIGMOID: case IR_SOFTPLUS: case IR_RELU:
    case IR_ABS: case IR_SQUARE: case IR_STEP: case IR_SIGN: case IR_GE: case IR_SOFTMAX:
    case IR_SUM: case IR_SUM_LAST: case IR_REDUCE_TO: case IR_BATCH_SUM: case IR_MATMUL:
        return true;
    default:
        return false;
    }
}

static bool is_negative_zero(const Graph *g, NodeId id) {
    double c;
    return const_value(g, id, &c) && c == 0 && signbit(c);
}

// x + 0 -> x, exact: when the zero is -0, or x cannot be -0.
static bool add_zero_is_exact(const Graph *g, NodeId x, NodeId zero) {
    return is_const(g, zero, 0) && (is_negative_zero(g, zero) || never_negative_zero(g, x));
}

// Would `r` be a valid replacement of the node `n` being built? Same shape and
// same batch kind (BATCH_SUM aside, a node is per-sample iff an operand is).
static bool fits(const Graph *g, NodeId r, const Node *n) {
    bool batch = false;
    for (int k = 0; k < n->n_args; k++)
        batch |= node(g, n->arg[k])->flags & IR_F_BATCH;
    if (n->op == IR_BATCH_SUM)
        batch = false;
    return ir_shape_eq(node(g, r)->shape, n->shape) && (bool)(node(g, r)->flags & IR_F_BATCH) == batch;
}

// The sum of `count` copies of c, when every partial sum is exact in double
// (so any summation order gives c * count, as the interpreter would): c a
// multiple of 2^-20 and |c * count| < 2^32 keep all partial sums within 53 bits.
static bool exact_sum(double c, int64_t count, double *out) {
    double scaled = c * 1048576.0;     // 2^20
    if (scaled != floor(scaled) || fabs(c * (double)count) >= 4294967296.0)
        return false;
    *out = c * (double)count;
    return true;
}

// Constant folding; 0 when the node is not constant (or the result is not finite).
static NodeId fold(Graph *g, const Node *n) {
    double a, b, v;
    IrOpKind kind = ir_op_info[n->op].kind;
    if (kind == IR_KIND_LEAF || !const_value(g, n->arg[0], &a))
        return 0;
    if (kind == IR_KIND_UNARY)
        v = ir_eval_unary((IrOp)n->op, a, n->imm);   // the interpreter's semantics
    else if (kind == IR_KIND_BINARY) {
        if (!const_value(g, n->arg[1], &b))
            return 0;
        v = ir_eval_binary((IrOp)n->op, a, b);
    } else {
        int64_t count = ir_numel(node(g, n->arg[0])->shape) / (ir_numel(n->shape) ? ir_numel(n->shape) : 1);
        switch (n->op) {
        case IR_BROADCAST:
        case IR_RESHAPE:
        case IR_TRANSPOSE:
            v = a;
            break;
        case IR_SUM:
        case IR_SUM_LAST:
        case IR_REDUCE_TO:
            if (!exact_sum(a, count, &v))
                return 0;
            break;
        default:
            return 0;                   // matmul, softmax, ... of constants: rare, left alone
        }
    }
    if (!isfinite(v))
        return 0;
    return ir_const(g, v, n->shape, n->at);
}

// op(broadcast(x), y) -> op(x, y) for an elementwise binary op, when the
// op's own broadcasting gives the same result shape: the explicit BROADCAST
// (a reduction's adjoint, typically) need not be materialised.
static NodeId drop_broadcast(Graph *g, const Node *n) {
    for (int k = 0; k < 2; k++) {
        const Node *b = node(g, n->arg[k]);
        Shape s;
        if (b->op != IR_BROADCAST)
            continue;
        NodeId x = b->arg[0], y = n->arg[1 - k];
        if (ir_broadcast_shape(node(g, x)->shape, node(g, y)->shape, &s) && ir_shape_eq(s, n->shape))
            return k == 0 ? ir_binary(g, (IrOp)n->op, x, y, n->at) : ir_binary(g, (IrOp)n->op, y, x, n->at);
    }
    return 0;
}

// One rule set per op; returns the replacement, or 0 to keep the node.
static NodeId rewrite(Graph *g, const Node *n) {
    NodeId a = n->n_args > 0 ? n->arg[0] : 0, b = n->n_args > 1 ? n->arg[1] : 0;
    const Node *na = a ? node(g, a) : NULL, *nb = b ? node(g, b) : NULL;
    if (ir_op_info[n->op].kind == IR_KIND_BINARY && (na->op == IR_BROADCAST || nb->op == IR_BROADCAST)) {
        NodeId r = drop_broadcast(g, n);
        if (r)
            return r;
    }
    switch (n->op) {
    case IR_ADD:
        if (add_zero_is_exact(g, a, b)) return a;                         // x + 0
        if (add_zero_is_exact(g, b, a)) return b;                         // 0 + x
        if (nb->op == IR_NEG) return ir_binary(g, IR_SUB, a, nb->arg[0], n->at);   // x + -y
        if (na->op == IR_NEG) return ir_binary(g, IR_SUB, b, na->arg[0], n->at);   // -y + x
        return 0;
    case IR_SUB:
        if (is_const(g, b, 0) && !is_negative_zero(g, b)) return a;       // x - (+0): exact
        if (is_negative_zero(g, b) && never_negative_zero(g, a)) return a;// x - (-0) = x + (+0)
        if (is_negative_zero(g, a)) return ir_unary(g, IR_NEG, b, n->at); // -0 - x (not +0 - x: 0 - 0 = +0)
        if (nb->op == IR_NEG) return ir_binary(g, IR_ADD, a, nb->arg[0], n->at);   // x - -y
        return 0;
    case IR_MUL:
        if (is_const(g, b, 1)) return a;                                  // x * 1
        if (is_const(g, a, 1)) return b;                                  // 1 * x
        if (is_const(g, b, -1)) return ir_unary(g, IR_NEG, a, n->at);     // x * -1
        if (is_const(g, a, -1)) return ir_unary(g, IR_NEG, b, n->at);     // -1 * x
        if (a == b) return ir_unary(g, IR_SQUARE, a, n->at);              // x * x
        if (na->op == IR_NEG && nb->op == IR_NEG)                         // -x * -y
            return ir_binary(g, IR_MUL, na->arg[0], nb->arg[0], n->at);
        return 0;
    case IR_DIV:
        if (is_const(g, b, 1)) return a;                                  // x / 1
        if (is_const(g, b, -1)) return ir_unary(g, IR_NEG, a, n->at);     // x / -1
        return 0;
    case IR_NEG:
        if (na->op == IR_NEG) return na->arg[0];                          // --x
        return 0;
    case IR_POW:
        if (is_const(g, b, 1)) return a;                                  // x ^ 1
        if (is_const(g, b, 2)) return ir_unary(g, IR_SQUARE, a, n->at);   // x ^ 2 (see the header)
        return 0;
    case IR_RESHAPE:
        if (na->op == IR_RESHAPE)                                         // reshape(reshape(x))
            return ir_shape_eq(node(g, na->arg[0])->shape, n->shape) ? na->arg[0]
                                                                     : ir_reshape(g, na->arg[0], n->shape, n->at);
        return a;                                                         // to its own shape (fits() decides)
    case IR_BROADCAST:
        if (na->op == IR_BROADCAST) return ir_broadcast(g, na->arg[0], n->shape, n->at);
        return a;
    case IR_REDUCE_TO:
        return a;                                                         // to its own shape
    case IR_TRANSPOSE:
        if (na->op == IR_TRANSPOSE) return na->arg[0];                    // (x^T)^T
        return 0;
    default:
        return 0;
    }
}

static NodeId simplify_node(Graph *g, const Node *n, void *ctx) {
    (void)ctx;
    NodeId r = fold(g, n);
    if (r && fits(g, r, n))
        return r;
    r = rewrite(g, n);
    if (r && fits(g, r, n))
        return r;
    return ir_node(g, *n);
}

void ir_pass_simplify(Model *m) {
    uint32_t before = ir_count_live(m);
    ir_rebuild(m, NULL, simplify_node, NULL);
    NN_ASSERT(ir_count_live(m) <= before);   // no rewrite may expand the graph
}
