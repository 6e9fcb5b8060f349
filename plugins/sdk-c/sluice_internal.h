/* Between sluice.c (the batch loop) and sluice_hostjson.c (host JSON access); not for plugins. */
#ifndef SLUICE_INTERNAL_H
#define SLUICE_INTERNAL_H

#include "sluice.h"

/* An output value made by sluice_edit_value: its length is the edit's slot. */
extern const uint8_t sluice__json_marker[1];

uint32_t sluice__emitter_input(const sluice_emitter *out);
void sluice__json_begin(const uint8_t *data, size_t data_len, const uint32_t *records, size_t count);
/* Whether any edit is waiting; then: write them, read each slot's document, release. */
int sluice__json_pending(void);
void sluice__json_write(void);
int sluice__json_result(uint32_t slot, const uint8_t **ptr, size_t *len);
void sluice__json_end(void);

#endif
