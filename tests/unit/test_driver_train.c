// test_driver_train.c: the pieces of `nnc train` that need no model: the shuffle, the
// training state stored in a checkpoint's metadata, the loss trace, the command line.
// The train sources are compiled into this test (they belong to the nnc executable).
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../compiler/train.c"
#include "../../compiler/train_loop.c"
#include "../../compiler/train_plot.c"

// A minimal safetensors file: header `json` (unpadded) and 8 data bytes 0..7.
static void write_st(const char *path, const char *json) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    uint64_t n = strlen(json);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(json, 1, n, f);
    for (unsigned char b = 0; b < 8; b++) fputc(b, f);
    fclose(f);
}

// Reads back the header (NUL-terminated) and checks the data bytes are still 0..7.
static char *read_st(const char *path, uint64_t *header_len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    unsigned char len8[8];
    cr_assert_eq(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    char *h = calloc(1, n + 1);
    cr_assert_eq(fread(h, 1, n, f), n);
    unsigned char data[9];
    cr_assert_eq(fread(data, 1, 9, f), 8, "the data must follow the header unchanged");
    for (unsigned char b = 0; b < 8; b++) cr_assert_eq(data[b], b);
    fclose(f);
    *header_len = n;
    return h;
}

static char tmp_path[64];
static void make_tmp(void) {
    strcpy(tmp_path, "/tmp/nnc-train-test-XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert(fd >= 0);
    close(fd);
}
static void remove_tmp(void) { unlink(tmp_path); }

Test(driver_train, shuffle_is_a_permutation) {
    uint32_t perm[1000];
    int seen[1000] = { 0 };
    train_shuffle(perm, 1000, 42, 3);
    for (int i = 0; i < 1000; i++) seen[perm[i]]++;
    for (int i = 0; i < 1000; i++) cr_assert_eq(seen[i], 1, "index %d appears %d times", i, seen[i]);
}

Test(driver_train, shuffle_depends_only_on_seed_and_epoch) {
    uint32_t a[500], b[500], c[500], d[500];
    train_shuffle(a, 500, 7, 2);
    train_shuffle(b, 500, 7, 2);
    train_shuffle(c, 500, 7, 3);
    train_shuffle(d, 500, 8, 2);
    cr_assert_arr_eq(a, b, sizeof a);
    cr_assert(memcmp(a, c, sizeof a) != 0, "epochs 2 and 3 have the same order");
    cr_assert(memcmp(a, d, sizeof a) != 0, "seeds 7 and 8 have the same order");
}

Test(driver_train, shuffle_of_one_and_zero_samples) {
    uint32_t p[1] = { 99 };
    train_shuffle(p, 1, 1, 0);
    cr_assert_eq(p[0], 0);
    train_shuffle(p, 0, 1, 0);   // nothing to do, no crash
}

Test(driver_train, meta_write_adds_metadata_to_a_header_without_it, .init = make_tmp, .fini = remove_tmp) {
    write_st(tmp_path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    char err[256];
    cr_assert(train_meta_write(tmp_path, "nnc.train", "v1 epoch=2", err, sizeof err), "%s", err);
    uint64_t n;
    char *h = read_st(tmp_path, &n);
    cr_assert_eq(n % 8, 0, "header of %llu bytes is not padded to 8", (unsigned long long)n);
    cr_assert(strstr(h, "{\"__metadata__\":{\"nnc.train\":\"v1 epoch=2\"},\"w\":{"), "got: %s", h);
    free(h);
    Arena a = { 0 };
    char *v = train_meta_read(&a, tmp_path, "nnc.train");
    cr_assert_str_eq(v, "v1 epoch=2");
    cr_assert_null(train_meta_read(&a, tmp_path, "other"));
    nn_arena_free(&a);
}

Test(driver_train, meta_write_replaces_an_old_value, .init = make_tmp, .fini = remove_tmp) {
    write_st(tmp_path, "{\"__metadata__\":{\"model\":\"m\",\"step\":\"3\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ");
    char err[256];
    cr_assert(train_meta_write(tmp_path, "nnc.train", "first", err, sizeof err), "%s", err);
    cr_assert(train_meta_write(tmp_path, "nnc.train", "second", err, sizeof err), "%s", err);
    uint64_t n;
    char *h = read_st(tmp_path, &n);
    cr_assert_eq(n % 8, 0);
    cr_assert(strstr(h, "{\"__metadata__\":{\"nnc.train\":\"second\",\"model\":\"m\",\"step\":\"3\"},"), "got: %s", h);
    cr_assert_null(strstr(h, "first"), "the old value is still there: %s", h);
    free(h);
}

Test(driver_train, meta_write_replaces_the_last_entry, .init = make_tmp, .fini = remove_tmp) {
    write_st(tmp_path, "{\"__metadata__\":{\"model\":\"m\",\"nnc.train\":\"old\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    char err[256];
    cr_assert(train_meta_write(tmp_path, "nnc.train", "new", err, sizeof err), "%s", err);
    uint64_t n;
    char *h = read_st(tmp_path, &n);
    cr_assert(strstr(h, "{\"__metadata__\":{\"nnc.train\":\"new\",\"model\":\"m\"},\"w\""), "got: %s", h);
    free(h);
}

Test(driver_train, meta_write_refuses_a_file_that_is_not_safetensors, .init = make_tmp, .fini = remove_tmp) {
    FILE *f = fopen(tmp_path, "w");
    fputs("hello", f);
    fclose(f);
    char err[256] = "";
    cr_assert_not(train_meta_write(tmp_path, "k", "v", err, sizeof err));
    cr_assert(strstr(err, "is not a safetensors file"), "got: %s", err);
}

Test(driver_train, state_round_trips_through_its_text) {
    TrainRun r = { 0 };
    r.state = (TrainState){ .epoch = 3, .batch_index = 17, .seed = 12345678901234ull, .batch = 64,
                            .n_train = 60000, .lr = 0.001f, .has_lr = true, .epoch_loss = 12.5,
                            .epoch_samples = 1088 };
    EpochStats e1 = { 1, 0.5, 0.8, 0.45, 0.81, 1.5 }, e2 = { 2, 0.25, NAN, NAN, NAN, 2.0 };
    train_add_epoch(&r, &e1);
    train_add_epoch(&r, &e2);
    char *text = train_state_encode(&r);
    cr_assert_null(strpbrk(text, "\"\\"), "the text must need no JSON escaping: %s", text);

    TrainRun back = { 0 };
    cr_assert(train_state_decode(&back, text), "cannot decode: %s", text);
    cr_assert_eq(back.state.epoch, 3);
    cr_assert_eq(back.state.batch_index, 17);
    cr_assert_eq(back.state.seed, 12345678901234ull);
    cr_assert_eq(back.state.batch, 64);
    cr_assert_eq(back.state.n_train, 60000);
    cr_assert(back.state.has_lr);
    cr_assert_float_eq(back.state.lr, 0.001f, 1e-9);
    cr_assert_float_eq(back.state.epoch_loss, 12.5, 1e-12);
    cr_assert_eq(back.state.epoch_samples, 1088);
    cr_assert_eq(back.n_history, 2);
    cr_assert_float_eq(back.history[0].test_acc, 0.81, 1e-6);
    cr_assert(isnan(back.history[1].train_acc));
    cr_assert_float_eq(back.history[1].train_loss, 0.25, 1e-6);
    nn_arena_free(&r.arena);
    nn_arena_free(&back.arena);
}

Test(driver_train, state_decode_refuses_garbage) {
    TrainRun r = { 0 };
    cr_assert_not(train_state_decode(&r, "v2 epoch=1"));
    cr_assert_not(train_state_decode(&r, "v1 epoch=x batch=1"));
    cr_assert_not(train_state_decode(&r, "v1 epoch=1"));   // no batch size
    cr_assert(train_state_decode(&r, "v1 epoch=1 batch=4 future=thing"));
    nn_arena_free(&r.arena);
}

Test(driver_train, loss_trace_stays_bounded_and_averages) {
    LossTrace *t = calloc(1, sizeof *t);
    for (int i = 0; i < 10000; i++) trace_add(t, i, 2.0);
    cr_assert_leq(t->n, TRACE_CAP);
    cr_assert_geq(t->n, TRACE_CAP / 2);
    cr_assert_eq(t->stride & (t->stride - 1), 0, "stride %lld is not a power of two", (long long)t->stride);
    for (size_t i = 0; i < t->n; i++) cr_assert_float_eq(t->loss[i], 2.0, 1e-12);
    for (size_t i = 1; i < t->n; i++) cr_assert_gt(t->pos[i], t->pos[i - 1]);
    free(t);
}

Test(driver_train, usage_errors_exit_2) {
    char *no_model[] = { "train", "--data", "csv:x.csv", NULL };
    char *no_data[] = { "train", "m.so", NULL };
    char *bad_epochs[] = { "train", "m.so", "--data", "csv:x", "--epochs", "ten", NULL };
    char *bad_batch[] = { "train", "m.so", "--data", "csv:x", "--batch=0", NULL };
    char *bad_lr[] = { "train", "m.so", "--data", "csv:x", "--lr", "-1", NULL };
    char *unknown[] = { "train", "m.so", "--data", "csv:x", "--epoch", "3", NULL };
    char *missing_value[] = { "train", "m.so", "--data", NULL };
    char *two_models[] = { "train", "a.so", "b.so", "--data", "csv:x", NULL };
    cr_assert_eq(nn_train_main(3, no_model), 2);
    cr_assert_eq(nn_train_main(2, no_data), 2);
    cr_assert_eq(nn_train_main(6, bad_epochs), 2);
    cr_assert_eq(nn_train_main(5, bad_batch), 2);
    cr_assert_eq(nn_train_main(6, bad_lr), 2);
    cr_assert_eq(nn_train_main(6, unknown), 2);
    cr_assert_eq(nn_train_main(3, missing_value), 2);
    cr_assert_eq(nn_train_main(5, two_models), 2);
}

Test(driver_train, a_missing_model_exits_1) {
    char *argv[] = { "train", "/nonexistent/m.so", "--data", "csv:x.csv", NULL };
    cr_assert_eq(nn_train_main(4, argv), 1);
}

Test(driver_train, help_exits_0) {
    char *argv[] = { "train", "--help", NULL };
    cr_assert_eq(nn_train_main(2, argv), 0);
}

// ---- the plot, on a synthetic run (no model: predict is y = 2x)

static void double_it(void *m, const float *x, float *out, size_t batch) {
    (void)m;
    for (size_t i = 0; i < batch; i++) out[i] = 2 * x[i];
}

static char *plot_text(TrainRun *r) {
    char path[] = "/tmp/nnc-plot-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert(train_plot(r, path));
    FILE *f = fopen(path, "r");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    unlink(path);
    return buf;
}

static size_t count(const char *s, const char *what) {
    size_t n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

Test(driver_train, plot_of_a_classifier_has_loss_and_accuracy_panels) {
    nnc_model_info info = { .abi_version = 1, .name = "m<&>", .input_size = 4, .target_size = 3,
                            .output_size = 3, .param_count = 15 };
    TrainRun r = { .info = &info, .classify = true, .has_test = true };
    r.state = (TrainState){ .epoch = 3, .batch = 8, .seed = 1 };
    for (int e = 1; e <= 3; e++) {
        EpochStats s = { e, 1.0 / e, 0.5 + 0.1 * e, 1.2 / e, 0.45 + 0.1 * e, 1 };
        train_add_epoch(&r, &s);
    }
    for (int k = 1; k <= 300; k++) trace_add(&r.trace, k / 100.0, 2.0 / k);
    char *svg = plot_text(&r);
    cr_assert(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    cr_assert(strstr(svg, ">Training m&lt;&amp;&gt;</text>"), "the model name must be escaped");
    cr_assert(strstr(svg, ">Loss</text>") && strstr(svg, ">Accuracy</text>"));
    cr_assert(strstr(svg, "loss (log scale)"), "the trace spans 2 .. 0.0067: a log scale");
    cr_assert(strstr(svg, ">test accuracy</text>") && strstr(svg, ">train loss</text>"));
    cr_assert(strstr(svg, "final test accuracy 75.00%"));
    cr_assert_eq(count(svg, "<polyline"), 5);   // trace, train/test loss, train/test accuracy
    cr_assert(strstr(svg, "</svg>\n"));
    nn_arena_free(&r.arena);
}

Test(driver_train, plot_of_a_1d_model_draws_the_fitted_curve) {
    nnc_model_info info = { .abi_version = 1, .name = "curve", .input_size = 1, .target_size = 1,
                            .output_size = 1, .param_count = 49, .predict = double_it };
    float x[50], y[50];
    for (int i = 0; i < 50; i++) {
        x[i] = -1 + i / 24.5f;
        y[i] = 2 * x[i];
    }
    TrainRun r = { .info = &info };
    r.train = (TrainData){ "csv:c", 50, 1, 1, x, y, NULL };
    r.state = (TrainState){ .epoch = 1, .batch = 8, .seed = 1 };
    EpochStats s = { 1, 0.5, NAN, NAN, NAN, 1 };
    train_add_epoch(&r, &s);
    char *svg = plot_text(&r);
    cr_assert(strstr(svg, ">Fitted curve</text>"));
    cr_assert(strstr(svg, ">model prediction</text>") && strstr(svg, ">training data</text>"));
    cr_assert_null(strstr(svg, ">Accuracy</text>"));
    cr_assert_geq(count(svg, "<circle"), 50);
    nn_arena_free(&r.arena);
}
