// sema: user fns (inlining in any order, memoised, recursion) and file structure.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sema_test.h"


Test(sema, fns_called_in_any_order_are_inlined) {
    Result *r = compile_text("model t { input x[3]; o = outer(x); output o; loss sum(o); train sgd(lr = 0.1); }\n"
                             "fn outer(a) = inner(a) * 2;\n"
                             "fn inner(b) = b + 1;\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *o = node(r, r->m->output);          // (x + 1) * 2
    cr_assert_eq(o->op, IR_MUL);
    const Node *add = node(r, node(r, o->arg[0])->op == IR_ADD ? o->arg[0] : o->arg[1]);
    cr_assert_eq(add->op, IR_ADD);
    cr_assert(add->arg[0] == r->m->input || add->arg[1] == r->m->input);
}

Test(sema, fn_named_arguments) {
    Result *r = compile_text("fn sub2(a, b) = a - b;\n"
                             "model t { input x[3]; o = sub2(b = x, a = 1); output o; loss sum(o); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *o = node(r, r->m->output);          // 1 - x
    cr_assert_eq(o->op, IR_SUB);
    cr_assert_eq(node(r, o->arg[0])->op, IR_CONST);
    cr_assert_eq(o->arg[1], r->m->input);
}

Test(sema, equal_calls_share_nodes) {
    Result *r = compile_text("fn f(z) = exp(z) * z;\n"
                             "model t { input x[3]; a = f(x); b = f(x); output a; loss sum(a - b); train sgd(lr = 0.1); }\n");
    cr_assert(r->m, "%s", r->diag);
    const Node *l = node(r, r->m->loss);
    cr_assert_eq(l->op, IR_SUM);
    const Node *d = node(r, l->arg[0]);
    cr_assert_eq(d->op, IR_SUB);
    cr_assert_eq(d->arg[0], d->arg[1]);           // hash-consed into one node
}

Test(sema, doubling_fn_chain_stays_linear) {
    // f_k(z) = f_{k-1}(z) + f_{k-1}(z): 2^40 calls if inlined naively.
    char src[8192], *p = src;
    p += sprintf(p, "fn f0(z) = z * 2;\n");
    for (int k = 1; k <= 40; k++) p += sprintf(p, "fn f%d(z) = f%d(z) + f%d(z);\n", k, k - 1, k - 1);
    p += sprintf(p, "model t { input x[3]; o = f40(x); output o; loss sum(o); train sgd(lr = 0.1); }\n");
    Result *r = compile_text(src);
    cr_assert(r->m, "%s", r->diag);
    cr_assert_lt(r->m->g->n_nodes, 200);
}

Test(sema, logistic_chain_of_ten_thousand_bindings_is_fast) {
    enum { N = 10000 };
    char *src = malloc(N * 40 + 512), *p = src;
    p += sprintf(p, "fn step(l) = 4 * l * (1 - l);\nmodel t { input x[1]; target y[1]; param w = constant(0.3);\n"
                    "l0 = sigmoid(w * x);\n");
    for (int i = 1; i <= N; i++) p += sprintf(p, "l%d = step(l%d);\n", i, i - 1);
    p += sprintf(p, "output l%d; loss sum((l%d - y)^2); train sgd(lr = 0.01); }\n", N, N);
    clock_t t0 = clock();
    Result *r = compile_text(src);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    cr_assert(r->m, "%.300s", r->diag);
    cr_assert_lt(secs, 1.0, "took %g s", secs);
    cr_assert_lt(r->m->g->n_nodes, 4 * N);
    free(src);
}

Test(sema, recursion_reported_at_closing_call) {
    Result *r = compile_text("fn a(z) = b(z) + 1;\nfn b(z) = c(z) * 2;\nfn c(z) = a(z);\n"
                             "model t { input x[3]; o = a(x); output o; loss sum(o); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:3:11: error: recursive call to 'a' (a -> b -> c -> a)"), "%s", r->diag);
    cr_assert_eq(r->c.diag.n_errors, 1, "%s", r->diag);
}

Test(sema, fn_body_sees_only_params) {
    Result *r = compile_text("fn f(z) = z * x;\n"
                             "model t { input x[3]; o = f(x); output o; loss sum(o); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:1:15: error: unknown name 'x'"), "%s", r->diag);
    cr_assert_eq(r->c.diag.n_errors, 1, "%s", r->diag);
}

Test(sema, unused_fn_errors_are_still_reported) {
    Result *r = compile_text("fn f(z) = nope(z);\n"
                             "model t { input x[3]; output x; loss sum(x); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "unknown function 'nope'"), "%s", r->diag);
}

Test(sema, exactly_one_model) {
    Result *r = compile_text("fn f(z) = z;\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:1:13: error: the file has no model"), "%s", r->diag);
    r = compile_text("model a { input x[1]; output x; loss sum(x); train sgd(lr = 1); }\n"
                     "model b { input x[1]; output x; loss sum(x); train sgd(lr = 1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:2:1: error: a second model; a file holds exactly one"), "%s", r->diag);
}

Test(sema, missing_statements_at_model_keyword) {
    Result *r = compile_text("\n  model t { param w = zeros(); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:2:3: error: model 't' has no 'input' statement"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:2:3: error: model 't' has no 'output' statement"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:2:3: error: model 't' has no 'loss' statement"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:2:3: error: model 't' has no 'train' statement"), "%s", r->diag);
}

Test(sema, model_name_keywords_refused) {
    const char *bad[] = { "xor", "class", "new", "int", "and", "not", "bitand", "char8_t", "_Bool",
                          "co_await", "size_t", "explicit" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char src[256];
        snprintf(src, sizeof src, "model %s { input x[1]; output x; loss sum(x); train sgd(lr = 1); }\n", bad[i]);
        Result *r = compile_text_as(src, EMIT_SO);
        cr_assert_null(r->m, "%s accepted", bad[i]);
        cr_assert(strstr(r->diag, "cannot be a model name"), "%s: %s", bad[i], r->diag);
        // Where no C is generated (--emit=ir, --stats, check) it is only a warning.
        r = compile_text_as(src, EMIT_IR);
        cr_assert(r->m, "%s refused for --emit=ir: %s", bad[i], r->diag);
        cr_assert(strstr(r->diag, "warning: '"), "%s: %s", bad[i], r->diag);
    }
    Result *r = compile_text("model xor_net { input x[1]; output x; loss sum(x); train sgd(lr = 1); }\n");
    cr_assert(r->m, "%s", r->diag);
    cr_assert_str_eq(r->m->name, "xor_net");
}

Test(sema, names_bound_once_and_before_use) {
    Result *r = compile_text("model t { input x[3]; h = g * 2; g = x; h = x;\n"
                             "output h; loss sum(h); train sgd(lr = 0.1); }\n");
    cr_assert_null(r->m);
    cr_assert(strstr(r->diag, "t.nn:1:27: error: 'g' is used before it is bound"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:1:41: error: 'h' is bound twice"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:1:23: note: 'h' is first bound here"), "%s", r->diag);
}
