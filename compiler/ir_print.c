// ir_print.c: the textual IR (`--emit=ir`, `--emit=grad`, `--dump-after`).
// Prints the nodes reachable from the model's roots, one per line in id order,
// renumbered densely from %1 so that the text does not depend on dead nodes
// left in the graph; then one line per root. docs/ir.md describes the format:
//
//   model seed
//   %1 = input x : [2] batch
//   %2 = param h1.W : [3,2]
//   %3 = matmul %2, %1 : [3] batch
//   ...
//   output %14
//   loss %20
//   objective %22
//
// The output is deterministic: it depends only on the graph and the model.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

// The shortest "%.*g" text that reads back as the same double ("0.1", "-0", "inf").
static void print_number(FILE *out, double v) {
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v || isnan(v))
            break;
    }
    fputs(buf, out);
}

static const char *scalar_arg_name(double imm) {
    switch ((int)imm) {
    case IR_ARG_LR:        return "lr";
    case IR_ARG_STEP:      return "step";
    case IR_ARG_INV_BATCH: return "inv_batch";
    }
    return "?";
}

static const char *param_name(const Model *m, double imm) {
    uint32_t k = (uint32_t)imm;
    return k < m->n_params && m->params[k].name ? m->params[k].name : "?";
}

static const char *state_name(const Model *m, double imm) {
    uint32_t k = (uint32_t)imm;
    return k < m->n_states && m->states[k].name ? m->states[k].name : "?";
}

// What follows the op name: the leaf's meaning, or operands and attributes.
static void print_operands(const Model *m, const Node *n, const uint32_t *num, FILE *out) {
    switch (n->op) {
    case IR_CONST:
        fputc(' ', out);
        print_number(out, n->imm);
        return;
    case IR_INPUT:
        fprintf(out, " %s", m->input_name ? m->input_name : "?");
        return;
    case IR_TARGET:
        fprintf(out, " %s", m->target_name ? m->target_name : "?");
        return;
    case IR_PARAM:
    case IR_GRAD_IN:
        fprintf(out, " %s", param_name(m, n->imm));
        return;
    case IR_STATE:
        fprintf(out, " %s", state_name(m, n->imm));
        return;
    case IR_SCALAR_ARG:
        fprintf(out, " %s", scalar_arg_name(n->imm));
        return;
    default:
        break;
    }
    for (int i = 0; i < n->n_args; i++)
        fprintf(out, "%s%%%u", i ? ", " : " ", num[n->arg[i]]);
    switch (n->op) {
    case IR_LEAKY_RELU:
        fputs(" alpha=", out);
        print_number(out, n->imm);
        return;
    case IR_CONV2D:
    case IR_CONV2D_DX:
    case IR_CONV2D_DW:
        fprintf(out, " stride=%d padding=%d", n->attr[0], n->attr[1]);
        return;
    case IR_MAXPOOL2D:
    case IR_MAXPOOL2D_DX:
    case IR_AVGPOOL2D:
    case IR_AVGPOOL2D_DX:
        fprintf(out, " size=%d stride=%d", n->attr[1], n->attr[0]);
        return;
    default:
        // Attributes of ops added later still show, so that equal text means equal nodes.
        if (n->imm != 0 || signbit(n->imm)) {
            fputs(" imm=", out);
            print_number(out, n->imm);
        }
        if (n->attr[0] || n->attr[1])
            fprintf(out, " attr=%d,%d", n->attr[0], n->attr[1]);
        return;
    }
}

static void mark(bool *live, NodeId id) {
    if (id)
        live[id] = true;
}

void ir_print(const Model *m, FILE *out, bool train_step) {
    const Graph *g = m->g;
    bool *live = nn_alloc_array(g->arena, g->n_nodes, sizeof *live);
    uint32_t *num = nn_alloc_array(g->arena, g->n_nodes, sizeof *num);

    // Roots, then a backward sweep: operands have smaller ids than their users.
    mark(live, m->output);
    mark(live, m->loss);
    mark(live, m->objective);
    if (train_step) {
        for (uint32_t i = 0; m->grads && i < m->n_params; i++)
            mark(live, m->grads[i]);
        for (uint32_t i = 0; i < m->n_stores; i++)
            mark(live, m->stores[i].value);
    }
    for (NodeId id = g->n_nodes - 1; id > 0; id--)
        if (live[id])
            for (int i = 0; i < g->nodes[id].n_args; i++)
                live[g->nodes[id].arg[i]] = true;

    fprintf(out, "model %s\n", m->name ? m->name : "?");
    uint32_t next = 1;
    for (NodeId id = 1; id < g->n_nodes; id++) {
        if (!live[id])
            continue;
        const Node *n = &g->nodes[id];
        char shape[64];
        num[id] = next++;
        fprintf(out, "%%%u = %s", num[id], ir_op_info[n->op].name);
        print_operands(m, n, num, out);
        fprintf(out, " : %s%s\n", ir_shape_str(n->shape, shape, sizeof shape),
                n->flags & IR_F_BATCH ? " batch" : "");
    }

    if (m->output)
        fprintf(out, "output %%%u\n", num[m->output]);
    if (m->loss)
        fprintf(out, "loss %%%u\n", num[m->loss]);
    if (m->objective)
        fprintf(out, "objective %%%u\n", num[m->objective]);
    if (train_step) {
        for (uint32_t i = 0; m->grads && i < m->n_params; i++)
            if (m->grads[i])
                fprintf(out, "grad %s = %%%u\n", param_name(m, i), num[m->grads[i]]);
        for (uint32_t i = 0; i < m->n_states; i++) {
            char shape[64];
            fprintf(out, "state %s : %s of %s\n", m->states[i].name ? m->states[i].name : "?",
                    ir_shape_str(m->states[i].shape, shape, sizeof shape), param_name(m, m->states[i].param));
        }
        for (uint32_t i = 0; i < m->n_stores; i++) {
            const IrStore *st = &m->stores[i];
            fprintf(out, "store %s <- %%%u\n", st->to_state ? state_name(m, st->index) : param_name(m, st->index),
                    num[st->value]);
        }
    }
}
