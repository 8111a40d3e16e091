/* Dropout on the GPU: x (n) *= the mask of qb_dropout (backend.h), forward and
 * backward alike. Each thread draws one Philox block and applies its 4 words to
 * elements 4k .. 4k+3 (qb_dropout_block in common.cuh; qb_dropout_factor draws a whole
 * block per element: 4x the Philox work, about as much time as this pass spends on memory).
 * The keep rule and the scale are the CPU's (csrc/cpu/dropout.c), the scale even
 * computed by the host, so the result equals the CPU's bit for bit. */
#include "cuda/common.cuh"

/* x (n): thread k applies Philox block k to elements 4k .. 4k+3. */
static __global__ void dropout_kernel(float *x, size_t n, qb_dropout d, float scale)
{
    const uint64_t blocks = (n + 3) / 4, stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; k < blocks; k += stride)
        qb_dropout_block(x, 0, n, d, scale, k);
}

extern "C" void qb_cuda_dropout(float *x, size_t n, const qb_dropout *drop)
{
    if (!drop || drop->p <= 0.0f || n == 0) return;
    const float scale = 1.0f / (1.0f - drop->p);
    dropout_kernel<<<qb_cuda_blocks((n + 3) / 4), QB_CUDA_THREADS, 0, qb_cuda_stream()>>>(x, n, *drop, scale);
    qb_cuda_launched("dropout");
}
