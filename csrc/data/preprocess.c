/* Text preprocessing of the research pipeline (lowercase, remove non-letters,
 * collapse whitespace, remove stopwords), UTF-8 repair, and stopword sets.
 *
 * Every step decodes UTF-8 with one decoder (qb_utf8_next) that turns each ill-formed
 * subsequence into U+FFFD exactly as Python's bytes.decode(errors="replace") does,
 * so the output of qb_preprocess is always valid UTF-8 whatever the input was. */
#include "qbert/data.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define REPLACEMENT_CHAR 0xFFFD

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
bool qb_is_space(int32_t cp)
{
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || (cp >= 28 && cp <= 32);
    if (cp == 0x85) return true;
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool qb_is_word_char(int32_t cp)
{
    if (cp == '_') return true;
    if (cp < 0) return false;
    const utf8proc_category_t c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

/* Letters (L*) and combining marks (M*). */
static bool is_letter(int32_t cp)
{
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME;
}

/* Worst case growth of one pass: one invalid byte becomes the 3-byte U+FFFD, and a
 * 2-byte code point's lowercase form can take 3 bytes (U+023A -> U+2C65). */
static char *alloc_for_expansion(size_t len)
{
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    return malloc(3 * len + 1);
}

char *qb_utf8_sanitize(const char *s, size_t len, int *n_replaced)
{
    int bad = 0;
    char *out = alloc_for_expansion(len);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        int32_t cp = qb_utf8_next(s + i, len - i, &adv);
        if (cp <= 0) { /* ill-formed, or NUL, which would cut a C string short */
            bad++;
            o += (size_t)utf8proc_encode_char(REPLACEMENT_CHAR, (utf8proc_uint8_t *)out + o);
        } else {
            memcpy(out + o, s + i, adv);
            o += adv;
        }
        i += adv;
    }
    out[o] = '\0';
    if (n_replaced) *n_replaced = bad;
    return out;
}

/* ---- stopword sets ---------------------------------------------------------------- */

typedef struct {
    const char *word; /* NULL: empty slot */
    size_t len;
} sw_slot;

struct qb_stopwords {
    sw_slot *slots;
    size_t cap;       /* power of two, at least twice the number of words */
    int count;
    char *storage;    /* a stopword file's contents, which the slots point into */
};

/* FNV-1a: short words, no adversary, and it is one line. */
static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Linear probing; the set is never more than half full, so a free slot always exists. */
static sw_slot *sw_find(const qb_stopwords *s, const char *w, size_t n)
{
    size_t i = fnv1a(w, n) & (s->cap - 1);
    while (s->slots[i].word && !(s->slots[i].len == n && memcmp(s->slots[i].word, w, n) == 0))
        i = (i + 1) & (s->cap - 1);
    return &s->slots[i];
}

static void sw_insert(qb_stopwords *s, const char *w, size_t n)
{
    sw_slot *slot = sw_find(s, w, n);
    if (slot->word) return; /* duplicate */
    slot->word = w;
    slot->len = n;
    s->count++;
}

static qb_stopwords *sw_new(size_t max_words)
{
    qb_stopwords *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cap = 16;
    while (s->cap < 2 * max_words) s->cap *= 2;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

static bool is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Parses a stopword file held in `buf` (NUL-terminated; words are cut in place). */
static qb_status sw_parse_file(const char *path, char *buf, size_t len, qb_stopwords **out)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    qb_stopwords *s = sw_new(lines);
    if (!s) return qb_fail(QB_ENOMEM, "%s: cannot allocate a stopword set", path);
    char *p = buf, *end = buf + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    for (int line = 1; p < end; line++) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        char *hash = memchr(p, '#', (size_t)(eol - p));
        char *a = p, *b = hash ? hash : eol;
        while (a < b && is_ascii_space(*a)) a++;
        while (b > a && is_ascii_space(b[-1])) b--;
        for (char *c = a; c < b; c++) {
            if (is_ascii_space(*c)) {
                qb_stopwords_free(s);
                return qb_fail(QB_EFORMAT, "%s:%d: '%.*s' is more than one word (expected one stopword per line)",
                               path, line, (int)(b - a), a);
            }
        }
        if (b > a) {
            *b = '\0'; /* b is whitespace, '#', '\n' or the terminating NUL */
            sw_insert(s, a, (size_t)(b - a));
        }
        p = eol + 1;
    }
    if (s->count == 0) {
        qb_stopwords_free(s);
        return qb_fail(QB_EFORMAT, "%s: no stopwords (expected one word per line)", path);
    }
    *out = s;
    return QB_OK;
}

qb_status qb_stopwords_load(const char *path, qb_stopwords **out)
{
    *out = NULL;
    if (!path) {
        qb_stopwords *s = sw_new((size_t)qb_stopwords_id_count);
        if (!s) return qb_fail(QB_ENOMEM, "cannot allocate the built-in stopword set");
        for (int i = 0; i < qb_stopwords_id_count; i++)
            sw_insert(s, qb_stopwords_id[i], strlen(qb_stopwords_id[i]));
        *out = s;
        return QB_OK;
    }
    char *buf;
    size_t len;
    qb_status st = qb_read_file(path, &buf, &len);
    if (st != QB_OK) return qb_fail_context(st, "reading stopwords");
    st = sw_parse_file(path, buf, len, out);
    if (st != QB_OK) {
        free(buf);
        return st;
    }
    (*out)->storage = buf;
    return QB_OK;
}

void qb_stopwords_free(qb_stopwords *s)
{
    if (!s) return;
    free(s->slots);
    free(s->storage);
    free(s);
}

int qb_stopwords_count(const qb_stopwords *s) { return s->count; }

bool qb_stopwords_contains(const qb_stopwords *s, const char *word, size_t len)
{
    return sw_find(s, word, len)->word != NULL;
}

/* ---- preprocessing ---------------------------------------------------------------- */

/* Pass 1: decode (repairing), lowercase, replace non-letters. Returns a new string. */
static char *map_code_points(const char *text, bool lower, bool letters_only)
{
    size_t len = strlen(text);
    char *out = alloc_for_expansion(len);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        int32_t cp = qb_utf8_next(text + i, len - i, &adv);
        i += adv;
        if (cp < 0) cp = REPLACEMENT_CHAR;
        if (lower) cp = utf8proc_tolower(cp);
        if (letters_only && !is_letter(cp) && !qb_is_space(cp)) cp = ' ';
        o += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out + o);
    }
    out[o] = '\0';
    return out;
}

/* The next run of code points that `in` takes in s[pos..len): stores its offset and
 * length in start and wlen and moves pos past it; false when none is left. */
static bool next_run(const char *s, size_t len, size_t *pos, size_t *start, size_t *wlen, bool (*in)(int32_t))
{
    size_t i = *pos, adv;
    while (i < len && !in(qb_utf8_next(s + i, len - i, &adv))) i += adv;
    if (i >= len) {
        *pos = len;
        return false;
    }
    *start = i;
    while (i < len && in(qb_utf8_next(s + i, len - i, &adv))) i += adv;
    *wlen = i - *start;
    *pos = i;
    return true;
}

static bool not_space(int32_t cp) { return !qb_is_space(cp); }

/* The next whitespace-separated word of the valid UTF-8 s[pos..len). */
static bool next_word(const char *s, size_t len, size_t *pos, size_t *start, size_t *wlen)
{
    return next_run(s, len, pos, start, wlen, not_space);
}

bool qb_next_word_run(const char *s, size_t len, size_t *pos, size_t *start, size_t *wlen)
{
    return next_run(s, len, pos, start, wlen, qb_is_word_char);
}

/* Pass 2 and 3, in place (the output is never longer): keeps the words (all, or those
 * not in `sw`) joined by single spaces. This is both collapse_whitespace and the
 * stopword filter, which are the same split-and-join with a different keep rule. */
static void rejoin_words(char *s, const qb_stopwords *sw)
{
    size_t len = strlen(s), pos = 0, start, wlen, o = 0;
    while (next_word(s, len, &pos, &start, &wlen)) {
        if (sw && qb_stopwords_contains(sw, s + start, wlen)) continue;
        if (o > 0) s[o++] = ' ';
        memmove(s + o, s + start, wlen);
        o += wlen;
    }
    s[o] = '\0';
}

char *qb_preprocess(const char *text, const qb_data_options *o, const qb_stopwords *sw)
{
    if (o->remove_stopwords && !sw) return NULL;
    char *s = map_code_points(text, o->lowercase, o->remove_non_alpha);
    if (!s) return NULL;
    if (o->collapse_whitespace) rejoin_words(s, NULL);
    if (o->remove_stopwords) rejoin_words(s, sw);
    return s;
}
