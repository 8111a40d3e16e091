/* safetensors read and atomic write.
 *
 * Layout: u64 little-endian N, N bytes of JSON header, then the data section.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data section) and may hold "__metadata__", a map of
 * string to string.
 *
 * Loading validates the whole header (dtypes, shapes, offsets against the data
 * section, byte sizes, overlaps, duplicate names) before any tensor is copied,
 * so a hostile file is rejected with a message and never read out of bounds.
 * Saving streams the header and each tensor's bytes straight from the caller's
 * buffers into PATH.tmp.PID, fsyncs and renames: a 500 MB model is never held
 * twice in memory, and a failed save leaves nothing behind. */
#include "qbert/io.h"

#include "io/weightio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Real headers are a few hundred KB at most (one short entry per tensor). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* JSON numbers are doubles in cJSON: integers above 2^53 are not exact. */
#define ST_MAX_JSON_INT 9007199254740992.0

static const struct {
    const char *name;
    qb_elem elem;
} st_dtypes[] = {
    {"F64", QB_ELEM_F64}, {"F32", QB_ELEM_F32}, {"F16", QB_ELEM_F16}, {"BF16", QB_ELEM_BF16},
    {"I64", QB_ELEM_I64}, {"I32", QB_ELEM_I32}, {"I8", QB_ELEM_I8},   {"U8", QB_ELEM_U8},
};

/* Valid safetensors dtypes that have no qbert tensor type: a clearer message than "unknown". */
static const char *const st_unsupported[] = {
    "BOOL", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

/* One validated header entry; `name` points into the parsed cJSON tree. */
typedef struct {
    const char *name;
    qb_elem elem;
    int ndim;
    int64_t shape[QB_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A non-negative integral JSON number that a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static qb_status parse_dtype(const char *path, const char *name, const cJSON *v, qb_elem *elem)
{
    if (!cJSON_IsString(v))
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': \"dtype\" is missing or not a string", path, name);
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(v->valuestring, st_dtypes[i].name) == 0) {
            *elem = st_dtypes[i].elem;
            return QB_OK;
        }
    }
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++) {
        if (strcmp(v->valuestring, st_unsupported[i]) == 0)
            return qb_fail(QB_EUNSUPPORTED, "%s: tensor '%.200s': dtype %s is not supported "
                           "(expected F64, F32, F16, BF16, I64, I32, I8 or U8)", path, name, v->valuestring);
    }
    return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': unknown dtype \"%.40s\"", path, name, v->valuestring);
}

/* Validates one tensor entry against the data section size. */
static qb_status parse_entry(const char *path, const cJSON *item, uint64_t data_size, st_entry *e)
{
    const char *name = item->string;
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!cJSON_IsObject(item))
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': entry is not an object", path, name);
    qb_status st = parse_dtype(path, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e->elem);
    if (st) return st;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape))
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': \"shape\" is missing or not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > QB_MAX_DIMS)
        return qb_fail(QB_EUNSUPPORTED, "%s: tensor '%.200s': %d dimensions (qbert supports at most %d)",
                       path, name, ndim, QB_MAX_DIMS);
    e->ndim = ndim;
    /* numel * 8 bytes must fit in int64 (and so in size_t) with every dimension exact. */
    uint64_t numel = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!json_uint(v, &dim))
            return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': shape[%d] is not a non-negative integer",
                           path, name, d);
        if (dim > 0 && numel > ((uint64_t)INT64_MAX / 8) / dim)
            return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': the element count of its shape overflows",
                           path, name);
        numel *= dim;
        e->shape[d] = (int64_t)dim;
    }

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end))
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': \"data_offsets\" is not two non-negative integers",
                       path, name);
    if (e->begin > e->end)
        return qb_fail(QB_EFORMAT,
                       "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end", path,
                       name, e->begin, e->end);
    if (e->end > data_size)
        return qb_fail(QB_EFORMAT,
                       "%s: tensor '%.200s': data_offsets end %" PRIu64
                       " is past the end of the data section (%" PRIu64 " bytes)",
                       path, name, e->end, data_size);
    uint64_t want = numel * qb_elem_size(e->elem);
    if (e->end - e->begin != want)
        return qb_fail(QB_EFORMAT, "%s: tensor '%.200s': data_offsets span %" PRIu64 " bytes but %s shape of %"
                       PRIu64 " elements needs %" PRIu64, path, name, e->end - e->begin,
                       qb_elem_name(e->elem), numel, want);
    return QB_OK;
}

/* Validates "__metadata__" and copies it into out (when not NULL). */
static qb_status read_metadata(const char *path, const cJSON *meta, qb_meta *out)
{
    if (!cJSON_IsObject(meta))
        return qb_fail(QB_EFORMAT, "%s: \"__metadata__\" is not an object of strings", path);
    int n = 0;
    for (const cJSON *v = meta->child; v; v = v->next, n++)
        if (!cJSON_IsString(v))
            return qb_fail(QB_EFORMAT, "%s: \"__metadata__\" key '%.200s' is not a string", path, v->string);
    if (!out || n == 0) return QB_OK;
    out->keys = calloc((size_t)n, sizeof *out->keys);
    out->values = calloc((size_t)n, sizeof *out->values);
    if (!out->keys || !out->values) return qb_fail(QB_ENOMEM, "%s: cannot copy the metadata", path);
    for (const cJSON *v = meta->child; v; v = v->next) {
        const int i = out->count++;
        out->keys[i] = qb_strdup(v->string);
        out->values[i] = qb_strdup(v->valuestring);
        if (!out->keys[i] || !out->values[i]) return qb_fail(QB_ENOMEM, "%s: cannot copy the metadata", path);
    }
    return QB_OK;
}

const char *qb_meta_get(const qb_meta *m, const char *key)
{
    for (int i = 0; m && i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) return m->values[i];
    return NULL;
}

qb_status qb_meta_set(qb_meta *m, const char *key, const char *value)
{
    char *v = qb_strdup(value);
    if (!v) return qb_fail(QB_ENOMEM, "cannot copy metadata");
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) {
            free(m->values[i]);
            m->values[i] = v;
            return QB_OK;
        }
    char **k = realloc(m->keys, (size_t)(m->count + 1) * sizeof *k);
    if (k) m->keys = k;
    char **vs = k ? realloc(m->values, (size_t)(m->count + 1) * sizeof *vs) : NULL;
    if (vs) m->values = vs;
    if (!vs || !(m->keys[m->count] = qb_strdup(key))) {
        free(v);
        return qb_fail(QB_ENOMEM, "cannot copy metadata");
    }
    m->values[m->count++] = v;
    return QB_OK;
}

void qb_meta_free(qb_meta *m)
{
    for (int i = 0; m->keys && i < m->count; i++) free(m->keys[i]);
    for (int i = 0; m->values && i < m->count; i++) free(m->values[i]);
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static int cmp_entry_name(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Duplicate names (cJSON keeps repeated keys) and overlapping byte ranges. Holes are
 * allowed: they waste space but alias nothing. Empty tensors touch no bytes. */
static qb_status check_entries(const char *path, st_entry *ents, int n)
{
    if (n == 0) return QB_OK;
    st_entry **p = malloc((size_t)n * sizeof *p);
    if (!p) return qb_fail(QB_ENOMEM, "%s: cannot allocate the tensor index", path);
    for (int i = 0; i < n; i++) p[i] = &ents[i];
    qb_status st = QB_OK;
    qsort(p, (size_t)n, sizeof *p, cmp_entry_name);
    for (int i = 1; i < n && !st; i++)
        if (strcmp(p[i - 1]->name, p[i]->name) == 0)
            st = qb_fail(QB_EFORMAT, "%s: tensor '%.200s' appears twice in the header", path, p[i]->name);
    qsort(p, (size_t)n, sizeof *p, cmp_entry_begin);
    const st_entry *reach = NULL; /* the non-empty tensor that ends furthest so far */
    for (int i = 0; i < n && !st; i++) {
        if (p[i]->begin == p[i]->end) continue;
        if (reach && p[i]->begin < reach->end)
            st = qb_fail(QB_EFORMAT, "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64
                         ") overlap tensor '%.200s' [%" PRIu64 ", %" PRIu64 ")", path, p[i]->name,
                         p[i]->begin, p[i]->end, reach->name, reach->begin, reach->end);
        if (!reach || p[i]->end > reach->end) reach = p[i];
    }
    free(p);
    return st;
}

static qb_status load_entry(const qb_mapped_file *m, const unsigned char *data, const st_entry *e,
                            bool to_f32, qb_weights *w)
{
    qb_tensor t = {0};
    t.dtype = qb_elem_dtype(e->elem, to_f32);
    t.device = QB_DEV_CPU;
    t.ndim = e->ndim;
    int64_t stride[QB_MAX_DIMS], s = 1;
    for (int i = e->ndim - 1; i >= 0; i--) {
        t.shape[i] = e->shape[i];
        stride[i] = s;
        s *= e->shape[i];
    }
    size_t bytes = qb_tensor_nbytes(&t);
    t.data = qb_malloc(bytes);
    if (!t.data)
        return qb_fail(QB_ENOMEM, "%s: tensor '%.200s': cannot allocate %zu bytes", m->path, e->name, bytes);
    t.owned = true;
    qb_elem_copy(t.data, data + e->begin, e->elem, to_f32, e->ndim, e->shape, stride);
    qb_status st = qb_weights_add(w, e->name, t);
    if (st) qb_tensor_free(&t);
    return st;
}

/* Parses and validates the header, then copies every tensor into `w`. */
static qb_status load_mapped(const qb_mapped_file *m, bool to_f32, qb_weights *w, qb_meta *meta)
{
    const char *path = m->path;
    if (m->size < 8)
        return qb_fail(QB_EFORMAT, "%s: %zu bytes is too short for a safetensors file (8-byte header length)",
                       path, m->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | m->data[i];
    if (n > ST_MAX_HEADER)
        return qb_fail(QB_EFORMAT, "%s: header length %" PRIu64 " is over the %" PRIu64 "-byte limit",
                       path, n, ST_MAX_HEADER);
    if (n > m->size - 8)
        return qb_fail(QB_EFORMAT, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       path, n, m->size);
    /* cJSON gets its own NUL-terminated copy: the mapping may end right after the header. */
    char *hdr = malloc((size_t)n + 1);
    if (!hdr) return qb_fail(QB_ENOMEM, "%s: cannot allocate the %" PRIu64 "-byte header", path, n);
    memcpy(hdr, m->data + 8, (size_t)n);
    hdr[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        qb_status err = qb_fail(QB_EFORMAT, "%s: header is not valid JSON (error at byte %td of %" PRIu64 ")",
                                path, end ? end - hdr : (ptrdiff_t)0, n);
        free(hdr);
        return err;
    }
    qb_status st = QB_OK;
    st_entry *ents = NULL;
    /* Writers pad the header to 8 bytes with spaces; anything else after the JSON is corrupt. */
    for (const char *c = end; c < hdr + n && !st; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r')
            st = qb_fail(QB_EFORMAT, "%s: header has bytes after its JSON object (at byte %td)", path, c - hdr);
    if (!st && !cJSON_IsObject(root)) st = qb_fail(QB_EFORMAT, "%s: header is not a JSON object", path);
    int count = 0, nmeta = 0;
    if (!st) {
        for (const cJSON *v = root->child; v; v = v->next) count++;
        ents = malloc((size_t)(count ? count : 1) * sizeof *ents);
        if (!ents) st = qb_fail(QB_ENOMEM, "%s: cannot allocate %d header entries", path, count);
    }
    int ntens = 0;
    uint64_t data_size = m->size - 8 - n;
    for (const cJSON *v = st ? NULL : root->child; v && !st; v = v->next) {
        if (strcmp(v->string, "__metadata__") == 0) {
            st = nmeta++ ? qb_fail(QB_EFORMAT, "%s: \"__metadata__\" appears twice in the header", path)
                         : read_metadata(path, v, meta);
        } else {
            st = parse_entry(path, v, data_size, &ents[ntens++]);
        }
    }
    if (!st) st = check_entries(path, ents, ntens);
    for (int i = 0; i < ntens && !st; i++) st = load_entry(m, m->data + 8 + n, &ents[i], to_f32, w);
    free(ents);
    cJSON_Delete(root);
    free(hdr);
    return st;
}

qb_status qb_safetensors_load_meta(const char *path, bool to_f32, qb_weights *out, qb_meta *meta)
{
    memset(out, 0, sizeof *out);
    if (meta) memset(meta, 0, sizeof *meta);
    qb_mapped_file m;
    qb_status st = qb_map_file(&m, path);
    if (st) return st;
    qb_weights w = {0};
    st = load_mapped(&m, to_f32, &w, meta);
    qb_unmap_file(&m);
    if (st) {
        qb_weights_free(&w);
        if (meta) qb_meta_free(meta);
        return st;
    }
    *out = w;
    return QB_OK;
}

qb_status qb_safetensors_load(const char *path, bool to_f32, qb_weights *out)
{
    return qb_safetensors_load_meta(path, to_f32, out, NULL);
}

/* The safetensors dtype of t: qbert's names are the safetensors ones, except that
 * INT4 has none (it is stored packed as U8). */
static const char *st_dtype_name(qb_dtype t)
{
    return t == QB_I4 ? NULL : qb_dtype_name(t);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Non-NULL strings without repeats; `what` names them in the message. */
static qb_status check_unique(const char *path, const char *what, const char *const *names, int n)
{
    if (n == 0) return QB_OK;
    for (int i = 0; i < n; i++)
        if (!names[i]) return qb_fail(QB_EINVAL, "%s: %s %d is NULL", path, what, i);
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s) return qb_fail(QB_ENOMEM, "%s: cannot allocate the %s index", path, what);
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    qb_status st = QB_OK;
    for (int i = 1; i < n && !st; i++)
        if (strcmp(s[i - 1], s[i]) == 0)
            st = qb_fail(QB_EINVAL, "%s: %s '%.200s' appears twice", path, what, s[i]);
    free(s);
    return st;
}

static qb_status check_save_args(const char *path, const qb_weights *w, const qb_metadata *meta)
{
    for (int i = 0; i < w->count; i++) {
        const qb_tensor *t = &w->tensors[i];
        const char *name = w->names[i] ? w->names[i] : "(null)";
        if (w->names[i] && strcmp(name, "__metadata__") == 0)
            return qb_fail(QB_EINVAL, "%s: a tensor cannot be named __metadata__", path);
        if (t->device != QB_DEV_CPU)
            return qb_fail(QB_EINVAL, "%s: tensor '%.200s' is not on the CPU", path, name);
        if (!st_dtype_name(t->dtype))
            return qb_fail(QB_EINVAL, "%s: tensor '%.200s' has dtype %s, which safetensors cannot store "
                           "(pack INT4 into a U8 tensor)", path, name, qb_dtype_name(t->dtype));
        if (t->ndim < 0 || t->ndim > QB_MAX_DIMS)
            return qb_fail(QB_EINVAL, "%s: tensor '%.200s' has rank %d", path, name, t->ndim);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0)
                return qb_fail(QB_EINVAL, "%s: tensor '%.200s' has shape[%d] < 0", path, name, d);
        if (!t->data && qb_tensor_nbytes(t) > 0)
            return qb_fail(QB_EINVAL, "%s: tensor '%.200s' has no data", path, name);
    }
    qb_status st = check_unique(path, "tensor name", (const char *const *)w->names, w->count);
    if (st || !meta) return st;
    st = check_unique(path, "metadata key", meta->keys, meta->count);
    for (int i = 0; i < meta->count && !st; i++)
        if (!meta->values[i]) st = qb_fail(QB_EINVAL, "%s: metadata value %d is NULL", path, i);
    return st;
}

/* An exact integer (cJSON would print large doubles in exponent form). */
static bool add_uint(cJSON *arr, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    cJSON *n = cJSON_CreateRaw(buf);
    return n && cJSON_AddItemToArray(arr, n);
}

/* Data layout: the reference implementation rejects holes between tensors, so they
 * are aligned by order instead: the data section starts 8-aligned and holds the
 * tensors by element size, largest first (stable), which puts every tensor at a
 * multiple of its element size. The header keeps the caller's order.
 * order[k] = the tensor stored k-th; offset[i] = where tensor i starts. */
static void plan_layout(const qb_weights *w, int *order, uint64_t *offset)
{
    int k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < w->count; i++)
            if (qb_dtype_bytes(w->tensors[i].dtype, 1) == es) order[k++] = i;
    uint64_t off = 0;
    for (k = 0; k < w->count; k++) {
        offset[order[k]] = off;
        off += qb_tensor_nbytes(&w->tensors[order[k]]);
    }
}

/* The header JSON: metadata first, then the tensors in list order. */
static char *build_header(const qb_weights *w, const qb_metadata *meta, const uint64_t *offset)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && meta && meta->count > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; i < meta->count && ok; i++)
            ok = cJSON_AddStringToObject(m, meta->keys[i], meta->values[i]);
    }
    for (int i = 0; i < w->count && ok; i++) {
        const qb_tensor *t = &w->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, w->names[i]);
        cJSON *shape = e && cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype))
                           ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int d = 0; d < t->ndim && ok; d++) ok = add_uint(shape, (uint64_t)t->shape[d]);
        ok = ok && add_uint(offs, offset[i]) && add_uint(offs, offset[i] + qb_tensor_nbytes(t));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

qb_status qb_safetensors_save(const char *path, const qb_weights *w, const qb_metadata *meta)
{
    qb_status st = check_save_args(path, w, meta);
    if (st) return st;
    size_t n = w->count > 0 ? (size_t)w->count : 1;
    int *order = malloc(n * sizeof *order);
    uint64_t *offset = malloc(n * sizeof *offset);
    char *json = NULL;
    if (order && offset) {
        plan_layout(w, order, offset);
        json = build_header(w, meta, offset);
    }
    free(offset);
    if (!json) {
        free(order);
        return qb_fail(QB_ENOMEM, "%s: cannot build the header", path);
    }
    size_t jlen = strlen(json), padded = (jlen + 7) & ~(size_t)7; /* data section starts 8-aligned */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    char tmp[4096];
    FILE *f = NULL;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        st = qb_fail(QB_EINVAL, "%s: path too long", path);
    else if (!(f = fopen(tmp, "wb")))
        st = qb_fail(QB_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (st) {
        free(json);
        free(order);
        return st;
    }
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, jlen, f) == jlen;
    for (size_t i = jlen; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    free(json);
    for (int k = 0; k < w->count && ok; k++) {
        const qb_tensor *t = &w->tensors[order[k]];
        size_t bytes = qb_tensor_nbytes(t);
        ok = fwrite(t->data, 1, bytes, f) == bytes;
    }
    free(order);
    int e = ok ? 0 : errno;
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        ok = false;
        e = errno;
    }
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        return qb_fail(QB_EIO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return qb_fail(QB_EIO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return QB_OK;
}
