// sema.h: names, fn inlining, layer expansion, initialiser and optimiser
// arguments, shape inference; builds the forward Model (graph, params, input,
// target, output, loss, objective, optimiser). Errors go to c->diag.
#ifndef NNC_SEMA_H
#define NNC_SEMA_H

#include "ast.h"
#include "ir.h"

// Returns the forward Model, or NULL when there were errors (see c->diag).
// Warnings (e.g. a parameter the loss does not depend on) do not make it NULL.
Model *nn_sema(NnCtx *c, const AstFile *file);

// Parses and checks a source already registered with c (nn_load_file or
// nn_add_source): nn_parse + nn_sema. NULL on errors.
Model *nn_frontend(NnCtx *c, int file);

#endif
