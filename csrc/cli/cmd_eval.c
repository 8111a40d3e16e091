/* qbert eval: accuracy, weighted P/R/F1, per-class report, confusion matrix and
 * average confidence of a model on a labelled file; a table on stdout, all of it
 * in --json, the confusion matrix drawn in --svg. */
#include "cli/cli.h"

#include "qbert/data.h"
#include "qbert/engine.h"
#include "qbert/metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert eval --model DIR --data FILE [options]\n"
            "  --model DIR          Hugging Face model directory (config.json, weights, vocab.txt)\n"
            "  --data FILE          labelled data: TSV text<TAB>label (no header) or CSV with a header\n"
            "  --format tsv|csv     default: by file extension\n"
            "  --delimiter D        tab|comma|semicolon|pipe: fields cut there, read as CSV with a\n"
            "                       header row (a TSV with a header: tab)\n"
            "  --text-column NAME   CSV text column (default text)\n"
            "  --label-column NAME  CSV label column (default label)\n"
            "  --max-length N       tokens per text incl. [CLS]/[SEP] (default: what the model was trained\n"
            "                       with, from its tokenizer_config.json; else 128)\n"
            "  --batch N            texts per forward pass (default 32)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --device cpu|cuda    where the model runs (default cpu; cuda: FP32 model files)\n"
            "  --math fp32|tf32|bf16|fp16  arithmetic of the Linears' products (default fp32;\n"
            "                       FP32 storage; on the CPU an emulation, for checking)\n"
            "  --json FILE          write every metric as JSON\n"
            "  --svg FILE           draw the confusion matrix\n"
            "  --skip-bad-rows      skip rows with an unknown label or no text (counted) instead of failing\n"
            "  --label-map MAP      the file's labels as the model's, e.g. 0=negative,1=positive\n"
            "  --lowercase --remove-non-alpha --collapse-whitespace --remove-stopwords  preprocessing\n"
            "  --stopwords FILE     stopword list (one per line) instead of the built-in Indonesian one\n"
            "example: qbert eval --model runs/smsa/best --data ../shared/data/smsa/test.tsv --json test.json\n");
}

/* Progress on stderr: redrawn in place on a terminal, every ~10% otherwise. */
typedef struct {
    double start;
    int last_decile;
} progress_state;

static void progress(int done, int total, void *ctx)
{
    progress_state *p = ctx;
    double el = qb_now() - p->start, rate = done / (el > 0 ? el : 1e-9);
    int decile = (int)(10.0 * done / total);
    int tty = isatty(fileno(stderr));
    if (!tty && decile == p->last_decile && done != total) return;
    p->last_decile = decile;
    fprintf(stderr, "%s[eval] %d/%d texts  %.1f texts/s  ETA %.0fs%s", tty ? "\r" : "", done, total, rate,
            (total - done) / (rate > 0 ? rate : 1), tty && done != total ? "" : "\n");
    fflush(stderr);
}

void qb_cli_argmax(const float *probs, int n, int K, int *pred, float *conf)
{
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[k] > p[best]) best = k;
        pred[i] = best;
        if (conf) conf[i] = p[best];
    }
}

int qb_cli_classify(qb_engine *e, const char *const *texts, int n, int *pred, float *conf, double *seconds)
{
    const int K = qb_engine_model(e)->cfg.num_labels;
    float *probs = malloc((size_t)n * K * sizeof *probs);
    if (!probs) return qb_cli_fail("eval", "out of memory for %d predictions", n);
    progress_state ps = {qb_now(), -1};
    const double t0 = qb_now();
    if (qb_engine_classify(e, texts, n, probs, progress, &ps)) {
        free(probs);
        return qb_cli_fail("eval", "%s", qb_error());
    }
    *seconds = qb_now() - t0;
    qb_cli_argmax(probs, n, K, pred, conf);
    free(probs);
    return 0;
}

int qb_cli_evaluate(qb_engine *e, const qb_dataset *d, const char *json_path, const char *svg_path)
{
    const qb_config *cfg = &qb_engine_model(e)->cfg;
    const int n = d->count, K = cfg->num_labels;
    int *pred = malloc((size_t)n * sizeof *pred);
    float *conf = malloc((size_t)n * sizeof *conf);
    int rc = 1;
    double seconds;
    qb_metrics m = {0};
    if (!pred || !conf) {
        qb_cli_fail("eval", "out of memory for %d predictions", n);
        goto done;
    }
    if (qb_cli_classify(e, (const char *const *)d->texts, n, pred, conf, &seconds)) goto done;
    if (qb_metrics_compute(d->labels, pred, conf, n, K, &m)) {
        qb_cli_fail("eval", "%s", qb_error());
        goto done;
    }
    const char *const *names = (const char *const *)cfg->id2label;
    printf("%s: %d texts in %.2f s (%.1f texts/s)\n\n", d->path, n, seconds, n / seconds);
    qb_metrics_print(stdout, &m, names);
    if (json_path) {
        cJSON *root = qb_metrics_to_json(&m, names);
        if (!root) {
            qb_cli_fail("eval", "out of memory building JSON");
            goto done;
        }
        cJSON_AddStringToObject(root, "data", d->path);
        cJSON_AddNumberToObject(root, "skipped_rows", d->skipped);
        cJSON_AddNumberToObject(root, "seconds", seconds);
        cJSON_AddNumberToObject(root, "texts_per_second", n / seconds);
        qb_status st = qb_json_write_file(json_path, root);
        cJSON_Delete(root);
        if (st) {
            qb_cli_fail("eval", "%s", qb_error());
            goto done;
        }
        printf("wrote %s\n", json_path);
    }
    if (svg_path) {
        char *svg = qb_confusion_svg(&m, names, d->path);
        qb_status st = svg ? qb_svg_write(svg_path, svg) : qb_fail(QB_ENOMEM, "cannot draw the confusion matrix");
        free(svg);
        if (st) {
            qb_cli_fail("eval", "%s", qb_error());
            goto done;
        }
        printf("wrote %s\n", svg_path);
    }
    rc = 0;
done:
    qb_metrics_free(&m);
    free(pred);
    free(conf);
    return rc;
}

qb_status qb_cli_write_reports(const char *dir, const char *stem, cJSON *root, char *md, size_t md_len)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/%s.json", dir, stem);
    qb_status st = !root ? qb_fail(QB_ENOMEM, "out of memory building %s", file)
                 : !md   ? qb_fail(QB_ENOMEM, "out of memory writing %s.md", stem)
                         : qb_json_write_file(file, root);
    snprintf(file, sizeof file, "%s/%s.md", dir, stem);
    if (!st) st = qb_write_file_atomic(file, md, md_len);
    cJSON_Delete(root);
    free(md);
    return st;
}

int qb_cli_data_option(int argc, char **argv, int *i, qb_data_options *o, int *bad)
{
    const char *v = NULL;
    if (strcmp(argv[*i], "--skip-bad-rows") == 0) return o->skip_bad_rows = true;
    if (strcmp(argv[*i], "--lowercase") == 0) return o->lowercase = true;
    if (strcmp(argv[*i], "--remove-non-alpha") == 0) return o->remove_non_alpha = true;
    if (strcmp(argv[*i], "--collapse-whitespace") == 0) return o->collapse_whitespace = true;
    if (strcmp(argv[*i], "--remove-stopwords") == 0) return o->remove_stopwords = true;
    if (qb_cli_opt(argc, argv, i, "--text-column", &o->text_column, bad)) return 1;
    if (qb_cli_opt(argc, argv, i, "--label-column", &o->label_column, bad)) return 1;
    if (qb_cli_opt(argc, argv, i, "--stopwords", &o->stopwords_file, bad)) return 1;
    if (qb_cli_opt(argc, argv, i, "--label-map", &o->label_map, bad)) return 1;
    if (qb_cli_opt(argc, argv, i, "--delimiter", &v, bad)) {
        static const char *const names[] = {"tab", "comma", "semicolon", "pipe"};
        int k = 0;
        while (v && k < 4 && strcmp(v, names[k])) k++;
        if (v && k < 4) o->delimiter = "\t,;|"[k];
        else if (v) *bad = qb_cli_fail("eval", "--delimiter must be tab, comma, semicolon or pipe, got \"%s\"", v);
        return 1;
    }
    if (qb_cli_opt(argc, argv, i, "--format", &v, bad)) {
        if (!v) return 1;
        if (strcmp(v, "tsv") == 0) o->format = QB_FORMAT_TSV;
        else if (strcmp(v, "csv") == 0) o->format = QB_FORMAT_CSV;
        else *bad = qb_cli_fail("eval", "--format must be tsv or csv, got \"%s\"", v);
        return 1;
    }
    return 0;
}

int qb_cli_engine_option(const char *cmd, int argc, char **argv, int *i, qb_engine_options *o, int *bad)
{
    const char *v = NULL;
    long x;
    if (qb_cli_opt(argc, argv, i, "--max-length", &v, bad)) {
        if (v && !qb_cli_int(cmd, "--max-length", v, 2, 100000, &x)) *bad = 1;
        else if (v) o->max_length = (int)x;
        return 1;
    }
    if (qb_cli_opt(argc, argv, i, "--batch", &v, bad)) {
        if (v && !qb_cli_int(cmd, "--batch", v, 1, 100000, &x)) *bad = 1;
        else if (v) o->batch_size = (int)x;
        return 1;
    }
    if (qb_cli_opt(argc, argv, i, "--threads", &v, bad)) {
        if (v && !qb_cli_int(cmd, "--threads", v, 0, 4096, &x)) *bad = 1;
        else if (v) o->threads = (int)x;
        return 1;
    }
    if (qb_cli_opt(argc, argv, i, "--math", &v, bad)) {
        if (v && qb_math_parse(v, &o->math)) *bad = qb_cli_fail(cmd, "--math: %s", qb_error());
        return 1;
    }
    if (qb_cli_opt(argc, argv, i, "--device", &v, bad)) {
        if (v && strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0)
            *bad = qb_cli_fail(cmd, "--device must be cpu or cuda, got \"%s\"", v);
        else if (v) o->device = v;
        return 1;
    }
    return 0;
}

int qb_cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *json = NULL, *svg = NULL;
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    qb_data_options dop;
    qb_data_default_options(&dop);
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--model", &model, &bad) || qb_cli_opt(argc, argv, &i, "--data", &data, &bad) ||
            qb_cli_opt(argc, argv, &i, "--json", &json, &bad) || qb_cli_opt(argc, argv, &i, "--svg", &svg, &bad) ||
            qb_cli_engine_option("eval", argc, argv, &i, &eo, &bad) || qb_cli_data_option(argc, argv, &i, &dop, &bad))
            continue;
        bad = qb_cli_fail("eval", "unknown option \"%s\" (see qbert eval --help)", argv[i]);
    }
    if (!bad && (!model || !data)) bad = qb_cli_fail("eval", "--model and --data are required (see qbert eval --help)");
    if (bad) return 2;
    /* the outputs' folders before the run, not a failed write after it */
    for (int i = 0; i < 2; i++) {
        const char *out = i ? svg : json;
        if (out && qb_prepare_output(out)) return qb_cli_fail("eval", "%s", qb_error());
    }

    qb_engine *e;
    if (qb_engine_open(model, &eo, &e)) return qb_cli_fail("eval", "%s", qb_error());
    const qb_config *cfg = &qb_engine_model(e)->cfg;
    dop.label_names = (const char *const *)cfg->id2label;
    dop.n_labels = cfg->num_labels;
    qb_dataset d;
    if (qb_dataset_load(data, &dop, &d)) {
        qb_engine_close(e);
        return qb_cli_fail("eval", "%s", qb_error());
    }
    int rc = qb_cli_evaluate(e, &d, json, svg);
    qb_dataset_free(&d);
    qb_engine_close(e);
    return rc;
}
