/* qbert core: status codes and error messages, logging, aligned allocation,
 * whole-file I/O with atomic writes, CPU feature detection, Philox RNG, timers.
 *
 * Error convention: library functions return qb_status. On failure they call
 * qb_fail(), which stores a message (thread-local) naming the file, the field
 * and what was expected; the caller reads it with qb_error(). Library code never
 * exits and never prints except through qb_log(). */
#ifndef QBERT_CORE_H
#define QBERT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {  /* the CUDA sources (C++) report errors through qb_fail */
#endif

typedef enum {
    QB_OK = 0,
    QB_EINVAL,       /* bad argument or value */
    QB_EIO,          /* a file could not be opened, read or written */
    QB_EFORMAT,      /* a file is corrupt or not in the expected format */
    QB_ENOMEM,       /* allocation failed */
    QB_EUNSUPPORTED, /* valid input that this build cannot handle */
    QB_ENOTFOUND,    /* a required item (tensor, key, file) is missing */
    QB_ENUMERIC,     /* a NaN or Inf where a finite number is needed (loss, gradients) */
    QB_EINTERRUPTED, /* stopped on request (SIGINT) after saving a checkpoint */
} qb_status;

/* Stores a printf-style message and returns `code`. */
qb_status qb_fail(qb_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the stored message with more context ("loading model: ...") and returns `code`. */
qb_status qb_fail_context(qb_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *qb_error(void);
const char *qb_status_name(qb_status s);

typedef enum { QB_LOG_DEBUG, QB_LOG_INFO, QB_LOG_WARN, QB_LOG_ERROR, QB_LOG_QUIET } qb_log_level;
void qb_log_set_level(qb_log_level level);
qb_log_level qb_log_get_level(void);
/* Writes "qbert: warning: ..." lines to stderr when level >= the set level. */
void qb_log(qb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 64-byte aligned allocation (cache line, AVX-512 register). NULL on failure or n == 0
 * overflow; qb_free(NULL) is a no-op. qb_calloc zeroes. */
void *qb_malloc(size_t n);
void *qb_calloc(size_t count, size_t size);
void qb_free(void *p);
/* strdup that returns NULL on failure. */
char *qb_strdup(const char *s);

/* Reads a whole file; *data is NUL-terminated (not counted in *len). Free with free(). */
qb_status qb_read_file(const char *path, char **data, size_t *len);
/* Reads an INI file's text: a NUL byte in it is QB_EFORMAT (INI parsers would stop
 * there and ignore the rest). Free with free(). */
qb_status qb_read_ini_file(const char *path, char **text);
/* The size in bytes of the file at path; -1 when it cannot be read. */
int64_t qb_file_size(const char *path);
/* Writes to PATH.tmp.PID, fsyncs, then renames over PATH: never a half-written file. */
qb_status qb_write_file_atomic(const char *path, const void *data, size_t len);
/* Joins dir and name into buf; error when it does not fit. */
qb_status qb_path_join(char *buf, size_t cap, const char *dir, const char *name);
bool qb_file_exists(const char *path);
/* Creates the directory path and its missing parents (mkdir -p). */
qb_status qb_mkdirs(const char *path);
/* Before a long run that ends by writing the file path: its folder is created when
 * missing and must be writable, so that a bad path fails at once, naming it. */
qb_status qb_prepare_output(const char *path);

/* Decodes one code point from s[0..n), n >= 1, as Python's errors="replace" does:
 * returns it, or -1 for a maximal ill-formed subsequence (a byte that cannot start a
 * sequence, a truncated sequence, an overlong form, a surrogate), which Python
 * replaces by one U+FFFD. *adv is the number of bytes consumed (>= 1). */
int32_t qb_utf8_next(const char *s, size_t n, size_t *adv);

/* A map from strings (any bytes) to dense indices 0, 1, ... in insertion order, for
 * counting words: the caller keeps its counts in arrays indexed by them. */
typedef struct qb_strmap qb_strmap;
qb_strmap *qb_strmap_new(void);  /* NULL when out of memory */
void qb_strmap_free(qb_strmap *m);
/* The index of key[0..len), added (a copy) when absent; -1 when out of memory. */
int qb_strmap_intern(qb_strmap *m, const char *key, size_t len);
int qb_strmap_find(const qb_strmap *m, const char *key, size_t len);  /* -1: absent */
int qb_strmap_count(const qb_strmap *m);
const char *qb_strmap_key(const qb_strmap *m, int index);  /* NUL-terminated */

/* CPU features (CPUID + XGETBV so that OS support of the register state is checked). */
enum {
    QB_CPU_AVX2 = 1 << 0,
    QB_CPU_FMA = 1 << 1,
    QB_CPU_AVX512F = 1 << 2,
    QB_CPU_AVX512BW = 1 << 3,
    QB_CPU_AVX512VNNI = 1 << 4,
    QB_CPU_AVXVNNI = 1 << 5,
    QB_CPU_AMX_INT8 = 1 << 6,
};
unsigned qb_cpu_features(void);

/* Philox4x32-10 counter-based RNG: the stream is a pure function of (seed, counter),
 * so CPU and GPU can draw the same numbers without sharing state. */
typedef struct {
    uint64_t seed;
    uint64_t counter;   /* number of 4x32-bit blocks drawn so far */
    uint32_t buf[4];
    int left;           /* unread words in buf */
} qb_rng;
void qb_rng_init(qb_rng *r, uint64_t seed);
/* Block `counter` of stream `stream` under key `seed`: the 128-bit Philox counter is
 * (counter, stream). qb_rng draws stream 0; dropout sites use their own streams. */
void qb_philox4x32(uint64_t seed, uint64_t counter, uint64_t stream, uint32_t out[4]);
uint32_t qb_rng_u32(qb_rng *r);
float qb_rng_uniform(qb_rng *r);            /* [0, 1) with 24 random bits */
float qb_rng_normal(qb_rng *r, float mean, float std);  /* Box-Muller */

/* Monotonic wall clock in seconds. */
double qb_now(void);

#ifdef __cplusplus
}
#endif

#endif
