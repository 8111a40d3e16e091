/* Dropout on the GPU: x (n) *= the mask of qb_dropout (backend.h), forward and
 * backward alike, in the activations' storage type (FP32, FP16, BF16: the product
 * taken in FP32, stored rounded). Each thread draws one Philox block and applies its
 * 4 words to elements 4k .. 4k+3 (cuda/philox.cuh; one block per element would be 4x
 * the Philox work, about as much time as this pass spends on memory). The keep rule
 * and the scale are the CPU's (csrc/cpu/dropout.c), the scale even computed by the
 * host, so in FP32 the result equals the CPU's bit for bit. */
#include "cuda/common.cuh"

#include <type_traits>

/* x (n): thread k applies Philox block k to elements 4k .. 4k+3. */
template <typename T>
static __global__ void dropout_kernel(T *x, size_t n, qb_dropout d, float scale)
{
    const uint64_t blocks = (n + 3) / 4, stride = (uint64_t)gridDim.x * blockDim.x, stream = qb_dropout_stream(d);
    for (uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; k < blocks; k += stride) {
        uint32_t w[4];
        qb_philox(d.seed, k, stream, w);
#pragma unroll
        for (int i = 0; i < 4; i++)
            if (4 * k + i < n) x[4 * k + i] = qb_from_float<T>(qb_to_float(x[4 * k + i]) * qb_dropout_keep(w[i], d.p, scale));
    }
}

extern "C" void qb_cuda_dropout(qb_stream *s, void *x, size_t n, const qb_dropout *drop, qb_dtype t)
{
    if (!drop || drop->p <= 0.0f || n == 0) return;
    const float scale = 1.0f / (1.0f - drop->p);
    qb_cuda_storage(t, [&](auto *tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        dropout_kernel<<<qb_cuda_blocks((n + 3) / 4), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>((T *)x, n, *drop, scale);
    });
    qb_cuda_launched(s, "dropout");
}
