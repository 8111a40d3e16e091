/* vocab.txt (qb_tokenizer_from_vocab): what loads must tokenize a fixed text into ids
 * in range. */
#include "fuzz.h"
#include "qbert/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    qb_tokenizer_options o;
    qb_tokenizer_default_options(&o);
    o.lowercase = size && (data[0] & 1);
    qb_tokenizer *t;
    if (qb_tokenizer_from_vocab((const char *)data, size, "vocab.txt", &o, &t)) return 0;
    static const char text[] = "Saya suka makan nasi goreng, tapi TIDAK pedas!! \xc3\xa9t\xc3\xa9 \xe4\xb8\xad";
    int32_t *ids = NULL;
    int n = 0, invalid = 0;
    FUZZ_CHECK(qb_tokenize(t, text, sizeof text - 1, &ids, &n, &invalid) == QB_OK);
    for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < qb_tokenizer_vocab_size(t));
    free(ids);
    qb_tokenizer_free(t);
    return 0;
}
