/* torch .bin: load archives written by torch.save (data/io_torch*.bin) and compare
 * every tensor with the reference values torch wrote through the `safetensors`
 * package (data/io_torch_ref.safetensors); the golden tiny model's .bin against its
 * .safetensors; hostile and broken archives (os.system global, non-dict pickles,
 * missing or short storages, deflate, big-endian, every truncation); a hand-built zip64
 * archive; and random corruption of both the archive and, with the CRC patched, of the
 * pickle itself (run under ASan+UBSan in CI). */
#include "check.h"
#include "io_testutil.h"

#include "qbert/io.h"

#include <errno.h>

/* io_torch.bin's state dict, in pickle order (data/make_io_fixtures.py). */
static const char *const torch_names[] = {
    "0.weight", "0.bias", "1.weight", "1.bias", "f16", "bf16", "f64", "position_ids", "i32", "u8", "i8",
    "tied.a", "tied.b", "base", "view", "transposed", "permuted4d", "f16_transposed", "scalar", "empty",
    "param",
};
#define NTORCH ((int)(sizeof torch_names / sizeof torch_names[0]))

/* Every tensor of `got` equals the reference tensor of the same name; names in `order`. */
static void compare_with_ref(const char *file, const qb_weights *got, const qb_weights *ref,
                             const char *const *order, int n)
{
    CHECKF(got->count == n, "%s: %d tensors, expected %d", file, got->count, n);
    for (int i = 0; i < got->count && i < n; i++) {
        CHECKF(strcmp(got->names[i], order[i]) == 0, "%s: tensor %d is %s, expected %s", file, i, got->names[i],
               order[i]);
        int j = qb_weights_find(ref, got->names[i]);
        CHECKF(j >= 0 && io_same_tensor(&got->tensors[i], &ref->tensors[j]),
               "%s: tensor %s differs from the reference", file, got->names[i]);
        CHECK(got->tensors[i].owned && got->tensors[i].device == QB_DEV_CPU);
    }
}

static void test_torch_files(const qb_weights *ref)
{
    qb_weights w;
    qb_status st = qb_torchbin_load("data/io_torch.bin", &w);
    CHECKF(st == QB_OK, "%s", qb_error());
    compare_with_ref("io_torch.bin", &w, ref, torch_names, NTORCH);
    /* Spot checks that do not depend on the reference file. */
    int a = qb_weights_find(&w, "tied.a"), b = qb_weights_find(&w, "tied.b"),
        p = qb_weights_find(&w, "position_ids");
    int t = qb_weights_find(&w, "transposed"), s = qb_weights_find(&w, "scalar");
    CHECK(a >= 0 && b >= 0 && w.tensors[a].data != w.tensors[b].data &&
          io_same_tensor(&w.tensors[a], &w.tensors[b]));
    CHECK(p >= 0 && w.tensors[p].dtype == QB_I64 && w.tensors[p].ndim == 2 &&
          ((int64_t *)w.tensors[p].data)[6] == 6);
    CHECK(t >= 0 && w.tensors[t].ndim == 2 && w.tensors[t].shape[0] == 4 && w.tensors[t].shape[1] == 3);
    CHECK(s >= 0 && w.tensors[s].ndim == 0 && ((float *)w.tensors[s].data)[0] == 2.5f);
    qb_weights_free(&w);

    static const char *const nested[] = {"0.weight", "f16", "tied.a", "tied.b", "view"};
    st = qb_torchbin_load("data/io_torch_nested.bin", &w);
    CHECKF(st == QB_OK, "%s", qb_error());
    compare_with_ref("io_torch_nested.bin", &w, ref, nested, 5);
    qb_weights_free(&w);

    /* Hand-built (not by torch): a "little" byteorder entry and a view at storage offset 1;
     * the same in a zip64 archive. */
    const char *crafted[] = {"data/io_torch_crafted.bin", "data/io_torch_zip64.bin"};
    for (int f = 0; f < 2; f++) {
        st = qb_torchbin_load(crafted[f], &w);
        CHECKF(st == QB_OK, "%s", qb_error());
        if (st != QB_OK) continue;
        const float *v = w.tensors[0].data;
        CHECK(w.count == 1 && strcmp(w.names[0], "w") == 0 && w.tensors[0].ndim == 1 && w.tensors[0].shape[0] == 3);
        CHECK(w.tensors[0].dtype == QB_F32 && v[0] == 1.0f && v[1] == 2.0f && v[2] == 3.0f);
        qb_weights_free(&w);
    }

    static const char *const model[] = {"bf16", "transposed"};
    st = qb_torchbin_load("data/io_torch_model.bin", &w);
    CHECKF(st == QB_OK, "%s", qb_error());
    compare_with_ref("io_torch_model.bin", &w, ref, model, 2);
    qb_weights_free(&w);
}

static void test_bad_files(void)
{
    static const struct {
        const char *path;
        qb_status want;
        const char *msg;
    } cases[] = {
        {"data/io_bad_os_system.bin", QB_EFORMAT, "not a plain state dict: global os.system is not allowed"},
        {"data/io_bad_list.bin", QB_EFORMAT, "not a plain state dict: the pickled object is a list"},
        {"data/io_bad_int.bin", QB_EFORMAT, "not a plain state dict: the pickled object is an int"},
        {"data/io_bad_entry_int.bin", QB_EFORMAT, "not a plain state dict: entry 'n' is an int"},
        {"data/io_bad_missing_storage.bin", QB_EFORMAT, "tensor 'w': storage '7' (archive/data/7) is missing"},
        {"data/io_bad_small_storage.bin", QB_EFORMAT,
         "tensor 'w': size, stride and offset 0 address elements outside"},
        {"data/io_bad_no_pkl.bin", QB_EFORMAT, "no <archive>/data.pkl entry"},
        {"data/io_bad_deflate.bin", QB_EUNSUPPORTED, "deflate"},
        {"data/io_bad_big_endian.bin", QB_EUNSUPPORTED, "big-endian storages are not supported"},
        {"data/does-not-exist.bin", QB_EIO, "cannot open"},
        {"data", QB_EIO, "not a regular file"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qb_weights w;
        qb_status st = qb_torchbin_load(cases[c].path, &w);
        CHECKF(st == cases[c].want, "%s: got %s: %s", cases[c].path, qb_status_name(st), qb_error());
        CHECKF(strstr(qb_error(), cases[c].msg) && strstr(qb_error(), cases[c].path), "%s: message \"%s\"",
               cases[c].path, qb_error());
        CHECK(w.count == 0 && w.tensors == NULL);
    }

    /* Not zip archives: text, empty, a pre-1.6 pickle stream. */
    static const struct {
        const char *bytes;
        size_t len;
        qb_status want;
        const char *msg;
    } raw[] = {
        {"this is not a zip archive, just some text that is long enough", 62, QB_EFORMAT, "not a zip archive"},
        {"", 0, QB_EFORMAT, "not a zip archive"},
        {"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15, QB_EUNSUPPORTED, "legacy"},
    };
    char path[512];
    io_tmp_path(path, "raw.bin");
    for (size_t c = 0; c < sizeof raw / sizeof raw[0]; c++) {
        qb_weights w;
        CHECK(io_write(path, raw[c].bytes, raw[c].len));
        qb_status st = qb_torchbin_load(path, &w);
        CHECKF(st == raw[c].want && strstr(qb_error(), raw[c].msg), "raw case %zu: %s", c, qb_error());
        CHECK(w.count == 0);
    }
}

/* Every prefix of a valid archive is rejected cleanly (the end record is gone). */
static void test_truncations(const char *file)
{
    char *orig, path[512];
    size_t len;
    if (qb_read_file(file, &orig, &len) != QB_OK) {
        CHECKF(0, "%s", qb_error());
        return;
    }
    io_tmp_path(path, "cut.bin");
    int wrong = 0;
    for (size_t n = 0; n < len; n++) {
        qb_weights w;
        io_write(path, orig, n);
        qb_status st = qb_torchbin_load(path, &w);
        if (st != QB_EFORMAT || w.count != 0) {
            if (wrong++ < 5) fprintf(stderr, "cut at %zu: %s: %s\n", n, qb_status_name(st), qb_error());
            qb_weights_free(&w);
        }
    }
    CHECKF(wrong == 0, "%s: %d truncations not rejected with QB_EFORMAT", file, wrong);
    free(orig);
}

/* The golden tiny model: pytorch_model.bin and model.safetensors hold the same weights. */
static void test_golden(void)
{
    const char *bin = "golden/tiny_bin/pytorch_model.bin", *st_path = "golden/tiny/model.safetensors";
    if (!qb_file_exists(bin) || !qb_file_exists(st_path)) {
        const char *ci = getenv("CI");
        CHECKF(!(ci && strcmp(ci, "true") == 0), "%s or %s is missing", bin, st_path);
        printf("skipped: golden tiny model is absent\n");
        return;
    }
    qb_weights a, b;
    CHECKF(qb_torchbin_load(bin, &a) == QB_OK, "%s", qb_error());
    CHECKF(qb_safetensors_load(st_path, true, &b) == QB_OK, "%s", qb_error());
    CHECKF(a.count == b.count && a.count > 0, "%d vs %d tensors", a.count, b.count);
    int bad = 0;
    for (int i = 0; i < a.count; i++) {
        int j = qb_weights_find(&b, a.names[i]);
        bad += j < 0 || !io_same_tensor(&a.tensors[i], &b.tensors[j]);
    }
    CHECKF(bad == 0, "%d tensors differ between %s and %s", bad, bin, st_path);
    qb_weights_free(&a);
    qb_weights_free(&b);
}

/* ---- random corruption -------------------------------------------------------------------- */

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Plain bitwise CRC-32, independent of the library's table-driven one. */
static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

/* Where data.pkl and its two CRC fields are in a valid torch archive (no zip64, no comment). */
typedef struct {
    size_t data, size, crc_central, crc_local;
} pkl_loc;

static bool find_pkl(const unsigned char *z, size_t len, pkl_loc *loc)
{
    if (len < 22 || rd32(z + len - 22) != 0x06054b50u) return false;
    size_t p = rd32(z + len - 22 + 16), entries = rd16(z + len - 22 + 10);
    for (size_t i = 0; i < entries && p + 46 <= len; i++) {
        size_t nlen = rd16(z + p + 28), local = rd32(z + p + 42);
        if (nlen >= 9 && memcmp(z + p + 46 + nlen - 9, "/data.pkl", 9) == 0) {
            loc->crc_central = p + 16;
            loc->crc_local = local + 14;
            loc->size = rd32(z + p + 20);
            loc->data = local + 30 + rd16(z + local + 26) + rd16(z + local + 28);
            return true;
        }
        p += 46 + nlen + rd16(z + p + 30) + rd16(z + p + 32);
    }
    return false;
}

/* pickle_level: also corrupt data.pkl and patch its CRC (needs a plain, non-zip64 archive). */
static void test_fuzz(const char *file, uint64_t seed, int iters, bool pickle_level)
{
    char *orig, path[512];
    size_t len;
    if (qb_read_file(file, &orig, &len) != QB_OK) {
        CHECKF(0, "%s", qb_error());
        return;
    }
    const unsigned char *z = (const unsigned char *)orig;
    pkl_loc loc = {0};
    if (pickle_level && (!find_pkl(z, len, &loc) || loc.data + loc.size > len || loc.size == 0)) {
        CHECKF(0, "data.pkl not found in %s", file);
        free(orig);
        return;
    }
    CHECK(!pickle_level || crc32_ref(z + loc.data, loc.size) == rd32(z + loc.crc_central));
    unsigned char *buf = malloc(len);
    io_tmp_path(path, "fuzz.bin");
    /* Opcodes the loader knows (and a few it does not), to rearrange the pickle's structure. */
    static const unsigned char ops[] = "(.GJKMNQRX]abcehjqrstu}\x80\x85\x86\x87\x88\x89\x8a\x8c\x93\x94\x95"
                                       "dlp0}";
    qb_rng r;
    qb_rng_init(&r, seed);
    int loaded = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, z, len);
        size_t n = len;
        unsigned char *pk = buf + loc.data;
        int mode = pickle_level ? it % 5 : 3 + it % 2;
        switch (mode) {
        case 0: /* random bytes in the pickle */
            for (int k = 1 + (int)(qb_rng_u32(&r) % 3); k > 0; k--)
                pk[qb_rng_u32(&r) % loc.size] = (unsigned char)qb_rng_u32(&r);
            break;
        case 1: /* an opcode or a small number (lengths, memo indices) in the pickle */
            pk[qb_rng_u32(&r) % loc.size] = qb_rng_u32(&r) % 2 ? ops[qb_rng_u32(&r) % (sizeof ops - 1)]
                                                               : (unsigned char)(qb_rng_u32(&r) % 10);
            break;
        case 2: { /* a chunk of the pickle copied over another place */
            size_t c = 1 + qb_rng_u32(&r) % 24;
            if (c > loc.size) c = loc.size;
            size_t from = qb_rng_u32(&r) % (loc.size - c + 1), to = qb_rng_u32(&r) % (loc.size - c + 1);
            memmove(pk + to, z + loc.data + from, c);
            break;
        }
        case 3: /* anywhere in the archive (its CRC is then usually wrong) */
            for (int k = 1 + (int)(qb_rng_u32(&r) % 2); k > 0; k--)
                buf[qb_rng_u32(&r) % len] ^= (unsigned char)(1u << (qb_rng_u32(&r) % 8));
            break;
        case 4: /* truncated */
            n = qb_rng_u32(&r) % len;
            break;
        }
        if (mode <= 2) { /* keep the archive valid so that the pickle itself is tested */
            uint32_t crc = crc32_ref(pk, loc.size);
            wr32(buf + loc.crc_central, crc);
            wr32(buf + loc.crc_local, crc);
        }
        qb_weights w;
        io_write(path, buf, n);
        qb_status st = qb_torchbin_load(path, &w);
        CHECKF(io_outcome_ok(st, &w), "%s iteration %d: %s: %s", file, it, qb_status_name(st), qb_error());
        loaded += st == QB_OK;
        qb_weights_free(&w);
    }
    printf("fuzz %s: %d of %d corrupted archives still loaded\n", file, loaded, iters);
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
    qb_weights ref;
    qb_status st = qb_safetensors_load("data/io_torch_ref.safetensors", true, &ref);
    CHECKF(st == QB_OK, "%s", qb_error());
    if (st == QB_OK) test_torch_files(&ref);
    qb_weights_free(&ref);
    test_bad_files();
    test_truncations("data/io_torch.bin");
    test_truncations("data/io_torch_zip64.bin");
    test_golden();
    test_fuzz("data/io_torch.bin", 99, 1000, true);
    test_fuzz("data/io_torch_nested.bin", 100, 400, true); /* protocol 4 opcodes */
    test_fuzz("data/io_torch_zip64.bin", 101, 300, false);
    io_tmp_cleanup();
    return check_summary("test_torchbin");
}
