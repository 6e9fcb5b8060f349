/* Keyed state and timers for C plugins of the `stateful-transform` world (wit/sluice.wit,
 * interfaces `state` and `timers`; docs/state.md).
 *
 * A plugin is stateful when it defines sluice_on_timer (below): build.sh then links this part of
 * the SDK (sluice_state.c, which exports `on-timer`) and embeds the `stateful-transform` world.
 * A plugin that calls these functions without defining sluice_on_timer does not link.
 *
 * State lives in the host, scoped to the partition of the records being processed, and to the
 * plugin: it survives traps, hot swaps and restarts. The changes a call (one batch of
 * sluice_transform calls, or of sluice_on_timer calls) makes apply only if the call returns: a
 * record that traps changes nothing. A record the plugin rejects (sluice_reject) keeps the
 * changes made for it. sluice_init runs before any partition is assigned: state and timer calls
 * there trap.
 *
 *     int sluice_transform(const sluice_record *r, sluice_emitter *out) {
 *         sluice_buf old;
 *         long n = sluice_state_get(r->key.ptr, r->key.len, &old) ? parse(old) : 0;
 *         sluice_buf_free(&old);
 *         ...
 *         sluice_state_put(r->key.ptr, r->key.len, text, text_len);
 *         sluice_timer_register(SLUICE_EVENT_TIME, r->key.ptr, r->key.len, r->timestamp + 60000);
 *     }
 *     int sluice_on_timer(const sluice_timer *t, sluice_emitter *out) { ... }
 *
 * Keys and values are bytes (any length, may hold NUL). Every function below is one host call
 * ("crossing") unless it says otherwise; sluice_state_get_many / sluice_state_put_many do many
 * keys in one. */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include "sluice.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes owned by the caller: release them with sluice_buf_free (which zeroes the struct; freeing
 * a zeroed sluice_buf does nothing). */
typedef struct sluice_buf {
    uint8_t *ptr;
    size_t len;
} sluice_buf;

void sluice_buf_free(sluice_buf *buf);

/* ---- keyed state ---- */

/* Whether a value is stored under `key`; if so, *value is a copy of it (release it with
 * sluice_buf_free), otherwise *value is zeroed. */
bool sluice_state_get(const void *key, size_t key_len, sluice_buf *value);

/* Stores `value` under `key`. A put beyond the plugin's state limit or the tenant's quota traps
 * the call (reason limit:state): the host isolates the record responsible. */
void sluice_state_put(const void *key, size_t key_len, const void *value, size_t value_len);

/* Removes `key` (nothing if it is absent). */
void sluice_state_delete(const void *key, size_t key_len);

/* A key and its value; in a sluice_state_put_many, a value with present == false deletes. */
typedef struct sluice_entry {
    sluice_bytes key;
    sluice_bytes value;
} sluice_entry;

/* Entries returned by the host, owned by the caller: release with sluice_entries_free. */
typedef struct sluice_entries {
    sluice_entry *entries;
    size_t count;
} sluice_entries;

void sluice_entries_free(sluice_entries *entries);

/* The host's largest page: a scan returns at most this many entries a call. */
#define SLUICE_SCAN_MAX 10000u

/* Up to `limit` entries whose keys start with `prefix`, in ascending byte order of key,
 * starting after the key `after` when after.present (to page through a long scan). */
void sluice_state_scan(const void *prefix, size_t prefix_len, sluice_bytes after, uint32_t limit,
                       sluice_entries *out);

/* Every entry under a prefix, paged: the iterator fetches `page` entries a crossing (0: 256) and
 * goes on after the last key it saw.
 *
 *     sluice_scan_iter it;
 *     sluice_scan_begin(&it, "user/", 5, 0);
 *     const sluice_entry *e;
 *     while ((e = sluice_scan_next(&it))) { ... e->key, e->value: valid until the next call ... }
 *     sluice_scan_end(&it); */
typedef struct sluice_scan_iter {
    uint8_t *prefix;
    size_t prefix_len;
    uint32_t page;
    sluice_entries current;
    size_t next;
    bool done;
} sluice_scan_iter;

void sluice_scan_begin(sluice_scan_iter *it, const void *prefix, size_t prefix_len, uint32_t page);
/* The next entry, or NULL at the end; valid until the next sluice_scan_next or sluice_scan_end. */
const sluice_entry *sluice_scan_next(sluice_scan_iter *it);
void sluice_scan_end(sluice_scan_iter *it);

/* `count` gets in one crossing: values->ptr[i] is the value of keys[i] (present == false when
 * absent), valid until sluice_values_free. */
typedef struct sluice_values {
    sluice_bytes *ptr;
    size_t count;
    uint8_t *data; /* the bytes the values point into */
    uint32_t *spans;
    size_t data_len, spans_len;
} sluice_values;

void sluice_state_get_many(const sluice_bytes *keys, size_t count, sluice_values *values);
void sluice_values_free(sluice_values *values);

/* `count` puts (value present) and deletes (value absent) in one crossing, applied in order. */
void sluice_state_put_many(const sluice_entry *entries, size_t count);

/* ---- timers ---- */

/* Which clock a timer follows. */
typedef enum sluice_time_domain {
    /* The partition's watermark: the largest record timestamp seen minus the pipeline's allowed
     * lateness. Fires once the watermark reaches the timer's time. */
    SLUICE_EVENT_TIME = 0,
    /* The host's wall clock. Fires at the first batch boundary after the time passes. */
    SLUICE_PROCESSING_TIME = 1,
} sluice_time_domain;

/* Registers a timer for `key` at `at` (ms since the Unix epoch). The same (domain, key, at)
 * registered twice is one timer. */
void sluice_timer_register(sluice_time_domain domain, const void *key, size_t key_len, int64_t at);

/* Cancels the timer registered with the same (domain, key, at); nothing if there is none. */
void sluice_timer_cancel(sluice_time_domain domain, const void *key, size_t key_len, int64_t at);

/* Whether the partition has a watermark yet (false before any record); if so, *watermark is
 * it (ms). */
bool sluice_watermark(int64_t *watermark);

/* A timer that fired. */
typedef struct sluice_timer {
    sluice_bytes key; /* valid during the call */
    sluice_time_domain domain;
    int64_t time; /* ms since the Unix epoch */
} sluice_timer;

/* Implemented by a stateful plugin: called for every timer that fired, in order of time, after
 * the batch whose records made the watermark (or the clock) pass it. Emit 0..N outputs with
 * sluice_emit (an output without a timestamp gets the timer's time) and return 0, or return sluice_reject(out, ...) to dead-letter the timer (as a record with its
 * key, no value, and headers sluice.timer.domain / sluice.timer.time). sluice_forward and the
 * host JSON calls (sluice_hostjson.h) are for sluice_transform only. */
int sluice_on_timer(const sluice_timer *timer, sluice_emitter *out);

#ifdef __cplusplus
}
#endif

#endif
