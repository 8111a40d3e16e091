/* The string builder and text helpers of eval/svg.h. */
#include "eval/svg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sb_reserve(qb_strbuf *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return;
    }
    b->data = p;
    b->cap = cap;
}

void qb_sb_printf(qb_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->failed) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The built string (the caller frees it), or NULL with "WHAT: out of memory" when an
 * append failed. */
char *qb_sb_finish(qb_strbuf *b, const char *what)
{
    if (!b->failed) return b->data;
    free(b->data);
    qb_fail(QB_ENOMEM, "%s: out of memory", what);
    return NULL;
}

/* Appends s as XML character data / attribute text. Control characters are not
 * allowed in XML 1.0 and become spaces. */
void qb_sb_escaped(qb_strbuf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        switch (ch) {
        case '&': qb_sb_printf(b, "&amp;"); break;
        case '<': qb_sb_printf(b, "&lt;"); break;
        case '>': qb_sb_printf(b, "&gt;"); break;
        case '"': qb_sb_printf(b, "&quot;"); break;
        case '\'': qb_sb_printf(b, "&apos;"); break;
        default: qb_sb_printf(b, "%c", ch < 0x20 ? ' ' : ch); break;
        }
    }
}

int qb_text_width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

/* Rough rendered width of s in a sans-serif font: 0.6 em per character is a safe
 * upper estimate for Latin text, enough to size the margins. */
double qb_est_width(const char *s, double font_size) { return 0.6 * font_size * qb_text_width(s); }

/* title cut to fit width (characters from the end, then an ellipsis). */
void qb_fitted_title(qb_strbuf *b, const char *title, double fs, double width)
{
    char cut[512];
    snprintf(cut, sizeof cut, "%s", title);
    for (size_t n = strlen(cut); n > 4 && qb_est_width(cut, fs) > width; n--)
        snprintf(cut + n - 4, 4 + 1, "...");
    qb_sb_escaped(b, cut);
}


void qb_svg_open(qb_strbuf *b, double width, double height, const char *title, double pad, double title_fs)
{
    qb_sb_printf(b,
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                 "font-family=\"" SVG_FONT "\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
                 width, height, width, height);
    if (!title) return;
    qb_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" font-weight=\"bold\">", pad, pad + title_fs,
                 title_fs);
    qb_fitted_title(b, title, title_fs, width - 2 * pad);
    qb_sb_printf(b, "</text>\n");
}
