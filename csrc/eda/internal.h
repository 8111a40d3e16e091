/* The EDA module's shared state: eda.c computes it, report.c writes it. */
#ifndef QBERT_EDA_INTERNAL_H
#define QBERT_EDA_INTERNAL_H

#include "qbert/eda.h"

enum { EDA_CHARS, EDA_WORDS, EDA_TOKENS, EDA_KINDS };
/* The word lists: unigrams, unigrams without stopwords, bigrams, bigrams without. */
enum { EDA_UNI, EDA_UNI_NS, EDA_BI, EDA_BI_NS, EDA_LISTS };

typedef struct {
    int n;
    double mean, std, min, p25, median, p75, p90, p99, max;
} eda_stats;

typedef struct {
    char *name, *path;
    int rows, skipped, skipped_empty;
    int duplicates;             /* rows whose text an earlier row of the split has */
    int conflicting;            /* distinct texts with more than one label */
    int *label_counts;          /* (K) */
    int *labels;                /* (rows) unified ids, -1 unlabelled */
    double *len[EDA_KINDS];     /* (rows) each text's length; tokens only with a tokenizer */
    eda_stats *stats[EDA_KINDS];  /* (K + 1): all rows, then each label's */
    int truncated;              /* texts longer than max_length tokens */
    long long pieces, unk;      /* word pieces, [UNK] among them */
    qb_strmap *texts;           /* its distinct texts */
} eda_split;

/* Counts of strings per label: counts[i * (K + 1) + k], k < K a label, k = K all rows. */
typedef struct {
    qb_strmap *map;
    int *counts, cap;
} eda_counts;

/* A ranked entry of a word list: map index, count, and the log-odds z for the
 * distinctive words. */
typedef struct {
    int index, count;
    double z;
} eda_word;

/* Texts two splits share: distinct texts of split b also in split a, and b's rows
 * whose text is in a. */
typedef struct {
    int a, b, shared, rows_b;
    const char *examples[3];    /* keys of b's text map */
    int n_examples;
} eda_leak;

struct qb_eda {
    qb_eda_options o;
    bool tokens;
    int n_labels;
    char **labels;
    int n_splits;
    eda_split *splits;
    eda_counts words[EDA_LISTS];  /* EDA_UNI_NS shares EDA_UNI's map: unused */
    eda_word *top[EDA_LISTS];     /* (K + 1, top_k): per label, then all; n_top of each */
    int *n_top[EDA_LISTS];
    eda_word *distinct;           /* (K, top_k) */
    int *n_distinct;
    eda_leak *leaks;
    int n_leaks;
};

/* The map of list l (unigram lists share one). */
static inline const qb_strmap *eda_list_map(const qb_eda *e, int l)
{
    return e->words[l == EDA_UNI_NS ? EDA_UNI : l].map;
}

#endif
