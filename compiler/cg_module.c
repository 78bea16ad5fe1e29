// cg_module.c: the LLVM module of a model. Input: a train-step Model (after
// ir_build_train_step). Output, as c->opt.emit says: LLVM IR text, assembly,
// an object, or a shared library linked with libnnrt; and the header.
//
// The module holds the kernels (cg_kernel.c, internal), the model's
// `static const nnrt_desc P_desc` (runtime/nnrt.h), the exported API of
// ABI.md §2 as thin wrappers around the runtime's generic nnrt_* functions,
// and nnc_model_entry(). Only those wrappers and the entry have default
// visibility. Order: plan, emit, verify (a failure is our bug: the module is
// dumped), optimise with the new pass manager (default<On>; a library's
// kernels in two processes, cg_fork.c), write to a temporary file and
// rename. Every LLVM object and message is disposed of.
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "autodiff.h"
#include "cg_internal.h"

#ifndef NNC_INSTALL_LIBDIR
#define NNC_INSTALL_LIBDIR "lib"   // CMake passes CMAKE_INSTALL_LIBDIR
#endif

extern char **environ;

// ---- Small helpers shared by the backend

_Noreturn void cg_bug(Cg *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c && c->mod)
        LLVMDumpModule(c->mod);
    nn_bug("codegen: %s", msg);
}

LLVMValueRef cg_intrinsic(Cg *c, const char *name, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    if (!id)
        cg_bug(c, "unknown intrinsic %s", name);
    LLVMTypeRef t = LLVMTypeOf(args[0]);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, &t, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(c->ctx, id, &t, 1);
    return LLVMBuildCall2(c->b, ft, fn, args, n, "");
}

// While c->lanes is set (a vector epilogue, cg_kernel.c), the elementwise
// math's constants are vectors, so that the same code emits either form.
LLVMValueRef cg_f(Cg *c, double v) {
    LLVMValueRef s = LLVMConstReal(c->f32, v);
    return c->lanes ? cg_splat_const(c, s) : s;
}

LLVMValueRef cg_splat_const(Cg *c, LLVMValueRef s) {
    LLVMValueRef lanes[64];
    NN_ASSERT(c->lanes >= 1 && c->lanes <= NN_COUNTOF(lanes));
    for (unsigned i = 0; i < c->lanes; i++)
        lanes[i] = s;
    return LLVMConstVector(lanes, c->lanes);
}
LLVMValueRef cg_i(Cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }

LLVMValueRef cg_min_i(Cg *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef cg_max_i(Cg *c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, a, b, ""), a, b, "");
}

LLVMValueRef cg_gep(Cg *c, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(c->b, c->f32, base, &idx, 1, "");
}

LLVMValueRef cg_load(Cg *c, LLVMValueRef p) { return cg_vload(c, c->f32, p); }

void cg_store(Cg *c, LLVMValueRef v, LLVMValueRef p) { cg_vstore(c, v, p); }

// Loads and stores of any float or vector type at 4-byte alignment.
LLVMValueRef cg_vload(Cg *c, LLVMTypeRef t, LLVMValueRef p) {
    LLVMValueRef v = LLVMBuildLoad2(c->b, t, p, "");
    LLVMSetAlignment(v, 4);
    return v;
}

void cg_vstore(Cg *c, LLVMValueRef v, LLVMValueRef p) { LLVMSetAlignment(LLVMBuildStore(c->b, v, p), 4); }

LLVMValueRef cg_splat(Cg *c, LLVMTypeRef vt, LLVMValueRef s) {
    int vl = (int)LLVMGetVectorSize(vt);
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(vt), s, LLVMConstInt(c->i32, 0, 0), "");
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(c->i32, (unsigned)vl)), "");
}

LLVMValueRef cg_alloca(Cg *c, LLVMTypeRef t, const char *name) {
    return LLVMBuildAlloca(c->ab, t, name);
}

LLVMValueRef cg_reassoc(LLVMValueRef inst) {
    if (LLVMIsAInstruction(inst) && LLVMCanValueUseFastMathFlags(inst))
        LLVMSetFastMathFlags(inst, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
    return inst;
}

LLVMValueRef cg_loop_begin(Cg *c, CgLoop *l, LLVMValueRef n, const char *name) {
    l->n = n;
    l->pre = LLVMGetInsertBlock(c->b);
    l->body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, name);
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "next");
    LLVMValueRef any = LLVMBuildICmp(c->b, LLVMIntSGT, n, cg_i(c, 0), "");
    LLVMBuildCondBr(c->b, any, l->body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, l->body);
    l->phi = LLVMBuildPhi(c->b, c->i64, name);
    LLVMValueRef zero = cg_i(c, 0);
    LLVMAddIncoming(l->phi, &zero, &l->pre, 1);
    l->iv = l->phi;
    return l->phi;
}

static LLVMValueRef loop_latch(Cg *c, CgLoop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(c->b, l->phi, cg_i(c, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMValueRef br = LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, next, l->n, ""), l->body, l->exit);
    LLVMAddIncoming(l->phi, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(c->b, l->exit);
    return br;
}

void cg_loop_end(Cg *c, CgLoop *l) { loop_latch(c, l); }

static LLVMMetadataRef hint(Cg *c, const char *name, LLVMValueRef v) {
    LLVMMetadataRef kv[2] = { LLVMMDStringInContext2(c->ctx, name, strlen(name)), v ? LLVMValueAsMetadata(v) : NULL };
    return LLVMMDNodeInContext2(c->ctx, kv, v ? 2 : 1);
}

// Closes the loop with !llvm.loop !{self, !{"llvm.loop.unroll.disable"},
// !{"llvm.loop.vectorize.enable", i1 vectorize}}.
static void loop_end_hinted(Cg *c, CgLoop *l, bool vectorize) {
    LLVMValueRef br = loop_latch(c, l);
    LLVMMetadataRef ops[3] = { LLVMTemporaryMDNode(c->ctx, NULL, 0), hint(c, "llvm.loop.unroll.disable", NULL),
                               hint(c, "llvm.loop.vectorize.enable", LLVMConstInt(c->i1, vectorize, 0)) };
    LLVMMetadataRef loop = LLVMMDNodeInContext2(c->ctx, ops, 3);
    LLVMMetadataReplaceAllUsesWith(ops[0], loop);
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9), LLVMMetadataAsValue(c->ctx, loop));
}

// The loop stays a loop and is not vectorised (its inner loop is).
void cg_loop_end_plain(Cg *c, CgLoop *l) { loop_end_hinted(c, l, false); }

// The loop is vectorised (forced: below 16 iterations LLVM's cost model
// refuses loops that need a run-time overlap check) and not fully unrolled
// into scalar code first: a row of 14 or 28 in a convolution. (With its last
// iteration masked as well, llvm.loop.vectorize.predicate.enable, the CNN
// example's step took 2.5 times as long: LLVM builds the masks with 64-bit
// compares.)
void cg_loop_end_vector(Cg *c, CgLoop *l) { loop_end_hinted(c, l, true); }

void cg_set_fn_attrs(Cg *c, LLVMValueRef fn) {
    static const struct { const char *k, *v; } attrs[] = {
        { "no-trapping-math", "true" },
    };
    for (size_t i = 0; i < NN_COUNTOF(attrs); i++)
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                LLVMCreateStringAttribute(c->ctx, attrs[i].k, (unsigned)strlen(attrs[i].k),
                                                          attrs[i].v, (unsigned)strlen(attrs[i].v)));
    const char *kv[3][2] = { { "target-cpu", c->cpu }, { "target-features", c->features },
                             { "prefer-vector-width", c->avx512 ? "512" : NULL } };
    for (int i = 0; i < 3; i++)
        if (kv[i][1] && kv[i][1][0])
            LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                    LLVMCreateStringAttribute(c->ctx, kv[i][0], (unsigned)strlen(kv[i][0]),
                                                              kv[i][1], (unsigned)strlen(kv[i][1])));
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, nounwind, 0));
}

// ---- Target

static bool cpu_has_avx512(const char *cpu, const char *features) {
    if (features && strstr(features, "+avx512f"))
        return true;
    if (features && features[0])
        return false;
    static const char *cpus[] = { "znver4", "znver5", "skylake-avx512", "cascadelake", "cooperlake",
                                  "icelake-client", "icelake-server", "tigerlake", "sapphirerapids",
                                  "emeraldrapids", "graniterapids", "rocketlake", "x86-64-v4", "knl", "knm" };
    for (size_t i = 0; i < NN_COUNTOF(cpus); i++)
        if (strcmp(cpu, cpus[i]) == 0)
            return true;
    return false;
}

static bool make_target(Cg *c) {
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        fprintf(c->nc->diag.out, "nnc: error: no LLVM target for '%s': %s\n", triple, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(triple);
        return false;
    }
    if (c->nc->opt.target_cpu) {
        c->cpu = LLVMCreateMessage(c->nc->opt.target_cpu);
        c->features = LLVMCreateMessage("");
    } else {
        c->cpu = LLVMGetHostCPUName();
        c->features = LLVMGetHostCPUFeatures();
    }
    c->avx512 = cpu_has_avx512(c->cpu, c->features);
    static const LLVMCodeGenOptLevel levels[] = { LLVMCodeGenLevelNone, LLVMCodeGenLevelLess,
                                                  LLVMCodeGenLevelDefault, LLVMCodeGenLevelAggressive };
    int o = c->nc->opt.opt_level < 0 ? 0 : c->nc->opt.opt_level > 3 ? 3 : c->nc->opt.opt_level;
    c->tm = LLVMCreateTargetMachine(target, triple, c->cpu, c->features, levels[o], LLVMRelocPIC,
                                    LLVMCodeModelDefault);
    LLVMSetTarget(c->mod, triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(c->tm);
    char *layout = LLVMCopyStringRepOfTargetData(td);
    LLVMSetDataLayout(c->mod, layout);
    LLVMDisposeMessage(layout);
    LLVMDisposeTargetData(td);
    LLVMDisposeMessage(triple);
    return true;
}

// ---- The descriptor and the exported API

static LLVMValueRef const_string(Cg *c, const char *s, const char *name) {
    LLVMValueRef init = LLVMConstStringInContext(c->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    return g;
}

static LLVMValueRef i64c(Cg *c, uint64_t v) { return LLVMConstInt(c->i64, v, 0); }
static LLVMValueRef i32c(Cg *c, int64_t v) { return LLVMConstInt(c->i32, (unsigned long long)v, 1); }

// FNV-1a of everything a checkpoint must agree on: the name, every parameter's
// name and shape, the optimiser and its settings (ABI.md §3).
static char *model_signature(Cg *c) {
    const Model *m = c->m;
    uint64_t h = NN_FNV1A_BASIS;
    h = nn_fnv1a(h, m->name, strlen(m->name) + 1);
    for (uint32_t i = 0; i < m->n_params; i++) {
        h = nn_fnv1a(h, m->params[i].name, strlen(m->params[i].name) + 1);
        h = nn_fnv1a(h, &m->params[i].shape.rank, 1);
        for (int d = 0; d < m->params[i].shape.rank; d++) {
            int32_t v = m->params[i].shape.dim[d];
            h = nn_fnv1a(h, &v, sizeof v);
        }
    }
    char opt[256];
    const IrOptimizer *o = &m->opt;
    snprintf(opt, sizeof opt, "%d %.9g %.9g %.9g %d %.9g %.9g %.9g %.9g %d", (int)o->kind, o->lr, o->momentum,
             o->weight_decay, (int)o->nesterov, o->beta1, o->beta2, o->eps, o->clip, (int)o->reduce_sum);
    h = nn_fnv1a(h, opt, strlen(opt));
    for (uint32_t i = 0; i < m->n_states; i++)
        h = nn_fnv1a(h, m->states[i].name, strlen(m->states[i].name) + 1);
    return nn_format(&c->nc->arena, "nnc1:%s:%016llx", m->name, (unsigned long long)h);
}

static LLVMTypeRef tensor_info_type(Cg *c) {
    LLVMTypeRef f[] = { c->ptr, c->i32, LLVMArrayType2(c->i64, 4), c->i64 };
    return LLVMStructTypeInContext(c->ctx, f, 4, 0);
}

static LLVMValueRef tensor_table(Cg *c, const char *what, uint32_t n, const char *const *names,
                                 const Shape *shapes, const size_t *offsets) {
    LLVMTypeRef t = tensor_info_type(c);
    LLVMValueRef *rows = nn_alloc_array(&c->nc->arena, n + 1, sizeof(LLVMValueRef));
    for (uint32_t i = 0; i < n; i++) {
        // ABI.md §2: rank 1..4, so a scalar parameter is described as [1].
        Shape s = shapes[i].rank ? shapes[i] : ir_shape1(1);
        LLVMValueRef dims[4];
        for (int d = 0; d < 4; d++)
            dims[d] = i64c(c, d < s.rank ? (uint64_t)s.dim[d] : 0);
        LLVMValueRef f[] = { const_string(c, names[i], nn_format(&c->nc->arena, "%s.name.%u", what, i)),
                             i32c(c, s.rank), LLVMConstArray2(c->i64, dims, 4), i64c(c, offsets[i]) };
        rows[i] = LLVMConstStructInContext(c->ctx, f, 4, 0);
    }
    LLVMValueRef init = LLVMConstArray2(t, rows, n);
    LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), what);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

typedef struct RtFn {
    const char *name;      // runtime function, "nnrt_" + name
    int         ret;       // 0 void, 1 float, 2 ptr, 3 i32
    const char *params;    // p ptr, l i64, f float, i i32
} RtFn;

// In the order of nnc_model_info's function pointers (create first).
static const RtFn rt_fns[] = {
    { "create", 2, "pl" }, { "destroy", 0, "p" }, { "train_step", 1, "pppl" }, { "loss", 1, "pppl" },
    { "predict", 0, "pppl" }, { "grad", 1, "pppll" }, { "apply", 0, "pp" }, { "params", 2, "p" },
    { "set_lr", 0, "pf" }, { "set_threads", 0, "pi" }, { "save", 3, "pp" }, { "load", 3, "pp" },
    { "strerror", 2, "i" },
};

static LLVMTypeRef rt_type(Cg *c, const RtFn *f, bool wrapper) {
    LLVMTypeRef ps[8];
    unsigned n = 0;
    for (const char *p = f->params + (wrapper && strcmp(f->name, "create") == 0); *p; p++)
        ps[n++] = *p == 'p' ? c->ptr : *p == 'l' ? c->i64 : *p == 'f' ? c->f32 : c->i32;
    LLVMTypeRef rets[] = { c->void_t, c->f32, c->ptr, c->i32 };
    return LLVMFunctionType(rets[f->ret], ps, n, 0);
}

static void emit_api(Cg *c) {
    const Model *m = c->m;
    Arena *a = &c->nc->arena;
    // Tables.
    const char **pnames = nn_alloc_array(a, m->n_params + 1, sizeof(char *));
    Shape *pshapes = nn_alloc_array(a, m->n_params + 1, sizeof(Shape));
    size_t *poffs = nn_alloc_array(a, m->n_params + 1, sizeof(size_t));
    for (uint32_t i = 0; i < m->n_params; i++)
        pnames[i] = m->params[i].name, pshapes[i] = m->params[i].shape, poffs[i] = m->params[i].offset;
    LLVMValueRef tensors = tensor_table(c, "nnc.tensors", m->n_params, pnames, pshapes, poffs);
    const char **snames = nn_alloc_array(a, m->n_states + 1, sizeof(char *));
    Shape *sshapes = nn_alloc_array(a, m->n_states + 1, sizeof(Shape));
    size_t *soffs = nn_alloc_array(a, m->n_states + 1, sizeof(size_t));
    for (uint32_t i = 0; i < m->n_states; i++)
        snames[i] = m->states[i].name, sshapes[i] = m->states[i].shape, soffs[i] = m->states[i].offset;
    LLVMValueRef states = tensor_table(c, "nnc.states", m->n_states, snames, sshapes, soffs);
    LLVMTypeRef init_f[] = { c->i32, c->f64, c->f64, c->i64, c->i64 };
    LLVMTypeRef init_t = LLVMStructTypeInContext(c->ctx, init_f, 5, 0);
    LLVMValueRef *irows = nn_alloc_array(a, m->n_params + 1, sizeof(LLVMValueRef));
    for (uint32_t i = 0; i < m->n_params; i++) {
        const IrParam *p = &m->params[i];
        LLVMValueRef f[] = { i32c(c, p->init.kind), LLVMConstReal(c->f64, p->init.a), LLVMConstReal(c->f64, p->init.b),
                             i64c(c, (uint64_t)p->fan_in), i64c(c, (uint64_t)p->fan_out) };
        irows[i] = LLVMConstStructInContext(c->ctx, f, 5, 0);
    }
    LLVMValueRef iinit = LLVMConstArray2(init_t, irows, m->n_params);
    LLVMValueRef inits = LLVMAddGlobal(c->mod, LLVMTypeOf(iinit), "nnc.inits");
    LLVMSetInitializer(inits, iinit);
    LLVMSetGlobalConstant(inits, 1);
    LLVMSetLinkage(inits, LLVMPrivateLinkage);

    // Runtime functions (hidden, inside the same .so) and the exported wrappers.
    LLVMValueRef rt[NN_COUNTOF(rt_fns)], wrap[NN_COUNTOF(rt_fns)];
    LLVMValueRef desc = LLVMAddGlobal(c->mod, c->i8, "nnc.desc.fwd");   // replaced below
    for (size_t i = 0; i < NN_COUNTOF(rt_fns); i++) {
        const RtFn *f = &rt_fns[i];
        LLVMTypeRef rtt = rt_type(c, f, false);
        rt[i] = LLVMAddFunction(c->mod, nn_format(a, "nnrt_%s", f->name), rtt);
        LLVMSetVisibility(rt[i], LLVMHiddenVisibility);
        LLVMTypeRef wt = rt_type(c, f, true);
        wrap[i] = LLVMAddFunction(c->mod, nn_format(a, "%s_%s", m->name, f->name), wt);
        unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
        LLVMAddAttributeAtIndex(wrap[i], LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(c->ctx, nounwind, 0));
        LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->ctx, wrap[i], "entry");
        LLVMPositionBuilderAtEnd(c->b, bb);
        LLVMValueRef args[8];
        unsigned n = 0, nw = LLVMCountParams(wrap[i]);
        if (strcmp(f->name, "create") == 0)
            args[n++] = desc;
        for (unsigned k = 0; k < nw; k++)
            args[n++] = LLVMGetParam(wrap[i], k);
        LLVMValueRef call = LLVMBuildCall2(c->b, rtt, rt[i], args, n, "");
        LLVMSetTailCall(call, 1);
        if (f->ret == 0)
            LLVMBuildRetVoid(c->b);
        else
            LLVMBuildRet(c->b, call);
    }

    // nnc_model_info, then nnrt_desc.
    LLVMValueRef info_f[8 + 12];
    unsigned k = 0;
    info_f[k++] = i32c(c, 1);
    info_f[k++] = const_string(c, m->name, "nnc.name");
    info_f[k++] = i64c(c, (uint64_t)ir_numel(c->g->nodes[m->input].shape));
    info_f[k++] = i64c(c, m->target ? (uint64_t)ir_numel(c->g->nodes[m->target].shape) : 0);
    info_f[k++] = i64c(c, m->output ? (uint64_t)ir_numel(c->g->nodes[m->output].shape) : 0);
    info_f[k++] = i64c(c, m->param_count);
    info_f[k++] = i64c(c, m->n_params);
    info_f[k++] = tensors;
    info_f[k++] = wrap[0];                           // create(seed) needs the descriptor
    for (size_t i = 1; i < 12; i++)
        info_f[k++] = rt[i];
    LLVMValueRef info = LLVMConstStructInContext(c->ctx, info_f, k, 0);
    LLVMValueRef desc_f[] = {
        info, inits, i64c(c, m->state_count), i64c(c, m->n_states), states,
        i64c(c, c->plan.fixed), i64c(c, c->plan.per_sample), cg_f(c, m->opt.lr), i32c(c, c->nc->opt.threads),
        const_string(c, model_signature(c), "nnc.signature"),
        c->kernel[CG_K_GRAD], c->kernel[CG_K_LOSS] ? c->kernel[CG_K_LOSS] : LLVMConstNull(c->ptr),
        c->kernel[CG_K_PREDICT], c->kernel[CG_K_APPLY],
        c->kernel[CG_K_TRAIN] ? c->kernel[CG_K_TRAIN] : LLVMConstNull(c->ptr),
    };
    LLVMValueRef dinit = LLVMConstStructInContext(c->ctx, desc_f, NN_COUNTOF(desc_f), 0);
    LLVMValueRef dg = LLVMAddGlobal(c->mod, LLVMTypeOf(dinit), nn_format(a, "%s_desc", m->name));
    LLVMSetInitializer(dg, dinit);
    LLVMSetGlobalConstant(dg, 1);
    LLVMSetLinkage(dg, LLVMInternalLinkage);
    LLVMSetAlignment(dg, 16);
    LLVMReplaceAllUsesWith(desc, dg);
    LLVMDeleteGlobal(desc);

    // const nnc_model_info *nnc_model_entry(void): the descriptor starts with the info.
    LLVMValueRef entry = LLVMAddFunction(c->mod, "nnc_model_entry", LLVMFunctionType(c->ptr, NULL, 0, 0));
    if (c->nc->opt.emit == EMIT_OBJ)   // several models may be linked into one program
        LLVMSetLinkage(entry, LLVMWeakAnyLinkage);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, entry, "entry"));
    LLVMBuildRet(c->b, dg);
}

// ---- Verification, optimisation, output

static void verify(Cg *c) {
    char *msg = NULL;
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg)) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", msg ? msg : "");
        LLVMDisposeMessage(msg);
        cg_bug(c, "invalid LLVM IR: %s", copy);
    }
    LLVMDisposeMessage(msg);
}

bool cg_optimise(Cg *c) {
    int o = c->nc->opt.opt_level < 0 ? 0 : c->nc->opt.opt_level > 3 ? 3 : c->nc->opt.opt_level;
    char passes[32];
    snprintf(passes, sizeof passes, "default<O%d>", o);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opts, o >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, o >= 2);
    LLVMPassBuilderOptionsSetLoopInterleaving(opts, o >= 2);
    // The unroller doubles compile time on wide models for no measured gain, but
    // tiny models (seed, xor: loops of 2-4 iterations) run twice as fast with it.
    LLVMPassBuilderOptionsSetLoopUnrolling(opts, o >= 3 || (o == 2 && c->m->param_count <= 65536));
    LLVMErrorRef err = LLVMRunPasses(c->mod, passes, c->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (err) {
        char *msg = LLVMGetErrorMessage(err);
        fprintf(c->nc->diag.out, "nnc: error: LLVM passes failed: %s\n", msg);
        LLVMDisposeErrorMessage(msg);
        return false;
    }
    return true;
}

// A temporary file beside `path` (so that rename is atomic); NULL on failure.
static char *temp_beside(Cg *c, const char *path, const char *suffix) {
    char *tmp = nn_format(&c->nc->arena, "%s.tmpXXXXXX%s", path, suffix);
    int fd = mkstemps(tmp, (int)strlen(suffix));
    if (fd < 0) {
        fprintf(c->nc->diag.out, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    fchmod(fd, 0644);   // mkstemp's 0600 would stay after the rename
    close(fd);
    return tmp;
}

static bool commit(Cg *c, const char *tmp, const char *path) {
    if (rename(tmp, path) != 0) {
        fprintf(c->nc->diag.out, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

static bool write_text(Cg *c, const char *path) {
    char *text = LLVMPrintModuleToString(c->mod);
    bool ok = true;
    if (!path) {
        fputs(text, stdout);
    } else {
        char *tmp = temp_beside(c, path, "");
        FILE *f = tmp ? fopen(tmp, "w") : NULL;
        ok = f && fputs(text, f) >= 0;
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok && tmp)
            fprintf(c->nc->diag.out, "nnc: error: cannot write '%s': %s\n", path, strerror(errno)), unlink(tmp);
        ok = ok && commit(c, tmp, path);
    }
    LLVMDisposeMessage(text);
    return ok;
}

bool cg_emit_file(Cg *c, const char *file, LLVMCodeGenFileType kind) {
    char *err = NULL;
    if (LLVMTargetMachineEmitToFile(c->tm, c->mod, file, kind, &err)) {
        fprintf(c->nc->diag.out, "nnc: error: cannot write '%s': %s\n", file, err);
        LLVMDisposeMessage(err);
        return false;
    }
    return true;
}

static bool write_machine(Cg *c, const char *path, LLVMCodeGenFileType kind) {
    char *tmp = temp_beside(c, path, "");
    if (!tmp)
        return false;
    if (!cg_emit_file(c, tmp, kind)) {
        unlink(tmp);
        return false;
    }
    return commit(c, tmp, path);
}

static bool is_file(const char *p) { return p && access(p, R_OK) == 0; }

// libnnrt.a: $NNC_RUNTIME, the build tree's (c->opt.runtime_lib), beside the
// executable, or <prefix>/lib/libnnrt.a of an installed nnc.
// An installed nnc (PREFIX/bin/nnc) links PREFIX/LIBDIR/libnnrt.a; a build
// tree's nnc the libnnrt.a beside it; the path compiled in is the last resort.
static const char *find_runtime(Cg *c) {
    const char *env = getenv("NNC_RUNTIME");
    if (env && env[0])
        return env;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            const char *cands[] = { nn_format(&c->nc->arena, "%s/../%s/libnnrt.a", exe, NNC_INSTALL_LIBDIR),
                                    nn_format(&c->nc->arena, "%s/libnnrt.a", exe) };
            for (size_t i = 0; i < NN_COUNTOF(cands); i++)
                if (is_file(cands[i]))
                    return cands[i];
        }
    }
    if (is_file(c->nc->opt.runtime_lib))
        return c->nc->opt.runtime_lib;
    return NULL;
}

// Links obj and, unless NULL, obj2 with the runtime into the library out.
static bool link_shared(Cg *c, const char *obj, const char *obj2, const char *out) {
    const char *rt = find_runtime(c);
    if (!rt) {
        fprintf(c->nc->diag.out, "nnc: error: cannot find the runtime libnnrt.a (set NNC_RUNTIME)\n");
        return false;
    }
    char *tmp = temp_beside(c, out, ".so");
    if (!tmp)
        return false;
    unlink(tmp);   // the linker creates it with the right mode
    const char *cc = getenv("NNC_CC");
    if (!cc || !cc[0])
        cc = "cc";
    char *argv[16] = { (char *)cc, "-shared", "-o", tmp, (char *)obj };
    size_t k = 5;
    if (obj2)
        argv[k++] = (char *)obj2;
    const char *libs[] = { rt, "-Wl,--as-needed", "-lcjson", "-lz", "-lm", "-lpthread" };
    for (size_t i = 0; i < NN_COUNTOF(libs); i++)
        argv[k++] = (char *)libs[i];
    argv[k] = NULL;
    pid_t pid;
    int rc = posix_spawnp(&pid, cc, NULL, NULL, argv, environ);
    int status = 0;
    if (rc == 0 && waitpid(pid, &status, 0) < 0)
        rc = errno;
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(c->nc->diag.out, "nnc: error: linking '%s' with %s failed%s%s\n", out, cc,
                rc ? ": " : "", rc ? strerror(rc) : "");
        unlink(tmp);
        return false;
    }
    return commit(c, tmp, out);
}

static const char *header_path(Cg *c, const char *out) {
    if (c->nc->opt.header)
        return c->nc->opt.header;
    const char *slash = strrchr(out, '/');
    const char *dot = strrchr(out, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - out) : strlen(out);
    return nn_format(&c->nc->arena, "%.*s.h", (int)stem, out);
}

// A temporary object file's name in /tmp (created empty), or NULL.
static char *temp_object(Cg *c) {
    char *obj = nn_format(&c->nc->arena, "/tmp/nnc-XXXXXX.o");
    int fd = mkstemps(obj, 2);
    if (fd < 0) {
        fprintf(c->nc->diag.out, "nnc: error: cannot create a temporary file: %s\n", strerror(errno));
        return NULL;
    }
    close(fd);
    return obj;
}

// The shared library: optimised and compiled to one or two objects
// (cg_fork.c), linked with the runtime; then the header.
static bool write_library(Cg *c, const char *out) {
    char *obj0 = temp_object(c), *obj1 = obj0 ? temp_object(c) : NULL;
    bool split = false;
    bool ok = obj1 && cg_emit_library_objects(c, obj0, obj1, &split) &&
              link_shared(c, obj0, split ? obj1 : NULL, out);
    if (obj0)
        unlink(obj0);
    if (obj1)
        unlink(obj1);
    return ok && cg_write_header(c->nc, c->m, header_path(c, out));
}

static bool write_outputs(Cg *c) {
    const Options *o = &c->nc->opt;
    const char *out = o->output;
    switch (o->emit) {
    case EMIT_LLVM:
        return cg_optimise(c) && write_text(c, out);
    case EMIT_ASM:
        out = out ? out : nn_format(&c->nc->arena, "%s.s", c->m->name);
        return cg_optimise(c) && write_machine(c, out, LLVMAssemblyFile);
    case EMIT_OBJ:
        out = out ? out : nn_format(&c->nc->arena, "%s.o", c->m->name);
        return cg_optimise(c) && write_machine(c, out, LLVMObjectFile) &&
               cg_write_header(c->nc, c->m, header_path(c, out));
    case EMIT_SO:
    default:
        return write_library(c, out ? out : nn_format(&c->nc->arena, "%s.so", c->m->name));
    }
}

// LLVM's diagnostics are about the code nnc generated, not about the user's
// model: its optimisation warnings and remarks (a loop marked for the
// vectoriser that it could not vectorise) are dropped; an error is printed
// as nnc's internal error (the emitter then fails and says so).
static void llvm_diagnostic(LLVMDiagnosticInfoRef info, void *arg) {
    (void)arg;
    if (LLVMGetDiagInfoSeverity(info) != LLVMDSError)
        return;
    char *text = LLVMGetDiagInfoDescription(info);
    fprintf(stderr, "nnc: internal error: LLVM: %s\n", text);
    LLVMDisposeMessage(text);
}

int cg_compile(NnCtx *nc, const Model *m) {
    m = ir_fuse_update(&nc->arena, m);   // the same model, plus the fused train step
    Cg c = { .nc = nc, .m = m, .g = m->g };
    cg_plan(&nc->arena, m, nc->opt.opt_level, &c.plan);
    c.ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(c.ctx, llvm_diagnostic, NULL);
    c.mod = LLVMModuleCreateWithNameInContext(m->name, c.ctx);
    c.b = LLVMCreateBuilderInContext(c.ctx);
    c.ab = LLVMCreateBuilderInContext(c.ctx);
    c.f32 = LLVMFloatTypeInContext(c.ctx);
    c.f64 = LLVMDoubleTypeInContext(c.ctx);
    c.i1 = LLVMInt1TypeInContext(c.ctx);
    c.i8 = LLVMInt8TypeInContext(c.ctx);
    c.i32 = LLVMInt32TypeInContext(c.ctx);
    c.i64 = LLVMInt64TypeInContext(c.ctx);
    c.ptr = LLVMPointerTypeInContext(c.ctx, 0);
    c.void_t = LLVMVoidTypeInContext(c.ctx);
    bool ok = make_target(&c);
    if (ok) {
        cg_emit_kernels(&c);
        emit_api(&c);
        verify(&c);
        ok = write_outputs(&c);
    }
    LLVMDisposeBuilder(c.ab);
    LLVMDisposeBuilder(c.b);
    LLVMDisposeModule(c.mod);
    if (c.tm)
        LLVMDisposeTargetMachine(c.tm);
    LLVMContextDispose(c.ctx);
    LLVMDisposeMessage(c.cpu);
    LLVMDisposeMessage(c.features);
    return ok ? NN_EXIT_OK : NN_EXIT_INPUT;
}
