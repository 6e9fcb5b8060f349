/* Between sluice.c (the batch loop) and sluice_hostjson.c (host JSON access); not for plugins. */
#ifndef SLUICE_INTERNAL_H
#define SLUICE_INTERNAL_H

#include "sluice.h"

/* The contract version of wit/sluice.wit: the imports' module names end with it. */
#define SLUICE__ABI "0.3.0"
/* A list of u32 words is a `list<u8>` of little-endian words in this contract (wasm is little
 * endian, so a uint32_t array is already laid out so): its canonical-ABI length counts bytes.
 * These two convert a length of words to the ABI's length and back. What the host hands over
 * is allocated by cabi_realloc (malloc), so it is aligned for uint32_t reads although the
 * list's alignment is 1. */
#define SLUICE__WORDS_LEN(words) ((words) * 4)
#define SLUICE__WORD_COUNT(len) ((len) / 4)

#define EXPORT(name) __attribute__((export_name(name)))

/* The batch machinery of `process`, shared with `on-timer` (sluice_state.c): one call of
 * sluice__calls_begin, one sluice__call per input (its outputs are dropped and it is rejected
 * when `call` returns non-zero), then sluice__calls_end gives the output-batch's return area.
 * `data` is the call's input bytes: outputs that view them are not copied. */
sluice_emitter *sluice__calls_begin(const uint8_t *data, size_t data_len, size_t calls,
                                    size_t header_words);
int sluice__call(uint32_t input, int (*call)(void *arg, sluice_emitter *out), void *arg);
void *sluice__calls_end(void);

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
