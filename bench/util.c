/* Helpers shared by the qbert-bench subcommands: option values, the CPU name, the
 * JSON written at the end of a run. */
#include "bench.h"

#include "qbert/metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qb_bench_parse_list(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 100000) return -1;
        out[n++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return *s ? -1 : n;
}

int qb_bench_parse_int(const char *s, int lo, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > 1000000) return 0;
    *out = (int)v;
    return 1;
}

void qb_bench_cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(buf, cap, "%s", colon + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

/* 1 if `name` is one of the common options (then *ok says whether its value was good). */
static int common_option(const char *name, const char *value, qb_bench_common *c, int *ok)
{
    *ok = value != NULL;
    if (strcmp(name, "--json") == 0) {
        c->json = value;
        if (value && qb_prepare_output(value)) {  /* at once, not after the whole run */
            fprintf(stderr, "qbert-bench: --json: %s\n", qb_error());
            *ok = 0;
        }
    } else if (strcmp(name, "--warmup") == 0)
        *ok = value && qb_bench_parse_int(value, 0, &c->warmup);
    else if (strcmp(name, "--runs") == 0)
        *ok = value && qb_bench_parse_int(value, 1, &c->runs);
    else if (strcmp(name, "--threads") == 0)
        *ok = value && qb_bench_parse_int(value, 0, &c->threads);
    else
        return 0;
    return 1;
}

int qb_bench_options(const char *cmd, int argc, char **argv, qb_bench_common *c, void (*usage)(FILE *),
                     qb_bench_own_option own, void *ctx)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!common_option(a, v, c, &ok) && !(own && own(a, v, ctx, &ok))) {
            fprintf(stderr, "qbert-bench %s: unknown option \"%s\"\n", cmd, a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "qbert-bench %s: bad or missing value for %s\n", cmd, a);
            return 2;
        }
        i++;
    }
    return -1;
}

int qb_bench_finish(const char *cmd, int rc, const char *json_path, cJSON *root)
{
    if (!rc && json_path && qb_json_write_file(json_path, root)) {
        fprintf(stderr, "qbert-bench %s: %s\n", cmd, qb_error());
        rc = 1;
    }
    cJSON_Delete(root);
    return rc;
}
