#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static const char *tag;

const char *sluice_init(const sluice_config *config) {
    tag = sluice_config_get(config, "tag");
    if (!tag) tag = "{{name}}";
    tag = strdup(tag);
    sluice_log(SLUICE_INFO, "tagging records with `%s`", tag);
    return NULL; /* or a message to refuse the config */
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    if (!record->value.present) return sluice_reject(out, "record has no value"); /* to the dead-letter topic */
    sluice_header *headers = malloc((record->header_count + 1) * sizeof *headers);
    memcpy(headers, record->headers, record->header_count * sizeof *headers);
    headers[record->header_count].name = sluice_some("tag", 3);
    headers[record->header_count].value = sluice_some(tag, strlen(tag));
    sluice_output o = {0};
    o.key = record->key;
    o.value = record->value;
    o.headers = headers;
    o.header_count = record->header_count + 1;
    sluice_emit(out, &o);
    free(headers);
    return 0;
}
