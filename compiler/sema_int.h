// sema_int.h: what the files of the sema stage share (sema.c: file structure,
// fns, model statements, parameters, initialisers, optimiser, warnings;
// sema_expr.c: expressions, built-ins, layers, fn inlining). Private to sema*.c.
#ifndef NNC_SEMA_INT_H
#define NNC_SEMA_INT_H

#include "sema.h"

// A string-keyed map (open addressing) from a name to an int; names are
// compared by content, so it works whether or not they were interned.
typedef struct NameMap {
    const char **keys;
    int         *vals;
    uint32_t     cap;      // a power of two, or 0
    uint32_t     n;
} NameMap;

// A user fn, with what the check of its body found.
typedef struct SemaFn {
    const AstFn *ast;
    bool         is_bad;   // its body (or a fn it calls) has an error: calls give no value
    int          color;    // recursion search: 0 new, 1 on the stack, 2 done
    const Ast  **calls;    // the calls of user fns in its body, in source order
    int          n_calls, calls_cap;
} SemaFn;

// A name of the model's scope: input, target, param or binding.
typedef struct Binding {
    const char *name;
    int         stmt;      // index of the statement that binds it
    SrcRange    at;        // the name where it is bound
    NodeId      value;     // 0 until its statement ran, or after an error there
    bool        is_done;   // its statement ran (value 0 then means an error)
} Binding;

// One memoised inlining: fn applied to argument nodes gives result.
typedef struct MemoEntry {
    const SemaFn *fn;
    const NodeId *args;
    NodeId        result;
} MemoEntry;

typedef struct Sema {
    NnCtx         *c;
    Diag          *d;
    Graph         *g;
    Model         *m;
    const AstFile *file;

    SemaFn        *fns;      // in file order
    int            n_fns;
    NameMap        fn_map;   // name -> index in fns

    Binding       *binds;    // model scope
    int            n_binds;
    NameMap        bind_map; // name -> index in binds

    // The statement being evaluated.
    int            stmt;     // its index
    const char    *where;    // "output", "loss", ...: where no layer is allowed; NULL in a binding
    const char    *bind_name;// the binding's name (layer parameters are named after it)
    SrcRange       bind_at;
    const Ast     *layer;    // the layer call already seen in this binding

    // Parameters, in order of first appearance.
    IrParam       *params;
    uint32_t       n_params, params_cap;

    struct SemaStacks *stk;  // sema_eval's work and value stacks (sema_expr.c)

    // fn inlining memo: (fn, argument nodes) -> result node.
    MemoEntry     *memo;
    uint32_t       memo_cap, memo_n;
} Sema;

// ---- sema.c
int    sema_map_get(const NameMap *m, const char *key);            // -1 if absent
void   sema_map_put(Sema *s, NameMap *m, const char *key, int val);
// Appends a parameter; returns its PARAM node.
NodeId sema_add_param(Sema *s, const char *name, Shape shape, IrInit init, int64_t fan_in,
                      int64_t fan_out, SrcRange at);
// The closest of `n` candidates to `name` (edit distance <= 2), or NULL.
const char *sema_suggest(const char *name, const char *const *cands, int n);

// ---- sema_expr.c
// Evaluates an expression of the model (env: the model's scope) into the graph.
// Returns 0 after an error (already reported) or when a value it needs failed.
NodeId sema_eval(Sema *s, const Ast *e);
// Checks a fn body once, at its definition: names, calls, argument counts,
// layers. Records the user fn calls for the recursion check. False on errors.
bool   sema_check_fn_body(Sema *s, SemaFn *fn);
// The constant value of a node (a CONST of one element); false otherwise.
bool   sema_const_value(const Sema *s, NodeId v, double *out);
// Argument matching shared with sema.c (initialisers, optimisers).
typedef struct Callee {
    const char        *name;
    int                min, max;       // positional-count bounds
    const char *const *params;         // parameter names (max of them), NULL for none
    bool               is_variadic;    // reshape: extra positional arguments
} Callee;
// Fills slot[i] with the argument for parameter i (NULL if not given). For a
// variadic callee the slots are the arguments in order. Reports and returns
// false on bad counts, unknown or repeated names.
bool   sema_match_args(Sema *s, const Callee *f, const Ast *call, const Ast **slot, bool report);
// Evaluates a constant argument; reports "'what' of 'callee' must be a constant".
bool   sema_const_arg(Sema *s, const Ast *e, const char *what, const char *callee, double *out);

// The built-in functions, layers, initialisers and optimisers (LANGUAGE.md §4-§5).
typedef enum {
    BK_UNARY,      // elementwise, one operand: op
    BK_IDENTITY,
    BK_LEAKY,      // leaky_relu(x, alpha)
    BK_BINARY,     // max, min: op, with broadcasting
    BK_TRANSPOSE, BK_FLATTEN, BK_RESHAPE,
    BK_SUM, BK_MEAN, BK_LOGSUMEXP,
    BK_SOFTMAX,    // softmax, log_softmax: op
    BK_MSE, BK_SSE, BK_CE, BK_SCE, BK_BCE,
    BK_DENSE, BK_CONV, BK_POOL,  // layers (pool: op)
    BK_INIT,       // initialisers: op is an InitKind
    BK_OPT,        // optimisers: op is an OptKind
} BuiltinKind;

typedef struct Builtin {
    Callee      f;
    BuiltinKind kind;
    int         op;        // IrOp, InitKind or OptKind
    int         act_slot;  // the `act` parameter of a layer, or -1
} Builtin;

const Builtin *sema_builtin(const char *name);   // NULL if not a built-in
static inline bool sema_is_layer(const Builtin *b) {
    return b && (b->kind == BK_DENSE || b->kind == BK_CONV || b->kind == BK_POOL);
}

#endif
