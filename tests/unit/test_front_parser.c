// Tests of the parser (grammar/nn.y, compiler/parse.c, compiler/ast.c): the
// tree it builds (printed as S-expressions), every example of LANGUAGE.md, the
// exact text of syntax errors, recovery, and hostile input.
#include "ast.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct Parsed {
    NnCtx c;
    AstFile *file;
    bool stopped;         // nn_error gave up after NN_MAX_ERRORS
    char *diag;           // everything printed
    size_t diag_len;
} Parsed;

static Parsed *parse_bytes(const char *src, size_t len) {
    Parsed *r = calloc(1, sizeof *r);
    FILE *out = open_memstream(&r->diag, &r->diag_len);
    nn_ctx_setup(&r->c, out);
    int f = nn_add_source(&r->c, "t.nn", src, len);
    if (setjmp(r->c.fatal) == 0)
        r->file = nn_parse(&r->c, f);
    else
        r->stopped = true;
    fclose(out);
    return r;
}

static Parsed *parse(const char *src) { return parse_bytes(src, strlen(src)); }

static void parsed_free(Parsed *r) {
    nn_ctx_free(&r->c);
    free(r->diag);
    free(r);
}

// The S-expression of `x = EXPR;` inside a model.
static char *expr_sexp(const char *expr) {
    static char out[4096];
    char src[1024];
    snprintf(src, sizeof src, "model m { x = %s; }", expr);
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0, "%s: %s", expr, r->diag);
    cr_assert_eq(r->file->n_models, 1);
    cr_assert_eq(r->file->models[0]->n_stmts, 1);
    snprintf(out, sizeof out, "%s", ast_to_string(&r->c, r->file->models[0]->stmts[0]->expr));
    parsed_free(r);
    return out;
}

// The first diagnostic line ("t.nn:L:C: error: ...") for a whole file.
static char *first_error(const char *src) {
    static char out[512];
    Parsed *r = parse(src);
    cr_assert_gt(r->c.diag.n_errors, 0, "no error for: %s", src);
    size_t n = strcspn(r->diag, "\n");
    snprintf(out, sizeof out, "%.*s", (int)n, r->diag);
    parsed_free(r);
    return out;
}

// ---- the tree

Test(front_parser, precedence_of_binary_operators) {
    cr_assert_str_eq(expr_sexp("a + b * c"), "(+ a (* b c))");
    cr_assert_str_eq(expr_sexp("a - b - c"), "(- (- a b) c)");
    cr_assert_str_eq(expr_sexp("a / b * c"), "(* (/ a b) c)");
    cr_assert_str_eq(expr_sexp("a * B @ x"), "(* a (@ B x))");
    cr_assert_str_eq(expr_sexp("A @ B @ x"), "(@ (@ A B) x)");
    cr_assert_str_eq(expr_sexp("W @ x + b"), "(+ (@ W x) b)");
    cr_assert_str_eq(expr_sexp("(a + b) * c"), "(* (+ a b) c)");
}

Test(front_parser, power_is_right_associative_and_binds_tighter_than_minus) {
    cr_assert_str_eq(expr_sexp("a ^ b ^ c"), "(^ a (^ b c))");
    cr_assert_str_eq(expr_sexp("-a ^ 2"), "(- (^ a 2))");
    cr_assert_str_eq(expr_sexp("a ^ -1"), "(^ a (- 1))");
    cr_assert_str_eq(expr_sexp("a ^ -b * c"), "(* (^ a (- b)) c)");
    cr_assert_str_eq(expr_sexp("2 * x^2"), "(* 2 (^ x 2))");
    cr_assert_str_eq(expr_sexp("-A @ x"), "(@ (- A) x)");
    cr_assert_str_eq(expr_sexp("a - -b"), "(- a (- b))");
    cr_assert_str_eq(expr_sexp("f(x)^2"), "(^ (call f x) 2)");
}

Test(front_parser, numbers_and_constants) {
    cr_assert_str_eq(expr_sexp("0.5 + .25 + 5. + 1e-3 + 2.5E+2"), "(+ (+ (+ (+ 0.5 0.25) 5) 0.001) 250)");
    cr_assert_str_eq(expr_sexp("f(bias = false, nesterov = true)"), "(call f (= bias 0) (= nesterov 1))");
    cr_assert_str_eq(expr_sexp("0.1"), "0.1");
}

Test(front_parser, calls_with_positional_and_named_arguments) {
    cr_assert_str_eq(expr_sexp("dense(x, 3, sigmoid)"), "(call dense x 3 sigmoid)");
    cr_assert_str_eq(expr_sexp("dense(x, units = 3, act = relu, bias = false)"),
                     "(call dense x (= units 3) (= act relu) (= bias 0))");
    cr_assert_str_eq(expr_sexp("conv2d(act = relu, x, 8, 3)"), "(call conv2d (= act relu) x 8 3)");
    cr_assert_str_eq(expr_sexp("zeros()"), "(call zeros)");
    cr_assert_str_eq(expr_sexp("f(g(h(x)), -y)"), "(call f (call g (call h x)) (- y))");
    cr_assert_str_eq(expr_sexp("reshape(x, 2, 3, 4, 5, 6, 7, 8, 9, 10)"),
                     "(call reshape x 2 3 4 5 6 7 8 9 10)");
}

Test(front_parser, call_records_argument_names_and_ranges) {
    Parsed *r = parse("model m { h = dense(x, 3, act = relu); }");
    cr_assert_eq(r->c.diag.n_errors, 0);
    Ast *call = r->file->models[0]->stmts[0]->expr;
    cr_assert_eq(call->kind, AST_CALL);
    cr_assert_str_eq(call->name, "dense");
    cr_assert_eq(call->name, nn_intern(&r->c, "dense", 5));
    cr_assert_eq(call->n_args, 3);
    cr_assert_null(call->arg_names[0]);
    cr_assert_null(call->arg_names[1]);
    cr_assert_str_eq(call->arg_names[2], "act");
    cr_assert_eq(call->arg_name_at[2].begin, 26);
    cr_assert_eq(call->arg_name_at[2].end, 29);
    cr_assert_eq(call->at.begin, 14);   // `dense(...)`, to the ')'
    cr_assert_eq(call->at.end, 37);
    cr_assert_eq(call->op_at.begin, 14);
    cr_assert_eq(call->op_at.end, 19);
    parsed_free(r);
}

Test(front_parser, expression_ranges) {
    Parsed *r = parse("model m { x = (a + b) @ W; }");
    Ast *e = r->file->models[0]->stmts[0]->expr;
    cr_assert_eq(e->kind, AST_MATMUL);
    cr_assert_eq(e->at.begin, 14);   // from '(' ...
    cr_assert_eq(e->at.end, 25);     // ... to W
    cr_assert_eq(e->op_at.begin, 22);
    cr_assert_eq(e->op_at.end, 23);
    cr_assert_eq(e->lhs->at.begin, 14);   // the parenthesised sum includes its parentheses
    cr_assert_eq(e->lhs->at.end, 21);
    cr_assert_eq(e->lhs->op_at.begin, 17);
    parsed_free(r);
}

Test(front_parser, statements_of_every_kind) {
    Parsed *r = parse("model net {\n"
                      "  input x[2, 3];\n"
                      "  target y[4];\n"
                      "  param W[4, 6] = normal(0, 0.1);\n"
                      "  param s = constant(1);\n"
                      "  h = W @ flatten(x) * s;\n"
                      "  output h;\n"
                      "  loss mse(h, y);\n"
                      "  train adam(lr = 0.01, clip = 1);\n"
                      "}\n");
    cr_assert_eq(r->c.diag.n_errors, 0, "%s", r->diag);
    AstModel *m = r->file->models[0];
    cr_assert_str_eq(m->name, "net");
    cr_assert_eq(m->kw_at.begin, 0);
    cr_assert_eq(m->kw_at.end, 5);
    cr_assert_eq(m->name_at.begin, 6);
    cr_assert_eq(m->n_stmts, 8);
    StmtKind kinds[] = { ST_INPUT, ST_TARGET, ST_PARAM, ST_PARAM, ST_BIND, ST_OUTPUT, ST_LOSS, ST_TRAIN };
    for (int i = 0; i < 8; i++) cr_assert_eq(m->stmts[i]->kind, kinds[i], "statement %d", i);

    AstStmt *in = m->stmts[0];
    cr_assert_str_eq(in->name, "x");
    cr_assert_eq(in->n_dims, 2);
    cr_assert_str_eq(ast_to_string(&r->c, in->dims[1]), "3");
    cr_assert_null(in->expr);
    cr_assert_eq(in->at.begin, 14);   // `input x[2, 3];`
    cr_assert_eq(in->at.end, 28);
    cr_assert_eq(in->kw_at.end, 19);
    cr_assert_eq(in->name_at.begin, 20);

    cr_assert_eq(m->stmts[2]->n_dims, 2);
    cr_assert_str_eq(ast_to_string(&r->c, m->stmts[2]->expr), "(call normal 0 0.1)");
    cr_assert_eq(m->stmts[3]->n_dims, -1);   // a scalar parameter
    cr_assert_null(m->stmts[3]->dims);
    cr_assert_str_eq(m->stmts[4]->name, "h");
    cr_assert_eq(m->stmts[4]->kw_at.begin, m->stmts[4]->name_at.begin);
    cr_assert_str_eq(ast_to_string(&r->c, m->stmts[4]->expr), "(* (@ W (call flatten x)) s)");
    cr_assert_null(m->stmts[5]->name);
    cr_assert_str_eq(ast_to_string(&r->c, m->stmts[7]->expr), "(call adam (= lr 0.01) (= clip 1))");
    cr_assert_eq(r->file->models[0]->close_at.begin, 194);
    parsed_free(r);
}

Test(front_parser, fn_definitions_in_any_order) {
    Parsed *r = parse("fn swish(z) = z * sigmoid(z);\n"
                      "model m { output swish(x); }\n"
                      "fn bce(p, y) = -sum(y * log(p) + (1 - y) * log(1 - p));\n"
                      "fn one() = 1;\n");
    cr_assert_eq(r->c.diag.n_errors, 0, "%s", r->diag);
    cr_assert_eq(r->file->n_fns, 3);
    cr_assert_eq(r->file->n_models, 1);
    AstFn *bce = r->file->fns[1];
    cr_assert_str_eq(bce->name, "bce");
    cr_assert_eq(bce->n_params, 2);
    cr_assert_str_eq(bce->params[0], "p");
    cr_assert_str_eq(bce->params[1], "y");
    cr_assert_eq(bce->param_at[1].begin, 69);
    cr_assert_str_eq(ast_to_string(&r->c, bce->body),
                     "(- (call sum (+ (* y (call log p)) (* (- 1 y) (call log (- 1 p))))))");
    cr_assert_eq(bce->at.begin, 59);
    cr_assert_eq(bce->at.end, 114);
    cr_assert_eq(r->file->fns[2]->n_params, 0);
    parsed_free(r);
}

Test(front_parser, end_of_file_is_on_the_last_line) {
    struct { const char *src; uint32_t at; int line, col; } cases[] = {
        { "model m { }\n", 11, 1, 12 },       // before the final newline
        { "model m { }", 11, 1, 12 },
        { "model m { }\r\n", 11, 1, 12 },
        { "model m { }\n\n", 12, 2, 1 },     // the last line is the empty one
        { "", 0, 1, 1 },
    };
    for (size_t i = 0; i < NN_COUNTOF(cases); i++) {
        Parsed *r = parse(cases[i].src);
        cr_assert_eq(r->file->end_at.begin, cases[i].at, "case %zu", i);
        cr_assert_eq(r->file->end_at.end, cases[i].at, "case %zu", i);
        int line, col;
        nn_line_col(&r->c.diag.files[0], r->file->end_at.begin, &line, &col);
        cr_assert_eq(line, cases[i].line, "case %zu", i);
        cr_assert_eq(col, cases[i].col, "case %zu", i);
        parsed_free(r);
    }
}

Test(front_parser, several_models_are_kept_for_sema) {
    Parsed *r = parse("model a { } model b { output x; }");
    cr_assert_eq(r->c.diag.n_errors, 0);
    cr_assert_eq(r->file->n_models, 2);
    cr_assert_eq(r->file->models[0]->n_stmts, 0);
    cr_assert_str_eq(r->file->models[1]->name, "b");
    parsed_free(r);
}

Test(front_parser, empty_file) {
    Parsed *r = parse("");
    cr_assert_eq(r->c.diag.n_errors, 0);
    cr_assert_not_null(r->file);
    cr_assert_eq(r->file->n_models, 0);
    cr_assert_eq(r->file->n_fns, 0);
    parsed_free(r);
    r = parse("  # only a comment\n\n");
    cr_assert_eq(r->c.diag.n_errors, 0);
    cr_assert_eq(r->file->n_models, 0);
    parsed_free(r);
}

// ---- every example of LANGUAGE.md and examples/

static const char *spec_examples[] = {
    "# Seed network: 2 inputs, layers of 3, 2, 2 sigmoid neurons, squared error.\n"
    "model seed {\n"
    "    input  x[2];\n"
    "    target y[2];\n"
    "\n"
    "    h1 = dense(x, 3, sigmoid);\n"
    "    h2 = dense(h1, 2, sigmoid);\n"
    "    o  = dense(h2, 2, sigmoid);\n"
    "\n"
    "    output o;\n"
    "    loss 0.5 * sum((y - o)^2);\n"
    "    train sgd(lr = 0.5);\n"
    "}\n",
    "fn swish(z) = z * sigmoid(z);\n"
    "fn bce(p, y) = -sum(y * log(p) + (1 - y) * log(1 - p));\n"
    "\n"
    "model m { input x[1]; param s = constant(1); output swish(x) * s; loss bce(x, x); train sgd(lr = 1); }\n",
    "# Universal approximation: fit a 1-D curve with a sum of sigmoids.\n"
    "model curve {\n"
    "    input  x[1];\n"
    "    target y[1];\n"
    "    h = dense(x, 16, sigmoid);\n"
    "    o = dense(h, 1);\n"
    "    output o;\n"
    "    loss mse(o, y);\n"
    "    train adam(lr = 0.01);\n"
    "}\n",
    "# Explicit parameters and a user function; no bias, as a pure linear chain.\n"
    "fn swish(z) = z * sigmoid(z);\n"
    "model explicit {\n"
    "    input  x[4];\n"
    "    target y[4];\n"
    "    param A[4, 4] = normal(0, 0.5);\n"
    "    param B[4, 4] = uniform(-0.5, 0.5);\n"
    "    h = swish(A @ x);\n"
    "    o = B @ h;\n"
    "    output o;\n"
    "    loss sum((o - y)^2);\n"
    "    train sgd(lr = 0.01, momentum = 0.9);\n"
    "}\n",
    "# Fashion-MNIST classifier.\n"
    "model fashion {\n"
    "    input  x[784];\n"
    "    target y[10];          # one-hot\n"
    "    h1 = dense(x, 256, relu);\n"
    "    h2 = dense(h1, 128, relu);\n"
    "    z  = dense(h2, 10);\n"
    "    output softmax(z);\n"
    "    loss softmax_cross_entropy(z, y);\n"
    "    train adam(lr = 0.001);\n"
    "}\n",
    // Every built-in and optimiser argument of LANGUAGE.md §4-5, once.
    "model all {\n"
    "    input x[1, 28, 28];\n"
    "    target y[10];\n"
    "    param P[2, 2] = zeros(); param Q[2] = ones(); param R[1] = xavier(); param S[3] = he();\n"
    "    c = conv2d(x, 8, 3, stride = 1, padding = 1, act = relu, bias = true);\n"
    "    p = maxpool2d(c, 2, stride = 2);\n"
    "    q = avgpool2d(p, 2);\n"
    "    f = flatten(q);\n"
    "    r = reshape(f, 2, 196);\n"
    "    t = transpose(r);\n"
    "    e = exp(log(sqrt(abs(tanh(sigmoid(relu(softplus(sin(cos(square(f)))))))))));\n"
    "    l = leaky_relu(e, 0.01) + max(e, 0) - min(e, 1) + identity(e);\n"
    "    z = dense(l, 10, act = identity, bias = false);\n"
    "    output softmax(z) + log_softmax(z) + logsumexp(z) + mean(z);\n"
    "    loss mse(z, y) + sse(z, y) + cross_entropy(softmax(z), y) + softmax_cross_entropy(z, y)\n"
    "         + binary_cross_entropy(sigmoid(z), y);\n"
    "    train sgd(lr = 0.1, momentum = 0.9, nesterov = false, weight_decay = 0, reduce = mean, clip = 5);\n"
    "}\n",
    "model a2 { input x[3]; output x; loss sum(x); train adam(0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,"
    " weight_decay = 0, reduce = sum); }\n",
};

Test(front_parser, every_language_md_example_parses) {
    for (size_t i = 0; i < NN_COUNTOF(spec_examples); i++) {
        Parsed *r = parse(spec_examples[i]);
        cr_assert_eq(r->c.diag.n_errors, 0, "example %zu: %s", i, r->diag);
        cr_assert_eq(r->file->n_models, 1, "example %zu", i);
        cr_assert_gt(r->file->models[0]->n_stmts, 0, "example %zu", i);
        parsed_free(r);
    }
}

static char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0;
    FILE *mem = open_memstream(&buf, &cap);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    *len = cap;
    return buf;
}

Test(front_parser, every_example_file_parses) {
    DIR *dir = opendir(NNC_SOURCE_DIR "/examples");
    if (!dir) cr_skip_test("no examples/");
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".nn") != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/examples/%s", NNC_SOURCE_DIR, e->d_name);
        size_t len;
        char *src = read_whole(path, &len);
        cr_assert_not_null(src, "%s", path);
        Parsed *r = parse_bytes(src, len);
        cr_assert_eq(r->c.diag.n_errors, 0, "%s: %s", path, r->diag);
        cr_assert_eq(r->file->n_models, 1, "%s", path);
        parsed_free(r);
        free(src);
        count++;
    }
    closedir(dir);
    cr_assert_gt(count, 0);
}

// ---- syntax errors: exact text

Test(front_parser, missing_semicolon_is_reported_at_the_next_token) {
    Parsed *r = parse("model m {\n"
                      "    h1 = dense(x, 3)\n"
                      "    h2 = dense(h1, 2);\n"
                      "}\n");
    cr_assert_str_eq(r->diag, "t.nn:3:5: error: expected ';' before 'h2'\n"
                              "    h2 = dense(h1, 2);\n"
                              "    ^~\n");
    cr_assert_eq(r->c.diag.n_errors, 1);
    parsed_free(r);
}

Test(front_parser, missing_brace_is_reported_on_the_last_line) {
    Parsed *r = parse("model m {\n"
                      "    output x;\n"
                      "\n"
                      "    train sgd(lr = 1);\n");
    cr_assert_str_eq(r->diag, "t.nn:4:23: error: expected '}' at end of file\n"
                              "    train sgd(lr = 1);\n"
                              "                      ^\n");
    cr_assert_eq(r->file->n_models, 1);   // the partial model is kept
    cr_assert_eq(r->file->models[0]->n_stmts, 2);
    parsed_free(r);
}

Test(front_parser, syntax_error_messages) {
    struct { const char *src, *want; } cases[] = {
        { "model m { x = ; }", "t.nn:1:15: error: expected expression before ';'" },
        { "model m { x = (a + b; }", "t.nn:1:21: error: expected ')' before ';'" },
        { "model m { x = f(a b); }", "t.nn:1:19: error: expected ')' or ',' before 'b'" },
        { "model m { x = a + * b; }", "t.nn:1:19: error: expected expression before '*'" },
        { "model m { input [2]; }", "t.nn:1:17: error: expected identifier before '['" },
        { "model m { input x; }", "t.nn:1:18: error: expected '[' before ';'" },
        { "model m { input x[2,]; }", "t.nn:1:21: error: expected expression before ']'" },
        { "model m { 3 = x; }", "t.nn:1:11: error: expected statement or '}' before '3'" },
        { "model m { output x }", "t.nn:1:20: error: expected ';' before '}'" },
        { "model { output x; }", "t.nn:1:7: error: expected identifier before '{'" },
        { "model m output x; }", "t.nn:1:9: error: expected '{' before 'output'" },
        { "modle m { }", "t.nn:1:1: error: expected 'model' or 'fn' before 'modle'" },
        { "fn f(x) = x", "t.nn:1:12: error: expected ';' at end of file" },
        { "fn f(x, ) = x;", "t.nn:1:9: error: expected identifier before ')'" },
        { "fn f(x) x;", "t.nn:1:9: error: expected '=' before 'x'" },
        { "model m { param W[2] = 0.5; }", "t.nn:1:24: error: expected an initialiser call such as 'zeros()' or 'normal(0, 0.1)'" },
        { "model m { train sgd; }", "t.nn:1:17: error: expected an optimiser call such as 'sgd(lr = 0.1)'" },
        { "model m { x = a $ b; }", "t.nn:1:17: error: unexpected character '$'" },
        { "model m { input = 3; }", "t.nn:1:17: error: expected identifier before '='" },
        { "model m { x = model; }", "t.nn:1:15: error: expected expression before 'model'" },
    };
    for (size_t i = 0; i < NN_COUNTOF(cases); i++)
        cr_expect_str_eq(first_error(cases[i].src), cases[i].want, "for: %s", cases[i].src);
}

Test(front_parser, lexer_error_causes_no_second_message) {
    Parsed *r = parse("model m { x = a $ b; output x; }");
    cr_assert_eq(r->c.diag.n_errors, 1, "%s", r->diag);
    cr_assert_eq(r->file->models[0]->n_stmts, 1);   // recovery resumed after the ';'
    parsed_free(r);
}

Test(front_parser, long_token_is_shortened_in_messages) {
    char src[300];
    memset(src, 0, sizeof src);
    strcpy(src, "model m { x = a ");
    memset(src + strlen(src), 'z', 100);
    strcat(src, "; }");
    cr_assert_str_eq(first_error(src),
                     "t.nn:1:17: error: expected ';' before 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...'");
}

// ---- recovery

Test(front_parser, recovers_after_each_statement) {
    Parsed *r = parse("model m {\n"
                      "    input x[2];\n"
                      "    a = (x;\n"
                      "    b = x x;\n"
                      "    output x;\n"
                      "    c = ;\n"
                      "    loss sum(x);\n"
                      "}\n"
                      "fn f(x) = +;\n"
                      "fn g(y) = y;\n");
    cr_assert_eq(r->c.diag.n_errors, 4, "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:3:11: error: expected ')' before ';'\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:4:11: error: expected ';' before 'x'\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:6:9: error: expected expression before ';'\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:9:11: error: expected expression before '+'\n"), "%s", r->diag);
    cr_assert_eq(r->file->models[0]->n_stmts, 3);   // input, output, loss
    cr_assert_eq(r->file->n_fns, 1);
    cr_assert_str_eq(r->file->fns[0]->name, "g");
    parsed_free(r);
}

Test(front_parser, twenty_independent_errors_then_stop) {
    char src[4096] = "model m {\n";
    for (int i = 0; i < 25; i++) {
        char line[64];
        snprintf(line, sizeof line, "    v%d = %d +;\n", i, i);
        strcat(src, line);
    }
    strcat(src, "}\n");
    Parsed *r = parse(src);
    cr_assert(r->stopped);
    cr_assert_eq(r->c.diag.n_errors, NN_MAX_ERRORS);
    for (int i = 0; i < 20; i++) {
        char want[64];
        snprintf(want, sizeof want, "t.nn:%d:%d: error: expected expression before ';'\n", i + 2,
                 i < 10 ? 13 : 15);
        cr_assert(strstr(r->diag, want), "missing %s in:\n%s", want, r->diag);
    }
    cr_assert(strstr(r->diag, "too many errors"), "%s", r->diag);
    cr_assert_null(strstr(r->diag, "t.nn:22:"), "%s", r->diag);
    parsed_free(r);
}

Test(front_parser, extra_semicolon_after_a_model_is_one_error) {
    Parsed *r = parse("model m { output x; };\nfn f(x) = x;;\n");
    cr_assert_eq(r->c.diag.n_errors, 2, "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:1:22: error: extra ';' outside a model\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:2:13: error: extra ';' outside a model\n"), "%s", r->diag);
    cr_assert_eq(r->file->n_fns, 1);   // parsing went on
    parsed_free(r);
}

Test(front_parser, junk_at_top_level_is_one_error) {
    Parsed *r = parse("modle m { input x[2]; output x; }\nmodel n { output y; }\n");
    cr_assert_eq(r->c.diag.n_errors, 1, "%s", r->diag);
    cr_assert_eq(r->file->n_models, 1);
    cr_assert_str_eq(r->file->models[0]->name, "n");
    parsed_free(r);
}

// ---- hostile input

static char *nested(int depth, const char *open, const char *middle, const char *close) {
    size_t n = strlen("model m { x = ") + depth * (strlen(open) + strlen(close)) + strlen(middle) + 8;
    char *s = malloc(n);
    char *w = s + sprintf(s, "model m { x = ");
    for (int i = 0; i < depth; i++) w += sprintf(w, "%s", open);
    w += sprintf(w, "%s", middle);
    for (int i = 0; i < depth; i++) w += sprintf(w, "%s", close);
    sprintf(w, "; }");
    return s;
}

Test(front_parser, ten_thousand_nested_parentheses) {
    char *src = nested(10000, "(", "y", ")");
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0, "%s", r->diag);
    cr_assert_str_eq(ast_to_string(&r->c, r->file->models[0]->stmts[0]->expr), "y");
    parsed_free(r);
    free(src);
}

Test(front_parser, hundred_thousand_nested_parentheses) {
    char *src = nested(100000, "(", "y", ")");
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0, "%s", r->diag);
    parsed_free(r);
    free(src);
}

Test(front_parser, deep_trees_print_without_recursion) {
    char *src = nested(10000, "(1+", "y", ")");
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0);
    char *s = ast_to_string(&r->c, r->file->models[0]->stmts[0]->expr);
    cr_assert_eq(strlen(s), 10000 * strlen("(+ 1 )") + 1);
    cr_assert_eq(strncmp(s, "(+ 1 (+ 1 (+ 1 ", 15), 0);
    parsed_free(r);
    free(src);

    src = nested(100000, "-", "y", "");
    r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0);
    s = ast_to_string(&r->c, r->file->models[0]->stmts[0]->expr);
    cr_assert_eq(strlen(s), 100000 * strlen("(- )") + 1);
    parsed_free(r);
    free(src);

    src = nested(100000, "2^", "y", "");
    r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 0);
    parsed_free(r);
    free(src);
}

Test(front_parser, nesting_past_the_parser_limit_is_a_clean_error) {
    char *src = nested(1100000, "(", "y", ")");   // past YYMAXDEPTH (1,000,000)
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 1, "%.500s", r->diag);
    cr_assert(strstr(r->diag, "error: expression nested too deeply\n"), "%.500s", r->diag);
    parsed_free(r);
    free(src);
}

Test(front_parser, unclosed_deep_parentheses_are_one_error) {
    char *src = nested(10000, "(", "y", "");
    Parsed *r = parse(src);
    cr_assert_eq(r->c.diag.n_errors, 1, "%s", r->diag);
    cr_assert(strstr(r->diag, "error: expected ')' before ';'"), "%s", r->diag);
    parsed_free(r);
    free(src);
}

Test(front_parser, nul_bytes) {
    const char src[] = "model m {\0 output x; \0\0 }";
    Parsed *r = parse_bytes(src, sizeof src - 1);
    cr_assert_gt(r->c.diag.n_errors, 0);
    cr_assert(strstr(r->diag, "t.nn:1:10: error: unexpected byte 0x00\n"), "%s", r->diag);
    parsed_free(r);
    r = parse_bytes("\0", 1);
    cr_assert_eq(r->c.diag.n_errors, 1);
    parsed_free(r);
}

Test(front_parser, megabyte_line) {
    size_t n = 1 << 20;
    char *src = malloc(n + 64);
    char *w = src + sprintf(src, "model m { x = 1");
    while ((size_t)(w - src) < n) w += sprintf(w, " + 1");
    w += sprintf(w, " $; }");
    Parsed *r = parse_bytes(src, (size_t)(w - src));
    cr_assert_eq(r->c.diag.n_errors, 1, "%.300s", r->diag);
    cr_assert(strstr(r->diag, "error: unexpected character '$'"));
    cr_assert_lt(r->diag_len, 1000);   // the source line is shown around the caret only
    parsed_free(r);
    free(src);
}

Test(front_parser, random_bytes_always_diagnosed) {
    unsigned state = 12345;
    char buf[512];
    for (int round = 0; round < 300; round++) {
        size_t n = (size_t)(round % 64) * 8;
        for (size_t i = 0; i < n; i++) {
            state = state * 1103515245u + 12345u;
            // Half the rounds use bytes from the language's alphabet, to get deeper.
            const char *alpha = "model fn input x y ( ) [ ] { } , ; = + - * / @ ^ 1 .5 \n";
            buf[i] = round % 2 ? alpha[(state >> 16) % strlen(alpha)] : (char)(state >> 16);
        }
        Parsed *r = parse_bytes(buf, n);
        if (!r->stopped) cr_assert_not_null(r->file);
        parsed_free(r);
    }
}

// ---- regression inputs found by the fuzzer (tests/fuzz/front/)

static int replay_dir(const char *dir_path, const char *nnc) {
    DIR *dir = opendir(dir_path);
    if (!dir) return 0;
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        size_t len;
        char *src = read_whole(path, &len);
        cr_assert_not_null(src, "%s", path);
        Parsed *r = parse_bytes(src, len);
        // A diagnosis or a tree: never a crash.
        cr_assert(r->stopped || r->file, "%s", path);
        parsed_free(r);
        free(src);
        // The whole front end through the driver, when it is built.
        if (nnc) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "'%s' '%s' --emit=ir >/dev/null 2>&1", nnc, path);
            int status = system(cmd);
            cr_assert(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 1),
                      "nnc crashed or failed oddly on %s (status %d)", path, status);
        }
        count++;
    }
    closedir(dir);
    return count;
}

Test(front_parser, fuzz_inputs_are_diagnosed, .timeout = 600) {
    const char *nnc = getenv("NNC");
    if (nnc && access(nnc, X_OK) != 0) nnc = NULL;
    int n = replay_dir(NNC_SOURCE_DIR "/tests/fuzz/front", nnc);
    n += replay_dir(NNC_SOURCE_DIR "/tests/fuzz/front/seed", NULL);
    cr_log_info("replayed %d inputs", n);
}
