// grad_pipeline.c: the train step as a flat list of passes (QBE's main.c).
//
// Input: the forward Model from sema. Output: the same Model extended with
// m->grads (grad), pruned (simplify, dce), with the optimiser lowered into
// update stores (optim) and everything unreachable dropped (dce). Each entry
// is one pass in its own file; `--dump-after=NAME` prints the train-step IR
// after every pass of that name, and -fno-prune (c->opt.no_prune) skips the
// pruning passes so the two can be compared (`nnc check`, `--stats`).
// Sharing (hash-consing in ir_node) is not a pass: it cannot be turned off.
#include <string.h>

#include "autodiff.h"

typedef struct Step {
    IrPass pass;
    bool   prunes;     // skipped by -fno-prune
} Step;

static const Step pipeline[] = {
    { { "grad", ir_differentiate }, false },
    { { "simplify", ir_pass_simplify }, true },
    { { "dce", ir_pass_dce }, true },
    { { "optim", ir_lower_optimizer }, false },
    { { "simplify", ir_pass_simplify }, true },
    { { "dce", ir_pass_dce }, true },
};

// What every pass must leave true (cheap; run after each pass).
static void check_model(const Model *m) {
    const Graph *g = m->g;
    for (NodeId id = 1; id < g->n_nodes; id++)
        for (int k = 0; k < g->nodes[id].n_args; k++)
            NN_ASSERT(g->nodes[id].arg[k] > 0 && g->nodes[id].arg[k] < id);
    if (m->grads)
        for (uint32_t i = 0; i < m->n_params; i++) {
            const Node *d = &g->nodes[m->grads[i]];
            NN_ASSERT(ir_shape_eq(d->shape, m->params[i].shape) && !(d->flags & IR_F_BATCH));
        }
    for (uint32_t i = 0; i < m->n_stores; i++)
        NN_ASSERT(!(g->nodes[m->stores[i].value].flags & IR_F_BATCH));
}

bool ir_build_train_step(NnCtx *c, Model *m) {
    for (size_t i = 0; i < NN_COUNTOF(pipeline); i++) {
        const Step *s = &pipeline[i];
        if (s->prunes && c->opt.no_prune)
            continue;
        s->pass.run(m);
        check_model(m);
        if (c->opt.dump_after && strcmp(c->opt.dump_after, s->pass.name) == 0)
            ir_print(m, stderr, true);
    }
    return true;
}

bool ir_is_pipeline_pass(const char *name) {
    for (size_t i = 0; i < NN_COUNTOF(pipeline); i++)
        if (strcmp(pipeline[i].pass.name, name) == 0)
            return true;
    return false;
}
