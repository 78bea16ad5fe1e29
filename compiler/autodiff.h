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

// optim.c: LANGUAGE.md §4/§7 optimisers as IR: fills m->states and m->stores,
// written in terms of GRAD_IN leaves (so apply() and train_step share it).
void ir_lower_optimizer(Model *m);

// The whole pipeline: differentiate, prune (unless no_prune), lower the
// optimiser, dead-code elimination; prints the IR after a pass named by
// c->opt.dump_after. Returns false on an internal failure reported to c->diag.
bool ir_build_train_step(NnCtx *c, Model *m);

// stats.c: `--stats`: per-sample node counts and FLOPs (forward, naive backward
// counted as tree-style symbolic differentiation would produce it, pruned
// backward), ratios, kept forward values and their bytes.
void ir_print_stats(NnCtx *c, const Model *forward, const Model *train, FILE *out);

// dot.c: `--emit=dot`: forward, backward and update nodes in three colours.
void ir_print_dot(const Model *m, FILE *out);

// check.c: `nnc check`: symbolic gradient (interpreter, double) against central
// finite differences, and pruned against unpruned. Prints a table per
// parameter; returns 0 when within tolerance, 1 otherwise.
int ir_check_gradients(NnCtx *c, const Model *forward, FILE *out, uint64_t seed);

#endif
