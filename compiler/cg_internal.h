// cg_internal.h: private interface of the LLVM backend (cg_*.c).
//
// The backend turns a train-step Model into one LLVM module holding the
// kernels (grad, loss, predict, apply, train: runtime/nnrt.h), the model's
// nnrt_desc and the exported API of ABI.md §2. The stages:
//   cg_plan.c    which nodes each kernel computes, which are fused into their
//                consumer's loop, and the static memory plan (scratch offsets
//                by liveness); independent of LLVM
//   cg_kernel.c  lowering of the ops into loops with constant shapes
//   cg_matmul.c  matrix products (cg_emit_matmul), behind one function
//   cg_parallel.c  loops split over the threads (cg_parallel)
//   cg_module.c  context, target machine, the descriptor and wrappers,
//                verification, the pass pipeline, objects, linking
#ifndef NNC_CG_INTERNAL_H
#define NNC_CG_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "cg.h"

// ---- cg_plan.c
// TRAIN is train_step in one kernel (grad and apply fused, the gradients never
// stored); it exists only when the Model has train_values (ir_fuse_update).
typedef enum { CG_K_GRAD, CG_K_LOSS, CG_K_PREDICT, CG_K_APPLY, CG_K_TRAIN, CG_N_KERNELS } CgKernelKind;

typedef enum {
    CG_ST_NONE,       // not needed by this kernel
    CG_ST_LEAF,       // a leaf: external storage (params, x, ...) or a value (CONST, SCALAR_ARG)
    CG_ST_INLINE,     // elementwise, computed inside its only consumer's loop; or a
                      // MATMUL W @ x whose consumer chain is its GEMM's epilogue
    CG_ST_ABSORBED,   // OUTER consumed by BATCH_SUM: the pair is one GEMM
    CG_ST_ALIAS,      // RESHAPE of a buffer: the same floats
    CG_ST_SCRATCH,    // its own buffer in the scratch arena
    CG_ST_DEST,       // written straight into a kernel output (grad, out, a param/state)
} CgStorage;

typedef enum { CG_DEST_GRAD, CG_DEST_OUT, CG_DEST_PARAM, CG_DEST_STATE } CgDestKind;

typedef struct CgKPlan {
    CgKernelKind kind;
    uint8_t  *storage;      // n_nodes: CgStorage
    uint32_t *uses;         // n_nodes: uses by needed nodes (+1 for a kernel root)
    NodeId   *user;         // n_nodes: the last user seen (the only one for INLINE)
    NodeId   *alias_of;     // n_nodes: ALIAS: the node whose buffer it shares
    int64_t  *offset;       // n_nodes: SCRATCH: bytes (per sample for IR_F_BATCH nodes)
    uint8_t  *dest_kind;    // n_nodes: DEST: CgDestKind
    size_t   *dest_off;     // n_nodes: DEST: floats inside the destination array
    uint8_t  *store_direct; // n_stores (apply, train): the store's value is written in place
    int64_t  *store_temp;   // n_stores (apply, train): fixed offset of a temporary copy, or -1
    NodeId   *group_end;    // n_nodes: at a group's first member, its last (0: no group).
                            // A group: consecutive materialised elementwise nodes of one
                            // shape, invariant, reading every buffer at their own index,
                            // computed in one loop (each stored in turn at index i)
    NodeId   *deferred;     // n_nodes: at a group's first member, a product dW =
                            // BATCH_SUM(OUTER) that only the group reads: it runs at the
                            // group, which becomes its epilogue (0: none)
    uint8_t  *is_deferred;  // n_nodes: that product (not computed at its own id)
    size_t    fixed;        // bytes of the invariant region
    size_t    per_sample;   // bytes per sample of the per-sample region
} CgKPlan;

typedef struct CgPlan {
    CgKPlan k[CG_N_KERNELS];
    bool    has_train;      // the TRAIN kernel exists (train_values, and every write of a
                            // parameter or state comes after the objective is known)
    bool    grad_is_loss;   // grad with grad == NULL returns the objective before writing
                            // anything: no LOSS kernel (loss() calls grad)
    size_t  fixed;          // bytes: max over kernels (the per-sample region starts here)
    size_t  per_sample;     // bytes per sample: max over kernels
} CgPlan;

// opt_level 0 plans no groups (one loop per node).
void cg_plan(Arena *a, const Model *m, int opt_level, CgPlan *p);
// The value a kernel stores for store s: the update on GRAD_IN (apply) or on
// the gradients themselves (train).
static inline NodeId cg_store_value(const Model *m, CgKernelKind kind, uint32_t s) {
    return kind == CG_K_TRAIN ? m->train_values[s] : m->stores[s].value;
}
bool cg_is_elementwise(uint16_t op);

// ---- cg_module.c: the code generator's state
typedef struct Cg {
    NnCtx              *nc;
    const Model        *m;
    const Graph        *g;
    CgPlan              plan;
    LLVMContextRef      ctx;
    LLVMModuleRef       mod;
    LLVMBuilderRef      b;
    LLVMTargetMachineRef tm;
    LLVMTypeRef         f32, f64, i1, i8, i32, i64, ptr, void_t;
    char               *cpu, *features;   // the target (LLVM messages, disposed at the end)
    bool                avx512;           // prefer 512-bit vectors
    unsigned            lanes;            // cg_f's constants are vectors of this many floats (0: scalars)
    LLVMValueRef        kernel[CG_N_KERNELS];
    // The kernel being emitted.
    const CgKPlan      *kp;
    LLVMValueRef        fn;
    LLVMBasicBlockRef   alloca_bb;   // entry block: allocas only, branches to the body at the end
    LLVMBuilderRef      ab;          // positioned in alloca_bb
    LLVMValueRef        a_params, a_x, a_y, a_out, a_grad, a_state, a_grad_in, a_scratch;
    LLVMValueRef        batch;       // i64
    LLVMValueRef        lr, step, inv_batch;  // float
    LLVMValueRef       *base;        // n_nodes: float* of each buffer in this kernel
    LLVMValueRef        epi_value;   // the product's value inside a matmul epilogue
    NodeId              epi_gemm;    // a deferred dW: its value is epi_value (else its buffer)
    NodeId              epi_group[16];  // the group a deferred dW's epilogue computes
    int                 epi_n;
    LLVMValueRef        pack_buf;    // the kernel's GEMM packing buffer (cg_matmul.c), or NULL
    LLVMValueRef        a_rt;        // the kernel's nnrt_model *rt (threads for nnrt_sgemm)
    unsigned            n_par;       // functions made by cg_parallel so far (their names)
} Cg;

_Noreturn void cg_bug(Cg *c, const char *fmt, ...) NN_PRINTF(2, 3);
bool cg_optimise(Cg *c);                               // LLVM's passes (default<On>)
bool cg_emit_file(Cg *c, const char *file, LLVMCodeGenFileType kind);   // object code or assembly

// ---- cg_fork.c: a library's passes and object code in two processes
bool cg_emit_library_objects(Cg *c, const char *obj0, const char *obj1, bool *split);
void cg_set_fn_attrs(Cg *c, LLVMValueRef fn);          // target-cpu, features, vector width
LLVMValueRef cg_intrinsic(Cg *c, const char *name, LLVMValueRef *args, unsigned n);
LLVMValueRef cg_f(Cg *c, double v);                    // float constant (a vector of it: c->lanes)
LLVMValueRef cg_i(Cg *c, int64_t v);                   // i64 constant
LLVMValueRef cg_min_i(Cg *c, LLVMValueRef a, LLVMValueRef b);   // signed min of two i64
LLVMValueRef cg_max_i(Cg *c, LLVMValueRef a, LLVMValueRef b);   // signed max of two i64
LLVMValueRef cg_gep(Cg *c, LLVMValueRef base, LLVMValueRef idx);   // &base[idx] (floats)
LLVMValueRef cg_load(Cg *c, LLVMValueRef p);
LLVMValueRef cg_vload(Cg *c, LLVMTypeRef t, LLVMValueRef p);          // a float or a vector of them
void         cg_vstore(Cg *c, LLVMValueRef v, LLVMValueRef p);
LLVMValueRef cg_splat(Cg *c, LLVMTypeRef vt, LLVMValueRef s);         // s in every lane of vt
LLVMValueRef cg_splat_const(Cg *c, LLVMValueRef s);                  // constant s in each of c->lanes lanes
void         cg_store(Cg *c, LLVMValueRef v, LLVMValueRef p);
LLVMValueRef cg_alloca(Cg *c, LLVMTypeRef t, const char *name);
// Marks a float add/mul as reassociable so that reductions vectorise.
LLVMValueRef cg_reassoc(LLVMValueRef inst);

// Counted loops: for (i = 0; i < n; i++). Nest them freely.
typedef struct CgLoop {
    LLVMBasicBlockRef body, exit;
    LLVMValueRef      iv, n, phi;
    LLVMBasicBlockRef pre;
} CgLoop;
LLVMValueRef cg_loop_begin(Cg *c, CgLoop *l, LLVMValueRef n, const char *name);
void         cg_loop_end(Cg *c, CgLoop *l);
void         cg_loop_end_plain(Cg *c, CgLoop *l);   // not vectorised nor unrolled (its inner loops are)
void         cg_loop_end_vector(Cg *c, CgLoop *l);  // vectorised, not unrolled into scalar code first

// ---- cg_kernel.c
void cg_emit_kernels(Cg *c);
// Whether id is emitted at its own place (a buffer or destination, not a product
// deferred to its update), and cg_emit_item emits the group starting at id, or node id
// alone; it returns the last id it covers.
bool   cg_is_item(Cg *c, NodeId id);
NodeId cg_emit_item(Cg *c, NodeId id);

// ---- cg_nest.c: a run of per-sample nodes from id split over the threads by
// samples; returns its last id, or 0 (nothing emitted) when none starts at id.
NodeId cg_emit_nest(Cg *c, NodeId id);

// ---- cg_parallel.c: loops split over the model's threads (nnrt_parallel_for).
// Loops of at least CG_PAR_MIN_ELEMS elements are worth a call.
enum { CG_PAR_MIN_ELEMS = 1 << 16 };
typedef void (*CgRangeBody)(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg);
// Emits body(begin, end) into a function of its own and calls it through
// nnrt_parallel_for over [0, n). While body runs, the kernel's arguments and
// every c->base are the function's own: body must not use other values of the
// kernel. False (nothing emitted) when the kernel has no rt.
bool cg_parallel(Cg *c, LLVMValueRef n, CgRangeBody body, void *arg);
// The same function without the call: *fn is a `void fn(void *ctx, int64_t begin,
// int64_t end)` running body over [begin, end), *ctx its context (valid in the kernel).
bool cg_outline(Cg *c, CgRangeBody body, void *arg, LLVMValueRef *fn, LLVMValueRef *ctx);
bool cg_parallel_ok(Cg *c);   // whether cg_parallel would split a loop of this kernel
// nnrt_parallel_for(rt, fn, ctx, n) for a function of cg_outline.
void cg_call_parallel_for(Cg *c, LLVMValueRef fn, LLVMValueRef ctx, LLVMValueRef n);
// cg_kernel.c: c->base of every buffer of the kernel, from its arguments.
void cg_compute_bases(Cg *c);

// ---- cg_matmul.c: C(i,j) (+)= sum_p A(i,p) B(p,j), with
// A(i,p) = a[i*a_rs + p*a_cs], B(p,j) = b[p*b_rs + j*b_cs], C(i,j) = c[i*c_rs + j].
// Counts are i64 values (constants, or depending on the batch); strides are constants.
typedef struct CgGemm CgGemm;
struct CgGemm {
    LLVMValueRef m, n, k;
    LLVMValueRef a, b, c;
    int64_t      a_rs, a_cs, b_rs, b_cs, c_rs;
    bool         accumulate;   // C += A B instead of C = A B
    // Epilogue fusion: instead of storing C(i,j) = v, call epilogue (which
    // stores what it computes from v). Only the dot-product forms support it.
    void       (*epilogue)(Cg *c, const CgGemm *g, LLVMValueRef i, LLVMValueRef j, LLVMValueRef v);
    NodeId       epi_node;     // for the epilogue: the consumer it computes
    // Optional: the epilogue of a vector v of consecutive elements of C from
    // flat index f = i * n + j (rows of n floats, as many rows as fit).
    void       (*epilogue_vec)(Cg *c, const CgGemm *g, LLVMValueRef f, LLVMValueRef v);
    bool         epi_parallel; // the epilogue loop may be split over threads (cg_parallel)
    LLVMValueRef epi_buf;      // [m][n] buffer where C may be stored before the epilogue
                               // reads it back (NULL: the consumer's own buffer)
    NodeId       epi_buf_node; // the node whose buffer epi_buf is
    LLVMValueRef i_off, j_off; // added to i, j before calling the epilogue (NULL: 0)
    // Optional: the epilogue over C's flat indices [begin, end) once C is stored in
    // epi_buf (ldc = n), with its argument; nnrt_sgemm_then runs it on each finished
    // stretch of C.
    CgRangeBody  epi_flat;
    void        *epi_flat_arg;
};
void cg_emit_matmul(Cg *c, const CgGemm *g);

#endif
