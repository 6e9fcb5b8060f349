/* C guest SDK for Sluice transforms.
 *
 * A plugin defines two functions and links with sluice.c:
 *
 *     const char *sluice_init(const sluice_config *config);
 *         Called once per instance. Return NULL to accept the config, or a message to refuse it
 *         (sluice_errorf formats one).
 *
 *     int sluice_transform(const sluice_record *record, sluice_emitter *out);
 *         Called for every record, in order. Emit 0..N outputs with sluice_emit / sluice_forward
 *         and return 0, or return sluice_reject(out, "fmt", ...) to send this record to the
 *         dead-letter topic with that message as its reason (its outputs are discarded).
 *
 * The SDK implements the component's exports over the host's batch encoding (wit/sluice.wit):
 * records are views into the batch buffer, valid during the call. Build with build.sh. */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes that may be absent (a Kafka null): present == false. */
typedef struct sluice_bytes {
    const uint8_t *ptr;
    size_t len;
    bool present;
} sluice_bytes;

typedef struct sluice_header {
    sluice_bytes name; /* UTF-8, always present */
    sluice_bytes value;
} sluice_header;

typedef struct sluice_record {
    sluice_bytes key;
    sluice_bytes value;
    const sluice_header *headers; /* in producer order */
    size_t header_count;
    bool has_timestamp;
    int64_t timestamp; /* milliseconds since the Unix epoch */
    sluice_bytes topic;
    int32_t partition;
    int64_t offset;
} sluice_record;

/* One output record. Fields left zero are absent; has_timestamp == false keeps the input's
 * timestamp; to == NULL sends it to the pipeline's default output. */
typedef struct sluice_output {
    sluice_bytes key;
    sluice_bytes value;
    const sluice_header *headers;
    size_t header_count;
    bool has_timestamp;
    int64_t timestamp;
    const char *to; /* a named output declared in the pipeline config */
} sluice_output;

typedef struct sluice_config sluice_config;
typedef struct sluice_emitter sluice_emitter;

/* The plugin's config: string pairs in file order (NUL-terminated UTF-8). */
size_t sluice_config_len(const sluice_config *config);
const char *sluice_config_key(const sluice_config *config, size_t i);
const char *sluice_config_value(const sluice_config *config, size_t i);
/* The value of `key`, or NULL if it is not set. */
const char *sluice_config_get(const sluice_config *config, const char *key);

/* Emits one output for the current record. */
void sluice_emit(sluice_emitter *out, const sluice_output *output);
/* Sends `record` on unchanged (key, value, headers, timestamp) to the default output. */
void sluice_forward(sluice_emitter *out, const sluice_record *record);
/* Rejects the current record with a printf-formatted message; returns -1 for `return`. */
int sluice_reject(sluice_emitter *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rejects the current record with `len` bytes of UTF-8 message; returns -1. */
int sluice_reject_message(sluice_emitter *out, const char *message, size_t len);

/* A printf-formatted message in a buffer owned by the SDK (valid until the next call). */
const char *sluice_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes helpers. */
static inline sluice_bytes sluice_some(const void *ptr, size_t len) {
    sluice_bytes b = {(const uint8_t *)ptr, len, true};
    return b;
}
static inline sluice_bytes sluice_none(void) {
    sluice_bytes b = {0, 0, false};
    return b;
}

typedef enum sluice_level {
    SLUICE_TRACE = 0,
    SLUICE_DEBUG = 1,
    SLUICE_INFO = 2,
    SLUICE_WARN = 3,
    SLUICE_ERROR = 4,
} sluice_level;

/* Writes a printf-formatted line into the host's log, tagged with the plugin's name. */
void sluice_log(sluice_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Implemented by the plugin. */
const char *sluice_init(const sluice_config *config);
int sluice_transform(const sluice_record *record, sluice_emitter *out);

#ifdef __cplusplus
}
#endif

#endif
