// Unit tests of the IR printer (ir_print.c): the exact text of docs/ir.md.
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir_test.h"

static Arena arena;
static Model *m;
static Graph *g;
static const SrcRange at0 = { 0, 0, 0 };

static void setup(void) {
    memset(&arena, 0, sizeof arena);
    m = NN_NEW(&arena, Model);
    m->name = "seed";
    m->input_name = "x";
    m->target_name = "y";
    m->g = g = ir_graph_new(&arena);
    m->params = nn_alloc_array(&arena, 8, sizeof(IrParam));
    m->states = nn_alloc_array(&arena, 8, sizeof(IrState));
    m->stores = nn_alloc_array(&arena, 8, sizeof(IrStore));
    m->grads = nn_alloc_array(&arena, 8, sizeof(NodeId));
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(ir_print, .init = setup, .fini = teardown);

static NodeId add_param(const char *name, Shape s) { return ir_test_param(m, name, s); }

// The printed text, in the arena.
static char *print(bool train_step) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    ir_print(m, f, train_step);
    fclose(f);
    char *s = nn_strdup(&arena, buf);
    free(buf);
    return s;
}

// A one-layer version of the seed network, with a dead node in the middle.
static void build_small_network(void) {
    NodeId x = m->input = ir_leaf(g, IR_INPUT, 0, ir_shape1(2), at0);
    NodeId y = m->target = ir_leaf(g, IR_TARGET, 0, ir_shape1(2), at0);
    NodeId W = add_param("h.W", ir_shape2(2, 2));
    NodeId b = add_param("h.b", ir_shape1(2));
    ir_scalar(g, 42);   // dead: not printed, not numbered
    NodeId o = ir_unary(g, IR_SIGMOID, ir_binary(g, IR_ADD, ir_matmul(g, W, x, at0), b, at0), at0);
    m->output = o;
    NodeId d = ir_binary(g, IR_SUB, y, o, at0);
    m->loss = ir_binary(g, IR_MUL, ir_scalar(g, 0.5), ir_reduce(g, IR_SUM, ir_unary(g, IR_SQUARE, d, at0), at0), at0);
    NodeId inv = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at0);
    m->objective = ir_binary(g, IR_MUL, ir_reduce(g, IR_BATCH_SUM, m->loss, at0), inv, at0);
}

Test(ir_print, forward_model) {
    build_small_network();
    cr_assert_str_eq(print(false),
                     "model seed\n"
                     "%1 = input x : [2] batch\n"
                     "%2 = target y : [2] batch\n"
                     "%3 = param h.W : [2,2]\n"
                     "%4 = param h.b : [2]\n"
                     "%5 = matmul %3, %1 : [2] batch\n"
                     "%6 = add %4, %5 : [2] batch\n"
                     "%7 = sigmoid %6 : [2] batch\n"
                     "%8 = sub %2, %7 : [2] batch\n"
                     "%9 = square %8 : [2] batch\n"
                     "%10 = sum %9 : [] batch\n"
                     "%11 = const 0.5 : []\n"
                     "%12 = mul %10, %11 : [] batch\n"
                     "%13 = scalar_arg inv_batch : []\n"
                     "%14 = batch_sum %12 : []\n"
                     "%15 = mul %13, %14 : []\n"
                     "output %7\n"
                     "loss %12\n"
                     "objective %15\n");
}

Test(ir_print, printing_is_deterministic) {
    build_small_network();
    char *a = print(false), *b = print(false);
    cr_assert_str_eq(a, b);
    char *c = print(true), *d = print(true);
    cr_assert_str_eq(c, d);
}

Test(ir_print, train_step_adds_grads_states_and_stores) {
    build_small_network();
    // A hand-made "gradient" and an sgd-with-momentum update, enough to show the format.
    NodeId gW = ir_reduce(g, IR_BATCH_SUM, ir_outer(g, m->output, m->input, at0), at0);
    m->grads[0] = gW;
    m->grads[1] = 0;   // no gradient yet: no line
    m->states[0] = (IrState){ .name = "h.W.momentum", .shape = ir_shape2(2, 2), .param = 0 };
    m->n_states = 1;
    m->state_count = 4;
    NodeId buf = ir_leaf(g, IR_STATE, 0, ir_shape2(2, 2), at0);
    NodeId gin = ir_leaf(g, IR_GRAD_IN, 0, ir_shape2(2, 2), at0);
    NodeId nb = ir_binary(g, IR_ADD, ir_binary(g, IR_MUL, ir_scalar(g, 0.9), buf, at0), gin, at0);
    NodeId lr = ir_leaf(g, IR_SCALAR_ARG, IR_ARG_LR, ir_scalar_shape(), at0);
    NodeId nw = ir_binary(g, IR_SUB, m->params[0].node, ir_binary(g, IR_MUL, lr, nb, at0), at0);
    m->stores[0] = (IrStore){ .to_state = true, .index = 0, .value = nb };
    m->stores[1] = (IrStore){ .to_state = false, .index = 0, .value = nw };
    m->n_stores = 2;
    cr_assert_str_eq(print(true),
                     "model seed\n"
                     "%1 = input x : [2] batch\n"
                     "%2 = target y : [2] batch\n"
                     "%3 = param h.W : [2,2]\n"
                     "%4 = param h.b : [2]\n"
                     "%5 = matmul %3, %1 : [2] batch\n"
                     "%6 = add %4, %5 : [2] batch\n"
                     "%7 = sigmoid %6 : [2] batch\n"
                     "%8 = sub %2, %7 : [2] batch\n"
                     "%9 = square %8 : [2] batch\n"
                     "%10 = sum %9 : [] batch\n"
                     "%11 = const 0.5 : []\n"
                     "%12 = mul %10, %11 : [] batch\n"
                     "%13 = scalar_arg inv_batch : []\n"
                     "%14 = batch_sum %12 : []\n"
                     "%15 = mul %13, %14 : []\n"
                     "%16 = outer %7, %1 : [2,2] batch\n"
                     "%17 = batch_sum %16 : [2,2]\n"
                     "%18 = state h.W.momentum : [2,2]\n"
                     "%19 = grad_in h.W : [2,2]\n"
                     "%20 = const 0.9 : []\n"
                     "%21 = mul %18, %20 : [2,2]\n"
                     "%22 = add %19, %21 : [2,2]\n"
                     "%23 = scalar_arg lr : []\n"
                     "%24 = mul %22, %23 : [2,2]\n"
                     "%25 = sub %3, %24 : [2,2]\n"
                     "output %7\n"
                     "loss %12\n"
                     "objective %15\n"
                     "grad h.W = %17\n"
                     "state h.W.momentum : [2,2] of h.W\n"
                     "store h.W.momentum <- %22\n"
                     "store h.W <- %25\n");
    // Without train_step, only what the forward roots reach.
    char *fwd = print(false);
    cr_assert_null(strstr(fwd, "outer"), "got: %s", fwd);
    cr_assert_null(strstr(fwd, "store"), "got: %s", fwd);
}

Test(ir_print, constants_round_trip) {
    m->input_name = "x";
    NodeId x = m->input = ir_leaf(g, IR_INPUT, 0, ir_shape1(3), at0);
    NodeId s = x;
    const double vals[] = { 0.1, -0.0, 1e-8, 1.0 / 3, 2, INFINITY, -INFINITY };
    for (size_t i = 0; i < NN_COUNTOF(vals); i++)
        s = ir_binary(g, IR_ADD, s, ir_scalar(g, vals[i]), at0);
    NodeId big = ir_const(g, 123456789, ir_shape2(3, 1), at0);
    m->output = ir_binary(g, IR_MUL, s, big, at0);
    char *text = print(false);
    cr_assert(strstr(text, "= const 0.1 : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const -0 : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const 1e-08 : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const 0.3333333333333333 : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const 2 : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const inf : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const -inf : []\n"), "got: %s", text);
    cr_assert(strstr(text, "= const 123456789 : [3,1]\n"), "got: %s", text);
    cr_assert(strstr(text, ": [3,3] batch\noutput"), "got: %s", text);
}

Test(ir_print, attributes_of_conv_pool_and_leaky_relu) {
    m->input_name = "img";
    NodeId x = m->input = ir_leaf(g, IR_INPUT, 0, shape_n(3, 1, 8, 8), at0);
    NodeId W = add_param("c.W", shape_n(4, 2, 1, 3, 3));
    NodeId c = ir_conv2d(g, x, W, 2, 1, at0);
    NodeId p = ir_pool2d(g, IR_MAXPOOL2D, ir_leaky_relu(g, c, 0.01, at0), 2, 2, at0);
    NodeId a = ir_pool2d(g, IR_AVGPOOL2D, p, 2, 1, at0);
    m->output = ir_reshape(g, a, ir_shape1(2), at0);
    cr_assert_str_eq(print(false),
                     "model seed\n"
                     "%1 = input img : [1,8,8] batch\n"
                     "%2 = param c.W : [2,1,3,3]\n"
                     "%3 = conv2d %1, %2 stride=2 padding=1 : [2,4,4] batch\n"
                     "%4 = leaky_relu %3 alpha=0.01 : [2,4,4] batch\n"
                     "%5 = maxpool2d %4 size=2 stride=2 : [2,2,2] batch\n"
                     "%6 = avgpool2d %5 size=2 stride=1 : [2,1,1] batch\n"
                     "%7 = reshape %6 : [2] batch\n"
                     "output %7\n");
}

Test(ir_print, missing_roots_print_no_line) {
    NodeId w = add_param("w", ir_scalar_shape());
    m->output = ir_unary(g, IR_EXP, w, at0);
    m->input_name = NULL;
    cr_assert_str_eq(print(true), "model seed\n%1 = param w : []\n%2 = exp %1 : []\noutput %2\n");
}
