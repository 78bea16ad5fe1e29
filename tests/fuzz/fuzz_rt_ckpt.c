// libFuzzer target for the checkpoint loader (runtime/checkpoint.c): the input is a
// safetensors file loaded into the test model of runtime/testmodel.c. A refused file must
// leave the model unchanged. Corpus: tests/fuzz/rt_ckpt/, replayed by test_rt_fuzz_replay.c.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "nnrt.h"
#include "linear_model.h"

int fuzz_rt_ckpt_one(const uint8_t *data, size_t size) {
    nnrt_model *m = nnrt_create(nnrt_test_linear(), 1);
    if (!m) return 0;
    float before[8];
    memcpy(before, m->params, sizeof before);
    int rc = nnrt_load_buffer(m, data, size);
    if (rc != NNC_OK && memcmp(before, m->params, sizeof before) != 0) abort();   // must be unchanged
    nnrt_destroy(m);
    return 0;
}

#ifndef NNC_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_rt_ckpt_one(data, size); }
#endif
