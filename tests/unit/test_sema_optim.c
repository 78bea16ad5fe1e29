// sema: the train statement (LANGUAGE.md §4, §7): optimiser defaults, arguments, ranges.
#include <criterion/criterion.h>
#include <string.h>

#include "sema_test.h"


static Result *with_train(const char *train) {
    static char src[1024];
    snprintf(src, sizeof src, "model t { input x[3]; o = dense(x, 2); output o; loss sum(o);\n"
                              "train %s; }\n", train);
    return compile_text(src);
}

Test(sema, sgd_defaults) {
    Result *r = with_train("sgd(lr = 0.5)");
    cr_assert(r->m, "%s", r->diag);
    IrOptimizer o = r->m->opt;
    cr_assert_eq(o.kind, OPT_SGD);
    cr_assert_float_eq(o.lr, 0.5, 0);
    cr_assert_float_eq(o.momentum, 0, 0);
    cr_assert_float_eq(o.weight_decay, 0, 0);
    cr_assert_not(o.nesterov);
    cr_assert_float_eq(o.clip, 0, 0);
    cr_assert_not(o.reduce_sum);
}

Test(sema, adam_defaults) {
    Result *r = with_train("adam(0.001)");
    cr_assert(r->m, "%s", r->diag);
    IrOptimizer o = r->m->opt;
    cr_assert_eq(o.kind, OPT_ADAM);
    cr_assert_float_eq(o.lr, 0.001, 0);
    cr_assert_float_eq(o.beta1, 0.9, 0);
    cr_assert_float_eq(o.beta2, 0.999, 0);
    cr_assert_float_eq(o.eps, 1e-8, 0);
    cr_assert_float_eq(o.weight_decay, 0, 0);
    cr_assert_float_eq(o.clip, 0, 0);
}

Test(sema, optimiser_arguments_by_name_and_position) {
    Result *r = with_train("sgd(0.1, 0.9, true, weight_decay = 1e-4, reduce = sum, clip = 5)");
    cr_assert(r->m, "%s", r->diag);
    IrOptimizer o = r->m->opt;
    cr_assert_float_eq(o.momentum, 0.9, 0);
    cr_assert(o.nesterov);
    cr_assert_float_eq(o.weight_decay, 1e-4, 0);
    cr_assert(o.reduce_sum);
    cr_assert_float_eq(o.clip, 5, 0);
    r = with_train("adam(lr = 1e-3, beta2 = 0.99, eps = 1e-6, beta1 = 0.5)");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_float_eq(r->m->opt.beta1, 0.5, 0);
    cr_assert_float_eq(r->m->opt.beta2, 0.99, 0);
    cr_assert_float_eq(r->m->opt.eps, 1e-6, 0);
}

static void assert_train_error(const char *train, const char *msg) {
    Result *r = with_train(train);
    cr_assert_null(r->m, "%s accepted", train);
    cr_assert(strstr(r->diag, msg), "%s: want '%s', got: %s", train, msg, r->diag);
}

Test(sema, optimiser_argument_errors) {
    assert_train_error("sgd(lr = 0.1, momentun = 0.9)",
                       "unknown argument 'momentun' to 'sgd'; valid arguments are lr, momentum, nesterov, weight_decay, reduce, clip");
    assert_train_error("adam(lr = 0.1, momentum = 0.9)",
                       "unknown argument 'momentum' to 'adam'; valid arguments are lr, beta1, beta2, eps, weight_decay, reduce, clip");
    assert_train_error("sgd(momentum = 0.9)", "missing argument 'lr' to 'sgd'");
    assert_train_error("sgd()", "'sgd' expects 1 to 6 arguments, got 0");
    assert_train_error("sgd(0.1, 0, false, 0, mean, 1, 2)", "'sgd' expects 1 to 6 arguments, got 7");
    assert_train_error("sgd(0.1, lr = 0.2)", "argument 'lr' of 'sgd' is given twice");
    assert_train_error("sgd(lr = 0)", "'lr' of 'sgd' must be > 0, got 0");
    assert_train_error("sgd(lr = 0.1, momentum = -0.5)", "'momentum' of 'sgd' must be >= 0, got -0.5");
    assert_train_error("sgd(lr = 0.1, weight_decay = -1)", "'weight_decay' of 'sgd' must be >= 0, got -1");
    assert_train_error("sgd(lr = 0.1, nesterov = true)", "'nesterov' of 'sgd' needs 'momentum' > 0");
    assert_train_error("sgd(lr = 0.1, reduce = avg)", "'reduce' of 'sgd' must be mean or sum");
    assert_train_error("sgd(lr = 0.1, clip = 0)", "'clip' of 'sgd' must be > 0, got 0");
    assert_train_error("adam(lr = 0.1, beta1 = 1)", "'beta1' of 'adam' must be in [0, 1), got 1");
    assert_train_error("adam(lr = 0.1, beta2 = -0.1)", "'beta2' of 'adam' must be in [0, 1), got -0.1");
    assert_train_error("adam(lr = 0.1, eps = 0)", "'eps' of 'adam' must be > 0, got 0");
    assert_train_error("rmsprop(lr = 0.1)", "unknown optimiser 'rmsprop'; valid optimisers are sgd, adam");
    assert_train_error("sgd(lr = x)", "'lr' of 'sgd' must be a constant");
}

Test(sema, optimiser_constant_expressions) {
    Result *r = with_train("sgd(lr = 1 / 2 ^ 3, momentum = 1 - 0.1)");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_float_eq(r->m->opt.lr, 0.125, 0);
    cr_assert_float_eq(r->m->opt.momentum, 0.9, 1e-15);
}
