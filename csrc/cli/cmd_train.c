/* qbert train CONFIG.ini [--set section.key=value ...] [--resume DIR]: the trainer
 * (csrc/train) behind a command line. Ctrl-C asks the trainer to stop at the next
 * step boundary with a checkpoint (a second Ctrl-C kills the process at once). */
#include "cli/cli.h"

#include "qbert/dist.h"
#include "qbert/train.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert train CONFIG.ini [--set section.key=value ...] [--resume DIR]\n"
            "  CONFIG.ini        sections [model] [data] [train] [device] [output]; see configs/train_defaults.ini\n"
            "  --set S.K=V       override one key (repeatable), e.g. --set train.learning_rate=3e-5\n"
            "  --resume DIR      continue from a checkpoint directory, or from an output directory's latest\n"
            "  --stop-after N    write a checkpoint and stop after N optimizer steps (exit status 0)\n"
            "Ctrl-C stops at the next step with a checkpoint (exit status 130).\n"
            "Data parallel, one process per GPU (or CPU socket): mpirun -np N qbert train CONFIG.ini\n"
            "  (train.batch_size is per process; process 0 writes the outputs)\n"
            "example: qbert train experiments/smsa_finetune.ini --set train.epochs=1\n");
}

int qb_cmd_train(int argc, char **argv)
{
    const char *config = NULL, *resume = NULL, *value = NULL, *stop_s = NULL;
    qb_train_config c;
    qb_train_default_config(&c);
    const char *sets[64];
    int n_sets = 0, bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--resume", &resume, &bad) || qb_cli_opt(argc, argv, &i, "--stop-after", &stop_s, &bad))
            continue;
        if (qb_cli_opt(argc, argv, &i, "--set", &value, &bad)) {
            if (n_sets == 64) bad = qb_cli_fail("train", "more than 64 --set options");
            else sets[n_sets++] = value;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            bad = qb_cli_fail("train", "unexpected argument \"%s\" (see qbert train --help)", argv[i]);
            continue;
        }
        config = argv[i];
    }
    long stop_after = 0;
    if (!bad && !config) bad = qb_cli_fail("train", "a CONFIG.ini argument is required (see qbert train --help)");
    if (!bad && stop_s && !qb_cli_int("train", "--stop-after", stop_s, 1, 0x7fffffffL, &stop_after)) bad = 1;
    if (bad) return 2;
    qb_dist *dist;
    if (qb_dist_init(&argc, &argv, &dist)) return qb_cli_fail("train", "%s", qb_error());
    qb_status st = qb_train_config_load(config, &c);
    for (int i = 0; i < n_sets && !st; i++) st = qb_train_config_set(&c, sets[i]);
    if (!st) {
        signal(SIGINT, on_sigint);
        qb_train_options o = {.resume = resume, .stop_after = stop_after, .stop = (volatile const int *)&interrupted,
                              .dist = dist};
        st = qb_train_run(&c, &o);
        signal(SIGINT, SIG_DFL);
    }
    /* --stop-after did what was asked (0); Ctrl-C is 130 */
    const int code = st == QB_EINTERRUPTED ? (interrupted ? 130 : 0) : st ? 1 : 0;
    if (st && qb_dist_size(dist) > 1) {
        /* The other processes may be waiting in a collective for this one: end them all. */
        fprintf(stderr, "qbert train (process %d of %d): %s\n", qb_dist_rank(dist), qb_dist_size(dist), qb_error());
        if (st != QB_EINTERRUPTED) qb_dist_abort(dist, code);
    } else if (st) {
        fprintf(stderr, "qbert train: %s\n", qb_error());
    }
    qb_dist_free(dist);
    return code;
}
