/* JSON fixtures of the reference packages (the files in tests/golden) for the C tests. */
#ifndef QBERT_TEST_FIXTURE_H
#define QBERT_TEST_FIXTURE_H

#include "qbert/io.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "check.h"

/* The parsed file (cJSON_Delete it), or NULL with a failed check. */
static inline cJSON *fixture_load(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    CHECKF(qb_read_file(path, &text, &len) == QB_OK, "%s", qb_error());
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECKF(root != NULL, "%s: not valid JSON", path);
    return root;
}

/* o[key] as a number, NaN when it is not one. */
static inline double fixture_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

#endif
