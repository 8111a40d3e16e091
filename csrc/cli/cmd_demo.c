/* qbert demo: the whole pipeline on the sample data embedded in the binary (no
 * downloads, no files needed): build a vocabulary from the sample training texts,
 * write a bert-tiny model directory, load it back through the same path as any
 * Hugging Face directory, and evaluate it on the sample test set.
 * The model is randomly initialised (training is not part of qbert yet), so its
 * scores sit near chance: the demo shows the machinery, not a trained model. */
#include "cli/cli.h"

#include "data/sample.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert demo [--out DIR] [--seed S] [--threads N]\n"
            "  --out DIR   where the model, metrics.json and confusion.svg go (default qbert-demo)\n"
            "example: qbert demo --out /tmp/demo\n");
}

static qb_status load_sample(const char *name, const qb_config *cfg, qb_dataset *d)
{
    size_t len;
    const char *buf = qb_sample_data(name, &len);
    if (!buf) return qb_fail(QB_ENOTFOUND, "embedded sample %s is missing from this build", name);
    qb_data_options o;
    qb_data_default_options(&o);
    o.label_names = (const char *const *)cfg->id2label;
    o.n_labels = cfg->num_labels;
    return qb_dataset_load_buffer(name, buf, len, &o, d);
}

static qb_status write_model(const char *dir, const qb_dataset *train, uint64_t seed, qb_config *cfg)
{
    char *vocab = NULL;
    size_t vlen = 0;
    qb_status st = qb_vocab_build((const char *const *)train->texts, train->count, 3000, &vocab, &vlen);
    if (st) return st;
    int lines = 0;
    for (size_t i = 0; i < vlen; i++) lines += vocab[i] == '\n';
    cfg->vocab_size = lines;
    qb_model m;
    if (!(st = qb_model_init_random(cfg, seed, &m))) {
        *cfg = (qb_config){0};  /* the model owns the label strings now */
        st = qb_model_save(&m, dir);
        if (!st) st = qb_tokenizer_write_files(dir, vocab, vlen);
        if (!st)
            printf("model: bert-tiny (%d layers x %d hidden, %zu parameters), vocabulary of %d tokens -> %s\n",
                   m.cfg.num_layers, m.cfg.hidden_size, qb_model_param_count(&m), lines, dir);
        qb_model_free(&m);
    }
    free(vocab);
    return st;
}

int qb_cmd_demo(int argc, char **argv)
{
    const char *out = "qbert-demo", *seed_s = NULL;
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    int bad = 0;
    long seed = 42;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--out", &out, &bad) || qb_cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) ||
            qb_cli_engine_option("demo", argc, argv, &i, &eo, &bad))
            continue;
        bad = qb_cli_fail("demo", "unknown option \"%s\" (see qbert demo --help)", argv[i]);
    }
    if (!bad && seed_s && !qb_cli_int("demo", "--seed", seed_s, 0, 0x7fffffffL, &seed)) bad = 1;
    if (bad) return 2;
    eo.seed = (uint64_t)seed;

    char model_dir[4096], json[4096], svg[4096];
    if (mkdir(out, 0755) != 0 && errno != EEXIST) return qb_cli_fail("demo", "%s: cannot create: %s", out, strerror(errno));
    if (qb_path_join(model_dir, sizeof model_dir, out, "model") || qb_path_join(json, sizeof json, out, "metrics.json") ||
        qb_path_join(svg, sizeof svg, out, "confusion.svg"))
        return qb_cli_fail("demo", "%s", qb_error());

    qb_config cfg;
    qb_dataset train = {0}, test = {0};
    qb_engine *e = NULL;
    int rc = 1;
    if (qb_config_preset("bert-tiny", &cfg)) return qb_cli_fail("demo", "%s", qb_error());
    printf("qbert demo: sample data embedded in this binary; the model is randomly initialised,\n"
           "so expect chance-level scores (about 33%% on three balanced classes).\n\n");
    if (load_sample("train.tsv", &cfg, &train) || load_sample("test.tsv", &cfg, &test) ||
        write_model(model_dir, &train, (uint64_t)seed, &cfg) || qb_engine_open(model_dir, &eo, &e)) {
        qb_cli_fail("demo", "%s", qb_error());
        goto done;
    }
    printf("data: %d training texts (vocabulary source), %d test texts\n\n", train.count, test.count);
    rc = qb_cli_evaluate(e, &test, json, svg);
done:
    qb_engine_close(e);
    qb_dataset_free(&train);
    qb_dataset_free(&test);
    qb_config_free(&cfg);
    return rc;
}
