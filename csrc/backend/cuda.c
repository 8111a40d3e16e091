/* The CUDA backend: the runtime every kernel of cuda/ runs under (device 0; streams,
 * each with its first error kept until qb_cuda_sync reports it and its own scratch;
 * NULL stands for the default one), device and pinned host memory, copies, CUDA
 * Graphs of whole passes, and the op table filled with the launchers of cuda/
 * (cuda/qb_cuda.h). */
#include "cuda/qb_cuda.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stream (backend.h's qb_stream, made by stream_new): what ops need to run beside
 * other work on another stream. */
struct qb_stream {
    uint64_t id;            /* unique in the process (0: the default stream) */
    cudaStream_t stream;
    cudaError_t err;        /* the pending error, cudaSuccess when none */
    char what[96];
    uint64_t epoch;         /* bumped when scratch a recorded graph may read moves */
    qb_cuda_scratch scratch;
};

static struct {
    pthread_mutex_t lock;   /* the first qb_cuda_init; qb_cuda_lock */
    bool tried;
    qb_status init;         /* the first qb_cuda_init's result */
    char init_msg[256];
    char name[128];
    qb_stream def;             /* the default stream (NULL in the ops) */
    uint64_t last_id;          /* of the latest stream made */
    qb_cuda_graph_counts graphs;
} rt = {.lock = PTHREAD_MUTEX_INITIALIZER};

static qb_stream *of(qb_stream *s) { return s ? s : &rt.def; }

static int chosen_device;  /* qb_backend_cuda_device */

void qb_backend_cuda_device(int index) { chosen_device = index; }

static qb_status init_once(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    struct cudaDeviceProp prop;
    if (e != cudaSuccess || n < 1)
        snprintf(rt.init_msg, sizeof rt.init_msg, "no CUDA device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the driver sees none");
    else if ((e = cudaSetDevice(chosen_device % n)) != cudaSuccess ||
             (e = cudaGetDeviceProperties(&prop, chosen_device % n)) != cudaSuccess ||
             (e = cudaStreamCreateWithFlags(&rt.def.stream, cudaStreamNonBlocking)) != cudaSuccess)
        snprintf(rt.init_msg, sizeof rt.init_msg, "CUDA device %d cannot be used: %s", chosen_device % n,
                 cudaGetErrorString(e));
    else if (prop.major < 8)  /* the kernels are built for sm_80 and later */
        snprintf(rt.init_msg, sizeof rt.init_msg, "CUDA device %d (%.100s) is sm_%d%d; qbert needs sm_80 or later",
                 chosen_device % n, prop.name, prop.major, prop.minor);
    else
        snprintf(rt.name, sizeof rt.name, "%.100s (sm_%d%d)", prop.name, prop.major, prop.minor);
    /* for measuring one quantized-Linear kernel against another */
    const char *w4a8 = getenv("QBERT_CUDA_W4A8"), *int8 = getenv("QBERT_CUDA_INT8");
    if (!rt.init_msg[0] && w4a8) {
        if (strcmp(w4a8, "pipelined") == 0 || strcmp(w4a8, "mma") == 0 || strcmp(w4a8, "dp4a") == 0)
            qb_cuda_set_w4a8(w4a8[0] == 'p' ? QB_W4A8_PIPELINED : w4a8[0] == 'm' ? QB_W4A8_MMA : QB_W4A8_DP4A);
        else
            snprintf(rt.init_msg, sizeof rt.init_msg, "QBERT_CUDA_W4A8=%.60s: expected pipelined, mma or dp4a", w4a8);
    }
    if (!rt.init_msg[0] && int8) {
        if (strcmp(int8, "pipelined") == 0 || strcmp(int8, "cublaslt") == 0)
            qb_cuda_set_int8(int8[0] == 'p' ? QB_INT8_PIPELINED : QB_INT8_CUBLASLT);
        else
            snprintf(rt.init_msg, sizeof rt.init_msg, "QBERT_CUDA_INT8=%.60s: expected pipelined or cublaslt", int8);
    }
    cudaGetLastError();  /* a failed call above must not look like a later launch's error */
    return rt.init_msg[0] ? QB_EUNSUPPORTED : QB_OK;
}

qb_status qb_cuda_init(void)
{
    qb_cuda_lock();
    if (!rt.tried) rt.init = init_once(), rt.tried = true;
    qb_cuda_unlock();
    return rt.init ? qb_fail(rt.init, "%s", rt.init_msg) : QB_OK;
}

void qb_cuda_lock(void) { pthread_mutex_lock(&rt.lock); }
void qb_cuda_unlock(void) { pthread_mutex_unlock(&rt.lock); }

cudaStream_t qb_cuda_stream(qb_stream *s) { return of(s)->stream; }

qb_cuda_scratch *qb_cuda_scratch_get(qb_stream *s) { return &of(s)->scratch; }

const char *qb_cuda_device_name(void) { return rt.name; }

int qb_cuda_note(qb_stream *st, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    qb_stream *s = of(st);
    if (s->err == cudaSuccess) {
        s->err = e;
        snprintf(s->what, sizeof s->what, "%s", what);
    }
    return 1;
}

int qb_cuda_launched(qb_stream *s, const char *what) { return qb_cuda_note(s, cudaGetLastError(), what); }

static unsigned long long waits;  /* qb_cuda_waits */

int qb_cuda_wait(qb_stream *s, const char *what)
{
    __atomic_add_fetch(&waits, 1, __ATOMIC_RELAXED);
    return qb_cuda_note(s, cudaStreamSynchronize(qb_cuda_stream(s)), what);
}

unsigned long long qb_cuda_waits(void) { return __atomic_load_n(&waits, __ATOMIC_RELAXED); }

qb_status qb_cuda_sync(qb_stream *st)
{
    qb_stream *s = of(st);
    qb_cuda_wait(s, "stream synchronize");
    if (s->err == cudaSuccess) return QB_OK;
    const cudaError_t e = s->err;
    s->err = cudaSuccess;
    cudaGetLastError();
    return qb_fail(QB_EUNSUPPORTED, "CUDA: %s: %s", s->what, cudaGetErrorString(e));
}

qb_stream *qb_cuda_stream_new(void)
{
    qb_stream *s = calloc(1, sizeof *s);
    if (!s) {
        qb_fail(QB_ENOMEM, "cannot allocate a CUDA stream's state");
        return NULL;
    }
    const cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    s->id = __atomic_add_fetch(&rt.last_id, 1, __ATOMIC_RELAXED);
    if (e == cudaSuccess) return s;
    cudaGetLastError();
    free(s);
    qb_fail(QB_ENOMEM, "cannot create a CUDA stream: %s", cudaGetErrorString(e));
    return NULL;
}

/* Frees a stream's scratch (cuda/gemm.cu's and cuda/qlinear.cu's buffers) once its
 * work is done; records made with it are stale. */
static void scratch_free(qb_stream *s)
{
    qb_cuda_scratch *c = &s->scratch;
    qb_cuda_wait(s, "stream free");
    cudaFree(c->workspace), cudaFree(c->v), cudaFree(c->rows), cudaFree(c->acc);
    for (int i = 0; i < 3; i++) cudaFree(c->ones[i]);
    *c = (qb_cuda_scratch){0};
    s->epoch++;
}

void qb_cuda_scratch_release(qb_stream *s) { scratch_free(of(s)); }

void qb_cuda_stream_free(qb_stream *s)
{
    if (!s || s == &rt.def) return;
    scratch_free(s);
    cudaStreamDestroy(s->stream);
    cudaGetLastError();  /* an error of the stream's own work dies with it */
    free(s);
}

void *qb_cuda_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();  /* out of memory is not sticky: the caller reports it */
        return NULL;
    }
    return p;
}

void qb_cuda_free(void *p)
{
    if (p) qb_cuda_note(NULL, cudaFree(p), "cudaFree");
}

void qb_cuda_zero(qb_stream *s, void *p, size_t bytes)
{
    if (bytes) qb_cuda_note(s, cudaMemsetAsync(p, 0, bytes, qb_cuda_stream(s)), "zero");
}

/* From pageable host memory the copy has read src when the call returns, so the
 * caller may free or reuse it at once; from pinned memory (qb_cuda_host_alloc: bert.c's
 * staging) it runs asynchronously, and src must stay as it is until the stream gets
 * there. */
void qb_cuda_to_device(qb_stream *s, void *dst, const void *src, size_t bytes)
{
    if (bytes) qb_cuda_note(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, qb_cuda_stream(s)), "to_device");
}

void qb_cuda_to_host(qb_stream *s, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (!qb_cuda_note(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, qb_cuda_stream(s)), "to_host"))
        qb_cuda_wait(s, "to_host");
}

void qb_cuda_to_host_async(qb_stream *s, void *dst, const void *src, size_t bytes)
{
    if (bytes) qb_cuda_note(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, qb_cuda_stream(s)), "to_host");
}

void qb_cuda_copy(qb_stream *s, void *dst, const void *src, size_t bytes)
{
    if (bytes) qb_cuda_note(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, qb_cuda_stream(s)), "copy");
}

void *qb_cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void qb_cuda_host_free(void *p)
{
    if (p) qb_cuda_note(NULL, cudaFreeHost(p), "cudaFreeHost");
}

/* ---- CUDA Graphs ----
 * An inference pass is about 15 launches per layer; at batch 1 the GPU finishes
 * each kernel sooner than the host launches the next, so the pass is bound by
 * launches. Recorded once as a graph, it is one launch. A record is keyed by what
 * decides its launches and pointers (the caller's key: model, batch, length, math)
 * and stamped with the scratch epoch it was made in.
 *
 * A shape is recorded the second time it is seen, not the first: the first pass
 * runs as it is and makes what the pass needs once (cuBLASLt plans, grown scratch:
 * neither may happen inside a recording), and a shape seen once only (an
 * evaluation's activations, made for one pass over a split) costs no recording. */

enum { MAX_GRAPHS = 32 };

typedef struct {
    uint64_t key[4];
    uint64_t stream;       /* the id of the stream whose scratch the pass used ... */
    uint64_t epoch;        /* ... and its epoch, when the pass last ran as it is or was recorded */
    cudaGraphExec_t exec;  /* NULL: seen once, not recorded */
} graph;

typedef struct {
    graph g[MAX_GRAPHS];
    int n;
    bool off;  /* recording failed once, or QBERT_CUDA_GRAPHS=0: every pass runs as it is */
} graph_cache;

void qb_cuda_scratch_moved(qb_stream *s) { of(s)->epoch++; }

qb_cuda_graph_counts qb_cuda_graph_stats(void)
{
    return (qb_cuda_graph_counts){__atomic_load_n(&rt.graphs.recorded, __ATOMIC_RELAXED),
                                  __atomic_load_n(&rt.graphs.replayed, __ATOMIC_RELAXED),
                                  __atomic_load_n(&rt.graphs.failed, __ATOMIC_RELAXED)};
}

static void graph_drop(graph_cache *c, int i)
{
    if (c->g[i].exec) qb_cuda_note(NULL, cudaGraphExecDestroy(c->g[i].exec), "graph destroy");
    c->g[i] = c->g[--c->n];
}

/* Records queue(ctx) (which only queues work on s: nothing runs) into *exec; false
 * after a failure, leaving no pending error and the reason in why. */
static bool record(qb_stream *s, void (*queue)(void *ctx), void *ctx, cudaGraphExec_t *exec, char *why,
                   size_t why_len)
{
    const uint64_t epoch = s->epoch;
    cudaGraph_t g = NULL;
    /* Thread-local mode: a call that cannot be recorded (an allocation, a wait) fails
     * here instead of silently running outside the graph. */
    cudaError_t e = cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
        queue(ctx);
        e = cudaStreamEndCapture(s->stream, &g);  /* always ends the capture, even a broken one */
    }
    if (e == cudaSuccess && s->err != cudaSuccess) e = s->err;
    if (e == cudaSuccess && s->epoch != epoch) e = cudaErrorStreamCaptureInvalidated;  /* scratch grew inside */
    if (e == cudaSuccess) e = cudaGraphInstantiate(exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e == cudaSuccess) return true;
    *exec = NULL;
    snprintf(why, why_len, "%s%s%s", s->err != cudaSuccess ? s->what : "", s->err != cudaSuccess ? ": " : "",
             cudaGetErrorString(e));
    s->err = cudaSuccess;  /* nothing ran: the caller runs the pass as it is */
    cudaGetLastError();
    return false;
}

qb_status qb_cuda_replay(qb_stream *st, void **graphs, const uint64_t key[4], void (*queue)(void *ctx), void *ctx)
{
    qb_stream *s = of(st);
    graph_cache *c = *graphs;
    if (!c) {
        const char *env = getenv("QBERT_CUDA_GRAPHS");
        c = *graphs = calloc(1, sizeof *c);
        if (c && env && strcmp(env, "0") == 0) c->off = true;
    }
    /* An error still pending from earlier work (the upload, a training step): report
     * it rather than take it for a failure of the recording below. */
    if (s->err != cudaSuccess) return qb_cuda_sync(s);
    if (!c || c->off) {  /* (out of host memory for the table: no graphs, same results) */
        queue(ctx);
        return QB_OK;
    }
    graph *g = NULL;
    for (int i = 0; i < c->n && !g; i++)
        if (memcmp(c->g[i].key, key, sizeof c->g[i].key) == 0) g = &c->g[i];
    const bool same = g && g->stream == s->id && g->epoch == s->epoch;
    if (g && !same && g->exec) {  /* recorded before some scratch it reads moved, or on another stream */
        qb_cuda_note(s, cudaGraphExecDestroy(g->exec), "graph destroy");
        g->exec = NULL;
    }
    if (g && !g->exec && same) {  /* seen before, nothing moved since: record */
        char why[160];
        if (record(s, queue, ctx, &g->exec, why, sizeof why)) {
            __atomic_add_fetch(&rt.graphs.recorded, 1, __ATOMIC_RELAXED);
        } else {
            qb_log(QB_LOG_WARN, "CUDA graph recording failed (%s): passes run without graphs from now on", why);
            __atomic_add_fetch(&rt.graphs.failed, 1, __ATOMIC_RELAXED);
            c->off = true;
            queue(ctx);
            return QB_OK;
        }
    }
    if (g && g->exec) {
        __atomic_add_fetch(&rt.graphs.replayed, 1, __ATOMIC_RELAXED);
        qb_cuda_note(s, cudaGraphLaunch(g->exec, s->stream), "graph launch");
        return QB_OK;
    }
    /* First sight (or the first since some scratch moved): the pass as it is. */
    queue(ctx);
    const qb_status status = qb_cuda_sync(s);
    if (status) return status;
    if (!g) {
        if (c->n == MAX_GRAPHS) graph_drop(c, 0);
        g = &c->g[c->n++];
        *g = (graph){.exec = NULL};
        memcpy(g->key, key, sizeof g->key);
    }
    g->stream = s->id, g->epoch = s->epoch;
    return QB_OK;
}

void qb_cuda_graphs_free(void *graphs)
{
    graph_cache *c = graphs;
    while (c && c->n) graph_drop(c, c->n - 1);
    free(c);
}

static const qb_backend cuda_backend = {
    .name = "cuda",
    .device = QB_DEV_CUDA,
    .caps = QB_CAN_GRAPHS | QB_CAN_STREAMS | QB_CAN_HALF,
    .device_name = qb_cuda_device_name,
    .alloc = qb_cuda_alloc,
    .free = qb_cuda_free,
    .linear = qb_cuda_linear,
    .linear_q = qb_cuda_linear_q,
    .qlinear_prepare = qb_cuda_qlinear_prepare,
    .linear_backward = qb_cuda_linear_backward,
    .layernorm = qb_cuda_layernorm,
    .layernorm_backward = qb_cuda_layernorm_backward,
    .gelu = qb_cuda_gelu,
    .gelu_backward = qb_cuda_gelu_backward,
    .tanh = qb_cuda_tanh,
    .tanh_backward = qb_cuda_tanh_backward,
    .attention = qb_cuda_attention,
    .attention_backward = qb_cuda_attention_backward,
    .embedding = qb_cuda_embedding,
    .embedding_backward = qb_cuda_embedding_backward,
    .dropout = qb_cuda_dropout,
    .xent = qb_cuda_xent,
    .adamw = qb_cuda_adamw,
    .loss_scale_update = qb_cuda_loss_scale_update,
    .sumsq = qb_cuda_sumsq,
    .add = qb_cuda_add,
    .rows = qb_cuda_rows,
    .fake_quant_weight = qb_cuda_fake_quant_weight,
    .fake_quant = qb_cuda_fake_quant,
    .fake_quant_backward = qb_cuda_fake_quant_backward,
    .minmax = qb_cuda_minmax,
    .abs_percentile = qb_cuda_abs_percentile,
    .observe = qb_cuda_observe,
    .zero = qb_cuda_zero,
    .to_device = qb_cuda_to_device,
    .to_host = qb_cuda_to_host,
    .to_host_async = qb_cuda_to_host_async,
    .copy = qb_cuda_copy,
    .sync = qb_cuda_sync,
    .host_alloc = qb_cuda_host_alloc,
    .host_free = qb_cuda_host_free,
    .replay = qb_cuda_replay,
    .graphs_free = qb_cuda_graphs_free,
    .stream_new = qb_cuda_stream_new,
    .stream_free = qb_cuda_stream_free,
};

qb_status qb_backend_cuda(const qb_backend **out)
{
    *out = NULL;
    qb_status st = qb_cuda_init();
    if (!st) *out = &cuda_backend;
    return st;
}
