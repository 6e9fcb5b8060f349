/* A per-key counter (the stateful plugin of host/tests/languages.rs, as in Rust, Python,
 * JavaScript, Go and C++): emits each key's running count, and when an event-time timer at the
 * end of the record's second fires, that key's count then. Keys are required. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"
#include "sluice_state.h"

const char *sluice_init(const sluice_config *config) {
    (void)config;
    return NULL;
}

/* The count stored under `key`, 0 when there is none (or it is not a number). */
static unsigned long long count_of(sluice_bytes key) {
    sluice_buf old;
    unsigned long long n = 0;
    if (sluice_state_get(key.ptr, key.len, &old)) {
        char text[32] = {0};
        if (old.len > 0 && old.len < sizeof text) {
            for (size_t i = 0; i < old.len; i++) text[i] = (char)old.ptr[i];
            char *end;
            n = strtoull(text, &end, 10);
            if (*end) n = 0;
        }
    }
    sluice_buf_free(&old);
    return n;
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    if (!record->key.present) return sluice_reject(out, "record has no key");
    unsigned long long n = count_of(record->key) + 1;
    char text[32];
    int len = snprintf(text, sizeof text, "%llu", n);
    sluice_state_put(record->key.ptr, record->key.len, text, (size_t)len);
    if (record->has_timestamp && record->timestamp >= 0) {
        int64_t ts = record->timestamp;
        sluice_timer_register(SLUICE_EVENT_TIME, record->key.ptr, record->key.len, ts - ts % 1000 + 1000);
    }
    sluice_output o = {.key = record->key, .value = sluice_some(text, (size_t)len)};
    sluice_emit(out, &o);
    return 0;
}

int sluice_on_timer(const sluice_timer *timer, sluice_emitter *out) {
    sluice_buf n;
    bool found = sluice_state_get(timer->key.ptr, timer->key.len, &n);
    char at[32];
    int at_len = snprintf(at, sizeof at, " at %lld", (long long)timer->time);
    size_t count_len = found ? n.len : 1;
    char *value = malloc(count_len + (size_t)at_len);
    if (!value) abort();
    for (size_t i = 0; i < count_len; i++) value[i] = found ? (char)n.ptr[i] : '0';
    for (int i = 0; i < at_len; i++) value[count_len + (size_t)i] = at[i];
    sluice_buf_free(&n);
    sluice_output o = {.key = timer->key,
                       .value = sluice_some(value, count_len + (size_t)at_len),
                       .has_timestamp = true,
                       .timestamp = timer->time};
    sluice_emit(out, &o);
    free(value);
    return 0;
}
