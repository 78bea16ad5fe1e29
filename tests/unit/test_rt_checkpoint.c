// Checkpoints (runtime/checkpoint.c, ABI.md §3): save -> load is bit-exact; every damaged,
// truncated or foreign file is refused with the right code and leaves the model unchanged.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "nnrt.h"
#include "linear_model.h"

enum { B = 4, NP = 8, NS = 16 };

static char dir[64];
static char path[128];

static void setup(void) {
    strcpy(dir, "/tmp/nnrt-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
}

static void teardown(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(rt_ckpt, .init = setup, .fini = teardown);

static void make_batch(float *x, float *y) {
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < 3; i++) x[s * 3 + i] = (float)(s + i) / 3.0f - 0.5f;
        y[s * 2] = x[s * 3] - x[s * 3 + 2];
        y[s * 2 + 1] = 0.5f * x[s * 3 + 1];
    }
}

// A model of desc d after three training steps.
static nnrt_model *trained(const nnrt_desc *d, uint64_t seed) {
    nnrt_model *m = nnrt_create(d, seed);
    cr_assert_not_null(m);
    float x[B * 3], y[B * 2];
    make_batch(x, y);
    for (int i = 0; i < 3; i++) nnrt_train_step(m, x, y, B);
    nnrt_set_lr(m, 0.0125f);
    return m;
}

typedef struct Snapshot { float p[NP], s[NS]; int64_t step; float lr; } Snapshot;

static Snapshot snap(const nnrt_model *m) {
    Snapshot s;
    memcpy(s.p, m->params, sizeof s.p);
    memcpy(s.s, m->state, sizeof s.s);
    s.step = m->step;
    s.lr = m->lr;
    return s;
}

static void assert_same(const nnrt_model *m, const Snapshot *s) {
    cr_assert_eq(memcmp(m->params, s->p, sizeof s->p), 0, "params changed");
    cr_assert_eq(memcmp(m->state, s->s, sizeof s->s), 0, "state changed");
    cr_assert_eq(m->step, s->step);
    cr_assert_eq(m->lr, s->lr);
}

static unsigned char *read_all(const char *p, size_t *size) {
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*size + 1);
    cr_assert_eq(fread(b, 1, *size, f), *size);
    fclose(f);
    return b;
}

static void write_all(const char *p, const void *b, size_t n) {
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static int count_files(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));) n += e->d_name[0] != '.';
    closedir(dp);
    return n;
}

Test(rt_ckpt, save_load_bit_exact) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    cr_assert_eq(nnrt_load(b, path), NNC_OK, "%s", nnrt_last_error());
    Snapshot s = snap(a);
    assert_same(b, &s);
    cr_assert_eq(b->step, 3);
    cr_assert_eq(b->lr, 0.0125f);
    cr_assert_str_eq(nnrt_last_error(), "");
    // Training on from the loaded model equals training on from the original.
    float x[B * 3], y[B * 2];
    make_batch(x, y);
    cr_assert_eq(nnrt_train_step(a, x, y, B), nnrt_train_step(b, x, y, B));
    cr_assert_eq(memcmp(a->params, b->params, NP * sizeof(float)), 0);
    cr_assert_eq(count_files(dir), 1);          // no temporary file left
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, file_layout_is_safetensors) {
    nnrt_model *a = trained(nnrt_test_linear(), 1);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f[i] << (8 * i);
    cr_assert_eq((8 + hlen) % 8, 0);
    cr_assert_eq(size, 8 + hlen + (NP + NS) * 4);
    float w0;
    memcpy(&w0, f + 8 + hlen, 4);
    cr_assert_eq(w0, a->params[0]);
    f[8 + hlen] = 0;
    const char *h = (const char *)f + 8;
    cr_assert(strstr(h, "\"W\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"), "%s", h);
    cr_assert(strstr(h, "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}"), "%s", h);
    cr_assert(strstr(h, "\"b.v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[88,96]}"), "%s", h);
    cr_assert(strstr(h, "\"model\":\"linear\""), "%s", h);
    cr_assert(strstr(h, "\"step\":\"3\""), "%s", h);
    cr_assert(strstr(h, "\"lr\":\"0.0125\""), "%s", h);
    cr_assert(strstr(h, "\"signature\":\"linear(W[2,3]"), "%s", h);
    free(f);
    nnrt_destroy(a);
}

// Every proper prefix of a checkpoint is refused as EFORMAT, the model unchanged.
Test(rt_ckpt, truncated_at_every_length) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    Snapshot s = snap(b);
    for (size_t n = 0; n < size; n++) {
        cr_assert_eq(nnrt_load_buffer(b, f, n), NNC_EFORMAT, "length %zu", n);
        assert_same(b, &s);
    }
    write_all(path, f, size / 2);                  // and once through a file
    cr_assert_eq(nnrt_load(b, path), NNC_EFORMAT);
    cr_assert(strstr(nnrt_last_error(), "truncated") || strstr(nnrt_last_error(), "header length"),
              "%s", nnrt_last_error());
    assert_same(b, &s);
    free(f);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, trailing_bytes_refused) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    f = realloc(f, size + 4);
    memset(f + size, 0, 4);
    Snapshot s = snap(b);
    cr_assert_eq(nnrt_load_buffer(b, f, size + 4), NNC_EFORMAT);
    cr_assert(strstr(nnrt_last_error(), "trailing"), "%s", nnrt_last_error());
    assert_same(b, &s);
    free(f);
    nnrt_destroy(a), nnrt_destroy(b);
}

// Each bit of the length and of the header flipped in turn: refused (model unchanged), or,
// for a flip that still makes a valid checkpoint of this model, loaded with the saved data.
Test(rt_ckpt, bit_flipped_header_refused) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    size_t hend = size - (NP + NS) * 4;
    Snapshot s = snap(b), saved = snap(a);
    int n_refused = 0, n_total = 0;
    for (size_t i = 0; i < hend; i++)
        for (int bit = 0; bit < 8; bit++) {
            f[i] ^= (unsigned char)(1 << bit);
            int rc = nnrt_load_buffer(b, f, size);
            f[i] ^= (unsigned char)(1 << bit);
            n_total++;
            if (rc != NNC_OK) {
                cr_assert(rc == NNC_EFORMAT || rc == NNC_EMISMATCH, "byte %zu bit %d: %d", i, bit, rc);
                assert_same(b, &s);
                n_refused++;
            } else {                                // e.g. a digit of "lr" changed
                cr_assert_eq(memcmp(b->params, saved.p, sizeof saved.p), 0);
                nnrt_destroy(b);
                b = nnrt_create(nnrt_test_linear(), 2);
            }
        }
    cr_assert_gt(n_refused, n_total * 9 / 10, "%d of %d refused", n_refused, n_total);
    free(f);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, wrong_dtype_refused) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    char *p = memmem(f, size, "\"F32\"", 5);
    cr_assert_not_null(p);
    memcpy(p, "\"F16\"", 5);
    Snapshot s = snap(b);
    cr_assert_eq(nnrt_load_buffer(b, f, size), NNC_EFORMAT);
    cr_assert_str_eq(nnrt_last_error(), "tensor 'W' has dtype F16, only F32 is supported");
    assert_same(b, &s);
    free(f);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, not_json_refused) {
    nnrt_model *b = nnrt_create(nnrt_test_linear(), 2);
    Snapshot s = snap(b);
    unsigned char f[24] = { 16, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':', ' ', ' ', ' ',
                            ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ' };
    cr_assert_eq(nnrt_load_buffer(b, f, sizeof f), NNC_EFORMAT);
    cr_assert_str_eq(nnrt_last_error(), "the header is not valid JSON");
    memcpy(f, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
    cr_assert_eq(nnrt_load_buffer(b, f, sizeof f), NNC_EFORMAT);
    cr_assert(strstr(nnrt_last_error(), "bad header length"), "%s", nnrt_last_error());
    assert_same(b, &s);
    nnrt_destroy(b);
}

// Loads a checkpoint saved from desc `from` into a model of the test desc.
static void expect_mismatch(const nnrt_desc *from, const nnrt_desc *into, const char *msg) {
    nnrt_model *a = trained(from, 1), *b = nnrt_create(into, 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    Snapshot s = snap(b);
    cr_assert_eq(nnrt_load(b, path), NNC_EMISMATCH);
    cr_assert_str_eq(nnrt_last_error(), msg);
    assert_same(b, &s);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, missing_tensor_refused) {
    nnrt_desc d = *nnrt_test_linear();
    d.n_states = 2;                                  // only W.m and b.m
    expect_mismatch(&d, nnrt_test_linear(), "tensor 'W.v' of the model is missing from the checkpoint");
}

Test(rt_ckpt, extra_tensor_refused) {
    nnrt_desc d = *nnrt_test_linear();
    d.n_states = 2;
    expect_mismatch(nnrt_test_linear(), &d, "the checkpoint has a tensor 'W.v' that the model does not have");
}

Test(rt_ckpt, other_shape_refused) {
    nnrt_desc d = *nnrt_test_linear();
    nnc_tensor_info t[2] = { d.info.tensors[0], d.info.tensors[1] };
    t[0].shape[0] = 3, t[0].shape[1] = 2;            // same size, other shape
    d.info.tensors = t;
    expect_mismatch(&d, nnrt_test_linear(), "tensor 'W' has shape [3,2] in the checkpoint, [2,3] in the model");
}

Test(rt_ckpt, other_signature_refused) {
    nnrt_desc d = *nnrt_test_linear();
    d.signature = "linear(W[2,3],b[2]);loss=sum(abs(W@x+b-y));adam(0.9,0.999,1e-8)";
    nnrt_model *a = trained(&d, 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    Snapshot s = snap(b);
    cr_assert_eq(nnrt_load(b, path), NNC_EMISMATCH);
    cr_assert(strstr(nnrt_last_error(), "signature differs"), "%s", nnrt_last_error());
    assert_same(b, &s);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, other_model_name_refused) {
    nnrt_desc d = *nnrt_test_linear();
    d.info.name = "xor2";
    expect_mismatch(&d, nnrt_test_linear(), "the checkpoint is of model 'xor2', this model is 'linear'");
}

Test(rt_ckpt, missing_file_is_eio) {
    nnrt_model *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_load(b, "/nonexistent/x.safetensors"), NNC_EIO);
    cr_assert(strstr(nnrt_last_error(), "cannot open '/nonexistent/x.safetensors'"), "%s", nnrt_last_error());
    cr_assert_eq(nnrt_load(b, dir), NNC_EIO);        // a directory
    nnrt_destroy(b);
}

Test(rt_ckpt, unwritable_path_is_eio_and_leaves_no_temp) {
    nnrt_model *a = trained(nnrt_test_linear(), 1);
    char p[160];
    snprintf(p, sizeof p, "%s/no-such-dir/m.safetensors", dir);
    cr_assert_eq(nnrt_save(a, p), NNC_EIO);
    cr_assert(strstr(nnrt_last_error(), "cannot create"), "%s", nnrt_last_error());
    snprintf(p, sizeof p, "%s/target", dir);         // rename over a directory fails
    cr_assert_eq(mkdir(p, 0755), 0);
    cr_assert_eq(nnrt_save(a, p), NNC_EIO);
    cr_assert(strstr(nnrt_last_error(), "cannot write"), "%s", nnrt_last_error());
    cr_assert_eq(count_files(dir), 1);               // only the directory: no temporary file
    nnrt_destroy(a);
}

Test(rt_ckpt, save_replaces_atomically) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    write_all(path, "old", 3);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    cr_assert_eq(nnrt_load(b, path), NNC_OK);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, bad_arguments) {
    nnrt_model *a = nnrt_create(nnrt_test_linear(), 1);
    cr_assert_eq(nnrt_save(NULL, path), NNC_EINVAL);
    cr_assert_eq(nnrt_save(a, NULL), NNC_EINVAL);
    cr_assert_eq(nnrt_save(a, ""), NNC_EINVAL);
    cr_assert_eq(nnrt_load(NULL, path), NNC_EINVAL);
    cr_assert_eq(nnrt_load(a, NULL), NNC_EINVAL);
    nnrt_destroy(a);
}

// Failure injection on save and load: ENOMEM, nothing leaked, model unchanged, no file.
Test(rt_ckpt, out_of_memory_at_every_allocation) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    int64_t base = nnrt_alloc_live();
    int k;
    for (k = 1; k < 100; k++) {
        nnrt_alloc_fail_at(k);
        int rc = nnrt_save(a, path);
        nnrt_alloc_fail_at(0);
        cr_assert_eq(nnrt_alloc_live(), base);
        if (rc == NNC_OK) break;
        cr_assert_eq(rc, NNC_ENOMEM);
        cr_assert_eq(count_files(dir), 0);
    }
    cr_assert_gt(k, 1);
    Snapshot s = snap(b);
    for (k = 1; k < 100; k++) {
        nnrt_alloc_fail_at(k);
        int rc = nnrt_load(b, path);
        nnrt_alloc_fail_at(0);
        cr_assert_eq(nnrt_alloc_live(), base);
        if (rc == NNC_OK) break;
        cr_assert_eq(rc, NNC_ENOMEM);
        assert_same(b, &s);
    }
    cr_assert_gt(k, 1);
    nnrt_destroy(a), nnrt_destroy(b);
}

// Saves a trained model, replaces `from` by `to` (same length) in the file, and expects the
// load to be refused with `code` and `msg`, the model unchanged.
static void expect_edit_refused(const char *from, const char *to, int code, const char *msg) {
    nnrt_model *a = trained(nnrt_test_linear(), 1), *b = nnrt_create(nnrt_test_linear(), 2);
    cr_assert_eq(nnrt_save(a, path), NNC_OK);
    size_t size;
    unsigned char *f = read_all(path, &size);
    char *p = memmem(f, size, from, strlen(from));
    cr_assert_not_null(p, "no '%s' in the file", from);
    memcpy(p, to, strlen(to));
    Snapshot s = snap(b);
    cr_assert_eq(nnrt_load_buffer(b, f, size), code, "%s", nnrt_last_error());
    cr_assert_str_eq(nnrt_last_error(), msg);
    assert_same(b, &s);
    free(f);
    nnrt_destroy(a), nnrt_destroy(b);
}

Test(rt_ckpt, duplicate_tensor_refused) {
    expect_edit_refused("\"b\":", "\"W\":", NNC_EFORMAT, "tensor 'W' appears twice in the header");
}

Test(rt_ckpt, overlapping_offsets_refused) {
    expect_edit_refused("[24,32]", "[32,40]", NNC_EFORMAT,
                        "data of tensor 'b' starts at byte 32, expected 24 (a gap or an overlap)");
}

Test(rt_ckpt, bad_step_refused) {
    expect_edit_refused("\"step\":\"3\"", "\"step\":\"x\"", NNC_EFORMAT, "__metadata__ 'step' is missing or not a number");
}

Test(rt_ckpt, size_not_matching_shape_refused) {
    expect_edit_refused("\"shape\":[2],\"data_offsets\":[24,32]", "\"shape\":[3],\"data_offsets\":[24,32]", NNC_EFORMAT,
                        "tensor 'b' has 8 bytes of data, its shape needs 12");
}
