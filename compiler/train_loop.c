// train_loop.c: the epochs of `nnc train`: shuffled mini-batches, the progress display,
// per-epoch evaluation, Ctrl-C and non-finite losses.
//
// Reproducibility: the order of epoch e is a Fisher-Yates shuffle driven by a generator
// seeded with (seed, e) alone, so a resumed run needs only (epoch, batch index) to
// continue exactly where it stopped. Every epoch has ceil(n / batch) steps: the last
// batch is smaller when batch does not divide n (no sample is dropped).
//
// Ctrl-C (SIGINT, also SIGTERM) only sets a flag; the loop finishes the current step,
// saves a checkpoint and returns 130 (128 + the signal's number for SIGTERM).
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVAL_BATCH      256     // samples per predict/loss call when evaluating
#define TRAIN_ACC_LIMIT 10000   // train accuracy is measured on the first samples only
#define TTY_INTERVAL    0.1     // seconds between redraws of the progress bar
#define LINE_INTERVAL   2.0     // seconds between progress lines when stdout is not a terminal

static volatile sig_atomic_t g_signal;   // the signal that asked us to stop, or 0

static void on_signal(int sig) { g_signal = sig; }

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ---- shuffling: splitmix64 seeded from (seed, epoch)

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// A uniform integer in [0, n) (Lemire's multiply-shift with rejection).
static uint64_t below(uint64_t *s, uint64_t n) {
    uint64_t threshold = -n % n;
    for (;;) {
        unsigned __int128 m = (unsigned __int128)splitmix64(s) * n;
        if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
    }
}

void train_shuffle(uint32_t *perm, size_t n, uint64_t seed, int64_t epoch) {
    uint64_t s = seed ^ 0x6e6e632d73687566ull;   // "nnc-shuf"
    s = splitmix64(&s) ^ (uint64_t)epoch * 0xd1b54a32d192ed03ull;
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)below(&s, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

// ---- evaluation

static size_t argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

void train_evaluate(TrainRun *r, const TrainData *d, size_t limit, double *loss, double *acc) {
    const nnc_model_info *info = r->info;
    size_t n = d->n < limit ? d->n : limit;
    float *out = r->classify ? malloc(EVAL_BATCH * info->output_size * sizeof(float)) : NULL;
    double loss_sum = 0;
    size_t correct = 0;
    for (size_t i = 0; i < n; i += EVAL_BATCH) {
        size_t b = n - i < EVAL_BATCH ? n - i : EVAL_BATCH;
        const float *x = d->x + i * d->x_size;
        const float *y = d->y ? d->y + i * d->y_size : NULL;
        loss_sum += (double)info->loss(r->model, x, y, b) * (double)b;
        if (!out) continue;
        info->predict(r->model, x, out, b);
        for (size_t k = 0; k < b; k++)
            correct += r->binary ? (out[k] >= 0.5f) == (y[k] >= 0.5f)
                                 : argmax(out + k * info->output_size, info->output_size) ==
                                   argmax(y + k * d->y_size, d->y_size);
    }
    *loss = loss_sum / (double)n;
    *acc = out ? (double)correct / (double)n : NAN;
    free(out);
}

// ---- the per-step loss trace (for the plot)

static void trace_add(LossTrace *t, double pos, double loss) {
    if (t->stride == 0) t->stride = 1;
    t->acc_pos += pos;
    t->acc_loss += loss;
    if (++t->acc_n < t->stride) return;
    if (t->n == TRACE_CAP) {   // halve the resolution
        for (size_t i = 0; i < TRACE_CAP / 2; i++) {
            t->pos[i] = 0.5 * (t->pos[2 * i] + t->pos[2 * i + 1]);
            t->loss[i] = 0.5 * (t->loss[2 * i] + t->loss[2 * i + 1]);
        }
        t->n = TRACE_CAP / 2;
        t->stride *= 2;
        if (t->acc_n < t->stride) return;
    }
    t->pos[t->n] = t->acc_pos / (double)t->acc_n;
    t->loss[t->n] = t->acc_loss / (double)t->acc_n;
    t->n++;
    t->acc_pos = t->acc_loss = 0;
    t->acc_n = 0;
}

// ---- progress

static void format_duration(char *buf, size_t len, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

typedef struct Progress {
    bool    tty;
    double  run_start, epoch_start, last_draw;
    double  train_seconds;      // spent in the training steps of finished epochs
    int64_t steps_done;         // in this invocation, for the rate
    int64_t samples_done;
    bool    drawn;              // a bar is on the current line
} Progress;

static void progress_draw(TrainRun *r, Progress *p, int64_t epoch, int64_t last_epoch, int64_t k,
                          int64_t steps, double now) {
    double elapsed = now - p->run_start;                        // with evaluations: for the ETA
    double training = p->train_seconds + (now - p->epoch_start);  // steps only: for the speed
    double rate = training > 0 ? (double)p->samples_done / training : 0;
    int64_t remaining = (last_epoch - epoch) * steps + (steps - k);
    double step_rate = elapsed > 0 ? (double)p->steps_done / elapsed : 0;
    char eta[32];
    format_duration(eta, sizeof eta, step_rate > 0 ? (double)remaining / step_rate : 0);
    double loss = r->state.epoch_samples ? r->state.epoch_loss / (double)r->state.epoch_samples : NAN;
    double frac = (double)k / (double)steps;
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int full = (int)(frac * WIDTH);
        for (int i = 0; i < WIDTH; i++) bar[i] = i < full ? '=' : i == full ? '>' : ' ';
        bar[WIDTH] = 0;
        printf("\repoch %lld/%lld [%s] %3d%%  %.0f samples/s  loss %.4f  ETA %s\x1b[K", (long long)epoch,
               (long long)last_epoch, bar, (int)(frac * 100), rate, loss, eta);
        p->drawn = true;
    } else {
        printf("epoch %lld/%lld  step %lld/%lld (%d%%)  %.0f samples/s  loss %.4f  ETA %s\n", (long long)epoch,
               (long long)last_epoch, (long long)k, (long long)steps, (int)(frac * 100), rate, loss, eta);
    }
    fflush(stdout);
    p->last_draw = now;
}

static void progress_clear(Progress *p) {
    if (p->tty && p->drawn) printf("\r\x1b[K");
    p->drawn = false;
}

static void print_epoch(TrainRun *r, const EpochStats *e, int64_t last_epoch) {
    printf("epoch %lld/%lld: train loss %.4f", (long long)e->epoch, (long long)last_epoch, e->train_loss);
    if (!isnan(e->train_acc)) printf(", train acc %.2f%%", 100 * e->train_acc);
    if (!isnan(e->test_loss)) printf(", test loss %.4f", e->test_loss);
    if (!isnan(e->test_acc)) printf(", test acc %.2f%%", 100 * e->test_acc);
    printf("  (%.1f s)\n", e->seconds);
    (void)r;
    fflush(stdout);
}

// ---- the loop

static int interrupted(TrainRun *r, Progress *p, int64_t step, int64_t epoch) {
    progress_clear(p);
    const char *path = r->save_path ? r->save_path : train_interrupted_path(r);
    int sig = g_signal;
    printf("interrupted at step %lld (epoch %lld)\n", (long long)step, (long long)epoch);
    fflush(stdout);
    if (!train_save(r, path)) return 1;
    printf("checkpoint saved to %s; continue with --resume %s\n", path, path);
    fflush(stdout);
    return 128 + sig;
}

int train_loop(TrainRun *r) {
    const nnc_model_info *info = r->info;
    TrainState *s = &r->state;
    size_t n = r->train.n, batch = s->batch;
    int64_t steps = (int64_t)((n + batch - 1) / batch);
    int64_t first = s->epoch, last = s->epoch + r->epochs;   // epochs [first, last)
    if (s->batch_index == 0 && r->epochs == 0) return 0;

    uint32_t *perm = malloc(n * sizeof *perm);
    float *xb = malloc(batch * info->input_size * sizeof(float));
    float *yb = info->target_size ? malloc(batch * info->target_size * sizeof(float)) : NULL;
    if (!perm || !xb || (info->target_size && !yb)) {
        free(perm);
        free(xb);
        free(yb);
        fputs("nnc: error: out of memory for the batches\n", stderr);
        return 1;
    }
    struct sigaction sa = { 0 }, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;   // a second Ctrl-C kills as usual
    g_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    Progress p = { .tty = isatty(STDOUT_FILENO) && !r->quiet };
    p.run_start = p.last_draw = now_seconds();
    if (!r->quiet) {
        printf("training '%s': %zu parameters, %zu samples", info->name ? info->name : "model",
               info->param_count, n);
        if (r->has_test) printf(" (test %zu)", r->test.n);
        printf(", batch %zu, %lld steps per epoch\n", batch, (long long)steps);
        if (first > 0 || s->batch_index > 0)
            printf("resuming at epoch %lld, step %lld of %lld\n", (long long)first + 1,
                   (long long)s->batch_index + 1, (long long)steps);
        fflush(stdout);
    }
    int status = 0;
    for (int64_t e = first; e < last && !status; e++) {
        train_shuffle(perm, n, s->seed, e);
        p.epoch_start = p.last_draw = now_seconds();   // no progress line right after an epoch line
        for (int64_t k = s->batch_index; k < steps; k++) {
            size_t begin = (size_t)k * batch, b = n - begin < batch ? n - begin : batch;
            for (size_t i = 0; i < b; i++) {
                size_t src = perm[begin + i];
                memcpy(xb + i * info->input_size, r->train.x + src * info->input_size,
                       info->input_size * sizeof(float));
                if (yb)
                    memcpy(yb + i * info->target_size, r->train.y + src * info->target_size,
                           info->target_size * sizeof(float));
            }
            float loss = info->train_step(r->model, xb, yb, b);
            int64_t step = e * steps + k + 1;
            if (!isfinite(loss)) {
                progress_clear(&p);
                fflush(stdout);
                fprintf(stderr, "nnc: error: loss is %s at step %lld (epoch %lld); parameters are unchanged\n",
                        isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf", (long long)step, (long long)e + 1);
                status = 1;
                break;
            }
            s->batch_index = k + 1;
            s->epoch_loss += (double)loss * (double)b;
            s->epoch_samples += (int64_t)b;
            p.steps_done++;
            p.samples_done += (int64_t)b;
            trace_add(&r->trace, (double)e + (double)(k + 1) / (double)steps, loss);
            if (g_signal) {
                status = interrupted(r, &p, step, e + 1);
                break;
            }
            double now = now_seconds();
            if (!r->quiet && now - p.last_draw >= (p.tty ? TTY_INTERVAL : LINE_INTERVAL))
                progress_draw(r, &p, e + 1, last, k + 1, steps, now);
        }
        if (status) break;
        EpochStats st = { .epoch = e + 1, .seconds = now_seconds() - p.epoch_start,
                          .train_acc = NAN, .test_loss = NAN, .test_acc = NAN };
        st.train_loss = s->epoch_samples ? s->epoch_loss / (double)s->epoch_samples : NAN;
        p.train_seconds += st.seconds;
        s->epoch = e + 1;
        s->batch_index = 0;
        s->epoch_loss = 0;
        s->epoch_samples = 0;
        if (r->classify) {
            double unused;
            train_evaluate(r, &r->train, TRAIN_ACC_LIMIT, &unused, &st.train_acc);
        }
        if (r->has_test) train_evaluate(r, &r->test, SIZE_MAX, &st.test_loss, &st.test_acc);
        train_add_epoch(r, &st);
        progress_clear(&p);
        print_epoch(r, &st, last);
        if (g_signal) status = interrupted(r, &p, (e + 1) * steps, e + 1);
    }
    if (status == 0 && !r->quiet && last > first) {
        printf("trained %lld epoch%s in %.1f s", (long long)(last - first), last - first == 1 ? "" : "s",
               now_seconds() - p.run_start);
        const EpochStats *e = r->n_history ? &r->history[r->n_history - 1] : NULL;
        if (e && !isnan(e->test_acc)) printf("; test accuracy %.2f%%", 100 * e->test_acc);
        else if (e && !isnan(e->test_loss)) printf("; test loss %.4f", e->test_loss);
        printf("\n");
        fflush(stdout);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(perm);
    free(xb);
    free(yb);
    return status;
}
