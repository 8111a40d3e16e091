/* Explanations: LIME's words and local surrogate against the `lime` package
 * (golden/lime.json, made by golden/make_lime.py), then the methods on the golden
 * tiny model: occlusion against the engine's own probabilities of the texts without
 * each word, integrated gradients' completeness and end point against the engine,
 * LIME's seeded masks, and the comparison of two explanations. */
#include "qbert/explain.h"
#include "qbert/io.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"

/* A call that must succeed; false (with its message) when it did not. */
#define CHECK_OK(call) check_ok((call) == QB_OK, #call)
static bool check_ok(bool ok, const char *what)
{
    CHECKF(ok, "%s: %s", what, qb_error());
    return ok;
}

/* IndexedString(bow=True): the words, and inverse_removing. */
static void test_words(const cJSON *root)
{
    const cJSON *t;
    int n = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "texts")) {
        const char *text = cJSON_GetObjectItemCaseSensitive(t, "text")->valuestring;
        qb_text_words w;
        if (!CHECK_OK(qb_text_words_split(text, &w))) continue;
        const cJSON *words = cJSON_GetObjectItemCaseSensitive(t, "words"), *v;
        bool same = cJSON_GetArraySize(words) == w.n_words;
        int i = 0;
        cJSON_ArrayForEach(v, words) same = same && i < w.n_words && strcmp(v->valuestring, w.words[i++]) == 0;
        CHECKF(same, "\"%s\": %d words, lime has %d", text, w.n_words, cJSON_GetArraySize(words));
        bool keep[64];
        for (int k = 0; k < 64; k++) keep[k] = true;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(t, "remove")) if (v->valueint < 64) keep[v->valueint] = false;
        char *removed = qb_text_words_join(&w, keep), *whole = qb_text_words_join(&w, NULL);
        const char *want = cJSON_GetObjectItemCaseSensitive(t, "removed")->valuestring;
        CHECKF(removed && strcmp(removed, want) == 0, "\"%s\" removed: \"%s\", lime \"%s\"", text, removed, want);
        CHECK(whole && strcmp(whole, text) == 0);
        free(removed), free(whole);
        qb_text_words_free(&w);
        n++;
    }
    CHECK(n >= 4);
}

static double *matrix(const cJSON *rows, int *n, int *d)
{
    *n = cJSON_GetArraySize(rows), *d = cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0));
    double *m = malloc((size_t)*n * *d * sizeof *m);
    const cJSON *r, *v;
    int i = 0;
    cJSON_ArrayForEach(r, rows) {
        int j = 0;
        cJSON_ArrayForEach(v, r) m[(size_t)i * *d + j++] = v->valuedouble;
        i++;
    }
    return m;
}

/* LimeBase.explain_instance_with_data: every class of every case within 1e-6. */
static void test_lime_fit(const cJSON *root)
{
    const cJSON *c;
    int fits = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        int n, d, np, K;
        double *data = matrix(cJSON_GetObjectItemCaseSensitive(c, "data"), &n, &d);
        double *probs = matrix(cJSON_GetObjectItemCaseSensitive(c, "probs"), &np, &K);
        double *dist = malloc((size_t)n * sizeof *dist), *y = malloc((size_t)n * sizeof *y), worst = 0;
        qb_lime_distances(data, n, d, dist);
        const cJSON *want_d = cJSON_GetObjectItemCaseSensitive(c, "distances");
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(dist[i] - cJSON_GetArrayItem(want_d, i)->valuedouble));
        CHECKF(worst < 1e-9, "distances differ from sklearn's by %g", worst);
        const cJSON *f;
        int label = 0;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(c, "fits")) {
            for (int i = 0; i < n; i++) y[i] = probs[(size_t)i * K + label];
            qb_lime_fit fit;
            if (!CHECK_OK(qb_lime_explain(data, y, dist, n, d, 25.0, (int)fixture_num(c, "num_features"), &fit))) break;
            const cJSON *feats = cJSON_GetObjectItemCaseSensitive(f, "features"), *w = cJSON_GetObjectItemCaseSensitive(f, "weights");
            bool same = fit.n == cJSON_GetArraySize(feats);
            for (int j = 0; same && j < fit.n; j++)
                same = fit.features[j] == cJSON_GetArrayItem(feats, j)->valueint &&
                       fabs(fit.weights[j] - cJSON_GetArrayItem(w, j)->valuedouble) < 1e-6;
            CHECKF(same, "case d=%d class %d: features / weights differ from lime's", d, label);
            CHECKF(fabs(fit.intercept - fixture_num(f, "intercept")) < 1e-6 && fabs(fit.score - fixture_num(f, "score")) < 1e-6 &&
                       fabs(fit.local_pred - fixture_num(f, "local_pred")) < 1e-6,
                   "case d=%d class %d: intercept %g score %g local %g, lime %g %g %g", d, label, fit.intercept,
                   fit.score, fit.local_pred, fixture_num(f, "intercept"), fixture_num(f, "score"), fixture_num(f, "local_pred"));
            qb_lime_fit_free(&fit);
            label++, fits++;
        }
        free(data), free(probs), free(dist), free(y);
    }
    CHECK(fits >= 8);
    printf("lime: %d fits equal the lime package's\n", fits);
}

/* p (K) of texts[i] by the engine. */
static float prob(qb_engine *e, const char *text, int k)
{
    float p[16];
    CHECK_OK(qb_engine_classify(e, &text, 1, p, NULL, NULL));
    return p[k];
}

/* LIME's surrogates of every class. With every word kept (top_k >= the words) they
 * share their features, and a ridge is linear in its targets: as the classes'
 * probabilities add up to 1, their weights add up to 0 and their intercepts and local
 * predictions to 1. The target class's weights are the explanation's. */
static void lime_classes(const qb_explanation *x)
{
    const int n = x->words.n_words, K = x->num_labels;
    CHECK(x->lime != NULL && n <= 10 && K == 3);
    if (!x->lime || n > 10 || K != 3) return;
    CHECK(memcmp(x->weights, x->lime[x->target].weights, (size_t)n * sizeof *x->weights) == 0);
    double intercepts = 0, local = 0, worst = 0;
    for (int k = 0; k < K; k++) {
        intercepts += x->lime[k].intercept, local += x->lime[k].local_pred;
        CHECKF(x->lime[k].score > 0 && x->lime[k].score <= 1, "class %d: score %g", k, x->lime[k].score);
    }
    for (int j = 0; j < n; j++) {
        double sum = 0, largest = 0;
        for (int k = 0; k < K; k++) sum += x->lime[k].weights[j], largest = fmax(largest, fabs(x->lime[k].weights[j]));
        CHECKF(largest > 0, "word %d: some class weighs it", j);
        worst = fmax(worst, fabs(sum));
    }
    CHECKF(worst < 1e-6 && fabs(intercepts - 1) < 1e-6 && fabs(local - 1) < 1e-6,
           "the classes' weights add up to %g (0), intercepts %g (1), local predictions %g (1)", worst, intercepts, local);
}

/* Occlusion: the drop of the target class's probability without word j (every
 * occurrence), as the engine classifies that text. */
static void check_occlusion(qb_engine *e, const qb_explanation *x)
{
    for (int j = 0; j < x->words.n_words && x->words.n_words <= 8; j++) {
        bool keep[8];
        for (int k = 0; k < 8; k++) keep[k] = k != j;
        char *t = qb_text_words_join(&x->words, keep);
        const double want = x->probs[x->target] - prob(e, t, x->target);
        CHECKF(fabs(x->weights[j] - want) < 1e-6, "occlusion of \"%s\" (class %d): %g, engine %g", x->words.words[j],
               x->target, x->weights[j], want);
        free(t);
    }
}

/* IG: p(text) is the engine's, and the attributions add up to p(text) - p(baseline). */
static void check_ig(const qb_explanation *x)
{
    double sum = x->outside_words;  /* the comma's piece */
    for (int j = 0; j < x->words.n_words; j++) sum += x->weights[j];
    /* the text's pieces are the whole text's here (no character the splits treat differently) */
    CHECKF(fabs(x->f_text - x->probs[x->target]) < 1e-5, "IG p(text) %g, engine %g (class %d)", x->f_text,
           x->probs[x->target], x->target);
    CHECKF(x->completeness < 0.01 && fabs(sum - (x->f_text - x->f_baseline)) <= 0.01 * fabs(x->f_text - x->f_baseline),
           "IG completeness %g: sum %g, p(text) - p(baseline) %g (class %d)", x->completeness, sum,
           x->f_text - x->f_baseline, x->target);
}

static void test_methods(void)
{
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    eo.threads = 1;
    qb_engine *e;
    if (!CHECK_OK(qb_engine_open("golden/tiny", &eo, &e))) return;
    const char *text = "makanan nya enak sekali, tempat nya bagus tapi mahal";
    qb_explain_options o;
    qb_explain_default_options(&o);
    qb_explanation occ, ig, l1, l2, l3;
    o.method = QB_EXPLAIN_OCCLUSION;
    if (CHECK_OK(qb_explain_text(e, text, &o, &occ))) {
        CHECK(occ.words.n_words == 8 && occ.target == occ.predicted &&
              fabs(occ.probs[occ.predicted] - prob(e, text, occ.predicted)) < 1e-7);
        check_occlusion(e, &occ);
        qb_explanation other;  /* another class than the predicted one */
        o.target = (occ.predicted + 1) % occ.num_labels;
        if (CHECK_OK(qb_explain_text(e, text, &o, &other))) {
            CHECK(other.target == o.target && other.predicted == occ.predicted);
            check_occlusion(e, &other);
            qb_explanation_free(&other);
        }
        o.method = QB_EXPLAIN_IG;  /* the other class's integrated gradients add up too */
        if (CHECK_OK(qb_explain_text(e, text, &o, &other))) {
            check_ig(&other);
            qb_explanation_free(&other);
        }
        o.target = 3;
        CHECK(qb_explain_text(e, text, &o, &other) == QB_EINVAL);
        o.target = -1;
    }
    o.method = QB_EXPLAIN_IG;
    if (CHECK_OK(qb_explain_text(e, text, &o, &ig))) {
        check_ig(&ig);
        printf("IG: completeness error %.2e with %d steps\n", ig.completeness, o.steps);
        qb_explain_agreement self;
        qb_explain_compare(&ig, &ig, 3, &self);
        CHECK(self.top_k_overlap == 1.0 && fabs(self.spearman - 1.0) < 1e-12);
        qb_explanation neg = ig;  /* the same words, weights reversed: rank correlation -1 */
        double w[8];
        for (int j = 0; j < 8; j++) w[j] = -ig.weights[j];
        neg.weights = w;
        qb_explain_compare(&ig, &neg, 8, &self);
        CHECK(fabs(self.spearman + 1.0) < 1e-12 && self.top_k_overlap == 1.0);
        qb_explanation_free(&ig);
    }
    o.method = QB_EXPLAIN_LIME, o.samples = 200;
    CHECK_OK(qb_explain_text(e, text, &o, &l1));
    CHECK_OK(qb_explain_text(e, text, &o, &l2));
    o.seed = 7;
    CHECK_OK(qb_explain_text(e, text, &o, &l3));
    if (l1.weights && l2.weights && l3.weights) {
        CHECK(memcmp(l1.weights, l2.weights, 8 * sizeof *l1.weights) == 0);
        CHECK(memcmp(l1.weights, l3.weights, 8 * sizeof *l1.weights) != 0);
        lime_classes(&l1);
    }
    qb_explanation lt;  /* toward another class: that class's surrogate */
    o.target = (l1.predicted + 2) % 3;
    if (CHECK_OK(qb_explain_text(e, text, &o, &lt))) {
        CHECK(lt.target == o.target && lt.predicted == l1.predicted);
        lime_classes(&lt);
        qb_explanation_free(&lt);
    }
    o.target = -1;
    qb_explanation_free(&occ), qb_explanation_free(&l1), qb_explanation_free(&l2), qb_explanation_free(&l3);
    qb_explanation none;
    CHECK(qb_explain_text(e, " ... !", &o, &none) == QB_EINVAL);
    qb_engine_close(e);
}

int main(void)
{
    cJSON *root = fixture_load("golden/lime.json");
    if (root) {
        test_words(root);
        test_lime_fit(root);
    }
    cJSON_Delete(root);
    test_methods();
    return check_summary("test_explain");
}
