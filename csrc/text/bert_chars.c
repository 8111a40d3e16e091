/* Character classes and normalizer of the BERT tokenizer, equal to the reference,
 * Hugging Face `tokenizers` (0.23, BertNormalizer + BertPreTokenizer).
 *
 * The reference takes its Unicode data from three places of different ages:
 *   - categories (Cc/Cf/Co for clean text, Mn for accent stripping, P* for
 *     punctuation) from the Rust crate unicode_categories, whose tables are
 *     Unicode 8.0; characters unassigned there (Cn) are kept as letters;
 *   - NFD (decompositions and combining classes) from the crate
 *     unicode-normalization-alignments, Unicode 9.0 data;
 *   - lowercase and White_Space from the Rust standard library (Unicode 16).
 * utf8proc 2.8 is Unicode 15.0. We take everything from utf8proc and correct it
 * with the tables below, which list exactly the code points where the two
 * disagree; they were found by running both on every code point, and
 * tests/tokenizer_parity.py repeats that comparison through `qbert tokenize`.
 * A newer utf8proc would need these tables rechecked (the parity test says so). */
#include "text/bert_chars.h"

#include "qbert/core.h"

#include <utf8proc.h>

typedef struct {
    int32_t lo, hi;
} cp_range;

/* Mn in Unicode 15 but not Mn for the reference (assigned after 8.0, or then Po). */
static const cp_range mn_newer[] = {
    {0x07FD, 0x07FD}, {0x0898, 0x089F}, {0x08CA, 0x08E1}, {0x09FE, 0x09FE}, {0x0AFA, 0x0AFF},
    {0x0B55, 0x0B55}, {0x0C04, 0x0C04}, {0x0C3C, 0x0C3C}, {0x0D00, 0x0D00}, {0x0D3B, 0x0D3C},
    {0x0D81, 0x0D81}, {0x0EBA, 0x0EBA}, {0x0ECE, 0x0ECE}, {0x180F, 0x180F}, {0x1885, 0x1886},
    {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFB}, {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF},
    {0xA9BD, 0xA9BD}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x110C2, 0x110C2}, {0x111C9, 0x111C9}, {0x111CF, 0x111CF}, {0x1123E, 0x1123E},
    {0x11241, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1143F}, {0x11442, 0x11444},
    {0x11446, 0x11446}, {0x1145E, 0x1145E}, {0x1182F, 0x11837}, {0x11839, 0x1183A},
    {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943}, {0x119D4, 0x119D7},
    {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B},
    {0x11A8A, 0x11A96}, {0x11A98, 0x11A99}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D},
    {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3},
    {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D},
    {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95},
    {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F42}, {0x13440, 0x13440}, {0x13447, 0x13455},
    {0x16F4F, 0x16F4F}, {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024},
    {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A},
};

/* P* in Unicode 15 but not punctuation for the reference. */
static const cp_range punct_newer[] = {
    {0x061D, 0x061D}, {0x09FD, 0x09FD}, {0x0A76, 0x0A76}, {0x0C77, 0x0C77}, {0x0C84, 0x0C84},
    {0x1B7D, 0x1B7E}, {0x2E43, 0x2E4F}, {0x2E52, 0x2E5D}, {0x10EAD, 0x10EAD},
    {0x10F55, 0x10F59}, {0x10F86, 0x10F89}, {0x1144B, 0x1144F}, {0x1145A, 0x1145B},
    {0x1145D, 0x1145D}, {0x11660, 0x1166C}, {0x116B9, 0x116B9}, {0x1183B, 0x1183B},
    {0x11944, 0x11946}, {0x119E2, 0x119E2}, {0x11A3F, 0x11A46}, {0x11A9A, 0x11A9C},
    {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09}, {0x11C41, 0x11C45}, {0x11C70, 0x11C71},
    {0x11EF7, 0x11EF8}, {0x11F43, 0x11F4F}, {0x11FFF, 0x11FFF}, {0x12FF1, 0x12FF2},
    {0x16E97, 0x16E9A}, {0x16FE2, 0x16FE2}, {0x1E95E, 0x1E95F},
};

/* Cf in Unicode 15 but kept by the reference's clean text. */
static const cp_range format_newer[] = {
    {0x0890, 0x0891}, {0x08E2, 0x08E2}, {0x110CD, 0x110CD}, {0x13430, 0x1343F},
};

/* A nonzero combining class in Unicode 15 that the reference's NFD data does not
 * know (so it treats them as starters and never reorders them). */
static const cp_range ccc_newer[] = {
    {0x07FD, 0x07FD}, {0x0898, 0x089F}, {0x08CA, 0x08D3}, {0x09FE, 0x09FE}, {0x0C3C, 0x0C3C},
    {0x0D3B, 0x0D3C}, {0x0EBA, 0x0EBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x1193D, 0x1193E}, {0x11943, 0x11943},
    {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47}, {0x11A99, 0x11A99},
    {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97}, {0x11F41, 0x11F42},
    {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* Lowercase mappings of Unicode 16 (these are unassigned in utf8proc 2.8). They
 * follow the Rust that built the reference: tokenizers 0.19 wheels lack them. */
static const struct {
    int32_t lo, hi, delta;
} lower_newer[] = {
    {0x1C89, 0x1C89, 1}, {0xA7CB, 0xA7CB, -42343}, {0xA7CC, 0xA7CC, 1}, {0xA7CE, 0xA7CE, 1},
    {0xA7D2, 0xA7D2, 1}, {0xA7D4, 0xA7D4, 1}, {0xA7DA, 0xA7DA, 1}, {0xA7DC, 0xA7DC, -42561},
    {0x10D50, 0x10D65, 32}, {0x16EA0, 0x16EB8, 27},
};

/* Classes the reference assigns differently from Unicode 15 one code point at a time:
 * U+166D and U+111C9 were Po in 8.0 (So and Mn now), U+1734 was Mn (Mc now), and
 * U+11938 (Unicode 13) has no decomposition in the reference's NFD data. */
#define CP_OLD_PUNCT_1 0x166D
#define CP_OLD_PUNCT_2 0x111C9
#define CP_OLD_MN 0x1734
#define CP_NO_DECOMPOSITION 0x11938

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static bool in_ranges(const cp_range *r, size_t n, int32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

size_t qb_utf8_decode(const char *s, size_t len, int32_t *out, int *n_invalid)
{
    size_t n = 0;
    for (size_t i = 0, adv; i < len; i += adv) {
        int32_t c = qb_utf8_next(s + i, len - i, &adv);
        if (c < 0 && n_invalid) (*n_invalid)++;
        out[n++] = c < 0 ? 0xFFFD : c;
    }
    return n;
}

int qb_utf8_encode(int32_t c, char *out)
{
    return (int)utf8proc_encode_char(c, (utf8proc_uint8_t *)out);
}

bool qb_bert_is_whitespace(int32_t c)
{
    if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r');
    if (c == 0x85) return true;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool qb_bert_is_punct(int32_t c)
{
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    if (c == CP_OLD_PUNCT_1 || c == CP_OLD_PUNCT_2) return true;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO &&
           !in_ranges(punct_newer, N_OF(punct_newer), c);
}

bool qb_bert_is_chinese(int32_t c)
{
    /* The reference's ranges, including its gap at U+2B820..U+2B91F. */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B81F) ||
           (c >= 0x2B920 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Dropped by clean text: Cc, Cf, Co (not Cn), except tab, newline and carriage
 * return, which are whitespace. */
static bool is_control(int32_t c)
{
    if (c < 0x80) return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
    utf8proc_category_t cat = utf8proc_category(c);
    if (cat == UTF8PROC_CATEGORY_CF) return !in_ranges(format_newer, N_OF(format_newer), c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

static bool is_nonspacing_mark(int32_t c)
{
    if (c < 0x80) return false;
    if (c == CP_OLD_MN) return true;
    return utf8proc_category(c) == UTF8PROC_CATEGORY_MN && !in_ranges(mn_newer, N_OF(mn_newer), c);
}

/* Full lowercase (Rust char::to_lowercase): simple mappings, plus U+0130 whose
 * lowercase is two code points. Writes 1 or 2 code points; returns the count. */
static int to_lower(int32_t c, int32_t *out)
{
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    for (size_t i = 0; i < N_OF(lower_newer); i++) {
        if (c >= lower_newer[i].lo && c <= lower_newer[i].hi) {
            out[0] = c + lower_newer[i].delta;
            return 1;
        }
    }
    out[0] = utf8proc_tolower(c);
    return 1;
}

/* Canonical decomposition of one code point (at most 4); returns the count. */
static int decompose(int32_t c, int32_t *out)
{
    if (c < 0x80 || c == CP_NO_DECOMPOSITION) {
        out[0] = c;
        return 1;
    }
    int boundclass = 0;
    utf8proc_ssize_t k = utf8proc_decompose_char(c, out, 4, UTF8PROC_DECOMPOSE, &boundclass);
    if (k < 1 || k > 4) { /* cannot happen for a scalar value; keep the character */
        out[0] = c;
        return 1;
    }
    return (int)k;
}

static int combining_class(int32_t c)
{
    if (c < 0x300) return 0;
    int cc = utf8proc_get_property(c)->combining_class;
    return cc != 0 && in_ranges(ccc_newer, N_OF(ccc_newer), c) ? 0 : cc;
}

/* Canonical ordering (the second half of NFD): a stable sort by combining class
 * of every run of non-starters. Runs are a few marks long, so insertion sort. */
static void canonical_order(int32_t *s, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        int32_t c = s[i];
        int cc = combining_class(c);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0) {
            int pc = combining_class(s[j - 1]);
            if (pc == 0 || pc <= cc) break;
            s[j] = s[j - 1];
            j--;
        }
        s[j] = c;
    }
}

size_t qb_bert_normalize(const int32_t *in, size_t n, bool strip_accents, bool lowercase,
                         bool chinese, int32_t *out, int32_t *tmp)
{
    /* Pass 1: clean text, CJK spacing, and (when stripping) NFD decomposition, into
     * tmp when stripping accents (canonical order and Mn removal need the whole
     * string) or straight into out with the lowercase applied otherwise. */
    int32_t *dst = strip_accents ? tmp : out;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = in[i];
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (qb_bert_is_whitespace(c)) c = ' ';
        bool cjk = chinese && qb_bert_is_chinese(c);
        if (cjk) dst[m++] = ' ';
        if (strip_accents) m += (size_t)decompose(c, dst + m);
        else if (lowercase) m += (size_t)to_lower(c, dst + m);
        else dst[m++] = c;
        if (cjk) dst[m++] = ' ';
    }
    if (!strip_accents) return m;

    /* Pass 2: order the marks, drop the nonspacing ones, lowercase. */
    canonical_order(tmp, m);
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        int32_t c = tmp[i];
        if (is_nonspacing_mark(c)) continue;
        if (lowercase) k += (size_t)to_lower(c, out + k);
        else out[k++] = c;
    }
    return k;
}
