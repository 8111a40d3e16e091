/* Labelled data sets: SmSA-style TSV (text<TAB>label, no header) and CSV with a header
 * row (RFC 4180), from a file or a memory buffer. The reading rules are listed in
 * include/qbert/data.h; the choices behind them:
 *
 * - TSV splits at the LAST tab: a label never contains a tab, a text might.
 * - Structural errors (a TSV line without a tab, a CSV row with the wrong number of
 *   fields, an unterminated quote) always fail: the file is not what we think it is.
 *   Content errors (unknown or empty label, empty text) fail too, or are skipped and
 *   counted under skip_bad_rows, since real corpora have a few of those.
 * - Invalid UTF-8 is repaired (U+FFFD), not rejected, so downstream code only ever sees
 *   valid UTF-8 and one stray byte does not make a 10 000-row corpus unusable.
 * - Line numbers are physical lines (1-based), counting the newlines inside quoted CSV
 *   fields, so a message points at the line an editor shows. */
#include "qbert/data.h"

#include "data/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void qb_data_default_options(qb_data_options *o)
{
    memset(o, 0, sizeof *o);
    o->format = QB_FORMAT_AUTO;
    o->text_column = "text";
    o->label_column = "label";
    o->lowercase = true;
}

void qb_dataset_free(qb_dataset *d)
{
    if (!d) return;
    for (int i = 0; i < d->count; i++) free(d->texts[i]);
    free(d->texts);
    free(d->labels);
    free(d->lines);
    free(d->path);
    for (int i = 0; i < d->n_label_names; i++) free(d->label_names[i]);
    free(d->label_names);
    memset(d, 0, sizeof *d);
}

/* State of one load: the options, the growing data set and what the warnings report. */
typedef struct {
    const char *name;
    const qb_data_options *o;
    qb_stopwords *sw;          /* set when remove_stopwords */
    bool preprocess;           /* any preprocessing step enabled */
    char label_list[256];      /* "positive, neutral, negative" for messages */
    qb_dataset *d;
    int cap;
    int n_invalid, first_invalid_line;
    int n_emptied;             /* texts that preprocessing left empty (kept) */
    char first_skip[512];      /* message of the first skipped row */
    /* label_map parsed: the file's label from[i] is read as to[i] */
    char map_text[1024];
    const char *map_from[64], *map_to[64];
    int n_map;
    unsigned long long ids_seen;  /* integer labels read (bit i: id i, i < 64), for the count warning */
    qb_strmap *discovered;     /* discover_labels: the names seen */
    bool by_id;
} loader;

static bool is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ascii_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_ascii_space((*s)[*n - 1])) (*n)--;
}

/* A row with bad content: an error, or counted and skipped under skip_bad_rows. */
static qb_status bad_row(loader *L, const char *msg)
{
    if (!L->o->skip_bad_rows) return qb_fail(QB_EFORMAT, "%s", msg);
    if (L->d->skipped++ == 0) snprintf(L->first_skip, sizeof L->first_skip, "%s", msg);
    return QB_OK;
}

/* Parses a label field s[0..n) (already trimmed) into *label; false with a message. */
static bool parse_label(loader *L, const char *s, size_t n, int line, int *label,
                        char *msg, size_t cap)
{
    const qb_data_options *o = L->o;
    if (o->discover_labels) {
        *label = qb_strmap_intern(L->discovered, s, n);
        if (*label < 0) snprintf(msg, cap, "%s:%d: out of memory for the label names", L->name, line);
        return *label >= 0;
    }
    if (o->label_names) {
        for (int i = 0; i < o->n_labels; i++) {
            if (strlen(o->label_names[i]) == n && memcmp(o->label_names[i], s, n) == 0) {
                *label = i;
                return true;
            }
        }
    }
    /* An id: decimal digits only, at most 9 so that it fits an int. */
    bool digits = n > 0 && n <= 9;
    long v = 0;
    for (size_t i = 0; digits && i < n; i++) {
        if (s[i] < '0' || s[i] > '9') digits = false;
        else v = v * 10 + (s[i] - '0');
    }
    if (digits && (o->n_labels == 0 || v < o->n_labels)) {
        *label = (int)v;
        L->by_id = true;
        if (v < 64) L->ids_seen |= 1ull << v;
        return true;
    }
    if (o->label_names)
        snprintf(msg, cap, "%s:%d: label '%.*s' is not one of %s (or an id in [0, %d))", L->name,
                 line, (int)(n > 60 ? 60 : n), s, L->label_list, o->n_labels);
    else if (o->n_labels > 0)
        snprintf(msg, cap, "%s:%d: label '%.*s' is not an integer in [0, %d)", L->name, line,
                 (int)(n > 60 ? 60 : n), s, o->n_labels);
    else
        snprintf(msg, cap, "%s:%d: label '%.*s' is not a non-negative integer", L->name, line,
                 (int)(n > 60 ? 60 : n), s);
    return false;
}

/* Appends one row; takes ownership of `text` (freed on failure). */
static qb_status push_row(loader *L, char *text, int label, int line)
{
    qb_dataset *d = L->d;
    if (d->count == L->cap) {
        if (L->cap > (1 << 29)) {
            free(text);
            return qb_fail(QB_EUNSUPPORTED, "%s: more than %d rows", L->name, L->cap);
        }
        size_t cap = L->cap ? 2 * (size_t)L->cap : 256;
        char **t = realloc(d->texts, cap * sizeof *t);
        if (t) d->texts = t;
        int *lb = t ? realloc(d->labels, cap * sizeof *lb) : NULL;
        if (lb) d->labels = lb;
        int *ln = lb ? realloc(d->lines, cap * sizeof *ln) : NULL;
        if (!ln) {
            free(text);
            return qb_fail(QB_ENOMEM, "%s: cannot allocate %zu rows", L->name, cap);
        }
        d->lines = ln;
        L->cap = (int)cap;
    }
    d->texts[d->count] = text;
    d->labels[d->count] = label;
    d->lines[d->count] = line;
    d->count++;
    return QB_OK;
}

/* Checks, repairs, preprocesses and appends one row. `label` is NULL when the row has
 * no label field (allowed only under allow_unlabelled; the callers check). */
static qb_status add_row(loader *L, const char *text, size_t tlen, const char *label,
                         size_t llen, int line)
{
    char msg[512];
    trim(&text, &tlen);
    if (tlen == 0) {
        snprintf(msg, sizeof msg, "%s:%d: empty text", L->name, line);
        L->d->skipped_empty += L->o->skip_bad_rows;
        return bad_row(L, msg);
    }
    int id = -1;
    if (label) {
        trim(&label, &llen);
        for (int i = 0; i < L->n_map; i++)  /* --label-map: the file's label as the model's */
            if (strlen(L->map_from[i]) == llen && memcmp(L->map_from[i], label, llen) == 0) {
                label = L->map_to[i], llen = strlen(label);
                break;
            }
        if (llen == 0 && !L->o->allow_unlabelled) {
            snprintf(msg, sizeof msg, "%s:%d: empty label", L->name, line);
            return bad_row(L, msg);
        }
        if (llen > 0 && !parse_label(L, label, llen, line, &id, msg, sizeof msg))
            return bad_row(L, msg);
    }
    int bad;
    char *clean = qb_utf8_sanitize(text, tlen, &bad);
    if (!clean) return qb_fail(QB_ENOMEM, "%s:%d: cannot allocate the text", L->name, line);
    if (bad > 0 && L->n_invalid == 0) L->first_invalid_line = line;
    L->n_invalid += bad;
    if (L->preprocess) {
        char *p = qb_preprocess(clean, L->o, L->sw);
        free(clean);
        if (!p) return qb_fail(QB_ENOMEM, "%s:%d: cannot allocate the preprocessed text", L->name, line);
        if (p[0] == '\0') L->n_emptied++;
        clean = p;
    }
    return push_row(L, clean, id, line);
}

/* ---- TSV ------------------------------------------------------------------------ */

/* Discovering labels, a first row whose label field is the label column's name is a
 * header (it would become a class of its own): a bad row that says so. */
static bool tsv_header(const loader *L, const char *label, size_t n, int line, char *msg, size_t cap)
{
    const char *name = L->o->label_column ? L->o->label_column : "label";
    trim(&label, &n);
    if (!L->o->discover_labels || L->d->count + L->d->skipped > 0 || strlen(name) != n || memcmp(label, name, n) != 0)
        return false;
    snprintf(msg, cap, "%s:%d: a header row (label field '%s'): a TSV with a header is read as CSV with a tab "
             "delimiter (--delimiter tab)", L->name, line, name);
    return true;
}

static qb_status parse_tsv(loader *L, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    char msg[512];
    for (int line = 1; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *e = eol ? eol : end;
        if (e > p && e[-1] == '\r') e--;
        const char *q = p;
        while (q < e && is_ascii_space(*q)) q++;
        if (q == e) { /* blank line */
            p = next;
            continue;
        }
        const char *tab = NULL;
        for (const char *c = e; c > p; c--) {
            if (c[-1] == '\t') {
                tab = c - 1;
                break;
            }
        }
        qb_status st;
        if (tab && tsv_header(L, tab + 1, (size_t)(e - tab - 1), line, msg, sizeof msg)) {
            st = bad_row(L, msg);
        } else if (tab) {
            st = add_row(L, p, (size_t)(tab - p), tab + 1, (size_t)(e - tab - 1), line);
        } else if (L->o->allow_unlabelled) {
            st = add_row(L, p, (size_t)(e - p), NULL, 0, line);
        } else {  /* skippable like any bad row */
            snprintf(msg, sizeof msg, "%s:%d: expected text<TAB>label, found no tab", L->name, line);
            st = bad_row(L, msg);
        }
        if (st != QB_OK) return st;
        p = next;
    }
    return QB_OK;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *p, *end;
    int line;          /* the line *p is on */
    char delim;        /* ',' or the delimiter option */
    char *buf;         /* unescaped fields of the current record; as large as the input */
    size_t used;
    size_t *off, *len; /* field i is buf[off[i] .. off[i] + len[i]) */
    int n, cap;
} csv_reader;

/* A record ends at \n, \r\n or a bare \r, as in Python's csv module. */
static bool csv_eol(const char *q) { return *q == '\n' || *q == '\r'; }

/* Steps over the line end at *q (one or two bytes), counting the line. */
static void csv_skip_eol(csv_reader *r)
{
    r->p += *r->p == '\r' && r->p + 1 < r->end && r->p[1] == '\n' ? 2 : 1;
    r->line++;
}

static qb_status csv_add_field(csv_reader *r, size_t off)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        size_t *o = realloc(r->off, (size_t)cap * sizeof *o);
        if (o) r->off = o;
        size_t *l = o ? realloc(r->len, (size_t)cap * sizeof *l) : NULL;
        if (!l) return qb_fail(QB_ENOMEM, "%s:%d: cannot allocate %d fields", r->name, r->line, cap);
        r->len = l;
        r->cap = cap;
    }
    r->off[r->n] = off;
    r->len[r->n] = r->used - off;
    r->n++;
    return QB_OK;
}

/* Reads the next record into r->buf / r->off / r->len, skipping blank lines (empty or
 * only spaces and tabs). *got is false at the end of the input; *rec_line is the line
 * the record starts on. Quotes inside an unquoted field are kept as they are (as
 * Python's csv module does); after a closing quote, spaces and tabs, then only the
 * delimiter or a line end may follow. */
static qb_status csv_next(csv_reader *r, int *rec_line, bool *got)
{
    *got = false;
    for (;;) {
        const char *q = r->p;
        while (q < r->end && (*q == ' ' || (*q == '\t' && r->delim != '\t'))) q++;
        if (q >= r->end) {
            r->p = q;
            return QB_OK;
        }
        if (!csv_eol(q)) break;
        r->p = q;
        csv_skip_eol(r);
    }
    *rec_line = r->line;
    r->n = 0;
    r->used = 0;
    for (;;) {
        size_t off = r->used;
        if (r->p < r->end && *r->p == '"') {
            int open_line = r->line;
            r->p++;
            for (;;) {
                if (r->p >= r->end)
                    return qb_fail(QB_EFORMAT, "%s:%d: unterminated quoted field (the quote opens on this line)",
                                   r->name, open_line);
                char c = *r->p;
                if (c == '"') {
                    if (r->p + 1 < r->end && r->p[1] == '"') { /* "" is one quote */
                        r->buf[r->used++] = '"';
                        r->p += 2;
                        continue;
                    }
                    r->p++;
                    break;
                }
                if (c == '\n' || (c == '\r' && (r->p + 1 >= r->end || r->p[1] != '\n'))) r->line++;
                r->buf[r->used++] = c;
                r->p++;
            }
            while (r->p < r->end && (*r->p == ' ' || (*r->p == '\t' && r->delim != '\t'))) r->p++;
            if (r->p < r->end && *r->p != r->delim && !csv_eol(r->p))
                return qb_fail(QB_EFORMAT, "%s:%d: expected the delimiter or a line end after a closing quote, "
                               "found '%c'", r->name, r->line, *r->p);
        } else {
            while (r->p < r->end && *r->p != r->delim && !csv_eol(r->p)) r->buf[r->used++] = *r->p++;
        }
        qb_status st = csv_add_field(r, off);
        if (st != QB_OK) return st;
        if (r->p >= r->end) break;
        if (*r->p == r->delim) {
            r->p++;
            continue;
        }
        csv_skip_eol(r);
        break;
    }
    *got = true;
    return QB_OK;
}

/* Index of the header column named `want` (names trimmed); -1 when absent. */
static qb_status csv_find_column(const csv_reader *r, const char *want, int *col)
{
    *col = -1;
    for (int i = 0; i < r->n; i++) {
        const char *s = r->buf + r->off[i];
        size_t n = r->len[i];
        trim(&s, &n);
        if (n != strlen(want) || memcmp(s, want, n) != 0) continue;
        if (*col >= 0)
            return qb_fail(QB_EFORMAT, "%s: column '%s' appears twice in the header", r->name, want);
        *col = i;
    }
    return QB_OK;
}

static qb_status csv_missing_column(const csv_reader *r, const char *want)
{
    char cols[600];
    size_t used = 0;
    cols[0] = '\0';
    for (int i = 0; i < r->n && used < sizeof cols; i++) {
        const char *s = r->buf + r->off[i];
        size_t n = r->len[i];
        trim(&s, &n);
        int w = snprintf(cols + used, sizeof cols - used, "%s'%.*s'", i ? ", " : "", (int)(n > 60 ? 60 : n), s);
        if (w < 0) break;
        used += (size_t)w;
    }
    return qb_fail(QB_ENOTFOUND, "%s: no column '%s' in the header (its columns: %s)", r->name, want, cols);
}

static qb_status parse_csv(loader *L, const char *buf, size_t len)
{
    csv_reader r = {.name = L->name, .p = buf, .end = buf + len, .line = 1,
                    .delim = L->o->delimiter ? L->o->delimiter : ','};
    r.buf = malloc(len + 1);
    if (!r.buf) return qb_fail(QB_ENOMEM, "%s: cannot allocate %zu bytes", L->name, len + 1);
    const char *text_name = L->o->text_column ? L->o->text_column : "text";
    const char *label_name = L->o->label_column ? L->o->label_column : "label";
    int line, text_col = -1, label_col = -1, n_cols = 0;
    bool got;
    qb_status st = csv_next(&r, &line, &got);
    if (st == QB_OK && got) {
        n_cols = r.n;
        st = csv_find_column(&r, text_name, &text_col);
        if (st == QB_OK) st = csv_find_column(&r, label_name, &label_col);
        if (st == QB_OK && text_col < 0) st = csv_missing_column(&r, text_name);
        if (st == QB_OK && label_col < 0 && !L->o->allow_unlabelled) st = csv_missing_column(&r, label_name);
    }
    while (st == QB_OK && got) {
        st = csv_next(&r, &line, &got);
        if (st != QB_OK || !got) break;
        if (r.n != n_cols) {
            st = qb_fail(QB_EFORMAT, "%s:%d: expected %d fields as in the header, found %d", L->name, line,
                         n_cols, r.n);
            break;
        }
        const char *label = label_col >= 0 ? r.buf + r.off[label_col] : NULL;
        size_t llen = label_col >= 0 ? r.len[label_col] : 0;
        st = add_row(L, r.buf + r.off[text_col], r.len[text_col], label, llen, line);
    }
    free(r.buf);
    free(r.off);
    free(r.len);
    return st;
}

/* ---- loading ------------------------------------------------------------------- */

/* label_map "FROM=TO,FROM=TO" into L->map_from / map_to (copies in L->map_text). */
static qb_status parse_label_map(loader *L, const char *map)
{
    if (!map || !*map) return QB_OK;
    if (snprintf(L->map_text, sizeof L->map_text, "%s", map) >= (int)sizeof L->map_text)
        return qb_fail(QB_EINVAL, "label map \"%.40s...\": longer than %zu bytes", map, sizeof L->map_text - 1);
    for (char *p = L->map_text, *next; p; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = '\0';
        char *eq = strchr(p, '=');
        const char *from = p, *to = eq ? eq + 1 : NULL;
        size_t fn = eq ? (size_t)(eq - p) : 0, tn = to ? strlen(to) : 0;
        if (eq) trim(&from, &fn), trim(&to, &tn);
        if (!eq || !fn || !tn || L->n_map == 64)
            return qb_fail(QB_EINVAL, "label map \"%s\": expected FROM=TO pairs separated by commas (at most 64), "
                           "e.g. 0=negative,1=positive", map);
        ((char *)from)[fn] = '\0', ((char *)to)[tn] = '\0';
        L->map_from[L->n_map] = from, L->map_to[L->n_map++] = to;
    }
    return QB_OK;
}

/* Integer labels that do not cover the model's classes often mean other classes. */
static void warn_label_count(const loader *L)
{
    const int n = L->o->n_labels;
    if (!L->by_id || n <= 0 || n > 64 || L->n_map) return;
    const int seen = __builtin_popcountll(L->ids_seen);
    if (seen != n)
        qb_log(QB_LOG_WARN, "%s: its integer labels are %d of the model's %d classes (ids 0..%d): if they mean other "
               "classes, a label map (--label-map / data.label_map, e.g. 0=negative,1=positive) reads them as such",
               L->name, seen, n, n - 1);
}

static bool has_csv_extension(const char *name)
{
    size_t n = strlen(name);
    return n >= 4 && strcasecmp(name + n - 4, ".csv") == 0;
}

static qb_status check_options(const char *name, const qb_data_options *o)
{
    if (o->n_labels < 0) return qb_fail(QB_EINVAL, "%s: n_labels is %d (expected >= 0)", name, o->n_labels);
    if (o->delimiter == '"' || o->delimiter == '\n' || o->delimiter == '\r' || o->delimiter == ' ')
        return qb_fail(QB_EINVAL, "%s: the delimiter cannot be a quote, a space or a line end", name);
    if (o->label_names && o->n_labels == 0)
        return qb_fail(QB_EINVAL, "%s: label_names given with n_labels = 0", name);
    for (int i = 0; o->label_names && i < o->n_labels; i++)
        if (!o->label_names[i]) return qb_fail(QB_EINVAL, "%s: label_names[%d] is NULL", name, i);
    if (o->discover_labels && (o->label_names || o->n_labels || o->label_map))
        return qb_fail(QB_EINVAL, "%s: discover_labels takes no label names, count or map", name);
    return QB_OK;
}

/* The discovered label names into the data set. */
static qb_status take_label_names(const qb_strmap *m, qb_dataset *d)
{
    const int n = qb_strmap_count(m);
    if (!(d->label_names = calloc((size_t)(n ? n : 1), sizeof *d->label_names)))
        return qb_fail(QB_ENOMEM, "%s: out of memory", d->path);
    for (d->n_label_names = 0; d->n_label_names < n; d->n_label_names++)
        if (!(d->label_names[d->n_label_names] = qb_strdup(qb_strmap_key(m, d->n_label_names))))
            return qb_fail(QB_ENOMEM, "%s: out of memory", d->path);
    return QB_OK;
}

qb_status qb_dataset_load_buffer(const char *name, const char *buf, size_t len,
                                 const qb_data_options *o, qb_dataset *out)
{
    memset(out, 0, sizeof *out);
    qb_data_options defaults;
    if (!o) {
        qb_data_default_options(&defaults);
        o = &defaults;
    }
    qb_status st = check_options(name, o);
    if (st != QB_OK) return st;
    loader L = {.name = name, .o = o, .d = out};
    L.preprocess = o->lowercase || o->remove_non_alpha || o->collapse_whitespace || o->remove_stopwords;
    for (int i = 0; o->label_names && i < o->n_labels; i++) {
        size_t used = strlen(L.label_list);
        snprintf(L.label_list + used, sizeof L.label_list - used, "%s%s", i ? ", " : "", o->label_names[i]);
    }
    if (o->remove_stopwords) {
        st = qb_stopwords_load(o->stopwords_file, &L.sw);
        if (st != QB_OK) return qb_fail_context(st, "%s", name);
    }
    out->path = qb_strdup(name);
    if (!out->path) st = qb_fail(QB_ENOMEM, "%s: cannot allocate the name", name);

    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 byte order mark */
        buf += 3;
        len -= 3;
    }
    const bool csv = o->format == QB_FORMAT_CSV || o->delimiter ||
                     (o->format == QB_FORMAT_AUTO && has_csv_extension(name));
    if (st == QB_OK && (st = parse_label_map(&L, o->label_map))) st = qb_fail_context(st, "%s", name);
    if (st == QB_OK && o->discover_labels && !(L.discovered = qb_strmap_new()))
        st = qb_fail(QB_ENOMEM, "%s: out of memory", name);
    if (st == QB_OK) st = csv ? parse_csv(&L, buf, len) : parse_tsv(&L, buf, len);
    if (st == QB_OK && out->count == 0) {
        st = out->skipped ? qb_fail(QB_EFORMAT, "%s: no rows (all %d were skipped; the first: %s)", name,
                                    out->skipped, L.first_skip)
                          : qb_fail(QB_EFORMAT, "%s: no rows", name);
    }
    qb_stopwords_free(L.sw);
    if (st == QB_OK && L.discovered) st = take_label_names(L.discovered, out);
    qb_strmap_free(L.discovered);
    if (st != QB_OK) {
        qb_dataset_free(out);
        return st;
    }
    if (out->skipped)
        qb_log(QB_LOG_WARN, "%s: skipped %d bad rows (the first: %s)", name, out->skipped, L.first_skip);
    warn_label_count(&L);
    if (L.n_invalid)
        qb_log(QB_LOG_WARN, "%s: replaced %d invalid UTF-8 sequences by U+FFFD (the first on line %d)", name,
               L.n_invalid, L.first_invalid_line);
    if (L.n_emptied)
        qb_log(QB_LOG_WARN, "%s: preprocessing left %d texts empty (kept)", name, L.n_emptied);
    return QB_OK;
}

qb_status qb_dataset_load(const char *path, const qb_data_options *o, qb_dataset *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(path, "embedded:", 9) == 0) {  /* the sample set inside the binary */
        size_t len;
        const char *buf = qb_sample_data(path + 9, &len);
        if (!buf) return qb_fail(QB_ENOTFOUND, "%s: no such embedded data (train.tsv, valid.tsv, test.tsv)", path);
        return qb_dataset_load_buffer(path, buf, len, o, out);
    }
    char *buf;
    size_t len;
    qb_status st = qb_read_file(path, &buf, &len);
    if (st != QB_OK) return st;
    st = qb_dataset_load_buffer(path, buf, len, o, out);
    free(buf);
    return st;
}
