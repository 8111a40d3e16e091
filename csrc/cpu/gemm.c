/* FP32 GEMM y (M, N) [+]= x (M, K) . w (N, K)^T [+ b (N)], the nn.Linear product with
 * either operand stored transposed and any leading dimensions (the backward pass
 * and attention heads use it in place): the scalar reference, the cache-blocked
 * driver shared by the SIMD paths, and the choice of instruction set (QBERT_ISA).
 *
 * Design of the fast path (Goto / BLIS). An ISA file supplies only a register
 * tile: an mr x nr block of y held in vector registers, updated once per k by
 * FMAs from two packed panels. Everything else is here, written once:
 *   - Cache blocking. K is cut into slices of KC. For one slice, a kc x nr panel
 *     of packed w (16 KiB for AVX2) stays in L1 while the tile walks down an
 *     MC-row block of packed x (~144 KiB, in L2); w is packed NC columns at a time.
 *   - Packing. Both operands are copied into k-major, zero-padded panels, x as
 *     (kc, mr) and w as (kc, nr), which the tile reads with unit stride. In the
 *     nn.Linear layout x and w are k-contiguous and are transposed while packed
 *     (8x8 transposes in AVX2 registers); an operand stored transposed is
 *     k-major already and is packed by plain row copies, so a backward GEMM
 *     (dx = dy w, dw += dy^T x) costs no extra transpose.
 *   - Edges. A tile that sticks out of y runs on a local mr x nr copy: one tile
 *     function handles every block, no masked loads or stores.
 *   - Bias. Before the first K slice a tile's y block is set to b (or 0; left as it
 *     is when y accumulates, as gradients do over micro-batches). The tile
 *     sums a slice's products in registers from zero and adds them to y only at the
 *     end (y's cache lines are prefetched meanwhile), so the FMA chains never wait
 *     on a load of y.
 *   - Threads. y is cut into a tm x tn grid of rectangles, one per thread, the grid
 *     chosen from the shape (small M splits N, large M splits M). Each thread packs
 *     its own panels, so there are no barriers.
 * Determinism. Every element of y is ((b + S0) + S1) + ... (b: the bias, 0, or the
 * old y) where Si is the FMA sum, in k order from zero, of K slice i (slices always
 * start at k = 0, 256, ...), computed by the same tile code whatever the thread grid
 * and whether its tile is full or an edge copy: results do not depend on the number
 * of threads. */
#include "cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KC 256         /* depth of a K slice */
#define MC 144         /* rows of x per packed block (rounded down to a multiple of mr) */
#define NC 1024        /* columns of w per packed block (rounded down to a multiple of nr) */
#define TILE_MAX 512   /* floats in the largest register tile (AVX-512: 8 x 32) */
/* Below this many multiply-adds a thread team costs more than it saves. */
#define PAR_MIN_MACS 32768.0
/* Packing one element costs about as much as this many multiply-adds of a column of
 * y, per k: it weighs the packing each thread repeats against its share of work. */
#define PACK_COST 8.0

/* A product small enough to run on one thread packs into that thread's own buffer
 * instead of heap memory: attention runs thousands of T x T x D head products per
 * training step, where a malloc/free pair per call is a measurable share. */
#define SMALL_WS 32768  /* floats (128 KiB) per thread */
static _Thread_local float small_ws[SMALL_WS] __attribute__((aligned(64)));

static int min_int(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }
static int round_up(int a, int m) { return ceil_div(a, m) * m; }

/* Element (m, k) of x and (n, k) of w in the descriptor's layouts. */
static float x_at(const qb_gemm_f32 *g, int m, int k)
{
    return g->x_t ? g->x[(size_t)k * g->ldx + m] : g->x[(size_t)m * g->ldx + k];
}

static float w_at(const qb_gemm_f32 *g, int n, int k)
{
    return g->w_t ? g->w[(size_t)k * g->ldw + n] : g->w[(size_t)n * g->ldw + k];
}

/* Reference: a plain triple loop, each dot product accumulated in DOUBLE in k order,
 * the bias (or the old y) added, then rounded once to float. Double makes it a more
 * accurate yardstick than any float kernel it checks. */
void qb_gemm_f32_scalar(const qb_gemm_f32 *g)
{
#pragma omp parallel for schedule(static) if ((double)g->M * g->N * g->K >= PAR_MIN_MACS)
    for (int m = 0; m < g->M; m++) {
        for (int n = 0; n < g->N; n++) {
            float *y = g->y + (size_t)m * g->ldy + n;
            double s = 0.0;
            for (int k = 0; k < g->K; k++) s += (double)x_at(g, m, k) * (double)w_at(g, n, k);
            if (g->accumulate) s += *y;
            if (g->b) s += g->b[n];
            *y = (float)s;
        }
    }
}

/* dst (kc, r) <- src rows [0, kc) of n contiguous floats each (row stride ld);
 * columns n..r-1 zero. Packs an operand stored transposed (k-major already). */
static void pack_rows(float *dst, const float *src, size_t ld, int n, int kc, int r)
{
    /* A plain loop, not memcpy: rows are only mr or nr floats long, where a call per
     * row costs more than the copy. */
    for (int k = 0; k < kc; k++) {
        float *d = dst + (size_t)k * r;
        const float *s = src + (size_t)k * ld;
        for (int j = 0; j < n; j++) d[j] = s[j];
        for (int j = n; j < r; j++) d[j] = 0.0f;
    }
}

/* c (m, n; row stride ldc) <- b[0..n) on every row, or 0 when b is NULL. */
static void init_c(float *c, size_t ldc, int m, int n, const float *b)
{
    for (int i = 0; i < m; i++) {
        if (b)
            memcpy(c + i * ldc, b, (size_t)n * sizeof *c);
        else
            memset(c + i * ldc, 0, (size_t)n * sizeof *c);
    }
}

static void copy_c(float *dst, size_t ldd, const float *src, size_t lds, int m, int n)
{
    for (int i = 0; i < m; i++) memcpy(dst + i * ldd, src + i * lds, (size_t)n * sizeof *dst);
}

/* One thread's rectangle y[m0:m1, n0:n1], all of K. xp holds MC x KC floats of
 * packed x, wp KC x NC of packed w. */
static void gemm_rect(const qb_gemm_f32_kernel *kern, const qb_gemm_f32 *g, float *xp, float *wp,
                      int m0, int m1, int n0, int n1)
{
    const int mr = kern->mr, nr = kern->nr, mc = MC / mr * mr, nc_max = NC / nr * nr;
    const size_t ldy = g->ldy, ldx = g->ldx, ldw = g->ldw;
    float tile[TILE_MAX];
    memset(tile, 0, (size_t)mr * nr * sizeof *tile);  /* an edge copy's outside stays finite */
    for (int jc = n0; jc < n1; jc += nc_max) {
        const int nc = min_int(nc_max, n1 - jc);
        for (int pc = 0; pc < g->K; pc += KC) {
            const int kc = min_int(KC, g->K - pc);
            /* The first K slice starts y from b (or 0) unless y accumulates. */
            const int fresh = pc == 0 && !g->accumulate;
            for (int j = 0; j < nc; j += nr) {
                const int n = min_int(nr, nc - j);
                if (g->w_t)
                    pack_rows(wp + (size_t)j * kc, g->w + pc * ldw + jc + j, ldw, n, kc, nr);
                else
                    kern->pack_w(wp + (size_t)j * kc, g->w + (jc + j) * ldw + pc, ldw, n, kc, nr);
            }
            for (int ic = m0; ic < m1; ic += mc) {
                const int mb = min_int(mc, m1 - ic);
                for (int i = 0; i < mb; i += mr) {
                    const int m = min_int(mr, mb - i);
                    if (g->x_t)
                        pack_rows(xp + (size_t)i * kc, g->x + pc * ldx + ic + i, ldx, m, kc, mr);
                    else
                        kern->pack_x(xp + (size_t)i * kc, g->x + (ic + i) * ldx + pc, ldx, m, kc,
                                     mr);
                }
                /* Rows innermost: the w panel stays in L1 while x panels stream from L2. */
                for (int j = 0; j < nc; j += nr) {
                    const int n = min_int(nr, nc - j);
                    const float *bias = g->b ? g->b + jc + j : NULL;
                    const float *wpj = wp + (size_t)j * kc;
                    for (int i = 0; i < mb; i += mr) {
                        const int m = min_int(mr, mb - i);
                        float *c = g->y + (ic + i) * ldy + jc + j;
                        if (m == mr && n == nr) {
                            if (fresh) init_c(c, ldy, m, n, bias);
                            kern->tile(kc, xp + (size_t)i * kc, wpj, c, ldy);
                        } else {
                            if (fresh)
                                init_c(tile, nr, m, n, bias);
                            else
                                copy_c(tile, nr, c, ldy, m, n);
                            kern->tile(kc, xp + (size_t)i * kc, wpj, tile, nr);
                            copy_c(c, ldy, tile, nr, m, n);
                        }
                    }
                }
            }
        }
    }
}

/* The number of thread columns tn (a divisor of nt; tm = nt / tn thread rows) that
 * minimises the largest rectangle's work: its multiply-adds plus the packing it
 * does (all its w once, its x once per NC columns), both per unit of K. */
static int grid_cols(int M, int N, int nt, int mr, int nr)
{
    int best = 1;
    double best_cost = 0.0;
    for (int tn = 1; tn <= nt; tn++) {
        if (nt % tn != 0) continue;
        double rows = round_up(ceil_div(M, nt / tn), mr), cols = round_up(ceil_div(N, tn), nr);
        double cost = rows * cols + PACK_COST * (cols + rows * ceil(cols / NC));
        if (tn == 1 || cost < best_cost) {
            best = tn;
            best_cost = cost;
        }
    }
    return best;
}

void qb_gemm_f32_blocked(const qb_gemm_f32_kernel *kern, const qb_gemm_f32 *g)
{
    const int M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!g->accumulate) init_c(g->y, g->ldy, M, N, g->b);
        return;
    }
    const int mr = kern->mr, nr = kern->nr;
    const int kc = min_int(KC, K), mc = min_int(MC / mr * mr, round_up(M, mr));
    const int nc = min_int(NC / nr * nr, round_up(N, nr));
    /* Per thread: packed x (and the packer's slack), rounded to a cache line so that
     * packed w starts on one. */
    const size_t xp_len = (size_t)round_up(mc * kc + QB_GEMM_PACK_X_SLACK, 16);
    const size_t per_thread = xp_len + (size_t)kc * nc;
    /* Called from inside a parallel region (attention per head): stay on this thread. */
    const int nt = omp_in_parallel() || (double)M * N * K < PAR_MIN_MACS ? 1 : omp_get_max_threads();
    const int small = nt == 1 && per_thread <= SMALL_WS;
    float *ws = small ? small_ws : qb_malloc((size_t)nt * per_thread * sizeof *ws);
    if (!ws) {
        qb_log(QB_LOG_ERROR, "gemm %dx%dx%d: cannot allocate %zu bytes of packing space; "
               "using the scalar reference", M, N, K, (size_t)nt * per_thread * sizeof *ws);
        qb_gemm_f32_scalar(g);
        return;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        const int tn = grid_cols(M, N, team, mr, nr), tm = team / tn;
        const int rows = round_up(ceil_div(M, tm), mr), cols = round_up(ceil_div(N, tn), nr);
        const int m0 = (t / tn) * rows, n0 = (t % tn) * cols;
        float *xp = ws + (size_t)t * per_thread;
        if (m0 < M && n0 < N)
            gemm_rect(kern, g, xp, xp + xp_len, m0, min_int(M, m0 + rows), n0,
                      min_int(N, n0 + cols));
    }
    if (!small) qb_free(ws);
}

/* ---- instruction set selection ---- */

static const char *const isa_names[] = {"scalar", "avx2", "avx512"};

const char *qb_isa_name(qb_isa isa)
{
    return (unsigned)isa < sizeof isa_names / sizeof isa_names[0] ? isa_names[isa] : "unknown";
}

int qb_cpu_isa_available(qb_isa isa)
{
    const unsigned f = qb_cpu_features(), avx2 = QB_CPU_AVX2 | QB_CPU_FMA;
    /* -mavx512vl is implied: every CPU with AVX512BW has VL. */
    const unsigned avx512 = avx2 | QB_CPU_AVX512F | QB_CPU_AVX512BW;
    switch (isa) {
    case QB_ISA_SCALAR: return 1;
    case QB_ISA_AVX2: return (f & avx2) == avx2;
    case QB_ISA_AVX512: return (f & avx512) == avx512;
    }
    return 0;
}

static qb_isa best_isa(void)
{
    if (qb_cpu_isa_available(QB_ISA_AVX512)) return QB_ISA_AVX512;
    if (qb_cpu_isa_available(QB_ISA_AVX2)) return QB_ISA_AVX2;
    return QB_ISA_SCALAR;
}

qb_status qb_isa_parse(const char *name, qb_isa *isa)
{
    for (unsigned i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
        if (strcmp(name, isa_names[i]) == 0) {
            *isa = (qb_isa)i;
            return QB_OK;
        }
    }
    return qb_fail(QB_EINVAL, "unknown instruction set \"%s\": expected scalar, avx2 or avx512",
                   name);
}

qb_isa qb_cpu_isa_resolve(const char *value)
{
    const qb_isa best = best_isa();
    qb_isa isa = best;
    if (!value || !*value) return best;
    if (qb_isa_parse(value, &isa) != QB_OK) {
        qb_log(QB_LOG_ERROR, "QBERT_ISA: %s; using %s", qb_error(), qb_isa_name(best));
        return best;
    }
    if (!qb_cpu_isa_available(isa)) {
        qb_log(QB_LOG_ERROR, "QBERT_ISA=%s: this CPU does not support it; using %s", value,
               qb_isa_name(best));
        return best;
    }
    return isa;
}

/* QBERT_ISA is read once, on first use, whichever thread gets there first. */
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static _Atomic int isa_current;

static void isa_init(void) { atomic_store(&isa_current, (int)qb_cpu_isa_resolve(getenv("QBERT_ISA"))); }

qb_isa qb_cpu_isa(void)
{
    pthread_once(&isa_once, isa_init);
    return (qb_isa)atomic_load(&isa_current);
}

void qb_cpu_set_isa(qb_isa isa)
{
    pthread_once(&isa_once, isa_init);  /* so that a later first qb_cpu_isa() keeps this choice */
    if (!qb_cpu_isa_available(isa)) {
        qb_isa best = best_isa();
        qb_log(QB_LOG_ERROR, "instruction set %s: this CPU does not support it; using %s",
               qb_isa_name(isa), qb_isa_name(best));
        isa = best;
    }
    atomic_store(&isa_current, (int)isa);
}

void qb_cpu_gemm(const qb_gemm_f32 *g)
{
    switch (qb_cpu_isa()) {
    case QB_ISA_AVX512: qb_gemm_f32_avx512(g); return;
    case QB_ISA_AVX2: qb_gemm_f32_avx2(g); return;
    case QB_ISA_SCALAR: break;
    }
    qb_gemm_f32_scalar(g);
}

void qb_cpu_linear(float *y, const float *x, const float *w, const float *b, int M, int N, int K)
{
    const qb_gemm_f32 g = {.y = y, .x = x, .w = w, .b = b, .M = M, .N = N, .K = K,
                           .ldy = (size_t)N, .ldx = (size_t)K, .ldw = (size_t)K};
    qb_cpu_gemm(&g);
}
