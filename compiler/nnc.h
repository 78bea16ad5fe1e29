// nnc.h: what every stage of the compiler shares: the arena, source files,
// diagnostics and the compilation context. Each stage has its own header
// (ast.h, ir.h, sema.h, ...) exposing only its entry points.
#ifndef NNC_H
#define NNC_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NN_VERSION "0.1.0"
#define NN_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))
#define NN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define NN_MAX_ERRORS 20

// Exit statuses (ABI.md §1).
enum { NN_EXIT_OK = 0, NN_EXIT_INPUT = 1, NN_EXIT_USAGE = 2 };

// ---- arena.c: one arena per compilation; everything is freed at once.
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
    ArenaBlock *head;   // newest block first
} Arena;

void *nn_alloc(Arena *a, size_t size);                  // zeroed, 16-aligned, never NULL
void *nn_alloc_array(Arena *a, size_t n, size_t size);  // fatal if n*size overflows
void *nn_grow_array(Arena *a, void *old, size_t old_n, size_t new_n, size_t size);
char *nn_strndup(Arena *a, const char *s, size_t n);
char *nn_strdup(Arena *a, const char *s);
char *nn_format(Arena *a, const char *fmt, ...) NN_PRINTF(2, 3);

// hash.c: FNV-1a (64 bits) of n bytes, continuing from h (start: NN_FNV1A_BASIS).
#define NN_FNV1A_BASIS 0xcbf29ce484222325ull
uint64_t nn_fnv1a(uint64_t h, const void *data, size_t n);
void  nn_arena_free(Arena *a);
#define NN_NEW(a, T) ((T *)nn_alloc((a), sizeof(T)))

// Called when the arena cannot get memory; set by the context (longjmps).
extern void (*nn_oom_handler)(void);

// ---- diag.c: diagnostics with source ranges.
typedef struct SrcRange {
    uint32_t file;      // index into Diag.files (0: the only input file today)
    uint32_t begin;     // byte offset, inclusive
    uint32_t end;       // byte offset, exclusive (end == begin: a point)
} SrcRange;

typedef struct SrcFile {
    const char *name;   // as given on the command line
    const char *text;   // contents, NUL-terminated (may contain other NULs)
    size_t      len;    // bytes
} SrcFile;

typedef struct Diag {
    SrcFile  files[4];
    int      n_files;
    int      n_errors;
    int      n_warnings;
    FILE    *out;       // stderr by default; tests use a memstream
    jmp_buf *fatal;     // where to go after NN_MAX_ERRORS errors (NULL: keep going)
} Diag;

// "FILE:LINE:COL: error: MESSAGE", the source line, a caret under the range.
void nn_error(Diag *d, SrcRange at, const char *fmt, ...) NN_PRINTF(3, 4);
void nn_warning(Diag *d, SrcRange at, const char *fmt, ...) NN_PRINTF(3, 4);
// A note attached to the previous diagnostic (same form, "note:").
void nn_note(Diag *d, SrcRange at, const char *fmt, ...) NN_PRINTF(3, 4);
void nn_verror(Diag *d, const char *kind, SrcRange at, const char *fmt, va_list ap);
// Line and column (from 1, bytes) of a byte offset.
void nn_line_col(const SrcFile *f, uint32_t offset, int *line, int *col);
// Internal compiler error: prints and aborts. Never for user input.
_Noreturn void nn_bug(const char *fmt, ...) NN_PRINTF(1, 2);
#define NN_ASSERT(x) ((x) ? (void)0 : nn_bug("%s:%d: '%s' failed", __FILE__, __LINE__, #x))

static inline SrcRange nn_range(uint32_t begin, uint32_t end) {
    return (SrcRange){ 0, begin, end };
}
static inline SrcRange nn_join(SrcRange a, SrcRange b) {
    return (SrcRange){ a.file, a.begin < b.begin ? a.begin : b.begin, a.end > b.end ? a.end : b.end };
}

// ---- driver options and context.
typedef enum { EMIT_NONE, EMIT_IR, EMIT_GRAD, EMIT_LLVM, EMIT_DOT, EMIT_OBJ, EMIT_SO, EMIT_ASM } EmitKind;

typedef struct Options {
    const char *input;        // the .nn file
    const char *output;       // -o
    const char *header;       // --header (default: output with .h)
    const char *target_cpu;   // --target-cpu (NULL: host)
    EmitKind    emit;
    int         opt_level;    // -O0..-O3, default 2
    int         threads;      // -j N, default threads compiled in (0: runtime decides)
    bool        stats;        // --stats
    bool        no_prune;     // -fno-prune
    const char *dump_after;   // --dump-after=PASS
    const char *runtime_lib;  // libnnrt.a linked into a .so (driver: NNC_BUILD_RUNTIME; NULL: search)
    bool        one_process;  // a .so's code generated in this process only (cg_fork.c; tests compare)
} Options;

typedef struct NnCtx {
    Arena   arena;
    Diag    diag;
    jmp_buf fatal;
    Options opt;
    struct NnInterns *interns;  // ast.c: nn_intern's hash table (NULL until first use)
} NnCtx;

void nn_ctx_setup(NnCtx *c, FILE *diag_out);
void nn_ctx_free(NnCtx *c);
// Reads a whole file into the arena and registers it with the diagnostics;
// returns the file index, or -1 after printing "nnc: error: cannot open ...".
int  nn_load_file(NnCtx *c, const char *path);
// Registers text already in memory (tests, fuzzers).
int  nn_add_source(NnCtx *c, const char *name, const char *text, size_t len);

#endif
