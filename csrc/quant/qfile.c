/* Quantized model files (include/qbert/quant.h): writing an FP32 model by a plan,
 * and turning a loaded file back into what the model binds.
 *
 * Every integer written here comes from qb_cpu_quantize_groups, the quantizer behind
 * fake-quant too, so a file holds exactly the numbers QAT trained against. */
#include "qbert/quant.h"

#include "cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const embedding_names[3] = {
    "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight",
};

static bool is_embedding(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, embedding_names[i]) == 0) return true;
    return false;
}

/* The Linear whose weight is `name` ("X.weight"), or -1. */
static int linear_of(const qb_linear_info *lin, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (qb_is_weight_of(name, lin[i].name)) return i;
    return -1;
}

/* ---------------------------------------------------------------- writing */

/* A list entry named `name` + `suffix` holding a new tensor. */
static qb_status add_new(qb_weights *out, const char *name, const char *suffix, qb_dtype dt, int ndim,
                         int64_t d0, int64_t d1, qb_tensor *t)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", name, suffix);
    const int64_t shape[2] = {d0, d1};
    qb_status st = qb_tensor_alloc(t, dt, ndim, shape);
    if (!st && (st = qb_weights_add(out, full, *t))) qb_tensor_free(t);
    return st;
}

/* The float tensor w stored as F32 (a view, nothing copied), F16 or BF16. */
static qb_status add_float(qb_weights *out, const char *name, const qb_tensor *w, qb_qprec prec)
{
    if (prec == QB_Q_F32) {
        qb_tensor view = *w;
        view.owned = false;
        return qb_weights_add(out, name, view);
    }
    qb_tensor t;
    qb_status st = add_new(out, name, "", prec == QB_Q_F16 ? QB_F16 : QB_BF16, w->ndim, w->shape[0],
                           w->shape[1], &t);
    const float *src = w->data;
    uint16_t *dst = t.data;
    for (int64_t i = 0; !st && i < qb_tensor_numel(w); i++)
        dst[i] = prec == QB_Q_F16 ? qb_f32_to_f16(src[i]) : qb_f32_to_bf16(src[i]);
    return st;
}

/* w (R, C) as INT8 per row or INT4 per group of a row (per tensor: tensor_scale):
 * NAME (I8 (R, C) or U8 (R, C / 2)) and NAME_scale. */
static qb_status add_int(qb_weights *out, const char *name, const float *w, int R, int C, qb_qprec prec,
                         int group, bool tensor_scale)
{
    const bool int4 = prec == QB_Q_INT4;
    if (int4 && tensor_scale && C % 2 != 0)
        return qb_fail(QB_EINVAL, "%s: INT4 packs two columns per byte; %d columns is odd", name, C);
    qb_status st = int4 && !tensor_scale ? qb_int4_check_group(group, C) : QB_OK;
    if (st) return qb_fail_context(st, "%s", name);
    const int g = int4 ? (tensor_scale ? C : group) : C;
    int8_t *q = qb_malloc((size_t)R * C);
    if (!q) return qb_fail(QB_ENOMEM, "%s: cannot allocate %d x %d integers", name, R, C);
    qb_tensor wt, sc;
    if (int4 && tensor_scale) {
        st = add_new(out, name, "_scale", QB_F32, 1, 1, 0, &sc);  /* the whole tensor as one group */
        if (!st) qb_cpu_quantize_groups(q, NULL, sc.data, w, 1, R * C, R * C, 4);
    } else {
        st = add_new(out, name, "_scale", QB_F32, int4 ? 2 : 1, R, C / g, &sc);
        if (!st) qb_cpu_quantize_groups(q, NULL, sc.data, w, R, C, g, int4 ? 4 : 8);
    }
    if (!st) st = add_new(out, name, "", int4 ? QB_U8 : QB_I8, 2, R, int4 ? C / 2 : C, &wt);
    if (!st && int4) qb_int4_pack(wt.data, q, (size_t)R * C);
    if (!st && !int4) memcpy(wt.data, q, (size_t)R * C);
    qb_free(q);
    return st;
}

/* "int8,int4,fp16,..." of the plan's per-Linear precisions. malloc'ed. */
static char *layers_string(const qb_qprec *prec, int n)
{
    char *s = malloc((size_t)n * 6 + 1);
    size_t len = 0;
    for (int i = 0; s && i < n; i++) len += (size_t)sprintf(s + len, "%s%s", i ? "," : "", qb_qprec_name(prec[i]));
    if (s) s[len] = '\0';
    return s;
}

qb_status qb_quant_save(const qb_model *m, const qb_qplan *plan, const char *path)
{
    const qb_qscheme *sc = &plan->scheme;
    if (m->n_qlinear) return qb_fail(QB_EINVAL, "the model is already quantized (%s)", m->scheme);
    if (sc->act == QB_ACT_STATIC && !plan->act_scale)
        return qb_fail(QB_EINVAL, "scheme %s needs activation scales from calibration", sc->name);
    const int n_lin = qb_config_linears(&m->cfg, NULL);
    qb_linear_info *lin = malloc((size_t)n_lin * sizeof *lin);
    if (!lin) return qb_fail(QB_ENOMEM, "cannot allocate the Linear table");
    qb_config_linears(&m->cfg, lin);
    const bool half = sc->linear == QB_Q_F16 || sc->linear == QB_Q_BF16;
    qb_weights out = {0};
    qb_status st = QB_OK;
    for (int i = 0; i < m->weights.count && !st; i++) {
        const char *name = m->weights.names[i];
        const qb_tensor *t = &m->weights.tensors[i];
        const int li = linear_of(lin, n_lin, name);
        qb_qprec prec = half ? sc->linear : QB_Q_F32;
        if (li >= 0) prec = plan->linear ? plan->linear[li] : sc->linear;
        else if (is_embedding(name)) prec = sc->embedding;
        if (prec != QB_Q_INT8 && prec != QB_Q_INT4) {
            st = add_float(&out, name, t, prec);
            continue;
        }
        st = add_int(&out, name, t->data, (int)t->shape[0], (int)t->shape[1], prec, sc->group,
                     li >= 0 && sc->tensor_scale);
        if (!st && li >= 0 && sc->act == QB_ACT_STATIC) {
            qb_tensor s;
            if (!(st = add_new(&out, lin[li].name, ".input_scale", QB_F32, 1, 1, 0, &s)))
                *(float *)s.data = plan->act_scale[li];
        }
    }
    char group[16];
    snprintf(group, sizeof group, "%d", sc->group);
    char *layers = plan->linear && !st ? layers_string(plan->linear, n_lin) : NULL;
    const char *keys[7] = {"format", "qbert.format", "qbert.scheme", "qbert.activations", "qbert.group_size"};
    const char *values[7] = {"pt", QB_QUANT_FORMAT, sc->name, qb_qact_name(sc->act), group};
    int nmeta = 5;
    if (plan->calibration) keys[nmeta] = "qbert.calibration", values[nmeta++] = plan->calibration;
    if (layers) keys[nmeta] = "qbert.layers", values[nmeta++] = layers;
    if (!st && plan->linear && !layers) st = qb_fail(QB_ENOMEM, "cannot list the layer precisions");
    qb_metadata meta = {nmeta, keys, values};
    if (!st) st = qb_safetensors_save(path, &out, &meta);
    free(layers);
    free(lin);
    qb_weights_free(&out);
    return st;
}

/* ---------------------------------------------------------------- loading */

typedef struct {
    const char *path;
    const qb_meta *meta;
    qb_qscheme scheme;     /* by qbert.scheme, with the file's group size and activations */
    qb_qprec *layers;      /* qbert.layers, or NULL */
} reader;

static qb_status disagree(const reader *r, const char *fmt, const char *a, const char *b)
{
    char what[256];
    snprintf(what, sizeof what, fmt, a, b);
    return qb_fail(QB_EFORMAT, "%s: %s (metadata: qbert.scheme %s, qbert.activations %s, qbert.group_size %s)",
                   r->path, what, r->scheme.name, qb_meta_get(r->meta, "qbert.activations"),
                   qb_meta_get(r->meta, "qbert.group_size"));
}

static qb_status parse_meta(reader *r, int n_lin)
{
    const char *fmt = qb_meta_get(r->meta, "qbert.format"), *scheme = qb_meta_get(r->meta, "qbert.scheme");
    const char *act = qb_meta_get(r->meta, "qbert.activations"), *group = qb_meta_get(r->meta, "qbert.group_size");
    const char *layers = qb_meta_get(r->meta, "qbert.layers");
    if (strcmp(fmt, QB_QUANT_FORMAT) != 0)
        return qb_fail(QB_EUNSUPPORTED, "%s: __metadata__ qbert.format is \"%.64s\"; this qbert reads \"%s\"",
                       r->path, fmt, QB_QUANT_FORMAT);
    const char *missing = !scheme ? "qbert.scheme" : !act ? "qbert.activations" : !group ? "qbert.group_size" : NULL;
    if (missing) return qb_fail(QB_EFORMAT, "%s: __metadata__ has no %s", r->path, missing);
    qb_status st = qb_qscheme_get(scheme, 0, &r->scheme);
    if (st) return qb_fail_context(st, "%s: __metadata__ qbert.scheme", r->path);
    char *end;
    long g = strtol(group, &end, 10);
    if (*group == '\0' || *end || g < 2 || g > 1 << 20)
        return qb_fail(QB_EFORMAT, "%s: __metadata__ qbert.group_size \"%.32s\" is not a group size", r->path, group);
    r->scheme.group = (int)g;
    int a = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(act, qb_qact_name((qb_qact)i)) == 0) a = i;
    if (a < 0)
        return qb_fail(QB_EFORMAT, "%s: __metadata__ qbert.activations \"%.32s\" (expected dynamic-int8, "
                       "static-int8 or fp32)", r->path, act);
    r->scheme.act = (qb_qact)a;
    if (!layers) {
        if (strcmp(scheme, "hybrid") == 0)
            return qb_fail(QB_EFORMAT, "%s: a hybrid file needs __metadata__ qbert.layers", r->path);
        return QB_OK;
    }
    if (!(r->layers = malloc((size_t)n_lin * sizeof *r->layers))) return qb_fail(QB_ENOMEM, "out of memory");
    const char *p = layers;
    for (int i = 0; i < n_lin; i++) {
        char tok[8];
        size_t len = strcspn(p, ",");
        snprintf(tok, sizeof tok, "%.*s", (int)(len < 7 ? len : 7), p);
        int prec = len < 7 ? qb_qprec_parse(tok) : -1;
        if (prec < 0 || (i < n_lin - 1 && p[len] != ',') || (i == n_lin - 1 && p[len] != '\0'))
            return qb_fail(QB_EFORMAT, "%s: __metadata__ qbert.layers must list %d precisions (fp32, fp16, bf16, "
                           "int8, int4) separated by commas; entry %d is wrong", r->path, n_lin, i + 1);
        r->layers[i] = (qb_qprec)prec;
        p += len + 1;
    }
    return QB_OK;
}

static qb_qprec prec_of(qb_dtype d)
{
    switch (d) {
    case QB_I8: return QB_Q_INT8;
    case QB_U8: return QB_Q_INT4;
    case QB_F16: return QB_Q_F16;
    case QB_BF16: return QB_Q_BF16;
    default: return QB_Q_F32;
    }
}

/* Index of NAME + SUFFIX in w, or -1. */
static int find_suffixed(const qb_weights *w, const char *name, const char *suffix)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", name, suffix);
    return qb_weights_find(w, full);
}

/* Checks the integer tensor `name` (R rows, C values each) and its scale against the
 * metadata, and takes both out of w: q (R, C) one integer per byte, scales (R, C / g)
 * with g the columns per scale (per-tensor INT4: C, the one scale repeated per row). */
static qb_status take_int(const reader *r, qb_weights *w, int wi, int R, int C, bool is_linear,
                          int8_t **q, float **scales, int *g)
{
    const char *name = w->names[wi];
    const qb_tensor *t = &w->tensors[wi];
    const bool int4 = t->dtype == QB_U8;
    char got[64], want[64];
    const qb_tensor expect = {.ndim = 2, .shape = {R, int4 ? C / 2 : C}};
    if (t->ndim != 2 || t->shape[0] != R || t->shape[1] != expect.shape[1])
        return qb_fail(QB_EFORMAT, "%s: tensor %s is %s %s; the config needs %s", r->path, name,
                       qb_dtype_name(t->dtype), qb_shape_str(t, got, sizeof got),
                       qb_shape_str(&expect, want, sizeof want));
    const int si = find_suffixed(w, name, "_scale");
    if (si < 0) return qb_fail(QB_EFORMAT, "%s: tensor %s has no %s_scale", r->path, name, name);
    const qb_tensor *s = &w->tensors[si];
    const bool per_tensor = int4 && is_linear && r->scheme.tensor_scale;
    *g = !int4 || per_tensor ? C : r->scheme.group;
    if (int4 && !per_tensor && (qb_int4_check_group(*g, C) != QB_OK))
        return disagree(r, "tensor %s: group size %s does not fit its rows", name,
                        qb_meta_get(r->meta, "qbert.group_size"));
    const int64_t cols = C / *g;
    const bool shape_ok = s->dtype == QB_F32 &&
                          (per_tensor ? s->ndim == 1 && s->shape[0] == 1
                                      : int4 ? s->ndim == 2 && s->shape[0] == R && s->shape[1] == cols
                                             : s->ndim == 1 && s->shape[0] == R);
    if (!shape_ok) {
        snprintf(want, sizeof want, per_tensor ? "[1]" : int4 ? "[%d, %lld]" : "[%d]", R, (long long)cols);
        return qb_fail(QB_EFORMAT, "%s: tensor %s_scale is %s %s; expected F32 %s for %s (qbert.group_size %s)",
                       r->path, name, qb_dtype_name(s->dtype), qb_shape_str(s, got, sizeof got), want,
                       int4 ? "INT4" : "INT8", qb_meta_get(r->meta, "qbert.group_size"));
    }
    const float *sv = s->data;
    for (int64_t i = 0; i < qb_tensor_numel(s); i++)
        if (!isfinite(sv[i]) || sv[i] < 0.0f)
            return qb_fail(QB_EFORMAT, "%s: tensor %s_scale[%lld] = %g is not a finite scale >= 0", r->path, name,
                           (long long)i, sv[i]);
    *q = qb_malloc((size_t)R * C);
    *scales = qb_malloc((size_t)R * cols * sizeof **scales);
    if (!*q || !*scales) {
        qb_free(*q), qb_free(*scales);
        return qb_fail(QB_ENOMEM, "%s: cannot allocate tensor %s", r->path, name);
    }
    for (int64_t i = 0; i < (int64_t)R * cols; i++) (*scales)[i] = per_tensor ? sv[0] : sv[i];
    if (int4) qb_int4_unpack(*q, t->data, (size_t)R * C);
    else memcpy(*q, t->data, (size_t)R * C);
    qb_tensor drop;
    qb_weights_take(w, si, &drop);  /* indices after si move up: callers find `name` again */
    qb_tensor_free(&drop);
    return QB_OK;
}

/* The embedding table E.weight: an integer table is dequantized to F32 in place. */
static qb_status unpack_embedding(const reader *r, qb_weights *w, const char *name, const qb_config *cfg)
{
    int wi = qb_weights_find(w, name);
    if (wi < 0) return QB_OK;  /* qb_model_from_weights reports the missing table */
    const qb_qprec have = prec_of(w->tensors[wi].dtype);
    const bool integer = have >= QB_Q_INT8;  /* the enum lists the integer types last */
    if (have != r->scheme.embedding && (integer || r->scheme.embedding >= QB_Q_INT8))
        return disagree(r, "embedding table %s is stored as %s", name, qb_qprec_name(have));
    if (!integer) return QB_OK;
    const int R = (int)w->tensors[wi].shape[0], C = cfg->hidden_size;
    int8_t *q;
    float *scales;
    int g;
    qb_status st = take_int(r, w, wi, R, C, false, &q, &scales, &g);
    if (st) return st;
    wi = qb_weights_find(w, name);
    qb_tensor f;
    const int64_t shape[2] = {R, C};
    if (!(st = qb_tensor_alloc(&f, QB_F32, 2, shape))) {
        qb_cpu_dequantize_groups(f.data, q, scales, R, C, g);
        qb_tensor_free(&w->tensors[wi]);
        w->tensors[wi] = f;
    }
    qb_free(q);
    qb_free(scales);
    return st;
}

/* Linear i: a quantized weight moves into ql, a float one is checked and left. */
static qb_status unpack_linear(const reader *r, qb_weights *w, const qb_linear_info *li, int i, qb_qlinears *ql)
{
    char name[160];
    snprintf(name, sizeof name, "%s.weight", li->name);
    int wi = qb_weights_find(w, name);
    if (wi < 0) return qb_fail(QB_ENOTFOUND, "%s: missing tensor %s", r->path, name);
    const qb_qprec want = r->layers ? r->layers[i] : r->scheme.linear, have = prec_of(w->tensors[wi].dtype);
    if (have != want) {
        char what[64];
        snprintf(what, sizeof what, "%s, the metadata says %s", qb_qprec_name(have), qb_qprec_name(want));
        return disagree(r, "tensor %s is stored as %s", name, what);
    }
    const int si = find_suffixed(w, li->name, ".input_scale");
    const bool integer = have == QB_Q_INT8 || have == QB_Q_INT4;
    if (!integer || r->scheme.act != QB_ACT_STATIC) {
        if (si >= 0) return disagree(r, "tensor %s.input_scale is present but inputs are not static%s", li->name, "");
        if (!integer) return QB_OK;
    } else {
        const qb_tensor *s = si >= 0 ? &w->tensors[si] : NULL;
        if (!s || s->dtype != QB_F32 || qb_tensor_numel(s) != 1 || !isfinite(*(float *)s->data) ||
            !(*(float *)s->data > 0.0f))
            return qb_fail(QB_EFORMAT, "%s: static-int8 inputs need %s.input_scale, one F32 value > 0", r->path,
                           li->name);
    }
    qb_qlinear q = {.bits = have == QB_Q_INT4 ? 4 : 8, .N = li->N, .K = li->K,
                    .act_f32 = r->scheme.act == QB_ACT_F32};
    if (si >= 0) {
        qb_tensor s;
        qb_weights_take(w, si, &s);
        q.act_scale = *(float *)s.data;
        qb_tensor_free(&s);
        wi = qb_weights_find(w, name);
    }
    qb_status st = take_int(r, w, wi, li->N, li->K, true, &q.wq, &q.scales, &q.group);
    if (st) return st;
    qb_tensor t;
    qb_weights_take(w, qb_weights_find(w, name), &t);
    qb_tensor_free(&t);
    ql->names[ql->count] = qb_strdup(li->name);
    ql->q[ql->count++] = q;
    return ql->names[ql->count - 1] ? QB_OK : qb_fail(QB_ENOMEM, "out of memory");
}

qb_status qb_quant_unpack(const qb_config *cfg, const qb_meta *meta, const char *path, qb_weights *w,
                          qb_qlinears *out)
{
    memset(out, 0, sizeof *out);
    reader r = {.path = path, .meta = meta};
    const int n_lin = qb_config_linears(cfg, NULL);
    qb_linear_info *lin = malloc((size_t)n_lin * sizeof *lin);
    out->names = calloc((size_t)n_lin, sizeof *out->names);
    out->q = calloc((size_t)n_lin, sizeof *out->q);
    qb_status st = lin && out->names && out->q ? parse_meta(&r, n_lin) : qb_fail(QB_ENOMEM, "out of memory");
    if (!st) qb_config_linears(cfg, lin);
    for (int i = 0; i < n_lin && !st; i++) st = unpack_linear(&r, w, &lin[i], i, out);
    for (int i = 0; i < 3 && !st; i++) st = unpack_embedding(&r, w, embedding_names[i], cfg);
    free(lin);
    free(r.layers);
    if (st) qb_qlinears_free(out);
    return st;
}
