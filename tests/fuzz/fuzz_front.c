// fuzz_front.c: libFuzzer target for the front end (parser, then sema).
// Any byte sequence must give a diagnosis or a tree: never a crash, hang,
// leak or sanitizer report. Besides not crashing, it checks that every range
// in the tree lies inside the file, and prints each expression (the printer is
// iterative, so deep trees are fine).
//
// Build and run (see docs/grammar.md):
//   CC=clang-14 cmake -S . -B build-fuzz -DNNC_FUZZ=ON && cmake --build build-fuzz --target fuzz_front
//   build-fuzz/fuzz_front -dict=tests/fuzz/front/nn.dict -max_total_time=1200 \
//       build-fuzz/corpus tests/fuzz/front/seed
// Crash inputs go to tests/fuzz/front/ and are replayed by test_front_parser.
#include "ast.h"
#include "sema.h"

#include <stdlib.h>
#include <string.h>

static FILE *devnull;

static void check_range(SrcRange r, size_t len) {
    if (r.file != 0 || r.begin > r.end || r.end > len) abort();
}

// Every node's ranges, with an explicit stack.
static void check_expr(NnCtx *c, const Ast *root, size_t len) {
    if (!root) return;
    size_t cap = 64, n = 0;
    const Ast **stack = malloc(cap * sizeof *stack);
    stack[n++] = root;
    while (n > 0) {
        const Ast *e = stack[--n];
        check_range(e->at, len);
        check_range(e->op_at, len);
        if (n + 2 + (size_t)e->n_args > cap) {
            cap = 2 * (n + 2 + (size_t)e->n_args);
            stack = realloc(stack, cap * sizeof *stack);
        }
        if (e->lhs) stack[n++] = e->lhs;
        if (e->rhs) stack[n++] = e->rhs;
        for (int i = 0; i < e->n_args; i++) {
            check_range(e->arg_name_at[i], len);
            stack[n++] = e->args[i];
        }
    }
    free(stack);
    if (!ast_to_string(c, root)) abort();
}

static void check_file(NnCtx *c, const AstFile *f, size_t len) {
    for (int i = 0; i < f->n_fns; i++) {
        check_range(f->fns[i]->at, len);
        check_expr(c, f->fns[i]->body, len);
    }
    for (int i = 0; i < f->n_models; i++) {
        const AstModel *m = f->models[i];
        check_range(m->kw_at, len);
        for (int j = 0; j < m->n_stmts; j++) {
            const AstStmt *s = m->stmts[j];
            check_range(s->at, len);
            for (int k = 0; k < s->n_dims; k++) check_expr(c, s->dims[k], len);
            check_expr(c, s->expr, len);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull) devnull = fopen("/dev/null", "w");
    NnCtx c;
    nn_ctx_setup(&c, devnull);
    if (setjmp(c.fatal) == 0) {
        int file = nn_add_source(&c, "fuzz.nn", (const char *)data, size);
        AstFile *f = file >= 0 ? nn_parse(&c, file) : NULL;
        if (!f) abort();   // nn_parse returns NULL only for a bad file index
        check_file(&c, f, size);
        if (c.diag.n_errors == 0) (void)nn_sema(&c, f);
    }
    nn_ctx_free(&c);
    return 0;
}
