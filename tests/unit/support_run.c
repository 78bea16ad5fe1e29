// support_run.c: see support_run.h.
#define _GNU_SOURCE
#include "support_run.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_nnc_path(void) {
    const char *env = getenv("NNC");
    if (env && *env) return env;
#ifdef NNC_BINARY_DIR
    return NNC_BINARY_DIR "/nnc";
#else
    return "nnc";
#endif
}

// All of f, NUL-terminated (malloc'ed); *len gets its size when len is not NULL.
static char *read_stream(FILE *f, size_t *len) {
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    for (size_t r; buf; n += r) {
        if (n + 1 >= cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); buf = NULL; break; }
            buf = bigger;
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
    }
    if (!buf) { fputs("test: out of memory\n", stderr); abort(); }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = read_stream(f, len);
    fclose(f);
    return buf;
}

static char *slurp_fd(int fd) {
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); return calloc(1, 1); }
    char *buf = read_stream(f, NULL);
    fclose(f);   // and fd
    return buf;
}

int test_run(const char *dir, char *const argv[], char **out, char **err) {
    char out_path[] = "/tmp/nnc-test-out-XXXXXX", err_path[] = "/tmp/nnc-test-err-XXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path);
    *out = *err = NULL;
    if (fo < 0 || fe < 0) return -1;
    unlink(out_path);
    unlink(err_path);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (dir && chdir(dir) != 0) _exit(127);
        int null_in = open("/dev/null", O_RDONLY);
        dup2(null_in, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    *out = slurp_fd(fo);
    *err = slurp_fd(fe);
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
