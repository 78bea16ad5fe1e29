/* <nnc/model.h>: the generic entry point every nnc-compiled model exports
   (ABI.md §2), and the status codes of save/load (ABI.md §3). Installed. */
#ifndef NNC_MODEL_H
#define NNC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes of save, load and the runtime. */
#define NNC_OK        0
#define NNC_EIO       1   /* cannot open, read or write */
#define NNC_EFORMAT   2   /* not a valid checkpoint: bad header, truncated, wrong dtype */
#define NNC_EMISMATCH 3   /* a valid checkpoint of another model: names, shapes or signature differ */
#define NNC_ENOMEM    4
#define NNC_EINVAL    5   /* a bad argument */

typedef struct nnc_tensor_info {
    const char *name;        /* "h1.W" */
    int         rank;        /* 1..4 */
    int64_t     shape[4];    /* row-major; dense W is [units, in] */
    size_t      offset;      /* in floats, inside params() */
} nnc_tensor_info;

typedef struct nnc_model_info {
    int         abi_version; /* 1 */
    const char *name;        /* the model's name */
    size_t      input_size, target_size, output_size, param_count;
    size_t      n_tensors;
    const nnc_tensor_info *tensors;
    void   *(*create)(uint64_t seed);
    void    (*destroy)(void *m);
    float   (*train_step)(void *m, const float *x, const float *y, size_t batch);
    float   (*loss)(void *m, const float *x, const float *y, size_t batch);
    void    (*predict)(void *m, const float *x, float *out, size_t batch);
    float   (*grad)(void *m, const float *x, const float *y, size_t batch, float *grad);
    void    (*apply)(void *m, const float *grad);
    float  *(*params)(void *m);
    void    (*set_lr)(void *m, float lr);
    void    (*set_threads)(void *m, int n);
    int     (*save)(const void *m, const char *path);
    int     (*load)(void *m, const char *path);
} nnc_model_info;

const nnc_model_info *nnc_model_entry(void);

#ifdef __cplusplus
}
#endif
#endif
