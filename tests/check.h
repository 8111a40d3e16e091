/* A minimal test harness: CHECK records a failure with file:line and goes on;
 * check_summary() prints "N passed, N failed" (read by CI) and is main's return. */
#ifndef QBERT_TEST_CHECK_H
#define QBERT_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int check_pass, check_fail;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            check_pass++;                                                             \
        } else {                                                                      \
            check_fail++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

#define CHECKF(cond, ...)                                                             \
    do {                                                                              \
        if (cond) {                                                                   \
            check_pass++;                                                             \
        } else {                                                                      \
            check_fail++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

/* The seed of a test's random inputs: fresh each run (time and pid), or
 * QBERT_TEST_SEED=N to replay one; printed either way. */
static inline unsigned long long check_seed(void)
{
    const char *env = getenv("QBERT_TEST_SEED");
    unsigned long long seed = env && *env ? strtoull(env, NULL, 10)
                                          : (unsigned long long)time(NULL) * 1000003u + (unsigned long long)getpid();
    printf("seed %llu (replay with QBERT_TEST_SEED=%llu)\n", seed, seed);
    return seed;
}

/* ||got - ref|| / ||ref|| (the absolute norm when ref is all zero). */
static inline double rel_l2(const float *got, const float *ref, size_t n)
{
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - ref[i];
        e += d * d;
        r += (double)ref[i] * ref[i];
    }
    return sqrt(e) / (r > 0.0 ? sqrt(r) : 1.0);
}

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_pass, check_fail);
    return check_fail ? 1 : 0;
}

#endif
