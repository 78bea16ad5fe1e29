// Replays the libFuzzer corpora of the runtime's loaders (tests/fuzz/rt_*/: seeds and every
// input a fuzzer found crashing) through the same entry points as the fuzz targets, so a
// fixed crash stays fixed in the ordinary (and the ASan) build.
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NNC_FUZZ_NO_MAIN
#include "../fuzz/fuzz_rt_ckpt.c"
#include "../fuzz/fuzz_rt_csv.c"
#include "../fuzz/fuzz_rt_idx.c"
#include "../fuzz/fuzz_rt_npy.c"
#include "linear_model.h"

// Runs `one` on every file of tests/fuzz/<sub>; returns how many there were.
static int replay(const char *sub, int (*one)(const uint8_t *, size_t)) {
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/%s", NNC_SOURCE_DIR, sub);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no corpus %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s", path);
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        one(buf, len);
        n++;
    }
    closedir(d);
    return n;
}

Test(rt_fuzz, idx_corpus) { cr_assert_geq(replay("rt_idx", fuzz_rt_idx_one), 3); }
Test(rt_fuzz, csv_corpus) { cr_assert_geq(replay("rt_csv", fuzz_rt_csv_one), 3); }
Test(rt_fuzz, npy_corpus) { cr_assert_geq(replay("rt_npy", fuzz_rt_npy_one), 3); }
Test(rt_fuzz, ckpt_corpus) { cr_assert_geq(replay("rt_ckpt", fuzz_rt_ckpt_one), 1); }

// The seeds are good inputs: they must load, so the fuzzers start from deep paths.
Test(rt_fuzz, seeds_load) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fuzz/rt_ckpt/seed_linear.safetensors", NNC_SOURCE_DIR);
    nnrt_model *m = nnrt_create(nnrt_test_linear(), 3);
    cr_assert_eq(nnrt_load(m, path), NNC_OK, "%s", nnrt_last_error());
    nnrt_destroy(m);
}
