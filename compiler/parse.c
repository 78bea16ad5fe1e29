// parse.c: the entry point of the front end. nn_parse runs the flex scanner
// (grammar/nn.l) and the bison parser (grammar/nn.y) over one registered
// source file and returns its AstFile. The helpers below are what the grammar
// actions call to build statements, models and fns; they only assemble nodes
// (the one check here is syntactic: `param` and `train` take a call).
// All memory, the scanner's and the parser's stacks included, is in c->arena.
#include "ast.h"
#include "nn.tab.h"
#include "nn.lex.h"

#include <limits.h>
#include <string.h>

// Arrays grow to the next power of two when their length reaches one.
static bool needs_growth(int n) { return n == 0 || (n >= 4 && (n & (n - 1)) == 0); }
static size_t grown(int n) { return n == 0 ? 4 : (size_t)n * 2; }

#define APPEND(p, arr, n, item)                                                            \
    do {                                                                                   \
        if (needs_growth(n))                                                               \
            (arr) = nn_grow_array(&(p)->c->arena, (arr), (size_t)(n), grown(n), sizeof *(arr)); \
        (arr)[(n)++] = (item);                                                             \
    } while (0)

AstList *nn_parse_list(NnParser *p, AstList *l, Ast *item) {
    if (!l) l = NN_NEW(&p->c->arena, AstList);
    APPEND(p, l->items, l->n, item);
    return l;
}

// `param` takes an initialiser and `train` an optimiser, both written as calls.
static bool is_call(NnParser *p, StmtKind k, const Ast *e) {
    if (e->kind == AST_CALL) return true;
    if (k == ST_PARAM)
        nn_error(&p->c->diag, e->at, "expected an initialiser call such as 'zeros()' or 'normal(0, 0.1)'");
    else
        nn_error(&p->c->diag, e->at, "expected an optimiser call such as 'sgd(lr = 0.1)'");
    return false;
}

// name: an AST_NAME (or NULL); dims: NULL when no brackets were written.
AstStmt *nn_parse_stmt(NnParser *p, StmtKind k, SrcRange at, SrcRange kw_at,
                       Ast *name, AstList *dims, Ast *expr) {
    if ((k == ST_PARAM || k == ST_TRAIN) && !is_call(p, k, expr)) return NULL;
    AstStmt *s = NN_NEW(&p->c->arena, AstStmt);
    s->kind = k;
    s->at = at;
    s->kw_at = kw_at;
    if (name) {
        s->name = name->name;
        s->name_at = name->at;
    }
    s->n_dims = dims ? dims->n : -1;
    s->dims = dims ? dims->items : NULL;
    s->expr = expr;
    return s;
}

// The model joins the file as soon as its header is read, so a model cut short
// by an error is still in the (partial) tree.
AstModel *nn_parse_model(NnParser *p, SrcRange kw_at, Ast *name) {
    AstModel *m = NN_NEW(&p->c->arena, AstModel);
    m->kw_at = kw_at;
    m->name = name ? name->name : nn_intern(p->c, "", 0);
    m->name_at = name ? name->at : kw_at;
    m->close_at = p->eof_at;
    APPEND(p, p->ast->models, p->ast->n_models, m);
    return m;
}

void nn_parse_model_add(NnParser *p, AstModel *m, AstStmt *s) {
    if (s) APPEND(p, m->stmts, m->n_stmts, s);
}

void nn_parse_fn(NnParser *p, SrcRange at, Ast *name, AstList *params, Ast *body) {
    AstFn *fn = NN_NEW(&p->c->arena, AstFn);
    fn->name = name->name;
    fn->at = at;
    fn->name_at = name->at;
    fn->n_params = params ? params->n : 0;
    if (fn->n_params > 0) {
        fn->params = nn_alloc_array(&p->c->arena, (size_t)fn->n_params, sizeof *fn->params);
        fn->param_at = nn_alloc_array(&p->c->arena, (size_t)fn->n_params, sizeof *fn->param_at);
        for (int i = 0; i < fn->n_params; i++) {
            fn->params[i] = params->items[i]->name;
            fn->param_at[i] = params->items[i]->at;
        }
    }
    fn->body = body;
    APPEND(p, p->ast->fns, p->ast->n_fns, fn);
}

// A ';' after a model or fn (a C habit): reported, then ignored, so the rest
// of the file is still parsed.
void nn_parse_extra_semicolon(NnParser *p, SrcRange at) {
    nn_error(&p->c->diag, at, "extra ';' outside a model");
}

// End of file is reported on the last line: before a final newline (LANGUAGE.md §6).
static SrcRange eof_range(uint32_t file, const char *text, uint32_t len) {
    uint32_t e = len;
    if (e > 0 && text[e - 1] == '\n') {
        e--;
        if (e > 0 && text[e - 1] == '\r') e--;
    }
    return (SrcRange){ file, e, e };
}

AstFile *nn_parse(NnCtx *c, int file) {
    if (file < 0 || file >= c->diag.n_files) return NULL;
    const SrcFile *f = &c->diag.files[file];
    if (f->len > INT_MAX - 2) {   // yy_scan_bytes takes an int
        nn_error(&c->diag, nn_range(0, 0), "'%s' is too large to parse (%zu bytes)", f->name, f->len);
        return NULL;
    }
    NnParser p = {
        .c = c,
        .file = (uint32_t)file,
        .text = f->text,
        .len = (uint32_t)f->len,
        .ast = NN_NEW(&c->arena, AstFile),
    };
    p.eof_at = eof_range(p.file, p.text, p.len);
    p.ast->end_at = p.eof_at;

    yyscan_t scanner;
    if (yylex_init_extra(&p, &scanner) != 0) nn_bug("cannot create the scanner");
    yy_scan_bytes(f->text, (int)f->len, scanner);   // a copy ending in two NULs, in the arena
    yyparse(scanner, &p);                            // errors are in c->diag
    yylex_destroy(scanner);
    return p.ast;
}
