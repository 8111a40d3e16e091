/* Parameters of qb_model under their Hugging Face names: loading from a model
 * directory (safetensors or pytorch_model.bin), random initialisation, saving.
 *
 * After loading, m->weights holds exactly the parameters the classifier uses,
 * under canonical BertForSequenceClassification names, and the float pointers of
 * qb_model point into those tensors. Checkpoint name variants are accepted:
 * a bare BertModel ("embeddings.*" without "bert."), and the old TF-era
 * "LayerNorm.gamma/beta" spelling (transformers renames them the same way). */
#include "qbert/io.h"
#include "qbert/model.h"
#include "qbert/quant.h"

#include "backend/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { P_NORMAL, P_ZERO, P_ONE } init_kind;

/* One parameter: its canonical name, shape, how to initialise it, where it goes. */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    init_kind init;
    float **dst;
    const qb_qlinear **qdst;  /* a Linear weight: where a quantized one is bound; else NULL */
    void **hdst;              /* where its half copy goes (the encoder's matrices, biases); else NULL */
    int group;  /* 0 = encoder (required), 1 = pooler, 2 = classifier (may be initialised) */
} param_spec;

static void spec(param_spec *s, int *n, const char *name, int ndim, int64_t d0, int64_t d1,
                 init_kind init, float **dst, int group)
{
    param_spec *p = &s[(*n)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->init = init;
    p->dst = dst;
    p->qdst = NULL;
    p->hdst = NULL;
    p->group = group;
}

/* The weights of the n Linears prefixes[i] (each (out, in), params[i]), then their
 * biases: query, key and value so lie in one (3 out, in) block and one (3 out) block
 * of a model's allocation, for one fused GEMM (csrc/model/bert.c). */
static void spec_linears(param_spec *s, int *n, const char *const *prefixes, qb_linear_params *const *params, int count,
                         int64_t out, int64_t in, int group)
{
    char name[96];
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%.88s.weight", prefixes[i]);
        spec(s, n, name, 2, out, in, P_NORMAL, &params[i]->w, group);
        s[*n - 1].qdst = &params[i]->q;
        if (group == 0) s[*n - 1].hdst = &params[i]->wh;
    }
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%.88s.bias", prefixes[i]);
        spec(s, n, name, 1, out, 0, P_ZERO, &params[i]->b, group);
        if (group == 0) s[*n - 1].hdst = &params[i]->bh;
    }
}

static void spec_linear(param_spec *s, int *n, const char *prefix, int64_t out, int64_t in,
                        qb_linear_params *p, int group)
{
    spec_linears(s, n, &prefix, &p, 1, out, in, group);
}

static void spec_ln(param_spec *s, int *n, const char *prefix, int64_t c, qb_ln_params *p)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    spec(s, n, name, 1, c, 0, P_ONE, &p->g, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    spec(s, n, name, 1, c, 0, P_ZERO, &p->b, 0);
}

/* The six Linears of an encoder layer, in graph order. */
static const char *const layer_linear[6] = {
    "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense", "intermediate.dense", "output.dense",
};

int qb_config_linears(const qb_config *c, qb_linear_info *out)
{
    const int C = c->hidden_size, I = c->intermediate_size, L = c->num_layers;
    for (int i = 0; out && i < 6 * L; i++) {
        const int j = i % 6;
        snprintf(out[i].name, sizeof out[i].name, "bert.encoder.layer.%d.%s", i / 6, layer_linear[j]);
        out[i].N = j == 4 ? I : C;
        out[i].K = j == 5 ? I : C;
    }
    if (out) {
        out[6 * L] = (qb_linear_info){"bert.pooler.dense", C, C};
        out[6 * L + 1] = (qb_linear_info){"classifier", c->num_labels, C};
    }
    return 6 * L + 2;
}

bool qb_is_weight_of(const char *name, const char *linear)
{
    const size_t n = strlen(linear);
    return strncmp(name, linear, n) == 0 && strcmp(name + n, ".weight") == 0;
}

const qb_linear_params *qb_model_linear(const qb_model *m, int index)
{
    const int L = m->cfg.num_layers;
    if (index == 6 * L) return &m->pooler;
    if (index == 6 * L + 1) return &m->classifier;
    const qb_layer_params *p = &m->layers[index / 6];
    const qb_linear_params *by[6] = {&p->q, &p->k, &p->v, &p->attn_out, &p->inter, &p->out};
    return by[index % 6];
}

/* Fills specs (16 per layer + 9) for m->cfg; returns the count. */
static int model_specs(qb_model *m, param_spec *s)
{
    const qb_config *c = &m->cfg;
    int n = 0, C = c->hidden_size, I = c->intermediate_size;
    spec(s, &n, "bert.embeddings.word_embeddings.weight", 2, c->vocab_size, C, P_NORMAL, &m->word_emb, 0);
    s[n - 1].hdst = &m->emb_h[0];
    spec(s, &n, "bert.embeddings.position_embeddings.weight", 2, c->max_position, C, P_NORMAL, &m->pos_emb, 0);
    s[n - 1].hdst = &m->emb_h[1];
    spec(s, &n, "bert.embeddings.token_type_embeddings.weight", 2, c->type_vocab_size, C, P_NORMAL, &m->type_emb, 0);
    s[n - 1].hdst = &m->emb_h[2];
    spec_ln(s, &n, "bert.embeddings.LayerNorm", C, &m->ln_emb);
    for (int l = 0; l < c->num_layers; l++) {
        qb_layer_params *L = &m->layers[l];
        char p[96];
#define LAYER(suffix) (snprintf(p, sizeof p, "bert.encoder.layer.%d.%s", l, suffix), p)
        char qkv[3][96];
        for (int i = 0; i < 3; i++) snprintf(qkv[i], sizeof qkv[i], "bert.encoder.layer.%d.%s", l, layer_linear[i]);
        spec_linears(s, &n, (const char *const[]){qkv[0], qkv[1], qkv[2]},
                     (qb_linear_params *const[]){&L->q, &L->k, &L->v}, 3, C, C, 0);
        spec_linear(s, &n, LAYER(layer_linear[3]), C, C, &L->attn_out, 0);
        spec_ln(s, &n, LAYER("attention.output.LayerNorm"), C, &L->ln_attn);
        spec_linear(s, &n, LAYER(layer_linear[4]), I, C, &L->inter, 0);
        spec_linear(s, &n, LAYER(layer_linear[5]), C, I, &L->out, 0);
        spec_ln(s, &n, LAYER("output.LayerNorm"), C, &L->ln_out);
#undef LAYER
    }
    spec_linear(s, &n, "bert.pooler.dense", C, C, &m->pooler, 1);
    spec_linear(s, &n, "classifier", c->num_labels, C, &m->classifier, 2);
    return n;
}

/* The quantized Linear whose weight is `weight_name` ("X.weight" for X in ql), or -1. */
static int find_qlinear(const qb_qlinears *ql, const char *weight_name)
{
    for (int i = 0; ql && i < ql->count; i++)
        if (qb_is_weight_of(weight_name, ql->names[i])) return i;
    return -1;
}

/* Finds a spec's tensor in a checkpoint under any accepted spelling. */
static int find_param(const qb_weights *w, const char *canonical)
{
    int i = qb_weights_find(w, canonical);
    if (i >= 0) return i;
    char alt[128];
    const char *bare = strncmp(canonical, "bert.", 5) == 0 ? canonical + 5 : NULL;
    if (bare && (i = qb_weights_find(w, bare)) >= 0) return i;
    /* LayerNorm.weight -> LayerNorm.gamma, LayerNorm.bias -> LayerNorm.beta */
    const char *ln = strstr(canonical, "LayerNorm.");
    if (!ln) return -1;
    int head = (int)(ln - canonical) + 10;
    const char *tf = strcmp(ln + 10, "weight") == 0 ? "gamma" : "beta";
    snprintf(alt, sizeof alt, "%.*s%s", head, canonical, tf);
    if ((i = qb_weights_find(w, alt)) >= 0) return i;
    if (bare && (i = qb_weights_find(w, alt + 5)) >= 0) return i;
    return -1;
}

static qb_status init_tensor(qb_tensor *t, const param_spec *p, qb_rng *rng, float std)
{
    qb_status st = qb_tensor_alloc(t, QB_F32, p->ndim, p->shape);
    if (st) return qb_fail_context(st, "%s", p->name);
    float *d = t->data;
    int64_t n = qb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        d[i] = p->init == P_NORMAL ? qb_rng_normal(rng, 0.0f, std) : p->init == P_ONE ? 1.0f : 0.0f;
    return QB_OK;
}

static int spec_count(const qb_config *c) { return 16 * c->num_layers + 9; }

/* A spec's FP32 bytes, rounded up to 256 (the alignment cudaMalloc gives, which
 * vectorised kernels and cuBLASLt like) when tensors share one allocation. */
static size_t spec_bytes(const param_spec *p)
{
    const size_t n = (size_t)p->shape[0] * (p->ndim == 2 ? (size_t)p->shape[1] : 1);
    return (n * 4 + 255) & ~(size_t)255;
}

static qb_status alloc_layers(qb_model *m)
{
    m->layers = calloc((size_t)m->cfg.num_layers, sizeof *m->layers);
    return m->layers ? QB_OK : qb_fail(QB_ENOMEM, "cannot allocate %d layers", m->cfg.num_layers);
}

/* qb_model_from_weights, with the quantized Linears of ql (may be NULL) moved into m
 * and bound where their weights would be. */
static qb_status bind(const qb_config *cfg, qb_weights *w, qb_qlinears *ql, uint64_t seed,
                      const char *source, qb_model *m)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    qb_status st = alloc_layers(m);
    if (ql && ql->count) {
        m->qlinear = ql->q, m->n_qlinear = ql->count;
        ql->q = NULL;
    }
    param_spec *specs = st ? NULL : calloc((size_t)spec_count(cfg), sizeof *specs);
    char *used = calloc((size_t)w->count + 1, 1);
    if (!st && (!specs || !used)) st = qb_fail(QB_ENOMEM, "cannot allocate the parameter table");
    int n = st ? 0 : model_specs(m, specs);
    qb_rng rng;
    qb_rng_init(&rng, seed);
    const char *initialised[2] = {NULL, NULL};
    for (int s = 0; s < n && !st; s++) {
        param_spec *p = &specs[s];
        int i = find_param(w, p->name), qi = i < 0 && p->qdst ? find_qlinear(ql, p->name) : -1;
        qb_tensor t;
        if (qi >= 0) {
            *p->qdst = &m->qlinear[qi];
            *p->dst = NULL;
            continue;
        }
        if (i < 0) {
            if (p->group == 0) {
                st = qb_fail(QB_ENOTFOUND, "%s: missing tensor %s", source, p->name);
                break;
            }
            initialised[p->group - 1] = p->group == 1 ? "bert.pooler" : "classifier";
            if ((st = init_tensor(&t, p, &rng, cfg->initializer_range))) break;
        } else {
            qb_tensor *src = &w->tensors[i];
            char got[64], want[64];
            qb_tensor expect = {.ndim = p->ndim, .shape = {p->shape[0], p->shape[1]}};
            if (src->dtype != QB_F32 || src->ndim != p->ndim || src->shape[0] != p->shape[0] ||
                (p->ndim == 2 && src->shape[1] != p->shape[1])) {
                st = qb_fail(QB_EFORMAT, "%s: tensor %s is %s %s; expected F32 %s%s", source, w->names[i],
                             qb_dtype_name(src->dtype), qb_shape_str(src, got, sizeof got),
                             qb_shape_str(&expect, want, sizeof want),
                             s == 0 ? " (config.json vocab_size must equal the embedding rows)" : "");
                break;
            }
            if (used[i]) { /* tied weights: two parameters over one tensor need their own copy */
                if ((st = qb_tensor_alloc(&t, QB_F32, src->ndim, src->shape))) break;
                memcpy(t.data, src->data, qb_tensor_nbytes(src));
            } else {
                t = *src;
                src->owned = false;  /* ownership moves to m->weights */
            }
            used[i] = 1;
        }
        *p->dst = t.data;
        if ((st = qb_weights_add(&m->weights, p->name, t))) {
            qb_tensor_free(&t);
            break;
        }
    }
    if (!st) {
        for (int g = 0; g < 2; g++)
            if (initialised[g])
                qb_log(QB_LOG_WARN, "%s: no %s weights in the checkpoint; initialised from seed %llu "
                       "(normal std %g, zero bias) — train before trusting its predictions",
                       source, initialised[g], (unsigned long long)seed, cfg->initializer_range);
        /* List tensors the classifier does not use, once (position_ids is a buffer, not a weight). */
        char list[1024];
        size_t len = 0;
        int unused = 0;
        for (int i = 0; i < w->count; i++) {
            if (used[i] || strstr(w->names[i], "position_ids")) continue;
            if (len < sizeof list - 1)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", unused ? ", " : "", w->names[i]);
            unused++;
        }
        if (unused) qb_log(QB_LOG_INFO, "%s: %d unused tensors: %s", source, unused, list);
    }
    free(specs);
    free(used);
    qb_weights_free(w);
    if (ql) qb_qlinears_free(ql);
    if (st) {
        m->cfg = (qb_config){0};  /* the caller still owns cfg's strings on failure */
        qb_model_free(m);
    }
    return st;
}

qb_status qb_model_from_weights(const qb_config *cfg, qb_weights *w, uint64_t seed,
                                const char *source, qb_model *m)
{
    return bind(cfg, w, NULL, seed, source, m);
}

/* Replaces the config's labels by `names` (n of them). */
static qb_status set_labels(qb_config *cfg, const char *const *names, int n)
{
    for (int i = 0; i < QB_MAX_LABELS; i++) free(cfg->id2label[i]), cfg->id2label[i] = NULL;
    cfg->num_labels = n;
    for (int i = 0; i < n; i++)
        if (!(cfg->id2label[i] = qb_strdup(names[i]))) return qb_fail(QB_ENOMEM, "cannot copy label names");
    return QB_OK;
}

int64_t qb_model_weights_bytes(const char *dir)
{
    char path[4096];
    if (qb_path_join(path, sizeof path, dir, "model.safetensors")) return -1;
    const int64_t n = qb_file_size(path);
    if (n >= 0 || qb_path_join(path, sizeof path, dir, "pytorch_model.bin")) return n;
    return qb_file_size(path);
}

qb_status qb_model_load(const char *dir, uint64_t seed, qb_model *m)
{
    return qb_model_load_labels(dir, NULL, 0, seed, m);
}

qb_status qb_model_load_labels(const char *dir, const char *const *labels, int n_labels, uint64_t seed,
                               qb_model *m)
{
    char path[4096], scheme[32] = "";
    qb_config cfg;
    qb_weights w = {0};
    qb_qlinears ql = {0};
    qb_qat *q_state = NULL;
    qb_status st = qb_path_join(path, sizeof path, dir, "config.json");
    if (st || (st = qb_config_load(path, &cfg))) return st;
    if (labels && (st = set_labels(&cfg, labels, n_labels))) goto fail;
    if ((st = qb_path_join(path, sizeof path, dir, "model.safetensors"))) goto fail;
    if (qb_file_exists(path)) {
        /* Kept as stored: a quantized file's F16 / BF16 tensors are checked against its
         * scheme before they are widened. */
        qb_meta meta;
        if ((st = qb_safetensors_load_meta(path, false, &w, &meta))) goto fail;
        if (qb_meta_get(&meta, "qbert.format")) {
            st = qb_quant_unpack(&cfg, &meta, path, &w, &ql);
            snprintf(scheme, sizeof scheme, "%s", st ? "" : qb_meta_get(&meta, "qbert.scheme"));
        }
        bool qat = false;
        qb_qat_settings qs;
        if (!st) st = qb_qat_read_settings(&meta, path, &qs, &qat);
        if (!st && qat && !(st = qb_qat_new(&cfg, &qs, &q_state))) st = qb_qat_read_ranges(q_state, &cfg, &w, path);
        qb_meta_free(&meta);
        for (int i = 0; i < w.count && !st; i++)
            if (w.tensors[i].dtype == QB_F16 || w.tensors[i].dtype == QB_BF16)
                st = qb_tensor_to_f32(&w.tensors[i]);
    } else {
        if ((st = qb_path_join(path, sizeof path, dir, "pytorch_model.bin"))) goto fail;
        if (!qb_file_exists(path)) {
            st = qb_fail(QB_ENOTFOUND, "%s: no model.safetensors or pytorch_model.bin", dir);
            goto fail;
        }
        st = qb_torchbin_load(path, &w);
    }
    if (st) goto fail;
    if ((st = bind(&cfg, &w, &ql, seed, path, m))) goto fail;
    snprintf(m->scheme, sizeof m->scheme, "%s", scheme);
    if ((m->qat = q_state)) m->qat->observe = false;  /* a loaded QAT model is evaluated as trained */
    return QB_OK;
fail:
    qb_qat_free(q_state);
    qb_weights_free(&w);
    qb_qlinears_free(&ql);
    qb_config_free(&cfg);
    return st;
}

/* The host FP32 tensor src (n floats) into half memory dst of be, rounded to half;
 * false when out of host memory for the conversion. */
static bool upload_half(const qb_backend *be, void *dst, const float *src, size_t n, qb_dtype half)
{
    void *h = qb_malloc(n * 2);
    if (!h) return false;
    qb_backend_cpu()->rows(NULL, h, half, n, src, QB_F32, n, 1, (int)n);
    be->to_device(NULL, dst, h, n * 2);
    qb_free(h);
    return true;
}

/* A model with m's config and shapes in out: in host memory (be NULL: zeros), or in
 * be's memory holding a copy of m's parameters (copy) or zeros, with the half copies
 * that `copies` asks for (qb_model_to_backend). The FP32 tensors share one allocation
 * (out->mem); the half copies another (out->half_mem), which mirrors the FP32 layout
 * at half the offsets, so that one conversion over all of mem remakes them. m's
 * quantized Linears are not copied: out's Linears point at m's (which stay m's to
 * free, and whose backend layout qb_model_prepare makes). */
static qb_status model_like(const qb_model *m, const qb_backend *be, bool copy, qb_weight_copies copies,
                            qb_dtype half, qb_model *out)
{
    memset(out, 0, sizeof *out);
    out->cfg = m->cfg;
    memset(out->cfg.id2label, 0, sizeof out->cfg.id2label);  /* borrowed strings: not kept */
    memcpy(out->scheme, m->scheme, sizeof out->scheme);
    out->copies = copies;
    out->half = copies == QB_WEIGHTS_FP32 ? QB_F32 : half;
    qb_status st = alloc_layers(out);
    const int count = spec_count(&m->cfg);
    param_spec *specs = st ? NULL : calloc((size_t)count * 2, sizeof *specs);
    if (!st && !specs) st = qb_fail(QB_ENOMEM, "cannot allocate the parameter table");
    int n = st ? 0 : model_specs(out, specs);
    param_spec *from = specs + count;  /* m's, for the source pointers */
    if (!st) model_specs((qb_model *)m, from);  /* only takes the addresses of m's fields */
    size_t bytes = 0, fp32_bytes = 0;  /* the whole FP32 layout; what of it is allocated */
    for (int s = 0; s < n; s++) {
        if (from[s].qdst && *from[s].qdst) {  /* a quantized Linear: borrowed, no tensor */
            *specs[s].qdst = *from[s].qdst;
            specs[s].dst = NULL;
        } else if (be) {
            bytes += spec_bytes(&specs[s]);
            if (!(copies == QB_WEIGHTS_HALF && specs[s].ndim == 2 && specs[s].hdst)) fp32_bytes += spec_bytes(&specs[s]);
        }
    }
    if (be && !st && !(out->mem = be->alloc(fp32_bytes)))
        st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes for the model's parameters", be->name,
                     fp32_bytes);
    if (be && !st && out->half != QB_F32 && !(out->half_mem = be->alloc(bytes / 2)))
        st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes for the model's half weights", be->name,
                     bytes / 2);
    out->mem_be = be;
    out->mem_floats = bytes / 4;
    size_t off = 0, fp32_off = 0;
    for (int s = 0; s < n && !st; s++) {
        qb_tensor t;
        param_spec *p = &specs[s];
        if (!p->dst) continue;
        const size_t numel = (size_t)p->shape[0] * (p->ndim == 2 ? (size_t)p->shape[1] : 1);
        if (be && out->half != QB_F32 && p->hdst) {
            *p->hdst = (char *)out->half_mem + off / 2;
            if (copy && !upload_half(be, *p->hdst, *from[s].dst, numel, out->half))
                st = qb_fail(QB_ENOMEM, "out of host memory converting %s to half", p->name);
        }
        if (be && copies == QB_WEIGHTS_HALF && p->ndim == 2 && p->hdst) {  /* half only */
            off += spec_bytes(p);
            *p->dst = NULL;
            continue;
        }
        if (be) {
            t = (qb_tensor){.dtype = QB_F32, .device = be->device, .ndim = p->ndim,
                            .shape = {p->shape[0], p->shape[1]}, .data = (char *)out->mem + fp32_off};
            if (copy) be->to_device(NULL, t.data, *from[s].dst, numel * 4);
            else be->zero(NULL, t.data, numel * 4);
            fp32_off += spec_bytes(p);
            off += spec_bytes(p);
        } else if ((st = qb_tensor_alloc(&t, QB_F32, p->ndim, p->shape))) {
            break;
        }
        *p->dst = t.data;
        if ((st = qb_weights_add(&out->weights, p->name, t))) qb_tensor_free(&t);
    }
    free(specs);
    for (int l = 0; be && !st && l < m->cfg.num_layers; l++) out->layers[l].qkv = m->layers[l].qkv;  /* borrowed */
    /* The copies ran on the default stream: done before another stream reads them. */
    if (!st && be) st = be->sync(NULL);
    if (st) qb_model_free(out);
    return st;
}

/* Layer P's query, key and value as one quantized Linear into out (zeroed), when the
 * three quantize their input per token with the same shape, bits and group. */
static qb_status join_qkv(const qb_layer_params *P, qb_qlinear *out)
{
    const qb_qlinear *p[3] = {P->q.q, P->k.q, P->v.q};
    for (int i = 0; i < 3; i++)
        if (!qb_qlinear_dynamic(p[i]) || p[i]->bits != p[0]->bits || p[i]->group != p[0]->group ||
            p[i]->N != p[0]->N || p[i]->K != p[0]->K)
            return QB_OK;
    const size_t nk = (size_t)p[0]->N * p[0]->K, ns = nk / p[0]->group;
    int8_t *wq = qb_malloc(3 * nk);  /* as the loader allocates them (SIMD tails may over-read) */
    float *scales = qb_malloc(3 * ns * sizeof *scales);
    if (!wq || !scales) {
        qb_free(wq), qb_free(scales);
        return qb_fail(QB_ENOMEM, "cannot join the query, key and value Linears (%zu bytes)", 3 * nk);
    }
    for (int i = 0; i < 3; i++) {  /* the rows of each in turn: (N, K) and (N, K / group) */
        memcpy(wq + i * nk, p[i]->wq, nk);
        memcpy(scales + i * ns, p[i]->scales, ns * sizeof *scales);
    }
    *out = (qb_qlinear){.bits = p[0]->bits, .N = 3 * p[0]->N, .K = p[0]->K, .group = p[0]->group, .wq = wq,
                        .scales = scales};
    return QB_OK;
}

qb_status qb_model_join_qkv(qb_model *m)
{
    const int L = m->cfg.num_layers;
    if (m->qkv || m->mem_be || !m->n_qlinear) return QB_OK;  /* joined already, a copy, or nothing to join */
    if (!(m->qkv = calloc((size_t)L, sizeof *m->qkv))) return qb_fail(QB_ENOMEM, "out of memory");
    for (int l = 0; l < L; l++) {
        const qb_status st = join_qkv(&m->layers[l], &m->qkv[l]);
        if (st) return st;  /* what was joined is freed with the model */
        if (m->qkv[l].wq) m->layers[l].qkv = &m->qkv[l];
    }
    return QB_OK;
}

qb_status qb_model_zeros_like(const qb_model *m, qb_model *out)
{
    return model_like(m, m->mem_be, false, QB_WEIGHTS_FP32, QB_F32, out);
}

qb_status qb_model_to_backend(const qb_model *m, const qb_backend *be, qb_weight_copies copies, qb_dtype half,
                              qb_model *out)
{
    memset(out, 0, sizeof *out);
    if (m->mem_be) return qb_fail(QB_EINVAL, "the model is already in %s memory", m->mem_be->name);
    if (copies != QB_WEIGHTS_FP32 && half != QB_F16 && half != QB_BF16)
        return qb_fail(QB_EINVAL, "half weights must be F16 or BF16, not %s", qb_dtype_name(half));
    return model_like(m, be, true, copies, half, out);
}

void qb_model_refresh_half(const qb_model *m, qb_stream *s)
{
    if (m->copies == QB_WEIGHTS_FP32_AND_HALF)
        m->mem_be->rows(s, m->half_mem, m->half, m->mem_floats, m->mem, QB_F32, m->mem_floats, 1, (int)m->mem_floats);
}

void qb_model_zero(qb_model *m, const qb_backend *be)
{
    if (m->mem && m->copies == QB_WEIGHTS_FP32) {  /* the arena (padding included): one memset */
        be->zero(NULL, m->mem, m->mem_floats * 4);
        return;
    }
    for (int i = 0; i < m->weights.count; i++)
        be->zero(NULL, m->weights.tensors[i].data, qb_tensor_nbytes(&m->weights.tensors[i]));
}

/* Every parameter of src into the tensor of the same name in dst, one of them in
 * backend memory: be->to_host, or be->to_device. */
static void copy_params(const qb_model *src, qb_model *dst, const qb_backend *be, bool to_host)
{
    for (int i = 0; i < src->weights.count; i++) {
        const qb_tensor *t = &src->weights.tensors[i];
        const int j = qb_weights_find(&dst->weights, src->weights.names[i]);
        if (j < 0) continue;
        const size_t bytes = (size_t)qb_tensor_numel(t) * 4;
        if (to_host) be->to_host(NULL, dst->weights.tensors[j].data, t->data, bytes);
        else be->to_device(NULL, dst->weights.tensors[j].data, t->data, bytes);
    }
}

void qb_model_to_host(const qb_model *src, qb_model *dst) { copy_params(src, dst, src->mem_be, true); }

void qb_model_from_host(const qb_model *src, qb_model *dst) { copy_params(src, dst, dst->mem_be, false); }

qb_status qb_model_init_random(const qb_config *cfg, uint64_t seed, qb_model *m)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    qb_status st = alloc_layers(m);
    param_spec *specs = st ? NULL : calloc((size_t)spec_count(cfg), sizeof *specs);
    if (!st && !specs) st = qb_fail(QB_ENOMEM, "cannot allocate the parameter table");
    int n = st ? 0 : model_specs(m, specs);
    qb_rng rng;
    qb_rng_init(&rng, seed);
    for (int s = 0; s < n && !st; s++) {
        qb_tensor t;
        if ((st = init_tensor(&t, &specs[s], &rng, cfg->initializer_range))) break;
        *specs[s].dst = t.data;
        if ((st = qb_weights_add(&m->weights, specs[s].name, t))) qb_tensor_free(&t);
    }
    free(specs);
    if (st) {
        m->cfg = (qb_config){0};
        qb_model_free(m);
        return st;
    }
    /* transformers zeroes the embedding row of the padding token. */
    memset(m->word_emb + (size_t)cfg->pad_token_id * cfg->hidden_size, 0, sizeof(float) * (size_t)cfg->hidden_size);
    return QB_OK;
}

qb_status qb_model_save(const qb_model *m, const char *dir)
{
    char path[4096];
    if (m->n_qlinear)
        return qb_fail(QB_EINVAL, "%s: a quantized (%s) model is written by qbert quantize, not saved as FP32",
                       dir, m->scheme);
    qb_status made = qb_mkdirs(dir);  /* with its missing parents */
    if (made) return made;
    char *json = qb_config_to_json(&m->cfg);
    if (!json) return qb_fail(QB_ENOMEM, "cannot serialise config.json");
    qb_status st = qb_path_join(path, sizeof path, dir, "config.json");
    if (!st) st = qb_write_file_atomic(path, json, strlen(json));
    free(json);
    if (st) return st;
    /* Views of the parameters, plus a QAT model's observer ranges and settings. */
    qb_weights w = {0};
    qb_meta meta = {0};
    st = qb_meta_set(&meta, "format", "pt");  /* what transformers' save_pretrained writes */
    for (int i = 0; i < m->weights.count && !st; i++) {
        qb_tensor view = m->weights.tensors[i];
        view.owned = false;
        st = qb_weights_add(&w, m->weights.names[i], view);
    }
    if (!st && m->qat) st = qb_qat_write(m->qat, &m->cfg, &w, &meta);
    qb_metadata md = {meta.count, (const char *const *)meta.keys, (const char *const *)meta.values};
    if (!st && !(st = qb_path_join(path, sizeof path, dir, "model.safetensors"))) st = qb_safetensors_save(path, &w, &md);
    qb_weights_free(&w);
    qb_meta_free(&meta);
    return st;
}

void qb_model_free(qb_model *m)
{
    qb_weights_free(&m->weights);  /* a backend copy's tensors are views: mem holds them */
    if (m->mem) m->mem_be->free(m->mem);
    if (m->half_mem) m->mem_be->free(m->half_mem);
    for (int i = 0; i < m->n_qlinear; i++) qb_qlinear_free(&m->qlinear[i]);
    free(m->qlinear);
    for (int l = 0; m->qkv && l < m->cfg.num_layers; l++) qb_qlinear_free(&m->qkv[l]);
    free(m->qkv);
    qb_qat_free(m->qat);
    free(m->layers);
    qb_config_free(&m->cfg);
    memset(m, 0, sizeof *m);
}

size_t qb_model_param_count(const qb_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->weights.count; i++) n += (size_t)qb_tensor_numel(&m->weights.tensors[i]);
    for (int i = 0; i < m->n_qlinear; i++) n += (size_t)m->qlinear[i].N * m->qlinear[i].K;
    return n;
}
