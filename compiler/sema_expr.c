// sema_expr.c: expressions of the model into the forward graph (LANGUAGE.md §5).
//
// Input: an AST expression and the model's scope (Sema.binds). Output: a NodeId
// built only through the ir.h constructors, after the shapes were checked here
// (the constructors assert them). An error is reported once, where it happens
// (the operator for shape errors, the argument for bad arguments), and makes the
// value 0, the "poison": anything computed from 0 is 0 without a new message,
// so one mistake gives one error.
//
// Walks never recurse on the C stack: sema_eval runs an explicit work stack
// (post-order: children first, then the operator) and a value stack, so
// 10,000-deep expressions are fine. A user fn call is inlined by pushing its
// body with an environment binding its parameters to the argument nodes; since
// fns are pure and the graph is hash-consed, (fn, argument nodes) -> result is
// memoised, which also keeps chains of fns calling fns twice linear.
#include "sema_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- The built-ins

#define P(...) ((const char *const[]){ __VA_ARGS__ })
static const Builtin builtins[] = {
    { { "exp", 1, 1, P("x"), false }, BK_UNARY, IR_EXP, -1 },
    { { "log", 1, 1, P("x"), false }, BK_UNARY, IR_LOG, -1 },
    { { "sqrt", 1, 1, P("x"), false }, BK_UNARY, IR_SQRT, -1 },
    { { "abs", 1, 1, P("x"), false }, BK_UNARY, IR_ABS, -1 },
    { { "tanh", 1, 1, P("x"), false }, BK_UNARY, IR_TANH, -1 },
    { { "sigmoid", 1, 1, P("x"), false }, BK_UNARY, IR_SIGMOID, -1 },
    { { "relu", 1, 1, P("x"), false }, BK_UNARY, IR_RELU, -1 },
    { { "softplus", 1, 1, P("x"), false }, BK_UNARY, IR_SOFTPLUS, -1 },
    { { "sin", 1, 1, P("x"), false }, BK_UNARY, IR_SIN, -1 },
    { { "cos", 1, 1, P("x"), false }, BK_UNARY, IR_COS, -1 },
    { { "square", 1, 1, P("x"), false }, BK_UNARY, IR_SQUARE, -1 },
    { { "identity", 1, 1, P("x"), false }, BK_IDENTITY, 0, -1 },
    { { "leaky_relu", 2, 2, P("x", "alpha"), false }, BK_LEAKY, IR_LEAKY_RELU, -1 },
    { { "max", 2, 2, P("a", "b"), false }, BK_BINARY, IR_MAX, -1 },
    { { "min", 2, 2, P("a", "b"), false }, BK_BINARY, IR_MIN, -1 },
    { { "transpose", 1, 1, P("x"), false }, BK_TRANSPOSE, IR_TRANSPOSE, -1 },
    { { "flatten", 1, 1, P("x"), false }, BK_FLATTEN, IR_RESHAPE, -1 },
    { { "reshape", 2, 1 + IR_MAX_RANK, P("x"), true }, BK_RESHAPE, IR_RESHAPE, -1 },
    { { "sum", 1, 1, P("x"), false }, BK_SUM, IR_SUM, -1 },
    { { "mean", 1, 1, P("x"), false }, BK_MEAN, IR_SUM, -1 },
    { { "logsumexp", 1, 1, P("x"), false }, BK_LOGSUMEXP, IR_LOGSUMEXP, -1 },
    { { "softmax", 1, 1, P("x"), false }, BK_SOFTMAX, IR_SOFTMAX, -1 },
    { { "log_softmax", 1, 1, P("x"), false }, BK_SOFTMAX, IR_LOG_SOFTMAX, -1 },
    { { "mse", 2, 2, P("o", "y"), false }, BK_MSE, 0, -1 },
    { { "sse", 2, 2, P("o", "y"), false }, BK_SSE, 0, -1 },
    { { "cross_entropy", 2, 2, P("p", "y"), false }, BK_CE, 0, -1 },
    { { "softmax_cross_entropy", 2, 2, P("z", "y"), false }, BK_SCE, 0, -1 },
    { { "binary_cross_entropy", 2, 2, P("p", "y"), false }, BK_BCE, 0, -1 },
    { { "dense", 2, 4, P("x", "units", "act", "bias"), false }, BK_DENSE, 0, 2 },
    { { "conv2d", 3, 7, P("x", "filters", "kernel", "stride", "padding", "act", "bias"), false },
      BK_CONV, IR_CONV2D, 5 },
    { { "maxpool2d", 2, 3, P("x", "size", "stride"), false }, BK_POOL, IR_MAXPOOL2D, -1 },
    { { "avgpool2d", 2, 3, P("x", "size", "stride"), false }, BK_POOL, IR_AVGPOOL2D, -1 },
    { { "zeros", 0, 0, NULL, false }, BK_INIT, INIT_ZEROS, -1 },
    { { "ones", 0, 0, NULL, false }, BK_INIT, INIT_ONES, -1 },
    { { "constant", 1, 1, P("value"), false }, BK_INIT, INIT_CONSTANT, -1 },
    { { "uniform", 2, 2, P("lo", "hi"), false }, BK_INIT, INIT_UNIFORM, -1 },
    { { "normal", 2, 2, P("mean", "std"), false }, BK_INIT, INIT_NORMAL, -1 },
    { { "xavier", 0, 0, NULL, false }, BK_INIT, INIT_XAVIER, -1 },
    { { "he", 0, 0, NULL, false }, BK_INIT, INIT_HE, -1 },
    { { "sgd", 1, 6, P("lr", "momentum", "nesterov", "weight_decay", "reduce", "clip"), false },
      BK_OPT, OPT_SGD, -1 },
    { { "adam", 1, 7, P("lr", "beta1", "beta2", "eps", "weight_decay", "reduce", "clip"), false },
      BK_OPT, OPT_ADAM, -1 },
};
#undef P

const Builtin *sema_builtin(const char *name) {
    for (size_t i = 0; i < NN_COUNTOF(builtins); i++)
        if (!strcmp(builtins[i].f.name, name))
            return &builtins[i];
    return NULL;
}

// ---- Messages

// One inlined fn call: its parameters' values and where it was called.
typedef struct Env Env;
struct Env {
    const SemaFn *fn;
    const NodeId *args;        // fn->ast->n_params values
    const Env    *caller;      // the call this one sits in (NULL: the model)
    SrcRange      call_at;     // the call's name
};

// An error, followed by where the fn it happened in was called from.
NN_PRINTF(4, 5)
static void err(Sema *s, const Env *env, SrcRange at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nn_error(s->d, at, "%s", msg);
    for (int k = 0; env && k < 4; env = env->caller, k++)
        nn_note(s->d, env->call_at, "in the call of '%s' here", env->fn->ast->name);
}

static Shape shape(const Sema *s, NodeId v) { return ir_get(s->g, v)->shape; }

// "[3,4]" in a small per-call buffer; two may be live in one message.
typedef struct { char s[64]; } ShapeStr;
static ShapeStr sstr(const Sema *s, NodeId v) {
    ShapeStr r;
    ir_shape_str(shape(s, v), r.s, sizeof r.s);
    return r;
}

// ---- Constants and folding

bool sema_const_value(const Sema *s, NodeId v, double *out) {
    if (!v) return false;
    const Node *n = ir_get(s->g, v);
    if (n->op != IR_CONST || ir_numel(n->shape) != 1) return false;
    *out = n->imm;
    return true;
}

static bool fold1(IrOp op, double a, double *r) {
    switch (op) {
    case IR_NEG: *r = -a; break;
    case IR_EXP: *r = exp(a); break;
    case IR_LOG: *r = log(a); break;
    case IR_SQRT: *r = sqrt(a); break;
    case IR_ABS: *r = fabs(a); break;
    case IR_TANH: *r = tanh(a); break;
    case IR_SIGMOID: *r = 1 / (1 + exp(-a)); break;
    case IR_RELU: *r = a > 0 ? a : 0; break;
    case IR_SOFTPLUS: *r = a > 0 ? a + log1p(exp(-a)) : log1p(exp(a)); break;
    case IR_SIN: *r = sin(a); break;
    case IR_COS: *r = cos(a); break;
    case IR_SQUARE: *r = a * a; break;
    default: return false;
    }
    return isfinite(*r);   // never fold into inf or NaN: the generated code decides those
}

static bool fold2(IrOp op, double a, double b, double *r) {
    switch (op) {
    case IR_ADD: *r = a + b; break;
    case IR_SUB: *r = a - b; break;
    case IR_MUL: *r = a * b; break;
    case IR_DIV: *r = a / b; break;
    case IR_POW: *r = pow(a, b); break;
    case IR_MAX: *r = a >= b ? a : b; break;
    case IR_MIN: *r = a <= b ? a : b; break;
    default: return false;
    }
    return isfinite(*r);
}

static bool is_const(const Sema *s, NodeId v, double *val) {
    const Node *n = ir_get(s->g, v);
    if (n->op != IR_CONST) return false;
    *val = n->imm;
    return true;
}

// Elementwise ops on checked operands, folding constants (a CONST is its value
// in every element, so the result is a CONST of the broadcast shape).
static NodeId un(Sema *s, IrOp op, NodeId a, SrcRange at) {
    double va, r;
    if (is_const(s, a, &va) && fold1(op, va, &r))
        return ir_const(s->g, r, shape(s, a), at);
    return ir_unary(s->g, op, a, at);
}

static NodeId bin(Sema *s, IrOp op, NodeId a, NodeId b, SrcRange at) {
    double va, vb, r;
    if (is_const(s, a, &va) && is_const(s, b, &vb) && fold2(op, va, vb, &r)) {
        Shape out;
        bool ok = ir_broadcast_shape(shape(s, a), shape(s, b), &out);
        NN_ASSERT(ok);
        return ir_const(s->g, r, out, at);
    }
    if (op == IR_POW && is_const(s, b, &vb) && vb == 2 && ir_numel(shape(s, b)) == 1 &&
        shape(s, b).rank <= shape(s, a).rank)
        return ir_unary(s->g, IR_SQUARE, a, at);     // x^2: one multiply
    return ir_binary(s->g, op, a, b, at);
}

static NodeId num(Sema *s, double v, SrcRange at) {
    return ir_const(s->g, v, ir_scalar_shape(), at);
}

#define MAX_NUMEL 2147483647.0   // elements of one tensor (as sema.c)

// A result shape whose element count the generated code could not index.
static bool too_large(Sema *s, const Env *env, Shape sh, const char *what, SrcRange at) {
    double n = 1;
    for (int i = 0; i < sh.rank; i++) n *= sh.dim[i];
    if (n <= MAX_NUMEL) return false;
    char buf[64];
    err(s, env, at, "the result of '%s' is too large: %s has more than %.0f elements", what,
        ir_shape_str(sh, buf, sizeof buf), MAX_NUMEL);
    return true;
}

// a OP b with NumPy broadcasting; reports both shapes.
static NodeId checked_bin(Sema *s, const Env *env, IrOp op, const char *what, NodeId a, NodeId b,
                          SrcRange at) {
    if (!a || !b) return 0;
    Shape out;
    if (!ir_broadcast_shape(shape(s, a), shape(s, b), &out)) {
        err(s, env, at, "operands of '%s' have incompatible shapes %s and %s", what,
            sstr(s, a).s, sstr(s, b).s);
        return 0;
    }
    if (too_large(s, env, out, what, at)) return 0;
    return bin(s, op, a, b, at);
}

// Whether a and b broadcast (for the expanded losses); reports both shapes.
static bool check_bcast(Sema *s, const Env *env, const char *what, NodeId a, NodeId b, SrcRange at) {
    Shape out;
    if (ir_broadcast_shape(shape(s, a), shape(s, b), &out)) return !too_large(s, env, out, what, at);
    err(s, env, at, "operands of '%s' have incompatible shapes %s and %s", what, sstr(s, a).s,
        sstr(s, b).s);
    return false;
}

// LANGUAGE.md §5: [m,k]@[k] -> [m], [m,k]@[k,n] -> [m,n], [k]@[k,n] -> [n], [k]@[k] -> [].
static NodeId checked_matmul(Sema *s, const Env *env, NodeId a, NodeId b, SrcRange at) {
    if (!a || !b) return 0;
    Shape sa = shape(s, a), sb = shape(s, b);
    if (sa.rank < 1 || sa.rank > 2 || sb.rank < 1 || sb.rank > 2) {
        err(s, env, at, "operands of '@' must be vectors or matrices: %s @ %s", sstr(s, a).s,
            sstr(s, b).s);
        return 0;
    }
    if (sa.dim[sa.rank - 1] != sb.dim[0]) {
        err(s, env, at, "inner dimensions differ in '@': %s @ %s", sstr(s, a).s, sstr(s, b).s);
        return 0;
    }
    if (sa.rank == 2 && sb.rank == 2 && too_large(s, env, ir_shape2(sa.dim[0], sb.dim[1]), "@", at))
        return 0;
    return ir_matmul(s->g, a, b, at);
}

// ---- Arguments

static bool name_in(const char *name, const char *const *list, int n, int *at) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], name)) { *at = i; return true; }
    return false;
}

// Too many arguments: at the first extra one (as clang); too few: at the name.
static void count_error(Sema *s, const Callee *f, const Ast *call, int got) {
    SrcRange at = got > f->max && f->max < call->n_args ? call->args[f->max]->at : call->op_at;
    if (f->is_variadic)
        nn_error(s->d, at, "'%s' expects at least %d arguments, got %d", f->name, f->min, got);
    else if (f->max == 0)
        nn_error(s->d, at, "'%s' expects no arguments, got %d", f->name, got);
    else if (f->min == f->max)
        nn_error(s->d, at, "'%s' expects %d argument%s, got %d", f->name, f->min,
                 f->min == 1 ? "" : "s", got);
    else
        nn_error(s->d, at, "'%s' expects %d to %d arguments, got %d", f->name, f->min,
                 f->max, got);
}

bool sema_match_args(Sema *s, const Callee *f, const Ast *call, const Ast **slot, bool report) {
    int n = call->n_args;
    bool ok = true;
    if (f->is_variadic) {
        for (int i = 0; i < n; i++) {
            if (call->arg_names && call->arg_names[i]) {
                if (report)
                    nn_error(s->d, call->arg_name_at[i], "'%s' takes no named arguments", f->name);
                ok = false;
            }
            slot[i] = call->args[i];
        }
        if (ok && (n < f->min || n > f->max)) {
            if (report) {
                if (n < f->min) count_error(s, f, call, n);
                else nn_error(s->d, call->args[f->max]->at, "'%s' expects at most %d arguments, got %d",
                              f->name, f->max, n);
            }
            ok = false;
        }
        return ok;
    }
    if (n > f->max) {
        if (report) count_error(s, f, call, n);
        return false;
    }
    for (int i = 0; i < f->max; i++)
        slot[i] = NULL;
    int n_pos = 0, n_named = 0;
    for (int i = 0; i < n; i++) {
        const char *an = call->arg_names ? call->arg_names[i] : NULL;
        if (!an) {
            if (n_named) {
                if (report)
                    nn_error(s->d, call->args[i]->at, "a positional argument cannot follow named arguments");
                ok = false;
                continue;
            }
            slot[n_pos++] = call->args[i];
            continue;
        }
        n_named++;
        int j;
        if (!f->params || !name_in(an, f->params, f->max, &j)) {
            if (report) {
                if (f->max == 0) {
                    nn_error(s->d, call->arg_name_at[i], "unknown argument '%s' to '%s'; it takes no arguments",
                             an, f->name);
                } else {
                    char list[256] = "";
                    size_t len = 0;
                    for (int k = 0; k < f->max && len < sizeof list - 40; k++)
                        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "",
                                                f->params[k]);
                    nn_error(s->d, call->arg_name_at[i], "unknown argument '%s' to '%s'; valid arguments are %s",
                             an, f->name, list);
                }
            }
            ok = false;
            continue;
        }
        if (slot[j]) {
            if (report)
                nn_error(s->d, call->arg_name_at[i], "argument '%s' of '%s' is given twice", an, f->name);
            ok = false;
            continue;
        }
        slot[j] = call->args[i];
    }
    if (!ok) return false;
    for (int j = 0; j < f->min; j++) {
        if (slot[j]) continue;
        if (report) {
            if (!n_named) count_error(s, f, call, n);
            else nn_error(s->d, call->op_at, "missing argument '%s' to '%s'", f->params[j], f->name);
        }
        return false;
    }
    return true;
}

// An integer argument: a positive (or, with min 0, non-negative) integer constant.
static bool int_arg(Sema *s, const Ast *e, NodeId v, const char *what, const char *callee, int min,
                    int *out) {
    double d;
    if (!v) return false;
    if (!sema_const_value(s, v, &d)) {
        nn_error(s->d, e->at, "'%s' of '%s' must be a constant", what, callee);
        return false;
    }
    if (d != floor(d) || d < min || d > (1 << 30)) {
        nn_error(s->d, e->at, "'%s' of '%s' must be a %s integer, got %g", what, callee,
                 min > 0 ? "positive" : "non-negative", d);
        return false;
    }
    *out = (int)d;
    return true;
}

static bool bool_arg(Sema *s, const Ast *e, NodeId v, const char *what, const char *callee, bool *out) {
    double d;
    if (!v) return false;
    if (!sema_const_value(s, v, &d) || (d != 0 && d != 1)) {
        nn_error(s->d, e->at, "'%s' of '%s' must be true or false", what, callee);
        return false;
    }
    *out = d != 0;
    return true;
}

bool sema_const_arg(Sema *s, const Ast *e, const char *what, const char *callee, double *out) {
    NodeId v = sema_eval(s, e);
    if (!v) return false;
    if (!sema_const_value(s, v, out)) {
        nn_error(s->d, e->at, "'%s' of '%s' must be a constant", what, callee);
        return false;
    }
    return true;
}

// ---- The evaluator

typedef enum {
    W_EVAL,      // evaluate e in env
    W_UNARY,     // -e: operand on the value stack
    W_BINARY,    // e's operator: two operands on the value stack
    W_CALL,      // a call: its evaluated arguments on the value stack
    W_RETURN,    // the end of an inlined fn body: memoise the value on top
    W_DISCARD,   // the arguments of a call that failed: pop e->n_args values, push 0
} WorkKind;

typedef struct CallWork {
    const Builtin *b;          // NULL for a user fn
    SemaFn        *fn;
    const Ast    **slot;       // the argument of each parameter (NULL if not given)
    int            n_slot;
} CallWork;

typedef struct Work {
    WorkKind    kind;
    const Ast  *e;
    const Env  *env;
    CallWork   *call;          // W_CALL
    const Env  *inner;         // W_RETURN: the call's environment
} Work;

typedef struct SemaStacks {
    Work     *work;
    uint32_t  n_work, work_cap;
    NodeId   *vals;
    uint32_t  n_vals, vals_cap;
} SemaStacks;

#define stacks (*s->stk)   // reused by every sema_eval of this Sema; memory from the arena

static void push_work(Sema *s, Work w) {
    if (stacks.n_work == stacks.work_cap) {
        uint32_t cap = stacks.work_cap ? stacks.work_cap * 2 : 256;
        stacks.work = nn_grow_array(&s->c->arena, stacks.work, stacks.work_cap, cap, sizeof(Work));
        stacks.work_cap = cap;
    }
    stacks.work[stacks.n_work++] = w;
}

static void push_val(Sema *s, NodeId v) {
    if (stacks.n_vals == stacks.vals_cap) {
        uint32_t cap = stacks.vals_cap ? stacks.vals_cap * 2 : 256;
        stacks.vals = nn_grow_array(&s->c->arena, stacks.vals, stacks.vals_cap, cap, sizeof(NodeId));
        stacks.vals_cap = cap;
    }
    stacks.vals[stacks.n_vals++] = v;
}

static NodeId pop_val(Sema *s) {
    NN_ASSERT(stacks.n_vals > 0);
    return stacks.vals[--stacks.n_vals];
}

// ---- fn memo

static uint64_t memo_hash(const SemaFn *fn, const NodeId *args, int n) {
    uint64_t h = (uint64_t)(uintptr_t)fn * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++)
        h = (h ^ args[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static NodeId *memo_find(Sema *s, const SemaFn *fn, const NodeId *args, MemoEntry **slot) {
    int n = fn->ast->n_params;
    *slot = NULL;
    if (!s->memo_cap) return NULL;
    uint32_t i = (uint32_t)memo_hash(fn, args, n) & (s->memo_cap - 1);
    for (;; i = (i + 1) & (s->memo_cap - 1)) {
        MemoEntry *e = &s->memo[i];
        if (!e->fn) { *slot = e; return NULL; }
        if (e->fn == fn && (n == 0 || !memcmp(e->args, args, (size_t)n * sizeof(NodeId))))
            return &e->result;
    }
}

static void memo_put(Sema *s, const SemaFn *fn, const NodeId *args, NodeId result) {
    if (2 * (s->memo_n + 1) > s->memo_cap) {
        uint32_t old_cap = s->memo_cap;
        MemoEntry *old = s->memo;
        s->memo_cap = old_cap ? old_cap * 2 : 64;
        s->memo = nn_alloc_array(&s->c->arena, s->memo_cap, sizeof(MemoEntry));
        s->memo_n = 0;
        for (uint32_t i = 0; i < old_cap; i++)
            if (old[i].fn) memo_put(s, old[i].fn, old[i].args, old[i].result);
    }
    MemoEntry *slot;
    NodeId *found = memo_find(s, fn, args, &slot);
    if (found) { *found = result; return; }
    slot->fn = fn;
    slot->args = args;
    slot->result = result;
    s->memo_n++;
}

// Starts inlining fn(args): pushes its body, or the memoised value.
static void start_fn(Sema *s, const Env *env, SemaFn *fn, const NodeId *args, SrcRange call_at) {
    for (int i = 0; i < fn->ast->n_params; i++)
        if (!args[i]) { push_val(s, 0); return; }
    // A fn on a cycle of calls was marked bad by check_recursion (sema.c), which
    // sees every call in every body: inlining can never meet recursion here.
    if (fn->is_bad) { push_val(s, 0); return; }
    MemoEntry *slot;
    NodeId *found = memo_find(s, fn, args, &slot);
    if (found) { push_val(s, *found); return; }
    Env *inner = NN_NEW(&s->c->arena, Env);
    *inner = (Env){ fn, args, env, call_at };
    push_work(s, (Work){ .kind = W_RETURN, .inner = inner });
    push_work(s, (Work){ .kind = W_EVAL, .e = fn->ast->body, .env = inner });
}

// ---- Layers

static const char *act_names_hint = "a one-argument function such as relu, or a fn";

// Applies the activation named by `act` (a layer's argument) to z: pushes the
// result, or starts inlining a user fn.
static void apply_act(Sema *s, const Env *env, const Ast *act, NodeId z, const char *layer) {
    if (!act) { push_val(s, z); return; }
    if (act->kind != AST_NAME) {
        nn_error(s->d, act->at, "the activation of '%s' must be the name of %s", layer, act_names_hint);
        push_val(s, 0);
        return;
    }
    const Builtin *b = sema_builtin(act->name);
    if (b && (b->kind == BK_UNARY || b->kind == BK_IDENTITY || b->kind == BK_SOFTMAX)) {
        if (b->kind == BK_IDENTITY) push_val(s, z);
        else if (b->kind == BK_SOFTMAX) push_val(s, ir_softmax(s->g, b->op, z, act->at));
        else push_val(s, un(s, b->op, z, act->at));
        return;
    }
    if (b) {
        nn_error(s->d, act->at, "'%s' cannot be an activation: it is not a one-argument elementwise function",
                 act->name);
        push_val(s, 0);
        return;
    }
    int fi = sema_map_get(&s->fn_map, act->name);
    if (fi < 0) {
        nn_error(s->d, act->at, "unknown activation '%s'; it must be the name of %s", act->name,
                 act_names_hint);
        push_val(s, 0);
        return;
    }
    SemaFn *fn = &s->fns[fi];
    if (fn->ast->n_params != 1) {
        nn_error(s->d, act->at, "fn '%s' cannot be an activation: it takes %d arguments, not 1",
                 act->name, fn->ast->n_params);
        push_val(s, 0);
        return;
    }
    NodeId *args = nn_alloc_array(&s->c->arena, 1, sizeof(NodeId));
    args[0] = z;
    start_fn(s, env, fn, args, act->at);
}

static NodeId layer_param(Sema *s, const char *suffix, Shape sh, InitKind init, int64_t fan_in,
                          int64_t fan_out) {
    const char *name = nn_format(&s->c->arena, "%s.%s", s->bind_name, suffix);
    return sema_add_param(s, name, sh, (IrInit){ init, 0, 0 }, fan_in, fan_out, s->bind_at);
}

// dense(x, units, act = identity, bias = true): act(W @ x + b), W [units, in] xavier, b zeros.
static void apply_dense(Sema *s, const Env *env, const Ast *call, const Ast **slot, const NodeId *val) {
    int units;
    bool bias = true;
    bool ok = int_arg(s, slot[1], val[1], "units", "dense", 1, &units);
    if (slot[3]) ok = bool_arg(s, slot[3], val[3], "bias", "dense", &bias) && ok;
    NodeId x = val[0];
    if (x && shape(s, x).rank != 1) {
        nn_error(s->d, slot[0]->at, "'dense' expects a vector, got %s; use flatten(...)", sstr(s, x).s);
        ok = false;
    }
    if (!ok || !x) { push_val(s, 0); return; }
    int32_t in = shape(s, x).dim[0];
    NodeId w = layer_param(s, "W", ir_shape2(units, in), INIT_XAVIER, in, units);
    NodeId b = bias ? layer_param(s, "b", ir_shape1(units), INIT_ZEROS, units, units) : 0;
    if (!w || (bias && !b)) { push_val(s, 0); return; }
    NodeId z = ir_matmul(s->g, w, x, call->op_at);
    if (bias) z = ir_binary(s->g, IR_ADD, z, b, call->op_at);
    apply_act(s, env, slot[2], z, "dense");
}

// conv2d(x, filters, kernel, stride = 1, padding = 0, act = identity, bias = true).
static void apply_conv(Sema *s, const Env *env, const Ast *call, const Ast **slot, const NodeId *val) {
    int filters, kernel, stride = 1, padding = 0;
    bool bias = true;
    bool ok = int_arg(s, slot[1], val[1], "filters", "conv2d", 1, &filters);
    ok = int_arg(s, slot[2], val[2], "kernel", "conv2d", 1, &kernel) && ok;
    if (slot[3]) ok = int_arg(s, slot[3], val[3], "stride", "conv2d", 1, &stride) && ok;
    if (slot[4]) ok = int_arg(s, slot[4], val[4], "padding", "conv2d", 0, &padding) && ok;
    if (slot[6]) ok = bool_arg(s, slot[6], val[6], "bias", "conv2d", &bias) && ok;
    NodeId x = val[0];
    if (x && shape(s, x).rank != 3) {
        nn_error(s->d, slot[0]->at, "'conv2d' expects [channels,height,width], got %s", sstr(s, x).s);
        ok = false;
    }
    if (!ok || !x) { push_val(s, 0); return; }
    Shape sx = shape(s, x);
    int64_t ph = (int64_t)sx.dim[1] + 2 * (int64_t)padding, pw = (int64_t)sx.dim[2] + 2 * (int64_t)padding;
    if (ph < kernel || pw < kernel) {
        nn_error(s->d, slot[2]->at, "kernel %d of 'conv2d' is larger than the padded input %lldx%lld",
                 kernel, (long long)ph, (long long)pw);
        push_val(s, 0);
        return;
    }
    if (ph > (1 << 30) || pw > (1 << 30)) {
        nn_error(s->d, slot[4]->at, "'padding' of 'conv2d' is too large");
        push_val(s, 0);
        return;
    }
    int32_t c = sx.dim[0];
    int64_t kk = (int64_t)kernel * kernel;
    Shape out = { 3, { filters, (int32_t)((ph - kernel) / stride + 1), (int32_t)((pw - kernel) / stride + 1) } };
    if ((double)filters * c * (double)kk > MAX_NUMEL ||
        too_large(s, env, out, "conv2d", call->op_at)) {
        if ((double)filters * c * (double)kk > MAX_NUMEL)
            nn_error(s->d, call->op_at, "the weights of 'conv2d' are too large ([%d,%d,%d,%d])", filters,
                     c, kernel, kernel);
        push_val(s, 0);
        return;
    }
    NodeId w = layer_param(s, "W", (Shape){ 4, { filters, c, kernel, kernel } }, INIT_HE, c * kk,
                           filters * kk);
    NodeId b = bias ? layer_param(s, "b", ir_shape1(filters), INIT_ZEROS, filters, filters) : 0;
    if (!w || (bias && !b)) { push_val(s, 0); return; }
    NodeId z = ir_conv2d(s->g, x, w, stride, padding, call->op_at);
    if (bias) {
        NodeId b3 = ir_reshape(s->g, b, (Shape){ 3, { filters, 1, 1 } }, call->op_at);
        z = ir_binary(s->g, IR_ADD, z, b3, call->op_at);   // b as [f,1,1] broadcasts over h, w
    }
    apply_act(s, env, slot[5], z, "conv2d");
}

// maxpool2d/avgpool2d(x, size, stride = size): no padding.
static NodeId apply_pool(Sema *s, const Builtin *b, const Ast *call, const Ast **slot, const NodeId *val) {
    const char *name = b->f.name;
    int size, stride;
    bool ok = int_arg(s, slot[1], val[1], "size", name, 1, &size);
    stride = size;
    if (slot[2]) ok = int_arg(s, slot[2], val[2], "stride", name, 1, &stride) && ok;
    NodeId x = val[0];
    if (x && shape(s, x).rank != 3) {
        nn_error(s->d, slot[0]->at, "'%s' expects [channels,height,width], got %s", name, sstr(s, x).s);
        ok = false;
    }
    if (!ok || !x) return 0;
    Shape sx = shape(s, x);
    if (sx.dim[1] < size || sx.dim[2] < size) {
        nn_error(s->d, slot[1]->at, "window %d of '%s' is larger than the input %s", size, name,
                 sstr(s, x).s);
        return 0;
    }
    return ir_pool2d(s->g, b->op, x, size, stride, call->op_at);
}

// ---- Built-in functions

static NodeId sum_all(Sema *s, NodeId x, SrcRange at) {
    if (shape(s, x).rank == 0) return x;      // the sum of a scalar is itself
    return ir_reduce(s->g, IR_SUM, x, at);
}

// Pushes the value of a built-in call (layers may start inlining an activation fn).
static void apply_builtin(Sema *s, const Env *env, const Builtin *b, const Ast *call, const Ast **slot,
                          const NodeId *val, int n_slot) {
    for (int i = 0; i < n_slot; i++)
        if (slot[i] && i != b->act_slot && !val[i]) { push_val(s, 0); return; }
    SrcRange at = call->op_at;
    const char *name = b->f.name;
    NodeId x = val[0], r = 0;
    switch (b->kind) {
    case BK_UNARY:
        r = un(s, b->op, x, at);
        break;
    case BK_IDENTITY:
        r = x;
        break;
    case BK_LEAKY: {
        double alpha;
        if (!sema_const_value(s, val[1], &alpha)) {
            err(s, env, slot[1]->at, "'alpha' of 'leaky_relu' must be a constant");
            break;
        }
        r = ir_leaky_relu(s->g, x, alpha, at);
        break;
    }
    case BK_BINARY:
        r = checked_bin(s, env, b->op, name, x, val[1], at);
        break;
    case BK_TRANSPOSE:
        if (shape(s, x).rank != 2) {
            err(s, env, slot[0]->at, "'transpose' expects a matrix, got %s", sstr(s, x).s);
            break;
        }
        r = ir_transpose(s->g, x, at);
        break;
    case BK_FLATTEN:
        r = shape(s, x).rank == 1 ? x : ir_reshape(s->g, x, ir_shape1((int32_t)ir_numel(shape(s, x))), at);
        break;
    case BK_RESHAPE: {
        Shape to = { (uint8_t)(n_slot - 1), { 0 } };
        bool ok = true;
        for (int i = 1; i < n_slot; i++) {
            int d;
            if (!int_arg(s, slot[i], val[i], "dimension", "reshape", 1, &d)) ok = false;
            else to.dim[i - 1] = d;
        }
        if (!ok) break;
        int64_t n_to = 1;
        for (int i = 0; i < to.rank; i++)
            n_to = n_to * to.dim[i] > (int64_t)MAX_NUMEL ? (int64_t)MAX_NUMEL + 1 : n_to * to.dim[i];
        if (n_to != ir_numel(shape(s, x))) {
            char buf[64];
            err(s, env, at, "cannot reshape %s (%lld elements) to %s (%lld elements)", sstr(s, x).s,
                (long long)ir_numel(shape(s, x)), ir_shape_str(to, buf, sizeof buf), (long long)n_to);
            break;
        }
        r = ir_shape_eq(to, shape(s, x)) ? x : ir_reshape(s->g, x, to, at);
        break;
    }
    case BK_SUM:
        r = sum_all(s, x, at);
        break;
    case BK_MEAN: {
        int64_t n = ir_numel(shape(s, x));
        r = sum_all(s, x, at);
        if (n != 1) r = bin(s, IR_MUL, r, num(s, 1.0 / (double)n, at), at);   // mean = sum * 1/n
        break;
    }
    case BK_LOGSUMEXP:
        r = ir_reduce(s->g, IR_LOGSUMEXP, x, at);
        break;
    case BK_SOFTMAX:
        if (shape(s, x).rank == 0) {
            err(s, env, slot[0]->at, "'%s' expects a vector, got a scalar", name);
            break;
        }
        r = ir_softmax(s->g, b->op, x, at);
        break;
    case BK_MSE:
    case BK_SSE: {
        NodeId d = checked_bin(s, env, IR_SUB, name, x, val[1], at);
        if (!d) break;
        r = sum_all(s, un(s, IR_SQUARE, d, at), at);
        int64_t n = ir_numel(shape(s, d));
        if (b->kind == BK_SSE) r = bin(s, IR_MUL, num(s, 0.5, at), r, at);   // 0.5 * sum((o - y)^2)
        else if (n != 1) r = bin(s, IR_MUL, r, num(s, 1.0 / (double)n, at), at);  // mean((o - y)^2)
        break;
    }
    case BK_CE: {  // -sum(y * log(p))
        if (!check_bcast(s, env, name, x, val[1], at)) break;
        NodeId t = bin(s, IR_MUL, val[1], un(s, IR_LOG, x, at), at);
        r = un(s, IR_NEG, sum_all(s, t, at), at);
        break;
    }
    case BK_SCE: {  // -sum(y * log_softmax(z))
        if (shape(s, x).rank == 0) {
            err(s, env, slot[0]->at, "'%s' expects a vector of logits, got a scalar", name);
            break;
        }
        if (!check_bcast(s, env, name, x, val[1], at)) break;
        NodeId t = bin(s, IR_MUL, val[1], ir_softmax(s->g, IR_LOG_SOFTMAX, x, at), at);
        r = un(s, IR_NEG, sum_all(s, t, at), at);
        break;
    }
    case BK_BCE: {  // -sum(y * log(p) + (1 - y) * log(1 - p))
        NodeId y = val[1];
        if (!check_bcast(s, env, name, x, y, at)) break;
        NodeId one = num(s, 1, at);
        NodeId t1 = bin(s, IR_MUL, y, un(s, IR_LOG, x, at), at);
        NodeId t0 = bin(s, IR_MUL, bin(s, IR_SUB, one, y, at), un(s, IR_LOG, bin(s, IR_SUB, one, x, at), at), at);
        r = un(s, IR_NEG, sum_all(s, bin(s, IR_ADD, t1, t0, at), at), at);
        break;
    }
    case BK_DENSE:
        apply_dense(s, env, call, slot, val);
        return;
    case BK_CONV:
        apply_conv(s, env, call, slot, val);
        return;
    case BK_POOL:
        r = apply_pool(s, b, call, slot, val);
        break;
    case BK_INIT:
    case BK_OPT:
        break;   // refused before the arguments were evaluated
    }
    push_val(s, r);
}

// ---- Names and calls

static NodeId lookup_model_name(Sema *s, const Ast *e) {
    int i = sema_map_get(&s->bind_map, e->name);
    if (i >= 0) {
        Binding *b = &s->binds[i];
        if (b->stmt >= s->stmt) {
            nn_error(s->d, e->at, "'%s' is used before it is bound", e->name);
            nn_note(s->d, b->at, "'%s' is bound here", e->name);
            return 0;
        }
        return b->is_done ? b->value : 0;
    }
    if (sema_map_get(&s->fn_map, e->name) >= 0 || sema_builtin(e->name)) {
        nn_error(s->d, e->at, "'%s' is a function, not a value; call it with arguments", e->name);
        return 0;
    }
    const char **cands = nn_alloc_array(&s->c->arena, (size_t)s->n_binds + 1, sizeof(char *));
    int n = 0;
    for (int k = 0; k < s->n_binds; k++)
        if (s->binds[k].stmt < s->stmt) cands[n++] = s->binds[k].name;
    const char *hint = sema_suggest(e->name, cands, n);
    if (hint) nn_error(s->d, e->at, "unknown name '%s'; did you mean '%s'?", e->name, hint);
    else nn_error(s->d, e->at, "unknown name '%s'", e->name);
    return 0;
}

static NodeId lookup_fn_param(const Env *env, const char *name) {
    const AstFn *f = env->fn->ast;
    for (int i = 0; i < f->n_params; i++)
        if (!strcmp(f->params[i], name)) return env->args[i];
    return 0;   // reported by sema_check_fn_body
}

static void unknown_function(Sema *s, const Ast *e) {
    const char **cands = nn_alloc_array(&s->c->arena, NN_COUNTOF(builtins) + (size_t)s->n_fns,
                                        sizeof(char *));
    int n = 0;
    for (size_t k = 0; k < NN_COUNTOF(builtins); k++)
        if (builtins[k].kind != BK_INIT && builtins[k].kind != BK_OPT) cands[n++] = builtins[k].f.name;
    for (int k = 0; k < s->n_fns; k++) cands[n++] = s->fns[k].ast->name;
    const char *hint = sema_suggest(e->name, cands, n);
    if (hint) nn_error(s->d, e->op_at, "unknown function '%s'; did you mean '%s'?", e->name, hint);
    else nn_error(s->d, e->op_at, "unknown function '%s'", e->name);
}

// A call met in W_EVAL: resolve it, check where it may stand, match its
// arguments, then push W_CALL and the evaluation of its value arguments.
static void visit_call(Sema *s, const Ast *e, const Env *env) {
    bool report = env == NULL;   // inside a fn, sema_check_fn_body reported already
    const Builtin *b = sema_builtin(e->name);
    int fi = b ? -1 : sema_map_get(&s->fn_map, e->name);
    if (!b && fi < 0) {
        if (!report) { push_val(s, 0); return; }
        unknown_function(s, e);
        // Its arguments may hold independent errors: evaluate them for those.
        push_work(s, (Work){ .kind = W_DISCARD, .e = e, .env = env });
        for (int i = e->n_args - 1; i >= 0; i--) {
            const Ast *a = e->args[i];
            if (a->kind == AST_NAME && (sema_builtin(a->name) || sema_map_get(&s->fn_map, a->name) >= 0))
                push_val(s, 0);   // an activation name, as in a misspelt layer: not a value error
            else
                push_work(s, (Work){ .kind = W_EVAL, .e = a, .env = env });
        }
        return;
    }
    if (b && b->kind == BK_INIT) {
        if (report)
            nn_error(s->d, e->op_at, "'%s' is an initialiser; it can only follow '=' in a 'param' statement",
                     e->name);
        push_val(s, 0);
        return;
    }
    if (b && b->kind == BK_OPT) {
        if (report)
            nn_error(s->d, e->op_at, "'%s' is an optimiser; it can only be used in the 'train' statement",
                     e->name);
        push_val(s, 0);
        return;
    }
    if (sema_is_layer(b)) {
        if (env) { push_val(s, 0); return; }
        if (s->where) {
            nn_error(s->d, e->op_at, "layer '%s' is not allowed in %s; bind it to a name first (h = %s(...))",
                     e->name, s->where, e->name);
            push_val(s, 0);
            return;
        }
        if (s->layer) {
            nn_error(s->d, e->op_at, "a binding holds at most one layer; '%s' already has '%s'",
                     s->bind_name, s->layer->name);
            nn_note(s->d, s->layer->op_at, "the first layer of '%s' is here", s->bind_name);
            push_val(s, 0);
            return;
        }
        s->layer = e;
    }
    CallWork *cw = NN_NEW(&s->c->arena, CallWork);
    Callee fc;
    if (b) {
        fc = b->f;
    } else {
        const AstFn *f = s->fns[fi].ast;
        fc = (Callee){ f->name, f->n_params, f->n_params, f->params, false };
        cw->fn = &s->fns[fi];
    }
    cw->b = b;
    cw->n_slot = fc.is_variadic ? e->n_args : fc.max;
    cw->slot = nn_alloc_array(&s->c->arena, (size_t)cw->n_slot + 1, sizeof(Ast *));
    if (!sema_match_args(s, &fc, e, cw->slot, report)) {
        push_val(s, 0);
        return;
    }
    push_work(s, (Work){ .kind = W_CALL, .e = e, .env = env, .call = cw });
    for (int i = cw->n_slot - 1; i >= 0; i--)
        if (cw->slot[i] && !(b && i == b->act_slot))
            push_work(s, (Work){ .kind = W_EVAL, .e = cw->slot[i], .env = env });
}

static void finish_call(Sema *s, const Work *w) {
    CallWork *cw = w->call;
    NodeId *val = nn_alloc_array(&s->c->arena, (size_t)cw->n_slot + 1, sizeof(NodeId));
    for (int i = cw->n_slot - 1; i >= 0; i--)
        if (cw->slot[i] && !(cw->b && i == cw->b->act_slot)) val[i] = pop_val(s);
    if (cw->b) apply_builtin(s, w->env, cw->b, w->e, cw->slot, val, cw->n_slot);
    else start_fn(s, w->env, cw->fn, val, w->e->op_at);
}

static void finish_binary(Sema *s, const Work *w) {
    NodeId b = pop_val(s), a = pop_val(s);
    const Ast *e = w->e;
    NodeId r = 0;
    switch (e->kind) {
    case AST_ADD: r = checked_bin(s, w->env, IR_ADD, "+", a, b, e->op_at); break;
    case AST_SUB: r = checked_bin(s, w->env, IR_SUB, "-", a, b, e->op_at); break;
    case AST_MUL: r = checked_bin(s, w->env, IR_MUL, "*", a, b, e->op_at); break;
    case AST_DIV: r = checked_bin(s, w->env, IR_DIV, "/", a, b, e->op_at); break;
    case AST_POW: r = checked_bin(s, w->env, IR_POW, "^", a, b, e->op_at); break;
    case AST_MATMUL: r = checked_matmul(s, w->env, a, b, e->op_at); break;
    default: NN_ASSERT(!"not a binary operator");
    }
    push_val(s, r);
}

NodeId sema_eval(Sema *s, const Ast *root) {
    if (!root) return 0;
    if (!s->stk) s->stk = NN_NEW(&s->c->arena, SemaStacks);
    uint32_t work_base = stacks.n_work, vals_base = stacks.n_vals;
    push_work(s, (Work){ .kind = W_EVAL, .e = root, .env = NULL });
    while (stacks.n_work > work_base) {
        Work w = stacks.work[--stacks.n_work];
        const Ast *e = w.e;
        switch (w.kind) {
        case W_EVAL:
            switch (e->kind) {
            case AST_NUM:
                push_val(s, num(s, e->num, e->at));
                break;
            case AST_NAME:
                push_val(s, w.env ? lookup_fn_param(w.env, e->name) : lookup_model_name(s, e));
                break;
            case AST_NEG:
                push_work(s, (Work){ .kind = W_UNARY, .e = e, .env = w.env });
                push_work(s, (Work){ .kind = W_EVAL, .e = e->lhs, .env = w.env });
                break;
            case AST_ADD: case AST_SUB: case AST_MUL: case AST_DIV: case AST_MATMUL: case AST_POW:
                push_work(s, (Work){ .kind = W_BINARY, .e = e, .env = w.env });
                push_work(s, (Work){ .kind = W_EVAL, .e = e->rhs, .env = w.env });
                push_work(s, (Work){ .kind = W_EVAL, .e = e->lhs, .env = w.env });
                break;
            case AST_CALL:
                visit_call(s, e, w.env);
                break;
            }
            break;
        case W_UNARY: {
            NodeId a = pop_val(s);
            push_val(s, a ? un(s, IR_NEG, a, e->op_at) : 0);
            break;
        }
        case W_BINARY:
            finish_binary(s, &w);
            break;
        case W_CALL:
            finish_call(s, &w);
            break;
        case W_DISCARD:
            for (int i = 0; i < e->n_args; i++) pop_val(s);
            push_val(s, 0);
            break;
        case W_RETURN: {
            NN_ASSERT(stacks.n_vals > 0);
            NodeId r = stacks.vals[stacks.n_vals - 1];
            memo_put(s, w.inner->fn, w.inner->args, r);
            break;
        }
        }
    }
    NN_ASSERT(stacks.n_vals == vals_base + 1);
    return pop_val(s);
}

// ---- The check of a fn body at its definition

bool sema_check_fn_body(Sema *s, SemaFn *fn) {
    const AstFn *f = fn->ast;
    int errors = s->d->n_errors;
    const Ast **stack = NULL;
    size_t n = 0, cap = 0;
#define PUSH(x) do { if ((x)) { if (n == cap) { size_t nc = cap ? cap * 2 : 64; \
        stack = nn_grow_array(&s->c->arena, stack, cap, nc, sizeof *stack); cap = nc; } \
        stack[n++] = (x); } } while (0)
    PUSH(f->body);
    while (n) {
        const Ast *e = stack[--n];
        switch (e->kind) {
        case AST_NUM:
            break;
        case AST_NAME: {
            bool found = false;
            for (int i = 0; i < f->n_params && !found; i++)
                found = !strcmp(f->params[i], e->name);
            if (found) break;
            if (sema_map_get(&s->bind_map, e->name) >= 0)
                nn_error(s->d, e->at, "unknown name '%s'; a fn body sees only its parameters and other fns",
                         e->name);
            else if (sema_map_get(&s->fn_map, e->name) >= 0 || sema_builtin(e->name))
                nn_error(s->d, e->at, "'%s' is a function, not a value; call it with arguments", e->name);
            else {
                const char *hint = sema_suggest(e->name, f->params, f->n_params);
                if (hint) nn_error(s->d, e->at, "unknown name '%s'; did you mean '%s'?", e->name, hint);
                else nn_error(s->d, e->at, "unknown name '%s'", e->name);
            }
            break;
        }
        case AST_NEG:
            PUSH(e->lhs);
            break;
        case AST_ADD: case AST_SUB: case AST_MUL: case AST_DIV: case AST_MATMUL: case AST_POW:
            PUSH(e->rhs);
            PUSH(e->lhs);
            break;
        case AST_CALL: {
            const Builtin *b = sema_builtin(e->name);
            int fi = b ? -1 : sema_map_get(&s->fn_map, e->name);
            const Ast **slot = nn_alloc_array(&s->c->arena, (size_t)e->n_args + 8, sizeof(Ast *));
            if (sema_is_layer(b)) {
                nn_error(s->d, e->op_at, "layer '%s' is not allowed in fn '%s'; a fn is a pure expression",
                         e->name, f->name);
            } else if (b && b->kind == BK_INIT) {
                nn_error(s->d, e->op_at, "'%s' is an initialiser; it can only follow '=' in a 'param' statement",
                         e->name);
            } else if (b && b->kind == BK_OPT) {
                nn_error(s->d, e->op_at, "'%s' is an optimiser; it can only be used in the 'train' statement",
                         e->name);
            } else if (b) {
                sema_match_args(s, &b->f, e, slot, true);
            } else if (fi >= 0) {
                const AstFn *g = s->fns[fi].ast;
                Callee fc = { g->name, g->n_params, g->n_params, g->params, false };
                sema_match_args(s, &fc, e, slot, true);
                if (fn->n_calls == fn->calls_cap) {
                    int nc = fn->calls_cap ? fn->calls_cap * 2 : 8;
                    fn->calls = nn_grow_array(&s->c->arena, fn->calls, (size_t)fn->calls_cap, (size_t)nc,
                                              sizeof(Ast *));
                    fn->calls_cap = nc;
                }
                fn->calls[fn->n_calls++] = e;
            } else {
                unknown_function(s, e);
            }
            if (!b || !(sema_is_layer(b) || b->kind == BK_INIT || b->kind == BK_OPT))
                for (int i = e->n_args - 1; i >= 0; i--)   // (a refused call's arguments are not checked)
                    PUSH(e->args[i]);
            break;
        }
        }
    }
#undef PUSH
    if (s->d->n_errors != errors) fn->is_bad = true;
    return !fn->is_bad;
}
