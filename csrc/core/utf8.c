/* UTF-8 decoding with the rule of Python's bytes.decode("utf-8", errors="replace"),
 * shared by the tokenizer and the data loader so that both see the same text. */
#include "qbert/core.h"

/* Overlongs and surrogates are excluded by the narrower ranges for the second byte
 * after E0, ED, F0 and F4 (Unicode Table 3-7); a start byte followed by too few valid
 * continuation bytes is one "maximal subpart" (Unicode 15 section 3.9). */
int32_t qb_utf8_next(const char *str, size_t n, size_t *adv)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return (int32_t)c;
    }
    size_t need;
    uint32_t cp;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *adv = 1;
        return -1;
    }
    size_t i = 1;
    while (i <= need && i < n && s[i] >= lo && s[i] <= hi) {
        cp = (cp << 6) | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
        i++;
    }
    *adv = i;
    return i == need + 1 ? (int32_t)cp : -1;
}

