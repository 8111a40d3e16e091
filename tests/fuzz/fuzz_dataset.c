/* TSV / CSV data sets (qb_dataset_load_buffer): the first two bytes pick the options
 * (format, label names or integers, skipping bad rows, unlabelled rows,
 * preprocessing; the delimiter), the rest is the file. Every row that loads must be valid UTF-8 with
 * a label in range. */
#include "fuzz.h"
#include "qbert/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    if (size < 2) return 0;
    const unsigned o = data[0];
    static const char *const names[] = {"positive", "neutral", "negative"};
    qb_data_options opt;
    qb_data_default_options(&opt);
    opt.format = (qb_data_format)(o % 3);
    if (o & 4) opt.label_names = names, opt.n_labels = 3;
    opt.skip_bad_rows = o & 8;
    opt.allow_unlabelled = o & 16;
    opt.lowercase = o & 32;
    opt.remove_non_alpha = o & 64;
    opt.collapse_whitespace = opt.remove_stopwords = o & 128;
    opt.delimiter = "\0\0\t;|"[data[1] % 5];
    qb_dataset d = {0};
    if (qb_dataset_load_buffer("fuzz.data", (const char *)data + 2, size - 2, &opt, &d) == QB_OK)
        for (int i = 0; i < d.count; i++) {
            FUZZ_CHECK(d.texts[i] != NULL && d.lines[i] >= 1);
            FUZZ_CHECK(d.labels[i] >= -1 && (!opt.n_labels || d.labels[i] < opt.n_labels));
            FUZZ_CHECK(d.labels[i] >= 0 || opt.allow_unlabelled);
        }
    qb_dataset_free(&d);
    return 0;
}
