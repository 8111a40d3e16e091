/* Data-parallel training's world and collectives (include/qbert/dist.h): MPI on the
 * host (Open MPI from Debian's libopenmpi-dev; the build's QBERT_HAVE_MPI), NCCL for
 * CUDA gradients (csrc/dist/nccl.c, QBERT_HAVE_NCCL). Without MPI every process is
 * a world of one and the collectives are the identity. */
#include "dist/nccl.h"
#include "qbert/dist.h"

#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#ifdef QBERT_HAVE_MPI
#include <mpi.h>
#endif

struct qb_dist {
    int rank, size, local_rank;
    bool mpi;  /* started by a launcher: MPI_Init ran (even for a world of one) */
    /* the step's gradient all-reduce (qb_dist_grads_*) */
    const qb_backend *be;
    qb_stream *s;
    float *g;
    size_t n, bucket;  /* floats */
    size_t next_hi;    /* [0, next_hi) is not started yet */
#ifdef QBERT_HAVE_MPI
    MPI_Request *req;  /* the CPU's started buckets */
    int n_req, cap_req;
#endif
    qb_nccl *nccl;     /* CUDA: made on the first CUDA step */
};

/* The launcher's world size from its environment, or 0 when no launcher started us. */
static int launcher_size(const char **name)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            *name = vars[i];
            return atoi(v) > 0 ? atoi(v) : 1;
        }
    }
    return getenv("PMIX_RANK") ? (*name = "PMIX_RANK", 1) : 0;
}

qb_status qb_dist_init(int *argc, char ***argv, qb_dist **out)
{
    *out = NULL;
    qb_dist *d = calloc(1, sizeof *d);
    if (!d) return qb_fail(QB_ENOMEM, "out of memory");
    d->size = 1;
    const char *var = NULL;
    const int launched = launcher_size(&var);
#ifdef QBERT_HAVE_MPI
    if (launched) {
        int provided, e = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);  /* MPI from the main thread only */
        if (e != MPI_SUCCESS) {
            free(d);
            return qb_fail(QB_EIO, "MPI_Init failed (error %d) although a launcher started this process (%s)", e, var);
        }
        d->mpi = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
        MPI_Comm node;  /* the processes sharing this machine: the local rank picks its GPU */
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
        MPI_Comm_rank(node, &d->local_rank);
        MPI_Comm_free(&node);
        /* A failed collective ends the job instead of returning a code nobody can act on. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    }
#else
    (void)argc, (void)argv;
    if (launched > 1) {
        free(d);
        return qb_fail(QB_EUNSUPPORTED, "started by an MPI launcher (mpirun: %s = %d) but this qbert was built "
                       "without MPI: install libopenmpi-dev and rebuild (cmake -DQBERT_MPI=ON)", var, launched);
    }
#endif
    *out = d;
    return QB_OK;
}

void qb_dist_free(qb_dist *d)
{
    if (!d) return;
    qb_nccl_free(d->nccl);
#ifdef QBERT_HAVE_MPI
    free(d->req);
    if (d->mpi) MPI_Finalize();
#endif
    free(d);
}

void qb_dist_abort(qb_dist *d, int code)
{
#ifdef QBERT_HAVE_MPI
    if (d && d->mpi && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d, (void)code;
}

int qb_dist_rank(const qb_dist *d) { return d ? d->rank : 0; }
int qb_dist_size(const qb_dist *d) { return d ? d->size : 1; }
int qb_dist_local_rank(const qb_dist *d) { return d ? d->local_rank : 0; }
bool qb_dist_launched(const qb_dist *d) { return d && d->mpi; }

qb_status qb_dist_sum(qb_dist *d, double *x, int n)
{
#ifdef QBERT_HAVE_MPI
    if (d && d->mpi) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
    (void)d, (void)x, (void)n;
    return QB_OK;
}

static qb_status nccl_setup(qb_dist *d);

qb_status qb_dist_min_max(qb_dist *d, const qb_backend *be, qb_stream *s, float *v)
{
    if (!d || !d->mpi) return QB_OK;
    if (be->device == QB_DEV_CUDA) {
        const qb_status st = nccl_setup(d);
        return st ? st : qb_nccl_min_max(d->nccl, s, v);
    }
#ifdef QBERT_HAVE_MPI
    MPI_Allreduce(MPI_IN_PLACE, &v[0], 1, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &v[1], 1, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
#endif
    return QB_OK;
}

qb_status qb_dist_broadcast(qb_dist *d, void *buf, size_t bytes)
{
#ifdef QBERT_HAVE_MPI
    if (d && d->mpi) MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
    (void)d, (void)buf, (void)bytes;
    return QB_OK;
}

/* ---- the gradient all-reduce ---- */

/* NCCL's communicator over the world: rank 0 makes the id, MPI carries it. */
static qb_status nccl_setup(qb_dist *d)
{
    if (d->nccl) return QB_OK;
    unsigned char id[QB_NCCL_ID_BYTES] = {0};
    qb_status st = d->rank == 0 ? qb_nccl_unique_id(id) : QB_OK;
    double ok = st ? 0 : 1;  /* every rank learns whether rank 0 has an id before waiting on it */
    qb_dist_sum(d, &ok, 1);
    if (!st && ok < d->size) st = qb_fail(QB_EIO, "NCCL: rank 0 could not make a communicator id");
    if (!st) st = qb_dist_broadcast(d, id, sizeof id);
    if (!st) st = qb_nccl_new(id, d->rank, d->size, &d->nccl);
    return st;
}

#ifdef QBERT_HAVE_MPI
static qb_status mpi_start(qb_dist *d, float *x, size_t n)
{
    if (d->n_req == d->cap_req) {
        const int cap = d->cap_req ? 2 * d->cap_req : 16;
        MPI_Request *r = realloc(d->req, (size_t)cap * sizeof *r);
        if (!r) return qb_fail(QB_ENOMEM, "out of memory");
        d->req = r, d->cap_req = cap;
    }
    MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &d->req[d->n_req++]);
    int done;  /* lets MPI progress the buckets started earlier while the backward goes on */
    MPI_Testall(d->n_req, d->req, &done, MPI_STATUSES_IGNORE);
    return QB_OK;
}
#endif

/* Starts bucket [lo, hi) of the arena. */
static qb_status start(qb_dist *d, size_t lo, size_t hi)
{
    if (d->be->device == QB_DEV_CUDA) return qb_nccl_start(d->nccl, d->s, d->g + lo, hi - lo);
#ifdef QBERT_HAVE_MPI
    return mpi_start(d, d->g + lo, hi - lo);
#else
    return QB_OK;
#endif
}

/* Starts the buckets of [from, next_hi), back to front; every process cuts the
 * arena at the same places, so their collectives pair up. */
static qb_status start_down_to(qb_dist *d, size_t from)
{
    qb_status st = QB_OK;
    while (d->next_hi > 0 && !st) {
        const size_t lo = d->next_hi > d->bucket ? d->next_hi - d->bucket : 0;
        if (lo < from) break;
        st = start(d, lo, d->next_hi);
        d->next_hi = lo;
    }
    return st;
}

qb_status qb_dist_grads_begin(qb_dist *d, const qb_backend *be, qb_stream *s, float *g, size_t n,
                              size_t bucket_bytes)
{
    if (!d || !d->mpi) return QB_OK;
    d->be = be, d->s = s, d->g = g, d->n = n, d->next_hi = n;
    d->bucket = bucket_bytes / 4;
    if (d->bucket < 1024) d->bucket = 1024;
    if (d->bucket > ((size_t)1 << 28)) d->bucket = (size_t)1 << 28;  /* MPI counts are ints */
    if (be->device != QB_DEV_CUDA) return QB_OK;
#ifdef QBERT_HAVE_NCCL
    return nccl_setup(d);
#else
    (void)nccl_setup;
    return qb_fail(QB_EUNSUPPORTED, "data-parallel training on CUDA needs NCCL, and this qbert was built without it "
                   "(the CUDA toolkit's libnccl and nccl.h were not found)");
#endif
}

void qb_dist_grads_final(qb_dist *d, const float *from)
{
    if (!d || !d->mpi || !d->g) return;
    /* An error here surfaces at qb_dist_grads_end (MPI's are fatal; NCCL's are kept). */
    start_down_to(d, (size_t)(from - d->g));
}

qb_status qb_dist_grads_end(qb_dist *d)
{
    if (!d || !d->mpi || !d->g) return QB_OK;
    qb_status st = start_down_to(d, 0);
    if (d->be->device == QB_DEV_CUDA) {
        const qb_status j = qb_nccl_join(d->nccl, d->s);
        if (!st) st = j;
    }
#ifdef QBERT_HAVE_MPI
    else {
        MPI_Waitall(d->n_req, d->req, MPI_STATUSES_IGNORE);
        d->n_req = 0;
    }
#endif
    d->g = NULL;
    return st;
}
