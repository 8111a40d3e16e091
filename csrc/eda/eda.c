/* The numbers of the EDA (include/qbert/eda.h): per-split counts and length
 * statistics, word lists over all splits, distinctive words, leakage. */
#include "eda/internal.h"

#include "qbert/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qb_eda_default_options(qb_eda_options *o)
{
    *o = (qb_eda_options){.top_k = 20, .max_length = 128, .bins = 40};
}

/* ---- counting ---- */

/* Adds one to string s[0..len)'s count under label (and under all rows). */
static qb_status count(eda_counts *c, int K, const char *s, size_t len, int label)
{
    const int i = qb_strmap_intern(c->map, s, len);
    if (i >= c->cap) {
        const int cap = 2 * c->cap + 4096;
        int *counts = i >= 0 ? realloc(c->counts, (size_t)cap * (K + 1) * sizeof *counts) : NULL;
        if (!counts) return qb_fail(QB_ENOMEM, "eda: out of memory counting words");
        memset(counts + (size_t)c->cap * (K + 1), 0, (size_t)(cap - c->cap) * (K + 1) * sizeof *counts);
        c->counts = counts, c->cap = cap;
    }
    if (i < 0) return qb_fail(QB_ENOMEM, "eda: out of memory counting words");
    if (label >= 0) c->counts[(size_t)i * (K + 1) + label]++;
    c->counts[(size_t)i * (K + 1) + K]++;
    return QB_OK;
}

typedef struct {
    const char *s;
    size_t len;
} span;

/* The \w+ words of text into w (cap of them at most); returns how many. */
static int split_words(const char *text, span *w, int cap)
{
    int n = 0;
    const size_t len = strlen(text);
    size_t pos = 0, start, wlen;
    while (n < cap && qb_next_word_run(text, len, &pos, &start, &wlen)) w[n++] = (span){text + start, wlen};
    return n;
}

/* Unigrams and bigrams of one text's words, kept and without stopwords. */
static qb_status count_words(qb_eda *e, const qb_stopwords *sw, span *w, int n, int label)
{
    const int K = e->n_labels;
    char pair[1024];
    qb_status st = QB_OK;
    for (int i = 0; i < n && !st; i++) {
        st = count(&e->words[EDA_UNI], K, w[i].s, w[i].len, label);
        if (!st && i > 0 && w[i - 1].len + w[i].len + 1 < sizeof pair) {
            const int k = snprintf(pair, sizeof pair, "%.*s %.*s", (int)w[i - 1].len, w[i - 1].s, (int)w[i].len, w[i].s);
            st = count(&e->words[EDA_BI], K, pair, (size_t)k, label);
        }
    }
    int kept = 0;  /* the stopwords out, in place */
    for (int i = 0; i < n; i++)
        if (!qb_stopwords_contains(sw, w[i].s, w[i].len)) w[kept++] = w[i];
    for (int i = 1; i < kept && !st; i++)
        if (w[i - 1].len + w[i].len + 1 < sizeof pair) {
            const int k = snprintf(pair, sizeof pair, "%.*s %.*s", (int)w[i - 1].len, w[i - 1].s, (int)w[i].len, w[i].s);
            st = count(&e->words[EDA_BI_NS], K, pair, (size_t)k, label);
        }
    return st;
}

/* ---- one split ---- */

/* pandas' describe() of v (n): sample std (NaN for one value), linear percentiles. */
static qb_status describe(const double *v, int n, eda_stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n == 0) return QB_OK;
    double *t = malloc((size_t)n * sizeof *t), sum = 0, sq = 0;
    if (!t) return qb_fail(QB_ENOMEM, "eda: out of memory");
    memcpy(t, v, (size_t)n * sizeof *t);
    qb_sort_doubles(t, n);
    for (int i = 0; i < n; i++) sum += t[i];
    s->mean = sum / n;
    for (int i = 0; i < n; i++) sq += (t[i] - s->mean) * (t[i] - s->mean);
    s->std = n > 1 ? sqrt(sq / (n - 1)) : NAN;
    s->min = t[0], s->max = t[n - 1];
    s->p25 = qb_percentile_sorted(t, n, 25), s->median = qb_percentile_sorted(t, n, 50);
    s->p75 = qb_percentile_sorted(t, n, 75), s->p90 = qb_percentile_sorted(t, n, 90);
    s->p99 = qb_percentile_sorted(t, n, 99);
    free(t);
    return QB_OK;
}

/* Length statistics of kind k: all rows, then each label's. */
static qb_status split_stats(const qb_eda *e, eda_split *sp, int k)
{
    const int K = e->n_labels;
    double *v = malloc((size_t)(sp->rows ? sp->rows : 1) * sizeof *v);
    if (!v || !(sp->stats[k] = calloc((size_t)K + 1, sizeof *sp->stats[k]))) {
        free(v);
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    }
    qb_status st = describe(sp->len[k], sp->rows, &sp->stats[k][0]);
    for (int label = 0; label < K && !st; label++) {
        int n = 0;
        for (int i = 0; i < sp->rows; i++)
            if (sp->labels[i] == label) v[n++] = sp->len[k][i];
        st = describe(v, n, &sp->stats[k][1 + label]);
    }
    free(v);
    return st;
}

/* Characters (code points), words (runs of non-space) and tokens of one text. */
static qb_status measure(qb_eda *e, eda_split *sp, int i, const char *text)
{
    const size_t len = strlen(text);
    size_t adv;
    int chars = 0, words = 0;
    bool in = false;
    for (size_t p = 0; p < len; p += adv, chars++) {
        const bool space = qb_is_space(qb_utf8_next(text + p, len - p, &adv));
        words += !space && !in;
        in = !space;
    }
    sp->len[EDA_CHARS][i] = chars, sp->len[EDA_WORDS][i] = words;
    if (!e->tokens) return QB_OK;
    int32_t *ids;
    int n;
    qb_status st = qb_tokenize(e->o.tokenizer, text, len, &ids, &n, NULL);
    if (st) return st;
    const int unk = qb_tokenizer_unk_id(e->o.tokenizer);
    for (int j = 0; j < n; j++) sp->unk += ids[j] == unk;
    free(ids);
    sp->pieces += n;
    sp->len[EDA_TOKENS][i] = n + 2;  /* [CLS] and [SEP] */
    sp->truncated += n + 2 > e->o.max_length;
    return QB_OK;
}

/* Duplicates within the split, and texts given different labels. */
static qb_status find_duplicates(eda_split *sp, const qb_dataset *d)
{
    int *first_label = malloc((size_t)(d->count ? d->count : 1) * sizeof *first_label);
    bool *conflict = calloc((size_t)(d->count ? d->count : 1), sizeof *conflict);
    if (!first_label || !conflict || !(sp->texts = qb_strmap_new())) {
        free(first_label), free(conflict);
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    }
    for (int i = 0; i < d->count; i++) {
        const int before = qb_strmap_count(sp->texts), t = qb_strmap_intern(sp->texts, d->texts[i], strlen(d->texts[i]));
        if (t < 0) break;
        if (t < before) {
            sp->duplicates++;
            if (!conflict[t] && first_label[t] != sp->labels[i]) conflict[t] = true, sp->conflicting++;
        } else {
            first_label[t] = sp->labels[i];
        }
    }
    free(first_label), free(conflict);
    return qb_strmap_count(sp->texts) + sp->duplicates == d->count ? QB_OK : qb_fail(QB_ENOMEM, "eda: out of memory");
}

/* Label ids of d in the unified list e->labels (added when new). */
static qb_status unify_labels(qb_eda *e, const qb_dataset *d, const char *const *names, int *out)
{
    for (int i = 0; i < d->count; i++) {
        const int id = d->labels[i];
        out[i] = -1;
        if (id < 0) continue;
        if (!names) {  /* integer labels */
            out[i] = id;
            continue;
        }
        const char *name = names[id];
        int k = 0;
        while (k < e->n_labels && strcmp(e->labels[k], name) != 0) k++;
        if (k == e->n_labels) {
            char **grown = realloc(e->labels, (size_t)(k + 1) * sizeof *grown);
            if (!grown) return qb_fail(QB_ENOMEM, "eda: out of memory");
            e->labels = grown;
            if (!(e->labels[k] = qb_strdup(name))) return qb_fail(QB_ENOMEM, "eda: out of memory");
            e->n_labels++;
        }
        out[i] = k;
    }
    return QB_OK;
}

static qb_status load_split(eda_split *sp, const qb_dataset *d, const char *name)
{
    sp->rows = d->count, sp->skipped = d->skipped, sp->skipped_empty = d->skipped_empty;
    if (!(sp->name = qb_strdup(name)) || !(sp->path = qb_strdup(d->path ? d->path : name)))
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    const size_t n = (size_t)(d->count ? d->count : 1);
    if (!(sp->labels = malloc(n * sizeof *sp->labels))) return qb_fail(QB_ENOMEM, "eda: out of memory");
    for (int k = 0; k < EDA_KINDS; k++)
        if (!(sp->len[k] = calloc(n, sizeof *sp->len[k]))) return qb_fail(QB_ENOMEM, "eda: out of memory");
    return QB_OK;
}

/* ---- over all splits ---- */

static const eda_counts *sort_counts;  /* qsort has no context argument */
static int sort_column, sort_K;

static int by_count(const void *a, const void *b)
{
    const int x = *(const int *)a, y = *(const int *)b;
    const int cx = sort_counts->counts[(size_t)x * (sort_K + 1) + sort_column];
    const int cy = sort_counts->counts[(size_t)y * (sort_K + 1) + sort_column];
    if (cx != cy) return cy - cx;
    return strcmp(qb_strmap_key(sort_counts->map, x), qb_strmap_key(sort_counts->map, y));
}

/* The top_k of list l in each column (label, then all). */
static qb_status rank_list(qb_eda *e, int l, const qb_stopwords *sw)
{
    const int K = e->n_labels, top = e->o.top_k;
    const eda_counts *c = &e->words[l == EDA_UNI_NS ? EDA_UNI : l];
    const int n = qb_strmap_count(c->map);
    int *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    e->top[l] = calloc((size_t)(K + 1) * top, sizeof *e->top[l]);
    e->n_top[l] = calloc((size_t)K + 1, sizeof *e->n_top[l]);
    if (!idx || !e->top[l] || !e->n_top[l]) {
        free(idx);
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    }
    for (int col = 0; col <= K; col++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            const char *w = qb_strmap_key(c->map, i);
            if (c->counts[(size_t)i * (K + 1) + col] && !(l == EDA_UNI_NS && qb_stopwords_contains(sw, w, strlen(w))))
                idx[m++] = i;
        }
        sort_counts = c, sort_column = col, sort_K = K;
        qsort(idx, (size_t)m, sizeof *idx, by_count);
        e->n_top[l][col] = m < top ? m : top;
        for (int r = 0; r < e->n_top[l][col]; r++)
            e->top[l][(size_t)col * top + r] = (eda_word){idx[r], c->counts[(size_t)idx[r] * (K + 1) + col], 0};
    }
    free(idx);
    return QB_OK;
}

static const qb_strmap *sort_map;

static int by_z(const void *a, const void *b)
{
    const eda_word *x = a, *y = b;
    if (x->z != y->z) return x->z < y->z ? 1 : -1;
    return strcmp(qb_strmap_key(sort_map, x->index), qb_strmap_key(sort_map, y->index));
}

/* Monroe et al. (2008) 3.5: label k against the other labels, prior a_w = y_w (the
 * word's count over all labels), a_0 = n:
 *   d = log((y_k + a_w) / (n_k + a_0 - y_k - a_w)) - log((y_r + a_w) / (n_r + a_0 - y_r - a_w)),
 *   z = d / sqrt(1 / (y_k + a_w) + 1 / (y_r + a_w)),  r: the rest. */
static qb_status distinctive_words(qb_eda *e)
{
    const int K = e->n_labels, top = e->o.top_k;
    const eda_counts *c = &e->words[EDA_UNI];
    const int n = qb_strmap_count(c->map);
    double *nk = calloc((size_t)K + 1, sizeof *nk), total = 0;
    eda_word *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    e->distinct = calloc((size_t)(K ? K : 1) * top, sizeof *e->distinct);
    e->n_distinct = calloc((size_t)(K ? K : 1), sizeof *e->n_distinct);
    if (!nk || !all || !e->distinct || !e->n_distinct) {
        free(nk), free(all);
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) nk[k] += c->counts[(size_t)i * (K + 1) + k];
    for (int k = 0; k < K; k++) total += nk[k];
    for (int k = 0; k < K; k++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            const int *row = c->counts + (size_t)i * (K + 1);
            double yw = 0;
            for (int j = 0; j < K; j++) yw += row[j];
            if (yw == 0) continue;  /* only in unlabelled rows */
            const double yk = row[k], yr = yw - yk, nr = total - nk[k];
            const double d = log((yk + yw) / (nk[k] + total - yk - yw)) - log((yr + yw) / (nr + total - yr - yw));
            all[m++] = (eda_word){i, row[k], d / sqrt(1.0 / (yk + yw) + 1.0 / (yr + yw))};
        }
        sort_map = c->map;
        qsort(all, (size_t)m, sizeof *all, by_z);
        e->n_distinct[k] = m < top ? m : top;
        memcpy(e->distinct + (size_t)k * top, all, (size_t)e->n_distinct[k] * sizeof *all);
    }
    free(nk), free(all);
    return QB_OK;
}

/* Texts of split b that split a has too, for every pair a < b. */
static qb_status find_leaks(qb_eda *e, const qb_dataset *splits)
{
    const int S = e->n_splits;
    if (!(e->leaks = calloc((size_t)(S * S > 0 ? S * S : 1), sizeof *e->leaks)))
        return qb_fail(QB_ENOMEM, "eda: out of memory");
    for (int a = 0; a < S; a++)
        for (int b = a + 1; b < S; b++) {
            eda_leak *l = &e->leaks[e->n_leaks++];
            const qb_strmap *ma = e->splits[a].texts, *mb = e->splits[b].texts;
            l->a = a, l->b = b;
            for (int t = 0; t < qb_strmap_count(mb); t++) {
                const char *text = qb_strmap_key(mb, t);
                if (qb_strmap_find(ma, text, strlen(text)) < 0) continue;
                l->shared++;
                if (l->n_examples < 3) l->examples[l->n_examples++] = text;
            }
            for (int i = 0; i < splits[b].count; i++)
                l->rows_b += qb_strmap_find(ma, splits[b].texts[i], strlen(splits[b].texts[i])) >= 0;
        }
    return QB_OK;
}

/* One split's lengths, duplicates and words (its labels unified already). */
static qb_status analyse_split(qb_eda *e, eda_split *sp, const qb_dataset *d, const qb_stopwords *sw)
{
    qb_status st = find_duplicates(sp, d);
    span *w = malloc(4096 * sizeof *w);
    if (!st && !w) st = qb_fail(QB_ENOMEM, "eda: out of memory");
    for (int i = 0; i < d->count && !st; i++) {
        st = measure(e, sp, i, d->texts[i]);
        if (!st) st = count_words(e, sw, w, split_words(d->texts[i], w, 4096), sp->labels[i]);
    }
    free(w);
    return st;
}

static qb_status compute(qb_eda *e, const qb_dataset *splits, const char *const *names, const char *const *label_names,
                         int n_labels, const qb_stopwords *sw)
{
    qb_status st = QB_OK;
    for (int l = 0; l < EDA_LISTS && !st; l++)
        if (l != EDA_UNI_NS && !(e->words[l].map = qb_strmap_new())) st = qb_fail(QB_ENOMEM, "eda: out of memory");
    for (int k = 0; label_names && k < n_labels && !st; k++) {  /* the given names, in their order */
        char **grown = realloc(e->labels, (size_t)(k + 1) * sizeof *grown);
        if (!grown || !(grown[k] = qb_strdup(label_names[k]))) st = qb_fail(QB_ENOMEM, "eda: out of memory");
        if (grown) e->labels = grown, e->n_labels = k + !st;
    }
    /* The word counts have a column per label: the labels of every split are settled
     * first, then everything is counted. */
    for (int s = 0; s < e->n_splits && !st; s++) {
        eda_split *sp = &e->splits[s];
        const char *const *own = (const char *const *)splits[s].label_names;
        st = load_split(sp, &splits[s], names[s]);
        if (!st) st = unify_labels(e, &splits[s], label_names ? label_names : own, sp->labels);
        for (int i = 0; !label_names && !own && !st && i < sp->rows; i++)
            if (sp->labels[i] >= e->n_labels) e->n_labels = sp->labels[i] + 1;  /* integer labels */
    }
    for (int s = 0; s < e->n_splits && !st; s++) st = analyse_split(e, &e->splits[s], &splits[s], sw);
    for (int s = 0; s < e->n_splits && !st; s++) {
        eda_split *sp = &e->splits[s];
        if (!(sp->label_counts = calloc((size_t)(e->n_labels ? e->n_labels : 1), sizeof *sp->label_counts)))
            st = qb_fail(QB_ENOMEM, "eda: out of memory");
        for (int i = 0; i < sp->rows && !st; i++)
            if (sp->labels[i] >= 0) sp->label_counts[sp->labels[i]]++;
        for (int k = 0; k < EDA_KINDS && !st; k++)
            if (k != EDA_TOKENS || e->tokens) st = split_stats(e, sp, k);
    }
    for (int l = 0; l < EDA_LISTS && !st; l++) st = rank_list(e, l, sw);
    if (!st) st = distinctive_words(e);
    if (!st) st = find_leaks(e, splits);
    return st;
}

qb_status qb_eda_compute(const qb_dataset *splits, const char *const *names, int n, const char *const *label_names,
                         int n_labels, const qb_eda_options *o, qb_eda **out)
{
    *out = NULL;
    if (n < 1 || (label_names && n_labels < 1))
        return qb_fail(QB_EINVAL, "eda: %d splits, %d label names", n, label_names ? n_labels : 0);
    qb_eda_options opt;
    if (o) opt = *o;
    else qb_eda_default_options(&opt);
    if (opt.top_k < 1 || opt.max_length < 2 || opt.bins < 1)
        return qb_fail(QB_EINVAL, "eda: top_k %d, max_length %d, bins %d (expected >= 1, >= 2, >= 1)", opt.top_k,
                       opt.max_length, opt.bins);
    qb_eda *e = calloc(1, sizeof *e);
    if (!e) return qb_fail(QB_ENOMEM, "eda: out of memory");
    e->o = opt;
    e->tokens = e->o.tokenizer != NULL;
    e->n_splits = n;
    qb_stopwords *sw = NULL;
    qb_status st = (e->splits = calloc((size_t)n, sizeof *e->splits)) ? qb_stopwords_load(e->o.stopwords_file, &sw)
                                                                      : qb_fail(QB_ENOMEM, "eda: out of memory");
    if (!st) st = compute(e, splits, names, label_names, n_labels, sw);
    qb_stopwords_free(sw);
    if (st) {
        qb_eda_free(e);
        return st;
    }
    *out = e;
    return QB_OK;
}

void qb_eda_free(qb_eda *e)
{
    if (!e) return;
    for (int s = 0; e->splits && s < e->n_splits; s++) {
        eda_split *sp = &e->splits[s];
        free(sp->name), free(sp->path), free(sp->label_counts), free(sp->labels);
        for (int k = 0; k < EDA_KINDS; k++) free(sp->len[k]), free(sp->stats[k]);
        qb_strmap_free(sp->texts);
    }
    for (int l = 0; l < EDA_LISTS; l++) {
        qb_strmap_free(e->words[l].map);
        free(e->words[l].counts), free(e->top[l]), free(e->n_top[l]);
    }
    for (int k = 0; k < e->n_labels; k++) free(e->labels[k]);
    free(e->labels), free(e->splits), free(e->distinct), free(e->n_distinct), free(e->leaks);
    free(e);
}
