/* Training parity with Hugging Face transformers (fixtures from
 * tests/golden/make_golden.py): the loss and the gradient of every parameter of the
 * tiny BertForSequenceClassification on a padded batch, on every FP32 GEMM path;
 * the weights after six AdamW steps with warm-up, decay, clipping and gradient
 * accumulation done as Trainer does them. Then properties HF cannot check for us:
 * padding to a fixed length gives the same loss, dropout masks are reproducible and
 * have the right rate, and with dropout on the gradient matches finite differences. */
#include "check.h"

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/io.h"
#include "qbert/model.h"
#include "qbert/train.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_TOL 1e-4   /* relative L2 error per tensor (the bound) */

static const qb_tensor *fix(const qb_weights *w, const char *name)
{
    int i = qb_weights_find(w, name);
    if (i < 0) {
        fprintf(stderr, "fixture has no tensor %s\n", name);
        exit(1);
    }
    return &w->tensors[i];
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* The attention key bias has an exactly zero gradient in exact arithmetic: it adds
 * q . b_k to every score of a row, and softmax ignores a per-row constant. HF's
 * fixture and ours both hold rounding noise there (~1e-9), so those tensors are
 * recognised from the fixture (max |grad| below 1e-6 of the largest gradient) and
 * checked for being zero to that level instead of by relative error. */
static double grad_scale_of(const qb_weights *tr)
{
    double m = 0;
    for (int i = 0; i < tr->count; i++)
        if (strncmp(tr->names[i], "grad.", 5) == 0)
            m = fmax(m, max_abs(tr->tensors[i].data, (size_t)qb_tensor_numel(&tr->tensors[i])));
    return m;
}

static bool zero_grad_param(const qb_weights *tr, const char *param)
{
    char name[160];
    snprintf(name, sizeof name, "grad.%s", param);
    const qb_tensor *g = fix(tr, name);
    return max_abs(g->data, (size_t)qb_tensor_numel(g)) <= 1e-6 * grad_scale_of(tr);
}

static qb_model load_tiny(void)
{
    qb_model m;
    qb_status st = qb_model_load("golden/tiny", 0, &m);
    if (st) {
        fprintf(stderr, "loading golden/tiny: %s\n", qb_error());
        exit(1);
    }
    return m;
}

static qb_batch ref_batch(const qb_weights *fwd, const qb_weights *tr)
{
    const qb_tensor *ids = fix(fwd, "input_ids");
    return (qb_batch){fix(fwd, "input_ids")->data, fix(fwd, "token_type_ids")->data,
                      fix(fwd, "attention_mask")->data, fix(tr, "labels")->data,
                      (int)ids->shape[0], (int)ids->shape[1]};
}

static void test_gradients(const qb_weights *fwd, const qb_weights *tr)
{
    const qb_backend *be = qb_backend_cpu();
    qb_model m = load_tiny();
    qb_batch b = ref_batch(fwd, tr);
    const float ref_loss = ((float *)fix(tr, "loss")->data)[0];
    qb_isa isas[] = {QB_ISA_SCALAR, QB_ISA_AVX2, QB_ISA_AVX512};
    for (int k = 0; k < 3; k++) {
        if (!qb_cpu_isa_available(isas[k])) continue;
        qb_cpu_set_isa(isas[k]);
        qb_model g;
        qb_activations *a;
        CHECK(qb_model_zeros_like(&m, &g) == QB_OK);
        CHECK(qb_activations_new(&m, be, true, &a) == QB_OK);
        float loss = 0, logits[4 * 3];
        qb_status st = qb_model_forward_backward(&m, a, &b, NULL, 1.0f / b.B, &g, &loss, logits);
        CHECKF(st == QB_OK, "%s", qb_error());
        CHECKF(fabsf(loss - ref_loss) <= 1e-5f * fabsf(ref_loss), "%s loss %.7g vs HF %.7g",
               qb_isa_name(isas[k]), loss, ref_loss);
        const float *ref_logits = fix(fwd, "logits")->data;
        CHECK(rel_l2(logits, ref_logits, 12) <= 1e-5);
        double worst = 0;
        const char *worst_name = "";
        int zero_tensors = 0;
        for (int i = 0; i < g.weights.count; i++) {
            char name[160];
            snprintf(name, sizeof name, "grad.%s", g.weights.names[i]);
            const qb_tensor *ref = fix(tr, name);
            const qb_tensor *t = &g.weights.tensors[i];
            CHECK(qb_tensor_numel(ref) == qb_tensor_numel(t));
            if (zero_grad_param(tr, g.weights.names[i])) {
                double z = max_abs(t->data, (size_t)qb_tensor_numel(t));
                CHECKF(z <= 1e-6 * grad_scale_of(tr), "%s %s: max |grad| %.3g, expected ~0",
                       qb_isa_name(isas[k]), name, z);
                zero_tensors++;
                continue;
            }
            double e = rel_l2(t->data, ref->data, (size_t)qb_tensor_numel(t));
            CHECKF(e <= GRAD_TOL, "%s %s: rel err %.3g", qb_isa_name(isas[k]), name, e);
            if (e > worst) worst = e, worst_name = g.weights.names[i];
        }
        CHECK(g.weights.count == 16 * m.cfg.num_layers + 9);
        CHECK(zero_tensors == m.cfg.num_layers);  /* exactly the key biases */
        printf("gradients %-6s: %d tensors, worst relative L2 error %.3g (%s); %d key biases ~0\n",
               qb_isa_name(isas[k]), g.weights.count, worst, worst_name, zero_tensors);
        /* A second pass ADDS: every gradient doubles. */
        float *first = malloc(sizeof(float) * (size_t)qb_tensor_numel(&g.weights.tensors[0]));
        memcpy(first, g.weights.tensors[0].data, sizeof(float) * (size_t)qb_tensor_numel(&g.weights.tensors[0]));
        CHECK(qb_model_forward_backward(&m, a, &b, NULL, 1.0f / b.B, &g, &loss, NULL) == QB_OK);
        double e2 = 0;
        for (int64_t i = 0; i < qb_tensor_numel(&g.weights.tensors[0]); i++)
            e2 = fmax(e2, fabs(((float *)g.weights.tensors[0].data)[i] - 2 * first[i]));
        CHECKF(e2 <= 1e-6, "accumulation: max diff %.3g", e2);
        free(first);
        qb_activations_free(a);
        qb_model_free(&g);
    }
    qb_cpu_set_isa(qb_cpu_isa_resolve(NULL));
    qb_model_free(&m);
}

static void zero_grads(qb_model *g)
{
    for (int k = 0; k < g->weights.count; k++)
        memset(g->weights.tensors[k].data, 0, qb_tensor_nbytes(&g->weights.tensors[k]));
}

static void test_adamw(const qb_weights *tr)
{
    const qb_backend *be = qb_backend_cpu();
    qb_model m = load_tiny(), g;
    const float *hp = fix(tr, "adamw.hparams")->data;  /* make_golden.py ADAM, in order */
    qb_optim_config oc = {.lr = hp[0], .weight_decay = hp[1], .warmup_steps = (int64_t)hp[2],
                          .total_steps = (int64_t)hp[3], .max_grad_norm = hp[5],
                          .beta1 = hp[6], .beta2 = hp[7], .eps = hp[8]};
    const int accum = (int)hp[4];
    const float *ref_lr = fix(tr, "adamw.lr")->data, *ref_norm = fix(tr, "adamw.grad_norm")->data;
    qb_adamw opt;
    qb_activations *a;
    CHECK(qb_model_zeros_like(&m, &g) == QB_OK);
    CHECK(qb_adamw_init(&opt, &m, &oc) == QB_OK);
    CHECK(qb_activations_new(&m, be, true, &a) == QB_OK);
    int clipped = 0;
    for (int i = 0; i < oc.total_steps * accum; i++) {
        char n[4][64];
        const char *keys[] = {"input_ids", "token_type_ids", "attention_mask", "labels"};
        for (int k = 0; k < 4; k++) snprintf(n[k], sizeof n[k], "adamw.%s.%d", keys[k], i);
        const qb_tensor *ids = fix(tr, n[0]);
        qb_batch b = {ids->data, fix(tr, n[1])->data, fix(tr, n[2])->data, fix(tr, n[3])->data,
                      (int)ids->shape[0], (int)ids->shape[1]};
        float loss;
        qb_status st = qb_model_forward_backward(&m, a, &b, NULL, 1.0f / ((float)b.B * accum), &g, &loss, NULL);
        CHECKF(st == QB_OK, "micro-batch %d: %s", i, qb_error());
        if ((i + 1) % accum) continue;
        double norm;
        float lr;
        const int s = (i + 1) / accum - 1;
        CHECK(qb_adamw_step(&opt, be, &m, &g, &norm, &lr) == QB_OK);
        CHECKF(fabs(lr - ref_lr[s]) <= 1e-9, "step %d lr %.9g vs HF %.9g", s, lr, ref_lr[s]);
        CHECKF(fabs(norm - ref_norm[s]) <= 1e-4 * ref_norm[s], "step %d grad norm %.7g vs HF %.7g", s,
               norm, ref_norm[s]);
        clipped += norm > oc.max_grad_norm;
        zero_grads(&g);
    }
    CHECK(clipped > 0 && clipped < oc.total_steps);  /* both branches of clipping ran */
    double worst = 0, moved = 0;
    qb_model init = load_tiny();
    for (int k = 0; k < m.weights.count; k++) {
        char name[160];
        snprintf(name, sizeof name, "adamw.%s", m.weights.names[k]);
        const qb_tensor *ref = fix(tr, name);
        const size_t n = (size_t)qb_tensor_numel(ref);
        if (zero_grad_param(tr, m.weights.names[k])) {
            /* Adam turns the rounding noise of a zero gradient into lr-sized steps
             * (m / sqrt(v) is ~1 whatever the scale), on both sides, independently:
             * only the bound of Adam's step applies, |delta| <= ~3 lr per step. */
            double lr_sum = 0, diff = 0;
            for (int s = 0; s < oc.total_steps; s++) lr_sum += ref_lr[s];
            for (size_t i = 0; i < n; i++)
                diff = fmax(diff, fabs(((float *)m.weights.tensors[k].data)[i] - ((float *)ref->data)[i]));
            CHECKF(diff <= 3 * lr_sum, "%s: max diff %.3g > 3 * sum(lr)", m.weights.names[k], diff);
            continue;
        }
        double e = rel_l2(m.weights.tensors[k].data, ref->data, n);
        CHECKF(e <= GRAD_TOL, "%s after %lld AdamW steps: rel err %.3g", m.weights.names[k],
               (long long)oc.total_steps, e);
        worst = fmax(worst, e);
        /* The fixture is sensitive: training moved every tensor far beyond the bound. */
        moved = fmax(moved, rel_l2(init.weights.tensors[k].data, ref->data, n));
        CHECKF(rel_l2(init.weights.tensors[k].data, ref->data, n) > 20 * GRAD_TOL,
               "%s barely moved", m.weights.names[k]);
    }
    printf("adamw: %lld steps, worst relative L2 error %.3g (largest move %.3g)\n",
           (long long)oc.total_steps, worst, moved);
    qb_model_free(&init);
    qb_activations_free(a);
    qb_adamw_free(&opt);
    qb_model_free(&g);
    qb_model_free(&m);
}

/* One forward_backward of the mean loss into freshly zeroed grads. */
static qb_status step(const qb_model *m, qb_activations *a, const qb_batch *b,
                      const qb_dropout_plan *drop, qb_model *g, float *loss, float *logits)
{
    zero_grads(g);
    return qb_model_forward_backward(m, a, b, drop, 1.0f / b->B, g, loss, logits);
}

/* Padding to a fixed length (T = 16 -> 40 with [PAD] columns, mask 0) leaves the
 * logits, the loss and every gradient unchanged: the trainer's fixed-length mode. */
static void test_padding(const qb_weights *fwd, const qb_weights *tr)
{
    const qb_backend *be = qb_backend_cpu();
    qb_model m = load_tiny(), g0, g1;
    const qb_batch b = ref_batch(fwd, tr);
    const int TP = 40, B = b.B, K = m.cfg.num_labels;
    CHECK(b.T == 16 && TP <= m.cfg.max_position && m.cfg.pad_token_id == 0);
    int32_t *ids = malloc(sizeof(int32_t) * 3 * (size_t)B * TP), *types = ids + B * TP,
            *mask = types + B * TP;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < TP; t++) {
            const bool in = t < b.T;
            ids[r * TP + t] = in ? b.ids[r * b.T + t] : m.cfg.pad_token_id;
            types[r * TP + t] = in ? b.types[r * b.T + t] : 0;
            mask[r * TP + t] = in ? b.mask[r * b.T + t] : 0;
        }
    const qb_batch bp = {ids, types, mask, b.labels, B, TP};
    qb_activations *a;
    CHECK(qb_model_zeros_like(&m, &g0) == QB_OK && qb_model_zeros_like(&m, &g1) == QB_OK);
    CHECK(qb_activations_new(&m, be, true, &a) == QB_OK);
    float loss0 = 0, loss1 = 0, *logits0 = malloc(sizeof(float) * 2 * (size_t)B * K), *logits1 = logits0 + B * K;
    CHECKF(step(&m, a, &b, NULL, &g0, &loss0, logits0) == QB_OK, "%s", qb_error());
    CHECKF(step(&m, a, &bp, NULL, &g1, &loss1, logits1) == QB_OK, "%s", qb_error());
    CHECKF(fabsf(loss1 - loss0) <= 1e-6f * fabsf(loss0), "padded loss %.9g vs %.9g", loss1, loss0);
    const double el = rel_l2(logits1, logits0, (size_t)B * K);
    CHECKF(el <= 1e-6, "padded logits: rel err %.3g", el);
    double worst = 0;
    const char *worst_name = "";
    for (int k = 0; k < g0.weights.count; k++) {
        const qb_tensor *t0 = &g0.weights.tensors[k], *t1 = &g1.weights.tensors[k];
        const size_t n = (size_t)qb_tensor_numel(t0);
        if (zero_grad_param(tr, g0.weights.names[k])) {  /* key biases: noise both sides */
            CHECK(max_abs(t1->data, n) <= 1e-6 * grad_scale_of(tr));
            continue;
        }
        const double e = rel_l2(t1->data, t0->data, n);
        CHECKF(e <= 1e-5, "padded %s: rel err %.3g", g0.weights.names[k], e);
        if (e > worst) worst = e, worst_name = g0.weights.names[k];
    }
    printf("padding 16 -> %d: loss %.9g vs %.9g, logits rel err %.3g, worst gradient rel err %.3g (%s)\n",
           TP, loss1, loss0, el, worst, worst > 0 ? worst_name : "all bit-identical");
    free(ids);
    free(logits0);
    qb_activations_free(a);
    qb_model_free(&g0);
    qb_model_free(&g1);
    qb_model_free(&m);
}

static size_t count_diff(const float *x, const float *y, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += x[i] != y[i];
    return c;
}

static void fill_ones(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
}

/* Dropout masks: the rate and scale are right, a mask is a pure function of
 * (seed, stream, element index) as backend.h defines it (split buffers, any thread
 * count and the backward recompute all draw the same one), and p = 0 is a no-op. */
static void test_dropout_masks(void)
{
    const qb_backend *be = qb_backend_cpu();
    const size_t n = 1000003;  /* not a multiple of 4 nor of the 4096 chunk */
    const float p = 0.1f, scale = 1.0f / (1.0f - p);
    const qb_dropout d = {p, 7, 3, NULL};
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    fill_ones(x, n);
    be->dropout(NULL, x, n, &d, QB_F32);
    size_t kept = 0, other = 0;
    for (size_t i = 0; i < n; i++) kept += x[i] == scale, other += x[i] != scale && x[i] != 0.0f;
    const double frac = (double)kept / n;
    CHECKF(fabs(frac - (1.0 - p)) <= 0.003, "kept fraction %.5f", frac);
    CHECKF(other == 0, "%zu elements neither 0 nor 1 / (1 - p)", other);
    /* The documented formula, element by element on a sample (what a GPU reproduces). */
    size_t wrong = 0;
    for (size_t i = 0; i < n; i += 997) {
        uint32_t r[4];
        qb_philox4x32(d.seed, i / 4, d.stream, r);
        const bool keep = (float)(r[i % 4] >> 8) * (1.0f / 16777216.0f) >= p;
        wrong += x[i] != (keep ? scale : 0.0f);
    }
    CHECKF(wrong == 0, "%zu sampled elements differ from Philox(seed, i / 4, stream)[i %% 4]", wrong);
    /* Same (seed, stream): bit-identical. */
    fill_ones(y, n);
    be->dropout(NULL, y, n, &d, QB_F32);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0);
    /* Another stream, another seed: another mask (about 2 p (1 - p) = 18% differ). */
    const qb_dropout other_stream = {p, 7, 4, NULL}, other_seed = {p, 8, 3, NULL};
    fill_ones(y, n);
    be->dropout(NULL, y, n, &other_stream, QB_F32);
    const size_t ds = count_diff(x, y, n);
    fill_ones(y, n);
    be->dropout(NULL, y, n, &other_seed, QB_F32);
    const size_t dk = count_diff(x, y, n);
    CHECKF(ds > n / 8 && dk > n / 8, "other stream: %zu differ, other seed: %zu differ", ds, dk);
    /* The stream as base + an offset read from memory (a recorded step's): the same mask. */
    const uint64_t two = 2;
    const qb_dropout in_memory = {p, 7, 1, &two};
    fill_ones(y, n);
    be->dropout(NULL, y, n, &in_memory, QB_F32);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0);
    /* Split at offsets that cut Philox blocks and chunks: the same mask. */
    const size_t cut[] = {0, 1, 12345, 600001, 999999, n};
    fill_ones(y, n);
    for (int c = 0; c + 1 < (int)(sizeof cut / sizeof cut[0]); c++)
        qb_cpu_dropout_at(y + cut[c], cut[c + 1] - cut[c], cut[c], &d);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0);
    /* Thread count: 1 vs 2 threads. */
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    fill_ones(y, n);
    be->dropout(NULL, y, n, &d, QB_F32);
    const bool same1 = memcmp(x, y, sizeof(float) * n) == 0;
    omp_set_num_threads(2);
    fill_ones(y, n);
    be->dropout(NULL, y, n, &d, QB_F32);
    const bool same2 = memcmp(x, y, sizeof(float) * n) == 0;
    omp_set_num_threads(threads);
    CHECK(same1 && same2);
    /* p = 0 and a NULL plan leave arbitrary data untouched. */
    for (size_t i = 0; i < n; i++) x[i] = y[i] = (float)i * 0.25f - 3.0f;
    const qb_dropout off = {0.0f, 7, 3, NULL};
    be->dropout(NULL, y, n, &off, QB_F32);
    be->dropout(NULL, y, n, NULL, QB_F32);
    qb_cpu_dropout_at(y, n, 5, &off);
    qb_cpu_dropout_at(y, n, 5, NULL);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0);
    printf("dropout p=%.1f over %zu: kept fraction %.5f, kept value %.9g; other stream/seed change "
           "%.1f%%/%.1f%%\n", p, n, frac, scale, 100.0 * ds / n, 100.0 * dk / n);
    free(x);
    free(y);
}

/* Parameters perturbed along a direction: w = w0 + s * dir, over every tensor. */
typedef struct {
    qb_model *m;
    float *w0, *dir;  /* (total), concatenated in m->weights order */
    size_t total;
} fd_harness;

static void fd_move(fd_harness *h, float s)
{
    size_t off = 0;
    for (int k = 0; k < h->m->weights.count; k++) {
        const qb_tensor *t = &h->m->weights.tensors[k];
        float *w = t->data;
        for (int64_t i = 0; i < qb_tensor_numel(t); i++, off++) w[i] = h->w0[off] + s * h->dir[off];
    }
}

/* (L(w + eps d) - L(w - eps d)) / (2 eps) under `drop`; scratch takes the gradients. */
static double fd_slope(fd_harness *h, qb_activations *a, const qb_batch *b, const qb_dropout_plan *drop,
                       qb_model *scratch, float eps)
{
    float lp = 0, lm = 0;
    fd_move(h, eps);
    CHECK(step(h->m, a, b, drop, scratch, &lp, NULL) == QB_OK);
    fd_move(h, -eps);
    CHECK(step(h->m, a, b, drop, scratch, &lm, NULL) == QB_OK);
    fd_move(h, 0.0f);
    return ((double)lp - lm) / (2.0 * eps);
}

/* g . dir, g given tensor by tensor in the order of m->weights (names[k] may map
 * into a fixture: then prefix is prepended and the tensor found there). */
static double dot_dir(const fd_harness *h, const qb_weights *g, const char *prefix)
{
    double s = 0;
    size_t off = 0;
    for (int k = 0; k < h->m->weights.count; k++) {
        const int64_t n = qb_tensor_numel(&h->m->weights.tensors[k]);
        const float *gk;
        if (prefix) {
            char name[160];
            snprintf(name, sizeof name, "%s%s", prefix, h->m->weights.names[k]);
            gk = fix(g, name)->data;
        } else {
            gk = g->tensors[k].data;
        }
        for (int64_t i = 0; i < n; i++, off++) s += (double)gk[i] * h->dir[off];
    }
    return s;
}

/* Dropout inside the model: a plan gives bit-identical steps, another stream another
 * loss, and the gradient with dropout on is the derivative of the loss with the same
 * masks (central finite differences along random directions); the same harness with
 * dropout off agrees with HF's golden gradient, and with the wrong masks it fails. */
static void test_dropout_model(const qb_weights *fwd, const qb_weights *tr)
{
    const qb_backend *be = qb_backend_cpu();
    qb_model m = load_tiny(), g, g2, scratch;
    const qb_batch b = ref_batch(fwd, tr);
    const qb_dropout_plan plan = {m.cfg.hidden_dropout, m.cfg.attention_dropout, 7, 0, NULL};
    CHECK(plan.hidden == 0.1f && plan.attention == 0.1f);
    qb_activations *a;
    CHECK(qb_model_zeros_like(&m, &g) == QB_OK && qb_model_zeros_like(&m, &g2) == QB_OK &&
          qb_model_zeros_like(&m, &scratch) == QB_OK);
    CHECK(qb_activations_new(&m, be, true, &a) == QB_OK);

    /* (a) The same plan twice: bit-identical loss and gradients. */
    float loss = 0, loss2 = 0, loss_off = 0, loss_next = 0, loss_seed = 0;
    CHECKF(step(&m, a, &b, &plan, &g, &loss, NULL) == QB_OK, "%s", qb_error());
    CHECKF(step(&m, a, &b, &plan, &g2, &loss2, NULL) == QB_OK, "%s", qb_error());
    CHECK(memcmp(&loss, &loss2, sizeof loss) == 0);
    int same = 0;
    for (int k = 0; k < g.weights.count; k++)
        same += memcmp(g.weights.tensors[k].data, g2.weights.tensors[k].data,
                       qb_tensor_nbytes(&g.weights.tensors[k])) == 0;
    CHECKF(same == g.weights.count, "%d of %d gradient tensors differ between identical steps",
           g.weights.count - same, g.weights.count);
    /* (b) Another stream (the next step's, disjoint) or seed: another loss; no plan: another. */
    const qb_dropout_plan next = {plan.hidden, plan.attention, plan.seed, plan.stream + qb_dropout_sites(&m.cfg), NULL};
    const qb_dropout_plan seed8 = {plan.hidden, plan.attention, 8, plan.stream, NULL};
    CHECK(step(&m, a, &b, &next, &scratch, &loss_next, NULL) == QB_OK);
    CHECK(step(&m, a, &b, &seed8, &scratch, &loss_seed, NULL) == QB_OK);
    CHECK(step(&m, a, &b, NULL, &g2, &loss_off, NULL) == QB_OK);  /* g2: dropout-off gradient */
    CHECKF(fabsf(loss_next - loss) > 1e-4f && fabsf(loss_seed - loss) > 1e-4f && fabsf(loss_off - loss) > 1e-4f,
           "loss %.7g: next stream %.7g, seed 8 %.7g, no dropout %.7g", loss, loss_next, loss_seed, loss_off);
    printf("dropout: loss %.7g (plan seed 7 stream 0, twice identical), %.7g (stream %llu), %.7g (seed 8), "
           "%.7g (off)\n", loss, loss_next, (unsigned long long)next.stream, loss_seed, loss_off);
    /* With 2 threads or 1: the same masks (results equal to rounding at most). */
    const int threads = omp_get_max_threads();
    float loss_t1 = 0, loss_t2 = 0;
    omp_set_num_threads(1);
    CHECK(step(&m, a, &b, &plan, &scratch, &loss_t1, NULL) == QB_OK);
    omp_set_num_threads(2);
    CHECK(step(&m, a, &b, &plan, &scratch, &loss_t2, NULL) == QB_OK);
    omp_set_num_threads(threads);
    CHECKF(fabsf(loss_t1 - loss) <= 1e-6f * loss && fabsf(loss_t2 - loss) <= 1e-6f * loss,
           "loss with 1 / 2 threads %.9g / %.9g vs %.9g", loss_t1, loss_t2, loss);

    /* (c) Finite differences along 9 directions: 3 over all parameters at once, then
     * one per chosen tensor; elements N(0, 1), eps 1e-3. Float32 rounding of the loss
     * (~1e-7 of ~1.1) costs ~1e-4 of a slope of ~1e-1 and the O(eps^2) truncation is
     * smaller still, so 1e-2 leaves a wide margin yet is 10x below the 1 / (1 - p) - 1
     * = 11% a lost dropout scale in the backward would cost, and far below the error
     * of the wrong masks (checked). */
    fd_harness h = {&m, NULL, NULL, 0};
    for (int k = 0; k < m.weights.count; k++) h.total += (size_t)qb_tensor_numel(&m.weights.tensors[k]);
    h.w0 = malloc(sizeof(float) * h.total);
    h.dir = malloc(sizeof(float) * h.total);
    size_t off = 0;
    for (int k = 0; k < m.weights.count; k++) {
        const qb_tensor *t = &m.weights.tensors[k];
        memcpy(h.w0 + off, t->data, qb_tensor_nbytes(t));
        off += (size_t)qb_tensor_numel(t);
    }
    const char *only[] = {NULL, NULL, NULL, "bert.embeddings.word_embeddings.weight",
                          "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                          "bert.encoder.layer.1.attention.self.query.weight",
                          "bert.encoder.layer.0.intermediate.dense.weight",
                          "bert.pooler.dense.weight", "classifier.weight"};
    const int ndir = (int)(sizeof only / sizeof only[0]);  /* <= 16 */
    const float eps = 1e-3f;
    double worst_on = 0, worst_off = 0, worst_hf = 0, wrong[16];
    int caught = 0;  /* directions along which the wrong masks fail the 1e-2 bound */
    qb_rng rng;
    qb_rng_init(&rng, 1234);
    for (int r = 0; r < ndir; r++) {
        const int sel = only[r] ? qb_weights_find(&m.weights, only[r]) : -1;
        CHECKF(!only[r] || sel >= 0, "no tensor %s", only[r]);
        off = 0;
        for (int k = 0; k < m.weights.count; k++) {
            const int64_t n = qb_tensor_numel(&m.weights.tensors[k]);
            for (int64_t i = 0; i < n; i++, off++)
                h.dir[off] = !only[r] || k == sel ? qb_rng_normal(&rng, 0.0f, 1.0f) : 0.0f;
        }
        const double gd = dot_dir(&h, &g.weights, NULL), fd = fd_slope(&h, a, &b, &plan, &scratch, eps);
        const double fd_wrong = fd_slope(&h, a, &b, &next, &scratch, eps);
        const double gd_off = dot_dir(&h, &g2.weights, NULL), gd_hf = dot_dir(&h, tr, "grad.");
        const double fd_off = fd_slope(&h, a, &b, NULL, &scratch, eps);
        const double e_on = fabs(fd - gd) / fabs(gd), e_wrong = fabs(fd_wrong - gd) / fabs(gd);
        const double e_off = fabs(fd_off - gd_off) / fabs(gd_off), e_hf = fabs(fd_off - gd_hf) / fabs(gd_hf);
        CHECKF(e_on < 1e-2, "direction %d (%s): dropout on, g.d %.7g vs FD %.7g (rel %.3g)", r,
               only[r] ? only[r] : "all", gd, fd, e_on);
        CHECKF(e_off < 1e-2 && e_hf < 1e-2, "direction %d (%s): dropout off, g.d %.7g, HF g.d %.7g vs "
               "FD %.7g", r, only[r] ? only[r] : "all", gd_off, gd_hf, fd_off);
        printf("  FD %-55s g.d %+.6f: dropout rel err %.2e (wrong masks %.2e), off %.2e (HF %.2e)\n",
               only[r] ? only[r] : "all parameters", gd, e_on, e_wrong, e_off, e_hf);
        worst_on = fmax(worst_on, e_on), worst_off = fmax(worst_off, e_off);
        worst_hf = fmax(worst_hf, e_hf), wrong[r] = e_wrong, caught += e_wrong >= 1e-2;
    }
    /* The bound can fail: the next step's masks miss it along (nearly) every direction
     * (one may agree by chance: a single tensor's slope can move little). */
    CHECKF(caught >= ndir - 1, "the wrong masks pass the FD check along %d of %d directions",
           ndir - caught, ndir);
    double sorted[16];
    memcpy(sorted, wrong, sizeof(double) * (size_t)ndir);
    for (int i = 1; i < ndir; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            const double t = sorted[j];
            sorted[j] = sorted[j - 1], sorted[j - 1] = t;
        }
    printf("finite differences, %d directions, eps %g: worst rel err %.3g with dropout, %.3g without "
           "(%.3g vs HF); wrong masks: median rel err %.3g, %d of %d directions caught\n", ndir, eps,
           worst_on, worst_off, worst_hf, sorted[ndir / 2], caught, ndir);
    free(h.w0);
    free(h.dir);
    qb_activations_free(a);
    qb_model_free(&scratch);
    qb_model_free(&g2);
    qb_model_free(&g);
    qb_model_free(&m);
}

/* Bad input fails before any kernel runs: a label outside [0, K) is QB_EINVAL naming
 * the label and its row, inference activations are refused; grads stay untouched. */
static void test_errors(const qb_weights *fwd, const qb_weights *tr)
{
    const qb_backend *be = qb_backend_cpu();
    qb_model m = load_tiny(), g;
    qb_batch b = ref_batch(fwd, tr);
    int32_t labels[4];
    CHECK(b.B == 4);
    memcpy(labels, b.labels, sizeof labels);
    b.labels = labels;
    qb_activations *a, *inf;
    CHECK(qb_model_zeros_like(&m, &g) == QB_OK);
    CHECK(qb_activations_new(&m, be, true, &a) == QB_OK);
    CHECK(qb_activations_new(&m, be, false, &inf) == QB_OK);
    float loss = 0;
    labels[2] = m.cfg.num_labels;
    qb_status st = qb_model_forward_backward(&m, a, &b, NULL, 0.25f, &g, &loss, NULL);
    CHECKF(st == QB_EINVAL && strstr(qb_error(), "label 3") && strstr(qb_error(), "row 2"), "%d: %s", st,
           qb_error());
    memcpy(labels, fix(tr, "labels")->data, sizeof labels);
    labels[1] = -1;
    st = qb_model_forward_backward(&m, a, &b, NULL, 0.25f, &g, &loss, NULL);
    CHECKF(st == QB_EINVAL && strstr(qb_error(), "label -1") && strstr(qb_error(), "row 1"), "%d: %s", st,
           qb_error());
    memcpy(labels, fix(tr, "labels")->data, sizeof labels);
    st = qb_model_forward_backward(&m, inf, &b, NULL, 0.25f, &g, &loss, NULL);
    CHECKF(st == QB_EINVAL && strstr(qb_error(), "training"), "%d: %s", st, qb_error());
    int touched = 0;
    for (int k = 0; k < g.weights.count; k++)
        touched += max_abs(g.weights.tensors[k].data, (size_t)qb_tensor_numel(&g.weights.tensors[k])) != 0;
    CHECKF(touched == 0, "%d gradient tensors written by failed calls", touched);
    /* The same activations still work afterwards. */
    CHECK(qb_model_forward_backward(&m, a, &b, NULL, 0.25f, &g, &loss, NULL) == QB_OK);
    printf("errors: bad label and inference activations rejected; then loss %.7g\n", loss);
    qb_activations_free(inf);
    qb_activations_free(a);
    qb_model_free(&g);
    qb_model_free(&m);
}

int main(void)
{
    qb_weights fwd = {0}, tr = {0};
    if (qb_safetensors_load("golden/tiny_forward.safetensors", true, &fwd) ||
        qb_safetensors_load("golden/tiny_train.safetensors", true, &tr)) {
        fprintf(stderr, "%s\n", qb_error());
        return 1;
    }
    test_gradients(&fwd, &tr);
    test_adamw(&tr);
    test_padding(&fwd, &tr);
    test_dropout_masks();
    test_dropout_model(&fwd, &tr);
    test_errors(&fwd, &tr);
    qb_weights_free(&fwd);
    qb_weights_free(&tr);
    return check_summary("test_train");
}
