/* BERT input embeddings on the GPU, forward and backward (csrc/cpu/embedding.c is
 * the reference; B batch, T sequence, C hidden).
 *
 * Forward: out (B*T, C) = (word[ids] + type[types]) + pos[t], one block per row,
 * the same two float additions in the same order as the CPU: bit-identical in FP32.
 * The tables may be FP32 or half (FP16 / BF16 model files on the device), out FP32 or
 * half (the activations' storage): the sums are FP32 either way.
 *
 * Backward: dword, dpos, dtype += the scatter of dout (B*T, C). Thread (t, c) walks
 * b = 0..B-1 over the rows b T + t, so it alone owns dpos[t][c] and adds to it in the
 * CPU's order (bit-identical). Word rows are scattered with atomicAdd (ids rarely
 * repeat; the pad_id row gets nothing); the type of a position runs unchanged over
 * many rows, so its sum is kept in a register and atomically added once per run.
 * Where atomics meet on one element (a repeated id, a type row) the summation order
 * is not the CPU's: dword and dtype agree within a tolerance, not bit for bit. dout
 * may be FP32 or half; the gradients are FP32. ids and types are trusted (the model
 * validates them), as on the CPU. */
#include "cuda/common.cuh"

#include <type_traits>

/* Threads per block of the backward pass: consecutive columns of one position. */
#define BACKWARD_THREADS 128

/* grid (B*T): block bt writes row bt of out (B*T, C). */
template <typename O, typename W>
static __global__ void embedding_kernel(O *out, const int32_t *ids, const int32_t *types, const W *word,
                                        const W *pos, const W *type, int T, int C)
{
    const size_t bt = blockIdx.x;
    const W *we = word + (size_t)ids[bt] * C;
    const W *te = type + (size_t)types[bt] * C;
    const W *pe = pos + (bt % T) * C;
    O *o = out + bt * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        o[c] = qb_from_float<O>((qb_to_float(we[c]) + qb_to_float(te[c])) + qb_to_float(pe[c]));
}

/* grid (T, ceil(C / BACKWARD_THREADS)): thread (t, c) sums column c of the rows
 * b T + t of dout (B*T, C). */
template <typename G>
static __global__ void embedding_backward_kernel(float *dword, float *dpos, float *dtype, const G *dout,
                                                 const int32_t *ids, const int32_t *types, int pad_id, int B, int T,
                                                 int C)
{
    const int t = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float pos_sum = dpos[(size_t)t * C + c];
    float type_sum = 0.0f;
    int32_t run_type = types[t];
    for (int b = 0; b < B; b++) {
        const size_t bt = (size_t)b * T + t;
        const float d = qb_to_float(dout[bt * C + c]);
        const int32_t id = ids[bt], ty = types[bt];
        if (id != pad_id) atomicAdd(&dword[(size_t)id * C + c], d);
        if (ty != run_type) {
            atomicAdd(&dtype[(size_t)run_type * C + c], type_sum);
            run_type = ty;
            type_sum = 0.0f;
        }
        type_sum += d;
        pos_sum += d;
    }
    atomicAdd(&dtype[(size_t)run_type * C + c], type_sum);
    dpos[(size_t)t * C + c] = pos_sum;
}

extern "C" void qb_cuda_embedding(qb_stream *s, void *out, const int32_t *ids, const int32_t *types, const void *word,
                                  const void *pos, const void *type, int B, int T, int C, qb_dtype t, qb_dtype tables)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    qb_cuda_storage(t, [&](auto *otag) {
        qb_cuda_storage(tables, [&](auto *wtag) {
            using O = std::remove_pointer_t<decltype(otag)>;
            using W = std::remove_pointer_t<decltype(wtag)>;
            embedding_kernel<<<(unsigned)B * (unsigned)T, QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(
                (O *)out, ids, types, (const W *)word, (const W *)pos, (const W *)type, T, C);
        });
    });
    qb_cuda_launched(s, "embedding");
}

extern "C" void qb_cuda_embedding_backward(qb_stream *s, float *dword, float *dpos, float *dtype, const void *dout,
                                           const int32_t *ids, const int32_t *types, int pad_id, int B, int T, int C,
                                           qb_dtype t)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    const dim3 grid((unsigned)T, (unsigned)((C + BACKWARD_THREADS - 1) / BACKWARD_THREADS));
    qb_cuda_storage(t, [&](auto *tag) {
        using G = std::remove_pointer_t<decltype(tag)>;
        embedding_backward_kernel<<<grid, BACKWARD_THREADS, 0, qb_cuda_stream(s)>>>(dword, dpos, dtype, (const G *)dout,
                                                                                   ids, types, pad_id, B, T, C);
    });
    qb_cuda_launched(s, "embedding_backward");
}
