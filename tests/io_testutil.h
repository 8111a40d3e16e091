/* Helpers shared by the weight-file tests (test_safetensors.c, test_torchbin.c): a
 * private temp directory, whole-file read/write, tensor comparison and the
 * accepted outcomes of loading a corrupted file. */
#ifndef QBERT_TEST_IO_TESTUTIL_H
#define QBERT_TEST_IO_TESTUTIL_H

#include "qbert/io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char io_tmpdir[64];

/* Creates the test's own directory under /tmp; false on failure. */
static inline bool io_tmp_init(void)
{
    snprintf(io_tmpdir, sizeof io_tmpdir, "/tmp/qbert_io_XXXXXX");
    return mkdtemp(io_tmpdir) != NULL;
}

/* buf (at least 512 bytes) = io_tmpdir/name. */
static inline const char *io_tmp_path(char *buf, const char *name)
{
    snprintf(buf, 512, "%s/%s", io_tmpdir, name);
    return buf;
}

/* Number of directory entries (files) in io_tmpdir, "." and ".." excluded. */
static inline int io_tmp_count(void)
{
    DIR *d = opendir(io_tmpdir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

/* Removes the files the test wrote (the directory holds no subdirectories) and the directory. */
static inline void io_tmp_cleanup(void)
{
    DIR *d = opendir(io_tmpdir);
    if (!d) return;
    char path[512];
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlink(io_tmp_path(path, e->d_name));
    closedir(d);
    rmdir(io_tmpdir);
}

/* Unlinks first: rewriting a file in place with O_TRUNC makes ext4 flush it on close
 * (auto_da_alloc), which turns thousands of small test files into seconds of I/O. */
static inline bool io_write(const char *path, const void *data, size_t len)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Same dtype, shape and bytes. */
static inline bool io_same_tensor(const qb_tensor *a, const qb_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return memcmp(a->data, b->data, qb_tensor_nbytes(a)) == 0;
}

/* A corrupted file may load (the bytes still describe valid tensors) or fail with a
 * format / I/O / unsupported-feature error, and a failed load leaves the list empty. */
static inline bool io_outcome_ok(qb_status st, const qb_weights *w)
{
    if (st == QB_OK) return true;
    return (st == QB_EFORMAT || st == QB_EIO || st == QB_EUNSUPPORTED) && w->count == 0 && w->names == NULL;
}

#endif
