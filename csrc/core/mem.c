/* Aligned allocation and whole-file I/O with atomic (temp + fsync + rename) writes. */
#include "qbert/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *qb_malloc(size_t n)
{
    void *p = NULL;
    if (n == 0) n = 1;
    /* Round up so that SIMD tails may read a full cache line past the last element. */
    if (n > SIZE_MAX - 64) return NULL;
    if (posix_memalign(&p, 64, (n + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void *qb_calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *p = qb_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void qb_free(void *p) { free(p); }

char *qb_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

qb_status qb_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qb_fail(QB_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return qb_fail(QB_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return qb_fail(QB_ENOMEM, "%s: cannot allocate %zu bytes to read it", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return qb_fail(QB_EIO, "%s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return QB_OK;
}

qb_status qb_read_ini_file(const char *path, char **text)
{
    size_t len;
    qb_status st = qb_read_file(path, text, &len);
    if (!st && strlen(*text) != len) {
        free(*text);
        *text = NULL;
        st = qb_fail(QB_EFORMAT, "%s: contains a NUL byte; expected an INI text file", path);
    }
    return st;
}

int64_t qb_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

qb_status qb_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return qb_fail(QB_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* errors name the user's path: the temporary file is ours */
    if (fd < 0) return qb_fail(QB_EIO, "%s: cannot write: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return qb_fail(QB_EIO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return qb_fail(QB_EIO, "%s: cannot flush: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qb_fail(QB_EIO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return QB_OK;
}

qb_status qb_path_join(char *buf, size_t cap, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    const char *sep = (dl > 0 && dir[dl - 1] != '/') ? "/" : "";
    int n = snprintf(buf, cap, "%s%s%s", dir, sep, name);
    if (n < 0 || (size_t)n >= cap) return qb_fail(QB_EINVAL, "%s/%s: path too long", dir, name);
    return QB_OK;
}

bool qb_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

qb_status qb_prepare_output(const char *path)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return qb_fail(QB_EINVAL, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';  /* a file in / */
    else *slash = '\0';
    qb_status st = qb_mkdirs(dir);
    if (st) return qb_fail_context(st, "%s", path);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return qb_fail(QB_EIO, "%s: %s is not a folder", path, dir);
    if (access(dir, W_OK) != 0) return qb_fail(QB_EIO, "%s: cannot write in %s: %s", path, dir, strerror(errno));
    return QB_OK;
}

qb_status qb_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return qb_fail(QB_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return qb_fail(QB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            if (!c) break;
            *p = c;
        }
    }
    return QB_OK;
}
