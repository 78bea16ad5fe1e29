// cg.h: the LLVM backend (cg_*.c) and the header emitter (header.c).
// Only cg_*.c include llvm-c/.
#ifndef NNC_CG_H
#define NNC_CG_H

#include "ir.h"

// Emits the train-step Model (after ir_build_train_step) as c->opt.emit says:
// EMIT_LLVM (text to c->opt.output or stdout), EMIT_OBJ (-c), EMIT_SO (the
// default with -o: links libnnrt into a shared library). Also writes the header
// for EMIT_OBJ and EMIT_SO. Returns an exit status (ABI.md §1).
int cg_compile(NnCtx *c, const Model *m);

// header.c: writes the generated C header (ABI.md §2) for the model.
bool cg_write_header(NnCtx *c, const Model *m, const char *path);

// cg_plan.c: the scratch arena of the static memory plan (`--stats`, the
// header): fixed_bytes + batch * per_sample_bytes per model instance.
void cg_scratch_sizes(NnCtx *c, const Model *m, size_t *fixed_bytes, size_t *per_sample_bytes);

#endif
