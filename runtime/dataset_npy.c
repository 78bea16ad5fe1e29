// dataset_npy.c: NumPy .npy files (numpy.lib.format): the magic "\x93NUMPY", a version
// byte pair (1.0: a 2-byte header length; 2.0 and 3.0: 4 bytes), little-endian, then a
// Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, d), } padded
// with spaces and a newline, then the raw elements in C order. X holds one row per sample
// (|u1 pixels scale to [0, 1]); Y holds 1-D integer class indices or [n, target_size]
// floats.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "dataset.h"
#include "nnrt.h"

typedef enum { NPY_F4, NPY_F8, NPY_U1, NPY_I4, NPY_I8 } NpyType;

static const struct { const char *descr; NpyType type; size_t size; bool is_int; } npy_types[] = {
    { "<f4", NPY_F4, 4, false }, { "<f8", NPY_F8, 8, false }, { "|u1", NPY_U1, 1, true },
    { "<u1", NPY_U1, 1, true },  { "<i4", NPY_I4, 4, true },  { "<i8", NPY_I8, 8, true },
};

typedef struct Npy {
    int                  type;        // index in npy_types
    int                  rank;
    uint64_t             shape[8];
    size_t               count;       // elements
    const unsigned char *data;
} Npy;

typedef struct Scan {                 // the header dict, read left to right
    const char *p, *end;
} Scan;

static void skip_space(Scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool eat(Scan *s, char c) {
    skip_space(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

// A quoted Python string into out (at most size-1 bytes).
static bool scan_string(Scan *s, char *out, size_t size) {
    skip_space(s);
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return false;
    char q = *s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != q) {
        if (n + 1 >= size) return false;
        out[n++] = *s->p++;
    }
    out[n] = 0;
    return eat(s, q);
}

static bool scan_word(Scan *s, const char *w) {
    skip_space(s);
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return false;
    s->p += n;
    return true;
}

// A tuple of non-negative integers: (), (5,), (3, 4).
static bool scan_shape(Scan *s, Npy *a) {
    if (!eat(s, '(')) return false;
    a->rank = 0;
    for (;;) {
        if (eat(s, ')')) return true;
        skip_space(s);
        uint64_t v = 0;
        const char *start = s->p;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10) return false;
            v = v * 10 + (uint64_t)(*s->p++ - '0');
        }
        if (s->p == start || a->rank == 8) return false;
        a->shape[a->rank++] = v;
        if (!eat(s, ',')) return eat(s, ')');
    }
}

static int parse_npy(const char *name, const unsigned char *b, size_t len, Npy *a, char *err, size_t es) {
    memset(a, 0, sizeof *a);
    if (len < 10) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: %zu bytes, a .npy header has at least 10", name, len);
    if (memcmp(b, "\x93NUMPY", 6) != 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: bad magic, not a .npy file", name);
    size_t hlen, start;
    if (b[6] == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (len < 12) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated header", name);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else {
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: .npy version %d.%d is not supported (1.0 or 2.0)", name, b[6], b[7]);
    }
    if (hlen > len - start)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: the header needs %zu bytes, the file has %zu",
                             name, hlen, len - start);
    Scan s = { (const char *)b + start, (const char *)b + start + hlen };
    char descr[16] = "", key[32];
    bool has_descr = false, has_order = false, has_shape = false, is_fortran = false;
    if (!eat(&s, '{')) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: the header is not a dict", name);
    while (!eat(&s, '}')) {
        if (!scan_string(&s, key, sizeof key) || !eat(&s, ':'))
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: malformed header dict", name);
        bool ok;
        if (strcmp(key, "descr") == 0) {
            ok = scan_string(&s, descr, sizeof descr);
            has_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            is_fortran = scan_word(&s, "True");
            ok = is_fortran || scan_word(&s, "False");
            has_order = true;
        } else if (strcmp(key, "shape") == 0) {
            ok = scan_shape(&s, a);
            has_shape = true;
        } else {
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: unknown header key '%s'", name, key);
        }
        if (!ok) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: bad value of '%s' in the header", name, key);
        if (!eat(&s, ',')) {
            if (!eat(&s, '}')) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: malformed header dict", name);
            break;
        }
    }
    if (!has_descr || !has_order || !has_shape)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: the header lacks '%s'", name,
                             !has_descr ? "descr" : !has_order ? "fortran_order" : "shape");
    if (is_fortran)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: Fortran-order arrays are not supported (save in C order)", name);
    a->type = -1;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) a->type = (int)i;
    if (a->type < 0)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: dtype '%s' is not supported (<f4, <f8, |u1, <i4 or <i8)", name, descr);
    size_t count = 1, bytes;
    for (int k = 0; k < a->rank; k++)
        if (a->shape[k] > SIZE_MAX || __builtin_mul_overflow(count, (size_t)a->shape[k], &count))
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: the shape overflows", name);
    if (__builtin_mul_overflow(count, npy_types[a->type].size, &bytes))
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: the shape overflows", name);
    size_t have = len - start - hlen;
    if (have < bytes)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: the shape needs %zu bytes of data, the file has %zu",
                             name, bytes, have);
    if (have > bytes)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: %zu bytes after the data that the shape describes", name, have - bytes);
    a->count = count;
    a->data = b + start + hlen;
    return NNC_OK;
}

// Element i as a double (little-endian data, any alignment).
static double element(const Npy *a, size_t i) {
    const unsigned char *p = a->data + i * npy_types[a->type].size;
    uint64_t u = 0;
    for (size_t k = 0; k < npy_types[a->type].size; k++) u |= (uint64_t)p[k] << (8 * k);
    switch (npy_types[a->type].type) {
    case NPY_F4: { uint32_t w = (uint32_t)u; float f; memcpy(&f, &w, 4); return f; }
    case NPY_F8: { double d; memcpy(&d, &u, 8); return d; }
    case NPY_U1: return (double)u;
    case NPY_I4: return (double)(int32_t)(uint32_t)u;
    case NPY_I8: return (double)(int64_t)u;
    }
    return 0;
}

static int64_t element_int(const Npy *a, size_t i) {
    const unsigned char *p = a->data + i * npy_types[a->type].size;
    uint64_t u = 0;
    for (size_t k = 0; k < npy_types[a->type].size; k++) u |= (uint64_t)p[k] << (8 * k);
    return npy_types[a->type].type == NPY_I4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
}

// Converts count elements to floats; false at the first value that is not a finite float.
static bool to_floats(const Npy *a, float *out, double scale, size_t *bad) {
    for (size_t i = 0; i < a->count; i++) {
        out[i] = (float)(element(a, i) * scale);
        if (!isfinite(out[i])) {
            *bad = i;
            return false;
        }
    }
    return true;
}

int nnrt_dataset_npy(const char *xname, const unsigned char *xb, size_t xlen,
                     const char *yname, const unsigned char *yb, size_t ylen,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t es) {
    memset(out, 0, sizeof *out);
    Npy x, y = { 0 };
    int rc = parse_npy(xname, xb, xb ? xlen : 0, &x, err, es);
    if (rc) return rc;
    if (x.rank == 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: a scalar, expected one row per sample", xname);
    size_t n = (size_t)x.shape[0], per = n ? x.count / n : 0;
    if (n == 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: no samples", xname);
    if (per != input_size)
        return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s: samples have %zu values, the model's input has %zu",
                             xname, per, input_size);
    bool has_y = yname != NULL, is_labels = false;
    if (!has_y && target_size > 0)
        return nnrt_ds_error(err, es, NNC_EINVAL, "%s: the model has a target: give a Y file", xname);
    if (has_y) {
        rc = parse_npy(yname, yb, yb ? ylen : 0, &y, err, es);
        if (rc) return rc;
        if (y.rank == 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: a scalar, expected one row per sample", yname);
        if (y.shape[0] != n)
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s has %zu samples, %s has %llu", xname, n, yname,
                                 (unsigned long long)y.shape[0]);
        is_labels = y.rank == 1 && npy_types[y.type].is_int;
        if (!is_labels) {
            size_t yper = y.count / n;
            if (y.rank > 2 || (y.rank == 1 && target_size != 1))
                return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: %d-D %s targets, expected 1-D integer class indices "
                                     "or [n, %zu] floats", yname, y.rank, npy_types[y.type].is_int ? "integer" : "float", target_size);
            if (yper != target_size)
                return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s: targets have %zu values, the model's target has %zu",
                                     yname, yper, target_size);
        }
    }
    rc = nnrt_ds_alloc(out, n, input_size, target_size, is_labels, xname, err, es);
    if (rc) return rc;
    size_t bad;
    if (!to_floats(&x, out->x, npy_types[x.type].type == NPY_U1 ? 1.0 / 255.0 : 1.0, &bad))
        rc = nnrt_ds_error(err, es, NNC_EFORMAT, "%s: sample %zu has a value that is not a finite float", xname,
                           bad / input_size);
    if (rc == NNC_OK && has_y && !is_labels && !to_floats(&y, out->y, 1.0, &bad))
        rc = nnrt_ds_error(err, es, NNC_EFORMAT, "%s: sample %zu has a value that is not a finite float", yname,
                           bad / target_size);
    for (size_t s = 0; rc == NNC_OK && is_labels && s < n; s++) {
        char where[300];
        snprintf(where, sizeof where, "%.200s: sample %zu", yname, s);
        rc = nnrt_ds_set_label(out, s, element_int(&y, s), where, err, es);
    }
    if (rc) nnrt_dataset_free(out);
    return rc;
}
