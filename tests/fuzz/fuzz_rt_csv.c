// libFuzzer target for the CSV loader (runtime/dataset_csv.c). Input: byte 0 the label
// column (0xff none, 0xfe last, else the value mod 16), byte 1 the model's input size (bit
// 7: skip a header line), byte 2 its target size, then the text. Corpus: tests/fuzz/rt_csv/,
// replayed by test_rt_fuzz_replay.c.
#include <stddef.h>
#include <stdint.h>
#include "dataset.h"

int fuzz_rt_csv_one(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    int label = data[0] == 0xff ? NNRT_CSV_NO_LABEL : data[0] == 0xfe ? NNRT_CSV_LAST : data[0] % 16;
    size_t input = data[1] & 0x7f, target = data[2];
    int header = data[1] & 0x80;
    nnrt_dataset d;
    char err[256];
    nnrt_dataset_csv("data.csv", (const char *)data + 3, size - 3, label, header != 0, input, target,
                     &d, err, sizeof err);
    nnrt_dataset_free(&d);
    return 0;
}

#ifndef NNC_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_rt_csv_one(data, size); }
#endif
