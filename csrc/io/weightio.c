/* Read-only file mapping and element conversion shared by the weight-file readers.
 *
 * The readers map the file instead of reading it: a 500 MB checkpoint then costs
 * the page cache plus the converted tensors, never a second private copy. File
 * bytes carry no alignment guarantee (safetensors offsets and torch storages may
 * start anywhere), so every element is loaded with memcpy. */
#include "io/weightio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

qb_status qb_map_file(qb_mapped_file *m, const char *path)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return qb_fail(QB_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qb_fail(QB_EIO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            m->size = 0;
            return qb_fail(QB_EIO, "%s: cannot map %zu bytes: %s", path, (size_t)st.st_size, strerror(e));
        }
        m->data = p;
    }
    close(fd); /* the mapping stays valid without the descriptor */
    return QB_OK;
}

void qb_unmap_file(qb_mapped_file *m)
{
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

size_t qb_elem_size(qb_elem e)
{
    switch (e) {
    case QB_ELEM_F64: case QB_ELEM_I64: return 8;
    case QB_ELEM_F32: case QB_ELEM_I32: return 4;
    case QB_ELEM_F16: case QB_ELEM_BF16: return 2;
    case QB_ELEM_I8: case QB_ELEM_U8: return 1;
    }
    return 0;
}

const char *qb_elem_name(qb_elem e)
{
    switch (e) {
    case QB_ELEM_F64: return "F64";
    case QB_ELEM_F32: return "F32";
    case QB_ELEM_F16: return "F16";
    case QB_ELEM_BF16: return "BF16";
    case QB_ELEM_I64: return "I64";
    case QB_ELEM_I32: return "I32";
    case QB_ELEM_I8: return "I8";
    case QB_ELEM_U8: return "U8";
    }
    return "?";
}

qb_dtype qb_elem_dtype(qb_elem e, bool to_f32)
{
    switch (e) {
    case QB_ELEM_F64: case QB_ELEM_F32: return QB_F32;
    case QB_ELEM_F16: return to_f32 ? QB_F32 : QB_F16;
    case QB_ELEM_BF16: return to_f32 ? QB_F32 : QB_BF16;
    case QB_ELEM_I64: return QB_I64;
    case QB_ELEM_I32: return QB_I32;
    case QB_ELEM_I8: return QB_I8;
    case QB_ELEM_U8: return QB_U8;
    }
    return QB_F32;
}

/* n elements, `stride` elements apart in src, to n contiguous elements of dst. */
static void copy_run(unsigned char *dst, const unsigned char *src, qb_elem e, bool to_f32,
                     int64_t n, int64_t stride)
{
    size_t es = qb_elem_size(e);
    size_t step = (size_t)stride * es;
    bool widen = qb_elem_dtype(e, to_f32) == QB_F32 && e != QB_ELEM_F32;
    if (!widen) {
        if (stride == 1) {
            memcpy(dst, src, (size_t)n * es);
        } else {
            for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * es, src + (size_t)i * step, es);
        }
        return;
    }
    float *d = (float *)dst; /* dst is a qb_malloc'd F32 buffer at a whole-element offset */
    switch (e) {
    case QB_ELEM_F16:
    case QB_ELEM_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + (size_t)i * step, 2);
            d[i] = e == QB_ELEM_F16 ? qb_f16_to_f32(h) : qb_bf16_to_f32(h);
        }
        break;
    case QB_ELEM_F64:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, src + (size_t)i * step, 8);
            d[i] = (float)v; /* round to nearest, like torch's .float() */
        }
        break;
    default:
        break; /* integer types never widen */
    }
}

void qb_elem_copy(void *dst, const unsigned char *src, qb_elem e, bool to_f32, int ndim,
                  const int64_t *shape, const int64_t *stride)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (numel == 0) return;
    /* Row-major contiguous (size-1 dimensions may carry any stride): one run. */
    bool contiguous = true;
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] != 1 && stride[i] != expect) contiguous = false;
        expect *= shape[i];
    }
    if (ndim == 0 || contiguous) {
        copy_run(dst, src, e, to_f32, numel, 1);
        return;
    }
    /* Strided: one run per innermost row, the outer indices counted like an odometer. */
    size_t out_es = qb_dtype_bytes(qb_elem_dtype(e, to_f32), 1), in_es = qb_elem_size(e);
    int64_t inner = shape[ndim - 1], rows = numel / inner;
    int64_t idx[QB_MAX_DIMS] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int i = 0; i < ndim - 1; i++) off += idx[i] * stride[i];
        copy_run((unsigned char *)dst + (size_t)(r * inner) * out_es, src + (size_t)off * in_es, e,
                 to_f32, inner, stride[ndim - 1]);
        for (int i = ndim - 2; i >= 0; i--) {
            if (++idx[i] < shape[i]) break;
            idx[i] = 0;
        }
    }
}
