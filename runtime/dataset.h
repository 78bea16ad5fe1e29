// dataset.h: the dataset loaders of libnnrt (ABI.md §4, issue 5), used by `nnc train`.
//
// A dataset is n samples of input_size floats (x, row-major) and target_size floats (y).
// Class labels become one-hot rows of target_size floats (with target_size 1, the label
// itself: 0 or 1); unsigned-byte pixels scale to [0, 1]. Specs:
//   fashion-mnist[:train|:test]  Debian's dataset-fashion-mnist package (gzip IDX files in
//                                /usr/share/datasets/fashion-mnist, or $NNRT_FASHION_MNIST_DIR)
//   idx:IMAGES,LABELS            MNIST's IDX format, gzip-compressed or raw (LABELS may be
//                                left out when the model has no target)
//   csv:FILE[,label=COL][,header]  numeric fields; COL (from 0, or `last`) holds a class index,
//                                the other fields are the inputs; without label= a row is the
//                                inputs followed by the target floats; `header` skips line 1
//   npy:X.npy[,Y.npy]            NumPy .npy v1/v2, C order, dtype <f4 <f8 |u1 <i4 <i8; Y is
//                                1-D class indices (integers) or [n, target_size] floats
// Every loader checks everything and never crashes on malformed input: on an error it
// returns an NNC_E* code (EIO: cannot read; EFORMAT: malformed; EMISMATCH: sizes differ
// from the model's; EINVAL: bad spec; ENOMEM) and writes a one-line message, starting with
// the file's name, into err.
#ifndef NNRT_DATASET_H
#define NNRT_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nnrt_dataset {
    size_t   n;              // samples
    size_t   input_size;     // floats per sample in x
    size_t   target_size;    // floats per sample in y; 0: no targets
    float   *x;              // n * input_size
    float   *y;              // n * target_size; NULL when target_size == 0
    int32_t *labels;         // n class indices when the data has class labels, else NULL
} nnrt_dataset;

typedef enum { NNRT_SPLIT_TRAIN, NNRT_SPLIT_TEST } nnrt_split;

#define NNRT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

// Loads `spec` for a model of input_size and target_size floats per sample; `split` chooses
// fashion-mnist's part when the spec does not say. On error *out is empty (all zero).
int  nnrt_dataset_load(const char *spec, size_t input_size, size_t target_size, nnrt_split split,
                       nnrt_dataset *out, char *err, size_t err_size);
void nnrt_dataset_free(nnrt_dataset *d);     // and zeroes *d

// The loaders on bytes already in memory (the fuzz targets call these); names are for
// messages. labels may be NULL when target_size is 0; so may y for npy.
int nnrt_dataset_idx(const char *images_name, const unsigned char *images, size_t images_len,
                     const char *labels_name, const unsigned char *labels, size_t labels_len,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t err_size);
#define NNRT_CSV_NO_LABEL (-1)
#define NNRT_CSV_LAST     (-2)
int nnrt_dataset_csv(const char *name, const char *text, size_t len, int label_col, bool has_header,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t err_size);
int nnrt_dataset_npy(const char *x_name, const unsigned char *x, size_t x_len,
                     const char *y_name, const unsigned char *y, size_t y_len,
                     size_t input_size, size_t target_size, nnrt_dataset *out, char *err, size_t err_size);

// Shared by the loaders (runtime/dataset.c).
int  nnrt_ds_error(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int  nnrt_ds_alloc(nnrt_dataset *d, size_t n, size_t input_size, size_t target_size, bool has_labels,
                   const char *name, char *err, size_t err_size);
// Sets sample s's class: labels[s] and the one-hot target row; EMISMATCH if out of range.
int  nnrt_ds_set_label(nnrt_dataset *d, size_t s, int64_t label, const char *where, char *err, size_t err_size);
// Reads a whole file, gzip-compressed or not, into *buf (nnrt_malloc'd).
int  nnrt_ds_read_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t err_size);

#endif
