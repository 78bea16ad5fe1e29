// test_grad_util.h: small hand-built models and a gradient checker for the
// autodiff tests (test_grad_*.c). Everything is static: each test file that
// includes it gets its own copy (a header, not a support_*.c, because it needs
// the nnc_ir stage and support files may only use nnc_base).
//
// A model is built node by node with ir.h's constructors: tm_new() gives the
// input (and target), tm_param() appends parameters, tm_finish() sets the
// per-sample loss and the batch objective BATCH_SUM(loss) [* INV_BATCH], as
// sema does. tm_data() draws random parameters, inputs and targets;
// tm_check() compares the symbolic gradient (ir_interp on m->grads) with
// central finite differences of the interpreted objective, in double.
#ifndef TEST_GRAD_UTIL_H
#define TEST_GRAD_UTIL_H

#include <math.h>
#include <string.h>

#include "autodiff.h"
#include "ir_test.h"

static const SrcRange tm_at = { 0, 0, 0 };
enum { TM_MAX_PARAMS = 16 };

// A model with input x of shape xs and, if ys.rank != 255, a target of shape ys.
static inline Model *tm_new(Arena *a, Shape xs, Shape ys) {
    Model *m = NN_NEW(a, Model);
    m->name = "t";
    m->g = ir_graph_new(a);
    m->params = nn_alloc_array(a, TM_MAX_PARAMS, sizeof(IrParam));
    m->input = ir_leaf(m->g, IR_INPUT, 0, xs, tm_at);
    if (ys.rank != 255)
        m->target = ir_leaf(m->g, IR_TARGET, 0, ys, tm_at);
    m->opt = (IrOptimizer){ .kind = OPT_SGD, .lr = 0.1 };
    return m;
}

static const Shape tm_no_target = { 255, { 0 } };

static inline NodeId tm_param(Model *m, Shape s) {
    uint32_t i = m->n_params++;
    if (i >= TM_MAX_PARAMS)
        nn_bug("test: too many parameters");
    IrParam *p = &m->params[i];
    p->name = nn_format(m->g->arena, "p%u", i);
    p->shape = s;
    p->init = (IrInit){ .kind = INIT_ZEROS };
    p->offset = m->param_count;
    p->node = ir_leaf(m->g, IR_PARAM, i, s, tm_at);
    m->param_count += (size_t)ir_numel(s);
    return p->node;
}

// loss: a per-sample scalar; the objective is its batch mean (or sum).
static inline void tm_finish(Model *m, NodeId output, NodeId loss, bool mean) {
    m->output = output;
    m->loss = loss;
    NodeId total = ir_reduce(m->g, IR_BATCH_SUM, loss, tm_at);
    if (mean)
        total = ir_binary(m->g, IR_MUL, total, ir_leaf(m->g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), tm_at), tm_at);
    m->objective = total;
}

typedef struct TmData {
    size_t  batch;
    double *x, *y, *params;
} TmData;

static uint64_t tm_rng_state;
static inline double tm_uniform(double lo, double hi) {   // splitmix64
    uint64_t z = (tm_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) / 9007199254740992.0;
}

// Random data in [lo, hi] for x, y and the parameters.
static inline TmData tm_data(Arena *a, const Model *m, size_t batch, uint64_t seed, double lo, double hi) {
    tm_rng_state = seed;
    TmData d = { .batch = batch };
    size_t nx = batch * (size_t)ir_numel(m->g->nodes[m->input].shape);
    size_t ny = m->target ? batch * (size_t)ir_numel(m->g->nodes[m->target].shape) : 0;
    d.x = nn_alloc_array(a, nx + 1, sizeof(double));
    d.y = nn_alloc_array(a, ny + 1, sizeof(double));
    d.params = nn_alloc_array(a, m->param_count + 1, sizeof(double));
    for (size_t i = 0; i < nx; i++) d.x[i] = tm_uniform(lo, hi);
    for (size_t i = 0; i < ny; i++) d.y[i] = tm_uniform(lo, hi);
    for (size_t i = 0; i < m->param_count; i++) d.params[i] = tm_uniform(lo, hi);
    return d;
}

static inline double **tm_interp(const Model *m, const TmData *d, Arena *scratch) {
    InterpArgs args = { .batch = d->batch, .x = d->x, .y = m->target ? d->y : NULL,
                        .params = d->params, .lr = 0.1, .step = 1 };
    return ir_interp(m, &args, scratch);
}

static inline double tm_objective(const Model *m, const TmData *d) {
    Arena scratch = { 0 };
    double v = tm_interp(m, d, &scratch)[m->objective][0];
    nn_arena_free(&scratch);
    return v;
}

// All gradients, concatenated in parameter order (param_count doubles in a).
static inline double *tm_grads(Arena *a, const Model *m, const TmData *d) {
    Arena scratch = { 0 };
    double **vals = tm_interp(m, d, &scratch);
    double *out = nn_alloc_array(a, m->param_count + 1, sizeof(double));
    for (uint32_t i = 0; i < m->n_params; i++)
        memcpy(out + m->params[i].offset, vals[m->grads[i]], (size_t)ir_numel(m->params[i].shape) * sizeof(double));
    nn_arena_free(&scratch);
    return out;
}

// The derivative of the objective of `fwd` along parameter element j:
// Richardson-extrapolated central differences, (4 D(h/2) - D(h)) / 3 with
// D(h) = (f(p + h) - f(p - h)) / 2h: truncation error O(h^4), rounding
// error about eps |f| / h, so h can stay large (1e-4).
static inline double tm_finite_difference(const Model *fwd, TmData *d, size_t j, double h) {
    double p = d->params[j], D[2];
    for (int k = 0; k < 2; k++) {
        double step = k == 0 ? h : h / 2;
        d->params[j] = p + step;
        double up = tm_objective(fwd, d);
        d->params[j] = p - step;
        double down = tm_objective(fwd, d);
        D[k] = (up - down) / (2 * step);
    }
    d->params[j] = p;
    return (4 * D[1] - D[0]) / 3;
}

// max over parameter elements j = 0, stride, 2 stride, ... of
// |symbolic - finite difference| / max(1, |symbolic|, |fd|). The symbolic
// gradient comes from m (differentiated), the objective from fwd (the same
// model, possibly undifferentiated: cheaper to interpret).
static inline double tm_check_every(Arena *a, const Model *m, const Model *fwd, TmData *d, size_t stride) {
    double *sym = tm_grads(a, m, d);
    double worst = 0;
    for (size_t j = 0; j < m->param_count; j += stride) {
        double err = INFINITY;
        // A kink (relu, max, abs) closer than h makes the difference meaningless:
        // retry with a smaller h. A wrong gradient fails at every h.
        for (double h = 1e-4; h >= 1e-6 && !(err <= 1e-6); h /= 100) {
            double fd = tm_finite_difference(fwd, d, j, h);
            double scale = fmax(1.0, fmax(fabs(sym[j]), fabs(fd)));
            err = fabs(sym[j] - fd) / scale;
        }
        if (!(err <= worst))            // NaN counts as the worst
            worst = isnan(err) ? INFINITY : err;
    }
    return worst;
}

static inline double tm_check(Arena *a, const Model *m, TmData *d) {
    return tm_check_every(a, m, m, d, 1);
}

// Is there a live node with op `op` whose operand k is `arg`?
static inline bool tm_has_use(const Model *m, IrOp op, int k, NodeId arg) {
    bool *live = ir_live_mask(m);
    for (NodeId id = 1; id < m->g->n_nodes; id++) {
        const Node *n = &m->g->nodes[id];
        if (live[id] && n->op == op && n->n_args > k && n->arg[k] == arg)
            return true;
    }
    return false;
}

// Number of live nodes with op `op`.
static inline int tm_count_op(const Model *m, IrOp op) {
    bool *live = ir_live_mask(m);
    int count = 0;
    for (NodeId id = 1; id < m->g->n_nodes; id++)
        count += live[id] && m->g->nodes[id].op == op;
    return count;
}

#endif
