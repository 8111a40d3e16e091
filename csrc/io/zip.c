/* Read-only zip reader (PKWARE APPNOTE 6.3): end of central directory (+ zip64
 * locator and record), central directory entries (+ zip64 extended information),
 * local headers. Only what torch.save archives need: one disk, stored entries,
 * no encryption. All integers are little-endian; all bounds are checked in
 * uint64_t against the archive size, so no field can point outside it. */
#include "io/zip.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define EOCD_SIZE 22
#define LOCATOR64_SIZE 20
#define EOCD64_SIZE 56
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* CRC-32 (IEEE, reflected), slicing by 8: checking a 500 MB checkpoint costs a
 * fraction of a second instead of the ~1 s of the byte-at-a-time table. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc32(const unsigned char *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t a = rd32(p) ^ c, b = rd32(p + 4);
        c = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff] ^
            crc_table[4][a >> 24] ^ crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^
            crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
    }
    for (; n > 0; p++, n--) c = crc_table[0][(c ^ *p) & 0xff] ^ (c >> 8);
    return ~c;
}

/* Where the central directory is, from the (zip64) end-of-central-directory record. */
typedef struct {
    uint64_t entries, cd_offset, cd_size;
    uint64_t cd_limit; /* the first byte after the space the central directory may use */
} zip_dir;

static qb_status find_directory(const qb_zip *z, zip_dir *dir)
{
    const unsigned char *d = z->data;
    uint64_t size = z->size, eocd = UINT64_MAX;
    if (size < EOCD_SIZE)
        return qb_fail(QB_EFORMAT, "%s: not a zip archive (%" PRIu64 " bytes, no end of central directory)",
                       z->path, size);
    /* The record is the last thing in the file, followed only by its comment (< 64 KiB). */
    uint64_t lowest = size - EOCD_SIZE > 0xFFFF ? size - EOCD_SIZE - 0xFFFF : 0;
    for (uint64_t p = size - EOCD_SIZE + 1; p-- > lowest;) {
        if (rd32(d + p) == SIG_EOCD && p + EOCD_SIZE + rd16(d + p + 20) == size) {
            eocd = p;
            break;
        }
    }
    if (eocd == UINT64_MAX)
        return qb_fail(QB_EFORMAT, "%s: not a zip archive (no end of central directory record)", z->path);
    const unsigned char *e = d + eocd;
    uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), on_disk = rd16(e + 8);
    dir->entries = rd16(e + 10);
    dir->cd_size = rd32(e + 12);
    dir->cd_offset = rd32(e + 16);
    dir->cd_limit = eocd;
    if (dir->entries == 0xFFFF || dir->cd_size == 0xFFFFFFFFu || dir->cd_offset == 0xFFFFFFFFu) {
        if (eocd < LOCATOR64_SIZE || rd32(d + eocd - LOCATOR64_SIZE) != SIG_LOCATOR64)
            return qb_fail(QB_EFORMAT, "%s: zip64 end of central directory locator is missing", z->path);
        uint64_t rec = rd64(d + eocd - LOCATOR64_SIZE + 8);
        if (rec > eocd - LOCATOR64_SIZE || eocd - LOCATOR64_SIZE - rec < EOCD64_SIZE ||
            rd32(d + rec) != SIG_EOCD64)
            return qb_fail(QB_EFORMAT, "%s: zip64 end of central directory record is missing or out of range",
                           z->path);
        disk = rd32(d + rec + 16);
        cd_disk = rd32(d + rec + 20);
        on_disk = rd64(d + rec + 24);
        dir->entries = rd64(d + rec + 32);
        dir->cd_size = rd64(d + rec + 40);
        dir->cd_offset = rd64(d + rec + 48);
        dir->cd_limit = rec;
    }
    if (disk != 0 || cd_disk != 0 || on_disk != dir->entries)
        return qb_fail(QB_EFORMAT, "%s: multi-disk zip archives are not supported", z->path);
    if (dir->cd_offset > dir->cd_limit || dir->cd_size > dir->cd_limit - dir->cd_offset)
        return qb_fail(QB_EFORMAT,
                       "%s: central directory (offset %" PRIu64 ", %" PRIu64 " bytes) is out of range", z->path,
                       dir->cd_offset, dir->cd_size);
    if (dir->entries > dir->cd_size / CENTRAL_SIZE)
        return qb_fail(QB_EFORMAT, "%s: %" PRIu64 " entries cannot fit in a %" PRIu64 "-byte central directory",
                       z->path, dir->entries, dir->cd_size);
    return QB_OK;
}

/* Replaces the 0xFFFFFFFF fields of a central entry by the zip64 extra field's values
 * (present in this order, only for the fields that overflowed). */
static qb_status read_zip64_extra(const qb_zip *z, const unsigned char *x, uint64_t xlen, uint64_t *usize,
                                  uint64_t *csize, uint64_t *local, int name_len, const char *name)
{
    while (xlen >= 4) {
        uint64_t id = rd16(x), len = rd16(x + 2);
        if (len > xlen - 4) break; /* malformed trailing extra: nothing more to read */
        if (id == 0x0001) {
            uint64_t *fields[3] = {usize, csize, local};
            const unsigned char *p = x + 4;
            uint64_t left = len;
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu) continue;
                if (left < 8)
                    return qb_fail(QB_EFORMAT, "%s: entry '%.*s': zip64 extra field is too short", z->path,
                                   name_len, name);
                *fields[i] = rd64(p);
                p += 8;
                left -= 8;
            }
            return QB_OK;
        }
        x += 4 + len;
        xlen -= 4 + len;
    }
    if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *local == 0xFFFFFFFFu)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s': zip64 extra field is missing", z->path, name_len, name);
    return QB_OK;
}

/* One central directory entry at *pos (advanced past it) and its local header. */
static qb_status read_entry(const qb_zip *z, const zip_dir *dir, uint64_t *pos, qb_zip_entry *e)
{
    const unsigned char *d = z->data;
    uint64_t cd_end = dir->cd_offset + dir->cd_size, p = *pos;
    if (cd_end - p < CENTRAL_SIZE || rd32(d + p) != SIG_CENTRAL)
        return qb_fail(QB_EFORMAT, "%s: bad central directory entry at offset %" PRIu64, z->path, p);
    const unsigned char *c = d + p;
    uint64_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    if (cd_end - p - CENTRAL_SIZE < nlen + xlen + clen)
        return qb_fail(QB_EFORMAT, "%s: central directory entry at offset %" PRIu64 " runs past the directory",
                       z->path, p);
    e->name = (const char *)c + CENTRAL_SIZE;
    e->name_len = (size_t)nlen;
    int nl = (int)nlen;
    uint16_t flags = rd16(c + 8);
    e->method = rd16(c + 10);
    e->crc = rd32(c + 16);
    e->crc_checked = false;
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24), local = rd32(c + 42);
    qb_status st = read_zip64_extra(z, c + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &local, nl, e->name);
    if (st) return st;
    if (flags & 1) return qb_fail(QB_EFORMAT, "%s: entry '%.*s' is encrypted", z->path, nl, e->name);
    *pos = p + CENTRAL_SIZE + nlen + xlen + clen;

    /* The local header repeats the name; its extra field may differ (torch pads it so
     * that the data is 64-byte aligned), so the data offset comes from it. */
    if (local > dir->cd_offset || dir->cd_offset - local < LOCAL_SIZE || rd32(d + local) != SIG_LOCAL)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s': local header offset %" PRIu64 " is invalid", z->path, nl,
                       e->name, local);
    uint64_t lnlen = rd16(d + local + 26), lxlen = rd16(d + local + 28);
    uint64_t room = dir->cd_offset - local - LOCAL_SIZE; /* bytes before the central directory */
    if (lnlen + lxlen > room)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s': local header runs into the central directory", z->path,
                       nl, e->name);
    if (lnlen != nlen || memcmp(d + local + LOCAL_SIZE, e->name, (size_t)nlen) != 0)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s': local header names a different file", z->path, nl,
                       e->name);
    if (csize > room - lnlen - lxlen)
        return qb_fail(QB_EFORMAT,
                       "%s: entry '%.*s': %" PRIu64 " bytes of data run past the end of the archive data",
                       z->path, nl, e->name, csize);
    if (e->method == 0 && csize != usize)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s': stored entry has compressed size %" PRIu64
                       " but uncompressed size %" PRIu64, z->path, nl, e->name, csize, usize);
    e->offset = local + LOCAL_SIZE + lnlen + lxlen;
    e->size = csize;
    e->usize = usize;
    return QB_OK;
}

static int cmp_names(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r) return r;
    return alen < blen ? -1 : alen > blen;
}

static int cmp_entry(const void *a, const void *b)
{
    const qb_zip_entry *x = a, *y = b;
    return cmp_names(x->name, x->name_len, y->name, y->name_len);
}

qb_status qb_zip_open(qb_zip *z, const char *path, const unsigned char *data, size_t size)
{
    memset(z, 0, sizeof *z);
    z->path = path;
    z->data = data;
    z->size = size;
    zip_dir dir = {0};
    qb_status st = find_directory(z, &dir);
    if (st) return st;
    /* entries <= cd_size / 46 <= file size / 46: the allocation is bounded by the file. */
    z->entries = calloc(dir.entries ? (size_t)dir.entries : 1, sizeof *z->entries);
    if (!z->entries)
        return qb_fail(QB_ENOMEM, "%s: cannot allocate %" PRIu64 " zip entries", path, dir.entries);
    uint64_t pos = dir.cd_offset;
    for (uint64_t i = 0; i < dir.entries && !st; i++) st = read_entry(z, &dir, &pos, &z->entries[i]);
    z->count = (size_t)dir.entries;
    if (!st) {
        qsort(z->entries, z->count, sizeof *z->entries, cmp_entry);
        for (size_t i = 1; i < z->count && !st; i++)
            if (cmp_entry(&z->entries[i - 1], &z->entries[i]) == 0)
                st = qb_fail(QB_EFORMAT, "%s: entry '%.*s' appears twice in the archive", path,
                             (int)z->entries[i].name_len, z->entries[i].name);
    }
    if (st) qb_zip_close(z);
    return st;
}

qb_zip_entry *qb_zip_find(const qb_zip *z, const char *name)
{
    size_t len = strlen(name), lo = 0, hi = z->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_names(z->entries[mid].name, z->entries[mid].name_len, name, len);
        if (r == 0) return &z->entries[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

qb_status qb_zip_read(const qb_zip *z, qb_zip_entry *e, const unsigned char **bytes, size_t *len)
{
    int nl = (int)e->name_len;
    if (e->method == 8)
        return qb_fail(QB_EUNSUPPORTED,
                       "%s: entry '%.*s' is deflate-compressed; torch.save writes stored "
                       "entries, so re-save the file with torch.save instead of re-zipping it",
                       z->path, nl, e->name);
    if (e->method != 0)
        return qb_fail(QB_EFORMAT, "%s: entry '%.*s' uses unknown compression method %d", z->path, nl, e->name,
                       e->method);
    if (!e->crc_checked) {
        uint32_t crc = crc32(z->data + e->offset, (size_t)e->size);
        if (crc != e->crc)
            return qb_fail(QB_EFORMAT, "%s: entry '%.*s' is corrupt (CRC-32 %08x, expected %08x)", z->path, nl,
                           e->name, crc, e->crc);
        e->crc_checked = true;
    }
    *bytes = z->data + e->offset;
    *len = (size_t)e->size;
    return QB_OK;
}

void qb_zip_close(qb_zip *z)
{
    free(z->entries);
    z->entries = NULL;
    z->count = 0;
}
