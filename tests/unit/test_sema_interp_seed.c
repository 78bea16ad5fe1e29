// The seed models compiled from .nn text (nn_frontend) and evaluated by the
// reference interpreter: the same numbers as the hand-built graphs of
// test_ir_interp.c, so sema's lowering of dense, sum, ^ and the objective is
// checked against NumPy (tests/unit/seed_network_reference.py).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sema.h"

typedef struct Compiled {
    NnCtx  c;
    Model *m;
    char  *diag;
    size_t diag_len;
    FILE  *out;
} Compiled;

// NULL with the diagnostics in *diag (malloc'd) when the text does not compile.
static Compiled *try_compile_text(const char *src, char **diag) {
    Compiled *volatile r = calloc(1, sizeof *r);
    r->out = open_memstream(&r->diag, &r->diag_len);
    nn_ctx_setup(&r->c, r->out);
    int f = nn_add_source(&r->c, "t.nn", src, strlen(src));
    if (setjmp(r->c.fatal) == 0)
        r->m = nn_frontend(&r->c, f);
    fflush(r->out);
    if (r->m)
        return r;
    *diag = strdup(r->diag);
    fclose(r->out);
    nn_ctx_free(&r->c);
    free(r->diag);
    free(r);
    return NULL;
}

static Compiled *compile_text(const char *src) {
    char *diag = NULL;
    Compiled *r = try_compile_text(src, &diag);
    cr_assert(r, "compile failed: %s", diag);
    return r;
}

static void compiled_free(Compiled *r) {
    fclose(r->out);
    nn_ctx_free(&r->c);
    free(r->diag);
    free(r);
}

static uint32_t param_index(const Model *m, const char *name) {
    for (uint32_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return i;
    cr_assert_fail("no parameter '%s'", name);
    return 0;
}

// Writes `values` (numel of the parameter) at the parameter's offset.
static void set_param(const Model *m, double *block, const char *name, const double *values) {
    const IrParam *p = &m->params[param_index(m, name)];
    memcpy(block + p->offset, values, (size_t)ir_numel(p->shape) * sizeof *block);
}

static void assert_close(const double *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= 1e-15, "[%zu]: got %.17g, want %.17g", i, got[i], want[i]);
}

Test(sema_interp, seed_004_neuron_gives_one_half) {
    Compiled *r = compile_text("model neuron {\n"
                               "    input  x[1];\n"
                               "    target y[1];\n"
                               "    param w = zeros();\n"
                               "    param b = zeros();\n"
                               "    f = 1 / (exp(-(w * x + b)) + 1);\n"
                               "    output f;\n"
                               "    loss 0.5 * (f - y)^2;\n"
                               "    train sgd(lr = 1);\n"
                               "}\n");
    const Model *m = r->m;
    double params[2] = { 0, 0 }, x[] = { 1 }, y[] = { 1 };
    cr_assert_eq(m->param_count, 2);
    InterpArgs args = { .batch = 1, .x = x, .y = y, .params = params };
    double **v = ir_interp(m, &args, &r->c.arena);
    cr_assert_eq(v[m->output][0], 0.5);
    cr_assert_eq(v[m->loss][0], 0.125);          // 0.5 * (0.5 - 1)^2
    cr_assert_eq(v[m->objective][0], 0.125);
    compiled_free(r);
}

// LANGUAGE.md §1, the [2,3,2,2] network of seeds/000, at the weights of
// seed_network_reference.py.
static const char seed_src[] =
    "model seed {\n"
    "    input  x[2];\n"
    "    target y[2];\n"
    "    h1 = dense(x, 3, sigmoid);\n"
    "    h2 = dense(h1, 2, sigmoid);\n"
    "    o  = dense(h2, 2, sigmoid);\n"
    "    output o;\n"
    "    loss 0.5 * sum((y - o)^2);\n"
    "    train sgd(lr = 0.5);\n"
    "}\n";

static double *seed_params(const Model *m) {
    static const double W1[] = { 0.1, -0.2, 0.3, 0.4, -0.5, 0.6 }, b1[] = { 0.01, -0.02, 0.03 };
    static const double W2[] = { 0.7, -0.8, 0.9, -0.1, 0.2, -0.3 }, b2[] = { 0.05, -0.05 };
    static const double W3[] = { 0.25, -0.35, 0.45, 0.55 }, b3[] = { -0.1, 0.1 };
    cr_assert_eq(m->param_count, 23);
    double *p = calloc(m->param_count, sizeof *p);
    set_param(m, p, "h1.W", W1);
    set_param(m, p, "h1.b", b1);
    set_param(m, p, "h2.W", W2);
    set_param(m, p, "h2.b", b2);
    set_param(m, p, "o.W", W3);
    set_param(m, p, "o.b", b3);
    return p;
}

Test(sema_interp, seed_network_matches_numpy) {
    Compiled *r = compile_text(seed_src);
    const Model *m = r->m;
    double *p = seed_params(m);
    const double x[] = { 0.5, -1.0, 1.5, 2.0 }, y[] = { 1.0, 0.0, 0.0, 1.0 };
    InterpArgs args = { .batch = 2, .x = x, .y = y, .params = p };
    double **v = ir_interp(m, &args, &r->c.arena);
    const double want_o[] = { 0.4707505874855293, 0.6516437398203434, 0.469836592488651, 0.6492748054969306 };
    const double want_loss[] = { 0.35237225214697787, 0.17187729285028128 };
    const double want_objective[] = { 0.2621247724986296 };
    assert_close(v[m->output], want_o, 4);
    assert_close(v[m->loss], want_loss, 2);
    assert_close(v[m->objective], want_objective, 1);
    free(p);
    compiled_free(r);
}

Test(sema_interp, seed_network_reduce_sum_objective) {
    // reduce = sum: the objective is the sum of the per-sample losses.
    char src[sizeof seed_src + 32];
    const char *at = strstr(seed_src, "lr = 0.5");
    snprintf(src, sizeof src, "%.*slr = 0.5, reduce = sum%s", (int)(at - seed_src), seed_src,
             at + strlen("lr = 0.5"));
    Compiled *r = compile_text(src);
    const Model *m = r->m;
    double *p = seed_params(m);
    const double x[] = { 0.5, -1.0, 1.5, 2.0 }, y[] = { 1.0, 0.0, 0.0, 1.0 };
    InterpArgs args = { .batch = 2, .x = x, .y = y, .params = p };
    double **v = ir_interp(m, &args, &r->c.arena);
    const double want_objective[] = { 0.35237225214697787 + 0.17187729285028128 };
    assert_close(v[m->objective], want_objective, 1);
    free(p);
    compiled_free(r);
}

// Every example: sema's graph passes ir_verify and evaluates to finite values
// at small deterministic parameters.
Test(sema_interp, every_example_verifies_and_evaluates) {
    const char *names[] = { "autoencoder", "curve", "explicit", "fashion", "fashion_cnn", "handwritten",
                            "linear4", "logistic", "mnist", "neuron", "seed", "three_layer", "xor" };
    for (size_t e = 0; e < NN_COUNTOF(names); e++) {
        char path[512];
        snprintf(path, sizeof path, "%s/examples/%s.nn", NNC_SOURCE_DIR, names[e]);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;   // an example renamed or removed: nothing to check here
        char *src = calloc(1, 1 << 16);
        size_t n = fread(src, 1, (1 << 16) - 1, f);
        fclose(f);
        src[n] = '\0';
        char *diag = NULL;
        Compiled *r = try_compile_text(src, &diag);
        if (!r) {
            // Not this test's business (sema's tests own diagnostics); say so and go on.
            fprintf(stderr, "note: examples/%s.nn does not compile: %s", names[e], diag);
            free(diag);
            free(src);
            continue;
        }
        const Model *m = r->m;
        ir_verify(m->g);
        size_t nx = (size_t)ir_numel(m->g->nodes[m->input].shape);
        size_t ny = m->target ? (size_t)ir_numel(m->g->nodes[m->target].shape) : 0;
        double *p = calloc(m->param_count + 1, sizeof *p);
        double *x = calloc(2 * nx, sizeof *x), *y = calloc(2 * ny + 1, sizeof *y);
        for (size_t i = 0; i < m->param_count; i++)
            p[i] = 0.05 * sin(0.37 * i);
        for (size_t i = 0; i < 2 * nx; i++)
            x[i] = 0.5 + 0.25 * cos(0.11 * i);   // in (0, 1): fine for log, sqrt, probabilities
        for (size_t i = 0; i < 2 * ny; i++)
            y[i] = i % ny == 0 ? 1.0 : 0.0;
        InterpArgs args = { .batch = 2, .x = x, .y = m->target ? y : NULL, .params = p };
        double **v = ir_interp(m, &args, &r->c.arena);
        size_t no = (size_t)ir_numel(m->g->nodes[m->output].shape);
        for (size_t i = 0; i < 2 * no; i++)
            cr_assert(isfinite(v[m->output][i]), "%s: output[%zu] = %g", names[e], i, v[m->output][i]);
        cr_assert(isfinite(v[m->objective][0]), "%s: objective = %g", names[e], v[m->objective][0]);
        free(p);
        free(x);
        free(y);
        free(src);
        compiled_free(r);
    }
}
