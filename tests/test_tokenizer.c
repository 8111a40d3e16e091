/* Tokenizer unit tests on a small hand-made vocab in a temporary directory. The
 * expected ids are worked out by hand from the Hugging Face algorithm (BertNormalizer
 * + BertPreTokenizer + WordPiece), and the decoder's from Python's
 * bytes.decode("utf-8", errors="replace"). tests/tokenizer_parity.py compares
 * against the real `tokenizers` on a real vocab. */
#include "check.h"

#include "qbert/tokenizer.h"
#include "text/bert_chars.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* Line i of the vocab has id i. "dup" appears twice: the later id (24) wins. */
static const char *const VOCAB[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", "un",
    "##aff", "##able", "cafe", "i", "##\xcc\x87" /* ## U+0307 */, "\xe4\xb8\xad" /* 中 */,
    "\xe6\x96\x87" /* 文 */, "a", "##a", "stra\xc3\x9f" "e" /* straße */, "##s", "run", "##ning", "dup", "dup",
    "x",
};
#define NV ((int)(sizeof VOCAB / sizeof VOCAB[0]))
enum { PAD, UNK, CLS, SEP, MASK, HELLO, WORLD, COMMA, BANG, UN, AFF, ABLE, CAFE, I, DOT_ABOVE, ZHONG, WEN, A,
       CONT_A, STRASSE, CONT_S, RUN, NING };

static char dir[64];

static void write_file(const char *name, const char *text, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* Writes vocab.txt from VOCAB, lines ended by `eol`; the last line gets none when
 * last_eol is false. */
static void write_vocab(const char *eol, bool last_eol, int skip_id)
{
    char buf[1024];
    size_t n = 0;
    for (int i = 0; i < NV; i++) {
        if (i == skip_id) continue;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", VOCAB[i], (i < NV - 1 || last_eol) ? eol : "");
    }
    write_file("vocab.txt", buf, n);
}

static qb_tokenizer *load(const qb_tokenizer_options *o)
{
    char path[128];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    qb_tokenizer *t = NULL;
    qb_status st = qb_tokenizer_load_vocab(path, o, &t);
    CHECKF(st == QB_OK, "%s", qb_error());
    return t;
}

/* Tokenizes `len` bytes and compares with the n expected ids (varargs). */
static void expect_n(const qb_tokenizer *t, const char *text, size_t len, int want_invalid, int n, ...)
{
    int32_t *ids = NULL;
    int n_ids = -1, bad = -1;
    qb_status st = qb_tokenize(t, text, len, &ids, &n_ids, &bad);
    CHECKF(st == QB_OK, "\"%s\": %s", text, qb_error());
    CHECKF(ids != NULL, "\"%s\": ids is NULL", text);
    bool same = n_ids == n;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        int want = va_arg(ap, int);
        if (same && ids[i] != want) same = false;
    }
    va_end(ap);
    char got[256] = "";
    for (int i = 0, o = 0; i < n_ids && o < (int)sizeof got - 12; i++) o += snprintf(got + o, sizeof got - (size_t)o, " %d", ids[i]);
    CHECKF(same, "\"%s\": got%s", text, got);
    CHECKF(bad == want_invalid, "\"%s\": %d invalid sequences, expected %d", text, bad, want_invalid);
    free(ids);
}
#define EXPECT(t, text, ...) \
    expect_n(t, text, strlen(text), 0, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), __VA_ARGS__)
#define EXPECT_BYTES(t, text, invalid, ...) \
    expect_n(t, text, sizeof(text) - 1, invalid, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), __VA_ARGS__)

static void test_basic(const qb_tokenizer *t)
{
    CHECK(qb_tokenizer_vocab_size(t) == NV);
    CHECK(qb_tokenizer_pad_id(t) == PAD && qb_tokenizer_unk_id(t) == UNK);
    CHECK(qb_tokenizer_cls_id(t) == CLS && qb_tokenizer_sep_id(t) == SEP);
    CHECK(qb_tokenizer_token_id(t, "##aff") == AFF);
    CHECK(qb_tokenizer_token_id(t, "aff") == -1);
    CHECK(qb_tokenizer_token_id(t, "dup") == 24); /* later duplicate wins */
    CHECK(strcmp(qb_tokenizer_token(t, 23), "dup") == 0);
    CHECK(strcmp(qb_tokenizer_token(t, AFF), "##aff") == 0);
    CHECK(qb_tokenizer_token(t, NV) == NULL && qb_tokenizer_token(t, -1) == NULL);

    EXPECT(t, "Hello, World!", HELLO, COMMA, WORLD, BANG);
    EXPECT(t, "unaffable", UN, AFF, ABLE);
    EXPECT(t, "running", RUN, NING);
    EXPECT(t, "runnings", RUN, NING, CONT_S);
    EXPECT(t, "hellox", UNK);                /* not fully covered: one [UNK], no "hello" */
    EXPECT(t, "##aff", UNK, UNK, UNK);       /* '#' is punctuation; "aff" alone is not a token */
    EXPECT(t, "Caf\xc3\xa9", CAFE);          /* accent stripped (strip follows lowercase) */
    EXPECT(t, "Cafe\xcc\x81", CAFE);         /* decomposed accent */
    EXPECT(t, "hell\xc3\xb3", HELLO);        /* the acute on the 'o' is stripped */
    EXPECT(t, "Stra\xc3\x9f" "e", STRASSE);  /* ß is its own lowercase */
    EXPECT(t, "\xc4\xb0", I);                /* İ: NFD I + U+0307, mark dropped, then lowercased */
    EXPECT(t, "\xe4\xb8\xad\xe6\x96\x87", ZHONG, WEN);           /* CJK split */
    EXPECT(t, "hello\xe2\x80\x94world", HELLO, UNK, WORLD);      /* em dash: Pd */
    EXPECT(t, "hello\xe2\x80\xa6", HELLO, UNK);                  /* ellipsis: Po */
    EXPECT(t, "hello[MASK]world", HELLO, MASK, WORLD);           /* special token in raw text */
    EXPECT(t, "[SEP][CLS]", SEP, CLS);
    EXPECT(t, "[mask]", UNK, UNK, UNK);                          /* specials match case-sensitively */
    expect_n(t, "", 0, 0, 0);
    expect_n(t, " \t\r\n ", 5, 0, 0);
    expect_n(t, "\x01\x7f", 2, 0, 0);
}

static void test_cleaning(const qb_tokenizer *t)
{
    EXPECT_BYTES(t, "hel\0lo", 0, HELLO);                       /* NUL dropped, word joins */
    EXPECT(t, "hel\x01lo", HELLO);                              /* control dropped */
    EXPECT(t, "hel\x0blo", HELLO);                              /* vertical tab is a control here */
    EXPECT(t, "hello\tworld", HELLO, WORLD);
    EXPECT(t, "hello\xc2\xa0world", HELLO, WORLD);              /* NBSP */
    EXPECT(t, "HELLO\xe3\x80\x80WORLD", HELLO, WORLD);          /* ideographic space */
    EXPECT(t, "hello\xe2\x80\xa8world", HELLO, WORLD);          /* line separator */
    EXPECT(t, "hel\xe2\x80\x8blo", HELLO);                      /* zero-width space: Cf, dropped */
    EXPECT(t, "hel\xc2\xadlo", HELLO);                          /* soft hyphen: Cf */
    EXPECT(t, "hello \xef\xbf\xbdworld", HELLO, WORLD);         /* U+FFFD itself is dropped */
}

static void test_long_words(const qb_tokenizer *t)
{
    char w[128];
    memset(w, 'a', sizeof w);
    int32_t *ids;
    int n;
    CHECK(qb_tokenize(t, w, 100, &ids, &n, NULL) == QB_OK);
    bool ok = n == 100 && ids[0] == A;
    for (int i = 1; i < n && ok; i++) ok = ids[i] == CONT_A;
    CHECKF(ok, "100 x 'a': %d ids", n);
    free(ids);
    expect_n(t, w, 101, 0, 1, UNK); /* over max_chars_per_word */
    /* 100 x U+00E1: 200 code points after NFD, 100 'a' after stripping: the limit
     * counts the normalized word. */
    char e[256];
    for (int i = 0; i < 101; i++) memcpy(e + 2 * i, "\xc3\xa1", 2);
    CHECK(qb_tokenize(t, e, 200, &ids, &n, NULL) == QB_OK);
    ok = n == 100 && ids[0] == A;
    for (int i = 1; i < n && ok; i++) ok = ids[i] == CONT_A;
    CHECKF(ok, "100 x a-acute: %d ids", n);
    free(ids);
    expect_n(t, e, 202, 0, 1, UNK);
}

static void test_invalid_utf8(const qb_tokenizer *t)
{
    EXPECT_BYTES(t, "hel\xfflo", 1, HELLO);
    EXPECT_BYTES(t, "hello \xe2\x82world", 1, HELLO, WORLD); /* truncated 3-byte sequence */
    EXPECT_BYTES(t, "hello\xe2\x82", 1, HELLO);              /* truncated at the very end */
    EXPECT_BYTES(t, "hello\xf0\x9f\x98", 1, HELLO);
    EXPECT_BYTES(t, "hello\xc2", 1, HELLO);
    EXPECT_BYTES(t, "\xc0\xafhello", 2, HELLO);              /* overlong '/' */
    EXPECT_BYTES(t, "\xe0\x80\xafhello", 3, HELLO);          /* overlong, 3 bytes */
    EXPECT_BYTES(t, "\xed\xa0\x80hello", 3, HELLO);          /* UTF-16 surrogate */
    EXPECT_BYTES(t, "\xf4\x90\x80\x80hello", 4, HELLO);      /* above U+10FFFF */
    EXPECT_BYTES(t, "\xf8\x88\x80\x80\x80hello", 5, HELLO);  /* old 5-byte form */
    EXPECT_BYTES(t, "\x80\x80 hello", 2, HELLO);             /* stray continuations */

    struct {
        const char *in;
        size_t len;
        int32_t out[6];
        size_t n;
        int bad;
    } cases[] = {
        {"\xe2\x82\xac", 3, {0x20AC}, 1, 0},
        {"\xf0\x9f\x98\x80", 4, {0x1F600}, 1, 0},
        {"\xf4\x8f\xbf\xbf", 4, {0x10FFFF}, 1, 0},
        {"\xed\x9f\xbf", 3, {0xD7FF}, 1, 0},
        {"\xe0\x80\x80", 3, {0xFFFD, 0xFFFD, 0xFFFD}, 3, 3},
        {"\xf0\x9f\x98", 3, {0xFFFD}, 1, 1},
        {"\xc2" "A", 2, {0xFFFD, 'A'}, 2, 1},
        {"\xe2\x82w", 3, {0xFFFD, 'w'}, 2, 1},
        {"\xed\xa0\x80", 3, {0xFFFD, 0xFFFD, 0xFFFD}, 3, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t out[8];
        int bad = 0;
        size_t n = qb_utf8_decode(cases[c].in, cases[c].len, out, &bad);
        bool same = n == cases[c].n && bad == cases[c].bad;
        for (size_t i = 0; same && i < n; i++) same = out[i] == cases[c].out[i];
        CHECKF(same, "decode case %zu: %zu code points, %d invalid", c, n, bad);
    }

    /* Random bytes, biased to the bytes that start or continue sequences, in buffers
     * of exactly their length (so an over-read shows under ASan): never crash. */
    static const unsigned char pool[] = {0x00, 'a', ' ', '[', 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2,
                                         0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0xCC, 0x81};
    uint32_t s = 12345;
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(iter % 24);
        unsigned char *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) {
            s = s * 1664525u + 1013904223u;
            buf[i] = pool[(s >> 16) % sizeof pool];
        }
        int32_t *ids;
        int n, bad;
        if (qb_tokenize(t, (const char *)buf, len, &ids, &n, &bad) == QB_OK && n >= 0 && bad >= 0) ok++;
        free(ids);
        free(buf);
    }
    CHECKF(ok == 20000, "random bytes: %d of 20000 tokenized", ok);
}

static void test_options(void)
{
    qb_tokenizer_options o;
    qb_tokenizer_default_options(&o);
    CHECK(o.lowercase && o.strip_accents == -1 && o.tokenize_chinese_chars && o.max_chars_per_word == 100);

    o.strip_accents = 0; /* lowercase without accent stripping: İ -> i + U+0307 */
    qb_tokenizer *t = load(&o);
    if (t) {
        EXPECT(t, "\xc4\xb0", I, DOT_ABOVE);
        EXPECT(t, "Caf\xc3\xa9", UNK);
        qb_tokenizer_free(t);
    }
    qb_tokenizer_default_options(&o);
    o.lowercase = false; /* and strip_accents -1 follows it: no stripping either */
    if ((t = load(&o))) {
        EXPECT(t, "Hello hello Caf\xc3\xa9 cafe", UNK, HELLO, UNK, CAFE);
        qb_tokenizer_free(t);
    }
    qb_tokenizer_default_options(&o);
    o.tokenize_chinese_chars = false;
    if ((t = load(&o))) {
        EXPECT(t, "\xe4\xb8\xad\xe6\x96\x87 \xe4\xb8\xad", UNK, ZHONG); /* "中文" is one word */
        qb_tokenizer_free(t);
    }
    qb_tokenizer_default_options(&o);
    o.max_chars_per_word = 5;
    if ((t = load(&o))) {
        EXPECT(t, "hello hellos", HELLO, UNK);
        qb_tokenizer_free(t);
    }
    qb_tokenizer_default_options(&o);
    o.strip_accents = 2;
    char path[128];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EINVAL && t == NULL);
}

static void check_encoding(const qb_encoding *e, int b, int seq, const int *ids, const int *mask)
{
    CHECKF(e->batch == b && e->seq == seq, "batch (%d, %d), expected (%d, %d)", e->batch, e->seq, b, seq);
    if (e->batch != b || e->seq != seq) return;
    bool same = true;
    for (int i = 0; i < b * seq; i++)
        same = same && e->input_ids[i] == ids[i] && e->attention_mask[i] == mask[i] && e->token_type_ids[i] == 0;
    CHECK(same);
}

static void test_encode(const qb_tokenizer *t)
{
    const char *texts[] = {"hello world", "unaffable hello", ""};
    qb_encoding e;
    CHECK(qb_encode_batch(t, texts, 3, 4, 1, &e) == QB_OK); /* truncation to 4 */
    {
        const int ids[] = {CLS, HELLO, WORLD, SEP, CLS, UN, AFF, SEP, CLS, SEP, PAD, PAD};
        const int mask[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
        check_encoding(&e, 3, 4, ids, mask);
    }
    qb_encoding_free(&e);
    CHECK(e.input_ids == NULL && e.batch == 0);

    CHECK(qb_encode_batch(t, texts, 3, 512, 1, &e) == QB_OK); /* pad to the longest: 2 + 4 */
    {
        const int ids[] = {CLS, HELLO, WORLD, SEP, PAD, PAD, CLS, UN, AFF, ABLE, HELLO, SEP,
                           CLS, SEP, PAD, PAD, PAD, PAD};
        const int mask[] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
        check_encoding(&e, 3, 6, ids, mask);
    }
    qb_encoding_free(&e);

    CHECK(qb_encode_batch(t, texts, 1, 7, 7, &e) == QB_OK); /* pad to max_length */
    {
        const int ids[] = {CLS, HELLO, WORLD, SEP, PAD, PAD, PAD};
        const int mask[] = {1, 1, 1, 1, 0, 0, 0};
        check_encoding(&e, 1, 7, ids, mask);
    }
    qb_encoding_free(&e);

    /* Length buckets: the longest row (6) rounded up to a multiple of 4, then of 4
     * again where that passes max_length (7). */
    CHECK(qb_encode_batch(t, texts, 3, 512, 4, &e) == QB_OK);
    {
        const int ids[] = {CLS, HELLO, WORLD, SEP, PAD, PAD, PAD, PAD, CLS, UN, AFF, ABLE, HELLO, SEP, PAD, PAD,
                           CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD};
        const int mask[] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0};
        check_encoding(&e, 3, 8, ids, mask);
    }
    qb_encoding_free(&e);
    CHECK(qb_encode_batch(t, texts, 3, 7, 4, &e) == QB_OK && e.seq == 7);
    qb_encoding_free(&e);
    CHECK(qb_encode_batch(t, texts, 3, 7, 0, &e) == QB_EINVAL && e.input_ids == NULL);

    CHECK(qb_encode_batch(t, texts, 2, 2, 2, &e) == QB_OK); /* only [CLS] [SEP] fit */
    {
        const int ids[] = {CLS, SEP, CLS, SEP};
        const int mask[] = {1, 1, 1, 1};
        check_encoding(&e, 2, 2, ids, mask);
    }
    qb_encoding_free(&e);

    CHECK(qb_encode_batch(t, texts, 3, 1, 1, &e) == QB_EINVAL && e.input_ids == NULL);
    CHECK(qb_encode_batch(t, texts, 0, 8, 1, &e) == QB_EINVAL);
    const char *with_null[] = {"hello", NULL};
    CHECK(qb_encode_batch(t, with_null, 2, 8, 1, &e) == QB_EINVAL && e.input_ids == NULL);
}

static void test_vocab_files(void)
{
    qb_tokenizer_options o;
    qb_tokenizer_default_options(&o);
    const char *eols[] = {"\r\n", "\r", "\n"};
    for (int k = 0; k < 3; k++) { /* CRLF, lone CR, and a last line without a newline */
        write_vocab(eols[k], k == 0, -1);
        qb_tokenizer *t = load(&o);
        if (!t) continue;
        CHECKF(qb_tokenizer_vocab_size(t) == NV, "eol %d: %d tokens", k, qb_tokenizer_vocab_size(t));
        CHECK(qb_tokenizer_token_id(t, "x") == NV - 1);
        EXPECT(t, "unaffable x", UN, AFF, ABLE, NV - 1);
        qb_tokenizer_free(t);
    }

    char path[128];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    qb_tokenizer *t = NULL;
    write_vocab("\n", true, UNK);
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EFORMAT && t == NULL);
    CHECKF(strstr(qb_error(), "[UNK]") && strstr(qb_error(), path), "message: %s", qb_error());
    write_vocab("\n", true, SEP);
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EFORMAT && strstr(qb_error(), "[SEP]"));
    const char *bad = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nbad\xff\n";
    write_file("vocab.txt", bad, strlen(bad));
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EFORMAT && strstr(qb_error(), "line 5"));
    write_file("vocab.txt", "", 0);
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EFORMAT);
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK(qb_tokenizer_load_vocab(path, &o, &t) == QB_EIO && strstr(qb_error(), "missing.txt"));

    /* A model directory: tokenizer_config.json decides the options. */
    write_vocab("\n", true, -1);
    CHECK(qb_tokenizer_load(dir, &t) == QB_OK); /* no config: defaults */
    if (t) {
        EXPECT(t, "Hello", HELLO);
        qb_tokenizer_free(t);
    }
    const char *cfg = "{\"do_lower_case\": false, \"strip_accents\": null, \"model_max_length\": 1e30}";
    write_file("tokenizer_config.json", cfg, strlen(cfg));
    CHECKF(qb_tokenizer_load(dir, &t) == QB_OK, "%s", qb_error());
    if (t) {
        EXPECT(t, "Hello hello", UNK, HELLO);
        qb_tokenizer_free(t);
    }
    cfg = "{\"do_lower_case\": true, \"strip_accents\": false, \"tokenize_chinese_chars\": false}";
    write_file("tokenizer_config.json", cfg, strlen(cfg));
    CHECKF(qb_tokenizer_load(dir, &t) == QB_OK, "%s", qb_error());
    if (t) {
        EXPECT(t, "\xc4\xb0 \xe4\xb8\xad\xe6\x96\x87", I, DOT_ABOVE, UNK);
        qb_tokenizer_free(t);
    }
    cfg = "{\n  \"do_lower_case\": true,\n  \"strip_accents\": nul\n}";
    write_file("tokenizer_config.json", cfg, strlen(cfg));
    CHECK(qb_tokenizer_load(dir, &t) == QB_EFORMAT && t == NULL);
    CHECKF(strstr(qb_error(), "tokenizer_config.json:3"), "message: %s", qb_error());
    cfg = "{\"do_lower_case\": \"yes\"}";
    write_file("tokenizer_config.json", cfg, strlen(cfg));
    CHECK(qb_tokenizer_load(dir, &t) == QB_EFORMAT);
    CHECKF(strstr(qb_error(), "tokenizer_config.json") && strstr(qb_error(), "do_lower_case"), "message: %s",
           qb_error());
}

static void remove_dir(void)
{
    const char *names[] = {"vocab.txt", "tokenizer_config.json"};
    char path[128];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qbert_tokenizer_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_vocab("\n", true, -1);
    qb_tokenizer_options o;
    qb_tokenizer_default_options(&o);
    qb_tokenizer *t = load(&o);
    if (t) {
        test_basic(t);
        test_cleaning(t);
        test_long_words(t);
        test_invalid_utf8(t);
        test_encode(t);
        qb_tokenizer_free(t);
    }
    test_options();
    test_vocab_files();
    remove_dir();
    return check_summary("test_tokenizer");
}
