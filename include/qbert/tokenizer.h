/* BERT tokenizer, equal to Hugging Face tokenizers' BertNormalizer +
 * BertPreTokenizer + WordPiece (and to BertTokenizer wherever the two HF
 * implementations agree): clean text, CJK splitting, lowercase + accent strip,
 * punctuation split, greedy longest-match WordPiece with "##". */
#ifndef QBERT_TOKENIZER_H
#define QBERT_TOKENIZER_H

#include "qbert/core.h"

typedef struct qb_tokenizer qb_tokenizer;

typedef struct {
    bool lowercase;             /* do_lower_case */
    int strip_accents;          /* -1 = follow lowercase (HF default), 0 = no, 1 = yes */
    bool tokenize_chinese_chars;
    int max_chars_per_word;     /* 100 */
    int model_max_length;       /* tokens a text is cut to (tokenizer_config.json: what the model
                                 * was trained with); 0: not said */
} qb_tokenizer_options;

void qb_tokenizer_default_options(qb_tokenizer_options *o);
/* Loads vocab.txt from a model directory, and tokenizer_config.json when present
 * (do_lower_case, strip_accents, tokenize_chinese_chars). Error if [UNK], [CLS],
 * [SEP] or [PAD] is missing from the vocab. Vocab lines end in \n, \r\n or \r;
 * a token listed twice keeps the later id. */
qb_status qb_tokenizer_load(const char *model_dir, qb_tokenizer **out);
qb_status qb_tokenizer_load_vocab(const char *vocab_path, const qb_tokenizer_options *o,
                                  qb_tokenizer **out);
/* The same from a vocab.txt text in memory (`name` is used in messages). */
qb_status qb_tokenizer_from_vocab(const char *vocab, size_t len, const char *name, const qb_tokenizer_options *o,
                                  qb_tokenizer **out);
void qb_tokenizer_free(qb_tokenizer *t);
int qb_tokenizer_vocab_size(const qb_tokenizer *t);
int qb_tokenizer_token_id(const qb_tokenizer *t, const char *token); /* -1 if absent */
const char *qb_tokenizer_token(const qb_tokenizer *t, int id);
int qb_tokenizer_cls_id(const qb_tokenizer *t);
int qb_tokenizer_sep_id(const qb_tokenizer *t);
int qb_tokenizer_pad_id(const qb_tokenizer *t);
int qb_tokenizer_unk_id(const qb_tokenizer *t);

/* Word-piece ids of `text` (no [CLS]/[SEP] added, no truncation). Special tokens
 * written in the text ("[SEP]", "[MASK]" ...) become their ids, as in HF. Invalid
 * UTF-8 is replaced by U+FFFD (as Python's errors="replace" does: one per maximal
 * ill-formed subsequence) and the replacements are counted in *n_invalid when it
 * is not NULL. *ids is malloc'ed (never NULL on success); free() it. A loaded
 * tokenizer is read-only: any number of threads may call this at once. */
qb_status qb_tokenize(const qb_tokenizer *t, const char *text, size_t len,
                      int32_t **ids, int *n_ids, int *n_invalid);

/* A padded batch: (B, T) row-major int32. */
typedef struct {
    int batch, seq;
    int32_t *input_ids, *attention_mask, *token_type_ids;
} qb_encoding;

/* [CLS] text [SEP], truncated to max_length. Every row is padded to the longest
 * row of the batch rounded up to a multiple of pad_multiple (>= 1), at most
 * max_length: 1 pads to the longest row, max_length pads every row to max_length. */
qb_status qb_encode_batch(const qb_tokenizer *t, const char *const *texts, int n,
                          int max_length, int pad_multiple, qb_encoding *out);
void qb_encoding_free(qb_encoding *e);

/* Builds the text of a vocab.txt for models trained from scratch: the special
 * tokens, every character of `texts` (bare and "##"-continued), then up to
 * max_words of the most frequent lowercased words. *out is malloc'ed. */
qb_status qb_vocab_build(const char *const *texts, int n, int max_words, char **out, size_t *out_len);
/* Writes vocab.txt (the given text) and a lowercasing tokenizer_config.json into dir,
 * atomically, so that dir loads as a tokenizer here and in Hugging Face. */
qb_status qb_tokenizer_write_files(const char *dir, const char *vocab, size_t len);
/* Copies the tokenizer files of a model directory (vocab.txt, tokenizer_config.json,
 * special_tokens_map.json, tokenizer.json: those present) into to_dir, atomically. */
qb_status qb_tokenizer_copy_files(const char *from_dir, const char *to_dir);
/* Sets "model_max_length" in dir/tokenizer_config.json (made when missing; rewritten
 * atomically): the trainer records the max_length a model was trained with, which an
 * engine then takes by default. */
qb_status qb_tokenizer_set_max_length(const char *dir, int max_length);
/* model_max_length of the tokenizer_config.json it was loaded with, or 0. */
int qb_tokenizer_model_max_length(const qb_tokenizer *t);

#endif
