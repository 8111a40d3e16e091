/* Labelled text data sets: SmSA-style TSV (text<TAB>label, no header) and CSV with a
 * header (RFC 4180 quoting, embedded commas and newlines, UTF-8 BOM), plus the
 * research pipeline's optional preprocessing. */
#ifndef QBERT_DATA_H
#define QBERT_DATA_H

#include "qbert/core.h"

typedef enum { QB_FORMAT_AUTO, QB_FORMAT_TSV, QB_FORMAT_CSV } qb_data_format;

typedef struct {
    qb_data_format format;      /* AUTO: by extension (.csv -> CSV, else TSV) */
    char delimiter;             /* a delimiter other than CSV's comma (a TSV with a header row:
                                 * '\t'); 0: ','. Set, the file is read as CSV with it */
    const char *text_column;    /* CSV header name; default "text" */
    const char *label_column;   /* CSV header name; default "label" */
    /* Label names (index = id). A label field matches a name exactly, or is an
     * integer in [0, n_labels). label_names NULL: labels are integers, in
     * [0, n_labels) when n_labels > 0, any non-negative int when it is 0. */
    const char *const *label_names;
    int n_labels;
    bool skip_bad_rows;         /* skip rows with an unknown label or empty text (counted) */
    const char *label_map;      /* "0=negative,1=positive": the file's label FROM read as TO (a
                                 * name or an id of the model), for files whose labels mean
                                 * something else than the model's ids; NULL: none */
    bool allow_unlabelled;      /* a missing label column / field is not an error (label -1) */
    bool discover_labels;       /* labels are names, whatever they are: ids in order of first
                                 * appearance, the names in the data set's label_names (with
                                 * label_names NULL and n_labels 0). A TSV's first row with
                                 * label_column's name as its label is a header: a bad row */
    /* preprocessing, applied in this order */
    bool lowercase;
    bool remove_non_alpha;      /* replace characters that are not letters or spaces by spaces */
    bool collapse_whitespace;
    bool remove_stopwords;
    const char *stopwords_file; /* NULL: the shipped Indonesian list */
} qb_data_options;

typedef struct {
    int count;
    char **texts;     /* valid UTF-8, surrounding whitespace trimmed, after preprocessing */
    int *labels;      /* -1 when unlabelled */
    int *lines;       /* 1-based line in the file where each row starts */
    int skipped;      /* rows skipped under skip_bad_rows */
    int skipped_empty;  /* of which for an empty text */
    char **label_names;  /* discover_labels: (n_label_names) the label of each id */
    int n_label_names;
    char *path;       /* the file (or buffer) name given to the loader */
} qb_dataset;

/* Defaults: AUTO format, columns "text"/"label", integer labels, lowercase on,
 * every other flag off. */
void qb_data_default_options(qb_data_options *o);

/* Reading rules (o == NULL: the defaults).
 * TSV: one row per line, text<TAB>label, no header. The LAST tab separates the
 *   label, so a text may itself contain tabs (labels never do). A line without a
 *   tab is an error unless allow_unlabelled (then the whole line is the text, label -1).
 * CSV: a header row, then RFC 4180 records: "quoted" fields with "" escapes and
 *   embedded commas / newlines; columns are chosen by header name. A row with a
 *   different number of fields than the header, or an unterminated quote, is an error.
 *   As Python's csv module: \r\n or a bare \r ends a record too; spaces after a
 *   closing quote are allowed. With a delimiter (tab: a TSV with a header row) the
 *   fields are cut there, and the file is read as CSV whatever its name.
 * Both: \r\n line ends, a UTF-8 BOM and blank lines are accepted. Labels and header
 *   names are trimmed of surrounding whitespace, then matched exactly. A row whose
 *   label is unknown/empty or whose text is empty (after trimming ASCII whitespace) is
 *   an error naming FILE:LINE, or with skip_bad_rows is skipped and counted (one
 *   warning for all). Invalid UTF-8 (and NUL bytes) in a text are replaced by U+FFFD,
 *   with one warning giving the count. Texts are preprocessed after these checks; a
 *   text that preprocessing empties (e.g. only stopwords) is kept.
 * A label_map applies first (a label equal to a FROM is read as its TO). Integer labels
 * that are not all of the model's n_labels classes get a warning (they may mean other
 * classes: a label map says which).
 * A file with no rows is an error. */
qb_status qb_dataset_load(const char *path, const qb_data_options *o, qb_dataset *out);
/* (path "embedded:train.tsv", "embedded:valid.tsv", "embedded:test.tsv": the sample
 * set inside the binary, as the trainer and the demo use it.) */
/* The same from memory: `name` is used in messages and for format-by-extension. */
qb_status qb_dataset_load_buffer(const char *name, const char *buf, size_t len,
                                 const qb_data_options *o, qb_dataset *out);
void qb_dataset_free(qb_dataset *d);

/* Stopword sets: a hash set of words, compared byte for byte (case-sensitive, so
 * lowercase first). A file holds one word per line; '#' starts a comment; blank lines
 * are ignored; a line with two words is an error. */
typedef struct qb_stopwords qb_stopwords;
qb_status qb_stopwords_load(const char *path, qb_stopwords **out); /* NULL path: built-in list */
void qb_stopwords_free(qb_stopwords *s);
int qb_stopwords_count(const qb_stopwords *s);     /* distinct words in the set */
bool qb_stopwords_contains(const qb_stopwords *s, const char *word, size_t len);

/* The shipped Indonesian stopword list (common function words), lowercase. */
extern const char *const qb_stopwords_id[];
extern const int qb_stopwords_id_count;

/* Preprocesses one text into a new malloc'ed, valid UTF-8 string (free() it), applying
 * the enabled steps of `o` in the research pipeline's order:
 *   lowercase           utf8proc_tolower on every code point (simple case mapping);
 *   remove_non_alpha    every code point that is not a letter (L*), a combining mark
 *                       (M*, so decomposed accents stay on their letter) or whitespace
 *                       becomes one space -- digits and punctuation included, as
 *                       re.sub(r'[^a-zA-Z\s]', ' ', t) does, but non-ASCII letters are kept;
 *   collapse_whitespace runs of whitespace become one space; leading/trailing removed;
 *   remove_stopwords    split on whitespace, drop the words in `sw`, join with one space.
 * Whitespace is Unicode whitespace as Python's str.isspace() defines it. Invalid UTF-8
 * becomes U+FFFD. Returns NULL when out of memory, or when remove_stopwords is set and
 * `sw` is NULL. */
char *qb_preprocess(const char *text, const qb_data_options *o, const qb_stopwords *sw);

/* Python's str.isspace() of one code point: bidirectional class WS, B or S, or
 * category Zs (what str.split() splits at). */
bool qb_is_space(int32_t cp);
/* Python's re \w of one code point: a letter, a number (N*), or '_'. */
bool qb_is_word_char(int32_t cp);
/* The next \w+ run (re.findall(r'\w+')) of s[*pos..len) (ill-formed UTF-8 is no word
 * character): its offset and length in start and wlen, *pos moved past it; false
 * when none is left. */
bool qb_next_word_run(const char *s, size_t len, size_t *pos, size_t *start, size_t *wlen);

/* A copy of s[0..len) with each ill-formed UTF-8 subsequence (maximal subpart, as
 * Python's errors="replace") and each NUL byte replaced by U+FFFD; the number of
 * replacements goes to *n_replaced when not NULL. NULL when out of memory. */
char *qb_utf8_sanitize(const char *s, size_t len, int *n_replaced);

#endif
