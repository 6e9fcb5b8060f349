/* Host JSON access (sluice_hostjson.h) over the WIT `json` interface, its canonical ABI written
 * by hand: `read(list<u8>, list<u8>, list<string>) -> fields` lowers to six i32 parameters (a
 * pointer and a length per list — a list of words is little-endian u32s, its length in bytes,
 * see SLUICE__WORDS_LEN; a string list is an array of (pointer, length) pairs) plus a
 * pointer to a return area of two (pointer, length) pairs; `write` to ten i32 parameters plus the
 * same return area. The host allocates the returned lists with `cabi_realloc`; they are the
 * guest's to free. */
#include "sluice_hostjson.h"
#include "sluice_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE 0xFFFFFFFFu

__attribute__((import_module("sluice:plugin/json@" SLUICE__ABI), import_name("read")))
extern void sluice_json_read_import(const uint8_t *data, size_t data_len, const uint32_t *docs,
                                    size_t docs_len, const uint32_t *paths, size_t path_count,
                                    uint32_t *ret);

__attribute__((import_module("sluice:plugin/json@" SLUICE__ABI), import_name("write")))
extern void sluice_json_write_import(const uint8_t *data, size_t data_len, const uint32_t *docs,
                                     size_t docs_len, const uint32_t *paths, size_t path_count,
                                     const uint32_t *edits, size_t edits_len, const uint8_t *text,
                                     size_t text_len, uint32_t *ret);

const uint8_t sluice__json_marker[1];

struct sluice_paths {
    size_t count;
    uint32_t *strs; /* (ptr, len) pairs, as list<string> is lowered */
    uint64_t batch;
    uint32_t *fields;
    uint8_t *text;
};

typedef struct { uint8_t *ptr; size_t len, cap; } hj_bytes;
typedef struct { uint32_t *ptr; size_t len, cap; } hj_words;

static void hj_bytes_push(hj_bytes *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n) cap *= 2;
        b->ptr = realloc(b->ptr, cap);
        if (!b->ptr) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static void hj_words_push(hj_words *w, const uint32_t *v, size_t n) {
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        while (cap < w->len + n) cap *= 2;
        w->ptr = realloc(w->ptr, cap * 4);
        if (!w->ptr) abort();
        w->cap = cap;
    }
    memcpy(w->ptr + w->len, v, n * 4);
    w->len += n;
}

/* Edits of one set of paths in this batch, and what `write` returned for them. */
typedef struct {
    sluice_paths *paths;
    hj_words docs, edits;
    hj_bytes text;
    uint8_t *out_data;
    uint32_t *out_docs;
    size_t out_data_len, out_docs_len;
} group;

static struct {
    const uint8_t *data;
    size_t data_len;
    const uint32_t *records;
    size_t count;
    uint64_t number;
    group *groups;
    size_t group_count, group_cap;
    hj_words slots; /* (group, document) per edit */
} batch;

sluice_paths *sluice_paths_new(const char *const *paths, size_t count) {
    sluice_paths *p = calloc(1, sizeof *p);
    p->count = count;
    p->strs = malloc((count ? count : 1) * 8);
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(paths[i]);
        char *s = malloc(n + 1);
        memcpy(s, paths[i], n + 1);
        p->strs[2 * i] = (uint32_t)(uintptr_t)s;
        p->strs[2 * i + 1] = (uint32_t)n;
    }
    return p;
}

char *sluice_pointer(const char *key, size_t len) {
    char *s = malloc(2 * len + 2);
    size_t n = 0;
    s[n++] = '/';
    for (size_t i = 0; i < len; i++) {
        if (key[i] == '~') {
            s[n++] = '~';
            s[n++] = '0';
        } else if (key[i] == '/') {
            s[n++] = '~';
            s[n++] = '1';
        } else {
            s[n++] = key[i];
        }
    }
    s[n] = 0;
    return s;
}

void sluice__json_begin(const uint8_t *data, size_t data_len, const uint32_t *records, size_t count) {
    batch.data = data;
    batch.data_len = data_len;
    batch.records = records;
    batch.count = count;
    batch.number++;
}

sluice_doc sluice_doc_of(sluice_paths *paths, const sluice_emitter *out) {
    if (!batch.data) {
        /* The trap's message carries the plugin's stderr. */
        fprintf(stderr, "sluice_doc_of is for sluice_transform only (not sluice_init or sluice_on_timer)\n");
        abort();
    }
    if (paths->batch != batch.number) {
        free(paths->fields);
        free(paths->text);
        uint32_t *docs = malloc((batch.count ? batch.count : 1) * 8);
        for (size_t i = 0; i < batch.count; i++) {
            docs[2 * i] = batch.records[i * 12 + 2];
            docs[2 * i + 1] = batch.records[i * 12 + 3];
        }
        uint32_t ret[4];
        sluice_json_read_import(batch.data, batch.data_len, docs, SLUICE__WORDS_LEN(batch.count * 2), paths->strs,
                                paths->count, ret);
        free(docs);
        paths->fields = (uint32_t *)(uintptr_t)ret[0];
        paths->text = (uint8_t *)(uintptr_t)ret[2];
        if (ret[1] == 0) paths->fields = NULL;
        if (ret[3] == 0) paths->text = NULL;
        paths->batch = batch.number;
    }
    uint32_t record = sluice__emitter_input(out);
    sluice_doc d = {paths, record, paths->fields + (size_t)record * (1 + 3 * paths->count)};
    return d;
}

sluice_json_kind sluice_doc_kind(const sluice_doc *doc) {
    return (sluice_json_kind)doc->fields[0];
}

sluice_field sluice_doc_get(const sluice_doc *doc, size_t path) {
    const uint32_t *w = doc->fields + 1 + 3 * path;
    sluice_field f = {(sluice_json_kind)w[0], (const char *)doc->paths->text + w[1], w[2]};
    if (w[2] == 0) f.ptr = "";
    return f;
}

sluice_edit sluice_doc_edit(const sluice_doc *doc) {
    size_t g = 0;
    while (g < batch.group_count && batch.groups[g].paths != doc->paths) g++;
    if (g == batch.group_count) {
        if (batch.group_count == batch.group_cap) {
            batch.group_cap = batch.group_cap ? batch.group_cap * 2 : 4;
            batch.groups = realloc(batch.groups, batch.group_cap * sizeof(group));
        }
        memset(&batch.groups[g], 0, sizeof(group));
        batch.groups[g].paths = doc->paths;
        batch.group_count++;
    }
    group *gr = &batch.groups[g];
    uint32_t span[2] = {batch.records[doc->record * 12 + 2], batch.records[doc->record * 12 + 3]};
    uint32_t slot[2] = {(uint32_t)g, (uint32_t)(gr->docs.len / 2)};
    hj_words_push(&gr->docs, span, 2);
    hj_words_push(&batch.slots, slot, 2);
    sluice_edit e = {(uint32_t)(batch.slots.len / 2 - 1)};
    return e;
}

static void push_edit(sluice_edit e, size_t path, uint32_t op, const void *text, size_t len) {
    uint32_t *slot = batch.slots.ptr + 2 * e.slot;
    group *g = &batch.groups[slot[0]];
    if (path >= g->paths->count) abort(); /* a path that was not declared */
    uint32_t w[5] = {slot[1], (uint32_t)path, op, (uint32_t)g->text.len, (uint32_t)len};
    hj_bytes_push(&g->text, text, len);
    hj_words_push(&g->edits, w, 5);
}

void sluice_edit_set_str(sluice_edit e, size_t path, const char *s, size_t len) {
    push_edit(e, path, 1, s, len);
}

void sluice_edit_set_raw(sluice_edit e, size_t path, const char *json, size_t len) {
    push_edit(e, path, 2, json, len);
}

void sluice_edit_remove(sluice_edit e, size_t path) {
    push_edit(e, path, 0, NULL, 0);
}

sluice_bytes sluice_edit_value(sluice_edit e) {
    return sluice_some(sluice__json_marker, e.slot);
}

int sluice__json_pending(void) {
    return batch.slots.len != 0;
}

void sluice__json_write(void) {
    for (size_t i = 0; i < batch.group_count; i++) {
        group *g = &batch.groups[i];
        uint32_t ret[4];
        sluice_json_write_import(batch.data, batch.data_len, g->docs.ptr, SLUICE__WORDS_LEN(g->docs.len),
                                 g->paths->strs, g->paths->count, g->edits.ptr, SLUICE__WORDS_LEN(g->edits.len),
                                 g->text.ptr, g->text.len, ret);
        g->out_data = (uint8_t *)(uintptr_t)ret[0];
        g->out_data_len = ret[1];
        g->out_docs = (uint32_t *)(uintptr_t)ret[2];
        g->out_docs_len = ret[3];
    }
}

int sluice__json_result(uint32_t slot, const uint8_t **ptr, size_t *len) {
    uint32_t *s = batch.slots.ptr + 2 * slot;
    group *g = &batch.groups[s[0]];
    uint32_t at = g->out_docs[2 * s[1]], n = g->out_docs[2 * s[1] + 1];
    if (n == NONE) return 0;
    *ptr = g->out_data + at;
    *len = n;
    return 1;
}

void sluice__json_end(void) {
    for (size_t i = 0; i < batch.group_count; i++) {
        group *g = &batch.groups[i];
        if (g->out_data_len) free(g->out_data);
        if (g->out_docs_len) free(g->out_docs);
        g->out_data = NULL;
        g->out_docs = NULL;
        g->out_data_len = g->out_docs_len = 0;
        g->docs.len = g->edits.len = g->text.len = 0;
    }
    batch.slots.len = 0;
    batch.data = NULL;
    batch.records = NULL;
    batch.count = 0;
}
