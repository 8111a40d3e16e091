/* LIME's local surrogate (LimeBase.explain_instance_with_data with feature selection
 * 'auto'; include/qbert/explain.h): weighted ridge regressions solved exactly, as
 * sklearn's Ridge with sample_weight does (weighted centring, Cholesky). */
#include "qbert/explain.h"
#include "explain/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qb_lime_distances(const double *data, int n, int d, double *distances)
{
    double n0 = 0;
    for (int j = 0; j < d; j++) n0 += data[j] * data[j];
    for (int i = 0; i < n; i++) {
        double dot = 0, ni = 0;
        for (int j = 0; j < d; j++) dot += data[(size_t)i * d + j] * data[j], ni += data[(size_t)i * d + j] * data[(size_t)i * d + j];
        /* sklearn: 1 - cosine similarity, clipped to [0, 2]; a zero row has similarity 0 */
        const double sim = n0 > 0 && ni > 0 ? dot / (sqrt(n0) * sqrt(ni)) : 0.0;
        distances[i] = fmin(fmax(1.0 - sim, 0.0), 2.0) * 100.0;
    }
}

/* Solves A x = b in place (A (m, m) symmetric positive definite, b -> x) by Cholesky. */
static bool cholesky_solve(double *A, double *b, int m)
{
    for (int j = 0; j < m; j++) {
        double s = A[(size_t)j * m + j];
        for (int k = 0; k < j; k++) s -= A[(size_t)j * m + k] * A[(size_t)j * m + k];
        if (!(s > 0)) return false;
        A[(size_t)j * m + j] = sqrt(s);
        for (int i = j + 1; i < m; i++) {
            double t = A[(size_t)i * m + j];
            for (int k = 0; k < j; k++) t -= A[(size_t)i * m + k] * A[(size_t)j * m + k];
            A[(size_t)i * m + j] = t / A[(size_t)j * m + j];
        }
    }
    for (int i = 0; i < m; i++) {  /* L y = b */
        for (int k = 0; k < i; k++) b[i] -= A[(size_t)i * m + k] * b[k];
        b[i] /= A[(size_t)i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) {  /* L^T x = y */
        for (int k = i + 1; k < m; k++) b[i] -= A[(size_t)k * m + i] * b[k];
        b[i] /= A[(size_t)i * m + i];
    }
    return true;
}

/* Ridge(alpha, fit_intercept=True).fit(data[:, cols], y, sample_weight=w): coef (m),
 * *intercept. Minimises sum w (y - b - x coef)^2 + alpha |coef|^2. */
static qb_status ridge(const double *data, int n, int d, const int *cols, int m, const double *y, const double *w,
                       double alpha, double *coef, double *intercept)
{
    double *A = calloc((size_t)m * m + 2 * (size_t)m + 1, sizeof *A), *xbar = A + (size_t)m * m, *b = xbar + m;
    if (!A) return qb_fail(QB_ENOMEM, "lime: out of memory");
    double sw = 0, ybar = 0;
    for (int i = 0; i < n; i++) sw += w[i], ybar += w[i] * y[i];
    ybar /= sw;
    for (int j = 0; j < m; j++) {
        for (int i = 0; i < n; i++) xbar[j] += w[i] * data[(size_t)i * d + cols[j]];
        xbar[j] /= sw;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            const double xj = data[(size_t)i * d + cols[j]] - xbar[j];
            b[j] += w[i] * xj * (y[i] - ybar);
            for (int k = 0; k <= j; k++) A[(size_t)j * m + k] += w[i] * xj * (data[(size_t)i * d + cols[k]] - xbar[k]);
        }
    for (int j = 0; j < m; j++) {
        A[(size_t)j * m + j] += alpha;
        for (int k = 0; k < j; k++) A[(size_t)k * m + j] = A[(size_t)j * m + k];
    }
    const bool ok = cholesky_solve(A, b, m);
    *intercept = ybar;
    for (int j = 0; j < m; j++) coef[j] = b[j], *intercept -= xbar[j] * b[j];
    free(A);
    return ok ? QB_OK : qb_fail(QB_EINVAL, "lime: the ridge system is not positive definite");
}

void qb_by_magnitude(const double *v, int m, int *order)
{
    for (int i = 0; i < m; i++) order[i] = i;
    for (int i = 1; i < m; i++)  /* insertion sort: stable, m is a text's word count */
        for (int j = i; j > 0 && fabs(v[order[j]]) > fabs(v[order[j - 1]]); j--) {
            const int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
}

void qb_lime_fit_free(qb_lime_fit *f)
{
    free(f->features), free(f->weights);
    memset(f, 0, sizeof *f);
}

/* Weighted R^2 of the fit (coef, intercept) on data[:, cols], as Ridge.score with
 * sample_weight (1 where y is constant and the fit exact, else 0 there). */
static double r2(const double *data, int n, int d, const int *cols, int m, const double *y, const double *w,
                 const double *coef, double intercept)
{
    double sw = 0, ybar = 0, res = 0, tot = 0;
    for (int i = 0; i < n; i++) sw += w[i], ybar += w[i] * y[i];
    ybar /= sw;
    for (int i = 0; i < n; i++) {
        double yi = intercept;
        for (int j = 0; j < m; j++) yi += coef[j] * data[(size_t)i * d + cols[j]];
        res += w[i] * (y[i] - yi) * (y[i] - yi), tot += w[i] * (y[i] - ybar) * (y[i] - ybar);
    }
    return tot > 0 ? 1.0 - res / tot : (res > 0 ? 0.0 : 1.0);
}

/* 'forward_selection': m times, the feature whose addition gives the best R^2 of an
 * unregularised weighted fit (the first best on ties); into chosen (m). */
static qb_status forward_selection(const double *data, int n, int d, const double *y, const double *w, int m,
                                   int *chosen, double *coef)
{
    bool *used = calloc((size_t)d, sizeof *used);
    if (!used) return qb_fail(QB_ENOMEM, "lime: out of memory");
    for (int k = 0; k < m; k++) {
        double best_score = -1e8, b;
        int best = 0;
        for (int f = 0; f < d; f++) {
            if (used[f]) continue;
            chosen[k] = f;
            /* a singular system (a feature copying another) cannot win, as sklearn's
             * lstsq fallback would fit it no better than without the feature */
            if (ridge(data, n, d, chosen, k + 1, y, w, 0.0, coef, &b)) continue;
            const double score = r2(data, n, d, chosen, k + 1, y, w, coef, b);
            if (score > best_score) best_score = score, best = f;
        }
        chosen[k] = best, used[best] = true;
    }
    free(used);
    return QB_OK;
}

/* 'highest_weights': a ridge (alpha 0.01) on every feature, the m largest
 * |coef x data[0]|; into chosen (m). */
static qb_status highest_weights(const double *data, int n, int d, const double *y, const double *w, int m,
                                 int *chosen, double *coef)
{
    int *all = malloc((size_t)d * sizeof *all), *order = malloc((size_t)d * sizeof *order);
    qb_status st = all && order ? QB_OK : qb_fail(QB_ENOMEM, "lime: out of memory");
    double b;
    for (int j = 0; !st && j < d; j++) all[j] = j;
    if (!st) st = ridge(data, n, d, all, d, y, w, 0.01, coef, &b);
    if (!st) {
        for (int j = 0; j < d; j++) coef[j] *= data[j];
        qb_by_magnitude(coef, d, order);
        memcpy(chosen, order, (size_t)m * sizeof *chosen);
    }
    free(all), free(order);
    return st;
}

qb_status qb_lime_explain(const double *data, const double *y, const double *distances, int n, int d,
                          double kernel_width, int num_features, qb_lime_fit *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || d < 1 || num_features < 1) return qb_fail(QB_EINVAL, "lime: %d samples, %d features", n, d);
    const int m = num_features < d ? num_features : d;
    double *w = malloc((size_t)n * sizeof *w), *coef = malloc((size_t)d * sizeof *coef);
    int *chosen = malloc((size_t)d * sizeof *chosen), *rank = malloc((size_t)d * sizeof *rank);
    out->features = malloc((size_t)m * sizeof *out->features);
    out->weights = malloc((size_t)m * sizeof *out->weights);
    qb_status st = w && coef && chosen && rank && out->features && out->weights
                       ? QB_OK : qb_fail(QB_ENOMEM, "lime: out of memory");
    for (int i = 0; !st && i < n; i++) w[i] = sqrt(exp(-distances[i] * distances[i] / (kernel_width * kernel_width)));
    /* feature_selection 'auto': forward selection for up to 6 features, else the highest weights */
    if (!st) st = num_features <= 6 ? forward_selection(data, n, d, y, w, m, chosen, coef)
                                    : highest_weights(data, n, d, y, w, m, chosen, coef);
    if (!st) st = ridge(data, n, d, chosen, m, y, w, 1.0, coef, &out->intercept);
    if (!st) {
        qb_by_magnitude(coef, m, rank);
        out->n = m, out->local_pred = out->intercept;
        for (int j = 0; j < m; j++) {
            out->features[j] = chosen[rank[j]], out->weights[j] = coef[rank[j]];
            out->local_pred += coef[j] * data[chosen[j]];
        }
        out->score = r2(data, n, d, chosen, m, y, w, coef, out->intercept);
    }
    free(w), free(coef), free(chosen), free(rank);
    if (st) qb_lime_fit_free(out);
    return st;
}
