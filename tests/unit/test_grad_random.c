// Random models: DAGs of 12 to 40 operations drawn from a pool of values, with
// sharing (a value is often used several times), mixing per-sample and
// invariant values, broadcasting and matrix products. For each: the gradient
// matches finite differences, pruning does not change it, and simplify never
// grows the graph. Deterministic: the seeds are fixed.
#include <criterion/criterion.h>

#include "test_grad_util.h"

static Arena arena;

static void setup(void) {
    memset(&arena, 0, sizeof arena);
}

static void teardown(void) {
    nn_arena_free(&arena);
}

TestSuite(random_models, .init = setup, .fini = teardown);

enum { POOL = 64 };

static uint64_t rng;
static uint32_t pick(uint32_t n) {     // uniform in [0, n)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng >> 33) % n);
}

// One random model. Values are kept bounded (tanh, sigmoid, safe
// denominators) so that no operation overflows.
static Model *random_model(uint64_t seed) {
    rng = seed;
    Shape v4 = shape_n(1, 4);
    Model *m = tm_new(&arena, v4, v4);
    Graph *g = m->g;
    NodeId pool[POOL];
    int n = 0;
    pool[n++] = m->input;
    pool[n++] = tm_param(m, v4);
    pool[n++] = tm_param(m, v4);
    pool[n++] = tm_param(m, shape_n(0));
    NodeId w = tm_param(m, shape_n(2, 4, 4));
    pool[n++] = ir_binary(g, IR_MUL, pool[1], m->input, tm_at);

    int n_ops = 12 + (int)pick(29);
    for (int i = 0; i < n_ops && n < POOL; i++) {
        NodeId a = pool[n - 1 - pick(n < 6 ? n : 6)];   // recent values: deep chains
        NodeId b = pool[pick(n)];                        // any value: sharing
        if (g->nodes[a].shape.rank == 0 && pick(2))      // mostly vectors, for the shape ops
            a = ir_broadcast(g, a, v4, tm_at);
        if (g->nodes[b].shape.rank == 0)
            b = ir_broadcast(g, b, v4, tm_at);
        bool vec = g->nodes[a].shape.rank == 1;
        NodeId r;
        switch (pick(35)) {
        case 0: r = ir_binary(g, IR_ADD, a, b, tm_at); break;
        case 1: r = ir_binary(g, IR_SUB, a, b, tm_at); break;
        case 2: r = ir_binary(g, IR_MUL, a, b, tm_at); break;
        case 3:   // a / (1.5 + b^2): the denominator stays away from 0
            r = ir_binary(g, IR_DIV, a, ir_binary(g, IR_ADD, ir_scalar(g, 1.5), ir_unary(g, IR_SQUARE, b, tm_at), tm_at), tm_at);
            break;
        case 4: r = ir_unary(g, IR_SIN, a, tm_at); break;
        case 5: r = ir_unary(g, IR_TANH, a, tm_at); break;
        case 6: r = ir_unary(g, IR_SIGMOID, a, tm_at); break;
        case 7: r = ir_unary(g, IR_EXP, ir_unary(g, IR_TANH, a, tm_at), tm_at); break;
        case 8: r = ir_unary(g, IR_SQUARE, ir_unary(g, IR_TANH, a, tm_at), tm_at); break;
        case 9: r = ir_unary(g, IR_SOFTPLUS, a, tm_at); break;
        case 10:  // W @ a for a [4] value
            r = vec ? ir_matmul(g, w, a, tm_at) : ir_unary(g, IR_COS, a, tm_at);
            break;
        case 11: r = ir_unary(g, IR_LOG, ir_binary(g, IR_ADD, ir_scalar(g, 1), ir_unary(g, IR_SQUARE, a, tm_at), tm_at), tm_at); break;
        case 12: r = ir_binary(g, IR_POW, ir_unary(g, IR_SIGMOID, a, tm_at), ir_unary(g, IR_SIGMOID, b, tm_at), tm_at); break;
        case 13: r = ir_binary(g, IR_POW, ir_unary(g, IR_TANH, a, tm_at), ir_scalar(g, 3), tm_at); break;
        case 14:  // a reduction broadcast back
            r = ir_binary(g, IR_MUL, a, ir_reduce(g, IR_SUM, ir_unary(g, IR_TANH, b, tm_at), tm_at), tm_at);
            break;
        case 15:
            r = vec ? ir_softmax(g, IR_SOFTMAX, a, tm_at) : ir_unary(g, IR_SIGMOID, a, tm_at);
            break;
        case 16:
            r = vec ? ir_softmax(g, IR_LOG_SOFTMAX, ir_unary(g, IR_TANH, a, tm_at), tm_at)
                    : ir_unary(g, IR_TANH, a, tm_at);
            break;
        case 17: r = ir_binary(g, IR_MAX, a, b, tm_at); break;     // kinks: ties are
        case 18: r = ir_binary(g, IR_MIN, a, b, tm_at); break;     // measure-zero on
        case 19: r = ir_unary(g, IR_RELU, a, tm_at); break;        // random data
        case 20: r = ir_leaky_relu(g, a, 0.2, tm_at); break;
        case 21: r = ir_unary(g, IR_ABS, a, tm_at); break;
        case 22:  // a detour through matrices: reshape, transpose, reshape back
            r = !vec ? ir_unary(g, IR_TANH, a, tm_at) : ir_reshape(g, ir_transpose(g, ir_reshape(g, a, shape_n(2, 2, 2), tm_at), tm_at), v4, tm_at);
            break;
        case 23:  // outer product, row sums
            r = !vec ? ir_unary(g, IR_TANH, a, tm_at) : ir_reshape(g, ir_reduce(g, IR_SUM_LAST, ir_outer(g, a, ir_unary(g, IR_TANH, b, tm_at), tm_at), tm_at), v4, tm_at);
            break;
        case 24: {  // [2,2] @ [2,2]
            if (!vec) {
                r = ir_unary(g, IR_TANH, a, tm_at);
                break;
            }
            NodeId ma = ir_reshape(g, a, shape_n(2, 2, 2), tm_at), mb = ir_reshape(g, b, shape_n(2, 2, 2), tm_at);
            r = ir_reshape(g, ir_matmul(g, ma, mb, tm_at), v4, tm_at);
            break;
        }
        case 25: r = vec ? ir_matmul(g, a, w, tm_at) : ir_unary(g, IR_TANH, a, tm_at); break;                                  // [k] @ [k,n]
        case 26:  // a * tanh(a . b)
            r = !vec ? ir_unary(g, IR_TANH, a, tm_at)
                     : ir_binary(g, IR_MUL, a, ir_unary(g, IR_TANH, ir_matmul(g, a, b, tm_at), tm_at), tm_at);
            break;
        case 27:  // column sums of an outer product, reduce_to [1,4]
            r = !vec ? ir_unary(g, IR_TANH, a, tm_at) : ir_reshape(g, ir_reduce_to(g, ir_outer(g, ir_unary(g, IR_SIN, a, tm_at), b, tm_at), shape_n(2, 1, 4), tm_at), v4, tm_at);
            break;
        case 28: r = ir_binary(g, IR_SUB, b, ir_reduce(g, IR_LOGSUMEXP, a, tm_at), tm_at); break;
        case 29: r = ir_binary(g, IR_ADD, a, ir_broadcast(g, pool[3], v4, tm_at), tm_at); break;
        case 30:  // a batch statistic (as in batch normalisation): every sample sees all
            r = ir_binary(g, IR_MUL, a, ir_unary(g, IR_TANH, ir_reduce(g, IR_BATCH_SUM, ir_unary(g, IR_SIN, b, tm_at), tm_at), tm_at), tm_at);
            break;
        case 31:  // the batch sum of an invariant value: batch * value
            r = ir_binary(g, IR_ADD, a, ir_unary(g, IR_TANH, ir_reduce(g, IR_BATCH_SUM, pool[2], tm_at), tm_at), tm_at);
            break;
        case 32: r = ir_unary(g, IR_LOG, ir_unary(g, IR_SIGMOID, a, tm_at), tm_at); break;
        case 33:
            r = ir_unary(g, IR_LOG, ir_binary(g, IR_SUB, ir_scalar(g, 1), ir_unary(g, IR_SIGMOID, a, tm_at), tm_at), tm_at);
            break;
        default:  // an invariant value mixed in: parameters only
            r = ir_binary(g, IR_MUL, a, ir_unary(g, IR_TANH, ir_binary(g, IR_ADD, pool[2], pool[3], tm_at), tm_at), tm_at);
            break;
        }
        pool[n++] = r;
    }
    // The loss reads the last value and a few others: several paths to the params.
    NodeId out = pool[n - 1];
    if (g->nodes[out].shape.rank == 0)
        out = ir_broadcast(g, out, v4, tm_at);
    NodeId loss = ir_reduce(g, IR_SUM, ir_binary(g, IR_MUL, out, m->target, tm_at), tm_at);
    for (int k = 0; k < 3; k++)
        loss = ir_binary(g, IR_ADD, loss, ir_reduce(g, IR_SUM, ir_unary(g, IR_SIN, pool[pick(n)], tm_at), tm_at), tm_at);
    tm_finish(m, out, loss, true);
    return m;
}

Test(random_models, gradient_pruning_and_size) {
    for (uint64_t seed = 1; seed <= 200; seed++) {
        Model *plain = random_model(seed), *pruned = random_model(seed);
        ir_differentiate(plain);
        ir_differentiate(pruned);
        uint32_t before = ir_count_live(pruned);
        ir_pass_simplify(pruned);
        ir_pass_dce(pruned);
        cr_assert_leq(ir_count_live(pruned), before, "seed %lu: the graph grew", (unsigned long)seed);

        TmData d = tm_data(&arena, plain, 3, seed, -1, 1);
        double err = tm_check(&arena, plain, &d);
        cr_assert_leq(err, 1e-6, "seed %lu: gradient error %g", (unsigned long)seed, err);
        double *ga = tm_grads(&arena, plain, &d), *gb = tm_grads(&arena, pruned, &d);
        for (size_t j = 0; j < plain->param_count; j++)
            cr_assert_leq(fabs(ga[j] - gb[j]), 1e-12 * fmax(1, fabs(ga[j])),
                          "seed %lu, gradient %zu: %.17g unpruned, %.17g pruned", (unsigned long)seed, j, ga[j], gb[j]);
    }
}
