// sema: layers, explicit parameters, initialisers, fan_in/fan_out, offsets
// (LANGUAGE.md §4-§5, ABI.md §2: parameters in order of first appearance, no gaps).
#include <criterion/criterion.h>
#include <string.h>

#include "sema_test.h"


static const IrParam *param(const Result *r, const char *name) {
    for (uint32_t i = 0; i < r->m->n_params; i++)
        if (!strcmp(r->m->params[i].name, name)) return &r->m->params[i];
    cr_assert_fail("no parameter '%s'", name);
    return NULL;
}

Test(sema, dense_creates_named_params_in_order) {
    Result *r = compile_text(
        "model t { input x[2]; target y[2];\n"
        "h1 = dense(x, 3, sigmoid); param s = constant(2); h2 = dense(h1, 2, sigmoid);\n"
        "o = dense(h2, 2, bias = false) * s;\n"
        "output o; loss sum((y - o)^2); train sgd(lr = 0.5); }\n");
    cr_assert(r->m, "%s", r->diag);
    const char *names[] = { "h1.W", "h1.b", "s", "h2.W", "h2.b", "o.W" };
    const char *shapes[] = { "[3,2]", "[3]", "[]", "[2,3]", "[2]", "[2,2]" };
    size_t offsets[] = { 0, 6, 9, 10, 16, 18 };
    cr_assert_eq(r->m->n_params, 6);
    for (int i = 0; i < 6; i++) {
        const IrParam *p = &r->m->params[i];
        cr_assert_str_eq(p->name, names[i]);
        cr_assert_str_eq(shape_of(r, p->shape), shapes[i], "%s", names[i]);
        cr_assert_eq(p->offset, offsets[i], "%s at %zu", names[i], p->offset);
        cr_assert_eq(node(r, p->node)->op, IR_PARAM);
        cr_assert_eq((uint32_t)node(r, p->node)->imm, (uint32_t)i);
    }
    cr_assert_eq(r->m->param_count, 22);
}

Test(sema, dense_lowering_and_default_inits) {
    Result *r = compile_text("model t { input x[4]; h = dense(x, 3, relu); output h;\n"
                             "loss sum(h); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *o = node(r, r->m->output);          // relu(W @ x + b)
    cr_assert_eq(o->op, IR_RELU);
    const Node *add = node(r, o->arg[0]);
    cr_assert_eq(add->op, IR_ADD);
    const IrParam *w = param(r, "h.W"), *b = param(r, "h.b");
    NodeId mm = add->arg[0] == b->node ? add->arg[1] : add->arg[0];
    cr_assert_eq(node(r, mm)->op, IR_MATMUL);
    cr_assert_eq(node(r, mm)->arg[0], w->node);
    cr_assert_eq(node(r, mm)->arg[1], r->m->input);
    cr_assert_eq(w->init.kind, INIT_XAVIER);
    cr_assert_eq(b->init.kind, INIT_ZEROS);
    cr_assert_eq(w->fan_in, 4);
    cr_assert_eq(w->fan_out, 3);
    cr_assert_eq(b->fan_in, 3);
}

Test(sema, layer_anywhere_in_binding_is_named_after_it) {
    Result *r = compile_text("model t { input x[4]; h = dense(x, 5);\n"
                             "p = softmax(dense(h, 3)); output p; loss sum(p); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_eq(r->m->n_params, 4);
    cr_assert_str_eq(r->m->params[2].name, "p.W");
    cr_assert_str_eq(r->m->params[3].name, "p.b");
    cr_assert_eq(node(r, r->m->output)->op, IR_SOFTMAX);
}

Test(sema, dense_activation_user_fn_is_inlined) {
    Result *r = compile_text("fn swish(z) = z * sigmoid(z);\n"
                             "model t { input x[4]; h = dense(x, 3, act = swish); output h;\n"
                             "loss sum(h); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *o = node(r, r->m->output);
    cr_assert_eq(o->op, IR_MUL);
    cr_assert(node(r, o->arg[0])->op == IR_SIGMOID || node(r, o->arg[1])->op == IR_SIGMOID);
}

Test(sema, conv2d_params_fans_and_bias_broadcast) {
    Result *r = compile_text("model t { input x[3, 8, 8]; c = conv2d(x, 4, 5, stride = 2, padding = 1);\n"
                             "output c; loss sum(c); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const IrParam *w = param(r, "c.W"), *b = param(r, "c.b");
    cr_assert_str_eq(shape_of(r, w->shape), "[4,3,5,5]");
    cr_assert_str_eq(shape_of(r, b->shape), "[4]");
    cr_assert_eq(w->init.kind, INIT_HE);
    cr_assert_eq(b->init.kind, INIT_ZEROS);
    cr_assert_eq(w->fan_in, 3 * 25);
    cr_assert_eq(w->fan_out, 4 * 25);
    cr_assert_eq(b->offset, 4 * 3 * 25);
    // floor((8 + 2 - 5) / 2) + 1 = 3
    cr_assert_str_eq(shape_of(r, node(r, r->m->output)->shape), "[4,3,3]");
    const Node *add = node(r, r->m->output);
    cr_assert_eq(add->op, IR_ADD);
    const Node *conv = node(r, add->arg[0])->op == IR_CONV2D ? node(r, add->arg[0]) : node(r, add->arg[1]);
    const Node *b3 = node(r, add->arg[0])->op == IR_CONV2D ? node(r, add->arg[1]) : node(r, add->arg[0]);
    cr_assert_eq(conv->op, IR_CONV2D);
    cr_assert_eq(conv->attr[0], 2);
    cr_assert_eq(conv->attr[1], 1);
    cr_assert_eq(b3->op, IR_RESHAPE);
    cr_assert_str_eq(shape_of(r, b3->shape), "[4,1,1]");
}

Test(sema, pooling_shapes_and_default_stride) {
    Result *r = compile_text("model t { input x[2, 7, 7]; p = maxpool2d(x, 2); q = avgpool2d(x, 3, stride = 2);\n"
                             "output p; loss sum(p) + sum(q); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *p = node(r, r->m->output);
    cr_assert_eq(p->op, IR_MAXPOOL2D);
    cr_assert_str_eq(shape_of(r, p->shape), "[2,3,3]");
    cr_assert_eq(p->attr[0], 2);   // stride = size
    cr_assert_eq(p->attr[1], 2);
    cr_assert_eq(r->m->n_params, 0);
}

Test(sema, explicit_param_fans_follow_pytorch) {
    Result *r = compile_text("model t { input x[3];\n"
                             "param a = constant(1); param v[7] = ones(); param M[5, 3] = xavier();\n"
                             "param K[6, 2, 3, 4] = he();\n"
                             "output x; loss a + sum(v) + sum(M) + sum(K) + sum(x); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_eq(param(r, "a")->fan_in, 1);
    cr_assert_eq(param(r, "a")->fan_out, 1);
    cr_assert_eq(param(r, "v")->fan_in, 7);
    cr_assert_eq(param(r, "v")->fan_out, 7);
    cr_assert_eq(param(r, "M")->fan_in, 3);
    cr_assert_eq(param(r, "M")->fan_out, 5);
    cr_assert_eq(param(r, "K")->fan_in, 2 * 12);
    cr_assert_eq(param(r, "K")->fan_out, 6 * 12);
    cr_assert_eq(param(r, "K")->offset, 1 + 7 + 15);
}

Test(sema, initialiser_arguments) {
    Result *r = compile_text("model t { input x[3];\n"
                             "param a[2] = constant(-1.5); param b[2] = uniform(lo = -0.5, hi = 0.5);\n"
                             "param c[2] = normal(0, 2 * 0.25);\n"
                             "output x; loss sum(a) + sum(b) + sum(c) + sum(x); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_eq(param(r, "a")->init.kind, INIT_CONSTANT);
    cr_assert_float_eq(param(r, "a")->init.a, -1.5, 0);
    cr_assert_eq(param(r, "b")->init.kind, INIT_UNIFORM);
    cr_assert_float_eq(param(r, "b")->init.a, -0.5, 0);
    cr_assert_float_eq(param(r, "b")->init.b, 0.5, 0);
    cr_assert_eq(param(r, "c")->init.kind, INIT_NORMAL);
    cr_assert_float_eq(param(r, "c")->init.b, 0.5, 0);
}

Test(sema, param_not_affecting_loss_warns) {
    Result *r = compile_text("model t { input x[3]; h = dense(x, 2); o = dense(x, 3);\n"
                             "output o; loss sum(o); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_eq(r->c.diag.n_warnings, 2);
    cr_assert(strstr(r->diag, "t.nn:1:23: warning: parameter 'h.W' does not affect the loss"), "%s", r->diag);
    cr_assert(strstr(r->diag, "warning: parameter 'h.b' does not affect the loss"), "%s", r->diag);
}

Test(sema, layer_errors_say_where) {
    Result *r = compile_text("model t { input x[3]; h = dense(x, 2) + dense(x, 2);\n"
                             "output dense(h, 1); loss sum(h); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "a binding holds at most one layer; 'h' already has 'dense'"), "%s", r->diag);
    cr_assert(strstr(r->diag, "layer 'dense' is not allowed in 'output'"), "%s", r->diag);
}
