/* qbert quantize --scheme hybrid: FP16, INT8 or INT4 for each Linear, chosen by a
 * sensitivity analysis on labelled validation texts.
 *
 * Reference: the hybrid file with every Linear FP16 (embedding tables INT8 per row, as
 * in every hybrid file). Sensitivity of Linear i at INT8 / INT4: that file with only
 * Linear i lowered, run on the validation texts: the mean KL divergence of its class
 * probabilities from the reference's, and its weighted-F1 drop. KL orders the choices
 * (F1 on a few hundred texts moves in steps of one text and is often 0); both are
 * reported. qb_hybrid_path orders the moves by KL per byte saved; the choice is the
 * shortest prefix of that path that fits --budget-mb, or the longest whose measured
 * F1 drop against FP32 stays within --max-drop (found by bisection, assuming the drop
 * grows along the path). Every candidate is measured as the file it would be: written
 * (to out/.hybrid-candidates, removed at the end) and run by the engine, so the numbers
 * are the file's.
 * The final model is measured once more and reported in out/hybrid_report.{json,md}. */
#include "cli/cli.h"

#include "qbert/metrics.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One measured model: its probabilities on the validation texts and how far they are
 * from the reference. */
typedef struct {
    double accuracy, f1, kl;
    int64_t bytes;
} measured;

typedef struct {
    qb_engine *e;                /* the FP32 model */
    const qb_cli_quant_request *r;
    qb_qplan *plan;
    const char *out;
    const qb_engine_options *eo;
    char dir[4096], path[4200];  /* the candidates' directory (out/.hybrid-candidates), its weights */
    const char *const *texts;    /* (n) the first n validation texts */
    const int *labels;           /* (n) */
    int n, K;                    /* texts, labels */
    float *ref;                  /* (n, K) reference probabilities for the KL */
    float *probs;                /* (n, K) scratch */
    int *pred;
} ctx;

/* mean over texts of KL(ref || p) in nats; probabilities floored at 1e-12. */
static double mean_kl(const float *ref, const float *p, int n, int K)
{
    double kl = 0;
    for (int i = 0; i < n * K; i++)
        if (ref[i] > 0) kl += ref[i] * log((double)ref[i] / fmax((double)p[i], 1e-12));
    return kl / n;
}

/* Runs engine e on the validation texts into c->probs and scores them. */
static qb_status score(ctx *c, qb_engine *e, measured *m)
{
    const int n = c->n, K = c->K;
    qb_status st = qb_engine_classify(e, c->texts, n, c->probs, NULL, NULL);
    if (st) return st;
    qb_cli_argmax(c->probs, n, K, c->pred, NULL);
    qb_metrics mt;
    if ((st = qb_metrics_compute(c->labels, c->pred, NULL, n, K, &mt))) return st;
    m->accuracy = mt.accuracy;
    m->f1 = mt.weighted_f1;
    qb_metrics_free(&mt);
    m->kl = c->ref ? mean_kl(c->ref, c->probs, n, K) : 0.0;
    return QB_OK;
}

/* Writes the candidate file with per-Linear precisions prec. */
static qb_status save(ctx *c, const qb_qprec *prec)
{
    c->plan->linear = prec;
    qb_status st = qb_quant_save(qb_engine_model(c->e), c->plan, c->path);
    c->plan->linear = NULL;
    return st;
}

/* Measures the candidate file as written. */
static qb_status measure_written(ctx *c, measured *m)
{
    m->bytes = qb_file_size(c->path);
    qb_engine *h;
    qb_status st = qb_engine_open(c->dir, c->eo, &h);
    if (st) return st;
    st = score(c, h, m);
    qb_engine_close(h);
    return st;
}

static qb_status measure(ctx *c, const qb_qprec *prec, measured *m)
{
    qb_status st = save(c, prec);
    return st ? st : measure_written(c, m);
}

/* Removes dir and the files in it (the candidates' directory). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char path[4400];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* 0, 1, 2: the index of a precision in the (FP16, INT8, INT4) options. */
static int option(qb_qprec p) { return p == QB_Q_F16 ? 0 : p == QB_Q_INT8 ? 1 : 2; }

/* prec = the first k moves of the path applied to all-FP16. */
static void apply(qb_qprec *prec, int n, const qb_hybrid_step *steps, int k)
{
    for (int i = 0; i < n; i++) prec[i] = QB_Q_F16;
    for (int s = 0; s < k; s++) prec[steps[s].linear] = steps[s].prec;
}

static qb_status write_report(const ctx *c, const qb_linear_info *lin, int n, const double *kl, const double *drop,
                              const qb_qprec *prec, const measured *fp32, const measured *ref, const measured *fin)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "valid", c->r->valid);
    cJSON_AddNumberToObject(root, "valid_texts", c->n);
    if (c->r->budget_mb > 0) cJSON_AddNumberToObject(root, "budget_mb", c->r->budget_mb);
    else cJSON_AddNumberToObject(root, "max_drop_points", c->r->max_drop);
    cJSON_AddNumberToObject(root, "group_size", c->plan->scheme.group);
    const measured *ms[3] = {fp32, ref, fin};
    const char *names[3] = {"fp32", "all_fp16", "chosen"};
    for (int k = 0; k < 3; k++) {
        cJSON *o = cJSON_AddObjectToObject(root, names[k]);
        cJSON_AddNumberToObject(o, "accuracy", ms[k]->accuracy);
        cJSON_AddNumberToObject(o, "f1_weighted", ms[k]->f1);
        cJSON_AddNumberToObject(o, "kl_from_all_fp16", ms[k]->kl);
        if (k) cJSON_AddNumberToObject(o, "size_bytes", (double)ms[k]->bytes);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "linears");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(layers, o);
        cJSON_AddStringToObject(o, "name", lin[i].name);
        cJSON_AddNumberToObject(o, "N", lin[i].N);
        cJSON_AddNumberToObject(o, "K", lin[i].K);
        cJSON_AddNumberToObject(o, "kl_int8", kl[2 * i]);
        cJSON_AddNumberToObject(o, "kl_int4", kl[2 * i + 1]);
        cJSON_AddNumberToObject(o, "f1_drop_int8", drop[2 * i]);
        cJSON_AddNumberToObject(o, "f1_drop_int4", drop[2 * i + 1]);
        cJSON_AddStringToObject(o, "chosen", qb_qprec_name(prec[i]));
    }
    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    if (!f) {
        cJSON_Delete(root);
        return qb_fail(QB_ENOMEM, "out of memory for the report");
    }
    fprintf(f, "Hybrid precision on %s (%d texts), %s %g.\n\n", c->r->valid, c->n,
            c->r->budget_mb > 0 ? "budget MB" : "largest F1 drop (points)",
            c->r->budget_mb > 0 ? c->r->budget_mb : c->r->max_drop);
    fprintf(f, "| model | accuracy | F1 (weighted) | KL from all-FP16 | size MB |\n|---|---|---|---|---|\n");
    fprintf(f, "| FP32 | %.4f | %.4f | %.3g | |\n", fp32->accuracy, fp32->f1, fp32->kl);
    fprintf(f, "| all FP16 | %.4f | %.4f | 0 | %.2f |\n", ref->accuracy, ref->f1, ref->bytes / 1e6);
    fprintf(f, "| chosen | %.4f | %.4f | %.3g | %.2f |\n\n", fin->accuracy, fin->f1, fin->kl, fin->bytes / 1e6);
    fprintf(f, "Sensitivity: each Linear alone at INT8 / INT4, the rest FP16; F1 change in points against "
               "all-FP16 (negative: a loss; positive: that text set happened to gain).\n\n");
    fprintf(f, "| Linear | N x K | KL INT8 | KL INT4 | F1 change INT8 | F1 change INT4 | chosen |\n"
               "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++)  /* drop > 0 is a loss: shown as a negative change */
        fprintf(f, "| %s | %d x %d | %.3g | %.3g | %+.2f | %+.2f | %s |\n", lin[i].name, lin[i].N, lin[i].K, kl[2 * i],
                kl[2 * i + 1], -drop[2 * i] + 0.0, -drop[2 * i + 1] + 0.0, qb_qprec_name(prec[i]));
    fclose(f);
    return qb_cli_write_reports(c->out, "hybrid_report", root, md, len);
}

qb_status qb_cli_quantize_hybrid(qb_engine *e, const qb_cli_quant_request *r, qb_qplan *plan,
                                 const qb_engine_options *eo, const char *out)
{
    const qb_model *m = qb_engine_model(e);
    const int n = qb_config_linears(&m->cfg, NULL), group = plan->scheme.group;
    qb_linear_info *lin = malloc((size_t)n * sizeof *lin);
    if (!lin) return qb_fail(QB_ENOMEM, "out of memory");
    qb_config_linears(&m->cfg, lin);
    qb_status st = QB_OK;
    for (int i = 0; i < n && !st; i++)
        if (qb_int4_check_group(group, lin[i].K)) st = qb_fail(QB_EINVAL, "%s: %s", lin[i].name, qb_error());
    qb_dataset valid = {0};
    if (!st) st = qb_cli_load_texts(r->valid, r->valid_samples, &m->cfg, r->text_column, true, "--valid-samples", &valid);
    if (st) {
        free(lin);
        return st;
    }
    const int K = m->cfg.num_labels, n_valid = r->valid_samples;  /* the first N rows */
    ctx c = {e, r, plan, out, eo, "", "", (const char *const *)valid.texts, valid.labels, n_valid, K, NULL, NULL, NULL};
    float *ref = malloc((size_t)n_valid * K * sizeof *ref);
    c.probs = malloc((size_t)n_valid * K * sizeof *c.probs);
    c.pred = malloc((size_t)n_valid * sizeof *c.pred);
    double *kl = malloc((size_t)n * 2 * sizeof *kl), *drop = malloc((size_t)n * 2 * sizeof *drop);
    int64_t *bytes = malloc((size_t)n * 3 * sizeof *bytes);
    qb_hybrid_step *steps = malloc((size_t)n * 2 * sizeof *steps);
    qb_qprec *prec = malloc((size_t)n * sizeof *prec);
    if (!ref || !c.probs || !c.pred || !kl || !drop || !bytes || !steps || !prec) st = qb_fail(QB_ENOMEM, "out of memory");
    /* Candidates are written beside out, never as its model: out/model.safetensors is
     * only ever the chosen one. */
    if (!st) st = qb_path_join(c.dir, sizeof c.dir, out, ".hybrid-candidates");
    if (!st) st = qb_path_join(c.path, sizeof c.path, c.dir, "model.safetensors");
    if (!st) st = qb_cli_write_model_dir(m, out, c.dir);

    /* FP32, then the all-FP16 reference; ref holds FP32's probabilities in between. */
    measured fp32 = {0}, all16 = {0}, fin = {0};
    const size_t nk = (size_t)n_valid * K;
    if (!st && !(st = score(&c, e, &fp32))) {
        memcpy(ref, c.probs, nk * sizeof *ref);
        apply(prec, n, NULL, 0);
        st = measure(&c, prec, &all16);
    }
    if (!st) {
        fp32.kl = mean_kl(c.probs, ref, n_valid, K);
        memcpy(ref, c.probs, nk * sizeof *ref);
        c.ref = ref;
        fprintf(stderr, "[hybrid] FP32: F1 %.4f; every Linear FP16: F1 %.4f, %.2f MB\n", fp32.f1, all16.f1,
                all16.bytes / 1e6);
    }
    const double t0 = qb_now();
    for (int i = 0; i < n && !st; i++) {
        for (int b = 0; b < 2 && !st; b++) {
            measured one = {0};
            prec[i] = b ? QB_Q_INT4 : QB_Q_INT8;
            st = measure(&c, prec, &one);
            kl[2 * i + b] = one.kl;
            drop[2 * i + b] = 100.0 * (all16.f1 - one.f1);
        }
        prec[i] = QB_Q_F16;
        bytes[3 * i] = qb_hybrid_weight_bytes(lin[i].N, lin[i].K, QB_Q_F16, group);
        bytes[3 * i + 1] = qb_hybrid_weight_bytes(lin[i].N, lin[i].K, QB_Q_INT8, group);
        bytes[3 * i + 2] = qb_hybrid_weight_bytes(lin[i].N, lin[i].K, QB_Q_INT4, group);
        const double el = qb_now() - t0;
        if (!st)
            fprintf(stderr, "[hybrid] sensitivity %d/%d %s: KL INT8 %.3g, INT4 %.3g  ETA %.0fs\n", i + 1, n,
                    lin[i].name, kl[2 * i], kl[2 * i + 1], el / (i + 1) * (n - i - 1));
    }
    int n_steps = 0, k = 0;
    if (!st && (n_steps = qb_hybrid_path(n, kl, bytes, steps)) < 0) st = qb_fail(QB_ENOMEM, "out of memory");
    if (!st && r->budget_mb > 0) {
        /* Sizes along the path: the all-FP16 file minus what each move saves, which
         * leaves out the header's growth (the scale tensors' entries); the file written
         * is checked, and more moves taken while it is over. */
        const double budget = r->budget_mb * 1e6;
        int64_t size = all16.bytes;
        apply(prec, n, NULL, 0);
        for (k = 0; k < n_steps && size > budget; k++) {
            const int i = steps[k].linear;
            size -= bytes[3 * i + option(prec[i])] - bytes[3 * i + option(steps[k].prec)];
            prec[i] = steps[k].prec;
        }
        for (;; k++) {
            apply(prec, n, steps, k);
            if ((st = save(&c, prec)) || (size = qb_file_size(c.path)) <= budget || k == n_steps) break;
        }
        if (!st && size > budget)
            st = qb_fail(QB_EINVAL, "--budget-mb %g: even with every Linear INT4 the file is %.2f MB", r->budget_mb,
                         size / 1e6);
    } else if (!st) {
        /* The longest prefix whose F1 drop against FP32 is within max_drop. */
        int lo = 0, hi = n_steps;
        while (!st && lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            measured t = {0};
            apply(prec, n, steps, mid);
            if (!(st = measure(&c, prec, &t))) {
                const double d = 100.0 * (fp32.f1 - t.f1);
                fprintf(stderr, "[hybrid] %d of %d moves: %.2f MB, F1 drop %.2f points\n", mid, n_steps, t.bytes / 1e6, d);
                if (d <= r->max_drop) lo = mid;
                else hi = mid - 1;
            }
        }
        k = lo;
    }
    /* The budget search leaves the chosen file written; bisection may not. */
    apply(prec, n, steps, k);
    if (!st) st = r->budget_mb > 0 ? measure_written(&c, &fin) : measure(&c, prec, &fin);
    if (!st && r->budget_mb <= 0 && 100.0 * (fp32.f1 - fin.f1) > r->max_drop)
        st = qb_fail(QB_EINVAL, "--max-drop %g: even with every Linear FP16 the F1 drop is %.2f points", r->max_drop,
                     100.0 * (fp32.f1 - fin.f1));
    /* The measured candidate becomes the model (same file system: an atomic rename). */
    char final[4200];
    if (!st && !(st = qb_path_join(final, sizeof final, out, "model.safetensors")) && rename(c.path, final) != 0)
        st = qb_fail(QB_EIO, "%s: cannot move the chosen model to %s: %s", c.path, final, strerror(errno));
    if (!st) st = write_report(&c, lin, n, kl, drop, prec, &fp32, &all16, &fin);
    remove_dir(c.dir);
    if (!st) {
        int count[5] = {0};
        for (int i = 0; i < n; i++) count[prec[i]]++;
        fprintf(stderr, "[hybrid] chosen: %d FP16, %d INT8, %d INT4 Linears; %.2f MB; F1 %.4f (FP32 %.4f, %+.2f points); "
                "report in %s/hybrid_report.md\n", count[QB_Q_F16], count[QB_Q_INT8], count[QB_Q_INT4], fin.bytes / 1e6,
                fin.f1, fp32.f1, 100.0 * (fin.f1 - fp32.f1), out);
    }
    qb_dataset_free(&valid);
    free(lin), free(ref), free(c.probs), free(c.pred), free(kl), free(drop), free(bytes), free(steps), free(prec);
    return st;
}
