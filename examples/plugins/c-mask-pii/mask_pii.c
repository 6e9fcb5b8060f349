/* mask-pii in C: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
 *
 * Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
 * an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
 * or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
 * empty string `id`, an invalid email and a masked field that is not a string.
 *
 * The JSON work is the host's (sluice_hostjson.h): `id` and the masked fields of the whole batch
 * are read in one host call and the masked strings set back; no JSON is parsed in the plugin. */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"
#include "sluice_hostjson.h"
#include "sluice_text.h"

static char **fields;
static size_t field_count;
/* Per field: whether its name contains `email` (decided once, in init). */
static bool *is_email;
/* `/id`, then one pointer per masked field. */
static sluice_paths *paths;
/* The masked text of the current field. */
static char *masked;
static size_t masked_cap;

static void reserve(size_t n) {
    if (n > masked_cap) {
        masked_cap = n * 2;
        masked = realloc(masked, masked_cap);
    }
}

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
    is_email = malloc(field_count * sizeof *is_email);
    for (size_t f = 0; f < field_count; f++) is_email[f] = strstr(fields[f], "email") != NULL;
    char **pointers = malloc((field_count + 1) * sizeof *pointers);
    pointers[0] = sluice_pointer("id", 2);
    for (size_t f = 0; f < field_count; f++) pointers[f + 1] = sluice_pointer(fields[f], strlen(fields[f]));
    paths = sluice_paths_new((const char *const *)pointers, field_count + 1);
    for (size_t f = 0; f <= field_count; f++) free(pointers[f]);
    free(pointers);
    return NULL;
}

/* `a****@example.com` into `masked`; its length, or -1 for an email without exactly one `@`
 * between non-empty parts. */
static long mask_email(const char *email, size_t len) {
    const char *at = memchr(email, '@', len);
    if (!at || at == email || at + 1 == email + len || memchr(at + 1, '@', (size_t)(email + len - at - 1)))
        return -1;
    size_t first = 0;
    sluice_utf8_next(email, &first);
    size_t domain = (size_t)(email + len - at);
    reserve(first + 4 + domain);
    memcpy(masked, email, first);
    memcpy(masked + first, "****", 4);
    memcpy(masked + first + 4, at, domain);
    return (long)(first + 4 + domain);
}

/* Every letter and digit but the last two replaced by `*`, into `masked`; its length. */
static size_t mask_tail(const char *text, size_t len) {
    size_t total = 0;
    for (size_t i = 0; i < len;)
        if (sluice_is_alphanumeric(sluice_utf8_next(text, &i))) total++;
    reserve(len + 1);
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
    return n;
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    if (!record->value.present) return sluice_reject(out, "record has no value");
    sluice_doc doc = sluice_doc_of(paths, out);
    if (sluice_doc_kind(&doc) != SLUICE_JSON_OBJECT) return sluice_reject(out, "value is not a JSON object");
    sluice_field id = sluice_doc_get(&doc, 0);
    if (id.kind != SLUICE_JSON_STRING || id.len == 0)
        return sluice_reject(out, "missing or empty string field `id`");
    sluice_edit edit = sluice_doc_edit(&doc);
    for (size_t f = 0; f < field_count; f++) {
        sluice_field v = sluice_doc_get(&doc, f + 1);
        if (v.kind == SLUICE_JSON_MISSING) continue;
        if (v.kind != SLUICE_JSON_STRING) return sluice_reject(out, "field `%s` is not a string", fields[f]);
        if (is_email[f]) {
            long n = mask_email(v.ptr, v.len);
            if (n < 0) {
                /* Built by hand: the email may hold a NUL, which printf would stop at. */
                char *m = malloc(v.len + 17);
                memcpy(m, "invalid email `", 15);
                memcpy(m + 15, v.ptr, v.len);
                m[15 + v.len] = '`';
                int rc = sluice_reject_message(out, m, v.len + 16);
                free(m);
                return rc;
            }
            sluice_edit_set_str(edit, f + 1, masked, (size_t)n);
        } else {
            size_t n = mask_tail(v.ptr, v.len); /* before reading `masked`: it may move */
            sluice_edit_set_str(edit, f + 1, masked, n);
        }
    }
    sluice_output o = {0};
    o.key = record->key;
    o.value = sluice_edit_value(edit);
    o.headers = record->headers;
    o.header_count = record->header_count;
    sluice_emit(out, &o);
    return 0;
}
