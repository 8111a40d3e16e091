/* INI files through inih, with what its Debian build lacks (include/qbert/io.h,
 * qb_ini_parse): lines of any length (libinih reads at most 199 characters a line and
 * takes the rest for the next line), and no silent overrides (an indented line would
 * be glued to the key above; a key given twice would replace the first).
 *
 * A first pass over the text checks indentation and repeated keys and shortens every
 * long key = value line to "key = \x02N", N indexing the value kept aside; the line
 * count is unchanged, so inih's line numbers stay right. The handler wrapper puts the
 * value back, treated as inih treats values (an inline "; comment" after a space
 * dropped, surrounding white space trimmed). */
#include "qbert/io.h"

#include <ctype.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#define SHORT 150           /* longer lines are shortened (inih's limit is 199) */
#define PLACEHOLDER '\x02'  /* a control character: rejected in the text itself */

typedef struct {
    const char *section, *key;
    size_t section_len, key_len;
    int line;
} seen_key;

typedef struct {
    int (*handler)(void *user, const char *section, const char *key, const char *value);
    void *user;
    char **values;  /* the long lines' values */
    int n_values;
} parse;

/* A comment or a blank line (inih skips any white space, \r \v \f too). */
static bool comment(const char *s, const char *end)
{
    while (s < end && isspace((unsigned char)*s)) s++;
    return s == end || *s == ';' || *s == '#';
}

/* [start, end) with the white space of both ends dropped. */
static void trim(const char **start, const char **end)
{
    while (*start < *end && isspace((unsigned char)**start)) (*start)++;
    while (*end > *start && isspace((unsigned char)(*end)[-1])) (*end)--;
}

/* The value inih would give for the raw text after '=' (inline comments are a ';'
 * after white space, isspace's). malloc'ed. */
static char *value_of(const char *s, const char *end)
{
    for (const char *q = s; q < end; q++)
        if (*q == ';' && q > s && isspace((unsigned char)q[-1])) {
            end = q;
            break;
        }
    trim(&s, &end);
    char *v = malloc((size_t)(end - s) + 1);
    if (v) memcpy(v, s, (size_t)(end - s)), v[end - s] = '\0';
    return v;
}

static int wrapper(void *user, const char *section, const char *key, const char *value)
{
    parse *p = user;
    if (value[0] == PLACEHOLDER) value = p->values[atoi(value + 1)];
    return p->handler(p->user, section, key, value);
}

/* The checks and the shortening of one line [s, end) (line `line`) into out; 0, or
 * the line with *why. */
static int one_line(parse *p, const char *s, const char *end, int line, seen_key **seen, int *n_seen,
                    seen_key *section, char **out, const char **why)
{
    if (line == 1 && end - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) s += 3;  /* inih skips a BOM */
    const size_t len = end > s ? (size_t)(end - s) : 0;
    if (len && memchr(s, PLACEHOLDER, len)) {  /* it would pass for a shortened line's value */
        *why = "a control character (0x02) in the line";
        return line;
    }
    if (comment(s, end)) {  /* a long comment is dropped; any other is kept as it is */
        if (len >= SHORT) end = s;
    } else if (isspace((unsigned char)*s)) {  /* as inih's: a line after white space continues the value above */
        *why = "an indented line (it would be taken as more of the value above): remove the indentation";
        return line;
    } else if (*s == '[') {
        const char *close = memchr(s, ']', len);
        if (close) *section = (seen_key){.section = s + 1, .section_len = (size_t)(close - s - 1), .line = line};
    } else {
        const char *eq = s;
        while (eq < end && *eq != '=' && *eq != ':') eq++;
        const char *k = s, *ke = eq;
        trim(&k, &ke);
        for (int i = 0; eq < end && i < *n_seen; i++) {
            const seen_key *o = &(*seen)[i];
            if (o->key_len == (size_t)(ke - k) && memcmp(o->key, k, o->key_len) == 0 &&
                o->section_len == section->section_len &&
                (!o->section_len || memcmp(o->section, section->section, o->section_len) == 0)) {
                static char msg[160];
                snprintf(msg, sizeof msg, "\"%.*s\" is set twice in this section (first at line %d): keep one",
                         (int)o->key_len > 60 ? 60 : (int)o->key_len, o->key, o->line);
                *why = msg;
                return line;
            }
        }
        if (eq < end) {
            seen_key *grown = realloc(*seen, (size_t)(*n_seen + 1) * sizeof **seen);
            if (!grown) return line;
            *seen = grown;
            (*seen)[(*n_seen)++] = (seen_key){section->section, k, section->section_len, (size_t)(ke - k), line};
        }
        if (len >= SHORT && eq < end && ke > k && ke - k < SHORT / 2) {  /* key = \x02N */
            char **grown = realloc(p->values, (size_t)(p->n_values + 1) * sizeof *grown);
            if (!grown) return line;
            p->values = grown;
            if (!(grown[p->n_values] = value_of(eq + 1, end))) return line;
            /* the trimmed key (under SHORT / 2) keeps the line shorter than the original */
            *out += sprintf(*out, "%.*s = %c%d", (int)(ke - k), k, PLACEHOLDER, p->n_values++);
            return 0;
        }
        if (len >= SHORT) {  /* a long line with no value inih could read: its own syntax error */
            *out += sprintf(*out, "!");
            return 0;
        }
    }
    memcpy(*out, s, (size_t)(end - s));
    *out += end - s;
    return 0;
}

int qb_ini_parse(const char *text, int (*handler)(void *user, const char *section, const char *key, const char *value),
                 void *user, const char **why)
{
    *why = NULL;
    const size_t n = strlen(text);
    char *copy = malloc(n + 2), *out = copy;
    parse p = {handler, user, NULL, 0};
    seen_key *seen = NULL, section = {0};
    int n_seen = 0, line = 1, bad = copy ? 0 : -1;
    for (const char *s = text; copy && !bad && *s; line++) {
        const char *nl = strchr(s, '\n'), *end = nl ? nl : s + strlen(s);
        const char *content_end = end > s && end[-1] == '\r' ? end - 1 : end;
        bad = one_line(&p, s, content_end, line, &seen, &n_seen, &section, &out, why);
        *out++ = '\n';
        s = nl ? nl + 1 : end;
    }
    if (copy) *out = '\0';
    if (!bad) bad = ini_parse_string(copy, wrapper, &p);
    for (int i = 0; i < p.n_values; i++) free(p.values[i]);
    free(p.values);
    free(seen);
    free(copy);
    return bad;
}
