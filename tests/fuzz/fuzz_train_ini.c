/* The trainer's INI file (qb_train_config_parse over the defaults, then validate):
 * what parses is written back (qb_train_config_to_ini), which must parse again, and
 * its own write-back must be the same text (the round trip agrees). */
#include "fuzz.h"
#include "qbert/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';  /* the API takes a string: the bytes up to the first NUL */
    qb_train_config c;
    qb_train_default_config(&c);
    if (qb_train_config_parse(text, "fuzz.ini", &c) == QB_OK) {
        qb_train_config_validate(&c);
        char *ini = qb_train_config_to_ini(&c);
        FUZZ_CHECK(ini != NULL);
        qb_train_config d;
        qb_train_default_config(&d);
        if (qb_train_config_parse(ini, "written config.ini", &d) != QB_OK) {
            fprintf(stderr, "the written INI does not parse: %s\n%s\n", qb_error(), ini);
            abort();
        }
        char *again = qb_train_config_to_ini(&d);
        FUZZ_CHECK(again != NULL && strcmp(ini, again) == 0);
        free(again);
        free(ini);
    }
    free(text);
    return 0;
}
