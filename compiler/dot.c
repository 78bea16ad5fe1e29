// dot.c: `nnc model.nn --emit=dot`: the train step as a Graphviz digraph.
// Input: the train-step Model (ir_build_train_step). Every live node is a box
// labelled "%id op" and its shape (per sample; "x batch" when it varies with the
// sample), coloured by the part it belongs to (ir_classify_nodes): forward
// blue, backward orange, update green. Leaves show what they are (a parameter's
// name, a constant's value). Edges run from operand to user. Gradients and
// stores end in small sink nodes naming what they write, and a legend explains
// the colours. Dead nodes are left out.
#include "autodiff.h"

static const char *part_color[] = {
    [IR_PART_NONE] = "white",
    [IR_PART_FORWARD] = "#cfe2ff",    // blue
    [IR_PART_BACKWARD] = "#ffd8a8",   // orange
    [IR_PART_UPDATE] = "#c3f0c8",     // green
};

// A name for Graphviz inside a double-quoted label: quotes and backslashes escaped.
static void print_escaped(FILE *out, const char *s) {
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
}

static void print_leaf_detail(const Model *m, const Node *n, FILE *out) {
    uint32_t k = (uint32_t)n->imm;
    switch (n->op) {
    case IR_CONST:
        fprintf(out, " %g", n->imm);
        break;
    case IR_PARAM:
    case IR_GRAD_IN:
        if (k < m->n_params) {
            fputc(' ', out);
            print_escaped(out, m->params[k].name);
        }
        break;
    case IR_STATE:
        if (k < m->n_states) {
            fputc(' ', out);
            print_escaped(out, m->states[k].name);
        }
        break;
    case IR_SCALAR_ARG:
        fprintf(out, " %s", k == IR_ARG_LR ? "lr" : k == IR_ARG_STEP ? "step" : "1/batch");
        break;
    case IR_LEAKY_RELU:
        fprintf(out, " %g", n->imm);
        break;
    default:
        break;
    }
}

void ir_print_dot(const Model *m, FILE *out) {
    Arena scratch = { 0 };
    const Graph *g = m->g;
    uint8_t *part = ir_classify_nodes(m, &scratch);
    fprintf(out, "digraph \"");
    print_escaped(out, m->name ? m->name : "model");
    fprintf(out, "\" {\n  rankdir=TB;\n  node [shape=box, style=filled, fontname=\"Helvetica\", fontsize=10];\n"
                 "  edge [color=\"#555555\", arrowsize=0.6];\n");

    fprintf(out, "  subgraph cluster_legend {\n    label=\"legend\"; fontname=\"Helvetica\"; fontsize=10;\n");
    fprintf(out, "    legend_f [label=\"forward\", fillcolor=\"%s\"];\n", part_color[IR_PART_FORWARD]);
    fprintf(out, "    legend_b [label=\"backward\", fillcolor=\"%s\"];\n", part_color[IR_PART_BACKWARD]);
    fprintf(out, "    legend_u [label=\"update\", fillcolor=\"%s\"];\n", part_color[IR_PART_UPDATE]);
    fprintf(out, "    legend_f -> legend_b -> legend_u [style=invis];\n  }\n");

    for (NodeId id = 1; id < g->n_nodes; id++) {
        if (part[id] == IR_PART_NONE)
            continue;
        const Node *n = &g->nodes[id];
        char sh[64];
        fprintf(out, "  n%u [label=\"%%%u %s", id, id, ir_op_info[n->op].name);
        print_leaf_detail(m, n, out);
        fprintf(out, "\\n%s%s\", fillcolor=\"%s\"];\n", ir_shape_str(n->shape, sh, sizeof sh),
                n->flags & IR_F_BATCH ? " x batch" : "", part_color[part[id]]);
        for (int k = 0; k < n->n_args; k++)
            fprintf(out, "  n%u -> n%u;\n", n->arg[k], id);
    }

    // Sinks: what the backward pass produces and what the update writes.
    if (m->grads)
        for (uint32_t i = 0; i < m->n_params; i++) {
            if (!m->grads[i])
                continue;
            fprintf(out, "  grad%u [shape=plaintext, style=\"\", label=\"d/d ", i);
            print_escaped(out, m->params[i].name);
            fprintf(out, "\"];\n  n%u -> grad%u [style=dashed];\n", m->grads[i], i);
        }
    for (uint32_t k = 0; k < m->n_stores; k++) {
        const IrStore *s = &m->stores[k];
        const char *name = s->to_state ? (s->index < m->n_states ? m->states[s->index].name : "?")
                                       : (s->index < m->n_params ? m->params[s->index].name : "?");
        fprintf(out, "  store%u [shape=plaintext, style=\"\", label=\"", k);
        print_escaped(out, name);
        fprintf(out, " <-\"];\n  n%u -> store%u [style=dashed];\n", s->value, k);
    }
    if (m->objective)
        fprintf(out, "  objective [shape=plaintext, style=\"\", label=\"objective\"];\n"
                     "  n%u -> objective [style=dashed];\n", m->objective);
    fprintf(out, "}\n");
    nn_arena_free(&scratch);
}
