// dataset_idx.c: MNIST's IDX format (yann.lecun.com/exdb/mnist): a big-endian magic
// 0x0000TTDD (TT the element type, 0x08 for unsigned bytes; DD the number of dimensions),
// DD big-endian uint32 sizes, then the elements in row-major order. Images are 0x00000803
// (n, rows, cols), labels 0x00000801 (n). Pixels scale to [0, 1]; labels become one-hot.
#include <stdio.h>
#include <string.h>
#include "dataset.h"
#include "nnrt.h"

typedef struct Idx {
    int                  n_dims;
    uint32_t             dims[4];
    const unsigned char *data;      // the elements, dims[0] * ... bytes
    size_t               size;      // bytes of data
} Idx;

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Checks the header and the exact size of one IDX file.
static int parse_idx(const char *name, const unsigned char *b, size_t len, Idx *idx, char *err, size_t es) {
    memset(idx, 0, sizeof *idx);
    if (len < 4) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: %zu bytes, an IDX header has at least 8", name, len);
    if (b[0] != 0 || b[1] != 0)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: bad magic 0x%08x, not an IDX file", name, be32(b));
    if (b[2] != 0x08)
        return nnrt_ds_error(err, es, NNC_EFORMAT,
                             "%s: IDX element type 0x%02x is not supported (only 0x08, unsigned bytes)", name, b[2]);
    idx->n_dims = b[3];
    if (idx->n_dims < 1 || idx->n_dims > 4)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: bad magic 0x%08x: %d dimensions", name, be32(b), idx->n_dims);
    size_t header = 4 + 4 * (size_t)idx->n_dims;
    if (len < header)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: %zu bytes, the IDX header needs %zu", name, len, header);
    size_t size = 1;
    for (int k = 0; k < idx->n_dims; k++) {
        idx->dims[k] = be32(b + 4 + 4 * k);
        if (__builtin_mul_overflow(size, (size_t)idx->dims[k], &size))
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: the IDX sizes overflow", name);
    }
    if (len - header < size)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: truncated: the header says %zu bytes of data, the file has %zu",
                             name, size, len - header);
    if (len - header > size)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: %zu bytes after the data that the header describes",
                             name, len - header - size);
    idx->data = b + header;
    idx->size = size;
    return NNC_OK;
}

int nnrt_dataset_idx(const char *iname, const unsigned char *images, size_t ilen,
                     const char *lname, const unsigned char *labels, size_t llen,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t es) {
    memset(out, 0, sizeof *out);
    Idx im, lb = { 0 };
    int rc = parse_idx(iname, images, images ? ilen : 0, &im, err, es);
    if (rc) return rc;
    if (im.n_dims < 2)
        return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: an images file has 2 or 3 dimensions (magic 0x00000803), "
                             "this one has 1 (a labels file?)", iname);
    bool has_labels = lname != NULL;
    if (!has_labels && target_size > 0)
        return nnrt_ds_error(err, es, NNC_EINVAL, "%s: the model has a target: give a labels file", iname);
    if (has_labels) {
        rc = parse_idx(lname, labels, labels ? llen : 0, &lb, err, es);
        if (rc) return rc;
        if (lb.n_dims != 1)
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: a labels file has 1 dimension (magic 0x00000801), "
                                 "this one has %d (an images file?)", lname, lb.n_dims);
        if (lb.dims[0] != im.dims[0])
            return nnrt_ds_error(err, es, NNC_EFORMAT, "%s has %u images but %s has %u labels", iname, im.dims[0],
                                 lname, lb.dims[0]);
    }
    size_t n = im.dims[0], per = im.size / (n ? n : 1);
    if (n == 0) return nnrt_ds_error(err, es, NNC_EFORMAT, "%s: no images", iname);
    if (per != input_size) {
        if (im.n_dims == 3)
            return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s: images are %ux%u = %zu values, the model's input has %zu",
                                 iname, im.dims[1], im.dims[2], per, input_size);
        return nnrt_ds_error(err, es, NNC_EMISMATCH, "%s: samples have %zu values, the model's input has %zu",
                             iname, per, input_size);
    }
    rc = nnrt_ds_alloc(out, n, input_size, target_size, has_labels, iname, err, es);
    if (rc) return rc;
    for (size_t i = 0; i < im.size; i++) out->x[i] = (float)im.data[i] / 255.0f;
    for (size_t s = 0; s < n && has_labels; s++) {
        char where[300];
        snprintf(where, sizeof where, "%.200s: sample %zu", lname, s);
        rc = nnrt_ds_set_label(out, s, lb.data[s], where, err, es);
        if (rc) {
            nnrt_dataset_free(out);
            return rc;
        }
    }
    return NNC_OK;
}
