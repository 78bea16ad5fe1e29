// linear_model.h: a hand-written model for the runtime's tests (linear_model.c): y = W x + b,
// W[2,3] xavier, b[2] zeros, loss sum((y - t)^2) averaged over the batch, Adam; input 3,
// target and output 2.
#ifndef NNC_TEST_LINEAR_MODEL_H
#define NNC_TEST_LINEAR_MODEL_H
#include "nnrt.h"

const nnrt_desc *nnrt_test_linear(void);

#endif
