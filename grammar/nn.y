/* nn.y: the grammar of .nn files (LANGUAGE.md §2-5), for bison 3.8.
 *
 * A pure (reentrant) LALR(1) parser fed by the flex scanner of nn.l. Its
 * locations are SrcRanges (byte offsets; lines and columns are computed only
 * when a diagnostic is printed). Actions only build the tree through ast_*()
 * and the small nn_parse_*() helpers of parse.c; every semantic check is sema's.
 *
 * Errors: yyreport_syntax_error below writes clang-like messages
 * ("expected ';' before 'h2'"); recovery resumes at the next ';' or '}' so a
 * run reports many independent errors (nn_error stops the run at 20).
 * The lexer reports bad bytes itself and returns YYerror, which enters
 * recovery without a second message.
 *
 * Deep nesting: bison's stacks live in the arena and grow up to YYMAXDEPTH
 * (a million entries); no action recurses, so 100,000 nested parentheses
 * parse. Past the limit the parser reports "expression nested too deeply".
 *
 * The grammar in EBNF is in docs/grammar.md.
 */

%require "3.8"
%define api.pure full
%define api.location.type {SrcRange}
%define parse.error custom
%locations
%param {void *scanner}
%parse-param {NnParser *p}

%code requires {
#include "ast.h"

// The state shared by the scanner (as yyextra) and the parser (parse.c).
typedef struct NnParser {
    NnCtx      *c;
    uint32_t    file;        // index into c->diag.files
    const char *text;        // the source (NUL-terminated; may hold other NULs)
    uint32_t    len;         // bytes
    uint32_t    pos;         // the scanner's byte offset
    SrcRange    eof_at;      // where "end of file" is reported: on the last line
    AstFile    *ast;         // the tree being built
} NnParser;

// A growable list of nodes (dimensions, fn parameters).
typedef struct AstList {
    Ast **items;
    int   n;
} AstList;

// Helpers for the actions (parse.c).
AstList  *nn_parse_list(NnParser *p, AstList *l, Ast *item);
AstStmt  *nn_parse_stmt(NnParser *p, StmtKind k, SrcRange at, SrcRange kw_at,
                        Ast *name, AstList *dims, Ast *expr);
AstModel *nn_parse_model(NnParser *p, SrcRange kw_at, Ast *name);
void      nn_parse_model_add(NnParser *p, AstModel *m, AstStmt *s);
void      nn_parse_extra_semicolon(NnParser *p, SrcRange at);
void      nn_parse_fn(NnParser *p, SrcRange at, Ast *name, AstList *params, Ast *body);

// Empty rules take the end of what precedes them.
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                           \
    do {                                                                      \
        if (N) {                                                              \
            (Cur).file = YYRHSLOC(Rhs, 1).file;                               \
            (Cur).begin = YYRHSLOC(Rhs, 1).begin;                             \
            (Cur).end = YYRHSLOC(Rhs, N).end;                                 \
        } else {                                                              \
            (Cur).file = YYRHSLOC(Rhs, 0).file;                               \
            (Cur).begin = (Cur).end = YYRHSLOC(Rhs, 0).end;                   \
        }                                                                     \
    } while (0)
}

%code provides {
int yylex(YYSTYPE *lval, YYLTYPE *lloc, void *scanner);
}

%code {
#include <stdint.h>
#include <string.h>

// The stacks come from the arena: nothing leaks when nn_error longjmps out of
// the parser after the 20th error, and growth is not limited by alloca.
#define YYSTACK_ALLOC(n) nn_alloc(&p->c->arena, (n))
#define YYSTACK_ALLOC_MAXIMUM (SIZE_MAX / 4)
#define YYINITDEPTH 256
#define YYMAXDEPTH 1000000    // stack entries: 100,000 nested "(x+" use 300,000

static void yyerror(YYLTYPE *loc, void *scanner, NnParser *p, const char *msg);
}

%union {
    double       num;
    const char  *name;
    Ast         *ast;
    AstList     *list;
    AstStmt     *stmt;
    AstModel    *model;
}

%token <name> NAME "identifier"
%token <num>  NUM  "number"
%token MODEL "'model'" FN "'fn'" INPUT "'input'" TARGET "'target'" PARAM "'param'"
       OUTPUT "'output'" LOSS "'loss'" TRAIN "'train'" TRUE "'true'" FALSE "'false'"

%type <ast>   expr primary call call_open call_args ident
%type <list>  dims dim_list fn_params
%type <stmt>  stmt
%type <model> model_head model_body

/* LANGUAGE.md §5, lowest first. */
%left '+' '-'
%left '*' '/'
%left '@'
%precedence NEG
%right '^'

%initial-action { @$ = (SrcRange){ p->file, 0, 0 }; }

%%

/* file = { fn | model } */
file
    : %empty
    | file fn
    | file model
    | file ';'                  { nn_parse_extra_semicolon(p, @2); /* `model m { } ;` */ }
    | file error '}'            { yyerrok; /* junk at the top level: skip past a model */ }
    ;

/* fn = "fn" NAME "(" [ NAME { "," NAME } ] ")" "=" expr ";" */
fn
    : FN ident '(' ')' '=' expr ';'            { nn_parse_fn(p, @$, $2, NULL, $6); }
    | FN ident '(' fn_params ')' '=' expr ';'  { nn_parse_fn(p, @$, $2, $4, $7); }
    | FN error ';'                             { yyerrok; }
    ;

fn_params
    : ident                     { $$ = nn_parse_list(p, NULL, $1); }
    | fn_params ',' ident       { $$ = nn_parse_list(p, $1, $3); }
    ;

/* model = "model" NAME "{" { stmt } "}" */
model
    : model_body '}'            { $1->close_at = @2; }
    | model_body error '}'      { $1->close_at = @3; yyerrok; }
    ;

model_head
    : MODEL ident '{'           { $$ = nn_parse_model(p, @1, $2); }
    | MODEL error '{'           { $$ = nn_parse_model(p, @1, NULL); yyerrok; }
    ;

model_body
    : model_head
    | model_body stmt           { nn_parse_model_add(p, $1, $2); }
    | model_body error ';'      { yyerrok; }
    ;

stmt
    : INPUT ident dims ';'              { $$ = nn_parse_stmt(p, ST_INPUT, @$, @1, $2, $3, NULL); }
    | TARGET ident dims ';'             { $$ = nn_parse_stmt(p, ST_TARGET, @$, @1, $2, $3, NULL); }
    | PARAM ident dims '=' expr ';'     { $$ = nn_parse_stmt(p, ST_PARAM, @$, @1, $2, $3, $5); }
    | PARAM ident '=' expr ';'          { $$ = nn_parse_stmt(p, ST_PARAM, @$, @1, $2, NULL, $4); }
    | ident '=' expr ';'                { $$ = nn_parse_stmt(p, ST_BIND, @$, @1, $1, NULL, $3); }
    | OUTPUT expr ';'                   { $$ = nn_parse_stmt(p, ST_OUTPUT, @$, @1, NULL, NULL, $2); }
    | LOSS expr ';'                     { $$ = nn_parse_stmt(p, ST_LOSS, @$, @1, NULL, NULL, $2); }
    | TRAIN expr ';'                    { $$ = nn_parse_stmt(p, ST_TRAIN, @$, @1, NULL, NULL, $2); }
    ;

/* dims = "[" expr { "," expr } "]" */
dims
    : '[' dim_list ']'          { $$ = $2; }
    ;

dim_list
    : expr                      { $$ = nn_parse_list(p, NULL, $1); }
    | dim_list ',' expr         { $$ = nn_parse_list(p, $1, $3); }
    ;

expr
    : expr '+' expr             { $$ = ast_binary(p->c, AST_ADD, $1, $3, @2); }
    | expr '-' expr             { $$ = ast_binary(p->c, AST_SUB, $1, $3, @2); }
    | expr '*' expr             { $$ = ast_binary(p->c, AST_MUL, $1, $3, @2); }
    | expr '/' expr             { $$ = ast_binary(p->c, AST_DIV, $1, $3, @2); }
    | expr '@' expr             { $$ = ast_binary(p->c, AST_MATMUL, $1, $3, @2); }
    | '-' expr %prec NEG        { $$ = ast_neg(p->c, $2, @1); }
    | expr '^' expr             { $$ = ast_binary(p->c, AST_POW, $1, $3, @2); }
    | primary
    ;

primary
    : NUM                       { $$ = ast_num(p->c, $1, @1); }
    | TRUE                      { $$ = ast_num(p->c, 1, @1); }
    | FALSE                     { $$ = ast_num(p->c, 0, @1); }
    | ident
    | call
    | '(' expr ')'              { $$ = $2; $$->at = @$; /* the range includes the parentheses */ }
    ;

/* call = NAME "(" [ arg { "," arg } ] ")";  arg = [ NAME "=" ] expr */
call
    : call_open ')'             { $$ = $1; $$->at = @$; }
    | call_args ')'             { $$ = $1; $$->at = @$; }
    ;

call_open
    : NAME '('                  { $$ = ast_call(p->c, $1, @1); }
    ;

call_args
    : call_open expr                    { $$ = $1; ast_call_add_arg(p->c, $1, NULL, @2, $2); }
    | call_open NAME '=' expr           { $$ = $1; ast_call_add_arg(p->c, $1, $2, @2, $4); }
    | call_args ',' expr                { $$ = $1; ast_call_add_arg(p->c, $1, NULL, @3, $3); }
    | call_args ',' NAME '=' expr       { $$ = $1; ast_call_add_arg(p->c, $1, $3, @3, $5); }
    ;

ident
    : NAME                      { $$ = ast_name(p->c, $1, @1); }
    ;

%%

// ---- syntax error messages

// Token groups that are named as one thing in messages.
static bool is_expr_start(yysymbol_kind_t k) {
    return k == YYSYMBOL_NAME || k == YYSYMBOL_NUM || k == YYSYMBOL_TRUE || k == YYSYMBOL_FALSE
        || k == YYTRANSLATE('(') || k == YYTRANSLATE('-');   // '(' '-'
}
static bool is_stmt_start(yysymbol_kind_t k) {
    return k == YYSYMBOL_NAME || k == YYSYMBOL_INPUT || k == YYSYMBOL_TARGET
        || k == YYSYMBOL_PARAM || k == YYSYMBOL_OUTPUT || k == YYSYMBOL_LOSS
        || k == YYSYMBOL_TRAIN;
}
static bool is_binary_op(yysymbol_kind_t k) {
    return k == YYTRANSLATE('+') || k == YYTRANSLATE('-') || k == YYTRANSLATE('*') || k == YYTRANSLATE('/')
        || k == YYTRANSLATE('@') || k == YYTRANSLATE('^');   // + - * / @ ^
}

static const char *symbol_text(yysymbol_kind_t k) {
    switch (k) {
    case YYSYMBOL_YYEOF: return "end of file";
    case YYSYMBOL_NAME: return "identifier";
    case YYSYMBOL_NUM: return "number";
    default: return yysymbol_name(k);   // "'+'", "'model'"
    }
}

// True if every symbol of the group (as told by `in`) is in expected[].
static bool has_group(const yysymbol_kind_t *expected, int n, bool (*in)(yysymbol_kind_t)) {
    int count = 0, want = 0;
    for (int k = 0; k < YYNTOKENS; k++) want += in((yysymbol_kind_t)k);
    for (int i = 0; i < n; i++) count += in(expected[i]);
    return count == want;
}

static bool has_symbol(const yysymbol_kind_t *expected, int n, yysymbol_kind_t k) {
    for (int i = 0; i < n; i++)
        if (expected[i] == k) return true;
    return false;
}

// "expected ';' before 'h2'", "expected expression before ')'",
// "expected '}' at end of file", or "unexpected identifier 'x'" when too much
// would fit. The unexpected token is quoted as written.
static int yyreport_syntax_error(const yypcontext_t *ctx, void *scanner, NnParser *p) {
    (void)scanner;
    yysymbol_kind_t look = yypcontext_token(ctx);
    SrcRange at = *yypcontext_location(ctx);
    yysymbol_kind_t expected[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, expected, YYNTOKENS);
    if (n < 0) n = 0;

    // Collapse the groups, then drop what only continues an expression.
    const char *names[YYNTOKENS + 2];
    int n_names = 0;
    bool at_eof = look == YYSYMBOL_YYEOF;
    bool expr = has_group(expected, n, is_expr_start);
    bool stmt = has_group(expected, n, is_stmt_start);
    bool top_level = has_symbol(expected, n, YYSYMBOL_MODEL) && has_symbol(expected, n, YYSYMBOL_FN);
    bool close_brace = has_symbol(expected, n, YYTRANSLATE('}'));   // '}'
    if (stmt && !(at_eof && close_brace)) names[n_names++] = "statement";
    if (expr) names[n_names++] = "expression";
    // Operators that would continue an expression are named only when
    // nothing else is expected.
    for (int i = 0; i < n; i++) {
        yysymbol_kind_t k = expected[i];
        if ((stmt && is_stmt_start(k)) || (expr && is_expr_start(k))) continue;
        if (k == YYSYMBOL_YYEOF || is_binary_op(k)) continue;
        if (k == YYTRANSLATE(';') && top_level) continue;   // an extra ';' is tolerated there
        names[n_names++] = symbol_text(k);
    }
    bool only_ops = n_names == 0;
    for (int i = 0; i < n && only_ops; i++)
        if (is_binary_op(expected[i])) names[n_names++] = symbol_text(expected[i]);
    if (n_names == 0 && has_symbol(expected, n, YYSYMBOL_YYEOF)) names[n_names++] = "end of file";

    // The unexpected token, as written (long ones shortened).
    char tok[64];
    if (at_eof) {
        snprintf(tok, sizeof tok, "end of file");
    } else {
        uint32_t len = at.end > at.begin ? at.end - at.begin : 0;
        const char *s = p->text + at.begin;
        if (len > 40)
            snprintf(tok, sizeof tok, "'%.32s...'", s);
        else
            snprintf(tok, sizeof tok, "'%.*s'", (int)len, s);
    }

    Diag *d = &p->c->diag;
    if (n_names == 0 || n_names > 4) {
        const char *kind = look == YYSYMBOL_NAME ? "identifier " : look == YYSYMBOL_NUM ? "number " : "";
        nn_error(d, at, "unexpected %s%s", kind, tok);
        return 0;
    }
    char list[256] = "";
    for (int i = 0; i < n_names; i++) {
        const char *sep = i == 0 ? "" : i == n_names - 1 ? " or " : ", ";
        strncat(list, sep, sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    if (at_eof)
        nn_error(d, at, "expected %s at end of file", list);
    else
        nn_error(d, at, "expected %s before %s", list, tok);
    return 0;
}

// Called by bison only when its stack would pass YYMAXDEPTH.
static void yyerror(YYLTYPE *loc, void *scanner, NnParser *p, const char *msg) {
    (void)scanner;
    if (strcmp(msg, "memory exhausted") == 0)
        nn_error(&p->c->diag, *loc, "expression nested too deeply");
    else
        nn_error(&p->c->diag, *loc, "%s", msg);
}
