/* FP32 GEMM y (M, N) = x (M, K) . w (N, K)^T + b (N), the nn.Linear product: the
 * scalar reference, the cache-blocked driver shared by the SIMD paths, and the
 * choice of instruction set (QBERT_ISA).
 *
 * Design of the fast path (Goto / BLIS). An ISA file supplies only a register
 * tile: an mr x nr block of y held in vector registers, updated once per k by
 * FMAs from two packed panels. Everything else is here, written once:
 *   - Cache blocking. K is cut into slices of KC. For one slice, a kc x nr panel
 *     of packed w (16 KiB for AVX2) stays in L1 while the tile walks down an
 *     MC-row block of packed x (~144 KiB, in L2); w is packed NC columns at a time.
 *   - Packing. x and w are both stored k-contiguous, so both are transposed into
 *     k-major, zero-padded panels, x as (kc, mr) and w as (kc, nr), which the tile
 *     reads with unit stride (the w packer uses 8x8 AVX2 transposes).
 *   - Edges. A tile that sticks out of y runs on a local mr x nr copy: one tile
 *     function handles every block, no masked loads or stores.
 *   - Bias. Before the first K slice a tile's y block is set to b (or 0). The tile
 *     sums a slice's products in registers from zero and adds them to y only at the
 *     end (y's cache lines are prefetched meanwhile), so the FMA chains never wait
 *     on a load of y.
 *   - Threads. y is cut into a tm x tn grid of rectangles, one per thread, the grid
 *     chosen from the shape (small M splits N, large M splits M). Each thread packs
 *     its own panels, so there are no barriers.
 * Determinism. Every element of y is ((b + S0) + S1) + ... where Si is the FMA sum,
 * in k order from zero, of K slice i (slices always start at k = 0, 256, ...),
 * computed by the same tile code whatever the thread grid and whether its tile is
 * full or an edge copy: results do not depend on the number of threads. */
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
#define PACK_PREFETCH 64  /* floats (4 cache lines) ahead when packing x */

static int min_int(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }
static int round_up(int a, int m) { return ceil_div(a, m) * m; }

/* Reference: a plain triple loop, each dot product accumulated in DOUBLE in k order,
 * the bias added, then rounded once to float. Double makes it a more accurate
 * yardstick than any float kernel it checks. */
void qb_linear_f32_scalar(float *y, const float *x, const float *w, const float *b, int M,
                          int N, int K)
{
#pragma omp parallel for schedule(static) if ((double)M * N * K >= PAR_MIN_MACS)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)m * K, *wr = w + (size_t)n * K;
            double s = 0.0;
            for (int k = 0; k < K; k++) s += (double)xr[k] * (double)wr[k];
            if (b) s += b[n];
            y[(size_t)m * N + n] = (float)s;
        }
    }
}

/* xp (kc, mr) <- rows [0, m) of x (row stride ldx), columns [0, kc); rows m..mr-1 zero. */
static void pack_x(float *xp, const float *x, size_t ldx, int m, int kc, int mr)
{
    /* k outer: the m rows are read as m concurrent streams, each prefetched a few
     * cache lines ahead (x usually comes from DRAM and each row is only kc long). */
    for (int k = 0; k < kc; k++) {
        if (k % 16 == 0 && k + PACK_PREFETCH < kc)
            for (int r = 0; r < m; r++) __builtin_prefetch(x + r * ldx + k + PACK_PREFETCH);
        for (int r = 0; r < m; r++) xp[(size_t)k * mr + r] = x[r * ldx + k];
        for (int r = m; r < mr; r++) xp[(size_t)k * mr + r] = 0.0f;
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

typedef struct {
    const qb_gemm_f32_kernel *kern;
    float *y;
    const float *x, *w, *b;
    int M, N, K;
} gemm_args;

/* One thread's rectangle y[m0:m1, n0:n1], all of K. xp holds MC x KC floats of
 * packed x, wp KC x NC of packed w. */
static void gemm_rect(const gemm_args *a, float *xp, float *wp, int m0, int m1, int n0, int n1)
{
    const qb_gemm_f32_kernel *kern = a->kern;
    const int mr = kern->mr, nr = kern->nr, mc = MC / mr * mr, nc_max = NC / nr * nr;
    const size_t K = (size_t)a->K, N = (size_t)a->N;
    float tile[TILE_MAX];
    memset(tile, 0, sizeof tile);  /* the parts of an edge copy outside y stay finite */
    for (int jc = n0; jc < n1; jc += nc_max) {
        const int nc = min_int(nc_max, n1 - jc);
        for (int pc = 0; pc < a->K; pc += KC) {
            const int kc = min_int(KC, a->K - pc);
            for (int j = 0; j < nc; j += nr)
                kern->pack_w(wp + (size_t)j * kc, a->w + (jc + j) * K + pc, K,
                             min_int(nr, nc - j), kc, nr);
            for (int ic = m0; ic < m1; ic += mc) {
                const int mb = min_int(mc, m1 - ic);
                for (int i = 0; i < mb; i += mr)
                    pack_x(xp + (size_t)i * kc, a->x + (ic + i) * K + pc, K, min_int(mr, mb - i),
                           kc, mr);
                /* Rows innermost: the w panel stays in L1 while x panels stream from L2. */
                for (int j = 0; j < nc; j += nr) {
                    const int n = min_int(nr, nc - j);
                    const float *bias = a->b ? a->b + jc + j : NULL;
                    const float *wpj = wp + (size_t)j * kc;
                    for (int i = 0; i < mb; i += mr) {
                        const int m = min_int(mr, mb - i);
                        float *c = a->y + (ic + i) * N + jc + j;
                        if (m == mr && n == nr) {
                            if (pc == 0) init_c(c, N, m, n, bias);
                            kern->tile(kc, xp + (size_t)i * kc, wpj, c, N);
                        } else {
                            if (pc == 0)
                                init_c(tile, nr, m, n, bias);
                            else
                                copy_c(tile, nr, c, N, m, n);
                            kern->tile(kc, xp + (size_t)i * kc, wpj, tile, nr);
                            copy_c(c, N, tile, nr, m, n);
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

void qb_gemm_f32_blocked(const qb_gemm_f32_kernel *kern, float *y, const float *x,
                         const float *w, const float *b, int M, int N, int K)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        init_c(y, (size_t)N, M, N, b);
        return;
    }
    const int mr = kern->mr, nr = kern->nr;
    const int kc = min_int(KC, K), mc = min_int(MC / mr * mr, round_up(M, mr));
    const int nc = min_int(NC / nr * nr, round_up(N, nr));
    /* Per thread: packed x, rounded to a cache line so that packed w starts on one. */
    const size_t xp_len = (size_t)round_up(mc * kc, 16), per_thread = xp_len + (size_t)kc * nc;
    /* Called from inside a parallel region (attention per head): stay on this thread. */
    const int nt = omp_in_parallel() || (double)M * N * K < PAR_MIN_MACS ? 1 : omp_get_max_threads();
    float *ws = qb_malloc((size_t)nt * per_thread * sizeof *ws);
    if (!ws) {
        qb_log(QB_LOG_ERROR, "linear %dx%dx%d: cannot allocate %zu bytes of packing space; "
               "using the scalar reference", M, N, K, (size_t)nt * per_thread * sizeof *ws);
        qb_linear_f32_scalar(y, x, w, b, M, N, K);
        return;
    }
    const gemm_args args = {kern, y, x, w, b, M, N, K};
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        const int tn = grid_cols(M, N, team, mr, nr), tm = team / tn;
        const int rows = round_up(ceil_div(M, tm), mr), cols = round_up(ceil_div(N, tn), nr);
        const int m0 = (t / tn) * rows, n0 = (t % tn) * cols;
        float *xp = ws + (size_t)t * per_thread;
        if (m0 < M && n0 < N)
            gemm_rect(&args, xp, xp + xp_len, m0, min_int(M, m0 + rows), n0, min_int(N, n0 + cols));
    }
    qb_free(ws);
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

void qb_cpu_linear(float *y, const float *x, const float *w, const float *b, int M, int N, int K)
{
    switch (qb_cpu_isa()) {
    case QB_ISA_AVX512: qb_linear_f32_avx512(y, x, w, b, M, N, K); return;
    case QB_ISA_AVX2: qb_linear_f32_avx2(y, x, w, b, M, N, K); return;
    case QB_ISA_SCALAR: break;
    }
    qb_linear_f32_scalar(y, x, w, b, M, N, K);
}
