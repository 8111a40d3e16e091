/* AdamW on the GPU: one element-wise pass updates w, m, v (n) from g (n), the
 * decoupled decay, clipping scale, both moments and the step fused so each array is
 * read and written once (qb_cpu_adamw in csrc/cpu/vector.c is the reference).
 * Every operation is the CPU's, in its order, through the _rn intrinsics: nvcc would
 * otherwise contract a * b + c into one FMA (one rounding instead of two), which the
 * CPU build (x86-64 without -mfma) never does; the intrinsics are also immune to
 * --use_fast_math. With IEEE division and square root on both sides the result
 * equals the CPU's bit for bit (the test still allows CUDA_TOL). */
#include "cuda/common.cuh"

static __global__ void adamw_kernel(float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                                    const qb_adamw_args *args, const double *sumsq, const float *loss_scale)
{
    const qb_adamw_args s = *args;
    float grad_scale;  /* every thread derives it from the one double: no second launch */
    if (!qb_adamw_grad_scale(&s, *sumsq, loss_scale ? 1.0 / *loss_scale : 1.0, &grad_scale)) return;
    const float with = __fsub_rn(1.0f, __fmul_rn(s.lr, s.weight_decay)), step_size = __fdiv_rn(s.lr, s.bc1);
    const float b1 = s.beta1, b2 = s.beta2, one_b1 = __fsub_rn(1.0f, b1), one_b2 = __fsub_rn(1.0f, b2);
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float factor = !decay || decay[i / QB_DECAY_BLOCK] ? with : 1.0f;
        const float gi = __fmul_rn(g[i], grad_scale);
        const float wi = __fmul_rn(w[i], factor);
        const float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gi, one_b1));
        const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(gi, gi), one_b2));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
        w[i] = __fadd_rn(wi, __fmul_rn(-step_size, __fdiv_rn(mi, denom)));
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void qb_cuda_adamw(qb_stream *s, float *w, float *m, float *v, const float *g, const uint8_t *decay,
                              size_t n, const qb_adamw_args *a, const double *sumsq, const float *loss_scale)
{
    if (n == 0) return;
    adamw_kernel<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(w, m, v, g, decay, n, a, sumsq,
                                                                               loss_scale);
    qb_cuda_launched(s, "adamw");
}

/* One thread: qb_cpu_loss_scale_update (csrc/cpu/vector.c); halving and doubling
 * are exact. */
static __global__ void loss_scale_kernel(float *scale, int32_t *good, const double *sumsq)
{
    if (!isfinite(*sumsq)) {
        if (*scale >= 2.0f) *scale = __fdiv_rn(*scale, 2.0f);
        *good = 0;
    } else if (++*good == 2000) {
        *scale = __fmul_rn(*scale, 2.0f);
        *good = 0;
    }
}

extern "C" void qb_cuda_loss_scale_update(qb_stream *s, float *scale, int32_t *good, const double *sumsq)
{
    loss_scale_kernel<<<1, 1, 0, qb_cuda_stream(s)>>>(scale, good, sumsq);
    qb_cuda_launched(s, "loss_scale_update");
}
