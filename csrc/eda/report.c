/* The EDA's outputs (include/qbert/eda.h): eda.json, the charts, and one document
 * written twice by the same code, as report.md (charts linked) and as eda.html (charts
 * inline, no outside files). */
#include "eda/internal.h"

#include "eval/svg.h"
#include "qbert/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAME[EDA_KINDS] = {"chars", "words", "tokens"};
static const char *const KIND_TITLE[EDA_KINDS] = {"characters", "words", "tokens ([CLS] + word pieces + [SEP])"};
static const char *const LIST_NAME[EDA_LISTS] = {"unigrams", "unigrams_no_stopwords", "bigrams",
                                                 "bigrams_no_stopwords"};
static const char *const LIST_TITLE[EDA_LISTS] = {"unigrams", "unigrams without stopwords", "bigrams",
                                                  "bigrams without stopwords"};

static const char *key(const qb_eda *e, int list, int index) { return qb_strmap_key(eda_list_map(e, list), index); }

/* ---- eda.json ---- */

static cJSON *stats_json(const eda_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", s->n);
    const struct {
        const char *name;
        double v;
    } f[] = {{"mean", s->mean}, {"std", s->std},  {"min", s->min}, {"p25", s->p25}, {"median", s->median},
             {"p75", s->p75},   {"p90", s->p90}, {"p99", s->p99}, {"max", s->max}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)  /* NaN (no rows, or one for std): null */
        cJSON_AddItemToObject(o, f[i].name, s->n && isfinite(f[i].v) ? cJSON_CreateNumber(f[i].v) : cJSON_CreateNull());
    return o;
}

static cJSON *split_json(const qb_eda *e, const eda_split *sp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", sp->name);
    cJSON_AddStringToObject(o, "file", sp->path);
    cJSON_AddNumberToObject(o, "rows", sp->rows);
    cJSON_AddNumberToObject(o, "skipped_empty_text", sp->skipped_empty);
    cJSON_AddNumberToObject(o, "skipped_bad_label", sp->skipped - sp->skipped_empty);
    cJSON_AddNumberToObject(o, "duplicate_texts", sp->duplicates);
    cJSON_AddNumberToObject(o, "texts_with_conflicting_labels", sp->conflicting);
    cJSON *counts = cJSON_AddObjectToObject(o, "label_counts"), *shares = cJSON_AddObjectToObject(o, "label_shares");
    for (int k = 0; k < e->n_labels; k++) {
        cJSON_AddNumberToObject(counts, e->labels[k], sp->label_counts[k]);
        cJSON_AddNumberToObject(shares, e->labels[k], sp->rows ? (double)sp->label_counts[k] / sp->rows : 0);
    }
    cJSON *len = cJSON_AddObjectToObject(o, "length");
    for (int k = 0; k < EDA_KINDS; k++) {
        if (!sp->stats[k]) continue;
        cJSON *kind = cJSON_AddObjectToObject(len, KIND_NAME[k]);
        cJSON_AddItemToObject(kind, "all", stats_json(&sp->stats[k][0]));
        cJSON *per = cJSON_AddObjectToObject(kind, "per_label");
        for (int l = 0; l < e->n_labels; l++) cJSON_AddItemToObject(per, e->labels[l], stats_json(&sp->stats[k][1 + l]));
    }
    if (e->tokens) {
        cJSON *t = cJSON_AddObjectToObject(o, "tokens");
        cJSON_AddNumberToObject(t, "max_length", e->o.max_length);
        cJSON_AddNumberToObject(t, "longer_than_max_length", sp->truncated);
        cJSON_AddNumberToObject(t, "share_longer", sp->rows ? (double)sp->truncated / sp->rows : 0);
        cJSON_AddNumberToObject(t, "word_pieces", (double)sp->pieces);
        cJSON_AddNumberToObject(t, "unk_pieces", (double)sp->unk);
        cJSON_AddNumberToObject(t, "unk_rate", sp->pieces ? (double)sp->unk / (double)sp->pieces : 0);
    }
    return o;
}

/* [[word, count], ...] of one column of list l. */
static cJSON *list_json(const qb_eda *e, int l, int col)
{
    cJSON *a = cJSON_CreateArray();
    for (int r = 0; r < e->n_top[l][col]; r++) {
        const eda_word *w = &e->top[l][(size_t)col * e->o.top_k + r];
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(key(e, l, w->index)));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber(w->count));
        cJSON_AddItemToArray(a, pair);
    }
    return a;
}

cJSON *qb_eda_to_json(const qb_eda *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(root, "labels");
    for (int k = 0; k < e->n_labels; k++) cJSON_AddItemToArray(labels, cJSON_CreateString(e->labels[k]));
    cJSON *splits = cJSON_AddArrayToObject(root, "splits");
    for (int s = 0; s < e->n_splits; s++) cJSON_AddItemToArray(splits, split_json(e, &e->splits[s]));
    cJSON *words = cJSON_AddObjectToObject(root, "words");
    cJSON_AddNumberToObject(words, "top_k", e->o.top_k);
    for (int l = 0; l < EDA_LISTS; l++) {
        cJSON *list = cJSON_AddObjectToObject(words, LIST_NAME[l]);
        cJSON_AddItemToObject(list, "all", list_json(e, l, e->n_labels));
        cJSON *per = cJSON_AddObjectToObject(list, "per_label");
        for (int k = 0; k < e->n_labels; k++) cJSON_AddItemToObject(per, e->labels[k], list_json(e, l, k));
    }
    cJSON *distinct = cJSON_AddObjectToObject(root, "distinctive_words");
    cJSON_AddStringToObject(distinct, "method", "log-odds ratio, informative Dirichlet prior (Monroe et al. 2008), "
                                                "prior = the word's count over all labels; z-scores, label vs the rest");
    for (int k = 0; k < e->n_labels; k++) {
        cJSON *a = cJSON_AddArrayToObject(distinct, e->labels[k]);
        for (int r = 0; r < e->n_distinct[k]; r++) {
            const eda_word *w = &e->distinct[(size_t)k * e->o.top_k + r];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "word", key(e, EDA_UNI, w->index));
            cJSON_AddNumberToObject(o, "z", w->z);
            cJSON_AddNumberToObject(o, "count", w->count);
            cJSON_AddItemToArray(a, o);
        }
    }
    cJSON *leaks = cJSON_AddArrayToObject(root, "shared_texts");
    for (int i = 0; i < e->n_leaks; i++) {
        const eda_leak *l = &e->leaks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "a", e->splits[l->a].name);
        cJSON_AddStringToObject(o, "b", e->splits[l->b].name);
        cJSON_AddNumberToObject(o, "distinct_texts_in_both", l->shared);
        cJSON_AddNumberToObject(o, "rows_of_b_in_a", l->rows_b);
        cJSON *ex = cJSON_AddArrayToObject(o, "examples");
        for (int k = 0; k < l->n_examples; k++) cJSON_AddItemToArray(ex, cJSON_CreateString(l->examples[k]));
        cJSON_AddItemToArray(leaks, o);
    }
    return root;
}

/* ---- the charts ---- */

typedef struct {
    char file[64];
    char *svg;
} chart;

enum { MAX_CHARTS = 8 + 64 };

/* The length series of kind k: each split, then each label over all splits; the
 * values are owned by *values (free it). */
static int length_series(const qb_eda *e, int k, qb_series *s, double **values)
{
    int total = 0, n = 0;
    for (int i = 0; i < e->n_splits; i++) total += e->splits[i].rows;
    double *v = *values = malloc((size_t)(total ? total : 1) * sizeof *v);
    if (!v) return -1;
    for (int i = 0; i < e->n_splits; i++)
        s[n++] = (qb_series){e->splits[i].name, e->splits[i].len[k], e->splits[i].rows};
    for (int l = 0; l < e->n_labels && e->n_splits > 0; l++) {
        double *start = v;
        for (int i = 0; i < e->n_splits; i++)
            for (int r = 0; r < e->splits[i].rows; r++)
                if (e->splits[i].labels[r] == l) *v++ = e->splits[i].len[k][r];
        s[n++] = (qb_series){e->labels[l], start, (int)(v - start)};
    }
    return n;
}

/* A file name part from a label: letters, digits, '-' and '_' kept, others '_'. */
static void file_part(char *out, size_t cap, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap && i < 24; i++) {
        const char c = name[i];
        out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ? c : '_';
    }
    out[i] = '\0';
}

/* Bars of the m ranked words w of list l: their counts, and their log-odds z first
 * when with_z (malloc'ed SVG; NULL when out of memory). */
static char *word_bars(const qb_eda *e, int l, const eda_word *w, int m, const char *title, bool with_z)
{
    const char **words = malloc((size_t)(m ? m : 1) * sizeof *words);
    double *v = malloc(2 * (size_t)(m ? m : 1) * sizeof *v);
    char *svg = NULL;
    if (words && v) {
        for (int r = 0; r < m; r++) words[r] = key(e, l, w[r].index), v[r] = w[r].z, v[m + r] = w[r].count;
        const qb_bar_panel p[2] = {{"log-odds z", v, NULL, false, false},
                                   {with_z ? "count in the label" : "count, no stopwords", v + m, NULL, false, false}};
        svg = with_z ? qb_bars_svg(title, words, m, p, 2) : qb_bars_svg(title, words, m, p + 1, 1);
    }
    free(words), free(v);
    return svg;
}

/* Every chart of the report, in the order the document shows them; returns how many
 * (-1 when out of memory). */
static int make_charts(const qb_eda *e, chart *c)
{
    int n = 0;
    const int K = e->n_labels, S = e->n_splits;
    /* label shares: a panel per split */
    const char **names = malloc((size_t)(K ? K : 1) * sizeof *names);
    double *shares = malloc((size_t)(K ? K : 1) * S * sizeof *shares);
    qb_bar_panel *panels = malloc((size_t)S * sizeof *panels);
    if (names && shares && panels) {
        for (int k = 0; k < K; k++) names[k] = e->labels[k];
        for (int s = 0; s < S; s++) {
            for (int k = 0; k < K; k++)
                shares[(size_t)s * K + k] = e->splits[s].rows ? (double)e->splits[s].label_counts[k] / e->splits[s].rows : 0;
            panels[s] = (qb_bar_panel){e->splits[s].name, shares + (size_t)s * K, NULL, false, true};
        }
        snprintf(c[n].file, sizeof c[n].file, "labels.svg");
        c[n++].svg = qb_bars_svg("label shares per split", names, K, panels, S);
    }
    free(names), free(shares), free(panels);
    qb_series *series = malloc((size_t)(S + K) * sizeof *series);
    for (int k = 0; k < EDA_KINDS && series; k++) {
        if (k == EDA_TOKENS && !e->tokens) continue;
        double *values;
        const int m = length_series(e, k, series, &values);
        if (m < 0) break;
        char title[96];
        snprintf(title, sizeof title, "text length in %s, per split and per label", KIND_NAME[k]);
        snprintf(c[n].file, sizeof c[n].file, "length_%s.svg", KIND_NAME[k]);
        c[n++].svg = qb_histogram_svg(title, KIND_NAME[k], series, m, e->o.bins);
        snprintf(c[n].file, sizeof c[n].file, "length_%s_box.svg", KIND_NAME[k]);
        c[n++].svg = qb_boxplot_svg(title, KIND_NAME[k], series, m);
        free(values);
    }
    free(series);
    for (int k = 0; k < K && n + 2 <= MAX_CHARTS; k++) {  /* each label's top words and distinctive words */
        char title[160], part[32];
        file_part(part, sizeof part, e->labels[k]);
        snprintf(title, sizeof title, "top words: %s", e->labels[k]);
        snprintf(c[n].file, sizeof c[n].file, "top_%d_%s.svg", k, part);
        c[n++].svg = word_bars(e, EDA_UNI_NS, e->top[EDA_UNI_NS] + (size_t)k * e->o.top_k, e->n_top[EDA_UNI_NS][k],
                               title, false);
        snprintf(title, sizeof title, "words that most distinguish \"%s\"", e->labels[k]);
        snprintf(c[n].file, sizeof c[n].file, "words_%d_%s.svg", k, part);
        c[n++].svg = word_bars(e, EDA_UNI, e->distinct + (size_t)k * e->o.top_k, e->n_distinct[k], title, true);
    }
    for (int i = 0; i < n; i++)
        if (!c[i].svg) return -1;
    return n;
}

/* ---- the document ---- */

typedef struct {
    FILE *f;
    bool html;
    const chart *charts;
    int n_charts;
} doc;

/* Text as Markdown table-cell / HTML character data. */
static void text(doc *d, const char *s)
{
    for (; *s; s++) {
        const char c = *s;
        if (d->html && (c == '<' || c == '>' || c == '&')) fputs(c == '<' ? "&lt;" : c == '>' ? "&gt;" : "&amp;", d->f);
        else if (!d->html && (c == '|' || c == '\\' || c == '*' || c == '_')) fprintf(d->f, "\\%c", c);
        else fputc(c == '\n' || c == '\r' || c == '\t' ? ' ' : c, d->f);
    }
}

static void heading(doc *d, int level, const char *s)
{
    if (d->html) fprintf(d->f, "<h%d>", level);
    else fprintf(d->f, "\n%.*s ", level, "####");
    text(d, s);
    fprintf(d->f, d->html ? "</h%d>\n" : "\n\n", level);
}

static void para(doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void para(doc *d, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fputs(d->html ? "<p>" : "", d->f);
    text(d, buf);
    fputs(d->html ? "</p>\n" : "\n\n", d->f);
}

static void row(doc *d, int n, const char *const *cells, bool head)
{
    fputs(d->html ? "<tr>" : "|", d->f);
    for (int i = 0; i < n; i++) {
        fputs(d->html ? (head ? "<th>" : "<td>") : " ", d->f);
        text(d, cells[i]);
        fputs(d->html ? (head ? "</th>" : "</td>") : " |", d->f);
    }
    fputs(d->html ? "</tr>\n" : "\n", d->f);
    if (head && !d->html) {
        fputs("|", d->f);
        for (int i = 0; i < n; i++) fputs("---|", d->f);
        fputs("\n", d->f);
    }
}

static void table_open(doc *d, int n, const char *const *head)
{
    if (d->html) fputs("<table>\n", d->f);
    row(d, n, head, true);
}

static void table_close(doc *d) { fputs(d->html ? "</table>\n" : "\n", d->f); }

/* A chart by file name: inline in HTML, linked in Markdown. */
static void figure(doc *d, const char *file)
{
    for (int i = 0; i < d->n_charts; i++) {
        if (strcmp(d->charts[i].file, file) != 0) continue;
        if (d->html) fprintf(d->f, "<figure>\n%s</figure>\n", d->charts[i].svg);
        else fprintf(d->f, "![%s](%s)\n\n", file, file);
    }
}

enum { CELLS = 64, CELL = 96 };

static void write_splits(doc *d, const qb_eda *e)
{
    heading(d, 2, "Splits and labels");
    const int K = e->n_labels;
    char cells[CELLS][CELL];
    const char *p[CELLS];
    for (int i = 0; i < CELLS; i++) p[i] = cells[i];
    const int n = 6 + (K < CELLS - 6 ? K : CELLS - 6);
    snprintf(cells[0], CELL, "split"), snprintf(cells[1], CELL, "rows"), snprintf(cells[2], CELL, "empty texts skipped");
    snprintf(cells[3], CELL, "missing / unknown labels skipped"), snprintf(cells[4], CELL, "duplicate texts");
    snprintf(cells[5], CELL, "texts with conflicting labels");
    for (int k = 0; k + 6 < n; k++) snprintf(cells[6 + k], CELL, "%s", e->labels[k]);
    table_open(d, n, p);
    for (int s = 0; s < e->n_splits; s++) {
        const eda_split *sp = &e->splits[s];
        snprintf(cells[0], CELL, "%s", sp->name), snprintf(cells[1], CELL, "%d", sp->rows);
        snprintf(cells[2], CELL, "%d", sp->skipped_empty);
        snprintf(cells[3], CELL, "%d", sp->skipped - sp->skipped_empty);
        snprintf(cells[4], CELL, "%d", sp->duplicates), snprintf(cells[5], CELL, "%d", sp->conflicting);
        for (int k = 0; k + 6 < n; k++)
            snprintf(cells[6 + k], CELL, "%d (%.1f%%)", sp->label_counts[k],
                     sp->rows ? 100.0 * sp->label_counts[k] / sp->rows : 0.0);
        row(d, n, p, false);
    }
    table_close(d);
    figure(d, "labels.svg");
}

static void stats_cells(char cells[][CELL], const eda_stats *s)
{
    const double v[] = {s->mean, s->std, s->min, s->p25, s->median, s->p75, s->p90, s->p99, s->max};
    snprintf(cells[0], CELL, "%d", s->n);
    for (int i = 0; i < 9; i++) {
        if (s->n && isfinite(v[i])) snprintf(cells[1 + i], CELL, "%.*f", i < 2 ? 2 : 1, v[i]);
        else snprintf(cells[1 + i], CELL, "-");
    }
}

static void write_lengths(doc *d, const qb_eda *e, int k)
{
    char title[96], file[64];
    snprintf(title, sizeof title, "Text length in %s", KIND_TITLE[k]);
    heading(d, 2, title);
    static const char *const head[] = {"split", "label", "n", "mean", "std", "min", "25%", "50%", "75%",
                                       "90%", "99%", "max"};
    char cells[12][CELL];
    const char *p[12];
    for (int i = 0; i < 12; i++) p[i] = cells[i];
    table_open(d, 12, head);
    for (int s = 0; s < e->n_splits; s++)
        for (int l = 0; l <= e->n_labels; l++) {
            snprintf(cells[0], CELL, "%s", e->splits[s].name);
            snprintf(cells[1], CELL, "%s", l ? e->labels[l - 1] : "(all)");
            stats_cells(cells + 2, &e->splits[s].stats[k][l]);
            row(d, 12, p, false);
        }
    table_close(d);
    snprintf(file, sizeof file, "length_%s.svg", KIND_NAME[k]);
    figure(d, file);
    snprintf(file, sizeof file, "length_%s_box.svg", KIND_NAME[k]);
    figure(d, file);
}

static void write_tokens(doc *d, const qb_eda *e)
{
    heading(d, 2, "Truncation and unknown word pieces");
    char head1[CELL];
    snprintf(head1, CELL, "texts longer than %d tokens (cut)", e->o.max_length);
    const char *head[] = {"split", head1, "word pieces", "[UNK] pieces", "[UNK] rate"};
    char cells[5][CELL];
    const char *p[5] = {cells[0], cells[1], cells[2], cells[3], cells[4]};
    table_open(d, 5, head);
    for (int s = 0; s < e->n_splits; s++) {
        const eda_split *sp = &e->splits[s];
        snprintf(cells[0], CELL, "%s", sp->name);
        snprintf(cells[1], CELL, "%d (%.2f%%)", sp->truncated, sp->rows ? 100.0 * sp->truncated / sp->rows : 0.0);
        snprintf(cells[2], CELL, "%lld", sp->pieces), snprintf(cells[3], CELL, "%lld", sp->unk);
        snprintf(cells[4], CELL, "%.4f%%", sp->pieces ? 100.0 * (double)sp->unk / (double)sp->pieces : 0.0);
        row(d, 5, p, false);
    }
    table_close(d);
}

/* A ranked table: a column per label and one for all rows; cell (r, col) from fill. */
static void ranked_table(doc *d, const qb_eda *e, int n_rows, bool with_all,
                         void (*fill)(const qb_eda *, int list, int col, int r, char *cell), int list)
{
    const int K = e->n_labels, n = 1 + K + with_all < CELLS ? 1 + K + with_all : CELLS;
    char cells[CELLS][CELL];
    const char *p[CELLS];
    for (int i = 0; i < CELLS; i++) p[i] = cells[i];
    snprintf(cells[0], CELL, "#");
    for (int c = 1; c < n; c++) snprintf(cells[c], CELL, "%s", c - 1 < K ? e->labels[c - 1] : "all");
    table_open(d, n, p);
    for (int r = 0; r < n_rows; r++) {
        snprintf(cells[0], CELL, "%d", r + 1);
        for (int c = 1; c < n; c++) fill(e, list, c - 1, r, cells[c]);
        row(d, n, p, false);
    }
    table_close(d);
}

static void fill_top(const qb_eda *e, int l, int col, int r, char *cell)
{
    if (r >= e->n_top[l][col]) {
        cell[0] = '\0';
        return;
    }
    const eda_word *w = &e->top[l][(size_t)col * e->o.top_k + r];
    snprintf(cell, CELL, "%.70s (%d)", key(e, l, w->index), w->count);
}

static void fill_distinct(const qb_eda *e, int l, int k, int r, char *cell)
{
    (void)l;
    if (r >= e->n_distinct[k]) {
        cell[0] = '\0';
        return;
    }
    const eda_word *w = &e->distinct[(size_t)k * e->o.top_k + r];
    snprintf(cell, CELL, "%.70s (z %.1f, %d)", key(e, EDA_UNI, w->index), w->z, w->count);
}

static void write_words(doc *d, const qb_eda *e)
{
    for (int l = 0; l < EDA_LISTS; l++) {
        char title[96];
        snprintf(title, sizeof title, "Top %s per label (count)", LIST_TITLE[l]);
        heading(d, 2, title);
        ranked_table(d, e, e->o.top_k, true, fill_top, l);
        for (int k = 0; l == EDA_UNI_NS && k < d->n_charts; k++)
            if (strncmp(d->charts[k].file, "top_", 4) == 0) figure(d, d->charts[k].file);
    }
    heading(d, 2, "Words that distinguish each label");
    para(d, "Log-odds ratio of each label against the others with an informative Dirichlet prior (Monroe, Colaresi "
            "and Quinn 2008; prior counts: the word's count over all labels), as a z-score: frequent words that "
            "every label uses score near 0, where raw counts would rank them first. In parentheses: z, and the "
            "word's count in the label.");
    ranked_table(d, e, e->o.top_k, false, fill_distinct, EDA_UNI);
    for (int k = 0; k < d->n_charts; k++)
        if (strncmp(d->charts[k].file, "words_", 6) == 0) figure(d, d->charts[k].file);
}

static void write_leaks(doc *d, const qb_eda *e)
{
    heading(d, 2, "Texts in more than one split");
    if (e->n_leaks == 0) {
        para(d, "One split only: nothing to compare.");
        return;
    }
    static const char *const head[] = {"splits", "distinct texts in both", "rows of the second found in the first",
                                       "examples"};
    char cells[4][CELL * 3];
    const char *p[4] = {cells[0], cells[1], cells[2], cells[3]};
    table_open(d, 4, head);
    for (int i = 0; i < e->n_leaks; i++) {
        const eda_leak *l = &e->leaks[i];
        snprintf(cells[0], sizeof cells[0], "%s / %s", e->splits[l->a].name, e->splits[l->b].name);
        snprintf(cells[1], sizeof cells[1], "%d", l->shared), snprintf(cells[2], sizeof cells[2], "%d", l->rows_b);
        cells[3][0] = '\0';
        for (int k = 0; k < l->n_examples; k++)
            snprintf(cells[3] + strlen(cells[3]), sizeof cells[3] - strlen(cells[3]), "%s\"%.60s\"", k ? "; " : "",
                     l->examples[k]);
        row(d, 4, p, false);
    }
    table_close(d);
}

static void write_doc(doc *d, const qb_eda *e)
{
    if (d->html)
        fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>qbert eda</title>\n<style>body{font-family:"
              "DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#1b1b1b}"
              "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;"
              "text-align:left}th{background:#eef3f8}figure{margin:1em 0}</style></head><body>\n", d->f);
    heading(d, 1, "Data exploration");
    char files[512] = "";
    for (int s = 0; s < e->n_splits; s++)
        snprintf(files + strlen(files), sizeof files - strlen(files), "%s%s (%s)", s ? ", " : "", e->splits[s].name,
                 e->splits[s].path);
    para(d, "Splits: %s. Texts as the model reads them (after the loader's preprocessing). Words in the lists are "
            "\\w+ runs; stopwords: the list given, or the shipped Indonesian one.", files);
    write_splits(d, e);
    for (int k = 0; k < EDA_KINDS; k++)
        if (k != EDA_TOKENS || e->tokens) write_lengths(d, e, k);
    if (e->tokens) write_tokens(d, e);
    write_words(d, e);
    write_leaks(d, e);
    if (d->html) fputs("</body></html>\n", d->f);
}

/* The document in one format as a malloc'ed string (NULL when out of memory). */
static char *render(const qb_eda *e, bool html, const chart *c, int n_charts, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (!f) return NULL;
    doc d = {f, html, c, n_charts};
    write_doc(&d, e);
    fclose(f);
    return out;
}

static qb_status write_text(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    qb_status st = qb_path_join(path, sizeof path, dir, name);
    return st ? st : qb_write_file_atomic(path, data, len);
}

qb_status qb_eda_write(const qb_eda *e, const char *dir)
{
    chart c[MAX_CHARTS];
    memset(c, 0, sizeof c);
    qb_status st = qb_mkdirs(dir);
    const int n = st ? 0 : make_charts(e, c);
    if (!st && n < 0) st = qb_fail(QB_ENOMEM, "eda: out of memory drawing the charts");
    for (int i = 0; i < n && !st; i++) st = write_text(dir, c[i].file, c[i].svg, strlen(c[i].svg));
    char path[4096];
    if (!st) st = qb_path_join(path, sizeof path, dir, "eda.json");
    cJSON *json = st ? NULL : qb_eda_to_json(e);
    if (!st) st = json ? qb_json_write_file(path, json) : qb_fail(QB_ENOMEM, "eda: out of memory");
    cJSON_Delete(json);
    for (int html = 0; html < 2 && !st; html++) {
        size_t len = 0;
        char *doc_text = render(e, html, c, n, &len);
        st = doc_text ? write_text(dir, html ? "eda.html" : "report.md", doc_text, len)
                      : qb_fail(QB_ENOMEM, "eda: out of memory");
        free(doc_text);
    }
    for (int i = 0; i < MAX_CHARTS; i++) free(c[i].svg);
    return st;
}
