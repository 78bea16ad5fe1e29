// cg_nest.c: runs of per-sample nodes computed on the threads, each thread on
// its own samples.
//
// A layer too small for nnrt_sgemm (fashion's last one, 128 -> 10, at batch
// 256: 327K multiply-adds) runs inline, on one thread, and so do the softmax,
// the loss's derivative and that layer's dX after it. At two threads this
// serial stretch took 43-57 us of fashion's 900 us step: the other thread
// waited, and the one working read half of its input from the other core's
// cache. But each sample's values there depend only on that sample's and on
// invariant ones (weights): a run of such nodes, consecutive in the kernel's
// order, is emitted once as the body of an nnrt_parallel_for over the samples,
// with c->batch the chunk's samples and every per-sample buffer starting at the
// chunk's first sample. The code inside is the same code as without the nest
// (inline products, loops over the chunk's samples), so each value gets the
// same operations in the same order: the chunks are whole granules of
// NEST_GRANULE samples, a multiple of every row blocking of the inline kernels
// (AXPY_MR = 6, DOT_MR = 4, 2 to 8 rows a vector in narrow epilogues), so that
// a sample falls in the same kind of block whatever the thread count.
//
// A run stops at a node that mixes samples (a sum over the batch: a bias's
// gradient, the loss) or is not per sample, and at a product over more than
// NEST_MAX_NK weights (at large batches those go to nnrt_sgemm, which splits
// them better). The memory plan lets a buffer reuse the memory of one that
// died before it in the kernel's order; the threads run a run's nodes at
// different times, so a run whose buffers share memory is not nested.
#include "cg_internal.h"

enum { NEST_GRANULE = 24, NEST_MAX_NK = 8192 };
// A run is split only at batches of NEST_MIN_BATCH or more, when its products
// have at least NEST_MIN_MACS multiply-adds over the batch. Below, a thread's
// samples cost about as much as the whole batch (each thread still packs and
// reads every weight, and the kernels' setup is per call): deep sigmoid at
// batch 32 took 270-300 us a step at two threads split, 157-165 us not.
enum { NEST_MIN_BATCH = 128 };
// Nor a run of one node: one layer's product and its epilogue, split, cost
// more than they gained. Fashion's last dX alone took 6.7 us + 7.2 us of
// waiting at two threads, 5.2 us on one; with deep sigmoid's backward pass
// split so (a run of one 64 x 64 layer's dX each), the pool's calls and
// waits were 22 % of its profile at batch 256.
// Nor a long run: deep sigmoid's forward pass (a run of 33 nodes) split at
// batch 256 left half of every activation in the other core's cache for the
// backward pass, which runs on one thread (small products, a sum over the
// batch after each): 1408-1443 -> 1488-1501 us a step at two threads.
enum { NEST_MIN_ITEMS = 2, NEST_MAX_ITEMS = 8 };
#define NEST_MIN_MACS (INT64_C(1) << 18)

typedef struct Nest {
    NodeId  first, last;
    int64_t macs;   // of its products, per sample
} Nest;

static const Node *node(Cg *c, NodeId id) { return &c->g->nodes[id]; }
static bool per_sample(Cg *c, NodeId id) { return node(c, id)->flags & IR_F_BATCH; }

// The matrix operand of a product W @ x or x @ W.
static const Node *weight_of(Cg *c, const Node *mm) {
    return node(c, mm->arg[node(c, mm->arg[0])->shape.rank == 2 ? 0 : 1]);
}

// A product of a sample's vector and an invariant matrix, small enough.
static bool small_product(Cg *c, const Node *mm) {
    const Node *a = node(c, mm->arg[0]), *b = node(c, mm->arg[1]);
    const Node *w = weight_of(c, mm), *x = w == a ? b : a;
    return w->shape.rank == 2 && x->shape.rank == 1 && !(w->flags & IR_F_BATCH) && (x->flags & IR_F_BATCH) &&
           w->op != IR_CONST && w->shape.dim[0] * w->shape.dim[1] <= NEST_MAX_NK;
}

static bool per_sample_op(uint16_t op) {
    return cg_is_elementwise(op) || op == IR_SUM || op == IR_SUM_LAST || op == IR_LOGSUMEXP ||
           op == IR_SOFTMAX || op == IR_LOG_SOFTMAX || op == IR_MATMUL;
}

// The per-sample scratch buffers a run touches, and which it writes.
typedef struct Touched {
    NodeId id[256];
    bool   written[256];
    int    n;
    bool   overflow;
} Touched;

static void touch(Cg *c, Touched *t, NodeId id, bool written) {
    while (c->kp->storage[id] == CG_ST_ALIAS)   // a reshape reads its source's memory
        id = c->kp->alias_of[id];
    if (c->kp->storage[id] != CG_ST_SCRATCH || !per_sample(c, id))
        return;
    for (int i = 0; i < t->n; i++)
        if (t->id[i] == id) {
            t->written[i] |= written;
            return;
        }
    if (t->n == (int)NN_COUNTOF(t->id)) {
        t->overflow = true;
        return;
    }
    t->id[t->n] = id, t->written[t->n] = written, t->n++;
}

// Whether item `id` computes each sample from that sample alone; its products'
// multiply-adds a sample added to *macs, the buffers it reads and writes in *t.
static bool separable(Cg *c, NodeId id, int64_t *macs, Touched *t) {
    if (!per_sample(c, id) || c->kp->group_end[id])
        return false;
    NodeId stack[64];
    int n = 0;
    stack[n++] = id;
    while (n > 0) {
        NodeId v = stack[--n];
        const Node *nd = node(c, v);
        if (!per_sample_op(nd->op) || (nd->op == IR_MATMUL && !small_product(c, nd)))
            return false;
        if (nd->op == IR_MATMUL)   // the weight's elements
            *macs += ir_numel(weight_of(c, nd)->shape);
        for (int i = 0; i < nd->n_args; i++) {
            NodeId a = nd->arg[i];
            if (c->kp->storage[a] == CG_ST_INLINE) {
                if (n == (int)NN_COUNTOF(stack))
                    return false;
                stack[n++] = a;
            } else {
                touch(c, t, a, false);
            }
        }
    }
    touch(c, t, id, true);
    return !t->overflow;
}

static int64_t scratch_end(Cg *c, NodeId id) {
    int64_t bytes = ir_numel(node(c, id)->shape) * (int64_t)sizeof(float);
    return c->kp->offset[id] + bytes;
}

// No buffer the run writes shares memory with another it touches.
static bool disjoint(Cg *c, const Touched *t) {
    for (int i = 0; i < t->n; i++)
        for (int j = 0; j < t->n; j++) {
            if (i == j || !t->written[i])
                continue;
            NodeId a = t->id[i], b = t->id[j];
            if (c->kp->offset[a] < scratch_end(c, b) && c->kp->offset[b] < scratch_end(c, a))
                return false;
        }
    return true;
}

// The longest run of separable items from `id`; returns its items.
static int find_run(Cg *c, NodeId id, Nest *run) {
    Touched t = { .n = 0 };
    int items = 0;
    run->first = id, run->last = 0, run->macs = 0;
    for (NodeId v = id; v < c->g->n_nodes; v++) {
        if (!cg_is_item(c, v))
            continue;
        Touched more = t;
        int64_t macs = run->macs;
        if (!separable(c, v, &macs, &more) || !disjoint(c, &more))
            break;
        t = more, run->macs = macs, items++;
        run->last = v;
    }
    return items;
}

// The run's items as they would be without it, on one thread.
static NodeId emit_serial(Cg *c, const Nest *run) {
    for (NodeId id = run->first; id <= run->last; id++)
        if (cg_is_item(c, id))
            id = cg_emit_item(c, id);
    return run->last;
}

// The run's items on granules [begin, end) of the batch.
static void nest_body(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    const Nest *run = arg;
    LLVMValueRef g = cg_i(c, NEST_GRANULE);
    LLVMValueRef b0 = LLVMBuildMul(c->b, begin, g, "");
    LLVMValueRef b1 = LLVMBuildMul(c->b, end, g, "");
    b1 = cg_min_i(c, b1, c->batch);
    for (NodeId id = 1; id < c->g->n_nodes; id++)
        if (c->base[id] && per_sample(c, id))
            c->base[id] = cg_gep(c, c->base[id], LLVMBuildMul(c->b, b0, cg_i(c, ir_numel(node(c, id)->shape)), ""));
    c->batch = LLVMBuildSub(c->b, b1, b0, "");
    c->a_rt = NULL;   // inside, nothing calls nnrt_sgemm or splits a loop again
    emit_serial(c, run);
}

NodeId cg_emit_nest(Cg *c, NodeId id) {
    Nest run;
    LLVMValueRef fn, ctx;
    if (c->kp->kind != CG_K_TRAIN || !cg_parallel_ok(c) || LLVMIsAConstantInt(c->batch))
        return 0;
    int items = find_run(c, id, &run);
    if (items > NEST_MAX_ITEMS)   // not its tail either
        return emit_serial(c, &run);
    if (items < NEST_MIN_ITEMS || run.macs == 0 || !cg_outline(c, nest_body, &run, &fn, &ctx))
        return 0;
    LLVMValueRef n = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, c->batch, cg_i(c, NEST_GRANULE - 1), ""),
                                   cg_i(c, NEST_GRANULE), "");
    // One granule, or too little work: the call itself, without waking the
    // other threads
    LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nest.par");
    LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nest.one");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nest.done");
    int64_t min_batch = (NEST_MIN_MACS + run.macs - 1) / run.macs;
    if (min_batch < NEST_MIN_BATCH)
        min_batch = NEST_MIN_BATCH;
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, c->batch, cg_i(c, min_batch), ""), par, one);
    LLVMPositionBuilderAtEnd(c->b, par);
    cg_call_parallel_for(c, fn, ctx, n);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, one);
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(fn), fn, (LLVMValueRef[]){ ctx, cg_i(c, 0), n }, 3, "");
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
    return run.last;
}
