// sema_test.h: compiling .nn text in-process for the test_sema_* suites.
// Header-only (static functions): every test_* file is its own program.
#ifndef NNC_SEMA_TEST_H
#define NNC_SEMA_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sema.h"

typedef struct Result {
    NnCtx   c;
    Model  *m;
    char   *diag;      // everything printed to the diagnostics stream
    size_t  diag_len;
} Result;

// Compiles `src` (named t.nn) as if for `emit`; the result lives until the next call.
__attribute__((unused)) static Result *compile_text_as(const char *src, EmitKind emit) {
    static Result r;
    if (r.diag) {               // the previous result
        nn_ctx_free(&r.c);
        free(r.diag);
    }
    memset(&r, 0, sizeof r);
    FILE *out = open_memstream(&r.diag, &r.diag_len);
    nn_ctx_setup(&r.c, out);
    r.c.opt.emit = emit;
    if (!setjmp(r.c.fatal)) {
        int f = nn_add_source(&r.c, "t.nn", src, strlen(src));
        r.m = nn_frontend(&r.c, f);
    }
    fclose(out);
    return &r;
}

__attribute__((unused)) static Result *compile_text(const char *src) {
    return compile_text_as(src, EMIT_NONE);
}

__attribute__((unused)) static const Node *node(const Result *r, NodeId id) {
    return ir_get(r->m->g, id);
}

// "[3,4]"; four buffers in turn, so one assertion may print several shapes.
__attribute__((unused)) static const char *shape_of(const Result *r, Shape s) {
    (void)r;
    static char buf[4][64];
    static int k;
    k = (k + 1) % 4;
    return ir_shape_str(s, buf[k], sizeof buf[k]);
}

#endif
