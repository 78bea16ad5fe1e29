// diag.c: diagnostics in the clang form (LANGUAGE.md §6):
//   model.nn:5:12: error: inner dimensions differ in '@': [784] @ [10,3]
//       output x @ W;
//              ^~~~~
// Line and column (from 1, in bytes; a tab is one column) are computed only
// when a message is printed. Errors accumulate; after NN_MAX_ERRORS the
// compilation stops through Diag.fatal.
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

#define SHOW_MAX 160   // bytes of a long source line shown around the column

// An offset at or past the end of a file that ends in a newline belongs to the
// last line, not to the empty line after it (LANGUAGE.md §6: errors at the end
// of the file are reported at its last line).
static uint32_t clamp_offset(const SrcFile *f, uint32_t off) {
    if (off > f->len) off = (uint32_t)f->len;
    if (off == f->len && f->len > 0 && f->text[f->len - 1] == '\n') off--;
    return off;
}

void nn_line_col(const SrcFile *f, uint32_t offset, int *line, int *col) {
    uint32_t off = clamp_offset(f, offset);
    int l = 1;
    size_t bol = 0;
    for (size_t i = 0; i < off; i++)
        if (f->text[i] == '\n') { l++; bol = i + 1; }
    *line = l;
    *col = (int)(off - bol) + 1;
}

static void put_shown_byte(FILE *out, unsigned char ch) {
    // Control bytes (NUL among them) would garble the terminal; one column each.
    fputc(ch == '\t' || ch >= 0x20 ? (ch == 0x7f ? '?' : ch) : '?', out);
}

// The source line holding [begin, end), and a caret line under it.
static void show_source(FILE *out, const SrcFile *f, uint32_t begin, uint32_t end) {
    begin = clamp_offset(f, begin);
    size_t bol = begin, eol = begin;
    while (bol > 0 && f->text[bol - 1] != '\n') bol--;
    while (eol < f->len && f->text[eol] != '\n') eol++;
    if (end > eol) end = (uint32_t)eol;
    if (end <= begin) end = begin + 1;
    // Window long lines around the caret.
    size_t from = bol, to = eol;
    if (to - from > SHOW_MAX) {
        from = begin > bol + SHOW_MAX / 2 ? begin - SHOW_MAX / 2 : bol;
        to = from + SHOW_MAX < eol ? from + SHOW_MAX : eol;
    }
    const char *pre = from > bol ? "..." : "";
    fputs(pre, out);
    for (size_t i = from; i < to; i++) put_shown_byte(out, (unsigned char)f->text[i]);
    fputs(to < eol ? "...\n" : "\n", out);
    fputs(from > bol ? "   " : "", out);
    for (size_t i = from; i < begin; i++) fputc(f->text[i] == '\t' ? '\t' : ' ', out);
    fputc('^', out);
    for (size_t i = begin + 1; i < end && i < to; i++) fputc('~', out);
    fputc('\n', out);
}

void nn_verror(Diag *d, const char *kind, SrcRange at, const char *fmt, va_list ap) {
    FILE *out = d->out ? d->out : stderr;
    if (at.file < (uint32_t)d->n_files) {
        const SrcFile *f = &d->files[at.file];
        int line, col;
        nn_line_col(f, at.begin, &line, &col);
        fprintf(out, "%s:%d:%d: %s: ", f->name, line, col, kind);
        vfprintf(out, fmt, ap);
        fputc('\n', out);
        show_source(out, f, at.begin, at.end);
    } else {
        fprintf(out, "nnc: %s: ", kind);
        vfprintf(out, fmt, ap);
        fputc('\n', out);
    }
}

void nn_error(Diag *d, SrcRange at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nn_verror(d, "error", at, fmt, ap);
    va_end(ap);
    if (++d->n_errors >= NN_MAX_ERRORS && d->fatal) {
        fprintf(d->out ? d->out : stderr, "nnc: error: too many errors (%d), stopping\n",
                NN_MAX_ERRORS);
        fflush(d->out ? d->out : stderr);
        longjmp(*d->fatal, 1);
    }
}

void nn_warning(Diag *d, SrcRange at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nn_verror(d, "warning", at, fmt, ap);
    va_end(ap);
    d->n_warnings++;
}

void nn_note(Diag *d, SrcRange at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nn_verror(d, "note", at, fmt, ap);
    va_end(ap);
}

_Noreturn void nn_bug(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("nnc: internal error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
