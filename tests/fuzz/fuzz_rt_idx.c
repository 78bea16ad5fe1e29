// libFuzzer target for the IDX loader (runtime/dataset_idx.c). Input: byte 0-1 the length of
// the images part (little-endian), byte 2 the model's input size, byte 3 its target size
// (bit 7: no labels file), then the images bytes and the labels bytes. Corpus: tests/fuzz/rt_idx/.
// tests/unit/test_rt_fuzz_replay.c replays the corpus (with NNC_FUZZ_NO_MAIN defined).
#include <stddef.h>
#include <stdint.h>
#include "dataset.h"

int fuzz_rt_idx_one(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    size_t input = data[2], target = data[3] & 0x7f;
    int no_labels = data[3] & 0x80;
    data += 4, size -= 4;
    if (split > size) split = size;
    nnrt_dataset d;
    char err[256];
    nnrt_dataset_idx("images", data, split, no_labels ? NULL : "labels", data + split, size - split,
                     input, target, &d, err, sizeof err);
    nnrt_dataset_free(&d);
    return 0;
}

#ifndef NNC_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_rt_idx_one(data, size); }
#endif
