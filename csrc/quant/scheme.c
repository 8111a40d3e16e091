/* Quantization schemes by name, and the quantized Linear's lifetime
 * (include/qbert/quant.h). */
#include "qbert/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GROUP 64

static const qb_qscheme schemes[] = {
    {"fp16", QB_Q_F16, QB_Q_F16, DEFAULT_GROUP, false, QB_ACT_F32},
    {"bf16", QB_Q_BF16, QB_Q_BF16, DEFAULT_GROUP, false, QB_ACT_F32},
    {"int8-dynamic", QB_Q_INT8, QB_Q_INT8, DEFAULT_GROUP, false, QB_ACT_DYNAMIC},
    {"int8-static", QB_Q_INT8, QB_Q_INT8, DEFAULT_GROUP, false, QB_ACT_STATIC},
    {"int4", QB_Q_INT4, QB_Q_INT4, DEFAULT_GROUP, false, QB_ACT_DYNAMIC},
    {"int4-tensor", QB_Q_INT4, QB_Q_INT4, DEFAULT_GROUP, true, QB_ACT_DYNAMIC},
    {"hybrid", QB_Q_INT8, QB_Q_INT8, DEFAULT_GROUP, false, QB_ACT_DYNAMIC},
    {"qat-int8", QB_Q_INT8, QB_Q_INT8, DEFAULT_GROUP, false, QB_ACT_STATIC},
    {"qat-int4", QB_Q_INT4, QB_Q_INT4, DEFAULT_GROUP, false, QB_ACT_STATIC},
};
#define N_SCHEMES (int)(sizeof schemes / sizeof schemes[0])

qb_status qb_qscheme_get(const char *name, int group, qb_qscheme *out)
{
    for (int i = 0; i < N_SCHEMES; i++) {
        if (strcmp(name, schemes[i].name) != 0) continue;
        *out = schemes[i];
        if (group > 0) out->group = group;
        return QB_OK;
    }
    char list[256];
    size_t n = 0;
    for (int i = 0; i < N_SCHEMES; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", schemes[i].name);
    return qb_fail(QB_EINVAL, "unknown quantization scheme \"%.64s\" (expected one of %s)", name, list);
}

static const char *const prec_names[] = {"fp32", "fp16", "bf16", "int8", "int4"};

const char *qb_qprec_name(qb_qprec p) { return prec_names[p]; }

int qb_qprec_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof prec_names / sizeof prec_names[0]); i++)
        if (strcmp(name, prec_names[i]) == 0) return i;
    return -1;
}

const char *qb_qact_name(qb_qact a)
{
    return a == QB_ACT_DYNAMIC ? "dynamic-int8" : a == QB_ACT_STATIC ? "static-int8" : "fp32";
}

void qb_qlinear_free(qb_qlinear *q)
{
    if (q->prepared && q->release) q->release(q);
    qb_free(q->wq);
    qb_free(q->scales);
    memset(q, 0, sizeof *q);
}

void qb_qlinears_free(qb_qlinears *l)
{
    for (int i = 0; i < l->count; i++) {
        free(l->names[i]);
        if (l->q) qb_qlinear_free(&l->q[i]);
    }
    free(l->names);
    free(l->q);
    memset(l, 0, sizeof *l);
}
