// cg_parallel.c: loops split over the model's threads.
//
// nnrt_parallel_for (runtime/threads.c) runs fn(ctx, begin, end) on chunks of
// [0, n), one per thread, and inline when the model has one thread. A loop of
// a kernel becomes such an fn: LLVM has no closures, so its body is emitted
// into a function of its own, `body(rt, params, state, x, y, grad, out,
// grad_in, scratch, batch, lr, step, inv_batch, begin, end)`, whose pointer
// arguments are noalias like the kernel's (so its loops vectorise without
// run-time overlap checks), and a trampoline fn(ctx, begin, end) unpacks the
// kernel's arguments from a context on the kernel's stack and calls it.
// While the body is emitted, Cg's argument values are the body's and every
// buffer's base is recomputed from them (cg_compute_bases), so the emitters of
// cg_kernel.c and cg_matmul.c work unchanged.
//
// Only elementwise loops go through here: each element is computed by exactly
// one thread with the same operations, so results do not depend on the thread
// count or the split. cg_outline makes the same function without the call:
// nnrt_sgemm_then calls it on each finished stretch of a product (cg_matmul.c).
#include <string.h>

#include "cg_internal.h"

enum { N_PTR = 9, N_ARG = N_PTR + 4 };

// The kernel's argument slots, in the body's parameter order.
static void arg_slots(Cg *c, LLVMValueRef *slot[N_ARG]) {
    LLVMValueRef *s[N_ARG] = { &c->a_rt, &c->a_params, &c->a_state, &c->a_x, &c->a_y, &c->a_grad, &c->a_out,
                               &c->a_grad_in, &c->a_scratch, &c->batch, &c->lr, &c->step, &c->inv_batch };
    memcpy(slot, s, sizeof s);
}

static LLVMValueRef parallel_for_fn(Cg *c, LLVMTypeRef *ft) {
    LLVMTypeRef params[4] = { c->ptr, c->ptr, c->ptr, c->i64 };
    *ft = LLVMFunctionType(c->void_t, params, 4, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, "nnrt_parallel_for");
    if (!fn) {
        fn = LLVMAddFunction(c->mod, "nnrt_parallel_for", *ft);
        LLVMSetVisibility(fn, LLVMHiddenVisibility);
    }
    return fn;
}

static LLVMValueRef new_fn(Cg *c, const char *name, LLVMTypeRef ft) {
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_set_fn_attrs(c, fn);
    return fn;
}

// Only in the kernels of a train step: grad, loss and predict stay serial
// (a loop split at run time is a second copy of its code: compile time).
bool cg_parallel_ok(Cg *c) {
    return c->a_rt && c->nc->opt.opt_level >= 2 && (c->kp->kind == CG_K_TRAIN || c->kp->kind == CG_K_APPLY);
}

// body(begin, end) as a function of its own: `trampoline(ctx, begin, end)`,
// and the context it reads, on the kernel's stack, filled with the kernel's
// arguments. The builder is back in the kernel, where the context is valid
// until the kernel returns.
bool cg_outline(Cg *c, CgRangeBody body, void *arg, LLVMValueRef *fn, LLVMValueRef *ctx_out) {
    if (!cg_parallel_ok(c))
        return false;
    LLVMValueRef *slot[N_ARG];
    arg_slots(c, slot);
    LLVMTypeRef types[N_ARG + 2];
    LLVMValueRef vals[N_ARG];
    bool had[N_ARG];
    for (int i = 0; i < N_ARG; i++) {
        types[i] = i < N_PTR ? c->ptr : i == N_PTR ? c->i64 : c->f32;
        had[i] = *slot[i] != NULL;
        vals[i] = had[i] ? *slot[i] : LLVMConstNull(types[i]);
    }
    types[N_ARG] = types[N_ARG + 1] = c->i64;
    unsigned id = c->n_par++;

    // body(args..., begin, end)
    LLVMValueRef bfn = new_fn(c, nn_format(&c->nc->arena, "%s_par%u", c->m->name, id),
                              LLVMFunctionType(c->void_t, types, N_ARG + 2, 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (unsigned i = 1; i < N_PTR; i++)
        LLVMAddAttributeAtIndex(bfn, i + 1, LLVMCreateEnumAttribute(c->ctx, noalias, 0));
    LLVMValueRef outer_fn = c->fn, outer_pack = c->pack_buf;
    LLVMBasicBlockRef outer_allocas = c->alloca_bb, outer_block = LLVMGetInsertBlock(c->b);
    size_t nb = c->g->n_nodes * sizeof(LLVMValueRef);
    LLVMValueRef *outer_base = nn_alloc(&c->nc->arena, nb);
    memcpy(outer_base, c->base, nb);
    c->fn = bfn;
    c->pack_buf = NULL;
    c->alloca_bb = LLVMAppendBasicBlockInContext(c->ctx, bfn, "allocas");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(c->ctx, bfn, "start");
    LLVMPositionBuilderAtEnd(c->ab, c->alloca_bb);
    LLVMPositionBuilderAtEnd(c->b, start);
    for (int i = 0; i < N_ARG; i++)
        if (*slot[i])
            *slot[i] = LLVMGetParam(bfn, (unsigned)i);
    cg_compute_bases(c);
    body(c, LLVMGetParam(bfn, N_ARG), LLVMGetParam(bfn, N_ARG + 1), arg);
    LLVMBuildRetVoid(c->b);
    LLVMPositionBuilderAtEnd(c->ab, c->alloca_bb);
    LLVMBuildBr(c->ab, start);

    // trampoline(ctx, begin, end)
    LLVMTypeRef st = LLVMStructTypeInContext(c->ctx, types, N_ARG, 0);
    LLVMTypeRef tparams[3] = { c->ptr, c->i64, c->i64 };
    LLVMValueRef tfn = new_fn(c, nn_format(&c->nc->arena, "%s_par%u_chunk", c->m->name, id),
                              LLVMFunctionType(c->void_t, tparams, 3, 0));
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, tfn, "entry"));
    LLVMValueRef args[N_ARG + 2];
    for (int i = 0; i < N_ARG; i++)
        args[i] = LLVMBuildLoad2(c->b, types[i], LLVMBuildStructGEP2(c->b, st, LLVMGetParam(tfn, 0), (unsigned)i, ""), "");
    args[N_ARG] = LLVMGetParam(tfn, 1);
    args[N_ARG + 1] = LLVMGetParam(tfn, 2);
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(bfn), bfn, args, N_ARG + 2, "");
    LLVMBuildRetVoid(c->b);

    // Back in the kernel: its values (body may have changed any), the context.
    for (int i = 0; i < N_ARG; i++)
        if (had[i])
            *slot[i] = vals[i];
    memcpy(c->base, outer_base, nb);
    c->fn = outer_fn;
    c->pack_buf = outer_pack;
    c->alloca_bb = outer_allocas;
    LLVMPositionBuilderAtEnd(c->ab, c->alloca_bb);
    LLVMPositionBuilderAtEnd(c->b, outer_block);
    LLVMValueRef ctx = cg_alloca(c, st, "par.ctx");
    for (int i = 0; i < N_ARG; i++)
        LLVMBuildStore(c->b, vals[i], LLVMBuildStructGEP2(c->b, st, ctx, (unsigned)i, ""));
    *fn = tfn;
    *ctx_out = ctx;
    return true;
}

void cg_call_parallel_for(Cg *c, LLVMValueRef fn, LLVMValueRef ctx, LLVMValueRef n) {
    LLVMTypeRef pft;
    LLVMValueRef pf = parallel_for_fn(c, &pft);
    LLVMValueRef pargs[4] = { c->a_rt, fn, ctx, n };
    LLVMBuildCall2(c->b, pft, pf, pargs, 4, "");
}

bool cg_parallel(Cg *c, LLVMValueRef n, CgRangeBody body, void *arg) {
    LLVMValueRef tfn, ctx;
    if (!cg_outline(c, body, arg, &tfn, &ctx))
        return false;
    cg_call_parallel_for(c, tfn, ctx, n);
    return true;
}
