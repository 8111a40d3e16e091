/* Data sets (TSV, CSV), labels, UTF-8 repair, preprocessing, stopwords, the embedded
 * sample data, and (when ../../shared is there) the SmSA corpus.
 *
 * The expected values are worked out by hand from the input strings (the UTF-8
 * replacements were checked against Python's bytes.decode(errors="replace")). */
#include "qbert/data.h"
#include "check.h"
#include "data/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FFFD "\xEF\xBF\xBD"

static const char *const NAMES[] = {"positive", "neutral", "negative"};

static char tmpdir[256];
static char written[64][512];
static int n_written;

/* Writes `content` to tmpdir/name and returns the path (valid until the end of main). */
static const char *put(const char *name, const char *content)
{
    if (n_written == 64) {
        fprintf(stderr, "test_data: too many temp files\n");
        exit(1);
    }
    char *path = written[n_written++];
    snprintf(path, sizeof written[0], "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(content, 1, strlen(content), f) != strlen(content) || fclose(f) != 0) {
        fprintf(stderr, "test_data: cannot write %s\n", path);
        exit(1);
    }
    return path;
}

/* Options with the three SmSA label names and no preprocessing. */
static qb_data_options opts(void)
{
    qb_data_options o;
    qb_data_default_options(&o);
    o.label_names = NAMES;
    o.n_labels = 3;
    o.lowercase = false;
    return o;
}

static bool error_has(const char *part)
{
    return strstr(qb_error(), part) != NULL;
}

#define CHECK_ERR(part) CHECKF(error_has(part), "error '%s' lacks '%s'", qb_error(), part)

static void test_tsv_basics(void)
{
    qb_data_options o = opts();
    qb_dataset d;
    const char *p = put("basic.tsv", "Saya suka ini\tpositive\nbiasa saja\tneutral\njelek sekali\tnegative\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 3);
    if (d.count == 3) {
        CHECK(strcmp(d.texts[0], "Saya suka ini") == 0);
        CHECK(strcmp(d.texts[2], "jelek sekali") == 0);
        CHECK(d.labels[0] == 0 && d.labels[1] == 1 && d.labels[2] == 2);
        CHECK(d.lines[0] == 1 && d.lines[1] == 2 && d.lines[2] == 3);
    }
    CHECK(d.skipped == 0);
    CHECK(d.path && strcmp(d.path, p) == 0);
    qb_dataset_free(&d);
    CHECK(d.count == 0 && d.texts == NULL);

    /* No final newline, \r\n line ends, a BOM, surrounding spaces on the label. */
    p = put("crlf.tsv", "\xEF\xBB\xBF" "pertama\tnegative\r\nkedua\t positive \r\nketiga\tneutral");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 3);
    if (d.count == 3) {
        CHECK(strcmp(d.texts[0], "pertama") == 0); /* neither the BOM nor \r */
        CHECK(strcmp(d.texts[1], "kedua") == 0);
        CHECK(strcmp(d.texts[2], "ketiga") == 0);
        CHECK(d.labels[0] == 2 && d.labels[1] == 0 && d.labels[2] == 1);
        CHECK(d.lines[2] == 3);
    }
    qb_dataset_free(&d);

    /* Blank lines (empty, spaces, \r only) are not rows but still count as lines. */
    p = put("blank.tsv", "\n\nsatu\tpositive\n   \n\r\ndua\tnegative\n\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2);
    if (d.count == 2) CHECK(d.lines[0] == 3 && d.lines[1] == 6);
    qb_dataset_free(&d);

    /* The last tab separates the label: the text keeps its own tab. */
    p = put("tabs.tsv", "kiri\tkanan\tneutral\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && strcmp(d.texts[0], "kiri\tkanan") == 0 && d.labels[0] == 1);
    qb_dataset_free(&d);
}

static void test_labels(void)
{
    qb_data_options o = opts();
    qb_dataset d;
    const char *p = put("ids.tsv", "a\t2\nb\t0\nc\tneutral\nd\t1\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 4);
    if (d.count == 4) CHECK(d.labels[0] == 2 && d.labels[1] == 0 && d.labels[2] == 1 && d.labels[3] == 1);
    qb_dataset_free(&d);

    p = put("range.tsv", "a\t0\nb\t3\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("range.tsv:2:");
    CHECK_ERR("label '3'");
    CHECK(d.count == 0 && d.texts == NULL);

    p = put("unknown.tsv", "bagus\tpositive\njelek\tnegatif\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("unknown.tsv:2: label 'negatif' is not one of positive, neutral, negative");

    /* Exact match: case differs -> unknown. */
    p = put("case.tsv", "bagus\tPositive\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("case.tsv:1:");

    p = put("nolabel.tsv", "bagus\t  \n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("nolabel.tsv:1: empty label");

    /* Without names: any non-negative integer; a name is an error. */
    qb_data_options plain;
    qb_data_default_options(&plain);
    p = put("plain.tsv", "x\t17\ny\t0\n");
    CHECK(qb_dataset_load(p, &plain, &d) == QB_OK);
    CHECK(d.count == 2 && d.labels[0] == 17 && d.labels[1] == 0);
    qb_dataset_free(&d);
    p = put("plainbad.tsv", "x\tpositive\n");
    CHECK(qb_dataset_load(p, &plain, &d) == QB_EFORMAT);
    CHECK_ERR("plainbad.tsv:1: label 'positive'");
    p = put("negative.tsv", "x\t-1\n");
    CHECK(qb_dataset_load(p, &plain, &d) == QB_EFORMAT);

    qb_data_options bad = opts();
    bad.n_labels = -1;
    CHECK(qb_dataset_load(p, &bad, &d) == QB_EINVAL);
}

/* discover_labels: ids in order of first appearance, the names kept; a header row is
 * named as one rather than taken for a class "label". */
static void test_discover(void)
{
    qb_data_options o;
    qb_data_default_options(&o);
    o.discover_labels = true;
    qb_dataset d;
    const char *p = put("discover.tsv", "a\tneg\nb\tpos\n\nc\tneg\nd\t neu \n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 4 && d.n_label_names == 3);
    if (d.count == 4 && d.n_label_names == 3) {
        CHECK(d.labels[0] == 0 && d.labels[1] == 1 && d.labels[2] == 0 && d.labels[3] == 2);
        CHECK(strcmp(d.label_names[0], "neg") == 0 && strcmp(d.label_names[1], "pos") == 0 &&
              strcmp(d.label_names[2], "neu") == 0);
    }
    qb_dataset_free(&d);

    p = put("header.tsv", "\ntext\tlabel\na\tpos\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("header.tsv:2: a header row (label field 'label')");
    CHECK_ERR("--delimiter tab");
    o.skip_bad_rows = true;  /* as qbert eda reads: skipped and counted */
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && d.skipped == 1 && d.n_label_names == 1 && strcmp(d.label_names[0], "pos") == 0);
    qb_dataset_free(&d);
    o.label_column = "sentiment";
    p = put("header2.tsv", "text\tsentiment\na\tlabel\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && d.skipped == 1 && d.n_label_names == 1 && strcmp(d.label_names[0], "label") == 0);
    qb_dataset_free(&d);

    o.n_labels = 3;  /* discovering takes no names, count or map */
    CHECK(qb_dataset_load(p, &o, &d) == QB_EINVAL);
    CHECK_ERR("discover_labels takes no label names");
}

static void test_bad_rows(void)
{
    qb_data_options o = opts();
    qb_dataset d;
    const char *text = "ok satu\tpositive\n\tnegative\nok dua\tnegatif\n   \t neutral\nok tiga\t1\nok empat\t9\n";
    const char *p = put("bad.tsv", text);

    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("bad.tsv:2: empty text");

    o.skip_bad_rows = true;
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && d.skipped == 4);
    if (d.count == 2) {
        CHECK(strcmp(d.texts[0], "ok satu") == 0 && d.lines[0] == 1);
        CHECK(strcmp(d.texts[1], "ok tiga") == 0 && d.lines[1] == 5 && d.labels[1] == 1);
    }
    qb_dataset_free(&d);

    /* Every row bad: no rows, even when skipping. */
    p = put("allbad.tsv", "a\tx\nb\ty\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("allbad.tsv: no rows");

    o.skip_bad_rows = false;
    p = put("empty.tsv", "");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("empty.tsv: no rows");
    p = put("blanks.tsv", "\n \r\n\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("blanks.tsv: no rows");
    p = put("bom.csv", "\xEF\xBB\xBF");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("bom.csv: no rows");
    p = put("header.csv", "text,label\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("header.csv: no rows");

    /* A label map: the file's 0 / 1 mean negative / positive (names), 7 the model's id 1;
     * an unmapped label still resolves as before; a malformed map names itself. */
    o.skip_bad_rows = false;
    o.label_map = "0=negative, 1 = positive,7=1";
    p = put("mapped.tsv", "buruk\t0\nbagus\t1\nbiasa\t7\nlagi\tneutral\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 4 && d.labels[0] == 2 && d.labels[1] == 0 && d.labels[2] == 1 && d.labels[3] == 1);
    qb_dataset_free(&d);
    o.label_map = "0:negative";
    CHECK(qb_dataset_load(p, &o, &d) == QB_EINVAL);
    CHECK_ERR("label map \"0:negative\": expected FROM=TO");
    o.label_map = NULL;

    /* A line without a tab: an error, skipped with the bad rows, or the whole text
     * with label -1. */
    p = put("notab.tsv", "ada label\tpositive\ntanpa label di sini\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("notab.tsv:2: expected text<TAB>label");
    o.skip_bad_rows = true;
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && d.skipped == 1);
    qb_dataset_free(&d);
    o.skip_bad_rows = false;
    o.allow_unlabelled = true;
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && d.labels[0] == 0 && d.labels[1] == -1);
    if (d.count == 2) CHECK(strcmp(d.texts[1], "tanpa label di sini") == 0);
    qb_dataset_free(&d);

    CHECK(qb_dataset_load("/nonexistent/qbert/x.tsv", &o, &d) == QB_EIO);
    CHECK_ERR("/nonexistent/qbert/x.tsv");
}

static void test_csv(void)
{
    qb_data_options o = opts();
    qb_dataset d;
    /* Quoted commas, doubled quotes, an embedded newline (then a row whose line number
     * must account for it), an empty quoted field that is not the text. */
    const char *p = put("quoted.csv",
                        "id,text,label\n"
                        "1,\"halo, dunia\",positive\n"
                        "2,\"dia bilang \"\"ya\"\"\",neutral\n"
                        "3,\"baris satu\nbaris dua\",negative\n"
                        "\"\",akhir,positive\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 4);
    if (d.count == 4) {
        CHECK(strcmp(d.texts[0], "halo, dunia") == 0);
        CHECK(strcmp(d.texts[1], "dia bilang \"ya\"") == 0);
        CHECK(strcmp(d.texts[2], "baris satu\nbaris dua") == 0);
        CHECK(strcmp(d.texts[3], "akhir") == 0);
        CHECK(d.labels[0] == 0 && d.labels[1] == 1 && d.labels[2] == 2 && d.labels[3] == 0);
        CHECK(d.lines[0] == 2 && d.lines[1] == 3 && d.lines[2] == 4 && d.lines[3] == 6);
    }
    qb_dataset_free(&d);

    /* Columns in any order, chosen by name; CRLF; a BOM before the header; a blank line. */
    o.text_column = "kalimat";
    o.label_column = "sentimen";
    p = put("named.csv", "\xEF\xBB\xBF" "sentimen,no,kalimat\r\n1,7,\"a,b\"\r\n\r\nnegative,8,c d\r\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2);
    if (d.count == 2) {
        CHECK(strcmp(d.texts[0], "a,b") == 0 && d.labels[0] == 1 && d.lines[0] == 2);
        CHECK(strcmp(d.texts[1], "c d") == 0 && d.labels[1] == 2 && d.lines[1] == 4);
    }
    qb_dataset_free(&d);

    /* A missing column names the file and lists the header. */
    p = put("missing.csv", "id,sentence,label\n1,x,positive\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_ENOTFOUND);
    CHECK_ERR("missing.csv");
    CHECK_ERR("'kalimat'");
    CHECK_ERR("'id', 'sentence', 'label'");
    o.text_column = "sentence";
    CHECK(qb_dataset_load(p, &o, &d) == QB_ENOTFOUND);
    CHECK_ERR("'sentimen'");
    /* ... unless unlabelled rows are allowed: label -1. */
    o.allow_unlabelled = true;
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && d.labels[0] == -1 && strcmp(d.texts[0], "x") == 0);
    qb_dataset_free(&d);
    o = opts();

    p = put("fields.csv", "text,label\na,positive\nb,negative,extra\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("fields.csv:3: expected 2 fields as in the header, found 3");

    p = put("unterminated.csv", "text,label\na,positive\n\"tidak selesai,positive\nb,negative\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("unterminated.csv:3: unterminated quoted field");

    p = put("afterquote.csv", "text,label\n\"a\"b,positive\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("afterquote.csv:2:");

    p = put("twice.csv", "text,text,label\na,b,positive\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("appears twice");

    /* Bad content in CSV rows reports the row's first line. */
    p = put("csvlabel.csv", "text,label\n\"dua\nbaris\",positive\nx,bagus\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("csvlabel.csv:4: label 'bagus'");

    /* Format by extension (any case), or forced. */
    p = put("upper.CSV", "text,label\nhalo,neutral\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && strcmp(d.texts[0], "halo") == 0);
    qb_dataset_free(&d);
    p = put("forced.txt", "label,text\nneutral,\"x\ty\"\n");
    o.format = QB_FORMAT_CSV;
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 1 && strcmp(d.texts[0], "x\ty") == 0 && d.labels[0] == 1);
    qb_dataset_free(&d);
    o.format = QB_FORMAT_TSV; /* the same file read as TSV: no tab in line 1 */
    CHECK(qb_dataset_load(p, &o, &d) == QB_EFORMAT);
    CHECK_ERR("forced.txt:1: expected text<TAB>label");

    /* Record ends as Python's csv module reads them: a bare \r, and \r\n after a
     * quoted last field with no final newline (or a lone \r there); spaces after a
     * closing quote. */
    o = opts();
    p = put("cr.csv", "text,label\rsatu,positive\r\"dua\",negative\r");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && d.lines[0] == 2 && d.lines[1] == 3 && d.labels[1] == 2);
    qb_dataset_free(&d);
    p = put("crlf_end.csv", "text,label\r\n\"satu\",\"positive\"\r\n\"dua\",\"negative\"");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && strcmp(d.texts[1], "dua") == 0 && d.labels[1] == 2);
    qb_dataset_free(&d);
    p = put("space.csv", "text,label\n\"satu\" ,positive\n\"dua, tiga\"  ,\"neutral\"  \n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && strcmp(d.texts[1], "dua, tiga") == 0 && d.labels[1] == 1);
    qb_dataset_free(&d);

    /* A delimiter: a TSV with a header row, by column name (and quotes). */
    o.delimiter = '\t';
    o.label_column = "sentiment";
    p = put("header.tsv", "id\ttext\tsentiment\n1\tsaya, suka\tpositive\n2\t\"a\tb\"\tnegative\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2 && strcmp(d.texts[0], "saya, suka") == 0 && strcmp(d.texts[1], "a\tb") == 0 &&
          d.labels[1] == 2);
    qb_dataset_free(&d);
    o.delimiter = '"';
    CHECK(qb_dataset_load(p, &o, &d) == QB_EINVAL);
    CHECK_ERR("delimiter");

    /* From memory: the name picks the format and appears in messages. */
    o = opts();
    const char buf[] = "text,label\nsatu,positive\ndua,oops\n";
    CHECK(qb_dataset_load_buffer("mem.csv", buf, 24, &o, &d) == QB_OK); /* header + row 1 */
    CHECK(d.count == 1 && strcmp(d.path, "mem.csv") == 0);
    qb_dataset_free(&d);
    CHECK(qb_dataset_load_buffer("mem.csv", buf, sizeof buf - 1, &o, &d) == QB_EFORMAT);
    CHECK_ERR("mem.csv:3: label 'oops'");
}

static void test_utf8(void)
{
    int n = -1;
    char *s = qb_utf8_sanitize("caf\xE9 enak", 9, &n);
    CHECK(s && strcmp(s, "caf" FFFD " enak") == 0 && n == 1);
    free(s);
    /* Maximal subparts: a truncated sequence is one U+FFFD, C0 AF and a surrogate are
     * one per byte, an out-of-range F4 90.. is one per byte, a valid euro sign stays. */
    static const char mixed[] = "\xE2\x82x|\xF0\x9F\x98 |\xC0\xAF|\xED\xA0\x80|\xF4\x90\x80\x80|\xE2\x82\xAC\xFF";
    s = qb_utf8_sanitize(mixed, sizeof mixed - 1, &n);
    CHECK(s && strcmp(s, FFFD "x|" FFFD " |" FFFD FFFD "|" FFFD FFFD FFFD "|" FFFD FFFD FFFD FFFD
                         "|\xE2\x82\xAC" FFFD) == 0);
    CHECK(n == 1 + 1 + 2 + 3 + 4 + 1);
    free(s);
    /* A NUL byte would cut the C string: replaced too. Valid text is copied as is. */
    s = qb_utf8_sanitize("a\0b", 3, &n);
    CHECK(s && strcmp(s, "a" FFFD "b") == 0 && n == 1);
    free(s);
    s = qb_utf8_sanitize("çok güzel \xF0\x9F\x98\x80", strlen("çok güzel \xF0\x9F\x98\x80"), &n);
    CHECK(s && strcmp(s, "çok güzel \xF0\x9F\x98\x80") == 0 && n == 0);
    free(s);

    qb_data_options o = opts();
    qb_dataset d;
    const char *p = put("utf8.tsv", "caf\xE9 enak\tpositive\nbaik \xC3\tneutral\n");
    CHECK(qb_dataset_load(p, &o, &d) == QB_OK);
    CHECK(d.count == 2);
    if (d.count == 2) {
        CHECK(strcmp(d.texts[0], "caf" FFFD " enak") == 0);
        CHECK(strcmp(d.texts[1], "baik " FFFD) == 0);
    }
    qb_dataset_free(&d);
}

static char *pre(const char *text, const qb_data_options *o, const qb_stopwords *sw)
{
    static char out[1024];
    char *s = qb_preprocess(text, o, sw);
    snprintf(out, sizeof out, "%s", s ? s : "(null)");
    free(s);
    return out;
}

#define CHECK_PRE(text, o, sw, want)                                                   \
    do {                                                                               \
        const char *got_ = pre(text, o, sw);                                           \
        CHECKF(strcmp(got_, want) == 0, "preprocess(\"%s\") = \"%s\", want \"%s\"",    \
               text, got_, want);                                                      \
    } while (0)

static void test_preprocess(void)
{
    qb_stopwords *sw = NULL;
    CHECK(qb_stopwords_load(NULL, &sw) == QB_OK);

    qb_data_options none;
    qb_data_default_options(&none);
    none.lowercase = false;
    CHECK_PRE("  Apa Adanya, 123!  ", &none, NULL, "  Apa Adanya, 123!  ");
    CHECK_PRE("rusak \xFF", &none, NULL, "rusak " FFFD);

    qb_data_options o = none;
    o.lowercase = true;
    CHECK_PRE("Halo DUNIA, \xC3\x84RGER \xC3\x89" "COLE \xCE\xA3 123!", &o, NULL,
              "halo dunia, \xC3\xA4rger \xC3\xA9" "cole \xCF\x83 123!");

    o = none;
    o.remove_non_alpha = true;
    /* ',' '!' and each digit become one space each; the tab is whitespace and stays;
     * 'é' and 'ï' are letters; the em dash (U+2014) and U+FFFD become spaces. */
    CHECK_PRE("Halo, dunia! 123 ok\tya", &o, NULL, "Halo  dunia      ok\tya");
    CHECK_PRE("caf\xC3\xA9\xE2\x80\x94na\xC3\xAFve \xFF_x", &o, NULL, "caf\xC3\xA9 na\xC3\xAFve   x");
    /* A combining acute accent (U+0301) stays on its letter. */
    CHECK_PRE("cafe\xCC\x81!", &o, NULL, "cafe\xCC\x81 ");

    o = none;
    o.collapse_whitespace = true;
    CHECK_PRE("  a \t b\n\nc  ", &o, NULL, "a b c");
    /* No-break space (U+00A0) and ideographic space (U+3000) are whitespace;
     * zero-width space (U+200B) is not (as in Python's str.isspace). */
    CHECK_PRE("a\xC2\xA0\xC2\xA0" "b\xE3\x80\x80" "c\xE2\x80\x8B" "d", &o, NULL, "a b c\xE2\x80\x8B" "d");
    CHECK_PRE(" \t\n ", &o, NULL, "");

    o = none;
    o.remove_stopwords = true;
    CHECK_PRE("saya suka makanan yang enak di sini", &o, sw, "suka makanan enak");
    /* Case-sensitive, and the split/join collapses whitespace. */
    CHECK_PRE("Yang  enak\tdi  sana", &o, sw, "Yang enak");
    CHECK(qb_preprocess("x", &o, NULL) == NULL);

    /* All four, in order: lowercase, non-letters, whitespace, stopwords. */
    o.lowercase = o.remove_non_alpha = o.collapse_whitespace = o.remove_stopwords = true;
    CHECK_PRE("Saya SUKA makanan-nya, YANG enak di Bandung!!! 100%", &o, sw, "suka makanan enak bandung");
    /* Lowercasing happens before stopword removal: "YANG" goes. */
    CHECK_PRE("YANG Terbaik", &o, sw, "terbaik");
    qb_stopwords_free(sw);
}

static void test_stopwords(void)
{
    qb_stopwords *sw = NULL;
    CHECK(qb_stopwords_load(NULL, &sw) == QB_OK);
    /* The shipped list: 300..750 distinct lowercase ASCII words, sorted, every one found. */
    CHECK(qb_stopwords_id_count >= 300 && qb_stopwords_id_count <= 750);
    CHECK(qb_stopwords_count(sw) == qb_stopwords_id_count);
    for (int i = 0; i < qb_stopwords_id_count; i++) {
        const char *w = qb_stopwords_id[i];
        bool ok = w[0] != '\0' && qb_stopwords_contains(sw, w, strlen(w));
        for (const char *c = w; *c; c++) ok = ok && ((*c >= 'a' && *c <= 'z') || *c == '-');
        if (i > 0) ok = ok && strcmp(qb_stopwords_id[i - 1], w) < 0;
        CHECKF(ok, "built-in stopword %d '%s'", i, w);
    }
    const char *expected[] = {"yang", "di", "dan", "itu", "dengan", "untuk", "tidak", "ini", "dari",
                              "dalam", "akan", "pada", "juga", "saya", "ke", "karena", "tersebut",
                              "bisa", "ada", "mereka", "lebih", "kata", "tahun", "sudah", "atau",
                              "saat", "oleh", "menjadi", "orang", "ia", "telah", "adalah", "seperti",
                              "sebagai"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECKF(qb_stopwords_contains(sw, expected[i], strlen(expected[i])), "'%s' missing", expected[i]);
    CHECK(!qb_stopwords_contains(sw, "enak", 4));
    CHECK(!qb_stopwords_contains(sw, "yan", 3));
    CHECK(qb_stopwords_contains(sw, "yangx", 4)); /* by length: "yang" */
    qb_stopwords_free(sw);

    /* A user file: comments, blank lines, \r\n, surrounding spaces, duplicates, a BOM. */
    const char *p = put("stop.txt", "\xEF\xBB\xBF# kata yang dibuang\nenak\n\n  makanan  # sebaris\r\nenak\n#\n");
    CHECK(qb_stopwords_load(p, &sw) == QB_OK);
    CHECK(qb_stopwords_count(sw) == 2);
    CHECK(qb_stopwords_contains(sw, "enak", 4) && qb_stopwords_contains(sw, "makanan", 7));
    CHECK(!qb_stopwords_contains(sw, "yang", 4));
    qb_data_options o;
    qb_data_default_options(&o);
    o.remove_stopwords = true;
    CHECK_PRE("Makanan ENAK yang sekali", &o, sw, "yang sekali");
    qb_stopwords_free(sw);

    p = put("stop2.txt", "satu\ndua kata\n");
    CHECK(qb_stopwords_load(p, &sw) == QB_EFORMAT && sw == NULL);
    CHECK_ERR("stop2.txt:2:");
    p = put("stop3.txt", "# hanya komentar\n\n");
    CHECK(qb_stopwords_load(p, &sw) == QB_EFORMAT);
    CHECK_ERR("stop3.txt: no stopwords");
    CHECK(qb_stopwords_load("/nonexistent/qbert/stop.txt", &sw) == QB_EIO && sw == NULL);
    CHECK_ERR("/nonexistent/qbert/stop.txt");

    /* Through the data set: the stopword file is named in the error. */
    qb_data_options d_o = opts();
    d_o.remove_stopwords = true;
    d_o.stopwords_file = "/nonexistent/qbert/stop.txt";
    qb_dataset d;
    const char *data = put("sw.tsv", "Yang di sini\tpositive\nSAYA suka, enak!\tnegative\n");
    CHECK(qb_dataset_load(data, &d_o, &d) == QB_EIO);
    CHECK_ERR("/nonexistent/qbert/stop.txt");
    CHECK_ERR("sw.tsv");

    /* Preprocessing through the loader; a text emptied by it is kept. */
    d_o.stopwords_file = NULL;
    d_o.lowercase = d_o.remove_non_alpha = d_o.collapse_whitespace = true;
    CHECK(qb_dataset_load(data, &d_o, &d) == QB_OK);
    CHECK(d.count == 2);
    if (d.count == 2) {
        CHECK(strcmp(d.texts[0], "") == 0);
        CHECK(strcmp(d.texts[1], "suka enak") == 0);
    }
    qb_dataset_free(&d);
}

/* Reads a whole file into a malloc'ed buffer; NULL when absent. */
static char *slurp(const char *path, size_t *len)
{
    char *buf;
    return qb_read_file(path, &buf, len) == QB_OK ? buf : NULL;
}

static void test_sample(void)
{
    static const char *const files[] = {"train.tsv", "valid.tsv", "test.tsv"};
    static const int rows[] = {300, 60, 60};
    qb_dataset sets[3];
    qb_data_options o = opts();
    for (int f = 0; f < 3; f++) {
        size_t len = 0;
        const char *buf = qb_sample_data(files[f], &len);
        CHECKF(buf != NULL && len > 0 && buf[len] == '\0', "sample %s", files[f]);
        memset(&sets[f], 0, sizeof sets[f]);
        if (!buf) continue;
        /* The embedded bytes are the committed file's bytes. */
        char path[256];
        snprintf(path, sizeof path, "../data/sample/%s", files[f]);
        size_t flen;
        char *disk = slurp(path, &flen);
        CHECKF(disk && flen == len && memcmp(disk, buf, len) == 0, "embedded %s differs from %s", files[f], path);
        free(disk);

        CHECKF(qb_dataset_load_buffer(files[f], buf, len, &o, &sets[f]) == QB_OK, "%s", qb_error());
        CHECKF(sets[f].count == rows[f], "%s: %d rows", files[f], sets[f].count);
        int per[3] = {0, 0, 0};
        for (int i = 0; i < sets[f].count; i++)
            if (sets[f].labels[i] >= 0 && sets[f].labels[i] < 3) per[sets[f].labels[i]]++;
        CHECKF(per[0] == rows[f] / 3 && per[1] == rows[f] / 3 && per[2] == rows[f] / 3,
               "%s: labels %d/%d/%d", files[f], per[0], per[1], per[2]);
    }
    CHECK(qb_sample_data("other.tsv", NULL) == NULL);
    /* No sentence appears twice, within or across splits. */
    int dup = 0;
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < sets[a].count; i++)
            for (int b = a; b < 3; b++)
                for (int j = (b == a ? i + 1 : 0); j < sets[b].count; j++)
                    dup += strcmp(sets[a].texts[i], sets[b].texts[j]) == 0;
    CHECKF(dup == 0, "%d duplicated sentences in the sample data", dup);
    for (int f = 0; f < 3; f++) qb_dataset_free(&sets[f]);
}

static void test_smsa(void)
{
    static const char *const files[] = {"train.tsv", "valid.tsv", "test.tsv"};
    static const int rows[] = {11000, 1260, 1000};
    const char *ci = getenv("CI");
    if (!qb_file_exists("../../shared/data/smsa/train.tsv")) {
        if (ci && strcmp(ci, "true") == 0) {
            CHECKF(0, "CI=true but ../../shared/data/smsa is missing");
        } else {
            printf("skipped: SmSA (../../shared/data/smsa not found)\n");
        }
        return;
    }
    qb_data_options o = opts();
    for (int f = 0; f < 3; f++) {
        char path[256];
        snprintf(path, sizeof path, "../../shared/data/smsa/%s", files[f]);
        qb_dataset d;
        qb_status st = qb_dataset_load(path, &o, &d);
        CHECKF(st == QB_OK, "%s", qb_error());
        CHECKF(d.count == rows[f], "%s: %d rows, want %d", path, d.count, rows[f]);
        int bad = 0;
        for (int i = 0; i < d.count; i++) bad += d.labels[i] < 0 || d.labels[i] > 2 || d.texts[i][0] == '\0';
        CHECKF(bad == 0, "%s: %d rows with a bad label or an empty text", path, bad);
        qb_dataset_free(&d);
    }
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR); /* the skip / repair warnings are expected here */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qbert_test_data_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_tsv_basics();
    test_labels();
    test_discover();
    test_bad_rows();
    test_csv();
    test_utf8();
    test_preprocess();
    test_stopwords();
    test_sample();
    test_smsa();
    for (int i = 0; i < n_written; i++) unlink(written[i]);
    rmdir(tmpdir);
    return check_summary("test_data");
}
