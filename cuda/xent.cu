/* Softmax cross-entropy on the GPU (qb_cpu_xent in csrc/cpu/softmax.c is the
 * reference): logits (B, K), labels (B) -> losses (B) = logsumexp(z) - z[label] and
 * dlogits (B, K) = (softmax(z) - onehot(label)) * grad_scale (times the loss scale in
 * device memory, when given), fused in one pass over
 * each row. One warp per row (K is the number of classes: a few to a few hundred).
 * The arithmetic is the CPU's: float maximum, exp of the max-shifted logits summed in
 * double, lse = max + log(sum) in double, probabilities exp(z - lse) rounded to float;
 * only the order of the sum differs (a warp tree), so results agree within a
 * tolerance. Labels are trusted, as on the CPU. */
#include "cuda/common.cuh"

#define ROWS_PER_BLOCK 4

/* grid (ceil(B / ROWS_PER_BLOCK)), 32 * ROWS_PER_BLOCK threads: warp w of block
 * blk handles row blk * ROWS_PER_BLOCK + w. */
static __global__ void xent_kernel(float *losses, float *dlogits, const float *logits, const int32_t *labels,
                                   int B, int K, float grad_scale, const float *loss_scale)
{
    if (loss_scale) grad_scale = __fmul_rn(grad_scale, *loss_scale);  /* as the CPU backend does */
    const int lane = threadIdx.x & 31, row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= B) return;  /* the whole warp: row is the same in all its lanes */
    const float *z = logits + (size_t)row * K;
    float *d = dlogits + (size_t)row * K;
    const int label = labels[row];

    float mx = -INFINITY;
    for (int k = lane; k < K; k += 32) mx = z[k] > mx ? z[k] : mx;
    for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, mx, o);
        mx = other > mx ? other : mx;
    }
    double s = 0.0;
    for (int k = lane; k < K; k += 32) s += exp((double)z[k] - mx);
    const double lse = mx + log(qb_warp_sum_d(s));
    if (lane == 0) losses[row] = (float)(lse - z[label]);
    for (int k = lane; k < K; k += 32) {
        const float p = (float)exp((double)z[k] - lse);
        d[k] = (p - (k == label ? 1.0f : 0.0f)) * grad_scale;
    }
}

extern "C" void qb_cuda_xent(qb_stream *s, float *losses, float *dlogits, const float *logits, const int32_t *labels, int B,
                             int K, float grad_scale, const float *loss_scale)
{
    if (B <= 0 || K <= 0) return;
    const unsigned blocks = (unsigned)((B + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    xent_kernel<<<blocks, 32 * ROWS_PER_BLOCK, 0, qb_cuda_stream(s)>>>(losses, dlogits, logits, labels, B, K,
                                                                      grad_scale, loss_scale);
    qb_cuda_launched(s, "xent");
}
