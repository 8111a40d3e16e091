/* What the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share: a private scratch
 * directory for the parsers that read files, and a file written there. Each harness
 * calls a public API on the bytes it is given; a crash, a sanitizer report, a leak
 * or a failed FUZZ_CHECK is a finding. Errors (QB_E*) are the expected outcome of
 * most inputs: the parsers must reject bad bytes cleanly, naming the problem. */
#ifndef QBERT_FUZZ_H
#define QBERT_FUZZ_H

#include "qbert/core.h"
#include "qbert/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An invariant the harness checks beyond "no crash": abort (libFuzzer keeps the input). */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* This process's scratch directory (made once; libFuzzer's workers are processes). */
static inline const char *fuzz_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/qbert-fuzz-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

/* dir/name holding data (n bytes); the path in a static buffer per name slot. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t n)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) abort();
    return path;
}

/* The harnesses that take several files take them cut at this marker
 * (tests/fuzz/make_seeds.py writes their seeds so). */
#define FUZZ_MARK "\n--qbert-fuzz--\n"

/* The next part of [*p, end): up to the marker (or the end); *p moves past it. */
static inline size_t fuzz_part(const uint8_t **p, const uint8_t *end, const uint8_t **start)
{
    const size_t m = sizeof FUZZ_MARK - 1;
    *start = *p;
    for (const uint8_t *q = *p; q + m <= end; q++)
        if (memcmp(q, FUZZ_MARK, m) == 0) {
            *p = q + m;
            return (size_t)(q - *start);
        }
    *p = end;
    return (size_t)(end - *start);
}

/* A tokenizer of a small fixed vocabulary (word pieces, accents, CJK), made once. */
static inline const qb_tokenizer *fuzz_tokenizer(void)
{
    static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nsaya\nsuka\nmakan\n##an\n##nya\nbuku\nini\n"
                                "tidak\nbagus\n!\n,\n.\n##s\na\nb\nc\n##a\n##b\n\xc3\xa9\n\xe4\xb8\xad\n";
    static qb_tokenizer *t;
    if (!t) {
        qb_tokenizer_options o;
        qb_tokenizer_default_options(&o);
        if (qb_tokenizer_from_vocab(vocab, sizeof vocab - 1, "fuzz vocab", &o, &t)) abort();
    }
    return t;
}

/* Quiet: the rejected inputs would flood the log with warnings. */
static inline void fuzz_quiet(void) { qb_log_set_level(QB_LOG_QUIET); }

#endif
