/* What the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share: a private scratch
 * directory for the parsers that read files, and a file written there. Each harness
 * calls a public API on the bytes it is given; a crash, a sanitizer report, a leak
 * or a failed FUZZ_CHECK is a finding. Errors (QB_E*) are the expected outcome of
 * most inputs: the parsers must reject bad bytes cleanly, naming the problem. */
#ifndef QBERT_FUZZ_H
#define QBERT_FUZZ_H

#include "qbert/core.h"

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

/* Quiet: the rejected inputs would flood the log with warnings. */
static inline void fuzz_quiet(void) { qb_log_set_level(QB_LOG_QUIET); }

#endif
