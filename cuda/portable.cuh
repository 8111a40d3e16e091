/* Qualifiers for code that compiles both as CUDA device code and as plain host C++
 * (the tensor-core kernels' bodies also run in the host emulation of tests/simt.h). */
#ifndef QBERT_CUDA_PORTABLE_CUH
#define QBERT_CUDA_PORTABLE_CUH

#if defined(__CUDACC__)
#define QB_HD __host__ __device__ __forceinline__  /* host and device */
#define QB_DEV __device__ __forceinline__          /* device (and the emulation) */
#define QB_UNROLL _Pragma("unroll")
#define QB_NO_UNROLL _Pragma("unroll 1")
#else
#define QB_HD inline
#define QB_DEV inline
#define QB_UNROLL
#define QB_NO_UNROLL
#endif


#include <math.h>

/* The CPU reference's float arithmetic in code that also runs on the host: products
 * and sums rounded one at a time (nvcc would otherwise fuse a * b + c into an FMA;
 * the host emulation is built with -ffp-contract=off), and the exact GELU,
 * x Phi(x) with erf, as csrc/cpu/gelu.c. */
QB_HD float qb_mul_rn(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
QB_HD float qb_add_rn(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
QB_HD float qb_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

#endif
