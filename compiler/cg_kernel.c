// cg_kernel.c: the kernels of runtime/nnrt.h as LLVM functions. Input:
// the Model and its CgPlan; every shape is a constant, the batch the only
// run-time bound. Each kernel computes its needed nodes in id order; a node
// stored in a buffer gets its own loop nest (over the batch, then over its
// elements), and the elementwise nodes fused into it (CG_ST_INLINE) are
// computed inside that loop from the same index (cg_value).
//
// Buffers hold float32; sums accumulate in float32, in an order the optimiser
// may reassociate (vectorised reductions): the result is deterministic for a
// given compiled model, and within float rounding of the double-precision
// interpreter (docs/codegen.md).
#include <math.h>
#include <string.h>

#include "cg_internal.h"

// ---- Index spaces

// How a loop nest addresses elements: an iteration shape, indexed either by
// one flat index (every operand has that shape or one element) or by one
// index per dimension (NumPy broadcasting: trailing dimensions align, a
// dimension of 1 reads index 0). `b` is the sample (NULL in invariant loops);
// `collapsed` loops run one flat index over batch * numel.
typedef struct Iter {
    Shape        is;
    bool         flat, collapsed;
    LLVMValueRef b, flat_ix;
    LLVMValueRef d[IR_MAX_RANK];
} Iter;

static const Node *node(Cg *c, NodeId id) { return &c->g->nodes[id]; }
static bool per_sample(Cg *c, NodeId id) { return node(c, id)->flags & IR_F_BATCH; }

// Offset in floats of node id's element for the iteration's current index.
static LLVMValueRef elem_offset(Cg *c, NodeId id, const Iter *it) {
    const Node *nd = node(c, id);
    int64_t numel = ir_numel(nd->shape);
    LLVMValueRef off = cg_i(c, 0);
    if (it->collapsed && (nd->flags & IR_F_BATCH)) {
        return it->flat_ix;   // [batch, numel] as one flat range
    } else if (numel == 1) {
        // one element: index 0
    } else if (it->flat) {
        off = it->flat_ix;
    } else {
        int64_t stride = 1;
        int r = nd->shape.rank, ri = it->is.rank;
        NN_ASSERT(r <= ri);
        for (int d = r - 1; d >= 0; d--) {
            if (nd->shape.dim[d] != 1)
                off = LLVMBuildAdd(c->b, off, LLVMBuildMul(c->b, it->d[ri - r + d], cg_i(c, stride), ""), "");
            stride *= nd->shape.dim[d];
        }
    }
    if ((nd->flags & IR_F_BATCH) && !it->collapsed) {
        NN_ASSERT(it->b);
        off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, it->b, cg_i(c, numel), ""), off, "");
    }
    return off;
}

static LLVMValueRef scalar_arg(Cg *c, const Node *nd) {
    switch ((IrScalarArg)nd->imm) {
    case IR_ARG_LR:
        return c->lr ? c->lr : LLVMConstReal(c->f32, 0);
    case IR_ARG_STEP:
        return c->step ? c->step : LLVMConstReal(c->f32, 1);
    case IR_ARG_INV_BATCH:
        return c->inv_batch ? c->inv_batch : LLVMConstReal(c->f32, 1);
    }
    cg_bug(c, "unknown scalar argument %g", nd->imm);
}

// Element `off` (floats) of node id's buffer for sample b (NULL: invariant loop).
static LLVMValueRef value_at(Cg *c, NodeId id, LLVMValueRef b, LLVMValueRef off) {
    const Node *nd = node(c, id);
    if (nd->op == IR_CONST)
        return cg_f(c, nd->imm);
    if (nd->op == IR_SCALAR_ARG)
        return scalar_arg(c, nd);
    if (!c->base[id])
        cg_bug(c, "node %%%u (%s) has no buffer", id, ir_op_info[nd->op].name);
    if (nd->flags & IR_F_BATCH) {
        NN_ASSERT(b);
        off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, b, cg_i(c, ir_numel(nd->shape)), ""), off, "");
    }
    return cg_load(c, cg_gep(c, c->base[id], off));
}

static LLVMValueRef buffer_ptr(Cg *c, NodeId id, LLVMValueRef b, LLVMValueRef off) {
    if (per_sample(c, id)) {
        NN_ASSERT(b);
        off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, b, cg_i(c, ir_numel(node(c, id)->shape)), ""), off, "");
    }
    return cg_gep(c, c->base[id], off);
}

// ---- Elementwise math

static LLVMValueRef fcmp(Cg *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(c->b, p, a, b, "");
}
static LLVMValueRef sel(Cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, cond, a, b, "");
}
static LLVMValueRef fmul(Cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(c->b, a, b, ""); }
static LLVMValueRef fadd(Cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(c->b, a, b, ""); }
static LLVMValueRef fsub(Cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(c->b, a, b, ""); }
static LLVMValueRef fdiv(Cg *c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(c->b, a, b, ""); }
static LLVMValueRef intr1(Cg *c, const char *name, LLVMValueRef a) { return cg_intrinsic(c, name, &a, 1); }

static LLVMValueRef fmuladd(Cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc) {
    LLVMValueRef args[3] = { a, b, acc };
    return cg_intrinsic(c, "llvm.fmuladd", args, 3);
}

// An i32 constant (a vector of it while c->lanes is set, as cg_f).
static LLVMValueRef int_const(Cg *c, int v) {
    LLVMValueRef s = LLVMConstInt(c->i32, (unsigned)v, 1);
    return c->lanes ? cg_splat_const(c, s) : s;
}

// exp(x) in float, branch-free so that loops containing it vectorise (a call
// to expf would not): Cephes' range reduction x = n ln2 + r and a degree-5
// polynomial, about 1 ulp; exp(-inf) = 0, exp(inf) = inf, exp(nan) = nan.
// The steps are fused multiply-adds and the polynomial is evaluated in
// Estrin's form: a sigmoid layer at batch 1 waits on this chain, so its depth
// (about 40 cycles, against 70 for Horner's form in separate operations) is
// the tiny nets' step time. x is not clamped into [lo, hi] first: outside
// it (and for NaN) 2^n is garbage, even poison where n overflows an int, but
// the selects at the end replace every such result. The clamps were three
// more steps on the chain (xor at batch 4: 0.097 -> 0.078 us a step); over
// all 2^32 inputs exp, sigmoid, tanh and softplus give the same bits.
static LLVMValueRef cg_exp(Cg *c, LLVMValueRef x) {
    const double hi = 88.72283905206835, lo = -87.3365478515625;   // ln FLT_MAX, ln FLT_MIN
    // n <= 127 keeps 2^n a float: above 88.38 (n would be 128) r grows to ln 2.
    LLVMValueRef fx = intr1(c, "llvm.floor", fmuladd(c, x, cg_f(c, 1.44269504088896341), cg_f(c, 0.5)));
    fx = sel(c, fcmp(c, LLVMRealOGT, fx, cg_f(c, 127)), cg_f(c, 127), fx);
    LLVMValueRef r = fmuladd(c, fx, cg_f(c, -0.693359375), x);
    r = fmuladd(c, fx, cg_f(c, 2.12194440e-4), r);
    static const double coef[] = { 1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                                   4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1 };
    LLVMValueRef r2 = fmul(c, r, r), r4 = fmul(c, r2, r2);
    LLVMValueRef p01 = fmuladd(c, cg_f(c, coef[0]), r, cg_f(c, coef[1]));
    LLVMValueRef p23 = fmuladd(c, cg_f(c, coef[2]), r, cg_f(c, coef[3]));
    LLVMValueRef p45 = fmuladd(c, cg_f(c, coef[4]), r, cg_f(c, coef[5]));
    LLVMValueRef p = fmuladd(c, p01, r4, fmuladd(c, p23, r2, p45));
    p = fadd(c, fmuladd(c, p, r2, r), cg_f(c, 1));
    LLVMTypeRef i32 = c->lanes ? LLVMVectorType(c->i32, c->lanes) : c->i32;
    LLVMValueRef n = LLVMBuildFPToSI(c->b, fx, i32, "");
    LLVMValueRef bits = LLVMBuildShl(c->b, LLVMBuildAdd(c->b, n, int_const(c, 127), ""), int_const(c, 23), "");
    LLVMValueRef res = fmul(c, p, LLVMBuildBitCast(c->b, bits, LLVMTypeOf(p), ""));
    res = sel(c, fcmp(c, LLVMRealOGT, x, cg_f(c, hi)), cg_f(c, INFINITY), res);
    res = sel(c, fcmp(c, LLVMRealOLT, x, cg_f(c, lo)), cg_f(c, 0), res);
    return sel(c, fcmp(c, LLVMRealUNO, x, x), x, res);
}

static LLVMValueRef cg_log(Cg *c, LLVMValueRef x) { return intr1(c, "llvm.log", x); }

static LLVMValueRef emit_unary(Cg *c, const Node *nd, LLVMValueRef a) {
    LLVMValueRef zero = cg_f(c, 0), one = cg_f(c, 1);
    switch ((IrOp)nd->op) {
    case IR_NEG:
        return LLVMBuildFNeg(c->b, a, "");
    case IR_EXP:
        return cg_exp(c, a);
    case IR_LOG:
        return cg_log(c, a);
    case IR_SQRT:
        return intr1(c, "llvm.sqrt", a);
    case IR_ABS:
        return intr1(c, "llvm.fabs", a);
    case IR_TANH: {
        // tanh|a| = (1 - e) / (1 + e), e = exp(-2|a|); a series near 0 keeps the relative precision.
        LLVMValueRef ax = intr1(c, "llvm.fabs", a);
        LLVMValueRef e = cg_exp(c, fmul(c, ax, cg_f(c, -2)));
        LLVMValueRef big = fdiv(c, fsub(c, one, e), fadd(c, one, e));
        LLVMValueRef a2 = fmul(c, ax, ax);
        LLVMValueRef s = cg_f(c, -17.0 / 315);
        s = fadd(c, fmul(c, s, a2), cg_f(c, 2.0 / 15));
        s = fadd(c, fmul(c, s, a2), cg_f(c, -1.0 / 3));
        s = fadd(c, fmul(c, s, a2), one);
        LLVMValueRef small = fmul(c, ax, s);
        LLVMValueRef t = sel(c, fcmp(c, LLVMRealOLT, ax, cg_f(c, 0.125)), small, big);
        LLVMValueRef args[2] = { t, a };
        return cg_intrinsic(c, "llvm.copysign", args, 2);
    }
    case IR_SIGMOID: {
        // 1 / (1 + exp(-a)) for a >= 0, exp(a) / (1 + exp(a)) below: no overflow.
        LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, intr1(c, "llvm.fabs", a), ""));
        LLVMValueRef s = fdiv(c, one, fadd(c, one, e));
        return sel(c, fcmp(c, LLVMRealOGE, a, zero), s, fmul(c, e, s));
    }
    case IR_RELU:
        return sel(c, fcmp(c, LLVMRealOGT, a, zero), a, zero);
    case IR_SOFTPLUS: {
        // max(a, 0) + log1p(exp(-|a|))
        LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, intr1(c, "llvm.fabs", a), ""));
        LLVMValueRef l = sel(c, fcmp(c, LLVMRealOLT, e, cg_f(c, 1e-4)),
                             fsub(c, e, fmul(c, cg_f(c, 0.5), fmul(c, e, e))), cg_log(c, fadd(c, one, e)));
        return fadd(c, sel(c, fcmp(c, LLVMRealOGT, a, zero), a, zero), l);
    }
    case IR_SIN:
        return intr1(c, "llvm.sin", a);
    case IR_COS:
        return intr1(c, "llvm.cos", a);
    case IR_SQUARE:
        return fmul(c, a, a);
    case IR_STEP:
        return sel(c, fcmp(c, LLVMRealOGT, a, zero), one, zero);
    case IR_SIGN:
        return sel(c, fcmp(c, LLVMRealOGT, a, zero), one,
                   sel(c, fcmp(c, LLVMRealOLT, a, zero), cg_f(c, -1), zero));
    case IR_LEAKY_RELU:
        return sel(c, fcmp(c, LLVMRealOGT, a, zero), a, fmul(c, cg_f(c, nd->imm), a));
    default:
        cg_bug(c, "not a unary op: %s", ir_op_info[nd->op].name);
    }
}

static LLVMValueRef emit_pow(Cg *c, const Node *nd, LLVMValueRef a, LLVMValueRef b) {
    const Node *e = node(c, nd->arg[1]);
    if (e->op == IR_CONST) {
        if (e->imm == 1)
            return a;
        if (e->imm == 2)
            return fmul(c, a, a);
        if (e->imm == 3)
            return fmul(c, fmul(c, a, a), a);
        if (e->imm == -1)
            return fdiv(c, cg_f(c, 1), a);
        if (e->imm == -2)
            return fdiv(c, cg_f(c, 1), fmul(c, a, a));
    }
    LLVMValueRef args[2] = { a, b };
    return cg_intrinsic(c, "llvm.pow", args, 2);
}

static LLVMValueRef emit_binary(Cg *c, const Node *nd, LLVMValueRef a, LLVMValueRef b) {
    switch ((IrOp)nd->op) {
    case IR_ADD:
        return fadd(c, a, b);
    case IR_SUB:
        return fsub(c, a, b);
    case IR_MUL:
        return fmul(c, a, b);
    case IR_DIV:
        return fdiv(c, a, b);
    case IR_POW:
        return emit_pow(c, nd, a, b);
    case IR_MAX:   // a >= b ? a : b (ties and the gradient go to a; not maxnum)
        return sel(c, fcmp(c, LLVMRealOGE, a, b), a, b);
    case IR_MIN:
        return sel(c, fcmp(c, LLVMRealOLE, a, b), a, b);
    case IR_GE:
        return sel(c, fcmp(c, LLVMRealOGE, a, b), cg_f(c, 1), cg_f(c, 0));
    default:
        cg_bug(c, "not a binary op: %s", ir_op_info[nd->op].name);
    }
}

static LLVMValueRef cg_value(Cg *c, NodeId id, const Iter *it);

// In a vector epilogue (c->lanes floats from flat index it->flat_ix over
// [batch][row], lanes_ok): node id's values there. A per-sample buffer is
// read in place; a parameter of one row (a bias) is that row repeated; a
// single value is broadcast.
static LLVMValueRef lanes_load(Cg *c, NodeId id, const Iter *it) {
    const Node *nd = node(c, id);
    int64_t numel = ir_numel(nd->shape);
    LLVMTypeRef vt = LLVMVectorType(c->f32, c->lanes);
    if (nd->flags & IR_F_BATCH)
        return cg_vload(c, vt, cg_gep(c, c->base[id], it->flat_ix));
    if (numel == 1)
        return cg_splat(c, vt, cg_load(c, c->base[id]));
    LLVMValueRef row = cg_vload(c, LLVMVectorType(c->f32, (unsigned)numel), c->base[id]);
    LLVMValueRef mask[64];   // numel divides c->lanes (epilogue_lanes)
    for (unsigned l = 0; l < c->lanes; l++)
        mask[l] = LLVMConstInt(c->i32, l % (unsigned)numel, 0);
    return LLVMBuildShuffleVector(c->b, row, LLVMGetPoison(LLVMTypeOf(row)), LLVMConstVector(mask, c->lanes), "");
}

// Node id's own operation at the iteration's index (elementwise nodes).
static LLVMValueRef elem_compute(Cg *c, NodeId id, const Iter *it) {
    const Node *nd = node(c, id);
    if (nd->op == IR_BROADCAST)
        return cg_value(c, nd->arg[0], it);
    if (ir_op_info[nd->op].kind == IR_KIND_UNARY)
        return emit_unary(c, nd, cg_value(c, nd->arg[0], it));
    NN_ASSERT(ir_op_info[nd->op].kind == IR_KIND_BINARY);
    LLVMValueRef a = cg_value(c, nd->arg[0], it);
    LLVMValueRef b = cg_value(c, nd->arg[1], it);
    return emit_binary(c, nd, a, b);
}

// The value of node id at the iteration's index: a leaf's value, a load from
// its buffer, or (fused nodes) computed here from its operands. Recursion is
// bounded by CG_MAX_INLINE_DEPTH (cg_plan.c).
static LLVMValueRef cg_value(Cg *c, NodeId id, const Iter *it) {
    const Node *nd = node(c, id);
    if (id == c->epi_gemm && c->epi_value)
        return c->epi_value;     // a deferred dW inside its update group's epilogue
    if (c->kp->storage[id] == CG_ST_INLINE && nd->op == IR_MATMUL) {
        NN_ASSERT(c->epi_value);   // inside the GEMM's epilogue
        return c->epi_value;
    }
    if (c->kp->storage[id] == CG_ST_INLINE)
        return elem_compute(c, id, it);
    if (nd->op == IR_CONST)
        return cg_f(c, nd->imm);
    if (nd->op == IR_SCALAR_ARG)
        return c->lanes ? cg_splat(c, LLVMVectorType(c->f32, c->lanes), scalar_arg(c, nd)) : scalar_arg(c, nd);
    if (!c->base[id])
        cg_bug(c, "node %%%u (%s) has no buffer", id, ir_op_info[nd->op].name);
    if (c->lanes)
        return lanes_load(c, id, it);
    return cg_load(c, cg_gep(c, c->base[id], elem_offset(c, id, it)));
}

// Walks the fused tree under `id` through its inline nodes (and through id
// itself when from_root), calling leaf on each node read from a buffer; an
// inline product (an epilogue's, whose value is given) is not walked into.
// False when a leaf says no or the tree is deeper than the walk's stack.
typedef bool (*LeafFn)(Cg *c, const Node *nd, void *arg);
static bool each_leaf(Cg *c, NodeId id, bool from_root, LeafFn leaf, void *arg) {
    NodeId stack[64 * 3];
    int n = 0;
    stack[n++] = id;
    while (n > 0) {
        NodeId v = stack[--n];
        const Node *nd = node(c, v);
        bool is_inline = c->kp->storage[v] == CG_ST_INLINE;
        if (is_inline && nd->op == IR_MATMUL)
            continue;
        if (is_inline || (v == id && from_root)) {
            for (int i = 0; i < nd->n_args; i++) {
                if (n >= (int)NN_COUNTOF(stack))
                    return false;
                stack[n++] = nd->arg[i];
            }
            continue;
        }
        if (nd->op != IR_CONST && nd->op != IR_SCALAR_ARG && !leaf(c, nd, arg))
            return false;
    }
    return true;
}

typedef struct TreeShape {
    Shape is;
    bool  flat, collapse;
} TreeShape;

static bool shape_leaf(Cg *c, const Node *nd, void *arg) {
    (void)c;
    TreeShape *t = arg;
    int64_t numel = ir_numel(nd->shape);
    bool same = ir_shape_eq(nd->shape, t->is);
    if (!same && numel != 1)
        t->flat = false;
    if (nd->flags & IR_F_BATCH ? !same : numel != 1)
        t->collapse = false;
    return true;
}

// Can the fused tree under `id` (id itself included) be indexed by one flat
// index over `is`? And over batch * numel(is) (every buffer per sample)?
static void analyse_tree(Cg *c, NodeId id, Shape is, bool *flat, bool *collapse) {
    TreeShape t = { is, *flat, *collapse };
    if (!each_leaf(c, id, false, shape_leaf, &t))
        t.flat = t.collapse = false;
    *flat = t.flat;
    *collapse = t.collapse;
}

static LLVMValueRef loop_n(Cg *c, CgLoop *l, int64_t n, const char *name) {
    return cg_loop_begin(c, l, cg_i(c, n), name);
}

// Opens the loops over the elements of `is` (flat or one per dimension).
static void open_elems(Cg *c, Iter *it, CgLoop *loops, int *n_loops) {
    if (it->flat) {
        it->flat_ix = loop_n(c, &loops[(*n_loops)++], ir_numel(it->is), "e");
        return;
    }
    for (int d = 0; d < it->is.rank; d++)
        it->d[d] = loop_n(c, &loops[(*n_loops)++], it->is.dim[d], "d");
}

static void close_loops(Cg *c, CgLoop *loops, int n_loops) {
    for (int i = n_loops - 1; i >= 0; i--)
        cg_loop_end(c, &loops[i]);
}

// ---- Ops with their own loop nests

// The product fused into the elementwise tree of `id`, if any.
static NodeId fused_matmul(Cg *c, NodeId id) {
    NodeId stack[64 * 3];
    int n = 0;
    stack[n++] = id;
    while (n > 0) {
        NodeId v = stack[--n];
        const Node *nd = node(c, v);
        if (v != id && c->kp->storage[v] != CG_ST_INLINE)
            continue;
        if (nd->op == IR_MATMUL)
            return v;
        for (int i = 0; i < nd->n_args && n < (int)NN_COUNTOF(stack); i++)
            stack[n++] = nd->arg[i];
    }
    return 0;
}

// Epilogue of a fused product: the consumer's value at (sample i, element j).
static void epilogue_store(Cg *c, const CgGemm *g, LLVMValueRef i, LLVMValueRef j, LLVMValueRef v) {
    NodeId id = g->epi_node;
    Iter it = { .is = node(c, id)->shape, .flat = true, .b = i, .flat_ix = j };
    c->epi_value = v;
    LLVMValueRef r = elem_compute(c, id, &it);
    c->epi_value = NULL;
    cg_store(c, r, cg_gep(c, c->base[id], elem_offset(c, id, &it)));
}

// The same over the vector v of C's elements from flat index f (rows of the
// layer's n outputs, lanes_ok): the whole elementwise chain on vectors.
static void epilogue_store_lanes(Cg *c, const CgGemm *g, LLVMValueRef f, LLVMValueRef v) {
    NodeId id = g->epi_node;
    Iter it = { .is = node(c, id)->shape, .flat = true, .collapsed = true, .flat_ix = f };
    c->lanes = LLVMGetVectorSize(LLVMTypeOf(v));
    c->epi_value = v;
    LLVMValueRef r = elem_compute(c, id, &it);
    c->epi_value = NULL;
    c->lanes = 0;
    cg_vstore(c, r, cg_gep(c, c->base[id], f));
}

// Can the epilogue of `id`, a layer of n outputs, run on vectors spanning
// several samples (lanes_load)? Every buffer it reads is per sample with n
// elements, or a parameter of n elements or of one.
static bool lanes_leaf(Cg *c, const Node *nd, void *arg) {
    (void)c;
    int64_t n = *(const int64_t *)arg, numel = ir_numel(nd->shape);
    return nd->flags & IR_F_BATCH ? numel == n : numel == 1 || numel == n;
}

static bool lanes_ok(Cg *c, NodeId id, int64_t n) { return each_leaf(c, id, true, lanes_leaf, &n); }

// W @ x or x @ W and the elementwise chain over it (bias and activation, or
// an activation's derivative) as one GEMM: C[b][i] = sum_p X[b][p] W[i][p]
// (W @ x) or sum_p X[b][p] W[p][i] (x @ W), each finished C[b][i] through
// the chain.
static void emit_matmul_epilogue(Cg *c, NodeId id, NodeId mm) {
    const Node *nd = node(c, mm);
    bool x_first = node(c, nd->arg[0])->shape.rank == 1;
    NodeId w = nd->arg[x_first ? 1 : 0], x = nd->arg[x_first ? 0 : 1];
    Shape ws = node(c, w)->shape;
    int64_t N = x_first ? ws.dim[1] : ws.dim[0], K = x_first ? ws.dim[0] : ws.dim[1];
    if (!c->base[w] || !c->base[x])
        cg_bug(c, "fused product %%%u without operand buffers", mm);
    CgGemm g = { .m = c->batch, .n = cg_i(c, N), .k = cg_i(c, K), .a = c->base[x], .b = c->base[w],
                 .a_rs = K, .a_cs = 1, .b_rs = x_first ? N : 1, .b_cs = x_first ? 1 : K, .c_rs = N,
                 .epilogue = epilogue_store, .epi_node = id, .epi_parallel = true };
    if (lanes_ok(c, id, N))
        g.epilogue_vec = epilogue_store_lanes;
    cg_emit_matmul(c, &g);
}

// A group (cg_plan.c): several elementwise nodes of one shape, invariant, each
// reading every buffer at its own index, share one loop, each computed and
// stored in turn at index i. In apply this is the optimiser's update of one
// parameter: the new state and the new parameter in one pass (v[i] = 0.9 v[i]
// + g[i]; p[i] -= lr v[i]) instead of one loop per store. Safe because every
// read is at the index being written: a member reading an earlier member's
// buffer sees this iteration's value, and the memory plan keeps every buffer
// the group reads apart from the ones it writes.
typedef struct GroupArg {
    const NodeId *ids;
    int           n;
    NodeId        stored;   // a deferred dW already stored in its buffer (c->epi_gemm), or 0
} GroupArg;

// One loop of the group's members over the flat indices [begin, end); with
// `stored`, the value of the deferred dW read from its buffer.
static void group_loop(Cg *c, LLVMValueRef begin, LLVMValueRef end, const GroupArg *ga) {
    Iter it = { .is = node(c, ga->ids[0])->shape, .flat = true };
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(c, &l, LLVMBuildSub(c->b, end, begin, ""), "eg");
    it.flat_ix = LLVMBuildAdd(c->b, begin, i, "");
    if (ga->stored)
        c->epi_value = cg_load(c, cg_gep(c, c->base[ga->stored], it.flat_ix));
    for (int k = 0; k < ga->n; k++) {
        LLVMValueRef v = elem_compute(c, ga->ids[k], &it);
        cg_store(c, v, cg_gep(c, c->base[ga->ids[k]], elem_offset(c, ga->ids[k], &it)));
    }
    c->epi_value = NULL;
    cg_loop_end(c, &l);
}

enum { GROUP_CHUNK = 1024 };   // floats of a weight's update between prefetches

// (x + d - 1) / d for x >= 0
static LLVMValueRef ceil_div(Cg *c, LLVMValueRef x, int64_t d) {
    return LLVMBuildUDiv(c->b, LLVMBuildAdd(c->b, x, cg_i(c, d - 1), ""), cg_i(c, d), "");
}

// A request for ownership of each line (16 floats) of the weights the group
// writes, at the flat indices [begin, end).
static void prefetch_weights(Cg *c, LLVMValueRef begin, LLVMValueRef end, const GroupArg *ga) {
    CgLoop l;
    LLVMValueRef line = cg_loop_begin(c, &l, ceil_div(c, LLVMBuildSub(c->b, end, begin, ""), 16), "pf");
    LLVMValueRef at = LLVMBuildAdd(c->b, begin, LLVMBuildMul(c->b, line, cg_i(c, 16), ""), "");
    for (int k = 0; k < ga->n; k++) {
        NodeId id = ga->ids[k];
        if (c->kp->storage[id] != CG_ST_DEST || c->kp->dest_kind[id] != CG_DEST_PARAM)
            continue;
        LLVMValueRef args[] = { cg_gep(c, c->base[id], at), LLVMConstInt(c->i32, 1, 0),   // for writing,
                                LLVMConstInt(c->i32, 3, 0), LLVMConstInt(c->i32, 1, 0) };   // into L1, data
        cg_intrinsic(c, "llvm.prefetch", args, 4);
    }
    cg_loop_end_plain(c, &l);
}

// The group's members at the flat indices [begin, end) (cg_parallel's body).
// In nnrt_sgemm_then's callback (`stored`) it runs by chunks, each after a
// request for the next chunk's weight lines: the weight was often read by the
// other core since its last update (by a product split by samples, which reads
// all of it), so that each store would otherwise wait for its line to come
// back from there (hundreds of ns on the VM this was tuned on; fashion b256's
// dW2 update took 6 times the CPU time at two threads it took at one,
// docs/performance.md section 17).
static void group_range(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    const GroupArg *ga = arg;
    if (!ga->stored) {
        group_loop(c, begin, end, ga);
        return;
    }
    CgLoop l;
    LLVMValueRef chunk = cg_loop_begin(c, &l, ceil_div(c, LLVMBuildSub(c->b, end, begin, ""), GROUP_CHUNK), "gc");
    LLVMValueRef lo = LLVMBuildAdd(c->b, begin, LLVMBuildMul(c->b, chunk, cg_i(c, GROUP_CHUNK), ""), "");
    LLVMValueRef hi = cg_min_i(c, LLVMBuildAdd(c->b, lo, cg_i(c, GROUP_CHUNK), ""), end);
    prefetch_weights(c, hi, cg_min_i(c, LLVMBuildAdd(c->b, hi, cg_i(c, GROUP_CHUNK), ""), end), ga);
    group_loop(c, lo, hi, ga);
    cg_loop_end_plain(c, &l);
}

// Large groups (an optimiser's update of a big weight) are split over the threads.
static void emit_elementwise_group(Cg *c, const NodeId *ids, int n) {
    GroupArg ga = { ids, n, 0 };
    int64_t numel = ir_numel(node(c, ids[0])->shape);
    if (c->nc->opt.opt_level >= 2 && numel >= CG_PAR_MIN_ELEMS &&
        cg_parallel(c, cg_i(c, numel), group_range, &ga))
        return;
    group_range(c, cg_i(c, 0), cg_i(c, numel), &ga);
}

// The group's members at (i, j) of a deferred dW, whose value there is v.
static void group_epilogue(Cg *c, const CgGemm *g, LLVMValueRef i, LLVMValueRef j, LLVMValueRef v) {
    (void)g;
    Shape s = node(c, c->epi_group[0])->shape;
    Iter it = { .is = s, .flat = true };
    it.flat_ix = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, s.dim[1]), ""), j, "");
    c->epi_value = v;
    for (int k = 0; k < c->epi_n; k++) {
        NodeId id = c->epi_group[k];
        cg_store(c, elem_compute(c, id, &it), cg_gep(c, c->base[id], it.flat_ix));
    }
    c->epi_value = NULL;
}

// dW = BATCH_SUM(OUTER(a, x)) computed at its update group, the group as the
// GEMM's epilogue (train kernel): each finished element of dW goes straight
// into the optimiser's update, the gradient never stored (cg_matmul.c stores
// it in dW's buffer only where it must: edges, products longer than a chunk).
static void emit_deferred_group(Cg *c, NodeId gemm, const NodeId *ids, int n) {
    const Node *o = node(c, node(c, gemm)->arg[0]);
    NodeId a = o->arg[0], x = o->arg[1];
    int64_t m = node(c, a)->shape.dim[0], nn = node(c, x)->shape.dim[0];
    c->epi_gemm = gemm;
    memcpy(c->epi_group, ids, (size_t)n * sizeof *ids);
    c->epi_n = n;
    GroupArg stored = { ids, n, gemm };
    CgGemm g = { .m = cg_i(c, m), .n = cg_i(c, nn), .k = c->batch,
                 .a = c->base[a], .b = c->base[x], .c = c->base[gemm],
                 .a_rs = 1, .a_cs = m, .b_rs = nn, .b_cs = 1, .c_rs = nn,
                 .epilogue = group_epilogue, .epi_node = ids[0], .epi_buf = c->base[gemm],
                 .epi_buf_node = gemm, .epi_parallel = true, .epi_flat = group_range, .epi_flat_arg = &stored };
    cg_emit_matmul(c, &g);
    c->epi_gemm = 0;
    c->epi_n = 0;
}

// A per-sample elementwise node whose fused tree reads every buffer at one
// flat index over batch x numel: one loop over [begin, end) of that range.
static void collapsed_range(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    NodeId id = *(const NodeId *)arg;
    Iter it = { .is = node(c, id)->shape, .flat = true, .collapsed = true };
    CgLoop l;
    it.flat_ix = LLVMBuildAdd(c->b, begin, cg_loop_begin(c, &l, LLVMBuildSub(c->b, end, begin, ""), "e"), "");
    cg_store(c, elem_compute(c, id, &it), cg_gep(c, c->base[id], elem_offset(c, id, &it)));
    cg_loop_end(c, &l);
}

// Layers of at least CG_PAR_MIN_ROW elements a sample (an activation's
// derivative over [batch][128] or wider) split the range over the threads when
// the batch makes it large; the rest is one serial loop (one copy of the
// code). 128 rather than 1024: fashion's relu derivatives over [256][256] and
// [256][128] were serial, the second thread waiting (b256 at 2 threads:
// 1075-1116 -> 1057-1080 us, alternated; its compile time unchanged).
enum { CG_PAR_MIN_ROW = 128 };

static void emit_collapsed(Cg *c, NodeId id) {
    int64_t numel = ir_numel(node(c, id)->shape);
    LLVMValueRef total = LLVMBuildMul(c->b, c->batch, cg_i(c, numel), "");
    if (numel < CG_PAR_MIN_ROW || !cg_parallel_ok(c) || LLVMIsAConstantInt(c->batch)) {
        collapsed_range(c, cg_i(c, 0), total, &id);
        return;
    }
    LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e.par");
    LLVMBasicBlockRef ser = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e.serial");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "e.done");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, total, cg_i(c, CG_PAR_MIN_ELEMS), ""), par, ser);
    LLVMPositionBuilderAtEnd(c->b, par);
    if (!cg_parallel(c, total, collapsed_range, &id))
        collapsed_range(c, cg_i(c, 0), total, &id);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, ser);
    collapsed_range(c, cg_i(c, 0), total, &id);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
}

static void emit_elementwise(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId mm = fused_matmul(c, id);
    if (mm) {
        emit_matmul_epilogue(c, id, mm);
        return;
    }
    Iter it = { .is = nd->shape };
    bool flat = true, collapse = per_sample(c, id);
    for (int i = 0; i < nd->n_args; i++)
        analyse_tree(c, nd->arg[i], nd->shape, &flat, &collapse);
    CgLoop loops[IR_MAX_RANK + 1];
    int nl = 0;
    if (collapse && flat) {
        emit_collapsed(c, id);
        return;
    } else {
        it.flat = flat;
        if (per_sample(c, id))
            it.b = cg_loop_begin(c, &loops[nl++], c->batch, "b");
        open_elems(c, &it, loops, &nl);
    }
    LLVMValueRef v = elem_compute(c, id, &it);
    cg_store(c, v, cg_gep(c, c->base[id], elem_offset(c, id, &it)));
    close_loops(c, loops, nl);
}

static void fill_zero(Cg *c, NodeId id) {
    CgLoop l;
    LLVMValueRef n = cg_i(c, ir_numel(node(c, id)->shape));
    if (per_sample(c, id))
        n = LLVMBuildMul(c->b, n, c->batch, "");
    LLVMValueRef i = cg_loop_begin(c, &l, n, "z");
    cg_store(c, cg_f(c, 0), cg_gep(c, c->base[id], i));
    cg_loop_end(c, &l);
}

// SUM: all elements of a sample to one; SUM_LAST: over the last axis.
static void emit_sum(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId a = nd->arg[0];
    Iter it = { .is = node(c, a)->shape };
    bool flat = true, collapse = false;
    analyse_tree(c, a, it.is, &flat, &collapse);
    LLVMValueRef acc = cg_alloca(c, c->f32, "acc");
    CgLoop loops[IR_MAX_RANK + 1];
    int nl = 0;
    if (per_sample(c, id))
        it.b = cg_loop_begin(c, &loops[nl++], c->batch, "b");
    int r = it.is.rank;
    if (nd->op == IR_SUM_LAST) {
        it.flat = false;
        for (int d = 0; d < r - 1; d++)
            it.d[d] = loop_n(c, &loops[nl++], it.is.dim[d], "d");
    } else {
        it.flat = flat;
    }
    cg_store(c, cg_f(c, 0), acc);
    CgLoop inner[IR_MAX_RANK];
    int ni = 0;
    if (nd->op == IR_SUM_LAST)
        it.d[r - 1] = loop_n(c, &inner[ni++], it.is.dim[r - 1], "j");
    else
        open_elems(c, &it, inner, &ni);
    LLVMValueRef v = cg_value(c, a, &it);
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, acc), v, "")), acc);
    close_loops(c, inner, ni);
    if (nd->op == IR_SUM_LAST)
        it.d[r - 1] = cg_i(c, 0);
    Iter out = it;
    out.flat = false;
    out.is = nd->op == IR_SUM ? ir_scalar_shape() : it.is;
    cg_store(c, cg_load(c, acc), cg_gep(c, c->base[id], elem_offset(c, id, &out)));
    close_loops(c, loops, nl);
}

// REDUCE_TO: sum over the axes broadcasting stretched (the operand's shape
// iterates; the node's index drops them).
static void emit_reduce_to(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId a = nd->arg[0];
    fill_zero(c, id);
    Iter it = { .is = node(c, a)->shape };
    CgLoop loops[IR_MAX_RANK + 1];
    int nl = 0;
    if (per_sample(c, id))
        it.b = cg_loop_begin(c, &loops[nl++], c->batch, "b");
    open_elems(c, &it, loops, &nl);
    LLVMValueRef v = cg_value(c, a, &it);
    LLVMValueRef p = cg_gep(c, c->base[id], elem_offset(c, id, &it));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, p), v, "")), p);
    close_loops(c, loops, nl);
}

static bool has_buffer(Cg *c, NodeId id) { return c->base[id] != NULL; }

// BATCH_SUM(OUTER(a, x)): C[i][j] = sum_b a[b][i] x[b][j], one GEMM over the batch.
static void emit_batch_outer(Cg *c, NodeId id) {
    const Node *o = node(c, node(c, id)->arg[0]);
    NodeId a = o->arg[0], x = o->arg[1];
    int64_t m = node(c, a)->shape.dim[0], n = node(c, x)->shape.dim[0];
    if (has_buffer(c, a) && has_buffer(c, x)) {
        CgGemm g = { .m = cg_i(c, m), .n = cg_i(c, n), .k = c->batch,
                     .a = c->base[a], .b = c->base[x], .c = c->base[id],
                     .a_rs = 1, .a_cs = per_sample(c, a) ? m : 0,
                     .b_rs = per_sample(c, x) ? n : 0, .b_cs = 1, .c_rs = n };
        cg_emit_matmul(c, &g);
        return;
    }
    fill_zero(c, id);   // an operand without a buffer (a constant): plain loops
    CgLoop lb, li, lj;
    LLVMValueRef b = cg_loop_begin(c, &lb, c->batch, "b");
    LLVMValueRef i = loop_n(c, &li, m, "i");
    LLVMValueRef j = loop_n(c, &lj, n, "j");
    LLVMValueRef p = cg_gep(c, c->base[id], LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, n), ""), j, ""));
    LLVMValueRef v = fmul(c, value_at(c, a, b, i), value_at(c, x, b, j));
    cg_store(c, fadd(c, cg_load(c, p), v), p);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    cg_loop_end(c, &lb);
}

static void emit_batch_sum(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId a = nd->arg[0];
    if (c->kp->storage[a] == CG_ST_ABSORBED) {
        emit_batch_outer(c, id);
        return;
    }
    Iter it = { .is = nd->shape };
    CgLoop loops[IR_MAX_RANK + 1];
    int nl = 0;
    if (!per_sample(c, a)) {   // an invariant value summed over the batch: batch * a
        LLVMValueRef fb = LLVMBuildSIToFP(c->b, c->batch, c->f32, "");
        it.flat = true;
        open_elems(c, &it, loops, &nl);
        cg_store(c, fmul(c, fb, cg_value(c, a, &it)), cg_gep(c, c->base[id], it.flat_ix));
        close_loops(c, loops, nl);
        return;
    }
    bool flat = true, collapse = false;
    analyse_tree(c, a, it.is, &flat, &collapse);
    it.flat = flat;
    fill_zero(c, id);
    it.b = cg_loop_begin(c, &loops[nl++], c->batch, "b");
    open_elems(c, &it, loops, &nl);
    LLVMValueRef v = cg_value(c, a, &it);
    LLVMValueRef p = cg_gep(c, c->base[id], elem_offset(c, id, &it));
    cg_store(c, fadd(c, cg_load(c, p), v), p);
    close_loops(c, loops, nl);
}

// LOGSUMEXP: m + log(sum exp(a - m)), m the largest element (-inf if all are -inf).
static void emit_logsumexp(Cg *c, NodeId id) {
    NodeId a = node(c, id)->arg[0];
    int64_t n = ir_numel(node(c, a)->shape);
    LLVMValueRef mx = cg_alloca(c, c->f32, "max"), s = cg_alloca(c, c->f32, "sum");
    CgLoop lb, l1, l2;
    LLVMValueRef b = per_sample(c, id) ? cg_loop_begin(c, &lb, c->batch, "b") : NULL;
    cg_store(c, cg_f(c, -INFINITY), mx);
    LLVMValueRef i = loop_n(c, &l1, n, "i");
    LLVMValueRef v = value_at(c, a, b, i), m0 = cg_load(c, mx);
    cg_store(c, sel(c, fcmp(c, LLVMRealOGT, v, m0), v, m0), mx);
    cg_loop_end(c, &l1);
    LLVMValueRef m = cg_load(c, mx);
    cg_store(c, cg_f(c, 0), s);
    i = loop_n(c, &l2, n, "i");
    LLVMValueRef e = cg_exp(c, fsub(c, value_at(c, a, b, i), m));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, s), e, "")), s);
    cg_loop_end_vector(c, &l2);   // as in emit_softmax
    LLVMValueRef r = fadd(c, m, cg_log(c, cg_load(c, s)));
    r = sel(c, fcmp(c, LLVMRealOEQ, m, cg_f(c, -INFINITY)), m, r);
    cg_store(c, r, buffer_ptr(c, id, b, cg_i(c, 0)));
    if (b)
        cg_loop_end(c, &lb);
}

// SOFTMAX / LOG_SOFTMAX over the last axis, stable (the row's maximum subtracted).
static void emit_softmax(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId a = nd->arg[0];
    int64_t n = nd->shape.dim[nd->shape.rank - 1], rows = ir_numel(nd->shape) / n;
    LLVMValueRef mx = cg_alloca(c, c->f32, "max"), s = cg_alloca(c, c->f32, "sum");
    CgLoop lb, lr, l1, l2, l3;
    LLVMValueRef b = per_sample(c, id) ? cg_loop_begin(c, &lb, c->batch, "b") : NULL;
    LLVMValueRef row = LLVMBuildMul(c->b, loop_n(c, &lr, rows, "r"), cg_i(c, n), "");
    cg_store(c, cg_f(c, -INFINITY), mx);
    LLVMValueRef j = loop_n(c, &l1, n, "j");
    LLVMValueRef v = value_at(c, a, b, LLVMBuildAdd(c->b, row, j, "")), m0 = cg_load(c, mx);
    cg_store(c, sel(c, fcmp(c, LLVMRealOGT, v, m0), v, m0), mx);
    cg_loop_end(c, &l1);
    LLVMValueRef m = cg_load(c, mx);
    cg_store(c, cg_f(c, 0), s);
    j = loop_n(c, &l2, n, "j");
    LLVMValueRef off = LLVMBuildAdd(c->b, row, j, "");
    LLVMValueRef e = cg_exp(c, fsub(c, value_at(c, a, b, off), m));
    if (nd->op == IR_SOFTMAX)
        cg_store(c, e, buffer_ptr(c, id, b, off));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, s), e, "")), s);
    // Vectorised even when short (LLVM's cost model left a row of 10 classes
    // scalar: 10 exps one after another; mnist b256 -1.5 %).
    cg_loop_end_vector(c, &l2);
    LLVMValueRef sum = cg_load(c, s);
    LLVMValueRef k = nd->op == IR_SOFTMAX ? fdiv(c, cg_f(c, 1), sum) : fadd(c, m, cg_log(c, sum));
    j = loop_n(c, &l3, n, "j");
    off = LLVMBuildAdd(c->b, row, j, "");
    LLVMValueRef p = buffer_ptr(c, id, b, off);
    if (nd->op == IR_SOFTMAX)
        cg_store(c, fmul(c, cg_load(c, p), k), p);
    else
        cg_store(c, fsub(c, value_at(c, a, b, off), k), p);
    cg_loop_end(c, &l3);
    cg_loop_end(c, &lr);
    if (b)
        cg_loop_end(c, &lb);
}

// MATMUL in its four rank cases; a is [M,K] or [K], b is [K,N] or [K].
static void emit_matmul_node(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    NodeId a = nd->arg[0], bb = nd->arg[1];
    Shape sa = node(c, a)->shape, sb = node(c, bb)->shape;
    int64_t M = sa.rank == 2 ? sa.dim[0] : 1, K = sa.dim[sa.rank - 1], N = sb.rank == 2 ? sb.dim[1] : 1;
    bool pa = per_sample(c, a), pb = per_sample(c, bb);
    if (has_buffer(c, a) && has_buffer(c, bb)) {
        CgGemm g = { .m = cg_i(c, M), .n = cg_i(c, N), .k = cg_i(c, K), .a = c->base[a], .b = c->base[bb],
                     .c = c->base[id], .a_rs = K, .a_cs = 1, .b_rs = N, .b_cs = 1, .c_rs = N };
        if (!pb) {
            if (pa)   // the samples' rows stacked: [batch*M, K] @ [K, N]
                g.m = LLVMBuildMul(c->b, c->batch, cg_i(c, M), "");
            cg_emit_matmul(c, &g);
            return;
        }
        if (!pa && N == 1) {   // W @ x: C[b][i] = sum_p X[b][p] W[i][p]
            CgGemm t = { .m = c->batch, .n = cg_i(c, M), .k = cg_i(c, K), .a = c->base[bb], .b = c->base[a],
                         .c = c->base[id], .a_rs = K, .a_cs = 1, .b_rs = 1, .b_cs = K, .c_rs = M };
            cg_emit_matmul(c, &t);
            return;
        }
        CgLoop lb;   // one product per sample
        LLVMValueRef b = cg_loop_begin(c, &lb, c->batch, "b");
        if (pa)
            g.a = cg_gep(c, g.a, LLVMBuildMul(c->b, b, cg_i(c, M * K), ""));
        g.b = cg_gep(c, g.b, LLVMBuildMul(c->b, b, cg_i(c, K * N), ""));
        g.c = cg_gep(c, g.c, LLVMBuildMul(c->b, b, cg_i(c, M * N), ""));
        cg_emit_matmul(c, &g);
        cg_loop_end(c, &lb);
        return;
    }
    // An operand without a buffer (a constant): plain loops.
    CgLoop lb, li, lj, lp;
    LLVMValueRef acc = cg_alloca(c, c->f32, "acc");
    LLVMValueRef b = per_sample(c, id) ? cg_loop_begin(c, &lb, c->batch, "b") : NULL;
    LLVMValueRef i = loop_n(c, &li, M, "i");
    LLVMValueRef j = loop_n(c, &lj, N, "j");
    cg_store(c, cg_f(c, 0), acc);
    LLVMValueRef p = loop_n(c, &lp, K, "p");
    LLVMValueRef va = value_at(c, a, b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, K), ""), p, ""));
    LLVMValueRef vb = value_at(c, bb, b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, cg_i(c, N), ""), j, ""));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, acc), fmul(c, va, vb), "")), acc);
    cg_loop_end(c, &lp);
    cg_store(c, cg_load(c, acc),
             buffer_ptr(c, id, b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, N), ""), j, "")));
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    if (b)
        cg_loop_end(c, &lb);
}

static void emit_outer(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    int64_t m = nd->shape.dim[0], n = nd->shape.dim[1];
    CgLoop lb, li, lj;
    LLVMValueRef b = per_sample(c, id) ? cg_loop_begin(c, &lb, c->batch, "b") : NULL;
    LLVMValueRef i = loop_n(c, &li, m, "i");
    LLVMValueRef va = value_at(c, nd->arg[0], b, i);
    LLVMValueRef j = loop_n(c, &lj, n, "j");
    LLVMValueRef v = fmul(c, va, value_at(c, nd->arg[1], b, j));
    cg_store(c, v, buffer_ptr(c, id, b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, n), ""), j, "")));
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    if (b)
        cg_loop_end(c, &lb);
}

// TRANSPOSE [m,n] -> [n,m]; RESHAPE of a value without a buffer: a copy.
static void emit_copyish(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    CgLoop lb, li, lj;
    LLVMValueRef b = per_sample(c, id) ? cg_loop_begin(c, &lb, c->batch, "b") : NULL;
    if (nd->op == IR_TRANSPOSE) {
        int64_t n = nd->shape.dim[0], m = nd->shape.dim[1];   // source is [m, n]
        LLVMValueRef j = loop_n(c, &lj, m, "j");
        LLVMValueRef i = loop_n(c, &li, n, "i");
        LLVMValueRef v = value_at(c, nd->arg[0], b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, j, cg_i(c, n), ""), i, ""));
        cg_store(c, v, buffer_ptr(c, id, b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, m), ""), j, "")));
        cg_loop_end(c, &li);
        cg_loop_end(c, &lj);
    } else {
        LLVMValueRef i = loop_n(c, &li, ir_numel(nd->shape), "i");
        cg_store(c, value_at(c, nd->arg[0], b, i), buffer_ptr(c, id, b, i));
        cg_loop_end(c, &li);
    }
    if (b)
        cg_loop_end(c, &lb);
}

// ---- Convolution and pooling: direct loops, constant bounds.

static LLVMValueRef ix3(Cg *c, LLVMValueRef a, int64_t d1, LLVMValueRef b_, int64_t d2, LLVMValueRef c_) {
    // (a * d1 + b) * d2 + c
    LLVMValueRef r = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, a, cg_i(c, d1), ""), b_, "");
    return LLVMBuildAdd(c->b, LLVMBuildMul(c->b, r, cg_i(c, d2), ""), c_, "");
}

// The three convolution ops share one loop nest, ordered for vectors: for
// each sample, output channel f, input channel ch and tap (ky, kx), the rows
// oy whose input row iy = oy * stride - pad + ky is inside, and along each
// row the columns ox whose ix = ox * stride - pad + kx is inside: the
// innermost loop runs along a row of the output and a row of the input
// (contiguous at stride 1), with no test of the padding in it.
//   CONV2D     out[f][oy][ox] += W[f][ch][ky][kx] * x[ch][iy][ix]   (out zeroed first)
//   CONV2D_DX  dx[ch][iy][ix] += adj[f][oy][ox] * W[f][ch][ky][kx]  (dx zeroed first)
//   CONV2D_DW  dW[f][ch][ky][kx] = sum over oy, ox of adj[f][oy][ox] * x[ch][iy][ix]
// Up to 7 x 7 the taps are unrolled at compile time: each (ky, kx) then has
// constant row and column ranges (the vectoriser knows every trip count).
// The direct form (an inner loop over the taps, a select for the padding)
// ran the CNN example's train step at 24 ms against PyTorch's 8 ms.
typedef struct Conv {
    NodeId       id, x, w, adj;   // CONV2D reads x, w; CONV2D_DX adj, w; CONV2D_DW adj, x
    int64_t      F, C, H, W, OH, OW, K;
    int          stride, pad;
    LLVMValueRef b, f, ch;        // the sample (NULL: invariant), the channels
    LLVMValueRef part, acc;       // CONV2D_DW: a row of partial sums, their total
} Conv;

enum { CONV_UNROLL_MAX = 7 };

// The outputs o in [lo, lo + n) whose input coordinate o * stride - pad + k
// lies in [0, size): lo = max(0, ceil((pad - k) / stride)), end = min(out,
// floor((size - 1 + pad - k) / stride) + 1). Folds to constants for a
// constant k.
static void conv_range(Cg *c, const Conv *cv, LLVMValueRef k, int64_t size, int64_t out, LLVMValueRef *lo,
                       LLVMValueRef *n) {
    LLVMValueRef s = cg_i(c, cv->stride), zero = cg_i(c, 0);
    LLVMValueRef t = LLVMBuildSub(c->b, cg_i(c, cv->pad), k, "");
    LLVMValueRef up = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, t, cg_i(c, cv->stride - 1), ""), s, "");
    *lo = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLE, t, zero, ""), zero, up, "");
    LLVMValueRef u = LLVMBuildSub(c->b, cg_i(c, size - 1 + cv->pad), k, "");
    LLVMValueRef end = LLVMBuildAdd(c->b, LLVMBuildSDiv(c->b, u, s, ""), cg_i(c, 1), "");
    end = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, end, cg_i(c, out), ""), cg_i(c, out), end, "");
    end = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, u, zero, ""), zero, end, "");
    *n = LLVMBuildSub(c->b, end, *lo, "");
}

static LLVMValueRef conv_in(Cg *c, const Conv *cv, LLVMValueRef o, LLVMValueRef k) {
    return LLVMBuildAdd(c->b, LLVMBuildSub(c->b, LLVMBuildMul(c->b, o, cg_i(c, cv->stride), ""), cg_i(c, cv->pad), ""),
                        k, "");
}

// dst[0..n) += a[0..n) * m[0..n) (m_row) or * m (scalar): n a constant, in
// vectors of 16, 8, 4, 2 and 1 lanes (14 = 8 + 4 + 2). A convolution's rows
// are 14 or 28 long: as loops, LLVM gave them 8 lanes and a scalar
// remainder; with the last vector masked instead (llvm.masked.load/store)
// the CNN example's step took 2.4 times as long as with these.
static void row_fma(Cg *c, LLVMValueRef dst, LLVMValueRef a, LLVMValueRef m_row, LLVMValueRef m, int64_t n) {
    int64_t t = 0;
    for (int vl = c->avx512 ? 16 : 8; vl >= 1; vl /= 2) {
        LLVMTypeRef vt = vl > 1 ? LLVMVectorType(c->f32, (unsigned)vl) : c->f32;
        LLVMValueRef ms = m && vl > 1 ? cg_splat(c, vt, m) : m;
        for (; n - t >= vl; t += vl) {
            LLVMValueRef pd = cg_gep(c, dst, cg_i(c, t));
            LLVMValueRef va = cg_vload(c, vt, cg_gep(c, a, cg_i(c, t)));
            LLVMValueRef vm = m_row ? cg_vload(c, vt, cg_gep(c, m_row, cg_i(c, t))) : ms;
            cg_vstore(c, fmuladd(c, va, vm, cg_vload(c, vt, pd)), pd);
        }
    }
}

// Rows as vectors (row_fma): stride 1, the tap a constant (so is the row's
// length), every row read from a buffer.
static bool conv_vector_rows(Cg *c, const Conv *cv, LLVMValueRef kx, LLVMValueRef xlo, LLVMValueRef nx) {
    if (cv->stride != 1 || !LLVMIsAConstantInt(kx) || !LLVMIsAConstantInt(xlo) || !LLVMIsAConstantInt(nx) ||
        LLVMConstIntGetSExtValue(nx) <= 0)
        return false;
    NodeId rows[2] = { cv->x, cv->adj };
    for (int i = 0; i < 2; i++)
        if (rows[i] && !c->base[rows[i]])
            return false;
    return true;
}

// One output row oy of a tap as vectors (conv_vector_rows): its nx columns
// from xlo, each op's destination row += one row times the weight or, for
// CONV2D_DW, times the input's row.
static void conv_row_vector(Cg *c, const Conv *cv, LLVMValueRef oy, LLVMValueRef iy, LLVMValueRef kx,
                            LLVMValueRef xlo, LLVMValueRef nx, LLVMValueRef wv) {
    IrOp op = (IrOp)node(c, cv->id)->op;
    int64_t x0 = LLVMConstIntGetSExtValue(xlo), n = LLVMConstIntGetSExtValue(nx);
    LLVMValueRef o0 = ix3(c, cv->f, cv->OH, oy, cv->OW, xlo);
    LLVMValueRef i0 = ix3(c, cv->ch, cv->H, iy, cv->W, cg_i(c, x0 - cv->pad + LLVMConstIntGetSExtValue(kx)));
    if (op == IR_CONV2D)
        row_fma(c, buffer_ptr(c, cv->id, cv->b, o0), buffer_ptr(c, cv->x, cv->b, i0), NULL, wv, n);
    else if (op == IR_CONV2D_DX)
        row_fma(c, buffer_ptr(c, cv->id, cv->b, i0), buffer_ptr(c, cv->adj, cv->b, o0), NULL, wv, n);
    else
        row_fma(c, cg_gep(c, cv->part, xlo), buffer_ptr(c, cv->adj, cv->b, o0), buffer_ptr(c, cv->x, cv->b, i0), NULL, n);
}

// The same row as a loop over its columns (any stride, any tap).
static void conv_row_loop(Cg *c, const Conv *cv, LLVMValueRef oy, LLVMValueRef iy, LLVMValueRef kx,
                          LLVMValueRef xlo, LLVMValueRef nx, LLVMValueRef wv) {
    IrOp op = (IrOp)node(c, cv->id)->op;
    CgLoop lx;
    LLVMValueRef ox = LLVMBuildAdd(c->b, xlo, cg_loop_begin(c, &lx, nx, "ox"), "");
    LLVMValueRef ix = conv_in(c, cv, ox, kx);
    LLVMValueRef oidx = ix3(c, cv->f, cv->OH, oy, cv->OW, ox), iidx = ix3(c, cv->ch, cv->H, iy, cv->W, ix);
    LLVMValueRef p = op == IR_CONV2D_DW ? cg_gep(c, cv->part, ox) : buffer_ptr(c, cv->id, cv->b, op == IR_CONV2D ? oidx : iidx);
    LLVMValueRef a = op == IR_CONV2D ? value_at(c, cv->x, cv->b, iidx) : value_at(c, cv->adj, cv->b, oidx);
    LLVMValueRef m = op == IR_CONV2D_DW ? value_at(c, cv->x, cv->b, iidx) : wv;
    cg_store(c, fadd(c, cg_load(c, p), fmul(c, a, m)), p);
    if (cv->stride == 1)   // contiguous rows: vectors (strided ones stay scalar)
        cg_loop_end_vector(c, &lx);
    else
        cg_loop_end(c, &lx);
}

// One tap (ky, kx) of the loop nest. CONV2D_DW sums into a row of partial
// sums (one per column, across the rows: the same vector loop as the other
// two ops) and adds that row up once at the end, instead of one horizontal
// sum per row of 14 or 28 elements.
static void conv_tap(Cg *c, const Conv *cv, LLVMValueRef ky, LLVMValueRef kx) {
    bool dw = node(c, cv->id)->op == IR_CONV2D_DW;
    LLVMValueRef ylo, ny, xlo, nx;
    conv_range(c, cv, ky, cv->H, cv->OH, &ylo, &ny);
    conv_range(c, cv, kx, cv->W, cv->OW, &xlo, &nx);
    LLVMValueRef widx = ix3(c, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, cv->f, cg_i(c, cv->C), ""), cv->ch, ""),
                            cv->K, ky, cv->K, kx);
    LLVMValueRef wv = dw ? NULL : value_at(c, cv->w, cv->b, widx);
    CgLoop ly, lz;
    if (dw) {
        LLVMValueRef z = cg_loop_begin(c, &lz, cg_i(c, cv->OW), "z");
        cg_store(c, cg_f(c, 0), cg_gep(c, cv->part, z));
        cg_loop_end_vector(c, &lz);
    }
    LLVMValueRef oy = LLVMBuildAdd(c->b, ylo, cg_loop_begin(c, &ly, ny, "oy"), "");
    LLVMValueRef iy = conv_in(c, cv, oy, ky);
    if (conv_vector_rows(c, cv, kx, xlo, nx))
        conv_row_vector(c, cv, oy, iy, kx, xlo, nx, wv);
    else
        conv_row_loop(c, cv, oy, iy, kx, xlo, nx, wv);
    cg_loop_end(c, &ly);
    if (!dw)
        return;
    // dW[f][ch][ky][kx] = the sum of the partial sums
    cg_store(c, cg_f(c, 0), cv->acc);
    LLVMValueRef j = cg_loop_begin(c, &lz, cg_i(c, cv->OW), "r");
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, cv->acc), cg_load(c, cg_gep(c, cv->part, j)), "")), cv->acc);
    cg_loop_end(c, &lz);
    cg_store(c, cg_load(c, cv->acc), buffer_ptr(c, cv->id, cv->b, widx));
}

// The loop over the samples [begin, end) of a nest split by cg_parallel;
// NULL (no loop) for an invariant node's nest (begin NULL).
static LLVMValueRef open_samples(Cg *c, CgLoop *l, LLVMValueRef begin, LLVMValueRef end) {
    if (!begin)
        return NULL;
    return LLVMBuildAdd(c->b, begin, cg_loop_begin(c, l, LLVMBuildSub(c->b, end, begin, ""), "b"), "");
}

// Zeroes node id's elements of sample b (NULL: an invariant node).
static void zero_sample(Cg *c, NodeId id, LLVMValueRef b) {
    CgLoop l;
    LLVMValueRef z = cg_loop_begin(c, &l, cg_i(c, ir_numel(node(c, id)->shape)), "z");
    cg_store(c, cg_f(c, 0), buffer_ptr(c, id, b, z));
    cg_loop_end(c, &l);
}

// Runs nest over node id's samples, split over the threads in the train
// kernel (one copy of the code: nnrt_parallel_for runs it inline on one
// thread or one sample); once when id is invariant.
static void emit_samples(Cg *c, NodeId id, CgRangeBody nest, void *arg) {
    if (!per_sample(c, id))
        nest(c, NULL, NULL, arg);
    else if (!cg_parallel(c, c->batch, nest, arg))
        nest(c, cg_i(c, 0), c->batch, arg);
}

// The nest for the samples [begin, end), or once for an invariant node
// (begin NULL). Each sample's output is zeroed (CONV2D, CONV2D_DX) and
// computed whole by the thread that runs it.
static void conv_nest(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    Conv cv = *(const Conv *)arg;
    const Node *nd = node(c, cv.id);
    CgLoop lb, lf, lc, lky, lkx;
    if (nd->op == IR_CONV2D_DW)
        cv.part = cg_alloca(c, LLVMArrayType(c->f32, (unsigned)cv.OW), "part"), cv.acc = cg_alloca(c, c->f32, "acc");
    cv.b = open_samples(c, &lb, begin, end);
    if (nd->op != IR_CONV2D_DW)
        zero_sample(c, cv.id, cv.b);
    cv.f = loop_n(c, &lf, cv.F, "f");
    cv.ch = loop_n(c, &lc, cv.C, "c");
    if (cv.K <= CONV_UNROLL_MAX) {
        for (int64_t ky = 0; ky < cv.K; ky++)
            for (int64_t kx = 0; kx < cv.K; kx++)
                conv_tap(c, &cv, cg_i(c, ky), cg_i(c, kx));
    } else {
        LLVMValueRef ky = loop_n(c, &lky, cv.K, "ky");
        LLVMValueRef kx = loop_n(c, &lkx, cv.K, "kx");
        conv_tap(c, &cv, ky, kx);
        cg_loop_end(c, &lkx);
        cg_loop_end(c, &lky);
    }
    cg_loop_end(c, &lc);
    cg_loop_end(c, &lf);
    if (cv.b)
        cg_loop_end(c, &lb);
}

static void emit_conv(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    Conv cv = { .id = id, .stride = nd->attr[0], .pad = nd->attr[1] };
    Shape sx, sw, so;
    switch ((IrOp)nd->op) {
    case IR_CONV2D:
        cv.x = nd->arg[0], cv.w = nd->arg[1];
        sx = node(c, cv.x)->shape, sw = node(c, cv.w)->shape, so = nd->shape;
        break;
    case IR_CONV2D_DX:
        cv.adj = nd->arg[0], cv.w = nd->arg[1];
        sx = nd->shape, sw = node(c, cv.w)->shape, so = node(c, cv.adj)->shape;
        break;
    default:   // IR_CONV2D_DW
        cv.adj = nd->arg[0], cv.x = nd->arg[1];
        sx = node(c, cv.x)->shape, sw = nd->shape, so = node(c, cv.adj)->shape;
        break;
    }
    cv.F = so.dim[0], cv.OH = so.dim[1], cv.OW = so.dim[2];
    cv.C = sx.dim[0], cv.H = sx.dim[1], cv.W = sx.dim[2], cv.K = sw.dim[2];
    emit_samples(c, id, conv_nest, &cv);
}

// MAXPOOL2D, AVGPOOL2D and their gradients (windows inside the input: no padding).
typedef struct Pool {
    NodeId  id, x, adj;        // x: the pooled input (not AVGPOOL2D_DX), adj: the gradient in
    int64_t C, H, W, OH, OW;
    int     stride, size;
    bool    is_dx, is_max;
    bool    tiles;             // windows neither overlap nor leave a gap: the gradients store, never add
} Pool;

// Opens the loops over the taps (ky, kx) of the window at (ch, oy, ox):
// returns the input element's index, the tap's number ky * size + kx in *tap.
static LLVMValueRef open_window(Cg *c, const Pool *pl, LLVMValueRef ch, LLVMValueRef oy, LLVMValueRef ox,
                                CgLoop loops[2], LLVMValueRef *tap) {
    LLVMValueRef ky = loop_n(c, &loops[0], pl->size, "ky");
    LLVMValueRef kx = loop_n(c, &loops[1], pl->size, "kx");
    LLVMValueRef iy = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oy, cg_i(c, pl->stride), ""), ky, "");
    LLVMValueRef ix = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ox, cg_i(c, pl->stride), ""), kx, "");
    *tap = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ky, cg_i(c, pl->size), ""), kx, "");
    return ix3(c, ch, pl->H, iy, pl->W, ix);
}

static void close_window(Cg *c, CgLoop loops[2]) {
    cg_loop_end(c, &loops[1]);
    cg_loop_end(c, &loops[0]);
}

// The first maximal element of the window (LANGUAGE.md §7): its value in
// *best, its tap in *arg.
static void window_max(Cg *c, const Pool *pl, LLVMValueRef b, LLVMValueRef ch, LLVMValueRef oy, LLVMValueRef ox,
                       LLVMValueRef best, LLVMValueRef arg) {
    CgLoop loops[2];
    LLVMValueRef tap;
    cg_store(c, cg_f(c, -INFINITY), best);
    LLVMBuildStore(c->b, cg_i(c, -1), arg);
    LLVMValueRef v = value_at(c, pl->x, b, open_window(c, pl, ch, oy, ox, loops, &tap)), bv = cg_load(c, best);
    LLVMValueRef old = LLVMBuildLoad2(c->b, c->i64, arg, "");
    LLVMValueRef take = LLVMBuildOr(c->b, fcmp(c, LLVMRealOGT, v, bv),
                                    LLVMBuildICmp(c->b, LLVMIntEQ, old, cg_i(c, -1), ""), "");
    cg_store(c, sel(c, take, v, bv), best);
    LLVMBuildStore(c->b, sel(c, take, tap, old), arg);
    close_window(c, loops);
}

// The window's mean.
static LLVMValueRef window_mean(Cg *c, const Pool *pl, LLVMValueRef b, LLVMValueRef ch, LLVMValueRef oy,
                                LLVMValueRef ox, LLVMValueRef sum) {
    CgLoop loops[2];
    LLVMValueRef tap;
    cg_store(c, cg_f(c, 0), sum);
    LLVMValueRef v = value_at(c, pl->x, b, open_window(c, pl, ch, oy, ox, loops, &tap));
    cg_store(c, fadd(c, cg_load(c, sum), v), sum);
    close_window(c, loops);
    return fmul(c, cg_load(c, sum), cg_f(c, 1.0 / ((double)pl->size * pl->size)));
}

// The window at (ch, oy, ox): the output's element, or the gradient's
// contribution to the window's input elements.
static void pool_window(Cg *c, const Pool *pl, LLVMValueRef b, LLVMValueRef ch, LLVMValueRef oy, LLVMValueRef ox,
                        LLVMValueRef best, LLVMValueRef arg) {
    LLVMValueRef oidx = ix3(c, ch, pl->OH, oy, pl->OW, ox);
    if (pl->is_max)
        window_max(c, pl, b, ch, oy, ox, best, arg);
    if (!pl->is_dx) {
        LLVMValueRef v = pl->is_max ? cg_load(c, best) : window_mean(c, pl, b, ch, oy, ox, best);
        cg_store(c, v, buffer_ptr(c, pl->id, b, oidx));
        return;
    }
    LLVMValueRef g = value_at(c, pl->adj, b, oidx);
    if (!pl->is_max)
        g = fmul(c, g, cg_f(c, 1.0 / ((double)pl->size * pl->size)));
    LLVMValueRef win = pl->is_max ? LLVMBuildLoad2(c->b, c->i64, arg, "") : NULL;
    CgLoop loops[2];
    LLVMValueRef tap;
    LLVMValueRef p = buffer_ptr(c, pl->id, b, open_window(c, pl, ch, oy, ox, loops, &tap));
    LLVMValueRef v = pl->is_max ? sel(c, LLVMBuildICmp(c->b, LLVMIntEQ, tap, win, ""), g, cg_f(c, 0)) : g;
    // Tiling windows store (each input element in one window; branch-free,
    // so the loop over ox vectorises); overlapping or gapped ones add into
    // the zeroed gradient.
    cg_store(c, pl->tiles ? v : fadd(c, cg_load(c, p), v), p);
    close_window(c, loops);
}

// The pooling of the samples [begin, end) (begin NULL: an invariant node, once).
static void pool_nest(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    const Pool *pl = arg;
    CgLoop lb, lc, ly, lx;
    LLVMValueRef best = cg_alloca(c, c->f32, "best"), where = cg_alloca(c, c->i64, "arg");
    LLVMValueRef b = open_samples(c, &lb, begin, end);
    if (pl->is_dx && !pl->tiles)
        zero_sample(c, pl->id, b);
    LLVMValueRef ch = loop_n(c, &lc, pl->C, "c");
    LLVMValueRef oy = loop_n(c, &ly, pl->OH, "oy");
    LLVMValueRef ox = loop_n(c, &lx, pl->OW, "ox");
    pool_window(c, pl, b, ch, oy, ox, best, where);
    cg_loop_end(c, &lx);
    cg_loop_end(c, &ly);
    cg_loop_end(c, &lc);
    if (b)
        cg_loop_end(c, &lb);
}

static void emit_pool(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    Pool pl = { .id = id };
    pl.is_dx = nd->op == IR_MAXPOOL2D_DX || nd->op == IR_AVGPOOL2D_DX;
    pl.is_max = nd->op == IR_MAXPOOL2D || nd->op == IR_MAXPOOL2D_DX;
    pl.x = nd->op == IR_AVGPOOL2D_DX ? 0 : nd->arg[0];
    pl.adj = nd->op == IR_MAXPOOL2D_DX ? nd->arg[1] : nd->op == IR_AVGPOOL2D_DX ? nd->arg[0] : 0;
    Shape sx = pl.is_dx ? nd->shape : node(c, pl.x)->shape;
    Shape so = pl.is_dx ? node(c, pl.adj)->shape : nd->shape;
    pl.C = sx.dim[0], pl.H = sx.dim[1], pl.W = sx.dim[2], pl.OH = so.dim[1], pl.OW = so.dim[2];
    pl.stride = nd->attr[0], pl.size = nd->attr[1];
    pl.tiles = pl.stride == pl.size && pl.OH * pl.size == pl.H && pl.OW * pl.size == pl.W;
    emit_samples(c, id, pool_nest, &pl);
}

static void emit_node(Cg *c, NodeId id) {
    const Node *nd = node(c, id);
    if (cg_is_elementwise(nd->op)) {
        emit_elementwise(c, id);
        return;
    }
    switch ((IrOp)nd->op) {
    case IR_SUM:
    case IR_SUM_LAST:
        emit_sum(c, id);
        break;
    case IR_REDUCE_TO:
        emit_reduce_to(c, id);
        break;
    case IR_BATCH_SUM:
        emit_batch_sum(c, id);
        break;
    case IR_LOGSUMEXP:
        emit_logsumexp(c, id);
        break;
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX:
        emit_softmax(c, id);
        break;
    case IR_MATMUL:
        emit_matmul_node(c, id);
        break;
    case IR_OUTER:
        emit_outer(c, id);
        break;
    case IR_TRANSPOSE:
    case IR_RESHAPE:
        emit_copyish(c, id);
        break;
    case IR_CONV2D:
    case IR_CONV2D_DX:
    case IR_CONV2D_DW:
        emit_conv(c, id);
        break;
    case IR_MAXPOOL2D:
    case IR_MAXPOOL2D_DX:
    case IR_AVGPOOL2D:
    case IR_AVGPOOL2D_DX:
        emit_pool(c, id);
        break;
    default:
        cg_bug(c, "no lowering for op %s", ir_op_info[nd->op].name);
    }
}

// ---- Kernels

static LLVMValueRef byte_gep(Cg *c, LLVMValueRef base, LLVMValueRef off) {
    return LLVMBuildGEP2(c->b, c->i8, base, &off, 1, "");
}

static LLVMValueRef float_ptr(Cg *c, LLVMValueRef base, size_t off) {
    return cg_gep(c, base, cg_i(c, (int64_t)off));
}

// Base pointers of every buffer the kernel touches, computed once at entry.
void cg_compute_bases(Cg *c) {
    const CgKPlan *k = c->kp;
    const Model *m = c->m;
    for (NodeId id = 1; id < c->g->n_nodes; id++) {
        const Node *nd = node(c, id);
        c->base[id] = NULL;
        switch (k->storage[id]) {
        case CG_ST_LEAF:
            switch ((IrOp)nd->op) {
            case IR_INPUT:
                c->base[id] = c->a_x;
                break;
            case IR_TARGET:
                c->base[id] = c->a_y;
                break;
            case IR_PARAM:
                c->base[id] = float_ptr(c, c->a_params, m->params[(uint32_t)nd->imm].offset);
                break;
            case IR_STATE:
                c->base[id] = float_ptr(c, c->a_state, m->states[(uint32_t)nd->imm].offset);
                break;
            case IR_GRAD_IN:
                c->base[id] = float_ptr(c, c->a_grad_in, m->params[(uint32_t)nd->imm].offset);
                break;
            default:
                break;
            }
            if ((nd->op == IR_TARGET || nd->op == IR_STATE || nd->op == IR_GRAD_IN || nd->op == IR_PARAM ||
                 nd->op == IR_INPUT) && !c->base[id])
                cg_bug(c, "leaf %%%u (%s) not available in this kernel", id, ir_op_info[nd->op].name);
            break;
        case CG_ST_SCRATCH:
            if (nd->flags & IR_F_BATCH) {
                LLVMValueRef off = LLVMBuildAdd(c->b, cg_i(c, (int64_t)c->plan.fixed),
                                                LLVMBuildMul(c->b, cg_i(c, k->offset[id]), c->batch, ""), "");
                c->base[id] = byte_gep(c, c->a_scratch, off);
            } else {
                c->base[id] = byte_gep(c, c->a_scratch, cg_i(c, k->offset[id]));
            }
            break;
        case CG_ST_DEST:
            switch ((CgDestKind)k->dest_kind[id]) {
            case CG_DEST_GRAD:
                c->base[id] = float_ptr(c, c->a_grad, k->dest_off[id]);
                break;
            case CG_DEST_OUT:
                c->base[id] = c->a_out;
                break;
            case CG_DEST_PARAM:
                c->base[id] = float_ptr(c, c->a_params, k->dest_off[id]);
                break;
            case CG_DEST_STATE:
                c->base[id] = float_ptr(c, c->a_state, k->dest_off[id]);
                break;
            }
            break;
        case CG_ST_ALIAS:
            c->base[id] = c->base[k->alias_of[id]];
            break;
        default:
            break;
        }
    }
}

// dst[0..n) = node id's invariant value (a copy; n = its numel).
static void copy_out(Cg *c, NodeId id, LLVMValueRef dst) {
    CgLoop l;
    LLVMValueRef i = loop_n(c, &l, ir_numel(node(c, id)->shape), "cp");
    cg_store(c, value_at(c, id, NULL, i), cg_gep(c, dst, i));
    cg_loop_end(c, &l);
}

static void finish_grad(Cg *c) {
    const Model *m = c->m;
    for (uint32_t i = 0; i < m->n_params; i++) {
        NodeId gi = m->grads ? m->grads[i] : 0;
        LLVMValueRef dst = float_ptr(c, c->a_grad, m->params[i].offset);
        if (gi && c->kp->storage[gi] == CG_ST_DEST && c->kp->dest_kind[gi] == CG_DEST_GRAD &&
            c->kp->dest_off[gi] == m->params[i].offset)
            continue;
        if (gi) {
            copy_out(c, gi, dst);
            continue;
        }
        CgLoop l;   // no gradient: zeros
        LLVMValueRef j = loop_n(c, &l, ir_numel(m->params[i].shape), "z");
        cg_store(c, cg_f(c, 0), cg_gep(c, dst, j));
        cg_loop_end(c, &l);
    }
}

static void finish_predict(Cg *c) {
    NodeId o = c->m->output;
    if (!o || c->kp->storage[o] == CG_ST_DEST)
        return;
    int64_t n = ir_numel(node(c, o)->shape);
    CgLoop lb, l;
    LLVMValueRef b = cg_loop_begin(c, &lb, c->batch, "b");
    LLVMValueRef i = loop_n(c, &l, n, "i");
    LLVMValueRef off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, b, cg_i(c, n), ""), i, "");
    cg_store(c, value_at(c, o, b, i), cg_gep(c, c->a_out, off));
    cg_loop_end(c, &l);
    cg_loop_end(c, &lb);
}

// Stores not written in place: every value exists now; leaves and constants
// are first copied to temporaries, then every destination is written.
static void finish_stores(Cg *c, CgKernelKind kind) {
    const Model *m = c->m;
    const CgKPlan *k = c->kp;
    LLVMValueRef *temp = nn_alloc_array(&c->nc->arena, m->n_stores + 1, sizeof(LLVMValueRef));
    for (uint32_t s = 0; s < m->n_stores; s++)
        if (k->store_temp[s] >= 0) {
            temp[s] = byte_gep(c, c->a_scratch, cg_i(c, k->store_temp[s]));
            copy_out(c, cg_store_value(m, kind, s), temp[s]);
        }
    for (uint32_t s = 0; s < m->n_stores; s++) {
        const IrStore *st = &m->stores[s];
        NodeId v = cg_store_value(m, kind, s);
        if (k->store_direct[s])
            continue;
        size_t off = st->to_state ? m->states[st->index].offset : m->params[st->index].offset;
        LLVMValueRef dst = float_ptr(c, st->to_state ? c->a_state : c->a_params, off);
        if (!temp[s]) {
            copy_out(c, v, dst);
            continue;
        }
        CgLoop l;
        LLVMValueRef i = loop_n(c, &l, ir_numel(node(c, v)->shape), "cp");
        cg_store(c, cg_load(c, cg_gep(c, temp[s], i)), cg_gep(c, dst, i));
        cg_loop_end(c, &l);
    }
}

// grad called by loss() (grad == NULL): the objective is all it needs.
static void return_if_no_grad(Cg *c) {
    LLVMValueRef none = LLVMBuildICmp(c->b, LLVMIntEQ, c->a_grad, LLVMConstNull(c->ptr), "");
    LLVMBasicBlockRef ret = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loss_only");
    LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "backward");
    LLVMBuildCondBr(c->b, none, ret, go);
    LLVMPositionBuilderAtEnd(c->b, ret);
    LLVMBuildRet(c->b, value_at(c, c->m->objective, NULL, cg_i(c, 0)));
    LLVMPositionBuilderAtEnd(c->b, go);
}

// train: a non-finite objective returns before anything is written
// (LANGUAGE.md §7: the model stays unchanged). cg_plan.c makes sure every
// parameter and state is written after this point.
static void return_if_not_finite(Cg *c) {
    LLVMValueRef obj = value_at(c, c->m->objective, NULL, cg_i(c, 0));
    LLVMValueRef finite = fcmp(c, LLVMRealOLT, intr1(c, "llvm.fabs", obj), cg_f(c, INFINITY));
    LLVMBasicBlockRef bail = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "not_finite");
    LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "update");
    LLVMBuildCondBr(c->b, finite, go, bail);
    LLVMPositionBuilderAtEnd(c->b, bail);
    LLVMBuildRet(c->b, obj);
    LLVMPositionBuilderAtEnd(c->b, go);
}

static void set_noalias(Cg *c, LLVMValueRef fn, unsigned n_params) {
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (unsigned i = 0; i < n_params; i++)
        if (LLVMGetTypeKind(LLVMTypeOf(LLVMGetParam(fn, i))) == LLVMPointerTypeKind)
            LLVMAddAttributeAtIndex(fn, i + 1, LLVMCreateEnumAttribute(c->ctx, kind, 0));
}

// Models of at most this many parameters get copies of the train, grad and
// predict kernels for the batches CG_CLONE_BATCHES (measured,
// docs/performance.md: seed b1 -25 %, xor b4 -29 %; xor compiles in 0.9 s
// instead of 0.5 s).
#define CG_CLONE_PARAMS 4096
#define CG_CLONE_BATCHES { 1, 2, 4, 8 }

bool cg_is_item(Cg *c, NodeId id) {
    uint8_t st = c->kp->storage[id];
    return (st == CG_ST_SCRATCH || st == CG_ST_DEST) && !c->kp->is_deferred[id];
}

// Emits the group starting at id (cg_plan.c), or node id alone; returns the
// last id it covers.
NodeId cg_emit_item(Cg *c, NodeId id) {
    NodeId end = c->kp->group_end[id];
    if (!end) {
        emit_node(c, id);
        return id;
    }
    NodeId members[16];
    int n = 0;
    for (NodeId j = id; j <= end; j++) {
        uint8_t st = c->kp->storage[j];
        if (st == CG_ST_SCRATCH || st == CG_ST_DEST) {
            NN_ASSERT(n < (int)NN_COUNTOF(members));
            members[n++] = j;
        }
    }
    if (c->kp->deferred[id])
        emit_deferred_group(c, c->kp->deferred[id], members, n);
    else if (n > 1)
        emit_elementwise_group(c, members, n);
    else
        emit_node(c, id);
    return end;
}

// The kernel's computation from the current block to its return, for the
// batch in c->batch.
static void emit_body(Cg *c, CgKernelKind kind, LLVMTypeRef ret) {
    if (kind != CG_K_APPLY)
        c->inv_batch = fdiv(c, cg_f(c, 1), LLVMBuildSIToFP(c->b, c->batch, c->f32, ""));
    cg_compute_bases(c);
    for (NodeId id = 1; id < c->g->n_nodes; id++) {
        if (!cg_is_item(c, id))
            continue;
        NodeId end = cg_emit_nest(c, id);
        if (!end)
            end = cg_emit_item(c, id);
        if (kind == CG_K_TRAIN && c->m->objective >= id && c->m->objective <= end)
            return_if_not_finite(c);
        if (kind == CG_K_GRAD && c->plan.grad_is_loss && c->m->objective >= id && c->m->objective <= end)
            return_if_no_grad(c);
        id = end;
    }
    switch (kind) {
    case CG_K_GRAD:
        finish_grad(c);
        break;
    case CG_K_PREDICT:
        finish_predict(c);
        break;
    case CG_K_APPLY:
    case CG_K_TRAIN:
        finish_stores(c, kind);
        break;
    default:
        break;
    }
    if (ret == c->void_t)
        LLVMBuildRetVoid(c->b);
    else
        LLVMBuildRet(c->b, c->m->objective ? value_at(c, c->m->objective, NULL, cg_i(c, 0)) : cg_f(c, 0));
}

static LLVMValueRef emit_kernel(Cg *c, CgKernelKind kind) {
    static const char *names[] = { "grad", "loss", "predict", "apply", "train" };
    LLVMTypeRef p = c->ptr;
    LLVMTypeRef params[9];
    LLVMTypeRef ret = c->f32;
    unsigned np = 0;
    switch (kind) {
    case CG_K_GRAD:   // (rt, params, x, y, batch, grad, scratch) -> float
        params[0] = p, params[1] = p, params[2] = p, params[3] = p, params[4] = c->i64, params[5] = p, params[6] = p;
        np = 7;
        break;
    case CG_K_LOSS:   // (rt, params, x, y, batch, scratch) -> float
        params[0] = p, params[1] = p, params[2] = p, params[3] = p, params[4] = c->i64, params[5] = p;
        np = 6;
        break;
    case CG_K_PREDICT:   // (rt, params, x, out, batch, scratch)
        params[0] = p, params[1] = p, params[2] = p, params[3] = p, params[4] = c->i64, params[5] = p;
        np = 6;
        ret = c->void_t;
        break;
    case CG_K_APPLY:   // (rt, params, state, grad, lr, step, scratch)
        params[0] = p, params[1] = p, params[2] = p, params[3] = p, params[4] = c->f32, params[5] = c->f32, params[6] = p;
        np = 7;
        ret = c->void_t;
        break;
    case CG_K_TRAIN:   // (rt, params, state, x, y, batch, lr, step, scratch) -> float
        params[0] = p, params[1] = p, params[2] = p, params[3] = p, params[4] = p, params[5] = c->i64;
        params[6] = c->f32, params[7] = c->f32, params[8] = p;
        np = 9;
        break;
    default:
        cg_bug(c, "kernel kind %d", (int)kind);
    }
    char *name = nn_format(&c->nc->arena, "%s_%s_kernel", c->m->name, names[kind]);
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, params, np, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    set_noalias(c, fn, np);
    cg_set_fn_attrs(c, fn);
    c->fn = fn;
    c->kp = &c->plan.k[kind];
    c->alloca_bb = LLVMAppendBasicBlockInContext(c->ctx, fn, "allocas");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(c->ctx, fn, "start");
    LLVMPositionBuilderAtEnd(c->ab, c->alloca_bb);
    LLVMPositionBuilderAtEnd(c->b, start);
    c->a_params = LLVMGetParam(fn, 1);
    c->a_rt = LLVMGetParam(fn, 0);
    c->a_x = c->a_y = c->a_out = c->a_grad = c->a_state = c->a_grad_in = NULL;
    c->batch = c->lr = c->step = c->inv_batch = NULL;
    c->pack_buf = NULL;
    switch (kind) {
    case CG_K_GRAD:
        c->a_grad = LLVMGetParam(fn, 5);
        // fallthrough
    case CG_K_LOSS:
        c->a_x = LLVMGetParam(fn, 2);
        c->a_y = LLVMGetParam(fn, 3);
        c->batch = LLVMGetParam(fn, 4);
        c->a_scratch = LLVMGetParam(fn, np - 1);
        break;
    case CG_K_PREDICT:
        c->a_x = LLVMGetParam(fn, 2);
        c->a_out = LLVMGetParam(fn, 3);
        c->batch = LLVMGetParam(fn, 4);
        c->a_scratch = LLVMGetParam(fn, 5);
        break;
    case CG_K_APPLY:
        c->a_state = LLVMGetParam(fn, 2);
        c->a_grad_in = LLVMGetParam(fn, 3);
        c->lr = LLVMGetParam(fn, 4);
        c->step = LLVMGetParam(fn, 5);
        c->a_scratch = LLVMGetParam(fn, 6);
        c->batch = cg_i(c, 1);
        break;
    case CG_K_TRAIN:
        c->a_state = LLVMGetParam(fn, 2);
        c->a_x = LLVMGetParam(fn, 3);
        c->a_y = LLVMGetParam(fn, 4);
        c->batch = LLVMGetParam(fn, 5);
        c->lr = LLVMGetParam(fn, 6);
        c->step = LLVMGetParam(fn, 7);
        c->a_scratch = LLVMGetParam(fn, 8);
        break;
    default:
        break;
    }
    // Small models: copies of the body for the small batches (every loop
    // bound a constant: the tiny nets become straight-line code), chosen at
    // run time.
    if (kind != CG_K_APPLY && c->nc->opt.opt_level >= 2 && c->m->param_count <= CG_CLONE_PARAMS) {
        static const int64_t sizes[] = CG_CLONE_BATCHES;
        LLVMValueRef batch = c->batch;
        LLVMBasicBlockRef any = LLVMAppendBasicBlockInContext(c->ctx, fn, "batchn");
        LLVMValueRef sw = LLVMBuildSwitch(c->b, batch, any, NN_COUNTOF(sizes));
        for (size_t i = 0; i < NN_COUNTOF(sizes); i++) {
            LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, fn, "batchk");
            LLVMAddCase(sw, cg_i(c, sizes[i]), bb);
            LLVMPositionBuilderAtEnd(c->b, bb);
            c->batch = cg_i(c, sizes[i]);
            emit_body(c, kind, ret);
        }
        LLVMPositionBuilderAtEnd(c->b, any);
        c->batch = batch;
    }
    emit_body(c, kind, ret);
    LLVMPositionBuilderAtEnd(c->ab, c->alloca_bb);
    LLVMBuildBr(c->ab, start);
    return fn;
}

void cg_emit_kernels(Cg *c) {
    c->base = nn_alloc_array(&c->nc->arena, c->g->n_nodes, sizeof(LLVMValueRef));
    for (int k = 0; k < CG_N_KERNELS; k++)
        c->kernel[k] = (k == CG_K_TRAIN && !c->plan.has_train) || (k == CG_K_LOSS && c->plan.grad_is_loss)
                           ? NULL : emit_kernel(c, (CgKernelKind)k);
}
