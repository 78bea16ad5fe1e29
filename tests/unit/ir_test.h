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

// Declares a parameter of m the way sema does: the next index, its floats after
// the others' (m->params must have room).
__attribute__((unused)) static NodeId ir_test_param(Model *m, const char *name, Shape s) {
    IrParam *p = &m->params[m->n_params];
    p->name = name;
    p->shape = s;
    p->offset = m->param_count;
    p->node = ir_leaf(m->g, IR_PARAM, m->n_params, s, (SrcRange){ 0, 0, 0 });
    m->param_count += (size_t)ir_numel(s);
    m->n_params++;
    return p->node;
}

#endif
