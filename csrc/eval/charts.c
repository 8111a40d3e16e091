/* Distribution charts (include/qbert/metrics.h): histograms and box plots of groups of
 * numbers, such as text lengths per split and per label. */
#include "qbert/metrics.h"
#include "eval/svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A sorted copy of a series' values; NULL when out of memory. */
static double *sorted_copy(const qb_series *s)
{
    double *v = malloc((size_t)(s->n ? s->n : 1) * sizeof *v);
    if (!v) return NULL;
    memcpy(v, s->values, (size_t)s->n * sizeof *v);
    qb_sort_doubles(v, s->n);
    return v;
}

/* The largest value over all series (0 when they are empty). */
static double largest(const qb_series *s, int n_series)
{
    double m = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) m = fmax(m, s[k].values[i]);
    return m;
}

/* An axis step of 1, 2 or 5 times a power of ten giving about `ticks` ticks to vmax. */
static double nice_step(double vmax, int ticks)
{
    const double raw = vmax / ticks, p = pow(10, floor(log10(raw > 0 ? raw : 1)));
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

/* The x axis under a plot from x0 (value 0) to x0 + w (value vmax), at y. */
static void x_axis(qb_strbuf *b, double x0, double w, double y, double vmax, const char *label)
{
    const double step = nice_step(vmax, 6);
    qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\"/>\n", x0, y, x0 + w, y);
    for (double v = 0; v <= vmax * 1.0001; v += step) {
        const double x = x0 + w * v / vmax;
        qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                     x, y, x, y + 4, x, y + 16, v);
    }
    qb_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">", x0 + w / 2, y + 32);
    qb_sb_escaped(b, label);
    qb_sb_printf(b, "</text>\n");
}

char *qb_histogram_svg(const char *title, const char *x_label, const qb_series *s, int n_series, int bins)
{
    const double pad = 20, title_fs = 18, panel_h = 80, panel_gap = 34, plot_w = 560, x0 = pad + 50;
    const double vmax = fmax(largest(s, n_series), 1);
    /* integer widths when the values are counts, so that no bin holds more integers */
    double width = vmax / bins;
    if (width >= 1) width = ceil(width);
    const int nb = (int)ceil(vmax / width + 1e-9) + 1;  /* the last bin holds vmax itself */
    double *share = calloc((size_t)n_series * nb, sizeof *share), top = 0;
    if (!share) {
        qb_fail(QB_ENOMEM, "histogram SVG: out of memory");
        return NULL;
    }
    for (int k = 0; k < n_series; k++) {
        for (int i = 0; i < s[k].n; i++) share[(size_t)k * nb + (int)(s[k].values[i] / width)] += 1.0 / s[k].n;
        for (int j = 0; j < nb; j++) top = fmax(top, share[(size_t)k * nb + j]);
    }
    const double y0 = pad + title_fs + 24, height = y0 + n_series * (panel_h + panel_gap) + 40;
    qb_strbuf b = {0};
    qb_svg_open(&b, x0 + plot_w + pad + 150, height, title, pad, title_fs);
    const double xmax = nb * width;
    for (int k = 0; k < n_series; k++) {
        const double py = y0 + k * (panel_h + panel_gap), base = py + panel_h;
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">", x0, py - 6);
        qb_sb_escaped(&b, s[k].name);
        qb_sb_printf(&b, "</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555555\">n = %d",
                     x0 + plot_w + 10, py + 14, s[k].n);
        double *sv = s[k].n ? sorted_copy(&s[k]) : NULL;  /* a label a split lacks has no median */
        if (sv) qb_sb_printf(&b, ", median %g", qb_percentile_sorted(sv, s[k].n, 50));
        else if (s[k].n) b.failed = true;
        free(sv);
        qb_sb_printf(&b, "</text>\n");
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.1f%%</text>\n"
                         "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\"/>\n",
                     x0 - 4, py + 10, 100 * top, x0, py, x0, base);
        for (int j = 0; j < nb; j++) {
            const double h = panel_h * share[(size_t)k * nb + j] / top;
            if (h > 0)
                qb_sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#6baed6\" "
                                 "stroke=\"#ffffff\" stroke-width=\"0.5\"/>\n",
                             x0 + plot_w * j * width / xmax, base - h, plot_w * width / xmax, h);
        }
        x_axis(&b, x0, plot_w, base, xmax, k == n_series - 1 ? x_label : "");
    }
    qb_sb_printf(&b, "</svg>\n");
    free(share);
    return qb_sb_finish(&b, "histogram SVG");
}

/* One box of qb_boxplot_svg at row y (its centre), x of a value: x0 + v * scale. */
static void box(qb_strbuf *b, const qb_series *s, const double *v, double x0, double scale, double y, double h)
{
    const int n = s->n;
    const double q1 = qb_percentile_sorted(v, n, 25), q2 = qb_percentile_sorted(v, n, 50);
    const double q3 = qb_percentile_sorted(v, n, 75), fence = 1.5 * (q3 - q1);
    double lo = q1, hi = q3, sum = 0;
    for (int i = 0; i < n; i++) {
        sum += v[i];
        if (v[i] >= q1 - fence) lo = fmin(lo, v[i]);
        if (v[i] <= q3 + fence) hi = fmax(hi, v[i]);
    }
#define X(value) (x0 + (value) * scale)
    qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", X(lo), y, X(hi), y);
    qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", X(lo), y - h / 4,
                 X(lo), y + h / 4);
    qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", X(hi), y - h / 4,
                 X(hi), y + h / 4);
    qb_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#c6dbef\" stroke=\"#08306b\"/>\n",
                 X(q1), y - h / 2, fmax((q3 - q1) * scale, 1), h);
    qb_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#08306b\" stroke-width=\"2\"/>\n",
                 X(q2), y - h / 2, X(q2), y + h / 2);
    for (int i = 0; i < n; i++)  /* outliers; equal values drawn once */
        if ((v[i] < lo || v[i] > hi) && (i == 0 || v[i] != v[i - 1]))
            qb_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"none\" stroke=\"#555555\"/>\n", X(v[i]), y);
    qb_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d94801\"/>\n", X(sum / n), y);
#undef X
}

char *qb_boxplot_svg(const char *title, const char *x_label, const qb_series *s, int n_series)
{
    const double pad = 20, title_fs = 18, row_h = 36, plot_w = 560;
    double name_w = 0;
    for (int k = 0; k < n_series; k++) name_w = fmax(name_w, qb_est_width(s[k].name, 13));
    const double x0 = pad + name_w + 12, y0 = pad + title_fs + 30, vmax = fmax(largest(s, n_series), 1);
    const double height = y0 + n_series * row_h + 60, scale = plot_w / vmax;
    qb_strbuf b = {0};
    qb_svg_open(&b, x0 + plot_w + pad + 10, height, title, pad, title_fs);
    qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555555\">box: 25th-75th percentile, line: "
                     "median, dot: mean, whiskers: 1.5 IQR, circles: beyond</text>\n", x0, y0 - 12);
    for (int k = 0; k < n_series; k++) {
        const double y = y0 + k * row_h + row_h / 2;
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"end\">", x0 - 10, y + 4);
        qb_sb_escaped(&b, s[k].name);
        qb_sb_printf(&b, "</text>\n");
        double *v = s[k].n ? sorted_copy(&s[k]) : NULL;
        if (v) box(&b, &s[k], v, x0, scale, y, row_h * 0.55);
        else if (s[k].n) b.failed = true;
        free(v);
    }
    x_axis(&b, x0, plot_w, y0 + n_series * row_h + 4, vmax, x_label);
    qb_sb_printf(&b, "</svg>\n");
    return qb_sb_finish(&b, "box plot SVG");
}

char *qb_diverging_svg(const char *title, const char *const *names, const double *values, int n)
{
    const double pad = 20, title_fs = 16, bar_h = 18, gap = 6, half = 220;
    double name_w = 0, vmax = 0;
    for (int i = 0; i < n; i++) name_w = fmax(name_w, qb_est_width(names[i], 12)), vmax = fmax(vmax, fabs(values[i]));
    if (!(vmax > 0)) vmax = 1;
    /* 70: room for a value left of the longest negative bar */
    const double x0 = pad + name_w + 10, zero = x0 + 70 + half, y0 = pad + title_fs + 16;
    qb_strbuf b = {0};
    qb_svg_open(&b, zero + half + 60 + pad, y0 + n * (bar_h + gap) + pad, title, pad, title_fs);
    qb_sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\"/>\n", zero, y0 - 4, zero,
                 y0 + n * (bar_h + gap));
    for (int i = 0; i < n; i++) {
        const double y = y0 + i * (bar_h + gap), w = fmax(half * fabs(values[i]) / vmax, 1);
        const bool pos = values[i] >= 0;
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">", x0, y + bar_h * 0.7);
        qb_sb_escaped(&b, names[i]);
        qb_sb_printf(&b, "</text>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                     pos ? zero : zero - w, y, w, bar_h, pos ? "#31a354" : "#de2d26");
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"%s\">%+.3g</text>\n",
                     pos ? zero + w + 4 : zero - w - 4, y + bar_h * 0.7, pos ? "start" : "end", values[i]);
    }
    qb_sb_printf(&b, "</svg>\n");
    return qb_sb_finish(&b, "weights SVG");
}
