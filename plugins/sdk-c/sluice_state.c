/* Keyed state and timers (sluice_state.h) over the WIT `state` and `timers` interfaces, and the
 * `on-timer` export of the `stateful-transform` world, their canonical ABI written out by hand:
 *
 * - `get(list<u8>) -> option<list<u8>>`: key pointer and length, and a return area of 12 bytes
 *   (the option's tag byte, then the list's pointer and length at offsets 4 and 8);
 * - `scan(list<u8>, option<list<u8>>, u32) -> list<tuple<list<u8>, list<u8>>>`: the option is
 *   flattened to (tag, pointer, length); the result is a list of 16-byte elements (key pointer,
 *   key length, value pointer, value length) in a return area of (pointer, length);
 * - `get-many` returns two lists in a return area of four words; `put-many` returns nothing;
 *   their word lists (`keys`, `entries`, the result's spans) are little-endian u32s in a
 *   `list<u8>`, lengths in bytes (SLUICE__WORDS_LEN), as is `on-timer`'s `timers`;
 * - `register(time-domain, list<u8>, s64)`: the enum as an i32, the key, the time as an i64;
 * - `on-timer(fired-timers) -> output-batch`: the record's two lists as four i32 parameters, the
 *   result as in `process` (sluice.c).
 *
 * The host allocates what it returns with `cabi_realloc` (an empty list gets no allocation: its
 * pointer is the alignment); the guest frees it. Linked only into plugins that define
 * sluice_on_timer (build.sh), so stateless plugins neither import `state` nor export `on-timer`. */
#include "sluice_state.h"
#include "sluice_internal.h"

#include <stdlib.h>
#include <string.h>

#define NONE 0xFFFFFFFFu
#define STATE_IMPORT(name) __attribute__((import_module("sluice:plugin/state@" SLUICE__ABI), import_name(name)))
#define TIMERS_IMPORT(name) __attribute__((import_module("sluice:plugin/timers@" SLUICE__ABI), import_name(name)))

STATE_IMPORT("get")
extern void sluice_state_get_import(const void *key, size_t key_len, uint32_t *ret);
STATE_IMPORT("put")
extern void sluice_state_put_import(const void *key, size_t key_len, const void *value, size_t value_len);
STATE_IMPORT("delete")
extern void sluice_state_delete_import(const void *key, size_t key_len);
STATE_IMPORT("scan")
extern void sluice_state_scan_import(const void *prefix, size_t prefix_len, uint32_t has_after,
                                     const void *after, size_t after_len, uint32_t limit,
                                     uint32_t *ret);
STATE_IMPORT("get-many")
extern void sluice_state_get_many_import(const void *data, size_t data_len, const uint32_t *keys,
                                         size_t keys_len, uint32_t *ret);
STATE_IMPORT("put-many")
extern void sluice_state_put_many_import(const void *data, size_t data_len,
                                         const uint32_t *entries, size_t entries_len);
TIMERS_IMPORT("register")
extern void sluice_timers_register_import(uint32_t domain, const void *key, size_t key_len, int64_t at);
TIMERS_IMPORT("cancel")
extern void sluice_timers_cancel_import(uint32_t domain, const void *key, size_t key_len, int64_t at);
TIMERS_IMPORT("watermark")
extern int64_t sluice_timers_watermark_import(void);

/* Frees what cabi_realloc handed out: a zero-size allocation is the alignment, not a pointer. */
static void release(void *p, size_t size) {
    if (size) free(p);
}

void sluice_buf_free(sluice_buf *buf) {
    release(buf->ptr, buf->len);
    buf->ptr = NULL;
    buf->len = 0;
}

bool sluice_state_get(const void *key, size_t key_len, sluice_buf *value) {
    uint32_t ret[3] = {0, 0, 0};
    sluice_state_get_import(key, key_len, ret);
    if ((ret[0] & 0xff) == 0) {
        value->ptr = NULL;
        value->len = 0;
        return false;
    }
    value->ptr = ret[2] ? (uint8_t *)(uintptr_t)ret[1] : NULL;
    value->len = ret[2];
    return true;
}

void sluice_state_put(const void *key, size_t key_len, const void *value, size_t value_len) {
    sluice_state_put_import(key, key_len, value, value_len);
}

void sluice_state_delete(const void *key, size_t key_len) {
    sluice_state_delete_import(key, key_len);
}

void sluice_entries_free(sluice_entries *e) {
    for (size_t i = 0; i < e->count; i++) {
        release((void *)e->entries[i].key.ptr, e->entries[i].key.len);
        release((void *)e->entries[i].value.ptr, e->entries[i].value.len);
    }
    free(e->entries);
    e->entries = NULL;
    e->count = 0;
}

void sluice_state_scan(const void *prefix, size_t prefix_len, sluice_bytes after, uint32_t limit,
                       sluice_entries *out) {
    uint32_t ret[2] = {0, 0};
    sluice_state_scan_import(prefix, prefix_len, after.present, after.present ? after.ptr : NULL,
                             after.present ? after.len : 0, limit, ret);
    const uint32_t *w = (const uint32_t *)(uintptr_t)ret[0];
    size_t n = ret[1];
    out->count = n;
    out->entries = malloc((n ? n : 1) * sizeof(sluice_entry));
    if (!out->entries) abort();
    for (size_t i = 0; i < n; i++) {
        const uint32_t *x = w + 4 * i;
        out->entries[i].key = sluice_some(x[1] ? (const void *)(uintptr_t)x[0] : NULL, x[1]);
        out->entries[i].value = sluice_some(x[3] ? (const void *)(uintptr_t)x[2] : NULL, x[3]);
    }
    release((void *)w, n);
}

void sluice_scan_begin(sluice_scan_iter *it, const void *prefix, size_t prefix_len, uint32_t page) {
    memset(it, 0, sizeof *it);
    it->prefix = malloc(prefix_len ? prefix_len : 1);
    if (!it->prefix) abort();
    if (prefix_len) memcpy(it->prefix, prefix, prefix_len);
    it->prefix_len = prefix_len;
    it->page = page == 0 ? 256 : page > SLUICE_SCAN_MAX ? SLUICE_SCAN_MAX : page;
}

const sluice_entry *sluice_scan_next(sluice_scan_iter *it) {
    if (it->next < it->current.count) return &it->current.entries[it->next++];
    if (it->done) return NULL;
    /* The next page starts after the last key of this one (the first page after nothing). */
    sluice_bytes after = sluice_none();
    if (it->current.count) after = it->current.entries[it->current.count - 1].key;
    sluice_entries page;
    sluice_state_scan(it->prefix, it->prefix_len, after, it->page, &page);
    sluice_entries_free(&it->current);
    it->current = page;
    it->next = 0;
    it->done = page.count < it->page;
    if (it->next < it->current.count) return &it->current.entries[it->next++];
    it->done = true;
    return NULL;
}

void sluice_scan_end(sluice_scan_iter *it) {
    sluice_entries_free(&it->current);
    free(it->prefix);
    memset(it, 0, sizeof *it);
}

void sluice_state_get_many(const sluice_bytes *keys, size_t count, sluice_values *values) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += keys[i].len;
    uint8_t *data = malloc(total ? total : 1);
    uint32_t *spans = malloc((count ? count : 1) * 8);
    if (!data || !spans) abort();
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (keys[i].len) memcpy(data + at, keys[i].ptr, keys[i].len);
        spans[2 * i] = (uint32_t)at;
        spans[2 * i + 1] = (uint32_t)keys[i].len;
        at += keys[i].len;
    }
    uint32_t ret[4] = {0, 0, 0, 0};
    sluice_state_get_many_import(data, total, spans, SLUICE__WORDS_LEN(count * 2), ret);
    free(data);
    free(spans);
    values->data = (uint8_t *)(uintptr_t)ret[0];
    values->data_len = ret[1];
    values->spans = (uint32_t *)(uintptr_t)ret[2];
    values->spans_len = ret[3];
    size_t words = SLUICE__WORD_COUNT(ret[3]);
    values->count = count;
    values->ptr = malloc((count ? count : 1) * sizeof(sluice_bytes));
    if (!values->ptr) abort();
    for (size_t i = 0; i < count; i++) {
        /* The host answers one span per key; a missing one is absent. */
        uint32_t off = 2 * i + 1 < words ? values->spans[2 * i] : 0;
        uint32_t len = 2 * i + 1 < words ? values->spans[2 * i + 1] : NONE;
        values->ptr[i] = len == NONE ? sluice_none() : sluice_some(values->data + off, len);
    }
}

void sluice_values_free(sluice_values *values) {
    release(values->data, values->data_len);
    release(values->spans, values->spans_len);
    free(values->ptr);
    memset(values, 0, sizeof *values);
}

void sluice_state_put_many(const sluice_entry *entries, size_t count) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += entries[i].key.len + (entries[i].value.present ? entries[i].value.len : 0);
    uint8_t *data = malloc(total ? total : 1);
    uint32_t *spans = malloc((count ? count : 1) * 16);
    if (!data || !spans) abort();
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        const sluice_entry *e = &entries[i];
        spans[4 * i] = (uint32_t)at;
        spans[4 * i + 1] = (uint32_t)e->key.len;
        if (e->key.len) memcpy(data + at, e->key.ptr, e->key.len);
        at += e->key.len;
        if (e->value.present) {
            spans[4 * i + 2] = (uint32_t)at;
            spans[4 * i + 3] = (uint32_t)e->value.len;
            if (e->value.len) memcpy(data + at, e->value.ptr, e->value.len);
            at += e->value.len;
        } else {
            spans[4 * i + 2] = 0;
            spans[4 * i + 3] = NONE;
        }
    }
    sluice_state_put_many_import(data, total, spans, SLUICE__WORDS_LEN(count * 4));
    free(data);
    free(spans);
}

void sluice_timer_register(sluice_time_domain domain, const void *key, size_t key_len, int64_t at) {
    sluice_timers_register_import((uint32_t)domain, key, key_len, at);
}

void sluice_timer_cancel(sluice_time_domain domain, const void *key, size_t key_len, int64_t at) {
    sluice_timers_cancel_import((uint32_t)domain, key, key_len, at);
}

bool sluice_watermark(int64_t *watermark) {
    int64_t w = sluice_timers_watermark_import();
    if (w == INT64_MIN) return false;
    *watermark = w;
    return true;
}

/* ---- on-timer ---- */

static int timer_call(void *timer, sluice_emitter *out) {
    return sluice_on_timer((const sluice_timer *)timer, out);
}

EXPORT("on-timer")
void *sluice_export_on_timer(uint8_t *data, size_t data_len, uint32_t *words, size_t words_len) {
    size_t n = SLUICE__WORD_COUNT(words_len) / 5;
    sluice__calls_begin(data, data_len, n, 0);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *w = words + 5 * i;
        sluice_timer t;
        t.key = sluice_some(data + w[0], w[1]);
        t.domain = (sluice_time_domain)w[2];
        t.time = (int64_t)((uint64_t)w[3] | ((uint64_t)w[4] << 32));
        sluice__call((uint32_t)i, timer_call, &t);
    }
    release(words, words_len);
    release(data, data_len);
    return sluice__calls_end();
}

EXPORT("cabi_post_on-timer")
void sluice_post_on_timer(void *ret) {
    (void)ret; /* outputs are released at the start of the next call */
}
