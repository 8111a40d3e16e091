/* qbert init: a randomly initialised model directory (config.json,
 * model.safetensors, and vocab.txt + tokenizer_config.json when a vocabulary is
 * given), for tests and latency benchmarks when no weights are at hand. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert init (--preset NAME | --config config.json) --out DIR [--seed S] [--vocab vocab.txt]\n"
            "  --preset NAME   bert-tiny (2 x 128) or indobert-base-p2 (12 x 768, 50000-row embedding)\n"
            "  --config FILE   a Hugging Face BERT config.json\n"
            "  --vocab FILE    copy this vocab.txt into DIR; a preset grows its vocabulary to fit it\n"
            "                  (without it: a vocabulary of single characters, so the model can be run)\n"
            "  --seed S        initialisation seed (default 42)\n"
            "example: qbert init --preset indobert-base-p2 --out /tmp/indobert-random\n");
}

/* Writes vocab.txt and a tokenizer_config.json (lowercasing, as both presets do). */
int qb_cmd_init(int argc, char **argv)
{
    const char *preset = NULL, *config = NULL, *out = NULL, *vocab_path = NULL, *seed_s = NULL;
    int bad = 0;
    long seed = 42;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--preset", &preset, &bad) || qb_cli_opt(argc, argv, &i, "--config", &config, &bad) ||
            qb_cli_opt(argc, argv, &i, "--out", &out, &bad) || qb_cli_opt(argc, argv, &i, "--vocab", &vocab_path, &bad) ||
            qb_cli_opt(argc, argv, &i, "--seed", &seed_s, &bad))
            continue;
        bad = qb_cli_fail("init", "unknown option \"%s\" (see qbert init --help)", argv[i]);
    }
    if (!bad && (!preset == !config)) bad = qb_cli_fail("init", "give exactly one of --preset and --config");
    if (!bad && !out) bad = qb_cli_fail("init", "--out DIR is required");
    if (!bad && seed_s && !qb_cli_int("init", "--seed", seed_s, 0, 0x7fffffffL, &seed)) bad = 1;
    if (bad) return 2;

    qb_config cfg;
    if (preset ? qb_config_preset(preset, &cfg) : qb_config_load(config, &cfg))
        return qb_cli_fail("init", "%s", qb_error());
    char *vocab = NULL;
    size_t vlen = 0;
    if (vocab_path) {
        qb_tokenizer *tok;
        qb_tokenizer_options to;
        qb_tokenizer_default_options(&to);
        if (qb_tokenizer_load_vocab(vocab_path, &to, &tok) || qb_read_file(vocab_path, &vocab, &vlen)) {
            qb_config_free(&cfg);
            return qb_cli_fail("init", "%s", qb_error());
        }
        int lines = qb_tokenizer_vocab_size(tok);
        qb_tokenizer_free(tok);
        if (preset && lines > cfg.vocab_size) cfg.vocab_size = lines;
        else if (lines > cfg.vocab_size)
            qb_log(QB_LOG_WARN, "%s has %d tokens but %s has vocab_size %d: ids above it will be rejected",
                   vocab_path, lines, config, cfg.vocab_size);
    }
    if (!vocab) {  /* every ASCII letter, digit and punctuation mark, bare and ##-continued */
        char chars[256];
        int n = 0;
        for (int c = 33; c < 127; c++) chars[n++] = (char)c, chars[n++] = ' ';
        chars[n] = '\0';
        const char *texts[1] = {chars};
        if (qb_vocab_build(texts, 1, 0, &vocab, &vlen)) {
            qb_config_free(&cfg);
            return qb_cli_fail("init", "%s", qb_error());
        }
    }
    fprintf(stderr, "[init] %s: drawing the random weights...\n", out);  /* indobert-base: seconds */
    qb_model m;
    qb_status st = qb_model_init_random(&cfg, (uint64_t)seed, &m);
    if (st) {
        qb_config_free(&cfg);
    } else {
        st = qb_model_save(&m, out);
        if (!st) st = qb_tokenizer_write_files(out, vocab, vlen);  /* replaces an earlier init's */
        if (!st)
            printf("wrote %s: %d layers x %d hidden, %zu parameters, %s vocab.txt\n", out, m.cfg.num_layers,
                   m.cfg.hidden_size, qb_model_param_count(&m), vocab_path ? "the given" : "a single-character");
        qb_model_free(&m);
    }
    free(vocab);
    return st ? qb_cli_fail("init", "%s", qb_error()) : 0;
}
