/* Evaluation module: classification metrics against hand-worked examples and
 * against scikit-learn (tests/data/metrics_sklearn.json, made by
 * tests/data/make_metrics_fixture.py), the text/JSON/SVG reports, and latency
 * statistics against hand-worked values and numpy. */
#include "qbert/metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fixture.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* The hand-worked 3-class example (0 = negative, 1 = neutral, 2 = positive), n = 10.
 *
 *   gold: 0 0 0 0 1 1 1 2 2 2
 *   pred: 0 0 0 1 0 0 1 1 2 2
 *
 * Confusion (rows = gold, columns = predicted):
 *              neg neu pos | support
 *   neg          3   1   0 | 4
 *   neu          2   1   0 | 3
 *   pos          0   1   2 | 3
 *   predicted    5   3   2
 *
 * accuracy = (3 + 1 + 2) / 10 = 0.6
 * neg: P = 3/5 = 0.6,  R = 3/4 = 0.75, F1 = 2*0.6*0.75/1.35 = 2/3
 * neu: P = 1/3,        R = 1/3,        F1 = 1/3
 * pos: P = 2/2 = 1,    R = 2/3,        F1 = 2*(2/3)/(5/3) = 0.8
 * macro    P = (0.6 + 1/3 + 1)/3 = 29/45 = 0.644444...
 *          R = (0.75 + 1/3 + 2/3)/3 = 7/12 = 0.583333...
 *          F1 = (2/3 + 1/3 + 0.8)/3 = 0.6
 * weighted P = (0.6*4 + 1/3*3 + 1*3)/10 = 6.4/10 = 0.64
 *          R = (0.75*4 + 1/3*3 + 2/3*3)/10 = 0.6 (always equals accuracy)
 *          F1 = (2/3*4 + 1/3*3 + 0.8*3)/10 = 91/150 = 0.606666...
 * confidence: 0.9 0.8 0.7 0.6 0.5 0.9 0.8 0.7 0.6 0.5 -> mean 7.0/10 = 0.7 */
static const int hand_gold[10] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
static const int hand_pred[10] = {0, 0, 0, 1, 0, 0, 1, 1, 2, 2};
static const float hand_conf[10] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
static const char *const hand_names[3] = {"negative", "neutral", "positive"};

static void test_hand_worked(void)
{
    qb_metrics m;
    CHECK(qb_metrics_compute(hand_gold, hand_pred, hand_conf, 10, 3, &m) == QB_OK);
    static const int64_t conf[9] = {3, 1, 0, 2, 1, 0, 0, 1, 2};
    for (int i = 0; i < 9; i++)
        CHECKF(m.confusion[i] == conf[i], "confusion[%d] = %lld", i, (long long)m.confusion[i]);
    CHECK(m.n == 10 && m.num_labels == 3);
    CHECK(NEAR(m.accuracy, 0.6, 1e-12));
    static const double P[3] = {0.6, 1.0 / 3, 1.0}, R[3] = {0.75, 1.0 / 3, 2.0 / 3},
                        F[3] = {2.0 / 3, 1.0 / 3, 0.8};
    static const int64_t S[3] = {4, 3, 3};
    for (int c = 0; c < 3; c++) {
        CHECKF(NEAR(m.precision[c], P[c], 1e-12), "precision[%d] = %g", c, m.precision[c]);
        CHECKF(NEAR(m.recall[c], R[c], 1e-12), "recall[%d] = %g", c, m.recall[c]);
        CHECKF(NEAR(m.f1[c], F[c], 1e-12), "f1[%d] = %g", c, m.f1[c]);
        CHECK(m.support[c] == S[c]);
    }
    CHECK(NEAR(m.macro_p, 29.0 / 45, 1e-12));
    CHECK(NEAR(m.macro_r, 7.0 / 12, 1e-12));
    CHECK(NEAR(m.macro_f1, 0.6, 1e-12));
    CHECK(NEAR(m.weighted_p, 0.64, 1e-12));
    CHECK(NEAR(m.weighted_r, 0.6, 1e-12));
    CHECK(NEAR(m.weighted_f1, 91.0 / 150, 1e-12));
    CHECK(NEAR(m.avg_confidence, 0.7, 1e-6));  /* float inputs */
    qb_metrics_free(&m);
    CHECK(m.confusion == NULL && m.precision == NULL);
    qb_metrics_free(&m);  /* freeing twice is harmless */
}

/* K = 4: class 2 has gold samples but is never predicted, class 3 is predicted but has
 * no gold samples.
 *   gold: 0 0 1 1 2 2
 *   pred: 0 1 1 3 0 1
 * Confusion:     0  1  2  3 | support
 *   0            1  1  0  0 | 2
 *   1            0  1  0  1 | 2
 *   2            1  1  0  0 | 2
 *   3            0  0  0  0 | 0
 *   predicted    2  3  0  1
 * accuracy = 2/6 = 1/3
 * 0: P = 1/2, R = 1/2, F1 = 1/2
 * 1: P = 1/3, R = 1/2, F1 = 2*(1/6)/(5/6) = 0.4
 * 2: no predictions -> P = 0 (zero_division), R = 0/2 = 0, F1 = 0
 * 3: P = 0/1 = 0, no support -> R = 0 (zero_division), F1 = 0
 * macro    P = (1/2 + 1/3)/4 = 5/24, R = (1/2 + 1/2)/4 = 1/4, F1 = (0.5 + 0.4)/4 = 0.225
 * weighted P = (1/2*2 + 1/3*2)/6 = 5/18, R = 2/6 = 1/3, F1 = (0.5*2 + 0.4*2)/6 = 0.3 */
static void test_missing_classes(void)
{
    static const int gold[6] = {0, 0, 1, 1, 2, 2}, pred[6] = {0, 1, 1, 3, 0, 1};
    qb_metrics m;
    CHECK(qb_metrics_compute(gold, pred, NULL, 6, 4, &m) == QB_OK);
    static const double P[4] = {0.5, 1.0 / 3, 0, 0}, R[4] = {0.5, 0.5, 0, 0},
                        F[4] = {0.5, 0.4, 0, 0};
    static const int64_t S[4] = {2, 2, 2, 0};
    for (int c = 0; c < 4; c++) {
        CHECKF(NEAR(m.precision[c], P[c], 1e-12), "precision[%d] = %g", c, m.precision[c]);
        CHECKF(NEAR(m.recall[c], R[c], 1e-12), "recall[%d] = %g", c, m.recall[c]);
        CHECKF(NEAR(m.f1[c], F[c], 1e-12), "f1[%d] = %g", c, m.f1[c]);
        CHECK(m.support[c] == S[c]);
    }
    CHECK(m.confusion[2 * 4 + 0] == 1 && m.confusion[1 * 4 + 3] == 1);
    CHECK(m.confusion[3 * 4 + 3] == 0);
    CHECK(NEAR(m.accuracy, 1.0 / 3, 1e-12));
    CHECK(NEAR(m.macro_p, 5.0 / 24, 1e-12));
    CHECK(NEAR(m.macro_r, 0.25, 1e-12));
    CHECK(NEAR(m.macro_f1, 0.225, 1e-12));
    CHECK(NEAR(m.weighted_p, 5.0 / 18, 1e-12));
    CHECK(NEAR(m.weighted_r, 1.0 / 3, 1e-12));
    CHECK(NEAR(m.weighted_f1, 0.3, 1e-12));
    CHECK(isnan(m.avg_confidence));  /* no confidences given */
    qb_metrics_free(&m);
}

static void test_perfect(void)
{
    static const int y[7] = {2, 0, 1, 1, 2, 0, 2};
    static const float conf[7] = {1, 1, 1, 1, 1, 1, 1};
    qb_metrics m;
    CHECK(qb_metrics_compute(y, y, conf, 7, 3, &m) == QB_OK);
    CHECK(m.accuracy == 1.0 && m.macro_p == 1.0 && m.macro_r == 1.0 && m.macro_f1 == 1.0);
    CHECK(m.weighted_p == 1.0 && m.weighted_r == 1.0 && m.weighted_f1 == 1.0);
    CHECK(m.avg_confidence == 1.0);
    CHECK(m.support[0] == 2 && m.support[1] == 2 && m.support[2] == 3);
    for (int g = 0; g < 3; g++)
        for (int p = 0; p < 3; p++)
            CHECK(m.confusion[g * 3 + p] == (g == p ? m.support[g] : 0));
    qb_metrics_free(&m);
}

static void test_errors(void)
{
    static const int gold[3] = {0, 1, 2}, bad_gold[3] = {0, 3, 1}, bad_pred[3] = {0, 1, -1};
    static const float bad_conf[3] = {0.5f, 1.5f, 0.5f};
    qb_metrics m;
    CHECK(qb_metrics_compute(bad_gold, gold, NULL, 3, 3, &m) == QB_EINVAL);
    CHECKF(strstr(qb_error(), "gold[1] = 3") != NULL, "message: %s", qb_error());
    CHECK(m.confusion == NULL);
    qb_metrics_free(&m);
    CHECK(qb_metrics_compute(gold, bad_pred, NULL, 3, 3, &m) == QB_EINVAL);
    CHECKF(strstr(qb_error(), "pred[2] = -1") != NULL, "message: %s", qb_error());
    CHECK(qb_metrics_compute(gold, gold, bad_conf, 3, 3, &m) == QB_EINVAL);
    CHECKF(strstr(qb_error(), "confidence[1]") != NULL, "message: %s", qb_error());
    CHECK(qb_metrics_compute(gold, gold, NULL, 0, 3, &m) == QB_EINVAL);
    CHECK(qb_metrics_compute(gold, gold, NULL, 3, 0, &m) == QB_EINVAL);
}

/* Reads a whole stdio stream into a malloc'ed string. */
static char *slurp(FILE *f)
{
    long len = ftell(f);
    char *s = malloc((size_t)len + 1);
    if (!s) return NULL;
    rewind(f);
    size_t got = fread(s, 1, (size_t)len, f);
    s[got] = '\0';
    return s;
}

static void test_print(void)
{
    qb_metrics m;
    CHECK(qb_metrics_compute(hand_gold, hand_pred, hand_conf, 10, 3, &m) == QB_OK);
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    qb_metrics_print(f, &m, hand_names);
    char *s = slurp(f);
    fclose(f);
    CHECK(s != NULL);
    if (!s) return;
    /* sklearn's classification_report(digits=4) rows: name, then " {:>9.4f}" x 3, " {:>9}" */
    CHECKF(strstr(s, "negative     0.6000    0.7500    0.6667         4\n") != NULL, "%s", s);
    CHECKF(strstr(s, "neutral     0.3333    0.3333    0.3333         3\n") != NULL, "%s", s);
    CHECKF(strstr(s, "accuracy                         0.6000        10\n") != NULL, "%s", s);
    CHECKF(strstr(s, "macro avg     0.6444    0.5833    0.6000        10\n") != NULL, "%s", s);
    CHECKF(strstr(s, "weighted avg     0.6400    0.6000    0.6067        10\n") != NULL, "%s", s);
    CHECKF(strstr(s, "avg confidence 0.7000") != NULL, "%s", s);
    /* confusion rows: name followed by the counts of that gold row */
    const char *cm = strstr(s, "confusion matrix");
    CHECK(cm != NULL);
    if (cm) {
        static const int rows[3][3] = {{3, 1, 0}, {2, 1, 0}, {0, 1, 2}};
        const char *line = strchr(cm, '\n');
        line = line ? strchr(line + 1, '\n') : NULL;  /* skip the header line */
        for (int g = 0; g < 3 && line; g++) {
            char name[32];
            int a, b, c;
            CHECK(sscanf(line + 1, "%31s %d %d %d", name, &a, &b, &c) == 4);
            CHECK(strcmp(name, hand_names[g]) == 0);
            CHECK(a == rows[g][0] && b == rows[g][1] && c == rows[g][2]);
            line = strchr(line + 1, '\n');
        }
    }
    free(s);
    qb_metrics_free(&m);
}

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}


static void test_json_roundtrip(void)
{
    qb_metrics m;
    CHECK(qb_metrics_compute(hand_gold, hand_pred, hand_conf, 10, 3, &m) == QB_OK);
    cJSON *j = qb_metrics_to_json(&m, hand_names);
    CHECK(j != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/qb_test_metrics_%ld.json", tmp_dir(), (long)getpid());
    CHECK(qb_json_write_file(path, j) == QB_OK);
    cJSON_Delete(j);

    char *text = NULL;
    size_t len = 0;
    CHECK(qb_read_file(path, &text, &len) == QB_OK);
    unlink(path);
    CHECK(len > 0 && text[len - 1] == '\n');
    cJSON *r = cJSON_Parse(text);
    free(text);
    CHECK(r != NULL);
    if (!r) return;
    CHECK(NEAR(fixture_num(r, "accuracy"), 0.6, 1e-12));
    CHECK(NEAR(fixture_num(r, "precision_weighted"), 0.64, 1e-12));
    CHECK(NEAR(fixture_num(r, "recall_weighted"), 0.6, 1e-12));
    CHECK(NEAR(fixture_num(r, "f1_weighted"), 91.0 / 150, 1e-12));
    CHECK(NEAR(fixture_num(r, "precision_macro"), 29.0 / 45, 1e-12));
    CHECK(NEAR(fixture_num(r, "recall_macro"), 7.0 / 12, 1e-12));
    CHECK(NEAR(fixture_num(r, "f1_macro"), 0.6, 1e-12));
    CHECK(NEAR(fixture_num(r, "avg_confidence"), 0.7, 1e-6));
    CHECK(fixture_num(r, "n") == 10);

    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(r, "per_class");
    CHECK(cJSON_IsObject(pc) && cJSON_GetArraySize(pc) == 3);
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(pc, "positive");
    CHECK(pos != NULL && pc->child && strcmp(pc->child->string, "negative") == 0);
    CHECK(NEAR(fixture_num(pos, "precision"), 1.0, 1e-12) && NEAR(fixture_num(pos, "recall"), 2.0 / 3, 1e-12));
    CHECK(NEAR(fixture_num(pos, "f1"), 0.8, 1e-12) && fixture_num(pos, "support") == 3);

    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(r, "confusion_matrix");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(cm, "labels");
    const cJSON *matrix = cJSON_GetObjectItemCaseSensitive(cm, "matrix");
    CHECK(cJSON_GetArraySize(labels) == 3 && cJSON_GetArraySize(matrix) == 3);
    for (int c = 0; c < 3; c++) {
        const cJSON *l = cJSON_GetArrayItem(labels, c);
        CHECK(cJSON_IsString(l) && strcmp(l->valuestring, hand_names[c]) == 0);
    }
    static const int conf[3][3] = {{3, 1, 0}, {2, 1, 0}, {0, 1, 2}};
    for (int g = 0; g < 3; g++) {
        const cJSON *row = cJSON_GetArrayItem(matrix, g);
        CHECK(cJSON_GetArraySize(row) == 3);
        for (int p = 0; p < 3; p++) {
            const cJSON *v = cJSON_GetArrayItem(row, p);
            CHECK(cJSON_IsNumber(v) && v->valuedouble == conf[g][p]);
        }
    }
    cJSON_Delete(r);
    qb_metrics_free(&m);

    /* no confidences -> null; no names -> ids as keys */
    CHECK(qb_metrics_compute(hand_gold, hand_pred, NULL, 10, 3, &m) == QB_OK);
    j = qb_metrics_to_json(&m, NULL);
    CHECK(j != NULL);
    if (j) {
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "avg_confidence")));
        const cJSON *c1 = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "per_class"), "1");
        CHECK(c1 != NULL && fixture_num(c1, "support") == 3);
    }
    cJSON_Delete(j);
    /* equal names would collide as object keys */
    static const char *const dup[3] = {"a", "b", "a"};
    CHECK(qb_metrics_to_json(&m, dup) == NULL);
    CHECKF(strstr(qb_error(), "label 0 and label 2") != NULL, "message: %s", qb_error());
    qb_metrics_free(&m);
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Checks the markup characters: every '&' starts one of the XML entities, every '<'
 * starts a tag, and tags balance for <text>. Returns true when all hold. */
static bool xml_chars_ok(const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '&' && strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
            strncmp(p, "&quot;", 6) && strncmp(p, "&apos;", 6))
            return false;
        if (*p == '<' && !(p[1] == '/' || isalpha((unsigned char)p[1])))
            return false;
    }
    return count_of(s, "<text") == count_of(s, "</text>") && count_of(s, "<svg") == 1 &&
           count_of(s, "</svg>") == 1;
}

/* The character data of every <text> element, in document order, joined by '|'. */
static void text_contents(const char *svg, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (const char *p = strstr(svg, "<text"); p; p = strstr(p, "<text")) {
        const char *start = strchr(p, '>');
        const char *end = start ? strstr(start, "</text>") : NULL;
        if (!end) break;
        start++;
        size_t n = (size_t)(end - start);
        if (len + n + 2 >= cap) break;
        memcpy(out + len, start, n);
        len += n;
        out[len++] = '|';
        out[len] = '\0';
        p = end;
    }
}

static bool has_prefix(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The fill attribute of the first <text> element after p (the text drawn on a cell). */
static const char *next_text_fill(const char *p)
{
    const char *t = strstr(p, "<text");
    return t ? strstr(t, "fill=") : NULL;
}

static void test_svg(void)
{
    qb_metrics m;
    CHECK(qb_metrics_compute(hand_gold, hand_pred, hand_conf, 10, 3, &m) == QB_OK);
    static const char *const names[3] = {"neg<ative", "neu&tral", "pos\"it'ive>"};
    char *svg = qb_confusion_svg(&m, names, "SmSA <test> & dev");
    CHECK(svg != NULL);
    if (!svg) return;
    CHECK(strncmp(svg, "<svg", 4) == 0);
    size_t len = strlen(svg);
    while (len > 0 && (svg[len - 1] == '\n' || svg[len - 1] == ' ')) len--;
    CHECK(len >= 6 && strncmp(svg + len - 6, "</svg>", 6) == 0);
    CHECK(xml_chars_ok(svg));
    CHECK(strstr(svg, "neg&lt;ative") != NULL && strstr(svg, "neu&amp;tral") != NULL);
    CHECK(strstr(svg, "pos&quot;it&apos;ive&gt;") != NULL);
    CHECK(strstr(svg, "SmSA &lt;test&gt; &amp; dev") != NULL);
    CHECK(strstr(svg, ">gold</text>") != NULL && strstr(svg, ">predicted</text>") != NULL);

    /* each cell shows its count and its row share, row by row:
     * row neg 3/4 1/4 0/4, row neu 2/3 1/3 0/3, row pos 0/3 1/3 2/3 */
    char texts[8192];
    text_contents(svg, texts, sizeof texts);
    const char *cells = "|3|75.0%|1|25.0%|0|0.0%"
                        "|2|66.7%|1|33.3%|0|0.0%"
                        "|0|0.0%|1|33.3%|2|66.7%|";
    CHECKF(strstr(texts, cells) != NULL, "texts: %s", texts);
    free(svg);
    qb_metrics_free(&m);

    /* perfect predictions: diagonal cells are the darkest blue with white text, the
     * others the lightest with dark text; a class without gold samples says so */
    static const int y[4] = {0, 1, 1, 0};
    CHECK(qb_metrics_compute(y, y, NULL, 4, 3, &m) == QB_OK);
    svg = qb_confusion_svg(&m, NULL, NULL);
    CHECK(svg != NULL);
    if (!svg) return;
    CHECK(xml_chars_ok(svg));
    const char *dark = strstr(svg, "fill=\"#08306b\" stroke");
    const char *light = strstr(svg, "fill=\"#f7fbff\" stroke");
    CHECK(dark && has_prefix(next_text_fill(dark), "fill=\"#ffffff\">2</text>"));
    CHECK(light && has_prefix(next_text_fill(light), "fill=\"#1b1b1b\">0</text>"));
    CHECK(count_of(svg, ">no samples</text>") == 3);
    char path[512];
    snprintf(path, sizeof path, "%s/qb_test_metrics_%ld.svg", tmp_dir(), (long)getpid());
    CHECK(qb_svg_write(path, svg) == QB_OK);
    char *back = NULL;
    size_t back_len = 0;
    CHECK(qb_read_file(path, &back, &back_len) == QB_OK);
    CHECK(back && strcmp(back, svg) == 0);
    unlink(path);
    free(back);
    free(svg);
    qb_metrics_free(&m);
}

static void check_latency(const qb_latency_stats *s, int n, double mean, double median, double std,
                          double p95, double min, double max, double tol)
{
    CHECK(s->n == n);
    CHECKF(NEAR(s->mean, mean, tol), "mean %.17g, expected %.17g", s->mean, mean);
    CHECKF(NEAR(s->median, median, tol), "median %.17g, expected %.17g", s->median, median);
    CHECKF(NEAR(s->std, std, tol), "std %.17g, expected %.17g", s->std, std);
    CHECKF(NEAR(s->p95, p95, tol), "p95 %.17g, expected %.17g", s->p95, p95);
    CHECK(s->min == min && s->max == max);
}

static void test_latency_hand(void)
{
    /* 1..20 in a scrambled order: mean 10.5; median = position 19*0.5 = 9.5 -> 10.5;
     * p95 = position 19*0.95 = 18.05 -> 19 + 0.05*(20 - 19) = 19.05;
     * sum of squared deviations = n(n^2 - 1)/12 = 665, std = sqrt(665/19) = sqrt(35) */
    double s[20];
    for (int i = 0; i < 20; i++) s[i] = (double)((i * 7) % 20 + 1);
    double copy[20];
    memcpy(copy, s, sizeof s);
    qb_latency_stats st;
    CHECK(qb_latency_compute(s, 20, &st) == QB_OK);
    check_latency(&st, 20, 10.5, 10.5, sqrt(35.0), 19.05, 1, 20, 1e-12);
    CHECK(memcmp(s, copy, sizeof s) == 0);  /* input untouched */

    /* 40 10 30 20: mean 25; median = position 1.5 -> 25; p95 = position 2.85 -> 30 + 0.85*10
     * = 38.5; std = sqrt((225 + 25 + 25 + 225)/3) = sqrt(500/3) */
    static const double four[4] = {40, 10, 30, 20};
    CHECK(qb_latency_compute(four, 4, &st) == QB_OK);
    check_latency(&st, 4, 25, 25, sqrt(500.0 / 3), 38.5, 10, 40, 1e-12);

    static const double one[1] = {4.2};
    CHECK(qb_latency_compute(one, 1, &st) == QB_OK);
    check_latency(&st, 1, 4.2, 4.2, 0, 4.2, 4.2, 4.2, 0);

    CHECK(qb_latency_compute(one, 0, &st) == QB_EINVAL);
    static const double bad[3] = {1, NAN, 2}, neg[2] = {1, -0.5};
    CHECK(qb_latency_compute(bad, 3, &st) == QB_EINVAL);
    CHECKF(strstr(qb_error(), "sample 1") != NULL, "message: %s", qb_error());
    CHECK(qb_latency_compute(neg, 2, &st) == QB_EINVAL);
}

/* ---- scikit-learn / numpy reference ------------------------------------------------- */

static int *int_array(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static double item(const cJSON *obj, const char *key, int i)
{
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(obj, key), i);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void test_sklearn_case(const cJSON *c)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    int K = (int)fixture_num(c, "num_labels"), n, n2, n3;
    int *gold = int_array(cJSON_GetObjectItemCaseSensitive(c, "gold"), &n);
    int *pred = int_array(cJSON_GetObjectItemCaseSensitive(c, "pred"), &n2);
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(c, "confidence");
    n3 = cJSON_GetArraySize(ca);
    float *conf = malloc((size_t)(n3 ? n3 : 1) * sizeof *conf);
    CHECK(gold && pred && conf && n == n2 && n == n3);
    if (!gold || !pred || !conf || n != n2 || n != n3) goto done;
    for (int i = 0; i < n; i++) conf[i] = (float)cJSON_GetArrayItem(ca, i)->valuedouble;

    qb_metrics m;
    CHECKF(qb_metrics_compute(gold, pred, conf, n, K, &m) == QB_OK, "%s: %s", name, qb_error());
    const double tol = 1e-12;
    CHECKF(NEAR(m.accuracy, fixture_num(c, "accuracy"), tol), "%s: accuracy %g", name, m.accuracy);
    for (int k = 0; k < K; k++) {
        CHECKF(NEAR(m.precision[k], item(c, "precision", k), tol), "%s: precision[%d]", name, k);
        CHECKF(NEAR(m.recall[k], item(c, "recall", k), tol), "%s: recall[%d]", name, k);
        CHECKF(NEAR(m.f1[k], item(c, "f1", k), tol), "%s: f1[%d]", name, k);
        CHECKF(m.support[k] == (int64_t)item(c, "support", k), "%s: support[%d]", name, k);
        const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "confusion"), k);
        for (int p = 0; p < K; p++)
            CHECKF(m.confusion[(size_t)k * K + p] ==
                       (int64_t)cJSON_GetArrayItem(row, p)->valuedouble,
                   "%s: confusion[%d][%d]", name, k, p);
    }
    CHECKF(NEAR(m.macro_p, fixture_num(c, "precision_macro"), tol), "%s: macro P %.17g", name, m.macro_p);
    CHECKF(NEAR(m.macro_r, fixture_num(c, "recall_macro"), tol), "%s: macro R %.17g", name, m.macro_r);
    CHECKF(NEAR(m.macro_f1, fixture_num(c, "f1_macro"), tol), "%s: macro F1 %.17g", name, m.macro_f1);
    CHECKF(NEAR(m.weighted_p, fixture_num(c, "precision_weighted"), tol), "%s: weighted P", name);
    CHECKF(NEAR(m.weighted_r, fixture_num(c, "recall_weighted"), tol), "%s: weighted R", name);
    CHECKF(NEAR(m.weighted_f1, fixture_num(c, "f1_weighted"), tol), "%s: weighted F1", name);
    CHECKF(NEAR(m.avg_confidence, fixture_num(c, "avg_confidence"), 1e-12), "%s: avg confidence", name);
    qb_metrics_free(&m);
done:
    free(gold);
    free(pred);
    free(conf);
}

static void test_sklearn_fixture(void)
{
    /* committed next to this test; missing means a broken checkout, never a skip */
    const char *path = "data/metrics_sklearn.json";
    char *text = NULL;
    size_t len = 0;
    CHECKF(qb_read_file(path, &text, &len) == QB_OK, "%s", qb_error());
    if (!text) return;
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECKF(root != NULL, "%s: not valid JSON", path);
    if (!root) return;

    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "metrics");
    CHECK(cJSON_GetArraySize(cases) >= 4);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) test_sklearn_case(c);

    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(root, "latency");
    CHECK(cJSON_GetArraySize(lat) >= 3);
    cJSON_ArrayForEach(c, lat)
    {
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(c, "samples");
        int n = cJSON_GetArraySize(sa);
        double *s = malloc((size_t)(n ? n : 1) * sizeof *s);
        CHECK(s != NULL);
        if (!s) continue;
        for (int i = 0; i < n; i++) s[i] = cJSON_GetArrayItem(sa, i)->valuedouble;
        qb_latency_stats st;
        CHECK(qb_latency_compute(s, n, &st) == QB_OK);
        /* numpy sums pairwise and interpolates with a different but equivalent formula */
        check_latency(&st, n, fixture_num(c, "mean"), fixture_num(c, "median"), fixture_num(c, "std"), fixture_num(c, "p95"),
                      fixture_num(c, "min"), fixture_num(c, "max"), 1e-9);
        free(s);
    }
    cJSON_Delete(root);
}

/* n ints of a JSON array into out (malloc'ed). */
static int *json_ints(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int *out = malloc((size_t)(*n ? *n : 1) * sizeof *out), i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) out[i++] = v->valueint;
    return out;
}

/* Student's t quantiles and the 95% t-interval over seeds against scipy. */
static void test_across_seeds(const cJSON *root)
{
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "t_quantiles")) {
        const double q = fixture_num(c, "q"), want = fixture_num(c, "t"), got = qb_t_quantile(q, (int)fixture_num(c, "df"));
        CHECKF(fabs(got - want) <= 1e-9 * fmax(1.0, fabs(want)), "t quantile %g, df %g: %.15g, scipy %.15g", q,
               fixture_num(c, "df"), got, want);
        n++;
    }
    CHECK(n >= 40 && isnan(qb_t_quantile(1.0, 3)) && isnan(qb_t_quantile(0.5, 0)));
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "seed_intervals")) {
        const cJSON *values = cJSON_GetObjectItemCaseSensitive(c, "values"), *ci = cJSON_GetObjectItemCaseSensitive(c, "interval");
        double v[8];
        const int k = cJSON_GetArraySize(values);
        for (int i = 0; i < k && i < 8; i++) v[i] = cJSON_GetArrayItem(values, i)->valuedouble;
        qb_seed_stats s;
        qb_seed_stats_compute(v, k, &s);
        CHECKF(s.n == k && fabs(s.mean - fixture_num(c, "mean")) < 1e-12 && fabs(s.std - fixture_num(c, "std")) < 1e-12 &&
                   fabs(s.lo - cJSON_GetArrayItem(ci, 0)->valuedouble) < 1e-10 &&
                   fabs(s.hi - cJSON_GetArrayItem(ci, 1)->valuedouble) < 1e-10,
               "%d seeds: %.12g +- %.12g [%.12g, %.12g] vs scipy", k, s.mean, s.std, s.lo, s.hi);
    }
    qb_seed_stats one;
    qb_seed_stats_compute((const double[]){0.75}, 1, &one);
    CHECK(one.mean == 0.75 && one.std == 0 && isnan(one.lo) && isnan(one.hi));
}

/* McNemar's exact test against statsmodels, the paired bootstrap against numpy with the
 * same draws (tests/golden/make_significance.py); then the seeded bootstrap itself:
 * the same interval twice for one seed, another for another, and a variant equal to
 * the baseline has a difference and interval of exactly 0. */
static void test_significance(void)
{
    cJSON *root = fixture_load("golden/significance.json");
    if (!root) return;
    const cJSON *c;
    int cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "mcnemar")) {
        const int b = (int)fixture_num(c, "b"), cc = (int)fixture_num(c, "c");
        const double want = fixture_num(c, "p"), got = qb_mcnemar_exact(b, cc);
        CHECKF(fabs(got - want) <= 1e-12 * fmax(want, 1e-300) + 1e-300, "mcnemar(%d, %d) = %.17g, statsmodels %.17g",
               b, cc, got, want);
        cases++;
    }
    CHECK(cases >= 8);
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(root, "bootstrap");
    int n, nb, nv, ni;
    int *gold = json_ints(cJSON_GetObjectItemCaseSensitive(bs, "gold"), &n);
    int *base = json_ints(cJSON_GetObjectItemCaseSensitive(bs, "base"), &nb);
    int *variant = json_ints(cJSON_GetObjectItemCaseSensitive(bs, "variant"), &nv);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(bs, "indices");
    const int resamples = cJSON_GetArraySize(rows), K = (int)fixture_num(bs, "num_labels");
    int32_t *idx = malloc((size_t)resamples * n * sizeof *idx);
    int r = 0;
    cJSON_ArrayForEach(c, rows) {
        int *row = json_ints(c, &ni);
        for (int i = 0; i < n && ni == n; i++) idx[(size_t)r * n + i] = row[i];
        free(row);
        r++;
    }
    qb_paired_comparison d;
    CHECK(n == 40 && nb == n && nv == n && resamples == 200);
    CHECKF(qb_paired_compare(gold, base, variant, n, K, resamples, 0, idx, &d) == QB_OK, "%s", qb_error());
    CHECKF(d.b == (int)fixture_num(bs, "b") && d.c == (int)fixture_num(bs, "c") && d.mcnemar_p == qb_mcnemar_exact(d.b, d.c),
           "discordant %d %d vs numpy %g %g", d.b, d.c, fixture_num(bs, "b"), fixture_num(bs, "c"));
    const cJSON *ai = cJSON_GetObjectItemCaseSensitive(bs, "acc_interval"), *fi = cJSON_GetObjectItemCaseSensitive(bs, "f1_interval");
    CHECKF(fabs(d.acc_diff - fixture_num(bs, "acc_diff")) < 1e-12 && fabs(d.f1_diff - fixture_num(bs, "f1_diff")) < 1e-12,
           "differences %.17g %.17g vs numpy %.17g %.17g", d.acc_diff, d.f1_diff, fixture_num(bs, "acc_diff"), fixture_num(bs, "f1_diff"));
    CHECKF(fabs(d.acc_lo - cJSON_GetArrayItem(ai, 0)->valuedouble) < 1e-12 &&
               fabs(d.acc_hi - cJSON_GetArrayItem(ai, 1)->valuedouble) < 1e-12 &&
               fabs(d.f1_lo - cJSON_GetArrayItem(fi, 0)->valuedouble) < 1e-12 &&
               fabs(d.f1_hi - cJSON_GetArrayItem(fi, 1)->valuedouble) < 1e-12,
           "intervals [%g, %g] [%g, %g] vs numpy", d.acc_lo, d.acc_hi, d.f1_lo, d.f1_hi);
    qb_paired_comparison s1, s2, s3, same;
    CHECK(qb_paired_compare(gold, base, variant, n, K, 2000, 42, NULL, &s1) == QB_OK &&
          qb_paired_compare(gold, base, variant, n, K, 2000, 42, NULL, &s2) == QB_OK &&
          qb_paired_compare(gold, base, variant, n, K, 2000, 43, NULL, &s3) == QB_OK);
    CHECK(memcmp(&s1, &s2, sizeof s1) == 0 && (s1.acc_lo != s3.acc_lo || s1.f1_hi != s3.f1_hi));
    CHECK(s1.acc_lo <= s1.acc_diff && s1.acc_diff <= s1.acc_hi && s1.f1_lo <= s1.f1_diff && s1.f1_diff <= s1.f1_hi);
    CHECK(qb_paired_compare(gold, base, base, n, K, 500, 1, NULL, &same) == QB_OK && same.acc_diff == 0 &&
          same.b == 0 && same.c == 0 && same.mcnemar_p == 1 && same.acc_lo == 0 && same.acc_hi == 0 && same.f1_lo == 0 && same.f1_hi == 0);
    base[0] = K;  /* a label out of range is refused */
    CHECK(qb_paired_compare(gold, base, variant, n, K, 500, 1, NULL, &same) == QB_EINVAL);
    free(gold), free(base), free(variant), free(idx);
    test_across_seeds(root);
    cJSON_Delete(root);
    printf("significance: McNemar %d cases, bootstrap intervals equal numpy's\n", cases);
}

int main(void)
{
    test_hand_worked();
    test_missing_classes();
    test_perfect();
    test_errors();
    test_print();
    test_json_roundtrip();
    test_svg();
    test_latency_hand();
    test_sklearn_fixture();
    test_significance();
    return check_summary("test_metrics");
}
