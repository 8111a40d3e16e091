/* BERT tokenizer: vocabulary, special-token splitting, pre-tokenization, WordPiece
 * and batch encoding. Equal to Hugging Face `tokenizers` (Tokenizer.from_file of a
 * BERT tokenizer.json) and to transformers' BertTokenizer; the character-level
 * parts (decoding, classes, normalizer) are in bert_chars.c.
 *
 * Pipeline of qb_tokenize, as in the reference:
 *   bytes -> code points (bad UTF-8 -> U+FFFD)
 *         -> split out the special tokens written literally in the text ("[SEP]"),
 *            matched on the raw text like HF's added tokens (normalized=false)
 *         -> each remaining segment: normalize (clean, CJK, strip accents, lowercase)
 *         -> words: split on whitespace, every punctuation character alone
 *         -> WordPiece: greedy longest-match-first with "##" continuations; a word
 *            over max_chars_per_word code points, or one that cannot be covered
 *            completely, is a single [UNK].
 *
 * The vocabulary is an open-addressing hash table of token ids keyed by the token
 * bytes. A continuation lookup hashes "##" then the piece, so WordPiece never
 * builds the "##piece" string. The tokenizer is read-only after loading, so any
 * number of threads may tokenize with it at once. */
#include "qbert/tokenizer.h"

#include "text/bert_chars.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The special tokens of a BERT vocab. Those present are split out of the raw text;
 * the first four must be present. */
enum { SPECIAL_PAD, SPECIAL_UNK, SPECIAL_CLS, SPECIAL_SEP, SPECIAL_MASK, N_SPECIAL };
static const char *const special_names[N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

typedef struct {
    uint32_t hash; /* low 32 bits of the token's hash: most mismatches skip memcmp */
    int32_t id;    /* -1: empty */
} slot;

struct qb_tokenizer {
    qb_tokenizer_options opt;
    char *text;           /* the vocab file, each line NUL-terminated in place */
    const char **tokens;  /* (V) token of each id, into text */
    uint32_t *token_len;  /* (V) bytes */
    int vocab_size;
    slot *slots;          /* power-of-two capacity, at most half full */
    uint64_t slot_mask;
    size_t max_token_len; /* longest token in bytes: no longer piece can match */
    int special[N_SPECIAL];
};

/* ---- vocabulary hash table ---------------------------------------------------- */

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
    return h;
}

/* Id of the token "##" s (cont) or s, -1 when absent. Duplicate tokens in the file
 * keep the last id, as HF's load_vocab does. */
static int vocab_find(const qb_tokenizer *t, bool cont, const char *s, size_t n)
{
    uint64_t h = fnv1a(cont ? fnv1a(FNV_OFFSET, "##", 2) : FNV_OFFSET, s, n);
    size_t full = n + (cont ? 2 : 0);
    for (uint64_t i = h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        const slot *sl = &t->slots[i];
        if (sl->id < 0) return -1;
        if (sl->hash != (uint32_t)h || t->token_len[sl->id] != full) continue;
        const char *tok = t->tokens[sl->id];
        if (cont && (tok[0] != '#' || tok[1] != '#')) continue;
        if (memcmp(tok + (cont ? 2 : 0), s, n) == 0) return sl->id;
    }
}

static void vocab_insert(qb_tokenizer *t, int id)
{
    const char *tok = t->tokens[id];
    uint32_t len = t->token_len[id];
    uint64_t h = fnv1a(FNV_OFFSET, tok, len);
    uint64_t i = h & t->slot_mask;
    for (;; i = (i + 1) & t->slot_mask) {
        slot *sl = &t->slots[i];
        if (sl->id < 0) break;
        if (sl->hash == (uint32_t)h && t->token_len[sl->id] == len && memcmp(t->tokens[sl->id], tok, len) == 0)
            break; /* a duplicate: the later line wins */
    }
    t->slots[i].hash = (uint32_t)h;
    t->slots[i].id = id;
}

/* Splits the vocab file into lines the way Python's text mode reads it (universal
 * newlines: "\n", "\r\n" or "\r" ends a line; a last line without one counts),
 * checks each is UTF-8, and builds the table. */
static qb_status vocab_build(qb_tokenizer *t, const char *path, size_t len)
{
    char *s = t->text;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))) lines++;
    if (len > 0 && s[len - 1] != '\n' && s[len - 1] != '\r') lines++;
    if (lines > INT32_MAX / 4) return qb_fail(QB_EFORMAT, "%s: %zu lines, more than a vocab can hold", path, lines);

    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)lines) cap *= 2;
    t->tokens = malloc((lines ? lines : 1) * sizeof *t->tokens);
    t->token_len = malloc((lines ? lines : 1) * sizeof *t->token_len);
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->tokens || !t->token_len || !t->slots)
        return qb_fail(QB_ENOMEM, "%s: cannot allocate the table for %zu tokens", path, lines);
    t->slot_mask = cap - 1;
    for (uint64_t i = 0; i < cap; i++) t->slots[i].id = -1;

    int32_t *scratch = NULL; /* code points of a line, for the UTF-8 check */
    size_t scratch_cap = 0;
    size_t start = 0;
    int id = 0;
    for (size_t i = 0; i <= len && (size_t)id < lines; i++) {
        if (i < len && s[i] != '\n' && s[i] != '\r') continue;
        size_t n = i - start;
        if (n > UINT32_MAX) {
            free(scratch);
            return qb_fail(QB_EFORMAT, "%s: line %d is too long", path, id + 1);
        }
        if (n > scratch_cap) {
            free(scratch);
            scratch_cap = n;
            if (!(scratch = malloc(n * sizeof *scratch)))
                return qb_fail(QB_ENOMEM, "%s: cannot allocate %zu bytes", path, n * sizeof *scratch);
        }
        int bad = 0;
        qb_utf8_decode(s + start, n, scratch, &bad);
        if (bad) {
            free(scratch);
            return qb_fail(QB_EFORMAT, "%s: line %d is not valid UTF-8", path, id + 1);
        }
        if (i < len && s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') i++;
        s[start + n] = '\0'; /* overwrites the line end (or the file's own NUL) */
        t->tokens[id] = s + start;
        t->token_len[id] = (uint32_t)n;
        if (n > t->max_token_len) t->max_token_len = n;
        vocab_insert(t, id);
        id++;
        start = i + 1;
    }
    free(scratch);
    t->vocab_size = id;

    for (int k = 0; k < N_SPECIAL; k++) {
        t->special[k] = vocab_find(t, false, special_names[k], strlen(special_names[k]));
        if (k != SPECIAL_MASK && t->special[k] < 0)
            return qb_fail(QB_EFORMAT, "%s: the special token %s is missing from the vocab", path, special_names[k]);
    }
    return QB_OK;
}

/* ---- loading ------------------------------------------------------------------- */

void qb_tokenizer_default_options(qb_tokenizer_options *o)
{
    o->lowercase = true;
    o->strip_accents = -1;
    o->tokenize_chinese_chars = true;
    o->max_chars_per_word = 100;
    o->model_max_length = 0;
}

/* text: a malloc'ed, NUL-terminated vocab of len bytes, owned by the tokenizer from here. */
static qb_status load_vocab_text(char *text, size_t len, const char *name, const qb_tokenizer_options *o,
                                 qb_tokenizer **out)
{
    *out = NULL;
    qb_status st = QB_OK;
    if (o->strip_accents < -1 || o->strip_accents > 1)
        st = qb_fail(QB_EINVAL, "tokenizer options: strip_accents must be -1, 0 or 1, got %d", o->strip_accents);
    else if (o->max_chars_per_word < 1)
        st = qb_fail(QB_EINVAL, "tokenizer options: max_chars_per_word must be >= 1, got %d", o->max_chars_per_word);
    qb_tokenizer *t = st ? NULL : calloc(1, sizeof *t);
    if (!st && !t) st = qb_fail(QB_ENOMEM, "cannot allocate a tokenizer");
    if (st) {
        free(text);
        return st;
    }
    t->opt = *o;
    t->text = text;
    if ((st = vocab_build(t, name, len))) {
        qb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QB_OK;
}

qb_status qb_tokenizer_load_vocab(const char *vocab_path, const qb_tokenizer_options *o, qb_tokenizer **out)
{
    char *text;
    size_t len;
    *out = NULL;
    qb_status st = qb_read_file(vocab_path, &text, &len);
    return st ? st : load_vocab_text(text, len, vocab_path, o, out);
}

qb_status qb_tokenizer_from_vocab(const char *vocab, size_t len, const char *name, const qb_tokenizer_options *o,
                                  qb_tokenizer **out)
{
    char *text = malloc(len + 1);
    *out = NULL;
    if (!text) return qb_fail(QB_ENOMEM, "cannot copy a %zu-byte vocabulary", len);
    memcpy(text, vocab, len);
    text[len] = '\0';
    return load_vocab_text(text, len, name, o, out);
}

/* A boolean key of tokenizer_config.json: absent or null keeps *value. */
static qb_status config_bool(const cJSON *root, const char *path, const char *key, bool *value, bool *is_null)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (is_null) *is_null = !v || cJSON_IsNull(v);
    if (!v || cJSON_IsNull(v)) return QB_OK;
    if (!cJSON_IsBool(v)) return qb_fail(QB_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *value = cJSON_IsTrue(v);
    return QB_OK;
}

/* Reads do_lower_case, strip_accents (null = follow lowercase) and
 * tokenize_chinese_chars; every other key belongs to other HF tokenizer classes
 * or to padding/truncation, which qb_encode_batch's arguments decide. */
static qb_status read_config(const char *path, qb_tokenizer_options *o)
{
    char *text;
    size_t len;
    qb_status st = qb_read_file(path, &text, &len);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        if (!at || at < text || at > text + len) at = text;
        for (const char *p = text; p < at; p++) line += *p == '\n';
        free(text);
        return qb_fail(QB_EFORMAT, "%s:%d: malformed JSON", path, line);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        free(text);
        return qb_fail(QB_EFORMAT, "%s: expected a JSON object at the top level", path);
    }
    bool strip = false, strip_null = true;
    if (!(st = config_bool(root, path, "do_lower_case", &o->lowercase, NULL)) &&
        !(st = config_bool(root, path, "strip_accents", &strip, &strip_null)) &&
        !(st = config_bool(root, path, "tokenize_chinese_chars", &o->tokenize_chinese_chars, NULL)))
        o->strip_accents = strip_null ? -1 : strip;
    /* HF writes 10^30 for "no limit": only a length a model could take counts */
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model_max_length");
    if (!st && cJSON_IsNumber(m) && m->valuedouble >= 2 && m->valuedouble <= 1e6) o->model_max_length = m->valueint;
    cJSON_Delete(root);
    free(text);
    return st;
}

qb_status qb_tokenizer_load(const char *model_dir, qb_tokenizer **out)
{
    *out = NULL;
    char path[4096];
    qb_tokenizer_options o;
    qb_tokenizer_default_options(&o);
    qb_status st = qb_path_join(path, sizeof path, model_dir, "tokenizer_config.json");
    if (st) return st;
    if (qb_file_exists(path) && (st = read_config(path, &o))) return st;
    if ((st = qb_path_join(path, sizeof path, model_dir, "vocab.txt"))) return st;
    return qb_tokenizer_load_vocab(path, &o, out);
}

void qb_tokenizer_free(qb_tokenizer *t)
{
    if (!t) return;
    free(t->text);
    free(t->tokens);
    free(t->token_len);
    free(t->slots);
    free(t);
}

int qb_tokenizer_vocab_size(const qb_tokenizer *t) { return t->vocab_size; }

int qb_tokenizer_model_max_length(const qb_tokenizer *t) { return t->opt.model_max_length; }

int qb_tokenizer_token_id(const qb_tokenizer *t, const char *token)
{
    return vocab_find(t, false, token, strlen(token));
}

const char *qb_tokenizer_token(const qb_tokenizer *t, int id)
{
    return id >= 0 && id < t->vocab_size ? t->tokens[id] : NULL;
}

int qb_tokenizer_cls_id(const qb_tokenizer *t) { return t->special[SPECIAL_CLS]; }
int qb_tokenizer_sep_id(const qb_tokenizer *t) { return t->special[SPECIAL_SEP]; }
int qb_tokenizer_pad_id(const qb_tokenizer *t) { return t->special[SPECIAL_PAD]; }
int qb_tokenizer_unk_id(const qb_tokenizer *t) { return t->special[SPECIAL_UNK]; }

/* ---- tokenizing ---------------------------------------------------------------- */

/* Working memory of one qb_tokenize call. */
typedef struct {
    int32_t *cps;       /* (n) decoded text */
    int32_t *norm, *tmp; /* (QB_BERT_NORM_GROWTH * n) normalizer output and scratch */
    char *word;         /* (4 * max_chars_per_word) UTF-8 of one word */
    size_t *bound;      /* (max_chars_per_word + 1) byte offset of each character */
    int32_t *ids;       /* output, grown by doubling */
    size_t n_ids, cap_ids;
} work;

static qb_status push_id(work *w, int id)
{
    if (w->n_ids == w->cap_ids) {
        if (w->cap_ids > (size_t)INT_MAX / 2) return qb_fail(QB_EINVAL, "text has more than %d tokens", INT_MAX);
        size_t cap = w->cap_ids * 2;
        int32_t *p = realloc(w->ids, cap * sizeof *p);
        if (!p) return qb_fail(QB_ENOMEM, "cannot allocate %zu token ids", cap);
        w->ids = p;
        w->cap_ids = cap;
    }
    w->ids[w->n_ids++] = id;
    return QB_OK;
}

/* WordPiece on one word of k code points. */
static qb_status wordpiece(const qb_tokenizer *t, work *w, const int32_t *cps, size_t k)
{
    if (k > (size_t)t->opt.max_chars_per_word) return push_id(w, t->special[SPECIAL_UNK]);
    size_t len = 0;
    for (size_t i = 0; i < k; i++) {
        w->bound[i] = len;
        len += (size_t)qb_utf8_encode(cps[i], w->word + len);
    }
    w->bound[k] = len;
    /* Longest piece first from each start; a piece longer than any token is
     * skipped without a lookup. All pieces are found before any is emitted,
     * because a word that cannot be covered becomes a single [UNK]. */
    size_t first = w->n_ids;
    for (size_t s = 0; s < k;) {
        size_t cont = s > 0 ? 2 : 0, e = k;
        while (e > s && w->bound[e] - w->bound[s] + cont > t->max_token_len) e--;
        int id = -1;
        for (; e > s; e--) {
            id = vocab_find(t, s > 0, w->word + w->bound[s], w->bound[e] - w->bound[s]);
            if (id >= 0) break;
        }
        if (id < 0) {
            w->n_ids = first;
            return push_id(w, t->special[SPECIAL_UNK]);
        }
        qb_status st = push_id(w, id);
        if (st) return st;
        s = e;
    }
    return QB_OK;
}

/* Normalizes a segment (no special tokens inside) and WordPieces its words. */
static qb_status tokenize_segment(const qb_tokenizer *t, work *w, const int32_t *cps, size_t n)
{
    bool strip = t->opt.strip_accents < 0 ? t->opt.lowercase : t->opt.strip_accents == 1;
    size_t m = qb_bert_normalize(cps, n, strip, t->opt.lowercase, t->opt.tokenize_chinese_chars, w->norm, w->tmp);
    const int32_t *s = w->norm;
    for (size_t i = 0; i < m;) {
        if (qb_bert_is_whitespace(s[i])) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (!qb_bert_is_punct(s[i]))
            while (j < m && !qb_bert_is_whitespace(s[j]) && !qb_bert_is_punct(s[j])) j++;
        qb_status st = wordpiece(t, w, s + i, j - i);
        if (st) return st;
        i = j;
    }
    return QB_OK;
}

/* The special token written at cps[i..], or -1. The names differ and all end in
 * ']', so at most one matches: this is HF's leftmost-longest match. */
static int special_at(const qb_tokenizer *t, const int32_t *cps, size_t n, size_t i, size_t *len)
{
    if (cps[i] != '[') return -1;
    for (int k = 0; k < N_SPECIAL; k++) {
        const char *name = special_names[k];
        size_t l = strlen(name);
        if (t->special[k] < 0 || l > n - i) continue;
        size_t j = 0;
        while (j < l && cps[i + j] == (unsigned char)name[j]) j++;
        if (j == l) {
            *len = l;
            return t->special[k];
        }
    }
    return -1;
}

static void work_free(work *w)
{
    free(w->cps);
    free(w->norm);
    free(w->tmp);
    free(w->word);
    free(w->bound);
    free(w->ids);
}

qb_status qb_tokenize(const qb_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n_ids,
                      int *n_invalid)
{
    *ids = NULL;
    *n_ids = 0;
    if (n_invalid) *n_invalid = 0;
    if (!text && len > 0) return qb_fail(QB_EINVAL, "qb_tokenize: text is NULL");
    if (len > (size_t)INT_MAX / QB_BERT_NORM_GROWTH)
        return qb_fail(QB_EINVAL, "qb_tokenize: text of %zu bytes is too long (max %d)", len,
                       INT_MAX / QB_BERT_NORM_GROWTH);
    size_t n0 = len ? len : 1, max_chars = (size_t)t->opt.max_chars_per_word;
    work w = {0};
    w.cps = malloc(n0 * sizeof *w.cps);
    w.norm = malloc(QB_BERT_NORM_GROWTH * n0 * sizeof *w.norm);
    w.tmp = malloc(QB_BERT_NORM_GROWTH * n0 * sizeof *w.tmp);
    w.word = malloc(4 * max_chars);
    w.bound = malloc((max_chars + 1) * sizeof *w.bound);
    w.cap_ids = 64;
    w.ids = malloc(w.cap_ids * sizeof *w.ids);
    if (!w.cps || !w.norm || !w.tmp || !w.word || !w.bound || !w.ids) {
        work_free(&w);
        return qb_fail(QB_ENOMEM, "qb_tokenize: cannot allocate working memory for %zu bytes of text", len);
    }
    size_t n = qb_utf8_decode(text, len, w.cps, n_invalid);
    qb_status st = QB_OK;
    size_t seg = 0;
    for (size_t i = 0; i < n && !st;) {
        size_t slen;
        int id = special_at(t, w.cps, n, i, &slen);
        if (id < 0) {
            i++;
            continue;
        }
        st = tokenize_segment(t, &w, w.cps + seg, i - seg);
        if (!st) st = push_id(&w, id);
        i += slen;
        seg = i;
    }
    if (!st) st = tokenize_segment(t, &w, w.cps + seg, n - seg);
    if (st) {
        work_free(&w);
        return st;
    }
    *ids = w.ids;
    *n_ids = (int)w.n_ids;
    w.ids = NULL;
    work_free(&w);
    return QB_OK;
}

/* ---- batches ------------------------------------------------------------------- */

qb_status qb_encode_batch(const qb_tokenizer *t, const char *const *texts, int n, int max_length, int pad_multiple,
                          qb_encoding *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1) return qb_fail(QB_EINVAL, "qb_encode_batch: batch of %d texts, expected at least 1", n);
    if (max_length < 2)
        return qb_fail(QB_EINVAL, "qb_encode_batch: max_length %d leaves no room for [CLS] and [SEP] (min 2)",
                       max_length);
    if (pad_multiple < 1) return qb_fail(QB_EINVAL, "qb_encode_batch: pad_multiple %d, expected at least 1", pad_multiple);
    int32_t **rows = calloc((size_t)n, sizeof *rows);
    int *lens = malloc((size_t)n * sizeof *lens);
    qb_status st = QB_OK;
    if (!rows || !lens) st = qb_fail(QB_ENOMEM, "qb_encode_batch: cannot allocate %d rows", n);
    int seq = 2;
    for (int i = 0; i < n && !st; i++) {
        if (!texts[i]) {
            st = qb_fail(QB_EINVAL, "qb_encode_batch: text %d is NULL", i);
            break;
        }
        if ((st = qb_tokenize(t, texts[i], strlen(texts[i]), &rows[i], &lens[i], NULL))) {
            qb_fail_context(st, "qb_encode_batch: text %d", i);
            break;
        }
        if (lens[i] > max_length - 2) lens[i] = max_length - 2; /* truncate the text, keep [SEP] */
        if (lens[i] + 2 > seq) seq = lens[i] + 2;
    }
    if (pad_multiple > max_length) pad_multiple = max_length;
    seq = (seq + pad_multiple - 1) / pad_multiple * pad_multiple;
    if (seq > max_length) seq = max_length;
    if (!st) {
        size_t total = (size_t)n * (size_t)seq;
        out->input_ids = qb_malloc(total * sizeof(int32_t));
        out->attention_mask = qb_malloc(total * sizeof(int32_t));
        out->token_type_ids = qb_calloc(total, sizeof(int32_t)); /* one segment: all type 0 */
        if (!out->input_ids || !out->attention_mask || !out->token_type_ids)
            st = qb_fail(QB_ENOMEM, "qb_encode_batch: cannot allocate a (%d, %d) batch", n, seq);
    }
    if (!st) {
        out->batch = n;
        out->seq = seq;
        for (int i = 0; i < n; i++) {
            int32_t *row = out->input_ids + (size_t)i * seq, *mask = out->attention_mask + (size_t)i * seq;
            int k = lens[i];
            row[0] = t->special[SPECIAL_CLS];
            memcpy(row + 1, rows[i], (size_t)k * sizeof *row);
            row[k + 1] = t->special[SPECIAL_SEP];
            for (int j = 0; j < seq; j++) mask[j] = j < k + 2;
            for (int j = k + 2; j < seq; j++) row[j] = t->special[SPECIAL_PAD];
        }
    }
    for (int i = 0; rows && i < n; i++) free(rows[i]);
    free(rows);
    free(lens);
    if (st) qb_encoding_free(out);
    return st;
}

void qb_encoding_free(qb_encoding *e)
{
    qb_free(e->input_ids);
    qb_free(e->attention_mask);
    qb_free(e->token_type_ids);
    memset(e, 0, sizeof *e);
}
