// check.c: `nnc check model.nn`, the gradient check (docs/autodiff.md §9).
// Input: the forward Model (sema). It builds the train step twice from copies
// of it, pruned and with -fno-prune, draws a random point (parameters) and a
// random batch, and compares, parameter by parameter:
//   - the pruned symbolic gradient (ir_interp, double) against central finite
//     differences of the batch objective (ir_interp of the forward model):
//       fd = (f(p + h) - f(p - h)) / 2h,  h = 6e-6 * max(1, |p|),
//     whose truncation error is O(h^2) (h^2/6 f''') and whose rounding error
//     is O(eps |f| / h); h near eps^(1/3) balances the two;
//   - the pruned against the unpruned symbolic gradient (the passes must not
//     change the value beyond rounding).
// Errors are relative with a floor under the denominator:
//   err = |g - fd| / max(|g|, |fd|, 0.001 * max(1, |f|)),
// so a gradient much smaller than the objective is held to an absolute
// 1e-9 * max(1, |f|) instead of a relative error its finite difference cannot
// resolve. An element passes when err <= 1e-6 (1e-9 for pruned vs unpruned).
//
// The random point (deterministic from the seed): parameters drawn from their
// own random initialiser (uniform, normal, xavier, he); zeros become
// uniform(-0.5, 0.5) and constant(c) becomes c * uniform(0.5, 1.5), keeping
// its sign (a parameter initialised to 1 may be used under log or sqrt).
// The batch: 3 samples, every input and target element uniform in (0.05, 0.95):
// positive, so log(x) and sqrt(x) are defined, and valid probabilities for
// binary cross-entropy; cross_entropy and softmax_cross_entropy are smooth in
// any target, normalised or not.
// Non-differentiable points (relu at 0, max ties) have measure zero at random
// points, but a finite difference may still straddle one, or the function may
// curve too fast for h (the logistic map iterated 10 times has a third
// derivative near 10^9): an element that fails at h is retried at h/16 and
// h/256, and one that then passes is reported ("ok (small h)"), not failed.
// A wrong gradient fails at every h.
// Large tensors are sampled: at most 64 elements each (all when smaller).
#include <math.h>
#include <string.h>

#include "autodiff.h"

enum { BATCH = 3, MAX_CHECKED = 64 };
static const double FD_TOL = 1e-6, PRUNE_TOL = 1e-9, FD_STEP = 6e-6;

// Test-only: called on each train step built here (pruned = true for the one
// compared with finite differences), so a test can corrupt a gradient and see
// the check fail. NULL in the compiler.
void (*ir_check_test_hook)(Model *train, bool pruned);

// ---- A small deterministic generator (splitmix64).
typedef struct Rng {
    uint64_t s;
} Rng;

static uint64_t rng_next(Rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(Rng *r, double lo, double hi) {
    double u = (double)(rng_next(r) >> 11) * 0x1.0p-53;   // [0, 1)
    return lo + (hi - lo) * u;
}

static double rng_normal(Rng *r, double mean, double std) {
    double u1 = rng_uniform(r, 0x1.0p-53, 1), u2 = rng_uniform(r, 0, 1);
    return mean + std * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double random_param(Rng *r, const IrParam *p) {
    double fan_in = p->fan_in > 0 ? (double)p->fan_in : 1, fan_out = p->fan_out > 0 ? (double)p->fan_out : 1;
    switch (p->init.kind) {
    case INIT_UNIFORM:
        return rng_uniform(r, p->init.a, p->init.b);
    case INIT_NORMAL:
        return rng_normal(r, p->init.a, p->init.b > 0 ? p->init.b : 0.5);
    case INIT_XAVIER: {
        double limit = sqrt(6 / (fan_in + fan_out));
        return rng_uniform(r, -limit, limit);
    }
    case INIT_HE:
        return rng_normal(r, 0, sqrt(2 / fan_in));
    case INIT_ONES:
        return rng_uniform(r, 0.5, 1.5);
    case INIT_CONSTANT:
        if (p->init.a != 0)
            return p->init.a * rng_uniform(r, 0.5, 1.5);
        return rng_uniform(r, -0.5, 0.5);
    case INIT_ZEROS:
        break;
    }
    return rng_uniform(r, -0.5, 0.5);
}

// ---- Copies of the forward model, each to be turned into a train step.
static Model *clone_model(const Model *src, Arena *a) {
    Model *m = NN_NEW(a, Model);
    *m = *src;
    Graph *g = NN_NEW(a, Graph);
    *g = *src->g;
    g->arena = a;
    g->nodes = nn_alloc_array(a, g->nodes_cap, sizeof(Node));
    memcpy(g->nodes, src->g->nodes, src->g->n_nodes * sizeof(Node));
    g->slots = nn_alloc_array(a, g->slots_cap, sizeof(uint32_t));
    memcpy(g->slots, src->g->slots, src->g->slots_cap * sizeof(uint32_t));
    m->g = g;
    m->params = nn_alloc_array(a, src->n_params + 1, sizeof(IrParam));
    memcpy(m->params, src->params, src->n_params * sizeof(IrParam));
    m->grads = NULL;
    m->states = NULL;
    m->n_states = 0;
    m->state_count = 0;
    m->stores = NULL;
    m->n_stores = 0;
    return m;
}

static Model *train_step(NnCtx *c, const Model *forward, bool prune) {
    Model *m = clone_model(forward, &c->arena);
    bool saved = c->opt.no_prune;
    c->opt.no_prune = !prune;
    bool ok = ir_build_train_step(c, m);
    c->opt.no_prune = saved;
    if (!ok || !m->grads)
        return NULL;
    if (ir_check_test_hook)
        ir_check_test_hook(m, prune);
    return m;
}

// ---- Evaluation

typedef struct Point {
    InterpArgs args;
    double    *params;    // param_count
    double    *state;     // zeros, for the update nodes of a train step
    double    *grad_in;   // zeros
} Point;

static double objective_at(const Model *forward, const Point *pt) {
    Arena scratch = { 0 };
    double **v = ir_interp(forward, &pt->args, &scratch);
    double f = v[forward->objective][0];
    nn_arena_free(&scratch);
    return f;
}

// The symbolic gradient of every parameter, into out (param_count doubles).
static void gradient_at(const Model *train, Point *pt, double *out) {
    Arena scratch = { 0 };
    double *state = nn_alloc_array(&scratch, train->state_count + 1, sizeof(double));
    InterpArgs args = pt->args;
    args.state = state;
    double **v = ir_interp(train, &args, &scratch);
    for (uint32_t i = 0; i < train->n_params; i++) {
        size_t n = (size_t)ir_numel(train->params[i].shape);
        if (train->grads[i])
            memcpy(out + train->params[i].offset, v[train->grads[i]], n * sizeof(double));
        else
            memset(out + train->params[i].offset, 0, n * sizeof(double));   // no path to the objective
    }
    nn_arena_free(&scratch);
}

static double rel_err(double g, double fd, double floor) {
    double den = fmax(fmax(fabs(g), fabs(fd)), floor);
    return fabs(g - fd) / den;
}

static double central_difference(const Model *forward, Point *pt, size_t k, double h) {
    double p = pt->params[k];
    pt->params[k] = p + h;
    double fp = objective_at(forward, pt);
    pt->params[k] = p - h;
    double fm = objective_at(forward, pt);
    pt->params[k] = p;
    return (fp - fm) / (2 * h);
}

typedef struct Row {
    uint32_t checked, kinks;
    double   max_abs, max_rel, max_prune;
    bool     ok;
} Row;

static Row check_param(const Model *forward, Point *pt, uint32_t i, const double *g, const double *g_unpruned,
                       double floor, Rng *rng) {
    const IrParam *p = &forward->params[i];
    size_t n = (size_t)ir_numel(p->shape);
    Row r = { .ok = true };
    for (size_t e = 0; e < n; e++) {
        double d = rel_err(g[p->offset + e], g_unpruned[p->offset + e], floor);
        r.max_prune = fmax(r.max_prune, d);
        if (!(d <= PRUNE_TOL))
            r.ok = false;
    }
    size_t n_checked = n <= MAX_CHECKED ? n : MAX_CHECKED;
    for (size_t j = 0; j < n_checked; j++) {
        size_t k = p->offset + (n <= MAX_CHECKED ? j : (size_t)(rng_next(rng) % n));
        double h = FD_STEP * fmax(1, fabs(pt->params[k]));
        double fd = central_difference(forward, pt, k, h);
        double err = rel_err(g[k], fd, floor);
        for (int retry = 0; retry < 2 && !(err <= FD_TOL); retry++) {
            h /= 16;                                    // a kink or strong curvature within h?
            double fd2 = central_difference(forward, pt, k, h);
            double err2 = rel_err(g[k], fd2, floor);
            if (err2 <= FD_TOL) {
                r.kinks++;
                fd = fd2;
                err = err2;
            }
        }
        r.max_abs = fmax(r.max_abs, fabs(g[k] - fd));
        r.max_rel = fmax(r.max_rel, err);
        if (!(err <= FD_TOL))
            r.ok = false;
        r.checked++;
    }
    return r;
}

int ir_check_gradients(NnCtx *c, const Model *forward, FILE *out, uint64_t seed) {
    Model *pruned = train_step(c, forward, true);
    Model *unpruned = train_step(c, forward, false);
    if (!pruned || !unpruned) {
        fprintf(c->diag.out, "nnc: error: could not build the train step of '%s'\n", forward->name);
        return 1;
    }
    Arena *a = &c->arena;
    Rng rng = { seed ^ 0x6e6e632d636865ull };           // "nnc-che"
    const Graph *g = forward->g;
    size_t in_size = forward->input ? (size_t)ir_numel(g->nodes[forward->input].shape) : 0;
    size_t tg_size = forward->target ? (size_t)ir_numel(g->nodes[forward->target].shape) : 0;
    double *x = nn_alloc_array(a, BATCH * in_size + 1, sizeof(double));
    double *y = nn_alloc_array(a, BATCH * tg_size + 1, sizeof(double));
    for (size_t k = 0; k < BATCH * in_size; k++)
        x[k] = rng_uniform(&rng, 0.05, 0.95);
    for (size_t k = 0; k < BATCH * tg_size; k++)
        y[k] = rng_uniform(&rng, 0.05, 0.95);
    Point pt = { 0 };
    pt.params = nn_alloc_array(a, forward->param_count + 1, sizeof(double));
    pt.grad_in = nn_alloc_array(a, forward->param_count + 1, sizeof(double));
    for (uint32_t i = 0; i < forward->n_params; i++) {
        const IrParam *p = &forward->params[i];
        for (int64_t e = 0; e < ir_numel(p->shape); e++)
            pt.params[p->offset + (size_t)e] = random_param(&rng, p);
    }
    pt.args = (InterpArgs){ .batch = BATCH, .x = x, .y = forward->target ? y : NULL, .params = pt.params,
                            .grad_in = pt.grad_in, .lr = forward->opt.lr, .step = 1 };

    double f = objective_at(forward, &pt);
    fprintf(out, "gradient check of '%s': %d samples, seed %llu, central differences with h = %g*max(1,|p|)\n",
            forward->name, BATCH, (unsigned long long)seed, FD_STEP);
    fprintf(out, "objective at the random point: %.17g (%s over the batch)\n", f,
            forward->opt.reduce_sum ? "sum" : "mean");
    if (!isfinite(f)) {
        fprintf(c->diag.out, "nnc: error: the objective of '%s' is not finite at the random point (seed %llu): cannot check\n",
                forward->name, (unsigned long long)seed);
        return 1;
    }
    double floor = 0.001 * fmax(1, fabs(f));
    double *grad = nn_alloc_array(a, forward->param_count + 1, sizeof(double));
    double *grad_unpruned = nn_alloc_array(a, forward->param_count + 1, sizeof(double));
    gradient_at(pruned, &pt, grad);
    gradient_at(unpruned, &pt, grad_unpruned);

    fprintf(out, "\n  %-20s %-14s %9s %12s %12s %12s  %s\n", "parameter", "shape", "checked", "max abs err",
            "max rel err", "vs unpruned", "status");
    uint32_t n_bad = 0, n_kinks = 0;
    for (uint32_t i = 0; i < forward->n_params; i++) {
        const IrParam *p = &forward->params[i];
        Row r = check_param(forward, &pt, i, grad, grad_unpruned, floor, &rng);
        char sh[64], cnt[32];
        snprintf(cnt, sizeof cnt, "%u/%lld", r.checked, (long long)ir_numel(p->shape));
        fprintf(out, "  %-20s %-14s %9s %12.2e %12.2e %12.2e  %s\n", p->name, ir_shape_str(p->shape, sh, sizeof sh),
                cnt, r.max_abs, r.max_rel, r.max_prune, !r.ok ? "FAIL" : r.kinks ? "ok (small h)" : "ok");
        n_bad += !r.ok;
        n_kinks += r.kinks;
    }
    fprintf(out, "\ntolerance: relative error <= %g against finite differences, <= %g pruned against unpruned\n"
                 "(errors relative to max(|g|, |fd|, %.3g) = 0.001*max(1,|objective|))\n",
            FD_TOL, PRUNE_TOL, floor);
    if (n_kinks)
        fprintf(out, "%u element(s) needed a smaller step h (a kink within h, or strong curvature)\n", n_kinks);
    if (n_bad) {
        fprintf(out, "FAILED: %u of %u parameters\n", n_bad, forward->n_params);
        return 1;
    }
    fprintf(out, "ok: all %u parameters within tolerance\n", forward->n_params);
    return 0;
}
