/* qbert demo: the whole pipeline on the sample data embedded in the binary (no
 * downloads, no files needed): build a vocabulary from the sample training texts,
 * train a bert-tiny classifier from scratch with the trainer, keep the best epoch
 * on the validation set, and report on the test set. The result is an ordinary
 * output directory (model/ loads in qbert eval and in Hugging Face transformers). */
#include "cli/cli.h"

#include "qbert/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert demo [--out DIR] [--seed S] [--epochs N] [--threads N]\n"
            "  --out DIR   where the model, metrics and reports go (default qbert-demo)\n"
            "example: qbert demo --out /tmp/demo\n");
}

int qb_cmd_demo(int argc, char **argv)
{
    const char *out = "qbert-demo", *seed_s = NULL, *epochs_s = NULL, *threads_s = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--out", &out, &bad) || qb_cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) ||
            qb_cli_opt(argc, argv, &i, "--epochs", &epochs_s, &bad) ||
            qb_cli_opt(argc, argv, &i, "--threads", &threads_s, &bad))
            continue;
        bad = qb_cli_fail("demo", "unknown option \"%s\" (see qbert demo --help)", argv[i]);
    }
    long seed = 42, epochs = 8, threads = 0;
    if (!bad && seed_s && !qb_cli_int("demo", "--seed", seed_s, 0, 0x7fffffffL, &seed)) bad = 1;
    if (!bad && epochs_s && !qb_cli_int("demo", "--epochs", epochs_s, 1, 1000, &epochs)) bad = 1;
    if (!bad && threads_s && !qb_cli_int("demo", "--threads", threads_s, 0, 4096, &threads)) bad = 1;
    if (bad) return 2;

    /* A small model, a large learning rate: from scratch, a few hundred sentences. */
    static const char ini[] =
        "[model]\npreset = bert-tiny\n"
        "[data]\ntrain = embedded:train.tsv\nvalid = embedded:valid.tsv\ntest = embedded:test.tsv\n"
        "labels = positive, neutral, negative\nmax_length = 64\n"
        "[train]\nlearning_rate = 1e-3\nbatch_size = 16\nwarmup_ratio = 0.1\nlog_every = 5\n";
    qb_train_config c;
    qb_train_default_config(&c);
    if (qb_train_config_parse(ini, "demo", &c)) return qb_cli_fail("demo", "%s", qb_error());
    c.epochs = (int)epochs;
    c.seeds[0] = (uint64_t)seed;
    c.threads = (int)threads;
    if (strlen(out) >= sizeof c.output_dir) return qb_cli_fail("demo", "--out: path too long");
    strcpy(c.output_dir, out);
    printf("qbert demo: trains a bert-tiny classifier from scratch on the sample sentences embedded\n"
           "in this binary (300 train / 60 valid / 60 test, positive / neutral / negative), keeps the\n"
           "best epoch by validation F1 and reports on the test set.\n\n");
    fflush(stdout);
    qb_status st = qb_train_run(&c, NULL);
    return st ? qb_cli_fail("demo", "%s", qb_error()) : 0;
}
