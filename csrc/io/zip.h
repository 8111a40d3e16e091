/* A small read-only zip reader over an in-memory (mapped) archive: enough for the
 * torch.save format, which writes stored (uncompressed) entries. Every offset and
 * size in the archive is checked against the file before it is used. */
#ifndef QBERT_IO_ZIP_H
#define QBERT_IO_ZIP_H

#include "qbert/core.h"

typedef struct {
    const char *name;     /* points into the archive, NOT NUL-terminated */
    size_t name_len;
    uint64_t offset;      /* of the entry's (compressed) bytes in the archive */
    uint64_t size;        /* compressed size */
    uint64_t usize;       /* uncompressed size */
    uint32_t crc;
    int method;           /* 0 stored, 8 deflate, ... */
    bool crc_checked;
} qb_zip_entry;

typedef struct {
    const char *path;
    const unsigned char *data;
    size_t size;
    qb_zip_entry *entries; /* sorted by name, no duplicates */
    size_t count;
} qb_zip;

/* Parses the central directory (zip64 included) and every local header of the
 * archive `data` (size bytes; `path` names it in messages). `data` must outlive z. */
qb_status qb_zip_open(qb_zip *z, const char *path, const unsigned char *data, size_t size);
/* The entry with exactly this name, or NULL. */
qb_zip_entry *qb_zip_find(const qb_zip *z, const char *name);
/* The bytes of a stored entry, CRC-32 checked on first access; other methods are rejected. */
qb_status qb_zip_read(const qb_zip *z, qb_zip_entry *e, const unsigned char **bytes, size_t *len);
void qb_zip_close(qb_zip *z);

#endif
