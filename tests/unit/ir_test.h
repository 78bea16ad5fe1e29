// ir_test.h: small helpers shared by the test_ir_* suites (header-only: each
// test file is its own program).
#ifndef NNC_IR_TEST_H
#define NNC_IR_TEST_H

#include <stdarg.h>

#include "ir.h"

// A shape of `rank` dimensions given as int arguments: shape_n(2, 3, 4) is [3,4].
__attribute__((unused)) static Shape shape_n(int rank, ...) {
    Shape s = { (uint8_t)rank, { 0 } };
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        s.dim[i] = va_arg(ap, int);
    va_end(ap);
    return s;
}

#endif
