// Diagnostics: the clang form, carets, end-of-file positions, the error limit.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "nnc.h"

typedef struct Capture {
    NnCtx  c;
    char  *buf;
    size_t len;
    FILE  *out;
} Capture;

static void capture_init(Capture *k, const char *text) {
    k->out = open_memstream(&k->buf, &k->len);
    nn_ctx_setup(&k->c, k->out);
    nn_add_source(&k->c, "m.nn", text, strlen(text));
}

static const char *capture_text(Capture *k) {
    fflush(k->out);
    return k->buf;
}

static void capture_free(Capture *k) {
    fclose(k->out);
    free(k->buf);
    nn_ctx_free(&k->c);
}

Test(diag, error_has_file_line_col_source_and_caret) {
    Capture k;
    capture_init(&k, "model m {\n    output x @ W;\n}\n");
    nn_error(&k.c.diag, nn_range(21, 26), "inner dimensions differ in '@': %s @ %s", "[784]", "[10,3]");
    cr_assert_str_eq(capture_text(&k),
                     "m.nn:2:12: error: inner dimensions differ in '@': [784] @ [10,3]\n"
                     "    output x @ W;\n"
                     "           ^~~~~\n");
    cr_assert_eq(k.c.diag.n_errors, 1);
    capture_free(&k);
}

Test(diag, tabs_keep_the_caret_aligned) {
    Capture k;
    capture_init(&k, "\tloss q;\n");
    nn_error(&k.c.diag, nn_range(6, 7), "unknown name 'q'");
    cr_assert_str_eq(capture_text(&k), "m.nn:1:7: error: unknown name 'q'\n\tloss q;\n\t     ^\n");
    capture_free(&k);
}

Test(diag, end_of_file_is_on_the_last_line) {
    Capture k;
    capture_init(&k, "model m {\n  input x[2];\n");
    nn_error(&k.c.diag, nn_range(24, 24), "expected '}' at end of file");
    cr_assert_str_eq(capture_text(&k),
                     "m.nn:2:14: error: expected '}' at end of file\n  input x[2];\n             ^\n");
    capture_free(&k);
}

Test(diag, warnings_do_not_count_as_errors) {
    Capture k;
    capture_init(&k, "x\n");
    nn_warning(&k.c.diag, nn_range(0, 1), "parameter 'x' does not affect the loss");
    cr_assert_eq(k.c.diag.n_errors, 0);
    cr_assert_eq(k.c.diag.n_warnings, 1);
    cr_assert(strstr(capture_text(&k), "m.nn:1:1: warning: parameter 'x'") != NULL);
    capture_free(&k);
}

Test(diag, stops_after_twenty_errors) {
    Capture k;
    capture_init(&k, "a b c d e f g h i j k l m n o p q r s t u v w x y z\n");
    volatile int reported = 0;
    if (setjmp(k.c.fatal) == 0) {
        for (int i = 0; i < 26; i++, reported++) nn_error(&k.c.diag, nn_range(2 * i, 2 * i + 1), "bad");
    }
    cr_assert_eq(reported, 19);            // the 20th call longjmps
    cr_assert_eq(k.c.diag.n_errors, NN_MAX_ERRORS);
    cr_assert(strstr(capture_text(&k), "too many errors (20), stopping") != NULL);
    capture_free(&k);
}

Test(diag, long_lines_are_windowed_around_the_column) {
    char *text = malloc(1 << 20);
    memset(text, 'a', (1 << 20) - 2);
    text[(1 << 20) - 2] = '\n';
    text[(1 << 20) - 1] = 0;
    Capture k;
    capture_init(&k, text);
    nn_error(&k.c.diag, nn_range(500000, 500001), "here");
    const char *out = capture_text(&k);
    cr_assert(strncmp(out, "m.nn:1:500001: error: here\n...", 30) == 0, "got %.60s", out);
    cr_assert_lt(strlen(out), 600);
    capture_free(&k);
    free(text);
}

Test(diag, control_bytes_are_shown_as_question_marks) {
    Capture k;
    k.out = open_memstream(&k.buf, &k.len);
    nn_ctx_setup(&k.c, k.out);
    nn_add_source(&k.c, "m.nn", "a\0b\n", 4);
    nn_error(&k.c.diag, nn_range(1, 2), "unexpected byte 0x00");
    cr_assert_str_eq(capture_text(&k), "m.nn:1:2: error: unexpected byte 0x00\na?b\n ^\n");
    capture_free(&k);
}

Test(diag, unreadable_file_is_reported) {
    Capture k;
    k.out = open_memstream(&k.buf, &k.len);
    nn_ctx_setup(&k.c, k.out);
    cr_assert_eq(nn_load_file(&k.c, "/nonexistent/m.nn"), -1);
    cr_assert_str_eq(capture_text(&k), "nnc: error: cannot open '/nonexistent/m.nn': No such file or directory\n");
    capture_free(&k);
}

Test(arena, allocations_are_zeroed_aligned_and_freed_together) {
    Arena a = { 0 };
    for (int i = 1; i < 1000; i++) {
        unsigned char *p = nn_alloc(&a, (size_t)i * 37);
        cr_assert_eq((uintptr_t)p % 16, 0);
        for (int j = 0; j < i * 37; j++) cr_assert_eq(p[j], 0);
        memset(p, 0xff, (size_t)i * 37);
    }
    char *s = nn_format(&a, "%s.%s", "h1", "W");
    cr_assert_str_eq(s, "h1.W");
    nn_arena_free(&a);
    cr_assert_null(a.head);
}
