// cg_plan.c: for each kernel, which nodes it computes, where each value lives,
// and the static memory plan. Input: the train-step Model; output: a CgPlan.
//
// A kernel computes the nodes its roots need (grad: the objective and every
// gradient; loss: the objective; predict: the output; apply: the stores'
// values; train: the objective and the stores' train_values, the update
// written on the gradients), in id order, which is topological. Each needed
// node gets a storage:
// - LEAF: params, x, y, state, grad_in (external arrays) or a value (CONST, SCALAR_ARG);
// - INLINE: an elementwise node with one use whose consumer is elementwise with
//   the same shape and batch-ness, or a reduction reading each element once
//   (SUM, SUM_LAST, BATCH_SUM, REDUCE_TO): it is computed inside the
//   consumer's loop and has no buffer (fusion);
// - ABSORBED: OUTER whose only use is BATCH_SUM: the pair is one GEMM that
//   reduces over the batch (dW = A^T X);
// - ALIAS: RESHAPE of a buffer (the same floats, row-major);
// - DEST: a root written straight into the kernel's output array (a gradient
//   into grad[], the output into out[], an optimiser update into its parameter
//   or state when no later read of the old value exists);
// - SCRATCH: a buffer in the scratch arena.
// In apply and train, consecutive elementwise updates of one shape form groups
// (one loop), and in train a dW read only by one group is deferred to it: the
// group becomes the GEMM's epilogue (plan_groups, plan_deferred).
// Scratch buffers get offsets by liveness (first fit, freed after the last
// use): invariant buffers at fixed offsets, per-sample buffers ([batch, numel])
// at fixed_total + off * batch. Buffers are 64-byte aligned.
#include <string.h>

#include "autodiff.h"
#include "cg_internal.h"

enum { CG_MAX_INLINE_DEPTH = 24, CG_ALIGN = 64, CG_MIN_XW_EPILOGUE = 16 };

bool cg_is_elementwise(uint16_t op) {
    return ir_op_info[op].kind == IR_KIND_UNARY || ir_op_info[op].kind == IR_KIND_BINARY ||
           op == IR_BROADCAST;
}

// Consumers that read every element of their operand exactly once, in their own loop.
static bool reads_once(uint16_t op) {
    return cg_is_elementwise(op) || op == IR_SUM || op == IR_SUM_LAST || op == IR_BATCH_SUM ||
           op == IR_REDUCE_TO;
}

// W @ x or x @ W (W an invariant matrix, not a constant; x a per-sample
// vector) whose only consumer is elementwise with the same shape: the
// consumer's fused chain (bias and activation forward, an activation's
// derivative backward) is evaluated in the GEMM's epilogue, on each finished
// dot product, and the product itself never has a buffer.
// x @ W only with rows of at least CG_MIN_XW_EPILOGUE: narrower rows (the
// tiny nets' 2 to 4 units) went through the epilogue a row at a time, where
// the consumer's own loop takes all the samples' elements as one flat vector
// loop (seed b32: 0.40 -> 0.42 us a step fused).
static bool matmul_epilogue_ok(const Graph *g, const Node *mm, const Node *user) {
    const Node *w = &g->nodes[mm->arg[0]], *x = &g->nodes[mm->arg[1]];
    if (w->shape.rank == 1) {   // x @ W
        const Node *t = w;
        w = x, x = t;
        if (ir_numel(mm->shape) < CG_MIN_XW_EPILOGUE)
            return false;
    }
    return ir_op_info[user->op].kind != IR_KIND_LEAF && ir_op_info[user->op].kind != IR_KIND_OTHER &&
           w->shape.rank == 2 && !(w->flags & IR_F_BATCH) && w->op != IR_CONST && x->shape.rank == 1 &&
           (x->flags & IR_F_BATCH) && ir_shape_eq(user->shape, mm->shape) && (user->flags & IR_F_BATCH);
}

static bool is_buffer_leaf(uint16_t op) {
    return op == IR_INPUT || op == IR_TARGET || op == IR_PARAM || op == IR_STATE || op == IR_GRAD_IN;
}

static size_t buffer_bytes(Shape s) {
    size_t b = (size_t)ir_numel(s) * sizeof(float);
    return (b + CG_ALIGN - 1) / CG_ALIGN * CG_ALIGN;
}

// First-fit allocation among live blocks of one region.
typedef struct Block {
    size_t   off, size;
    uint32_t last;      // position of the last read
} Block;

typedef struct Region {
    Block   *blocks;
    uint32_t n;
    size_t   high;      // high-water mark, bytes
} Region;

static size_t region_alloc(Region *r, size_t size, uint32_t now, uint32_t last) {
    uint32_t j = 0;     // drop dead blocks (read for the last time before now)
    for (uint32_t i = 0; i < r->n; i++)
        if (r->blocks[i].last >= now)
            r->blocks[j++] = r->blocks[i];
    r->n = j;
    // Blocks sorted by offset: find the lowest gap that fits.
    size_t off = 0;
    uint32_t at = 0;
    for (; at < r->n; at++) {
        if (r->blocks[at].off >= off + size)
            break;
        size_t end = r->blocks[at].off + r->blocks[at].size;
        if (end > off)
            off = end;
    }
    memmove(&r->blocks[at + 1], &r->blocks[at], (r->n - at) * sizeof(Block));
    r->blocks[at] = (Block){ off, size, last };
    r->n++;
    if (off + size > r->high)
        r->high = off + size;
    return off;
}

static NodeId owner(const CgKPlan *k, NodeId id) {
    while (k->storage[id] == CG_ST_ALIAS)
        id = k->alias_of[id];
    return id;
}

// Is id's fused tree readable at one flat index over shape s: every buffer it
// reads (through INLINE nodes) has shape s or one element, none per sample?
static bool tree_flat(const Graph *g, const CgKPlan *k, NodeId id, Shape s) {
    NodeId stack[64 * 3];
    int n = 0;
    const Node *top = &g->nodes[id];
    for (int i = 0; i < top->n_args; i++)
        stack[n++] = top->arg[i];
    while (n > 0) {
        NodeId v = stack[--n];
        const Node *nd = &g->nodes[v];
        if (k->storage[v] == CG_ST_INLINE) {
            if (nd->op == IR_MATMUL || n + nd->n_args > (int)NN_COUNTOF(stack))
                return false;
            for (int i = 0; i < nd->n_args; i++)
                stack[n++] = nd->arg[i];
            continue;
        }
        if (nd->op == IR_CONST || nd->op == IR_SCALAR_ARG)
            continue;
        if ((nd->flags & IR_F_BATCH) || (!ir_shape_eq(nd->shape, s) && ir_numel(nd->shape) != 1))
            return false;
    }
    return true;
}

static bool groupable(const Graph *g, const CgKPlan *k, const uint8_t *has_mm, NodeId id) {
    const Node *nd = &g->nodes[id];
    return (k->storage[id] == CG_ST_SCRATCH || k->storage[id] == CG_ST_DEST) && cg_is_elementwise(nd->op) &&
           !(nd->flags & IR_F_BATCH) && ir_numel(nd->shape) > 1 && !has_mm[id] && tree_flat(g, k, id, nd->shape);
}

enum { CG_MAX_GROUP = 16 };

// Groups (apply, train): each groupable materialised node opens one, joined by
// the next materialised nodes while they are groupable and of its shape.
// group_of[id]: the group's first member, for every member.
static void plan_groups(const Graph *g, CgKPlan *k, const uint8_t *has_mm, NodeId *group_of) {
    for (NodeId id = 1; id < g->n_nodes; id++) {
        if (!groupable(g, k, has_mm, id))
            continue;
        NodeId last = id;
        int count = 1;
        group_of[id] = id;
        for (NodeId j = id + 1; j < g->n_nodes && count < CG_MAX_GROUP; j++) {
            uint8_t sj = k->storage[j];
            if (sj != CG_ST_SCRATCH && sj != CG_ST_DEST)
                continue;
            if (!ir_shape_eq(g->nodes[j].shape, g->nodes[id].shape) || !groupable(g, k, has_mm, j))
                break;
            group_of[j] = id;
            last = j;
            count++;
        }
        k->group_end[id] = last;
        id = last;
    }
}

// dW = BATCH_SUM(OUTER(a, x)) read only by one group (train): the product is
// computed at the group, as its epilogue, so the gradient goes straight into
// the update. Its operands must be per sample: the group may write invariant
// buffers (parameters, state) in place while the product still runs.
static void plan_deferred(const Graph *g, CgKPlan *k, const uint8_t *need, const uint8_t *is_root,
                          const NodeId *root, const NodeId *group_of) {
    for (NodeId id = 1; id < g->n_nodes; id++) {
        const Node *nd = &g->nodes[id];
        if (k->storage[id] != CG_ST_SCRATCH || is_root[id] || nd->op != IR_BATCH_SUM ||
            k->storage[nd->arg[0]] != CG_ST_ABSORBED || (nd->flags & IR_F_BATCH) || nd->shape.rank != 2)
            continue;
        const Node *o = &g->nodes[nd->arg[0]];
        if (!(g->nodes[o->arg[0]].flags & IR_F_BATCH) || !(g->nodes[o->arg[1]].flags & IR_F_BATCH))
            continue;
        NodeId start = 0;
        bool ok = true;
        for (NodeId u = id + 1; u < g->n_nodes && ok; u++) {
            if (!need[u])
                continue;
            const Node *un = &g->nodes[u];
            for (int i = 0; i < un->n_args && ok; i++) {
                if (un->arg[i] != id)
                    continue;
                NodeId r = k->storage[u] == CG_ST_INLINE ? root[u] : u;
                NodeId s = group_of[r];
                ok = s && (!start || s == start);
                start = s;
            }
        }
        if (ok && start && !k->deferred[start]) {
            k->deferred[start] = id;
            k->is_deferred[id] = 1;
        }
    }
}

static void plan_kernel(Arena *a, const Model *m, CgKernelKind kind, int opt_level, CgKPlan *k) {
    const Graph *g = m->g;
    uint32_t n = g->n_nodes;
    const uint32_t END = n;
    bool updates = kind == CG_K_APPLY || kind == CG_K_TRAIN;
    k->kind = kind;
    k->storage = nn_alloc_array(a, n, 1);
    k->uses = nn_alloc_array(a, n, sizeof(uint32_t));
    k->user = nn_alloc_array(a, n, sizeof(NodeId));
    k->alias_of = nn_alloc_array(a, n, sizeof(NodeId));
    k->offset = nn_alloc_array(a, n, sizeof(int64_t));
    k->dest_kind = nn_alloc_array(a, n, 1);
    k->dest_off = nn_alloc_array(a, n, sizeof(size_t));
    k->store_direct = nn_alloc_array(a, m->n_stores + 1, 1);
    k->store_temp = nn_alloc_array(a, m->n_stores + 1, sizeof(int64_t));
    k->group_end = nn_alloc_array(a, n, sizeof(NodeId));
    k->deferred = nn_alloc_array(a, n, sizeof(NodeId));
    k->is_deferred = nn_alloc_array(a, n, 1);
    uint8_t *need = nn_alloc_array(a, n, 1);
    uint8_t *is_root = nn_alloc_array(a, n, 1);
    uint8_t *want_dest = nn_alloc_array(a, n, 1);
    uint8_t *depth = nn_alloc_array(a, n, 1);
    NodeId *root = nn_alloc_array(a, n, sizeof(NodeId));      // the materialised node computing it
    uint8_t *has_mm = nn_alloc_array(a, n, 1);                // a root with a fused W @ x
    NodeId *group_of = nn_alloc_array(a, n, sizeof(NodeId));
    uint32_t *pos = nn_alloc_array(a, n, sizeof(uint32_t));      // where its loop runs (liveness)
    uint32_t *pos_own = nn_alloc_array(a, n, sizeof(uint32_t));  // ... members of a group in turn
    uint32_t *last = nn_alloc_array(a, n, sizeof(uint32_t));
    uint32_t *last_own = nn_alloc_array(a, n, sizeof(uint32_t));

    // Roots.
    switch (kind) {
    case CG_K_GRAD:
        if (m->objective)
            is_root[m->objective] = 1;
        for (uint32_t i = 0; i < m->n_params; i++)
            if (m->grads && m->grads[i]) {
                NodeId gi = m->grads[i];
                is_root[gi] = 1;
                if (!want_dest[gi] && !(g->nodes[gi].flags & IR_F_BATCH)) {
                    want_dest[gi] = 1;
                    k->dest_kind[gi] = CG_DEST_GRAD;
                    k->dest_off[gi] = m->params[i].offset;
                }
            }
        break;
    case CG_K_LOSS:
        if (m->objective)
            is_root[m->objective] = 1;
        break;
    case CG_K_PREDICT:
        if (m->output) {
            is_root[m->output] = 1;
            if (g->nodes[m->output].flags & IR_F_BATCH) {
                want_dest[m->output] = 1;
                k->dest_kind[m->output] = CG_DEST_OUT;
            }
        }
        break;
    case CG_K_APPLY:
        for (uint32_t s = 0; s < m->n_stores; s++)
            is_root[m->stores[s].value] = 1;
        break;
    case CG_K_TRAIN:
        if (!m->train_values)
            return;      // no train kernel: nothing needed
        if (m->objective)
            is_root[m->objective] = 1;
        for (uint32_t s = 0; s < m->n_stores; s++)
            is_root[m->train_values[s]] = 1;
        break;
    default:
        NN_ASSERT(!"kernel kind");
    }

    // Needed nodes and their uses.
    for (NodeId id = n - 1; id > 0; id--) {
        if (is_root[id])
            need[id] = 1;
        if (!need[id])
            continue;
        const Node *nd = &g->nodes[id];
        for (int i = 0; i < nd->n_args; i++) {
            need[nd->arg[i]] = 1;
            k->uses[nd->arg[i]]++;
            k->user[nd->arg[i]] = id;
        }
    }
    for (NodeId id = 1; id < n; id++)
        if (is_root[id])
            k->uses[id]++;

    // Fusion decisions, users first.
    for (NodeId id = n - 1; id > 0; id--) {
        if (!need[id])
            continue;
        const Node *nd = &g->nodes[id];
        if (ir_op_info[nd->op].kind == IR_KIND_LEAF) {
            k->storage[id] = CG_ST_LEAF;
            continue;
        }
        k->storage[id] = CG_ST_SCRATCH;    // refined below
        root[id] = id;
        if (is_root[id] || k->uses[id] != 1)
            continue;
        NodeId u = k->user[id];
        const Node *un = &g->nodes[u];
        NodeId ru = k->storage[u] == CG_ST_INLINE ? root[u] : u;
        if (nd->op == IR_MATMUL && matmul_epilogue_ok(g, nd, un) && !has_mm[ru] &&
            cg_is_elementwise(g->nodes[ru].op) && ir_shape_eq(g->nodes[ru].shape, nd->shape)) {
            k->storage[id] = CG_ST_INLINE;   // its consumer chain becomes the GEMM's epilogue
            root[id] = ru;
            has_mm[ru] = 1;
            continue;
        }
        if (nd->op == IR_OUTER && un->op == IR_BATCH_SUM) {
            k->storage[id] = CG_ST_ABSORBED;
            continue;
        }
        if (!cg_is_elementwise(nd->op) || !reads_once(un->op))
            continue;
        if (cg_is_elementwise(un->op) &&
            (!ir_shape_eq(un->shape, nd->shape) || (un->flags & IR_F_BATCH) != (nd->flags & IR_F_BATCH)))
            continue;
        int d = k->storage[u] == CG_ST_INLINE ? depth[u] + 1 : 1;
        if (d > CG_MAX_INLINE_DEPTH)
            continue;
        k->storage[id] = CG_ST_INLINE;
        depth[id] = (uint8_t)d;
        root[id] = ru;
    }

    // Aliases and destinations, operands first.
    for (NodeId id = 1; id < n; id++) {
        if (k->storage[id] != CG_ST_SCRATCH)
            continue;
        const Node *nd = &g->nodes[id];
        if (nd->op == IR_RESHAPE) {
            NodeId src = nd->arg[0];
            uint8_t st = k->storage[src];
            if ((st == CG_ST_LEAF && is_buffer_leaf(g->nodes[src].op)) || st == CG_ST_SCRATCH ||
                st == CG_ST_DEST || st == CG_ST_ALIAS) {
                k->storage[id] = CG_ST_ALIAS;
                k->alias_of[id] = src;
                continue;
            }
        }
        if (want_dest[id])
            k->storage[id] = CG_ST_DEST;
    }

    if (updates && opt_level >= 1)
        plan_groups(g, k, has_mm, group_of);
    if (kind == CG_K_TRAIN && opt_level >= 2)
        plan_deferred(g, k, need, is_root, root, group_of);

    // Positions: where each computed node's loop runs. A group runs at its
    // first member, each member in turn at every index: for liveness every
    // member reads at the group's end (no member's buffer may take the place
    // of one the group still reads); for in-place updates, at its own id.
    NodeId *defer_to = nn_alloc_array(a, n, sizeof(NodeId));
    for (NodeId id = 1; id < n; id++)
        if (k->deferred[id])
            defer_to[k->deferred[id]] = id;
    for (NodeId id = n - 1; id > 0; id--) {
        uint8_t st = k->storage[id];
        if (st == CG_ST_INLINE || st == CG_ST_ABSORBED) {
            pos[id] = pos[k->user[id]];
            pos_own[id] = pos_own[k->user[id]];
        } else if (k->is_deferred[id]) {
            pos[id] = pos_own[id] = k->group_end[defer_to[id]];
        } else {
            pos[id] = group_of[id] ? k->group_end[group_of[id]] : id;
            pos_own[id] = id;
        }
    }
    // Last reads of every buffer owner.
    for (NodeId id = 1; id < n; id++) {
        uint8_t st = k->storage[id];
        if (st == CG_ST_NONE || st == CG_ST_LEAF || st == CG_ST_ALIAS)
            continue;
        const Node *nd = &g->nodes[id];
        for (int i = 0; i < nd->n_args; i++) {
            NodeId o = owner(k, nd->arg[i]);
            if (last[o] < pos[id])
                last[o] = pos[id];
            if (last_own[o] < pos_own[id])
                last_own[o] = pos_own[id];
        }
    }

    // apply, train: stores written in place, or copied at the end (after every value exists).
    if (updates) {
        for (uint32_t s = 0; s < m->n_stores; s++) {
            NodeId v = cg_store_value(m, kind, s);
            uint8_t st = k->storage[v];
            if (st != CG_ST_SCRATCH && st != CG_ST_DEST) {   // a leaf or an alias: read at the end
                NodeId o = owner(k, v);
                last[o] = last_own[o] = END;
            }
        }
        for (uint32_t s = 0; s < m->n_stores; s++) {
            const IrStore *sd = &m->stores[s];
            NodeId v = cg_store_value(m, kind, s);
            k->store_temp[s] = -1;
            if (k->storage[v] != CG_ST_SCRATCH || !cg_is_elementwise(g->nodes[v].op))
                continue;
            // The destination's leaf: no read after v's loop.
            NodeId leaf = 0;
            for (NodeId id = 1; id < n && !leaf; id++) {
                const Node *nd = &g->nodes[id];
                if (nd->op == (sd->to_state ? IR_STATE : IR_PARAM) && (uint32_t)nd->imm == sd->index &&
                    k->storage[id] == CG_ST_LEAF)
                    leaf = id;
            }
            if (leaf && last_own[leaf] > v)
                continue;
            k->storage[v] = CG_ST_DEST;
            k->dest_kind[v] = sd->to_state ? CG_DEST_STATE : CG_DEST_PARAM;
            k->dest_off[v] = sd->to_state ? m->states[sd->index].offset : m->params[sd->index].offset;
            k->store_direct[s] = 1;
        }
    }
    // Kernel roots not written in place are read at the end.
    for (NodeId id = 1; id < n; id++)
        if (is_root[id] && k->storage[id] != CG_ST_DEST) {
            NodeId o = owner(k, id);
            last[o] = END;
        }

    // Offsets.
    Region fixed = { nn_alloc_array(a, n + 1, sizeof(Block)), 0, 0 };
    Region per = { nn_alloc_array(a, n + 1, sizeof(Block)), 0, 0 };
    for (NodeId id = 1; id < n; id++) {
        if (k->storage[id] != CG_ST_SCRATCH)
            continue;
        const Node *nd = &g->nodes[id];
        uint32_t l = last[id] ? last[id] : id;   // unread values still get a buffer
        Region *r = (nd->flags & IR_F_BATCH) ? &per : &fixed;
        k->offset[id] = (int64_t)region_alloc(r, buffer_bytes(nd->shape), id, l);
    }
    k->fixed = fixed.high;
    k->per_sample = per.high;
    if (updates)
        for (uint32_t s = 0; s < m->n_stores; s++) {
            NodeId v = cg_store_value(m, kind, s);
            uint8_t st = k->storage[v];
            if (k->store_direct[s] || st == CG_ST_SCRATCH || st == CG_ST_DEST)
                continue;
            // A leaf, constant or alias: copied to a temporary before any store writes.
            k->store_temp[s] = (int64_t)k->fixed;
            k->fixed += buffer_bytes(g->nodes[v].shape);
        }
}

// The train kernel checks the objective before it writes anything, and the
// grad kernel returns it there when it has no gradient to write (loss()):
// every destination written in place must be written after the objective's
// loop (a group writes at its first member; copies happen at the end).
static bool writes_after_objective(const Model *m, const CgKPlan *k) {
    if (!m->objective)
        return false;
    for (NodeId id = 1; id < m->g->n_nodes && id <= m->objective; id++) {
        NodeId end = k->group_end[id] ? k->group_end[id] : id;
        for (NodeId j = id; j <= end; j++)
            if (k->storage[j] == CG_ST_DEST)
                return false;
    }
    return true;
}

void cg_plan(Arena *a, const Model *m, int opt_level, CgPlan *p) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < CG_N_KERNELS; i++) {
        plan_kernel(a, m, (CgKernelKind)i, opt_level, &p->k[i]);
        if (p->k[i].fixed > p->fixed)
            p->fixed = p->k[i].fixed;
        if (p->k[i].per_sample > p->per_sample)
            p->per_sample = p->k[i].per_sample;
    }
    p->has_train = m->train_values && writes_after_objective(m, &p->k[CG_K_TRAIN]);
    p->grad_is_loss = m->grads && writes_after_objective(m, &p->k[CG_K_GRAD]);
}

void cg_scratch_sizes(NnCtx *c, const Model *m, size_t *fixed_bytes, size_t *per_sample_bytes) {
    CgPlan p;
    cg_plan(&c->arena, ir_fuse_update(&c->arena, m), c->opt.opt_level, &p);
    *fixed_bytes = p.fixed;
    *per_sample_bytes = p.per_sample;
}
