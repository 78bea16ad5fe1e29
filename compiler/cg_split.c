// cg_split.c: a shared library's object code on two threads. Of the 0.9 s
// `nnc examples/fashion.nn` takes, LLVM's code generation (instruction
// selection, scheduling, register allocation) is about 0.35 s, almost all of
// it in the train, grad and predict kernels. After the passes, the module's
// functions are dealt into two parts of about equal size (largest first, each
// to the smaller part); the second part goes to a thread as a module of its
// own (bitcode, parsed in a context of its own: an LLVM context is not
// shared between threads) while this thread compiles the first. Both objects
// are linked into the library. Only the code is split: the optimised IR is
// the same, so the library computes the same bits.
//
// A symbol one part defines and the other uses must be visible to the linker:
// every internal function and global becomes hidden (not exported from the
// library) but external, and the second part declares the globals (the first
// defines them all) and the functions it does not compile.
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/TargetMachine.h>

#include "cg_internal.h"

// Below this many instructions the thread and the bitcode cost more than they save.
enum { SPLIT_MIN_INSTRUCTIONS = 4000 };

static unsigned count_instructions(LLVMValueRef fn) {
    unsigned n = 0;
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i))
            n++;
    return n;
}

static bool is_local(LLVMValueRef v) {
    LLVMLinkage l = LLVMGetLinkage(v);
    return l == LLVMInternalLinkage || l == LLVMPrivateLinkage;
}

// llvm.used and the like: LLVM's own, left alone (the second part drops them).
static bool is_llvm_own(LLVMValueRef v) {
    size_t len;
    const char *name = LLVMGetValueName2(v, &len);
    return len >= 5 && strncmp(name, "llvm.", 5) == 0;
}

// Internal symbols become hidden external ones (named, if they had no name).
static void expose(LLVMValueRef v, unsigned *n_named) {
    if (!is_local(v))
        return;
    size_t len;
    LLVMGetValueName2(v, &len);
    if (len == 0) {
        char name[32];
        snprintf(name, sizeof name, "nnc.split.%u", (*n_named)++);
        LLVMSetValueName2(v, name, strlen(name));
    }
    LLVMSetLinkage(v, LLVMExternalLinkage);
    LLVMSetVisibility(v, LLVMHiddenVisibility);
}

static void drop_body(LLVMValueRef fn) {
    LLVMBasicBlockRef bb;
    while ((bb = LLVMGetFirstBasicBlock(fn)))
        LLVMDeleteBasicBlock(bb);
}

typedef struct Part {
    LLVMMemoryBufferRef bitcode;
    const char         *triple, *cpu, *features, *obj;
    LLVMCodeGenOptLevel level;
    char               *err;   // NULL: the object was written
} Part;

static void *compile_part(void *arg) {
    Part *p = arg;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(ctx, cg_llvm_diagnostic, NULL);
    LLVMModuleRef mod = NULL;
    LLVMTargetRef target;
    if (LLVMParseBitcodeInContext2(ctx, p->bitcode, &mod)) {
        p->err = LLVMCreateMessage("cannot read back the module's second half");
    } else if (!LLVMGetTargetFromTriple(p->triple, &target, &p->err)) {
        LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, p->triple, p->cpu, p->features, p->level,
                                                          LLVMRelocPIC, LLVMCodeModelDefault);
        LLVMTargetMachineEmitToFile(tm, mod, p->obj, LLVMObjectFile, &p->err);
        LLVMDisposeTargetMachine(tm);
    }
    if (mod)
        LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    return NULL;
}

// second[i]: whether function i (of those with a body, in module order) goes
// to the second part. Largest first, each to the part with fewer
// instructions so far (size[i] is zeroed once dealt).
static void deal(unsigned *size, unsigned n, bool *second) {
    unsigned part[2] = { 0, 0 };
    for (unsigned round = 0; round < n; round++) {
        unsigned best = 0;
        for (unsigned i = 1; i < n; i++)
            if (size[i] > size[best])
                best = i;
        second[best] = part[1] < part[0];
        part[second[best]] += size[best];
        size[best] = 0;
    }
}

// The functions of the second part: a copy of the module keeps their bodies
// and declares everything else; c->mod loses their bodies.
static LLVMModuleRef take_second_part(Cg *c, const bool *second, unsigned n_fns) {
    LLVMModuleRef copy = LLVMCloneModule(c->mod);
    unsigned k = 0;
    LLVMValueRef f = LLVMGetFirstFunction(c->mod), g = LLVMGetFirstFunction(copy);
    for (; f && g && k < n_fns; f = LLVMGetNextFunction(f), g = LLVMGetNextFunction(g)) {
        if (LLVMIsDeclaration(f))
            continue;
        drop_body(second[k++] ? f : g);
    }
    LLVMValueRef next;
    for (LLVMValueRef v = LLVMGetFirstGlobal(copy); v; v = next) {
        next = LLVMGetNextGlobal(v);
        if (is_llvm_own(v))
            LLVMDeleteGlobal(v);
        else if (!LLVMIsDeclaration(v))
            LLVMSetInitializer(v, NULL);
    }
    return copy;
}

// Writes c->mod's object code to obj0 and, when the module is worth
// splitting, half of it to obj1 (*split set). False on an error (printed).
bool cg_emit_split(Cg *c, const char *obj0, const char *obj1, bool *split) {
    *split = false;
    unsigned n_fns = 0, total = 0, k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        n_fns += !LLVMIsDeclaration(f);
    unsigned *size = nn_alloc_array(&c->nc->arena, n_fns, sizeof *size);
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            total += size[k++] = count_instructions(f);
    if (total < SPLIT_MIN_INSTRUCTIONS || n_fns < 2)
        return cg_emit_object(c, obj0);
    bool *second = nn_alloc_array(&c->nc->arena, n_fns, sizeof *second);
    deal(size, n_fns, second);
    unsigned n_named = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            expose(f, &n_named);
    for (LLVMValueRef v = LLVMGetFirstGlobal(c->mod); v; v = LLVMGetNextGlobal(v))
        if (!is_llvm_own(v))
            expose(v, &n_named);
    LLVMModuleRef copy = take_second_part(c, second, n_fns);
    Part p = { .bitcode = LLVMWriteBitcodeToMemoryBuffer(copy), .triple = LLVMGetTarget(c->mod), .cpu = c->cpu,
               .features = c->features, .obj = obj1, .level = c->level };
    LLVMDisposeModule(copy);
    pthread_t thread;
    bool threaded = pthread_create(&thread, NULL, compile_part, &p) == 0;
    bool ok = cg_emit_object(c, obj0);
    if (threaded)
        pthread_join(thread, NULL);
    else
        compile_part(&p);
    LLVMDisposeMemoryBuffer(p.bitcode);
    if (p.err) {
        fprintf(c->nc->diag.out, "nnc: error: cannot write '%s': %s\n", obj1, p.err);
        LLVMDisposeMessage(p.err);
        return false;
    }
    *split = true;
    return ok;
}
