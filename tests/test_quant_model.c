/* Quantized model files: every scheme written from a random FP32 model and loaded
 * back holds exactly the integers and scales of the one quantizer; the forward pass
 * of the loaded file against FP32 (weight-only INT4 bit for bit against the FP32
 * model with fake-quantized weights); calibration against statistics taken from
 * the forward trace; file sizes against the FP32 file; and files whose metadata and
 * tensors disagree, each a clear error. */
#include "check.h"

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/io.h"
#include "qbert/model.h"
#include "qbert/quant.h"
#include "qbert/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmpdir[64];
static uint64_t seed;

static const char *in_tmp(const char *name)
{
    static char path[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
    return path[k];
}

static void tiny_config(qb_config *c, int C, int I, int V)
{
    qb_status st = qb_config_preset("bert-tiny", c);
    if (st) exit(1);
    c->hidden_size = C, c->intermediate_size = I, c->vocab_size = V, c->max_position = 64;
}

/* A model directory DIR (config.json) whose weights file the caller writes. */
static const char *model_dir(const char *name, const qb_config *c)
{
    const char *dir = in_tmp(name);
    mkdir(dir, 0755);
    char path[300], *json = qb_config_to_json(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    qb_status st = qb_write_file_atomic(path, json, strlen(json));
    free(json);
    CHECK(st == QB_OK);
    return dir;
}

static const char *weights_path(const char *dir)
{
    static char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return path;
}

/* Writes m under `scheme` into DIR/model.safetensors and loads it back. */
static qb_status quantize_load(const qb_model *m, const char *dir, const char *scheme, int group, qb_qact act,
                               const float *act_scale, qb_model *out)
{
    qb_qplan plan = {.act_scale = act_scale};
    qb_status st = qb_qscheme_get(scheme, group, &plan.scheme);
    if (!st && act_scale) plan.scheme.act = QB_ACT_STATIC;
    if (!st && act == QB_ACT_F32) plan.scheme.act = act;
    if (!st) st = qb_quant_save(m, &plan, weights_path(dir));
    if (!st) st = qb_model_load(dir, 1, out);
    return st;
}

/* Whether a load worked (a failed check otherwise: the caller stops). */
static bool loaded(qb_status st)
{
    CHECKF(st == QB_OK, "%s", qb_error());
    return st == QB_OK;
}

static const float *tensor(const qb_model *m, const char *name)
{
    const int i = qb_weights_find(&m->weights, name);
    return i >= 0 ? m->weights.tensors[i].data : NULL;
}

/* The integers and scales of every Linear and the dequantized embedding tables of
 * the loaded q against the quantizer run on the FP32 model's tensors. */
static void check_integers(const qb_model *f, const qb_model *q, int bits, int group, bool per_tensor)
{
    const int n_lin = qb_config_linears(&f->cfg, NULL);
    CHECK(q->n_qlinear == n_lin);
    int bad = 0;
    for (int i = 0; i < n_lin && i < q->n_qlinear; i++) {
        const qb_linear_params *fp = qb_model_linear(f, i), *qp = qb_model_linear(q, i);
        const qb_qlinear *ql = qp->q;
        if (!ql || qp->w || ql->bits != bits) {
            bad++;
            continue;
        }
        const int N = ql->N, K = ql->K, g = bits == 8 || per_tensor ? K : group;
        int8_t *want = malloc((size_t)N * K);
        float *sc = malloc((size_t)N * K * sizeof *sc);
        if (per_tensor) qb_cpu_quantize_groups(want, NULL, sc, fp->w, 1, N * K, N * K, 4);
        else qb_cpu_quantize_groups(want, NULL, sc, fp->w, N, K, g, bits);
        bad += ql->group != g || memcmp(want, ql->wq, (size_t)N * K) != 0;
        for (int j = 0; j < N * (K / g); j++) bad += ql->scales[j] != sc[per_tensor ? 0 : j];
        for (int n = 0; n < N; n++) bad += qp->b[n] != fp->b[n];
        free(want), free(sc);
    }
    CHECKF(bad == 0, "%d-bit Linears: %d mismatches", bits, bad);
    /* Embedding tables: per row (INT8) or per group of a row (INT4), dequantized at load. */
    const float *tabs[3][2] = {{f->word_emb, q->word_emb}, {f->pos_emb, q->pos_emb}, {f->type_emb, q->type_emb}};
    const int rows[3] = {f->cfg.vocab_size, f->cfg.max_position, f->cfg.type_vocab_size}, C = f->cfg.hidden_size;
    for (int t = 0; t < 3; t++) {
        float *y = malloc((size_t)rows[t] * C * sizeof *y), *sc = malloc((size_t)rows[t] * C * sizeof *sc);
        qb_cpu_quantize_groups(NULL, y, sc, tabs[t][0], rows[t], C, bits == 8 ? C : group, bits);
        size_t j = 0;
        while (j < (size_t)rows[t] * C && y[j] == tabs[t][1][j]) j++;
        CHECKF(j == (size_t)rows[t] * C, "embedding table %d: [%zu] %g != %g", t, j, tabs[t][1][j], y[j]);
        free(y), free(sc);
    }
    CHECK(memcmp(tensor(f, "bert.encoder.layer.1.output.LayerNorm.weight"),
                 tensor(q, "bert.encoder.layer.1.output.LayerNorm.weight"), (size_t)C * 4) == 0);
}

enum { B = 3, T = 9 };
static int32_t ids[B * T], mask[B * T];

/* The last hidden state (B, T, C) of m on the test batch; prepared or not. */
static float *last_hidden(qb_model *m, bool prepare)
{
    const int C = m->cfg.hidden_size, L = m->cfg.num_layers;
    float **hidden = calloc((size_t)L + 1, sizeof *hidden), logits[B * 3];
    for (int l = 0; l <= L; l++) hidden[l] = malloc((size_t)B * T * C * sizeof(float));
    qb_forward_trace tr = {.hidden = hidden};
    if (prepare) CHECK(qb_model_prepare(m, qb_backend_cpu(), NULL) == QB_OK);
    CHECKF(qb_model_forward(m, qb_backend_cpu(), ids, NULL, mask, B, T, logits, &tr) == QB_OK, "%s", qb_error());
    float *out = hidden[L];
    for (int l = 0; l < L; l++) free(hidden[l]);
    free(hidden);
    return out;
}

/* Query, key and value joined (qb_model_join_qkv: per-token inputs alike; joined
 * iff `joinable`) and run as one GEMM on a backend copy of q, against q's three: the
 * same bits, unprepared (the scalar reference) and prepared (the u8 tiles). */
static void check_joined(qb_model *q, bool joinable)
{
    const qb_backend *cpu = qb_backend_cpu();
    CHECK(qb_model_join_qkv(q) == QB_OK);
    CHECKF((q->layers[1].qkv != NULL) == joinable, "%s: joined %d", q->scheme, q->layers[1].qkv != NULL);
    qb_model c;
    if (!joinable || qb_model_to_backend(q, cpu, QB_WEIGHTS_FP32, QB_F32, &c) != QB_OK) return;
    CHECK(c.layers[1].qkv == q->layers[1].qkv && c.layers[1].k.b == c.layers[1].q.b + q->cfg.hidden_size);
    for (int prepare = 0; prepare < 2; prepare++) {
        float apart[B * 3], joined[B * 3];
        if (prepare) CHECK(qb_model_prepare(q, cpu, NULL) == QB_OK);
        CHECK(qb_model_forward(q, cpu, ids, NULL, mask, B, T, apart, NULL) == QB_OK);
        CHECK(qb_model_forward(&c, cpu, ids, NULL, mask, B, T, joined, NULL) == QB_OK);
        CHECKF(memcmp(apart, joined, sizeof apart) == 0, "%s, prepared %d: joined QKV logits differ", q->scheme,
               prepare);
    }
    qb_model_free(&c);
}

/* Each prepared (packed, SIMD) Linear of q against its unprepared (scalar reference)
 * self on fresh inputs, bit for bit (no GELU: the fused one's erf differs); a
 * dynamic one also when handed its input already quantized (as a LayerNorm does),
 * and refusing (NaN out) a quantized input laid out for another shape. */
static bool linears_prepared_match_reference(qb_model *q)
{
    enum { M = 11 };
    qb_rng rng;
    qb_rng_init(&rng, seed + 5);
    int bad = 0;
    for (int i = 0; i < q->n_qlinear; i++) {
        qb_qlinear *ql = &q->qlinear[i];
        float *x = malloc((size_t)M * ql->K * sizeof *x), *ys = malloc((size_t)M * ql->N * sizeof *ys);
        float *yr = malloc((size_t)M * ql->N * sizeof *yr);
        for (int j = 0; j < M * ql->K; j++) x[j] = qb_rng_normal(&rng, 0, 1);
        qb_backend_cpu()->linear_q(NULL, ys, NULL, x, NULL, ql, NULL, M, 0, QB_F32);
        if (qb_qlinear_dynamic(ql)) {
            qb_qinput xq;
            CHECK(qb_qinput_alloc(&xq, M, ql->K) == QB_OK);
            qb_qinput_quantize(&xq, x);
            qb_backend_cpu()->linear_q(NULL, yr, NULL, NULL, &xq, ql, NULL, M, 0, QB_F32);
            bad += memcmp(ys, yr, (size_t)M * ql->N * sizeof *ys) != 0;
            qb_qinput_free(&xq);
            CHECK(qb_qinput_alloc(&xq, M + 1, ql->K) == QB_OK);
            qb_log_set_level(QB_LOG_QUIET);
            qb_backend_cpu()->linear_q(NULL, yr, NULL, NULL, &xq, ql, NULL, M, 0, QB_F32);
            qb_log_set_level(QB_LOG_ERROR);
            bad += !isnan(yr[0]) || !isnan(yr[(size_t)M * ql->N - 1]);
            qb_qinput_free(&xq);
        }
        void *prepared = ql->prepared;
        ql->prepared = NULL;
        qb_backend_cpu()->linear_q(NULL, yr, NULL, x, NULL, ql, NULL, M, 0, QB_F32);
        ql->prepared = prepared;
        bad += memcmp(ys, yr, (size_t)M * ql->N * sizeof *ys) != 0;
        free(x), free(ys), free(yr);
    }
    return bad == 0;
}

static void test_schemes(void)
{
    qb_config c;
    tiny_config(&c, 128, 512, 300);
    qb_model f;
    CHECK(qb_model_init_random(&c, seed, &f) == QB_OK);
    /* Pretrained-like scale: random N(0, 0.02) weights make every layer near-linear. */
    for (int i = 0; i < f.weights.count; i++) {
        float *d = f.weights.tensors[i].data;
        for (int64_t j = 0; f.weights.tensors[i].ndim == 2 && j < qb_tensor_numel(&f.weights.tensors[i]); j++)
            d[j] *= 4.0f;
    }
    qb_rng rng;
    qb_rng_init(&rng, seed + 1);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(qb_rng_u32(&rng) % (uint32_t)c.vocab_size);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t < T - 3 * b;  /* rows of 9, 6 and 3 tokens */
    const size_t MC = (size_t)B * T * c.hidden_size;
    float *ref = last_hidden(&f, false);
    const char *dir = model_dir("schemes", &c);
    qb_model q;

    /* int8-dynamic: exact integers; each prepared (u8 tile) Linear gives its
     * reference's bits. End to end the two agree only loosely: the fused GELU's erf
     * differs in the last bit, and a value that near a rounding boundary lands on the
     * other integer in the next Linear's input. Both stay near FP32 (within 0.04: the
     * activations' 7-bit grid, gemm_u8.c, gives 0.023-0.027 here). */
    if (!loaded(quantize_load(&f, dir, "int8-dynamic", 0, QB_ACT_DYNAMIC, NULL, &q))) return;
    CHECK(strcmp(q.scheme, "int8-dynamic") == 0);
    check_integers(&f, &q, 8, 0, false);
    float *h_ref = last_hidden(&q, false), *h_simd = last_hidden(&q, true);
    CHECK(linears_prepared_match_reference(&q));
    CHECKF(rel_l2(h_simd, h_ref, MC) < 0.03, "int8 prepared vs reference: %g", rel_l2(h_simd, h_ref, MC));
    CHECKF(rel_l2(h_ref, ref, MC) < 0.04, "int8-dynamic vs FP32: %g", rel_l2(h_ref, ref, MC));
    double e8 = rel_l2(h_ref, ref, MC);
    free(h_ref), free(h_simd);
    check_joined(&q, true);
    qb_model_free(&q);

    /* int8-static: the scales written are the ones loaded. */
    const int n_lin = qb_config_linears(&c, NULL);
    float *act = malloc((size_t)n_lin * sizeof *act);
    for (int i = 0; i < n_lin; i++) act[i] = 0.05f + 0.001f * i;
    if (!loaded(quantize_load(&f, dir, "int8-static", 0, QB_ACT_STATIC, act, &q))) return;
    int bad = 0;
    for (int i = 0; i < n_lin; i++) bad += qb_model_linear(&q, i)->q->act_scale != act[i];
    CHECK(bad == 0);
    check_integers(&f, &q, 8, 0, false);
    check_joined(&q, false);  /* a scale per Linear: not one GEMM */
    qb_model_free(&q);

    /* int4 per group: exact integers, W4A8 prepared = reference, close to FP32. */
    if (!loaded(quantize_load(&f, dir, "int4", 32, QB_ACT_DYNAMIC, NULL, &q))) return;
    check_integers(&f, &q, 4, 32, false);
    h_ref = last_hidden(&q, false), h_simd = last_hidden(&q, true);
    CHECK(linears_prepared_match_reference(&q));
    CHECKF(rel_l2(h_simd, h_ref, MC) < 1e-5, "int4 prepared vs reference: %g", rel_l2(h_simd, h_ref, MC));
    double e4 = rel_l2(h_ref, ref, MC);
    CHECKF(e4 < 0.3 && e4 > e8, "int4 vs FP32: %g (int8 %g)", e4, e8);
    free(h_ref), free(h_simd);
    check_joined(&q, true);
    qb_model_free(&q);

    /* int4 per tensor: one scale per Linear weight. */
    if (!loaded(quantize_load(&f, dir, "int4-tensor", 32, QB_ACT_DYNAMIC, NULL, &q))) return;
    check_integers(&f, &q, 4, 32, true);
    qb_model_free(&q);

    /* Weight-only INT4 (FP32 inputs) is the FP32 model with fake-quantized weights and
     * embedding tables, bit for bit. */
    if (!loaded(quantize_load(&f, dir, "int4", 32, QB_ACT_F32, NULL, &q))) return;
    qb_model fq;
    CHECK(qb_model_zeros_like(&f, &fq) == QB_OK);
    for (int i = 0; i < f.weights.count; i++) {
        const qb_tensor *t = &f.weights.tensors[i];
        memcpy(fq.weights.tensors[i].data, t->data, qb_tensor_nbytes(t));
    }
    float *sc = malloc((size_t)c.vocab_size * c.hidden_size * sizeof *sc);
    for (int i = 0; i < n_lin; i++) {
        const qb_linear_params *p = qb_model_linear(&fq, i);
        const qb_qlinear *ql = qb_model_linear(&q, i)->q;
        qb_cpu_fake_quant_weight(p->w, sc, p->w, ql->N, ql->K, 32, 4);
    }
    qb_cpu_fake_quant_weight(fq.word_emb, sc, fq.word_emb, c.vocab_size, c.hidden_size, 32, 4);
    qb_cpu_fake_quant_weight(fq.pos_emb, sc, fq.pos_emb, c.max_position, c.hidden_size, 32, 4);
    qb_cpu_fake_quant_weight(fq.type_emb, sc, fq.type_emb, c.type_vocab_size, c.hidden_size, 32, 4);
    h_ref = last_hidden(&fq, false), h_simd = last_hidden(&q, true);
    CHECKF(memcmp(h_ref, h_simd, MC * sizeof *h_ref) == 0, "weight-only INT4 vs fake-quant FP32: %g",
           rel_l2(h_simd, h_ref, MC));
    free(h_ref), free(h_simd), free(sc);
    qb_model_free(&fq);
    qb_model_free(&q);

    /* fp16 / bf16: every tensor rounded once. */
    static const char *const half[2] = {"fp16", "bf16"};
    for (int h = 0; h < 2; h++) {
        if (!loaded(quantize_load(&f, dir, half[h], 0, QB_ACT_F32, NULL, &q))) return;
        CHECK(q.n_qlinear == 0 && strcmp(q.scheme, half[h]) == 0);
        bad = 0;
        for (int i = 0; i < f.weights.count; i++) {
            const float *a = f.weights.tensors[i].data, *b = tensor(&q, f.weights.names[i]);
            for (int64_t j = 0; b && j < qb_tensor_numel(&f.weights.tensors[i]); j++)
                bad += b[j] != (h ? qb_bf16_to_f32(qb_f32_to_bf16(a[j])) : qb_f16_to_f32(qb_f32_to_f16(a[j])));
            bad += !b;
        }
        CHECKF(bad == 0, "%s: %d values differ", half[h], bad);
        qb_model_free(&q);
    }
    free(act);
    free(ref);
    qb_model_free(&f);
}

/* File sizes against the FP32 file of the same model (BERT-like proportions: the
 * embedding table about a quarter of the weights). */
static void test_sizes(void)
{
    qb_config c;
    tiny_config(&c, 256, 1024, 2000);
    qb_model f;
    CHECK(qb_model_init_random(&c, seed, &f) == QB_OK);
    const char *fdir = in_tmp("size-fp32");
    CHECK(qb_model_save(&f, fdir) == QB_OK);
    struct stat s32, s;
    stat(weights_path(fdir), &s32);
    static const char *const schemes[3] = {"int8-dynamic", "int4", "fp16"};
    static const double limit[3] = {0.26, 0.16, 0.501};
    for (int i = 0; i < 3; i++) {
        qb_qplan plan = {0};
        CHECK(qb_qscheme_get(schemes[i], 0, &plan.scheme) == QB_OK);
        const char *path = in_tmp("size.safetensors");
        CHECKF(qb_quant_save(&f, &plan, path) == QB_OK, "%s", qb_error());
        stat(path, &s);
        const double r = (double)s.st_size / s32.st_size;
        printf("%s: %lld bytes = %.2f%% of FP32 (%lld)\n", schemes[i], (long long)s.st_size, 100 * r,
               (long long)s32.st_size);
        CHECKF(r <= limit[i], "%s is %.1f%% of FP32 (limit %.0f%%)", schemes[i], 100 * r, 100 * limit[i]);
    }
    qb_model_free(&f);
}

/* A file edited after writing: its load must fail with QB_EFORMAT (or
 * QB_EUNSUPPORTED) and a message holding `needle`. */
typedef void (*edit_fn)(qb_weights *w, qb_meta *meta);

static void set_meta(qb_meta *m, const char *key, const char *value)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) {
            free(m->values[i]);
            m->values[i] = strdup(value);
            return;
        }
    m->keys = realloc(m->keys, (size_t)(m->count + 1) * sizeof *m->keys);
    m->values = realloc(m->values, (size_t)(m->count + 1) * sizeof *m->values);
    m->keys[m->count] = strdup(key), m->values[m->count++] = strdup(value);
}

static void drop_tensor(qb_weights *w, const char *name)
{
    qb_tensor t;
    int i = qb_weights_find(w, name);
    if (i < 0) return;
    qb_weights_take(w, i, &t);
    qb_tensor_free(&t);
}

#define Q0 "bert.encoder.layer.0.attention.self.query"
static void e_scheme(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.scheme", "int7"); }
static void e_format(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.format", "qbert-quant/9"); }
static void e_act(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.activations", "sometimes"); }
static void e_says_int4(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.scheme", "int4"); }
static void e_static(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.activations", "static-int8"); }
static void e_no_scale(qb_weights *w, qb_meta *m) { drop_tensor(w, Q0 ".weight_scale"); }
static void e_hybrid(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.scheme", "hybrid"); }
static void e_layers(qb_weights *w, qb_meta *m) { set_meta(m, "qbert.layers", "int8,int8,int9"); }
static void e_scale_shape(qb_weights *w, qb_meta *m)
{
    w->tensors[qb_weights_find(w, Q0 ".weight_scale")].shape[0] -= 1;  /* data stays bigger: fine to save */
}
static void e_scale_nan(qb_weights *w, qb_meta *m)
{
    ((float *)w->tensors[qb_weights_find(w, Q0 ".weight_scale")].data)[3] = NAN;
}
static void e_input_scale(qb_weights *w, qb_meta *m)
{
    qb_tensor t;
    const int64_t one = 1;
    qb_tensor_alloc(&t, QB_F32, 1, &one);
    *(float *)t.data = 0.1f;
    qb_weights_add(w, Q0 ".input_scale", t);
}
static void e_weight_shape(qb_weights *w, qb_meta *m)
{
    w->tensors[qb_weights_find(w, Q0 ".weight")].shape[1] /= 2;
}

static void test_bad_files(void)
{
    qb_config c;
    tiny_config(&c, 64, 128, 50);
    c.num_layers = 1;
    qb_model f;
    CHECK(qb_model_init_random(&c, seed, &f) == QB_OK);
    const char *dir = model_dir("bad", &c);
    qb_qplan plan = {0};
    CHECK(qb_qscheme_get("int8-dynamic", 0, &plan.scheme) == QB_OK);
    const char *good = in_tmp("good.safetensors");
    CHECK(qb_quant_save(&f, &plan, good) == QB_OK);
    static const struct {
        edit_fn edit;
        const char *needle;
    } cases[] = {
        {e_scheme, "unknown quantization scheme \"int7\""},
        {e_format, "qbert.format is \"qbert-quant/9\""},
        {e_act, "qbert.activations \"sometimes\""},
        {e_says_int4, "is stored as int8, the metadata says int4"},
        {e_static, "static-int8 inputs need " Q0 ".input_scale"},
        {e_no_scale, "has no " Q0 ".weight_scale"},
        {e_hybrid, "a hybrid file needs __metadata__ qbert.layers"},
        {e_layers, "qbert.layers must list 8 precisions"},
        {e_scale_shape, Q0 ".weight_scale is F32 [63]; expected F32 [64]"},
        {e_scale_nan, Q0 ".weight_scale[3] = nan is not a finite scale"},
        {e_input_scale, Q0 ".input_scale is present but inputs are not static"},
        {e_weight_shape, "tensor " Q0 ".weight is I8 [64, 32]; the config needs [64, 64]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qb_weights w;
        qb_meta meta;
        CHECK(qb_safetensors_load_meta(good, false, &w, &meta) == QB_OK);
        cases[i].edit(&w, &meta);
        qb_metadata md = {meta.count, (const char *const *)meta.keys, (const char *const *)meta.values};
        CHECKF(qb_safetensors_save(weights_path(dir), &w, &md) == QB_OK, "%s", qb_error());
        qb_weights_free(&w);
        qb_meta_free(&meta);
        qb_model m;
        qb_status st = qb_model_load(dir, 1, &m);
        CHECKF((st == QB_EFORMAT || st == QB_EUNSUPPORTED || st == QB_EINVAL) && strstr(qb_error(), cases[i].needle),
               "case %zu: status %d, message \"%s\" lacks \"%s\"", i, st, qb_error(), cases[i].needle);
        if (!st) qb_model_free(&m);
    }
    /* A quantized model is not trained, saved as FP32, or quantized again. */
    CHECK(rename(good, weights_path(dir)) == 0);
    qb_model q;
    CHECKF(qb_model_load(dir, 1, &q) == QB_OK, "%s", qb_error());
    CHECK(qb_model_save(&q, in_tmp("resave")) == QB_EINVAL && strstr(qb_error(), "quantized (int8-dynamic)"));
    CHECK(qb_quant_save(&q, &plan, in_tmp("again.safetensors")) == QB_EINVAL);
    qb_model_free(&q);
    /* An INT4 group that does not divide the rows. */
    CHECK(qb_qscheme_get("int4", 48, &plan.scheme) == QB_OK);
    CHECK(qb_quant_save(&f, &plan, in_tmp("g48.safetensors")) == QB_EINVAL &&
          strstr(qb_error(), "group size 48 must be even and divide the row length 64"));
    CHECK(qb_qscheme_get("int3", 0, &plan.scheme) == QB_EINVAL && strstr(qb_error(), "int8-dynamic"));
    qb_model_free(&f);
}

/* Calibration on the golden tiny model: minmax scales against the largest |x| of the
 * layer-0 input (embedding output, real tokens only) and of the classifier input
 * (pooled output), both read from the forward trace; the 100th percentile is the
 * max; percentile and MSE clips lie below it. */
static void test_calibration(void)
{
    qb_model m;
    qb_tokenizer *tok;
    if (!loaded(qb_model_load("golden/tiny", 1, &m))) return;
    if (!loaded(qb_tokenizer_load("golden/tiny", &tok))) return;
    char *text;
    size_t len;
    CHECK(qb_read_file("golden/tiny_texts.txt", &text, &len) == QB_OK);
    const char *texts[64];
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < 64; line = strtok(NULL, "\n")) texts[n++] = line;
    const int L = m.cfg.num_layers, C = m.cfg.hidden_size, n_lin = qb_config_linears(&m.cfg, NULL);
    float *s[4];
    for (int k = 0; k < 4; k++) s[k] = malloc((size_t)n_lin * sizeof(float));
    const qb_calib_options opts[4] = {{QB_CALIB_MINMAX, 0, 4, 32, NULL, NULL}, {QB_CALIB_PERCENTILE, 100.0, 4, 32, NULL, NULL},
                                      {QB_CALIB_PERCENTILE, 99.0, 4, 32, NULL, NULL}, {QB_CALIB_MSE, 0, 4, 32, NULL, NULL}};
    for (int k = 0; k < 4; k++) CHECKF(qb_calibrate(&m, tok, texts, n, &opts[k], s[k]) == QB_OK, "%s", qb_error());
    /* The same texts, one forward over all of them, statistics from the trace. */
    qb_encoding enc;
    CHECK(qb_encode_batch(tok, texts, n, 32, 1, &enc) == QB_OK);
    const size_t M = (size_t)enc.batch * enc.seq;
    float **hidden = calloc((size_t)L + 1, sizeof *hidden), *pooled = malloc((size_t)n * C * sizeof(float));
    float *logits = malloc((size_t)n * 3 * sizeof(float));
    for (int l = 0; l <= L; l++) hidden[l] = malloc(M * C * sizeof(float));
    qb_forward_trace tr = {.hidden = hidden, .pooled = pooled};
    CHECK(qb_model_forward(&m, qb_backend_cpu(), enc.input_ids, enc.token_type_ids, enc.attention_mask, enc.batch,
                           enc.seq, logits, &tr) == QB_OK);
    float a0 = 0, ap = 0;
    for (size_t r = 0; r < M; r++)
        for (int c = 0; enc.attention_mask[r] && c < C; c++) a0 = fmaxf(a0, fabsf(hidden[0][r * C + c]));
    for (size_t i = 0; i < (size_t)n * C; i++) ap = fmaxf(ap, fabsf(pooled[i]));
    CHECKF(s[0][0] == a0 / 127.0f && s[0][1] == s[0][0] && s[0][2] == s[0][0], "layer 0 input: %g vs %g", s[0][0],
           a0 / 127.0f);
    CHECKF(s[0][n_lin - 1] == ap / 127.0f, "classifier input: %g vs %g", s[0][n_lin - 1], ap / 127.0f);
    int bad = 0;
    for (int i = 0; i < n_lin; i++)
        bad += fabsf(s[1][i] - s[0][i]) > 1e-6f * s[0][i] || !(s[2][i] <= s[0][i]) || !(s[3][i] <= s[0][i]) ||
               !(s[2][i] > 0) || !(s[3][i] > 0);
    CHECKF(bad == 0, "percentile / MSE clips: %d out of order", bad);
    for (int l = 0; l <= L; l++) free(hidden[l]);
    free(hidden), free(pooled), free(logits), free(text);
    for (int k = 0; k < 4; k++) free(s[k]);
    qb_encoding_free(&enc);
    qb_tokenizer_free(tok);
    qb_model_free(&m);
}

/* Logits (B, 3) of m on the test batch (inference). */
static float *logits_of(const qb_model *m)
{
    float *logits = malloc(B * 3 * sizeof *logits);
    CHECKF(qb_model_forward(m, qb_backend_cpu(), ids, NULL, mask, B, T, logits, NULL) == QB_OK, "%s", qb_error());
    return logits;
}

/* Each quantized Linear of q (prepared, integer kernels) on fresh inputs, some past
 * the clip range, against the QAT model m's FP32 product of the same inputs
 * fake-quantized with its scale and its fake-quantized weights (m->qat->wfq, made by
 * m's last forward): the same rounded values, so equal up to summation order. */
static bool linears_match_fake_quant(const qb_model *m, const qb_model *q)
{
    enum { M = 7 };
    qb_rng rng;
    qb_rng_init(&rng, seed + 7);
    int bad = 0;
    for (int i = 0; i < q->n_qlinear; i++) {
        const qb_qlinear *ql = qb_model_linear(q, i)->q;
        const float *b = qb_model_linear(q, i)->b, s = qb_qat_act_scale(m->qat, i);
        const int N = ql->N, K = ql->K;
        float *x = malloc((size_t)M * K * sizeof *x), *xfq = malloc((size_t)M * K * sizeof *xfq);
        float *yi = malloc((size_t)M * N * sizeof *yi), *yf = malloc((size_t)M * N * sizeof *yf);
        for (int j = 0; j < M * K; j++) x[j] = (2.0f * qb_rng_uniform(&rng) - 1.0f) * 140.0f * s;
        qb_cpu_fake_quant(xfq, x, (size_t)M * K, s, 8);
        qb_cpu_linear(yf, xfq, m->qat->wfq[i], b, M, N, K);
        qb_backend_cpu()->linear_q(NULL, yi, NULL, x, NULL, ql, b, M, 0, QB_F32);
        const double e = rel_l2(yi, yf, (size_t)M * N);
        if (!(e < 1e-5)) bad++, fprintf(stderr, "Linear %d (%dx%d): integer vs fake-quant %g\n", i, N, K, e);
        free(x), free(xfq), free(yi), free(yf);
    }
    return bad == 0;
}

/* One forward + backward of m on the test batch (labels 0, 1, 2) into fresh grads. */
static float train_step(const qb_model *m, qb_model *grads)
{
    static const int32_t labels[B] = {0, 1, 2};
    qb_activations *a;
    float loss = NAN;
    CHECK(qb_model_zeros_like(m, grads) == QB_OK);
    CHECK(qb_activations_new(m, qb_backend_cpu(), true, &a) == QB_OK);
    qb_batch batch = {ids, NULL, mask, labels, B, T};
    CHECKF(qb_model_forward_backward(m, a, &batch, NULL, 1.0f / B, grads, &loss, NULL) == QB_OK, "%s", qb_error());
    qb_activations_free(a);
    return loss;
}

/* QAT: observers see the Linear inputs in training only; the straight-through
 * gradients stay near the FP32 ones; the state survives save / load; and the QAT
 * model written as a static INT8 / W4A8 file computes what the fake-quantized
 * model computed (integer GEMMs against FP32 products of the same rounded values). */
static void test_qat(void)
{
    qb_config c;
    tiny_config(&c, 64, 128, 300);
    qb_model m, g32, gq;
    CHECK(qb_model_init_random(&c, seed, &m) == QB_OK);
    for (int i = 0; i < m.weights.count; i++) {
        float *d = m.weights.tensors[i].data;
        for (int64_t j = 0; m.weights.tensors[i].ndim == 2 && j < qb_tensor_numel(&m.weights.tensors[i]); j++)
            d[j] *= 4.0f;
    }
    for (int bits = 8; bits >= 4; bits -= 4) {
        const qb_qat_settings set = {bits, 8, bits == 4 ? 32 : 0, QB_OBS_EMA, 0.01f, 99.99f, true};
        const float l32 = train_step(&m, &g32);
        if (!loaded(qb_qat_new(&m.cfg, &set, &m.qat))) return;
        const float lq = train_step(&m, &gq);
        /* near FP32's: over 120 seeds the gap reached 0.46% at INT8 and 3.6% at INT4 (one CI
         * sweep seed 5.0%) on these 4x weights */
        const float bound = bits == 8 ? 0.02f : 0.10f;
        CHECKF(isfinite(lq) && fabsf(lq - l32) < bound * fabsf(l32), "INT%d QAT loss %g vs FP32 %g", bits, lq, l32);
        int unobserved = 0;
        for (int i = 0; i < 2 * m.qat->n; i++) unobserved += isnan(m.qat->range[i]);
        CHECK(unobserved == 0);
        /* Gradients: the same direction as FP32's, not the same numbers. */
        double dot = 0, n32 = 0, nq = 0, diff = 0;
        for (int i = 0; i < g32.weights.count; i++) {
            const float *a = g32.weights.tensors[i].data, *b = gq.weights.tensors[i].data;
            for (int64_t j = 0; j < qb_tensor_numel(&g32.weights.tensors[i]); j++)
                dot += (double)a[j] * b[j], n32 += (double)a[j] * a[j], nq += (double)b[j] * b[j],
                    diff += fabs(a[j] - b[j]);
        }
        const double cosine = dot / sqrt(n32 * nq);
        CHECKF(cosine > 0.9 && diff > 0, "INT%d QAT gradient: cosine %g with FP32's, |diff| %g", bits, cosine, diff);
        qb_model_free(&g32), qb_model_free(&gq);
        /* Frozen observers keep their ranges. */
        float *before = malloc((size_t)m.qat->n * 2 * sizeof *before);
        memcpy(before, m.qat->range, (size_t)m.qat->n * 2 * sizeof *before);
        m.qat->observe = false;
        train_step(&m, &gq);
        qb_model_free(&gq);
        CHECK(memcmp(before, m.qat->range, (size_t)m.qat->n * 2 * sizeof *before) == 0);
        free(before);
        /* Save / load keeps settings and ranges: the same logits. */
        const char *dir = in_tmp(bits == 8 ? "qat8" : "qat4");
        CHECKF(qb_model_save(&m, dir) == QB_OK, "%s", qb_error());
        qb_model l;
        if (!loaded(qb_model_load(dir, 1, &l))) return;
        CHECK(l.qat && qb_qat_settings_equal(&l.qat->set, &m.qat->set) && !l.qat->observe &&
              memcmp(l.qat->range, m.qat->range, (size_t)m.qat->n * 2 * sizeof(float)) == 0);
        float *fq = logits_of(&m), *fl = logits_of(&l);
        CHECK(memcmp(fq, fl, B * 3 * sizeof *fq) == 0);
        /* Written as trained, loaded, run on the integer kernels: the fake-quant logits. */
        qb_qplan plan;
        float *act = malloc((size_t)m.qat->n * sizeof *act);
        CHECKF(qb_qat_plan(&l, &plan, act) == QB_OK, "%s", qb_error());
        CHECKF(qb_quant_save(&l, &plan, weights_path(dir)) == QB_OK, "%s", qb_error());
        qb_model q;
        if (!loaded(qb_model_load(dir, 1, &q))) return;
        CHECK(strcmp(q.scheme, bits == 8 ? "qat-int8" : "qat-int4") == 0 && q.n_qlinear == m.qat->n);
        CHECK(qb_model_prepare(&q, qb_backend_cpu(), NULL) == QB_OK);
        CHECK(linears_match_fake_quant(&l, &q));
        CHECK(linears_prepared_match_reference(&q));  /* static inputs: 16-bit tile, W4A8 shifted by 128 */
        /* End to end only loosely: the two paths sum in different orders, so a value
         * within 1e-7 of a rounding boundary can land on the other integer in the next
         * Linear's input, and such one-step flips carry on to the logits. */
        float *fi = logits_of(&q);
        CHECKF(rel_l2(fi, fq, B * 3) < 0.03, "INT%d file vs QAT fake-quant logits: %g", bits, rel_l2(fi, fq, B * 3));
        free(fq), free(fl), free(fi), free(act);
        qb_model_free(&q), qb_model_free(&l);
        qb_qat_free(m.qat);
        m.qat = NULL;
    }
    /* Settings without a file layout, and bits QAT does not do. */
    qb_qat *q;
    qb_qat_settings bad = {6, 8, 0, QB_OBS_EMA, 0.01f, 99.99f, false};
    CHECK(qb_qat_new(&m.cfg, &bad, &q) == QB_EINVAL && strstr(qb_error(), "weight_bits must be 4 or 8"));
    bad.weight_bits = 4, bad.group = 48;
    CHECK(qb_qat_new(&m.cfg, &bad, &q) == QB_EINVAL && strstr(qb_error(), "group_size 48"));
    bad.weight_bits = 8, bad.group = 32;
    qb_qplan plan;
    float act[32];
    CHECK(qb_qat_new(&m.cfg, &bad, &m.qat) == QB_OK);
    CHECK(qb_qat_plan(&m, &plan, act) == QB_EINVAL && strstr(qb_error(), "granularity = channel"));
    qb_model_free(&m);
}

int main(void)
{
    seed = check_seed();
    qb_log_set_level(QB_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qbert-qmodel-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_schemes();
    test_sizes();
    test_bad_files();
    test_calibration();
    test_qat();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_quant_model");
}
