/* Reports of a qb_metrics: a classification_report-style text table, JSON (cJSON)
 * and a standalone SVG heat map of the confusion matrix.
 *
 * Label names may be NULL, in which case the decimal class ids stand in. Names are
 * UTF-8; text columns are aligned by code points, which is right for the Latin
 * scripts of the label sets we meet (no double-width glyphs). */
#include "qbert/metrics.h"
#include "eval/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The name of class c: label_names[c], or its id written into buf. */
static const char *name_of(const char *const *label_names, int c, char buf[16])
{
    if (label_names) return label_names[c];
    snprintf(buf, 16, "%d", c);
    return buf;
}

/* Writes s right-aligned in a field of `width` code points. */
static void put_right(FILE *f, const char *s, int width)
{
    for (int pad = width - qb_text_width(s); pad > 0; pad--) fputc(' ', f);
    fputs(s, f);
}

/* ---- text table -------------------------------------------------------------------- */

/* One line of the table in sklearn's classification_report layout:
 * name right-aligned, then " %9.4f" three times and " %9d". */
static void print_row(FILE *f, const char *name, int width, double p, double r, double f1,
                      int64_t support)
{
    put_right(f, name, width);
    fprintf(f, "  %9.4f %9.4f %9.4f %9lld\n", p, r, f1, (long long)support);
}

void qb_metrics_print(FILE *f, const qb_metrics *m, const char *const *label_names)
{
    const int K = m->num_labels;
    char buf[16];

    int width = qb_text_width("weighted avg");
    for (int c = 0; c < K; c++) {
        int w = qb_text_width(name_of(label_names, c, buf));
        if (w > width) width = w;
    }

    put_right(f, "", width);
    fprintf(f, "  %9s %9s %9s %9s\n\n", "precision", "recall", "f1-score", "support");
    for (int c = 0; c < K; c++)
        print_row(f, name_of(label_names, c, buf), width, m->precision[c], m->recall[c], m->f1[c],
                  m->support[c]);
    fputc('\n', f);
    put_right(f, "accuracy", width);
    fprintf(f, "  %9s %9s %9.4f %9d\n", "", "", m->accuracy, m->n);
    print_row(f, "macro avg", width, m->macro_p, m->macro_r, m->macro_f1, m->n);
    print_row(f, "weighted avg", width, m->weighted_p, m->weighted_r, m->weighted_f1, m->n);

    /* confusion matrix: every column as wide as the widest name or count */
    const char *corner = "gold \\ predicted";
    int row_w = qb_text_width(corner), col_w = 5;
    for (int c = 0; c < K; c++) {
        int w = qb_text_width(name_of(label_names, c, buf));
        if (w > row_w) row_w = w;
        if (w > col_w) col_w = w;
    }
    for (size_t i = 0; i < (size_t)K * K; i++) {
        int w = snprintf(buf, sizeof buf, "%lld", (long long)m->confusion[i]);
        if (w > col_w) col_w = w;
    }
    fprintf(f, "\nconfusion matrix (rows: gold, columns: predicted)\n");
    put_right(f, corner, row_w);
    for (int c = 0; c < K; c++) {
        fputs("  ", f);
        put_right(f, name_of(label_names, c, buf), col_w);
    }
    fputc('\n', f);
    for (int g = 0; g < K; g++) {
        put_right(f, name_of(label_names, g, buf), row_w);
        for (int p = 0; p < K; p++)
            fprintf(f, "  %*lld", col_w, (long long)m->confusion[(size_t)g * K + p]);
        fputc('\n', f);
    }

    fprintf(f, "\naccuracy %.4f | weighted precision %.4f recall %.4f f1 %.4f | ", m->accuracy,
            m->weighted_p, m->weighted_r, m->weighted_f1);
    if (isnan(m->avg_confidence))
        fprintf(f, "avg confidence n/a | n %d\n", m->n);
    else
        fprintf(f, "avg confidence %.4f | n %d\n", m->avg_confidence, m->n);
}

/* ---- JSON ---------------------------------------------------------------------------- */

cJSON *qb_metrics_to_json(const qb_metrics *m, const char *const *label_names)
{
    const int K = m->num_labels;
    char buf[16], buf2[16];

    /* names become object keys under per_class: a duplicate would silently shadow a class */
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) {
            const char *na = name_of(label_names, a, buf);
            if (strcmp(na, name_of(label_names, b, buf2)) == 0) {
                qb_fail(QB_EINVAL, "metrics JSON: label %d and label %d are both named \"%s\"", a,
                        b, na);
                return NULL;
            }
        }

    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (!cJSON_AddNumberToObject(root, "accuracy", m->accuracy)) goto oom;
    if (!cJSON_AddNumberToObject(root, "precision_weighted", m->weighted_p)) goto oom;
    if (!cJSON_AddNumberToObject(root, "recall_weighted", m->weighted_r)) goto oom;
    if (!cJSON_AddNumberToObject(root, "f1_weighted", m->weighted_f1)) goto oom;
    if (!cJSON_AddNumberToObject(root, "precision_macro", m->macro_p)) goto oom;
    if (!cJSON_AddNumberToObject(root, "recall_macro", m->macro_r)) goto oom;
    if (!cJSON_AddNumberToObject(root, "f1_macro", m->macro_f1)) goto oom;
    if (isnan(m->avg_confidence)) {
        if (!cJSON_AddNullToObject(root, "avg_confidence")) goto oom;
    } else {
        if (!cJSON_AddNumberToObject(root, "avg_confidence", m->avg_confidence)) goto oom;
    }
    if (!cJSON_AddNumberToObject(root, "n", m->n)) goto oom;

    cJSON *per_class = cJSON_AddObjectToObject(root, "per_class");
    if (!per_class) goto oom;
    for (int c = 0; c < K; c++) {
        cJSON *cls = cJSON_AddObjectToObject(per_class, name_of(label_names, c, buf));
        if (!cls) goto oom;
        if (!cJSON_AddNumberToObject(cls, "precision", m->precision[c])) goto oom;
        if (!cJSON_AddNumberToObject(cls, "recall", m->recall[c])) goto oom;
        if (!cJSON_AddNumberToObject(cls, "f1", m->f1[c])) goto oom;
        if (!cJSON_AddNumberToObject(cls, "support", (double)m->support[c])) goto oom;
    }

    cJSON *cm = cJSON_AddObjectToObject(root, "confusion_matrix");
    if (!cm) goto oom;
    cJSON *labels = cJSON_AddArrayToObject(cm, "labels");
    if (!labels) goto oom;
    for (int c = 0; c < K; c++) {
        cJSON *s = cJSON_CreateString(name_of(label_names, c, buf));
        if (!s || !cJSON_AddItemToArray(labels, s)) {
            cJSON_Delete(s);
            goto oom;
        }
    }
    cJSON *matrix = cJSON_AddArrayToObject(cm, "matrix");
    if (!matrix) goto oom;
    for (int g = 0; g < K; g++) {
        cJSON *row = cJSON_CreateArray();
        if (!row || !cJSON_AddItemToArray(matrix, row)) {
            cJSON_Delete(row);
            goto oom;
        }
        for (int p = 0; p < K; p++) {
            /* counts are < 2^53, so a JSON number (double) holds them exactly */
            cJSON *v = cJSON_CreateNumber((double)m->confusion[(size_t)g * K + p]);
            if (!v || !cJSON_AddItemToArray(row, v)) {
                cJSON_Delete(v);
                goto oom;
            }
        }
    }
    return root;

oom:
    cJSON_Delete(root);
    qb_fail(QB_ENOMEM, "metrics JSON: out of memory building the report");
    return NULL;
}

qb_status qb_json_write_file(const char *path, const cJSON *json)
{
    char *text = cJSON_Print(json);
    if (!text) return qb_fail(QB_ENOMEM, "%s: out of memory printing JSON", path);
    size_t len = strlen(text);
    /* cJSON_Print leaves no final newline; text files end with one */
    char *out = realloc(text, len + 2);
    if (!out) {
        free(text);
        return qb_fail(QB_ENOMEM, "%s: out of memory printing JSON", path);
    }
    out[len] = '\n';
    out[len + 1] = '\0';
    qb_status st = qb_write_file_atomic(path, out, len + 1);
    free(out);
    return st;
}

/* ---- SVG ------------------------------------------------------------------------------- */

/* Colour scale white -> blue: three stops of matplotlib's "Blues" map, linear in RGB
 * between them; t in [0, 1]. */
static void blues(double t, int rgb[3])
{
    static const int stops[3][3] = {{247, 251, 255}, {107, 174, 214}, {8, 48, 107}};
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    int i = t < 0.5 ? 0 : 1;
    double u = (t - 0.5 * i) * 2.0;
    for (int k = 0; k < 3; k++)
        rgb[k] = (int)lround(stops[i][k] + (stops[i + 1][k] - stops[i][k]) * u);
}

/* Dark text on light cells, white text on dark ones (relative luminance, Rec. 709). */
static const char *text_colour(const int rgb[3])
{
    double lum = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255.0;
    return lum < 0.5 ? "#ffffff" : "#1b1b1b";
}


char *qb_confusion_svg(const qb_metrics *m, const char *const *label_names, const char *title)
{
    const int K = m->num_labels;
    char buf[16];

    /* cells shrink as the class count grows so that the image stays a sensible size */
    const double cell = K <= 6 ? 96 : K <= 12 ? 68 : 48;
    const double count_fs = K <= 6 ? 20 : K <= 12 ? 15 : 12;
    const double pct_fs = K <= 6 ? 13 : K <= 12 ? 11 : 9;
    const double label_fs = 14, axis_fs = 15, title_fs = 18, sub_fs = 13, legend_fs = 11;
    const double pad = 20;

    double max_name = 0;
    for (int c = 0; c < K; c++) {
        double w = qb_est_width(name_of(label_names, c, buf), label_fs);
        if (w > max_name) max_name = w;
    }
    /* column names are written under the grid, turned 45 degrees when too wide for a cell */
    const bool rotate_cols = max_name > cell - 8;

    const double grid_x = pad + axis_fs + 14 + max_name + 10;
    const double grid_y = title ? 78 : 54;
    const double grid = cell * K;
    const double col_names_h = rotate_cols ? max_name * 0.7072 + label_fs + 10 : label_fs + 14;
    const double legend_x = grid_x + grid + 24, legend_w = 16;
    double width = legend_x + legend_w + 6 + qb_est_width("100%", legend_fs) + pad;
    if (title && qb_est_width(title, title_fs) + 2 * pad > width)
        width = qb_est_width(title, title_fs) + 2 * pad;
    const double height = grid_y + grid + col_names_h + axis_fs + 16 + pad;

    qb_strbuf b = {0};
    qb_sb_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "viewBox=\"0 0 %.0f %.0f\" font-family=\"%s\">\n",
              width, height, width, height, SVG_FONT);
    if (title) {
        qb_sb_printf(&b, "<title>");
        qb_sb_escaped(&b, title);
        qb_sb_printf(&b, "</title>\n");
    }
    qb_sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    qb_sb_printf(&b,
              "<defs><linearGradient id=\"qb-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
              "<stop offset=\"0\" stop-color=\"#f7fbff\"/>"
              "<stop offset=\"0.5\" stop-color=\"#6baed6\"/>"
              "<stop offset=\"1\" stop-color=\"#08306b\"/></linearGradient></defs>\n");

    /* title and a subtitle with the headline numbers */
    double y = 30;
    if (title) {
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" font-weight=\"bold\" "
                      "fill=\"#1b1b1b\">", pad, y, title_fs);
        qb_sb_escaped(&b, title);
        qb_sb_printf(&b, "</text>\n");
        y += 22;
    }
    qb_sb_printf(&b,
              "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#555555\">n = %d, "
              "accuracy %.4f, weighted F1 %.4f</text>\n",
              pad, y, sub_fs, m->n, m->accuracy, m->weighted_f1);

    /* cells: (K, K), rows = gold, columns = predicted, coloured by the row share */
    for (int g = 0; g < K; g++) {
        int64_t row_total = m->support[g];
        for (int p = 0; p < K; p++) {
            int64_t count = m->confusion[(size_t)g * K + p];
            double x = grid_x + p * cell, cy = grid_y + g * cell;
            int rgb[3] = {240, 240, 240};  /* grey: a class with no gold samples has no shares */
            if (row_total > 0) blues((double)count / row_total, rgb);
            const char *fg = text_colour(rgb);
            qb_sb_printf(&b,
                      "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                      "fill=\"#%02x%02x%02x\" stroke=\"#d0d7de\" stroke-width=\"1\"/>\n",
                      x, cy, cell, cell, rgb[0], rgb[1], rgb[2]);
            qb_sb_printf(&b,
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.0f\" "
                      "font-weight=\"bold\" fill=\"%s\">%lld</text>\n",
                      x + cell / 2, cy + cell / 2 + count_fs * 0.1, count_fs, fg, (long long)count);
            if (row_total > 0)
                qb_sb_printf(&b,
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.0f\" "
                          "fill=\"%s\">%.1f%%</text>\n",
                          x + cell / 2, cy + cell / 2 + count_fs * 0.1 + pct_fs + 4, pct_fs, fg,
                          100.0 * (double)count / row_total);
            else
                qb_sb_printf(&b,
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.0f\" "
                          "fill=\"%s\">no samples</text>\n",
                          x + cell / 2, cy + cell / 2 + count_fs * 0.1 + pct_fs + 4, pct_fs, fg);
        }
    }
    qb_sb_printf(&b,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
              "stroke=\"#8c959f\" stroke-width=\"1\"/>\n",
              grid_x, grid_y, grid, grid);

    /* row names (gold) right-aligned left of the grid */
    for (int g = 0; g < K; g++) {
        qb_sb_printf(&b,
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%.0f\" "
                  "fill=\"#1b1b1b\">",
                  grid_x - 8, grid_y + g * cell + cell / 2 + label_fs * 0.35, label_fs);
        qb_sb_escaped(&b, name_of(label_names, g, buf));
        qb_sb_printf(&b, "</text>\n");
    }
    /* column names (predicted) under the grid */
    for (int p = 0; p < K; p++) {
        double cx = grid_x + p * cell + cell / 2, ty = grid_y + grid + label_fs + 6;
        if (rotate_cols)
            qb_sb_printf(&b,
                      "<text transform=\"translate(%.1f,%.1f) rotate(-45)\" text-anchor=\"end\" "
                      "font-size=\"%.0f\" fill=\"#1b1b1b\">",
                      cx + label_fs * 0.35, ty - label_fs * 0.5, label_fs);
        else
            qb_sb_printf(&b,
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.0f\" "
                      "fill=\"#1b1b1b\">",
                      cx, ty, label_fs);
        qb_sb_escaped(&b, name_of(label_names, p, buf));
        qb_sb_printf(&b, "</text>\n");
    }
    /* axis titles */
    qb_sb_printf(&b,
              "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.0f\" "
              "font-weight=\"bold\" fill=\"#1b1b1b\">predicted</text>\n",
              grid_x + grid / 2, grid_y + grid + col_names_h + axis_fs + 4, axis_fs);
    qb_sb_printf(&b,
              "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" "
              "font-size=\"%.0f\" font-weight=\"bold\" fill=\"#1b1b1b\">gold</text>\n",
              pad + axis_fs, grid_y + grid / 2, axis_fs);

    /* colour legend: the row share scale */
    qb_sb_printf(&b,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"url(#qb-scale)\" "
              "stroke=\"#8c959f\" stroke-width=\"1\"/>\n",
              legend_x, grid_y, legend_w, grid);
    qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#555555\">row %%</text>\n",
              legend_x, grid_y - 8, legend_fs);
    static const int ticks[3] = {100, 50, 0};
    for (int i = 0; i < 3; i++)
        qb_sb_printf(&b,
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#555555\">%d%%</text>\n",
                  legend_x + legend_w + 5, grid_y + grid * i / 2.0 + legend_fs * 0.35, legend_fs,
                  ticks[i]);
    qb_sb_printf(&b, "</svg>\n");

    return qb_sb_finish(&b, "confusion SVG");
}

/* Decimals for every value of a panel, from its largest: about 3 significant digits. */
static int panel_decimals(double vmax) { return vmax >= 100 ? 0 : vmax >= 10 ? 1 : vmax >= 1 ? 2 : 3; }

/* The panel's axis: [lo, lo + span) over the bar width. zoom starts it below the
 * smallest value by half the values' range (at least 1% of the largest), rounded. */
static void panel_axis(const qb_bar_panel *p, int n, double *lo, double *span)
{
    double vmin = INFINITY, vmax = 0;
    for (int r = 0; r < n; r++) {
        const double hi = p->high && isfinite(p->high[r]) ? p->high[r] : p->values[r];
        if (isfinite(p->values[r])) vmin = fmin(vmin, p->values[r]), vmax = fmax(vmax, fmax(p->values[r], hi));
    }
    *lo = 0;
    if (p->zoom && isfinite(vmin) && vmin > 0) {
        const double margin = fmax(0.5 * (vmax - vmin), 0.01 * vmax), step = pow(10, floor(log10(margin)));
        *lo = fmax(0, floor((vmin - margin) / step) * step);
    }
    *span = vmax > *lo ? vmax - *lo : 1;
}

char *qb_bars_svg(const char *title, const char *const *rows, int n_rows, const qb_bar_panel *panels, int n_panels)
{
    const double bar_h = 22, gap = 8, panel_w = 230, panel_gap = 36, pad = 20;
    const double label_fs = 13, value_fs = 11, panel_fs = 14, title_fs = 18, note_fs = 10;
    double label_w = 0;
    for (int r = 0; r < n_rows; r++) label_w = fmax(label_w, qb_est_width(rows[r], label_fs));
    const double x0 = pad + label_w + 10, y0 = pad + (title ? title_fs + 14 : 0) + panel_fs + 12;
    const double width = x0 + n_panels * (panel_w + panel_gap) + pad;
    const double height = y0 + n_rows * (bar_h + gap) + pad + note_fs + 4;
    qb_strbuf b = {0};
    qb_svg_open(&b, width, height, title, pad, title_fs);
    for (int r = 0; r < n_rows; r++) {
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" text-anchor=\"end\">", x0 - 10,
                  y0 + r * (bar_h + gap) + bar_h * 0.5 + label_fs * 0.35, label_fs);
        qb_sb_escaped(&b, rows[r]);
        qb_sb_printf(&b, "</text>\n");
    }
    const double bottom = y0 + n_rows * (bar_h + gap) - gap;
    for (int p = 0; p < n_panels; p++) {
        const qb_bar_panel *pn = &panels[p];
        const double px = x0 + p * (panel_w + panel_gap);
        double lo, span, vmax = 0;
        panel_axis(pn, n_rows, &lo, &span);
        for (int r = 0; r < n_rows; r++)
            if (isfinite(pn->values[r])) vmax = fmax(vmax, pn->values[r]);
        const int dec = pn->percent ? 1 : panel_decimals(vmax);
        const double scale = (panel_w - 60) / span;  /* room on the right for the value */
        qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" font-weight=\"bold\">", px, y0 - 12, panel_fs);
        qb_sb_escaped(&b, pn->name);
        qb_sb_printf(&b, "</text>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\"/>\n", px,
                  y0 - 4, px, bottom + 4);
        if (lo > 0)  /* a zoomed axis says where it starts */
            qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#888888\">axis from %.*f%s</text>\n",
                      px, bottom + 4 + note_fs + 2, note_fs, pn->percent ? dec : dec + 1, pn->percent ? 100 * lo : lo,
                      pn->percent ? "%" : "");
        for (int r = 0; r < n_rows; r++) {
            const double y = y0 + r * (bar_h + gap), v = pn->values[r];
            if (!isfinite(v)) {
                qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#888888\">n/a</text>\n", px + 4,
                          y + bar_h * 0.5 + value_fs * 0.35, value_fs);
                continue;
            }
            const double w = fmax((v - lo) * scale, 1.0);
            /* The first row is the baseline the others are compared with: darker. */
            qb_sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", px, y, w, bar_h,
                      r == 0 ? "#08306b" : "#6baed6");
            double end = px + w;
            if (pn->high && isfinite(pn->high[r]) && pn->high[r] > v) {  /* the whisker: to the p95 */
                end = px + (pn->high[r] - lo) * scale;
                qb_sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n"
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n",
                          px + w, y + bar_h / 2, end, y + bar_h / 2, end, y + 5, end, y + bar_h - 5);
            }
            qb_sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\">%.*f%s</text>\n", end + 4,
                      y + bar_h * 0.5 + value_fs * 0.35, value_fs, dec, pn->percent ? 100 * v : v,
                      pn->percent ? "%" : "");
        }
    }
    qb_sb_printf(&b, "</svg>\n");
    return qb_sb_finish(&b, "bar chart SVG");
}

qb_status qb_svg_write(const char *path, const char *svg)
{
    return qb_write_file_atomic(path, svg, strlen(svg));
}
