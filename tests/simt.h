/* A host emulation of the CUDA execution model, for running a tensor-core kernel's
 * body (cuda/warp.cuh's primitives, cuda/flash_attention.cuh) on a machine without a
 * GPU, in a test, against the CPU reference. Include it before those headers.
 *
 * A block's threads are coroutines (ucontext) on one OS thread, switched only where
 * CUDA threads synchronise: __syncthreads waits for the block, and the warp-wide
 * primitives (ldmatrix, mma, shuffles) wait for their 32 lanes, so every lane takes
 * part with the values it has there. The primitives follow the PTX ISA's definitions
 * (the fragment layouts in cuda/warp.cuh): ldmatrix gathers each lane's elements
 * through the row addresses the other lanes gave, mma.m16n8k16 forms each lane's D
 * elements from the A and B fragments of the lanes that hold them, with FP32 sums
 * (and mma.m16n8k32 on INT8, with INT32 sums).
 * cp.async copies at once. Shared memory is poisoned (NaN) before each block. Blocks
 * run one after another. ldmatrix also counts its bank conflicts: a matrix whose 8
 * rows do not fall in 8 distinct 16-byte quarters of a 128-byte bank line
 * (ldmatrix_conflicts; the swizzle of cuda/warp.cuh is meant to keep it at 0). */
#ifndef QBERT_TEST_SIMT_H
#define QBERT_TEST_SIMT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#include "qbert/tensor.h"

#define QB_SIMT 1

namespace simt {

struct Idx {
    unsigned x, y, z;
};
inline Idx thread_idx, block_idx;

constexpr int MAX_THREADS = 256;
constexpr size_t STACK = 256 * 1024;

struct Lane {
    ucontext_t ctx;
    bool done;
    uint32_t slot[6];    /* what the lane gives a warp-wide primitive */
    const void *addr;    /* ldmatrix: the row it addresses */
};

inline struct {
    int n, cur;
    ucontext_t main;
    Lane lane[MAX_THREADS];
    std::vector<char> stacks;
    std::function<void()> body;
    unsigned arrived, gen;              /* __syncthreads */
    unsigned warp_arrived[MAX_THREADS / 32], warp_gen[MAX_THREADS / 32];
    const char *smem;                   /* the block's shared memory */
    long ldmatrix_conflicts;            /* since the process started */
} st;

inline void yield() { swapcontext(&st.lane[st.cur].ctx, &st.main); }

/* Waits until every thread of the block has arrived. */
inline void syncthreads()
{
    const unsigned gen = st.gen;
    if (++st.arrived == (unsigned)st.n) {
        st.arrived = 0;
        st.gen++;
        return;
    }
    while (st.gen == gen) yield();
}

/* Waits until the 32 lanes of this warp have arrived. */
inline void syncwarp()
{
    const int w = st.cur / 32;
    const unsigned gen = st.warp_gen[w];
    if (++st.warp_arrived[w] == 32) {
        st.warp_arrived[w] = 0;
        st.warp_gen[w]++;
        return;
    }
    while (st.warp_gen[w] == gen) yield();
}

/* The lane of this warp with index i (0 .. 31). */
inline Lane &peer(int i) { return st.lane[(st.cur & ~31) + i]; }

inline float shfl_xor(float v, int mask)
{
    memcpy(&st.lane[st.cur].slot[0], &v, 4);
    syncwarp();
    float r;
    memcpy(&r, &peer((st.cur & 31) ^ mask).slot[0], 4);
    syncwarp();
    return r;
}

/* ldmatrix.x4: lane 8 j + r gives the address of row r of matrix j; register j of lane
 * t gets row t / 4, elements 2 (t % 4) + {0, 1} of matrix j, or with trans column t / 4,
 * rows 2 (t % 4) + {0, 1}. */
inline void ldmatrix4(uint32_t r[4], const void *p, bool trans)
{
    if ((uintptr_t)p % 16) {
        fprintf(stderr, "simt: ldmatrix row address %p is not 16-byte aligned\n", p);
        abort();
    }
    st.lane[st.cur].addr = p;
    syncwarp();
    const int t = st.cur & 31;
    for (int j = 0; t == 0 && j < 4; j++) {
        unsigned quarters = 0;  /* of the bank line, taken by the matrix's rows */
        for (int r = 0; r < 8; r++) quarters |= 1u << ((const char *)peer(8 * j + r).addr - st.smem) / 16 % 8;
        st.ldmatrix_conflicts += quarters != 0xFFu;
    }
    for (int j = 0; j < 4; j++) {
        uint16_t e[2];
        for (int k = 0; k < 2; k++) {
            const int row = trans ? 2 * (t % 4) + k : t / 4, col = trans ? t / 4 : 2 * (t % 4) + k;
            memcpy(&e[k], (const char *)peer(8 * j + row).addr + 2 * col, 2);
        }
        r[j] = e[0] | (uint32_t)e[1] << 16;
    }
    syncwarp();
}

/* Element `half` (0 low, 1 high) of register word w as a float. */
inline float operand(uint32_t w, int half, bool bf16)
{
    const uint16_t h = (uint16_t)(w >> (16 * half));
    return bf16 ? qb_bf16_to_f32(h) : qb_f16_to_f32(h);
}

/* This lane's A and B fragments of an mma into its slots (A registers 0-3, B 4-5),
 * once the whole warp has given its own. */
inline void give_fragments(const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    Lane &me = st.lane[st.cur];
    for (int i = 0; i < 4; i++) me.slot[i] = a[i];
    me.slot[4] = b0, me.slot[5] = b1;
    syncwarp();
}

/* mma.m16n8k16 (row.col, FP32 sums): d += a b for this lane's four D elements, from the
 * fragments every lane of the warp gives (cuda/warp.cuh: A, B, C layouts). */
inline void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, bool bf16)
{
    give_fragments(a, b0, b1);
    const int t = st.cur & 31, g = t / 4, q = t % 4;
    for (int e = 0; e < 4; e++) {
        const int row = g + 8 * (e >> 1), col = 2 * q + (e & 1);
        float acc = d[e];
        for (int k = 0; k < 16; k++) {
            /* A (row, k): lane 4 (row % 8) + (k % 8) / 2, register row / 8 + 2 (k / 8);
             * B (k, col): lane 4 col + (k % 8) / 2, register 4 + k / 8. */
            const float x = operand(peer(4 * (row % 8) + (k % 8) / 2).slot[row / 8 + 2 * (k / 8)], k % 2, bf16);
            const float y = operand(peer(4 * col + (k % 8) / 2).slot[4 + k / 8], k % 2, bf16);
            acc += x * y;
        }
        d[e] = acc;
    }
    syncwarp();
}

/* mma.m16n8k32 with INT8 operands (row.col, INT32 sums): the layouts of mma16816 in
 * pairs of bytes, four int8 to a register (cuda/warp.cuh). */
inline void mma16832_s8(int32_t d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    give_fragments(a, b0, b1);
    const int t = st.cur & 31, g = t / 4, q = t % 4;
    for (int e = 0; e < 4; e++) {
        const int row = g + 8 * (e >> 1), col = 2 * q + (e & 1);
        int32_t acc = d[e];
        for (int k = 0; k < 32; k++) {
            /* A (row, k): lane 4 (row % 8) + (k % 16) / 4, register row / 8 + 2 (k / 16);
             * B (k, col): lane 4 col + (k % 16) / 4, register 4 + k / 16; byte k % 4. */
            const uint32_t wa = peer(4 * (row % 8) + (k % 16) / 4).slot[row / 8 + 2 * (k / 16)];
            const uint32_t wb = peer(4 * col + (k % 16) / 4).slot[4 + k / 16];
            acc += (int8_t)(wa >> (8 * (k % 4))) * (int8_t)(wb >> (8 * (k % 4)));
        }
        d[e] = acc;
    }
    syncwarp();
}

inline void entry()
{
    st.body();
    st.lane[st.cur].done = true;
}

/* Runs body(shared memory) as `blocks` blocks of `threads` threads (a multiple of 32),
 * one block after another; threadIdx.x and blockIdx.x are set for each. */
inline void launch(unsigned blocks, int threads, size_t shared_bytes, const std::function<void(char *)> &body)
{
    if (threads % 32 || threads > MAX_THREADS) {
        fprintf(stderr, "simt: %d threads per block\n", threads);
        abort();
    }
    std::vector<uint64_t> shared((shared_bytes + 7) / 8 + 2);
    char *smem = (char *)shared.data();
    st.smem = smem;
    st.stacks.resize((size_t)threads * STACK);
    for (unsigned b = 0; b < blocks; b++) {
        block_idx = {b, 0, 0};
        memset(smem, 0xFF, shared.size() * 8);
        st.n = threads;
        st.arrived = 0;
        memset(st.warp_arrived, 0, sizeof st.warp_arrived);
        st.body = [&] { body(smem); };
        for (int i = 0; i < threads; i++) {
            Lane &l = st.lane[i];
            l.done = false;
            getcontext(&l.ctx);
            l.ctx.uc_stack.ss_sp = st.stacks.data() + (size_t)i * STACK;
            l.ctx.uc_stack.ss_size = STACK;
            l.ctx.uc_link = &st.main;
            makecontext(&l.ctx, entry, 0);
        }
        for (int left = threads; left > 0;)
            for (int i = 0; i < threads; i++) {
                if (st.lane[i].done) continue;
                st.cur = i;
                thread_idx = {(unsigned)i, 0, 0};
                swapcontext(&st.main, &st.lane[i].ctx);
                left -= st.lane[i].done;
            }
    }
}

}  // namespace simt

#define threadIdx simt::thread_idx
#define blockIdx simt::block_idx
#define __syncthreads() simt::syncthreads()

#endif
