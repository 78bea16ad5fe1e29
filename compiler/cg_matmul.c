// cg_matmul.c: matrix products, all behind cg_emit_matmul(). The callers
// (cg_kernel.c) map every product of the IR onto one strided GEMM
//   C(i,j) (+)= sum_p A(i,p) B(p,j)
// where one of m, n, k may be the batch (a run-time count):
//   W @ x, x per sample:         C[b][i] = sum_p X[b][p] W[i][p]   (m = batch, "NT")
//   adj @ W (dx), x @ W:          C[b][j] = sum_p A[b][p] W[p][j]   (m = batch, "NN")
//   BATCH_SUM(OUTER(a, x)) (dW): C[i][j] = sum_b A[b][i] X[b][j]   (k = batch, "TN")
// This first lowering picks a loop order by which operand is contiguous, so
// that the innermost loop runs over unit strides and LLVM's loop vectoriser
// turns it into full-width vector code. Register-blocked micro-kernels
// (issue 6) replace the bodies here without touching the callers.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cg_internal.h"
#include "nnrt.h"

static LLVMValueRef at(Cg *c, LLVMValueRef base, LLVMValueRef i, int64_t rs, LLVMValueRef j, int64_t cs) {
    LLVMValueRef off = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, cg_i(c, rs), ""),
                                    LLVMBuildMul(c->b, j, cg_i(c, cs), ""), "");
    return cg_gep(c, base, off);
}

// B's rows are contiguous: for each row i of C, C[i][:] += A(i,p) * B[p][:].
static void gemm_axpy(Cg *c, const CgGemm *g) {
    CgLoop li, lj, lp, lj2;
    LLVMValueRef i = cg_loop_begin(c, &li, g->m, "mm.i");
    if (!g->accumulate) {
        LLVMValueRef j = cg_loop_begin(c, &lj, g->n, "mm.z");
        cg_store(c, cg_f(c, 0), at(c, g->c, i, g->c_rs, j, 1));
        cg_loop_end(c, &lj);
    }
    LLVMValueRef p = cg_loop_begin(c, &lp, g->k, "mm.p");
    LLVMValueRef aip = cg_load(c, at(c, g->a, i, g->a_rs, p, g->a_cs));
    LLVMValueRef j = cg_loop_begin(c, &lj2, g->n, "mm.j");
    LLVMValueRef pc = at(c, g->c, i, g->c_rs, j, 1);
    LLVMValueRef prod = cg_reassoc(LLVMBuildFMul(c->b, aip, cg_load(c, at(c, g->b, p, g->b_rs, j, g->b_cs)), ""));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, pc), prod, "")), pc);
    cg_loop_end(c, &lj2);
    cg_loop_end(c, &lp);
    cg_loop_end(c, &li);
}

static LLVMValueRef add_off(Cg *c, LLVMValueRef v, LLVMValueRef off) {
    return off ? LLVMBuildAdd(c->b, v, off, "") : v;
}

// C(i,j) = v (+= with accumulate), or the epilogue at the absolute (i, j).
static void store_c(Cg *c, const CgGemm *g, LLVMValueRef i, LLVMValueRef j, LLVMValueRef v) {
    if (g->epilogue) {
        g->epilogue(c, g, add_off(c, i, g->i_off), add_off(c, j, g->j_off), v);
        return;
    }
    LLVMValueRef pc = at(c, g->c, i, g->c_rs, j, 1);
    if (g->accumulate)
        v = LLVMBuildFAdd(c->b, cg_load(c, pc), v, "");
    cg_store(c, v, pc);
}

// A's rows and B's columns are contiguous in p: dot products.
static void gemm_dot(Cg *c, const CgGemm *g) {
    CgLoop li, lj, lp;
    LLVMValueRef acc = cg_alloca(c, c->f32, "acc");
    LLVMValueRef i = cg_loop_begin(c, &li, g->m, "mm.i");
    LLVMValueRef j = cg_loop_begin(c, &lj, g->n, "mm.j");
    cg_store(c, cg_f(c, 0), acc);
    LLVMValueRef p = cg_loop_begin(c, &lp, g->k, "mm.p");
    LLVMValueRef prod = cg_reassoc(LLVMBuildFMul(c->b, cg_load(c, at(c, g->a, i, g->a_rs, p, g->a_cs)),
                                                 cg_load(c, at(c, g->b, p, g->b_rs, j, g->b_cs)), ""));
    cg_store(c, cg_reassoc(LLVMBuildFAdd(c->b, cg_load(c, acc), prod, "")), acc);
    cg_loop_end(c, &lp);
    store_c(c, g, i, j, cg_load(c, acc));
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
}

// ---- Register-blocked micro-kernels (explicit vectors of VL floats)

enum { AXPY_MR = 6, AXPY_NV = 2, AXPY_KC = 256, AXPY_ROWS_MAX_K = 32, DOT_MR = 4, DOT_NR = 4,
       ALIGNED_ROW_MAX = 4096 };

static int vec_len(Cg *c) { return c->avx512 ? 16 : 8; }

static bool const_of(LLVMValueRef v, int64_t *out) {
    if (!LLVMIsAConstantInt(v))
        return false;
    *out = LLVMConstIntGetSExtValue(v);
    return true;
}

static LLVMValueRef vfma(Cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc) {
    LLVMValueRef args[3] = { a, b, acc };
    return cg_intrinsic(c, "llvm.fma", args, 3);
}

static LLVMValueRef mul_i(Cg *c, LLVMValueRef v, int64_t k) { return LLVMBuildMul(c->b, v, cg_i(c, k), ""); }

// The epilogue over C's rows [i0, i1) and columns [j0, j1), C already
// holding the finished products (edges of the blocked kernels).
static void epilogue_region(Cg *c, const CgGemm *g, LLVMValueRef i0, LLVMValueRef i1, LLVMValueRef j0,
                            LLVMValueRef j1) {
    CgLoop li, lj;
    LLVMValueRef i = LLVMBuildAdd(c->b, i0, cg_loop_begin(c, &li, LLVMBuildSub(c->b, i1, i0, ""), "er.i"), "");
    LLVMValueRef j = LLVMBuildAdd(c->b, j0, cg_loop_begin(c, &lj, LLVMBuildSub(c->b, j1, j0, ""), "er.j"), "");
    LLVMValueRef v = cg_load(c, at(c, g->c, i, g->c_rs, j, 1));
    g->epilogue(c, g, add_off(c, i, g->i_off), add_off(c, j, g->j_off), v);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
}

// A finished AXPY_MR x (AXPY_NV vectors) tile of C through the epilogue: the
// registers go to a small buffer in the frame (L1), then one loop per row over
// its columns, which LLVM vectorises (the update of 16 weights at a time).
static void tile_epilogue(Cg *c, const CgGemm *g, LLVMValueRef acc[AXPY_MR][AXPY_NV], int mr, int nv,
                          LLVMValueRef i0, LLVMValueRef j0) {
    int vl = vec_len(c), nb = nv * vl;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)vl);
    LLVMValueRef tile = cg_alloca(c, LLVMArrayType2(c->f32, (uint64_t)(mr * nb)), "tile");
    LLVMSetAlignment(tile, 64);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            cg_vstore(c, LLVMBuildLoad2(c->b, vt, acc[r][v], ""), cg_gep(c, tile, cg_i(c, r * nb + v * vl)));
    // The loop over the rows is kept a loop, not vectorised (LLVM vectorised
    // it across rows, with gathers and scatters) nor unrolled (one copy of the
    // epilogue's code per row: compile time).
    CgLoop lr, lj;
    LLVMValueRef r = cg_loop_begin(c, &lr, cg_i(c, mr), "te.r");
    LLVMValueRef j = cg_loop_begin(c, &lj, cg_i(c, nb), "te.j");
    LLVMValueRef v = cg_load(c, cg_gep(c, tile, LLVMBuildAdd(c->b, mul_i(c, r, nb), j, "")));
    g->epilogue(c, g, add_off(c, LLVMBuildAdd(c->b, i0, r, ""), g->i_off), add_off(c, LLVMBuildAdd(c->b, j0, j, ""), g->j_off), v);
    cg_loop_end(c, &lj);
    cg_loop_end_plain(c, &lr);
}

// B's rows contiguous, n constant: blocks of AXPY_MR rows x AXPY_NV vectors of C
// held in registers over the whole p loop: per p, AXPY_NV vector loads of B,
// AXPY_MR broadcasts of A, AXPY_MR * AXPY_NV FMAs. Edges go to gemm_axpy.
static bool gemm_axpy_blocked(Cg *c, const CgGemm *g) {
    int64_t n;
    int vl = vec_len(c);
    if (g->b_cs != 1 || !const_of(g->n, &n) || n < AXPY_NV * vl)
        return false;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)vl);
    int64_t nb = AXPY_NV * vl, n_full = n / nb * nb;
    LLVMValueRef m_blocks = LLVMBuildSDiv(c->b, g->m, cg_i(c, AXPY_MR), "");
    LLVMValueRef m_full = mul_i(c, m_blocks, AXPY_MR);
    LLVMValueRef acc[AXPY_MR][AXPY_NV];
    for (int r = 0; r < AXPY_MR; r++)
        for (int v = 0; v < AXPY_NV; v++)
            acc[r][v] = cg_alloca(c, vt, "acc");
    // B is packed, AXPY_KC rows of one block of nb columns at a time, into a
    // contiguous buffer that stays in L1 while every row block of C passes over
    // it (B's rows may be 4 KB apart: each its own page and the same L1 set).
    int64_t n_blocks = n_full / nb;
    if (!c->pack_buf) {   // one per kernel, in its frame
        c->pack_buf = cg_alloca(c, LLVMArrayType2(c->f32, (uint64_t)(AXPY_KC * nb)), "bpack");
        LLVMSetAlignment(c->pack_buf, 64);
    }
    LLVMValueRef buf = c->pack_buf;
    CgLoop lpc, lj, lq, li, lp;
    LLVMValueRef n_chunks = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, g->k, cg_i(c, AXPY_KC - 1), ""), cg_i(c, AXPY_KC), "");
    LLVMValueRef p0 = mul_i(c, cg_loop_begin(c, &lpc, n_chunks, "mb.pc"), AXPY_KC);
    LLVMValueRef rest = LLVMBuildSub(c->b, g->k, p0, "");
    LLVMValueRef kc = cg_min_i(c, rest, cg_i(c, AXPY_KC));
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, p0, cg_i(c, 0), "");
    LLVMValueRef j0 = mul_i(c, cg_loop_begin(c, &lj, cg_i(c, n_blocks), "mb.j"), nb);
    LLVMValueRef q = cg_loop_begin(c, &lq, kc, "mb.pack");
    for (int v = 0; v < AXPY_NV; v++) {
        LLVMValueRef src = at(c, g->b, LLVMBuildAdd(c->b, p0, q, ""), g->b_rs, LLVMBuildAdd(c->b, j0, cg_i(c, v * vl), ""), 1);
        cg_vstore(c, cg_vload(c, vt, src), cg_gep(c, buf, LLVMBuildAdd(c->b, mul_i(c, q, nb), cg_i(c, v * vl), "")));
    }
    cg_loop_end(c, &lq);
    LLVMValueRef i0 = mul_i(c, cg_loop_begin(c, &li, m_blocks, "mb.i"), AXPY_MR);
    // The first chunk starts from zero (C is not read: it may be a buffer the
    // epilogue never needs), later ones from C.
    LLVMBasicBlockRef ld = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.load");
    LLVMBasicBlockRef zero = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.zero");
    LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.go");
    LLVMBuildCondBr(c->b, g->accumulate ? LLVMConstInt(c->i1, 0, 0) : first, zero, ld);
    LLVMPositionBuilderAtEnd(c->b, zero);
    for (int r = 0; r < AXPY_MR; r++)
        for (int v = 0; v < AXPY_NV; v++)
            LLVMBuildStore(c->b, LLVMConstNull(vt), acc[r][v]);
    LLVMBuildBr(c->b, go);
    LLVMPositionBuilderAtEnd(c->b, ld);
    for (int r = 0; r < AXPY_MR; r++)
        for (int v = 0; v < AXPY_NV; v++)
            LLVMBuildStore(c->b, cg_vload(c, vt, at(c, g->c, LLVMBuildAdd(c->b, i0, cg_i(c, r), ""), g->c_rs,
                                                 LLVMBuildAdd(c->b, j0, cg_i(c, v * vl), ""), 1)), acc[r][v]);
    LLVMBuildBr(c->b, go);
    LLVMPositionBuilderAtEnd(c->b, go);
    LLVMValueRef p = cg_loop_begin(c, &lp, kc, "mb.p");
    LLVMValueRef bv[AXPY_NV];
    for (int v = 0; v < AXPY_NV; v++)
        bv[v] = cg_vload(c, vt, cg_gep(c, buf, LLVMBuildAdd(c->b, mul_i(c, p, nb), cg_i(c, v * vl), "")));
    LLVMValueRef pa = LLVMBuildAdd(c->b, p0, p, "");
    for (int r = 0; r < AXPY_MR; r++) {
        LLVMValueRef a = cg_splat(c, vt, cg_load(c, at(c, g->a, LLVMBuildAdd(c->b, i0, cg_i(c, r), ""), g->a_rs, pa, g->a_cs)));
        for (int v = 0; v < AXPY_NV; v++)
            LLVMBuildStore(c->b, vfma(c, a, bv[v], LLVMBuildLoad2(c->b, vt, acc[r][v], "")), acc[r][v]);
    }
    cg_loop_end(c, &lp);
    LLVMBasicBlockRef done = NULL;
    if (g->epilogue) {   // the last chunk: the tile through the epilogue instead of into C
        LLVMValueRef is_last = LLVMBuildICmp(c->b, LLVMIntEQ, LLVMBuildAdd(c->b, p0, kc, ""), g->k, "");
        LLVMBasicBlockRef epi = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.epi");
        LLVMBasicBlockRef st = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.store");
        done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mb.next");
        LLVMBuildCondBr(c->b, is_last, epi, st);
        LLVMPositionBuilderAtEnd(c->b, epi);
        tile_epilogue(c, g, acc, AXPY_MR, AXPY_NV, i0, j0);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, st);
    }
    for (int r = 0; r < AXPY_MR; r++)
        for (int v = 0; v < AXPY_NV; v++)
            cg_vstore(c, LLVMBuildLoad2(c->b, vt, acc[r][v], ""),
                   at(c, g->c, LLVMBuildAdd(c->b, i0, cg_i(c, r), ""), g->c_rs,
                      LLVMBuildAdd(c->b, j0, cg_i(c, v * vl), ""), 1));
    if (done) {
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, done);
    }
    cg_loop_end(c, &li);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &lpc);
    CgGemm raw = *g;      // edges: plain loops into C, then the epilogue over them
    raw.epilogue = NULL;
    if (n_full < n) {   // the last columns of the full row blocks
        CgGemm e = raw;
        e.m = m_full;
        e.n = cg_i(c, n - n_full);
        e.b = cg_gep(c, g->b, cg_i(c, n_full * g->b_cs));
        e.c = cg_gep(c, g->c, cg_i(c, n_full));
        gemm_axpy(c, &e);
        if (g->epilogue)
            epilogue_region(c, g, cg_i(c, 0), m_full, cg_i(c, n_full), g->n);
    }
    CgGemm e = raw;   // the last rows
    e.m = LLVMBuildSub(c->b, g->m, m_full, "");
    e.a = cg_gep(c, g->a, mul_i(c, m_full, g->a_rs));
    e.c = cg_gep(c, g->c, mul_i(c, m_full, g->c_rs));
    gemm_axpy(c, &e);
    if (g->epilogue)
        epilogue_region(c, g, m_full, g->m, cg_i(c, 0), g->n);
    return true;
}

// One block of rows [i_begin, i_begin + rows) x columns [j_begin, j_begin +
// cols) of C, in tiles of mr rows x nv vectors held in registers over the
// whole p loop (B read in place), each finished tile through the epilogue.
// rows is a multiple of mr, cols of nv vectors.
static void rows_epilogue_block(Cg *c, const CgGemm *g, int64_t i_begin, int64_t rows, int mr, int64_t j_begin,
                                int64_t cols, int nv) {
    int vl = vec_len(c);
    int64_t nb = (int64_t)nv * vl;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)vl);
    LLVMValueRef acc[AXPY_MR][AXPY_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = cg_alloca(c, vt, "acc");
    CgLoop li, lj, lp;
    LLVMValueRef i0 = LLVMBuildAdd(c->b, mul_i(c, cg_loop_begin(c, &li, cg_i(c, rows / mr), "mr.i"), mr), cg_i(c, i_begin), "");
    LLVMValueRef j0 = LLVMBuildAdd(c->b, mul_i(c, cg_loop_begin(c, &lj, cg_i(c, cols / nb), "mr.j"), nb), cg_i(c, j_begin), "");
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            LLVMBuildStore(c->b, LLVMConstNull(vt), acc[r][v]);
    LLVMValueRef p = cg_loop_begin(c, &lp, g->k, "mr.p");
    LLVMValueRef bv[AXPY_NV];
    for (int v = 0; v < nv; v++)
        bv[v] = cg_vload(c, vt, at(c, g->b, p, g->b_rs, LLVMBuildAdd(c->b, j0, cg_i(c, v * vl), ""), 1));
    for (int r = 0; r < mr; r++) {
        LLVMValueRef a = cg_splat(c, vt, cg_load(c, at(c, g->a, LLVMBuildAdd(c->b, i0, cg_i(c, r), ""), g->a_rs, p, g->a_cs)));
        for (int v = 0; v < nv; v++)
            LLVMBuildStore(c->b, vfma(c, a, bv[v], LLVMBuildLoad2(c->b, vt, acc[r][v], "")), acc[r][v]);
    }
    cg_loop_end(c, &lp);
    tile_epilogue(c, g, acc, mr, nv, i0, j0);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
}

// The row of n floats at b, 64-byte aligned: b itself when it is, else a
// copy in the frame (up to ALIGNED_ROW_MAX floats). The rank-1 update reads
// the row once per row of C; misaligned (a user's x from malloc is 16-byte
// aligned), each of those vector loads spans two cache lines: mnist at batch
// 1 spent 1.5 us of its 11 us step on it.
static LLVMValueRef aligned_row(Cg *c, LLVMValueRef b, int64_t n) {
    if (n > ALIGNED_ROW_MAX)
        return b;
    LLVMValueRef buf = cg_alloca(c, LLVMArrayType2(c->f32, (uint64_t)n), "row");
    LLVMSetAlignment(buf, 64);
    LLVMValueRef low = LLVMBuildAnd(c->b, LLVMBuildPtrToInt(c->b, b, c->i64, ""), cg_i(c, 63), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef copy = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "row.copy");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "row.done");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, low, cg_i(c, 0), ""), copy, join);
    LLVMPositionBuilderAtEnd(c->b, copy);
    LLVMBuildMemCpy(c->b, buf, 64, b, 4, cg_i(c, n * (int64_t)sizeof(float)));
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    LLVMValueRef row = LLVMBuildPhi(c->b, c->ptr, "row");
    LLVMAddIncoming(row, (LLVMValueRef[]){ b, buf }, (LLVMBasicBlockRef[]){ from, copy }, 2);
    return row;
}

// dW straight into its update (an epilogue; k = the batch, m and n constant):
// row blocks outer, column blocks inner, so that the epilogue walks the
// parameter and its state row after row. Full tiles of 6 rows x 2 vectors,
// then the last rows in one narrower tile, the last columns one vector wide;
// columns left over (fewer than a vector) go through C and epilogue_region
// (LLVM vectorises those narrow loops across rows, with gathers: keep them
// rare).
static bool gemm_axpy_rows_epilogue(Cg *c, const CgGemm *g) {
    int64_t m, n;
    int vl = vec_len(c);
    if (!g->epilogue || g->b_cs != 1 || !const_of(g->m, &m) || !const_of(g->n, &n) || n < vl)
        return false;
    int64_t nb = AXPY_NV * vl, n2 = n / nb * nb, n1 = n2 + (n - n2 >= vl ? vl : 0);
    int64_t m_full = m / AXPY_MR * AXPY_MR, m_rem = m - m_full;
    // k = 1 (batch 1): C = a b^T, one pass over the rows, each a loop over the
    // columns that LLVM vectorises; no tiles, no loop over k (measured: the
    // tiles' set-up was a third of mnist's batch-1 step).
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mr.done");
    LLVMBasicBlockRef tiles = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mr.tiles");
    LLVMBasicBlockRef rank1 = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mr.rank1");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, g->k, cg_i(c, 1), ""), rank1, tiles);
    LLVMPositionBuilderAtEnd(c->b, rank1);
    // Only x, the user's array, can be misaligned: the kernel's buffers are
    // 64-byte aligned (and each copy would take a row of the frame).
    LLVMValueRef brow = g->b == c->a_x ? aligned_row(c, g->b, n) : g->b;
    CgLoop li, lj;
    LLVMValueRef i = cg_loop_begin(c, &li, g->m, "r1.i");
    LLVMValueRef ai = cg_load(c, at(c, g->a, i, g->a_rs, cg_i(c, 0), g->a_cs));
    LLVMValueRef j = cg_loop_begin(c, &lj, g->n, "r1.j");
    LLVMValueRef v = LLVMBuildFMul(c->b, ai, cg_load(c, cg_gep(c, brow, j)), "");
    g->epilogue(c, g, add_off(c, i, g->i_off), add_off(c, j, g->j_off), v);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, tiles);
    struct { int64_t i, rows; int mr; } parts[2] = { { 0, m_full, AXPY_MR }, { m_full, m_rem, (int)m_rem } };
    for (int q = 0; q < 2; q++) {
        if (parts[q].rows == 0)
            continue;
        if (n2 > 0)
            rows_epilogue_block(c, g, parts[q].i, parts[q].rows, parts[q].mr, 0, n2, AXPY_NV);
        if (n1 > n2)
            rows_epilogue_block(c, g, parts[q].i, parts[q].rows, parts[q].mr, n2, vl, 1);
    }
    if (n1 < n) {   // the last columns: plain loops into C, then the epilogue over them
        CgGemm e = *g;
        e.epilogue = NULL;
        e.accumulate = false;
        e.n = cg_i(c, n - n1);
        e.b = cg_gep(c, g->b, cg_i(c, n1 * g->b_cs));
        e.c = cg_gep(c, g->c, cg_i(c, n1));
        gemm_axpy(c, &e);
        epilogue_region(c, g, cg_i(c, 0), g->m, cg_i(c, n1), g->n);
    }
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
    return true;
}

// n accumulators (vectors of 16; n = 2, 4, 8 or 16) summed horizontally all
// at once. Each level adds the two halves of every lane group of a pair of
// vectors (two shuffles and an add per pair): for 16 accumulators, 4 levels
// and 45 instructions for the 16 sums instead of a separate log-depth
// reduction of each vector (about 8 each, on one dependency chain). With
// fewer accumulators the last vector's lane groups are then halved in place
// until each is one lane. Every accumulator's lanes are added in the same
// tree (lane t with t + 8, then t + 4, t + 2, t + 1) whatever n. sums[q]: the
// scalar of accs[q]. Only for vectors of 16 lanes (AVX-512); false otherwise.
static bool reduce_tree(Cg *c, const LLVMValueRef *accs, int n, LLVMValueRef *sums) {
    enum { L = 16 };
    if (vec_len(c) != L || n < 2 || n > L || L % n != 0)
        return false;
    LLVMTypeRef vt = LLVMVectorType(c->f32, L);
    LLVMValueRef v[L];
    int groups[L][L];   // groups[i][g]: the accumulator of lane group g of v[i]
    int nv = n, ng = 1, w = L;   // vectors left, lane groups in each, their width
    for (int q = 0; q < n; q++) {
        v[q] = LLVMBuildLoad2(c->b, vt, accs[q], "");
        groups[q][0] = q;
    }
    while (nv > 1) {
        int h = w / 2;
        for (int m = 0; m < nv / 2; m++) {
            LLVMValueRef lo[L], hi[L];
            int ng2[L];
            for (int g2 = 0; g2 < 2 * ng; g2++) {
                int from = g2 < ng ? 0 : L, g = g2 % ng;
                ng2[g2] = groups[2 * m + (g2 < ng ? 0 : 1)][g];
                for (int t = 0; t < h; t++) {
                    lo[g2 * h + t] = LLVMConstInt(c->i32, (unsigned)(from + g * w + t), 0);
                    hi[g2 * h + t] = LLVMConstInt(c->i32, (unsigned)(from + g * w + h + t), 0);
                }
            }
            LLVMValueRef a = LLVMBuildShuffleVector(c->b, v[2 * m], v[2 * m + 1], LLVMConstVector(lo, L), "");
            LLVMValueRef b = LLVMBuildShuffleVector(c->b, v[2 * m], v[2 * m + 1], LLVMConstVector(hi, L), "");
            v[m] = cg_reassoc(LLVMBuildFAdd(c->b, a, b, ""));
            memcpy(groups[m], ng2, sizeof ng2);
        }
        nv /= 2;
        ng *= 2;
        w = h;
    }
    for (; w > 1; w /= 2) {   // n < 16: halve the groups of the one vector left
        int h = w / 2;
        LLVMValueRef lo[L], hi[L];
        for (int g = 0; g < ng; g++)
            for (int t = 0; t < h; t++) {
                lo[g * h + t] = LLVMConstInt(c->i32, (unsigned)(g * w + t), 0);
                hi[g * h + t] = LLVMConstInt(c->i32, (unsigned)(g * w + h + t), 0);
            }
        LLVMValueRef a = LLVMBuildShuffleVector(c->b, v[0], v[0], LLVMConstVector(lo, (unsigned)(ng * h)), "");
        LLVMValueRef b = LLVMBuildShuffleVector(c->b, v[0], v[0], LLVMConstVector(hi, (unsigned)(ng * h)), "");
        v[0] = cg_reassoc(LLVMBuildFAdd(c->b, a, b, ""));
    }
    for (int l = 0; l < n; l++)
        sums[groups[0][l]] = LLVMBuildExtractElement(c->b, v[0], LLVMConstInt(c->i32, (unsigned)l, 0), "");
    return true;
}

// g restricted to its columns from j0 on (the epilogue still sees C's absolute j).
static CgGemm columns_from(Cg *c, const CgGemm *g, LLVMValueRef j0) {
    CgGemm e = *g;
    e.n = LLVMBuildSub(c->b, g->n, j0, "");
    e.b = cg_gep(c, g->b, LLVMBuildMul(c->b, j0, cg_i(c, g->b_cs), ""));
    if (g->c)
        e.c = cg_gep(c, g->c, j0);
    e.j_off = add_off(c, j0, g->j_off);
    return e;
}

// The rows of A left over by the blocked dot kernel (fewer than DOT_MR; at
// batch 1, all of them), one at a time against ROWS_NC columns of B: as many
// independent vector sums (one sum per column was a single dependent FMA
// chain, latency-bound), A's vector loaded once per p for all of them. 8
// columns, not 16: B's columns are W's rows, each a stream of its own, and
// mnist's forward product at batch 1 (128 x 784, in L2) took 3.8-4.8 us with
// 16 streams, 3.5-3.9 with 8 (docs/performance.md section 19). Only with
// AVX-512 (the shuffle-tree reduction); the last columns go to gemm_dot.
enum { ROWS_NC = 8 };
static bool gemm_dot_rows(Cg *c, const CgGemm *g, int64_t k) {
    int vl = vec_len(c);
    if (vl != 16)
        return false;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)vl);
    int64_t k_full = k / vl * vl;
    LLVMValueRef n_blocks = LLVMBuildSDiv(c->b, g->n, cg_i(c, ROWS_NC), "");
    LLVMValueRef n_full = mul_i(c, n_blocks, ROWS_NC);
    LLVMValueRef acc[ROWS_NC];
    for (int q = 0; q < ROWS_NC; q++)
        acc[q] = cg_alloca(c, vt, "acc");
    LLVMValueRef sacc = cg_alloca(c, c->f32, "sacc");
    CgLoop li, lj, lp, lq;
    LLVMValueRef i = cg_loop_begin(c, &li, g->m, "dr.i");
    LLVMValueRef j0 = mul_i(c, cg_loop_begin(c, &lj, n_blocks, "dr.j"), ROWS_NC);
    for (int q = 0; q < ROWS_NC; q++)
        LLVMBuildStore(c->b, LLVMConstNull(vt), acc[q]);
    LLVMValueRef p = mul_i(c, cg_loop_begin(c, &lp, cg_i(c, k_full / vl), "dr.p"), vl);
    LLVMValueRef av = cg_vload(c, vt, at(c, g->a, i, g->a_rs, p, 1));
    for (int q = 0; q < ROWS_NC; q++) {
        LLVMValueRef bv = cg_vload(c, vt, at(c, g->b, p, 1, LLVMBuildAdd(c->b, j0, cg_i(c, q), ""), g->b_cs));
        LLVMBuildStore(c->b, vfma(c, av, bv, LLVMBuildLoad2(c->b, vt, acc[q], "")), acc[q]);
    }
    cg_loop_end(c, &lp);
    LLVMValueRef sums[ROWS_NC];
    reduce_tree(c, acc, ROWS_NC, sums);
    for (int q = 0; q < ROWS_NC; q++) {
        LLVMValueRef jq = LLVMBuildAdd(c->b, j0, cg_i(c, q), "");
        cg_store(c, sums[q], sacc);
        if (k_full < k) {   // the last k % VL terms
            LLVMValueRef t = LLVMBuildAdd(c->b, cg_loop_begin(c, &lq, cg_i(c, k - k_full), "dr.q"), cg_i(c, k_full), "");
            LLVMValueRef prod = LLVMBuildFMul(c->b, cg_load(c, at(c, g->a, i, g->a_rs, t, 1)),
                                              cg_load(c, at(c, g->b, t, 1, jq, g->b_cs)), "");
            cg_store(c, LLVMBuildFAdd(c->b, cg_load(c, sacc), prod, ""), sacc);
            cg_loop_end(c, &lq);
        }
        store_c(c, g, i, jq, cg_load(c, sacc));
    }
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    CgGemm e = columns_from(c, g, n_full);   // the last columns
    gemm_dot(c, &e);
    return true;
}

// Dot products, k constant: blocks of DOT_MR rows of A x DOT_NR columns of B,
// DOT_MR * DOT_NR vector partial sums over p, reduced at the end.
static bool gemm_dot_blocked(Cg *c, const CgGemm *g) {
    int64_t k;
    int vl = vec_len(c);
    if (g->a_cs != 1 || g->b_rs != 1 || !const_of(g->k, &k) || k < vl)
        return false;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)vl);
    int64_t k_full = k / vl * vl;
    LLVMValueRef m_blocks = LLVMBuildSDiv(c->b, g->m, cg_i(c, DOT_MR), "");
    LLVMValueRef n_blocks = LLVMBuildSDiv(c->b, g->n, cg_i(c, DOT_NR), "");
    LLVMValueRef m_full = mul_i(c, m_blocks, DOT_MR), n_full = mul_i(c, n_blocks, DOT_NR);
    LLVMValueRef acc[DOT_MR][DOT_NR];
    for (int r = 0; r < DOT_MR; r++)
        for (int u = 0; u < DOT_NR; u++)
            acc[r][u] = cg_alloca(c, vt, "acc");
    LLVMValueRef sacc = cg_alloca(c, c->f32, "sacc");
    // Panels of B's columns (rows of W) sized for L2 (about 256 KB), the row blocks inside.
    int64_t pb = 65536 / (k * DOT_NR);
    pb = pb < 1 ? 1 : pb;
    CgLoop lpan, li, lj, lp, lq;
    LLVMValueRef n_pan = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, n_blocks, cg_i(c, pb - 1), ""), cg_i(c, pb), "");
    LLVMValueRef jb0 = mul_i(c, cg_loop_begin(c, &lpan, n_pan, "db.pan"), pb);
    LLVMValueRef left = LLVMBuildSub(c->b, n_blocks, jb0, "");
    LLVMValueRef in_panel = cg_min_i(c, left, cg_i(c, pb));
    LLVMValueRef i0 = mul_i(c, cg_loop_begin(c, &li, m_blocks, "db.i"), DOT_MR);
    LLVMValueRef j0 = mul_i(c, LLVMBuildAdd(c->b, jb0, cg_loop_begin(c, &lj, in_panel, "db.j"), ""), DOT_NR);
    LLVMValueRef ri[DOT_MR], uj[DOT_NR];
    for (int r = 0; r < DOT_MR; r++)
        ri[r] = LLVMBuildAdd(c->b, i0, cg_i(c, r), "");
    for (int u = 0; u < DOT_NR; u++)
        uj[u] = LLVMBuildAdd(c->b, j0, cg_i(c, u), "");
    for (int r = 0; r < DOT_MR; r++)
        for (int u = 0; u < DOT_NR; u++)
            LLVMBuildStore(c->b, LLVMConstNull(vt), acc[r][u]);
    LLVMValueRef p = mul_i(c, cg_loop_begin(c, &lp, cg_i(c, k_full / vl), "db.p"), vl);
    LLVMValueRef av[DOT_MR], bv[DOT_NR];
    for (int r = 0; r < DOT_MR; r++)
        av[r] = cg_vload(c, vt, at(c, g->a, ri[r], g->a_rs, p, 1));
    for (int u = 0; u < DOT_NR; u++)
        bv[u] = cg_vload(c, vt, at(c, g->b, p, 1, uj[u], g->b_cs));
    for (int r = 0; r < DOT_MR; r++)
        for (int u = 0; u < DOT_NR; u++)
            LLVMBuildStore(c->b, vfma(c, av[r], bv[u], LLVMBuildLoad2(c->b, vt, acc[r][u], "")), acc[r][u]);
    cg_loop_end(c, &lp);
    unsigned rid = LLVMLookupIntrinsicID("llvm.vector.reduce.fadd", 23);
    LLVMValueRef rfn = LLVMGetIntrinsicDeclaration(c->mod, rid, &vt, 1);
    LLVMTypeRef rft = LLVMIntrinsicGetType(c->ctx, rid, &vt, 1);
    LLVMValueRef sums[DOT_MR * DOT_NR], flat[DOT_MR * DOT_NR];
    for (int q = 0; q < DOT_MR * DOT_NR; q++)
        flat[q] = acc[q / DOT_NR][q % DOT_NR];
    if (!reduce_tree(c, flat, DOT_MR * DOT_NR, sums))
        for (int q = 0; q < DOT_MR * DOT_NR; q++) {
            LLVMValueRef args[2] = { cg_f(c, 0), LLVMBuildLoad2(c->b, vt, acc[q / DOT_NR][q % DOT_NR], "") };
            sums[q] = cg_reassoc(LLVMBuildCall2(c->b, rft, rfn, args, 2, ""));
        }
    for (int r = 0; r < DOT_MR; r++)
        for (int u = 0; u < DOT_NR; u++) {
            cg_store(c, sums[r * DOT_NR + u], sacc);
            if (k_full < k) {   // the last k % VL terms
                LLVMValueRef q = LLVMBuildAdd(c->b, cg_loop_begin(c, &lq, cg_i(c, k - k_full), "db.q"),
                                              cg_i(c, k_full), "");
                LLVMValueRef prod = LLVMBuildFMul(c->b, cg_load(c, at(c, g->a, ri[r], g->a_rs, q, 1)),
                                                  cg_load(c, at(c, g->b, q, 1, uj[u], g->b_cs)), "");
                cg_store(c, LLVMBuildFAdd(c->b, cg_load(c, sacc), prod, ""), sacc);
                cg_loop_end(c, &lq);
            }
            store_c(c, g, ri[r], uj[u], cg_load(c, sacc));
        }
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
    cg_loop_end(c, &lpan);
    CgGemm e = columns_from(c, g, n_full);   // the last columns of the full row blocks
    e.m = m_full;
    gemm_dot(c, &e);
    e = *g;          // the last rows
    e.m = LLVMBuildSub(c->b, g->m, m_full, "");
    e.a = cg_gep(c, g->a, mul_i(c, m_full, g->a_rs));
    if (g->c)
        e.c = cg_gep(c, g->c, mul_i(c, m_full, g->c_rs));
    e.i_off = add_off(c, m_full, g->i_off);
    if (!gemm_dot_rows(c, &e, k))
        gemm_dot(c, &e);
    return true;
}

// A fused product's C can be its consumer's own buffer ([m][n], per sample,
// at absolute (i, j)): the product is stored there, then epilogue_loop turns
// each element into the consumer's value in place.
static bool epilogue_buffer(Cg *c, const CgGemm *g, LLVMValueRef *cbuf, int64_t *ldc) {
    int64_t n;
    const Node *e = &c->g->nodes[g->epi_node];
    if (g->epi_buf && !g->i_off && !g->j_off && const_of(g->n, &n)) {
        *cbuf = g->epi_buf;
        *ldc = n;
        return true;
    }
    if (g->i_off || g->j_off || !const_of(g->n, &n) || !(e->flags & IR_F_BATCH) || ir_numel(e->shape) != n ||
        !c->base[g->epi_node])
        return false;
    *cbuf = c->base[g->epi_node];
    *ldc = n;
    return true;
}

// C(i,j) = epilogue(C(i,j)) over the [m][ldc] buffer: one flat loop that LLVM
// vectorises (bias + activation on 16 elements at a time).
typedef struct EpiArg {
    const CgGemm *g;
    int64_t       ldc;
} EpiArg;

// Rows narrower than a vector (a tiny layer: 4 units) left LLVM one row at a
// time, each row a vector of n lanes, so a layer of 4 tanh units at batch 4
// cost 4 passes through the exp on 4 lanes. With epilogue_vec, rows of n
// floats (n dividing the vector length) are taken together as vectors of
// `lanes` consecutive floats of C: one pass on 16 lanes. 0: not this way.
static int epilogue_lanes(Cg *c, const CgGemm *g, int64_t ldc) {
    int64_t n, m;
    int lanes = vec_len(c);
    if (!g->epilogue_vec || c->nc->opt.opt_level < 2 || !const_of(g->n, &n) || n != ldc || n >= lanes ||
        lanes % n != 0)
        return 0;
    if (const_of(g->m, &m))   // fewer rows than a vector: the vector of them all
        while (lanes / 2 >= n && lanes / 2 >= m * n)
            lanes /= 2;
    return lanes > n ? lanes : 0;
}

// The vectors of epilogue_lanes over rows [begin, end); returns the first row
// left (fewer rows than a vector holds).
static LLVMValueRef epilogue_vectors(Cg *c, const CgGemm *g, LLVMValueRef cbuf, int lanes, LLVMValueRef begin,
                                     LLVMValueRef end) {
    int64_t n = LLVMConstIntGetSExtValue(g->n);   // a constant (epilogue_lanes)
    int64_t rows = lanes / n;
    LLVMValueRef count = LLVMBuildSDiv(c->b, LLVMBuildSub(c->b, end, begin, ""), cg_i(c, rows), "");
    CgLoop l;
    LLVMValueRef q = cg_loop_begin(c, &l, count, "se.v");
    LLVMValueRef f = LLVMBuildAdd(c->b, mul_i(c, begin, n), mul_i(c, q, lanes), "");
    g->epilogue_vec(c, g, f, cg_vload(c, LLVMVectorType(c->f32, (unsigned)lanes), cg_gep(c, cbuf, f)));
    cg_loop_end(c, &l);
    return LLVMBuildAdd(c->b, begin, mul_i(c, count, rows), "");
}

// C is the epilogue node's buffer or epi_buf (epilogue_buffer): named by node,
// so that a body emitted elsewhere (cg_parallel) finds its own pointer.
static void epilogue_rows(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    EpiArg *ea = arg;
    const CgGemm *g = ea->g;
    LLVMValueRef cbuf = c->base[g->epi_buf ? g->epi_buf_node : g->epi_node];
    CgLoop li, lj;
    int lanes = epilogue_lanes(c, g, ea->ldc);
    if (lanes)
        begin = epilogue_vectors(c, g, cbuf, lanes, begin, end);
    LLVMValueRef i = LLVMBuildAdd(c->b, begin, cg_loop_begin(c, &li, LLVMBuildSub(c->b, end, begin, ""), "se.i"), "");
    LLVMValueRef j = cg_loop_begin(c, &lj, g->n, "se.j");
    LLVMValueRef v = cg_load(c, cg_gep(c, cbuf, LLVMBuildAdd(c->b, mul_i(c, i, ea->ldc), j, "")));
    g->epilogue(c, g, i, j, v);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
}

// After nnrt_sgemm (a large product: bias and activation of a large layer,
// or a weight's update over a stored dW) the rows are split over the threads;
// after the inline kernels (small products) the loop stays serial: one copy
// of the epilogue's code each (compile time).
static void epilogue_loop(Cg *c, const CgGemm *g, LLVMValueRef cbuf, int64_t ldc, bool split) {
    EpiArg ea = { g, ldc };
    NN_ASSERT(cbuf == c->base[g->epi_buf ? g->epi_buf_node : g->epi_node]);
    if (!(split && g->epi_parallel && cg_parallel(c, g->m, epilogue_rows, &ea)))
        epilogue_rows(c, cg_i(c, 0), g->m, &ea);
}

// dW = A^T B (k = the batch) into its update group, the group as the epilogue
// (a deferred dW, cg_plan.c): by row blocks up to AXPY_ROWS_MAX_K samples (B
// read in place; batch 1 a rank-1 pass), beyond through the packed axpy
// kernel, which keeps B in L1 (fashion b256 without: +8 %, b64: +4 %). Below
// -O2, or for narrow or run-time shapes, C is stored, then the epilogue runs
// over it.
static void emit_dw_update(Cg *c, const CgGemm *g) {
    int64_t m, n;
    if (c->nc->opt.opt_level >= 2 && const_of(g->m, &m) && const_of(g->n, &n) && n >= AXPY_NV * vec_len(c)) {
        LLVMBasicBlockRef rows = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dw.rows");
        LLVMBasicBlockRef packed = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dw.packed");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "dw.done");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLE, g->k, cg_i(c, AXPY_ROWS_MAX_K), ""), rows, packed);
        LLVMPositionBuilderAtEnd(c->b, rows);
        gemm_axpy_rows_epilogue(c, g);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, packed);
        gemm_axpy_blocked(c, g);
        LLVMBuildBr(c->b, done);
        LLVMPositionBuilderAtEnd(c->b, done);
        return;
    }
    CgGemm raw = *g;
    raw.epilogue = NULL;
    raw.c = g->epi_buf;
    raw.accumulate = false;
    gemm_axpy(c, &raw);
    epilogue_region(c, g, cg_i(c, 0), g->m, cg_i(c, 0), g->n);
}

// A product without epilogue: the blocked kernels, else plain loops.
static void emit_plain(Cg *c, const CgGemm *g) {
    if (c->nc->opt.opt_level >= 2 && (gemm_axpy_blocked(c, g) || gemm_dot_blocked(c, g)))
        return;
    bool n_is_1 = LLVMIsAConstantInt(g->n) && LLVMConstIntGetSExtValue(g->n) == 1;   // unblocked forms
    if (g->b_cs == 1 && !(n_is_1 && g->a_cs == 1 && g->b_rs == 1))
        gemm_axpy(c, g);
    else
        gemm_dot(c, g);      // any strides; vectorises when a_cs == b_rs == 1
}

static void emit_inline(Cg *c, const CgGemm *g) {
    LLVMValueRef cbuf;
    int64_t ldc;
    if (g->epilogue && g->epi_buf && g->b_cs == 1) {
        emit_dw_update(c, g);
        return;
    }
    if (g->epilogue && c->nc->opt.opt_level >= 2 && epilogue_buffer(c, g, &cbuf, &ldc)) {
        // The blocked kernels store plain sums, then the epilogue runs as its
        // own vector loop: inside the dot kernel it ran on 4 elements at a time.
        CgGemm raw = *g;
        raw.epilogue = NULL;
        raw.c = cbuf;
        raw.c_rs = ldc;
        raw.accumulate = false;
        emit_plain(c, &raw);
        epilogue_loop(c, g, cbuf, ldc, false);
        return;
    }
    if (g->epilogue) {   // dot products only: each C(i,j) is complete when stored
        if (!(c->nc->opt.opt_level >= 2 && gemm_dot_blocked(c, g)))
            gemm_dot(c, g);
        return;
    }
    emit_plain(c, g);
}

// ---- Large products: a call to the runtime's packed, threaded nnrt_sgemm.
//
// A product of at least CG_SGEMM_MIN_MACS multiply-adds (m * n * k), or of at
// least CG_SGEMM_MIN_MACS_MT when the model runs on more than one thread,
// calls nnrt_sgemm (runtime/gemm.c: packed A and B, 12x32 AVX-512
// micro-kernel, rows or columns of C split over the model's threads, the
// same bits for any thread count); a smaller one runs the inline kernels above (no
// call, no packing: they win on small products). The test is made at run
// time when the batch is one of m, n, k, or the thread count matters. The
// thresholds were chosen by measurement (docs/performance.md);
// NNC_SGEMM_MIN_MACS in the compiler's environment sets both (0: never call
// nnrt_sgemm; 1: always; for tests and measurements).
#define CG_SGEMM_MIN_MACS    (INT64_C(1) << 23)
#define CG_SGEMM_MIN_MACS_MT (INT64_C(1) << 22)

static void sgemm_min_macs(int64_t *one, int64_t *many) {
    const char *e = getenv("NNC_SGEMM_MIN_MACS");
    *one = CG_SGEMM_MIN_MACS, *many = CG_SGEMM_MIN_MACS_MT;
    if (e && *e) {
        long long v = strtoll(e, NULL, 10);
        *one = *many = v <= 0 ? INT64_MAX : (int64_t)v;
    }
}

// nnrt_sgemm's (transpose, leading dimension) for an operand with strides
// (rs, cs): row-major (cs = 1) or transposed (rs = 1); false otherwise.
static bool blas_operand(int64_t rs, int64_t cs, int *t, int64_t *ld) {
    if (cs == 1 && rs > 1) {
        *t = 0, *ld = rs;
        return true;
    }
    if (rs == 1 && cs > 1) {
        *t = 1, *ld = cs;
        return true;
    }
    return false;
}

// How C's finished stretches reach the epilogue inside nnrt_sgemm.
typedef enum { THEN_NONE, THEN_ROWS, THEN_EACH } ThenKind;

// nnrt_sgemm(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), or
// nnrt_sgemm_then / nnrt_sgemm_each(..., fn, ctx).
static LLVMValueRef sgemm_fn(Cg *c, ThenKind then, LLVMTypeRef *ft) {
    LLVMTypeRef p = c->ptr, i32 = c->i32, i64 = c->i64, f = c->f32;
    LLVMTypeRef params[16] = { p, i32, i32, i64, i64, i64, f, p, i64, p, i64, f, p, i64, p, p };
    const char *name = then == THEN_ROWS ? "nnrt_sgemm_then" : then == THEN_EACH ? "nnrt_sgemm_each" : "nnrt_sgemm";
    *ft = LLVMFunctionType(c->void_t, params, then ? 16 : 14, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
    if (!fn) {
        fn = LLVMAddFunction(c->mod, name, *ft);
        LLVMSetVisibility(fn, LLVMHiddenVisibility);
    }
    return fn;
}

// The epilogue over C's flat indices [begin, end) of its [m][n] buffer
// (nnrt_sgemm_each hands a stretch of rows or of one row): the rows it
// touches, each from its first to its last column in the range.
static void epilogue_flat(Cg *c, LLVMValueRef begin, LLVMValueRef end, void *arg) {
    EpiArg *ea = arg;
    const CgGemm *g = ea->g;
    LLVMValueRef cbuf = c->base[g->epi_buf ? g->epi_buf_node : g->epi_node], n = cg_i(c, ea->ldc);
    LLVMValueRef r0 = LLVMBuildSDiv(c->b, begin, n, "");
    LLVMValueRef r1 = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, end, cg_i(c, ea->ldc - 1), ""), n, "");
    CgLoop li, lj;
    LLVMValueRef i = LLVMBuildAdd(c->b, r0, cg_loop_begin(c, &li, LLVMBuildSub(c->b, r1, r0, ""), "sf.i"), "");
    LLVMValueRef row = mul_i(c, i, ea->ldc);
    LLVMValueRef j0 = cg_max_i(c, LLVMBuildSub(c->b, begin, row, ""), cg_i(c, 0));
    LLVMValueRef j1 = cg_min_i(c, LLVMBuildSub(c->b, end, row, ""), n);
    LLVMValueRef j = LLVMBuildAdd(c->b, j0, cg_loop_begin(c, &lj, LLVMBuildSub(c->b, j1, j0, ""), "sf.j"), "");
    LLVMValueRef v = cg_load(c, cg_gep(c, cbuf, LLVMBuildAdd(c->b, row, j, "")));
    g->epilogue(c, g, i, j, v);
    cg_loop_end(c, &lj);
    cg_loop_end(c, &li);
}

// The epilogue as a callback of nnrt_sgemm, when C is stored in rows of n:
// it then runs on each finished stretch of C by the thread that computed it,
// while it is in that thread's cache, instead of in a loop after the product
// that reads all of C again (from another core's cache for part of it, at
// two threads). A weight's update (epi_flat, over the dW in epi_buf) takes
// whole rows (nnrt_sgemm_then); any other epilogue (a layer's bias and
// activation, or an activation's derivative) takes the stretches of the
// product's own split (nnrt_sgemm_each).
static ThenKind then_fn(Cg *c, const CgGemm *g, LLVMValueRef cbuf, EpiArg *ea, LLVMValueRef *fn, LLVMValueRef *ctx) {
    int64_t n;
    if (!g->epilogue || !const_of(g->n, &n) || n != ea->ldc)
        return THEN_NONE;
    if (g->epi_flat)
        return g->epi_buf && cbuf == g->epi_buf && cg_outline(c, g->epi_flat, g->epi_flat_arg, fn, ctx) ? THEN_ROWS
                                                                                                       : THEN_NONE;
    return g->epi_parallel && cg_outline(c, epilogue_flat, ea, fn, ctx) ? THEN_EACH : THEN_NONE;
}

// C = A B (beta 0) or C += A B through nnrt_sgemm; with an epilogue, C is the
// epilogue node's own buffer ([m][n]) and a loop then applies the epilogue
// in place (each element read once, then overwritten by its consumer's value),
// or nnrt_sgemm calls it on each finished stretch (then_fn).
static void emit_sgemm(Cg *c, const CgGemm *g, int ta, int64_t lda, int tb, int64_t ldb,
                       LLVMValueRef cbuf, int64_t ldc) {
    LLVMValueRef tfn = NULL, ctx = NULL;
    EpiArg ea = { g, ldc };
    ThenKind then = then_fn(c, g, cbuf, &ea, &tfn, &ctx);
    LLVMTypeRef ft;
    LLVMValueRef fn = sgemm_fn(c, then, &ft);
    LLVMValueRef args[16] = {
        c->a_rt, LLVMConstInt(c->i32, (unsigned)ta, 0), LLVMConstInt(c->i32, (unsigned)tb, 0),
        g->m, g->n, g->k, cg_f(c, 1), g->a, cg_i(c, lda), g->b, cg_i(c, ldb),
        cg_f(c, g->accumulate && !g->epilogue ? 1 : 0), cbuf, cg_i(c, ldc), tfn, ctx,
    };
    LLVMBuildCall2(c->b, ft, fn, args, then ? 16 : 14, "");
    if (g->epilogue && !then)
        epilogue_loop(c, g, cbuf, ldc, true);
}

// Routes g to nnrt_sgemm when it is large (a run-time branch when the batch is
// one of m, n, k); false when it never can be.
static bool try_sgemm(Cg *c, const CgGemm *g) {
    int ta, tb;
    int64_t lda, ldb, ldc = g->c_rs;
    if (c->nc->opt.opt_level < 2 || !c->a_rt || !blas_operand(g->a_rs, g->a_cs, &ta, &lda) ||
        !blas_operand(g->b_rs, g->b_cs, &tb, &ldb))
        return false;
    LLVMValueRef cbuf = g->c;
    if (g->epilogue) {   // C must be the consumer's [m][n] buffer, at absolute (i, j)
        if (!epilogue_buffer(c, g, &cbuf, &ldc))
            return false;
    } else if (g->accumulate && ldc < 1) {
        return false;
    }
    if (!cbuf)
        return false;
    int64_t min1, min_mt, known = 1, v;
    sgemm_min_macs(&min1, &min_mt);
    int n_runtime = 0;
    LLVMValueRef dims[3] = { g->m, g->n, g->k };
    for (int d = 0; d < 3; d++) {
        if (const_of(dims[d], &v))
            known *= v;
        else
            n_runtime++;
    }
    if (min_mt == INT64_MAX || (n_runtime == 0 && known < min_mt) ||
        (n_runtime > 0 && (double)known * 4096 < (double)min_mt))   // not even at batch 4096
        return false;
    if (n_runtime == 0 && known >= min1) {
        emit_sgemm(c, g, ta, lda, tb, ldb, cbuf, ldc);
        return true;
    }
    // macs >= min1 || (rt && rt->threads > 1 && macs >= min_mt)
    LLVMValueRef macs = LLVMBuildMul(c->b, LLVMBuildMul(c->b, g->m, g->n, ""), g->k, "");
    LLVMValueRef thr_p = LLVMBuildGEP2(c->b, c->i8, c->a_rt, (LLVMValueRef[]){ cg_i(c, offsetof(nnrt_model, threads)) },
                                       1, "");
    LLVMValueRef has_rt = LLVMBuildICmp(c->b, LLVMIntNE, c->a_rt, LLVMConstNull(c->ptr), "");
    LLVMBasicBlockRef test_bb = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef load_bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.thr");
    LLVMBasicBlockRef pick_bb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.pick");
    LLVMBuildCondBr(c->b, has_rt, load_bb, pick_bb);
    LLVMPositionBuilderAtEnd(c->b, load_bb);
    LLVMValueRef thr = LLVMBuildLoad2(c->b, c->i32, thr_p, "threads");
    LLVMBuildBr(c->b, pick_bb);
    LLVMPositionBuilderAtEnd(c->b, pick_bb);
    LLVMValueRef t = LLVMBuildPhi(c->b, c->i32, "t");
    LLVMValueRef one = LLVMConstInt(c->i32, 1, 0);
    LLVMAddIncoming(t, (LLVMValueRef[]){ one, thr }, (LLVMBasicBlockRef[]){ test_bb, load_bb }, 2);
    LLVMValueRef multi = LLVMBuildICmp(c->b, LLVMIntSGT, t, one, "");
    LLVMValueRef big1 = LLVMBuildICmp(c->b, LLVMIntSGE, macs, cg_i(c, min1), "");
    LLVMValueRef big_mt = LLVMBuildAnd(c->b, multi, LLVMBuildICmp(c->b, LLVMIntSGE, macs, cg_i(c, min_mt), ""), "");
    LLVMValueRef use = LLVMBuildOr(c->b, big1, big_mt, "");
    LLVMBasicBlockRef big = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.sgemm");
    LLVMBasicBlockRef small = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.inline");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "mm.done");
    LLVMBuildCondBr(c->b, use, big, small);
    LLVMPositionBuilderAtEnd(c->b, big);
    emit_sgemm(c, g, ta, lda, tb, ldb, cbuf, ldc);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, small);
    emit_inline(c, g);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    return true;
}

void cg_emit_matmul(Cg *c, const CgGemm *g) {
    if (!try_sgemm(c, g))
        emit_inline(c, g);
}
