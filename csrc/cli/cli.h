/* The `qbert` command: one function per subcommand (cmd_<name>.c), each parsing its
 * own options and returning the process exit status (0 ok, 1 failure, 2 usage). */
#ifndef QBERT_CLI_H
#define QBERT_CLI_H

#include "qbert/data.h"
#include "qbert/engine.h"

int qb_cmd_eval(int argc, char **argv);
int qb_cmd_predict(int argc, char **argv);
int qb_cmd_init(int argc, char **argv);
int qb_cmd_tokenize(int argc, char **argv);
int qb_cmd_demo(int argc, char **argv);
int qb_cmd_train(int argc, char **argv);
int qb_cmd_quantize(int argc, char **argv);

/* "qbert CMD: MESSAGE" on stderr; returns 1 (the exit status of a failed command). */
int qb_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv[i] is the option `name`; takes its value from argv[i+1] into *value
 * (advancing *i). An option given without its value is reported and sets *bad. */
int qb_cli_opt(int argc, char **argv, int *i, const char *name, const char **value, int *bad);
/* Parses an integer option value in [lo, hi]; reports and returns 0 on error. */
int qb_cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, long *out);

/* Classifies a labelled data set and prints the report (and writes JSON / SVG when
 * paths are given). Returns the exit status. */
int qb_cli_evaluate(qb_engine *e, const qb_dataset *d, const char *json_path, const char *svg_path);
/* Data (--format, --text-column, preprocessing ...) and engine (--max-length, --batch,
 * --threads) options shared by the commands; return 1 when argv[*i] was one. */
int qb_cli_data_option(int argc, char **argv, int *i, qb_data_options *o, int *bad);
int qb_cli_engine_option(const char *cmd, int argc, char **argv, int *i, qb_engine_options *o, int *bad);

#endif
