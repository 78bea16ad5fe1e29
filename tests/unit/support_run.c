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

static char *slurp_fd(int fd) {
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
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
