// optim_fuse.c: the optimiser's update written on the gradients themselves.
//
// optim.c writes the update in terms of GRAD_IN leaves, so that apply() can
// take any gradient (ABI.md: grad then apply, for data-parallel training).
// train_step needs no such seam: computed in one kernel, the gradient of a
// weight can go straight into its update (dW and `v = 0.9 v + dW; W -= lr v`
// in one pass, the gradient never stored). ir_fuse_update builds that form in
// a copy of the model: one forward loop over the ids (operands first), each
// node re-made through ir_node with GRAD_IN i replaced by grads[i].
//
// The copy has its own graph (the original's hash table must not learn ids it
// does not have); its nodes up to the original's count are the original's,
// same ids, so plans made on the copy describe every kernel.
#include <string.h>

#include "autodiff.h"

static Graph *copy_graph(Arena *a, const Graph *old) {
    Graph *g = ir_graph_new(a);
    for (NodeId id = 1; id < old->n_nodes; id++) {
        NodeId r = ir_node(g, old->nodes[id]);
        NN_ASSERT(r == id);   // a hash-consed graph has no duplicates to merge
    }
    return g;
}

Model *ir_fuse_update(Arena *a, const Model *m) {
    Model *f = nn_alloc(a, sizeof *f);
    *f = *m;
    f->g = copy_graph(a, m->g);
    Graph *g = f->g;
    uint32_t n = g->n_nodes;
    NodeId *sub = nn_alloc_array(a, n, sizeof(NodeId));
    for (NodeId id = 1; id < n; id++) {
        Node nd = g->nodes[id];
        if (nd.op == IR_GRAD_IN) {
            uint32_t i = (uint32_t)nd.imm;
            NodeId gi = m->grads ? m->grads[i] : 0;
            sub[id] = gi ? gi : ir_const(g, 0, nd.shape, nd.at);
            continue;
        }
        bool changed = false;
        for (int k = 0; k < nd.n_args; k++) {
            changed |= sub[nd.arg[k]] != nd.arg[k];
            nd.arg[k] = sub[nd.arg[k]];
        }
        sub[id] = changed ? ir_node(g, nd) : id;
    }
    f->train_values = nn_alloc_array(a, m->n_stores + 1, sizeof(NodeId));
    for (uint32_t s = 0; s < m->n_stores; s++)
        f->train_values[s] = sub[m->stores[s].value];
    return f;
}
