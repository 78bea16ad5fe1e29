// Tests of the scanner (grammar/nn.l): token kinds, values and byte ranges,
// interning, numbers, comments, bad bytes, and where end of file is located.
#include "ast.h"
#include "nn.tab.h"
#include "nn.lex.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

typedef struct Tok {
    int kind;
    uint32_t begin, end;
    double num;
    const char *name;
} Tok;

typedef struct Lexed {
    NnCtx c;
    Tok toks[256];
    int n;                // tokens before end of file
    Tok eof;
    char *diag;           // everything printed
    size_t diag_len;
} Lexed;

// Scans src (len bytes) to the end; errors (fewer than 20) go to r->diag.
static Lexed *lex_bytes(const char *src, size_t len) {
    Lexed *r = calloc(1, sizeof *r);
    FILE *out = open_memstream(&r->diag, &r->diag_len);
    nn_ctx_setup(&r->c, out);
    int f = nn_add_source(&r->c, "t.nn", src, len);
    NnParser p = { .c = &r->c, .file = (uint32_t)f, .text = r->c.diag.files[f].text,
                   .len = (uint32_t)len };
    p.eof_at = (SrcRange){ (uint32_t)f, (uint32_t)len, (uint32_t)len };
    if (len && src[len - 1] == '\n') p.eof_at.begin = p.eof_at.end = (uint32_t)len - 1;
    yyscan_t scanner;
    cr_assert_eq(yylex_init_extra(&p, &scanner), 0);
    yy_scan_bytes(src, (int)len, scanner);
    for (;;) {
        YYSTYPE val = { 0 };
        YYLTYPE loc = { 0 };
        int kind = yylex(&val, &loc, scanner);
        Tok t = { kind, loc.begin, loc.end, 0, NULL };
        if (kind == NUM) t.num = val.num;
        if (kind == NAME) t.name = val.name;
        if (kind == YYEOF) {
            r->eof = t;
            break;
        }
        cr_assert_lt(r->n, 256);
        r->toks[r->n++] = t;
    }
    yylex_destroy(scanner);
    fclose(out);
    return r;
}

static Lexed *lex(const char *src) { return lex_bytes(src, strlen(src)); }

static void lexed_free(Lexed *r) {
    nn_ctx_free(&r->c);
    free(r->diag);
    free(r);
}

Test(front_lexer, keywords_and_punctuation) {
    Lexed *r = lex("model fn input target param output loss train true false"
                   " + - * / @ ^ = ( ) [ ] { } , ;");
    int want[] = { MODEL, FN, INPUT, TARGET, PARAM, OUTPUT, LOSS, TRAIN, TRUE, FALSE,
                   '+', '-', '*', '/', '@', '^', '=', '(', ')', '[', ']', '{', '}', ',', ';' };
    cr_assert_eq(r->n, (int)NN_COUNTOF(want));
    for (int i = 0; i < r->n; i++) cr_assert_eq(r->toks[i].kind, want[i], "token %d", i);
    cr_assert_eq(r->c.diag.n_errors, 0);
    lexed_free(r);
}

Test(front_lexer, identifier_ranges_are_byte_offsets) {
    Lexed *r = lex("  abc _x1\n# a comment\n\tmodels Model");
    cr_assert_eq(r->n, 4);
    cr_assert_eq(r->toks[0].kind, NAME);
    cr_assert_str_eq(r->toks[0].name, "abc");
    cr_assert_eq(r->toks[0].begin, 2);
    cr_assert_eq(r->toks[0].end, 5);
    cr_assert_str_eq(r->toks[1].name, "_x1");
    cr_assert_eq(r->toks[1].begin, 6);
    cr_assert_eq(r->toks[1].end, 9);
    cr_assert_eq(r->toks[2].kind, NAME);   // not the keyword `model`
    cr_assert_str_eq(r->toks[2].name, "models");
    cr_assert_eq(r->toks[2].begin, 23);
    cr_assert_eq(r->toks[2].end, 29);
    cr_assert_str_eq(r->toks[3].name, "Model");
    lexed_free(r);
}

Test(front_lexer, equal_names_are_one_pointer) {
    Lexed *r = lex("abc xyz abc");
    cr_assert_eq(r->toks[0].name, r->toks[2].name);
    cr_assert_neq(r->toks[0].name, r->toks[1].name);
    cr_assert_eq(nn_intern(&r->c, "xyz", 3), r->toks[1].name);
    lexed_free(r);
}

Test(front_lexer, intern_table_grows) {
    Lexed *r = lex("");
    const char *first[2000];
    char buf[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(buf, sizeof buf, "name%d", i);
        first[i] = nn_intern(&r->c, buf, (size_t)n);
    }
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(buf, sizeof buf, "name%d", i);
        cr_assert_eq(nn_intern(&r->c, buf, (size_t)n), first[i]);
        cr_assert_str_eq(first[i], buf);
    }
    lexed_free(r);
}

Test(front_lexer, numbers_of_every_form) {
    Lexed *r = lex("3 0.5 .5 5. 1e-3 2.5E+2 007 1e5");
    double want[] = { 3, 0.5, 0.5, 5, 1e-3, 250, 7, 1e5 };
    uint32_t begin[] = { 0, 2, 6, 9, 12, 17, 24, 28 };
    uint32_t end[] = { 1, 5, 8, 11, 16, 23, 27, 31 };
    cr_assert_eq(r->n, 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(r->toks[i].kind, NUM, "token %d", i);
        cr_assert_eq(r->toks[i].num, want[i], "token %d: %g", i, r->toks[i].num);
        cr_assert_eq(r->toks[i].begin, begin[i], "token %d", i);
        cr_assert_eq(r->toks[i].end, end[i], "token %d", i);
    }
    cr_assert_eq(r->c.diag.n_errors, 0);
    lexed_free(r);
}

Test(front_lexer, number_followed_by_operator) {
    Lexed *r = lex("2-1 x^-1 a.5");
    int want[] = { NUM, '-', NUM, NAME, '^', '-', NUM, NAME, NUM };
    cr_assert_eq(r->n, 9);
    for (int i = 0; i < 9; i++) cr_assert_eq(r->toks[i].kind, want[i], "token %d", i);
    cr_assert_eq(r->toks[8].num, 0.5);
    lexed_free(r);
}

Test(front_lexer, number_too_large_is_an_error) {
    Lexed *r = lex("x = 1e999;");
    cr_assert_eq(r->c.diag.n_errors, 1);
    cr_assert_str_eq(r->diag, "t.nn:1:5: error: number '1e999' is too large\n"
                              "x = 1e999;\n"
                              "    ^~~~~\n");
    cr_assert_eq(r->toks[2].kind, NUM);   // still a number: no second error
    lexed_free(r);
}

Test(front_lexer, number_with_letters_is_an_error) {
    Lexed *r = lex("3x 1e");
    cr_assert_eq(r->c.diag.n_errors, 2);
    cr_assert(strstr(r->diag, "t.nn:1:1: error: invalid suffix 'x' on number '3'\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:1:4: error: invalid suffix 'e' on number '1'\n"), "%s", r->diag);
    cr_assert_eq(r->n, 2);
    cr_assert_eq(r->toks[0].kind, NUM);
    lexed_free(r);
}

Test(front_lexer, comments_run_to_end_of_line) {
    Lexed *r = lex("a # b c \xff\xfe not UTF-8 is fine in a comment\nd#e");
    cr_assert_eq(r->n, 2);
    cr_assert_str_eq(r->toks[0].name, "a");
    cr_assert_str_eq(r->toks[1].name, "d");
    cr_assert_eq(r->c.diag.n_errors, 0);
    lexed_free(r);
}

Test(front_lexer, stray_printable_character) {
    Lexed *r = lex("a $ b");
    cr_assert_eq(r->n, 3);
    cr_assert_eq(r->toks[1].kind, YYerror);
    cr_assert_str_eq(r->diag, "t.nn:1:3: error: unexpected character '$'\n"
                              "a $ b\n"
                              "  ^\n");
    lexed_free(r);
}

Test(front_lexer, stray_run_is_one_error) {
    Lexed *r = lex("a $%! b . c");
    cr_assert_eq(r->c.diag.n_errors, 2);
    cr_assert(strstr(r->diag, "1:3: error: unexpected character '$'"), "%s", r->diag);
    cr_assert(strstr(r->diag, "1:9: error: unexpected character '.'"), "%s", r->diag);
    lexed_free(r);
}

Test(front_lexer, stray_utf8_character_names_its_code_point) {
    Lexed *r = lex("x \xc3\x97 y");   // U+00D7 multiplication sign
    cr_assert_eq(r->c.diag.n_errors, 1);
    cr_assert(strstr(r->diag, "t.nn:1:3: error: unexpected character '\xc3\x97' (U+00D7)\n"), "%s", r->diag);
    lexed_free(r);
}

Test(front_lexer, nul_byte_is_an_error) {
    Lexed *r = lex_bytes("a\0b", 3);
    cr_assert_eq(r->n, 3);
    cr_assert_str_eq(r->toks[0].name, "a");
    cr_assert_eq(r->toks[1].kind, YYerror);
    cr_assert_str_eq(r->toks[2].name, "b");
    cr_assert(strstr(r->diag, "t.nn:1:2: error: unexpected byte 0x00\n"), "%s", r->diag);
    lexed_free(r);
}

Test(front_lexer, nul_byte_in_comment_is_an_error) {
    Lexed *r = lex_bytes("a # x\0y\nb", 9);
    cr_assert_eq(r->n, 2);
    cr_assert_eq(r->c.diag.n_errors, 1);
    cr_assert(strstr(r->diag, "t.nn:1:6: error: unexpected byte 0x00 in comment\n"), "%s", r->diag);
    lexed_free(r);
}

Test(front_lexer, invalid_utf8_is_an_error) {
    Lexed *r = lex("a \xff\xc3 b \xed\xa0\x80");   // a stray 0xff; a UTF-16 surrogate
    cr_assert_eq(r->c.diag.n_errors, 2);
    cr_assert(strstr(r->diag, "t.nn:1:3: error: unexpected byte 0xff\n"), "%s", r->diag);
    cr_assert(strstr(r->diag, "t.nn:1:8: error: unexpected byte 0xed\n"), "%s", r->diag);
    lexed_free(r);
}

Test(front_lexer, megabyte_identifier) {
    size_t n = 1 << 20;
    char *src = malloc(n);
    memset(src, 'q', n);
    Lexed *r = lex_bytes(src, n);
    cr_assert_eq(r->n, 1);
    cr_assert_eq(r->toks[0].end, n);
    cr_assert_eq(strlen(r->toks[0].name), n);
    lexed_free(r);
    free(src);
}
