// interp.c: the reference interpreter of the IR, in double precision. It is the
// oracle that autodiff and codegen are tested against, so it is written to be
// obviously right, not fast: one loop over nodes[] in id order (operands come
// first), each node evaluated by plain nested loops over its elements.
//
// Per-sample nodes (IR_F_BATCH) hold batch * numel values, sample after sample;
// invariant nodes hold numel values, computed once. An operation on a mix of
// the two reads the invariant operand for every sample. BATCH_SUM adds the
// samples of its operand. Missing data (x, y, params, state or grad_in given as
// NULL) reads as NaN, so that a value that depends on it is visibly undefined.
#include <math.h>
#include <string.h>

#include "ir.h"

typedef struct Interp {
    const Model      *m;
    const Graph      *g;
    const InterpArgs *args;
    double          **vals;      // per node: batch * numel (IR_F_BATCH) or numel
} Interp;

static bool is_batch(const Interp *in, NodeId id) {
    return in->g->nodes[id].flags & IR_F_BATCH;
}

// The values of node `id` for sample s (the only block for an invariant node).
static double *value_at(const Interp *in, NodeId id, size_t s) {
    size_t numel = (size_t)ir_numel(in->g->nodes[id].shape);
    return in->vals[id] + (is_batch(in, id) ? s * numel : 0);
}

// Copies n values from src, or fills with NaN when src is missing.
static void copy_or_nan(double *out, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = src ? src[i] : NAN;
}

// Index into `small` of the element that NumPy broadcasting sends to element i
// of `big` (row-major): trailing dimensions align, a 1 or missing one stretches.
static size_t broadcast_index(Shape big, Shape small, size_t i) {
    size_t index = 0, stride = 1;
    for (int k = 1; k <= big.rank; k++) {
        size_t d = (size_t)big.dim[big.rank - k];
        size_t coord = i % d;
        i /= d;
        if (k <= small.rank) {
            size_t ds = (size_t)small.dim[small.rank - k];
            if (ds != 1)
                index += coord * stride;
            stride *= ds;
        }
    }
    return index;
}

static double softplus(double a) {
    // log(1 + exp(a)) without overflow: a + log(1 + exp(-a)) for a > 0.
    return a > 0 ? a + log1p(exp(-a)) : log1p(exp(a));
}

double ir_eval_unary(IrOp op, double a, double imm) {
    switch (op) {
    case IR_NEG:        return -a;
    case IR_EXP:        return exp(a);
    case IR_LOG:        return log(a);
    case IR_SQRT:       return sqrt(a);
    case IR_ABS:        return fabs(a);
    case IR_TANH:       return tanh(a);
    case IR_SIGMOID:    return 1.0 / (1.0 + exp(-a));
    case IR_RELU:       return a > 0 ? a : 0.0;
    case IR_SOFTPLUS:   return softplus(a);
    case IR_SIN:        return sin(a);
    case IR_COS:        return cos(a);
    case IR_SQUARE:     return a * a;
    case IR_STEP:       return a > 0 ? 1.0 : 0.0;
    case IR_SIGN:       return a > 0 ? 1.0 : a < 0 ? -1.0 : 0.0;
    case IR_LEAKY_RELU: return a > 0 ? a : imm * a;
    default:            nn_bug("interp: '%s' is not unary", ir_op_info[op].name);
    }
}

double ir_eval_binary(IrOp op, double a, double b) {
    switch (op) {
    case IR_ADD: return a + b;
    case IR_SUB: return a - b;
    case IR_MUL: return a * b;
    case IR_DIV: return a / b;
    case IR_POW: return pow(a, b);
    case IR_MAX: return a >= b ? a : b;
    case IR_MIN: return a <= b ? a : b;
    case IR_GE:  return a >= b ? 1.0 : 0.0;
    default:     nn_bug("interp: '%s' is not binary", ir_op_info[op].name);
    }
}

// [m,k] @ [k] -> [m], [m,k] @ [k,n] -> [m,n], [k] @ [k,n] -> [n], [k] @ [k] -> [].
static void eval_matmul(double *out, const double *a, Shape sa, const double *b, Shape sb) {
    size_t m = sa.rank == 2 ? (size_t)sa.dim[0] : 1;
    size_t k = (size_t)sa.dim[sa.rank - 1];
    size_t n = sb.rank == 2 ? (size_t)sb.dim[1] : 1;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double acc = 0;
            for (size_t p = 0; p < k; p++)
                acc += a[i * k + p] * b[p * n + j];
            out[i * n + j] = acc;
        }
}

// Softmax or log-softmax of each row of the last axis, shifted by the row's max.
static void eval_softmax(double *out, const double *a, Shape s, bool log_form) {
    size_t n = (size_t)s.dim[s.rank - 1];
    size_t rows = (size_t)ir_numel(s) / n;
    for (size_t r = 0; r < rows; r++) {
        const double *x = a + r * n;
        double *y = out + r * n;
        double mx = -INFINITY;
        for (size_t i = 0; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        if (!isfinite(mx))
            mx = 0;                      // all -inf (or an inf/NaN): let it propagate
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += exp(x[i] - mx);
        for (size_t i = 0; i < n; i++)
            y[i] = log_form ? x[i] - mx - log(sum) : exp(x[i] - mx) / sum;
    }
}

static double eval_logsumexp(const double *a, size_t n) {
    double mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = a[i] > mx ? a[i] : mx;
    if (isinf(mx)) {                     // all -inf (or none): -inf; some +inf: +inf
        for (size_t i = 0; i < n; i++)
            if (isnan(a[i]))
                return NAN;
        return mx;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += exp(a[i] - mx);
    return mx + log(sum);
}

// Geometry of a conv or pool: input [c,h,w], output [co,oh,ow], window k x k.
typedef struct Window {
    int c, h, w;        // input channels and sides
    int oh, ow;         // output sides
    int k;              // kernel or pool size
    int stride, pad;
} Window;

// x[c,h,w] (x) W[f,c,k,k] -> [f,oh,ow]: cross-correlation, zero padding. One
// loop nest, three readings of it, so that the adjoints are exact by construction:
// mode 0: res[f,oh,ow] += x * W (the conv);
// mode 1: res[c,h,w]   += adj * W (x's adjoint);
// mode 2: res[f,c,k,k] += adj * x (W's adjoint).
static void conv_loop(int mode, Window g, int f, const double *x, const double *w, const double *adj,
                      double *res) {
    for (int o = 0; o < f; o++)
        for (int i = 0; i < g.oh; i++)
            for (int j = 0; j < g.ow; j++)
                for (int c = 0; c < g.c; c++)
                    for (int u = 0; u < g.k; u++)
                        for (int v = 0; v < g.k; v++) {
                            int r = i * g.stride + u - g.pad, q = j * g.stride + v - g.pad;
                            if (r < 0 || r >= g.h || q < 0 || q >= g.w)
                                continue;        // zero padding
                            size_t xi = ((size_t)c * g.h + r) * g.w + q;
                            size_t wi = (((size_t)o * g.c + c) * g.k + u) * g.k + v;
                            size_t oi = ((size_t)o * g.oh + i) * g.ow + j;
                            if (mode == 0)
                                res[oi] += x[xi] * w[wi];
                            else if (mode == 1)
                                res[xi] += adj[oi] * w[wi];
                            else
                                res[wi] += adj[oi] * x[xi];
                        }
}

// Pooling over x[c,h,w] -> [c,oh,ow], no padding. mode 0: max, 1: average,
// 2: max's adjoint (adj to the first maximal element in row-major order),
// 3: average's adjoint.
static void pool_loop(int mode, Window g, const double *x, double *dx, double *out, const double *adj) {
    double area = (double)g.k * g.k;
    for (int c = 0; c < g.c; c++)
        for (int i = 0; i < g.oh; i++)
            for (int j = 0; j < g.ow; j++) {
                size_t oi = ((size_t)c * g.oh + i) * g.ow + j;
                size_t best = 0;
                double best_v = 0, sum = 0;
                bool first = true;
                for (int u = 0; u < g.k; u++)
                    for (int v = 0; v < g.k; v++) {
                        size_t xi = ((size_t)c * g.h + i * g.stride + u) * g.w + j * g.stride + v;
                        if (mode == 3) {
                            dx[xi] += adj[oi] / area;
                            continue;
                        }
                        if (mode == 1) {
                            sum += x[xi];
                            continue;
                        }
                        if (first || x[xi] > best_v) {   // strict: ties keep the first
                            best = xi;
                            best_v = x[xi];
                            first = false;
                        }
                    }
                if (mode == 0)
                    out[oi] = best_v;
                else if (mode == 1)
                    out[oi] = sum / area;
                else if (mode == 2)
                    dx[best] += adj[oi];
            }
}

static Window conv_window(Shape x, Shape w, Shape out, const int32_t attr[2]) {
    return (Window){ .c = x.dim[0], .h = x.dim[1], .w = x.dim[2], .oh = out.dim[1], .ow = out.dim[2],
                     .k = w.dim[2], .stride = attr[0], .pad = attr[1] };
}

static Window pool_window(Shape x, Shape out, const int32_t attr[2]) {
    return (Window){ .c = x.dim[0], .h = x.dim[1], .w = x.dim[2], .oh = out.dim[1], .ow = out.dim[2],
                     .k = attr[1], .stride = attr[0], .pad = 0 };
}

static const double *leaf_block(const Interp *in, const Node *n) {
    const InterpArgs *args = in->args;
    uint32_t k = (uint32_t)n->imm;
    switch (n->op) {
    case IR_PARAM:
        NN_ASSERT(k < in->m->n_params);
        return args->params ? args->params + in->m->params[k].offset : NULL;
    case IR_GRAD_IN:
        NN_ASSERT(k < in->m->n_params);
        return args->grad_in ? args->grad_in + in->m->params[k].offset : NULL;
    case IR_STATE:
        NN_ASSERT(k < in->m->n_states);
        return args->state ? args->state + in->m->states[k].offset : NULL;
    default:
        nn_bug("interp: '%s' is not a stored leaf", ir_op_info[n->op].name);
    }
}

// Evaluates node `id` for sample s into out (numel values, zeroed).
static void eval_sample(const Interp *in, NodeId id, size_t s, double *out) {
    const Node *n = &in->g->nodes[id];
    const InterpArgs *args = in->args;
    size_t numel = (size_t)ir_numel(n->shape);
    const double *a = n->n_args > 0 ? value_at(in, n->arg[0], s) : NULL;
    const double *b = n->n_args > 1 ? value_at(in, n->arg[1], s) : NULL;
    Shape sa = n->n_args > 0 ? in->g->nodes[n->arg[0]].shape : ir_scalar_shape();
    Shape sb = n->n_args > 1 ? in->g->nodes[n->arg[1]].shape : ir_scalar_shape();
    IrOp op = (IrOp)n->op;

    switch (ir_op_info[op].kind) {
    case IR_KIND_UNARY:
        for (size_t i = 0; i < numel; i++)
            out[i] = ir_eval_unary(op, a[i], n->imm);
        return;
    case IR_KIND_BINARY:
        for (size_t i = 0; i < numel; i++)
            out[i] = ir_eval_binary(op, a[broadcast_index(n->shape, sa, i)], b[broadcast_index(n->shape, sb, i)]);
        return;
    default:
        break;
    }

    switch (op) {
    case IR_CONST:
        for (size_t i = 0; i < numel; i++)
            out[i] = n->imm;
        return;
    case IR_INPUT:
        copy_or_nan(out, args->x ? args->x + s * numel : NULL, numel);
        return;
    case IR_TARGET:
        copy_or_nan(out, args->y ? args->y + s * numel : NULL, numel);
        return;
    case IR_PARAM:
    case IR_STATE:
    case IR_GRAD_IN:
        copy_or_nan(out, leaf_block(in, n), numel);
        return;
    case IR_SCALAR_ARG:
        switch ((IrScalarArg)n->imm) {
        case IR_ARG_LR:        out[0] = args->lr; return;
        case IR_ARG_STEP:      out[0] = args->step; return;
        case IR_ARG_INV_BATCH: out[0] = 1.0 / (double)args->batch; return;
        }
        nn_bug("interp: unknown scalar argument %g", n->imm);
    case IR_MATMUL:
        eval_matmul(out, a, sa, b, sb);
        return;
    case IR_OUTER:
        for (int i = 0; i < sa.dim[0]; i++)
            for (int j = 0; j < sb.dim[0]; j++)
                out[(size_t)i * sb.dim[0] + j] = a[i] * b[j];
        return;
    case IR_TRANSPOSE:
        for (int i = 0; i < sa.dim[0]; i++)
            for (int j = 0; j < sa.dim[1]; j++)
                out[(size_t)j * sa.dim[0] + i] = a[(size_t)i * sa.dim[1] + j];
        return;
    case IR_RESHAPE:
        memcpy(out, a, numel * sizeof *out);
        return;
    case IR_BROADCAST:
        for (size_t i = 0; i < numel; i++)
            out[i] = a[broadcast_index(n->shape, sa, i)];
        return;
    case IR_REDUCE_TO:
        for (size_t i = 0; i < (size_t)ir_numel(sa); i++)
            out[broadcast_index(sa, n->shape, i)] += a[i];
        return;
    case IR_SUM:
        for (size_t i = 0; i < (size_t)ir_numel(sa); i++)
            out[0] += a[i];
        return;
    case IR_SUM_LAST: {
        size_t last = (size_t)sa.dim[sa.rank - 1];
        for (size_t i = 0; i < (size_t)ir_numel(sa); i++)
            out[i / last] += a[i];
        return;
    }
    case IR_LOGSUMEXP:
        out[0] = eval_logsumexp(a, (size_t)ir_numel(sa));
        return;
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX:
        eval_softmax(out, a, sa, op == IR_LOG_SOFTMAX);
        return;
    case IR_CONV2D:         // (x, W) -> [f,oh,ow]
        conv_loop(0, conv_window(sa, sb, n->shape, n->attr), sb.dim[0], a, b, NULL, out);
        return;
    case IR_CONV2D_DX:      // (adj[f,oh,ow], W) -> dx[c,h,w]
        conv_loop(1, conv_window(n->shape, sb, sa, n->attr), sb.dim[0], NULL, b, a, out);
        return;
    case IR_CONV2D_DW:      // (adj[f,oh,ow], x[c,h,w]) -> dW[f,c,k,k]
        conv_loop(2, conv_window(sb, n->shape, sa, n->attr), n->shape.dim[0], b, NULL, a, out);
        return;
    case IR_MAXPOOL2D:
        pool_loop(0, pool_window(sa, n->shape, n->attr), a, NULL, out, NULL);
        return;
    case IR_AVGPOOL2D:
        pool_loop(1, pool_window(sa, n->shape, n->attr), a, NULL, out, NULL);
        return;
    case IR_MAXPOOL2D_DX:   // (x, adj) -> dx, x's shape
        pool_loop(2, pool_window(sa, sb, n->attr), a, out, NULL, b);
        return;
    case IR_AVGPOOL2D_DX:   // adj -> dx (node shape)
        pool_loop(3, pool_window(n->shape, sa, n->attr), NULL, out, NULL, a);
        return;
    default:
        nn_bug("interp: no rule for '%s'", ir_op_info[op].name);
    }
}

double **ir_interp(const Model *m, const InterpArgs *args, Arena *a) {
    const Graph *g = m->g;
    Interp in = { m, g, args, nn_alloc_array(a, g->n_nodes, sizeof(double *)) };
    for (NodeId id = 1; id < g->n_nodes; id++) {
        const Node *n = &g->nodes[id];
        size_t numel = (size_t)ir_numel(n->shape);
        size_t copies = is_batch(&in, id) ? args->batch : 1;
        in.vals[id] = nn_alloc_array(a, copies * numel + 1, sizeof(double));  // zeroed
        if (n->op == IR_BATCH_SUM) {
            // The sum over the batch; an invariant operand counts once per sample.
            NodeId x = n->arg[0];
            for (size_t s = 0; s < args->batch; s++) {
                const double *v = value_at(&in, x, s);
                for (size_t i = 0; i < numel; i++)
                    in.vals[id][i] += v[i];
            }
            continue;
        }
        for (size_t s = 0; s < copies; s++)
            eval_sample(&in, id, s, in.vals[id] + s * numel);
    }
    return in.vals;
}
