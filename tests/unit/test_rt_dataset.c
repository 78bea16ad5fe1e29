// Dataset loaders (runtime/dataset*.c): good files load the right values; every malformed
// file gives its own message. Small files are generated into a temporary directory.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "dataset.h"
#include "nnrt.h"

static char dir[64];
static char err[512];
static nnrt_dataset ds;

static void setup(void) {
    strcpy(dir, "/tmp/nnrt-ds-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    err[0] = 0;
}

static void teardown(void) {
    nnrt_dataset_free(&ds);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(rt_data, .init = setup, .fini = teardown);

// Writes bytes to dir/name (gzip-compressed if `gz`); returns the path (static, 4 slots).
static const char *put(const char *name, const void *b, size_t n, bool gz) {
    static char paths[4][160];
    static int slot;
    char *p = paths[slot++ % 4];
    snprintf(p, 160, "%s/%s", dir, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, b, (unsigned)n), (int)n);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(b, 1, n, f), n);
        fclose(f);
    }
    return p;
}

static int load(const char *spec, size_t in, size_t tgt) {
    return nnrt_dataset_load(spec, in, tgt, NNRT_SPLIT_TRAIN, &ds, err, sizeof err);
}

// Loads spec and expects code and a message containing `msg`.
static void expect(const char *spec, size_t in, size_t tgt, int code, const char *msg) {
    int rc = load(spec, in, tgt);
    cr_assert_eq(rc, code, "rc %d, message: %s", rc, err);
    cr_assert(strstr(err, msg), "message: %s\nexpected: %s", err, msg);
    cr_assert_eq(ds.n, 0);
    cr_assert_null(ds.x);
}

// ---- IDX: 3 images of 2x2, labels 2, 0, 1

static const unsigned char images[] = { 0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
                                        0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0 };
static const unsigned char labels[] = { 0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1 };

static char spec[512];

static const char *idx_spec(const void *im, size_t ni, const void *lb, size_t nl, bool gz) {
    const char *a = put(gz ? "im.gz" : "im", im, ni, gz);
    const char *b = put(gz ? "lb.gz" : "lb", lb, nl, gz);
    snprintf(spec, sizeof spec, "idx:%s,%s", a, b);
    return spec;
}

static void check_idx_values(void) {
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.input_size, 4);
    cr_assert_eq(ds.target_size, 3);
    cr_assert_eq(ds.x[0], 0.0f);
    cr_assert_eq(ds.x[1], 1.0f);
    cr_assert_float_eq(ds.x[2], 0.2f, 1e-7);
    cr_assert_float_eq(ds.x[7], 4.0f / 255.0f, 1e-9);
    const float want_y[9] = { 0, 0, 1, 1, 0, 0, 0, 1, 0 };
    cr_assert_arr_eq(ds.y, want_y, sizeof want_y);
    cr_assert_eq(ds.labels[0], 2);
    cr_assert_eq(ds.labels[1], 0);
    cr_assert_eq(ds.labels[2], 1);
}

Test(rt_data, idx_raw_loads) {
    cr_assert_eq(load(idx_spec(images, sizeof images, labels, sizeof labels, false), 4, 3), NNC_OK, "%s", err);
    check_idx_values();
}

Test(rt_data, idx_gzip_loads) {
    cr_assert_eq(load(idx_spec(images, sizeof images, labels, sizeof labels, true), 4, 3), NNC_OK, "%s", err);
    check_idx_values();
}

Test(rt_data, idx_bad_magic) {
    unsigned char b[sizeof images];
    memcpy(b, images, sizeof b);
    b[0] = 0x1f;
    expect(idx_spec(b, sizeof b, labels, sizeof labels, false), 4, 3, NNC_EFORMAT, "bad magic 0x1f000803, not an IDX file");
}

Test(rt_data, idx_wrong_element_type) {
    unsigned char b[sizeof images];
    memcpy(b, images, sizeof b);
    b[2] = 0x0d;
    expect(idx_spec(b, sizeof b, labels, sizeof labels, false), 4, 3, NNC_EFORMAT,
           "IDX element type 0x0d is not supported (only 0x08, unsigned bytes)");
}

Test(rt_data, idx_truncated_data) {
    expect(idx_spec(images, sizeof images - 1, labels, sizeof labels, false), 4, 3, NNC_EFORMAT,
           "im: truncated: the header says 12 bytes of data, the file has 11");
}

Test(rt_data, idx_truncated_header) {
    expect(idx_spec(images, 10, labels, sizeof labels, false), 4, 3, NNC_EFORMAT,
           "im: truncated: 10 bytes, the IDX header needs 16");
}

Test(rt_data, idx_trailing_bytes) {
    unsigned char b[sizeof labels + 2];
    memcpy(b, labels, sizeof labels);
    expect(idx_spec(images, sizeof images, b, sizeof b, false), 4, 3, NNC_EFORMAT,
           "lb: 2 bytes after the data that the header describes");
}

Test(rt_data, idx_counts_differ) {
    unsigned char b[] = { 0, 0, 8, 1, 0, 0, 0, 2, 2, 0 };
    expect(idx_spec(images, sizeof images, b, sizeof b, false), 4, 3, NNC_EFORMAT, "has 3 images but");
    cr_assert(strstr(err, "lb has 2 labels"), "%s", err);
}

Test(rt_data, idx_size_differs_from_model) {
    expect(idx_spec(images, sizeof images, labels, sizeof labels, false), 5, 3, NNC_EMISMATCH,
           "images are 2x2 = 4 values, the model's input has 5");
}

Test(rt_data, idx_label_out_of_range) {
    expect(idx_spec(images, sizeof images, labels, sizeof labels, false), 4, 2, NNC_EMISMATCH,
           "lb: sample 0: label 2 is outside the model's 2 classes");
}

Test(rt_data, idx_files_swapped) {
    expect(idx_spec(labels, sizeof labels, images, sizeof images, false), 4, 3, NNC_EFORMAT,
           "an images file has 2 or 3 dimensions (magic 0x00000803), this one has 1 (a labels file?)");
}

Test(rt_data, idx_truncated_gzip) {
    static unsigned char big[16 + 3000];
    memcpy(big, images, 16);
    big[7] = 250;                                   // 250 images of 2x2... then cut the gzip file
    const char *p = put("big.gz", big, 16 + 1000, true);
    FILE *f = fopen(p, "rb");
    unsigned char gz[4096];
    size_t n = fread(gz, 1, sizeof gz, f);
    fclose(f);
    const char *im = put("cut.gz", gz, n - 12, false);
    const char *lb = put("lb", labels, sizeof labels, false);
    snprintf(spec, sizeof spec, "idx:%s,%s", im, lb);
    expect(spec, 4, 3, NNC_EFORMAT, "cut.gz: truncated gzip stream");
}

Test(rt_data, idx_missing_file) {
    snprintf(spec, sizeof spec, "idx:%s/none,%s/none2", dir, dir);
    expect(spec, 4, 3, NNC_EIO, "none: cannot open: No such file or directory");
}

Test(rt_data, idx_without_labels_for_a_model_without_target) {
    const char *a = put("im", images, sizeof images, false);
    snprintf(spec, sizeof spec, "idx:%s", a);
    cr_assert_eq(load(spec, 4, 0), NNC_OK, "%s", err);
    cr_assert_eq(ds.n, 3);
    cr_assert_null(ds.y);
    nnrt_dataset_free(&ds);
    expect(spec, 4, 3, NNC_EINVAL, "expected idx:IMAGES,LABELS");
}

// ---- CSV

static const char *csv_spec(const char *text, const char *opts) {
    const char *p = put("d.csv", text, strlen(text), false);
    snprintf(spec, sizeof spec, "csv:%s%s", p, opts);
    return spec;
}

Test(rt_data, csv_with_label_and_header) {
    const char *t = "label,a,b\r\n2, 0.5,-1\r\n\r\n0,1e-3,  4\n";
    cr_assert_eq(load(csv_spec(t, ",label=0,header"), 2, 3), NNC_OK, "%s", err);
    cr_assert_eq(ds.n, 2);
    const float x[4] = { 0.5f, -1, 1e-3f, 4 }, y[6] = { 0, 0, 1, 1, 0, 0 };
    cr_assert_arr_eq(ds.x, x, sizeof x);
    cr_assert_arr_eq(ds.y, y, sizeof y);
    cr_assert_eq(ds.labels[0], 2);
}

Test(rt_data, csv_label_last) {
    cr_assert_eq(load(csv_spec("1,2,1\n3,4,0\n", ",label=last"), 2, 2), NNC_OK, "%s", err);
    const float x[4] = { 1, 2, 3, 4 }, y[4] = { 0, 1, 1, 0 };
    cr_assert_arr_eq(ds.x, x, sizeof x);
    cr_assert_arr_eq(ds.y, y, sizeof y);
}

Test(rt_data, csv_float_targets) {
    cr_assert_eq(load(csv_spec("1,2,0.25\n3,4,-0.5", ""), 2, 1), NNC_OK, "%s", err);
    cr_assert_eq(ds.n, 2);
    cr_assert_eq(ds.y[0], 0.25f);
    cr_assert_eq(ds.y[1], -0.5f);
    cr_assert_null(ds.labels);
}

Test(rt_data, csv_non_numeric_field) {
    expect(csv_spec("1,2,0\n3,abc,1\n", ",label=2"), 2, 2, NNC_EFORMAT, "d.csv:2:3: field 2 is not a number: 'abc'");
}

Test(rt_data, csv_nan_refused) {
    expect(csv_spec("1,nan,0\n", ",label=2"), 2, 2, NNC_EFORMAT, "d.csv:1:3: field 2 is not a number: 'nan'");
}

Test(rt_data, csv_wrong_field_count) {
    expect(csv_spec("1,2,0\n3,1\n", ",label=2"), 2, 2, NNC_EMISMATCH, "d.csv:2: 2 fields, expected 3 (2 inputs + 1 label)");
}

Test(rt_data, csv_label_not_integer) {
    expect(csv_spec("1,2,0.5\n", ",label=2"), 2, 2, NNC_EFORMAT, "d.csv:1:5: label 0.5 is not a class index");
}

Test(rt_data, csv_label_out_of_range) {
    expect(csv_spec("1,2,0\n1,2,3\n", ",label=2"), 2, 3, NNC_EMISMATCH, "d.csv:2:5: label 3 is outside the model's 3 classes");
}

Test(rt_data, csv_empty) {
    expect(csv_spec("a,b\n\n", ",header"), 1, 1, NNC_EFORMAT, "d.csv: no samples");
}

Test(rt_data, csv_bad_option) {
    expect(csv_spec("1,2\n", ",labels=1"), 1, 1, NNC_EINVAL, "csv: unknown option 'labels=1'");
    expect(csv_spec("1,2\n", ",label=x"), 1, 1, NNC_EINVAL, "csv: bad column in 'label=x'");
    expect(csv_spec("1,2\n", ",label=5"), 1, 1, NNC_EINVAL, "label=5 is past the 2 fields of a row");
}

// ---- NPY

// A .npy file: version 1.0 (or 2.0) header for descr and shape, then n bytes of data.
static size_t npy(unsigned char *out, int version, const char *descr, const char *shape, const char *order,
                  const void *data, size_t n) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, shape);
    size_t pre = version == 1 ? 10 : 12, total = pre + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)version;
    out[7] = 0;
    size_t hlen = (size_t)len + pad + 1;
    out[8] = (unsigned char)hlen;
    out[9] = (unsigned char)(hlen >> 8);
    if (version == 2) out[10] = out[11] = 0;
    memcpy(out + pre, dict, (size_t)len);
    memset(out + pre + len, ' ', pad);
    out[pre + hlen - 1] = '\n';
    memcpy(out + pre + hlen, data, n);
    return pre + hlen + n;
}

static unsigned char xb[1024], yb[1024];

static const char *npy_spec(size_t nx, size_t ny) {
    const char *a = put("x.npy", xb, nx, false);
    const char *b = put("y.npy", yb, ny, false);
    snprintf(spec, sizeof spec, "npy:%s,%s", a, b);
    return spec;
}

static const float xf[6] = { 1, 2, 3, 4, 5, 6 };
static const int64_t yl[3] = { 1, 0, 2 };

Test(rt_data, npy_f4_with_labels) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    cr_assert_eq(nx % 64, sizeof xf % 64);
    cr_assert_eq(load(npy_spec(nx, ny), 2, 3), NNC_OK, "%s", err);
    cr_assert_arr_eq(ds.x, xf, sizeof xf);
    const float y[9] = { 0, 1, 0, 1, 0, 0, 0, 0, 1 };
    cr_assert_arr_eq(ds.y, y, sizeof y);
    cr_assert_eq(ds.labels[2], 2);
}

Test(rt_data, npy_u1_images_and_float_targets_v2) {
    const unsigned char px[6] = { 0, 255, 51, 0, 0, 255 };
    const double t[6] = { 0.5, -1, 2, 3, 4, 5 };
    size_t nx = npy(xb, 2, "|u1", "(3, 1, 2)", "False", px, sizeof px);
    size_t ny = npy(yb, 2, "<f8", "(3, 2)", "False", t, sizeof t);
    cr_assert_eq(load(npy_spec(nx, ny), 2, 2), NNC_OK, "%s", err);
    cr_assert_eq(ds.x[1], 1.0f);
    cr_assert_float_eq(ds.x[2], 0.2f, 1e-7);
    cr_assert_eq(ds.y[0], 0.5f);
    cr_assert_eq(ds.y[5], 5.0f);
    cr_assert_null(ds.labels);
}

Test(rt_data, npy_bad_magic) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    xb[1] = 'X';
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: bad magic, not a .npy file");
}

Test(rt_data, npy_bad_version) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    xb[6] = 7;
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: .npy version 7.0 is not supported");
}

Test(rt_data, npy_wrong_dtype) {
    size_t nx = npy(xb, 1, ">f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: dtype '>f4' is not supported (<f4, <f8, |u1, <i4 or <i8)");
}

Test(rt_data, npy_fortran_order) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "True", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: Fortran-order arrays are not supported");
}

Test(rt_data, npy_truncated) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    expect(npy_spec(nx, ny - 3), 2, 3, NNC_EFORMAT, "y.npy: truncated: the shape needs 24 bytes of data, the file has 21");
}

Test(rt_data, npy_trailing_bytes) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    expect(npy_spec(nx + 4, ny), 2, 3, NNC_EFORMAT, "x.npy: 4 bytes after the data that the shape describes");
}

Test(rt_data, npy_size_differs_from_model) {
    size_t nx = npy(xb, 1, "<f4", "(2, 3)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(2,)", "False", yl, 16);
    expect(npy_spec(nx, ny), 2, 3, NNC_EMISMATCH, "x.npy: samples have 3 values, the model's input has 2");
}

Test(rt_data, npy_sample_counts_differ) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(2,)", "False", yl, 16);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "has 3 samples,");
}

Test(rt_data, npy_float_vector_targets_refused) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<f4", "(3,)", "False", xf, 12);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "y.npy: 1-D float targets, expected 1-D integer class indices or [n, 3] floats");
}

Test(rt_data, npy_target_width_differs) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    expect(npy_spec(nx, ny), 2, 3, NNC_EMISMATCH, "y.npy: targets have 2 values, the model's target has 3");
}

Test(rt_data, npy_non_finite_value) {
    float bad[6] = { 1, 2, 3, 4, 5, 6 };
    bad[3] = 1.0f / 0.0f;
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", bad, sizeof bad);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: sample 1 has a value that is not a finite float");
}

Test(rt_data, npy_header_lacks_shape) {
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i8", "(3,)", "False", yl, sizeof yl);
    char *s = memmem(xb, nx, "'shape'", 7);
    memcpy(s, "'shapf'", 7);
    expect(npy_spec(nx, ny), 2, 3, NNC_EFORMAT, "x.npy: unknown header key 'shapf'");
}

Test(rt_data, npy_negative_label) {
    const int32_t neg[3] = { 0, -1, 1 };
    size_t nx = npy(xb, 1, "<f4", "(3, 2)", "False", xf, sizeof xf);
    size_t ny = npy(yb, 1, "<i4", "(3,)", "False", neg, sizeof neg);
    expect(npy_spec(nx, ny), 2, 3, NNC_EMISMATCH, "y.npy: sample 1: label -1 is outside the model's 3 classes");
}

// numpy itself writes what we read.
Test(rt_data, npy_written_by_numpy) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import numpy as np; "
             "np.save('%s/x.npy', np.arange(12, dtype=np.float32).reshape(4, 3)); "
             "np.save('%s/y.npy', np.array([0, 1, 1, 0]))\" 2>/dev/null", dir, dir);
    if (system(cmd) != 0) cr_skip_test("no numpy");
    snprintf(spec, sizeof spec, "npy:%s/x.npy,%s/y.npy", dir, dir);
    cr_assert_eq(load(spec, 3, 2), NNC_OK, "%s", err);
    cr_assert_eq(ds.n, 4);
    cr_assert_eq(ds.x[11], 11.0f);
    cr_assert_eq(ds.labels[2], 1);
}

// ---- specs and the real data set

Test(rt_data, unknown_spec) {
    expect("mnist", 1, 1, NNC_EINVAL, "unknown dataset 'mnist'");
    expect("foo:bar", 1, 1, NNC_EINVAL, "unknown dataset 'foo:bar'");
    expect("fashion-mnist:valid", 784, 10, NNC_EINVAL, "fashion-mnist: unknown split 'valid' (train or test)");
}

Test(rt_data, fashion_mnist_missing_package_message) {
    setenv("NNRT_FASHION_MNIST_DIR", dir, 1);
    expect("fashion-mnist", 784, 10, NNC_EIO, "install Debian's dataset-fashion-mnist package");
    unsetenv("NNRT_FASHION_MNIST_DIR");
}

Test(rt_data, fashion_mnist_test_split) {
    FILE *f = fopen(NNRT_FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz", "rb");
    if (!f) cr_skip_test("dataset-fashion-mnist is not installed");
    fclose(f);
    cr_assert_eq(nnrt_dataset_load("fashion-mnist", 784, 10, NNRT_SPLIT_TEST, &ds, err, sizeof err), NNC_OK, "%s", err);
    cr_assert_eq(ds.n, 10000);
    cr_assert_eq(ds.labels[0], 9);                  // the first test image is an ankle boot
    cr_assert_eq(ds.y[9], 1.0f);
    float lo = 1, hi = 0;
    for (size_t i = 0; i < 784 * 100; i++) lo = ds.x[i] < lo ? ds.x[i] : lo, hi = ds.x[i] > hi ? ds.x[i] : hi;
    cr_assert_eq(lo, 0.0f);
    cr_assert_eq(hi, 1.0f);
    nnrt_dataset_free(&ds);
    expect("fashion-mnist:test", 100, 10, NNC_EMISMATCH, "images are 28x28 = 784 values, the model's input has 100");
}

// Failure injection: each allocation of a load fails in turn: ENOMEM, nothing leaked.
Test(rt_data, out_of_memory_at_every_allocation) {
    const char *s = idx_spec(images, sizeof images, labels, sizeof labels, false);
    int64_t base = nnrt_alloc_live();
    int k;
    for (k = 1; k < 50; k++) {
        nnrt_alloc_fail_at(k);
        int rc = load(s, 4, 3);
        nnrt_alloc_fail_at(0);
        if (rc == NNC_OK) break;
        cr_assert_eq(rc, NNC_ENOMEM, "%s", err);
        cr_assert_eq(nnrt_alloc_live(), base);
    }
    cr_assert_gt(k, 3);
    check_idx_values();
}
