// nnc_train_main.c: `nnc-train`, the training driver on its own (train*.c and
// libnnrt, without LLVM). `nnc train ARGS` executes `nnc-train ARGS`; models
// given as .nn are compiled by the `nnc` beside it, in a child process.
#include <signal.h>

#include "driver.h"

int main(int argc, char **argv) {
    signal(SIGCHLD, SIG_DFL);   // it waits for the nnc it starts (see main.c)
    return nn_train_main(argc, argv);
}
