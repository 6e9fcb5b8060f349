/* Text helpers with Rust's semantics (char::is_alphanumeric, char::is_whitespace, UTF-8 decoding
 * as str::chars), so a C or C++ plugin treats text exactly like its Rust twin. */
#ifndef SLUICE_TEXT_H
#define SLUICE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rust's char::is_alphanumeric: Unicode Alphabetic or Numeric (Nd, Nl, No). */
bool sluice_is_alphanumeric(uint32_t cp);
/* Rust's char::is_whitespace: the White_Space property. */
bool sluice_is_whitespace(uint32_t cp);
/* Decodes the code point at s[*i] of valid UTF-8 and advances *i past it. */
uint32_t sluice_utf8_next(const char *s, size_t *i);
/* Appends the UTF-8 encoding of cp to out (at least 4 bytes free); returns the bytes written. */
size_t sluice_utf8_put(uint32_t cp, char *out);
/* Rust's str::trim on s[0..len]: sets *start and returns the trimmed length. */
size_t sluice_trim(const char *s, size_t len, size_t *start);

#ifdef __cplusplus
}
#endif

#endif
