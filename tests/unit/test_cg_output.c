// test_cg_output.c: what cg_compile writes: the header (C99 and C++), the
// object, LLVM text, assembly with AVX-512 on this machine; the API of the
// shared library through the runtime (train_step equals grad then apply).
#include <sys/stat.h>

#include "support_run.h"
#include "test_cg_util.h"

// In a sanitizer build libnnrt.a is instrumented: programs linking it need the runtime too.
#ifdef __SANITIZE_ADDRESS__
#define SANITIZE_FLAGS "-fsanitize=address,undefined"
#else
#define SANITIZE_FLAGS ""
#endif

static const char *mnist_src =
    "model digits { input x[784]; target y[10];\n"
    "h = dense(x, 128, relu); z = dense(h, 10);\n"
    "output softmax(z); loss softmax_cross_entropy(z, y); train sgd(lr = 0.1, momentum = 0.9); }";

static char *slurp(const char *path) {
    char *s = test_read_file(path, NULL);
    cr_assert(s, "cannot open %s", path);
    return s;
}

static __attribute__((unused)) int run(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(cg, assembly_has_avx512_in_hot_loops) {
    CgT t;
    cgt_build_as(&t, mnist_src, EMIT_ASM, "m.s");
    char *s = slurp(t.so);
    // On a host with AVX-512 (this machine: znver5) the hot loops use zmm registers.
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool avx512 = false;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, " avx512f"))
            avx512 = true;
    if (f)
        fclose(f);
    if (avx512) {
        cr_assert(strstr(s, "zmm"), "no zmm register in the assembly");
        cr_assert(strstr(s, "vfmadd231ps\t%zmm"), "no 16-wide FMA in the assembly");
    }
    cr_assert(strstr(s, "vfmadd"), "no fused multiply-add in the assembly");
    free(s);
    cgt_free(&t);
}

// The generated header compiles as C99 and C++ without warnings, and a
// program using it links against the object and the runtime.
Test(cg, header_compiles_as_c_and_cxx) {
    CgT t;
    cgt_build_as(&t, mnist_src, EMIT_OBJ, "digits.o");
    char *h = slurp(nn_format(&t.c.arena, "%s/digits.h", t.dir));
    cr_assert(strstr(h, "#define DIGITS_INPUT_SIZE  784"), "%s", h);
    cr_assert(strstr(h, "#define DIGITS_PARAM_COUNT 101770"));
    cr_assert(strstr(h, "#define DIGITS_PARAM_H_W_OFFSET 0"));
    cr_assert(strstr(h, "#define DIGITS_PARAM_H_W_SHAPE {128, 784}"));
    cr_assert(strstr(h, "#define DIGITS_PARAM_Z_B_OFFSET 101760"));
    cr_assert(strstr(h, "DIGITS_SCRATCH_FIXED_BYTES"));
    cr_assert(strstr(h, "float digits_train_step(digits *m, const float *x, const float *y, size_t batch);"));
    free(h);
    const char *prog = "#include \"digits.h\"\n"
                       "int main(void) {\n"
                       "    static const int shape[] = DIGITS_PARAM_H_W_SHAPE;\n"
                       "    static float x[2 * DIGITS_INPUT_SIZE], y[2 * DIGITS_TARGET_SIZE], out[2 * DIGITS_OUTPUT_SIZE];\n"
                       "    digits *m = digits_create(42);\n"
                       "    if (!m || shape[0] != 128) return 1;\n"
                       "    y[3] = 1; y[DIGITS_TARGET_SIZE + 7] = 1;\n"
                       "    float l0 = digits_loss(m, x, y, 2);\n"
                       "    for (int i = 0; i < 20; i++) digits_train_step(m, x, y, 2);\n"
                       "    digits_predict(m, x, out, 2);\n"
                       "    float l1 = digits_loss(m, x, y, 2);\n"
                       "    digits_destroy(m);\n"
                       "    return l1 < l0 && out[3] > 0.0f ? 0 : 2;\n"
                       "}\n";
    FILE *f = fopen(nn_format(&t.c.arena, "%s/app.c", t.dir), "w");
    fputs(prog, f);
    fclose(f);
    f = fopen(nn_format(&t.c.arena, "%s/app.cc", t.dir), "w");
    fputs(prog, f);
    fclose(f);
    cr_assert_eq(run(nn_format(&t.c.arena, "cd %s && gcc -std=c99 -Wall -Wextra -pedantic -Werror -c app.c", t.dir)), 0);
    cr_assert_eq(run(nn_format(&t.c.arena, "cd %s && g++ -Wall -Wextra -pedantic -Werror -c app.cc -o appxx.o", t.dir)), 0);
    cr_assert_eq(run(nn_format(&t.c.arena, "cd %s && cc %s app.o digits.o %s -lcjson -lz -lm -lpthread -o app && ./app",
                               t.dir, SANITIZE_FLAGS, NNC_BINARY_DIR "/libnnrt.a")), 0);
    cgt_free(&t);
}

Test(cg, emit_llvm_text) {
    CgT t;
    cgt_build_as(&t, mnist_src, EMIT_LLVM, "m.ll");
    char *s = slurp(t.so);
    cr_assert(strstr(s, "define float @digits_train_step("));
    cr_assert(strstr(s, "define internal float @digits_grad_kernel("));
    cr_assert(strstr(s, "@nnc_model_entry()"));
    free(s);
    cgt_free(&t);
}

// The library exports its API and nothing else: the kernels stay internal,
// so that two models loaded in one process cannot clash.
Test(cg, library_exports_only_the_api) {
    CgT t;
    cgt_build(&t, mnist_src);
    static const char *hidden[] = { "digits_train_kernel", "digits_grad_kernel", "digits_predict_kernel",
                                    "digits_apply_kernel" };
    for (size_t i = 0; i < NN_COUNTOF(hidden); i++)
        cr_assert_null(dlsym(t.dl, hidden[i]), "%s is exported", hidden[i]);
    static const char *api[] = { "nnc_model_entry", "digits_create", "digits_train_step", "digits_predict" };
    for (size_t i = 0; i < NN_COUNTOF(api); i++)
        cr_assert_not_null(dlsym(t.dl, api[i]), "%s is missing", api[i]);
    cgt_free(&t);
}

// A library's kernels are optimised and compiled in two processes
// (cg_fork.c): the library computes the same bits as one compiled in one
// process, and it is a different file (else it was not split at all).
Test(cg, library_from_two_processes_computes_the_same_bits) {
    CgT one, two;
    cgt_build(&two, mnist_src);
    cgt_one_process = true;
    cgt_build(&one, mnist_src);
    cgt_one_process = false;
    size_t n_one, n_two;
    char *so_one = test_read_file(one.so, &n_one), *so_two = test_read_file(two.so, &n_two);
    cr_assert(so_one && so_two);
    cr_assert(n_one != n_two || memcmp(so_one, so_two, n_one) != 0, "the library was not split");
    free(so_one), free(so_two);
    const nnc_model_info *a = &one.d->info, *b = &two.d->info;
    void *ma = a->create(3), *mb = b->create(3);
    size_t np = a->param_count, batch = 7;
    float *x = cgt_random(batch * 784, 0, 1), *y = calloc(batch * 10, sizeof(float));
    float *pa = calloc(batch * 10, sizeof(float)), *pb = calloc(batch * 10, sizeof(float));
    for (size_t i = 0; i < batch; i++)
        y[i * 10 + i % 10] = 1;
    for (int step = 0; step < 5; step++) {
        float la = a->train_step(ma, x, y, batch), lb = b->train_step(mb, x, y, batch);
        cr_assert_eq(memcmp(&la, &lb, sizeof la), 0, "step %d: loss %g vs %g", step, (double)la, (double)lb);
        cr_assert_arr_eq(a->params(ma), b->params(mb), np * sizeof(float), "step %d: parameters differ", step);
    }
    a->predict(ma, x, pa, batch);
    b->predict(mb, x, pb, batch);
    cr_assert_arr_eq(pa, pb, batch * 10 * sizeof(float));
    a->destroy(ma), b->destroy(mb);
    free(x), free(y), free(pa), free(pb);
    cgt_free(&one);
    cgt_free(&two);
}

// The API through the runtime: train_step equals grad then apply (to float rounding).
Test(cg, train_step_equals_grad_then_apply) {
    CgT t;
    cgt_build(&t, "model ad { input x[6]; target y[3];\n"
                  "h = dense(x, 5, tanh); z = dense(h, 3);\n"
                  "output z; loss mse(z, y); train adam(lr = 0.01, clip = 1.0); }");
    const nnc_model_info *info = &t.d->info;
    void *a = info->create(7), *b = info->create(7);
    cr_assert(a && b);
    size_t np = info->param_count;
    cr_assert_arr_eq(info->params(a), info->params(b), np * sizeof(float));
    float *x = cgt_random(4 * 6, -1, 1), *y = cgt_random(4 * 3, 0, 1), *g = calloc(np, sizeof(float));
    for (int step = 0; step < 3; step++) {
        float la = info->train_step(a, x, y, 4);
        float lb = info->grad(b, x, y, 4, g);
        info->apply(b, g);
        cr_assert_eq(la, lb);
        const float *pa = info->params(a), *pb = info->params(b);
        for (size_t i = 0; i < np; i++)
            cr_assert(fabsf(pa[i] - pb[i]) <= 1e-6f * fmaxf(1.0f, fabsf(pa[i])), "step %d param %zu: %g vs %g",
                      step, i, (double)pa[i], (double)pb[i]);
    }
    float l = info->loss(a, x, y, 4);
    cr_assert(isfinite(l));
    info->destroy(a);
    info->destroy(b);
    free(x), free(y), free(g);
    cgt_free(&t);
}

Test(cg, scratch_sizes_match_the_descriptor) {
    CgT t;
    cgt_build(&t, mnist_src);
    size_t fixed, per;
    cg_scratch_sizes(&t.c, t.m, &fixed, &per);
    cr_assert_eq(fixed, t.d->scratch_fixed);
    cr_assert_eq(per, t.d->scratch_per_sample);
    // The hidden layer's activations are kept per sample. grad writes the gradients in place
    // (test_cg_plan.c); the train kernel keeps at most one buffer per weight's dW.
    cr_assert_geq(per, 128 * sizeof(float));
    cr_assert_lt(fixed, 2 * 101770 * sizeof(float));
    cgt_free(&t);
}

// --target-cpu: a CPU without AVX-512 gets no zmm register, and the code still agrees.
Test(cg, target_cpu_without_avx512) {
    CgT t;
    cgt_target_cpu = "x86-64-v3";
    cgt_build_as(&t, mnist_src, EMIT_ASM, "m.s");
    char *s = slurp(t.so);
    cr_assert_null(strstr(s, "zmm"));
    cr_assert(strstr(s, "ymm"), "AVX2 code expected");
    free(s);
    cgt_free(&t);
    cgt_build(&t, mnist_src);
    cgt_compare(&t, 5, 0.0f, 1.0f);
    cgt_free(&t);
    cgt_target_cpu = NULL;
}
