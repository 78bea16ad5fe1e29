// pass_util.c: the rebuild shared by the rewriting passes (dce, simplify).
//
// A pass never edits nodes in place: hash-consing keys on a node's operands,
// so changing one would leave the table stale. Instead it copies the graph into
// a new one in one forward loop over the old ids (operands come first, so they
// are already copied), with an old-to-new id map. Going through ir_node() again
// re-runs hash-consing: nodes that a rewrite made equal become one node.
//
// Invariant checked here for every pass: a node's replacement has the same
// shape and the same batch kind (IR_F_BATCH) as the node. A rewrite may make a
// value simpler, never change what it is.
#include "autodiff.h"

// The new id of an id the Model holds (0 stays 0: "none").
static NodeId remap(const NodeId *map, NodeId id) {
    if (!id)
        return 0;
    NN_ASSERT(map[id] != 0);            // a root was dropped: the keep mask is wrong
    return map[id];
}

void ir_rebuild(Model *m, const bool *keep, IrRewrite rewrite, void *ctx) {
    Graph *old = m->g;
    Graph *g = ir_graph_new(old->arena);
    NodeId *map = nn_alloc_array(old->arena, old->n_nodes, sizeof(NodeId));

    for (NodeId id = 1; id < old->n_nodes; id++) {
        if (keep && !keep[id])
            continue;
        Node n = old->nodes[id];        // a copy, with operands renamed below
        for (int k = 0; k < n.n_args; k++) {
            NN_ASSERT(map[n.arg[k]] != 0);  // a kept node's operands are kept
            n.arg[k] = map[n.arg[k]];
        }
        NodeId r = rewrite ? rewrite(g, &n, ctx) : ir_node(g, n);
        NN_ASSERT(r > 0 && r < g->n_nodes);
        NN_ASSERT(ir_shape_eq(g->nodes[r].shape, old->nodes[id].shape));
        NN_ASSERT((g->nodes[r].flags & IR_F_BATCH) == (old->nodes[id].flags & IR_F_BATCH));
        map[id] = r;
    }

    m->input = remap(map, m->input);
    m->target = remap(map, m->target);
    m->output = remap(map, m->output);
    m->loss = remap(map, m->loss);
    m->objective = remap(map, m->objective);
    for (uint32_t i = 0; i < m->n_params; i++)
        m->params[i].node = remap(map, m->params[i].node);
    if (m->grads)
        for (uint32_t i = 0; i < m->n_params; i++)
            m->grads[i] = remap(map, m->grads[i]);
    for (uint32_t i = 0; i < m->n_stores; i++) {
        m->stores[i].value = remap(map, m->stores[i].value);
        if (m->train_values)
            m->train_values[i] = remap(map, m->train_values[i]);
    }
    m->g = g;
}
