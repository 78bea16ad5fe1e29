// cg_fork.c: a shared library's passes and object code in two processes.
// Of the 0.9 s `nnc examples/fashion.nn` took in one process, LLVM's passes
// were about 0.4 s and its code generation 0.35 s, nearly all of it in the
// kernels; in two processes it takes 0.64 s.
// Before the passes, the kernels are dealt into two parts of about equal
// size; a child process (fork) optimises and compiles one part while this
// process does the other, and both objects are linked into the library.
//
// A process rather than a thread: the child shares nothing with this process
// that either could corrupt, fork copies the module for free, and LLVM's
// passes and code generator need no thought about thread safety.
//
// The kernels go in groups: a function used inside another (a parallel body
// called by its chunk, a chunk handed to nnrt_parallel_for by its kernel)
// goes with it and stays internal, so the passes treat it as in one module
// (the body, called once, is inlined). Each part keeps the other's functions
// as declarations. The kernels the descriptor points to are used across the
// parts, so they become external but hidden (the library still exports only
// its API). The globals, all constants, stay internal: each part keeps its
// own copy of those its functions use, so the passes still see their values.
// The code of every function is what one module gives (docs/performance.md,
// section 14: the disassembly compared function by function).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cg_internal.h"

// Below this many instructions (before the passes), LLVM takes a few
// milliseconds: a second process saves nothing (a model of one weight
// compiles in 0.22 s either way, mostly the linker) and costs its CPU.
enum { FORK_MIN_INSTRUCTIONS = 1000 };

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

// The kernels: the internal functions with a body (the API's wrappers are
// external, tiny, and stay in this process with the descriptor they use).
static unsigned list_kernels(Cg *c, LLVMValueRef **out) {
    unsigned n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        n += !LLVMIsDeclaration(f) && is_local(f);
    LLVMValueRef *fns = nn_alloc_array(&c->nc->arena, n ? n : 1, sizeof *fns);
    unsigned k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f) && is_local(f))
            fns[k++] = f;
    *out = fns;
    return n;
}

static unsigned find(unsigned *up, unsigned i) {
    while (up[i] != i)
        i = up[i] = up[up[i]];
    return i;
}

static unsigned index_of(LLVMValueRef *fns, unsigned n, LLVMValueRef f) {
    for (unsigned i = 0; i < n; i++)
        if (fns[i] == f)
            return i;
    return n;
}

// up[]: the kernels in groups that go to one part. A function used inside
// another (a body called by its chunk, a chunk handed to nnrt_parallel_for)
// goes with it, so that the passes see the two as one module would (the
// body, called once, is inlined into its chunk).
static void group(LLVMValueRef *fns, unsigned n, unsigned *up) {
    for (unsigned i = 0; i < n; i++)
        up[i] = i;
    for (unsigned i = 0; i < n; i++)
        for (LLVMUseRef u = LLVMGetFirstUse(fns[i]); u; u = LLVMGetNextUse(u)) {
            LLVMValueRef user = LLVMGetUser(u);
            if (!LLVMIsAInstruction(user))
                continue;
            unsigned j = index_of(fns, n, LLVMGetBasicBlockParent(LLVMGetInstructionParent(user)));
            if (j < n)
                up[find(up, i)] = find(up, j);
        }
}

// in_child[i]: whether kernel i goes to the child. Groups, largest first
// (sizes[i]: kernel i's instructions), each to the part with fewer
// instructions so far.
static void deal(Cg *c, LLVMValueRef *fns, const unsigned *sizes, unsigned n, bool *in_child) {
    unsigned *up = nn_alloc_array(&c->nc->arena, n, sizeof *up);
    unsigned *size = nn_alloc_array(&c->nc->arena, n, sizeof *size);
    group(fns, n, up);
    for (unsigned i = 0; i < n; i++)
        size[find(up, i)] += sizes[i];
    unsigned part[2] = { 0, 0 };
    for (;;) {
        unsigned best = 0;
        for (unsigned i = 1; i < n; i++)
            if (size[i] > size[best])
                best = i;
        if (size[best] == 0)
            break;
        in_child[best] = part[1] < part[0];
        part[in_child[best]] += size[best];
        size[best] = 0;
    }
    for (unsigned i = 0; i < n; i++)
        in_child[i] = in_child[find(up, i)];
}

// Whether a global initializer (the descriptor) uses fn: then the other
// part may, and fn must be visible to the linker.
static bool used_by_a_global(LLVMValueRef fn) {
    for (LLVMUseRef u = LLVMGetFirstUse(fn); u; u = LLVMGetNextUse(u))
        if (!LLVMIsAInstruction(LLVMGetUser(u)))
            return true;
    return false;
}

// Such an internal function becomes external and hidden: the library still
// does not export it.
static void expose(LLVMValueRef fn) {
    LLVMSetLinkage(fn, LLVMExternalLinkage);
    LLVMSetVisibility(fn, LLVMHiddenVisibility);
}

// Replaces fn by a declaration of the same name: the other part defines it.
// Not by deleting fn's blocks one by one: a block deleted while another
// block's branch still uses it leaves that use dangling (LLVM checks this
// only when built with assertions), and the next deletion writes into freed
// memory. LLVMDeleteFunction drops the body's references first.
static void declare_instead(Cg *c, LLVMValueRef fn) {
    size_t len;
    const char *name = LLVMGetValueName2(fn, &len);
    char *copy = nn_format(&c->nc->arena, "%.*s", (int)len, name);
    LLVMValueRef decl = LLVMAddFunction(c->mod, "", LLVMGlobalGetValueType(fn));
    LLVMVisibility vis = LLVMGetVisibility(fn);
    LLVMReplaceAllUsesWith(fn, decl);
    LLVMDeleteFunction(fn);
    LLVMSetValueName2(decl, copy, len);
    LLVMSetVisibility(decl, vis);
}

// Internal globals nothing uses any more (in the child: the descriptor, then
// the tables it pointed to), then the declarations nothing uses (those of the
// other part's functions that only its own functions used).
static void drop_unused(Cg *c) {
    LLVMValueRef next;
    bool changed = true;
    while (changed) {
        changed = false;
        for (LLVMValueRef v = LLVMGetFirstGlobal(c->mod); v; v = next) {
            next = LLVMGetNextGlobal(v);
            if (is_local(v) && !LLVMGetFirstUse(v)) {
                LLVMDeleteGlobal(v);
                changed = true;
            }
        }
    }
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = next) {
        next = LLVMGetNextFunction(f);
        if (LLVMIsDeclaration(f) && !LLVMGetFirstUse(f))
            LLVMDeleteFunction(f);
    }
}

// Keeps the bodies of this part's functions: the kernels with
// in_child[i] == child and, in this process, every function that is not a
// kernel.
static void keep_part(Cg *c, LLVMValueRef *kernels, const bool *in_child, unsigned n, bool child) {
    for (unsigned i = 0; i < n; i++)
        if (in_child[i] != child)
            declare_instead(c, kernels[i]);
    if (child) {
        LLVMValueRef next;
        for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = next) {
            next = LLVMGetNextFunction(f);
            if (!LLVMIsDeclaration(f) && !is_local(f) && LLVMGetVisibility(f) != LLVMHiddenVisibility)
                declare_instead(c, f);
        }
    }
    drop_unused(c);
}

static bool wait_child(Cg *c, pid_t pid) {
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        fprintf(c->nc->diag.out, "nnc: error: waiting for the code generator's second process: %s\n",
                strerror(errno));
        return false;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    if (WIFSIGNALED(status))
        fprintf(c->nc->diag.out, "nnc: error: the code generator's second process was killed by signal %d\n",
                WTERMSIG(status));
    else
        fprintf(c->nc->diag.out, "nnc: error: the code generator's second process failed\n");
    return false;
}

static bool compile_to(Cg *c, const char *obj) {
    return cg_optimise(c) && cg_emit_file(c, obj, LLVMObjectFile);
}

// The child's whole life: its part of the module, compiled to obj; never returns.
_Noreturn static void run_child(Cg *c, pid_t parent, LLVMValueRef *kernels, const bool *in_child, unsigned n,
                                const char *obj) {
    // Killed with nnc (a timeout, ^C from another process group): no orphan
    // left compiling for nobody.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    keep_part(c, kernels, in_child, n, true);
    bool ok = compile_to(c, obj);
    fflush(c->nc->diag.out);   // its messages, if any (stderr is unbuffered)
    _exit(ok ? 0 : 1);   // not exit: the atexit handlers and the streams are this process's
}

// Optimises c->mod and writes its object code to obj0 and, when the module
// is worth splitting, part of it to obj1 from a child process (*split set).
// False on an error (printed).
bool cg_emit_library_objects(Cg *c, const char *obj0, const char *obj1, bool *split) {
    *split = false;
    LLVMValueRef *kernels;
    unsigned n = list_kernels(c, &kernels), total = 0;
    unsigned *sizes = nn_alloc_array(&c->nc->arena, n ? n : 1, sizeof *sizes);
    for (unsigned i = 0; i < n; i++)
        total += sizes[i] = count_instructions(kernels[i]);
    // NNC_ONE_PROCESS=1: all of it here (to compare, or to debug LLVM).
    const char *env = getenv("NNC_ONE_PROCESS");
    bool one = c->nc->opt.one_process || (env && env[0] && strcmp(env, "0") != 0);
    if (n < 2 || total < FORK_MIN_INSTRUCTIONS || one)
        return compile_to(c, obj0);
    bool *in_child = nn_alloc_array(&c->nc->arena, n, sizeof *in_child);
    deal(c, kernels, sizes, n, in_child);
    for (unsigned i = 0; i < n; i++)
        if (used_by_a_global(kernels[i]))
            expose(kernels[i]);
    fflush(NULL);   // or the child would write this process's buffered output again
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        run_child(c, parent, kernels, in_child, n, obj1);
    if (pid < 0)   // no second process: all of it here
        return compile_to(c, obj0);
    keep_part(c, kernels, in_child, n, false);
    bool ok = compile_to(c, obj0);
    ok = wait_child(c, pid) && ok;
    *split = true;
    return ok;
}
