// The nnc command line (ABI.md §1): usage errors exit 2, unreadable files 1.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_run.h"

typedef struct Run {
    int   status;
    char *out, *err;
} Run;

static Run run(const char *a1, const char *a2, const char *a3) {
    Run r;
    char *argv[] = { (char *)test_nnc_path(), (char *)a1, (char *)a2, (char *)a3, NULL };
    r.status = test_run(NULL, argv, &r.out, &r.err);
    return r;
}

#define EXAMPLE NNC_SOURCE_DIR "/examples/seed.nn"

Test(driver, version_and_help) {
    Run r = run("--version", NULL, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(!strncmp(r.out, "nnc ", 4), "%s", r.out);
    r = run("--help", NULL, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "--emit=KIND"), "%s", r.out);
    cr_assert(strstr(r.out, "nnc check"), "%s", r.out);
}

Test(driver, unknown_option_is_a_usage_error) {
    Run r = run(EXAMPLE, "--foo", NULL);
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.err, "nnc: error: unknown option '--foo'\nTry 'nnc --help' for more information.\n");
}

Test(driver, usage_errors) {
    struct { const char *a1, *a2, *a3, *msg; } t[] = {
        { NULL, NULL, NULL, "nnc: error: no input file\n" },
        { "--emit=asm", EXAMPLE, NULL, "unknown --emit kind 'asm'; valid kinds are ir, grad, llvm, dot" },
        { EXAMPLE, "-o", NULL, "option '-o' needs a file name" },
        { EXAMPLE, "-O7", NULL, "unknown optimisation level '-O7'" },
        { EXAMPLE, "-j", "x", "'-j' expects a number of threads" },
        { EXAMPLE, EXAMPLE, NULL, "more than one input file" },
        { EXAMPLE, "-c", "--emit=ir", "'-c' and '--emit' cannot be used together" },
        { "check", NULL, NULL, "'nnc check' needs an input file" },
        { "check", EXAMPLE, "--bogus", "unknown option '--bogus' for 'nnc check'" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        Run r = run(t[i].a1, t[i].a2, t[i].a3);
        cr_assert_eq(r.status, 2, "case %zu: status %d: %s", i, r.status, r.err);
        cr_assert(strstr(r.err, t[i].msg), "case %zu: want '%s', got '%s'", i, t[i].msg, r.err);
        cr_assert(strstr(r.err, "Try 'nnc --help'"), "case %zu: %s", i, r.err);
    }
}

Test(driver, unreadable_file) {
    Run r = run("/nonexistent/model.nn", "--emit=ir", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "nnc: error: cannot open '/nonexistent/model.nn': No such file or directory\n");
    r = run(NNC_SOURCE_DIR, "--emit=ir", NULL);     // a directory
    cr_assert_eq(r.status, 1);
    cr_assert(!strncmp(r.err, "nnc: error: cannot open '", 25), "%s", r.err);
}

Test(driver, emit_ir_to_stdout_and_file) {
    Run r = run(EXAMPLE, "--emit=ir", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(!strncmp(r.out, "model seed\n", 11), "%s", r.out);
    cr_assert(strstr(r.out, "= param h1.W : [3,2]\n"), "%s", r.out);
    cr_assert_str_eq(r.err, "");
    char path[] = "/tmp/nnc-cli-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    char *argv[] = { (char *)test_nnc_path(), EXAMPLE, "--emit=ir", "-o", path, NULL };
    char *out, *err;
    int status = test_run(NULL, argv, &out, &err);
    cr_assert_eq(status, 0, "%s", err);
    cr_assert_str_eq(out, "");
    FILE *f = fopen(path, "r");
    char buf[32] = "";
    cr_assert(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf, "model seed\n");
    fclose(f);
    remove(path);
}

Test(driver, errors_exit_one_with_location) {
    char path[] = "/tmp/nnc-cli-XXXXXX.nn";
    int fd = mkstemps(path, 3);
    cr_assert_geq(fd, 0);
    const char *src = "model m {\n    input x[3];\n    output x @ x @ x;\n    loss sum(x);\n    train sgd(lr = 1);\n}\n";
    cr_assert_eq(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    Run r = run(path, "--emit=ir", NULL);
    cr_assert_eq(r.status, 1);
    char want[512];
    snprintf(want, sizeof want, "%s:3:18: error: operands of '@' must be vectors or matrices: [] @ [3]\n"
             "    output x @ x @ x;\n                 ^\n", path);
    cr_assert_str_eq(r.err, want);
    cr_assert_str_eq(r.out, "");
    remove(path);
}

// Started with SIGCHLD ignored (inherited through exec), nnc still waits for
// the processes it starts (the linker, its second code-generating process):
// it sets SIGCHLD back to the default.
Test(driver, compiles_when_started_with_sigchld_ignored) {
    char dir[] = "/tmp/nnc-sigchld-XXXXXX";
    cr_assert(mkdtemp(dir));
    char so[64];
    snprintf(so, sizeof so, "%s/m.so", dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        signal(SIGCHLD, SIG_IGN);
        freopen("/dev/null", "w", stderr);
        execl(test_nnc_path(), "nnc", NNC_SOURCE_DIR "/examples/fashion.nn", "-o", so, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nnc failed (status %d)", status);
    cr_assert_eq(access(so, R_OK), 0);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
