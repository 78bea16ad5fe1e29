// Golden diagnostics: every tests/diag/NAME.nn ends with the exact stderr that
// `nnc NAME.nn --emit=ir` must print, as comments (so the file stays valid input):
//
//   # >>> stderr
//   # NAME.nn:5:12: error: inner dimensions differ in '@': [784] @ [10,3]
//   #     output x @ W;
//   #            ^
//   # <<<
//
// The exit status must be 1 when an error is expected, else 0. The built nnc
// ($NNC) runs in tests/diag, so file names print as NAME.nn. With
// NNC_UPDATE_GOLDEN=1 the blocks are rewritten from the actual output (review
// the diff before committing).
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support_run.h"

#define DIAG_DIR NNC_SOURCE_DIR "/tests/diag"
static const char block_open[] = "# >>> stderr\n";

// Where the expected block starts (at its "# >>> stderr" line), or NULL.
static char *find_block(char *text) {
    char *p = text, *found = NULL;
    while ((p = strstr(p, block_open))) {
        if (p == text || p[-1] == '\n') found = p;
        p += 1;
    }
    return found;
}

// The expected stderr: the block's lines without their "# " prefix.
static char *expected_of(const char *block) {
    const char *p = block + strlen(block_open);
    size_t cap = strlen(p) + 1, n = 0;
    char *out = malloc(cap);
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len == 5 && !strncmp(p, "# <<<", 5)) break;
        const char *body = p;
        if (len >= 2 && p[0] == '#' && p[1] == ' ') { body += 2; len -= 2; }
        else if (len >= 1 && p[0] == '#') { body += 1; len -= 1; }
        memcpy(out + n, body, len);
        n += len;
        out[n++] = '\n';
        p = eol ? eol + 1 : p + strlen(p);
    }
    out[n] = '\0';
    return out;
}

static char *run_nnc(const char *name, int *status) {
    char *out, *err;
    char *argv[] = { (char *)test_nnc_path(), (char *)name, "--emit=ir", NULL };
    *status = test_run(DIAG_DIR, argv, &out, &err);
    free(out);
    return err;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_nn(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 3 && !strcmp(e->d_name + n - 3, ".nn");
}

Test(driver, diag_goldens) {
    cr_assert_eq(chdir(DIAG_DIR), 0, "cannot enter %s", DIAG_DIR);
    struct dirent **list;
    int n = scandir(".", &list, is_nn, by_name);
    cr_assert_geq(n, 45, "only %d tests in %s", n, DIAG_DIR);   // issue 2 asks for 40 or more
    bool update = getenv("NNC_UPDATE_GOLDEN") && !strcmp(getenv("NNC_UPDATE_GOLDEN"), "1");
    int failures = 0;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t len;
        char *text = test_read_file(name, &len);
        cr_assert(text, "cannot read %s", name);
        int status;
        char *actual = run_nnc(name, &status);
        char *block = find_block(text);
        if (update) {
            size_t keep = block ? (size_t)(block - text) : len;
            FILE *f = fopen(name, "wb");
            fwrite(text, 1, keep, f);
            if (keep && text[keep - 1] != '\n') fputc('\n', f);
            fputs(block_open, f);
            for (char *p = actual; *p;) {
                char *eol = strchr(p, '\n');
                size_t l = eol ? (size_t)(eol - p) : strlen(p);
                fputs(l ? "# " : "#", f);
                fwrite(p, 1, l, f);
                fputc('\n', f);
                p = eol ? eol + 1 : p + l;
            }
            fputs("# <<<\n", f);
            fclose(f);
        } else if (!block) {
            cr_log_error("%s: no '# >>> stderr' block (run with NNC_UPDATE_GOLDEN=1)", name);
            failures++;
        } else {
            char *expected = expected_of(block);
            int want = strstr(expected, ": error: ") || !strncmp(expected, "nnc: error", 10) ? 1 : 0;
            if (strcmp(expected, actual)) {
                cr_log_error("%s: stderr differs\n--- expected\n%s--- actual\n%s---", name, expected, actual);
                failures++;
            } else if (status != want) {
                cr_log_error("%s: exit status %d, expected %d", name, status, want);
                failures++;
            }
            free(expected);
        }
        free(actual);
        free(text);
        free(list[i]);
    }
    free(list);
    cr_expect_eq(failures, 0, "%d of %d golden diagnostics differ", failures, n);
}
