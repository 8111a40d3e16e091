/* qbert explain: the explanations of include/qbert/explain.h for one text or the
 * first texts of a file, by one model or by two side by side (--compare). */
#include "cli/cli.h"

#include "qbert/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert explain --model DIR (--text TEXT | --data FILE [--limit N]) --out DIR [options]\n"
            "  Which words move the predicted class's probability (or --class's), on any model qbert\n"
            "  loads.\n"
            "  --method M        lime (default; as the lime package's LimeTextExplainer), occlusion (each\n"
            "                    word removed in turn), ig (integrated gradients on the word embeddings,\n"
            "                    through the model's backward pass on the CPU, with a completeness check)\n"
            "  --samples N       LIME: perturbed texts (default 1000; the lime package's is 5000)\n"
            "  --top N           LIME: words each class's surrogate keeps; the words the charts show\n"
            "                    (default 10)\n"
            "  --steps N         IG: interpolation steps (default 64)\n"
            "  --seed S          LIME: the removal masks (default 42)\n"
            "  --limit N         texts of --data explained (default 10)\n"
            "  --class NAME      the class to explain (a label or an id; default: each text's predicted one)\n"
            "  --compare DIR     a second model (e.g. the INT8 / INT4 / QAT one): the same texts, classes\n"
            "                    and masks; top-k overlap and Spearman correlation of the word weights\n"
            "  --device, --max-length, --batch, --threads, --math   as qbert eval; --data options as qbert eval\n"
            "  Writes explanations.json, explanations.html (words highlighted by weight; LIME: every\n"
            "  class's top words too) and text-N.svg.\n"
            "example: qbert explain --model runs/smsa/model --compare runs/smsa-int8 --data test.tsv --limit 5 \\\n"
            "             --method lime --out runs/explain\n");
}

typedef struct {
    const char *model, *compare, *text, *data, *out, *target;
    int limit;
    qb_explain_options xo;
    qb_engine_options eo;
    qb_data_options dop;
} explain_args;

static int parse(int argc, char **argv, explain_args *a)
{
    int bad = 0;
    long v;
    for (int i = 1; i < argc && !bad; i++) {
        const char *val = NULL;
        const struct {
            const char *name;
            int *field;
            long lo, hi;
        } ints[] = {{"--samples", &a->xo.samples, 2, 1000000}, {"--top", &a->xo.top_k, 1, 1000},
                    {"--steps", &a->xo.steps, 1, 100000},      {"--limit", &a->limit, 1, 1000000}};
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if ((done = qb_cli_opt(argc, argv, &i, ints[k].name, &val, &bad)) && val) {
                if (qb_cli_int("explain", ints[k].name, val, ints[k].lo, ints[k].hi, &v)) *ints[k].field = (int)v;
                else bad = 1;
            }
        if (done) continue;
        if (qb_cli_opt(argc, argv, &i, "--method", &val, &bad)) {
            const int m = val ? qb_explain_method_parse(val) : 0;
            if (m < 0) bad = qb_cli_fail("explain", "--method must be lime, occlusion or ig, got \"%s\"", val);
            else a->xo.method = (qb_explain_method)m;
        } else if (qb_cli_opt(argc, argv, &i, "--seed", &val, &bad)) {
            if (val && qb_cli_int("explain", "--seed", val, 0, 1L << 53, &v)) a->xo.seed = (uint64_t)v;
            else bad = 1;
        } else if (!(qb_cli_opt(argc, argv, &i, "--model", &a->model, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--compare", &a->compare, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--text", &a->text, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--data", &a->data, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--out", &a->out, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--class", &a->target, &bad) ||
                     qb_cli_engine_option("explain", argc, argv, &i, &a->eo, &bad) ||
                     qb_cli_data_option(argc, argv, &i, &a->dop, &bad))) {
            bad = qb_cli_fail("explain", "unknown option \"%s\" (see qbert explain --help)", argv[i]);
        }
    }
    if (!bad && (!a->model || !a->out || !a->text == !a->data))
        bad = qb_cli_fail("explain", "--model, --out and one of --text or --data are required (see qbert explain --help)");
    return bad;
}

/* The class id of --class NAME (a label of the model, or an id); -1 without it. */
static qb_status target_class(const char *name, const qb_config *c, int *out)
{
    *out = -1;
    if (!name) return QB_OK;
    for (int k = 0; k < c->num_labels; k++)
        if (strcmp(name, c->id2label[k]) == 0) return *out = k, QB_OK;
    char *end;
    const long id = strtol(name, &end, 10);
    if (*name && !*end && id >= 0 && id < c->num_labels) return *out = (int)id, QB_OK;
    char names[512] = "";
    for (int k = 0; k < c->num_labels; k++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "", c->id2label[k]);
    return qb_fail(QB_EINVAL, "--class \"%s\": expected one of the model's labels (%s) or an id below %d", name, names,
                   c->num_labels);
}

/* Explains texts (n) with engine e into x (n), with progress; like: the first model's
 * explanations (the second one explains the same classes), or NULL. */
static qb_status explain_all(qb_engine *e, const char *model, char *const *texts, int n, const qb_explain_options *o,
                             const qb_explanation *like, qb_explanation *x)
{
    const double t0 = qb_now();
    qb_status st = QB_OK;
    for (int i = 0; i < n && !st; i++) {
        qb_explain_options oi = *o;
        if (like) oi.target = like[i].target;
        if ((st = qb_explain_text(e, texts[i], &oi, &x[i]))) st = qb_fail(st, "%s, text %d: %s", model, i + 1, qb_error());
        else
            fprintf(stderr, "[explain] %s: %d/%d texts (%s)  %.1fs\n", model, i + 1, n, qb_explain_method_name(o->method),
                    qb_now() - t0);
    }
    return st;
}

static int run(const explain_args *a, char *const *texts, int n)
{
    qb_engine *e = NULL, *e2 = NULL;
    qb_explanation *x = calloc((size_t)n, sizeof *x), *y = a->compare ? calloc((size_t)n, sizeof *y) : NULL;
    qb_explain_agreement *agree = calloc((size_t)n, sizeof *agree);
    qb_status st = x && agree && (!a->compare || y) ? QB_OK : qb_fail(QB_ENOMEM, "out of memory");
    if (!st) st = qb_engine_open(a->model, &a->eo, &e);
    if (!st && a->compare) st = qb_engine_open(a->compare, &a->eo, &e2);
    const qb_config *c = e ? &qb_engine_model(e)->cfg : NULL, *c2 = e2 ? &qb_engine_model(e2)->cfg : NULL;
    bool same = !c2 || c2->num_labels == c->num_labels;
    for (int k = 0; c2 && same && k < c->num_labels; k++) same = strcmp(c->id2label[k], c2->id2label[k]) == 0;
    if (!st && !same) st = qb_fail(QB_EINVAL, "--compare %s: its labels (id2label) differ from %s's", a->compare, a->model);
    qb_explain_options xo = a->xo;
    if (!st) st = target_class(a->target, c, &xo.target);
    if (!st) st = explain_all(e, a->model, texts, n, &xo, NULL, x);
    if (!st && e2) st = explain_all(e2, a->compare, texts, n, &xo, x, y);
    for (int i = 0; i < n && !st && y; i++) qb_explain_compare(&x[i], &y[i], a->xo.top_k, &agree[i]);
    if (!st)
        st = qb_explain_write(a->out, x, y, y ? agree : NULL, n, (const char *const *)c->id2label, &xo, a->model,
                              a->compare);
    if (!st) printf("wrote %s/explanations.json, explanations.html and text-1..%d.svg\n", a->out, n);
    for (int i = 0; i < n; i++) {
        if (x) qb_explanation_free(&x[i]);
        if (y) qb_explanation_free(&y[i]);
    }
    free(x), free(y), free(agree);
    qb_engine_close(e);
    qb_engine_close(e2);
    return st ? qb_cli_fail("explain", "%s", qb_error()) : 0;
}

int qb_cmd_explain(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    explain_args a = {.limit = 10};
    qb_explain_default_options(&a.xo);
    qb_engine_default_options(&a.eo);
    qb_data_default_options(&a.dop);
    if (parse(argc, argv, &a)) return 2;
    if (a.text) return run(&a, (char *const *)&a.text, 1);
    qb_dataset d;
    a.dop.allow_unlabelled = true;  /* only the texts are read */
    a.dop.discover_labels = true;   /* whatever the labels are */
    if (qb_dataset_load(a.data, &a.dop, &d)) return qb_cli_fail("explain", "%s", qb_error());
    const int rc = run(&a, d.texts, d.count < a.limit ? d.count : a.limit);
    qb_dataset_free(&d);
    return rc;
}
