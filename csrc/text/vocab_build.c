/* A small vocabulary builder for models trained from scratch (the demo): special
 * tokens, every character seen (bare and "##"-continued, so any word of the corpus
 * can be spelled), then the most frequent whole words. It is a stand-in for
 * WordPiece training, good enough for a few-hundred-sentence corpus. Words are
 * split the way the BERT pre-tokenizer splits: lowercase, whitespace, and every
 * punctuation character on its own. */
#include "qbert/metrics.h"
#include "qbert/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Word counts: counts[i] of the map's word i. */
typedef struct {
    qb_strmap *map;
    int *counts, cap;
} counter;

static qb_status count_word(counter *c, const char *w, size_t len)
{
    if (!c->map && !(c->map = qb_strmap_new())) return qb_fail(QB_ENOMEM, "vocabulary builder: out of memory");
    const int i = qb_strmap_intern(c->map, w, len);
    if (i >= c->cap) {
        const int cap = 2 * c->cap + 1024;
        int *counts = i >= 0 ? realloc(c->counts, (size_t)cap * sizeof *counts) : NULL;
        if (!counts) return qb_fail(QB_ENOMEM, "vocabulary builder: out of memory");
        memset(counts + c->cap, 0, (size_t)(cap - c->cap) * sizeof *counts);
        c->counts = counts, c->cap = cap;
    }
    if (i < 0) return qb_fail(QB_ENOMEM, "vocabulary builder: out of memory");
    c->counts[i]++;
    return QB_OK;
}

static int is_punct(utf8proc_int32_t cp)
{
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return 1;
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

typedef struct {
    const char *word;
    int count;
} entry;

static int by_count(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->word, y->word);
}

/* The words of c, most frequent first (ties by bytes); NULL when out of memory. */
static entry *sorted(const counter *c, int *n)
{
    *n = c->map ? qb_strmap_count(c->map) : 0;
    entry *e = malloc((size_t)(*n ? *n : 1) * sizeof *e);
    for (int i = 0; e && i < *n; i++) e[i] = (entry){qb_strmap_key(c->map, i), c->counts[i]};
    if (e) qsort(e, (size_t)*n, sizeof *e, by_count);
    return e;
}

/* Appends "prefix+token\n" to a growing buffer. */
static qb_status emit(char **buf, size_t *len, size_t *cap, const char *prefix, const char *tok)
{
    size_t need = strlen(prefix) + strlen(tok) + 1;
    if (*len + need + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 4096) + need;
        char *nb = realloc(*buf, nc);
        if (!nb) return qb_fail(QB_ENOMEM, "vocabulary builder: out of memory");
        *buf = nb;
        *cap = nc;
    }
    *len += (size_t)sprintf(*buf + *len, "%s%s\n", prefix, tok);
    return QB_OK;
}

qb_status qb_vocab_build(const char *const *texts, int n, int max_words, char **out, size_t *out_len)
{
    counter words = {0}, chars = {0};
    char *buf = NULL, word[512];
    size_t len = 0, cap = 0, wl = 0;
    qb_status st = QB_OK;
    for (int t = 0; t < n && !st; t++) {
        const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)texts[t];
        utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(texts[t]);
        while (!st) {
            utf8proc_int32_t cp = -1;
            utf8proc_ssize_t k = left > 0 ? utf8proc_iterate(s, left, &cp) : 0;
            if (k < 0) { /* invalid byte: skip it */
                s++, left--;
                continue;
            }
            int end = k == 0, space = !end && utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
            space |= cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r';
            int punct = !end && !space && is_punct(cp);
            if ((end || space || punct || wl + 4 >= sizeof word) && wl > 0) {
                st = count_word(&words, word, wl);
                wl = 0;
            }
            if (end) break;
            if (!space) {
                utf8proc_uint8_t enc[4];
                utf8proc_ssize_t el = utf8proc_encode_char(utf8proc_tolower(cp), enc);
                if (!st) st = count_word(&chars, (const char *)enc, (size_t)el);
                if (punct) {
                    if (!st) st = count_word(&words, (const char *)enc, (size_t)el);
                } else {
                    memcpy(word + wl, enc, (size_t)el);
                    wl += (size_t)el;
                }
            }
            s += k;
            left -= k;
        }
    }
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5 && !st; i++) st = emit(&buf, &len, &cap, "", specials[i]);
    int n_chars, n_words;
    entry *cs = sorted(&chars, &n_chars), *ws = sorted(&words, &n_words);
    if (!st && (!cs || !ws)) st = qb_fail(QB_ENOMEM, "vocabulary builder: out of memory");
    for (int i = 0; i < n_chars && !st; i++) st = emit(&buf, &len, &cap, "", cs[i].word);
    for (int i = 0; i < n_chars && !st; i++) st = emit(&buf, &len, &cap, "##", cs[i].word);
    /* Words that are single characters are already in; take the next max_words. */
    for (int i = 0, taken = 0; i < n_words && taken < max_words && !st; i++) {
        const char *w = ws[i].word;
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)w, -1, &cp);
        if (k > 0 && w[k] == '\0') continue;
        st = emit(&buf, &len, &cap, "", w);
        taken++;
    }
    free(cs), free(ws);
    qb_strmap_free(words.map), qb_strmap_free(chars.map);
    free(words.counts), free(chars.counts);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return QB_OK;
}

qb_status qb_tokenizer_write_files(const char *dir, const char *vocab, size_t len)
{
    static const char tok_config[] = "{\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"do_lower_case\": true\n}\n";
    char path[4096];
    qb_status st = qb_path_join(path, sizeof path, dir, "vocab.txt");
    if (!st) st = qb_write_file_atomic(path, vocab, len);
    if (!st) st = qb_path_join(path, sizeof path, dir, "tokenizer_config.json");
    if (!st) st = qb_write_file_atomic(path, tok_config, sizeof tok_config - 1);
    return st;
}

qb_status qb_tokenizer_copy_files(const char *from_dir, const char *to_dir)
{
    static const char *const files[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.json"};
    qb_status st = QB_OK;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !st; i++) {
        char src[4096], dst[4096], *data;
        size_t len;
        if ((st = qb_path_join(src, sizeof src, from_dir, files[i]))) break;
        if (!qb_file_exists(src)) continue;
        if ((st = qb_path_join(dst, sizeof dst, to_dir, files[i])) || (st = qb_read_file(src, &data, &len))) break;
        st = qb_write_file_atomic(dst, data, len);
        free(data);
    }
    return st;
}

qb_status qb_tokenizer_set_max_length(const char *dir, int max_length)
{
    char path[4096], *text = NULL;
    size_t len = 0;
    qb_status st = qb_path_join(path, sizeof path, dir, "tokenizer_config.json");
    if (!st && qb_file_exists(path)) st = qb_read_file(path, &text, &len);
    if (st) return st;
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : cJSON_CreateObject();
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qb_fail(QB_EFORMAT, "%s: expected a JSON object", path);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "model_max_length");
    cJSON_AddNumberToObject(root, "model_max_length", max_length);
    st = qb_json_write_file(path, root);
    cJSON_Delete(root);
    return st;
}
