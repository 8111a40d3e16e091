/* qbert experiment FILE.ini, and qbert bench: the research notes' comparison table in
 * one command.
 *
 * Each [variant NAME] section is one row: the experiment's FP32 model as it is
 * (scheme = fp32), or a model written by qbert quantize with the section's options
 * (the option names without their dashes) from the experiment's model or from the
 * section's own `model` (a QAT checkpoint for scheme = qat). Every row is evaluated
 * on the test set (accuracy, weighted P/R/F1, average confidence, agreement with the
 * first row's predictions) and timed; the first row is the baseline that every
 * difference is taken against. Output under [experiment] out: results.json (all of
 * it), results.md (the tables, also printed), results.svg (accuracy, size and
 * latency drawn; experiment_report.c), and one model directory per quantized row.
 *
 * With [experiment] devices = cpu, cuda every variant is also a row on each device
 * (its model written once): the CPU vs GPU table. On a GPU a variant's FP32 Linears
 * and attention multiply in its `math` (by default fp16 for scheme fp16, bf16 for
 * bf16: the tensor cores such a file is made for; fp16 for the schemes with INT8
 * inputs, whose activations then stay FP16 around the integer products); the CPU
 * always multiplies in FP32, its emulations of the other maths being for accuracy
 * studies, not speed. qbert bench builds the same
 * experiment from its options (--devices, --precisions) instead of an INI file.
 *
 * Latency is what a caller of the engine waits for: one qb_engine_classify call on
 * the first B texts of the test set (tokenisation, forward, softmax), `warmup`
 * untimed calls and then `runs` timed ones, for each batch size B.
 *
 * Every row is compared with the baseline on the same texts (McNemar's exact test, a
 * paired bootstrap; experiment_report.c). With [experiment] seeds every row is run once
 * per seed, "{seed}" in a model path standing for it (models trained with
 * train.seeds = ...), quantized models written to out/seed-S/, and the reports add the
 * spread over the seeds; latency is measured in the first seed's run only. */
#include "cli/cli.h"
#include "cli/experiment.h"

#include "backend/backend.h"
#include "qbert/io.h"
#include "qbert/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the INI file ---- */

typedef struct {
    experiment *x;
    char msg[1024];
} parse_ctx;

/* Keeps the message for the caller, which prefixes FILE:LINE; 0 stops inih. */
static int fail_key(parse_ctx *p, const char *section, const char *name, const char *value, const char *why)
{
    snprintf(p->msg, sizeof p->msg, "[%s] %s = \"%s\": %s", section, name, value, why);
    return 0;
}

static bool set_str(char *dst, size_t cap, const char *v)
{
    if (strlen(v) >= cap) return false;
    strcpy(dst, v);
    return true;
}

static bool parse_int(const char *v, long lo, long hi, int *out)
{
    long x;
    if (!qb_cli_parse_long(v, lo, hi, &x)) return false;
    *out = (int)x;
    return true;
}

/* "1, 32": 1 to cap integers in [lo, hi] into out; returns how many, or -1. */
static int parse_list(const char *v, long long lo, long long hi, long long *out, int cap)
{
    int n = 0;
    for (const char *s = v; *s;) {
        char *end;
        errno = 0;
        const long long b = strtoll(s, &end, 10);
        if (end == s || errno || b < lo || b > hi || n == cap) return -1;
        out[n++] = b;
        s = end;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n ? n : -1;
}

/* "1, 32": up to MAX_BATCHES sizes in [1, 4096]. */
static bool parse_batches(const char *v, experiment *x)
{
    long long b[MAX_BATCHES];
    const int n = parse_list(v, 1, 4096, b, MAX_BATCHES);
    for (int i = 0; i < n; i++) x->batches[i] = (int)b[i];
    if (n > 0) x->n_batches = n;
    return n > 0;
}

/* "42, 123, 456": up to MAX_SEEDS distinct seeds in [0, 2^53] (JSON numbers). */
static bool parse_seeds(const char *v, experiment *x)
{
    long long s[MAX_SEEDS];
    const int n = parse_list(v, 0, 1LL << 53, s, MAX_SEEDS);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (s[i] == s[j]) return false;
    for (int i = 0; i < n; i++) x->seeds[i] = (uint64_t)s[i];
    if (n > 0) x->n_seeds = n;
    return n > 0;
}

/* "cpu, cuda": 1 to MAX_DEVICES distinct device names. */
static bool parse_devices(const char *v, experiment *x)
{
    x->n_devices = 0;
    for (const char *s = v; *s;) {
        while (*s == ' ' || *s == '\t') s++;
        const size_t n = strcspn(s, ", \t");
        bool known = (n == 3 && strncmp(s, "cpu", 3) == 0) || (n == 4 && strncmp(s, "cuda", 4) == 0);
        for (int d = 0; known && d < x->n_devices; d++) known = strlen(x->devices[d]) != n || strncmp(x->devices[d], s, n);
        if (!known || x->n_devices == MAX_DEVICES) return false;
        memcpy(x->devices[x->n_devices], s, n);
        x->devices[x->n_devices++][n] = '\0';
        s += n;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == ',' && s[1]) s++;
        else if (*s) return false;
    }
    return x->n_devices > 0;
}

static int handle_variant(parse_ctx *p, const char *section, const char *name, const char *v)
{
    experiment *x = p->x;
    variant *r = NULL;
    for (int i = 0; i < x->n && !r; i++)
        if (strcmp(x->v[i].name, section + strlen("variant ")) == 0) r = &x->v[i];
    if (!r) return fail_key(p, section, name, v, "internal: a section the header scan missed");
    if (strcmp(name, "scheme") == 0) {
        if (!set_str(r->scheme, sizeof r->scheme, v)) return fail_key(p, section, name, v, "expected a scheme name");
    } else if (strcmp(name, "model") == 0) {
        if (!set_str(r->model, sizeof r->model, v)) return fail_key(p, section, name, v, "path too long");
    } else if (strcmp(name, "group-size") == 0) {
        if (!parse_int(v, 2, 1 << 16, &r->group)) return fail_key(p, section, name, v, "expected an integer in [2, 65536]");
    } else if (strcmp(name, "act") == 0) {
        if (!set_str(r->act, sizeof r->act, v)) return fail_key(p, section, name, v, "expected int8 or fp32");
    } else if (strcmp(name, "calib-method") == 0) {
        if (!set_str(r->calib_method, sizeof r->calib_method, v))
            return fail_key(p, section, name, v, "expected minmax, percentile or mse");
    } else if (strcmp(name, "percentile") == 0) {
        if (!(qb_cli_parse_real(v, &r->percentile) && r->percentile > 0 && r->percentile <= 100))
            return fail_key(p, section, name, v, "expected a number in (0, 100]");
    } else if (strcmp(name, "math") == 0) {
        qb_math m;
        if (!set_str(r->math, sizeof r->math, v) || qb_math_parse(v, &m))
            return fail_key(p, section, name, v, "expected fp32, tf32, bf16 or fp16");
    } else {
        return fail_key(p, section, name, v, "unknown key; a variant takes scheme, model, group-size, act, calib-method, "
                        "percentile, math");
    }
    return 1;
}

static int handler(void *user, const char *section, const char *name, const char *v)
{
    parse_ctx *p = user;
    experiment *x = p->x;
    if (strncmp(section, "variant ", 8) == 0) return handle_variant(p, section, name, v);
    /* {section, key, string field or NULL, int field, lo, hi} */
    const struct {
        const char *section, *key;
        char *str;
        int *num;
        long lo, hi;
    } keys[] = {
        {"experiment", "model", x->model, NULL, 0, 0},
        {"experiment", "test", x->test, NULL, 0, 0},
        {"experiment", "out", x->out, NULL, 0, 0},
        {"experiment", "max_length", NULL, &x->max_length, 3, 8192},
        {"experiment", "batch", NULL, &x->batch, 1, 100000},
        {"experiment", "threads", NULL, &x->threads, 0, 4096},
        {"calibration", "data", x->calib, NULL, 0, 0},
        {"calibration", "samples", NULL, &x->calib_samples, 1, 1 << 24},
        {"latency", "warmup", NULL, &x->warmup, 0, 100000},
        {"latency", "runs", NULL, &x->runs, 1, 100000},
        {"significance", "resamples", NULL, &x->resamples, 100, 1000000},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (strcmp(section, keys[i].section) != 0 || strcmp(name, keys[i].key) != 0) continue;
        if (keys[i].str && !set_str(keys[i].str, PATH_CAP, v)) return fail_key(p, section, name, v, "path too long");
        if (keys[i].num && !parse_int(v, keys[i].lo, keys[i].hi, keys[i].num)) {
            char range[96];
            snprintf(range, sizeof range, "expected an integer in [%ld, %ld]", keys[i].lo, keys[i].hi);
            return fail_key(p, section, name, v, range);
        }
        return 1;
    }
    if (strcmp(section, "latency") == 0 && strcmp(name, "batches") == 0) {
        if (!parse_batches(v, x)) return fail_key(p, section, name, v, "expected 1 to 8 batch sizes in [1, 4096], like 1, 32");
        return 1;
    }
    if (strcmp(section, "experiment") == 0 && strcmp(name, "devices") == 0) {
        if (!parse_devices(v, x)) return fail_key(p, section, name, v, "expected cpu, cuda or both, like cpu, cuda");
        return 1;
    }
    if (strcmp(section, "experiment") == 0 && strcmp(name, "seeds") == 0) {
        if (!parse_seeds(v, x))
            return fail_key(p, section, name, v, "expected 1 to 16 distinct integers in [0, 2^53], like 42, 123, 456");
        return 1;
    }
    if (strcmp(section, "significance") == 0 && strcmp(name, "seed") == 0) {
        long long s;
        if (parse_list(v, 0, 1LL << 53, &s, 1) != 1) return fail_key(p, section, name, v, "expected an integer in [0, 2^53]");
        x->bootstrap_seed = (uint64_t)s;
        return 1;
    }
    return fail_key(p, section, name, v, "unknown key (sections: [experiment] model test out devices seeds max_length "
                    "batch threads, [calibration] data samples, [latency] warmup runs batches, [significance] "
                    "resamples seed, [variant NAME])");
}

/* The [variant NAME] headers of text, in order, with their lines: inih calls the
 * handler per key, so it can tell neither an empty section nor a repeated one. The
 * header syntax is inih's: '[' first on the line (after blanks), the name up to ']'. */
static qb_status scan_variants(const char *path, const char *text, experiment *x)
{
    int line = 1;
    for (const char *s = text; *s; line++) {
        const char *end = strchr(s, '\n');
        const size_t len = end ? (size_t)(end - s) : strlen(s);
        size_t i = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
        const char *close = memchr(s + i, ']', len - i);
        if (i + 9 <= len && strncmp(s + i, "[variant ", 9) == 0 && close) {
            const char *name = s + i + 9;
            const size_t n = (size_t)(close - name);
            for (int k = 0; k < x->n; k++)
                if (strlen(x->v[k].name) == n && strncmp(x->v[k].name, name, n) == 0)
                    return qb_fail(QB_EINVAL, "%s:%d: [variant %.*s] again (first on line %d): each row needs its own name",
                                   path, line, (int)n, name, x->v[k].line);
            if (x->n == MAX_VARIANTS) return qb_fail(QB_EINVAL, "%s:%d: more than %d variants", path, line, MAX_VARIANTS);
            if (n == 0 || n >= sizeof x->v[0].name || memchr(name, '/', n) || (n <= 2 && strncmp(name, "..", n) == 0))
                return qb_fail(QB_EINVAL, "%s:%d: a variant name is 1 to 63 characters, no '/', not . or .. (it names a "
                               "directory)", path, line);
            variant *v = &x->v[x->n++];
            *v = (variant){.line = line, .percentile = 99.99};
            memcpy(v->name, name, n);
        }
        if (!end) break;
        s = end + 1;
    }
    return QB_OK;
}

/* The qbert quantize request of a variant: its options, and the [calibration] texts
 * for a static scheme (calib "" when the experiment has none). */
static void variant_request(const experiment *x, const variant *v, qb_cli_quant_request *r)
{
    qb_cli_quant_request_default(r);
    r->scheme = v->scheme, r->group = v->group, r->act = v->act[0] ? v->act : NULL;
    r->calib_samples = x->calib_samples, r->percentile = v->percentile;
    if (v->calib_method[0]) r->calib_method = v->calib_method;
    qb_qscheme s;
    if (qb_qscheme_get(v->scheme, v->group, &s) == QB_OK && s.act == QB_ACT_STATIC) r->calib = x->calib;
}

static void default_experiment(experiment *x)
{
    *x = (experiment){.max_length = 128, .batch = 32, .calib_samples = 256, .warmup = 5, .runs = 20,
                      .batches = {1, 32}, .n_batches = 2, .devices = {"cpu"}, .n_devices = 1,
                      .resamples = 2000, .bootstrap_seed = 42};
}

/* A model path of run `run`: tmpl with every "{seed}" replaced by the run's seed. */
static qb_status seed_path(const experiment *x, const char *tmpl, int run, char *out)
{
    size_t n = 0;
    for (const char *s = tmpl; *s;) {
        const char *hit = strstr(s, "{seed}");
        const size_t len = hit ? (size_t)(hit - s) : strlen(s);
        char seed[24] = "";
        if (hit && !x->n_seeds) return qb_fail(QB_EINVAL, "model %s has {seed}: set [experiment] seeds", tmpl);
        if (hit) snprintf(seed, sizeof seed, "%llu", (unsigned long long)x->seeds[run]);
        if (n + len + strlen(seed) >= PATH_CAP) return qb_fail(QB_EINVAL, "model %s: path too long with its seed", tmpl);
        memcpy(out + n, s, len);
        memcpy(out + n + len, seed, strlen(seed));
        n += len + strlen(seed);
        s += len + (hit ? strlen("{seed}") : 0);
    }
    out[n] = '\0';
    return QB_OK;
}

/* Checks a variant's options, and sets its model to the experiment's when it names
 * none. The message has no location: the caller prefixes the file and line, or the
 * option. */
static qb_status check_variant(const experiment *x, variant *v)
{
    if (!v->scheme[0]) return qb_fail(QB_EINVAL, "has no scheme = ...");
    if (strcmp(v->scheme, "qat") == 0 && !v->model[0])
        return qb_fail(QB_EINVAL, "scheme = qat needs model = a QAT checkpoint directory");
    if (strcmp(v->scheme, "fp32") == 0 && (v->group || v->act[0] || v->calib_method[0]))
        return qb_fail(QB_EINVAL, "scheme = fp32 is the model as it is: it takes only model and math");
    if (strcmp(v->scheme, "fp32") != 0) {
        qb_cli_quant_request r;
        qb_qplan plan;
        variant_request(x, v, &r);
        if (r.calib && !r.calib[0])
            return qb_fail(QB_EINVAL, "scheme = %s needs [calibration] data = FILE (qbert bench: --calib FILE)",
                           v->scheme);
        if (qb_cli_quant_check(&r, &plan)) return QB_EINVAL;
    }
    if (!v->model[0]) strcpy(v->model, x->model);
    /* Every model is there before the first row's minutes are spent. */
    for (int run = 0; run < experiment_runs(x); run++) {
        char dir[PATH_CAP], config[PATH_CAP + 16];
        qb_status st = seed_path(x, v->model, run, dir);
        if (st) return st;
        snprintf(config, sizeof config, "%s/config.json", dir);
        if (!qb_file_exists(config))
            return qb_fail(QB_ENOTFOUND, "model %s: no config.json there (a model directory expected)", dir);
    }
    return QB_OK;
}

/* One --set "section.key=value" through the file's handler (section: experiment,
 * calibration, latency, or "variant NAME" of a variant the file has). */
static qb_status apply_set(parse_ctx *p, const char *assignment)
{
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    char section[96], key[64];
    if (!dot || !eq || dot > eq || dot - assignment >= (int)sizeof section || eq - dot - 1 >= (int)sizeof key)
        return qb_fail(QB_EINVAL, "--set %s: expected section.key=value (e.g. latency.runs=50, \"variant int8.scheme=int4\")",
                       assignment);
    snprintf(section, sizeof section, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    p->msg[0] = '\0';
    if (!handler(p, section, key, eq + 1))
        return qb_fail(QB_EINVAL, "--set %s: %s", assignment, p->msg[0] ? p->msg : "not accepted");
    return QB_OK;
}

/* The experiment of FILE, then the --set overrides (n_sets of them), then the checks. */
static qb_status load_experiment(const char *path, const char *const *sets, int n_sets, experiment *x)
{
    default_experiment(x);
    char *text;
    qb_status st = qb_read_ini_file(path, &text);
    if (st) return st;
    parse_ctx p = {x, ""};
    if ((st = scan_variants(path, text, x))) {
        free(text);
        return st;
    }
    const char *why;
    const int rc = qb_ini_parse(text, handler, &p, &why);
    free(text);
    if (rc > 0 && why) return qb_fail(QB_EINVAL, "%s:%d: %s", path, rc, why);
    if (rc > 0 && p.msg[0]) return qb_fail(QB_EINVAL, "%s:%d: %s", path, rc, p.msg);
    if (rc != 0) return qb_fail(QB_EINVAL, "%s:%d: syntax error: expected [section], key = value or a ; comment", path, rc);
    for (int i = 0; i < n_sets; i++)
        if ((st = apply_set(&p, sets[i]))) return st;
    const char *missing = !x->model[0] ? "[experiment] model" : !x->test[0] ? "[experiment] test"
                          : !x->out[0] ? "[experiment] out" : NULL;
    if (missing) return qb_fail(QB_EINVAL, "%s: %s is required", path, missing);
    if (x->n == 0) return qb_fail(QB_EINVAL, "%s: no [variant NAME] section; the first one is the baseline", path);
    bool seeded = false;
    for (int i = 0; i < x->n; i++) {
        if ((st = check_variant(x, &x->v[i])))
            return qb_fail(st, "%s:%d: [variant %s] %s", path, x->v[i].line, x->v[i].name, qb_error());
        seeded |= strstr(x->v[i].model, "{seed}") != NULL;
    }
    if (x->n_seeds > 1 && !seeded)
        return qb_fail(QB_EINVAL, "%s: [experiment] seeds: no model path has {seed}, so every seed would be the same run "
                       "(e.g. model = runs/fp32/seed-{seed}/model)", path);
    return QB_OK;
}

/* ---- running a row ---- */

static int largest_batch(const experiment *x)
{
    int b = 0;
    for (int k = 0; k < x->n_batches; k++) b = x->batches[k] > b ? x->batches[k] : b;
    return b;
}

/* Whether a variant's quantized Linears read INT8 inputs (not weight-only; a QAT
 * checkpoint is written with its learned static input scales). */
static bool int8_inputs(const variant *v)
{
    qb_qscheme s;
    if (strcmp(v->scheme, "qat") == 0) return true;
    if (strcmp(v->scheme, "fp32") == 0 || strcmp(v->act, "fp32") == 0 || qb_qscheme_get(v->scheme, v->group, &s))
        return false;
    return s.linear != QB_Q_F16 && s.linear != QB_Q_BF16 && s.act != QB_ACT_F32;
}

/* The math of a variant on a device (see the top of the file). */
static qb_math row_math(const variant *v, const char *device)
{
    qb_math m = QB_MATH_FP32;
    if (strcmp(device, "cpu") == 0) return m;
    if (v->math[0]) qb_math_parse(v->math, &m);  /* checked when read */
    else if (strcmp(v->scheme, "fp16") == 0 || int8_inputs(v)) m = QB_MATH_FP16;
    else if (strcmp(v->scheme, "bf16") == 0) m = QB_MATH_BF16;
    return m;
}

static qb_status time_batches(qb_engine *e, const experiment *x, const qb_dataset *test, row *r)
{
    const int K = qb_engine_model(e)->cfg.num_labels;
    float *probs = malloc((size_t)largest_batch(x) * K * sizeof *probs);
    double *ms = malloc((size_t)x->runs * sizeof *ms);
    qb_status st = probs && ms ? QB_OK : qb_fail(QB_ENOMEM, "out of memory for the latency runs");
    for (int bi = 0; !st && bi < x->n_batches; bi++) {
        const int B = x->batches[bi];
        const char *const *texts = (const char *const *)test->texts;
        qb_engine_set_batch_size(e, B);  /* one forward pass per call, whatever [experiment] batch is */
        for (int i = 0; !st && i < x->warmup + x->runs; i++) {
            const double t0 = qb_now();
            st = qb_engine_classify(e, texts, B, probs, NULL, NULL);
            if (i >= x->warmup) ms[i - x->warmup] = (qb_now() - t0) * 1e3;
        }
        if (!st) st = qb_latency_compute(ms, x->runs, &r->lat[bi]);
        if (!st)
            fprintf(stderr, "[experiment]   batch %d: median %.2f ms, p95 %.2f ms over %d runs\n", B, r->lat[bi].median,
                    r->lat[bi].p95, x->runs);
    }
    free(probs);
    free(ms);
    return st;
}

/* The model directory of row i in run `run` (r->dir): the variant's own for fp32,
 * else written by qbert quantize from it on the variant's first device. */
static qb_status row_model(const experiment *x, int run, int i, const qb_engine_options *eo, row *r)
{
    const variant *v = row_variant(x, i);
    char src[PATH_CAP], out[PATH_CAP + 32];
    qb_status st = seed_path(x, v->model, run, src);
    if (st) return st;
    if (strcmp(v->scheme, "fp32") == 0) {
        snprintf(r->dir, sizeof r->dir, "%s", src);
        return QB_OK;
    }
    /* several seeds: out/seed-S/NAME */
    if (x->n_seeds > 1) snprintf(out, sizeof out, "%s/seed-%llu", x->out, (unsigned long long)x->seeds[run]);
    else snprintf(out, sizeof out, "%s", x->out);
    if (snprintf(r->dir, sizeof r->dir, "%s/%s", out, v->name) >= (int)sizeof r->dir)
        return qb_fail(QB_EINVAL, "%s/%s: path too long", out, v->name);
    if (i % x->n_devices) return QB_OK;  /* written once, before its first row */
    qb_cli_quant_request q;
    qb_qplan plan;
    variant_request(x, v, &q);
    qb_engine *e;
    if ((st = qb_cli_quant_check(&q, &plan)) || (st = qb_engine_open(src, eo, &e))) return st;
    st = qb_cli_quantize(e, src, &q, &plan, eo, r->dir);
    qb_engine_close(e);
    return st;
}

/* The test set's predictions of r's model, its scores, and its agreement with and
 * comparison to the baseline's row (NULL: r is the baseline). */
static qb_status score(const experiment *x, qb_engine *e, const qb_dataset *test, const row *base, row *r)
{
    const int n = test->count, K = qb_engine_model(e)->cfg.num_labels;
    float *conf = malloc((size_t)n * sizeof *conf);
    double seconds;
    qb_status st = QB_OK;
    if (!(r->pred = malloc((size_t)n * sizeof *r->pred)) || !conf) st = qb_fail(QB_ENOMEM, "out of memory");
    if (!st && qb_cli_classify(e, (const char *const *)test->texts, n, r->pred, conf, &seconds))
        st = qb_fail(QB_EIO, "%s: classifying the test set failed", r->dir);
    if (!st) st = qb_metrics_compute(test->labels, r->pred, conf, n, K, &r->m);
    free(conf);
    if (st || !base) {
        r->agreement = 1.0;
        return st;
    }
    int same = 0;
    for (int k = 0; k < n; k++) same += r->pred[k] == base->pred[k];
    r->agreement = (double)same / n;
    return qb_paired_compare(test->labels, base->pred, r->pred, n, K, x->resamples, x->bootstrap_seed, NULL, &r->vs);
}

/* Row i of run `run`: its model (written unless fp32), evaluated on the row's device
 * against the run's baseline row (NULL for row 0), and timed in the first run. */
static qb_status run_row(const experiment *x, int run, int i, const qb_engine_options *base_eo, const qb_dataset *test,
                         const qb_config *base_cfg, const row *base, row *r)
{
    const variant *v = row_variant(x, i);
    qb_engine_options eo = *base_eo;
    eo.device = r->device = x->devices[i % x->n_devices];
    eo.math = r->math = row_math(v, r->device);
    if (x->n_devices > 1) snprintf(r->label, sizeof r->label, "%s %s", v->name, r->device);
    else snprintf(r->label, sizeof r->label, "%s", v->name);
    qb_status st = row_model(x, run, i, base_eo, r);
    if (st) return st;
    if ((r->bytes = qb_model_weights_bytes(r->dir)) < 0)
        return qb_fail(QB_ENOTFOUND, "%s: no model.safetensors or pytorch_model.bin", r->dir);
    qb_engine *e;
    if ((st = qb_engine_open(r->dir, &eo, &e))) return st;
    const qb_config *cfg = &qb_engine_model(e)->cfg;
    /* The test labels are ids of the baseline's label names. */
    bool same_labels = cfg->num_labels == base_cfg->num_labels;
    for (int k = 0; same_labels && k < cfg->num_labels; k++)
        same_labels = strcmp(cfg->id2label[k], base_cfg->id2label[k]) == 0;
    if (!same_labels)
        st = qb_fail(QB_EINVAL, "%s: its labels (id2label) differ from the baseline's (%s)", r->dir,
                     base ? base->dir : r->dir);
    if (!st) st = score(x, e, test, base, r);
    if (!st && run == 0) st = time_batches(e, x, test, r);
    qb_engine_close(e);
    return st;
}

/* ---- the commands ---- */

/* Runs experiment x (checked) and writes its reports; source names it in them (the INI
 * file, or the bench command line), and in a failure's message when it is a file.
 * Returns the exit status. */
static int run_experiment(const char *cmd, const char *source, bool is_file, const experiment *x)
{
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    eo.max_length = x->max_length, eo.batch_size = x->batch, eo.threads = x->threads;

    /* Every device can be reached before the first row's minutes are spent. */
    qb_status st = QB_OK;
    for (int d = 0; !st && d < x->n_devices; d++) {
        const qb_backend *be;
        st = qb_backend_by_name(x->devices[d], "devices", &be);
    }
    /* The test set, with the baseline's label names. */
    qb_config cfg = {0};
    char base_dir[PATH_CAP], cpath[PATH_CAP + 32];
    if (!st) st = seed_path(x, x->v[0].model, 0, base_dir);
    snprintf(cpath, sizeof cpath, "%s/config.json", base_dir);
    qb_dataset test = {0};
    qb_data_options dop;
    qb_data_default_options(&dop);
    if (!st) st = qb_config_load(cpath, &cfg);
    if (!st) {
        dop.label_names = (const char *const *)cfg.id2label;
        dop.n_labels = cfg.num_labels;
        st = qb_dataset_load(x->test, &dop, &test);
    }
    if (!st && test.count < largest_batch(x))
        st = qb_fail(QB_EINVAL, "[latency] batches: %s has %d texts, fewer than the largest batch (%d)", x->test,
                     test.count, largest_batch(x));
    if (!st) st = qb_mkdirs(x->out);
    const int n_rows = experiment_rows(x), n_all = experiment_runs(x) * n_rows;
    row *rows = calloc((size_t)n_all, sizeof *rows);
    if (!st && !rows) st = qb_fail(QB_ENOMEM, "out of memory");
    const double t0 = qb_now();
    for (int j = 0; !st && j < n_all; j++) {
        const int run = j / n_rows, i = j % n_rows;
        const variant *v = row_variant(x, i);
        const double el = qb_now() - t0;
        fprintf(stderr, "[experiment] %d/%d %s (%s) on %s", j + 1, n_all, v->name, v->scheme, x->devices[i % x->n_devices]);
        if (x->n_seeds) fprintf(stderr, ", seed %llu", (unsigned long long)x->seeds[run]);
        fprintf(stderr, "  elapsed %.0fs", el);
        if (j) fprintf(stderr, "  ETA %.0fs", el / j * (n_all - j));
        fprintf(stderr, "\n");
        const row *base = i ? &rows[run * n_rows] : NULL;
        if ((st = run_row(x, run, i, &eo, &test, &cfg, base, &rows[j]))) {
            st = qb_fail(st, "[variant %s] on %s: %s", v->name, x->devices[i % x->n_devices], qb_error());
        } else {
            fprintf(stderr, "[experiment]   accuracy %.4f, agreement %.4f, %.1f MB", rows[j].m.accuracy,
                    rows[j].agreement, rows[j].bytes / 1e6);
            if (base) fprintf(stderr, ", McNemar p %.3g", rows[j].vs.mcnemar_p);
            fprintf(stderr, "\n");
        }
    }
    if (!st) st = experiment_write_reports(source, x, &test, rows, (const char *const *)cfg.id2label);
    for (int j = 0; rows && j < n_all; j++) {
        qb_metrics_free(&rows[j].m);
        free(rows[j].pred);
    }
    free(rows);
    qb_dataset_free(&test);
    qb_config_free(&cfg);
    if (st) return is_file ? qb_cli_fail(cmd, "%s: %s", source, qb_error()) : qb_cli_fail(cmd, "%s", qb_error());
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert experiment FILE.ini [--set section.key=value ...]\n"
            "  Evaluates and times every [variant NAME] of FILE (the first one is the baseline) and\n"
            "  writes results.json, results.md and results.svg to its [experiment] out directory.\n"
            "  [experiment] model DIR, test FILE, out DIR, devices (cpu; or cpu, cuda: every variant on\n"
            "               each), max_length (128), batch (32), threads (0: all)\n"
            "  [calibration] data FILE, samples (256)       texts for int8-static variants\n"
            "  [latency] warmup (5), runs (20), batches (1, 32)\n"
            "  [experiment] seeds = 42, 123, 456: every row once per seed, \"{seed}\" in a model path\n"
            "               replaced by it (models trained with qbert train ... train.seeds=...)\n"
            "  [significance] resamples (2000), seed (42): each row against the baseline on the same\n"
            "               texts: McNemar's exact test, paired bootstrap 95%% intervals of the accuracy\n"
            "               and weighted-F1 differences; over seeds, t-intervals\n"
            "  [variant NAME] scheme = fp32 | fp16 | bf16 | int8-dynamic | int8-static | int4 | int4-tensor | qat,\n"
            "                 model (default: the experiment's), group-size, act, calib-method, percentile,\n"
            "                 math (on a GPU, of FP32 Linears and attention, and the activations' storage;\n"
            "                 default fp16 / bf16 for those schemes, fp16 for INT8 inputs, else fp32)\n"
            "  --set S.K=V   overrides a key of FILE, e.g. --set latency.runs=50 --set \"variant int8.math=fp32\"\n"
            "example: qbert experiment experiments/smsa_ptq.ini\n");
}

int qb_cmd_experiment(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    const char *file = NULL, *sets[64];
    int n_sets = 0, bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *v;
        if (qb_cli_opt(argc, argv, &i, "--set", &v, &bad)) {
            if (n_sets == 64) bad = qb_cli_fail("experiment", "more than 64 --set options");
            else if (v) sets[n_sets++] = v;
        } else if (argv[i][0] == '-' || file) {
            bad = qb_cli_fail("experiment", "unexpected argument \"%s\" (see qbert experiment --help)", argv[i]);
        } else {
            file = argv[i];
        }
    }
    if (bad || !file) {
        if (!bad) usage(stderr);
        return 2;
    }
    experiment *x = calloc(1, sizeof *x);
    if (!x) return qb_cli_fail("experiment", "out of memory");
    int rc = load_experiment(file, sets, n_sets, x) ? qb_cli_fail("experiment", "%s", qb_error())
                                                     : run_experiment("experiment", file, true, x);
    free(x);
    return rc;
}

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: qbert bench --model DIR --data FILE [--devices cpu,cuda] [--precisions LIST] [options]\n"
            "  The CPU vs GPU table: the model in each precision (written under --out by qbert quantize),\n"
            "  evaluated on the labelled texts of FILE and timed on each device, every row against the\n"
            "  first precision on the first device and against the first precision on its own device.\n"
            "  It is qbert experiment with one [variant] per precision (see qbert experiment --help).\n"
            "  --devices LIST      cpu, cuda or both (default cpu)\n"
            "  --precisions LIST   fp32 (the model as it is), fp16, bf16, int8 (= int8-dynamic),\n"
            "                      int8-static (needs --calib), int4 (W4A8, groups of 64), int4-tensor\n"
            "                      (default fp32,fp16,bf16,int8,int4); on a GPU fp16 / bf16 multiply\n"
            "                      on tensor cores, and the CPU multiplies them in FP32\n"
            "  --calib FILE        calibration texts for int8-static [--calib-samples 256]\n"
            "  --group-size N      INT4 columns per scale (default: the scheme's)\n"
            "  --batches LIST      batch sizes timed (default 1,32)\n"
            "  --warmup N (5)  --runs N (20)  --max-length N (128)  --batch N (32, for the accuracy pass)\n"
            "  --threads N (0: all cores)  --out DIR (default runs/bench): results.json / .md / .svg\n"
            "example: qbert bench --model runs/smsa_finetune/model --data ../shared/data/smsa/test.tsv \\\n"
            "             --devices cpu,cuda --precisions fp32,fp16,int8,int4 --batches 1,128\n");
}

/* One [variant] per name of the comma-separated list v. */
static qb_status bench_precisions(const char *v, experiment *x)
{
    x->n = 0;
    for (const char *s = v; *s;) {
        while (*s == ' ' || *s == ',') s++;
        const size_t n = strcspn(s, ", ");
        if (!n) break;
        if (x->n == MAX_VARIANTS) return qb_fail(QB_EINVAL, "--precisions: more than %d", MAX_VARIANTS);
        variant *r = &x->v[x->n];
        *r = (variant){.percentile = 99.99};
        if (n >= sizeof r->name) return qb_fail(QB_EINVAL, "--precisions: \"%.*s\" is too long", (int)n, s);
        memcpy(r->name, s, n);
        s += n;
        for (int i = 0; i < x->n; i++)
            if (strcmp(x->v[i].name, r->name) == 0) return qb_fail(QB_EINVAL, "--precisions: %s twice", r->name);
        if (strcmp(r->name, "qat") == 0 || strcmp(r->name, "hybrid") == 0)
            return qb_fail(QB_EINVAL, "--precisions: %s needs more than a precision (a QAT checkpoint, a budget): "
                           "use qbert experiment", r->name);
        snprintf(r->scheme, sizeof r->scheme, "%s", strcmp(r->name, "int8") == 0 ? "int8-dynamic" : r->name);
        for (int i = 0; i < x->n; i++)
            if (strcmp(x->v[i].scheme, r->scheme) == 0)
                return qb_fail(QB_EINVAL, "--precisions: %s and %s are the same (%s)", x->v[i].name, r->name, r->scheme);
        qb_qscheme q;  /* the names this list takes (hybrid and qat are refused above) */
        if (strcmp(r->scheme, "fp32") != 0 && (strncmp(r->scheme, "qat-", 4) == 0 || qb_qscheme_get(r->scheme, 0, &q)))
            return qb_fail(QB_EINVAL, "--precisions: unknown precision \"%s\" (expected fp32, fp16, bf16, int8, "
                           "int8-dynamic, int8-static, int4 or int4-tensor)", r->name);
        x->n++;
    }
    return x->n ? QB_OK : qb_fail(QB_EINVAL, "--precisions: empty");
}

int qb_cmd_bench(int argc, char **argv)
{
    experiment *x = calloc(1, sizeof *x);
    if (!x) return qb_cli_fail("bench", "out of memory");
    default_experiment(x);
    snprintf(x->out, sizeof x->out, "runs/bench");
    const char *precisions = "fp32,fp16,bf16,int8,int4", *model = NULL, *data = NULL, *calib = NULL, *out = NULL;
    int bad = 0, group = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *v = NULL;
        long n;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            bench_usage(stdout);
            free(x);
            return 0;
        }
        /* {option, int field, lo, hi} */
        const struct {
            const char *name;
            int *num;
            long lo, hi;
        } ints[] = {
            {"--warmup", &x->warmup, 0, 100000}, {"--runs", &x->runs, 1, 100000},
            {"--max-length", &x->max_length, 3, 8192}, {"--batch", &x->batch, 1, 100000},
            {"--threads", &x->threads, 0, 4096}, {"--calib-samples", &x->calib_samples, 1, 1 << 24},
            {"--group-size", &group, 2, 1 << 16},
        };
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if ((done = qb_cli_opt(argc, argv, &i, ints[k].name, &v, &bad)) && v) {
                if (qb_cli_int("bench", ints[k].name, v, ints[k].lo, ints[k].hi, &n)) *ints[k].num = (int)n;
                else bad = 1;
            }
        if (done) continue;
        if (qb_cli_opt(argc, argv, &i, "--model", &model, &bad) || qb_cli_opt(argc, argv, &i, "--data", &data, &bad) ||
            qb_cli_opt(argc, argv, &i, "--calib", &calib, &bad) || qb_cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            qb_cli_opt(argc, argv, &i, "--precisions", &precisions, &bad))
            continue;
        if (qb_cli_opt(argc, argv, &i, "--devices", &v, &bad)) {
            if (v && !parse_devices(v, x)) bad = qb_cli_fail("bench", "--devices must be cpu, cuda or both, got \"%s\"", v);
        } else if (qb_cli_opt(argc, argv, &i, "--batches", &v, &bad)) {
            if (v && !parse_batches(v, x))
                bad = qb_cli_fail("bench", "--batches must be 1 to 8 sizes in [1, 4096] like 1,32, got \"%s\"", v);
        } else {
            bad = qb_cli_fail("bench", "unknown option \"%s\" (see qbert bench --help)", argv[i]);
        }
    }
    if (!bad && (!model || !data)) bad = qb_cli_fail("bench", "--model and --data are required (see qbert bench --help)");
    const char *paths[][2] = {{model, x->model}, {data, x->test}, {calib, x->calib}, {out, x->out}};
    for (size_t k = 0; !bad && k < sizeof paths / sizeof *paths; k++)
        if (paths[k][0] && !set_str((char *)paths[k][1], PATH_CAP, paths[k][0]))
            bad = qb_cli_fail("bench", "%s: path too long", paths[k][0]);
    if (!bad && bench_precisions(precisions, x)) bad = qb_cli_fail("bench", "%s", qb_error());
    for (int i = 0; !bad && i < x->n; i++)
        if (strncmp(x->v[i].scheme, "int4", 4) == 0) x->v[i].group = group;
    for (int i = 0; !bad && i < x->n; i++)
        if (check_variant(x, &x->v[i])) bad = qb_cli_fail("bench", "--precisions %s: %s", x->v[i].name, qb_error());
    if (bad) {
        free(x);
        return 2;
    }
    /* The command line, for the reports. */
    char source[512] = "qbert bench";
    for (int i = 1, len = (int)strlen(source); i < argc && len < (int)sizeof source; i++)
        len += snprintf(source + len, sizeof source - (size_t)len, " %s", argv[i]);
    const int rc = run_experiment("bench", source, false, x);
    free(x);
    return rc;
}
