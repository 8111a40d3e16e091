/* Exploratory data analysis of labelled text splits (qbert eda): what the research
 * notes looked at before fine-tuning, computed in one pass and written as report.md,
 * eda.json, SVG charts and one self-contained HTML page.
 *
 * Per split: rows, rows the loader skipped (empty text; missing label), duplicate
 * texts, texts with conflicting labels, label counts and shares; text lengths in
 * characters (code points), words (str.split()) and, with a tokenizer, tokens
 * ([CLS] + word pieces + [SEP]): n, mean, sample std, min, 25/50/75/90/99th
 * percentiles (numpy's linear interpolation), max, per split and per label; the share
 * of texts longer than max_length tokens and the [UNK] rate of the word pieces. Over
 * all splits: the top unigrams and bigrams overall and per label, with and without
 * stopwords (words are Python's re \w+ runs of the preprocessed text, stopwords left
 * out before bigrams are formed); the words that most distinguish each label from the
 * others by the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi
 * and Quinn 2008, section 3.5: prior counts = the word's count over all labels,
 * z-scores); and texts that occur in more than one split (leakage). */
#ifndef QBERT_EDA_H
#define QBERT_EDA_H

#include "qbert/data.h"
#include "qbert/tokenizer.h"

#include <cjson/cJSON.h>

typedef struct {
    int top_k;                      /* words per list (default 20) */
    const char *stopwords_file;     /* NULL: the shipped Indonesian list */
    const qb_tokenizer *tokenizer;  /* NULL: no token statistics */
    int max_length;                 /* tokens a model reads, incl. [CLS] / [SEP] (default 128) */
    int bins;                       /* histogram bins (default 40) */
} qb_eda_options;

void qb_eda_default_options(qb_eda_options *o);

typedef struct qb_eda qb_eda;

/* The analysis of n splits named names[i] (train, valid, test ...). Their label ids
 * index label_names (n_labels), or, with label_names NULL, each split's own
 * label_names (qb_data_options.discover_labels), which are unified by name in order of
 * first appearance. Rows without a label (-1) count everywhere but per label. */
qb_status qb_eda_compute(const qb_dataset *splits, const char *const *names, int n, const char *const *label_names,
                         int n_labels, const qb_eda_options *o, qb_eda **out);
/* All the numbers (eda.json). */
cJSON *qb_eda_to_json(const qb_eda *e);
/* report.md, eda.json, the charts (*.svg) and eda.html (all of it, the charts inline)
 * into dir, each atomically. */
qb_status qb_eda_write(const qb_eda *e, const char *dir);
void qb_eda_free(qb_eda *e);

#endif
