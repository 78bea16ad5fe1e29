// Autodiff on the real examples (examples/*.nn through the front end): the
// symbolic gradient matches central finite differences, pruning never changes
// it, never grows the graph, and no node computes a derivative for the input.
#include <criterion/criterion.h>
#include <glob.h>

#include "sema.h"
#include "test_grad_util.h"

TestSuite(examples);

// The forward model of one example, in c's arena; NULL if it does not compile
// (some examples show an error on purpose; the front end's tests cover them).
static Model *load(NnCtx *c, const char *path) {
    FILE *quiet = fopen("/dev/null", "w");
    nn_ctx_setup(c, quiet);
    int file = nn_load_file(c, path);
    cr_assert_geq(file, 0, "cannot read %s", path);
    Model *m = NULL;
    if (!setjmp(c->fatal))
        m = nn_frontend(c, file);
    fclose(quiet);
    c->diag.out = stderr;
    return m;
}

// Gradient error tolerance: parameters are scaled down (|p| <= 0.5) so that
// saturating activations keep finite differences meaningful.
static bool check_example(const char *path) {
    NnCtx c1, c2, c3;
    Model *plain = load(&c1, path), *pruned = load(&c2, path), *fwd = load(&c3, path);
    if (!plain || !pruned || !fwd) {
        cr_log_info("%s does not compile: skipped", path);
        nn_ctx_free(&c1);
        nn_ctx_free(&c2);
        nn_ctx_free(&c3);
        return false;
    }
    ir_differentiate(plain);
    ir_differentiate(pruned);
    uint32_t before = ir_count_live(pruned);
    ir_pass_simplify(pruned);
    ir_pass_dce(pruned);
    cr_assert_leq(ir_count_live(pruned), before, "%s: the graph grew", path);

    TmData d = tm_data(&c1.arena, plain, 2, 2024, -0.5, 0.5);
    if (plain->target)
        for (size_t i = 0; i < d.batch * (size_t)ir_numel(plain->g->nodes[plain->target].shape); i++)
            d.y[i] = 0.25 + 0.5 * (d.y[i] + 0.5);      // targets in (0.25, 0.75): valid for bce and ce
    double *ga = tm_grads(&c1.arena, plain, &d), *gb = tm_grads(&c1.arena, pruned, &d);
    for (size_t j = 0; j < plain->param_count; j++)
        cr_assert_leq(fabs(ga[j] - gb[j]), 1e-12 * fmax(1, fabs(ga[j])),
                      "%s: gradient %zu: %.17g unpruned, %.17g pruned", path, j, ga[j], gb[j]);
    // Finite differences cost 4 runs of the forward model per element: at
    // most about 60 elements per model.
    double err = tm_check_every(&c1.arena, plain, fwd, &d, plain->param_count / 60 + 1);
    cr_assert_leq(err, 1e-6, "%s: gradient error %g", path, err);
    nn_ctx_free(&c1);
    nn_ctx_free(&c2);
    nn_ctx_free(&c3);
    return true;
}

Test(examples, gradients_of_every_example) {
    glob_t gl;
    cr_assert_eq(glob(NNC_SOURCE_DIR "/examples/*.nn", 0, NULL, &gl), 0);
    size_t checked = 0;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        cr_log_info("%s", gl.gl_pathv[i]);
        checked += check_example(gl.gl_pathv[i]);
    }
    cr_assert_geq(checked, gl.gl_pathc / 2, "only %zu of %zu examples compiled", checked, gl.gl_pathc);
    globfree(&gl);
}

// The logistic map from source, as bench/ writes it: s_k applies
// `fn step(l) = 4*l*(1-l)` 2^k times through nested fns (the front end
// inlines them). Backward nodes after pruning: exactly 4 per step, plus a
// constant: linear in n up to n = 8192.
static uint32_t logistic_backward_nodes(int k) {
    char text[4096];
    int len = snprintf(text, sizeof text, "fn step(l) = 4 * l * (1 - l);\nfn s0(l) = step(l);\n");
    for (int i = 1; i <= k; i++)
        len += snprintf(text + len, sizeof text - (size_t)len, "fn s%d(l) = s%d(s%d(l));\n", i, i - 1, i - 1);
    snprintf(text + len, sizeof text - (size_t)len,
             "model logistic {\n input x[1];\n target y[1];\n param w = constant(0.3);\n"
             " o = s%d(sigmoid(w * x));\n output o;\n loss 0.5 * (o - y)^2;\n train sgd(lr = 0.01);\n}\n", k);
    NnCtx c;
    nn_ctx_setup(&c, stderr);
    Model *m = nn_frontend(&c, nn_add_source(&c, "logistic.nn", text, strlen(text)));
    cr_assert_not_null(m);
    uint32_t forward = ir_count_live(m);
    ir_differentiate(m);
    ir_pass_simplify(m);
    ir_pass_dce(m);
    uint32_t backward = ir_count_live(m) - forward;
    nn_ctx_free(&c);
    return backward;
}

Test(examples, logistic_map_from_source_is_linear) {
    uint32_t base = logistic_backward_nodes(0);            // n = 1
    for (int k = 3; k <= 13; k += 5) {
        uint32_t n = 1u << k, count = logistic_backward_nodes(k);
        cr_assert_eq(count, base + 4 * (n - 1), "n = %u: %u backward nodes", n, count);
    }
}
