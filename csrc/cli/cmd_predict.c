/* qbert predict: texts on stdin (one per line), one JSON object per line on stdout:
 * {"label": "positive", "label_id": 0, "probabilities": {"positive": 0.93, ...}}.
 * Lines are classified in chunks of --batch, and each chunk is flushed, so a pipe
 * gets answers while it is still writing. */
#include "cli/cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert predict --model DIR [--max-length N] [--batch N] [--threads N] [--device cpu|cuda]\n"
            "                     [--math fp32|tf32|bf16|fp16] [--text]\n"
            "  reads texts from stdin, one per line; writes JSON lines to stdout\n"
            "  --text   echo each input text in its JSON line\n"
            "example: echo 'makanan nya enak sekali' | qbert predict --model runs/smsa/best\n");
}

static int flush_chunk(qb_engine *e, char **lines, int n, float *probs, int echo)
{
    const qb_config *cfg = &qb_engine_model(e)->cfg;
    const int K = cfg->num_labels;
    if (qb_engine_classify(e, (const char *const *)lines, n, probs, NULL, NULL))
        return qb_cli_fail("predict", "%s", qb_error());
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * K;
        int best;
        qb_cli_argmax(p, 1, K, &best, NULL);
        cJSON *o = cJSON_CreateObject();
        if (!o) return qb_cli_fail("predict", "out of memory");
        if (echo) cJSON_AddStringToObject(o, "text", lines[i]);
        cJSON_AddStringToObject(o, "label", cfg->id2label[best]);
        cJSON_AddNumberToObject(o, "label_id", best);
        cJSON *pr = cJSON_AddObjectToObject(o, "probabilities");
        for (int k = 0; k < K; k++) cJSON_AddNumberToObject(pr, cfg->id2label[k], p[k]);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) return qb_cli_fail("predict", "out of memory");
        puts(s);
        free(s);
    }
    fflush(stdout);
    return 0;
}

/* A copy of line (len bytes) with each NUL byte as U+FFFD, as the data loader reads
 * them: a NUL must not end the text early. NULL when out of memory. */
static char *without_nul(const char *line, size_t len)
{
    size_t nuls = 0;
    for (size_t i = 0; i < len; i++) nuls += !line[i];
    char *out = malloc(len + 2 * nuls + 1), *o = out;
    for (size_t i = 0; out && i < len; i++) {
        if (line[i]) *o++ = line[i];
        else memcpy(o, "\xef\xbf\xbd", 3), o += 3;
    }
    if (out) *o = '\0';
    return out;
}

int qb_cmd_predict(int argc, char **argv)
{
    const char *model = NULL;
    int bad = 0, echo = 0;
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--text") == 0) {
            echo = 1;
            continue;
        }
        if (qb_cli_opt(argc, argv, &i, "--model", &model, &bad) ||
            qb_cli_engine_option("predict", argc, argv, &i, &eo, &bad))
            continue;
        bad = qb_cli_fail("predict", "unknown option \"%s\" (see qbert predict --help)", argv[i]);
    }
    if (!bad && !model) bad = qb_cli_fail("predict", "--model is required (see qbert predict --help)");
    if (bad) return 2;
    qb_engine *e;
    if (qb_engine_open(model, &eo, &e)) return qb_cli_fail("predict", "%s", qb_error());
    const int cap = eo.batch_size;
    char **lines = calloc((size_t)cap, sizeof *lines);
    float *probs = malloc((size_t)cap * qb_engine_model(e)->cfg.num_labels * sizeof *probs);
    int n = 0, rc = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    if (!lines || !probs) rc = qb_cli_fail("predict", "out of memory");
    int line_no = 0, nul_lines = 0;
    while (!rc && (len = getline(&line, &linecap, stdin)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!(lines[n++] = without_nul(line, (size_t)len))) rc = qb_cli_fail("predict", "out of memory");
        if (!rc && strlen(lines[n - 1]) != (size_t)len && !nul_lines++)
            qb_log(QB_LOG_WARN, "stdin line %d: a NUL byte, read as U+FFFD (as data files are)", line_no);
        if (!rc && n == cap) {
            rc = flush_chunk(e, lines, n, probs, echo);
            for (int i = 0; i < n; i++) free(lines[i]);
            n = 0;
        }
    }
    if (!rc && n > 0) rc = flush_chunk(e, lines, n, probs, echo);
    for (int i = 0; i < n; i++) free(lines[i]);
    free(line);
    free(lines);
    free(probs);
    qb_engine_close(e);
    return rc;
}
