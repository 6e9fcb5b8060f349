/* The component ABI of the `transform` world (wit/sluice.wit), written out by hand: the
 * canonical ABI lowers `init(list<tuple<string,string>>) -> result<_, string>` to
 * `init(ptr, len) -> retptr` and `process(input-batch) -> output-batch` to eight i32 parameters
 * (four lists; the word lists `records` and `headers` are `list<u8>` of little-endian u32s, so
 * their lengths are in bytes: SLUICE__WORDS_LEN) and a pointer to five (ptr, len) pairs; the
 * host allocates inputs with `cabi_realloc` and frees nothing, so the guest does, and reads
 * outputs before calling `cabi_post_*`. */
#include "sluice.h"
#include "sluice_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE 0xFFFFFFFFu
/* Value-span length of an output whose value is an edited document still to be written. */
#define JSON_PENDING 0xFFFFFFFEu

__attribute__((import_module("sluice:plugin/host@" SLUICE__ABI), import_name("log")))
extern void sluice_host_log(int32_t level, const char *ptr, size_t len);

/* Frees what cabi_realloc handed out: a zero-size allocation is the alignment, not a pointer. */
static void release(void *p, size_t size) {
    if (size) free(p);
}

EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    if (new_size == 0) return (void *)align;
    void *p = realloc(old, new_size);
    if (!p) abort();
    return p;
}

/* ---- growable buffers ---- */

typedef struct { uint8_t *ptr; size_t len, cap; } bytes_buf;
typedef struct { uint32_t *ptr; size_t len, cap; } words_buf;

static void bytes_push(bytes_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        b->ptr = cabi_realloc(b->ptr, b->cap, 1, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static void bytes_reserve(bytes_buf *b, size_t n) {
    if (b->cap < n) {
        b->ptr = cabi_realloc(b->ptr, b->cap, 1, n);
        b->cap = n;
    }
}

static void words_reserve(words_buf *w, size_t n) {
    if (w->cap < n) {
        w->ptr = cabi_realloc(w->ptr, w->cap * 4, 4, n * 4);
        w->cap = n;
    }
}

static void words_push(words_buf *w, uint32_t v) {
    if (w->len == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        w->ptr = cabi_realloc(w->ptr, w->cap * 4, 4, cap * 4);
        w->cap = cap;
    }
    w->ptr[w->len++] = v;
}

/* ---- config ---- */

struct sluice_config {
    size_t len;
    char **keys;
    char **values;
};

size_t sluice_config_len(const sluice_config *c) { return c->len; }
const char *sluice_config_key(const sluice_config *c, size_t i) { return i < c->len ? c->keys[i] : NULL; }
const char *sluice_config_value(const sluice_config *c, size_t i) { return i < c->len ? c->values[i] : NULL; }
const char *sluice_config_get(const sluice_config *c, const char *key) {
    for (size_t i = 0; i < c->len; i++)
        if (strcmp(c->keys[i], key) == 0) return c->values[i];
    return NULL;
}

static char *cstr(const char *p, size_t n) {
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static char *vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *error_text;

const char *sluice_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    free(error_text);
    error_text = s;
    return s;
}

void sluice_log(sluice_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    sluice_host_log(level, s, strlen(s));
    free(s);
}

/* ---- init ---- */

static struct { uint32_t tag, ptr, len; } init_ret;
static char *init_error;

EXPORT("init")
void *sluice_export_init(uint32_t *pairs, size_t n) {
    static sluice_config config;
    config.len = n;
    config.keys = malloc((n ? n : 1) * sizeof(char *));
    config.values = malloc((n ? n : 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        uint32_t *e = pairs + i * 4;
        config.keys[i] = cstr((const char *)(uintptr_t)e[0], e[1]);
        config.values[i] = cstr((const char *)(uintptr_t)e[2], e[3]);
        release((void *)(uintptr_t)e[0], e[1]);
        release((void *)(uintptr_t)e[2], e[3]);
    }
    release(pairs, n);
    const char *err = sluice_init(&config);
    if (err) {
        init_error = strdup(err);
        init_ret.tag = 1;
        init_ret.ptr = (uint32_t)(uintptr_t)init_error;
        init_ret.len = (uint32_t)strlen(init_error);
    } else {
        init_ret.tag = 0;
    }
    return &init_ret;
}

EXPORT("cabi_post_init")
void sluice_post_init(void *ret) {
    (void)ret;
    free(init_error);
    init_error = NULL;
}

/* ---- process ---- */

struct sluice_emitter {
    const uint8_t *in_data; /* the batch's data: the output's data starts with a copy of it */
    size_t in_len;
    uint32_t input;
    bytes_buf data;
    words_buf records, headers;
    /* output names */
    uint32_t *outputs; /* (ptr, len) pairs */
    size_t output_count;
    /* errors: (input, ptr, len) triples */
    words_buf errors;
    bool rejected;
};

static struct sluice_emitter em;
static uint32_t process_ret[10];

static void push_span(sluice_emitter *out, words_buf *w, sluice_bytes b) {
    if (!b.present) {
        words_push(w, 0);
        words_push(w, NONE);
        return;
    }
    if (b.ptr == sluice__json_marker) {
        /* An edited document (sluice_edit_value): its slot, filled in after the batch. */
        words_push(w, (uint32_t)b.len);
        words_push(w, JSON_PENDING);
        return;
    }
    if (b.ptr >= out->in_data && b.ptr + b.len <= out->in_data + out->in_len) {
        /* A view of the input (a record's key, value or header): already in the output. */
        words_push(w, (uint32_t)(b.ptr - out->in_data));
        words_push(w, (uint32_t)b.len);
        return;
    }
    words_push(w, (uint32_t)out->data.len);
    words_push(w, (uint32_t)b.len);
    bytes_push(&out->data, b.ptr, b.len);
}

static uint32_t output_index(sluice_emitter *out, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < out->output_count; i++) {
        uint32_t *o = out->outputs + i * 2;
        if (o[1] == n && memcmp((void *)(uintptr_t)o[0], name, n) == 0) return (uint32_t)i;
    }
    out->outputs = realloc(out->outputs, (out->output_count + 1) * 8);
    out->outputs[out->output_count * 2] = (uint32_t)(uintptr_t)cstr(name, n);
    out->outputs[out->output_count * 2 + 1] = (uint32_t)n;
    return (uint32_t)out->output_count++;
}

void sluice_emit(sluice_emitter *out, const sluice_output *o) {
    uint32_t first = (uint32_t)(out->headers.len / 4);
    for (size_t i = 0; i < o->header_count; i++) {
        push_span(out, &out->headers, o->headers[i].name);
        push_span(out, &out->headers, o->headers[i].value);
    }
    words_buf *r = &out->records;
    words_push(r, out->input);
    push_span(out, r, o->key);
    push_span(out, r, o->value);
    words_push(r, first);
    words_push(r, (uint32_t)(out->headers.len / 4) - first);
    if (o->has_timestamp) {
        words_push(r, (uint32_t)(uint64_t)o->timestamp);
        words_push(r, (uint32_t)((uint64_t)o->timestamp >> 32));
    } else {
        words_push(r, 0);
        words_push(r, 0x80000000u);
    }
    words_push(r, o->to ? output_index(out, o->to) : NONE);
}

void sluice_forward(sluice_emitter *out, const sluice_record *rec) {
    sluice_output o = {rec->key, rec->value, rec->headers, rec->header_count,
                       rec->has_timestamp, rec->timestamp, NULL};
    sluice_emit(out, &o);
}

int sluice_reject(sluice_emitter *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    words_push(&out->errors, out->input);
    words_push(&out->errors, (uint32_t)(uintptr_t)s);
    words_push(&out->errors, (uint32_t)strlen(s));
    out->rejected = true;
    return -1;
}

int sluice_reject_message(sluice_emitter *out, const char *message, size_t len) {
    words_push(&out->errors, out->input);
    words_push(&out->errors, (uint32_t)(uintptr_t)cstr(message, len));
    words_push(&out->errors, (uint32_t)len);
    out->rejected = true;
    return -1;
}

uint32_t sluice__emitter_input(const sluice_emitter *out) {
    return out->input;
}

/* Puts the documents of sluice_edit_value in place: one host `write` per set of paths, then each
 * placeholder's span points at its document; an input whose document could not be written loses
 * its outputs and is rejected. */
static void finish_json(void) {
    sluice__json_write();
    size_t n = em.records.len / 10;
    uint32_t *failed = NULL;
    size_t failed_count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t *r = em.records.ptr + i * 10;
        if (r[4] != JSON_PENDING) continue;
        const uint8_t *p;
        size_t len;
        if (sluice__json_result(r[3], &p, &len)) {
            r[3] = (uint32_t)em.data.len;
            r[4] = (uint32_t)len;
            bytes_push(&em.data, p, len);
        } else {
            r[3] = 0;
            r[4] = NONE;
            if (!failed_count || failed[failed_count - 1] != r[0]) {
                failed = realloc(failed, (failed_count + 1) * 4);
                failed[failed_count++] = r[0];
            }
        }
    }
    sluice__json_end();
    if (!failed_count) return;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t *r = em.records.ptr + i * 10;
        bool drop = false;
        for (size_t f = 0; f < failed_count; f++) drop |= failed[f] == r[0];
        if (!drop) memmove(em.records.ptr + kept++ * 10, r, 40);
    }
    em.records.len = kept * 10;
    for (size_t f = 0; f < failed_count; f++) {
        em.input = failed[f];
        sluice_reject(&em, "the edited JSON value could not be written: the value is not valid JSON, or an edit's parent is missing or not an object or array, or a raw JSON edit is invalid");
    }
    free(failed);
}

static sluice_bytes span(const uint8_t *data, uint32_t off, uint32_t len) {
    if (len == NONE) return sluice_none();
    return sluice_some(data + off, len);
}

/* Starts a batch: the output buffers of the last one are kept and reused. */
static void reset_outputs(void) {
    em.data.len = em.records.len = em.headers.len = 0;
    for (size_t i = 0; i < em.output_count; i++) free((void *)(uintptr_t)em.outputs[i * 2]);
    em.output_count = 0;
    for (size_t i = 0; i < em.errors.len; i += 3) free((void *)(uintptr_t)em.errors.ptr[i + 1]);
    em.errors.len = 0;
}

sluice_emitter *sluice__calls_begin(const uint8_t *data, size_t data_len, size_t calls,
                                    size_t header_words) {
    reset_outputs();
    /* Room for an identity's outputs up front: growing while copying is what costs. The output's
     * data starts with a copy of the input's, so views of the input cost no copy. */
    bytes_reserve(&em.data, data_len + 4096);
    bytes_push(&em.data, data, data_len);
    em.in_data = data;
    em.in_len = data_len;
    words_reserve(&em.records, calls * 10 + 16);
    words_reserve(&em.headers, header_words + 16);
    return &em;
}

int sluice__call(uint32_t input, int (*call)(void *arg, sluice_emitter *out), void *arg) {
    size_t marks[3] = {em.data.len, em.records.len, em.headers.len};
    em.input = input;
    em.rejected = false;
    int rc = call(arg, &em);
    if (rc != 0) {
        em.data.len = marks[0];
        em.records.len = marks[1];
        em.headers.len = marks[2];
        if (!em.rejected) sluice_reject(&em, "rejected (code %d)", rc);
    }
    return rc;
}

void *sluice__calls_end(void) {
    em.in_data = NULL;
    em.in_len = 0;
    process_ret[0] = (uint32_t)(uintptr_t)em.data.ptr;
    process_ret[1] = (uint32_t)em.data.len;
    process_ret[2] = (uint32_t)(uintptr_t)em.records.ptr;
    process_ret[3] = (uint32_t)SLUICE__WORDS_LEN(em.records.len);
    process_ret[4] = (uint32_t)(uintptr_t)em.headers.ptr;
    process_ret[5] = (uint32_t)SLUICE__WORDS_LEN(em.headers.len);
    process_ret[6] = (uint32_t)(uintptr_t)em.outputs;
    process_ret[7] = (uint32_t)em.output_count;
    process_ret[8] = (uint32_t)(uintptr_t)em.errors.ptr;
    process_ret[9] = (uint32_t)(em.errors.len / 3);
    return process_ret;
}

static int transform_call(void *rec, sluice_emitter *out) {
    return sluice_transform((const sluice_record *)rec, out);
}

EXPORT("process")
void *sluice_export_process(uint8_t *data, size_t data_len, uint32_t *words, size_t words_len,
                            uint32_t *hwords, size_t hwords_len, uint32_t *topics,
                            size_t topic_count) {
    size_t word_count = SLUICE__WORD_COUNT(words_len), hword_count = SLUICE__WORD_COUNT(hwords_len);
    size_t n = word_count / 12;
    sluice__calls_begin(data, data_len, n, hword_count);
    static sluice_header *headers;
    static size_t headers_cap;
    if (headers_cap < hword_count / 4 + 1) {
        headers_cap = hword_count / 4 + 1;
        free(headers);
        headers = malloc(headers_cap * sizeof(sluice_header));
    }
    for (size_t h = 0; h < hword_count / 4; h++) {
        headers[h].name = span(data, hwords[h * 4], hwords[h * 4 + 1]);
        headers[h].value = span(data, hwords[h * 4 + 2], hwords[h * 4 + 3]);
    }
    sluice__json_begin(data, data_len, words, n);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *w = words + i * 12;
        sluice_record rec;
        rec.key = span(data, w[0], w[1]);
        rec.value = span(data, w[2], w[3]);
        rec.headers = headers + w[4];
        rec.header_count = w[5];
        rec.has_timestamp = !(w[6] == 0 && w[7] == 0x80000000u);
        rec.timestamp = (int64_t)((uint64_t)w[6] | ((uint64_t)w[7] << 32));
        const uint32_t *t = topics + w[8] * 2;
        rec.topic = sluice_some((const void *)(uintptr_t)t[0], t[1]);
        rec.partition = (int32_t)w[9];
        rec.offset = (int64_t)((uint64_t)w[10] | ((uint64_t)w[11] << 32));
        sluice__call((uint32_t)i, transform_call, &rec);
    }
    if (sluice__json_pending()) finish_json();
    else sluice__json_end();
    for (size_t i = 0; i < topic_count; i++) release((void *)(uintptr_t)topics[i * 2], topics[i * 2 + 1]);
    release(topics, topic_count);
    release(hwords, hwords_len);
    release(words, words_len);
    release(data, data_len);
    return sluice__calls_end();
}

EXPORT("cabi_post_process")
void sluice_post_process(void *ret) {
    (void)ret; /* outputs are released at the start of the next batch */
}
