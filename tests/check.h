/* A minimal test harness: CHECK records a failure with file:line and goes on;
 * check_summary() prints "N passed, N failed" (read by CI) and is main's return. */
#ifndef QBERT_TEST_CHECK_H
#define QBERT_TEST_CHECK_H

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

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_pass, check_fail);
    return check_fail ? 1 : 0;
}

#endif
