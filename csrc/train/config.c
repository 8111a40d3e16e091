/* The trainer's INI configuration (inih): one table of keys drives parsing, --set
 * overrides and the INI written back beside a run's outputs, so the three cannot
 * disagree. inih reports a failed handler only through the line number it returns,
 * so the handler keeps the first message and the caller prefixes FILE:LINE. */
#include "qbert/io.h"
#include "qbert/train.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* K_BITS: an int that must be lo or hi (a bit width). */
typedef enum { K_STR, K_INT, K_I64, K_FLOAT, K_BOOL, K_CHOICE, K_SEEDS, K_LABELS, K_EVAL, K_BITS } key_kind;

typedef struct {
    const char *section, *name;
    key_kind kind;
    size_t off;          /* offset of the field in qb_train_config */
    size_t size;         /* K_STR: buffer size */
    double lo, hi;       /* K_INT / K_I64 / K_FLOAT bounds */
    const char *choices; /* K_CHOICE: "a|b|c", stored as the int index (or bool for two) */
    bool is_bool;        /* K_CHOICE stored in a bool field */
} key_spec;

#define F(field) offsetof(qb_train_config, field)
#define STR(sec, key, field) {sec, key, K_STR, F(field), sizeof(((qb_train_config *)0)->field), 0, 0, NULL, false}
#define NUM(sec, key, kind, field, lo, hi) {sec, key, kind, F(field), 0, lo, hi, NULL, false}
#define CHOICE(sec, key, field, list, b) {sec, key, K_CHOICE, F(field), 0, 0, 0, list, b}

static const key_spec KEYS[] = {
    STR("model", "path", model_path),
    STR("model", "preset", preset),
    STR("model", "vocab", vocab),
    NUM("model", "vocab_words", K_INT, vocab_words, 10, 1000000),
    STR("data", "train", train),
    STR("data", "valid", valid),
    STR("data", "test", test),
    CHOICE("data", "format", format, "auto|tsv|csv", false),
    CHOICE("data", "delimiter", delimiter, "auto|tab|comma|semicolon|pipe", false),
    STR("data", "text_column", text_column),
    STR("data", "label_column", label_column),
    {"data", "labels", K_LABELS, F(labels), 0, 0, 0, NULL, false},
    NUM("data", "max_length", K_INT, max_length, 3, 8192),
    NUM("data", "lowercase", K_BOOL, lowercase, 0, 0),
    NUM("data", "remove_non_alpha", K_BOOL, remove_non_alpha, 0, 0),
    NUM("data", "remove_stopwords", K_BOOL, remove_stopwords, 0, 0),
    NUM("data", "skip_bad_rows", K_BOOL, skip_bad_rows, 0, 0),
    STR("data", "label_map", label_map),
    NUM("train", "learning_rate", K_FLOAT, optim.lr, 0, 10),
    NUM("train", "batch_size", K_INT, batch_size, 1, 65536),
    NUM("train", "epochs", K_INT, epochs, 1, 100000),
    NUM("train", "max_steps", K_I64, max_steps, 0, 1e15),
    NUM("train", "weight_decay", K_FLOAT, optim.weight_decay, 0, 10),
    NUM("train", "warmup_ratio", K_FLOAT, warmup_ratio, 0, 1),
    NUM("train", "warmup_steps", K_I64, warmup_steps, 0, 1e15),
    NUM("train", "max_grad_norm", K_FLOAT, optim.max_grad_norm, 0, 1e30),
    NUM("train", "adam_beta1", K_FLOAT, optim.beta1, 0, 0.999999),
    NUM("train", "adam_beta2", K_FLOAT, optim.beta2, 0, 0.999999999),
    NUM("train", "adam_epsilon", K_FLOAT, optim.eps, 0, 1),
    NUM("train", "grad_accum", K_INT, grad_accum, 1, 65536),
    {"train", "seed", K_SEEDS, F(seeds), 1, 0, 0, NULL, false},
    {"train", "seeds", K_SEEDS, F(seeds), QB_MAX_SEEDS, 0, 0, NULL, false},
    {"train", "eval_every", K_EVAL, F(eval_every), 0, 0, 0, NULL, false},
    CHOICE("train", "metric_for_best", metric_for_best, "f1|accuracy|precision|recall|loss", false),
    CHOICE("train", "padding", pad_to_max_length, "dynamic|max_length", true),
    NUM("train", "group_by_length", K_BOOL, group_by_length, 0, 0),
    NUM("train", "dropout", K_BOOL, dropout, 0, 0),
    CHOICE("train", "on_nan", skip_nan, "stop|skip", true),
    NUM("train", "checkpoint_every", K_INT, checkpoint_every, 0, 1 << 30),
    NUM("train", "log_every", K_INT, log_every, 1, 1 << 30),
    CHOICE("train", "precision", precision, "fp32|tf32|bf16|fp16", false),
    NUM("train", "loss_scale", K_FLOAT, loss_scale, 1, 1e30),
    NUM("train", "bucket_mb", K_FLOAT, bucket_mb, 0.01, 4096),
    NUM("qat", "enabled", K_BOOL, qat_enabled, 0, 0),
    NUM("qat", "weight_bits", K_BITS, qat.weight_bits, 4, 8),
    NUM("qat", "act_bits", K_BITS, qat.act_bits, 8, 8),
    CHOICE("qat", "granularity", qat_granularity, "auto|channel|group", false),
    NUM("qat", "group_size", K_INT, qat_group_size, 2, 1 << 16),
    CHOICE("qat", "observer", qat.observer, "ema|minmax|percentile", false),
    NUM("qat", "ema_constant", K_FLOAT, qat.ema, 1e-6, 1),
    NUM("qat", "percentile", K_FLOAT, qat.percentile, 50, 100),
    NUM("qat", "freeze_observers_after", K_I64, qat_freeze_after, 0, 1e15),
    NUM("qat", "embeddings", K_BOOL, qat.embeddings, 0, 0),
    NUM("device", "threads", K_INT, threads, 0, 4096),
    CHOICE("device", "type", device, "cpu|cuda", false),
    NUM("device", "graphs", K_BOOL, graphs, 0, 0),
    STR("output", "dir", output_dir),
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

void qb_train_default_config(qb_train_config *c)
{
    memset(c, 0, sizeof *c);
    qb_optim_default_config(&c->optim);
    c->optim.lr = 2e-5f;
    c->optim.weight_decay = 0.01f;
    c->vocab_words = 3000;
    c->format = QB_FORMAT_AUTO;
    strcpy(c->text_column, "text");
    strcpy(c->label_column, "label");
    c->max_length = 128;
    c->lowercase = true;
    c->batch_size = 16;
    c->epochs = 3;
    c->grad_accum = 1;
    c->seeds[0] = 42;
    c->n_seeds = 1;
    c->metric_for_best = QB_METRIC_F1;
    c->group_by_length = true;
    c->dropout = true;
    c->log_every = 10;
    c->loss_scale = 65536.0f;
    c->bucket_mb = 25.0f;
    c->qat = (qb_qat_settings){.weight_bits = 8, .act_bits = 8, .observer = QB_OBS_EMA, .ema = 0.01f,
                               .percentile = 99.99f};
    c->qat_group_size = 64;
}

static const char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Splits a comma list into trimmed items (in place); returns the count or -1 when
 * there are more than max or an item is empty. */
static int split_list(char *s, char **items, int max)
{
    int n = 0;
    for (char *p = s;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (n == max) return -1;
        items[n] = (char *)trim(p);
        if (!*items[n]) return -1;
        n++;
        if (!comma) return n;
        p = comma + 1;
    }
}

static int choice_index(const char *choices, const char *v)
{
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(v) == n && strncmp(p, v, n) == 0) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

static const char *choice_name(const char *choices, int idx, char *buf, size_t cap)
{
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) p = strchr(p, '|'), p = p ? p + 1 : NULL;
    if (!p) return "?";
    const char *bar = strchr(p, '|');
    snprintf(buf, cap, "%.*s", bar ? (int)(bar - p) : (int)strlen(p), p);
    return buf;
}

static const key_spec *find_key(const char *section, const char *name, bool *section_known)
{
    *section_known = false;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(KEYS[i].section, section) != 0) continue;
        *section_known = true;
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    }
    return NULL;
}

static const char *section_keys(const char *section, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", KEYS[i].name);
    return buf;
}

/* Sets one key; on error stores a message (without location) and returns non-zero. */
static qb_status set_key(qb_train_config *c, const char *section, const char *name, const char *raw)
{
    bool known;
    const key_spec *k = find_key(section, name, &known);
    char list[512];
    if (!k) {
        if (!known)
            return qb_fail(QB_EINVAL, "unknown section [%s] (expected model, data, train, qat, device or output)", section);
        return qb_fail(QB_EINVAL, "unknown key \"%s\" in [%s] (allowed: %s)", name, section,
                       section_keys(section, list, sizeof list));
    }
    char value[QB_PATH_MAX];
    snprintf(value, sizeof value, "%s", raw);
    const char *v = trim(value);
    char *field = (char *)c + k->off, *end;
    errno = 0;
    switch (k->kind) {
    case K_STR:
        if (strlen(v) >= k->size)
            return qb_fail(QB_EINVAL, "%s.%s: value longer than %zu bytes", section, name, k->size - 1);
        memcpy(field, v, strlen(v) + 1);
        return QB_OK;
    case K_INT:
    case K_I64: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || x < k->lo || x > k->hi)
            return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected an integer in [%.0f, %.0f]", section, name, v, k->lo, k->hi);
        if (k->kind == K_INT) *(int *)field = (int)x;
        else *(int64_t *)field = x;
        return QB_OK;
    }
    case K_BITS: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || (x != k->lo && x != k->hi)) {
            if (k->lo == k->hi)
                return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected %.0f", section, name, v, k->lo);
            return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected %.0f or %.0f", section, name, v, k->lo, k->hi);
        }
        *(int *)field = (int)x;
        return QB_OK;
    }
    case K_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x) || x < k->lo || x > k->hi)
            return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected a number in [%g, %g]", section, name, v, k->lo, k->hi);
        *(float *)field = (float)x;
        return QB_OK;
    }
    case K_BOOL: {
        int b = choice_index("true|false|yes|no|1|0|on|off", v);
        if (b < 0) return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected true or false", section, name, v);
        *(bool *)field = b % 2 == 0;
        return QB_OK;
    }
    case K_CHOICE: {
        int i = choice_index(k->choices, v);
        if (i < 0) {
            snprintf(list, sizeof list, "%s", k->choices);
            for (char *p = list; *p; p++) if (*p == '|') *p = ' ';
            return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected one of: %s", section, name, v, list);
        }
        if (k->is_bool) *(bool *)field = i == 1;
        else *(int *)field = i;
        return QB_OK;
    }
    case K_SEEDS: {
        char *items[QB_MAX_SEEDS];
        int n = split_list(value, items, (int)k->size);
        if (n < 0) return qb_fail(QB_EINVAL, "%s.%s: expected %s", section, name,
                                  k->size == 1 ? "one integer" : "a comma list of up to 16 integers");
        for (int i = 0; i < n; i++) {
            unsigned long long x = strtoull(items[i], &end, 10);
            if (*end || errno || items[i][0] == '-')
                return qb_fail(QB_EINVAL, "%s.%s: \"%s\" is not a non-negative integer", section, name, items[i]);
            if (x > QB_MAX_SEED)  /* metrics.json and state.json keep it as a JSON number */
                return qb_fail(QB_EINVAL, "%s.%s: %llu is above 2^53 = %llu, the largest integer JSON keeps exact",
                               section, name, x, (unsigned long long)QB_MAX_SEED);
            c->seeds[i] = x;
        }
        c->n_seeds = n;
        return QB_OK;
    }
    case K_LABELS: {
        char *items[QB_MAX_LABELS];
        if (!*v) {  /* empty: integer labels, the model's own names */
            c->n_labels = 0;
            return QB_OK;
        }
        int n = split_list(value, items, QB_MAX_LABELS);
        if (n < 2) return qb_fail(QB_EINVAL, "%s.%s: expected a comma list of 2 to %d label names", section, name, QB_MAX_LABELS);
        for (int i = 0; i < n; i++) {
            if (strlen(items[i]) >= sizeof c->labels[i])
                return qb_fail(QB_EINVAL, "%s.%s: label \"%s\" is longer than %zu bytes", section, name, items[i], sizeof c->labels[i] - 1);
            for (int j = 0; j < i; j++)
                if (strcmp(items[i], items[j]) == 0) return qb_fail(QB_EINVAL, "%s.%s: label \"%s\" is listed twice", section, name, items[i]);
            strcpy(c->labels[i], items[i]);
        }
        c->n_labels = n;
        return QB_OK;
    }
    case K_EVAL: {
        if (strcmp(v, "epoch") == 0) {
            c->eval_every = 0;
            return QB_OK;
        }
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < 1 || x > (1 << 30))
            return qb_fail(QB_EINVAL, "%s.%s = \"%s\": expected \"epoch\" or a number of steps >= 1", section, name, v);
        c->eval_every = (int)x;
        return QB_OK;
    }
    }
    return qb_fail(QB_EINVAL, "%s.%s: unhandled key kind", section, name);
}

typedef struct {
    qb_train_config *c;
    char msg[1024];
    bool failed;
} parse_ctx;

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    if (set_key(p->c, section, name, value)) {
        if (!p->failed) snprintf(p->msg, sizeof p->msg, "%s", qb_error());
        p->failed = true;
        return 0;
    }
    return 1;
}

static qb_status finish_parse(int rc, const char *why, parse_ctx *p, const char *name)
{
    if (rc == 0) return QB_OK;
    if (rc < 0) return qb_fail(QB_ENOMEM, "%s: out of memory", name);
    if (why) return qb_fail(QB_EINVAL, "%s:%d: %s", name, rc, why);
    if (p->failed) return qb_fail(QB_EINVAL, "%s:%d: %s", name, rc, p->msg);
    return qb_fail(QB_EINVAL, "%s:%d: syntax error: expected [section], key = value or a ; comment", name, rc);
}

qb_status qb_train_config_parse(const char *text, const char *name, qb_train_config *c)
{
    parse_ctx p = {c, "", false};
    const char *why;
    const int rc = qb_ini_parse(text, handler, &p, &why);
    return finish_parse(rc, why, &p, name);
}

qb_status qb_train_config_load(const char *path, qb_train_config *c)
{
    char *text;
    qb_status st = qb_read_ini_file(path, &text);
    if (st) return st;
    st = qb_train_config_parse(text, path, c);
    free(text);
    return st;
}

qb_status qb_train_config_set(qb_train_config *c, const char *assignment)
{
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq)
        return qb_fail(QB_EINVAL, "--set \"%s\": expected section.key=value", assignment);
    char section[64], name[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - assignment), assignment);
    snprintf(name, sizeof name, "%.*s", (int)(eq - dot - 1), dot + 1);
    qb_status st = set_key(c, trim(section), trim(name), eq + 1);
    return st ? qb_fail_context(st, "--set %s", assignment) : QB_OK;
}

qb_status qb_train_config_validate(const qb_train_config *c)
{
    if (!c->model_path[0] == !c->preset[0])
        return qb_fail(QB_EINVAL, "[model]: set exactly one of path (a Hugging Face directory) or preset");
    if (c->preset[0] && strcmp(c->preset, "bert-tiny") && strcmp(c->preset, "indobert-base-p2"))
        return qb_fail(QB_EINVAL, "model.preset = \"%s\": expected bert-tiny or indobert-base-p2", c->preset);
    if (c->vocab[0] && !c->preset[0])
        return qb_fail(QB_EINVAL, "model.vocab is for a preset model; a model directory has its own vocab.txt");
    if (!c->train[0]) return qb_fail(QB_EINVAL, "[data]: train (the training file) is required");
    if (!c->output_dir[0]) return qb_fail(QB_EINVAL, "[output]: dir is required");
    if (!c->valid[0])
        qb_log(QB_LOG_WARN, "no [data] valid set: the last model is kept (no best-model selection)");
    return QB_OK;
}

char *qb_train_config_to_ini(const qb_train_config *c)
{
    size_t cap = 16384, n = 0;  /* the fields' fixed sizes add up to under 10 KiB */
    char *out = malloc(cap), buf[64];
    if (!out) return NULL;
    const char *section = "";
#define PUT(...) (n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__))
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        const char *field = (const char *)c + k->off;
        if (strcmp(k->name, "seed") == 0) continue;  /* written as seeds */
        if (strcmp(section, k->section) != 0) PUT("%s[%s]\n", n ? "\n" : "", section = k->section);
        /* "key = ;x" would read as an empty value and a comment (a ';' after a space
         * starts one): a value that begins with ';' follows the '=' directly */
        const bool semicolon = (k->kind == K_STR && field[0] == ';') ||
                               (k->kind == K_LABELS && c->n_labels && c->labels[0][0] == ';');
        PUT("%s =%s", k->name, semicolon ? "" : " ");
        switch (k->kind) {
        case K_STR: PUT("%s\n", field); break;
        case K_INT: case K_BITS: PUT("%d\n", *(const int *)field); break;
        case K_I64: PUT("%lld\n", (long long)*(const int64_t *)field); break;
        case K_FLOAT: {  /* the shortest text that reads back as the same float: 0.001, not 0.00100000005 */
            const float x = *(const float *)field;
            char num[32];
            for (int digits = 6; digits <= 9; digits++)
                if (snprintf(num, sizeof num, "%.*g", digits, x), strtof(num, NULL) == x) break;
            PUT("%s\n", num);
            break;
        }
        case K_BOOL: PUT("%s\n", *(const bool *)field ? "true" : "false"); break;
        case K_CHOICE:
            PUT("%s\n", choice_name(k->choices, k->is_bool ? *(const bool *)field : *(const int *)field, buf, sizeof buf));
            break;
        case K_SEEDS:
            for (int s = 0; s < c->n_seeds; s++) PUT("%s%llu", s ? "," : "", (unsigned long long)c->seeds[s]);
            PUT("\n");
            break;
        case K_LABELS:
            for (int s = 0; s < c->n_labels; s++) PUT("%s%s", s ? "," : "", c->labels[s]);
            PUT("\n");
            break;
        case K_EVAL:
            if (c->eval_every) PUT("%d\n", c->eval_every);
            else PUT("epoch\n");
            break;
        }
        if (n >= cap) {
            free(out);
            return NULL;  /* refuse rather than truncate */
        }
    }
#undef PUT
    return out;
}
