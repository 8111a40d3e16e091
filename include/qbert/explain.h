/* Explanations of a classifier's predictions (qbert explain): which words of a text
 * move a class's probability (the predicted class's, or a chosen target's), by three
 * methods, on any model the engine loads (FP32, FP16, INT8, INT4, QAT).
 *
 * Words are what LIME's text explainer takes them to be (IndexedString with
 * bow = True, split_expression = r'\W+'): the distinct \w+ runs of the text in order
 * of first appearance; removing a word removes every occurrence and keeps the
 * separators around it.
 *   - LIME (the `lime` package's LimeTextExplainer): `samples` texts with a random
 *     number (1 .. n words) of words removed, their class probabilities, the cosine
 *     distance of each removal mask to the full text (x 100), an exponential kernel of
 *     width 25, features chosen as LIME's 'auto' does (forward selection by weighted
 *     R^2 for up to 6, else the highest weights of a weighted ridge, alpha 0.01, on
 *     every word), then a weighted ridge (alpha 1, with intercept) on the chosen words;
 *     one such surrogate per class (lime's top_labels = every class), the target
 *     class's (by default the predicted one) being the explanation.
 *   - Occlusion: each word removed in turn; the target class's probability drop.
 *   - Integrated gradients on the word embeddings through qbert's own backward pass
 *     (on the CPU; FP32 models as they are, quantized models through their dequantized
 *     weights and QAT models through their fake-quantized weights, both with FP32
 *     activations: rounded activations have no gradient to integrate, so p(text) is
 *     then near the quantized model's but not equal to it): from a baseline where
 *     each word piece's embedding is [PAD]'s ([CLS] and [SEP] kept) to the text,
 *     `steps` midpoints, the attribution of a piece = (input - baseline) . mean
 *     gradient of the target class's probability; a word's = the sum over its pieces.
 *     Completeness: the attributions add up to p(text) - p(baseline); the error is
 *     reported per text. */
#ifndef QBERT_EXPLAIN_H
#define QBERT_EXPLAIN_H

#include "qbert/engine.h"

#include <cjson/cJSON.h>

/* ---- words ---- */

typedef struct {
    int n_segments;
    char **segments;        /* the text cut into \w+ words and the \W+ runs between them */
    int *word_of;           /* (n_segments) the word index of a segment, -1 for a separator */
    int n_words;
    char **words;           /* (n_words) distinct, in order of first appearance (borrowed from segments) */
} qb_text_words;

qb_status qb_text_words_split(const char *text, qb_text_words *out);
/* The text with the words whose keep[w] is false removed (every occurrence; the
 * separators stay), as IndexedString.inverse_removing; keep NULL: the whole text.
 * malloc'ed; NULL when out of memory. */
char *qb_text_words_join(const qb_text_words *w, const bool *keep);
void qb_text_words_free(qb_text_words *w);

/* ---- LIME's local surrogate ---- */

/* Cosine distance x 100 of each row of the 0/1 masks data (n, d) to row 0, as
 * sklearn's pairwise_distances(metric='cosine'). */
void qb_lime_distances(const double *data, int n, int d, double *distances);

typedef struct {
    int n;                  /* features kept */
    int *features;          /* (n) by |weight|, largest first (ties: lower feature first) */
    double *weights;        /* (n) */
    double intercept, score, local_pred;  /* as LimeBase.explain_instance_with_data */
} qb_lime_fit;

/* LimeBase.explain_instance_with_data for one class: sample weights
 * sqrt(exp(-d^2 / width^2)), num_features by feature_selection 'auto', the ridge
 * (alpha 1) on them; y (n) the class's probability of each sample. */
qb_status qb_lime_explain(const double *data, const double *y, const double *distances, int n, int d,
                          double kernel_width, int num_features, qb_lime_fit *out);
void qb_lime_fit_free(qb_lime_fit *f);

/* ---- explaining texts ---- */

typedef enum { QB_EXPLAIN_LIME, QB_EXPLAIN_OCCLUSION, QB_EXPLAIN_IG } qb_explain_method;

typedef struct {
    qb_explain_method method;
    int samples;            /* LIME: perturbed texts incl. the text (default 1000; lime's is 5000) */
    int top_k;              /* LIME num_features; the words the reports list (default 10) */
    int steps;              /* IG: interpolation steps (default 64) */
    double kernel_width;    /* LIME (default 25) */
    uint64_t seed;          /* LIME's removal masks (Philox) */
    int target;             /* the class the weights are about (an id); -1 (default): each
                             * text's predicted class */
} qb_explain_options;

void qb_explain_default_options(qb_explain_options *o);
const char *qb_explain_method_name(qb_explain_method m);
int qb_explain_method_parse(const char *name);  /* -1: unknown */

/* LIME's surrogate of one class: the word weights (n_words; 0 for words its fit did
 * not keep) and LimeBase.explain_instance_with_data's intercept, score (R^2) and
 * local prediction. */
typedef struct {
    double *weights;
    double intercept, score, local_pred;
} qb_lime_class;

typedef struct {
    qb_text_words words;
    int num_labels;
    float *probs;           /* (num_labels) of the text */
    int predicted;          /* the most probable class */
    int target;             /* the class every weight is about: the options' target, else predicted */
    double *weights;        /* (n_words) toward `target`; LIME: 0 for words it did not keep */
    /* LIME: (num_labels) a surrogate per class on the same samples, as
     * LimeTextExplainer(top_labels = num_labels); weights repeats the target
     * class's. NULL for the other methods. */
    qb_lime_class *lime;
    /* IG: p(text), p(baseline), the attribution of pieces in no word (punctuation),
     * and the completeness error |sum of all - (f_text - f_baseline)| / |f_text - f_baseline| */
    double f_text, f_baseline, outside_words, completeness;
} qb_explanation;

/* Explains one text with e's model (e on any device; IG runs on the CPU backend). */
qb_status qb_explain_text(qb_engine *e, const char *text, const qb_explain_options *o, qb_explanation *out);
void qb_explanation_free(qb_explanation *x);

/* How two models' explanations of the same text agree: the share of the top_k words
 * (by |weight|) they have in common, and Spearman's rank correlation of all the words'
 * weights (average ranks for ties; NaN when either has all weights equal). */
typedef struct {
    double top_k_overlap, spearman;
} qb_explain_agreement;
void qb_explain_compare(const qb_explanation *a, const qb_explanation *b, int top_k, qb_explain_agreement *out);

/* explanations.json, explanations.html (each text's words highlighted by weight) and
 * text-N.svg (a bar per word) into dir; b, agree: a second model's explanations of
 * the same texts and the agreements (NULL: none). labels: the class names. */
qb_status qb_explain_write(const char *dir, const qb_explanation *a, const qb_explanation *b,
                           const qb_explain_agreement *agree, int n, const char *const *labels,
                           const qb_explain_options *o, const char *model_a, const char *model_b);

#endif
