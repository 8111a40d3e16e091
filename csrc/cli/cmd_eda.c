/* qbert eda: the data exploration of include/qbert/eda.h on labelled files, read with
 * the same options and preprocessing as qbert eval. Rows with an empty text or a
 * missing label are counted (not errors). Labels: --labels, else the names the files
 * use, in order of first appearance. */
#include "cli/cli.h"

#include "qbert/eda.h"
#include "qbert/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_FILES = 16 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert eda --data FILE [FILE ...] --out DIR [options]\n"
            "  Explores labelled splits: rows, missing / duplicate texts, label shares side by side,\n"
            "  text lengths (characters, words, tokens) per split and per label, top unigrams /\n"
            "  bigrams with and without stopwords, the words that distinguish each label (log-odds\n"
            "  with an informative Dirichlet prior), texts shared between splits. Writes report.md,\n"
            "  eda.json, SVG charts and eda.html (one page with all of it) into DIR.\n"
            "  --data FILE ...      up to 16 files (TSV text<TAB>label or CSV with a header)\n"
            "  --names LIST         their names, comma-separated (default: the file names without extension)\n"
            "  --out DIR            where the report goes\n"
            "  --model DIR          a model directory: token statistics with its tokenizer\n"
            "  --max-length N       tokens a model reads, incl. [CLS]/[SEP] (default: the model's, else 128)\n"
            "  --labels LIST        the label names, in their order (default: as found in the files)\n"
            "  --top N              words per list (default 20)\n"
            "  --format, --delimiter, --text-column, --label-column, --label-map, preprocessing\n"
            "  (--lowercase --remove-non-alpha --collapse-whitespace --remove-stopwords), --stopwords FILE\n"
            "                       as qbert eval; the stopwords also make the lists without them\n"
            "example: qbert eda --data ../shared/data/smsa/{train,valid,test}.tsv --model ../shared/data/indobert-base-p2 \\\n"
            "             --out runs/eda\n");
}

/* "a, b,c" cut into at most cap trimmed names in buf; returns how many, -1 on an empty one. */
static int split_names(char *buf, char **out, int cap)
{
    int n = 0;
    for (char *s = buf; s;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = '\0';
        while (*s == ' ') s++;
        for (char *end = s + strlen(s); end > s && end[-1] == ' ';) *--end = '\0';
        if (!*s || n == cap) return -1;
        out[n++] = s;
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

/* The default name of a split: its file name without directory and extension. */
static void base_name(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    snprintf(out, cap, "%s", name);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = '\0';
}

typedef struct {
    const char *files[MAX_FILES], *names_opt, *labels_opt, *out, *model;
    int n_files, top, max_length;
    qb_data_options dop;
} eda_args;

static int parse(int argc, char **argv, eda_args *a)
{
    int bad = 0;
    long v;
    for (int i = 1; i < argc && !bad; i++) {
        const char *val = NULL;
        if (strcmp(argv[i], "--data") == 0) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && a->n_files < MAX_FILES) a->files[a->n_files++] = argv[++i];
            if (i + 1 < argc && argv[i + 1][0] != '-') bad = qb_cli_fail("eda", "--data: at most %d files", MAX_FILES);
            if (!a->n_files) bad = qb_cli_fail("eda", "--data needs at least one file");
        } else if (qb_cli_opt(argc, argv, &i, "--top", &val, &bad)) {
            if (val && qb_cli_int("eda", "--top", val, 1, 1000, &v)) a->top = (int)v;
            else bad = 1;
        } else if (qb_cli_opt(argc, argv, &i, "--max-length", &val, &bad)) {
            if (val && qb_cli_int("eda", "--max-length", val, 2, 100000, &v)) a->max_length = (int)v;
            else bad = 1;
        } else if (!(qb_cli_opt(argc, argv, &i, "--names", &a->names_opt, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--labels", &a->labels_opt, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--out", &a->out, &bad) ||
                     qb_cli_opt(argc, argv, &i, "--model", &a->model, &bad) ||
                     qb_cli_data_option(argc, argv, &i, &a->dop, &bad))) {
            bad = qb_cli_fail("eda", "unknown option \"%s\" (see qbert eda --help)", argv[i]);
        }
    }
    if (!bad && (!a->n_files || !a->out)) bad = qb_cli_fail("eda", "--data and --out are required (see qbert eda --help)");
    return bad;
}

/* Loads the files, computes and writes the report. */
static int run(eda_args *a, char **names, char **labels, int n_labels, const qb_tokenizer *tok)
{
    qb_dataset d[MAX_FILES] = {{0}};
    qb_data_options dop = a->dop;
    dop.skip_bad_rows = true;  /* counted by the EDA instead */
    dop.label_names = n_labels ? (const char *const *)labels : NULL;
    dop.n_labels = n_labels;
    dop.discover_labels = n_labels == 0;
    if (dop.discover_labels && dop.label_map)
        return qb_cli_fail("eda", "--label-map needs the label names: --labels or --model");
    qb_status st = QB_OK;
    for (int i = 0; i < a->n_files && !st; i++) {
        st = qb_dataset_load(a->files[i], &dop, &d[i]);
        if (!st) fprintf(stderr, "[eda] %s: %d rows (%d skipped)\n", a->files[i], d[i].count, d[i].skipped);
    }
    qb_eda_options o;
    qb_eda_default_options(&o);
    o.tokenizer = tok, o.stopwords_file = a->dop.stopwords_file;
    if (a->top) o.top_k = a->top;
    if (a->max_length) o.max_length = a->max_length;
    else if (tok && qb_tokenizer_model_max_length(tok) > 0) o.max_length = qb_tokenizer_model_max_length(tok);
    qb_eda *e = NULL;
    if (!st) st = qb_eda_compute(d, (const char *const *)names, a->n_files, n_labels ? (const char *const *)labels : NULL,
                                 n_labels, &o, &e);
    if (!st) st = qb_eda_write(e, a->out);
    if (!st) printf("wrote %s/report.md, eda.json, eda.html and the charts (*.svg)\n", a->out);
    qb_eda_free(e);
    for (int i = 0; i < a->n_files; i++) qb_dataset_free(&d[i]);
    return st ? qb_cli_fail("eda", "%s", qb_error()) : 0;
}

int qb_cmd_eda(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    eda_args a = {0};
    qb_data_default_options(&a.dop);
    if (parse(argc, argv, &a)) return 2;
    char names_buf[4096], labels_buf[4096], base[MAX_FILES][256], *names[MAX_FILES], *labels[QB_MAX_LABELS];
    for (int i = 0; i < a.n_files; i++) base_name(a.files[i], base[i], sizeof base[i]), names[i] = base[i];
    snprintf(names_buf, sizeof names_buf, "%s", a.names_opt ? a.names_opt : "");
    if (a.names_opt && split_names(names_buf, names, MAX_FILES) != a.n_files)
        return qb_cli_fail("eda", "--names \"%s\": expected %d names, one per --data file", a.names_opt, a.n_files), 2;
    int n_labels = 0;
    snprintf(labels_buf, sizeof labels_buf, "%s", a.labels_opt ? a.labels_opt : "");
    if (a.labels_opt && (n_labels = split_names(labels_buf, labels, QB_MAX_LABELS)) < 1)
        return qb_cli_fail("eda", "--labels \"%s\": expected names separated by commas", a.labels_opt), 2;
    qb_tokenizer *tok = NULL;
    if (a.model && qb_tokenizer_load(a.model, &tok)) return qb_cli_fail("eda", "--model %s: %s", a.model, qb_error());
    const int rc = run(&a, names, labels, n_labels, tok);
    qb_tokenizer_free(tok);
    return rc;
}
