// support_run.h: run the built `nnc` (or any program) from a test, capturing
// its stdout and stderr. Linked into every test (support_*.c): libc only.
#ifndef NNC_SUPPORT_RUN_H
#define NNC_SUPPORT_RUN_H

#include <stddef.h>

// The nnc binary: $NNC (set by CTest), else NNC_BINARY_DIR/nnc.
const char *test_nnc_path(void);

// Runs argv[0] with argv in directory `dir` (NULL: the current one); *out and
// *err receive what it printed (malloc'ed, NUL-terminated; free them).
// Returns its exit status, or -1 if it could not run or died of a signal.
int test_run(const char *dir, char *const argv[], char **out, char **err);

// The whole file, NUL-terminated (malloc'ed; free it), or NULL if it cannot be
// opened; *len gets its size when len is not NULL.
char *test_read_file(const char *path, size_t *len);

#endif
