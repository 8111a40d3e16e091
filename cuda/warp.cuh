/* Warp-level tensor-core primitives for the hand-written mma.sync kernels (sm_80 and
 * later): ldmatrix, mma.m16n8k16 with FP16 / BF16 operands and FP32 sums,
 * mma.m16n8k32 with INT8 operands and INT32 sums, 16-byte cp.async with zero fill,
 * the swizzled shared-memory tile they read, and the conversions between FP32 and
 * the operand types.
 *
 * Fragments of mma.m16n8k16 (PTX ISA), lane = 4 g + q (g the group, q its thread):
 *   A (16 x 16, row-major): reg 0 = row g, cols 2q, 2q+1; reg 1 = row g+8, same cols;
 *                           reg 2 = row g, cols 2q+8, 2q+9; reg 3 = row g+8, those;
 *   B (16 x 8, k x n):      reg 0 = k 2q, 2q+1 at col n = g; reg 1 = k 2q+8, 2q+9;
 *   C, D (16 x 8, FP32):    c0, c1 = row g, cols 2q, 2q+1; c2, c3 = row g+8, those;
 * two 16-bit values to a register, the lower index in the low half. mma.m16n8k32 with
 * INT8 operands has the same layouts counted in pairs of bytes (four int8 to a
 * register, the lowest k in the low byte; C, D INT32), so ldmatrix loads its
 * fragments from the same tiles read as 16-bit elements. ldmatrix.x4:
 * lane 8 j + r gives the address of row r of 8 x 8 matrix j (16 bytes); register j of
 * lane t receives row t / 4, elements 2 (t % 4), 2 (t % 4) + 1 of matrix j, or with
 * .trans column t / 4, rows 2 (t % 4), 2 (t % 4) + 1.
 *
 * Every primitive has a host emulation (tests/simt.h, compiled with QB_SIMT): the
 * kernels built on them run their very code on the host in the tests, lane by lane,
 * against the CPU reference, on machines without a GPU. */
#ifndef QBERT_CUDA_WARP_CUH
#define QBERT_CUDA_WARP_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <type_traits>

#include "cuda/philox.cuh"
#include "cuda/storage.cuh"

namespace warp {

/* d (16 x 8) += a (16 x 16) b (16 x 8), T the operands' type. */
template <typename T> QB_DEV void mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#if defined(__CUDA_ARCH__)
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(QB_SIMT)
    simt::mma16816(d, a, b0, b1, std::is_same<T, __nv_bfloat16>::value);
#endif
}

/* d (16 x 8, INT32) += a (16 x 32) b (32 x 8), INT8 operands, exactly. */
QB_DEV void mma_s8(int32_t d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(QB_SIMT)
    simt::mma16832_s8(d, a, b0, b1);
#endif
}

/* r[j] = this lane's fragment of matrix j (ldmatrix.x4; trans: .trans), p the row
 * this lane addresses (shared memory, 16-byte aligned). */
template <bool Trans> QB_DEV void ldmatrix4(uint32_t r[4], const void *p)
{
#if defined(__CUDA_ARCH__)
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    if constexpr (Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#elif defined(QB_SIMT)
    simt::ldmatrix4(r, p, Trans);
#endif
}

/* 16 bytes from global src to shared dst, asynchronously; zero-filled when !valid
 * (src is then not read, but must still be a valid address). */
QB_DEV void cp_async16(void *dst, const void *src, bool valid)
{
#if defined(__CUDA_ARCH__)
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(a), "l"(src), "r"(valid ? 16 : 0));
#else
    if (valid) memcpy(dst, src, 16);
    else memset(dst, 0, 16);
#endif
}
/* Closes the group of cp.async issued since the last commit. */
QB_DEV void cp_async_commit()
{
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.commit_group;");
#endif
}
/* Waits until at most N committed groups are still in flight (this thread's). */
template <int N> QB_DEV void cp_async_wait()
{
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
#endif
}

/* 2^x (ex2.approx: 2 ulp; 0 for -inf). */
QB_DEV float exp2_fast(float x)
{
#if defined(__CUDA_ARCH__)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* The value of the lane `lane ^ mask` (shfl.bfly). */
QB_DEV float shfl_xor(float v, int mask)
{
#if defined(__CUDA_ARCH__)
    return __shfl_xor_sync(0xffffffffu, v, mask);
#elif defined(QB_SIMT)
    return simt::shfl_xor(v, mask);
#else
    return v;
#endif
}

/* *w |= v for a word of shared memory, atomically across the block. */
QB_DEV void or_shared(unsigned *w, unsigned v)
{
#if defined(__CUDA_ARCH__)
    atomicOr(w, v);
#else
    *w |= v;  /* the emulation runs one thread at a time */
#endif
}

/* The index of the lowest set bit of x != 0. */
QB_DEV int lowest_bit(unsigned x)
{
#if defined(__CUDA_ARCH__)
    return __ffs((int)x) - 1;
#else
    return __builtin_ctz(x);
#endif
}

/* f = src[0 .. 7] (16-byte aligned) when in, else zeros. */
QB_DEV void load8(float f[8], const float *src, bool in)
{
    if (!in) {
        for (int e = 0; e < 8; e++) f[e] = 0.0f;
        return;
    }
#if defined(__CUDA_ARCH__)
    const float4 x = __ldg(reinterpret_cast<const float4 *>(src)), y = __ldg(reinterpret_cast<const float4 *>(src) + 1);
    f[0] = x.x, f[1] = x.y, f[2] = x.z, f[3] = x.w, f[4] = y.x, f[5] = y.y, f[6] = y.z, f[7] = y.w;
#else
    memcpy(f, src, 32);
#endif
}

/* 16 bytes w to dst (16-byte aligned). */
QB_DEV void store16(void *dst, const uint32_t w[4])
{
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
#else
    memcpy(dst, w, 16);
#endif
}

/* p[0] = a, p[1] = b, rounded to the storage type (p aligned to the pair). */
QB_DEV void store2(float *p, float a, float b)
{
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<float2 *>(p) = make_float2(a, b);
#else
    p[0] = a, p[1] = b;
#endif
}
template <typename T> QB_DEV void store2(T *p, float a, float b)
{
    const uint32_t w = qb_pack2<T>(a, b);
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint32_t *>(p) = w;
#else
    memcpy((void *)p, &w, 4);
#endif
}

/* A tile of 16-bit elements with rows of D (a multiple of 8, at least 32) in shared
 * memory, 16-byte chunks swizzled so that the 8 rows one ldmatrix matrix reads, and
 * the rows of a chunk column that one warp stores, fall in distinct banks: chunk c
 * of row r is stored at chunk c ^ (r % 8) (c ^ ((r / 2) % 4) for D = 32, whose rows
 * are half a bank line). */
template <int D> QB_DEV int swizzle(int r, int c)
{
    static_assert(D % 8 == 0 && D >= 32, "tile rows are whole 16-byte chunks, at least 4");
    return D == 32 ? c ^ ((r >> 1) & 3) : c ^ (r & 7);
}
/* The element offset of (r, col) in such a tile; col a multiple of 8 (a chunk). */
template <int D> QB_DEV int tile_offset(int r, int col)
{
    return r * D + swizzle<D>(r, col >> 3) * 8;
}

/* The row each lane addresses for ldmatrix4 so that the four matrices are, in order:
 * - a_rows: the A fragment of the 16 x 16 block at (r0, c0) of a row-major tile
 *   (rows r0 .. r0+15, cols c0 .. c0+15: matrices (0-7, 0-7), (8-15, 0-7), (0-7, 8-15),
 *   (8-15, 8-15)); also the B fragments of a [k][n] tile read with .trans, k from r0 and
 *   n from c0 (matrices b0, b1 of n c0 .. c0+7, then of c0+8 .. c0+15);
 * - b_rows: the B fragments of two n-tiles from a [n][k] tile read without .trans, n
 *   from r0 and k from c0: b0, b1 of n r0 .. r0+7, then of n r0+8 .. r0+15. */
QB_DEV void a_rows(int lane, int r0, int c0, int *r, int *c)
{
    *r = r0 + (lane & 7) + ((lane >> 3) & 1) * 8;
    *c = c0 + (lane >> 4) * 8;
}
QB_DEV void b_rows(int lane, int r0, int c0, int *r, int *c)
{
    *r = r0 + (lane & 7) + (lane >> 4) * 8;
    *c = c0 + ((lane >> 3) & 1) * 8;
}

}  // namespace warp

#endif
