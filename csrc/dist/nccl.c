/* NCCL for the gradient all-reduce (csrc/dist/nccl.h). The all-reduces run on a
 * stream of their own so that the backward pass goes on beside them: each waits
 * for an event recorded on the compute stream when its bucket was final, and the
 * compute stream waits for the last one before the optimizer reads the sums.
 * Gradients are FP32 in qbert (bf16 / fp16 training keeps FP32 gradients beside
 * its FP32 masters), so they are summed in FP32.
 *
 * libnccl.so.2 is loaded when a data-parallel CUDA run first needs it (dlopen), not
 * linked: it is over 200 MB, and inference or one-GPU training must not need it. */
#include "dist/nccl.h"

#ifdef QBERT_HAVE_NCCL
#include "cuda/qb_cuda.h"

#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The NCCL calls used, from the loaded library. */
static struct {
    ncclResult_t (*get_unique_id)(ncclUniqueId *);
    ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*comm_destroy)(ncclComm_t);
    ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t *);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*group_start)(void);
    ncclResult_t (*group_end)(void);
    const char *(*error_string)(ncclResult_t);
    char failed[256];  /* why loading failed, or "" */
} lib;

static void load(void)
{
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(lib.failed, sizeof lib.failed, "cannot load NCCL (%s): install it (Debian: libnccl2) or put "
                 "libnccl.so.2 on LD_LIBRARY_PATH", dlerror());
        return;
    }
    static const char *const names[] = {"ncclGetUniqueId", "ncclCommInitRank", "ncclCommDestroy",
                                        "ncclCommGetAsyncError", "ncclAllReduce", "ncclGroupStart",
                                        "ncclGroupEnd", "ncclGetErrorString"};
    void **slots[] = {(void **)&lib.get_unique_id, (void **)&lib.comm_init_rank, (void **)&lib.comm_destroy,
                      (void **)&lib.comm_get_async_error, (void **)&lib.all_reduce, (void **)&lib.group_start,
                      (void **)&lib.group_end, (void **)&lib.error_string};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(*slots[i] = dlsym(h, names[i]))) {
            snprintf(lib.failed, sizeof lib.failed, "libnccl.so.2 has no %s: NCCL 2.x is needed", names[i]);
            return;
        }
}

static qb_status loaded(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, load);
    return lib.failed[0] ? qb_fail(QB_EUNSUPPORTED, "%s", lib.failed) : QB_OK;
}

struct qb_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t ready, done;  /* reused: each record replaces the previous one */
};

static qb_status nccl_fail(ncclResult_t r, const char *what)
{
    return qb_fail(QB_EIO, "NCCL %s: %s", what, lib.error_string(r));
}

static qb_status cuda_fail(cudaError_t e, const char *what)
{
    return qb_fail(QB_EIO, "NCCL %s: %s", what, cudaGetErrorString(e));
}

qb_status qb_nccl_unique_id(unsigned char id[QB_NCCL_ID_BYTES])
{
    _Static_assert(sizeof(ncclUniqueId) == QB_NCCL_ID_BYTES, "NCCL's id size");
    qb_status st = loaded();
    if (st) return st;
    ncclUniqueId u;
    const ncclResult_t r = lib.get_unique_id(&u);
    if (r != ncclSuccess) return nccl_fail(r, "unique id");
    memcpy(id, u.internal, sizeof u.internal);
    return QB_OK;
}

qb_status qb_nccl_new(const unsigned char id[QB_NCCL_ID_BYTES], int rank, int size, qb_nccl **out)
{
    *out = NULL;
    qb_status st = loaded();
    if (!st) st = qb_cuda_init();  /* the backend's device is current */
    if (st) return st;
    qb_nccl *c = calloc(1, sizeof *c);
    if (!c) return qb_fail(QB_ENOMEM, "out of memory");
    ncclUniqueId u;
    memcpy(u.internal, id, sizeof u.internal);
    cudaError_t e;
    ncclResult_t r = lib.comm_init_rank(&c->comm, size, u, rank);
    if (r != ncclSuccess) st = nccl_fail(r, "communicator (two processes on one GPU are not allowed by NCCL)");
    else if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
             (e = cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming)) != cudaSuccess ||
             (e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming)) != cudaSuccess)
        st = cuda_fail(e, "stream");
    if (st) qb_nccl_free(c);
    else *out = c;
    return st;
}

void qb_nccl_free(qb_nccl *c)
{
    if (!c) return;
    if (c->comm) lib.comm_destroy(c->comm);
    if (c->ready) cudaEventDestroy(c->ready);
    if (c->done) cudaEventDestroy(c->done);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

qb_status qb_nccl_start(qb_nccl *c, qb_stream *s, float *x, size_t n)
{
    cudaError_t e;
    if ((e = cudaEventRecord(c->ready, qb_cuda_stream(s))) != cudaSuccess ||
        (e = cudaStreamWaitEvent(c->stream, c->ready, 0)) != cudaSuccess)
        return cuda_fail(e, "bucket order");
    const ncclResult_t r = lib.all_reduce(x, x, n, ncclFloat, ncclSum, c->comm, c->stream);
    return r == ncclSuccess ? QB_OK : nccl_fail(r, "all-reduce");
}

qb_status qb_nccl_min_max(qb_nccl *c, qb_stream *s, float *v)
{
    const cudaStream_t st = qb_cuda_stream(s);
    ncclResult_t r = lib.group_start();
    if (r == ncclSuccess) r = lib.all_reduce(v, v, 1, ncclFloat, ncclMin, c->comm, st);
    if (r == ncclSuccess) r = lib.all_reduce(v + 1, v + 1, 1, ncclFloat, ncclMax, c->comm, st);
    const ncclResult_t e = lib.group_end();
    if (r == ncclSuccess) r = e;
    return r == ncclSuccess ? QB_OK : nccl_fail(r, "observer min / max");
}

qb_status qb_nccl_join(qb_nccl *c, qb_stream *s)
{
    cudaError_t e;
    if ((e = cudaEventRecord(c->done, c->stream)) != cudaSuccess ||
        (e = cudaStreamWaitEvent(qb_cuda_stream(s), c->done, 0)) != cudaSuccess)
        return cuda_fail(e, "join");
    ncclResult_t async;
    const ncclResult_t r = lib.comm_get_async_error(c->comm, &async);
    if (r != ncclSuccess) return nccl_fail(r, "state");
    return async == ncclSuccess || async == ncclInProgress ? QB_OK : nccl_fail(async, "all-reduce");
}

#else

static qb_status missing(void)
{
    return qb_fail(QB_EUNSUPPORTED, "this qbert was built without NCCL");
}

qb_status qb_nccl_unique_id(unsigned char id[QB_NCCL_ID_BYTES]) { (void)id; return missing(); }
qb_status qb_nccl_new(const unsigned char id[QB_NCCL_ID_BYTES], int rank, int size, qb_nccl **out)
{
    (void)id, (void)rank, (void)size;
    *out = NULL;
    return missing();
}
void qb_nccl_free(qb_nccl *c) { (void)c; }
qb_status qb_nccl_start(qb_nccl *c, struct qb_stream *s, float *x, size_t n)
{
    (void)c, (void)s, (void)x, (void)n;
    return missing();
}
qb_status qb_nccl_min_max(qb_nccl *c, struct qb_stream *s, float *v)
{
    (void)c, (void)s, (void)v;
    return missing();
}
qb_status qb_nccl_join(qb_nccl *c, struct qb_stream *s) { (void)c, (void)s; return missing(); }

#endif
