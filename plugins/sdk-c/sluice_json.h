/* JSON as the Rust SDK's plugins see it (serde_json with `preserve_order`), so a C or C++ plugin
 * produces byte-identical JSON to its Rust twin: objects keep key order (a repeated key keeps its
 * first position and its last value), integers within i64/u64 stay integers, other numbers are
 * doubles, and parsing fails where serde_json fails (invalid UTF-8, lone surrogate escapes,
 * numbers out of range, nesting deeper than 127). Output is compact, with serde_json's escapes
 * and float format. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sj_kind { SJ_NULL, SJ_BOOL, SJ_INT, SJ_UINT, SJ_FLOAT, SJ_STRING, SJ_ARRAY, SJ_OBJECT } sj_kind;

typedef struct sj_value sj_value;
typedef struct sj_member sj_member;

struct sj_value {
    sj_kind kind;
    union {
        bool b;
        int64_t i; /* SJ_INT: negative integers */
        uint64_t u; /* SJ_UINT: non-negative integers */
        double f;
        struct { char *ptr; size_t len; } s; /* UTF-8, NUL-terminated */
        struct { sj_value *items; size_t len, cap; } a;
        struct { sj_member *items; size_t len, cap; } o;
    } as;
};

struct sj_member {
    char *key; /* UTF-8, NUL-terminated */
    size_t key_len;
    sj_value value;
};

/* Parses `len` bytes; returns false (and leaves *out null) where serde_json would fail. */
bool sj_parse(const uint8_t *data, size_t len, sj_value *out);
/* Frees what a value owns. */
void sj_free(sj_value *v);
/* The member called `key` of an object, or NULL. */
sj_value *sj_get(sj_value *object, const char *key, size_t key_len);
/* Replaces `*v` by a copy of the string. */
void sj_set_string(sj_value *v, const char *s, size_t len);

typedef struct sj_buf { uint8_t *ptr; size_t len, cap; } sj_buf;
/* Appends the compact JSON text of `v` to `buf` (serde_json::to_vec's bytes). */
void sj_write(sj_buf *buf, const sj_value *v);
void sj_buf_free(sj_buf *buf);
/* A finite double as serde_json writes it (`1.0`, `0.001`, `1e-7`); returns its length. */
size_t sj_format_double(double f, char out[32]);

#ifdef __cplusplus
}
#endif

#endif
