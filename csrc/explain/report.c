/* Comparing and writing explanations (include/qbert/explain.h): explanations.json,
 * explanations.html (each text's words highlighted by weight, the charts inline) and
 * text-N.svg. */
#include "qbert/explain.h"
#include "explain/internal.h"

#include "qbert/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Average ranks (1-based) of v (n): ties share the mean of their positions. */
static void average_ranks(const double *v, int n, double *rank)
{
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) below += v[j] < v[i], equal += v[j] == v[i];
        rank[i] = below + (equal + 1) / 2.0;
    }
}

static double pearson(const double *a, const double *b, int n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += a[i] / n, mb += b[i] / n;
    for (int i = 0; i < n; i++)
        sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

void qb_explain_compare(const qb_explanation *a, const qb_explanation *b, int top_k, qb_explain_agreement *out)
{
    const int n = a->words.n_words, k = top_k < n ? top_k : n;
    int *oa = malloc((size_t)n * sizeof *oa), *ob = malloc((size_t)n * sizeof *ob);
    double *ra = malloc((size_t)n * sizeof *ra), *rb = malloc((size_t)n * sizeof *rb);
    *out = (qb_explain_agreement){NAN, NAN};
    if (oa && ob && ra && rb && n == b->words.n_words && k > 0) {
        qb_by_magnitude(a->weights, n, oa), qb_by_magnitude(b->weights, n, ob);
        int common = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) common += oa[i] == ob[j];
        out->top_k_overlap = (double)common / k;
        average_ranks(a->weights, n, ra), average_ranks(b->weights, n, rb);
        out->spearman = pearson(ra, rb, n);
    }
    free(oa), free(ob), free(ra), free(rb);
}

/* ---- explanations.json ---- */

static cJSON *number_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* LIME's surrogate of class k: its words by |weight| (those its fit kept), intercept,
 * score, local prediction. */
static cJSON *lime_class_json(const qb_explanation *x, int k)
{
    const qb_lime_class *c = &x->lime[k];
    const int n = x->words.n_words;
    cJSON *o = cJSON_CreateObject(), *words = cJSON_AddArrayToObject(o, "words");
    int *order = malloc((size_t)n * sizeof *order);
    if (order) qb_by_magnitude(c->weights, n, order);
    for (int i = 0; order && i < n && c->weights[order[i]] != 0; i++) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddStringToObject(w, "word", x->words.words[order[i]]);
        cJSON_AddNumberToObject(w, "weight", c->weights[order[i]]);
        cJSON_AddItemToArray(words, w);
    }
    free(order);
    cJSON_AddNumberToObject(o, "intercept", c->intercept);
    cJSON_AddNumberToObject(o, "score", c->score);
    cJSON_AddNumberToObject(o, "local_pred", c->local_pred);
    return o;
}

static cJSON *one_json(const qb_explanation *x, const char *const *labels, const qb_explain_options *o)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "predicted", labels[x->predicted]);
    cJSON_AddStringToObject(e, "target", labels[x->target]);
    cJSON *p = cJSON_AddObjectToObject(e, "probabilities");
    for (int k = 0; k < x->num_labels; k++) cJSON_AddNumberToObject(p, labels[k], x->probs[k]);
    cJSON *w = cJSON_AddArrayToObject(e, "words");
    for (int i = 0; i < x->words.n_words; i++) {
        cJSON *o2 = cJSON_CreateObject();
        cJSON_AddStringToObject(o2, "word", x->words.words[i]);
        cJSON_AddNumberToObject(o2, "weight", x->weights[i]);
        cJSON_AddItemToArray(w, o2);
    }
    if (x->lime) {
        cJSON *c = cJSON_AddObjectToObject(e, "classes");
        for (int k = 0; k < x->num_labels; k++) cJSON_AddItemToObject(c, labels[k], lime_class_json(x, k));
    } else if (o->method == QB_EXPLAIN_IG) {
        cJSON_AddNumberToObject(e, "p_text", x->f_text);
        cJSON_AddNumberToObject(e, "p_baseline", x->f_baseline);
        cJSON_AddNumberToObject(e, "attribution_outside_words", x->outside_words);
        cJSON_AddItemToObject(e, "completeness_error", number_or_null(x->completeness));
    }
    return e;
}

static cJSON *all_json(const qb_explanation *a, const qb_explanation *b, const qb_explain_agreement *agree, int n,
                       const char *const *labels, const qb_explain_options *o, const char *model_a,
                       const char *model_b)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "method", qb_explain_method_name(o->method));
    cJSON_AddStringToObject(root, "model", model_a);
    if (b) cJSON_AddStringToObject(root, "compare", model_b);
    cJSON *opt = cJSON_AddObjectToObject(root, "options");
    cJSON_AddNumberToObject(opt, "samples", o->samples);
    cJSON_AddNumberToObject(opt, "top_k", o->top_k);
    cJSON_AddNumberToObject(opt, "steps", o->steps);
    cJSON_AddNumberToObject(opt, "kernel_width", o->kernel_width);
    cJSON_AddNumberToObject(opt, "seed", (double)o->seed);  /* exact below 2^53 */
    cJSON *texts = cJSON_AddArrayToObject(root, "texts");
    double overlap = 0, rho = 0, worst = 0;
    int n_rho = 0, same = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddItemToArray(texts, t);
        char *text = qb_text_words_join(&a[i].words, NULL);
        cJSON_AddStringToObject(t, "text", text ? text : "");
        free(text);
        cJSON_AddItemToObject(t, "explanation", one_json(&a[i], labels, o));
        worst = fmax(worst, isfinite(a[i].completeness) ? a[i].completeness : 0);
        if (!b) continue;
        cJSON_AddItemToObject(t, "compared", one_json(&b[i], labels, o));
        cJSON_AddItemToObject(t, "top_k_overlap", number_or_null(agree[i].top_k_overlap));
        cJSON_AddItemToObject(t, "spearman", number_or_null(agree[i].spearman));
        overlap += agree[i].top_k_overlap, same += a[i].predicted == b[i].predicted;
        if (isfinite(agree[i].spearman)) rho += agree[i].spearman, n_rho++;
    }
    cJSON *s = cJSON_AddObjectToObject(root, "summary");
    cJSON_AddNumberToObject(s, "texts", n);
    if (o->method == QB_EXPLAIN_IG) cJSON_AddNumberToObject(s, "completeness_error_max", worst);
    if (b) {
        cJSON_AddNumberToObject(s, "same_prediction", (double)same / n);
        cJSON_AddNumberToObject(s, "top_k_overlap_mean", overlap / n);
        cJSON_AddItemToObject(s, "spearman_mean", n_rho ? cJSON_CreateNumber(rho / n_rho) : cJSON_CreateNull());
    }
    return root;
}

/* ---- explanations.html and the charts ---- */

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* The text with each word's background green (toward the target class) or red
 * (against), its opacity the weight's share of the largest |weight|. */
static void highlighted(FILE *f, const qb_explanation *x)
{
    double vmax = 0;
    for (int i = 0; i < x->words.n_words; i++) vmax = fmax(vmax, fabs(x->weights[i]));
    fputs("<p class=\"text\">", f);
    for (int s = 0; s < x->words.n_segments; s++) {
        const int w = x->words.word_of[s];
        if (w < 0 || vmax == 0 || x->weights[w] == 0) {
            html_text(f, x->words.segments[s]);
            continue;
        }
        const double a = fabs(x->weights[w]) / vmax;
        fprintf(f, "<span style=\"background:rgba(%s,%.2f)\" title=\"%+.4g\">", x->weights[w] > 0 ? "49,163,84" : "222,45,38",
                0.15 + 0.75 * a, x->weights[w]);
        html_text(f, x->words.segments[s]);
        fputs("</span>", f);
    }
    fputs("</p>\n", f);
}

/* The top_k words by |weight| of x as a diverging bar chart (malloc'ed SVG). */
static char *chart(const qb_explanation *x, int top_k, const char *title)
{
    const int n = x->words.n_words;
    int *order = malloc((size_t)n * sizeof *order), m = 0;
    const char **names = malloc((size_t)n * sizeof *names);
    double *v = malloc((size_t)n * sizeof *v);
    char *svg = NULL;
    if (order && names && v) {
        qb_by_magnitude(x->weights, n, order);
        for (int i = 0; i < n && m < top_k; i++)
            if (x->weights[order[i]] != 0) names[m] = x->words.words[order[i]], v[m++] = x->weights[order[i]];
        svg = qb_diverging_svg(title, names, v, m);
    }
    free(order), free(names), free(v);
    return svg;
}

/* LIME: each class's own surrogate, a column of its top_k words per class, green
 * where a word raises that class's probability, red where it lowers it. */
static void html_classes(FILE *f, const qb_explanation *x, const char *const *labels, int top_k)
{
    const int n = x->words.n_words, K = x->num_labels, rows = top_k < n ? top_k : n;
    int *order = malloc((size_t)K * n * sizeof *order);
    if (!order) return;  /* the page goes without the table */
    fputs("<table class=\"classes\"><tr>", f);
    for (int k = 0; k < K; k++) {
        qb_by_magnitude(x->lime[k].weights, n, order + (size_t)k * n);
        fputs("<th>", f);
        html_text(f, labels[k]);
        fprintf(f, " (%.3f)</th>", x->probs[k]);
    }
    fputs("</tr>\n", f);
    for (int r = 0; r < rows; r++) {
        fputs("<tr>", f);
        for (int k = 0; k < K; k++) {
            const int w = order[(size_t)k * n + r];
            const double v = x->lime[k].weights[w];
            if (v == 0) {
                fputs("<td></td>", f);
                continue;
            }
            fprintf(f, "<td style=\"background:%s\">", v > 0 ? "#c7e9c0" : "#fcbba1");
            html_text(f, x->words.words[w]);
            fprintf(f, " %+.3f</td>", v);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    free(order);
}

static void html_one(FILE *f, const qb_explanation *x, const char *const *labels, const char *model, const char *svg,
                     int top_k)
{
    fprintf(f, "<p class=\"model\">");
    html_text(f, model);
    fprintf(f, ": <b>");
    html_text(f, labels[x->predicted]);
    fprintf(f, "</b> (%.3f)", x->probs[x->predicted]);
    if (x->target != x->predicted) {
        fprintf(f, "; explained: <b>");
        html_text(f, labels[x->target]);
        fprintf(f, "</b> (%.3f)", x->probs[x->target]);
    }
    if (isfinite(x->completeness) && x->f_text != 0)
        fprintf(f, "; p(text) - p(baseline) = %.4f, completeness error %.2f%%", x->f_text - x->f_baseline,
                100 * x->completeness);
    fprintf(f, "</p>\n");
    highlighted(f, x);
    if (svg) fprintf(f, "<figure>%s</figure>\n", svg);
    if (x->lime) {
        fputs("<p class=\"model\">Each class's own LIME surrogate (its top words):</p>\n", f);
        html_classes(f, x, labels, top_k);
    }
}

qb_status qb_explain_write(const char *dir, const qb_explanation *a, const qb_explanation *b,
                           const qb_explain_agreement *agree, int n, const char *const *labels,
                           const qb_explain_options *o, const char *model_a, const char *model_b)
{
    qb_status st = qb_mkdirs(dir);
    char path[4096];
    cJSON *json = st ? NULL : all_json(a, b, agree, n, labels, o, model_a, model_b);
    if (!st) st = qb_path_join(path, sizeof path, dir, "explanations.json");
    if (!st) st = json ? qb_json_write_file(path, json) : qb_fail(QB_ENOMEM, "explain: out of memory");
    cJSON_Delete(json);
    char *html = NULL;
    size_t len = 0;
    FILE *f = st ? NULL : open_memstream(&html, &len);
    if (!st && !f) st = qb_fail(QB_ENOMEM, "explain: out of memory");
    if (f)
        fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>qbert explain</title><style>body{"
                   "font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#1b1b1b}"
                   ".text{font-size:17px;line-height:1.9}.model{color:#555}h2{border-top:1px solid #ccc;padding-top:"
                   ".6em}table.classes{border-collapse:collapse;font-size:14px;margin-bottom:1.2em}.classes td,"
                   ".classes th{padding:2px 10px;text-align:left}</style></head><body>\n<h1>Explanations (%s)</h1>\n"
                   "<p>Green: toward the explained class (the predicted one unless chosen), red: against it; the "
                   "stronger the colour, the larger the weight.</p>\n",
                qb_explain_method_name(o->method));
    for (int i = 0; i < n && f && !st; i++) {
        char title[96], title_b[96], file[64];
        snprintf(title, sizeof title, "text %d: %s, toward %s", i + 1, qb_explain_method_name(o->method),
                 labels[a[i].target]);
        if (b)
            snprintf(title_b, sizeof title_b, "text %d, compared model: %s, toward %s", i + 1,
                     qb_explain_method_name(o->method), labels[b[i].target]);
        char *svg = chart(&a[i], o->top_k, title), *svg_b = b ? chart(&b[i], o->top_k, title_b) : NULL;
        if (!svg || (b && !svg_b)) st = qb_fail(QB_ENOMEM, "explain: out of memory drawing text %d", i + 1);
        snprintf(file, sizeof file, "text-%d.svg", i + 1);
        if (!st) st = qb_path_join(path, sizeof path, dir, file);
        if (!st) st = qb_svg_write(path, svg);
        fprintf(f, "<h2>Text %d</h2>\n", i + 1);
        if (!st) html_one(f, &a[i], labels, model_a, svg, o->top_k);
        if (!st && b) {
            html_one(f, &b[i], labels, model_b, svg_b, o->top_k);
            fprintf(f, "<p>top-%d overlap %.2f, Spearman %.3f</p>\n", o->top_k, agree[i].top_k_overlap,
                    agree[i].spearman);
        }
        free(svg), free(svg_b);
    }
    if (f) {
        fputs("</body></html>\n", f);
        fclose(f);
    }
    if (!st) st = qb_path_join(path, sizeof path, dir, "explanations.html");
    if (!st) st = html ? qb_write_file_atomic(path, html, len) : qb_fail(QB_ENOMEM, "explain: out of memory");
    free(html);
    return st;
}
