// cg_plan.c: for each kernel, which nodes it computes, where each value lives,
// and the static memory plan. Input: the train-step Model; output: a CgPlan.
//
// A kernel computes the nodes its roots need (grad: the objective and every
// gradient; loss: the objective; predict: the output; apply: the stores'
// values), in id order, which is topological. Each needed node gets a storage:
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
// Scratch buffers get offsets by liveness (first fit, freed after the last
// use): invariant buffers at fixed offsets, per-sample buffers ([batch, numel])
// at fixed_total + off * batch. Buffers are 64-byte aligned.
#include <string.h>

#include "cg_internal.h"

enum { CG_MAX_INLINE_DEPTH = 24, CG_ALIGN = 64 };

bool cg_is_elementwise(uint16_t op) {
    return ir_op_info[op].kind == IR_KIND_UNARY || ir_op_info[op].kind == IR_KIND_BINARY ||
           op == IR_BROADCAST;
}

// Consumers that read every element of their operand exactly once, in their own loop.
static bool reads_once(uint16_t op) {
    return cg_is_elementwise(op) || op == IR_SUM || op == IR_SUM_LAST || op == IR_BATCH_SUM ||
           op == IR_REDUCE_TO;
}

// W @ x (W an invariant matrix, not a constant; x a per-sample vector) whose
// only consumer is elementwise with the same shape: the consumer's fused chain
// (bias, activation) is evaluated in the GEMM's epilogue, on each finished dot
// product, and the product itself never has a buffer.
static bool matmul_epilogue_ok(const Graph *g, const Node *mm, const Node *user) {
    const Node *w = &g->nodes[mm->arg[0]], *x = &g->nodes[mm->arg[1]];
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

static void plan_kernel(Arena *a, const Model *m, CgKernelKind kind, CgKPlan *k) {
    const Graph *g = m->g;
    uint32_t n = g->n_nodes;
    const uint32_t END = n;
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
    uint8_t *need = nn_alloc_array(a, n, 1);
    uint8_t *is_root = nn_alloc_array(a, n, 1);
    uint8_t *want_dest = nn_alloc_array(a, n, 1);
    uint8_t *depth = nn_alloc_array(a, n, 1);
    NodeId *root = nn_alloc_array(a, n, sizeof(NodeId));      // the materialised node computing it
    uint8_t *has_mm = nn_alloc_array(a, n, 1);                // a root with a fused W @ x
    uint32_t *pos = nn_alloc_array(a, n, sizeof(uint32_t));
    uint32_t *last = nn_alloc_array(a, n, sizeof(uint32_t));

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

    // Positions: where each computed node's loop runs.
    for (NodeId id = n - 1; id > 0; id--) {
        uint8_t st = k->storage[id];
        pos[id] = (st == CG_ST_INLINE || st == CG_ST_ABSORBED) ? pos[k->user[id]] : id;
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
        }
    }

    // apply: stores written in place, or copied at the end (after every value exists).
    if (kind == CG_K_APPLY) {
        for (uint32_t s = 0; s < m->n_stores; s++) {
            NodeId v = m->stores[s].value;
            uint8_t st = k->storage[v];
            if (st != CG_ST_SCRATCH && st != CG_ST_DEST) {   // a leaf or an alias: read at the end
                NodeId o = owner(k, v);
                last[o] = END;
            }
        }
        for (uint32_t s = 0; s < m->n_stores; s++) {
            const IrStore *sd = &m->stores[s];
            NodeId v = sd->value;
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
            if (leaf && last[leaf] > v)
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
    if (kind == CG_K_APPLY)
        for (uint32_t s = 0; s < m->n_stores; s++) {
            NodeId v = m->stores[s].value;
            uint8_t st = k->storage[v];
            if (k->store_direct[s] || st == CG_ST_SCRATCH || st == CG_ST_DEST)
                continue;
            // A leaf, constant or alias: copied to a temporary before any store writes.
            k->store_temp[s] = (int64_t)k->fixed;
            k->fixed += buffer_bytes(g->nodes[v].shape);
        }
}

void cg_plan(Arena *a, const Model *m, CgPlan *p) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < CG_N_KERNELS; i++) {
        plan_kernel(a, m, (CgKernelKind)i, &p->k[i]);
        if (p->k[i].fixed > p->fixed)
            p->fixed = p->k[i].fixed;
        if (p->k[i].per_sample > p->per_sample)
            p->per_sample = p->k[i].per_sample;
    }
}

void cg_scratch_sizes(NnCtx *c, const Model *m, size_t *fixed_bytes, size_t *per_sample_bytes) {
    CgPlan p;
    cg_plan(&c->arena, m, &p);
    *fixed_bytes = p.fixed;
    *per_sample_bytes = p.per_sample;
}
