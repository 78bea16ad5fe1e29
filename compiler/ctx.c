// ctx.c: the compilation context: arena, diagnostics, source files.
#include "nnc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nn_ctx_setup(NnCtx *c, FILE *diag_out) {
    memset(c, 0, sizeof *c);
    c->diag.out = diag_out ? diag_out : stderr;
    c->diag.fatal = &c->fatal;
    c->opt.opt_level = 2;
}

void nn_ctx_free(NnCtx *c) { nn_arena_free(&c->arena); }

int nn_add_source(NnCtx *c, const char *name, const char *text, size_t len) {
    Diag *d = &c->diag;
    if (d->n_files >= (int)NN_COUNTOF(d->files)) nn_bug("too many source files");
    if (len > UINT32_MAX - 1) {
        fprintf(d->out, "nnc: error: '%s' is too large (%zu bytes)\n", name, len);
        d->n_errors++;
        return -1;
    }
    char *copy = nn_alloc(&c->arena, len + 1);   // NUL-terminated, NULs inside kept
    if (len) memcpy(copy, text, len);
    d->files[d->n_files] = (SrcFile){ nn_strdup(&c->arena, name), copy, len };
    return d->n_files++;
}

int nn_load_file(NnCtx *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(c->diag.out, "nnc: error: cannot open '%s': %s\n", path, strerror(errno));
        c->diag.n_errors++;
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *bigger = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!bigger) { free(buf); buf = NULL; break; }
            buf = bigger;
            cap *= 2;
        }
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf || err) {
        fprintf(c->diag.out, "nnc: error: cannot open '%s': %s\n", path,
                buf ? strerror(err ? err : EIO) : "out of memory");
        free(buf);
        c->diag.n_errors++;
        return -1;
    }
    int id = nn_add_source(c, path, buf, len);
    free(buf);
    return id;
}
