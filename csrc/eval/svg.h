/* Building SVG / HTML text in the eval module (report.c, charts.c) and the EDA and
 * explanation reports: a growable string and a few text helpers. Internal. */
#ifndef QBERT_EVAL_SVG_H
#define QBERT_EVAL_SVG_H

#include "qbert/core.h"

#include <stdbool.h>
#include <stddef.h>

#define SVG_FONT "DejaVu Sans, Helvetica, Arial, sans-serif"

/* A growable string. An allocation failure sets `failed` and later appends do
 * nothing, so the builder checks once at the end instead of after every append. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} qb_strbuf;

void qb_sb_printf(qb_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The built string (the caller frees it), or NULL with "WHAT: out of memory" when an
 * append failed. */
char *qb_sb_finish(qb_strbuf *b, const char *what);
/* Appends s as XML character data / attribute text (control characters: spaces). */
void qb_sb_escaped(qb_strbuf *b, const char *s);
/* Display width in code points: every byte that is not a UTF-8 continuation byte. */
int qb_text_width(const char *s);
/* Rough rendered width of s in a sans-serif font (0.6 em per character). */
double qb_est_width(const char *s, double font_size);
/* title cut to fit width (an ellipsis at the end), escaped. */
void qb_fitted_title(qb_strbuf *b, const char *title, double fs, double width);
/* An <svg> of width x height on white, with title (NULL: none) in bold at (pad, pad +
 * title_fs), cut to fit. */
void qb_svg_open(qb_strbuf *b, double width, double height, const char *title, double pad, double title_fs);

#endif
