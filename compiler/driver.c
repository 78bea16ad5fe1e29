// driver.c: the `nnc` command line (ABI.md §1): options, subcommands, and the
// flat pipeline load -> parse -> sema -> (train step -> codegen).
//
//   nnc FILE [-o OUT] [-c] [--emit=ir|grad|llvm|dot] [--stats] [-O0..-O3]
//            [--header PATH] [--target-cpu CPU] [-j N] [-fno-prune] [--dump-after=PASS]
//   nnc check FILE [--seed S]
//   nnc train ...            (train.c)
//   nnc --version | --help
//
// Exit status: 0 success, 1 errors in the input, 2 usage errors. Usage errors
// are "nnc: error: ..." plus a hint to --help. Compilation errors come from the
// stages through c->diag. One setjmp (nn_compile) catches the fatal paths: the
// 21st error and out of memory; the arena owns everything, so nothing leaks.
#include "driver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sema.h"
#ifdef NNC_HAVE_BACKEND
#include "autodiff.h"
#include "cg.h"
#endif

static const char usage_text[] =
    "usage: nnc FILE.nn [options]         compile a model (default: FILE.so and FILE.h)\n"
    "       nnc check FILE.nn [--seed S]  compare the symbolic gradient with finite differences\n"
    "       nnc train MODEL.nn|MODEL.so --data SPEC [options]   train (see 'nnc train --help')\n"
    "\n"
    "options:\n"
    "  -o FILE             write the output to FILE\n"
    "  -c                  compile the model alone to an object file (+ its header)\n"
    "  --emit=KIND         ir: the forward IR; grad: the IR of the whole train step;\n"
    "                      llvm: LLVM IR text; dot: a Graphviz graph of the train step\n"
    "  --stats             node counts and FLOPs per sample (forward, backward before and after pruning)\n"
    "  -O0 .. -O3          optimisation level (default -O2)\n"
    "  --header PATH       where to write the C header (default: the output's name with .h)\n"
    "  --target-cpu CPU    the CPU to generate code for (default: the host)\n"
    "  -j N                default number of threads compiled in (0: the runtime decides)\n"
    "  -fno-prune          differentiate without the pruning passes\n"
    "  --dump-after=PASS   print the IR after the named pass to stderr\n"
    "  --version           print the version\n"
    "  --help              print this help\n";

NN_PRINTF(2, 3)
static int usage_error(FILE *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("nnc: error: ", err);
    vfprintf(err, fmt, ap);
    fputs("\nTry 'nnc --help' for more information.\n", err);
    va_end(ap);
    return NN_EXIT_USAGE;
}

// "dir/model.nn" -> "model" + ext (in the current directory, as cc -c does).
static char *derived_name(Arena *a, const char *input, const char *ext) {
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    size_t n = strlen(base);
    if (n > 3 && !strcmp(base + n - 3, ".nn")) n -= 3;
    return nn_format(a, "%.*s%s", (int)n, base, ext);
}

// "out/model.so" -> "out/model.h"
static char *header_name(Arena *a, const char *output) {
    const char *slash = strrchr(output, '/');
    const char *dot = strrchr(output, '.');
    size_t n = dot && (!slash || dot > slash) ? (size_t)(dot - output) : strlen(output);
    return nn_format(a, "%.*s.h", (int)n, output);
}

// ---- the fatal path

static NnCtx *current_ctx;   // the compilation nn_oom_handler jumps out of

static void oom_jump(void) {
    fputs("nnc: error: out of memory\n", current_ctx->diag.out ? current_ctx->diag.out : stderr);
    current_ctx->diag.n_errors++;
    longjmp(current_ctx->fatal, 1);
}

// Opens the output for text (stdout when there is no -o, or "-o -").
static FILE *open_text_output(NnCtx *c, FILE *out) {
    const char *path = c->opt.output;
    if (!path || !strcmp(path, "-")) return out;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(c->diag.out, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
        c->diag.n_errors++;
    }
    return f;
}

static int close_text_output(NnCtx *c, FILE *f, FILE *out) {
    if (f == out) return fflush(f) == 0 ? NN_EXIT_OK : NN_EXIT_INPUT;
    if (fclose(f) != 0) {
        fprintf(c->diag.out, "nnc: error: cannot write '%s': %s\n", c->opt.output, strerror(errno));
        return NN_EXIT_INPUT;
    }
    return NN_EXIT_OK;
}

#ifdef NNC_HAVE_BACKEND
// A deep copy of the forward model, kept for --stats while the train step
// rewrites the original.
static Model *clone_model(Arena *a, const Model *m) {
    Model *r = NN_NEW(a, Model);
    *r = *m;
    Graph *g = NN_NEW(a, Graph);
    *g = *m->g;
    g->nodes = nn_alloc_array(a, g->nodes_cap, sizeof(Node));
    memcpy(g->nodes, m->g->nodes, (size_t)m->g->n_nodes * sizeof(Node));
    g->slots = nn_alloc_array(a, g->slots_cap, sizeof(uint32_t));
    memcpy(g->slots, m->g->slots, (size_t)g->slots_cap * sizeof(uint32_t));
    r->g = g;
    r->params = nn_alloc_array(a, m->n_params + 1, sizeof(IrParam));
    memcpy(r->params, m->params, (size_t)m->n_params * sizeof(IrParam));
    return r;
}
#endif

int nn_compile(NnCtx *c, FILE *out) {
    current_ctx = c;
    void (*saved_oom)(void) = nn_oom_handler;
    nn_oom_handler = oom_jump;
    if (setjmp(c->fatal)) {
        nn_oom_handler = saved_oom;
        return NN_EXIT_INPUT;                      // main frees the arena
    }
    int status = NN_EXIT_INPUT;
    int file = nn_load_file(c, c->opt.input);
    Model *m = file >= 0 ? nn_frontend(c, file) : NULL;
    if (!m || c->diag.n_errors) goto done;

    if (c->opt.emit == EMIT_IR) {
        FILE *f = open_text_output(c, out);
        if (!f) goto done;
        ir_print(m, f, false);
        status = close_text_output(c, f, out);
        goto done;
    }
#ifdef NNC_HAVE_BACKEND
    {
        Model *forward = c->opt.stats ? clone_model(&c->arena, m) : NULL;
        if (!ir_build_train_step(c, m) || c->diag.n_errors) goto done;
        if (c->opt.stats) ir_print_stats(c, forward, m, out);
        switch (c->opt.emit) {
        case EMIT_NONE:
            status = NN_EXIT_OK;
            break;
        case EMIT_GRAD:
        case EMIT_DOT: {
            FILE *f = open_text_output(c, out);
            if (!f) goto done;
            if (c->opt.emit == EMIT_GRAD) ir_print(m, f, true);
            else ir_print_dot(m, f);
            status = close_text_output(c, f, out);
            break;
        }
        default:
            status = cg_compile(c, m);
            break;
        }
    }
#else
    fprintf(c->diag.out, "nnc: error: this build of nnc has no backend yet; only --emit=ir works\n");
#endif
done:
    nn_oom_handler = saved_oom;
    return c->diag.n_errors && status == NN_EXIT_OK ? NN_EXIT_INPUT : status;
}

static int check_file(const char *input, uint64_t seed, FILE *out, FILE *err);

// `nnc check FILE [--seed S]`
static int check_main(int argc, char **argv, FILE *out, FILE *err) {
    const char *input = NULL;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--seed") || !strncmp(a, "--seed=", 7)) {
            const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            if (!v || !*v) return usage_error(err, "option '--seed' needs a number");
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (*end || errno || *v == '-') return usage_error(err, "'--seed' expects a non-negative integer, got '%s'", v);
        } else if (a[0] == '-' && a[1]) {
            return usage_error(err, "unknown option '%s' for 'nnc check'", a);
        } else if (input) {
            return usage_error(err, "more than one input file ('%s' and '%s')", input, a);
        } else {
            input = a;
        }
    }
    if (!input) return usage_error(err, "'nnc check' needs an input file");
    return check_file(input, seed, out, err);
}

// The setjmp of `nnc check`, apart from the option loop whose variables it
// would otherwise clobber.
static int check_file(const char *input, uint64_t seed, FILE *out, FILE *err) {
    NnCtx c;
    nn_ctx_setup(&c, err);
    c.opt.input = input;
    int status = NN_EXIT_INPUT;
    current_ctx = &c;
    void (*saved_oom)(void) = nn_oom_handler;
    nn_oom_handler = oom_jump;
    if (!setjmp(c.fatal)) {
        int file = nn_load_file(&c, input);
        Model *m = file >= 0 ? nn_frontend(&c, file) : NULL;
        if (m && !c.diag.n_errors) {
#ifdef NNC_HAVE_BACKEND
            status = ir_check_gradients(&c, m, out, seed);
#else
            (void)out;
            (void)seed;
            fprintf(err, "nnc: error: this build of nnc has no gradient checker yet\n");
#endif
        }
    }
    nn_oom_handler = saved_oom;
    nn_ctx_free(&c);
    return status;
}

// The value of an option written "-x V", "-xV", "--opt V" or "--opt=V";
// NULL (and *i unchanged) if argv[*i] is not that option.
static const char *option_value(int argc, char **argv, int *i, const char *name, bool *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    *missing = false;
    if (strncmp(a, name, n)) return NULL;
    if (a[n] == '\0') {
        if (*i + 1 >= argc) { *missing = true; return NULL; }
        return argv[++*i];
    }
    if (name[1] == '-') return a[n] == '=' ? a + n + 1 : NULL;   // --opt=V
    return a + n;                                                 // -xV
}

// `nnc train` runs as nnc-train, the training driver without LLVM, when it is
// installed beside nnc: the process then holds the data set, not the 50 MB
// that loading libLLVM costs. Returns only when it is not there.
static void exec_train_driver(char **argv) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    strcpy(slash + 1, "nnc-train");
    argv[1] = exe;                // nnc-train's argv[0]; its options follow
    execv(exe, argv + 1);
    argv[1] = "train";
}

int nn_driver(int argc, char **argv, FILE *out, FILE *err) {
    if (argc < 2) return usage_error(err, "no input file");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version")) {
        fprintf(out, "nnc %s\n", NN_VERSION);
        return NN_EXIT_OK;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_text, out);
        return NN_EXIT_OK;
    }
    if (!strcmp(cmd, "check")) return check_main(argc - 1, argv + 1, out, err);
    if (!strcmp(cmd, "train")) {
        fflush(out);
        exec_train_driver(argv);
        return nn_train_main(argc - 1, argv + 1);
    }

    Options o = { .opt_level = 2 };
    bool has_c = false, has_emit = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        bool missing;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, out);
            return NN_EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            fprintf(out, "nnc %s\n", NN_VERSION);
            return NN_EXIT_OK;
        } else if (!strcmp(a, "-c")) {
            has_c = true;
        } else if (!strcmp(a, "--stats")) {
            o.stats = true;
        } else if (!strcmp(a, "-fno-prune")) {
            o.no_prune = true;
        } else if (!strncmp(a, "--emit=", 7) || !strcmp(a, "--emit")) {
            const char *k = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : "");
            if (!strcmp(k, "ir")) o.emit = EMIT_IR;
            else if (!strcmp(k, "grad")) o.emit = EMIT_GRAD;
            else if (!strcmp(k, "llvm")) o.emit = EMIT_LLVM;
            else if (!strcmp(k, "dot")) o.emit = EMIT_DOT;
            else return usage_error(err, "unknown --emit kind '%s'; valid kinds are ir, grad, llvm, dot", k);
            has_emit = true;
        } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && a[3] == '\0') {
            o.opt_level = a[2] - '0';
        } else if (a[0] == '-' && a[1] == 'O') {
            return usage_error(err, "unknown optimisation level '%s'; use -O0, -O1, -O2 or -O3", a);
        } else if ((v = option_value(argc, argv, &i, "-o", &missing)) || missing) {
            if (missing || !*v) return usage_error(err, "option '-o' needs a file name");
            o.output = v;
        } else if ((v = option_value(argc, argv, &i, "--header", &missing)) || missing) {
            if (missing || !*v) return usage_error(err, "option '--header' needs a path");
            o.header = v;
        } else if ((v = option_value(argc, argv, &i, "--target-cpu", &missing)) || missing) {
            if (missing || !*v) return usage_error(err, "option '--target-cpu' needs a CPU name");
            o.target_cpu = v;
        } else if ((v = option_value(argc, argv, &i, "--dump-after", &missing)) || missing) {
            if (missing || !*v) return usage_error(err, "option '--dump-after' needs a pass name");
            o.dump_after = v;
        } else if ((v = option_value(argc, argv, &i, "-j", &missing)) || missing) {
            char *end;
            if (missing || !*v) return usage_error(err, "option '-j' needs a number of threads");
            errno = 0;
            long n = strtol(v, &end, 10);
            if (*end || errno || n < 0 || n > 1024)
                return usage_error(err, "'-j' expects a number of threads from 0 to 1024, got '%s'", v);
            o.threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            return usage_error(err, "unknown option '%s'", a);
        } else if (o.input) {
            return usage_error(err, "more than one input file ('%s' and '%s')", o.input, a);
        } else {
            o.input = a;
        }
    }
    if (!o.input) return usage_error(err, "no input file");
    if (has_c && has_emit) return usage_error(err, "'-c' and '--emit' cannot be used together");
    if (has_c) o.emit = EMIT_OBJ;
    else if (!has_emit && !(o.stats && !o.output)) o.emit = EMIT_SO;   // --stats alone: no output file

    NnCtx c;
    nn_ctx_setup(&c, err);
    if (!o.output && (o.emit == EMIT_SO || o.emit == EMIT_OBJ))
        o.output = derived_name(&c.arena, o.input, o.emit == EMIT_SO ? ".so" : ".o");
    if (!o.header && (o.emit == EMIT_SO || o.emit == EMIT_OBJ))
        o.header = header_name(&c.arena, o.output);
#ifdef NNC_BUILD_RUNTIME
    o.runtime_lib = NNC_BUILD_RUNTIME;
#endif
    c.opt = o;
    int status = nn_compile(&c, out);
    nn_ctx_free(&c);
    return status;
}
