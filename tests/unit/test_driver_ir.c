// Golden IR: `nnc FILE.nn --emit=ir` of every examples/*.nn and tests/ir/*.nn
// (lang_*.nn are the examples of LANGUAGE.md) against tests/ir/NAME.ir. Each
// must compile with status 0 and print exactly the stored IR. With
// NNC_UPDATE_GOLDEN=1 the .ir files are (re)written (review the diff).
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_run.h"

#define IR_DIR NNC_SOURCE_DIR "/tests/ir"

static int is_nn(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 3 && !strcmp(e->d_name + n - 3, ".nn");
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

// Checks every .nn of dir; returns the number of failures, counts the files.
static int check_dir(const char *dir, int *count) {
    struct dirent **list;
    int n = scandir(dir, &list, is_nn, by_name);
    if (n < 0) return 0;
    bool update = getenv("NNC_UPDATE_GOLDEN") && !strcmp(getenv("NNC_UPDATE_GOLDEN"), "1");
    int failures = 0;
    for (int i = 0; i < n; i++) {
        char path[1024], golden[1024];
        const char *name = list[i]->d_name;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        snprintf(golden, sizeof golden, "%s/%.*s.ir", IR_DIR, (int)(strlen(name) - 3), name);
        char *out_text, *err_text;
        char *argv[] = { (char *)test_nnc_path(), path, "--emit=ir", NULL };
        int status = test_run(NULL, argv, &out_text, &err_text);
        (*count)++;
        if (status != 0) {
            cr_log_error("%s: exit status %d\n%s", path, status, err_text);
            failures++;
        } else if (update) {
            FILE *f = fopen(golden, "wb");
            fputs(out_text, f);
            fclose(f);
        } else {
            char *want = test_read_file(golden, NULL);
            if (!want) {
                cr_log_error("%s: no golden %s (run with NNC_UPDATE_GOLDEN=1)", path, golden);
                failures++;
            } else if (strcmp(want, out_text)) {
                cr_log_error("%s: IR differs from %s\n--- actual\n%s---", path, golden, out_text);
                failures++;
            }
            free(want);
        }
        free(out_text);
        free(err_text);
        free(list[i]);
    }
    free(list);
    return failures;
}

Test(driver, ir_goldens_of_examples) {
    int count = 0;
    int failures = check_dir(NNC_SOURCE_DIR "/examples", &count);
    cr_expect_gt(count, 0);
    cr_expect_eq(failures, 0, "%d of %d examples differ from their golden IR", failures, count);
}

Test(driver, ir_goldens_of_language_examples) {
    int count = 0;
    int failures = check_dir(IR_DIR, &count);
    cr_expect_geq(count, 5);
    cr_expect_eq(failures, 0, "%d of %d tests/ir/*.nn differ from their golden IR", failures, count);
}
