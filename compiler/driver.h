// driver.h: the subcommands of the `nnc` executable that live outside main.c.
// main.c parses the plain compiler command line (ABI.md §1) and dispatches
// `nnc train ...` here with argv[0] = "train".
#ifndef NNC_DRIVER_H
#define NNC_DRIVER_H

// train.c: `nnc train MODEL.nn|MODEL.so --data SPEC [options]` (docs/training.md).
// argv[0] is the subcommand name ("train"); returns the exit status: 0 done,
// 1 bad data, model or checkpoint, 2 usage error, 130 interrupted by SIGINT
// (a checkpoint was saved).
int nn_train_main(int argc, char **argv);

#include <stdio.h>

#include "nnc.h"

// driver.c: the whole command line of ABI.md §1 (main.c only calls this).
// Normal output goes to `out` (stdout), messages to `err` (stderr), so tests
// run it in-process. Returns the exit status: 0, 1 (errors in the input) or 2
// (usage errors).
int nn_driver(int argc, char **argv, FILE *out, FILE *err);

// driver.c: the compilation of c->opt.input as c->opt says (the one setjmp of
// STYLE.md: errors past the 20th, out of memory); IR/graph text to `out`.
int nn_compile(NnCtx *c, FILE *out);

#endif
