/* Internal to csrc/dist: the NCCL side of the gradient all-reduce (nccl.c), for a
 * world whose backend is CUDA. Without NCCL in the build every call fails with
 * QB_EUNSUPPORTED (and qb_nccl_free does nothing). */
#ifndef QBERT_DIST_NCCL_H
#define QBERT_DIST_NCCL_H

#include "qbert/core.h"

#include <stddef.h>

struct qb_stream;
typedef struct qb_nccl qb_nccl;

#define QB_NCCL_ID_BYTES 128  /* NCCL_UNIQUE_ID_BYTES */

/* Rank 0: a fresh communicator id, for MPI to carry to the others. */
qb_status qb_nccl_unique_id(unsigned char id[QB_NCCL_ID_BYTES]);
/* This process's member (rank of size) of the communicator id names, on the
 * CUDA backend's device, with a stream of its own for the all-reduces. */
qb_status qb_nccl_new(const unsigned char id[QB_NCCL_ID_BYTES], int rank, int size, qb_nccl **out);
void qb_nccl_free(qb_nccl *c);
/* Sums x (n floats, device memory) over the world in place, on the
 * communicator's stream, after the work queued on s so far. */
qb_status qb_nccl_start(qb_nccl *c, struct qb_stream *s, float *x, size_t n);
/* v[0] = the min of v[0], v[1] = the max of v[1] over the world (device memory),
 * on stream s itself. */
qb_status qb_nccl_min_max(qb_nccl *c, struct qb_stream *s, float *v);
/* Orders s after every all-reduce started; reports NCCL's asynchronous errors. */
qb_status qb_nccl_join(qb_nccl *c, struct qb_stream *s);

#endif
