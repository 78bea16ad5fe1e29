// adam_ref.h: the Adam update of the hand-written test models (linear_model.c,
// fake_model.c), LANGUAGE.md's formula with beta1 0.9, beta2 0.999, eps 1e-8:
// m and v are the state, step counts from 1.
#ifndef ADAM_REF_H
#define ADAM_REF_H

#include <math.h>

static inline void adam_ref(float *p, float *m, float *v, const float *g, int n, float lr, float step) {
    float c1 = 1 - powf(0.9f, step), c2 = 1 - powf(0.999f, step);
    for (int k = 0; k < n; k++) {
        m[k] = 0.9f * m[k] + 0.1f * g[k];
        v[k] = 0.999f * v[k] + 0.001f * g[k] * g[k];
        p[k] -= lr * (m[k] / c1) / (sqrtf(v[k] / c2) + 1e-8f);
    }
}

#endif
