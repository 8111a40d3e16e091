/* LIME's words of a text (qb_text_words_split, qb_text_words_join) on arbitrary
 * bytes, invalid UTF-8 included: the segments put back together are the text, words
 * and separators alternate, each word is numbered once, and a text with some words
 * removed (as LIME's perturbations) is no longer than the text. */
#include "fuzz.h"
#include "qbert/explain.h"

static void check_words(const qb_text_words *w, const char *text)
{
    char *whole = qb_text_words_join(w, NULL);
    FUZZ_CHECK(whole != NULL && strcmp(whole, text) == 0);
    free(whole);
    FUZZ_CHECK(w->n_words <= w->n_segments);
    for (int i = 0; i < w->n_segments; i++) {
        const int k = w->word_of[i];
        FUZZ_CHECK(k >= -1 && k < w->n_words && w->segments[i][0] != '\0');
        FUZZ_CHECK(k < 0 || strcmp(w->words[k], w->segments[i]) == 0);
        if (i > 0) FUZZ_CHECK((w->word_of[i - 1] < 0) != (k < 0));
    }
    for (int a = 0; a < w->n_words; a++)  /* distinct (against the next 64: all pairs would be slow) */
        for (int b = a + 1; b < w->n_words && b < a + 64; b++) FUZZ_CHECK(strcmp(w->words[a], w->words[b]) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';  /* the text ends at its first NUL byte, as a C string does */
    qb_text_words w;
    if (qb_text_words_split(text, &w) == QB_OK) {
        check_words(&w, text);
        bool *keep = malloc((size_t)w.n_words + 1);
        for (int k = 0; keep && k < w.n_words; k++) keep[k] = (data[k % size] >> (k % 8)) & 1;
        char *less = keep ? qb_text_words_join(&w, keep) : NULL;
        FUZZ_CHECK(!keep || (less != NULL && strlen(less) <= strlen(text)));
        free(less);
        free(keep);
        qb_text_words_free(&w);
    }
    free(text);
    return 0;
}
