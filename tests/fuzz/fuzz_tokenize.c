/* The tokenizer on arbitrary bytes (qb_tokenize, qb_encode_batch) with a fixed
 * vocabulary: every id in range, the batch shaped as asked, invalid UTF-8 counted
 * rather than read past. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const qb_tokenizer *t = fuzz_tokenizer();
    const int n_vocab = qb_tokenizer_vocab_size(t);
    int32_t *ids = NULL;
    int n = 0, invalid = 0;
    if (qb_tokenize(t, (const char *)data, size, &ids, &n, &invalid) == QB_OK)
        for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab);
    free(ids);
    /* the same bytes as two texts of a padded batch, truncated to 16 */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *texts[2] = {text, text + size / 2};
    qb_encoding e = {0};
    if (qb_encode_batch(t, texts, 2, 16, size % 2 ? 8 : 1, &e) == QB_OK) {
        FUZZ_CHECK(e.batch == 2 && e.seq >= 2 && e.seq <= 16);
        for (int i = 0; i < e.batch * e.seq; i++) FUZZ_CHECK(e.input_ids[i] >= 0 && e.input_ids[i] < n_vocab);
    }
    qb_encoding_free(&e);
    free(text);
    return 0;
}
