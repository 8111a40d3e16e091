/* Character level of the BERT tokenizer (library-internal): UTF-8 decoding with
 * Python's errors="replace" rule, the character classes of the reference
 * tokenizer (Hugging Face `tokenizers`), and its normalizer. Code points are
 * int32_t; every function here is pure and thread-safe. */
#ifndef QBERT_TEXT_BERT_CHARS_H
#define QBERT_TEXT_BERT_CHARS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One input code point becomes at most this many normalized ones: a canonical
 * decomposition has at most 4 code points, and a lowercase mapping at most 2
 * (U+0130 -> i + U+0307); a CJK character becomes 3 (space, it, space). */
#define QB_BERT_NORM_GROWTH 8

/* Decodes len bytes into out (room for len code points) the way Python's
 * bytes.decode("utf-8", errors="replace") does: every maximal ill-formed
 * subsequence (a stray byte, a truncated sequence, an overlong form, a
 * surrogate) becomes one U+FFFD, and *n_invalid grows by one for each.
 * Returns the number of code points written. */
size_t qb_utf8_decode(const char *s, size_t len, int32_t *out, int *n_invalid);

/* Writes the UTF-8 form of c (a valid scalar value) into out; returns its length 1..4. */
int qb_utf8_encode(int32_t c, char *out);

/* White_Space (Rust char::is_whitespace): what the pre-tokenizer splits on. */
bool qb_bert_is_whitespace(int32_t c);
/* ASCII punctuation or a Unicode P* category: a token of its own. */
bool qb_bert_is_punct(int32_t c);
/* The CJK ideograph blocks that get spaces around each character. */
bool qb_bert_is_chinese(int32_t c);

/* BertNormalizer on n code points, in the reference's order: clean text (drop
 * U+0000, U+FFFD and other/control characters, whitespace -> ' '), spaces around
 * CJK characters, strip accents (NFD, drop Mn) when strip_accents, lowercase when
 * lowercase. out and tmp must each hold QB_BERT_NORM_GROWTH * n code points.
 * Returns the number written to out. */
size_t qb_bert_normalize(const int32_t *in, size_t n, bool strip_accents, bool lowercase,
                         bool chinese, int32_t *out, int32_t *tmp);

#endif
