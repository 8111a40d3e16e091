/* Classification metrics with scikit-learn's definitions (see qbert/metrics.h).
 *
 * Everything derives from the (K, K) confusion matrix: for class c,
 *   TP = C[c][c], predicted = column sum, support = row sum,
 *   precision = TP / predicted, recall = TP / support,
 *   F1 = 2 TP / (support + predicted)   (= 2PR / (P + R), from the counts in one division,
 *                                        as sklearn computes it),
 * each 0 when its denominator is 0 (sklearn's default zero_division). Counts are
 * int64 and ratios are computed in double, so results match sklearn to rounding. */
#include "qbert/metrics.h"

#include <math.h>
#include <string.h>

/* 0 when the denominator is 0, like sklearn's zero_division="warn". */
static double safe_div(double num, double den) { return den > 0 ? num / den : 0.0; }

void qb_metrics_free(qb_metrics *m)
{
    if (!m) return;
    qb_free(m->confusion);
    qb_free(m->precision);
    qb_free(m->recall);
    qb_free(m->f1);
    qb_free(m->support);
    memset(m, 0, sizeof *m);
}

static qb_status check_inputs(const int *gold, const int *pred, const float *confidence, int n,
                              int num_labels)
{
    if (!gold || !pred) return qb_fail(QB_EINVAL, "metrics: gold and pred must not be NULL");
    if (n < 1) return qb_fail(QB_EINVAL, "metrics: n = %d, expected at least 1 sample", n);
    if (num_labels < 1)
        return qb_fail(QB_EINVAL, "metrics: num_labels = %d, expected at least 1", num_labels);
    for (int i = 0; i < n; i++) {
        if (gold[i] < 0 || gold[i] >= num_labels)
            return qb_fail(QB_EINVAL, "metrics: gold[%d] = %d, expected a label in [0, %d)", i,
                           gold[i], num_labels);
        if (pred[i] < 0 || pred[i] >= num_labels)
            return qb_fail(QB_EINVAL, "metrics: pred[%d] = %d, expected a label in [0, %d)", i,
                           pred[i], num_labels);
        /* written as !(in range) so that NaN is rejected too */
        if (confidence && !(confidence[i] >= 0.0f && confidence[i] <= 1.0f))
            return qb_fail(QB_EINVAL,
                           "metrics: confidence[%d] = %g, expected a probability in [0, 1]", i,
                           (double)confidence[i]);
    }
    return QB_OK;
}

qb_status qb_metrics_compute(const int *gold, const int *pred, const float *confidence, int n,
                             int num_labels, qb_metrics *m)
{
    memset(m, 0, sizeof *m);
    qb_status st = check_inputs(gold, pred, confidence, n, num_labels);
    if (st != QB_OK) return st;

    const int K = num_labels;
    m->num_labels = K;
    m->n = n;
    m->confusion = qb_calloc((size_t)K * (size_t)K, sizeof *m->confusion);
    m->precision = qb_calloc((size_t)K, sizeof *m->precision);
    m->recall = qb_calloc((size_t)K, sizeof *m->recall);
    m->f1 = qb_calloc((size_t)K, sizeof *m->f1);
    m->support = qb_calloc((size_t)K, sizeof *m->support);
    int64_t *predicted = qb_calloc((size_t)K, sizeof *predicted);  /* (K,) column sums */
    if (!m->confusion || !m->precision || !m->recall || !m->f1 || !m->support || !predicted) {
        qb_free(predicted);
        qb_metrics_free(m);
        return qb_fail(QB_ENOMEM, "metrics: cannot allocate a %d x %d confusion matrix", K, K);
    }

    for (int i = 0; i < n; i++) {
        m->confusion[(size_t)gold[i] * K + pred[i]]++;
        m->support[gold[i]]++;
        predicted[pred[i]]++;
    }

    int64_t correct = 0;
    double wp = 0, wr = 0, wf = 0;
    for (int c = 0; c < K; c++) {
        double tp = (double)m->confusion[(size_t)c * K + c];
        double p = safe_div(tp, (double)predicted[c]);
        double r = safe_div(tp, (double)m->support[c]);
        m->precision[c] = p;
        m->recall[c] = r;
        m->f1[c] = safe_div(2.0 * tp, (double)(m->support[c] + predicted[c]));
        correct += m->confusion[(size_t)c * K + c];
        m->macro_p += p;
        m->macro_r += r;
        m->macro_f1 += m->f1[c];
        wp += p * (double)m->support[c];
        wr += r * (double)m->support[c];
        wf += m->f1[c] * (double)m->support[c];
    }
    qb_free(predicted);

    m->accuracy = (double)correct / n;
    m->macro_p /= K;
    m->macro_r /= K;
    m->macro_f1 /= K;
    /* the supports sum to n >= 1, so the weighted averages are always defined */
    m->weighted_p = wp / n;
    m->weighted_r = wr / n;
    m->weighted_f1 = wf / n;

    if (confidence) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += confidence[i];
        m->avg_confidence = sum / n;
    } else {
        m->avg_confidence = NAN;
    }
    return QB_OK;
}
