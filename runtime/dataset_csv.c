// dataset_csv.c: numeric CSV. One sample per non-blank line, fields separated by commas,
// spaces around a field ignored, CRLF accepted. With a label column (label=COL) a row is
// input_size numbers plus that class index; without, input_size inputs then target_size
// targets. Errors name the line and the byte column of the field (FILE:LINE:COL).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dataset.h"
#include "nnrt.h"

typedef struct Line {
    const char *begin, *end;     // without the newline (and a CR before it)
    size_t      number;          // from 1
} Line;

// The line starting at *at, advancing *at past it; false at the end of the text.
static bool next_line(const char **at, const char *end, Line *l) {
    if (*at >= end) return false;
    const char *nl = memchr(*at, '\n', (size_t)(end - *at));
    l->begin = *at;
    l->end = nl ? nl : end;
    *at = nl ? nl + 1 : end;
    if (l->end > l->begin && l->end[-1] == '\r') l->end--;
    l->number++;
    return true;
}

static bool is_blank(const Line *l) {
    for (const char *p = l->begin; p < l->end; p++)
        if (*p != ' ' && *p != '\t') return false;
    return true;
}

static size_t count_fields(const Line *l) {
    size_t n = 1;
    for (const char *p = l->begin; p < l->end; p++) n += *p == ',';
    return n;
}

// Parses the field [b, e) as a finite number.
static bool parse_number(const char *b, const char *e, double *v) {
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
    char tmp[64];
    size_t n = (size_t)(e - b);
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, b, n);
    tmp[n] = 0;
    for (size_t i = 0; i < n; i++)        // decimal only: no hex, inf or nan spellings
        if (!strchr("0123456789+-.eE", tmp[i])) return false;
    char *end;
    *v = strtod(tmp, &end);
    return end == tmp + n && isfinite(*v);
}

int nnrt_dataset_csv(const char *name, const char *text, size_t len, int label_col, bool has_header,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t es) {
    memset(out, 0, sizeof *out);
    bool has_label = label_col != NNRT_CSV_NO_LABEL;
    size_t n_fields = input_size + (has_label ? 1 : target_size);
    size_t label = label_col == NNRT_CSV_LAST ? n_fields - 1 : (size_t)label_col;
    if (has_label && label >= n_fields)
        return nnrt_ds_error(err, es, NNC_EINVAL, "%s: label=%d is past the %zu fields of a row (%zu inputs + 1 label)",
                             name, label_col, n_fields, input_size);
    if (!text) len = 0;
    const char *end = text + len, *at = text;
    Line l = { 0 };
    size_t n = 0;
    if (has_header) next_line(&at, end, &l);
    const char *first = at;
    size_t first_number = l.number;
    for (; next_line(&at, end, &l);) {        // pass 1: count and check the rows
        if (is_blank(&l)) continue;
        size_t k = count_fields(&l);
        if (k != n_fields) {
            if (has_label)
                return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s:%zu: %zu fields, expected %zu (%zu inputs + 1 label)",
                                     name, l.number, k, n_fields, input_size);
            return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s:%zu: %zu fields, expected %zu (%zu inputs + %zu targets)",
                                 name, l.number, k, n_fields, input_size, target_size);
        }
        n++;
    }
    if (n == 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: no samples", name);
    int rc = nnrt_ds_alloc(out, n, input_size, target_size, has_label, name, err, es);
    if (rc) return rc;
    at = first;
    l.number = first_number;
    size_t s = 0;
    while (rc == NNC_OK && next_line(&at, end, &l)) {   // pass 2: the values
        if (is_blank(&l)) continue;
        float *x = out->x + s * input_size, *y = out->y ? out->y + s * target_size : NULL;
        const char *f = l.begin;
        for (size_t k = 0; k < n_fields && rc == NNC_OK; k++) {
            const char *comma = memchr(f, ',', (size_t)(l.end - f));
            const char *fe = comma ? comma : l.end;
            double v;
            size_t col = (size_t)(f - l.begin) + 1;
            if (!parse_number(f, fe, &v)) {
                int w = (int)(fe - f < 40 ? fe - f : 40);
                rc = nnrt_ds_error(err, es, NNC_EFORMAT, "%s:%zu:%zu: field %zu is not a number: '%.*s'",
                                   name, l.number, col, k + 1, w, f);
            } else if (has_label && k == label) {
                char where[300];
                snprintf(where, sizeof where, "%.200s:%zu:%zu", name, l.number, col);
                if (v != floor(v) || fabs(v) > 1e9)
                    rc = nnrt_ds_error(err, es, NNC_EFORMAT, "%s: label %g is not a class index", where, v);
                else
                    rc = nnrt_ds_set_label(out, s, (int64_t)v, where, err, es);
            } else {
                size_t i = has_label && k > label ? k - 1 : k;
                if (i < input_size) x[i] = (float)v;
                else y[i - input_size] = (float)v;
                if (!isfinite((float)v))
                    rc = nnrt_ds_error(err, es, NNC_EFORMAT, "%s:%zu:%zu: %g does not fit a float", name, l.number, col, v);
            }
            f = fe + 1;
        }
        s++;
    }
    if (rc) nnrt_dataset_free(out);
    return rc;
}
