/*
 * text — text hygiene shared by the data stages: UTF-8 validation and
 * repair, Unicode normalization (utf8proc), lowercasing, whitespace
 * collapsing, and the normalized keys dedupe compares.
 *
 * Relies on: libutf8proc, util.
 * Ownership: results are written into a caller-owned buf.
 */
#ifndef HONE_TEXT_H
#define HONE_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <utf8proc.h>
#include "../util.h"

/* The code point at s[i] (of n bytes), -1 for an invalid byte; *len its
 * length in bytes (at least 1). The tokenizers' inner loop: inline. */
static inline int32_t utf8_cp_at(const char *s, size_t n, size_t i, size_t *len)
{
	unsigned char c = (unsigned char)s[i];
	if (c < 0x80) {
		*len = 1;
		return c;
	}
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
	if (k <= 0) {
		*len = 1;
		return -1;
	}
	*len = (size_t)k;
	return cp;
}

/* Offset of the first invalid UTF-8 byte, or (size_t)-1 when valid. */
size_t utf8_invalid_at(const char *s, size_t n);
/* The same, also telling whether s is pure ASCII (*ascii = 1). */
size_t utf8_check(const char *s, size_t n, int *ascii);
/* Copies s to out with every invalid sequence replaced by U+FFFD. */
void utf8_repair(buf *out, const char *s, size_t n);

enum { TEXT_NFC = 1, TEXT_NFKC = 2, TEXT_LOWER = 4, TEXT_COLLAPSE = 8 };

/* Applies the flags to valid UTF-8 s, writing the result to out (which is
 * reset first). ASCII text takes a fast path. Returns -1 if utf8proc fails. */
int text_clean(buf *out, const char *s, size_t n, int flags);
/* 1 when text_clean(s, flags) would return s unchanged for ASCII s. */
static inline int text_clean_is_identity_ascii(int flags)
{
	return (flags & (TEXT_LOWER | TEXT_COLLAPSE)) == 0;
}

#endif
