/* The CUDA training ops against the CPU backend on the same fresh random inputs:
 * embedding forward and backward, dropout, softmax cross-entropy and AdamW.
 * Bit for bit where the kernel does the CPU's float operations in its order
 * (embedding forward, the position gradient, the pad row, dropout); relative L2
 * error <= CUDA_TOL elsewhere (atomic scatters, a warp-tree sum). Prints "skipped"
 * and passes without a usable GPU. */
#include "cuda_check.h"

#include <stdarg.h>
#include <stdint.h>

/* The name of a check, formatted (used before the next call). */
static const char *named(const char *fmt, ...)
{
    static char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

/* n integers uniform in [0, hi). */
static int32_t *rand_ints(size_t n, int hi)
{
    int32_t *p = host_alloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)(qb_rng_u32(&cuda_rng) % (uint32_t)hi);
    return p;
}

static float *host_copy(const float *src, size_t n)
{
    float *p = host_alloc(n * sizeof *p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static uint64_t rand_u64(void)
{
    const uint64_t hi = qb_rng_u32(&cuda_rng);
    return hi << 32 | qb_rng_u32(&cuda_rng);
}

/* ---- embedding ---- */

/* vocab word rows, ntypes type rows; a small vocab makes ids repeat. */
static void test_embedding(int B, int T, int C, int vocab, int ntypes)
{
    const size_t rows = (size_t)B * T, n = rows * C;
    const size_t nw = (size_t)vocab * C, np = (size_t)T * C, nt = (size_t)ntypes * C;
    const int pad_id = (int)(qb_rng_u32(&cuda_rng) % (uint32_t)vocab);
    int32_t *ids = rand_ints(rows, vocab), *types = rand_ints(rows, ntypes);
    ids[0] = pad_id;
    if (rows >= 3) ids[rows - 1] = ids[rows / 2];  /* a repeated id, whatever vocab is */
    float *word = rand_host(nw, -1.0f, 1.0f), *pos = rand_host(np, -1.0f, 1.0f), *type = rand_host(nt, -1.0f, 1.0f);
    int32_t *d_ids = dev_from(ids, rows * sizeof *ids), *d_types = dev_from(types, rows * sizeof *types);
    float *d_word = dev_from(word, nw * sizeof *word), *d_pos = dev_from(pos, np * sizeof *pos);
    float *d_type = dev_from(type, nt * sizeof *type), *d_out = dev_from(NULL, n * sizeof(float));

    /* Forward: the same two additions in the same order. */
    float *out = host_alloc(n * sizeof *out);
    cpu->embedding(NULL, out, ids, types, word, pos, type, B, T, C, QB_F32, QB_F32);
    gpu->embedding(NULL, d_out, d_ids, d_types, d_word, d_pos, d_type, B, T, C, QB_F32, QB_F32);
    check_equal(named("embedding B=%d T=%d C=%d", B, T, C), d_out, out, n * sizeof *out);

    /* Backward onto non-zero gradients (the tables reused as their starting values). */
    float *dout = rand_host(n, -1.0f, 1.0f);
    float *d_dout = dev_from(dout, n * sizeof *dout);
    float *dword = host_copy(word, nw), *dpos = host_copy(pos, np), *dtype = host_copy(type, nt);
    cpu->embedding_backward(NULL, dword, dpos, dtype, dout, ids, types, pad_id, B, T, C, QB_F32);
    gpu->embedding_backward(NULL, d_word, d_pos, d_type, d_dout, d_ids, d_types, pad_id, B, T, C, QB_F32);
    check_close(named("embedding_backward dword B=%d T=%d C=%d", B, T, C), d_word, dword, nw, CUDA_TOL);
    check_close(named("embedding_backward dtype B=%d T=%d C=%d", B, T, C), d_type, dtype, nt, CUDA_TOL);
    /* Each position's column is summed by one thread in the CPU's order. */
    check_equal(named("embedding_backward dpos B=%d T=%d C=%d", B, T, C), d_pos, dpos, np * sizeof *dpos);
    check_equal(named("embedding_backward pad row %d untouched (B=%d T=%d C=%d)", pad_id, B, T, C),
                d_word + (size_t)pad_id * C, word + (size_t)pad_id * C, (size_t)C * sizeof *word);

    gpu->free(d_ids), gpu->free(d_types), gpu->free(d_word), gpu->free(d_pos), gpu->free(d_type);
    gpu->free(d_out), gpu->free(d_dout);
    free(ids), free(types), free(word), free(pos), free(type), free(out), free(dout);
    free(dword), free(dpos), free(dtype);
}

/* ---- dropout ---- */

static void test_dropout_one(size_t n, const qb_dropout *d)
{
    float *x = rand_host(n, -2.0f, 2.0f);
    float *d_x = dev_from(x, n * sizeof *x);
    cpu->dropout(NULL, x, n, d, QB_F32);
    gpu->dropout(NULL, d_x, n, d, QB_F32);
    check_equal(d ? named("dropout n=%zu p=%g seed=%llu stream=%llu", n, d->p, (unsigned long long)d->seed,
                          (unsigned long long)d->stream)
                  : named("dropout n=%zu NULL", n),
                d_x, x, n * sizeof *x);
    gpu->free(d_x);
    free(x);
}

/* A stream offset in device memory (a recorded step's): the GPU's mask with stream
 * S and *offset K is the CPU's with stream S + K, and the CPU's own offset (in its
 * memory, the host's) gives the same. */
static void test_dropout_offset(size_t n, float p)
{
    const uint64_t k = rand_u64() >> 1, base = qb_rng_u32(&cuda_rng);
    uint64_t *d_k = dev_from(&k, sizeof k);
    const qb_dropout on_gpu = {p, rand_u64(), base, d_k}, on_cpu = {p, on_gpu.seed, base, &k};
    const qb_dropout plain = {p, on_gpu.seed, base + k, NULL};
    float *x = rand_host(n, -2.0f, 2.0f), *y = host_alloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *x);
    float *d_x = dev_from(x, n * sizeof *x);
    cpu->dropout(NULL, x, n, &plain, QB_F32);
    cpu->dropout(NULL, y, n, &on_cpu, QB_F32);
    gpu->dropout(NULL, d_x, n, &on_gpu, QB_F32);
    check_equal(named("dropout n=%zu p=%g, stream offset in device memory", n, p), d_x, x, n * sizeof *x);
    CHECKF(memcmp(x, y, n * sizeof *x) == 0, "CPU dropout n=%zu: the offset in memory differs from stream + offset", n);
    gpu->free(d_x), gpu->free(d_k);
    free(x), free(y);
}

static void test_dropout(void)
{
    static const size_t ns[] = {1, 3, 4, 5, 1000003};
    static const float ps[] = {0.1f, 0.5f};
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
            /* Small and full 64-bit seeds and streams (both halves of the Philox key and counter). */
            const qb_dropout sites[] = {{ps[pi], rand_u64() >> 40, 0, NULL},
                                        {ps[pi], rand_u64(), qb_rng_u32(&cuda_rng) % 64, NULL},
                                        {ps[pi], rand_u64(), rand_u64(), NULL}};
            for (size_t s = 0; s < sizeof sites / sizeof *sites; s++) test_dropout_one(ns[ni], &sites[s]);
            test_dropout_offset(ns[ni], ps[pi]);
        }
        /* Off: x unchanged (the CPU leaves it so too). */
        const qb_dropout off = {0.0f, rand_u64(), 1, NULL};
        test_dropout_one(ns[ni], &off);
        test_dropout_one(ns[ni], NULL);
    }
}

/* ---- softmax cross-entropy ---- */

/* Losses (B), the norm of ref floored at sqrt(B) (that of all ones): a confident
 * row's loss, (max + log(sum)) - z[label] with max near 80, is a small multiple of the
 * double ulp of 80 (1.4e-14), so a one-ulp difference of lse (the order of the sum)
 * would read as a large relative error though both losses are right to 1e-14. */
static void check_losses(const char *what, const float *dev, const float *ref, int B)
{
    float *got = host_from(dev, (size_t)B * sizeof *got, what);
    double e = 0.0, r = 0.0;
    for (int b = 0; b < B; b++) {
        const double d = (double)got[b] - ref[b];
        e += d * d;
        r += (double)ref[b] * ref[b];
    }
    e = sqrt(e) / fmax(sqrt(r), sqrt((double)B));
    CHECKF(e <= CUDA_TOL && !isnan(e), "%s: error %.3g > %.1g", what, e, CUDA_TOL);
    free(got);
}

/* loss_scale 0: none (NULL), else fp16's scale in the backend's memory. */
static void test_xent(int B, int K, float range, float grad_scale, float loss_scale)
{
    float *d_scale = loss_scale > 0 ? dev_from(&loss_scale, sizeof loss_scale) : NULL;
    const size_t n = (size_t)B * K;
    float *logits = rand_host(n, -range, range);
    int32_t *labels = rand_ints((size_t)B, K);
    float *losses = host_alloc((size_t)B * sizeof *losses), *dlogits = host_alloc(n * sizeof *dlogits);
    float *d_logits = dev_from(logits, n * sizeof *logits), *d_dlogits = dev_from(NULL, n * sizeof *dlogits);
    float *d_losses = dev_from(NULL, (size_t)B * sizeof *losses);
    int32_t *d_labels = dev_from(labels, (size_t)B * sizeof *labels);
    cpu->xent(NULL, losses, dlogits, logits, labels, B, K, grad_scale, loss_scale > 0 ? &loss_scale : NULL);
    gpu->xent(NULL, d_losses, d_dlogits, d_logits, d_labels, B, K, grad_scale, d_scale);
    check_losses(named("xent losses B=%d K=%d range %g", B, K, range), d_losses, losses, B);
    check_close(named("xent dlogits B=%d K=%d range %g scale %g", B, K, range, loss_scale), d_dlogits, dlogits, n,
                CUDA_TOL);
    gpu->free(d_logits), gpu->free(d_dlogits), gpu->free(d_losses), gpu->free(d_labels);
    if (d_scale) gpu->free(d_scale);
    free(logits), free(labels), free(losses), free(dlogits);
}

/* ---- AdamW ---- */

/* steps updates from zero moments with fresh gradients each step; bc1 and bc2_sqrt
 * as qb_adamw_queue computes them. The squared norm sits in device memory: some
 * steps clip, one is NaN (both sides change nothing). masked: a random decay byte
 * per block, else decay everywhere (NULL). Small weights and a large lr make the
 * update a visible part of w, so w's relative error measures it. */
static void test_adamw(size_t n, float weight_decay, float loss_scale, bool masked, int steps)
{
    float *d_scale = loss_scale > 0 ? dev_from(&loss_scale, sizeof loss_scale) : NULL;
    const float *scale = loss_scale > 0 ? &loss_scale : NULL;
    const size_t blocks = (n + QB_DECAY_BLOCK - 1) / QB_DECAY_BLOCK;
    float *w = rand_host(n, -0.02f, 0.02f), *m = host_alloc(n * sizeof *m), *v = host_alloc(n * sizeof *v);
    uint8_t *mask = host_alloc(blocks);
    for (size_t k = 0; k < blocks; k++) mask[k] = rand() & 1;
    memset(m, 0, n * sizeof *m);
    memset(v, 0, n * sizeof *v);
    float *d_w = dev_from(w, n * sizeof *w), *d_m = dev_from(NULL, n * sizeof *m), *d_v = dev_from(NULL, n * sizeof *v);
    float *d_g = dev_from(NULL, n * sizeof(float));
    uint8_t *d_mask = masked ? dev_from(mask, blocks) : NULL;
    double *d_sumsq = dev_from(NULL, sizeof(double));
    qb_adamw_args *d_args = dev_from(NULL, sizeof *d_args);  /* the op reads its arguments on the device */
    for (int t = 1; t <= steps; t++) {
        const float beta1 = 0.9f, beta2 = 0.999f;
        const qb_adamw_args s = {
            .lr = 1e-2f * (1.0f - 0.1f * (float)(t - 1)), .beta1 = beta1, .beta2 = beta2, .eps = 1e-8f,
            .weight_decay = weight_decay, .max_norm = 1.0f,
            .bc1 = (float)(1.0 - pow(beta1, (double)t)),
            .bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t)),
        };
        /* norms (before unscale) 0.5, NaN, 3, 0.5, 3, ...: clipped and not */
        const double sumsq = t == 2 ? NAN : t % 2 ? 0.25 : 9.0;
        float *g = rand_host(n, -1.0f, 1.0f);
        gpu->to_device(NULL, d_g, g, n * sizeof *g);
        gpu->to_device(NULL, d_sumsq, &sumsq, sizeof sumsq);
        gpu->to_device(NULL, d_args, &s, sizeof s);
        cpu->adamw(NULL, w, m, v, g, masked ? mask : NULL, n, &s, &sumsq, scale);
        gpu->adamw(NULL, d_w, d_m, d_v, d_g, d_mask, n, d_args, d_sumsq, d_scale);
        free(g);
    }
    const char *kind = masked ? "masked" : "unmasked";
    check_close(named("adamw w n=%zu wd=%g loss scale %g %s", n, weight_decay, loss_scale, kind), d_w, w, n, CUDA_TOL);
    check_close(named("adamw m n=%zu wd=%g loss scale %g %s", n, weight_decay, loss_scale, kind), d_m, m, n, CUDA_TOL);
    check_close(named("adamw v n=%zu wd=%g loss scale %g %s", n, weight_decay, loss_scale, kind), d_v, v, n, CUDA_TOL);
    gpu->free(d_w), gpu->free(d_m), gpu->free(d_v), gpu->free(d_g), gpu->free(d_sumsq), gpu->free(d_args);
    if (d_mask) gpu->free(d_mask);
    if (d_scale) gpu->free(d_scale);
    free(w), free(m), free(v), free(mask);
}

/* fp16 loss scaling: a run of finite and non-finite norms, past 2000 good steps and
 * down to a scale of 1, the device's scale and count after each against the CPU's. */
static void test_loss_scale(void)
{
    float scale = 8.0f;
    int32_t good = 1990;
    float *d_scale = dev_from(&scale, sizeof scale);
    int32_t *d_good = dev_from(&good, sizeof good);
    double *d_sumsq = dev_from(NULL, sizeof(double));
    for (int i = 0; i < 40; i++) {
        const double sumsq = i % 9 == 4 || (i >= 20 && i < 26) ? (i % 2 ? INFINITY : NAN) : 2.5;
        float got_scale;
        int32_t got_good;
        gpu->to_device(NULL, d_sumsq, &sumsq, sizeof sumsq);
        cpu->loss_scale_update(NULL, &scale, &good, &sumsq);
        gpu->loss_scale_update(NULL, d_scale, d_good, d_sumsq);
        gpu->to_host(NULL, &got_scale, d_scale, sizeof got_scale);
        gpu->to_host(NULL, &got_good, d_good, sizeof got_good);
        CHECKF(got_scale == scale && got_good == good, "loss scale update %d: %g after %d, CPU %g after %d", i,
               got_scale, got_good, scale, good);
    }
    CHECK(scale == 1.0f);  /* the run went past a doubling and down to the floor */
    gpu->free(d_scale), gpu->free(d_good), gpu->free(d_sumsq);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_train_ops")) return QB_TEST_SKIPPED;

    test_embedding(1, 1, 1, 3, 2);
    test_embedding(3, 5, 37, 7, 2);
    test_embedding(4, 33, 200, 50, 3);
    test_embedding(8, 128, 768, 1000, 2);

    test_dropout();

    static const int Ks[] = {2, 3, 64}, Bs[] = {1, 33};
    for (int ki = 0; ki < 3; ki++)
        for (int bi = 0; bi < 2; bi++) {
            test_xent(Bs[bi], Ks[ki], 3.0f, 0.37f, 0.0f);
            test_xent(Bs[bi], Ks[ki], 80.0f, 1.0f / 33.0f, 0.0f);
            test_xent(Bs[bi], Ks[ki], 3.0f, 1.0f / 33.0f, 65536.0f);
        }

    test_adamw(1, 0.01f, 0.0f, false, 3);
    test_adamw(1000, 0.01f, 3.0f, true, 5);
    test_adamw(100003, 0.1f, 1024.0f, true, 4);
    test_adamw(100003, 0.0f, 0.0f, false, 4);
    test_loss_scale();

    return check_summary("test_cuda_train_ops");
}
