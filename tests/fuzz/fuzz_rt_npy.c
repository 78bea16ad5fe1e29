// libFuzzer target for the .npy loader (runtime/dataset_npy.c). Input: bytes 0-1 the length
// of the X part (little-endian), byte 2 the model's input size, byte 3 its target size (bit
// 7: no Y file), then X and Y. Corpus: tests/fuzz/rt_npy/, replayed by test_rt_fuzz_replay.c.
#include <stddef.h>
#include <stdint.h>
#include "dataset.h"

int fuzz_rt_npy_one(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    size_t input = data[2], target = data[3] & 0x7f;
    int no_y = data[3] & 0x80;
    data += 4, size -= 4;
    if (split > size) split = size;
    nnrt_dataset d;
    char err[256];
    nnrt_dataset_npy("x.npy", data, split, no_y ? NULL : "y.npy", data + split, size - split,
                     input, target, &d, err, sizeof err);
    nnrt_dataset_free(&d);
    return 0;
}

#ifndef NNC_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_rt_npy_one(data, size); }
#endif
