/* qbert-bench: benchmark harnesses. Each prints a table and can write JSON. */
#include "bench.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "latency") == 0) return qb_bench_latency(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "gemm") == 0) return qb_bench_gemm(argc - 1, argv + 1);
    FILE *f = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
    fprintf(f, "usage: qbert-bench COMMAND [options]   (qbert-bench COMMAND --help)\n"
               "  latency   forward-pass latency of a model: warm-up, timed runs, per-sample statistics\n"
               "  gemm      FP32 and INT8 GEMM kernels at BERT shapes, against the measured ceilings\n");
    return f == stdout ? 0 : 2;
}
