// sema: hostile input never crashes; every failure is a diagnosed error (LANGUAGE.md §6).
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "sema_test.h"


static void assert_rejected(const char *src, const char *msg) {
    Result *r = compile_text(src);
    cr_assert_null(r->m, "accepted: %s", src);
    cr_assert_gt(r->c.diag.n_errors, 0);
    cr_assert(strstr(r->diag, msg), "want '%s', got: %s", msg, r->diag);
}

Test(sema, huge_and_odd_numbers_are_errors) {
    assert_rejected("model t { input x[1e300]; output x; loss sum(x); train sgd(lr = 1); }",
                    "a dimension must be a positive integer, got 1e+300");
    assert_rejected("model t { input x[65536, 65536]; output x; loss sum(x); train sgd(lr = 1); }",
                    "'x' is too large");
    assert_rejected("model t { input x[3]; o = dense(x, 2e9); output o; loss sum(o); train sgd(lr = 1); }",
                    "'units' of 'dense' must be a positive integer, got 2e+09");
    assert_rejected("model t { input x[3]; o = dense(x, 1000000000); output o; loss sum(o); train sgd(lr = 1); }",
                    "parameter 'o.W' is too large");
    assert_rejected("model t { input x[3]; o = x * 2; output o; loss sum(o); train sgd(lr = 1e308 * 10); }",
                    "'lr' of 'sgd' must be a constant");
    assert_rejected("model t { input x[3]; o = reshape(x, 1073741824, 1073741824, 3); output o; loss sum(o);"
                    " train sgd(lr = 1); }", "cannot reshape [3]");
}

Test(sema, deep_fn_body_and_long_argument_lists) {
    enum { DEPTH = 10000, ARGS = 5000 };
    char *src = malloc(DEPTH * 8 + ARGS * 4 + 512), *p = src;
    p += sprintf(p, "fn f(z) = ");
    for (int i = 0; i < DEPTH; i++) p += sprintf(p, "1+(");
    p += sprintf(p, "z");
    for (int i = 0; i < DEPTH; i++) *p++ = ')';
    p += sprintf(p, ";\nmodel t { input x[2]; o = f(x) + sum(x");
    for (int i = 0; i < ARGS; i++) p += sprintf(p, ", x");
    p += sprintf(p, "); output o; loss sum(o); train sgd(lr = 1); }\n");
    Result *r = compile_text(src);
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "'sum' expects 1 argument, got 5001"), "%.400s", r->diag);
    free(src);
}

Test(sema, more_than_twenty_errors_stop_cleanly) {
    char src[8192], *p = src;
    p += sprintf(p, "model t { input x[2];\n");
    for (int i = 0; i < 60; i++) p += sprintf(p, "a%d = nope%d;\n", i, i);
    p += sprintf(p, "output x; loss sum(x); train sgd(lr = 1); }\n");
    Result *r = compile_text(src);
    cr_assert_null(r->m);
    cr_assert_eq(r->c.diag.n_errors, NN_MAX_ERRORS);
    cr_assert(strstr(r->diag, "too many errors (20), stopping"), "%s", r->diag);
}

Test(sema, fn_named_like_model_binding_and_layers_everywhere) {
    assert_rejected("fn dense(x) = x;\nmodel t { input x[2]; output x; loss sum(x); train sgd(lr = 1); }",
                    "fn 'dense' has the name of a built-in layer");
    assert_rejected("model t { input x[2]; param W[2] = dense(x, 2); output x; loss sum(x); train sgd(lr = 1); }",
                    "unknown initialiser 'dense'");
    assert_rejected("model t { input x[2]; param W[2] = constant(dense(x, 2)); output x; loss sum(x);"
                    " train sgd(lr = 1); }", "layer 'dense' is not allowed in an initialiser");
    assert_rejected("model t { input x[2]; output x; loss sum(x); train sgd(lr = sum(dense(x, 1))); }",
                    "layer 'dense' is not allowed in 'train'");
    assert_rejected("model t { input x[sum(dense(x, 1))]; output x; loss sum(x); train sgd(lr = 1); }",
                    "layer 'dense' is not allowed in a dimension");
}
