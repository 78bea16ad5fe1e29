// arena.c: one arena per compilation (STYLE.md). Objects come zeroed and
// 16-aligned from large blocks; nothing is freed one by one; nn_arena_free
// releases everything at once, so the compiler stays leak-free under ASan.
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 65536   // bytes; larger requests get a block of their own

struct ArenaBlock {
    ArenaBlock *next;
    size_t      used, cap;  // bytes of data[]
    _Alignas(16) unsigned char data[];
};

static void default_oom(void) {
    fputs("nnc: error: out of memory\n", stderr);
    exit(NN_EXIT_INPUT);
}
void (*nn_oom_handler)(void) = default_oom;

static ArenaBlock *new_block(size_t cap) {
    ArenaBlock *b = calloc(1, sizeof(ArenaBlock) + cap);
    if (!b) {
        nn_oom_handler();
        abort();            // the handler must not return
    }
    b->cap = cap;
    return b;
}

void *nn_alloc(Arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    ArenaBlock *b = a->head;
    if (!b || b->cap - b->used < size) {
        if (size > ARENA_BLOCK / 4) {
            // A big object: its own block, kept behind the current one so the
            // current block's free space is not wasted.
            ArenaBlock *big = new_block(size);
            big->used = size;
            if (b) { big->next = b->next; b->next = big; }
            else a->head = big;
            return big->data;
        }
        b = new_block(ARENA_BLOCK);
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;   // calloc'ed blocks are zero; nothing is reused
}

void *nn_alloc_array(Arena *a, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        nn_oom_handler();
        abort();
    }
    return nn_alloc(a, n * size);
}

void *nn_grow_array(Arena *a, void *old, size_t old_n, size_t new_n, size_t size) {
    void *p = nn_alloc_array(a, new_n, size);
    if (old && old_n) memcpy(p, old, (old_n < new_n ? old_n : new_n) * size);
    return p;
}

char *nn_strndup(Arena *a, const char *s, size_t n) {
    char *p = nn_alloc(a, n + 1);
    memcpy(p, s, n);
    return p;
}

char *nn_strdup(Arena *a, const char *s) { return nn_strndup(a, s, strlen(s)); }

char *nn_format(Arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = nn_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    if (n > 0) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void nn_arena_free(Arena *a) {
    for (ArenaBlock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}
