/* qbert-bench: benchmark harnesses. Each prints a table and can write JSON. */
#include "bench.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "latency") == 0) return qb_bench_latency(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "gemm") == 0) return qb_bench_gemm(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "train") == 0) return qb_bench_train(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "kernels") == 0) {
#ifdef QBERT_BENCH_CUDA
        return qb_bench_kernels(argc - 1, argv + 1);
#else
        fprintf(stderr, "qbert-bench kernels: this build has no CUDA backend (rebuild where nvcc is installed)\n");
        return 1;
#endif
    }
    FILE *f = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
    fprintf(f, "usage: qbert-bench COMMAND [options]   (qbert-bench COMMAND --help)\n"
               "  latency   forward-pass latency of a model: warm-up, timed runs, per-sample statistics\n"
               "  gemm      FP32 and INT8 GEMM kernels at BERT shapes, against the measured ceilings\n"
               "  train     training step throughput (samples/s, model FLOP/s, MFU) on random data\n"
               "  kernels   every CUDA kernel at BERT-base shapes, against the GPU's measured ceilings\n");
    return f == stdout ? 0 : 2;
}
