#include "sluice_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_text.h"

#define MAX_DEPTH 127

typedef struct {
    const uint8_t *b;
    size_t i, n;
    int depth;
} parser;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static void ws(parser *p) {
    while (p->i < p->n) {
        uint8_t c = p->b[p->i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') p->i++;
        else break;
    }
}

static int peek(parser *p) { return p->i < p->n ? p->b[p->i] : -1; }

static bool value(parser *p, sj_value *out);

static void put(sj_buf *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        b->ptr = xrealloc(b->ptr, cap);
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
}

/* Length of a valid UTF-8 sequence at s (strict, as Rust), or 0. */
static size_t utf8_len(const uint8_t *s, size_t avail) {
    uint8_t c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (avail < n) return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
    if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
    return n;
}

static int hex4(parser *p, uint32_t *out) {
    if (p->n - p->i < 4) return 0;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = p->b[p->i++];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

static bool string(parser *p, char **out, size_t *out_len) {
    sj_buf b = {0};
    p->i++; /* opening quote */
    for (;;) {
        if (p->i >= p->n) goto fail;
        uint8_t c = p->b[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) goto fail;
        if (c == '\\') {
            p->i++;
            if (p->i >= p->n) goto fail;
            uint8_t e = p->b[p->i++];
            char ch;
            switch (e) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                uint32_t u, l;
                if (!hex4(p, &u)) goto fail;
                if (u >= 0xdc00 && u <= 0xdfff) goto fail;
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (p->n - p->i < 2 || p->b[p->i] != '\\' || p->b[p->i + 1] != 'u') goto fail;
                    p->i += 2;
                    if (!hex4(p, &l) || l < 0xdc00 || l > 0xdfff) goto fail;
                    u = 0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00);
                }
                char tmp[4];
                put(&b, tmp, sluice_utf8_put(u, tmp));
                continue;
            }
            default: goto fail;
            }
            put(&b, &ch, 1);
            continue;
        }
        size_t start = p->i;
        while (p->i < p->n) {
            uint8_t d = p->b[p->i];
            if (d == '"' || d == '\\' || d < 0x20) break;
            size_t k = utf8_len(p->b + p->i, p->n - p->i);
            if (!k) goto fail;
            p->i += k;
        }
        put(&b, p->b + start, p->i - start);
    }
    put(&b, "", 1);
    *out = (char *)b.ptr;
    *out_len = b.len - 1;
    return true;
fail:
    free(b.ptr);
    return false;
}

static bool number(parser *p, sj_value *out) {
    size_t start = p->i;
    bool neg = false, is_float = false;
#define DIGIT() (p->i < p->n && p->b[p->i] >= '0' && p->b[p->i] <= '9')
    if (peek(p) == '-') { neg = true; p->i++; }
    if (peek(p) == '0') p->i++;
    else if (DIGIT()) while (DIGIT()) p->i++;
    else return false;
    if (peek(p) == '.') {
        is_float = true;
        p->i++;
        if (!DIGIT()) return false;
        while (DIGIT()) p->i++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        is_float = true;
        p->i++;
        if (peek(p) == '+' || peek(p) == '-') p->i++;
        if (!DIGIT()) return false;
        while (DIGIT()) p->i++;
    }
#undef DIGIT
    size_t len = p->i - start;
    if (!is_float) {
        uint64_t m = 0;
        bool overflow = false;
        for (size_t k = start + neg; k < p->i; k++) {
            unsigned d = p->b[k] - '0';
            if (m > (UINT64_MAX - d) / 10) { overflow = true; break; }
            m = m * 10 + d;
        }
        if (!overflow) {
            if (!neg) { out->kind = SJ_UINT; out->as.u = m; return true; }
            if (m == 0) { out->kind = SJ_FLOAT; out->as.f = -0.0; return true; }
            if (m <= (uint64_t)INT64_MAX + 1) {
                out->kind = SJ_INT;
                out->as.i = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
                return true;
            }
        }
    }
    char stack[64];
    char *text = len < sizeof stack ? stack : malloc(len + 1);
    memcpy(text, p->b + start, len);
    text[len] = 0;
    double f = strtod(text, NULL);
    if (text != stack) free(text);
    if (isinf(f)) return false; /* serde_json: number out of range */
    out->kind = SJ_FLOAT;
    out->as.f = f;
    return true;
}

static bool literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->n - p->i < n || memcmp(p->b + p->i, word, n) != 0) return false;
    p->i += n;
    return true;
}

static bool object(parser *p, sj_value *out) {
    out->kind = SJ_OBJECT;
    out->as.o.items = NULL;
    out->as.o.len = out->as.o.cap = 0;
    p->i++;
    ws(p);
    if (peek(p) == '}') { p->i++; return true; }
    for (;;) {
        ws(p);
        if (peek(p) != '"') return false;
        char *key;
        size_t key_len;
        if (!string(p, &key, &key_len)) return false;
        ws(p);
        if (peek(p) != ':') { free(key); return false; }
        p->i++;
        sj_value v;
        if (!value(p, &v)) { free(key); return false; }
        sj_value *existing = sj_get(out, key, key_len);
        if (existing) {
            sj_free(existing);
            *existing = v;
            free(key);
        } else {
            if (out->as.o.len == out->as.o.cap) {
                out->as.o.cap = out->as.o.cap ? out->as.o.cap * 2 : 8;
                out->as.o.items = xrealloc(out->as.o.items, out->as.o.cap * sizeof(sj_member));
            }
            sj_member *m = &out->as.o.items[out->as.o.len++];
            m->key = key;
            m->key_len = key_len;
            m->value = v;
        }
        ws(p);
        int c = peek(p);
        p->i++;
        if (c == ',') continue;
        if (c == '}') return true;
        return false;
    }
}

static bool array(parser *p, sj_value *out) {
    out->kind = SJ_ARRAY;
    out->as.a.items = NULL;
    out->as.a.len = out->as.a.cap = 0;
    p->i++;
    ws(p);
    if (peek(p) == ']') { p->i++; return true; }
    for (;;) {
        sj_value v;
        if (!value(p, &v)) return false;
        if (out->as.a.len == out->as.a.cap) {
            out->as.a.cap = out->as.a.cap ? out->as.a.cap * 2 : 8;
            out->as.a.items = xrealloc(out->as.a.items, out->as.a.cap * sizeof(sj_value));
        }
        out->as.a.items[out->as.a.len++] = v;
        ws(p);
        int c = peek(p);
        p->i++;
        if (c == ',') continue;
        if (c == ']') return true;
        return false;
    }
}

static bool value(parser *p, sj_value *out) {
    out->kind = SJ_NULL;
    ws(p);
    int c = peek(p);
    bool ok;
    switch (c) {
    case '{':
    case '[':
        if (++p->depth > MAX_DEPTH) return false;
        ok = c == '{' ? object(p, out) : array(p, out);
        p->depth--;
        if (!ok) { sj_free(out); out->kind = SJ_NULL; }
        return ok;
    case '"':
        out->kind = SJ_STRING;
        if (!string(p, &out->as.s.ptr, &out->as.s.len)) { out->kind = SJ_NULL; return false; }
        return true;
    case 't': out->kind = SJ_BOOL; out->as.b = true; return literal(p, "true");
    case 'f': out->kind = SJ_BOOL; out->as.b = false; return literal(p, "false");
    case 'n': return literal(p, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return number(p, out);
        return false;
    }
}

bool sj_parse(const uint8_t *data, size_t len, sj_value *out) {
    parser p = {data, 0, len, 0};
    if (!value(&p, out)) return false;
    ws(&p);
    if (p.i != p.n) { sj_free(out); out->kind = SJ_NULL; return false; }
    return true;
}

void sj_free(sj_value *v) {
    switch (v->kind) {
    case SJ_STRING: free(v->as.s.ptr); break;
    case SJ_ARRAY:
        for (size_t i = 0; i < v->as.a.len; i++) sj_free(&v->as.a.items[i]);
        free(v->as.a.items);
        break;
    case SJ_OBJECT:
        for (size_t i = 0; i < v->as.o.len; i++) {
            free(v->as.o.items[i].key);
            sj_free(&v->as.o.items[i].value);
        }
        free(v->as.o.items);
        break;
    default: break;
    }
    v->kind = SJ_NULL;
}

sj_value *sj_get(sj_value *o, const char *key, size_t key_len) {
    if (o->kind != SJ_OBJECT) return NULL;
    for (size_t i = 0; i < o->as.o.len; i++) {
        sj_member *m = &o->as.o.items[i];
        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0) return &m->value;
    }
    return NULL;
}

void sj_set_string(sj_value *v, const char *s, size_t len) {
    char *copy = malloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = 0;
    sj_free(v);
    v->kind = SJ_STRING;
    v->as.s.ptr = copy;
    v->as.s.len = len;
}

size_t sj_format_double(double f, char out[32]) {
    if (f == 0) return (size_t)sprintf(out, signbit(f) ? "-0.0" : "0.0");
    /* Shortest digits that read back as f: printf rounds exactly, so the first precision that
     * round-trips gives the digits closest to f, as ryu does. */
    char e[40];
    double a = fabs(f);
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, a);
        if (strtod(e, NULL) == a) break;
    }
    char digits[24];
    size_t n = 0;
    char *x = e;
    for (; *x && *x != 'e'; x++)
        if (*x != '.') digits[n++] = *x;
    int k = atoi(x + 1) - (int)(n - 1);
    while (n > 1 && digits[n - 1] == '0') { n--; k++; }
    digits[n] = 0;
    int kk = (int)n + k;
    char *o = out;
    if (f < 0) *o++ = '-';
    if (k >= 0 && kk <= 16) {
        memcpy(o, digits, n); o += n;
        for (int z = 0; z < k; z++) *o++ = '0';
        *o++ = '.'; *o++ = '0';
    } else if (kk > 0 && kk <= 16) {
        memcpy(o, digits, (size_t)kk); o += kk;
        *o++ = '.';
        memcpy(o, digits + kk, n - (size_t)kk); o += n - (size_t)kk;
    } else if (kk > -5 && kk <= 0) {
        *o++ = '0'; *o++ = '.';
        for (int z = 0; z < -kk; z++) *o++ = '0';
        memcpy(o, digits, n); o += n;
    } else if (n == 1) {
        *o++ = digits[0];
        o += sprintf(o, kk - 1 > 0 ? "e+%d" : "e%d", kk - 1);
    } else {
        *o++ = digits[0]; *o++ = '.';
        memcpy(o, digits + 1, n - 1); o += n - 1;
        o += sprintf(o, kk - 1 > 0 ? "e+%d" : "e%d", kk - 1);
    }
    *o = 0;
    return (size_t)(o - out);
}

static void write_string(sj_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\b': esc = "\\b"; break;
            case '\t': esc = "\\t"; break;
            case '\n': esc = "\\n"; break;
            case '\f': esc = "\\f"; break;
            case '\r': esc = "\\r"; break;
            default:
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0'; u[4] = hex[c >> 4]; u[5] = hex[c & 15];
            }
        } else continue;
        put(b, s + run, i - run);
        if (esc) put(b, esc, strlen(esc));
        else put(b, u, 6);
        run = i + 1;
    }
    put(b, s + run, len - run);
    put(b, "\"", 1);
}

void sj_write(sj_buf *b, const sj_value *v) {
    char num[32];
    switch (v->kind) {
    case SJ_NULL: put(b, "null", 4); break;
    case SJ_BOOL: v->as.b ? put(b, "true", 4) : put(b, "false", 5); break;
    case SJ_INT: put(b, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)v->as.i)); break;
    case SJ_UINT: put(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v->as.u)); break;
    case SJ_FLOAT:
        if (isfinite(v->as.f)) put(b, num, sj_format_double(v->as.f, num));
        else put(b, "null", 4);
        break;
    case SJ_STRING: write_string(b, v->as.s.ptr, v->as.s.len); break;
    case SJ_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < v->as.a.len; i++) {
            if (i) put(b, ",", 1);
            sj_write(b, &v->as.a.items[i]);
        }
        put(b, "]", 1);
        break;
    case SJ_OBJECT:
        put(b, "{", 1);
        for (size_t i = 0; i < v->as.o.len; i++) {
            if (i) put(b, ",", 1);
            write_string(b, v->as.o.items[i].key, v->as.o.items[i].key_len);
            put(b, ":", 1);
            sj_write(b, &v->as.o.items[i].value);
        }
        put(b, "}", 1);
        break;
    }
}

void sj_buf_free(sj_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}
