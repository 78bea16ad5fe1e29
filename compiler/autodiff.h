// autodiff.h: from the forward Model (sema) to the whole train step as IR:
// symbolic reverse-mode differentiation (grad.c), the pruning passes (pass_*.c),
// the optimiser lowered into update stores (optim.c), and what shows them
// (stats.c, dot.c, check.c). All of it lives in the nnc_grad library.
#ifndef NNC_AUTODIFF_H
#define NNC_AUTODIFF_H

#include "ir.h"

// grad.c: fills m->grads[i] = d m->objective / d params[i] (invariant nodes),
// built through ir_node() with the table of derivative rules. Nodes that do
// not reach a parameter get no adjoint. Never recurses.
void ir_differentiate(Model *m);
// Whether grad.c has a derivative rule for op (every non-leaf op must).
bool ir_has_grad_rule(IrOp op);

// A pass rewrites the model's graph in place or rebuilds it (remapping every
// NodeId the Model holds). Simplifying passes never increase the live node count.
typedef struct IrPass {
    const char *name;               // "simplify", "dce", ... (--dump-after=NAME)
    void      (*run)(Model *m);
} IrPass;

// Rebuilds m->g keeping only what is reachable from the model's roots
// (output, loss, objective, grads, stores), remapping every NodeId. pass_dce.c
void ir_pass_dce(Model *m);
// Number of nodes reachable from the model's roots.
uint32_t ir_count_live(const Model *m);
// live[id] (n_nodes bools in the graph's arena): reachable from the roots.
bool *ir_live_mask(const Model *m);

// pass_util.c: the rebuild every rewriting pass uses. Copies m->g into a new
// graph in one forward loop over the old ids, each node with its operands
// already remapped, through `rewrite` (NULL: a plain copy with ir_node); a
// rewrite returns the node's replacement in the new graph, which must have
// the same shape and batch kind (IR_F_BATCH). Nodes with keep[id] false
// (keep NULL: all kept) are dropped; every NodeId the Model holds is remapped.
typedef NodeId (*IrRewrite)(Graph *g, const Node *n, void *ctx);
void ir_rebuild(Model *m, const bool *keep, IrRewrite rewrite, void *ctx);

// pass_simplify.c: algebraic simplification and constant folding (x*1, x+0,
// --x, folding of constant elementwise ops and reductions, reshape and
// transpose chains). Never changes a value the interpreter computes (0*x is
// not folded: x may be inf or NaN) and never increases the live node count.
void ir_pass_simplify(Model *m);

// optim.c: LANGUAGE.md §4/§7 optimisers as IR: fills m->states and m->stores,
// written in terms of GRAD_IN leaves (so apply() and train_step share it).
void ir_lower_optimizer(Model *m);
// optim_fuse.c: the whole train step as one computation, for a fused train
// kernel: a copy of m, with its own graph, whose train_values[s] is
// stores[s].value with GRAD_IN i replaced by grads[i] (zeros when a parameter
// has no gradient). m itself is unchanged; the copy's other ids are m's own.
Model *ir_fuse_update(Arena *a, const Model *m);

// The whole pipeline: differentiate, prune (unless no_prune), lower the
// optimiser, dead-code elimination; prints the IR after a pass named by
// c->opt.dump_after. Returns false on an internal failure reported to c->diag.
bool ir_build_train_step(NnCtx *c, Model *m);
// Whether `name` is a pass of that pipeline (for checking --dump-after=NAME).
bool ir_is_pipeline_pass(const char *name);

// stats.c: `--stats`: per-sample node counts and FLOPs (forward, naive backward
// counted as tree-style symbolic differentiation would produce it, pruned
// backward), ratios, kept forward values and their bytes.
void ir_print_stats(NnCtx *c, const Model *forward, const Model *train, FILE *out);

// stats.c: the part of the train step each node belongs to (also used by dot.c).
// FORWARD: reachable from output, loss or objective; BACKWARD: reachable from
// the grads and not forward; UPDATE: reachable only from the stores; NONE: dead.
typedef enum { IR_PART_NONE, IR_PART_FORWARD, IR_PART_BACKWARD, IR_PART_UPDATE } IrPart;
// n_nodes bytes (IrPart), allocated in a.
uint8_t *ir_classify_nodes(const Model *m, Arena *a);
// FLOPs of one evaluation of node id (one sample for a per-sample node):
// ir_op_info[].flops per output element; matmul and convolutions 2 per
// multiply-add; reductions per input element (docs/autodiff.md).
double ir_node_flops(const Graph *g, NodeId id);

// dot.c: `--emit=dot`: forward, backward and update nodes in three colours.
void ir_print_dot(const Model *m, FILE *out);

// check.c: `nnc check`: symbolic gradient (interpreter, double) against central
// finite differences, and pruned against unpruned. Prints a table per
// parameter; returns 0 when within tolerance, 1 otherwise.
int ir_check_gradients(NnCtx *c, const Model *forward, FILE *out, uint64_t seed);

#endif
