/* The words of a text as LIME's IndexedString(bow=True, split_expression=r'\W+')
 * has them (include/qbert/explain.h). */
#include "qbert/explain.h"

#include "qbert/data.h"

#include <stdlib.h>
#include <string.h>

void qb_text_words_free(qb_text_words *w)
{
    for (int i = 0; i < w->n_segments; i++) free(w->segments[i]);
    free(w->segments), free(w->word_of), free(w->words);
    memset(w, 0, sizeof *w);
}

/* Appends segment s[0..len) (a word when is_word; seen numbers the distinct words). */
static qb_status push(qb_text_words *w, qb_strmap *seen, const char *s, size_t len, bool is_word)
{
    char *copy = malloc(len + 1);
    if (!copy) return qb_fail(QB_ENOMEM, "explain: out of memory");
    memcpy(copy, s, len);
    copy[len] = '\0';
    const int word = is_word ? qb_strmap_intern(seen, s, len) : -1;
    if (is_word && word < 0) {
        free(copy);
        return qb_fail(QB_ENOMEM, "explain: out of memory");
    }
    w->segments[w->n_segments] = copy;
    if (word == w->n_words) w->words[w->n_words++] = copy;
    w->word_of[w->n_segments++] = word;
    return QB_OK;
}

qb_status qb_text_words_split(const char *text, qb_text_words *out)
{
    memset(out, 0, sizeof *out);
    const size_t len = strlen(text);
    /* at most one segment per byte */
    out->segments = malloc((len + 1) * sizeof *out->segments);
    out->word_of = malloc((len + 1) * sizeof *out->word_of);
    out->words = malloc((len + 1) * sizeof *out->words);
    qb_strmap *seen = qb_strmap_new();
    if (!out->segments || !out->word_of || !out->words || !seen) {
        qb_strmap_free(seen);
        qb_text_words_free(out);
        return qb_fail(QB_ENOMEM, "explain: out of memory");
    }
    qb_status st = QB_OK;
    size_t pos = 0, start, wlen, done = 0;  /* text[0..done) is cut into segments */
    while (!st && qb_next_word_run(text, len, &pos, &start, &wlen)) {
        if (start > done) st = push(out, seen, text + done, start - done, false);  /* the separator before */
        if (!st) st = push(out, seen, text + start, wlen, true);
        done = start + wlen;
    }
    if (!st && done < len) st = push(out, seen, text + done, len - done, false);
    qb_strmap_free(seen);
    if (st) qb_text_words_free(out);
    return st;
}

char *qb_text_words_join(const qb_text_words *w, const bool *keep)
{
    size_t len = 0;
    for (int i = 0; i < w->n_segments; i++) len += strlen(w->segments[i]);
    char *s = malloc(len + 1), *p = s;
    for (int i = 0; s && i < w->n_segments; i++) {
        if (keep && w->word_of[i] >= 0 && !keep[w->word_of[i]]) continue;
        const size_t n = strlen(w->segments[i]);
        memcpy(p, w->segments[i], n);
        p += n;
    }
    if (s) *p = '\0';
    return s;
}
