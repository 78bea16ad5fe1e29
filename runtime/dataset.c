// dataset.c: the dataset spec parser and what the loaders share (dataset.h): messages,
// allocation with overflow checks, one-hot labels, and reading a file through zlib (gzopen
// reads gzip-compressed and plain files alike).
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "dataset.h"
#include "nnrt.h"

int nnrt_ds_error(char *err, size_t err_size, int code, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

void nnrt_dataset_free(nnrt_dataset *d) {
    if (!d) return;
    nnrt_free(d->x);
    nnrt_free(d->y);
    nnrt_free(d->labels);
    memset(d, 0, sizeof *d);
}

int nnrt_ds_alloc(nnrt_dataset *d, size_t n, size_t input_size, size_t target_size, bool has_labels,
                  const char *name, char *err, size_t err_size) {
    memset(d, 0, sizeof *d);
    size_t nx, ny;
    if (__builtin_mul_overflow(n, input_size, &nx) || __builtin_mul_overflow(nx, sizeof(float), &nx) ||
        __builtin_mul_overflow(n, target_size, &ny) || __builtin_mul_overflow(ny, sizeof(float), &ny))
        return nnrt_ds_error(err, err_size, NNC_ENOMEM, "%s: %zu samples are too many for memory", name, n);
    d->n = n;
    d->input_size = input_size;
    d->target_size = target_size;
    d->x = nnrt_malloc(nx);
    d->y = target_size ? nnrt_malloc(ny) : NULL;
    d->labels = has_labels ? nnrt_malloc(n * sizeof(int32_t) + 1) : NULL;
    if (!d->x || (target_size && !d->y) || (has_labels && !d->labels)) {
        nnrt_dataset_free(d);
        return nnrt_ds_error(err, err_size, NNC_ENOMEM, "%s: out of memory for %zu samples", name, n);
    }
    return NNC_OK;
}

int nnrt_ds_set_label(nnrt_dataset *d, size_t s, int64_t label, const char *where, char *err, size_t err_size) {
    size_t t = d->target_size;
    size_t n_classes = t > 1 ? t : t == 1 ? 2 : (size_t)INT32_MAX;   // target_size 1: 0 or 1
    if (label < 0 || (uint64_t)label >= n_classes) {
        if (t == 0) return nnrt_ds_error(err, err_size, NNC_EFORMAT, "%s: label %lld is not a class index",
                                         where, (long long)label);
        return nnrt_ds_error(err, err_size, NNC_EMISMATCH, "%s: label %lld is outside the model's %zu classes",
                             where, (long long)label, n_classes);
    }
    if (d->labels) d->labels[s] = (int32_t)label;
    if (t == 1) {
        d->y[s] = (float)label;
    } else if (t > 1) {
        float *row = d->y + s * t;
        memset(row, 0, t * sizeof(float));
        row[label] = 1.0f;
    }
    return NNC_OK;
}

int nnrt_ds_read_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t err_size) {
    *buf = NULL;
    *len = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return nnrt_ds_error(err, err_size, NNC_EIO, "%s: cannot open: %s", path,
                                 errno ? strerror(errno) : "out of memory");
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = nnrt_malloc(cap);
    int rc = b ? NNC_OK : nnrt_ds_error(err, err_size, NNC_ENOMEM, "%s: out of memory", path);
    while (rc == NNC_OK) {
        if (n == cap) {
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : nnrt_realloc(b, cap * 2);
            if (!nb) {
                rc = nnrt_ds_error(err, err_size, NNC_ENOMEM, "%s: out of memory after %zu bytes", path, n);
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t want = cap - n < (1u << 30) ? cap - n : (1u << 30);
        int got = gzread(f, b + n, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            rc = nnrt_ds_error(err, err_size, zerr == Z_ERRNO ? NNC_EIO : NNC_EFORMAT, "%s: %s", path,
                               zerr == Z_ERRNO ? strerror(errno) :
                               zerr == Z_BUF_ERROR ? "truncated gzip stream" : msg);
            break;
        }
        if (got == 0) {
            int zerr;
            gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR)             // gzread hit the end inside a gzip member
                rc = nnrt_ds_error(err, err_size, NNC_EFORMAT, "%s: truncated gzip stream", path);
            break;
        }
        n += (size_t)got;
    }
    gzclose(f);
    if (rc != NNC_OK) {
        nnrt_free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return NNC_OK;
}

// ---- specs

// Splits "A,B,C" after a prefix into at most max parts (copies into parts[], each < 4096).
static int split_commas(const char *s, char parts[][4096], int max) {
    int n = 0;
    while (n < max) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (len >= 4096) return -1;
        memcpy(parts[n], s, len);
        parts[n][len] = 0;
        n++;
        if (!c) return n;
        s = c + 1;
    }
    return -1;                                   // too many parts
}

static int load_idx_files(const char *images, const char *labels, size_t input_size, size_t target_size,
                          nnrt_dataset *out, char *err, size_t err_size) {
    unsigned char *ib = NULL, *lb = NULL;
    size_t il = 0, ll = 0;
    int rc = nnrt_ds_read_file(images, &ib, &il, err, err_size);
    if (rc == NNC_OK && labels) rc = nnrt_ds_read_file(labels, &lb, &ll, err, err_size);
    if (rc == NNC_OK)
        rc = nnrt_dataset_idx(images, ib, il, labels, lb, ll, input_size, target_size, out, err, err_size);
    nnrt_free(ib);
    nnrt_free(lb);
    return rc;
}

static int load_fashion(const char *split_name, nnrt_split split, size_t input_size, size_t target_size,
                        nnrt_dataset *out, char *err, size_t err_size) {
    if (split_name) {
        if (strcmp(split_name, "train") == 0) split = NNRT_SPLIT_TRAIN;
        else if (strcmp(split_name, "test") == 0) split = NNRT_SPLIT_TEST;
        else return nnrt_ds_error(err, err_size, NNC_EINVAL,
                                  "fashion-mnist: unknown split '%s' (train or test)", split_name);
    }
    const char *dir = getenv("NNRT_FASHION_MNIST_DIR");
    if (!dir || !*dir) dir = NNRT_FASHION_MNIST_DIR;
    const char *stem = split == NNRT_SPLIT_TEST ? "t10k" : "train";
    char images[4200], labels[4200];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, stem);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, stem);
    FILE *f = fopen(images, "rb");
    if (!f) return nnrt_ds_error(err, err_size, NNC_EIO,
                                 "fashion-mnist: %s not found: install Debian's dataset-fashion-mnist "
                                 "package (apt-get install dataset-fashion-mnist)", images);
    fclose(f);
    return load_idx_files(images, labels, input_size, target_size, out, err, err_size);
}

static int load_csv_spec(char parts[][4096], int n_parts, size_t input_size, size_t target_size,
                         nnrt_dataset *out, char *err, size_t err_size) {
    int label = NNRT_CSV_NO_LABEL;
    bool header = false;
    for (int i = 1; i < n_parts; i++) {
        const char *p = parts[i];
        if (strcmp(p, "header") == 0) {
            header = true;
        } else if (strcmp(p, "label=last") == 0) {
            label = NNRT_CSV_LAST;
        } else if (strncmp(p, "label=", 6) == 0) {
            char *end;
            errno = 0;
            long v = strtol(p + 6, &end, 10);
            if (end == p + 6 || *end || v < 0 || v > 1000000000 || errno)
                return nnrt_ds_error(err, err_size, NNC_EINVAL, "csv: bad column in '%s' (a number from 0, or last)", p);
            label = (int)v;
        } else {
            return nnrt_ds_error(err, err_size, NNC_EINVAL, "csv: unknown option '%s' (label=COL or header)", p);
        }
    }
    unsigned char *b = NULL;
    size_t len = 0;
    int rc = nnrt_ds_read_file(parts[0], &b, &len, err, err_size);
    if (rc == NNC_OK)
        rc = nnrt_dataset_csv(parts[0], (const char *)b, len, label, header, input_size, target_size, out, err, err_size);
    nnrt_free(b);
    return rc;
}

static int load_npy_files(const char *xp, const char *yp, size_t input_size, size_t target_size,
                          nnrt_dataset *out, char *err, size_t err_size) {
    unsigned char *xb = NULL, *yb = NULL;
    size_t xl = 0, yl = 0;
    int rc = nnrt_ds_read_file(xp, &xb, &xl, err, err_size);
    if (rc == NNC_OK && yp) rc = nnrt_ds_read_file(yp, &yb, &yl, err, err_size);
    if (rc == NNC_OK) rc = nnrt_dataset_npy(xp, xb, xl, yp, yb, yl, input_size, target_size, out, err, err_size);
    nnrt_free(xb);
    nnrt_free(yb);
    return rc;
}

int nnrt_dataset_load(const char *spec, size_t input_size, size_t target_size, nnrt_split split,
                      nnrt_dataset *out, char *err, size_t err_size) {
    char parts[4][4096];
    if (err && err_size) err[0] = 0;
    if (!out) return nnrt_ds_error(err, err_size, NNC_EINVAL, "no dataset to fill");
    memset(out, 0, sizeof *out);
    if (!spec) return nnrt_ds_error(err, err_size, NNC_EINVAL, "no dataset spec");
    if (strcmp(spec, "fashion-mnist") == 0) return load_fashion(NULL, split, input_size, target_size, out, err, err_size);
    if (strncmp(spec, "fashion-mnist:", 14) == 0)
        return load_fashion(spec + 14, split, input_size, target_size, out, err, err_size);
    const char *colon = strchr(spec, ':');
    if (!colon) goto bad;
    size_t kind = (size_t)(colon - spec);
    int n = split_commas(colon + 1, parts, 4);
    if (n < 1 || !parts[0][0]) goto bad;
    if (kind == 3 && strncmp(spec, "idx", 3) == 0) {
        if (n > 2 || (n == 1 && target_size > 0))
            return nnrt_ds_error(err, err_size, NNC_EINVAL, "idx: expected idx:IMAGES,LABELS, got '%s'", spec);
        return load_idx_files(parts[0], n == 2 ? parts[1] : NULL, input_size, target_size, out, err, err_size);
    }
    if (kind == 3 && strncmp(spec, "csv", 3) == 0)
        return load_csv_spec(parts, n, input_size, target_size, out, err, err_size);
    if (kind == 3 && strncmp(spec, "npy", 3) == 0) {
        if (n > 2 || (n == 1 && target_size > 0))
            return nnrt_ds_error(err, err_size, NNC_EINVAL, "npy: expected npy:X.npy,Y.npy, got '%s'", spec);
        return load_npy_files(parts[0], n == 2 ? parts[1] : NULL, input_size, target_size, out, err, err_size);
    }
bad:
    return nnrt_ds_error(err, err_size, NNC_EINVAL,
                         "unknown dataset '%s' (fashion-mnist[:test], idx:IMAGES,LABELS, "
                         "csv:FILE[,label=COL][,header] or npy:X.npy,Y.npy)", spec);
}
