// main.c: the `nnc` executable; everything is in driver.c (ABI.md §1).
#include <signal.h>
#include <stdio.h>

#include "driver.h"

int main(int argc, char **argv) {
    // nnc waits for the processes it starts (the linker, the code generator's
    // second process); a SIGCHLD ignored by whoever started nnc, inherited
    // through exec, would have them reaped unseen and every wait fail.
    signal(SIGCHLD, SIG_DFL);
    return nn_driver(argc, argv, stdout, stderr);
}
