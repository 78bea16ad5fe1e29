// optim.c: the optimisers of LANGUAGE.md §4 and §7 lowered into IR update
// nodes. Input: a Model whose parameters are known (m->params, m->opt).
// Output: m->states (the optimiser's state tensors) and m->stores (the update),
// all written in terms of invariant leaves:
//   GRAD_IN i    the gradient of the batch objective w.r.t. parameter i, as
//                given to apply() (train_step feeds it its own gradient);
//   PARAM i      the parameter before the update;
//   STATE k      the state tensor before the update (zero before step 1);
//   SCALAR_ARG   IR_ARG_LR (set_lr) and IR_ARG_STEP (t, from 1).
// So apply() and train_step share one update, and the update never depends on
// the batch: every node built here is invariant.
//
// States, in parameter order with no gaps: sgd with momentum > 0 has one
// "<param>.momentum" per parameter; adam has "<param>.m" then "<param>.v".
// Stores: params[i] <- new value for every parameter, then states[k] <- new
// value for every state (each store reads only old values: the leaves).
//
// What the spec leaves to the runtime: a non-finite objective skips the whole
// update (LANGUAGE.md §7), and the step t advances only when an update happens.
#include <math.h>

#include "autodiff.h"

typedef struct Lower {
    Model   *m;
    Graph   *g;
    SrcRange at;          // the `train` statement
} Lower;

static NodeId konst(Lower *L, double v) {
    return ir_node(L->g, (Node){ .op = IR_CONST, .imm = v, .shape = ir_scalar_shape(), .at = L->at });
}

static NodeId bin(Lower *L, IrOp op, NodeId a, NodeId b) {
    return ir_binary(L->g, op, a, b, L->at);
}

static uint32_t add_state(Lower *L, uint32_t param, const char *suffix) {
    Model *m = L->m;
    IrState *s = &m->states[m->n_states];
    s->name = nn_format(L->g->arena, "%s.%s", m->params[param].name, suffix);
    s->shape = m->params[param].shape;
    s->param = param;
    s->offset = m->state_count;
    m->state_count += (size_t)ir_numel(s->shape);
    return m->n_states++;
}

static NodeId state_leaf(Lower *L, uint32_t k) {
    return ir_leaf(L->g, IR_STATE, (double)k, L->m->states[k].shape, L->at);
}

static void store(Lower *L, bool to_state, uint32_t index, NodeId value) {
    Model *m = L->m;
    m->stores[m->n_stores++] = (IrStore){ .to_state = to_state, .index = index, .value = value };
}

// clip = v (LANGUAGE.md §7): if ||g|| > v, g <- g * v / ||g||, the norm taken
// over all parameters at once. Written as g * (v / max(||g||, v)): when the
// norm is at most v the factor is v / v, exactly 1, so g is unchanged bit for
// bit; above v it is v / ||g||. (A NaN norm gives factor 1: MAX picks v; the
// non-finite objective then skips the update anyway.)
static void clip_gradients(Lower *L, NodeId *grad) {
    Model *m = L->m;
    NodeId sumsq = 0;
    for (uint32_t i = 0; i < m->n_params; i++) {
        NodeId sq = ir_reduce(L->g, IR_SUM, ir_unary(L->g, IR_SQUARE, grad[i], L->at), L->at);
        sumsq = sumsq ? bin(L, IR_ADD, sumsq, sq) : sq;
    }
    NodeId norm = ir_unary(L->g, IR_SQRT, sumsq, L->at);
    NodeId v = konst(L, m->opt.clip);
    NodeId factor = bin(L, IR_DIV, v, bin(L, IR_MAX, norm, v));
    for (uint32_t i = 0; i < m->n_params; i++)
        grad[i] = bin(L, IR_MUL, grad[i], factor);
}

// sgd (PyTorch's SGD, dampening 0):
//   g <- g + wd*p;  buf <- momentum*buf + g;  g <- g + momentum*buf (nesterov) or buf;
//   p <- p - lr*g.
// The state starts at zero, so the first step gives buf = momentum*0 + g = g
// exactly, as the spec's "buf = g on the first step". With momentum = 0 there
// is no buffer at all (and nesterov has nothing to do).
static void lower_sgd(Lower *L, const NodeId *grad, NodeId lr) {
    Model *m = L->m;
    const IrOptimizer *o = &m->opt;
    bool has_buf = o->momentum > 0;
    NodeId *new_buf = nn_alloc_array(L->g->arena, m->n_params + 1, sizeof(NodeId));
    for (uint32_t i = 0; i < m->n_params; i++) {
        NodeId p = m->params[i].node;
        NodeId g = grad[i];
        if (o->weight_decay != 0)
            g = bin(L, IR_ADD, g, bin(L, IR_MUL, konst(L, o->weight_decay), p));
        if (has_buf) {
            uint32_t k = add_state(L, i, "momentum");
            NodeId buf = bin(L, IR_ADD, bin(L, IR_MUL, konst(L, o->momentum), state_leaf(L, k)), g);
            new_buf[i] = buf;
            g = o->nesterov ? bin(L, IR_ADD, g, bin(L, IR_MUL, konst(L, o->momentum), buf)) : buf;
        }
        store(L, false, i, bin(L, IR_SUB, p, bin(L, IR_MUL, lr, g)));
    }
    if (has_buf)
        for (uint32_t i = 0; i < m->n_params; i++)
            store(L, true, i, new_buf[i]);   // state i belongs to parameter i
}

// 1 - beta^t without cancellation. In float32 (generated code), 1 - pow(0.999f, t) is off by
// 1.3e-5 relative at t = 1 (0.999f is 0.99900001287), and the Adam step by half that: the first
// step was lr * (1 - 6.9e-6) instead of lr (PyTorch computes the correction in double). So
// 1 - beta^t = -expm1(y), y = t * ln(beta) with ln(beta) folded in double, and
// expm1(y) = 2 tanh(y/2) / (1 - tanh(y/2)): tanh keeps its relative precision near 0, and for
// large t, tanh -> -1 gives 1 exactly.
static NodeId bias_correction(Lower *L, double beta, NodeId t) {
    if (!(beta > 0 && beta < 1))    // beta = 0 (sema allows [0, 1)): 1 - 0^t = 1, no log(0)
        return bin(L, IR_SUB, konst(L, 1), bin(L, IR_POW, konst(L, beta), t));
    NodeId h = ir_unary(L->g, IR_TANH, bin(L, IR_MUL, t, konst(L, 0.5 * log(beta))), L->at);
    return bin(L, IR_DIV, bin(L, IR_MUL, konst(L, -2), h), bin(L, IR_SUB, konst(L, 1), h));
}

// adam (PyTorch's AdamW; Adam when weight_decay = 0), t = IR_ARG_STEP from 1:
//   p <- p*(1 - lr*wd);  m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;
//   p <- p - lr*(m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps),
// computed as p - (lr / (1-b1^t)) * (m / (sqrt(v) * (1 / sqrt(1-b2^t)) + eps))
// (PyTorch's arrangement, with a product by a per-step scalar for its division).
// The decay multiplies the old p; the step is then taken from the decayed p.
static void lower_adam(Lower *L, const NodeId *grad, NodeId lr) {
    Model *m = L->m;
    const IrOptimizer *o = &m->opt;
    NodeId t = ir_leaf(L->g, IR_SCALAR_ARG, IR_ARG_STEP, ir_scalar_shape(), L->at);
    NodeId one = konst(L, 1);
    NodeId bias1 = bias_correction(L, o->beta1, t);
    NodeId bias2 = bias_correction(L, o->beta2, t);
    // Per step, once: lr / (1-b1^t) and 1 / sqrt(1-b2^t); per element, one
    // square root and one division (three divisions before: fashion b64's
    // Adam waited on the divider).
    NodeId step_size = bin(L, IR_DIV, lr, bias1);
    NodeId inv_root2 = bin(L, IR_DIV, one, ir_unary(L->g, IR_SQRT, bias2, L->at));
    NodeId decay = o->weight_decay != 0 ? bin(L, IR_SUB, one, bin(L, IR_MUL, lr, konst(L, o->weight_decay))) : 0;
    NodeId *new_m = nn_alloc_array(L->g->arena, m->n_params + 1, sizeof(NodeId));
    NodeId *new_v = nn_alloc_array(L->g->arena, m->n_params + 1, sizeof(NodeId));
    for (uint32_t i = 0; i < m->n_params; i++) {
        NodeId p = m->params[i].node;
        NodeId g = grad[i];
        uint32_t km = add_state(L, i, "m");
        uint32_t kv = add_state(L, i, "v");
        NodeId mt = bin(L, IR_ADD, bin(L, IR_MUL, konst(L, o->beta1), state_leaf(L, km)),
                        bin(L, IR_MUL, konst(L, 1 - o->beta1), g));
        NodeId vt = bin(L, IR_ADD, bin(L, IR_MUL, konst(L, o->beta2), state_leaf(L, kv)),
                        bin(L, IR_MUL, konst(L, 1 - o->beta2), ir_unary(L->g, IR_SQUARE, g, L->at)));
        new_m[i] = mt;
        new_v[i] = vt;
        if (decay)
            p = bin(L, IR_MUL, p, decay);
        NodeId den = bin(L, IR_ADD, bin(L, IR_MUL, ir_unary(L->g, IR_SQRT, vt, L->at), inv_root2), konst(L, o->eps));
        store(L, false, i, bin(L, IR_SUB, p, bin(L, IR_MUL, step_size, bin(L, IR_DIV, mt, den))));
    }
    for (uint32_t i = 0; i < m->n_params; i++) {
        store(L, true, 2 * i, new_m[i]);
        store(L, true, 2 * i + 1, new_v[i]);
    }
}

void ir_lower_optimizer(Model *m) {
    Lower L = { m, m->g, m->opt.at };
    Arena *a = m->g->arena;
    uint32_t n = m->n_params;
    m->states = nn_alloc_array(a, 2 * (size_t)n + 1, sizeof(IrState));
    m->n_states = 0;
    m->state_count = 0;
    m->stores = nn_alloc_array(a, 3 * (size_t)n + 1, sizeof(IrStore));
    m->n_stores = 0;

    NodeId *grad = nn_alloc_array(a, n + 1, sizeof(NodeId));
    for (uint32_t i = 0; i < n; i++)
        grad[i] = ir_leaf(L.g, IR_GRAD_IN, (double)i, m->params[i].shape, L.at);
    if (m->opt.clip > 0)
        clip_gradients(&L, grad);
    NodeId lr = ir_leaf(L.g, IR_SCALAR_ARG, IR_ARG_LR, ir_scalar_shape(), L.at);
    if (m->opt.kind == OPT_ADAM)
        lower_adam(&L, grad, lr);
    else
        lower_sgd(&L, grad, lr);
}
