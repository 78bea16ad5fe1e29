// ir.c: the IR core. The op table (generated from ir_ops.def), graphs, the
// hash-consing constructor ir_node(), shape helpers and the convenience
// constructors that compute result shapes.
//
// Invariants kept here, relied on by every pass:
// - operands have smaller ids than their users (nodes[] is topological);
// - structurally equal nodes are one node: the key is (op, n_args, args,
//   shape, attr, bits of imm); `at` is not in the key, so a shared node keeps
//   the range of the first construction;
// - commutative ops hold their two operands in increasing id order;
// - IR_F_BATCH is set on INPUT, TARGET and anything that uses a per-sample
//   operand, except BATCH_SUM, which is invariant by definition.
#include <ctype.h>
#include <string.h>

#include "ir.h"

// Op names: "MATMUL" from the .def, lowercased once at load time so that an
// op appended to ir_ops.def needs no second list here.
static char op_names[IR_N_OPS][24] = {
#define IR_OP(name, arity, comm, flops, kind) #name,
#include "ir_ops.def"
#undef IR_OP
};

const IrOpInfo ir_op_info[IR_N_OPS] = {
#define IR_OP(name, arity, comm, flops, kind) \
    { op_names[IR_##name], arity, comm, flops, IR_KIND_##kind },
#include "ir_ops.def"
#undef IR_OP
};

__attribute__((constructor)) static void lowercase_op_names(void) {
    for (int i = 0; i < IR_N_OPS; i++)
        for (char *p = op_names[i]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
}

// ---- Graphs and hash-consing

enum { INITIAL_NODES = 64 };

Graph *ir_graph_new(Arena *a) {
    Graph *g = NN_NEW(a, Graph);
    g->arena = a;
    g->nodes_cap = INITIAL_NODES;
    g->nodes = nn_alloc_array(a, g->nodes_cap, sizeof(Node));
    g->n_nodes = 1;                        // nodes[0] is "no node"
    g->slots_cap = 2 * INITIAL_NODES;
    g->slots = nn_alloc_array(a, g->slots_cap, sizeof(uint32_t));
    return g;
}

static uint64_t hash_mix(uint64_t h, uint64_t v) {
    // FNV-1a over the 8 bytes of v.
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t imm_bits(double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);        // -0.0 and 0.0 differ, NaN equals itself
    return bits;
}

static uint64_t node_hash(const Node *n) {
    uint64_t h = 14695981039346656037ull;
    h = hash_mix(h, n->op);
    h = hash_mix(h, n->n_args);
    for (int i = 0; i < n->n_args; i++)
        h = hash_mix(h, n->arg[i]);
    h = hash_mix(h, n->shape.rank);
    for (int i = 0; i < n->shape.rank; i++)
        h = hash_mix(h, (uint32_t)n->shape.dim[i]);
    h = hash_mix(h, (uint32_t)n->attr[0]);
    h = hash_mix(h, (uint32_t)n->attr[1]);
    h = hash_mix(h, imm_bits(n->imm));
    return h;
}

static bool node_same(const Node *a, const Node *b) {
    if (a->op != b->op || a->n_args != b->n_args)
        return false;
    for (int i = 0; i < a->n_args; i++)
        if (a->arg[i] != b->arg[i])
            return false;
    return ir_shape_eq(a->shape, b->shape) && a->attr[0] == b->attr[0] &&
           a->attr[1] == b->attr[1] && imm_bits(a->imm) == imm_bits(b->imm);
}

// Index of the slot holding an equal node, or of the empty slot where it goes.
static uint32_t find_slot(const Graph *g, const Node *n, uint64_t h) {
    uint32_t mask = g->slots_cap - 1;
    uint32_t i = (uint32_t)h & mask;
    while (g->slots[i] && !node_same(&g->nodes[g->slots[i]], n))
        i = (i + 1) & mask;                // linear probing
    return i;
}

// Doubles the table and reinserts every node (keeps the load at most 1/2).
static void grow_slots(Graph *g) {
    uint32_t new_cap = g->slots_cap * 2;
    NN_ASSERT(new_cap > g->slots_cap);
    g->slots = nn_alloc_array(g->arena, new_cap, sizeof(uint32_t));
    g->slots_cap = new_cap;
    for (NodeId id = 1; id < g->n_nodes; id++)
        g->slots[find_slot(g, &g->nodes[id], node_hash(&g->nodes[id]))] = id;
}

NodeId ir_node(Graph *g, Node proto) {
    NN_ASSERT(proto.op < IR_N_OPS);
    NN_ASSERT(proto.n_args == ir_op_info[proto.op].arity);
    NN_ASSERT(proto.shape.rank <= IR_MAX_RANK);
    NodeId new_id = g->n_nodes;

    // Canonical form: unused operand and dimension slots are zero, commutative
    // operands in increasing id order, flags derived from the operands.
    for (int i = proto.n_args; i < 3; i++)
        proto.arg[i] = 0;
    for (int i = proto.shape.rank; i < IR_MAX_RANK; i++)
        proto.shape.dim[i] = 0;
    if (ir_op_info[proto.op].commutative && proto.arg[0] > proto.arg[1]) {
        NodeId t = proto.arg[0];
        proto.arg[0] = proto.arg[1];
        proto.arg[1] = t;
    }
    proto.flags = 0;
    if (proto.op == IR_INPUT || proto.op == IR_TARGET)
        proto.flags |= IR_F_BATCH;
    for (int i = 0; i < proto.n_args; i++) {
        NN_ASSERT(proto.arg[i] > 0 && proto.arg[i] < new_id);
        proto.flags |= g->nodes[proto.arg[i]].flags & IR_F_BATCH;
    }
    if (proto.op == IR_BATCH_SUM)
        proto.flags &= ~IR_F_BATCH;

    uint64_t h = node_hash(&proto);
    uint32_t slot = find_slot(g, &proto, h);
    if (g->slots[slot])
        return g->slots[slot];

    if (g->n_nodes == g->nodes_cap) {
        NN_ASSERT(g->nodes_cap < UINT32_MAX / 2);
        g->nodes = nn_grow_array(g->arena, g->nodes, g->nodes_cap, g->nodes_cap * 2, sizeof(Node));
        g->nodes_cap *= 2;
    }
    g->nodes[new_id] = proto;
    g->n_nodes++;
    g->slots[slot] = new_id;
    if (2 * (uint64_t)g->n_nodes > g->slots_cap)
        grow_slots(g);
    return new_id;
}

// ---- Shapes

int64_t ir_numel(Shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++)
        n *= s.dim[i];
    return n;
}

bool ir_shape_eq(Shape a, Shape b) {
    if (a.rank != b.rank)
        return false;
    for (int i = 0; i < a.rank; i++)
        if (a.dim[i] != b.dim[i])
            return false;
    return true;
}

// NumPy: align trailing dimensions; a missing dimension or a 1 stretches.
bool ir_broadcast_shape(Shape a, Shape b, Shape *out) {
    Shape r = { a.rank > b.rank ? a.rank : b.rank, { 0 } };
    for (int i = 1; i <= r.rank; i++) {
        int32_t da = i <= a.rank ? a.dim[a.rank - i] : 1;
        int32_t db = i <= b.rank ? b.dim[b.rank - i] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        r.dim[r.rank - i] = da == 1 ? db : da;
    }
    if (out)
        *out = r;
    return true;
}

char *ir_shape_str(Shape s, char *buf, size_t size) {
    char tmp[8 + IR_MAX_RANK * 12];        // "[" + up to 4 "-2147483648," + "]"
    size_t len = 0;
    tmp[len++] = '[';
    for (int i = 0; i < s.rank && i < IR_MAX_RANK; i++)
        len += (size_t)sprintf(tmp + len, "%s%d", i ? "," : "", (int)s.dim[i]);
    tmp[len++] = ']';
    tmp[len] = '\0';
    if (size > 0)
        snprintf(buf, size, "%s", tmp);
    return buf;
}

Shape ir_shape1(int32_t d0) {
    return (Shape){ 1, { d0 } };
}

Shape ir_shape2(int32_t d0, int32_t d1) {
    return (Shape){ 2, { d0, d1 } };
}

// ---- Convenience constructors

static Shape shape_of(const Graph *g, NodeId id) {
    NN_ASSERT(id > 0 && id < g->n_nodes);
    return g->nodes[id].shape;
}

NodeId ir_const(Graph *g, double v, Shape s, SrcRange at) {
    return ir_node(g, (Node){ .op = IR_CONST, .imm = v, .shape = s, .at = at });
}

NodeId ir_scalar(Graph *g, double v) {
    return ir_const(g, v, ir_scalar_shape(), (SrcRange){ 0, 0, 0 });
}

NodeId ir_leaf(Graph *g, IrOp op, double imm, Shape s, SrcRange at) {
    NN_ASSERT(ir_op_info[op].kind == IR_KIND_LEAF);
    return ir_node(g, (Node){ .op = op, .imm = imm, .shape = s, .at = at });
}

NodeId ir_unary(Graph *g, IrOp op, NodeId a, SrcRange at) {
    NN_ASSERT(ir_op_info[op].kind == IR_KIND_UNARY);
    return ir_node(g, (Node){ .op = op, .n_args = 1, .arg = { a }, .shape = shape_of(g, a), .at = at });
}

NodeId ir_leaky_relu(Graph *g, NodeId a, double alpha, SrcRange at) {
    return ir_node(g, (Node){ .op = IR_LEAKY_RELU, .n_args = 1, .arg = { a }, .imm = alpha,
                              .shape = shape_of(g, a), .at = at });
}

NodeId ir_binary(Graph *g, IrOp op, NodeId a, NodeId b, SrcRange at) {
    NN_ASSERT(ir_op_info[op].kind == IR_KIND_BINARY);
    Shape s;
    bool ok = ir_broadcast_shape(shape_of(g, a), shape_of(g, b), &s);
    NN_ASSERT(ok);
    return ir_node(g, (Node){ .op = op, .n_args = 2, .arg = { a, b }, .shape = s, .at = at });
}

NodeId ir_matmul(Graph *g, NodeId a, NodeId b, SrcRange at) {
    Shape sa = shape_of(g, a), sb = shape_of(g, b), s = { 0, { 0 } };
    NN_ASSERT(sa.rank >= 1 && sa.rank <= 2 && sb.rank >= 1 && sb.rank <= 2);
    NN_ASSERT(sa.dim[sa.rank - 1] == sb.dim[0]);   // inner dimensions agree
    if (sa.rank == 2 && sb.rank == 1)
        s = ir_shape1(sa.dim[0]);                  // [m,k] @ [k] -> [m]
    else if (sa.rank == 2)
        s = ir_shape2(sa.dim[0], sb.dim[1]);       // [m,k] @ [k,n] -> [m,n]
    else if (sb.rank == 2)
        s = ir_shape1(sb.dim[1]);                  // [k] @ [k,n] -> [n]
    // else [k] @ [k] -> []
    return ir_node(g, (Node){ .op = IR_MATMUL, .n_args = 2, .arg = { a, b }, .shape = s, .at = at });
}

NodeId ir_outer(Graph *g, NodeId a, NodeId b, SrcRange at) {
    Shape sa = shape_of(g, a), sb = shape_of(g, b);
    NN_ASSERT(sa.rank == 1 && sb.rank == 1);       // [m] (x) [n] -> [m,n]
    return ir_node(g, (Node){ .op = IR_OUTER, .n_args = 2, .arg = { a, b },
                              .shape = ir_shape2(sa.dim[0], sb.dim[0]), .at = at });
}

NodeId ir_transpose(Graph *g, NodeId a, SrcRange at) {
    Shape sa = shape_of(g, a);
    NN_ASSERT(sa.rank == 2);                       // [m,n] -> [n,m]
    return ir_node(g, (Node){ .op = IR_TRANSPOSE, .n_args = 1, .arg = { a },
                              .shape = ir_shape2(sa.dim[1], sa.dim[0]), .at = at });
}

NodeId ir_reshape(Graph *g, NodeId a, Shape s, SrcRange at) {
    NN_ASSERT(ir_numel(shape_of(g, a)) == ir_numel(s));
    return ir_node(g, (Node){ .op = IR_RESHAPE, .n_args = 1, .arg = { a }, .shape = s, .at = at });
}

NodeId ir_broadcast(Graph *g, NodeId a, Shape s, SrcRange at) {
    Shape r;
    bool ok = ir_broadcast_shape(shape_of(g, a), s, &r) && ir_shape_eq(r, s);
    NN_ASSERT(ok);                                 // a stretches to s
    return ir_node(g, (Node){ .op = IR_BROADCAST, .n_args = 1, .arg = { a }, .shape = s, .at = at });
}

NodeId ir_reduce_to(Graph *g, NodeId a, Shape s, SrcRange at) {
    Shape sa = shape_of(g, a), r;
    bool ok = ir_broadcast_shape(s, sa, &r) && ir_shape_eq(r, sa);
    NN_ASSERT(ok);                                 // s stretches to a's shape
    return ir_node(g, (Node){ .op = IR_REDUCE_TO, .n_args = 1, .arg = { a }, .shape = s, .at = at });
}

NodeId ir_reduce(Graph *g, IrOp op, NodeId a, SrcRange at) {
    Shape s = shape_of(g, a);
    switch (op) {
    case IR_SUM:
    case IR_LOGSUMEXP:
        s = ir_scalar_shape();                     // all elements -> []
        break;
    case IR_SUM_LAST:
        NN_ASSERT(s.rank >= 1);
        s.dim[s.rank - 1] = 1;                     // [...,n] -> [...,1]
        break;
    case IR_BATCH_SUM:
        break;                                     // same shape, summed over the batch
    default:
        NN_ASSERT(!"not a reduction");
    }
    return ir_node(g, (Node){ .op = op, .n_args = 1, .arg = { a }, .shape = s, .at = at });
}

NodeId ir_softmax(Graph *g, IrOp op, NodeId a, SrcRange at) {
    NN_ASSERT(op == IR_SOFTMAX || op == IR_LOG_SOFTMAX);
    Shape s = shape_of(g, a);
    NN_ASSERT(s.rank >= 1);
    return ir_node(g, (Node){ .op = op, .n_args = 1, .arg = { a }, .shape = s, .at = at });
}

// LANGUAGE.md §5: output side floor((H + 2p - k) / s) + 1.
NodeId ir_conv2d(Graph *g, NodeId x, NodeId w, int stride, int padding, SrcRange at) {
    Shape sx = shape_of(g, x), sw = shape_of(g, w);
    NN_ASSERT(sx.rank == 3 && sw.rank == 4 && sw.dim[1] == sx.dim[0] && sw.dim[2] == sw.dim[3]);
    NN_ASSERT(stride >= 1 && padding >= 0);
    int32_t k = sw.dim[2];
    int32_t oh = (sx.dim[1] + 2 * padding - k) / stride + 1;
    int32_t ow = (sx.dim[2] + 2 * padding - k) / stride + 1;
    NN_ASSERT(sx.dim[1] + 2 * padding >= k && sx.dim[2] + 2 * padding >= k);
    Shape s = { 3, { sw.dim[0], oh, ow } };
    return ir_node(g, (Node){ .op = IR_CONV2D, .n_args = 2, .arg = { x, w }, .attr = { stride, padding },
                              .shape = s, .at = at });
}

// LANGUAGE.md §5: no padding, output side floor((H - size) / stride) + 1.
NodeId ir_pool2d(Graph *g, IrOp op, NodeId x, int size, int stride, SrcRange at) {
    NN_ASSERT(op == IR_MAXPOOL2D || op == IR_AVGPOOL2D);
    Shape sx = shape_of(g, x);
    NN_ASSERT(sx.rank == 3 && size >= 1 && stride >= 1 && sx.dim[1] >= size && sx.dim[2] >= size);
    Shape s = { 3, { sx.dim[0], (sx.dim[1] - size) / stride + 1, (sx.dim[2] - size) / stride + 1 } };
    return ir_node(g, (Node){ .op = op, .n_args = 1, .arg = { x }, .attr = { stride, size },
                              .shape = s, .at = at });
}

NodeId ir_node_shaped(Graph *g, IrOp op, NodeId a, NodeId b, Shape s, int32_t attr0, int32_t attr1,
                      SrcRange at) {
    Node n = { .op = op, .n_args = ir_op_info[op].arity, .arg = { a, b }, .attr = { attr0, attr1 },
               .shape = s, .at = at };
    NN_ASSERT(n.n_args == 2 || b == 0);
    return ir_node(g, n);
}

// ---- Verification

static _Noreturn void verify_fail(const Graph *g, NodeId id, const char *what) {
    char shape[64];
    const Node *n = &g->nodes[id];
    nn_bug("ir_verify: node %u (%s, shape %s): %s", id, n->op < IR_N_OPS ? ir_op_info[n->op].name : "?",
           ir_shape_str(n->shape, shape, sizeof shape), what);
}

// Output shape of a conv of x[c,h,w] with W[f,c,k,k] (attr {stride, padding}), or rank 0 if invalid.
static Shape conv_out_shape(Shape x, Shape w, const int32_t attr[2]) {
    Shape s = { 0, { 0 } };
    if (x.rank != 3 || w.rank != 4 || w.dim[1] != x.dim[0] || w.dim[2] != w.dim[3] || attr[0] < 1 ||
        attr[1] < 0 || x.dim[1] + 2 * attr[1] < w.dim[2] || x.dim[2] + 2 * attr[1] < w.dim[2])
        return s;
    return (Shape){ 3, { w.dim[0], (x.dim[1] + 2 * attr[1] - w.dim[2]) / attr[0] + 1,
                         (x.dim[2] + 2 * attr[1] - w.dim[2]) / attr[0] + 1 } };
}

// Output shape of a pool of x[c,h,w] (attr {stride, size}), or rank 0 if invalid.
static Shape pool_out_shape(Shape x, const int32_t attr[2]) {
    Shape s = { 0, { 0 } };
    if (x.rank != 3 || attr[0] < 1 || attr[1] < 1 || x.dim[1] < attr[1] || x.dim[2] < attr[1])
        return s;
    return (Shape){ 3, { x.dim[0], (x.dim[1] - attr[1]) / attr[0] + 1, (x.dim[2] - attr[1]) / attr[0] + 1 } };
}

// Whether n's shape follows its op's rule (docs/ir.md §4) given its operands.
static bool shape_ok(const Graph *g, const Node *n) {
    Shape s = n->shape, a = { 0, { 0 } }, b = { 0, { 0 } }, r;
    if (n->n_args > 0)
        a = g->nodes[n->arg[0]].shape;
    if (n->n_args > 1)
        b = g->nodes[n->arg[1]].shape;
    switch (ir_op_info[n->op].kind) {
    case IR_KIND_LEAF:
        return n->op != IR_SCALAR_ARG || s.rank == 0;
    case IR_KIND_UNARY:
        return ir_shape_eq(s, a);
    case IR_KIND_BINARY:
        return ir_broadcast_shape(a, b, &r) && ir_shape_eq(s, r);
    default:
        break;
    }
    switch (n->op) {
    case IR_MATMUL:
        if (a.rank < 1 || a.rank > 2 || b.rank < 1 || b.rank > 2 || a.dim[a.rank - 1] != b.dim[0])
            return false;
        if (a.rank == 2 && b.rank == 1)
            return ir_shape_eq(s, ir_shape1(a.dim[0]));
        if (a.rank == 2)
            return ir_shape_eq(s, ir_shape2(a.dim[0], b.dim[1]));
        if (b.rank == 2)
            return ir_shape_eq(s, ir_shape1(b.dim[1]));
        return s.rank == 0;
    case IR_OUTER:
        return a.rank == 1 && b.rank == 1 && ir_shape_eq(s, ir_shape2(a.dim[0], b.dim[0]));
    case IR_TRANSPOSE:
        return a.rank == 2 && ir_shape_eq(s, ir_shape2(a.dim[1], a.dim[0]));
    case IR_RESHAPE:
        return ir_numel(s) == ir_numel(a);
    case IR_BROADCAST:
        return ir_broadcast_shape(a, s, &r) && ir_shape_eq(r, s);
    case IR_REDUCE_TO:
        return ir_broadcast_shape(s, a, &r) && ir_shape_eq(r, a);
    case IR_SUM:
    case IR_LOGSUMEXP:
        return s.rank == 0;
    case IR_SUM_LAST:
        r = a;
        if (r.rank >= 1)
            r.dim[r.rank - 1] = 1;
        return a.rank >= 1 && ir_shape_eq(s, r);
    case IR_BATCH_SUM:
        return ir_shape_eq(s, a);
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX:
        return a.rank >= 1 && ir_shape_eq(s, a);
    case IR_CONV2D:
        r = conv_out_shape(a, b, n->attr);
        return r.rank == 3 && ir_shape_eq(s, r);
    case IR_CONV2D_DX:      // (adj, W) -> x: conv(x, W) has adj's shape
        r = conv_out_shape(s, b, n->attr);
        return r.rank == 3 && ir_shape_eq(a, r);
    case IR_CONV2D_DW:      // (adj, x) -> W: conv(x, W) has adj's shape
        r = conv_out_shape(b, s, n->attr);
        return r.rank == 3 && ir_shape_eq(a, r);
    case IR_MAXPOOL2D:
    case IR_AVGPOOL2D:
        r = pool_out_shape(a, n->attr);
        return r.rank == 3 && ir_shape_eq(s, r);
    case IR_MAXPOOL2D_DX:   // (x, adj) -> x
        r = pool_out_shape(a, n->attr);
        return ir_shape_eq(s, a) && r.rank == 3 && ir_shape_eq(b, r);
    case IR_AVGPOOL2D_DX:   // adj -> x
        r = pool_out_shape(s, n->attr);
        return r.rank == 3 && ir_shape_eq(a, r);
    default:
        return true;        // an op added later: no rule known here yet
    }
}

void ir_verify(const Graph *g) {
    NN_ASSERT(g->n_nodes >= 1 && g->n_nodes <= g->nodes_cap);
    for (NodeId id = 1; id < g->n_nodes; id++) {
        const Node *n = &g->nodes[id];
        if (n->op >= IR_N_OPS)
            verify_fail(g, id, "unknown op");
        if (n->n_args != ir_op_info[n->op].arity)
            verify_fail(g, id, "wrong number of operands");
        uint8_t flags = n->op == IR_INPUT || n->op == IR_TARGET ? IR_F_BATCH : 0;
        for (int i = 0; i < n->n_args; i++) {
            if (n->arg[i] == 0 || n->arg[i] >= id)
                verify_fail(g, id, "operand does not precede its user");
            flags |= g->nodes[n->arg[i]].flags & IR_F_BATCH;
        }
        if (n->op == IR_BATCH_SUM)
            flags = 0;
        if ((n->flags & IR_F_BATCH) != flags)
            verify_fail(g, id, "IR_F_BATCH differs from its operands'");
        if (n->shape.rank > IR_MAX_RANK)
            verify_fail(g, id, "rank above IR_MAX_RANK");
        for (int i = 0; i < n->shape.rank; i++)
            if (n->shape.dim[i] <= 0)
                verify_fail(g, id, "dimension not positive");
        if (ir_op_info[n->op].commutative && n->arg[0] > n->arg[1])
            verify_fail(g, id, "commutative operands out of order");
        if (!shape_ok(g, n))
            verify_fail(g, id, "shape does not follow the op's rule");
        // The table finds every node at its own id: no duplicate, nothing edited in place.
        if (g->slots[find_slot(g, n, node_hash(n))] != id)
            verify_fail(g, id, "not in the hash-consing table (duplicate, or edited in place)");
    }
}
