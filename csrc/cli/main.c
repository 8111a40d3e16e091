/* `qbert` entry point: dispatches to the subcommands and holds the small option
 * helpers they share. */
#include "cli/cli.h"

#include "qbert/core.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"demo", qb_cmd_demo, "run the end-to-end demo on the embedded sample data"},
    {"train", qb_cmd_train, "fine-tune or train a classifier from an INI file"},
    {"eval", qb_cmd_eval, "evaluate a model on a labelled TSV/CSV file"},
    {"predict", qb_cmd_predict, "classify texts from stdin, JSON lines on stdout"},
    {"quantize", qb_cmd_quantize, "write a low-bit (fp16/bf16/int8/int4) model directory"},
    {"experiment", qb_cmd_experiment, "run an experiment INI (the PTQ / QAT comparison table)"},
    {"bench", qb_cmd_bench, "the CPU vs GPU table: a model in each precision on each device"},
    {"eda", qb_cmd_eda, "explore labelled data: labels, lengths, words, leakage (report + charts)"},
    {"explain", qb_cmd_explain, "which words drive a prediction: LIME, occlusion, integrated gradients"},
    {"init", qb_cmd_init, "write a randomly initialised model directory"},
    {"tokenize", qb_cmd_tokenize, "print the token ids of texts from stdin"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qbert COMMAND [options]   (qbert COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nenvironment: QBERT_LOG=debug|info|warning|error  QBERT_ISA=scalar|avx2|avx512\n");
}

int qb_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "qbert %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int qb_cli_opt(int argc, char **argv, int *i, const char *name, const char **value, int *bad)
{
    if (strcmp(argv[*i], name) != 0) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "qbert: option %s needs a value\n", name);
        *bad = 1;
        return 1;
    }
    *value = argv[++*i];
    return 1;
}

bool qb_cli_parse_long(const char *value, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || *value == '\0' || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool qb_cli_parse_real(const char *value, double *out)
{
    char *end;
    const double v = strtod(value, &end);
    if (*value == '\0' || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

int qb_cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, long *out)
{
    if (qb_cli_parse_long(value, lo, hi, out)) return 1;
    fprintf(stderr, "qbert %s: %s must be an integer in [%ld, %ld], got \"%s\"\n", cmd, name, lo, hi, value);
    return 0;
}

static void set_log_level(void)
{
    const char *s = getenv("QBERT_LOG");
    if (!s) return;
    static const char *const names[] = {"debug", "info", "warning", "error", "quiet"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) qb_log_set_level((qb_log_level)i);
}

int main(int argc, char **argv)
{
    set_log_level();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("qbert 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qbert: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
