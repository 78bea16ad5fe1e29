// ast.c: constructors for the syntax tree (called by the grammar actions in
// grammar/nn.y), the name table, and an S-expression printer for tests.
// Everything lives in c->arena. Names are interned (Lua's lstring.c): equal
// names are one pointer, so later stages compare names with ==.
// Nothing here recurses on the tree: ast_to_string keeps an explicit stack,
// because input may nest 10,000 parentheses (STYLE.md, "loops not recursion").
#include "ast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- names

typedef struct InternEntry {
    size_t len;        // bytes, without the NUL
    uint32_t hash;
    char text[];       // NUL-terminated copy
} InternEntry;

struct NnInterns {
    InternEntry **slots;   // open addressing, linear probing; NULL = empty
    uint32_t cap;          // a power of two
    uint32_t n;            // entries in use
};

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;   // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void interns_grow(NnCtx *c, struct NnInterns *t) {
    uint32_t cap = t->cap ? t->cap * 2 : 256;
    InternEntry **slots = nn_alloc_array(&c->arena, cap, sizeof *slots);
    for (uint32_t i = 0; i < t->cap; i++) {
        InternEntry *e = t->slots[i];
        if (!e) continue;
        uint32_t j = e->hash & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    t->slots = slots;   // the old array stays in the arena until the end
    t->cap = cap;
}

// Looks the name up before it creates it (Lua internshrstr).
const char *nn_intern(NnCtx *c, const char *s, size_t n) {
    struct NnInterns *t = c->interns;
    if (!t) t = c->interns = NN_NEW(&c->arena, struct NnInterns);
    if (t->n * 2 >= t->cap) interns_grow(c, t);
    uint32_t h = hash_bytes(s, n);
    uint32_t j = h & (t->cap - 1);
    for (InternEntry *e; (e = t->slots[j]); j = (j + 1) & (t->cap - 1))
        if (e->hash == h && e->len == n && memcmp(e->text, s, n) == 0) return e->text;
    InternEntry *e = nn_alloc(&c->arena, sizeof *e + n + 1);
    e->len = n;
    e->hash = h;
    memcpy(e->text, s, n);
    t->slots[j] = e;
    t->n++;
    return e->text;
}

// ---- constructors

static Ast *new_node(NnCtx *c, AstKind k, SrcRange at) {
    Ast *e = NN_NEW(&c->arena, Ast);
    e->kind = k;
    e->at = at;
    e->op_at = at;
    return e;
}

Ast *ast_num(NnCtx *c, double v, SrcRange at) {
    Ast *e = new_node(c, AST_NUM, at);
    e->num = v;
    return e;
}

Ast *ast_name(NnCtx *c, const char *name, SrcRange at) {
    Ast *e = new_node(c, AST_NAME, at);
    e->name = name;
    return e;
}

Ast *ast_binary(NnCtx *c, AstKind k, Ast *l, Ast *r, SrcRange op_at) {
    Ast *e = new_node(c, k, nn_join(l->at, r->at));
    e->op_at = op_at;
    e->lhs = l;
    e->rhs = r;
    return e;
}

Ast *ast_neg(NnCtx *c, Ast *operand, SrcRange op_at) {
    Ast *e = new_node(c, AST_NEG, nn_join(op_at, operand->at));
    e->op_at = op_at;
    e->lhs = operand;
    return e;
}

// A call without arguments; the parser adds them one by one and then widens
// `at` to the closing ')'.
Ast *ast_call(NnCtx *c, const char *name, SrcRange name_at) {
    Ast *e = new_node(c, AST_CALL, name_at);
    e->name = name;
    return e;
}

// Arrays grow to the next power of two when n reaches one (capacity is implicit).
static bool needs_growth(int n) { return n == 0 || (n >= 4 && (n & (n - 1)) == 0); }
static size_t grown(int n) { return n == 0 ? 4 : (size_t)n * 2; }

void ast_call_add_arg(NnCtx *c, Ast *call, const char *arg_name, SrcRange name_at, Ast *value) {
    int n = call->n_args;
    if (needs_growth(n)) {
        Arena *a = &c->arena;
        call->args = nn_grow_array(a, call->args, (size_t)n, grown(n), sizeof *call->args);
        call->arg_names = nn_grow_array(a, call->arg_names, (size_t)n, grown(n), sizeof *call->arg_names);
        call->arg_name_at = nn_grow_array(a, call->arg_name_at, (size_t)n, grown(n), sizeof *call->arg_name_at);
    }
    call->args[n] = value;
    call->arg_names[n] = arg_name;
    call->arg_name_at[n] = arg_name ? name_at : value->at;
    call->n_args = n + 1;
}

// ---- printer

typedef struct Buf {
    char *s;
    size_t len, cap;
} Buf;

static void buf_put(NnCtx *c, Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = nn_grow_array(&c->arena, b->s, b->len, cap, 1);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_puts(NnCtx *c, Buf *b, const char *s) { buf_put(c, b, s, strlen(s)); }

// The shortest "%.*g" that reads back as the same double.
static void put_number(NnCtx *c, Buf *b, double v) {
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v || isnan(v)) break;
    }
    buf_puts(c, b, tmp);
}

static const char *op_text(AstKind k) {
    switch (k) {
    case AST_ADD: return "+";
    case AST_SUB: return "-";
    case AST_MUL: return "*";
    case AST_DIV: return "/";
    case AST_MATMUL: return "@";
    case AST_POW: return "^";
    case AST_NEG: return "-";
    default: return "?";
    }
}

// A work item: print a node, or emit a fixed text.
typedef struct Item {
    const Ast *node;
    const char *text;
} Item;

typedef struct Stack {
    Item *items;
    size_t n, cap;
} Stack;

static void push(NnCtx *c, Stack *st, const Ast *node, const char *text) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        st->items = nn_grow_array(&c->arena, st->items, st->n, cap, sizeof *st->items);
        st->cap = cap;
    }
    st->items[st->n++] = (Item){ node, text };
}

// (+ a (* 2 b)), (- a) for negation, (call dense x 3 (= act relu)).
char *ast_to_string(NnCtx *c, const Ast *root) {
    Buf b = { 0 };
    Stack st = { 0 };
    buf_puts(c, &b, "");
    if (root) push(c, &st, root, NULL);
    while (st.n > 0) {
        Item it = st.items[--st.n];
        if (it.text) {
            buf_puts(c, &b, it.text);
            continue;
        }
        const Ast *e = it.node;
        if (!e) {
            buf_puts(c, &b, "<null>");
            continue;
        }
        // Children are pushed in reverse: the last pushed is printed first.
        switch (e->kind) {
        case AST_NUM:
            put_number(c, &b, e->num);
            break;
        case AST_NAME:
            buf_puts(c, &b, e->name ? e->name : "<null>");
            break;
        case AST_NEG:
            buf_puts(c, &b, "(- ");
            push(c, &st, NULL, ")");
            push(c, &st, e->lhs, NULL);
            break;
        case AST_CALL:
            buf_puts(c, &b, "(call ");
            buf_puts(c, &b, e->name ? e->name : "<null>");
            push(c, &st, NULL, ")");
            for (int i = e->n_args - 1; i >= 0; i--) {
                if (e->arg_names[i]) {
                    push(c, &st, NULL, ")");
                    push(c, &st, e->args[i], NULL);
                    push(c, &st, NULL, " ");
                    push(c, &st, NULL, e->arg_names[i]);
                    push(c, &st, NULL, " (= ");
                } else {
                    push(c, &st, e->args[i], NULL);
                    push(c, &st, NULL, " ");
                }
            }
            break;
        default:
            buf_puts(c, &b, "(");
            buf_puts(c, &b, op_text(e->kind));
            buf_puts(c, &b, " ");
            push(c, &st, NULL, ")");
            push(c, &st, e->rhs, NULL);
            push(c, &st, NULL, " ");
            push(c, &st, e->lhs, NULL);
            break;
        }
    }
    return b.s;
}
