// Unit tests of the IR core (ir.c): the op table, hash-consing, flags, shapes
// and the shape rules of the convenience constructors.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include "ir_test.h"

static Arena arena;
static Graph *g;
static const SrcRange at0 = { 0, 0, 0 };

static void setup(void) {
    memset(&arena, 0, sizeof arena);
    g = ir_graph_new(&arena);
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(ir, .init = setup, .fini = teardown);

static NodeId param(int index, Shape s) {
    return ir_leaf(g, IR_PARAM, index, s, at0);
}

static NodeId input(Shape s) {
    return ir_leaf(g, IR_INPUT, 0, s, at0);
}

static void assert_shape(NodeId id, const char *expected) {
    char buf[64];
    ir_shape_str(g->nodes[id].shape, buf, sizeof buf);
    cr_assert_str_eq(buf, expected);
}

Test(ir, op_table_has_every_op) {
    for (int op = 0; op < IR_N_OPS; op++) {
        const IrOpInfo *info = &ir_op_info[op];
        cr_assert(info->name && info->name[0], "op %d has no name", op);
        for (const char *p = info->name; *p; p++)
            cr_assert(!(*p >= 'A' && *p <= 'Z'), "op name '%s' is not lowercase", info->name);
        cr_assert_leq(info->arity, 3);
        if (info->kind == IR_KIND_LEAF)
            cr_assert_eq(info->arity, 0, "%s", info->name);
        if (info->kind == IR_KIND_UNARY)
            cr_assert_eq(info->arity, 1, "%s", info->name);
        if (info->kind == IR_KIND_BINARY)
            cr_assert_eq(info->arity, 2, "%s", info->name);
    }
    cr_assert_str_eq(ir_op_info[IR_MATMUL].name, "matmul");
    cr_assert_str_eq(ir_op_info[IR_LOG_SOFTMAX].name, "log_softmax");
    cr_assert_str_eq(ir_op_info[IR_CONV2D_DX].name, "conv2d_dx");
    cr_assert(ir_op_info[IR_ADD].commutative);
    cr_assert(!ir_op_info[IR_SUB].commutative);
    cr_assert(!ir_op_info[IR_MAX].commutative);
}

Test(ir, new_graph_starts_at_id_one) {
    cr_assert_eq(g->n_nodes, 1);
    NodeId c = ir_scalar(g, 1.5);
    cr_assert_eq(c, 1);
    cr_assert_eq(g->n_nodes, 2);
    cr_assert_eq(g->nodes[c].op, IR_CONST);
    cr_assert_eq(g->nodes[c].imm, 1.5);
}

Test(ir, hash_consing_returns_the_same_id) {
    NodeId x = input(ir_shape1(3));
    NodeId w = param(0, ir_shape2(2, 3));
    NodeId a = ir_matmul(g, w, x, at0);
    uint32_t n = g->n_nodes;
    NodeId b = ir_matmul(g, w, x, nn_range(5, 9));
    cr_assert_eq(a, b);
    cr_assert_eq(g->n_nodes, n);
    cr_assert_eq(g->nodes[a].at.begin, 0, "a shared node keeps the first range");
    cr_assert_eq(ir_scalar(g, 2.0), ir_scalar(g, 2.0));
    cr_assert_eq(ir_unary(g, IR_EXP, a, at0), ir_unary(g, IR_EXP, a, at0));
}

Test(ir, different_attributes_are_different_nodes) {
    NodeId c1 = ir_scalar(g, 1.0);
    NodeId c2 = ir_const(g, 1.0, ir_shape1(1), at0);
    cr_assert_neq(c1, c2, "shape is in the key");
    NodeId p0 = param(0, ir_shape1(3));
    NodeId p1 = param(1, ir_shape1(3));
    cr_assert_neq(p0, p1, "imm is in the key");
    NodeId l1 = ir_leaky_relu(g, p0, 0.01, at0);
    NodeId l2 = ir_leaky_relu(g, p0, 0.02, at0);
    cr_assert_neq(l1, l2);
    NodeId x = input(shape_n(3, 1, 6, 6));
    NodeId m1 = ir_pool2d(g, IR_MAXPOOL2D, x, 2, 2, at0);
    NodeId m2 = ir_pool2d(g, IR_MAXPOOL2D, x, 2, 1, at0);
    cr_assert_neq(m1, m2, "attr is in the key");
    cr_assert_neq(ir_unary(g, IR_EXP, p0, at0), ir_unary(g, IR_LOG, p0, at0));
}

Test(ir, commutative_operands_are_ordered) {
    NodeId a = param(0, ir_shape1(3));
    NodeId b = param(1, ir_shape1(3));
    NodeId s1 = ir_binary(g, IR_ADD, b, a, at0);
    NodeId s2 = ir_binary(g, IR_ADD, a, b, at0);
    cr_assert_eq(s1, s2);
    cr_assert_eq(g->nodes[s1].arg[0], a);
    cr_assert_eq(g->nodes[s1].arg[1], b);
    cr_assert_eq(ir_binary(g, IR_MUL, b, a, at0), ir_binary(g, IR_MUL, a, b, at0));
    NodeId d1 = ir_binary(g, IR_SUB, b, a, at0);
    NodeId d2 = ir_binary(g, IR_SUB, a, b, at0);
    cr_assert_neq(d1, d2);
    cr_assert_eq(g->nodes[d1].arg[0], b);
    cr_assert_neq(ir_binary(g, IR_MAX, a, b, at0), ir_binary(g, IR_MAX, b, a, at0));
}

Test(ir, negative_zero_and_zero_are_distinct) {
    NodeId z = ir_scalar(g, 0.0);
    NodeId nz = ir_scalar(g, -0.0);
    cr_assert_neq(z, nz);
    cr_assert(signbit(g->nodes[nz].imm));
    cr_assert_eq(ir_scalar(g, -0.0), nz);
}

Test(ir, nan_constant_is_itself) {
    NodeId a = ir_scalar(g, NAN);
    NodeId b = ir_scalar(g, NAN);
    cr_assert_eq(a, b);
    cr_assert(isnan(g->nodes[a].imm));
}

Test(ir, batch_flag_follows_the_input) {
    NodeId x = input(ir_shape1(2));
    NodeId y = ir_leaf(g, IR_TARGET, 0, ir_shape1(2), at0);
    NodeId w = param(0, ir_shape2(2, 2));
    NodeId c = ir_scalar(g, 0.5);
    cr_assert(g->nodes[x].flags & IR_F_BATCH);
    cr_assert(g->nodes[y].flags & IR_F_BATCH);
    cr_assert_not(g->nodes[w].flags & IR_F_BATCH);
    cr_assert_not(g->nodes[c].flags & IR_F_BATCH);
    NodeId wc = ir_binary(g, IR_MUL, w, c, at0);
    cr_assert_not(g->nodes[wc].flags & IR_F_BATCH);
    NodeId h = ir_matmul(g, wc, x, at0);
    cr_assert(g->nodes[h].flags & IR_F_BATCH);
    NodeId d = ir_binary(g, IR_SUB, y, ir_unary(g, IR_SIGMOID, h, at0), at0);
    NodeId l = ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, d, at0), at0);
    cr_assert(g->nodes[l].flags & IR_F_BATCH);
    NodeId obj = ir_reduce(g, IR_BATCH_SUM, l, at0);
    cr_assert_not(g->nodes[obj].flags & IR_F_BATCH);
    NodeId scaled = ir_binary(g, IR_MUL, obj, ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at0), at0);
    cr_assert_not(g->nodes[scaled].flags & IR_F_BATCH);
}

Test(ir, flags_from_the_caller_are_ignored) {
    NodeId p = ir_node(g, (Node){ .op = IR_PARAM, .flags = IR_F_BATCH, .shape = ir_shape1(2) });
    cr_assert_eq(g->nodes[p].flags, 0);
}

Test(ir, operands_precede_users_after_growth) {
    // Enough nodes to grow nodes[] and the hash table several times.
    NodeId prev = param(0, ir_shape1(4));
    NodeId first[1000];
    for (int i = 0; i < 1000; i++) {
        prev = ir_binary(g, IR_ADD, prev, ir_scalar(g, i), at0);
        first[i] = prev;
    }
    cr_assert_eq(g->n_nodes, 1 + 1 + 2 * 1000);
    for (NodeId id = 1; id < g->n_nodes; id++)
        for (int k = 0; k < g->nodes[id].n_args; k++)
            cr_assert_lt(g->nodes[id].arg[k], id);
    // Rebuilding the chain finds every node again.
    prev = param(0, ir_shape1(4));
    for (int i = 0; i < 1000; i++) {
        prev = ir_binary(g, IR_ADD, ir_scalar(g, i), prev, at0);
        cr_assert_eq(prev, first[i]);
    }
    cr_assert_eq(g->n_nodes, 1 + 1 + 2 * 1000);
    ir_verify(g);
}

Test(ir, numel_and_shape_str) {
    char buf[64];
    cr_assert_eq(ir_numel(ir_scalar_shape()), 1);
    cr_assert_eq(ir_numel(ir_shape2(128, 784)), 128 * 784);
    cr_assert_str_eq(ir_shape_str(ir_shape2(128, 784), buf, sizeof buf), "[128,784]");
    cr_assert_str_eq(ir_shape_str(ir_scalar_shape(), buf, sizeof buf), "[]");
    cr_assert_str_eq(ir_shape_str(shape_n(4, 1, 2, 3, 4), buf, sizeof buf), "[1,2,3,4]");
    ir_shape_str(ir_shape2(128, 784), buf, 5);
    cr_assert_str_eq(buf, "[128", "truncated, NUL-terminated");
}

Test(ir, shape_eq) {
    cr_assert(ir_shape_eq(ir_shape1(3), ir_shape1(3)));
    cr_assert_not(ir_shape_eq(ir_shape1(3), ir_shape2(3, 1)));
    cr_assert_not(ir_shape_eq(ir_shape1(3), ir_shape1(4)));
    cr_assert(ir_shape_eq(ir_scalar_shape(), ir_scalar_shape()));
}

static const char *bcast(Shape a, Shape b) {
    static char buf[64];
    Shape r;
    if (!ir_broadcast_shape(a, b, &r))
        return "error";
    return ir_shape_str(r, buf, sizeof buf);
}

Test(ir, broadcasting_follows_numpy) {
    cr_assert_str_eq(bcast(ir_shape1(3), ir_shape1(3)), "[3]");
    cr_assert_str_eq(bcast(ir_scalar_shape(), ir_shape2(2, 3)), "[2,3]");
    cr_assert_str_eq(bcast(ir_shape2(2, 3), ir_scalar_shape()), "[2,3]");
    cr_assert_str_eq(bcast(ir_shape2(2, 3), ir_shape1(3)), "[2,3]");
    cr_assert_str_eq(bcast(ir_shape2(2, 1), ir_shape1(3)), "[2,3]");
    cr_assert_str_eq(bcast(ir_shape2(1, 3), ir_shape2(4, 1)), "[4,3]");
    cr_assert_str_eq(bcast(shape_n(3, 5, 1, 4), ir_shape2(3, 1)), "[5,3,4]");
    cr_assert_str_eq(bcast(ir_shape1(1), ir_scalar_shape()), "[1]");
}

Test(ir, broadcasting_errors) {
    cr_assert_str_eq(bcast(ir_shape1(3), ir_shape1(4)), "error");
    cr_assert_str_eq(bcast(ir_shape2(2, 3), ir_shape1(2)), "error");
    cr_assert_str_eq(bcast(ir_shape2(2, 3), ir_shape2(3, 3)), "error");
    cr_assert_not(ir_broadcast_shape(ir_shape1(3), ir_shape1(4), NULL));
}

Test(ir, binary_shape_is_broadcast) {
    NodeId a = param(0, ir_shape2(2, 3));
    NodeId b = param(1, ir_shape1(3));
    assert_shape(ir_binary(g, IR_ADD, a, b, at0), "[2,3]");
    assert_shape(ir_binary(g, IR_POW, b, ir_scalar(g, 2), at0), "[3]");
}

Test(ir, matmul_shapes) {
    NodeId m = param(0, ir_shape2(4, 3));
    NodeId n = param(1, ir_shape2(3, 5));
    NodeId v3 = param(2, ir_shape1(3));
    NodeId v4 = param(3, ir_shape1(4));
    assert_shape(ir_matmul(g, m, v3, at0), "[4]");
    assert_shape(ir_matmul(g, m, n, at0), "[4,5]");
    assert_shape(ir_matmul(g, v4, m, at0), "[3]");
    assert_shape(ir_matmul(g, v3, v3, at0), "[]");
}

Test(ir, shape_ops) {
    NodeId a = param(0, ir_shape1(3));
    NodeId b = param(1, ir_shape1(4));
    NodeId m = param(2, ir_shape2(3, 4));
    assert_shape(ir_outer(g, a, b, at0), "[3,4]");
    assert_shape(ir_transpose(g, m, at0), "[4,3]");
    assert_shape(ir_reshape(g, m, ir_shape1(12), at0), "[12]");
    assert_shape(ir_reshape(g, m, shape_n(3, 2, 2, 3), at0), "[2,2,3]");
    assert_shape(ir_broadcast(g, b, ir_shape2(3, 4), at0), "[3,4]");
    assert_shape(ir_broadcast(g, ir_scalar(g, 1), ir_shape2(3, 4), at0), "[3,4]");
    assert_shape(ir_reduce_to(g, m, ir_shape1(4), at0), "[4]");
    assert_shape(ir_reduce_to(g, m, ir_shape2(3, 1), at0), "[3,1]");
    assert_shape(ir_reduce_to(g, m, ir_scalar_shape(), at0), "[]");
}

Test(ir, reduction_shapes) {
    NodeId m = param(0, ir_shape2(3, 4));
    assert_shape(ir_reduce(g, IR_SUM, m, at0), "[]");
    assert_shape(ir_reduce(g, IR_SUM_LAST, m, at0), "[3,1]");
    assert_shape(ir_reduce(g, IR_SUM_LAST, param(1, ir_shape1(5)), at0), "[1]");
    assert_shape(ir_reduce(g, IR_LOGSUMEXP, m, at0), "[]");
    assert_shape(ir_reduce(g, IR_BATCH_SUM, m, at0), "[3,4]");
    assert_shape(ir_softmax(g, IR_SOFTMAX, m, at0), "[3,4]");
    assert_shape(ir_softmax(g, IR_LOG_SOFTMAX, m, at0), "[3,4]");
}

Test(ir, conv_and_pool_shapes) {
    NodeId x = input(shape_n(3, 3, 28, 28));
    NodeId w = param(0, shape_n(4, 8, 3, 5, 5));
    NodeId c = ir_conv2d(g, x, w, 1, 0, at0);
    assert_shape(c, "[8,24,24]");
    cr_assert_eq(g->nodes[c].attr[0], 1);
    cr_assert_eq(g->nodes[c].attr[1], 0);
    assert_shape(ir_conv2d(g, x, w, 2, 2, at0), "[8,14,14]");    // (28+4-5)/2+1 = 14
    assert_shape(ir_conv2d(g, x, w, 3, 1, at0), "[8,9,9]");      // (28+2-5)/3+1 = 9
    NodeId p = ir_pool2d(g, IR_MAXPOOL2D, c, 2, 2, at0);
    assert_shape(p, "[8,12,12]");
    cr_assert_eq(g->nodes[p].attr[0], 2, "attr[0] is the stride");
    cr_assert_eq(g->nodes[p].attr[1], 2, "attr[1] is the size");
    assert_shape(ir_pool2d(g, IR_AVGPOOL2D, c, 3, 2, at0), "[8,11,11]");  // (24-3)/2+1 = 11
    assert_shape(ir_pool2d(g, IR_MAXPOOL2D, x, 3, 3, at0), "[3,9,9]");    // windows that do not fit drop
}

Test(ir, node_shaped_keeps_the_given_shape) {
    NodeId x = input(shape_n(3, 1, 5, 5));
    NodeId w = param(0, shape_n(4, 2, 1, 3, 3));
    NodeId c = ir_conv2d(g, x, w, 1, 1, at0);
    NodeId dx = ir_node_shaped(g, IR_CONV2D_DX, c, w, shape_n(3, 1, 5, 5), 1, 1, at0);
    assert_shape(dx, "[1,5,5]");
    cr_assert_eq(g->nodes[dx].n_args, 2);
    NodeId ap = ir_pool2d(g, IR_AVGPOOL2D, x, 2, 2, at0);
    NodeId adx = ir_node_shaped(g, IR_AVGPOOL2D_DX, ap, 0, shape_n(3, 1, 5, 5), 2, 2, at0);
    cr_assert_eq(g->nodes[adx].n_args, 1);
    assert_shape(adx, "[1,5,5]");
}

// ---- ir_verify

Test(ir, verify_accepts_constructed_graphs) {
    NodeId x = input(shape_n(3, 1, 6, 6));
    NodeId w = param(0, shape_n(4, 2, 1, 3, 3));
    NodeId c = ir_conv2d(g, x, w, 1, 1, at0);
    NodeId p = ir_pool2d(g, IR_MAXPOOL2D, c, 2, 2, at0);
    NodeId f = ir_reshape(g, p, ir_shape1(18), at0);
    NodeId W = param(1, ir_shape2(4, 18));
    NodeId z = ir_softmax(g, IR_LOG_SOFTMAX, ir_matmul(g, W, f, at0), at0);
    NodeId l = ir_reduce(g, IR_BATCH_SUM, ir_reduce(g, IR_SUM, z, at0), at0);
    ir_node_shaped(g, IR_CONV2D_DX, c, w, g->nodes[x].shape, 1, 1, at0);
    ir_node_shaped(g, IR_CONV2D_DW, c, x, g->nodes[w].shape, 1, 1, at0);
    ir_node_shaped(g, IR_MAXPOOL2D_DX, c, p, g->nodes[c].shape, 2, 2, at0);
    ir_node_shaped(g, IR_AVGPOOL2D_DX, ir_pool2d(g, IR_AVGPOOL2D, c, 2, 2, at0), 0, g->nodes[c].shape, 2, 2, at0);
    ir_reduce_to(g, ir_broadcast(g, l, ir_shape2(2, 2), at0), ir_shape1(1), at0);
    ir_outer(g, f, f, at0);
    ir_transpose(g, W, at0);
    ir_verify(g);
    cr_assert_gt(g->n_nodes, 15);
}

Test(ir, verify_catches_a_node_edited_in_place, .signal = SIGABRT) {
    NodeId a = param(0, ir_shape1(3));
    NodeId e = ir_unary(g, IR_EXP, a, at0);
    ir_verify(g);
    g->nodes[e].op = IR_LOG;   // passes must rebuild through ir_node, never edit
    ir_verify(g);
}

Test(ir, verify_catches_a_wrong_shape, .signal = SIGABRT) {
    NodeId a = param(0, ir_shape1(3));
    ir_node(g, (Node){ .op = IR_EXP, .n_args = 1, .arg = { a }, .shape = ir_shape1(4) });
    ir_verify(g);
}

Test(ir, verify_catches_a_wrong_matmul_shape, .signal = SIGABRT) {
    NodeId a = param(0, ir_shape2(2, 3));
    NodeId b = param(1, ir_shape1(3));
    ir_node(g, (Node){ .op = IR_MATMUL, .n_args = 2, .arg = { a, b }, .shape = ir_shape1(3) });
    ir_verify(g);
}

Test(ir, node_asserts_operands_exist, .signal = SIGABRT) {
    NodeId a = param(0, ir_shape1(3));
    ir_node(g, (Node){ .op = IR_EXP, .n_args = 1, .arg = { a + 5 }, .shape = ir_shape1(3) });
}

Test(ir, node_asserts_the_arity, .signal = SIGABRT) {
    NodeId a = param(0, ir_shape1(3));
    ir_node(g, (Node){ .op = IR_ADD, .n_args = 1, .arg = { a }, .shape = ir_shape1(3) });
}
