// test_cg_plan.c: the per-kernel plan: fusion, products written through their
// epilogue, gradients and updates written in place, the scratch arena.
#include "autodiff.h"
#include "cg_internal.h"
#include "test_cg_util.h"

static const char *dense_src =
    "model d { input x[64]; target y[10];\n"
    "h = dense(x, 32, relu); z = dense(h, 10);\n"
    "output softmax(z); loss softmax_cross_entropy(z, y); train sgd(lr = 0.1, momentum = 0.9); }";

// The plan of the model as cg_compile makes it (with the fused train step, -O2).
// The fused copy keeps every id of t->m.
static CgPlan plan_of(CgT *t) {
    CgPlan p;
    cg_plan(&t->c.arena, ir_fuse_update(&t->c.arena, t->m), 2, &p);
    return p;
}

Test(cg_plan, dense_products_fuse_bias_and_activation) {
    CgT t;
    cgt_build_as(&t, dense_src, EMIT_LLVM, "m.ll");
    CgPlan p = plan_of(&t);
    const CgKPlan *k = &p.k[CG_K_PREDICT];
    int n_mm = 0;
    for (NodeId id = 1; id < t.m->g->n_nodes; id++)
        if (k->storage[id] && t.m->g->nodes[id].op == IR_MATMUL) {
            cr_assert_eq(k->storage[id], CG_ST_INLINE, "W @ x %u should be computed in its epilogue", id);
            n_mm++;
        }
    cr_assert_eq(n_mm, 2);
    cr_assert_eq(k->storage[t.m->output], CG_ST_DEST, "the output goes straight to out[]");
    cgt_free(&t);
}

Test(cg_plan, gradients_in_place_and_outer_products_absorbed) {
    CgT t;
    cgt_build_as(&t, dense_src, EMIT_LLVM, "m.ll");
    CgPlan p = plan_of(&t);
    const CgKPlan *k = &p.k[CG_K_GRAD];
    for (uint32_t i = 0; i < t.m->n_params; i++) {
        NodeId g = t.m->grads[i];
        cr_assert_eq(k->storage[g], CG_ST_DEST, "grad of %s", t.m->params[i].name);
        cr_assert_eq(k->dest_kind[g], CG_DEST_GRAD);
        cr_assert_eq(k->dest_off[g], t.m->params[i].offset);
    }
    for (NodeId id = 1; id < t.m->g->n_nodes; id++)
        if (k->storage[id] && t.m->g->nodes[id].op == IR_OUTER)
            cr_assert_eq(k->storage[id], CG_ST_ABSORBED, "OUTER %u should be one GEMM with its BATCH_SUM", id);
    // Only a few invariant scalars (the objective) need scratch: the gradients are written in place.
    cr_assert_leq(k->fixed, 4 * 64, "fixed %zu bytes", k->fixed);
    cgt_free(&t);
}

Test(cg_plan, optimiser_updates_in_place) {
    CgT t;
    cgt_build_as(&t, dense_src, EMIT_LLVM, "m.ll");
    CgPlan p = plan_of(&t);
    const CgKPlan *k = &p.k[CG_K_APPLY];
    cr_assert_eq(t.m->n_stores, 2 * t.m->n_params);   // momentum buffer and parameter
    for (uint32_t s = 0; s < t.m->n_stores; s++)
        cr_assert(k->store_direct[s], "store %u should write its destination in place", s);
    cr_assert_eq(k->fixed, 0);
    cgt_free(&t);
}

Test(cg_plan, per_sample_buffers_reuse_memory) {
    // A chain of 8 layers: only a few activations are live at once in predict.
    CgT t;
    cgt_build_as(&t, "model deep { input x[64]; target y[64];\n"
                     "h1 = dense(x, 64, sigmoid); h2 = dense(h1, 64, sigmoid); h3 = dense(h2, 64, sigmoid);\n"
                     "h4 = dense(h3, 64, sigmoid); h5 = dense(h4, 64, sigmoid); h6 = dense(h5, 64, sigmoid);\n"
                     "h7 = dense(h6, 64, sigmoid); o = dense(h7, 64);\n"
                     "output o; loss mse(o, y); train sgd(lr = 0.1); }", EMIT_LLVM, "m.ll");
    CgPlan p = plan_of(&t);
    cr_assert_leq(p.k[CG_K_PREDICT].per_sample, 2 * 64 * sizeof(float));
    // grad keeps every activation for the backward pass: more, but not one buffer per node.
    cr_assert_geq(p.k[CG_K_GRAD].per_sample, 7 * 64 * sizeof(float));
    cr_assert_leq(p.k[CG_K_GRAD].per_sample, 10 * 64 * sizeof(float));
    cgt_free(&t);
}

// The train kernel: each weight's dW = BATCH_SUM(OUTER) runs inside its update
// group (no gradient buffer written then read again), and every update is
// written in place.
Test(cg_plan, train_kernel_computes_dw_inside_the_update) {
    CgT t;
    cgt_build_as(&t, dense_src, EMIT_LLVM, "m.ll");
    Model *fm = ir_fuse_update(&t.c.arena, t.m);
    CgPlan p;
    cg_plan(&t.c.arena, fm, 2, &p);
    cr_assert(p.has_train);
    const CgKPlan *k = &p.k[CG_K_TRAIN];
    int deferred = 0;
    for (NodeId id = 1; id < fm->g->n_nodes; id++)
        if (k->is_deferred[id]) {
            cr_assert_eq(fm->g->nodes[id].op, IR_BATCH_SUM);
            deferred++;
        }
    cr_assert_eq(deferred, 2, "dW of both layers");
    for (uint32_t s = 0; s < fm->n_stores; s++)
        cr_assert(k->store_direct[s], "store %u in place", s);
    // -O1: the same kernel, one loop per node.
    cg_plan(&t.c.arena, fm, 1, &p);
    for (NodeId id = 1; id < fm->g->n_nodes; id++)
        cr_assert(!p.k[CG_K_TRAIN].is_deferred[id]);
    cgt_free(&t);
}
