/* config.json (qb_config_parse): what parses is written back (qb_config_to_json) and
 * must parse again to the same config. */
#include "fuzz.h"
#include "qbert/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    qb_config c;
    if (qb_config_parse((const char *)data, size, "config.json", &c)) return 0;
    char *json = qb_config_to_json(&c);
    FUZZ_CHECK(json != NULL);
    qb_config d;
    FUZZ_CHECK(qb_config_parse(json, strlen(json), "written config.json", &d) == QB_OK);
    FUZZ_CHECK(c.vocab_size == d.vocab_size && c.hidden_size == d.hidden_size && c.num_layers == d.num_layers &&
               c.num_heads == d.num_heads && c.intermediate_size == d.intermediate_size &&
               c.max_position == d.max_position && c.num_labels == d.num_labels &&
               c.layer_norm_eps == d.layer_norm_eps);
    for (int i = 0; i < QB_MAX_LABELS; i++)
        FUZZ_CHECK((!c.id2label[i] && !d.id2label[i]) ||
                   (c.id2label[i] && d.id2label[i] && strcmp(c.id2label[i], d.id2label[i]) == 0));
    free(json);
    qb_config_free(&c);
    qb_config_free(&d);
    return 0;
}
