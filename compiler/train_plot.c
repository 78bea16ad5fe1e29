// train_plot.c: `nnc train --plot FILE.svg`: the run as a self-contained SVG.
//
// Panels side by side, each with a frame, grid, ticks, axis labels and a legend:
//   - loss per epoch (train, test) over the sampled per-step loss; a log scale when
//     the loss spans more than a factor of 30;
//   - accuracy per epoch (train, test) for classification models;
//   - for 1-D regression models (input, target and output of size 1), the fitted
//     curve: the model's prediction over the range of the data, on the data points.
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PANEL_W   460    // pixels of a panel's plot area
#define PANEL_H   320
#define MARGIN_L  70     // room for tick labels and the y label
#define MARGIN_R  20
#define MARGIN_T  104    // the title above all panels
#define MARGIN_B  60     // tick labels and the x label
#define MAX_POINTS 1000  // data points drawn in the curve panel
#define CURVE_RES  400   // samples of the fitted curve

#define COLOR_TRAIN "#1f77b4"
#define COLOR_TEST  "#ff7f0e"
#define COLOR_STEP  "#aec7e8"
#define COLOR_FIT   "#d62728"
#define COLOR_DATA  "#7f7f7f"

typedef struct Panel {
    double x0, y0;             // top-left corner of the plot area
    double xmin, xmax, ymin, ymax;
    bool   log_y;
} Panel;

typedef struct Series {
    const char *label, *color;
    const double *x, *y;
    size_t n;
    double width;              // stroke width; 0: points only
    bool   markers;
} Series;

static double px(const Panel *p, double x) { return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * PANEL_W; }

static double py(const Panel *p, double y) {
    if (p->log_y) {
        double l = log10(y > 0 ? y : p->ymin);
        return p->y0 + PANEL_H - (l - log10(p->ymin)) / (log10(p->ymax) - log10(p->ymin)) * PANEL_H;
    }
    return p->y0 + PANEL_H - (y - p->ymin) / (p->ymax - p->ymin) * PANEL_H;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else fputc(*s, f);
    }
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `count` ticks.
static double nice_step(double range, int count) {
    double raw = range / count, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

// Widens [lo, hi] to whole ticks (and a non-empty range).
static void nice_range(double *lo, double *hi) {
    if (!isfinite(*lo) || !isfinite(*hi)) { *lo = 0; *hi = 1; }
    double pad = 0.04 * (*hi - *lo);   // keep points off the frame
    *lo -= pad;
    *hi += pad;
    if (*hi - *lo < 1e-12 * (fabs(*lo) + fabs(*hi)) || *hi <= *lo) {
        double d = fabs(*lo) > 1e-30 ? 0.1 * fabs(*lo) : 1;
        *lo -= d;
        *hi += d;
    }
    double step = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
}

static void tick_label(char *buf, size_t len, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, len, "%.3g", v);
    else snprintf(buf, len, "%.*f", decimals, v);
}

static void draw_axes(FILE *f, const Panel *p, const char *title, const char *xlabel, const char *ylabel,
                      bool integer_x) {
    fprintf(f, "<g class=\"axes\">\n");
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"none\"/>\n",
            p->x0, p->y0, PANEL_W, PANEL_H);
    // x ticks
    double step = nice_step(p->xmax - p->xmin, 6);
    if (integer_x && step < 1) step = 1;
    char label[64];
    for (double v = ceil(p->xmin / step - 1e-9) * step; v <= p->xmax + step * 1e-9; v += step) {
        double x = px(p, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x, p->y0, x,
                p->y0 + PANEL_H);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x, p->y0 + PANEL_H,
                x, p->y0 + PANEL_H + 5);
        tick_label(label, sizeof label, v, step);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">%s</text>\n", x,
                p->y0 + PANEL_H + 19, label);
    }
    // y ticks
    if (p->log_y) {
        for (double e = floor(log10(p->ymin)); e <= ceil(log10(p->ymax)); e++) {
            for (int m = 1; m < 10; m++) {
                double v = m * pow(10, e);
                if (v < p->ymin * (1 - 1e-9) || v > p->ymax * (1 + 1e-9)) continue;
                double y = py(p, v);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", p->x0, y,
                        p->x0 + PANEL_W, y, m == 1 ? "#e5e5e5" : "#f4f4f4");
                if (m != 1) continue;
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", p->x0 - 5,
                        y, p->x0, y);
                snprintf(label, sizeof label, "%g", v);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%s</text>\n",
                        p->x0 - 8, y + 4, label);
            }
        }
    } else {
        step = nice_step(p->ymax - p->ymin, 5);
        for (double v = ceil(p->ymin / step - 1e-9) * step; v <= p->ymax + step * 1e-9; v += step) {
            double y = py(p, v);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", p->x0, y,
                    p->x0 + PANEL_W, y);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", p->x0 - 5, y,
                    p->x0, y);
            tick_label(label, sizeof label, v, step);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%s</text>\n", p->x0 - 8,
                    y + 4, label);
        }
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
            p->x0, p->y0, PANEL_W, PANEL_H);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"label\">", p->x0 + PANEL_W / 2.0,
            p->y0 + PANEL_H + 42);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" "
               "class=\"label\">", p->x0 - 52, p->y0 + PANEL_H / 2.0);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"ptitle\">", p->x0 + PANEL_W / 2.0,
            p->y0 - 38);
    xml_text(f, title);
    fprintf(f, "</text>\n</g>\n");
}

static void draw_series(FILE *f, const Panel *p, const Series *s) {
    if (s->width > 0 && s->n > 1) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-linejoin=\"round\" points=\"",
                s->color, s->width);
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->y[i]) && (!p->log_y || s->y[i] > 0)) fprintf(f, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
        fprintf(f, "\"/>\n");
    }
    if ((s->markers && s->n <= 40) || s->width == 0 || s->n == 1) {
        double radius = s->width == 0 ? 2.2 : 3.5;
        fprintf(f, "<g fill=\"%s\"%s>\n", s->color, s->width == 0 ? " fill-opacity=\"0.6\"" : "");
        for (size_t i = 0; i < s->n; i++)
            if (isfinite(s->y[i]) && (!p->log_y || s->y[i] > 0))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"/>\n", px(p, s->x[i]), py(p, s->y[i]), radius);
        fprintf(f, "</g>\n");
    }
}

// The legend: one row above the plot area, right-aligned, so it never hides data.
static void draw_legend(FILE *f, const Panel *p, const Series *s, size_t n) {
    double width = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i].n) width += 44 + 6.6 * (double)strlen(s[i].label);
    double x = p->x0 + PANEL_W - width, y = p->y0 - 9;
    fprintf(f, "<g class=\"legend\">\n");
    for (size_t i = 0; i < n; i++) {
        if (!s[i].n) continue;
        if (s[i].width > 0)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\"/>\n",
                    x, y - 4, x + 22, y - 4, s[i].color, s[i].width < 2 ? 2 : s[i].width);
        if (s[i].markers || s[i].width == 0)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x + 11, y - 4, s[i].color);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"legend\">", x + 28, y);
        xml_text(f, s[i].label);
        fprintf(f, "</text>\n");
        x += 44 + 6.6 * (double)strlen(s[i].label);
    }
    fprintf(f, "</g>\n");
}

static void range_of(const double *v, size_t n, double *lo, double *hi) {
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < *lo) *lo = v[i];
            if (v[i] > *hi) *hi = v[i];
        }
}

// The loss panel: per-step trace, train and test loss per epoch.
static void plot_loss(FILE *f, TrainRun *r, Panel *p, const double *ep, const double *tr, const double *te) {
    size_t n = r->n_history;
    Series s[3] = {
        { "loss per step (sampled)", COLOR_STEP, r->trace.pos, r->trace.loss, r->trace.n, 1.2, false },
        { "train loss", COLOR_TRAIN, ep, tr, n, 2.2, true },
        { "test loss", COLOR_TEST, ep, te, r->has_test ? n : 0, 2.2, true },
    };
    double lo = INFINITY, hi = -INFINITY, xmax = 0;
    for (int i = 0; i < 3; i++) {
        range_of(s[i].y, s[i].n, &lo, &hi);
        for (size_t k = 0; k < s[i].n; k++)
            if (s[i].x[k] > xmax) xmax = s[i].x[k];
    }
    p->xmin = 0;                     // epochs: the exact range, ticks inside it
    p->xmax = xmax > 0 ? xmax : 1;
    if (lo > 0 && hi / lo > 30) {
        p->log_y = true;
        p->ymin = pow(10, floor(log10(lo)));
        p->ymax = pow(10, ceil(log10(hi)));
    } else {
        bool positive = !(lo < 0);
        p->ymin = positive ? 0 : lo;
        p->ymax = hi;
        nice_range(&p->ymin, &p->ymax);
        if (positive) p->ymin = 0;
    }
    draw_axes(f, p, "Loss", "epoch", p->log_y ? "loss (log scale)" : "loss", true);
    for (int i = 0; i < 3; i++) draw_series(f, p, &s[i]);
    draw_legend(f, p, s, 3);
}

static void plot_accuracy(FILE *f, TrainRun *r, Panel *p, const double *ep, const double *tra, const double *tea) {
    size_t n = r->n_history;
    Series s[2] = {
        { "train accuracy", COLOR_TRAIN, ep, tra, n, 2.2, true },
        { "test accuracy", COLOR_TEST, ep, tea, r->has_test ? n : 0, 2.2, true },
    };
    double lo = INFINITY, hi = -INFINITY;
    range_of(tra, n, &lo, &hi);
    if (r->has_test) range_of(tea, n, &lo, &hi);
    p->xmin = 0;
    p->xmax = n ? ep[n - 1] : 1;
    p->ymin = isfinite(lo) ? lo : 0;
    p->ymax = isfinite(hi) ? hi : 100;
    nice_range(&p->ymin, &p->ymax);
    if (p->ymax > 100) p->ymax = 100;
    if (p->ymin < 0) p->ymin = 0;
    if (p->ymax <= p->ymin) p->ymax = p->ymin + 1;
    draw_axes(f, p, "Accuracy", "epoch", "accuracy (%)", true);
    for (int i = 0; i < 2; i++) draw_series(f, p, &s[i]);
    draw_legend(f, p, s, 2);
}

// The fitted curve of a 1-D regression model over its training data.
static void plot_curve(FILE *f, TrainRun *r, Panel *p) {
    const TrainData *d = &r->train;
    size_t stride = d->n > MAX_POINTS ? (d->n + MAX_POINTS - 1) / MAX_POINTS : 1;
    size_t n_pts = (d->n + stride - 1) / stride;
    double *dx = malloc(n_pts * sizeof *dx), *dy = malloc(n_pts * sizeof *dy);
    float *gx = malloc(CURVE_RES * sizeof *gx), *gy = malloc(CURVE_RES * sizeof *gy);
    double *cx = malloc(CURVE_RES * sizeof *cx), *cy = malloc(CURVE_RES * sizeof *cy);
    if (!dx || !dy || !gx || !gy || !cx || !cy) goto done;
    double xlo = INFINITY, xhi = -INFINITY;
    for (size_t i = 0; i < d->n; i++) {
        if (d->x[i] < xlo) xlo = d->x[i];
        if (d->x[i] > xhi) xhi = d->x[i];
    }
    for (size_t i = 0, k = 0; i < d->n; i += stride, k++) {
        dx[k] = d->x[i];
        dy[k] = d->y[i];
    }
    if (!(xhi > xlo)) { xlo -= 1; xhi += 1; }
    for (int i = 0; i < CURVE_RES; i++) gx[i] = (float)(xlo + (xhi - xlo) * i / (CURVE_RES - 1));
    r->info->predict(r->model, gx, gy, CURVE_RES);
    for (int i = 0; i < CURVE_RES; i++) {
        cx[i] = gx[i];
        cy[i] = gy[i];
    }
    Series s[2] = {
        { "training data", COLOR_DATA, dx, dy, n_pts, 0, false },
        { "model prediction", COLOR_FIT, cx, cy, CURVE_RES, 2.5, false },
    };
    double lo = INFINITY, hi = -INFINITY;
    range_of(dy, n_pts, &lo, &hi);
    range_of(cy, CURVE_RES, &lo, &hi);
    p->xmin = xlo;                   // the data's range: the curve spans the panel
    p->xmax = xhi;
    p->ymin = lo;
    p->ymax = hi;
    nice_range(&p->ymin, &p->ymax);
    draw_axes(f, p, "Fitted curve", "x (input)", "y (target, prediction)", false);
    fprintf(f, "<svg x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" viewBox=\"%.1f %.1f %d %d\" overflow=\"hidden\">\n",
            p->x0, p->y0, PANEL_W, PANEL_H, p->x0, p->y0, PANEL_W, PANEL_H);
    for (int i = 0; i < 2; i++) draw_series(f, p, &s[i]);
    fprintf(f, "</svg>\n");
    draw_legend(f, p, s, 2);
done:
    free(dx);
    free(dy);
    free(gx);
    free(gy);
    free(cx);
    free(cy);
}

bool train_plot(TrainRun *r, const char *path) {
    const nnc_model_info *info = r->info;
    bool curve = info->input_size == 1 && info->target_size == 1 && info->output_size == 1;
    int n_panels = 1 + (r->classify || curve);   // a 1-D model shows its curve, not its accuracy
    int width = n_panels * (MARGIN_L + PANEL_W + MARGIN_R) + 20;
    int height = MARGIN_T + PANEL_H + MARGIN_B + 10;

    char *tmp = nn_format(&r->arena, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "nnc: error: cannot write the plot '%s': %m\n", path);
        return false;
    }
    size_t n = r->n_history;
    double *ep = nn_alloc_array(&r->arena, n + 1, sizeof(double));
    double *tr = nn_alloc_array(&r->arena, n + 1, sizeof(double));
    double *te = nn_alloc_array(&r->arena, n + 1, sizeof(double));
    double *tra = nn_alloc_array(&r->arena, n + 1, sizeof(double));
    double *tea = nn_alloc_array(&r->arena, n + 1, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        ep[i] = (double)r->history[i].epoch;
        tr[i] = r->history[i].train_loss;
        te[i] = r->history[i].test_loss;
        tra[i] = 100 * r->history[i].train_acc;
        tea[i] = 100 * r->history[i].test_acc;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n", width, height, width, height);
    fprintf(f, "<style>text{fill:#222}.tick{font-size:11px}.label{font-size:13px}"
               ".ptitle{font-size:14px;font-weight:bold}.legend{font-size:12px}"
               ".title{font-size:18px;font-weight:bold}.sub{font-size:12px;fill:#555}</style>\n");
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" class=\"title\">Training ", width / 2);
    xml_text(f, info->name ? info->name : "model");
    fprintf(f, "</text>\n<text x=\"%d\" y=\"47\" text-anchor=\"middle\" class=\"sub\">", width / 2);
    char sub[256];
    snprintf(sub, sizeof sub, "%zu parameters, %zu training samples, batch %zu, seed %llu, %lld epoch%s",
             info->param_count, r->train.n, r->state.batch, (unsigned long long)r->state.seed,
             (long long)r->state.epoch, r->state.epoch == 1 ? "" : "s");
    xml_text(f, sub);
    if (n && r->classify && r->has_test) fprintf(f, ", final test accuracy %.2f%%", tea[n - 1]);
    fprintf(f, "</text>\n");

    Panel p = { .x0 = MARGIN_L + 10, .y0 = MARGIN_T };
    plot_loss(f, r, &p, ep, tr, te);
    if (n_panels > 1) {
        Panel q = { .x0 = p.x0 + PANEL_W + MARGIN_R + MARGIN_L, .y0 = MARGIN_T };
        if (curve) plot_curve(f, r, &q);
        else plot_accuracy(f, r, &q, ep, tra, tea);
    }
    fprintf(f, "</svg>\n");
    bool ok = !ferror(f);
    if (fclose(f) || !ok || rename(tmp, path)) {
        fprintf(stderr, "nnc: error: cannot write the plot '%s': %m\n", path);
        remove(tmp);
        return false;
    }
    return true;
}
