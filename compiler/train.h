// train.h: the internals of `nnc train`, shared by train.c (command line, model
// loading, the .nn cache, checkpoints' training state), train_loop.c (epochs,
// progress, Ctrl-C) and train_plot.c (the SVG). The entry point is in driver.h.
#ifndef NNC_TRAIN_H
#define NNC_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nnc.h"
#include "nnc/model.h"

// A loaded data set: n samples of x_size and y_size floats, row-major.
typedef struct TrainData {
    const char *spec;       // as given on the command line
    size_t      n;          // samples
    size_t      x_size;     // floats per sample (the model's input_size)
    size_t      y_size;     // floats per sample (target_size; 0: no targets)
    const float *x;         // n * x_size
    const float *y;         // n * y_size, NULL when y_size is 0
    void       *owner;      // what frees x and y (train.c)
} TrainData;

// Statistics of one finished epoch; NAN where not measured.
typedef struct EpochStats {
    int64_t epoch;          // 1-based
    double  train_loss;     // mean batch objective over the epoch, weighted by batch size
    double  train_acc;      // fraction in [0,1] (classification models only)
    double  test_loss;      // the model's loss on the test set
    double  test_acc;
    double  seconds;        // wall time of the epoch's training steps
} EpochStats;

// Where a run stands; saved in checkpoints (metadata "nnc.train") so that
// --resume continues exactly. The shuffle of epoch e is a function of
// (seed, e) alone, so no generator state needs saving.
typedef struct TrainState {
    int64_t  epoch;         // completed epochs
    int64_t  batch_index;   // batches done inside epoch `epoch` (0: at its start)
    uint64_t seed;          // --seed: initialisation and shuffling
    size_t   batch;         // --batch
    size_t   n_train;       // training samples (a different data set breaks exactness)
    float    lr;            // --lr, when has_lr
    bool     has_lr;
    double   epoch_loss;    // sum of batch objective * batch size so far in this epoch
    int64_t  epoch_samples; // samples trained so far in this epoch
} TrainState;

// A sampled trace of per-step losses, at most TRACE_CAP points: when full,
// neighbours are averaged in pairs and the stride doubles.
#define TRACE_CAP 1024
typedef struct LossTrace {
    double  pos[TRACE_CAP];   // in epochs (fractional), the middle of the bucket
    double  loss[TRACE_CAP];
    size_t  n;
    int64_t stride;           // steps per point
    double  acc_pos, acc_loss; // the bucket being filled
    int64_t acc_n;
} LossTrace;

typedef struct TrainRun {
    Arena                  arena;
    const nnc_model_info  *info;
    void                  *model;
    const char            *model_path;   // as given
    TrainData              train, test;
    bool                   has_test;
    // options
    int64_t                epochs;       // --epochs: epochs to run in this invocation
    size_t                 batch;
    uint64_t               seed;
    float                  lr;
    bool                   has_lr;
    int                    threads;      // 0: the model's default
    const char            *save_path;    // --save
    const char            *resume_path;  // --resume
    const char            *plot_path;    // --plot
    bool                   quiet;        // --quiet: epoch lines only
    // progress of the run
    TrainState             state;
    EpochStats            *history;      // every finished epoch, also those before --resume
    size_t                 n_history, history_cap;
    LossTrace              trace;
    bool                   classify;     // accuracy is measured (classes or binary, below)
    bool                   binary;       // target and output of size 1, targets all 0 or 1:
                                         // correct when (output >= 0.5) == target
} TrainRun;

// train.c
// Saves the model and the run's state to `path`; false after printing an error.
bool train_save(TrainRun *r, const char *path);
// A default checkpoint path for an interrupted run: MODEL.interrupted.safetensors.
const char *train_interrupted_path(TrainRun *r);
void train_add_epoch(TrainRun *r, const EpochStats *s);
// Encodes/decodes the training state and history as the metadata string.
char *train_state_encode(TrainRun *r);
bool  train_state_decode(TrainRun *r, const char *text);
// Inserts `"key":"value"` into the __metadata__ of a safetensors file (atomically), and
// reads it back (NULL if absent). Exposed for the unit tests.
bool  train_meta_write(const char *path, const char *key, const char *value, char *err, size_t err_len);
char *train_meta_read(Arena *a, const char *path, const char *key);

// train_loop.c
// Runs r->epochs epochs from r->state; returns an exit status (0, 1 or 130).
int  train_loop(TrainRun *r);
// The permutation of epoch `epoch` of n samples for `seed` (Fisher-Yates).
void train_shuffle(uint32_t *perm, size_t n, uint64_t seed, int64_t epoch);
// Mean objective and accuracy (NAN unless r->classify) of the model over a data set.
void train_evaluate(TrainRun *r, const TrainData *d, size_t limit, double *loss, double *acc);

// train_plot.c
// Writes the SVG of the run (curves; for 1-D regression also the fitted curve).
bool train_plot(TrainRun *r, const char *path);

#endif
