// test_cg_examples.c: every examples/*.nn compiles, and its kernels agree with
// the interpreter (grad, loss, predict, apply).
#include <glob.h>

#include "support_run.h"
#include "test_cg_util.h"

static char *read_source(const char *path) {
    char *s = test_read_file(path, NULL);
    cr_assert(s, "cannot open %s", path);
    return s;
}

static bool parses(const char *src) {
    NnCtx c;
    FILE *devnull = fopen("/dev/null", "w");
    nn_ctx_setup(&c, devnull);
    bool ok = false;
    if (!setjmp(c.fatal)) {
        int f = nn_add_source(&c, "t.nn", src, strlen(src));
        ok = f >= 0 && nn_frontend(&c, f) && !c.diag.n_errors;
    }
    nn_ctx_free(&c);
    fclose(devnull);
    return ok;
}

Test(cg, every_example_agrees_with_the_interpreter, .timeout = 600) {
    glob_t gl;
    cr_assert_eq(glob(NNC_SOURCE_DIR "/examples/*.nn", 0, NULL, &gl), 0);
    cr_assert_gt(gl.gl_pathc, 0);
    cgt_param_scale = 0.05f;   // wide layers: keep sigmoid outputs away from float's 1.0
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        char *src = read_source(gl.gl_pathv[i]);
        fprintf(stderr, "example %s\n", gl.gl_pathv[i]);
        if (!parses(src)) {   // reported by the front end's own tests
            fprintf(stderr, "skipped: %s does not compile\n", gl.gl_pathv[i]);
            free(src);
            continue;
        }
        // The iterated logistic map is chaotic: its condition number is about 4^10 ~ 1e6, so
        // float32 rounding (6e-8) alone moves the result by up to ~6e-2 relative. Its
        // gradients are checked in double precision by the autodiff tests.
        cgt_tol = strstr(gl.gl_pathv[i], "logistic.nn") ? 6e-2 : 1e-4;
        CgT t;
        cgt_build(&t, src);
        cgt_compare(&t, 3, 0.0f, 1.0f);
        cgt_free(&t);
        free(src);
    }
    globfree(&gl);
}

// Every example's train_step (the fused train kernel when it has one) equals grad then
// apply: convolutions, clipping, functions, losses of every kind.
Test(cg, every_example_trains_as_grad_then_apply, .timeout = 600) {
    glob_t gl;
    cr_assert_eq(glob(NNC_SOURCE_DIR "/examples/*.nn", 0, NULL, &gl), 0);
    int with_train = 0;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        char *src = read_source(gl.gl_pathv[i]);
        // logistic.nn is chaotic: a rounding difference grows by ~1e6 (see above).
        if (!parses(src) || strstr(gl.gl_pathv[i], "logistic.nn")) {
            free(src);
            continue;
        }
        fprintf(stderr, "example %s\n", gl.gl_pathv[i]);
        CgT t;
        cgt_build(&t, src);
        with_train += t.d->train != NULL;
        cgt_same_as_grad_then_apply(&t, 3, 1);
        cgt_free(&t);
        free(src);
    }
    cr_assert_geq(with_train, 8, "most examples should get a fused train kernel");
    globfree(&gl);
}
