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
                                    const qb_adamw_args *args, const double *sumsq)
{
    const qb_adamw_args s = *args;
    float grad_scale;  /* every thread derives it from the one double: no second launch */
    if (!qb_adamw_grad_scale(&s, *sumsq, &grad_scale)) return;
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
                              size_t n, const qb_adamw_args *a, const double *sumsq)
{
    if (n == 0) return;
    adamw_kernel<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(w, m, v, g, decay, n, a, sumsq);
    qb_cuda_launched(s, "adamw");
}
