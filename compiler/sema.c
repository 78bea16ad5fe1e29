// sema.c: the semantic analysis of a parsed file (LANGUAGE.md §3-§6).
//
// Input: the AstFile from nn_parse. Output: the forward Model: its graph
// (built through ir.h's hash-consing constructors), input, target, output,
// per-sample loss, batch objective, parameters (in order of first appearance,
// offsets without gaps) and optimiser. Errors go to c->diag in the clang form
// and nn_sema returns NULL; as many independent errors as possible are found
// in one run (a failed binding is 0, the "poison", which later uses pass on
// silently), up to Diag's limit of 20.
//
// Order of work: the fns (duplicate names, parameters, their bodies, recursion),
// then the model in two passes: (1) the names it binds and its statement
// kinds (duplicates, missing ones), (2) each statement in source order, so a
// name is usable only after its binding. Expressions are in sema_expr.c.
#include "sema_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- Name maps

static uint64_t str_hash(const char *k) {
    uint64_t h = 1469598103934665603ull;   // FNV-1a
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return h;
}

int sema_map_get(const NameMap *m, const char *key) {
    if (!m->cap) return -1;
    for (uint32_t i = (uint32_t)str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (m->keys[i] == key || !strcmp(m->keys[i], key)) return m->vals[i];
    }
}

void sema_map_put(Sema *s, NameMap *m, const char *key, int val) {
    if (2 * (m->n + 1) > m->cap) {
        NameMap old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->keys = nn_alloc_array(&s->c->arena, m->cap, sizeof(char *));
        m->vals = nn_alloc_array(&s->c->arena, m->cap, sizeof(int));
        m->n = 0;
        for (uint32_t i = 0; i < old.cap; i++)
            if (old.keys[i]) sema_map_put(s, m, old.keys[i], old.vals[i]);
    }
    uint32_t i = (uint32_t)str_hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key)) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
}

// ---- Suggestions: the candidate at the smallest edit distance, if <= 2.

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *sema_suggest(const char *name, const char *const *cands, int n) {
    const char *best = NULL;
    size_t len = strlen(name);
    // Short names are "close" to every other short name: ask for more.
    int best_d = (len <= 2 ? 0 : len <= 4 ? 1 : 2) + 1;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(name, cands[i]);
        if (d < best_d) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

// ---- Parameters

#define MAX_NUMEL 0x7fffffffLL   // elements of one tensor (int32 indexing in generated code)

NodeId sema_add_param(Sema *s, const char *name, Shape shape, IrInit init, int64_t fan_in,
                      int64_t fan_out, SrcRange at) {
    int64_t numel = 1;
    for (int i = 0; i < shape.rank; i++) {
        numel *= shape.dim[i];
        if (numel > MAX_NUMEL) {
            nn_error(s->d, at, "parameter '%s' is too large (more than %lld elements)", name, MAX_NUMEL);
            return 0;
        }
    }
    if (s->n_params == s->params_cap) {
        uint32_t cap = s->params_cap ? s->params_cap * 2 : 16;
        s->params = nn_grow_array(&s->c->arena, s->params, s->params_cap, cap, sizeof(IrParam));
        s->params_cap = cap;
    }
    uint32_t index = s->n_params++;
    NodeId node = ir_leaf(s->g, IR_PARAM, index, shape, at);
    s->params[index] = (IrParam){ .name = name, .shape = shape, .init = init, .fan_in = fan_in,
                                  .fan_out = fan_out, .node = node, .offset = s->m->param_count,
                                  .at = at };
    s->m->param_count += (size_t)numel;
    return node;
}

// PyTorch's rule (torch.nn.init._calculate_fan_in_and_fan_out) for explicit params:
// fan_in = dim[1] * prod(dim[2:]), fan_out = dim[0] * prod(dim[2:]); 1-D: dim[0]; scalar: 1.
static void explicit_fans(Shape sh, int64_t *fan_in, int64_t *fan_out) {
    if (sh.rank == 0) { *fan_in = *fan_out = 1; return; }
    if (sh.rank == 1) { *fan_in = *fan_out = sh.dim[0]; return; }
    int64_t field = 1;
    for (int i = 2; i < sh.rank; i++) field *= sh.dim[i];
    *fan_in = sh.dim[1] * field;
    *fan_out = sh.dim[0] * field;
}

// ---- Model names (LANGUAGE.md §4: the C prefix; neither a C nor a C++ keyword)

static const char *const c_keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
    "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict",
    "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union",
    "unsigned", "void", "volatile", "while", "_Alignas", "_Alignof", "_Atomic", "_Bool",
    "_Complex", "_Generic", "_Imaginary", "_Noreturn", "_Static_assert", "_Thread_local",
};
static const char *const cxx_keywords[] = {
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
    "case", "catch", "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept",
    "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "co_await",
    "co_return", "co_yield", "decltype", "default", "delete", "do", "double", "dynamic_cast",
    "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto",
    "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
    "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
    "reinterpret_cast", "requires", "return", "short", "signed", "sizeof", "static",
    "static_assert", "static_cast", "struct", "switch", "template", "this", "thread_local",
    "throw", "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using",
    "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
};
// Names the generated header itself uses as types, or that every C program has.
static const char *const header_names[] = {
    "size_t", "int64_t", "uint64_t", "int32_t", "uint32_t", "int8_t", "uint8_t", "int16_t",
    "uint16_t", "main", "NULL", "FILE", "errno", "assert",
};

static bool in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], name)) return true;
    return false;
}

// A name that cannot be a C prefix is an error when C is generated (a library,
// an object, LLVM IR with its symbols) and a warning otherwise: --emit=ir,
// --emit=grad, --stats and `nnc check` never write C, and LANGUAGE.md §8's own
// example is called `explicit` (docs/language.md).
static void check_model_name(Sema *s, const AstModel *md) {
    const char *n = md->name;
    if (!n) return;
    const char *why = NULL;
    if (in_list(n, cxx_keywords, NN_COUNTOF(cxx_keywords)))
        why = in_list(n, c_keywords, NN_COUNTOF(c_keywords)) ? "it is a C keyword" : "it is a C++ keyword";
    else if (in_list(n, c_keywords, NN_COUNTOF(c_keywords)))
        why = "it is a C keyword";
    else if (in_list(n, header_names, NN_COUNTOF(header_names)))
        why = "the generated header would redefine it";
    else if (n[0] == '_' && (n[1] == '_' || (n[1] >= 'A' && n[1] <= 'Z')))
        why = "names starting with '__' or '_' and a capital are reserved in C";
    else if (!strncmp(n, "nnc_", 4) || !strncmp(n, "nnrt_", 5))
        why = "the prefixes 'nnc_' and 'nnrt_' are the runtime's";
    if (!why) return;
    EmitKind e = s->c->opt.emit;
    if (e == EMIT_SO || e == EMIT_OBJ || e == EMIT_LLVM || e == EMIT_ASM)
        nn_error(s->d, md->name_at, "'%s' cannot be a model name: %s (the name is the C prefix of the generated API)", n, why);
    else
        nn_warning(s->d, md->name_at, "'%s' cannot be the C prefix of a compiled model: %s; rename the model to build a library", n, why);
}

// ---- fns

static void check_fns(Sema *s) {
    const AstFile *f = s->file;
    s->n_fns = f->n_fns;
    s->fns = nn_alloc_array(&s->c->arena, (size_t)f->n_fns + 1, sizeof(SemaFn));
    for (int i = 0; i < f->n_fns; i++) {
        const AstFn *fn = f->fns[i];
        s->fns[i].ast = fn;
        const Builtin *b = sema_builtin(fn->name);
        int prev = sema_map_get(&s->fn_map, fn->name);
        if (b) {
            nn_error(s->d, fn->name_at, "fn '%s' has the name of a built-in %s", fn->name,
                     sema_is_layer(b) ? "layer" : b->kind == BK_INIT ? "initialiser"
                     : b->kind == BK_OPT ? "optimiser" : "function");
            s->fns[i].is_bad = true;
        } else if (prev >= 0) {
            nn_error(s->d, fn->name_at, "fn '%s' is defined twice", fn->name);
            nn_note(s->d, s->fns[prev].ast->name_at, "the first definition of '%s' is here", fn->name);
            s->fns[i].is_bad = true;
        } else {
            sema_map_put(s, &s->fn_map, fn->name, i);
        }
        for (int k = 1; k < fn->n_params; k++)
            for (int j = 0; j < k; j++)
                if (!strcmp(fn->params[j], fn->params[k])) {
                    nn_error(s->d, fn->param_at[k], "parameter '%s' of fn '%s' appears twice",
                             fn->params[k], fn->name);
                    s->fns[i].is_bad = true;
                    break;
                }
    }
}

// Recursion, direct or mutual: a depth-first search over the calls with an
// explicit stack; the call that reaches a fn still on the stack closes a cycle.
static void check_recursion(Sema *s) {
    int *stack = nn_alloc_array(&s->c->arena, (size_t)s->n_fns + 1, sizeof(int));
    int *next = nn_alloc_array(&s->c->arena, (size_t)s->n_fns + 1, sizeof(int));
    for (int r = 0; r < s->n_fns; r++) {
        if (s->fns[r].color) continue;
        int n = 0;
        stack[n] = r;
        next[n++] = 0;
        s->fns[r].color = 1;
        while (n) {
            SemaFn *top = &s->fns[stack[n - 1]];
            if (next[n - 1] == top->n_calls) {
                top->color = 2;
                n--;
                continue;
            }
            const Ast *call = top->calls[next[n - 1]++];
            int t = sema_map_get(&s->fn_map, call->name);
            if (t < 0) continue;
            if (s->fns[t].color == 0) {
                s->fns[t].color = 1;
                stack[n] = t;
                next[n++] = 0;
            } else if (s->fns[t].color == 1) {
                int from = n - 1;
                while (stack[from] != t) from--;
                char path[512];
                size_t len = 0;
                for (int k = from; k < n && len < sizeof path - 80; k++) {
                    len += (size_t)snprintf(path + len, sizeof path - len, "%s -> ", s->fns[stack[k]].ast->name);
                    s->fns[stack[k]].is_bad = true;
                }
                snprintf(path + len, sizeof path - len, "%s", s->fns[t].ast->name);
                nn_error(s->d, call->op_at, "recursive call to '%s' (%s); fns cannot be recursive",
                         call->name, path);
            }
        }
    }
}

// ---- Model statements

static const char *stmt_word(StmtKind k) {
    switch (k) {
    case ST_INPUT: return "input";
    case ST_TARGET: return "target";
    case ST_PARAM: return "param";
    case ST_BIND: return "binding";
    case ST_OUTPUT: return "output";
    case ST_LOSS: return "loss";
    case ST_TRAIN: return "train";
    }
    return "statement";
}

// Dimensions `[d1, ...]`: positive integer constants, at most 4 of them.
static bool eval_shape(Sema *s, const AstStmt *st, Shape *out) {
    *out = ir_scalar_shape();
    if (st->n_dims <= 0) return true;       // `input x;`, `param s = ...`: a scalar
    if (st->n_dims > IR_MAX_RANK) {
        nn_error(s->d, st->dims[IR_MAX_RANK]->at, "a tensor has at most %d dimensions, '%s' has %d",
                 IR_MAX_RANK, st->name, st->n_dims);
        return false;
    }
    bool ok = true;
    int64_t numel = 1;
    const char *where = s->where;
    s->where = "a dimension";
    for (int i = 0; i < st->n_dims; i++) {
        double d;
        NodeId v = sema_eval(s, st->dims[i]);
        if (!v) { ok = false; continue; }
        if (!sema_const_value(s, v, &d)) {
            nn_error(s->d, st->dims[i]->at, "a dimension must be a constant");
            ok = false;
        } else if (d != floor(d) || d < 1 || d > (1 << 30)) {
            nn_error(s->d, st->dims[i]->at, "a dimension must be a positive integer, got %g", d);
            ok = false;
        } else {
            out->dim[i] = (int32_t)d;
            numel *= (int64_t)d;
            if (ok && numel > MAX_NUMEL) {
                nn_error(s->d, st->dims[i]->at, "'%s' is too large (more than %lld elements)", st->name,
                         MAX_NUMEL);
                ok = false;
            }
        }
    }
    s->where = where;
    out->rank = (uint8_t)st->n_dims;
    return ok;
}

static const char *init_list = "zeros, ones, constant, uniform, normal, xavier, he";

static bool eval_init(Sema *s, const AstStmt *st, IrInit *out) {
    const Ast *e = st->expr;
    if (!e) {
        nn_error(s->d, st->name_at, "param '%s' needs an initialiser, e.g. '= zeros()'", st->name);
        return false;
    }
    if (e->kind != AST_CALL) {
        nn_error(s->d, e->at, "the initialiser of '%s' must be a call of one of %s", st->name, init_list);
        return false;
    }
    const Builtin *b = sema_builtin(e->name);
    if (!b || b->kind != BK_INIT) {
        nn_error(s->d, e->op_at, "unknown initialiser '%s'; valid initialisers are %s", e->name, init_list);
        return false;
    }
    const Ast *slot[4] = { 0 };
    if (!sema_match_args(s, &b->f, e, slot, true)) return false;
    *out = (IrInit){ (InitKind)b->op, 0, 0 };
    s->where = "an initialiser";
    bool ok = true;
    double v[2] = { 0, 0 };
    for (int i = 0; i < b->f.max; i++)
        ok = sema_const_arg(s, slot[i], b->f.params[i], e->name, &v[i]) && ok;
    s->where = NULL;
    if (!ok) return false;
    out->a = v[0];
    out->b = v[1];
    if (out->kind == INIT_UNIFORM && !(v[0] < v[1])) {
        nn_error(s->d, e->op_at, "'uniform' needs lo < hi, got lo = %g and hi = %g", v[0], v[1]);
        return false;
    }
    if (out->kind == INIT_NORMAL && !(v[1] >= 0)) {
        nn_error(s->d, slot[1]->at, "'std' of 'normal' must be >= 0, got %g", v[1]);
        return false;
    }
    return true;
}

static void eval_param(Sema *s, const AstStmt *st, Binding *bd) {
    Shape sh;
    IrInit init;
    bool ok = eval_shape(s, st, &sh);
    ok = eval_init(s, st, &init) && ok;
    if (!ok) return;
    int64_t fan_in, fan_out;
    explicit_fans(sh, &fan_in, &fan_out);
    NodeId p = sema_add_param(s, st->name, sh, init, fan_in, fan_out, st->name_at);
    if (bd) bd->value = p;
}

static const char *opt_list = "sgd, adam";

static void eval_train(Sema *s, const AstStmt *st, bool *ok_out) {
    const Ast *e = st->expr;
    Model *m = s->m;
    *ok_out = false;
    if (!e || e->kind != AST_CALL) {
        nn_error(s->d, e ? e->at : st->kw_at, "'train' expects an optimiser call such as sgd(lr = 0.1)");
        return;
    }
    const Builtin *b = sema_builtin(e->name);
    if (!b || b->kind != BK_OPT) {
        nn_error(s->d, e->op_at, "unknown optimiser '%s'; valid optimisers are %s", e->name, opt_list);
        return;
    }
    const Ast *slot[8] = { 0 };
    if (!sema_match_args(s, &b->f, e, slot, true)) return;
    IrOptimizer o = { .kind = (OptKind)b->op, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .at = e->op_at };
    bool ok = true;
    const char *on = e->name;
    const Ast *nesterov_at = NULL;
    s->where = "'train'";
    for (int i = 0; i < b->f.max; i++) {
        const Ast *a = slot[i];
        const char *pn = b->f.params[i];
        if (!a) continue;
        if (!strcmp(pn, "reduce")) {
            if (a->kind == AST_NAME && !strcmp(a->name, "mean")) o.reduce_sum = false;
            else if (a->kind == AST_NAME && !strcmp(a->name, "sum")) o.reduce_sum = true;
            else {
                nn_error(s->d, a->at, "'reduce' of '%s' must be mean or sum", on);
                ok = false;
            }
            continue;
        }
        double v;
        if (!sema_const_arg(s, a, pn, on, &v)) { ok = false; continue; }
        const char *bad = NULL;
        if (!strcmp(pn, "lr")) { o.lr = v; if (!(v > 0)) bad = "> 0"; }
        else if (!strcmp(pn, "momentum")) { o.momentum = v; if (!(v >= 0)) bad = ">= 0"; }
        else if (!strcmp(pn, "weight_decay")) { o.weight_decay = v; if (!(v >= 0)) bad = ">= 0"; }
        else if (!strcmp(pn, "beta1")) { o.beta1 = v; if (!(v >= 0 && v < 1)) bad = "in [0, 1)"; }
        else if (!strcmp(pn, "beta2")) { o.beta2 = v; if (!(v >= 0 && v < 1)) bad = "in [0, 1)"; }
        else if (!strcmp(pn, "eps")) { o.eps = v; if (!(v > 0)) bad = "> 0"; }
        else if (!strcmp(pn, "clip")) { o.clip = v; if (!(v > 0)) bad = "> 0"; }
        else if (!strcmp(pn, "nesterov")) {
            if (v != 0 && v != 1) {
                nn_error(s->d, a->at, "'nesterov' of '%s' must be true or false", on);
                ok = false;
            }
            o.nesterov = v != 0;
            nesterov_at = a;
        }
        if (bad) {
            nn_error(s->d, a->at, "'%s' of '%s' must be %s, got %g", pn, on, bad, v);
            ok = false;
        }
    }
    s->where = NULL;
    if (ok && o.nesterov && !(o.momentum > 0)) {   // as torch.optim.SGD
        nn_error(s->d, nesterov_at->at, "'nesterov' of 'sgd' needs 'momentum' > 0");
        ok = false;
    }
    if (!ok) return;
    m->opt = o;
    *ok_out = true;
}

static void eval_model(Sema *s, const AstModel *md) {
    Model *m = s->m;
    int first[ST_TRAIN + 1];
    for (int k = 0; k <= ST_TRAIN; k++) first[k] = -1;
    check_model_name(s, md);

    // Pass 1: the names and the statement kinds.
    s->binds = nn_alloc_array(&s->c->arena, (size_t)md->n_stmts + 1, sizeof(Binding));
    bool *is_dup = nn_alloc_array(&s->c->arena, (size_t)md->n_stmts + 1, sizeof(bool));
    for (int i = 0; i < md->n_stmts; i++) {
        const AstStmt *st = md->stmts[i];
        if (st->kind == ST_INPUT || st->kind == ST_TARGET || st->kind == ST_OUTPUT ||
            st->kind == ST_LOSS || st->kind == ST_TRAIN) {
            if (first[st->kind] >= 0) {
                const char *w = stmt_word(st->kind);
                nn_error(s->d, st->kw_at, "a second '%s' statement; a model has %s one", w,
                         st->kind == ST_TARGET ? "at most" : "exactly");
                nn_note(s->d, md->stmts[first[st->kind]]->kw_at, "the first '%s' is here", w);
                is_dup[i] = true;
            } else {
                first[st->kind] = i;
            }
        }
        if (st->name && st->kind != ST_OUTPUT && st->kind != ST_LOSS && st->kind != ST_TRAIN) {
            int prev = sema_map_get(&s->bind_map, st->name);
            if (prev >= 0) {
                nn_error(s->d, st->name_at, "'%s' is bound twice; every name is bound once", st->name);
                nn_note(s->d, s->binds[prev].at, "'%s' is first bound here", st->name);
                is_dup[i] = true;
            } else {
                s->binds[s->n_binds] = (Binding){ st->name, i, st->name_at, 0, false };
                sema_map_put(s, &s->bind_map, st->name, s->n_binds++);
            }
        }
    }

    // The fns' bodies, now that the model's names are known (for hints).
    for (int i = 0; i < s->n_fns; i++)
        sema_check_fn_body(s, &s->fns[i]);
    check_recursion(s);

    // Pass 2: every statement in order.
    bool train_ok = false;
    for (int i = 0; i < md->n_stmts; i++) {
        const AstStmt *st = md->stmts[i];
        if (is_dup[i]) continue;
        s->stmt = i;
        s->where = NULL;
        s->layer = NULL;
        int bi = st->name ? sema_map_get(&s->bind_map, st->name) : -1;
        Binding *bd = bi >= 0 && s->binds[bi].stmt == i ? &s->binds[bi] : NULL;
        switch (st->kind) {
        case ST_INPUT:
        case ST_TARGET: {
            Shape sh;
            if (!eval_shape(s, st, &sh)) break;
            NodeId v = ir_leaf(s->g, st->kind == ST_INPUT ? IR_INPUT : IR_TARGET, 0, sh, st->name_at);
            if (st->kind == ST_INPUT) { m->input = v; m->input_name = st->name; }
            else { m->target = v; m->target_name = st->name; }
            if (bd) bd->value = v;
            break;
        }
        case ST_PARAM:
            eval_param(s, st, bd);
            break;
        case ST_BIND: {
            s->bind_name = st->name;
            s->bind_at = st->name_at;
            NodeId v = sema_eval(s, st->expr);
            if (bd) bd->value = v;
            break;
        }
        case ST_OUTPUT:
            s->where = "'output'";
            m->output = sema_eval(s, st->expr);
            break;
        case ST_LOSS: {
            s->where = "'loss'";
            NodeId v = sema_eval(s, st->expr);
            if (!v) break;
            Shape sh = ir_get(s->g, v)->shape;
            if (ir_numel(sh) != 1) {
                char buf[64];
                nn_error(s->d, st->expr->at, "the loss must be a scalar, got %s; reduce it, e.g. with sum(...) or mean(...)",
                         ir_shape_str(sh, buf, sizeof buf));
                break;
            }
            if (sh.rank) v = ir_reshape(s->g, v, ir_scalar_shape(), st->expr->at);   // [1] counts as a scalar
            m->loss = v;
            break;
        }
        case ST_TRAIN:
            eval_train(s, st, &train_ok);
            break;
        }
        if (bd) bd->is_done = true;
        s->where = NULL;
    }

    // Missing statements, at the `model` keyword (LANGUAGE.md §6).
    static const StmtKind required[] = { ST_INPUT, ST_OUTPUT, ST_LOSS, ST_TRAIN };
    for (size_t k = 0; k < NN_COUNTOF(required); k++)
        if (first[required[k]] < 0)
            nn_error(s->d, md->kw_at, "model '%s' has no '%s' statement", md->name ? md->name : "?",
                     stmt_word(required[k]));

    // The batch objective: the mean of the per-sample losses, or their sum.
    if (m->loss && train_ok) {
        SrcRange at = ir_get(s->g, m->loss)->at;
        m->objective = ir_reduce(s->g, IR_BATCH_SUM, m->loss, at);
        if (!m->opt.reduce_sum) {
            NodeId inv = ir_leaf(s->g, IR_SCALAR_ARG, IR_ARG_INV_BATCH, ir_scalar_shape(), at);
            m->objective = ir_binary(s->g, IR_MUL, m->objective, inv, at);
        }
    }
}

// A parameter the loss does not depend on is a warning at the parameter.
static void warn_unused_params(Sema *s) {
    Model *m = s->m;
    Graph *g = s->g;
    bool *live = nn_alloc_array(&s->c->arena, g->n_nodes + 1, sizeof(bool));
    live[m->loss] = true;
    for (NodeId id = m->loss; id > 0; id--) {   // operands have smaller ids
        if (!live[id]) continue;
        const Node *n = ir_get(g, id);
        for (int k = 0; k < n->n_args; k++) live[n->arg[k]] = true;
    }
    for (uint32_t i = 0; i < m->n_params; i++)
        if (!live[m->params[i].node])
            nn_warning(s->d, m->params[i].at, "parameter '%s' does not affect the loss", m->params[i].name);
}

Model *nn_sema(NnCtx *c, const AstFile *file) {
    if (!file) return NULL;
    int errors = c->diag.n_errors;
    Sema *s = NN_NEW(&c->arena, Sema);
    s->c = c;
    s->d = &c->diag;
    s->file = file;
    s->g = ir_graph_new(&c->arena);
    s->m = NN_NEW(&c->arena, Model);
    s->m->g = s->g;

    check_fns(s);
    if (file->n_models == 0) {
        nn_error(s->d, file->end_at, "the file has no model; it needs one 'model NAME { ... }'");
        for (int i = 0; i < s->n_fns; i++)
            sema_check_fn_body(s, &s->fns[i]);
        check_recursion(s);
        return NULL;
    }
    for (int k = 1; k < file->n_models; k++) {
        nn_error(s->d, file->models[k]->kw_at, "a second model; a file holds exactly one");
        nn_note(s->d, file->models[0]->kw_at, "the first model is here");
    }
    const AstModel *md = file->models[0];
    s->m->name = md->name;
    s->m->name_at = md->name_at;
    eval_model(s, md);
    s->m->params = s->params;
    s->m->n_params = s->n_params;
    if (c->diag.n_errors != errors) return NULL;
    NN_ASSERT(s->m->input && s->m->output && s->m->loss && s->m->objective);
    warn_unused_params(s);
    return s->m;
}

Model *nn_frontend(NnCtx *c, int file) {
    if (file < 0) return NULL;
    int errors = c->diag.n_errors;
    AstFile *f = nn_parse(c, file);
    if (!f || c->diag.n_errors != errors) return NULL;
    return nn_sema(c, f);
}
