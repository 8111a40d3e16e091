/* qbert tokenize: texts on stdin (one per line), the ids of each full encoding
 * ([CLS] ... [SEP]) on stdout, space-separated, one line per input line. The
 * tokenizer parity test compares this output with Hugging Face `tokenizers`. */
#include "cli/cli.h"

#include "qbert/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert tokenize --model DIR [--max-length N]\n"
            "  reads texts from stdin, one per line; prints the token ids of each,\n"
            "  [CLS] text [SEP], separated by spaces, one line per text\n"
            "  --model DIR       model directory with vocab.txt (and tokenizer_config.json)\n"
            "  --max-length N    truncate each encoding to N ids incl. [CLS]/[SEP] (default: no limit)\n"
            "example: echo 'makanan nya enak sekali' | qbert tokenize --model ../shared/data/indobert-base-p2\n");
}

int qb_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *max_len_arg = NULL;
    long max_length = 0; /* 0: no truncation */
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--model", &model, &bad) ||
            qb_cli_opt(argc, argv, &i, "--max-length", &max_len_arg, &bad))
            continue;
        bad = qb_cli_fail("tokenize", "unknown option \"%s\" (see qbert tokenize --help)", argv[i]);
    }
    if (!bad && max_len_arg && !qb_cli_int("tokenize", "--max-length", max_len_arg, 2, INT_MAX, &max_length)) bad = 1;
    if (!bad && !model) bad = qb_cli_fail("tokenize", "--model is required (see qbert tokenize --help)");
    if (bad) return 2;

    qb_tokenizer *t;
    if (qb_tokenizer_load(model, &t)) return qb_cli_fail("tokenize", "%s", qb_error());
    const int cls = qb_tokenizer_cls_id(t), sep = qb_tokenizer_sep_id(t);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, invalid = 0;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        int32_t *ids;
        int n, bad_utf8;
        if (qb_tokenize(t, line, (size_t)len, &ids, &n, &bad_utf8)) {
            rc = qb_cli_fail("tokenize", "stdin line %ld: %s", lineno, qb_error());
            break;
        }
        invalid += bad_utf8;
        if (max_length > 0 && n > max_length - 2) n = (int)max_length - 2;
        printf("%d", cls);
        for (int j = 0; j < n; j++) printf(" %d", ids[j]);
        printf(" %d\n", sep);
        free(ids);
    }
    if (!rc && ferror(stdin)) rc = qb_cli_fail("tokenize", "cannot read stdin");
    if (fflush(stdout) != 0 || ferror(stdout)) rc = qb_cli_fail("tokenize", "cannot write stdout");
    if (invalid > 0)
        fprintf(stderr, "qbert tokenize: %ld invalid UTF-8 sequences replaced by U+FFFD\n", invalid);
    free(line);
    qb_tokenizer_free(t);
    return rc;
}
