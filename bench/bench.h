/* qbert-bench subcommands. */
#ifndef QBERT_BENCH_H
#define QBERT_BENCH_H

int qb_bench_latency(int argc, char **argv);

#endif
