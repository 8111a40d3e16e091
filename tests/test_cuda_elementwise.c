/* The CUDA element-wise ops (cuda/elementwise.cu) against the CPU backend's on the
 * same fresh random inputs: gelu, gelu_backward, tanh, tanh_backward (activations
 * over [-10, 10) with the saturated ends +-10 always present), each with a separate
 * output and with the output on its input; add; sumsq into a device double
 * (relative 1e-6).
 * Sizes are no multiple of anything, each run at offset 0 (16-byte aligned: the
 * float4 path plus its tail) and at offset 1 (the scalar path); n = 0 touches nothing. */
#include "cuda_check.h"

#define SUMSQ_TOL 1e-6

static const size_t sizes[] = {1, 7, 4099, 1000003};

/* n + off activation inputs (the op reads the last n): uniform in [-10, 10), with 10
 * and -10 among the n. */
static float *activation_input(size_t n, size_t off)
{
    float *x = rand_host(n + off, -10, 10);
    x[off] = 10.0f;
    if (n > 1) x[off + n - 1] = -10.0f;
    return x;
}

/* gelu (into a separate buffer, then in place) or tanh (in place), y = f(x). */
static void check_activation(int is_gelu, size_t n, size_t off)
{
    const char *name = is_gelu ? "gelu" : "tanh";
    const size_t bytes = (n + off) * sizeof(float);
    float *x = activation_input(n, off), *ref = host_alloc(bytes);
    memcpy(ref, x, bytes);
    float *dx = dev_from(x, bytes), *dy = is_gelu ? dev_from(NULL, bytes) : NULL;
    char what[96];
    if (is_gelu) {
        cpu->gelu(NULL, ref + off, x + off, n, QB_F32);
        gpu->gelu(NULL, dy + off, dx + off, n, QB_F32);
        snprintf(what, sizeof what, "gelu n=%zu offset %zu", n, off);
        check_close(what, dy + off, ref + off, n, CUDA_TOL);
        gpu->gelu(NULL, dx + off, dx + off, n, QB_F32);
    } else {
        cpu->tanh(NULL, ref + off, n);
        gpu->tanh(NULL, dx + off, n);
    }
    snprintf(what, sizeof what, "%s n=%zu offset %zu, in place", name, n, off);
    check_close(what, dx + off, ref + off, n, CUDA_TOL);
    gpu->free(dx), gpu->free(dy);
    free(x), free(ref);
}

/* gelu_backward (from x) or tanh_backward (from y = tanh output in [-1, 1)),
 * dx = dy * f': into a separate buffer, then onto dy. */
static void check_activation_backward(int is_gelu, size_t n, size_t off)
{
    const char *name = is_gelu ? "gelu_backward" : "tanh_backward";
    const size_t bytes = (n + off) * sizeof(float);
    float *in = is_gelu ? activation_input(n, off) : rand_host(n + off, -1, 1);
    float *dy = rand_host(n + off, -1, 1), *ref = host_alloc(bytes);
    float *d_in = dev_from(in, bytes), *d_dy = dev_from(dy, bytes), *d_dx = dev_from(NULL, bytes);
    char what[96];
    if (is_gelu) {
        cpu->gelu_backward(NULL, ref + off, dy + off, in + off, n, QB_F32);
        gpu->gelu_backward(NULL, d_dx + off, d_dy + off, d_in + off, n, QB_F32);
    } else {
        cpu->tanh_backward(NULL, ref + off, dy + off, in + off, n);
        gpu->tanh_backward(NULL, d_dx + off, d_dy + off, d_in + off, n);
    }
    snprintf(what, sizeof what, "%s n=%zu offset %zu", name, n, off);
    check_close(what, d_dx + off, ref + off, n, CUDA_TOL);
    if (is_gelu) gpu->gelu_backward(NULL, d_dy + off, d_dy + off, d_in + off, n, QB_F32);
    else gpu->tanh_backward(NULL, d_dy + off, d_dy + off, d_in + off, n);
    snprintf(what, sizeof what, "%s n=%zu offset %zu, dx = dy", name, n, off);
    check_close(what, d_dy + off, ref + off, n, CUDA_TOL);
    gpu->free(d_in), gpu->free(d_dy), gpu->free(d_dx);
    free(in), free(dy), free(ref);
}

static void check_add(size_t n, size_t off)
{
    const size_t bytes = (n + off) * sizeof(float);
    float *y = rand_host(n + off, -1, 1), *x = rand_host(n + off, -1, 1);
    float *dy = dev_from(y, bytes), *dx = dev_from(x, bytes);
    cpu->add(NULL, y + off, x + off, n, QB_F32);
    gpu->add(NULL, dy + off, dx + off, n, QB_F32);
    char what[64];
    snprintf(what, sizeof what, "add n=%zu offset %zu", n, off);
    check_close(what, dy + off, y + off, n, CUDA_TOL);
    gpu->free(dy), gpu->free(dx);
    free(y), free(x);
}

/* sumsq adds to what the device double holds: x + off (n), then an empty array
 * (adds nothing). */
static void check_sumsq(size_t n, size_t off)
{
    float *x = rand_host(n + off, -1, 1), *dx = dev_from(x, (n + off) * sizeof *dx);
    double ref = 1.5, got;
    double *d = dev_from(&ref, sizeof ref);
    cpu->sumsq(NULL, &ref, x + off, n);
    gpu->sumsq(NULL, d, dx + off, n);
    gpu->sumsq(NULL, d, dx, 0);
    gpu->to_host(NULL, &got, d, sizeof got);
    CHECKF(fabs(got - ref) <= SUMSQ_TOL * ref, "sumsq n=%zu offset %zu: %.17g, CPU %.17g", n, off, got, ref);
    CHECKF(qb_cuda_sync(NULL) == QB_OK, "sumsq n=%zu: %s", n, qb_error());
    gpu->free(dx), gpu->free(d);
    free(x);
}

/* n = 0: every op returns at once, the buffers untouched. */
static void check_empty(void)
{
    float host[4] = {1.0f, -2.0f, 3.0f, -4.0f};
    float *d = dev_from(host, sizeof host), *e = dev_from(host, sizeof host);
    gpu->gelu(NULL, d, e, 0, QB_F32);
    gpu->gelu_backward(NULL, d, e, e, 0, QB_F32);
    gpu->tanh(NULL, d, 0);
    gpu->tanh_backward(NULL, d, e, e, 0);
    gpu->add(NULL, d, e, 0, QB_F32);
    check_equal("n = 0", d, host, sizeof host);
    gpu->free(d), gpu->free(e);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_elementwise")) return QB_TEST_SKIPPED;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t off = 0; off < 2; off++) {
            const size_t n = sizes[si];
            for (int is_gelu = 0; is_gelu < 2; is_gelu++) {
                check_activation(is_gelu, n, off);
                check_activation_backward(is_gelu, n, off);
            }
            check_add(n, off);
            check_sumsq(n, off);
        }
    /* More elements than the largest grid has threads (256 x 65535): the grid-stride
     * loop goes round more than once. */
    check_sumsq((size_t)256 * 65535 + 1001, 0);
    check_empty();
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    return check_summary("test_cuda_elementwise");
}
