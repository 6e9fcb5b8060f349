/* mask-pii in C: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
 *
 * Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
 * an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
 * or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
 * empty string `id`, an invalid email and a masked field that is not a string. */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"
#include "sluice_json.h"
#include "sluice_text.h"

static char **fields;
static size_t field_count;

const char *sluice_init(const sluice_config *config) {
    const char *spec = sluice_config_get(config, "fields");
    if (!spec) spec = "email,phone";
    for (const char *p = spec;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        size_t start;
        size_t n = sluice_trim(p, len, &start);
        if (n) {
            fields = realloc(fields, (field_count + 1) * sizeof *fields);
            fields[field_count] = strndup(p + start, n);
            field_count++;
        }
        if (!comma) break;
        p = comma + 1;
    }
    if (field_count == 0) return "config `fields` must name at least one field to mask";
    for (size_t i = 0; i < sluice_config_len(config); i++) {
        const char *key = sluice_config_key(config, i);
        if (strcmp(key, "fields") != 0)
            return sluice_errorf("unknown config key `%s` (expected `fields`)", key);
    }
    return NULL;
}

/* `a****@example.com`; false for an email without exactly one `@` between non-empty parts. */
static bool mask_email(const char *email, size_t len, sj_value *out) {
    const char *at = memchr(email, '@', len);
    if (!at || at == email || at + 1 == email + len || memchr(at + 1, '@', (size_t)(email + len - at - 1)))
        return false;
    size_t first = 0;
    sluice_utf8_next(email, &first);
    size_t domain = (size_t)(email + len - at);
    char *masked = malloc(first + 4 + domain);
    memcpy(masked, email, first);
    memcpy(masked + first, "****", 4);
    memcpy(masked + first + 4, at, domain);
    sj_set_string(out, masked, first + 4 + domain);
    free(masked);
    return true;
}

/* Every letter and digit but the last two replaced by `*`. */
static void mask_tail(const char *text, size_t len, sj_value *out) {
    size_t total = 0;
    for (size_t i = 0; i < len;)
        if (sluice_is_alphanumeric(sluice_utf8_next(text, &i))) total++;
    char *masked = malloc(len + 1);
    size_t n = 0, seen = 0;
    for (size_t i = 0; i < len;) {
        size_t start = i;
        uint32_t c = sluice_utf8_next(text, &i);
        if (sluice_is_alphanumeric(c) && ++seen + 2 <= total) {
            masked[n++] = '*';
        } else {
            memcpy(masked + n, text + start, i - start);
            n += i - start;
        }
    }
    sj_set_string(out, masked, n);
    free(masked);
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    if (!record->value.present) return sluice_reject(out, "record has no value");
    sj_value user;
    if (!sj_parse(record->value.ptr, record->value.len, &user) || user.kind != SJ_OBJECT) {
        sj_free(&user);
        return sluice_reject(out, "value is not a JSON object");
    }
    int rc = 0;
    sj_value *id = sj_get(&user, "id", 2);
    if (!id || id->kind != SJ_STRING || id->as.s.len == 0) {
        rc = sluice_reject(out, "missing or empty string field `id`");
        goto done;
    }
    for (size_t f = 0; f < field_count; f++) {
        sj_value *v = sj_get(&user, fields[f], strlen(fields[f]));
        if (!v) continue;
        if (v->kind != SJ_STRING) {
            rc = sluice_reject(out, "field `%s` is not a string", fields[f]);
            goto done;
        }
        if (strstr(fields[f], "email")) {
            if (!mask_email(v->as.s.ptr, v->as.s.len, v)) {
                /* Built by hand: the email may hold a NUL, which printf would stop at. */
                size_t n = v->as.s.len;
                char *m = malloc(n + 17);
                memcpy(m, "invalid email `", 15);
                memcpy(m + 15, v->as.s.ptr, n);
                m[15 + n] = '`';
                rc = sluice_reject_message(out, m, n + 16);
                free(m);
                goto done;
            }
        } else {
            mask_tail(v->as.s.ptr, v->as.s.len, v);
        }
    }
    sj_buf json = {0};
    sj_write(&json, &user);
    sluice_output o = {0};
    o.key = record->key;
    o.value = sluice_some(json.ptr, json.len);
    o.headers = record->headers;
    o.header_count = record->header_count;
    sluice_emit(out, &o);
    sj_buf_free(&json);
done:
    sj_free(&user);
    return rc;
}
