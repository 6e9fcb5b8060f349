/* Every state call of the C SDK, with a summary of what each returned as the output value (the
 * same in every language: see go-state-ops, cpp-state-ops). The scan goes through the paging
 * iterator one entry a page, so its continuation after the last key is exercised too; a timer
 * registered and cancelled must not fire (it would add an output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"
#include "sluice_state.h"

const char *sluice_init(const sluice_config *config) {
    (void)config;
    return NULL;
}

typedef struct {
    char *ptr;
    size_t len, cap;
} text;

static void add(text *t, const void *p, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->ptr = realloc(t->ptr, t->cap);
        if (!t->ptr) abort();
    }
    memcpy(t->ptr + t->len, p, n);
    t->len += n;
}

static void adds(text *t, const char *s) { add(t, s, strlen(s)); }

/* The record's key followed by `suffix`, in `buf` (keys here are short). */
static sluice_bytes key(char *buf, sluice_bytes k, const char *suffix) {
    memcpy(buf, k.ptr, k.len);
    memcpy(buf + k.len, suffix, strlen(suffix));
    return sluice_some(buf, k.len + strlen(suffix));
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    sluice_bytes k = record->key;
    if (!k.present || k.len > 200) return sluice_reject(out, "a key of at most 200 bytes is required");
    char a[256], b[256], c[256], slash[256];
    sluice_bytes ka = key(a, k, "/a"), kb = key(b, k, "/b"), kc = key(c, k, "/c"), prefix = key(slash, k, "/");
    sluice_entry entries[3] = {{ka, sluice_some("1", 1)}, {kb, sluice_some("2", 1)}, {kc, sluice_none()}};
    sluice_state_put_many(entries, 3);
    sluice_bytes keys[3] = {ka, kb, kc};
    sluice_values got;
    sluice_state_get_many(keys, 3, &got);
    sluice_state_delete(ka.ptr, ka.len);
    /* A timer registered and cancelled never fires (sluice_on_timer would show it). */
    char t_[256];
    sluice_bytes kt = key(t_, k, "/t");
    int64_t at = record->has_timestamp ? record->timestamp : 0;
    sluice_timer_register(SLUICE_EVENT_TIME, kt.ptr, kt.len, at);
    sluice_timer_cancel(SLUICE_EVENT_TIME, kt.ptr, kt.len, at);

    text t = {0};
    adds(&t, "get_many=");
    for (size_t i = 0; i < got.count; i++) {
        if (i) adds(&t, ",");
        if (got.ptr[i].present) add(&t, got.ptr[i].ptr, got.ptr[i].len);
        else adds(&t, "-");
    }
    sluice_values_free(&got);

    adds(&t, " scan=");
    sluice_scan_iter it;
    sluice_scan_begin(&it, prefix.ptr, prefix.len, 1);
    const sluice_entry *e;
    for (size_t i = 0; (e = sluice_scan_next(&it)); i++) {
        if (i) adds(&t, ",");
        add(&t, e->key.ptr, e->key.len);
        adds(&t, "=");
        add(&t, e->value.ptr, e->value.len);
    }
    sluice_scan_end(&it);

    adds(&t, " after=");
    sluice_entries paged;
    sluice_state_scan(prefix.ptr, prefix.len, ka, 10, &paged);
    for (size_t i = 0; i < paged.count; i++) {
        if (i) adds(&t, ",");
        add(&t, paged.entries[i].key.ptr, paged.entries[i].key.len);
    }
    sluice_entries_free(&paged);

    int64_t wm;
    char w[32];
    if (sluice_watermark(&wm)) snprintf(w, sizeof w, " wm=%lld", (long long)wm);
    else snprintf(w, sizeof w, " wm=none");
    adds(&t, w);

    sluice_output o = {.key = k, .value = sluice_some(t.ptr, t.len)};
    sluice_emit(out, &o);
    free(t.ptr);
    return 0;
}

int sluice_on_timer(const sluice_timer *timer, sluice_emitter *out) {
    sluice_output o = {.key = timer->key, .value = sluice_some("a cancelled timer fired", 23)};
    sluice_emit(out, &o);
    return 0;
}
