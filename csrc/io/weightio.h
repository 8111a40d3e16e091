/* Internal helpers shared by the weight-file readers (safetensors.c, torchbin.c):
 * a read-only file mapping and the element conversion that turns a (possibly
 * strided, possibly unaligned) block of file bytes into a qb_tensor's data. */
#ifndef QBERT_IO_WEIGHTIO_H
#define QBERT_IO_WEIGHTIO_H

#include "qbert/tensor.h"

/* A whole file mapped read-only (mmap: the page cache is the only copy until the
 * loader converts a tensor into its own buffer). An empty file has data == NULL. */
typedef struct {
    const char *path;
    const unsigned char *data;
    size_t size;
} qb_mapped_file;

qb_status qb_map_file(qb_mapped_file *m, const char *path);
void qb_unmap_file(qb_mapped_file *m);

/* Element types as stored in a file: qb_dtype has no f64, but both formats may hold it. */
typedef enum {
    QB_ELEM_F64, QB_ELEM_F32, QB_ELEM_F16, QB_ELEM_BF16,
    QB_ELEM_I64, QB_ELEM_I32, QB_ELEM_I8, QB_ELEM_U8,
} qb_elem;

size_t qb_elem_size(qb_elem e);
const char *qb_elem_name(qb_elem e);
/* The dtype a loaded tensor gets: floating types become F32 when to_f32 (always for
 * F64, which qbert has no tensor type for); integer types are kept. */
qb_dtype qb_elem_dtype(qb_elem e, bool to_f32);

/* Copies the (ndim, shape) block of `src` whose element (i0, i1, ...) lies at
 * src + (i0*stride[0] + i1*stride[1] + ...) * qb_elem_size(e) into the contiguous
 * row-major `dst` of type qb_elem_dtype(e, to_f32). The caller has checked that every
 * addressed element lies inside the source. ndim may be 0 (one element). */
void qb_elem_copy(void *dst, const unsigned char *src, qb_elem e, bool to_f32, int ndim,
                  const int64_t *shape, const int64_t *stride);

#endif
