/* The `qbert` command: one function per subcommand (cmd_<name>.c), each parsing its
 * own options and returning the process exit status (0 ok, 1 failure, 2 usage). */
#ifndef QBERT_CLI_H
#define QBERT_CLI_H

#include "qbert/data.h"
#include "qbert/engine.h"
#include "qbert/quant.h"

#include <cjson/cJSON.h>

int qb_cmd_eval(int argc, char **argv);
int qb_cmd_predict(int argc, char **argv);
int qb_cmd_init(int argc, char **argv);
int qb_cmd_tokenize(int argc, char **argv);
int qb_cmd_demo(int argc, char **argv);
int qb_cmd_train(int argc, char **argv);
int qb_cmd_quantize(int argc, char **argv);
int qb_cmd_experiment(int argc, char **argv);
int qb_cmd_bench(int argc, char **argv);
int qb_cmd_eda(int argc, char **argv);
int qb_cmd_explain(int argc, char **argv);

/* "qbert CMD: MESSAGE" on stderr; returns 1 (the exit status of a failed command). */
int qb_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv[i] is the option `name`; takes its value from argv[i+1] into *value
 * (advancing *i). An option given without its value is reported and sets *bad. */
int qb_cli_opt(int argc, char **argv, int *i, const char *name, const char **value, int *bad);
/* Parse a whole string, without reporting: an integer in [lo, hi]; a finite number. */
bool qb_cli_parse_long(const char *value, long lo, long hi, long *out);
bool qb_cli_parse_real(const char *value, double *out);
/* Parses an integer option value in [lo, hi]; reports and returns 0 on error. */
int qb_cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, long *out);

/* pred (n) = the most probable of K labels in each row of probs (n, K); conf (n, or
 * NULL) its probability. The first label wins a tie. */
void qb_cli_argmax(const float *probs, int n, int K, int *pred, float *conf);
/* Classifies n texts with progress on stderr: pred (n) the most probable label, conf
 * (n) its probability, *seconds the wall time. Returns the exit status. */
int qb_cli_classify(qb_engine *e, const char *const *texts, int n, int *pred, float *conf, double *seconds);
/* Classifies a labelled data set and prints the report (and writes JSON / SVG when
 * paths are given). Returns the exit status. */
int qb_cli_evaluate(qb_engine *e, const qb_dataset *d, const char *json_path, const char *svg_path);
/* Writes root as DIR/STEM.json and the Markdown md (md_len bytes) as DIR/STEM.md,
 * atomically; frees both (either may be NULL: out of memory, reported). */
qb_status qb_cli_write_reports(const char *dir, const char *stem, cJSON *root, char *md, size_t md_len);
/* Data (--format, --text-column, preprocessing ...) and engine (--max-length, --batch,
 * --threads) options shared by the commands; return 1 when argv[*i] was one. */
int qb_cli_data_option(int argc, char **argv, int *i, qb_data_options *o, int *bad);
int qb_cli_engine_option(const char *cmd, int argc, char **argv, int *i, qb_engine_options *o, int *bad);

/* What qbert quantize is asked to write: its options (the experiment's variants use
 * the same names). */
typedef struct {
    const char *scheme;        /* a qb_qscheme_get name, or "qat" (a QAT checkpoint as trained) */
    int group;                 /* INT4 columns per scale; 0: the default */
    const char *act;           /* NULL, "int8" or "fp32": INT4 inputs */
    const char *calib;         /* int8-static: the calibration texts */
    int calib_samples;
    const char *calib_method;  /* minmax | percentile | mse */
    double percentile;
    const char *text_column;   /* of a CSV calibration file; NULL: "text" */
    const char *valid;         /* hybrid: labelled texts for the sensitivity analysis */
    int valid_samples;
    double budget_mb;          /* hybrid: the largest file wanted (> 0), or */
    double max_drop;           /* the largest weighted-F1 drop against FP32, in points (>= 0; -1: unset) */
} qb_cli_quant_request;

void qb_cli_quant_request_default(qb_cli_quant_request *r);
/* Checks that r's options fit together (the scheme exists, --act and --calib suit it)
 * and sets plan->scheme; QB_EINVAL with the message otherwise. */
qb_status qb_cli_quant_check(const qb_cli_quant_request *r, qb_qplan *plan);
/* Quantizes the model open in e (loaded from model_dir) as r and plan (checked) ask,
 * calibrating first for int8-static, into the directory out (created): config.json,
 * the tokenizer files and model.safetensors. */
qb_status qb_cli_quantize(qb_engine *e, const char *model_dir, const qb_cli_quant_request *r, qb_qplan *plan,
                          const qb_engine_options *eo, const char *out);
/* The rows of the file at path (TSV/CSV) for calibration (labels optional) or
 * validation (labelled); fewer than n rows is an error naming `option`. */
qb_status qb_cli_load_texts(const char *path, int n, const qb_config *cfg, const char *text_column, bool labelled,
                            const char *option, qb_dataset *d);
/* Creates the model directory out with the model's config.json and model_dir's
 * tokenizer files (everything but the weights). */
qb_status qb_cli_write_model_dir(const qb_model *m, const char *model_dir, const char *out);
/* --scheme hybrid (cli/quant_hybrid.c): the sensitivity of every Linear at INT8 and
 * INT4 on r->valid, the choice of precisions for r's budget or accuracy drop, the model
 * written to out/model.safetensors and the report to out/hybrid_report.{json,md}.
 * out already holds config.json and the tokenizer. */
qb_status qb_cli_quantize_hybrid(qb_engine *e, const qb_cli_quant_request *r, qb_qplan *plan,
                                 const qb_engine_options *eo, const char *out);

#endif
