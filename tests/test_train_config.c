/* The trainer's INI configuration: configs/train_defaults.ini says exactly what the
 * code's defaults are; the shipped experiments parse; every error names FILE:LINE
 * (or the --set argument) and what was expected; the INI written beside a run reads
 * back to the same configuration, long lines included; indented lines and repeated
 * keys are errors. */
#include "check.h"

#include "qbert/train.h"

#include <stdlib.h>
#include <string.h>

static qb_status parse(const char *text, qb_train_config *c)
{
    qb_train_default_config(c);
    return qb_train_config_parse(text, "t.ini", c);
}

/* The text must fail, with every one of `needles` in the message. */
static void expect_error(const char *text, const char *n1, const char *n2)
{
    qb_train_config c;
    qb_status st = parse(text, &c);
    const char *msg = st ? qb_error() : "";
    CHECKF(st == QB_EINVAL && strstr(msg, n1) && (!n2 || strstr(msg, n2)), "for \"%s\": status %d, message \"%s\"",
           text, st, msg);
}

static void test_defaults_file(void)
{
    qb_train_config code, file;
    qb_train_default_config(&code);
    qb_train_default_config(&file);
    qb_status st = qb_train_config_load("../configs/train_defaults.ini", &file);
    CHECKF(st == QB_OK, "%s", qb_error());
    CHECK(memcmp(&code, &file, sizeof code) == 0);
    /* ... and the comparison is not vacuous: the file sets these to the same values. */
    file.batch_size = 17;
    CHECK(memcmp(&code, &file, sizeof code) != 0);
}

static void test_experiments(void)
{
    const char *files[] = {"../experiments/smsa_finetune.ini", "../experiments/minilm_smsa.ini",
                           "../experiments/smsa_qat_int8.ini", "../experiments/smsa_qat_int4.ini"};
    for (int i = 0; i < 4; i++) {
        qb_train_config c;
        qb_train_default_config(&c);
        qb_status st = qb_train_config_load(files[i], &c);
        CHECKF(st == QB_OK, "%s: %s", files[i], qb_error());
        CHECK(qb_train_config_validate(&c) == QB_OK);
        /* The research hyper-parameters. */
        CHECK(c.optim.lr == 2e-5f && c.batch_size == 16 && c.epochs == 3 && c.optim.weight_decay == 0.01f);
        CHECK(c.max_length == 128 && c.metric_for_best == QB_METRIC_F1 && c.n_labels == 3);
        CHECK(strcmp(c.labels[0], "positive") == 0 && strcmp(c.labels[1], "neutral") == 0 &&
              strcmp(c.labels[2], "negative") == 0);
        CHECK(c.qat_enabled == (i >= 2) && c.qat.weight_bits == (i == 3 ? 4 : 8));
    }
}

static void test_values(void)
{
    qb_train_config c;
    CHECK(parse("[train]\nseeds = 42, 123,456\neval_every = 50\npadding = max_length\non_nan = skip\n"
                "metric_for_best = loss\n[data]\nformat = csv\nlabels = a,b\n", &c) == QB_OK);
    CHECK(c.n_seeds == 3 && c.seeds[0] == 42 && c.seeds[1] == 123 && c.seeds[2] == 456);
    CHECK(c.eval_every == 50 && c.pad_to_max_length && c.skip_nan && c.metric_for_best == QB_METRIC_LOSS);
    CHECK(c.format == QB_FORMAT_CSV && c.n_labels == 2 && strcmp(c.labels[1], "b") == 0);
    CHECK(parse("[train]\nseed = 7\neval_every = epoch\n", &c) == QB_OK && c.n_seeds == 1 && c.seeds[0] == 7 &&
          c.eval_every == 0);
    CHECK(qb_train_config_set(&c, "train.learning_rate=3e-5") == QB_OK && c.optim.lr == 3e-5f);
    CHECK(qb_train_config_set(&c, " output.dir = runs/x ") == QB_OK && strcmp(c.output_dir, "runs/x") == 0);
    CHECK(parse("[qat]\nenabled = yes\nweight_bits = 4\ngranularity = group\ngroup_size = 32\nobserver = percentile\n"
                "freeze_observers_after = 100\nembeddings = true\n", &c) == QB_OK);
    CHECK(c.qat_enabled && c.qat.weight_bits == 4 && c.qat_granularity == 2 && c.qat_group_size == 32 &&
          c.qat.observer == QB_OBS_PERCENTILE && c.qat_freeze_after == 100 && c.qat.embeddings);

    /* to_ini -> parse is the identity. */
    char *ini = qb_train_config_to_ini(&c);
    qb_train_config back;
    CHECK(ini && parse(ini, &back) == QB_OK);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
    free(ini);
}

static void test_errors(void)
{
    expect_error("[train]\nbatch_size = 16\nlearnig_rate = 1e-5\n", "t.ini:3:", "unknown key \"learnig_rate\"");
    expect_error("[train]\nlearnig_rate = 1e-5\n", "learning_rate", NULL);  /* lists the allowed keys */
    expect_error("[trainer]\nepochs = 1\n", "t.ini:2:", "unknown section [trainer]");
    expect_error("[train]\nbatch_size = lots\n", "t.ini:2:", "expected an integer");
    expect_error("[train]\nbatch_size = 0\n", "t.ini:2:", "[1, 65536]");
    expect_error("[train]\nlearning_rate = -1\n", "t.ini:2:", "expected a number");
    expect_error("[train]\nlearning_rate = nan\n", "t.ini:2:", NULL);
    expect_error("[train]\nmetric_for_best = auc\n", "t.ini:2:", "f1 accuracy precision recall loss");
    expect_error("[train]\non_nan = ignore\n", "t.ini:2:", "stop skip");
    expect_error("[train]\nseeds = 1,,2\n", "t.ini:2:", NULL);
    expect_error("[train]\nseeds = 1,-2\n", "t.ini:2:", "not a non-negative integer");
    expect_error("[train]\neval_every = sometimes\n", "t.ini:2:", "epoch");
    expect_error("[data]\nlowercase = maybe\n", "t.ini:2:", "true or false");
    expect_error("[data]\nlabels = a, a\n", "t.ini:2:", "twice");
    expect_error("[data]\nlabels = a\n", "t.ini:2:", "2 to");
    expect_error("[device]\ntype = tpu\n", "t.ini:2:", "cpu");
    expect_error("[train]\nthis line has no equals sign\n", "t.ini:2:", "syntax error");
    expect_error("[qat]\nenabled = true\nweight_bits = 6\n", "t.ini:3:", "qat.weight_bits = \"6\": expected 4 or 8");
    expect_error("[qat]\nact_bits = 4\n", "t.ini:2:", "qat.act_bits = \"4\": expected 8");
    expect_error("[qat]\nobserver = kl\n", "t.ini:2:", "ema minmax percentile");
    expect_error("[qat]\ngranularity = tensor\n", "t.ini:2:", "auto channel group");

    qb_train_config c;
    qb_train_default_config(&c);
    CHECK(qb_train_config_set(&c, "train.nosuch=1") == QB_EINVAL && strstr(qb_error(), "--set train.nosuch=1") &&
          strstr(qb_error(), "unknown key"));
    CHECK(qb_train_config_set(&c, "epochs=1") == QB_EINVAL && strstr(qb_error(), "section.key=value"));
    CHECK(qb_train_config_load("no/such/file.ini", &c) != QB_OK && strstr(qb_error(), "no/such/file.ini"));

    /* Combinations. */
    qb_train_default_config(&c);
    CHECK(qb_train_config_validate(&c) == QB_EINVAL && strstr(qb_error(), "[model]"));
    CHECK(qb_train_config_set(&c, "model.preset=bert-tiny") == QB_OK);
    CHECK(qb_train_config_validate(&c) == QB_EINVAL && strstr(qb_error(), "train"));
    CHECK(qb_train_config_set(&c, "data.train=x.tsv") == QB_OK);
    CHECK(qb_train_config_validate(&c) == QB_EINVAL && strstr(qb_error(), "[output]"));
    CHECK(qb_train_config_set(&c, "output.dir=o") == QB_OK && qb_train_config_validate(&c) == QB_OK);
    CHECK(qb_train_config_set(&c, "model.path=m") == QB_OK);
    CHECK(qb_train_config_validate(&c) == QB_EINVAL && strstr(qb_error(), "exactly one"));
}

/* Lines of any length (libinih alone reads 199 characters and takes the rest for the
 * next line): a long path with an inline comment reads whole, what is written back
 * reads back the same, and an error after a long line names its own line. Indented
 * lines and keys given twice are errors at their line, never silent overrides. */
/* Floats are written as the shortest text that reads back the same float. */
static void test_written_floats(void)
{
    qb_train_config c;
    CHECK(parse("[train]\nlearning_rate = 0.001\nweight_decay = 0.1\nwarmup_ratio = 0.3333333\n", &c) == QB_OK);
    char *ini = qb_train_config_to_ini(&c);
    CHECKF(ini && strstr(ini, "learning_rate = 0.001\n") && strstr(ini, "weight_decay = 0.1\n") &&
               strstr(ini, "warmup_ratio = 0.3333333\n"), "%s", ini ? ini : "(null)");
    free(ini);
}

/* data.delimiter and data.skip_bad_rows reach the loader's options by name. */
static void test_data_keys(void)
{
    qb_train_config c;
    CHECKF(parse("[data]\ndelimiter = tab\nskip_bad_rows = true\n", &c) == QB_OK, "%s", qb_error());
    CHECK(c.delimiter == 1 && c.skip_bad_rows);
    CHECK(parse("[data]\ndelimiter = semicolon\n", &c) == QB_OK && c.delimiter == 3);
    /* seeds are JSON numbers in metrics.json: at most 2^53 */
    CHECK(parse("[train]\nseed = 9007199254740992\n", &c) == QB_OK && c.seeds[0] == 9007199254740992ull);
    expect_error("[train]\nseed = 9007199254740993\n", "t.ini:2:", "2^53");
    expect_error("[data]\ndelimiter = space\n", "t.ini:2:", "auto tab comma semicolon pipe");
}

static void test_long_and_repeated(void)
{
    char path[700], text[1000];
    memset(path, 'p', sizeof path - 1), path[sizeof path - 1] = '\0';
    memcpy(path, "/tmp/", 5);
    snprintf(text, sizeof text, "[output]\ndir = %s   ; where it goes\n[train]\nepochs = 2\n", path);
    qb_train_config c, d;
    CHECKF(parse(text, &c) == QB_OK, "%s", qb_error());
    CHECK(strcmp(c.output_dir, path) == 0 && c.epochs == 2);
    char *ini = qb_train_config_to_ini(&c);
    CHECK(ini && strstr(ini, path));
    CHECKF(ini && parse(ini, &d) == QB_OK, "the written INI: %s", qb_error());
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    free(ini);
    snprintf(text, sizeof text, "[output]\ndir = %s\n[train]\nepochs = many\n", path);
    expect_error(text, "t.ini:4:", "epochs");
    char seeds[400] = "[train]\nseeds=";
    for (int i = 0; i < 16; i++) snprintf(seeds + strlen(seeds), sizeof seeds - strlen(seeds), "%s%d", i ? "," : "",
                                          1000000000 + i);
    CHECKF(parse(seeds, &c) == QB_OK && c.n_seeds == 16 && c.seeds[15] == 1000000015, "%s", qb_error());
    expect_error("[train]\nepochs = 2\n  batch_size = 8\n", "t.ini:3:", "indented");
    /* inih takes any white space for indentation: \r, \v, \f too (a fuzz finding) */
    expect_error("[data]\ntrain = a.tsv\n\rmax;   ;x = tsv\n", "t.ini:3:", "indented");
    expect_error("[train]\nepochs = 2\n\fbatch_size = 8\n", "t.ini:3:", "indented");
    CHECK(parse("[train]\nepochs = 2\n\r\v\n\n", &c) == QB_OK);  /* white space only: a blank line */
    expect_error("[train]\nepochs = 2\nepochs = 3\n", "t.ini:3:", "\"epochs\" is set twice");
    expect_error("[train]\nepochs = 2\n[data]\nmax_length = 64\n[train]\nepochs = 3\n", "t.ini:6:", "first at line 2");
    CHECK(parse("[train]\nepochs = 2\n[data]\nepochs_x = 1\n", &c) == QB_EINVAL);  /* unknown key, not a repeat */
    CHECK(parse("[train]\nepochs = 2\n\t; an indented comment\n\n", &c) == QB_OK);
    /* 0x02 marks a shortened line's value inside the reader: in the text it is an error
     * (the fuzzer's first finding: it read past the table of long values) */
    expect_error("[qat]\npercentile = \x02" "9.99\n", "t.ini:2:", "control character");
    /* a long line whose length is mostly spaces before the '=' (the fuzzer's third
     * finding: the shortened line came out longer than the original) */
    char padded[400];
    snprintf(padded, sizeof padded, "[train]\nepochs%200s= 3\n", "");
    CHECKF(parse(padded, &c) == QB_OK && c.epochs == 3, "%s", qb_error());
    /* ... and a long line with no key is a syntax error at its line, not more of the
     * value above (the fourth finding) */
    snprintf(padded, sizeof padded, "[data]\ntrain = a.tsv\n=;%200s\n", "x");
    expect_error(padded, "t.ini:3:", "syntax error");
    /* a value that begins with ';' (no space before it: not a comment) is written so
     * that it reads back (the fuzzer's second finding: "dir = ;x" read as a comment) */
    CHECK(parse("[output]\ndir =;./shared\n[data]\nlabels =;a,b\n", &c) == QB_OK && strcmp(c.output_dir, ";./shared") == 0);
    ini = qb_train_config_to_ini(&c);
    CHECK(ini && parse(ini, &d) == QB_OK && strcmp(d.output_dir, ";./shared") == 0 && strcmp(d.labels[0], ";a") == 0);
    free(ini);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    test_defaults_file();
    test_experiments();
    test_values();
    test_errors();
    test_long_and_repeated();
    test_data_keys();
    test_written_floats();
    return check_summary("test_train_config");
}
