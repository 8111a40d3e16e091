/* safetensors: load a fixture written by the reference `safetensors` package
 * (data/io_values.safetensors, values from a formula recomputed here), reject every
 * kind of corrupt header built byte by byte, round-trip qb_safetensors_save (layout,
 * metadata, atomicity), cross-check the golden F16/BF16 models against the F32 one,
 * and survive a few hundred randomly corrupted files (run under ASan+UBSan in CI). */
#include "check.h"
#include "io_testutil.h"

#include "qbert/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>

/* ---- data/io_values.safetensors (see data/make_io_fixtures.py) ---------------------- */

static const struct {
    const char *name;
    qb_dtype dtype;  /* as loaded with to_f32 = false (F64 always becomes F32) */
    bool is_float;
    int ndim;
    int64_t shape[4];
} values_spec[] = {
    {"f32", QB_F32, true, 2, {2, 3}},   {"f16", QB_F16, true, 1, {5}},    {"bf16", QB_BF16, true, 3, {2, 2, 2}},
    {"f64", QB_F32, true, 1, {3}},      {"i64", QB_I64, false, 2, {2, 2}}, {"i32", QB_I32, false, 1, {4}},
    {"i8", QB_I8, false, 2, {3, 1}},    {"u8", QB_U8, false, 1, {6}},      {"scalar", QB_F32, true, 0, {0}},
    {"empty", QB_F32, true, 2, {0, 3}}, {"rank4", QB_F16, true, 4, {1, 2, 1, 3}},
};
#define NVALUES ((int)(sizeof values_spec / sizeof values_spec[0]))

static double value_f(int k, int64_t i) { return (double)((i * 7 + k * 3) % 23 - 11) * 0.125; }

static int64_t value_i(int k, int64_t i, qb_dtype t)
{
    int64_t base = (i * 7 + k * 3) % 23 - 11;
    switch (t) {
    case QB_I64: return base * ((int64_t)1 << 33) + i;
    case QB_I32: return base * 65536 + i;
    case QB_U8: return base + 128 + i;
    default: return base;
    }
}

/* Element i of t as a double (all fixture values are exact in every type). */
static double elem(const qb_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case QB_F32: return ((const float *)t->data)[i];
    case QB_F16: return qb_f16_to_f32(((const uint16_t *)t->data)[i]);
    case QB_BF16: return qb_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case QB_I64: return (double)((const int64_t *)t->data)[i];
    case QB_I32: return ((const int32_t *)t->data)[i];
    case QB_I8: return ((const int8_t *)t->data)[i];
    case QB_U8: return ((const uint8_t *)t->data)[i];
    default: return 0.0 / 0.0;
    }
}

static void test_values_fixture(bool to_f32)
{
    qb_weights w;
    qb_status st = qb_safetensors_load("data/io_values.safetensors", to_f32, &w);
    CHECKF(st == QB_OK, "%s", qb_error());
    CHECK(w.count == NVALUES);
    for (int k = 0; k < NVALUES; k++) {
        int idx = qb_weights_find(&w, values_spec[k].name);
        CHECKF(idx >= 0, "tensor %s missing", values_spec[k].name);
        if (idx < 0) continue;
        const qb_tensor *t = &w.tensors[idx];
        qb_dtype want = values_spec[k].dtype;
        if (to_f32 && values_spec[k].is_float) want = QB_F32;
        CHECKF(t->dtype == want, "%s: dtype %s", values_spec[k].name, qb_dtype_name(t->dtype));
        CHECK(t->ndim == values_spec[k].ndim && t->owned && t->device == QB_DEV_CPU);
        for (int d = 0; d < t->ndim && d < 4; d++) CHECK(t->shape[d] == values_spec[k].shape[d]);
        int bad = 0;
        int64_t n = qb_tensor_numel(t);
        for (int64_t i = 0; i < n; i++) {
            double want_v = values_spec[k].is_float ? value_f(k, i) : (double)value_i(k, i, t->dtype);
            if (t->dtype == QB_I64) {
                bad += ((const int64_t *)t->data)[i] != value_i(k, i, QB_I64);
            } else {
                bad += elem(t, i) != want_v;
            }
        }
        CHECKF(bad == 0, "%s: %d wrong values", values_spec[k].name, bad);
    }
    qb_weights_free(&w);
}

/* ---- corrupt headers ------------------------------------------------------------------ */

/* Writes u64 len + header + `data` zero bytes as bad.safetensors and loads it. */
static qb_status load_bytes(const void *bytes, size_t len, qb_weights *w, char *path)
{
    io_tmp_path(path, "bad.safetensors");
    if (!io_write(path, bytes, len)) return QB_EIO;
    return qb_safetensors_load(path, true, w);
}

static qb_status load_header(const char *json, size_t data, qb_weights *w, char *path)
{
    size_t n = strlen(json), len = 8 + n + data;
    unsigned char *buf = calloc(1, len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    qb_status st = load_bytes(buf, len, w, path);
    free(buf);
    return st;
}

#define T1(dtype, shape, offs)                                                                                 \
    "{\"a\": {\"dtype\": \"" dtype "\", \"shape\": " shape ", \"data_offsets\": " offs "}}"

static void test_bad_headers(void)
{
    static const struct {
        const char *json;
        size_t data;
        qb_status want;
        const char *msg;
    } cases[] = {
        {"", 0, QB_EFORMAT, "not valid JSON"},
        {"{not json", 0, QB_EFORMAT, "not valid JSON"},
        {"[1, 2]", 0, QB_EFORMAT, "not a JSON object"},
        {"{} x", 0, QB_EFORMAT, "after its JSON"},
        {"{\"a\": 5}", 0, QB_EFORMAT, "'a': entry is not an object"},
        {"{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, QB_EFORMAT, "'a': \"dtype\""},
        {T1("F33", "[1]", "[0, 4]"), 4, QB_EFORMAT, "'a': unknown dtype"},
        {T1("f32", "[1]", "[0, 4]"), 4, QB_EFORMAT, "unknown dtype"},
        {T1("BOOL", "[1]", "[0, 1]"), 1, QB_EUNSUPPORTED, "'a': dtype BOOL is not supported"},
        {T1("F32", "3", "[0, 4]"), 4, QB_EFORMAT, "'a': \"shape\""},
        {T1("F32", "[-1]", "[0, 4]"), 4, QB_EFORMAT, "'a': shape[0]"},
        {T1("F32", "[1.5]", "[0, 4]"), 4, QB_EFORMAT, "shape[0]"},
        {T1("F32", "[1, \"2\"]", "[0, 8]"), 8, QB_EFORMAT, "shape[1]"},
        {T1("F32", "[1e300]", "[0, 4]"), 4, QB_EFORMAT, "shape[0]"},
        {T1("U8", "[4294967296, 4294967296]", "[0, 4]"), 4, QB_EFORMAT,
         "'a': the element count of its shape overflows"},
        {T1("F32", "[1, 1, 1, 1, 1]", "[0, 4]"), 4, QB_EUNSUPPORTED, "'a': 5 dimensions"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, QB_EFORMAT, "'a': \"data_offsets\""},
        {T1("F32", "[1]", "[0]"), 4, QB_EFORMAT, "\"data_offsets\" is not two"},
        {T1("F32", "[1]", "[0, 4, 8]"), 8, QB_EFORMAT, "\"data_offsets\" is not two"},
        {T1("F32", "[1]", "[0, \"4\"]"), 4, QB_EFORMAT, "\"data_offsets\" is not two"},
        {T1("F32", "[1]", "[-4, 0]"), 4, QB_EFORMAT, "\"data_offsets\" is not two"},
        {T1("F32", "[0]", "[8, 4]"), 8, QB_EFORMAT, "'a': data_offsets [8, 4] begin after end"},
        {T1("F32", "[16]", "[0, 64]"), 16, QB_EFORMAT,
         "'a': data_offsets end 64 is past the end of the data section"},
        {T1("F32", "[2]", "[0, 12]"), 12, QB_EFORMAT,
         "'a': data_offsets span 12 bytes but F32 shape of 2 elements needs 8"},
        {T1("F16", "[2, 3]", "[0, 6]"), 12, QB_EFORMAT, "needs 12"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         12, QB_EFORMAT, "'b': data_offsets [4, 12) overlap tensor 'a' [0, 8)"},
        {"{\"a\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]},"
         " \"c\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [16, 24]},"
         " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
         24, QB_EFORMAT, "'b': data_offsets [4, 8) overlap tensor 'a'"},
        {"{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
         " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
         8, QB_EFORMAT, "tensor 'a' appears twice"},
        {"{\"__metadata__\": 5}", 0, QB_EFORMAT, "\"__metadata__\" is not an object"},
        {"{\"__metadata__\": {\"k\": 1}}", 0, QB_EFORMAT, "\"__metadata__\" key 'k' is not a string"},
        {"{\"__metadata__\": {}, \"__metadata__\": {}}", 0, QB_EFORMAT, "\"__metadata__\" appears twice"},
    };
    char path[512];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qb_weights w;
        qb_status st = load_header(cases[c].json, cases[c].data, &w, path);
        CHECKF(st == cases[c].want, "case %zu (%s): got %s: %s", c, cases[c].json, qb_status_name(st),
               qb_error());
        CHECKF(strstr(qb_error(), cases[c].msg) != NULL, "case %zu: message \"%s\" lacks \"%s\"", c, qb_error(),
               cases[c].msg);
        CHECKF(strstr(qb_error(), path) != NULL, "case %zu: message does not name the file", c);
        CHECK(w.count == 0 && w.tensors == NULL);
        if (st == QB_OK) qb_weights_free(&w);
    }

    /* Raw files: too short, header length past EOF or absurd. */
    static const unsigned char seven[7] = {8, 0, 0, 0, 0, 0, 0};
    static const unsigned char past[18] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}',
                                           ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    static const unsigned char huge[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    static const unsigned char maxlen[16] = {255, 255, 255, 255, 255, 255, 255, 255, '{', '}'};
    const struct {
        const unsigned char *b;
        size_t len;
        const char *msg;
    } raw[] = {
        {seven, 0, "0 bytes is too short"}, {seven, 7, "7 bytes is too short"},
        {past, sizeof past, "header length 100 runs past the end of the file (18 bytes)"},
        {huge, sizeof huge, "header length 1099511627776 is over"}, {maxlen, sizeof maxlen, "is over"},
    };
    for (size_t c = 0; c < sizeof raw / sizeof raw[0]; c++) {
        qb_weights w;
        qb_status st = load_bytes(raw[c].b, raw[c].len, &w, path);
        CHECKF(st == QB_EFORMAT, "raw case %zu: %s", c, qb_error());
        CHECKF(strstr(qb_error(), raw[c].msg) != NULL, "raw case %zu: \"%s\"", c, qb_error());
        CHECK(w.count == 0);
    }

    qb_weights w;
    CHECK(qb_safetensors_load(io_tmp_path(path, "does-not-exist.safetensors"), true, &w) == QB_EIO);
    CHECK(qb_safetensors_load(io_tmpdir, true, &w) == QB_EIO); /* a directory */
}

/* Unusual but valid: a hole between tensors, an empty tensor inside another's range,
 * whitespace padding, metadata only. */
static void test_valid_edge_headers(void)
{
    char path[512];
    qb_weights w;
    const char *json = "{\"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [6, 8]},"
                       " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [2, 2]},"
                       " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}} \n  ";
    size_t n = strlen(json);
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    for (int i = 0; i < 8; i++) buf[8 + n + i] = (unsigned char)(10 + i);
    qb_status st = load_bytes(buf, 8 + n + 8, &w, path);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st == QB_OK) {
        CHECK(w.count == 3 && strcmp(w.names[0], "b") == 0 && strcmp(w.names[2], "a") == 0);
        CHECK(((uint8_t *)w.tensors[0].data)[0] == 16 && ((uint8_t *)w.tensors[0].data)[1] == 17);
        CHECK(((uint8_t *)w.tensors[2].data)[3] == 13);
        CHECK(qb_tensor_numel(&w.tensors[1]) == 0 && w.tensors[1].shape[1] == 5);
        qb_weights_free(&w);
    }
    st = load_header("{\"__metadata__\": {\"x\": \"y\"}}", 0, &w, path);
    CHECKF(st == QB_OK && w.count == 0, "%s", qb_error());
    qb_weights_free(&w);
}

/* ---- save ------------------------------------------------------------------------------ */

static qb_tensor rand_tensor(qb_rng *r, qb_dtype dt, int ndim, const int64_t *shape)
{
    qb_tensor t;
    qb_tensor_alloc(&t, dt, ndim, shape);
    int64_t n = qb_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) {
        float f = qb_rng_normal(r, 0.0f, 1.0f);
        uint32_t u = qb_rng_u32(r);
        switch (dt) {
        case QB_F32: ((float *)t.data)[i] = f; break;
        case QB_F16: ((uint16_t *)t.data)[i] = qb_f32_to_f16(f); break;
        case QB_BF16: ((uint16_t *)t.data)[i] = qb_f32_to_bf16(f); break;
        case QB_I8: ((int8_t *)t.data)[i] = (int8_t)u; break;
        case QB_U8: ((uint8_t *)t.data)[i] = (uint8_t)u; break;
        case QB_I32: ((int32_t *)t.data)[i] = (int32_t)u; break;
        case QB_I64: ((int64_t *)t.data)[i] = (int64_t)(((uint64_t)u << 32) | qb_rng_u32(r)); break;
        default: break;
        }
    }
    return t;
}

static bool tmp_file_left(void)
{
    DIR *d = opendir(io_tmpdir);
    bool found = false;
    for (struct dirent *e; d && (e = readdir(d));) found |= strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return found;
}

static void test_save_roundtrip(void)
{
    qb_rng r;
    qb_rng_init(&r, 7);
    static const struct {
        const char *name;
        qb_dtype dt;
        int ndim;
        int64_t shape[4];
    } spec[] = {
        {"packed", QB_U8, 1, {3}}, /* first, so that list order would misalign the rest */
        {"bert.embeddings.word_embeddings.weight", QB_F32, 2, {3, 4}}, {"h16", QB_F16, 1, {5}},
        {"b16", QB_BF16, 2, {2, 3}}, {"q \"quoted\\\" ünï/name", QB_I8, 1, {7}},
        {"ids", QB_I32, 2, {2, 2}},   {"pos", QB_I64, 2, {1, 5}},    {"scalar", QB_F32, 0, {0}},
        {"empty", QB_F32, 2, {0, 4}}, {"r4", QB_F32, 4, {1, 2, 1, 3}},
    };
    int n = (int)(sizeof spec / sizeof spec[0]);
    qb_weights w = {0};
    for (int i = 0; i < n; i++)
        qb_weights_add(&w, spec[i].name, rand_tensor(&r, spec[i].dt, spec[i].ndim, spec[i].shape));
    const char *keys[] = {"qbert.format", "weird \"key\"\\"};
    const char *vals[] = {"int8", "line\nbreak ünï"};
    qb_metadata meta = {2, keys, vals};
    char path[512];
    io_tmp_path(path, "rt.safetensors");
    int files_before = io_tmp_count();
    qb_status st = qb_safetensors_save(path, &w, &meta);
    CHECKF(st == QB_OK, "%s", qb_error());
    CHECK(io_tmp_count() == files_before + 1 && !tmp_file_left());

    /* Exact bytes back, in order. */
    qb_weights back;
    st = qb_safetensors_load(path, false, &back);
    CHECKF(st == QB_OK, "%s", qb_error());
    CHECK(back.count == n);
    for (int i = 0; i < n && i < back.count; i++) {
        CHECKF(strcmp(back.names[i], spec[i].name) == 0, "name %d: %s", i, back.names[i]);
        CHECKF(io_same_tensor(&back.tensors[i], &w.tensors[i]), "tensor %s differs", spec[i].name);
    }
    qb_weights_free(&back);

    /* to_f32: F16/BF16 widened, the rest untouched. */
    st = qb_safetensors_load(path, true, &back);
    CHECKF(st == QB_OK, "%s", qb_error());
    for (int i = 0; i < n && i < back.count; i++) {
        const qb_tensor *a = &w.tensors[i], *b = &back.tensors[i];
        if (a->dtype == QB_F16 || a->dtype == QB_BF16) {
            int bad = b->dtype != QB_F32;
            for (int64_t j = 0; !bad && j < qb_tensor_numel(a); j++) bad += ((float *)b->data)[j] != elem(a, j);
            CHECKF(bad == 0, "%s widened wrongly", spec[i].name);
        } else {
            CHECK(io_same_tensor(a, b));
        }
    }
    qb_weights_free(&back);

    /* Layout: 8-byte aligned header, padded with spaces, metadata first, tensors back to back. */
    char *file;
    size_t len;
    CHECK(qb_read_file(path, &file, &len) == QB_OK);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | (unsigned char)file[i];
    size_t total = 0;
    for (int i = 0; i < n; i++) total += qb_tensor_nbytes(&w.tensors[i]);
    CHECK(hn % 8 == 0);
    CHECKF(len == 8 + hn + total, "file %zu bytes, header %llu, data %zu", len, (unsigned long long)hn, total);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(file + 8, hn, &end, 0);
    CHECK(root != NULL);
    for (const char *c = end; root && c < file + 8 + hn; c++) CHECK(*c == ' ');
    const cJSON *m = root ? root->child : NULL;
    CHECK(m && strcmp(m->string, "__metadata__") == 0);
    for (int i = 0; i < 2 && m; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[i]);
        CHECKF(cJSON_IsString(v) && strcmp(v->valuestring, vals[i]) == 0, "metadata %s", keys[i]);
    }
    /* Every tensor at a multiple of its element size, the ranges tiling the data section. */
    uint64_t begin[16], end_[16];
    int k = 0;
    for (const cJSON *e = m ? m->next : NULL; e && k < n; e = e->next, k++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        CHECK(strcmp(e->string, spec[k].name) == 0 && cJSON_GetArraySize(o) == 2);
        begin[k] = (uint64_t)o->child->valuedouble;
        end_[k] = (uint64_t)o->child->next->valuedouble;
        CHECK(end_[k] - begin[k] == qb_tensor_nbytes(&w.tensors[k]));
        CHECKF(begin[k] % qb_dtype_bytes(spec[k].dt, 1) == 0, "%s at offset %llu", spec[k].name,
               (unsigned long long)begin[k]);
    }
    uint64_t covered = 0;
    for (int pass = 0; pass < n; pass++) /* follow the chain from 0: each step must find the next range */
        for (int i = 0; i < k; i++)
            if (begin[i] == covered && end_[i] > begin[i]) {
                covered = end_[i];
                break;
            }
    CHECKF(covered == total, "tensors cover %llu of %zu data bytes", (unsigned long long)covered, total);
    CHECK(k == n);
    cJSON_Delete(root);
    free(file);

    /* Overwriting an existing file; an empty list with no metadata. */
    qb_weights empty = {0};
    CHECK(qb_safetensors_save(path, &empty, NULL) == QB_OK);
    CHECK(qb_read_file(path, &file, &len) == QB_OK && len == 16 && memcmp(file + 8, "{}      ", 8) == 0);
    free(file);
    CHECK(qb_safetensors_load(path, true, &back) == QB_OK && back.count == 0);
    qb_weights_free(&back);

    /* Failed saves leave nothing behind. */
    char bad[512], sub[512];
    int files = io_tmp_count();
    CHECK(qb_safetensors_save(io_tmp_path(bad, "no-such-dir/x.safetensors"), &w, &meta) == QB_EIO);
    CHECK(io_tmp_count() == files);
    io_tmp_path(sub, "a-directory");
    CHECK(mkdir(sub, 0755) == 0);
    st = qb_safetensors_save(sub, &w, &meta); /* the data is written, the rename fails */
    CHECKF(st == QB_EIO && strstr(qb_error(), "rename"), "%s", qb_error());
    CHECK(io_tmp_count() == files + 1 && !tmp_file_left());
    rmdir(sub);

    /* Arguments safetensors cannot represent. */
    qb_weights dup = {0};
    int64_t one = 1;
    qb_tensor t;
    qb_tensor_alloc(&t, QB_F32, 1, &one);
    qb_weights_add(&dup, "x", t);
    qb_tensor_alloc(&t, QB_F32, 1, &one);
    qb_weights_add(&dup, "x", t);
    CHECK(qb_safetensors_save(path, &dup, NULL) == QB_EINVAL && strstr(qb_error(), "'x' appears twice"));
    free(dup.names[1]);
    dup.names[1] = qb_strdup("__metadata__");
    CHECK(qb_safetensors_save(path, &dup, NULL) == QB_EINVAL);
    free(dup.names[1]);
    dup.names[1] = qb_strdup("y");
    dup.tensors[1].dtype = QB_I4;
    CHECK(qb_safetensors_save(path, &dup, NULL) == QB_EINVAL && strstr(qb_error(), "U8"));
    dup.tensors[1].dtype = QB_F32;
    const char *dkeys[] = {"k", "k"};
    qb_metadata dmeta = {2, dkeys, vals};
    CHECK(qb_safetensors_save(path, &dup, &dmeta) == QB_EINVAL);
    CHECK(qb_safetensors_save(path, &dup, NULL) == QB_OK);
    CHECK(io_tmp_count() == files && !tmp_file_left());
    qb_weights_free(&dup);
    qb_weights_free(&w);
}

/* ---- golden models: the F16 / BF16 files are the F32 model rounded by torch ------------- */

static void test_golden_half(void)
{
    const char *f32 = "golden/tiny/model.safetensors";
    if (!qb_file_exists(f32)) {
        const char *ci = getenv("CI");
        CHECKF(!(ci && strcmp(ci, "true") == 0), "%s is missing", f32);
        printf("skipped: %s is absent\n", f32);
        return;
    }
    qb_weights ref;
    CHECKF(qb_safetensors_load(f32, true, &ref) == QB_OK, "%s", qb_error());
    const char *half[] = {"golden/tiny_f16/model.safetensors", "golden/tiny_bf16/model.safetensors"};
    for (int h = 0; h < 2; h++) {
        qb_weights raw, wide;
        CHECKF(qb_safetensors_load(half[h], false, &raw) == QB_OK, "%s", qb_error());
        CHECKF(qb_safetensors_load(half[h], true, &wide) == QB_OK, "%s", qb_error());
        CHECK(raw.count == ref.count && wide.count == ref.count);
        int bad = 0;
        for (int i = 0; i < raw.count && i < wide.count; i++) {
            int j = qb_weights_find(&ref, raw.names[i]);
            const qb_tensor *r = j >= 0 ? &ref.tensors[j] : NULL, *a = &raw.tensors[i], *b = &wide.tensors[i];
            if (!r || a->dtype != (h ? QB_BF16 : QB_F16) || b->dtype != QB_F32 ||
                qb_tensor_numel(r) != qb_tensor_numel(a)) {
                bad++;
                continue;
            }
            for (int64_t e = 0; e < qb_tensor_numel(r); e++) {
                float x = ((float *)r->data)[e];
                uint16_t want = h ? qb_f32_to_bf16(x) : qb_f32_to_f16(x);
                float wide_want = h ? qb_bf16_to_f32(want) : qb_f16_to_f32(want);
                bad += ((uint16_t *)a->data)[e] != want || ((float *)b->data)[e] != wide_want;
            }
        }
        CHECKF(bad == 0, "%s: %d mismatches against the F32 model", half[h], bad);
        qb_weights_free(&raw);
        qb_weights_free(&wide);
    }
    qb_weights_free(&ref);
}

/* ---- random corruption -------------------------------------------------------------------- */

static void test_fuzz(void)
{
    char *orig;
    size_t len;
    if (qb_read_file("data/io_values.safetensors", &orig, &len) != QB_OK) {
        CHECKF(0, "%s", qb_error());
        return;
    }
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | (unsigned char)orig[i];
    size_t header_end = 8 + (size_t)hn < len ? 8 + (size_t)hn : len;
    static const char json_chars[] = "{}[]\",:0123456789-.eE ";
    unsigned char *buf = malloc(len);
    qb_rng r;
    qb_rng_init(&r, 2024);
    char path[512];
    int loaded = 0, iters = 600;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, orig, len);
        size_t n = len;
        switch (it % 4) {
        case 0: /* random bytes in the header (where the structure is) */
            for (int k = 1 + (int)(qb_rng_u32(&r) % 4); k > 0; k--)
                buf[qb_rng_u32(&r) % header_end] = (unsigned char)qb_rng_u32(&r);
            break;
        case 1: /* JSON punctuation and digits in the header */
            for (int k = 1 + (int)(qb_rng_u32(&r) % 3); k > 0; k--)
                buf[8 + qb_rng_u32(&r) % (header_end - 8)] =
                    (unsigned char)json_chars[qb_rng_u32(&r) % (sizeof json_chars - 1)];
            break;
        case 2: /* anywhere, including the length prefix */
            buf[qb_rng_u32(&r) % len] ^= (unsigned char)(1u << (qb_rng_u32(&r) % 8));
            break;
        case 3: /* truncated */
            n = qb_rng_u32(&r) % len;
            break;
        }
        qb_weights w;
        qb_status st = load_bytes(buf, n, &w, path);
        if (it % 2) {
            qb_weights_free(&w);
            st = qb_safetensors_load(path, false, &w);
        }
        CHECKF(io_outcome_ok(st, &w), "iteration %d: %s: %s", it, qb_status_name(st), qb_error());
        loaded += st == QB_OK;
        qb_weights_free(&w);
    }
    printf("fuzz: %d of %d corrupted files still loaded\n", loaded, iters);
    free(buf);
    free(orig);
}

int main(void)
{
    qb_log_set_level(QB_LOG_QUIET);
    if (!io_tmp_init()) {
        fprintf(stderr, "cannot create a temp directory: %s\n", strerror(errno));
        return 1;
    }
    test_values_fixture(false);
    test_values_fixture(true);
    test_bad_headers();
    test_valid_edge_headers();
    test_save_roundtrip();
    test_golden_half();
    test_fuzz();
    io_tmp_cleanup();
    return check_summary("test_safetensors");
}
