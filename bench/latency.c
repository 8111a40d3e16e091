/* qbert-bench latency: the research notes' latency protocol, on the CPU or (--device
 * cuda) the GPU, for any model file (FP32, FP16 / BF16 widened, INT8, INT4) and any
 * product arithmetic of the FP32 Linears (--math). For each (batch, sequence length):
 * random token ids with a fixed seed and a full attention mask, `warmup` untimed
 * forward passes, then `runs` timed ones. Each timed run covers exactly one
 * qb_model_infer call as the engine makes it: the ids copied to the device, embeddings
 * to logits, the logits copied back (no tokenisation, no model loading; the model and
 * the activations are on the device beforehand); per-sample figures divide by the
 * batch size. */
#include "bench.h"

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/metrics.h"
#include "qbert/model.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert-bench latency (--model DIR | --preset NAME) [options]\n"
            "  --model DIR        Hugging Face model directory\n"
            "  --preset NAME      random weights of a preset shape (bert-tiny, indobert-base-p2)\n"
            "  --seq LIST         sequence lengths, comma separated (default 32,64,128)\n"
            "  --batch LIST       batch sizes (default 1,32)\n"
            "  --warmup N         untimed runs per point (default 5)\n"
            "  --runs N           timed runs per point (default 20)\n"
            "  --threads N        OpenMP threads (default: all cores)\n"
            "  --device NAME      cpu (default) or cuda\n"
            "  --math NAME        products of the FP32 Linears: fp32 (default), tf32, bf16, fp16\n"
            "  --json FILE        write the table as JSON\n"
            "example: qbert-bench latency --preset indobert-base-p2 --seq 32,64,128 --batch 1,32 --json cpu.json\n");
}

typedef struct {
    const char *model_dir, *preset, *device;
    int seqs[16], n_seq, batches[16], n_batch;
    qb_math math;
} latency_options;

static int own_option(const char *name, const char *value, void *ctx, int *ok)
{
    latency_options *l = ctx;
    if (strcmp(name, "--model") == 0) l->model_dir = value;
    else if (strcmp(name, "--preset") == 0) l->preset = value;
    else if (strcmp(name, "--device") == 0) l->device = value;
    else if (strcmp(name, "--math") == 0) *ok = value && qb_math_parse(value, &l->math) == QB_OK;
    else if (strcmp(name, "--seq") == 0) *ok = value && (l->n_seq = qb_bench_parse_list(value, l->seqs, 16)) > 0;
    else if (strcmp(name, "--batch") == 0) *ok = value && (l->n_batch = qb_bench_parse_list(value, l->batches, 16)) > 0;
    else return 0;
    return 1;
}

int qb_bench_latency(int argc, char **argv)
{
    latency_options l = {NULL, NULL, "cpu", {32, 64, 128}, 3, {1, 32}, 2, QB_MATH_FP32};
    qb_bench_common o = {.warmup = 5, .runs = 20};
    const int parsed = qb_bench_options("latency", argc, argv, &o, usage, own_option, &l);
    if (parsed >= 0) return parsed;
    const char *model_dir = l.model_dir, *preset = l.preset;
    const int *seqs = l.seqs, *batches = l.batches, n_seq = l.n_seq, n_batch = l.n_batch;
    if (!model_dir == !preset) {
        fprintf(stderr, "qbert-bench latency: give exactly one of --model and --preset\n");
        return 2;
    }
    const int warmup = o.warmup, runs = o.runs;
    const char *json_path = o.json;
    if (o.threads > 0) omp_set_num_threads(o.threads);

    qb_model m;
    double size_mb;
    const char *size_kind;
    if (model_dir) {
        if (qb_model_load(model_dir, 42, &m)) {
            fprintf(stderr, "qbert-bench latency: %s\n", qb_error());
            return 1;
        }
        const int64_t bytes = qb_model_weights_bytes(model_dir);
        size_mb = bytes >= 0 ? bytes / 1e6 : 0;
        size_kind = "weights file on disk";
    } else {
        qb_config cfg;
        if (qb_config_preset(preset, &cfg) || qb_model_init_random(&cfg, 42, &m)) {
            fprintf(stderr, "qbert-bench latency: %s\n", qb_error());
            return 1;
        }
        size_mb = qb_model_param_count(&m) * 4 / 1e6;
        size_kind = "F32 parameter bytes (random preset, not saved)";
    }
    const qb_config *c = &m.cfg;
    const qb_backend *be;
    qb_model copy = {0};  /* on a device: the model in its memory (borrowing m's quantized Linears) */
    const qb_model *run = &m;
    qb_activations *acts = NULL;
    /* as the engine opens a model: the quantized Linears laid out for the backend (on a
     * device, query, key and value joined first), the model copied to the device (the
     * encoder's weights in half only where the passes store activations in half),
     * activations allocated once and kept */
    if (qb_backend_by_name(l.device, "--device", &be) || (be->device != QB_DEV_CPU && qb_model_join_qkv(&m)) ||
        qb_model_prepare(&m, be, NULL)) {
        fprintf(stderr, "qbert-bench latency: %s\n", qb_error());
        qb_model_free(&m);
        return 1;
    }
    const qb_dtype half = qb_model_half_type(&m, be, l.math);
    if ((be->device != QB_DEV_CPU &&
         qb_model_to_backend(&m, be, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_HALF, half, &copy)) ||
        qb_activations_new(be->device != QB_DEV_CPU ? &copy : &m, be, false, &acts)) {
        fprintf(stderr, "qbert-bench latency: %s\n", qb_error());
        qb_model_free(&copy);
        qb_model_free(&m);
        return 1;
    }
    if (be->device != QB_DEV_CPU) run = &copy;
    qb_activations_set_math(acts, l.math);
    const char *device = be->device_name();
    char cpu[256];
    qb_bench_cpu_name(cpu, sizeof cpu);
    int nthreads = omp_get_max_threads();
    /* the file's scheme: FP16 / BF16 files run widened to FP32, low-bit ones on the integer kernels */
    const char *precision = m.scheme[0] ? m.scheme : "fp32";
    printf("qbert-bench latency: %s | %d layers x %d hidden | %s, %s products | %s | CPU GEMM %s, %d threads | %s\n",
           model_dir ? model_dir : preset, c->num_layers, c->hidden_size, precision, qb_math_name(l.math), device,
           qb_isa_name(qb_cpu_isa()), nthreads, cpu);
    printf("model size: %.1f MB (%s); warm-up %d, timed runs %d\n\n", size_mb, size_kind, warmup, runs);
    printf("%6s %5s | %10s %10s %10s %10s | %12s %10s\n", "batch", "seq", "mean ms", "median ms", "std ms",
           "p95 ms", "ms/sample", "samples/s");

    cJSON *root = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(root, "results");
    cJSON_AddStringToObject(root, "model", model_dir ? model_dir : preset);
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddStringToObject(root, "precision", precision);
    cJSON_AddStringToObject(root, "math", qb_math_name(l.math));
    cJSON_AddStringToObject(root, "cpu", cpu);
    cJSON_AddStringToObject(root, "isa", qb_isa_name(qb_cpu_isa()));
    cJSON_AddNumberToObject(root, "threads", nthreads);
    cJSON_AddNumberToObject(root, "size_mb", size_mb);
    cJSON_AddStringToObject(root, "size_kind", size_kind);
    cJSON_AddNumberToObject(root, "warmup", warmup);
    cJSON_AddNumberToObject(root, "runs", runs);
    int rc = 0;
    qb_rng rng;
    qb_rng_init(&rng, 1234);
    for (int bi = 0; bi < n_batch && !rc; bi++) {
        for (int si = 0; si < n_seq && !rc; si++) {
            int B = batches[bi], T = seqs[si];
            int32_t *ids = malloc((size_t)B * T * 4), *mask = malloc((size_t)B * T * 4);
            float *logits = malloc((size_t)B * c->num_labels * 4);
            double *ms = malloc((size_t)runs * sizeof *ms);
            if (!ids || !mask || !logits || !ms) {
                fprintf(stderr, "qbert-bench latency: out of memory\n");
                rc = 1;
            }
            for (int i = 0; !rc && i < B * T; i++) {
                ids[i] = (int32_t)(qb_rng_u32(&rng) % (uint32_t)c->vocab_size);
                mask[i] = 1;
            }
            for (int r = 0; !rc && r < warmup + runs; r++) {
                double t0 = qb_now();
                if (qb_model_infer(run, acts, ids, NULL, mask, B, T, logits, NULL)) {
                    fprintf(stderr, "qbert-bench latency: %s\n", qb_error());
                    rc = 1;
                }
                if (r >= warmup) ms[r - warmup] = (qb_now() - t0) * 1e3;
                if (r == warmup - 1 || (warmup == 0 && r == 0)) fprintf(stderr, "  batch %d seq %d: warm\r", B, T);
            }
            qb_latency_stats s;
            if (!rc && qb_latency_compute(ms, runs, &s) == QB_OK) {
                double per = s.mean / B, sps = 1e3 * B / s.mean;
                printf("%6d %5d | %10.3f %10.3f %10.3f %10.3f | %12.3f %10.1f\n", B, T, s.mean, s.median, s.std,
                       s.p95, per, sps);
                fflush(stdout);
                cJSON *row = cJSON_CreateObject();
                cJSON_AddNumberToObject(row, "batch", B);
                cJSON_AddNumberToObject(row, "seq", T);
                cJSON_AddNumberToObject(row, "mean_ms", s.mean);
                cJSON_AddNumberToObject(row, "median_ms", s.median);
                cJSON_AddNumberToObject(row, "std_ms", s.std);
                cJSON_AddNumberToObject(row, "p95_ms", s.p95);
                cJSON_AddNumberToObject(row, "min_ms", s.min);
                cJSON_AddNumberToObject(row, "max_ms", s.max);
                cJSON_AddNumberToObject(row, "ms_per_sample", per);
                cJSON_AddNumberToObject(row, "samples_per_s", sps);
                cJSON_AddItemToArray(rows, row);
            }
            free(ids);
            free(mask);
            free(logits);
            free(ms);
        }
    }
    rc = qb_bench_finish("latency", rc, json_path, root);
    qb_activations_free(acts);
    qb_model_free(&copy);
    qb_model_free(&m);
    return rc;
}
