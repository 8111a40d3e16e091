/* A whole model directory opened by the engine and used to classify (qb_engine_open,
 * qb_engine_classify): the input is config.json, vocab.txt and model.safetensors
 * cut at two FUZZ_MARKs. What opens must classify without a crash (weights that
 * overflow may give NaN: that is the file's doing, not a finding). */
#include "fuzz.h"
#include "qbert/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const uint8_t *p = data, *end = data + size, *s;
    size_t n = fuzz_part(&p, end, &s);
    fuzz_file("config.json", s, n);
    n = fuzz_part(&p, end, &s);
    fuzz_file("vocab.txt", s, n);
    n = fuzz_part(&p, end, &s);
    fuzz_file("model.safetensors", s, n);
    qb_engine_options o;
    qb_engine_default_options(&o);
    o.max_length = 16, o.threads = 1;
    qb_engine *e;
    if (qb_engine_open(fuzz_dir(), &o, &e)) return 0;
    static const char *const texts[] = {"saya suka buku ini", "", "tidak bagus sama sekali !!"};
    const int labels = qb_engine_model(e)->cfg.num_labels;
    float *probs = malloc(sizeof texts / sizeof texts[0] * (size_t)labels * sizeof *probs);
    if (probs) qb_engine_classify(e, texts, 3, probs, NULL, NULL);
    free(probs);
    qb_engine_close(e);
    return 0;
}
