/* The sample data set carried inside the qbert binary, for the demo: data/sample/
 * {train,valid,test}.tsv, original Indonesian sentences written for this project in
 * SmSA style (text<TAB>label, labels positive / neutral / negative). The bytes are
 * generated at build time by cmake/embed.cmake (qbert_embed_files with prefix qb_sample_);
 * load them with qb_dataset_load_buffer(). */
#ifndef QBERT_DATA_SAMPLE_H
#define QBERT_DATA_SAMPLE_H

#include <stddef.h>

/* The contents of "train.tsv", "valid.tsv" or "test.tsv" (followed by a NUL that *len
 * does not count), or NULL for any other name. */
const char *qb_sample_data(const char *name, size_t *len);

#endif
