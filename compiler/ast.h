// ast.h: the syntax tree of a .nn file, as the parser (grammar/nn.y) builds it.
// One plain node type for expressions (chibicc style); statements and fns are
// their own small structs. Every node carries the source range it came from.
// Names are interned by the lexer: equal names are equal pointers.
#ifndef NNC_AST_H
#define NNC_AST_H

#include "nnc.h"

typedef enum {
    AST_NUM,     // num
    AST_NAME,    // name
    AST_ADD,     // lhs + rhs
    AST_SUB,     // lhs - rhs
    AST_MUL,     // lhs * rhs
    AST_DIV,     // lhs / rhs
    AST_MATMUL,  // lhs @ rhs
    AST_POW,     // lhs ^ rhs
    AST_NEG,     // -lhs
    AST_CALL,    // name(args...); named arguments have arg_name set
} AstKind;

typedef struct Ast Ast;
struct Ast {
    AstKind     kind;
    SrcRange    at;        // the whole expression
    SrcRange    op_at;     // the operator token (binary/unary), the name (call)
    double      num;       // AST_NUM
    const char *name;      // AST_NAME, AST_CALL (interned)
    Ast        *lhs, *rhs; // operands
    Ast       **args;      // AST_CALL arguments, in source order
    const char **arg_names;// AST_CALL: the name of each argument (`lr = 0.1`), NULL if positional
    SrcRange   *arg_name_at;
    int         n_args;
};

typedef enum {
    ST_INPUT,    // input name[dims];
    ST_TARGET,   // target name[dims];
    ST_PARAM,    // param name[dims] = init;
    ST_BIND,     // name = expr;
    ST_OUTPUT,   // output expr;
    ST_LOSS,     // loss expr;
    ST_TRAIN,    // train call;
} StmtKind;

typedef struct AstStmt {
    StmtKind    kind;
    SrcRange    at;        // the whole statement (keyword or name to ';')
    SrcRange    kw_at;     // the keyword (or the name for ST_BIND)
    const char *name;      // input/target/param/bind (interned)
    SrcRange    name_at;
    int         n_dims;    // -1 when no brackets were written
    Ast       **dims;      // each an expression; sema checks positive integer constants
    Ast        *expr;      // param init (an AST_CALL), bound value, output, loss, train call
} AstStmt;

typedef struct AstFn {
    const char  *name;
    SrcRange     at;        // `fn` to ';'
    SrcRange     name_at;
    const char **params;
    SrcRange    *param_at;
    int          n_params;
    Ast         *body;
} AstFn;

typedef struct AstModel {
    const char *name;
    SrcRange    kw_at;      // the `model` keyword: missing statements are reported here
    SrcRange    name_at;
    AstStmt   **stmts;
    int         n_stmts;
    SrcRange    close_at;   // the closing '}'
} AstModel;

typedef struct AstFile {
    AstFn     **fns;
    int         n_fns;
    AstModel  **models;     // exactly one is valid; sema reports the others
    int         n_models;
    SrcRange    end_at;     // the end of the file (its last line)
} AstFile;

// ---- parse.c (with grammar/nn.l and nn.y)
// Parses the registered source file `file` (see nn_load_file). Syntax errors go
// to c->diag (up to 20, with recovery at ';' and '}'). Returns the tree, which
// may be partial when there were errors; NULL only when nothing could be built.
// Never recurses on the C stack in proportion to input nesting beyond what
// bison's own (heap-growing) stack does.
AstFile *nn_parse(NnCtx *c, int file);

// ---- ast.c: constructors used by the grammar actions, and a printer for tests.
Ast *ast_num(NnCtx *c, double v, SrcRange at);
Ast *ast_name(NnCtx *c, const char *name, SrcRange at);
Ast *ast_binary(NnCtx *c, AstKind k, Ast *l, Ast *r, SrcRange op_at);
Ast *ast_neg(NnCtx *c, Ast *e, SrcRange op_at);
Ast *ast_call(NnCtx *c, const char *name, SrcRange name_at);
void ast_call_add_arg(NnCtx *c, Ast *call, const char *arg_name, SrcRange name_at, Ast *value);
const char *nn_intern(NnCtx *c, const char *s, size_t n);
// S-expression form, for tests: (+ a (* 2 b)), (call dense x 3 (= act relu)).
// Iterative (explicit stack), so 10,000-deep trees print without recursion.
char *ast_to_string(NnCtx *c, const Ast *e);

#endif
