/* Model-level parity with Hugging Face transformers (fixtures from
 * tests/golden/make_golden.py): logits, pooled output and every layer's hidden
 * state of the tiny BertForSequenceClassification, loaded from safetensors and
 * from pytorch_model.bin, on every FP32 GEMM path this CPU has; F16/BF16 weight
 * files; a pre-training checkpoint without a classifier; the errors of
 * config.json and weight loading; and the model copied to a backend, whose query,
 * key and value Linears run as one GEMM. */
#include "check.h"
#include "model_check.h"

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/io.h"
#include "qbert/model.h"
#include "qbert/tokenizer.h"
#include "qbert/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const qb_tensor *ref_tensor(const qb_weights *w, const char *name)
{
    int i = qb_weights_find(w, name);
    if (i < 0) {
        fprintf(stderr, "fixture has no tensor %s\n", name);
        exit(1);
    }
    return &w->tensors[i];
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;  /* NaN propagates as a failure */
    }
    return m;
}

/* Runs the fixture batch through a model; returns logits (B, K) and fills hidden. */
static float *run(const qb_model *m, const qb_weights *ref, float **hidden, float *pooled)
{
    const qb_tensor *ids = ref_tensor(ref, "input_ids");
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    float *logits = malloc(sizeof(float) * (size_t)B * m->cfg.num_labels);
    qb_forward_trace tr = {.hidden = hidden, .pooled = pooled};
    qb_status st = qb_model_forward(m, qb_backend_cpu(), ids->data, ref_tensor(ref, "token_type_ids")->data,
                                    ref_tensor(ref, "attention_mask")->data, B, T, logits, &tr);
    CHECKF(st == QB_OK, "%s", qb_error());
    return logits;
}

static float **alloc_hidden(const qb_config *c, size_t bt)
{
    float **h = calloc((size_t)c->num_layers + 1, sizeof *h);
    for (int l = 0; l <= c->num_layers; l++) h[l] = malloc(sizeof(float) * bt * c->hidden_size);
    return h;
}

static void free_hidden(float **h, int L)
{
    for (int l = 0; l <= L; l++) free(h[l]);
    free(h);
}

/* Hidden states and pooled output against the fixture (prefix "" or the model's). */
static void check_encoder(const char *what, const qb_model *m, float **hidden, const float *pooled,
                          const qb_weights *ref, size_t bt)
{
    for (int l = 0; l <= m->cfg.num_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "hidden_states.%d", l);
        double d = max_abs_diff(hidden[l], ref_tensor(ref, name)->data, bt * m->cfg.hidden_size);
        CHECKF(d <= 1e-4, "%s %s: max |diff| %g > 1e-4", what, name, d);
    }
    const qb_tensor *p = ref_tensor(ref, "pooled");
    double d = max_abs_diff(pooled, p->data, (size_t)qb_tensor_numel(p));
    CHECKF(d <= 1e-4, "%s pooled: max |diff| %g > 1e-4", what, d);
}

static void test_golden_forward(const qb_weights *ref)
{
    qb_model st_model, bin_model;
    qb_status st = qb_model_load("golden/tiny", 1, &st_model);
    CHECKF(st == QB_OK, "%s", qb_error());
    st = qb_model_load("golden/tiny_bin", 1, &bin_model);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (check_fail) return;
    const qb_tensor *ids = ref_tensor(ref, "input_ids");
    size_t bt = (size_t)(ids->shape[0] * ids->shape[1]);
    const qb_tensor *want = ref_tensor(ref, "logits");
    int B = (int)ids->shape[0], K = st_model.cfg.num_labels;
    float **hidden = alloc_hidden(&st_model.cfg, bt);
    float *pooled = malloc(sizeof(float) * (size_t)B * st_model.cfg.hidden_size);
    qb_isa saved = qb_cpu_isa();
    for (int isa = QB_ISA_SCALAR; isa <= QB_ISA_AVX512; isa++) {
        if (!qb_cpu_isa_available((qb_isa)isa)) {
            printf("skipped: %s GEMM path (not on this CPU)\n", qb_isa_name((qb_isa)isa));
            continue;
        }
        qb_cpu_set_isa((qb_isa)isa);
        char what[64];
        snprintf(what, sizeof what, "safetensors/%s", qb_isa_name((qb_isa)isa));
        float *a = run(&st_model, ref, hidden, pooled);
        double d = max_abs_diff(a, want->data, (size_t)B * K);
        CHECKF(d <= 1e-4, "%s logits: max |diff| %g > 1e-4", what, d);
        check_encoder(what, &st_model, hidden, pooled, ref, bt);
        snprintf(what, sizeof what, "pytorch_model.bin/%s", qb_isa_name((qb_isa)isa));
        float *b = run(&bin_model, ref, hidden, pooled);
        check_encoder(what, &bin_model, hidden, pooled, ref, bt);
        /* Same weights, same kernels: the two formats must agree bit for bit. */
        CHECKF(memcmp(a, b, sizeof(float) * (size_t)B * K) == 0, "%s: logits differ between formats", what);
        printf("%s: logits max |diff| vs transformers %.3g\n", qb_isa_name((qb_isa)isa), d);
        free(a);
        free(b);
    }
    qb_cpu_set_isa(saved);
    CHECK(st_model.cfg.num_labels == 3 && strcmp(st_model.cfg.id2label[2], "negative") == 0);
    CHECK(qb_config_label_id(&st_model.cfg, "neutral") == 1);
    free(pooled);
    free_hidden(hidden, st_model.cfg.num_layers);
    qb_model_free(&st_model);
    qb_model_free(&bin_model);
}

/* F16 / BF16 files are widened to F32 on load; transformers' reference ran the
 * same rounded weights in FP32. */
static void test_half_files(const qb_weights *ref)
{
    const char *dirs[] = {"golden/tiny_f16", "golden/tiny_bf16"}, *keys[] = {"logits_f16", "logits_bf16"};
    for (int i = 0; i < 2; i++) {
        qb_model m;
        qb_status st = qb_model_load(dirs[i], 1, &m);
        CHECKF(st == QB_OK, "%s: %s", dirs[i], qb_error());
        if (st) continue;
        float *lg = run(&m, ref, NULL, NULL);
        const qb_tensor *want = ref_tensor(ref, keys[i]);
        double d = max_abs_diff(lg, want->data, (size_t)qb_tensor_numel(want));
        CHECKF(d <= 1e-4, "%s logits: max |diff| %g > 1e-4", dirs[i], d);
        free(lg);
        qb_model_free(&m);
    }
}

static void test_pretrained_only(void)
{
    qb_weights ref = {0};
    qb_status st = qb_safetensors_load("golden/pretrained_only_forward.safetensors", false, &ref);
    CHECKF(st == QB_OK, "%s", qb_error());
    qb_weights batch = {0};
    st = qb_safetensors_load("golden/tiny_forward.safetensors", false, &batch);
    CHECKF(st == QB_OK, "%s", qb_error());
    qb_model m;
    st = qb_model_load("golden/pretrained_only", 7, &m);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (check_fail) return;
    const qb_tensor *ids = ref_tensor(&batch, "input_ids");
    size_t bt = (size_t)(ids->shape[0] * ids->shape[1]);
    float **hidden = alloc_hidden(&m.cfg, bt);
    float *pooled = malloc(sizeof(float) * (size_t)ids->shape[0] * m.cfg.hidden_size);
    float *lg = run(&m, &batch, hidden, pooled);
    check_encoder("pretrained_only", &m, hidden, pooled, &ref, bt);
    /* The new head follows transformers' init: normal(0, 0.02) weights, zero bias. */
    int n = m.cfg.num_labels * m.cfg.hidden_size;
    double sum2 = 0;
    for (int i = 0; i < n; i++) sum2 += (double)m.classifier.w[i] * m.classifier.w[i];
    double std = sqrt(sum2 / n);
    CHECKF(std > 0.01 && std < 0.03, "classifier init std %g, expected about 0.02", std);
    CHECK(m.classifier.b[0] == 0.0f && m.classifier.b[m.cfg.num_labels - 1] == 0.0f);
    CHECK(isfinite(lg[0]));
    /* Same seed, same head. */
    qb_model m2;
    st = qb_model_load("golden/pretrained_only", 7, &m2);
    CHECK(st == QB_OK && memcmp(m.classifier.w, m2.classifier.w, sizeof(float) * n) == 0);
    if (!st) qb_model_free(&m2);
    free(lg);
    free(pooled);
    free_hidden(hidden, m.cfg.num_layers);
    qb_model_free(&m);
    qb_weights_free(&ref);
    qb_weights_free(&batch);
}

/* The C tokenizer gives the ids transformers' BertTokenizer gave for the fixture texts. */
static void test_tokenizer_ids(const qb_weights *ref)
{
    qb_tokenizer *tok;
    qb_status st = qb_tokenizer_load("golden/tiny", &tok);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st) return;
    char *text;
    size_t len;
    st = qb_read_file("golden/tiny_texts.txt", &text, &len);
    CHECKF(st == QB_OK, "%s", qb_error());
    const char *lines[16];
    int n = 0;
    for (char *p = text; *p && n < 16; n++) {
        lines[n] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    const qb_tensor *want = ref_tensor(ref, "raw_input_ids");
    qb_encoding enc;
    st = qb_encode_batch(tok, lines, n, (int)want->shape[1], (int)want->shape[1], &enc);
    CHECKF(st == QB_OK, "%s", qb_error());
    CHECK(enc.batch == want->shape[0] && enc.seq == want->shape[1]);
    if (!st && enc.batch == want->shape[0] && enc.seq == want->shape[1])
        CHECK(memcmp(enc.input_ids, want->data, sizeof(int32_t) * (size_t)enc.batch * enc.seq) == 0 &&
              memcmp(enc.attention_mask, ref_tensor(ref, "raw_attention_mask")->data,
                     sizeof(int32_t) * (size_t)enc.batch * enc.seq) == 0);
    if (!st) qb_encoding_free(&enc);
    free(text);
    qb_tokenizer_free(tok);
}

/* --- bad input --------------------------------------------------------------- */

static char tmpdir[64];

static void write_text(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void expect_config_error(const char *json, const char *needle)
{
    qb_config c;
    qb_status st = qb_config_parse(json, strlen(json), "config.json", &c);
    CHECKF(st != QB_OK && strstr(qb_error(), needle) && strstr(qb_error(), "config.json"),
           "config %s: status %d, message \"%s\" lacks \"%s\"", json, st, qb_error(), needle);
    if (st == QB_OK) qb_config_free(&c);
}

static void test_config_errors(void)
{
    expect_config_error("{", "not valid JSON");
    expect_config_error("[1]", "JSON object");
    expect_config_error("{\"hidden_size\": 32}", "vocab_size");
    expect_config_error("{\"vocab_size\": \"big\", \"hidden_size\": 32}", "vocab_size");
    expect_config_error("{\"vocab_size\": 10, \"hidden_size\": 32.5}", "hidden_size");
    expect_config_error("{\"model_type\": \"gpt2\"}", "model_type");
    const char *base = "\"vocab_size\": 10, \"hidden_size\": 32, \"num_hidden_layers\": 1, "
                       "\"intermediate_size\": 8";
    const char *heads = "\"num_attention_heads\": 4";
    char json[1024];
    snprintf(json, sizeof json, "{%s, %s}", base, heads);
    qb_config c;
    CHECKF(qb_config_parse(json, strlen(json), "ok.json", &c) == QB_OK, "%s", qb_error());
    CHECK(c.num_labels == 2 && strcmp(c.id2label[1], "LABEL_1") == 0 && c.max_position == 512);
    qb_config_free(&c);
    snprintf(json, sizeof json, "{%s, \"num_attention_heads\": 5}", base);
    expect_config_error(json, "multiple");
    snprintf(json, sizeof json, "{%s}", base);
    expect_config_error(json, "num_attention_heads");
    snprintf(json, sizeof json, "{%s, %s, \"hidden_act\": \"relu\"}", base, heads);
    expect_config_error(json, "hidden_act");
    snprintf(json, sizeof json, "{%s, %s, \"layer_norm_eps\": \"x\"}", base, heads);
    expect_config_error(json, "layer_norm_eps");
    snprintf(json, sizeof json, "{%s, %s, \"id2label\": {\"0\": \"a\", \"2\": \"b\"}}", base, heads);
    expect_config_error(json, "id2label");
    snprintf(json, sizeof json, "{%s, %s, \"id2label\": {\"0\": \"a\", \"1\": 5}}", base, heads);
    expect_config_error(json, "id2label");
    snprintf(json, sizeof json, "{%s, %s, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}, \"label2id\": {\"a\": 1}}", base, heads);
    expect_config_error(json, "label2id");
}

/* A model directory with the tiny config and a subset of its tensors. */
static void test_weight_errors(void)
{
    char path[256], *cfg_text;
    size_t len;
    qb_weights w = {0};
    CHECK(qb_read_file("golden/tiny/config.json", &cfg_text, &len) == QB_OK);
    CHECK(qb_safetensors_load("golden/tiny/model.safetensors", true, &w) == QB_OK);
    write_text("config.json", cfg_text);
    free(cfg_text);
    qb_model m;
    /* no weight file at all */
    qb_status st = qb_model_load(tmpdir, 1, &m);
    CHECKF(st == QB_ENOTFOUND && strstr(qb_error(), "model.safetensors"), "%s", qb_error());
    /* a missing encoder tensor */
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    int gone = qb_weights_find(&w, "bert.encoder.layer.1.output.dense.weight");
    CHECK(gone >= 0);
    qb_weights partial = {0};
    for (int i = 0; i < w.count; i++)
        if (i != gone) {
            qb_tensor view = w.tensors[i];
            view.owned = false;
            qb_weights_add(&partial, w.names[i], view);
        }
    CHECK(qb_safetensors_save(path, &partial, NULL) == QB_OK);
    st = qb_model_load(tmpdir, 1, &m);
    CHECKF(st == QB_ENOTFOUND && strstr(qb_error(), "layer.1.output.dense.weight"), "%s", qb_error());
    /* a tensor of the wrong shape */
    qb_tensor small;
    int64_t shape[2] = {3, 3};
    qb_tensor_alloc(&small, QB_F32, 2, shape);
    qb_weights_add(&partial, "bert.encoder.layer.1.output.dense.weight", small);
    CHECK(qb_safetensors_save(path, &partial, NULL) == QB_OK);
    st = qb_model_load(tmpdir, 1, &m);
    CHECKF(st == QB_EFORMAT && strstr(qb_error(), "[3, 3]") && strstr(qb_error(), "expected F32 [32, 64]"),
           "%s", qb_error());
    /* token ids outside the vocabulary are rejected before any kernel runs */
    CHECK(qb_model_load("golden/tiny", 1, &m) == QB_OK);
    int32_t ids[2] = {2, 1000};
    float lg[6];
    st = qb_model_forward(&m, qb_backend_cpu(), ids, NULL, NULL, 1, 2, lg, NULL);
    CHECKF(st == QB_EINVAL && strstr(qb_error(), "vocabulary"), "%s", qb_error());
    int32_t long_ids[65] = {0};
    st = qb_model_forward(&m, qb_backend_cpu(), long_ids, NULL, NULL, 1, 65, lg, NULL);
    CHECKF(st == QB_EINVAL && strstr(qb_error(), "max_position"), "%s", qb_error());
    qb_model_free(&m);
    qb_weights_free(&partial);
    qb_weights_free(&w);
}

/* init -> save -> load round trip keeps every parameter and the labels. */
static void test_save_roundtrip(void)
{
    qb_config cfg;
    CHECK(qb_config_preset("bert-tiny", &cfg) == QB_OK);
    cfg.vocab_size = 50;
    qb_model a, b;
    CHECK(qb_model_init_random(&cfg, 3, &a) == QB_OK);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/saved", tmpdir);
    qb_status st = qb_model_save(&a, dir);
    CHECKF(st == QB_OK, "%s", qb_error());
    st = qb_model_load(dir, 9, &b);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st) return;
    CHECK(a.weights.count == b.weights.count);
    for (int i = 0; i < a.weights.count && i < b.weights.count; i++)
        CHECK(strcmp(a.weights.names[i], b.weights.names[i]) == 0 &&
              memcmp(a.weights.tensors[i].data, b.weights.tensors[i].data, qb_tensor_nbytes(&a.weights.tensors[i])) == 0);
    CHECK(strcmp(b.cfg.id2label[0], "positive") == 0 && b.cfg.vocab_size == 50);
    /* the padding row is zero, as transformers initialises it */
    float zero = 0;
    for (int c = 0; c < a.cfg.hidden_size; c++) zero += fabsf(a.word_emb[c]);
    CHECK(zero == 0.0f);
    qb_model_free(&a);
    qb_model_free(&b);
}

/* qb_model_to_backend / zeros_like / to_host / from_host through the CPU backend (a backend like
 * any other, so this runs everywhere; tests/test_cuda_model.c does it on a GPU): the
 * copy is one allocation holding every parameter bit for bit at new addresses and
 * gives the same logits; zeros_like of it lives in the same backend and qb_model_zero
 * clears it; to_host brings changes back, from_host takes them there; copying a
 * backend model again is refused. */
static void test_backend_copy(void)
{
    const qb_backend *be = qb_backend_cpu();
    qb_config cfg;
    CHECK(qb_config_preset("bert-tiny", &cfg) == QB_OK);
    cfg.vocab_size = 50;
    qb_model m, dm, z, again, back;
    CHECK(qb_model_init_random(&cfg, 5, &m) == QB_OK);
    qb_status st = qb_model_to_backend(&m, be, QB_WEIGHTS_FP32, QB_F32, &dm);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st) {
        qb_model_free(&m);
        return;
    }
    CHECK(dm.mem_be == be && dm.mem && dm.weights.count == m.weights.count && !m.mem_be);
    for (int i = 0; i < m.weights.count; i++) {
        const qb_tensor *a = &m.weights.tensors[i], *b = &dm.weights.tensors[i];
        CHECKF(strcmp(m.weights.names[i], dm.weights.names[i]) == 0 && a->data != b->data &&
                   memcmp(a->data, b->data, qb_tensor_nbytes(a)) == 0 && !b->owned &&
                   (char *)b->data >= (char *)dm.mem,
               "tensor %s", m.weights.names[i]);
    }
    CHECK(dm.word_emb == dm.weights.tensors[0].data && dm.classifier.w && dm.classifier.w != m.classifier.w);
    int32_t ids[6] = {2, 7, 9, 3, 11, 0};
    float la[6], lb[6];
    CHECK(qb_model_forward(&m, be, ids, NULL, NULL, 2, 3, la, NULL) == QB_OK);
    CHECK(qb_model_forward(&dm, be, ids, NULL, NULL, 2, 3, lb, NULL) == QB_OK);
    CHECK(memcmp(la, lb, sizeof la) == 0);

    CHECK(qb_model_zeros_like(&dm, &z) == QB_OK && z.mem_be == be && z.mem);
    double sum = 0.0;
    for (int i = 0; i < z.weights.count; i++)
        for (int64_t j = 0; j < qb_tensor_numel(&z.weights.tensors[i]); j++)
            sum += fabsf(((float *)z.weights.tensors[i].data)[j]);
    CHECK(sum == 0.0);

    dm.classifier.b[1] = 42.0f;
    z.word_emb[3] = 1.0f, z.classifier.b[0] = -2.0f;
    qb_model_zero(&z, be);
    CHECK(z.word_emb[3] == 0.0f && z.classifier.b[0] == 0.0f);
    CHECK(qb_model_zeros_like(&m, &back) == QB_OK && !back.mem_be);
    qb_model_to_host(&dm, &back);
    CHECK(back.classifier.b[1] == 42.0f && memcmp(back.word_emb, m.word_emb, (size_t)50 * cfg.hidden_size * 4) == 0);
    back.pooler.w[7] = -3.0f;
    qb_model_from_host(&back, &dm);  /* and back again: a checkpoint loaded on the host */
    CHECK(dm.pooler.w[7] == -3.0f && dm.classifier.b[1] == 42.0f && dm.pooler.w != back.pooler.w);

    CHECK(qb_model_to_backend(&dm, be, QB_WEIGHTS_FP32, QB_F32, &again) == QB_EINVAL &&
          strstr(qb_error(), "already in cpu memory"));
    CHECK(qb_model_to_backend(&m, be, QB_WEIGHTS_HALF, QB_I8, &again) == QB_EINVAL &&
          strstr(qb_error(), "F16 or BF16"));
    qb_model_free(&again);
    qb_model_free(&back);
    qb_model_free(&z);
    qb_model_free(&dm);
    qb_model_free(&m);
}

/* Whether the n values at half (t) are those at f rounded to nearest. */
static bool rounded_copy(const void *half, qb_dtype t, const float *f, size_t n)
{
    const uint16_t *h = half;
    for (size_t i = 0; i < n; i++) {
        const float v = t == QB_BF16 ? qb_bf16_to_f32(h[i]) : qb_f16_to_f32(h[i]);
        if (v != qb_math_round(f[i], t == QB_BF16 ? QB_MATH_BF16 : QB_MATH_FP16)) return false;
    }
    return true;
}

/* The half copies of qb_model_to_backend through the CPU backend (memory like any
 * other): with FP32 masters (QB_WEIGHTS_FP32_AND_HALF) every encoder Linear's weight
 * and bias and the embedding tables have half copies, the rounded masters, that
 * qb_model_refresh_half remakes after the masters change; in half only
 * (QB_WEIGHTS_HALF) the encoder's matrices have no FP32 copy while its vectors, the
 * LayerNorms and the head keep theirs. The CPU stores activations in FP32 only
 * (no QB_CAN_HALF), so its passes ignore the copies, and refuse a model without the
 * FP32 matrices, naming the math to run it with; qb_model_half_type asks for none. */
static void test_half_copies(void)
{
    const qb_backend *be = qb_backend_cpu();
    qb_config cfg;
    CHECK(qb_config_preset("bert-tiny", &cfg) == QB_OK);
    cfg.vocab_size = 50;
    qb_model m, both, only;
    CHECK(qb_model_init_random(&cfg, 6, &m) == QB_OK);
    CHECK(qb_model_half_type(&m, be, QB_MATH_BF16) == QB_F32);
    const qb_dtype types[2] = {QB_BF16, QB_F16};
    for (int k = 0; k < 2; k++) {
        const qb_dtype t = types[k];
        if (qb_model_to_backend(&m, be, QB_WEIGHTS_FP32_AND_HALF, t, &both) ||
            qb_model_to_backend(&m, be, QB_WEIGHTS_HALF, t, &only)) {
            CHECKF(false, "%s", qb_error());
            qb_model_free(&m);
            return;
        }
        const int C = cfg.hidden_size, I = cfg.intermediate_size;
        CHECK(both.half == t && only.half == t && both.word_emb && !only.word_emb && only.emb_h[0]);
        CHECK(rounded_copy(both.emb_h[0], t, m.word_emb, (size_t)50 * C) &&
              rounded_copy(only.emb_h[1], t, m.pos_emb, (size_t)cfg.max_position * C));
        for (int l = 0; l < cfg.num_layers; l++) {
            const qb_layer_params *h = &both.layers[l], *o = &only.layers[l], *p = &m.layers[l];
            CHECKF(rounded_copy(h->q.wh, t, p->q.w, (size_t)C * C) && rounded_copy(h->out.wh, t, p->out.w, (size_t)C * I) &&
                       rounded_copy(o->inter.wh, t, p->inter.w, (size_t)I * C) &&
                       rounded_copy(o->inter.bh, t, p->inter.b, (size_t)I),
                   "layer %d: half copies", l);
            CHECK(!o->q.w && o->q.b && o->ln_attn.g && h->q.w && h->q.w != p->q.w);
        }
        CHECK(only.pooler.w && only.classifier.w && !only.pooler.wh && !both.classifier.wh);
        /* masters changed (an optimizer step): the copies follow once remade */
        both.layers[1].v.w[5] = 3.0f, both.word_emb[7] = -0.5f;
        qb_model_refresh_half(&both, NULL);
        CHECK(rounded_copy(both.layers[1].v.wh, t, both.layers[1].v.w, (size_t)C * C) &&
              rounded_copy(both.emb_h[0], t, both.word_emb, (size_t)50 * C));
        /* FP32 passes on the CPU: the copies do not change the logits; half only is refused */
        int32_t ids[6] = {2, 7, 9, 3, 11, 0};
        float la[6], lb[6];
        CHECK(qb_model_forward(&m, be, ids, NULL, NULL, 2, 3, la, NULL) == QB_OK);
        both.layers[1].v.w[5] = m.layers[1].v.w[5], both.word_emb[7] = m.word_emb[7];
        CHECK(qb_model_forward(&both, be, ids, NULL, NULL, 2, 3, lb, NULL) == QB_OK && memcmp(la, lb, sizeof la) == 0);
        CHECK(qb_model_forward(&only, be, ids, NULL, NULL, 2, 3, lb, NULL) == QB_EINVAL &&
              strstr(qb_error(), t == QB_BF16 ? "math bf16" : "math fp16"));
        qb_model_free(&both);
        qb_model_free(&only);
    }
    qb_model_free(&m);
}

/* A backend copy keeps each layer's query, key and value weights back to back and
 * runs them as one (M, 3C) GEMM; a loaded model (one tensor per weight) runs three.
 * The two agree: logits exactly (each output element is the same dot product), the
 * loss and gradients up to summation order (the input gradient sums over 3C at once). */
static void test_fused_qkv(void)
{
    enum { B = 2, T = 5 };
    const qb_backend *be = qb_backend_cpu();
    qb_config cfg;
    CHECK(qb_config_preset("bert-tiny", &cfg) == QB_OK);
    cfg.vocab_size = 40;
    const size_t CC = (size_t)cfg.hidden_size * cfg.hidden_size;
    qb_model m, c, gm, gc;
    qb_activations *am, *ac;
    if (qb_model_init_random(&cfg, 11, &m) || qb_model_to_backend(&m, be, QB_WEIGHTS_FP32, QB_F32, &c) ||
        qb_model_zeros_like(&m, &gm) || qb_model_zeros_like(&c, &gc) || qb_activations_new(&m, be, true, &am) ||
        qb_activations_new(&c, be, true, &ac)) {
        fprintf(stderr, "fused QKV setup: %s\n", qb_error());
        exit(1);
    }
    CHECK(c.layers[1].k.w == c.layers[1].q.w + CC && c.layers[1].v.b == c.layers[1].k.b + cfg.hidden_size);
    CHECK(m.layers[1].k.w != m.layers[1].q.w + CC);  /* the separate path really is separate */
    int32_t ids[B * T] = {2, 7, 9, 3, 11, 5, 1, 30, 0, 0}, mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    int32_t labels[B] = {0, 1};
    float lm[B * QB_MAX_LABELS], lc[B * QB_MAX_LABELS], loss_m, loss_c;
    const size_t bytes = (size_t)B * cfg.num_labels * sizeof *lm;
    CHECK(qb_model_infer(&m, am, ids, NULL, mask, B, T, lm, NULL) == QB_OK &&
          qb_model_infer(&c, ac, ids, NULL, mask, B, T, lc, NULL) == QB_OK && memcmp(lm, lc, bytes) == 0);
    const qb_batch batch = {ids, NULL, mask, labels, B, T};
    const qb_dropout_plan drop = {0.1f, 0.1f, 5, 0, NULL};
    CHECK(qb_model_forward_backward(&m, am, &batch, &drop, 1.0f / B, &gm, &loss_m, NULL) == QB_OK &&
          qb_model_forward_backward(&c, ac, &batch, &drop, 1.0f / B, &gc, &loss_c, NULL) == QB_OK);
    CHECKF(loss_m == loss_c, "loss %.9g fused, %.9g separate", loss_c, loss_m);
    bool *noisy = calloc((size_t)gm.weights.count, sizeof *noisy);
    compare_grads(&gc, &gm, noisy, 1e-5, 1e-6);
    free(noisy);
    qb_activations_free(am), qb_activations_free(ac);
    qb_model_free(&gm), qb_model_free(&gc), qb_model_free(&c), qb_model_free(&m);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qbert-model-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    qb_weights ref = {0};
    qb_status st = qb_safetensors_load("golden/tiny_forward.safetensors", false, &ref);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st == QB_OK) {
        test_golden_forward(&ref);
        test_half_files(&ref);
        test_tokenizer_ids(&ref);
    }
    test_pretrained_only();
    test_config_errors();
    test_weight_errors();
    test_save_roundtrip();
    test_backend_copy();
    test_half_copies();
    test_fused_qkv();
    qb_weights_free(&ref);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_model");
}
