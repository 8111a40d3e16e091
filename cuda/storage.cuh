/* The storage types of activations on the GPU (backend.h's qb_dtype t: FP32, FP16,
 * BF16) for kernel code: each element read as a float and written back rounded to
 * nearest, two packed in a register, and the dispatch of a launcher to the kernel
 * instantiated for t. Host-compilable too (the host emulation of tests/simt.h). */
#ifndef QBERT_CUDA_STORAGE_CUH
#define QBERT_CUDA_STORAGE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "cuda/portable.cuh"
#include "qbert/tensor.h"

QB_HD float qb_to_float(float x) { return x; }
QB_HD float qb_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
QB_HD float qb_to_float(__half x) { return __half2float(x); }

template <typename T> QB_HD T qb_from_float(float x);
template <> QB_HD float qb_from_float<float>(float x) { return x; }
template <> QB_HD __nv_bfloat16 qb_from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> QB_HD __half qb_from_float<__half>(float x) { return __float2half_rn(x); }

/* Two floats rounded to the 16-bit T and packed in one register, the first in the
 * low half (the operand registers of mma). */
template <typename T> QB_HD uint32_t qb_pack2(float lo, float hi);
template <> QB_HD uint32_t qb_pack2<__nv_bfloat16>(float lo, float hi)
{
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}
template <> QB_HD uint32_t qb_pack2<__half>(float lo, float hi)
{
    const __half2 v = __floats2half2_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}

/* f(T *) with a null pointer of the element type of storage t: a launcher's generic
 * lambda picks its kernel's instantiation from it, e.g.
 *   qb_cuda_storage(t, [&](auto *tag) { using T = decltype(*tag) ...; kernel<T><<<...>>>(...); }). */
template <typename F> void qb_cuda_storage(qb_dtype t, F &&f)
{
    if (t == QB_F16) f((__half *)nullptr);
    else if (t == QB_BF16) f((__nv_bfloat16 *)nullptr);
    else f((float *)nullptr);
}

#endif
