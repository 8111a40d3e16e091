/* qbert quantize: an FP32 model directory in, a low-bit model directory out
 * (config.json, the tokenizer files, one quantized model.safetensors) that qbert eval
 * and qbert predict load directly. */
#include "cli/cli.h"

#include "qbert/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert quantize --model DIR --scheme S --out DIR [options]\n"
            "  --model DIR            FP32 model directory (config.json, weights, vocab.txt)\n"
            "  --scheme S             fp16 | bf16 | int8-dynamic | int8-static | int4 | int4-tensor | hybrid | qat\n"
            "                         (qat: a QAT checkpoint with the input scales it learned)\n"
            "  --out DIR              output model directory (created; files replaced atomically)\n"
            "  --group-size N         INT4 columns per scale (default 64)\n"
            "  --act int8|fp32        INT4 inputs: INT8 per token (W4A8, default) or FP32 (weight-only)\n"
            "  --calib FILE           int8-static: calibration texts (TSV/CSV; labels optional)\n"
            "  --calib-samples N      texts taken from the start of FILE (default 256; FILE must have N)\n"
            "  --calib-method M       minmax | percentile | mse (default percentile)\n"
            "  --percentile P         of |x| for --calib-method percentile (default 99.99)\n"
            "  --valid FILE           hybrid: labelled texts for the per-Linear sensitivity analysis\n"
            "  --valid-samples N      texts taken from the start of FILE (default 256)\n"
            "  --budget-mb MB         hybrid: the smallest-loss FP16/INT8/INT4 mix whose file fits MB, or\n"
            "  --max-drop POINTS      hybrid: the smallest mix whose weighted F1 is within POINTS of FP32\n"
            "  --max-length N --batch N --threads N   batching of calibration / validation (defaults 128, 32, all cores)\n"
            "  --text-column NAME     CSV text column (default text)\n"
            "example: qbert quantize --model runs/smsa/best --scheme int8-static --calib train.tsv --out runs/smsa/int8\n");
}

qb_status qb_cli_load_texts(const char *path, int n, const qb_config *cfg, const char *text_column, bool labelled,
                            const char *option, qb_dataset *d)
{
    qb_data_options o;
    qb_data_default_options(&o);
    o.allow_unlabelled = !labelled;
    o.label_names = (const char *const *)cfg->id2label;
    o.n_labels = cfg->num_labels;
    if (text_column) o.text_column = text_column;
    qb_status st = qb_dataset_load(path, &o, d);
    if (!st && d->count < n) {
        st = qb_fail(QB_EINVAL, "%s: %d rows, fewer than the %d texts asked for (%s)", path, d->count, n, option);
        qb_dataset_free(d);
    }
    return st;
}

void qb_cli_quant_request_default(qb_cli_quant_request *r)
{
    *r = (qb_cli_quant_request){.calib_samples = 256, .calib_method = "percentile", .percentile = 99.99,
                                .valid_samples = 256, .max_drop = -1};
}

qb_status qb_cli_quant_check(const qb_cli_quant_request *r, qb_qplan *plan)
{
    *plan = (qb_qplan){0};
    const bool qat = strcmp(r->scheme, "qat") == 0;
    if (qat && (r->group || r->act || r->calib))
        return qb_fail(QB_EINVAL, "--scheme qat takes its settings from the checkpoint (no --group-size, --act or "
                       "--calib)");
    if (qat) return QB_OK;
    /* qat-int8 / qat-int4 are what a QAT checkpoint's plan calls itself; here it is "qat" */
    if (strncmp(r->scheme, "qat-", 4) == 0 || qb_qscheme_get(r->scheme, r->group, &plan->scheme))
        return qb_fail(QB_EINVAL, "--scheme: unknown scheme \"%.64s\" (expected fp16, bf16, int8-dynamic, int8-static, "
                       "int4, int4-tensor, hybrid or qat)", r->scheme);
    const bool hybrid = strcmp(r->scheme, "hybrid") == 0;
    if (hybrid && (!r->valid || (r->budget_mb > 0) == (r->max_drop >= 0)))
        return qb_fail(QB_EINVAL, "--scheme hybrid needs --valid FILE (labelled) and one of --budget-mb MB or "
                       "--max-drop POINTS");
    if (!hybrid && (r->valid || r->budget_mb > 0 || r->max_drop >= 0))
        return qb_fail(QB_EINVAL, "--valid, --budget-mb and --max-drop are only used by --scheme hybrid");
    if (r->act) {
        if (strcmp(r->act, "fp32") == 0 && plan->scheme.linear >= QB_Q_INT8) plan->scheme.act = QB_ACT_F32;
        else if (strcmp(r->act, "int8") != 0 || plan->scheme.linear < QB_Q_INT8)
            return qb_fail(QB_EINVAL, "--act must be int8 or fp32, for an integer scheme (got \"%s\" with %s)",
                           r->act, r->scheme);
    }
    if (qb_calib_method_parse(r->calib_method) < 0)
        return qb_fail(QB_EINVAL, "--calib-method must be minmax, percentile or mse, got \"%s\"", r->calib_method);
    if (plan->scheme.act == QB_ACT_STATIC && !r->calib)
        return qb_fail(QB_EINVAL, "--scheme %s needs --calib FILE (calibration texts)", r->scheme);
    if (r->calib && plan->scheme.act != QB_ACT_STATIC)
        return qb_fail(QB_EINVAL, "--calib is only used by int8-static (the scheme is %s)", r->scheme);
    return QB_OK;
}

qb_status qb_cli_write_model_dir(const qb_model *m, const char *model_dir, const char *out)
{
    char path[4096];
    qb_status made = qb_mkdirs(out);  /* with its missing parents */
    if (made) return made;
    qb_status st = qb_tokenizer_copy_files(model_dir, out);
    char *json = st ? NULL : qb_config_to_json(&m->cfg);
    if (!st && !json) st = qb_fail(QB_ENOMEM, "cannot serialise config.json");
    if (!st && !(st = qb_path_join(path, sizeof path, out, "config.json")))
        st = qb_write_file_atomic(path, json, strlen(json));
    free(json);
    return st;
}

/* The calibration's progress, as the other commands print theirs: one line a pass. */
static void calib_progress(void *ctx, int pass, int done, int total)
{
    (void)ctx;
    if (done == total) fprintf(stderr, "[quantize] calibration pass %d: %d texts\n", pass, total);
}

qb_status qb_cli_quantize(qb_engine *e, const char *model_dir, const qb_cli_quant_request *r, qb_qplan *plan,
                          const qb_engine_options *eo, const char *out)
{
    const qb_model *m = qb_engine_model(e);
    const int n_lin = qb_config_linears(&m->cfg, NULL);
    float *scales = NULL;
    char note[512], path[4096];
    qb_status st = QB_OK;
    if (strcmp(r->scheme, "qat") == 0) {
        if (!(scales = malloc((size_t)n_lin * sizeof *scales))) st = qb_fail(QB_ENOMEM, "out of memory");
        if (st || (st = qb_qat_plan(m, plan, scales))) goto done;
    } else if (plan->scheme.act == QB_ACT_STATIC) {
        qb_dataset d;
        if ((st = qb_cli_load_texts(r->calib, r->calib_samples, &m->cfg, r->text_column, false, "--calib-samples", &d))) goto done;
        const qb_calib_method method = (qb_calib_method)qb_calib_method_parse(r->calib_method);
        qb_calib_options co = {method, r->percentile, eo->batch_size, qb_engine_max_length(e), calib_progress, NULL};
        if (!(scales = malloc((size_t)n_lin * sizeof *scales))) st = qb_fail(QB_ENOMEM, "out of memory");
        double t0 = qb_now();
        if (!st) st = qb_calibrate(m, qb_engine_tokenizer(e), (const char *const *)d.texts, r->calib_samples, &co, scales);
        qb_dataset_free(&d);
        if (st) goto done;
        if (method == QB_CALIB_PERCENTILE)
            snprintf(note, sizeof note, "percentile %g over the first %d texts of %s", r->percentile,
                     r->calib_samples, r->calib);
        else
            snprintf(note, sizeof note, "%s over the first %d texts of %s", r->calib_method, r->calib_samples,
                     r->calib);
        fprintf(stderr, "calibrated %d Linear inputs (%s) in %.1f s\n", n_lin, note, qb_now() - t0);
        plan->act_scale = scales;
        plan->calibration = note;
    }
    if ((st = qb_cli_write_model_dir(m, model_dir, out))) goto done;
    if (strcmp(r->scheme, "hybrid") == 0) st = qb_cli_quantize_hybrid(e, r, plan, eo, out);
    else if (!(st = qb_path_join(path, sizeof path, out, "model.safetensors"))) st = qb_quant_save(m, plan, path);
done:
    /* The plan pointed into this call's buffers. */
    plan->act_scale = NULL;
    plan->calibration = NULL;
    free(scales);
    return st;
}

int qb_cmd_quantize(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *v = NULL;
    qb_cli_quant_request r;
    qb_cli_quant_request_default(&r);
    long x;
    qb_engine_options eo;
    qb_engine_default_options(&eo);
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (qb_cli_opt(argc, argv, &i, "--model", &model, &bad) ||
            qb_cli_opt(argc, argv, &i, "--scheme", &r.scheme, &bad) ||
            qb_cli_opt(argc, argv, &i, "--out", &out, &bad) || qb_cli_opt(argc, argv, &i, "--calib", &r.calib, &bad) ||
            qb_cli_opt(argc, argv, &i, "--act", &r.act, &bad) ||
            qb_cli_opt(argc, argv, &i, "--calib-method", &r.calib_method, &bad) ||
            qb_cli_opt(argc, argv, &i, "--text-column", &r.text_column, &bad) ||
            qb_cli_opt(argc, argv, &i, "--valid", &r.valid, &bad) ||
            qb_cli_engine_option("quantize", argc, argv, &i, &eo, &bad))
            continue;
        if (qb_cli_opt(argc, argv, &i, "--group-size", &v, &bad)) {
            if (v && qb_cli_int("quantize", "--group-size", v, 2, 1 << 16, &x)) r.group = (int)x;
            else bad = 1;
        } else if (qb_cli_opt(argc, argv, &i, "--calib-samples", &v, &bad)) {
            if (v && qb_cli_int("quantize", "--calib-samples", v, 1, 1 << 24, &x)) r.calib_samples = (int)x;
            else bad = 1;
        } else if (qb_cli_opt(argc, argv, &i, "--valid-samples", &v, &bad)) {
            if (v && qb_cli_int("quantize", "--valid-samples", v, 1, 1 << 24, &x)) r.valid_samples = (int)x;
            else bad = 1;
        } else if (qb_cli_opt(argc, argv, &i, "--budget-mb", &v, &bad)) {
            if (v && !(qb_cli_parse_real(v, &r.budget_mb) && r.budget_mb > 0 && r.budget_mb < 1e9))
                bad = qb_cli_fail("quantize", "--budget-mb must be a positive number of megabytes, got \"%s\"", v);
        } else if (qb_cli_opt(argc, argv, &i, "--max-drop", &v, &bad)) {
            if (v && !(qb_cli_parse_real(v, &r.max_drop) && r.max_drop >= 0 && r.max_drop <= 100))
                bad = qb_cli_fail("quantize", "--max-drop must be points of F1 in [0, 100], got \"%s\"", v);
        } else if (qb_cli_opt(argc, argv, &i, "--percentile", &v, &bad)) {
            if (v && !(qb_cli_parse_real(v, &r.percentile) && r.percentile > 0 && r.percentile <= 100))
                bad = qb_cli_fail("quantize", "--percentile must be a number in (0, 100], got \"%s\"", v);
        } else {
            bad = qb_cli_fail("quantize", "unknown option \"%s\" (see qbert quantize --help)", argv[i]);
        }
    }
    if (!bad && (!model || !r.scheme || !out))
        bad = qb_cli_fail("quantize", "--model, --scheme and --out are required (see qbert quantize --help)");
    /* Calibration, validation and the low-bit candidates run on the CPU backend (the
     * CUDA one does not take quantized Linears yet). */
    if (!bad && (strcmp(eo.device, "cpu") != 0 || eo.math != QB_MATH_FP32))
        bad = qb_cli_fail("quantize", "quantize runs on the CPU in FP32: --device and --math are for eval and predict");
    qb_qplan plan;
    if (!bad && qb_cli_quant_check(&r, &plan)) bad = qb_cli_fail("quantize", "%s", qb_error());
    if (bad) return 2;

    qb_engine *e;
    if (qb_engine_open(model, &eo, &e)) return qb_cli_fail("quantize", "%s", qb_error());
    const qb_model *m = qb_engine_model(e);
    char path[4096];
    int rc = 0;
    if (qb_cli_quantize(e, model, &r, &plan, &eo, out) || qb_path_join(path, sizeof path, out, "model.safetensors")) {
        rc = qb_cli_fail("quantize", "%s", qb_error());
    } else {
        const double fp32 = qb_model_param_count(m) * 4 / 1e6, mb = qb_file_size(path) / 1e6;
        printf("wrote %s: %s, %.1f MB = %.1f%% of the %.1f MB of FP32 weights\n", path, plan.scheme.name, mb,
               100.0 * mb / fp32, fp32);
    }
    qb_engine_close(e);
    return rc;
}
