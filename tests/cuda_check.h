/* What the CUDA op tests (tests/test_cuda_*.c) share: the CUDA backend or a
 * "skipped" line (no GPU, or a GPU qbert cannot use), copies between host and
 * device that stop the test on failure, fresh random inputs, and the relative L2
 * error of a CUDA result against the CPU backend's. Every test runs the same op of
 * both backends on the same inputs (shared/DESIGN.md, tolerances: f32 1e-5). */
#ifndef QBERT_TEST_CUDA_CHECK_H
#define QBERT_TEST_CUDA_CHECK_H

#include "check.h"

#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "cuda/qb_cuda.h"
#include "qbert/core.h"

#define CUDA_TOL 1e-5

static const qb_backend *gpu, *cpu;
static qb_rng cuda_rng;

/* The exit status of a test that could not run here (no GPU): ctest's
 * SKIP_RETURN_CODE (tests/CMakeLists.txt), so it shows as skipped, not passed. */
#define QB_TEST_SKIPPED 77

/* The backends, or NULL after printing "NAME: skipped: why" (main then returns
 * QB_TEST_SKIPPED). */
static inline const qb_backend *cuda_or_skip(const char *name)
{
    cpu = qb_backend_cpu();
    if (qb_backend_cuda(&gpu)) {
        printf("%s: skipped: %s\n", name, qb_error());
        return NULL;
    }
    printf("%s: on %s\n", name, qb_cuda_device_name());
    qb_rng_init(&cuda_rng, check_seed());
    return gpu;
}

static inline void *host_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* n uniform floats in [lo, hi). */
static inline float *rand_host(size_t n, float lo, float hi)
{
    float *p = host_alloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * qb_rng_uniform(&cuda_rng);
    return p;
}

/* A device copy of bytes of host memory (src NULL: zeroed). */
static inline void *dev_from(const void *src, size_t bytes)
{
    void *d = gpu->alloc(bytes);
    if (!d) {
        fprintf(stderr, "cannot allocate %zu bytes of device memory\n", bytes);
        exit(1);
    }
    if (src) gpu->to_device(NULL, d, src, bytes);
    else gpu->zero(NULL, d, bytes);
    return d;
}

/* bytes of device memory filled with 0xFF (NaN as floats and as halves): an output
 * poisoned before an op runs, so that an element it does not write fails the check. */
static inline void *dev_poison(size_t bytes)
{
    void *h = host_alloc(bytes);
    memset(h, 0xFF, bytes);
    void *d = dev_from(h, bytes);
    free(h);
    return d;
}

/* A device buffer of the n values x stored in t, x replaced by the stored values
 * (what the CPU then reads). */
static inline void *dev_store(float *x, size_t n, qb_dtype t)
{
    void *h = host_alloc(n * qb_store_bytes(t));
    cpu->rows(NULL, h, t, n, x, QB_F32, n, 1, (int)n);
    cpu->rows(NULL, x, QB_F32, n, h, t, n, 1, (int)n);
    void *d = dev_from(h, n * qb_store_bytes(t));
    free(h);
    return d;
}

/* A host copy of bytes of device memory (malloc'ed); a pending CUDA error fails
 * the check named what. */
static inline void *host_from(const void *dev, size_t bytes, const char *what)
{
    void *h = host_alloc(bytes);
    gpu->to_host(NULL, h, dev, bytes);
    const qb_status st = qb_cuda_sync(NULL);
    CHECKF(st == QB_OK, "%s: %s", what, qb_error());
    return h;
}

/* n values of device memory stored in t, as floats (malloc'ed). */
static inline float *host_floats(const void *dev, size_t n, qb_dtype t, const char *what)
{
    void *h = host_from(dev, n * qb_store_bytes(t), what);
    float *f = host_alloc(n * sizeof *f);
    cpu->rows(NULL, f, QB_F32, n, h, t, n, 1, (int)n);
    free(h);
    return f;
}

/* Compares n floats of device memory with the CPU result ref; names what failed. */
static inline void check_close(const char *what, const float *dev, const float *ref, size_t n, double tol)
{
    float *got = host_from(dev, n * sizeof *got, what);
    const double e = rel_l2(got, ref, n);
    CHECKF(e <= tol && !isnan(e), "%s: relative L2 error %.3g > %.1g (n %zu)", what, e, tol, n);
    free(got);
}

/* The same, bit for bit (integer-valued or exactly reproducible outputs). */
static inline void check_equal(const char *what, const void *dev, const void *ref, size_t bytes)
{
    void *got = host_from(dev, bytes, what);
    CHECKF(memcmp(got, ref, bytes) == 0, "%s: differs from the CPU backend (%zu bytes)", what, bytes);
    free(got);
}

#endif
