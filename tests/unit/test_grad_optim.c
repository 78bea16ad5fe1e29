// The optimisers lowered into IR (optim.c), run by the interpreter for three
// steps and compared with hand computations. The expected values were worked
// out independently with PyTorch's formulas (torch.optim.SGD with dampening 0,
// torch.optim.AdamW) in double; LANGUAGE.md §7 is the specification.
//
// Every test uses the same two parameters, w[2] = {0.5, -1.5} and b = 2.0,
// and the same three gradients (one per step, in params() order w0 w1 b).
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autodiff.h"
#include "sema.h"

static const double P0[3] = { 0.5, -1.5, 2.0 };
static const double G[3][3] = { { 0.1, -0.2, 0.3 }, { -0.4, 0.5, 0.05 }, { 0.25, 0.0, -0.6 } };

typedef struct Run {
    Arena   arena;
    Model  *m;
    double  p[3];
    double  state[8];
} Run;

static Model *two_param_model(Arena *a, IrOptimizer opt) {
    Model *m = NN_NEW(a, Model);
    m->name = "t";
    m->g = ir_graph_new(a);
    m->n_params = 2;
    m->params = nn_alloc_array(a, 2, sizeof(IrParam));
    m->params[0] = (IrParam){ .name = "w", .shape = ir_shape1(2), .offset = 0 };
    m->params[1] = (IrParam){ .name = "b", .shape = ir_scalar_shape(), .offset = 2 };
    m->param_count = 3;
    for (uint32_t i = 0; i < 2; i++)
        m->params[i].node = ir_leaf(m->g, IR_PARAM, i, m->params[i].shape, (SrcRange){ 0 });
    m->opt = opt;
    ir_lower_optimizer(m);
    return m;
}

// One update with gradient G[t-1], evaluated by ir_interp, applied to r.
static void step(Run *r, int t, double lr) {
    InterpArgs args = { .batch = 1, .params = r->p, .state = r->state, .grad_in = G[t - 1],
                        .lr = lr, .step = t };
    Arena scratch = { 0 };
    double **v = ir_interp(r->m, &args, &scratch);
    double np[3], ns[8];
    memcpy(np, r->p, sizeof np);
    memcpy(ns, r->state, sizeof ns);
    for (uint32_t k = 0; k < r->m->n_stores; k++) {
        IrStore s = r->m->stores[k];
        if (s.to_state) {
            IrState st = r->m->states[s.index];
            memcpy(ns + st.offset, v[s.value], (size_t)ir_numel(st.shape) * sizeof(double));
        } else {
            IrParam pa = r->m->params[s.index];
            memcpy(np + pa.offset, v[s.value], (size_t)ir_numel(pa.shape) * sizeof(double));
        }
    }
    memcpy(r->p, np, sizeof np);
    memcpy(r->state, ns, sizeof ns);
    nn_arena_free(&scratch);
}

static void expect_three_steps(IrOptimizer opt, const double want[3][3]) {
    Run r = { 0 };
    r.m = two_param_model(&r.arena, opt);
    memcpy(r.p, P0, sizeof r.p);
    cr_assert(r.m->state_count <= 8);
    for (int t = 1; t <= 3; t++) {
        step(&r, t, opt.lr);
        for (int i = 0; i < 3; i++)
            cr_expect(fabs(r.p[i] - want[t - 1][i]) <= 1e-13 * fabs(want[t - 1][i]),
                      "step %d param %d: got %.17g, want %.17g", t, i, r.p[i], want[t - 1][i]);
    }
    nn_arena_free(&r.arena);
}

static IrOptimizer sgd(double lr) {
    return (IrOptimizer){ .kind = OPT_SGD, .lr = lr };
}

static IrOptimizer adam(double lr) {
    return (IrOptimizer){ .kind = OPT_ADAM, .lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
}

Test(grad_optim, sgd_plain_three_steps) {
    // p <- p - 0.1 g: 0.5 - 0.01 = 0.49, then 0.49 + 0.04 = 0.53, then 0.53 - 0.025 = 0.505.
    static const double want[3][3] = {
        { 0.49, -1.48, 1.97 },
        { 0.53, -1.53, 1.965 },
        { 0.505, -1.53, 2.025 },
    };
    expect_three_steps(sgd(0.1), want);
}

Test(grad_optim, sgd_momentum_three_steps) {
    // buf1 = g1 = 0.1; buf2 = 0.9*0.1 - 0.4 = -0.31; buf3 = 0.9*-0.31 + 0.25 = -0.029.
    // w0: 0.5 - 0.01 = 0.49; 0.49 + 0.031 = 0.521; 0.521 + 0.0029 = 0.5239.
    IrOptimizer o = sgd(0.1);
    o.momentum = 0.9;
    static const double want[3][3] = {
        { 0.49, -1.48, 1.97 },
        { 0.521, -1.512, 1.938 },
        { 0.5239, -1.5408, 1.9692 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, sgd_nesterov_three_steps) {
    // w0: buf1 = 0.1, g = 0.1 + 0.09 = 0.19, p = 0.481; buf2 = -0.31, g = -0.4 - 0.279 = -0.679,
    // p = 0.5489; buf3 = -0.029, g = 0.25 - 0.0261 = 0.2239, p = 0.52651.
    IrOptimizer o = sgd(0.1);
    o.momentum = 0.9;
    o.nesterov = true;
    static const double want[3][3] = {
        { 0.481, -1.462, 1.943 },
        { 0.5489, -1.5408, 1.9092 },
        { 0.52651, -1.56672, 1.99728 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, sgd_weight_decay_with_momentum_three_steps) {
    // w0 step 1: g = 0.1 + 0.01*0.5 = 0.105, buf = 0.105, p = 0.5 - 0.0105 = 0.4895.
    IrOptimizer o = sgd(0.1);
    o.momentum = 0.5;
    o.weight_decay = 0.01;
    static const double want[3][3] = {
        { 0.4895, -1.4785, 1.968 },
        { 0.5237605, -1.5162715, 1.945032 },
        { 0.5153669895, -1.5336409785, 1.991602968 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, sgd_clip_three_steps) {
    // ||g1|| = sqrt(0.14) < 0.5: unchanged. ||g2|| = sqrt(0.4125): g2 * 0.5/0.642262...
    IrOptimizer o = sgd(0.1);
    o.clip = 0.5;
    static const double want[3][3] = {
        { 0.49, -1.48, 1.97 },
        { 0.52113995776646094, -1.5189249472080761, 1.9661075052791923 },
        { 0.50190918853569166, -1.5189249472080761, 2.0122613514330383 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, clip_below_threshold_is_exactly_unclipped) {
    // The factor v / max(||g||, v) is v / v = 1 exactly: bit-identical to no clip.
    IrOptimizer o = sgd(0.1), c = sgd(0.1);
    c.clip = 10;
    Run a = { 0 }, b = { 0 };
    a.m = two_param_model(&a.arena, o);
    b.m = two_param_model(&b.arena, c);
    memcpy(a.p, P0, sizeof a.p);
    memcpy(b.p, P0, sizeof b.p);
    for (int t = 1; t <= 3; t++) {
        step(&a, t, 0.1);
        step(&b, t, 0.1);
        cr_assert_eq(memcmp(a.p, b.p, sizeof a.p), 0, "step %d", t);
    }
    nn_arena_free(&a.arena);
    nn_arena_free(&b.arena);
}

Test(grad_optim, adam_three_steps) {
    // Step 1: m^ = g, v^ = g^2, so p -= 0.01 * g / (|g| + 1e-8): 0.5 - 0.01*0.1/0.10000001.
    static const double want[3][3] = {
        { 0.49000000099999991, -1.4900000005, 1.9900000003333334 },
        { 0.49559503574851282, -1.4944221530217234, 1.9821667272150607 },
        { 0.49597938746637987, -1.4978404897175932, 1.9851302413110195 },
    };
    expect_three_steps(adam(0.01), want);
}

Test(grad_optim, adam_weight_decay_three_steps) {
    // Decoupled: p *= 1 - 0.01*0.1 first: 0.5 * 0.999 = 0.4995, then the Adam step.
    IrOptimizer o = adam(0.01);
    o.weight_decay = 0.1;
    static const double want[3][3] = {
        { 0.48950000099999991, -1.4885000005, 1.9880000003333334 },
        { 0.49460553574751281, -1.4914336530212233, 1.9781787272147273 },
        { 0.49449528192963232, -1.4933605560640719, 1.9791640625834714 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, adam_clip_three_steps) {
    IrOptimizer o = adam(0.01);
    o.clip = 0.5;
    static const double want[3][3] = {
        { 0.49000000099999991, -1.4900000005, 1.9900000003333334 },
        { 0.49503755231956809, -1.4935584511081001, 1.9823972117733455 },
        { 0.49515464968008871, -1.4963091437216589, 1.98452210309163 },
    };
    expect_three_steps(o, want);
}

Test(grad_optim, sgd_without_momentum_has_no_state) {
    Arena a = { 0 };
    IrOptimizer o = sgd(0.1);
    o.nesterov = true;             // nothing to do without momentum
    Model *m = two_param_model(&a, o);
    cr_assert_eq(m->n_states, 0);
    cr_assert_eq(m->state_count, 0);
    cr_assert_eq(m->n_stores, 2);
    nn_arena_free(&a);
}

Test(grad_optim, sgd_momentum_states_named_and_packed) {
    Arena a = { 0 };
    IrOptimizer o = sgd(0.1);
    o.momentum = 0.9;
    Model *m = two_param_model(&a, o);
    cr_assert_eq(m->n_states, 2);
    cr_assert_str_eq(m->states[0].name, "w.momentum");
    cr_assert_str_eq(m->states[1].name, "b.momentum");
    cr_assert_eq(m->states[0].offset, 0);
    cr_assert_eq(m->states[1].offset, 2);
    cr_assert_eq(m->states[1].param, 1);
    cr_assert_eq(m->state_count, 3);
    cr_assert_eq(m->n_stores, 4);
    nn_arena_free(&a);
}

Test(grad_optim, adam_states_named_and_packed) {
    Arena a = { 0 };
    Model *m = two_param_model(&a, adam(0.01));
    cr_assert_eq(m->n_states, 4);
    const char *names[] = { "w.m", "w.v", "b.m", "b.v" };
    const size_t offsets[] = { 0, 2, 4, 5 };
    for (int k = 0; k < 4; k++) {
        cr_assert_str_eq(m->states[k].name, names[k]);
        cr_assert_eq(m->states[k].offset, offsets[k]);
    }
    cr_assert_eq(m->state_count, 6);
    cr_assert_eq(m->n_stores, 6);
    nn_arena_free(&a);
}

Test(grad_optim, adam_bias_correction_late_and_beta_zero) {
    // The bias corrections 1 - beta^t are built as -expm1(t ln beta) (no float32 cancellation):
    // check them against the plain formula at t = 1, 7, 250 and 100000 (where 1 - beta2^t
    // is 1 to double precision), and with beta1 = 0 (no log of 0). From zero state, with g
    // given, m = (1-b1) g, v = (1-b2) g^2, so the step is
    // lr * ((1-b1) g / (1-b1^t)) / (sqrt((1-b2) g^2 / (1-b2^t)) + eps).
    static const int ts[] = { 1, 7, 250, 100000 };
    static const double beta1s[] = { 0.9, 0.0 };
    for (size_t bi = 0; bi < 2; bi++)
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            Run r = { 0 };
            IrOptimizer o = adam(0.01);
            o.beta1 = beta1s[bi];
            r.m = two_param_model(&r.arena, o);
            memcpy(r.p, P0, sizeof r.p);     // zero state, the update of step t
            InterpArgs args = { .batch = 1, .params = r.p, .state = r.state, .grad_in = G[0],
                                .lr = 0.01, .step = ts[k] };
            Arena scratch = { 0 };
            double **v = ir_interp(r.m, &args, &scratch);
            for (uint32_t s = 0; s < r.m->n_stores; s++) {
                IrStore st = r.m->stores[s];
                if (st.to_state)
                    continue;
                IrParam pa = r.m->params[st.index];
                for (int64_t e = 0; e < ir_numel(pa.shape); e++) {
                    double g = G[0][pa.offset + e], t = ts[k], b1 = beta1s[bi];
                    double mh = (1 - b1) * g / (1 - pow(b1, t)), vh = (1 - 0.999) * g * g / (1 - pow(0.999, t));
                    double want = P0[pa.offset + e] - 0.01 * mh / (sqrt(vh) + 1e-8);
                    double got = v[st.value][e];
                    cr_expect(fabs(got - want) <= 1e-14, "beta1 %g t %d: got %.17g want %.17g",
                              b1, ts[k], got, want);
                }
            }
            nn_arena_free(&scratch);
            nn_arena_free(&r.arena);
        }
}

Test(grad_optim, update_is_invariant) {
    // The update runs once per batch: no node it builds may vary with the sample.
    Arena a = { 0 };
    IrOptimizer o = adam(0.01);
    o.clip = 1;
    o.weight_decay = 0.1;
    Model *m = two_param_model(&a, o);
    for (NodeId id = 1; id < m->g->n_nodes; id++)
        cr_assert_eq(m->g->nodes[id].flags & IR_F_BATCH, 0, "node %u", id);
    for (uint32_t k = 0; k < m->n_stores; k++) {
        Shape want = m->stores[k].to_state ? m->states[m->stores[k].index].shape
                                           : m->params[m->stores[k].index].shape;
        cr_assert(ir_shape_eq(m->g->nodes[m->stores[k].value].shape, want), "store %u", k);
    }
    nn_arena_free(&a);
}

// ---- The whole train step (front end, differentiation, pruning, optimiser):
// loss 0.5 * (w*x - y)^2 on the batch x = {1, 2, 3}, y = {0.5, 1, -1}, w = 0.2,
// sgd(lr = 0.1). With reduce = sum the gradient is sum_s (w x_s - y_s) x_s:
//   step 1: residuals -0.3, -0.6, 1.6: g = -0.3 - 1.2 + 4.8 = 3.3, w = 0.2 - 0.33 = -0.13;
//   step 2: residuals -0.63, -1.26, 0.61: g = -1.32, w = -0.13 + 0.132 = 0.002;
//   step 3: residuals -0.498, -0.996, 1.006: g = 0.528, w = 0.002 - 0.0528 = -0.0508.
// With reduce = mean (the default) every g is divided by 3:
//   w = 0.2 - 0.11 = 0.09; then g = 1.76/3, w = 0.09 - 0.176/3 = 0.0313333...;
//   then g = 0.9386666.../3, w = 0.0313333... - 0.0312888... = 4.444...e-5.

static void train_three_steps(const char *reduce, const double want_w[3], const double want_f[3]) {
    char src[512];
    snprintf(src, sizeof src,
             "model m { input x[1]; target y[1]; param w = constant(0.2);\n"
             "output w * x; loss 0.5 * sum((w * x - y)^2); train sgd(lr = 0.1%s); }", reduce);
    NnCtx c;
    nn_ctx_setup(&c, stderr);
    Model *m = nn_frontend(&c, nn_add_source(&c, "m.nn", src, strlen(src)));
    cr_assert(m);
    cr_assert(ir_build_train_step(&c, m));
    const double x[3] = { 1, 2, 3 }, y[3] = { 0.5, 1, -1 };
    double w = 0.2, grad = 0;
    for (int t = 1; t <= 3; t++) {
        InterpArgs args = { .batch = 3, .x = x, .y = y, .params = &w, .grad_in = &grad, .lr = 0.1, .step = t };
        Arena scratch = { 0 };
        double **v = ir_interp(m, &args, &scratch);       // the gradient and the objective
        grad = v[m->grads[0]][0];
        cr_expect(fabs(v[m->objective][0] - want_f[t - 1]) <= 1e-14, "step %d: objective %.17g, want %.17g",
                  t, v[m->objective][0], want_f[t - 1]);
        v = ir_interp(m, &args, &scratch);                // the update, from that gradient
        cr_assert_eq(m->n_stores, 1);
        w = v[m->stores[0].value][0];
        cr_expect(fabs(w - want_w[t - 1]) <= 1e-14, "step %d: w %.17g, want %.17g", t, w, want_w[t - 1]);
        nn_arena_free(&scratch);
    }
    nn_ctx_free(&c);
}

Test(grad_optim, reduce_sum_three_steps) {
    const double w[3] = { -0.13, 0.002, -0.0508 };
    const double f[3] = { 1.505, 1.1783, 1.126028 };    // sums of 0.5 r^2 before each update
    train_three_steps(", reduce = sum", w, f);
}

Test(grad_optim, reduce_mean_three_steps) {
    const double w[3] = { 0.09, 0.09 - 0.176 / 3, 0.09 - 0.176 / 3 - 0.0938666666666666 / 3 };
    const double f[3] = { 1.505 / 3, 1.2267 / 3, 1.14753911111111 / 3 };
    train_three_steps("", w, f);
}
