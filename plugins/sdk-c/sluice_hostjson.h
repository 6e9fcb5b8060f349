/* JSON field access done by the host (the WIT `json` interface): read a few fields of every
 * record's JSON value and write edits back without parsing or serialising JSON in the plugin.
 * Results are serde_json's, byte for byte the same in every language.
 *
 * Declare the paths (JSON Pointers) once, in sluice_init, with sluice_paths_new. In
 * sluice_transform, sluice_doc_of gives the record's view — its first call in a batch reads
 * those paths of every record in one host call — and sluice_doc_edit starts an edited copy of
 * the value; put sluice_edit_value(edit) in an output's `value`. After the last record the SDK
 * applies every edit of the batch in one host call and puts the written documents in place (an
 * input whose document cannot be written — not valid JSON, or an edit failed — is rejected).
 *
 *     static sluice_paths *paths;            // in sluice_init:
 *     const char *p[] = {"/id", "/email"};   //   paths = sluice_paths_new(p, 2);
 *
 *     sluice_doc doc = sluice_doc_of(paths, out);
 *     if (sluice_doc_kind(&doc) != SLUICE_JSON_OBJECT) return sluice_reject(out, "not an object");
 *     sluice_field email = sluice_doc_get(&doc, 1);
 *     sluice_edit edit = sluice_doc_edit(&doc);
 *     sluice_edit_set_str(edit, 1, "hidden", 6);
 *     sluice_output o = {.key = record->key, .value = sluice_edit_value(edit)};
 *     sluice_emit(out, &o); */
#ifndef SLUICE_HOSTJSON_H
#define SLUICE_HOSTJSON_H

#include "sluice.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a path found (the WIT `kind`). */
typedef enum sluice_json_kind {
    SLUICE_JSON_MISSING = 0, /* not there, or the document is not valid JSON */
    SLUICE_JSON_NULL = 1,
    SLUICE_JSON_FALSE = 2,
    SLUICE_JSON_TRUE = 3,
    SLUICE_JSON_NUMBER = 4, /* text: the number as serde_json prints it */
    SLUICE_JSON_STRING = 5, /* text: the string decoded, UTF-8 (may hold NUL bytes) */
    SLUICE_JSON_ARRAY = 6,  /* text: compact JSON */
    SLUICE_JSON_OBJECT = 7, /* text: compact JSON */
} sluice_json_kind;

/* A field: its kind and text (not NUL-terminated), valid until the batch ends. */
typedef struct sluice_field {
    sluice_json_kind kind;
    const char *ptr;
    size_t len;
} sluice_field;

typedef struct sluice_paths sluice_paths;

/* One record's view. */
typedef struct sluice_doc {
    sluice_paths *paths;
    uint32_t record;
    const uint32_t *fields;
} sluice_doc;

/* An edited copy of a record's value. */
typedef struct sluice_edit {
    uint32_t slot;
} sluice_edit;

/* Declares `count` JSON Pointers (copied), named by their index afterwards. */
sluice_paths *sluice_paths_new(const char *const *paths, size_t count);
/* The JSON Pointer of top-level key `key` (`~` and `/` escaped), NUL-terminated, malloc'd. */
char *sluice_pointer(const char *key, size_t len);

/* The view of the current record's value. */
sluice_doc sluice_doc_of(sluice_paths *paths, const sluice_emitter *out);
/* The kind of the whole value: SLUICE_JSON_MISSING if it is not valid JSON (or absent). */
sluice_json_kind sluice_doc_kind(const sluice_doc *doc);
/* The field at declared path number `path`. */
sluice_field sluice_doc_get(const sluice_doc *doc, size_t path);

/* Starts an edited copy of the value (unchanged until edited). */
sluice_edit sluice_doc_edit(const sluice_doc *doc);
/* Sets path `path` to a UTF-8 string (adding the key if its object lacks it). */
void sluice_edit_set_str(sluice_edit edit, size_t path, const char *s, size_t len);
/* Sets path `path` to JSON text (invalid JSON rejects the input when the batch ends). */
void sluice_edit_set_raw(sluice_edit edit, size_t path, const char *json, size_t len);
/* Removes path `path` (nothing if it is not there). */
void sluice_edit_remove(sluice_edit edit, size_t path);
/* The edited document, for an output's `value`. */
sluice_bytes sluice_edit_value(sluice_edit edit);

#ifdef __cplusplus
}
#endif

#endif
