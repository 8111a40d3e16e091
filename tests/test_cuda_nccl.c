/* The NCCL glue of data-parallel training (csrc/dist/nccl.c) on one GPU, without an
 * MPI launcher: libnccl.so.2 loads, a communicator of one process is made, two
 * bucket all-reduces and the observers' min / max are queued behind work on the
 * compute stream and joined back, and the data is what a sum over one process
 * leaves: unchanged (the all-reduce of several processes needs several GPUs and
 * mpirun: tests/dist_test.py runs the same bucket logic over MPI on the CPU). Skips
 * without a GPU, without NCCL in the build, or when libnccl.so.2 cannot be loaded. */
#include "cuda_check.h"

#include "dist/nccl.h"

int main(void)
{
    if (!cuda_or_skip("test_cuda_nccl")) return QB_TEST_SKIPPED;
    unsigned char id[QB_NCCL_ID_BYTES];
    if (qb_nccl_unique_id(id)) {
        printf("test_cuda_nccl: skipped: %s\n", qb_error());
        return QB_TEST_SKIPPED;
    }
    qb_nccl *c;
    CHECKF(qb_nccl_new(id, 0, 1, &c) == QB_OK, "communicator: %s", qb_error());
    if (!c) return check_summary("test_cuda_nccl");
    const size_t n = 1 << 20;
    float *x = rand_host(n, -1, 1), *y = host_alloc(n * sizeof *y), v[2] = {-3.5f, 7.25f}, w[2];
    float *d = dev_from(NULL, n * sizeof *x), *dv = dev_from(v, sizeof v);
    gpu->to_device(NULL, d, x, n * sizeof *x);  /* queued on the compute stream before the buckets */
    CHECKF(qb_nccl_start(c, NULL, d + n / 2, n - n / 2) == QB_OK, "bucket 1: %s", qb_error());
    CHECKF(qb_nccl_start(c, NULL, d, n / 2) == QB_OK, "bucket 2: %s", qb_error());
    CHECKF(qb_nccl_min_max(c, NULL, dv) == QB_OK, "min / max: %s", qb_error());
    CHECKF(qb_nccl_join(c, NULL) == QB_OK, "join: %s", qb_error());
    gpu->to_host(NULL, y, d, n * sizeof *y);
    gpu->to_host(NULL, w, dv, sizeof w);
    CHECKF(qb_cuda_sync(NULL) == QB_OK, "sync: %s", qb_error());
    CHECK(memcmp(x, y, n * sizeof *x) == 0);
    CHECK(w[0] == v[0] && w[1] == v[1]);
    qb_nccl_free(c);
    gpu->free(d), gpu->free(dv);
    free(x), free(y);
    return check_summary("test_cuda_nccl");
}
