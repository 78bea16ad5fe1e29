// Embedding a compiled model in a C program: train XOR to 100% accuracy,
// save a checkpoint, load it into a fresh instance and predict the same.
//
//   nnc ../xor.nn -o xor_net.so          # writes xor_net.so and xor_net.h
//   cc embed.c ./xor_net.so -o embed && ./embed
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "xor_net.h"

static const float X[4 * XOR_NET_INPUT_SIZE] = { 0, 0, 0, 1, 1, 0, 1, 1 };
static const float Y[4 * XOR_NET_TARGET_SIZE] = { 0, 1, 1, 0 };

static int correct(const float *out) {
    int n = 0;
    for (int i = 0; i < 4; i++) n += (out[i] > 0.5f) == (Y[i] > 0.5f);
    return n;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "xor_net.safetensors";
    xor_net *m = xor_net_create(42);
    if (!m) return fprintf(stderr, "out of memory\n"), 1;

    float loss = 0, out[4];
    int step;
    for (step = 1; step <= 5000; step++) {
        loss = xor_net_train_step(m, X, Y, 4);
        xor_net_predict(m, X, out, 4);
        if (correct(out) == 4 && loss < 0.02f) break;
    }
    printf("trained in %d steps, loss %.4f, accuracy %d/4\n", step, loss, correct(out));

    int rc = xor_net_save(m, path);
    if (rc) return fprintf(stderr, "save: %s\n", xor_net_strerror(rc)), 1;
    xor_net *fresh = xor_net_create(7);
    if (!fresh) return fprintf(stderr, "out of memory\n"), 1;
    rc = xor_net_load(fresh, path);
    if (rc) return fprintf(stderr, "load: %s\n", xor_net_strerror(rc)), 1;

    float again[4];
    xor_net_predict(fresh, X, again, 4);
    for (int i = 0; i < 4; i++)
        printf("xor(%g, %g) = %.3f\n", X[2 * i], X[2 * i + 1], again[i]);
    int same = memcmp(out, again, sizeof out) == 0;
    printf("reloaded model predicts %s\n", same ? "the same" : "DIFFERENTLY");

    xor_net_destroy(m);
    xor_net_destroy(fresh);
    return correct(again) == 4 && same ? 0 : 1;
}
