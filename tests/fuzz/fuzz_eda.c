/* The data exploration (qb_eda_compute, qb_eda_to_json, qb_eda_write) on up to three
 * splits cut from the input at FUZZ_MARKs, after two option bytes: the first picks
 * TSV or CSV, label names found in the data or fixed, unlabelled rows, preprocessing
 * and token statistics; the second the list length, histogram bins and max_length.
 * What is computed must count every row once, give JSON that prints and parses
 * back, and write its report. */
#include "fuzz.h"
#include "qbert/data.h"
#include "qbert/eda.h"

#include <cjson/cJSON.h>

enum { MAX_SPLITS = 3 };

static qb_data_options data_options(unsigned o)
{
    static const char *const names[] = {"positive", "neutral", "negative"};
    qb_data_options d;
    qb_data_default_options(&d);
    d.format = o & 1 ? QB_FORMAT_CSV : QB_FORMAT_TSV;
    d.skip_bad_rows = true;  /* as qbert eda: bad rows are counted, not errors */
    d.allow_unlabelled = o & 2;
    if (o & 4) d.label_names = names, d.n_labels = 3;
    else d.discover_labels = true;
    d.lowercase = o & 8;
    d.remove_non_alpha = o & 16;
    d.collapse_whitespace = d.remove_stopwords = o & 32;
    return d;
}

/* Every split's labelled rows are counted once per label; the statistics are ordered. */
static void check_json(const cJSON *root, bool unlabelled)
{
    char *text = cJSON_PrintUnformatted(root);
    FUZZ_CHECK(text != NULL);
    cJSON *back = cJSON_Parse(text);
    FUZZ_CHECK(back != NULL);
    cJSON_Delete(back);
    free(text);
    const cJSON *split;
    cJSON_ArrayForEach(split, cJSON_GetObjectItemCaseSensitive(root, "splits"))
    {
        const int rows = cJSON_GetObjectItemCaseSensitive(split, "rows")->valueint;
        int labelled = 0;
        const cJSON *count;
        cJSON_ArrayForEach(count, cJSON_GetObjectItemCaseSensitive(split, "label_counts")) labelled += count->valueint;
        FUZZ_CHECK(unlabelled ? labelled <= rows : labelled == rows);
        const cJSON *chars = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "length"), "chars"), "all");
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(chars, "n")->valueint == rows);
        if (rows) {
            const double lo = cJSON_GetObjectItemCaseSensitive(chars, "min")->valuedouble,
                         mid = cJSON_GetObjectItemCaseSensitive(chars, "median")->valuedouble,
                         hi = cJSON_GetObjectItemCaseSensitive(chars, "max")->valuedouble;
            FUZZ_CHECK(lo <= mid && mid <= hi);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    if (size < 2) return 0;
    const qb_data_options dop = data_options(data[0]);
    qb_eda_options o;
    qb_eda_default_options(&o);
    o.top_k = 1 + data[1] % 8;
    o.bins = 1 + (data[1] >> 3) % 16;
    o.max_length = 2 + data[1] % 9;
    o.tokenizer = data[0] & 64 ? fuzz_tokenizer() : NULL;
    static const char *const names[MAX_SPLITS] = {"train", "valid", "test"};
    qb_dataset d[MAX_SPLITS] = {{0}};
    const uint8_t *p = data + 2, *end = data + size, *s;
    int n = 0;
    qb_status st = QB_OK;
    while (n < MAX_SPLITS && !st && (n == 0 || p < end)) {
        const size_t len = fuzz_part(&p, end, &s);
        st = qb_dataset_load_buffer(names[n], (const char *)s, len, &dop, &d[n]);
        n++;
    }
    qb_eda *e = NULL;
    if (!st && qb_eda_compute(d, names, n, dop.label_names, dop.n_labels, &o, &e) == QB_OK) {
        cJSON *root = qb_eda_to_json(e);
        FUZZ_CHECK(root != NULL);
        check_json(root, dop.allow_unlabelled);
        cJSON_Delete(root);
        char dir[256];
        snprintf(dir, sizeof dir, "%s/eda", fuzz_dir());
        FUZZ_CHECK(qb_eda_write(e, dir) == QB_OK);
    }
    qb_eda_free(e);
    for (int i = 0; i < n; i++) qb_dataset_free(&d[i]);
    return 0;
}
