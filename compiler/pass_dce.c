// pass_dce.c: dead-code elimination.
//
// Guarantees: afterwards the graph holds exactly the nodes reachable from the
// model's roots, in the same relative order (still topological), and every
// NodeId the Model holds is remapped. The roots are what a later stage reads:
// output, loss, objective, grads, store values, and the leaves codegen binds
// by name (input, target, every parameter's PARAM node).
#include "autodiff.h"

static void mark(bool *live, NodeId id) {
    if (id)
        live[id] = true;
}

bool *ir_live_mask(const Model *m) {
    const Graph *g = m->g;
    bool *live = nn_alloc_array(g->arena, g->n_nodes, sizeof(bool));
    mark(live, m->input);
    mark(live, m->target);
    mark(live, m->output);
    mark(live, m->loss);
    mark(live, m->objective);
    for (uint32_t i = 0; i < m->n_params; i++) {
        mark(live, m->params[i].node);
        if (m->grads)
            mark(live, m->grads[i]);
    }
    for (uint32_t i = 0; i < m->n_stores; i++)
        mark(live, m->stores[i].value);
    // Users have larger ids than their operands: one backward loop marks all.
    for (NodeId id = g->n_nodes - 1; id > 0; id--)
        if (live[id])
            for (int k = 0; k < g->nodes[id].n_args; k++)
                live[g->nodes[id].arg[k]] = true;
    return live;
}

uint32_t ir_count_live(const Model *m) {
    bool *live = ir_live_mask(m);
    uint32_t n = 0;
    for (NodeId id = 1; id < m->g->n_nodes; id++)
        n += live[id];
    return n;
}

void ir_pass_dce(Model *m) {
    ir_rebuild(m, ir_live_mask(m), NULL, NULL);
}
