/* Data-parallel training over processes (csrc/dist/): one process per device,
 * started by an MPI launcher (`mpirun -np N qbert train CONFIG.ini`). MPI carries
 * the small host-side collectives and, on the CPU backend, the gradients; on the
 * CUDA backend the gradients go over NCCL, whose communicator is bootstrapped by
 * broadcasting its id over MPI. A process started without a launcher is a world of
 * one and calls neither.
 *
 * Every process of a world calls the collectives below in the same order with the
 * same sizes (they are collectives: a process that skips one leaves the others
 * waiting). After an error in one process, qb_dist_abort stops them all. */
#ifndef QBERT_DIST_H
#define QBERT_DIST_H

#include "qbert/core.h"

struct qb_backend;
struct qb_stream;

typedef struct qb_dist qb_dist;

/* The world of this process: the launcher's (MPI_Init) when one started it (Open
 * MPI's, or any setting PMI_SIZE / PMIX_RANK), else a world of one. A launcher
 * with more than one process in a build without MPI is QB_EUNSUPPORTED, naming it. */
qb_status qb_dist_init(int *argc, char ***argv, qb_dist **out);
/* Leaves the world (MPI_Finalize) and frees d; NULL: nothing. */
void qb_dist_free(qb_dist *d);
/* Ends every process of the world now with exit status code (MPI_Abort): the
 * others must not wait forever in a collective for one that failed. A world of one
 * returns. */
void qb_dist_abort(qb_dist *d, int code);

int qb_dist_rank(const qb_dist *d);        /* 0 .. size - 1; 0 for NULL */
int qb_dist_size(const qb_dist *d);        /* 1 for NULL */
int qb_dist_local_rank(const qb_dist *d);  /* among the processes of this machine: picks the GPU */
/* Whether a launcher started this world (its collectives then do something, even
 * for one process). */
bool qb_dist_launched(const qb_dist *d);

/* Host collectives. x (n) = its sum over the processes. */
qb_status qb_dist_sum(qb_dist *d, double *x, int n);
/* v[0] = the smallest v[0], v[1] = the largest v[1] over the processes, for v in
 * be's memory: on the host over MPI, on a GPU over NCCL on stream s (queued: no
 * wait). The QAT observers' statistics. */
qb_status qb_dist_min_max(qb_dist *d, const struct qb_backend *be, struct qb_stream *s, float *v);
/* buf (bytes) = rank 0's. */
qb_status qb_dist_broadcast(qb_dist *d, void *buf, size_t bytes);

/* The gradient all-reduce of one optimizer step: the arena g (n floats, in be's
 * memory) summed over the processes, in buckets of about bucket_bytes started as
 * soon as the backward pass has finished them (it finishes the arena back to front:
 * the head, the last layer ... the embeddings), so that communication overlaps the
 * rest of the backward pass. On the CPU backend the buckets are MPI_Iallreduce'd;
 * on CUDA they are NCCL all-reduces on a stream of their own, ordered after the
 * work queued on s when the bucket was started, and s is ordered after them by
 * qb_dist_grads_end. A world of one does nothing. */
qb_status qb_dist_grads_begin(qb_dist *d, const struct qb_backend *be, struct qb_stream *s, float *g, size_t n,
                              size_t bucket_bytes);
/* [from, g + n) is final: starts every bucket inside it not started yet. */
void qb_dist_grads_final(qb_dist *d, const float *from);
/* Starts the buckets left and waits for all (CPU) or orders s after them (CUDA). */
qb_status qb_dist_grads_end(qb_dist *d);

#endif
