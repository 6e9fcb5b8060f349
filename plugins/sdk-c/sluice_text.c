#include "sluice_text.h"

#include "sluice_unicode.h"

bool sluice_is_alphanumeric(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z');
    size_t lo = 0, hi = sizeof sluice_alnum / sizeof sluice_alnum[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sluice_alnum[mid] <= cp) lo = mid + 1;
        else hi = mid;
    }
    return lo & 1;
}

bool sluice_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

uint32_t sluice_utf8_next(const char *str, size_t *i) {
    const unsigned char *s = (const unsigned char *)str + *i;
    if (s[0] < 0x80) { *i += 1; return s[0]; }
    if (s[0] < 0xe0) { *i += 2; return ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f); }
    if (s[0] < 0xf0) {
        *i += 3;
        return ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    }
    *i += 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
           ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
}

size_t sluice_utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t sluice_trim(const char *s, size_t len, size_t *start) {
    size_t a = 0, b = len;
    while (a < b) {
        size_t j = a;
        if (!sluice_is_whitespace(sluice_utf8_next(s, &j))) break;
        a = j;
    }
    while (b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
        size_t j = k;
        if (!sluice_is_whitespace(sluice_utf8_next(s, &j))) break;
        b = k;
    }
    *start = a;
    return b - a;
}
