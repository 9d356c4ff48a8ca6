#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

size_t utf8_invalid_at(const char *s, size_t n)
{
	int ascii;
	return utf8_check(s, n, &ascii);
}

size_t utf8_check(const char *s, size_t n, int *ascii)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	*ascii = 1;
	while (i < n) {
		/* 8 ASCII bytes at a time */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			if (w & 0x8080808080808080ULL)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		unsigned char c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		*ascii = 0;
		size_t len;
		uint32_t cp;
		if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
		else return i;
		if (i + len > n)
			return i;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
			return i;
		i += len;
	}
	return (size_t)-1;
}

void utf8_repair(buf *out, const char *s, size_t n)
{
	out->len = 0;
	size_t i = 0;
	while (i < n) {
		size_t bad = utf8_invalid_at(s + i, n - i);
		if (bad == (size_t)-1) {
			buf_add(out, s + i, n - i);
			break;
		}
		buf_add(out, s + i, bad);
		buf_add(out, "\xEF\xBF\xBD", 3);
		i += bad + 1;
		/* skip continuation bytes of the broken sequence */
		while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
			i++;
	}
	if (!out->p)
		buf_reserve(out, 0), out->p[0] = 0;
}

#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL

/* One byte of the ASCII fold: appends c to o (lowercased, whitespace
 * collapsed when asked); *space says the last output was a space. */
static inline size_t fold_byte(char *o, size_t k, int *space, unsigned char c, int lower, int coll)
{
	if (coll && (c == ' ' || (c >= '\t' && c <= '\r'))) {
		if (!*space)
			o[k++] = ' ';
		*space = 1;
		return k;
	}
	*space = 0;
	o[k++] = (char)(lower && (unsigned)(c - 'A') < 26u ? c + 32 : c);
	return k;
}

typedef unsigned char v32u __attribute__((vector_size(32)));
typedef signed char v32s __attribute__((vector_size(32)));
typedef uint64_t v4q __attribute__((vector_size(32)));

/* any lane of a comparison's result set (a macro: vectors are not passed to functions) */
#define ANY32(m) __extension__({ v4q q_ = (v4q)(m); (q_[0] | q_[1] | q_[2] | q_[3]) != 0; })

/* ASCII lowercase and/or whitespace collapse in one pass, 32 bytes at a
 * time (vectors: AVX2 where the CPU has it): a block with no \t..\r byte
 * and no space after a space only needs lowercasing, done for all its bytes
 * at once; other blocks take the byte loop. -1 at the first byte >= 0x80
 * (the text is not ASCII: the caller takes the Unicode path). */
__attribute__((target_clones("avx2", "default")))
static int ascii_fold(buf *out, const char *s, size_t n, int lower, int coll)
{
	buf_reserve(out, n);
	char *o = out->p;
	size_t k = 0, i = 0;
	int space = 1; /* the previous output was a space (or nothing) */
	for (; i + 32 <= n; i += 32) {
		v32u v, pv;
		memcpy(&v, s + i, 32);
		if (i) {
			memcpy(&pv, s + i - 1, 32);
		} else {
			pv = v;
			for (int j = 31; j > 0; j--)
				pv[j] = v[j - 1];
		}
		if (ANY32((v32s)v < 0))
			return -1;
		v32s sp = v == ' ';
		int slow = 0;
		if (coll) {
			v32s ctl = (v >= '\t') & (v <= '\r');
			v32s dbl = sp & (pv == ' ');
			dbl[0] = (char)(v[0] == ' ' && space ? -1 : 0); /* lane 0: against the last output */
			slow = ANY32(ctl | dbl);
		}
		if (slow) {
			for (int b = 0; b < 32; b++)
				k = fold_byte(o, k, &space, v[b], lower, coll);
			continue;
		}
		if (lower)
			v |= (v32u)((v >= 'A') & (v <= 'Z')) & 0x20;
		memcpy(o + k, &v, 32);
		k += 32;
		space = v[31] == ' ';
	}
	for (; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return -1;
		k = fold_byte(o, k, &space, (unsigned char)s[i], lower, coll);
	}
	if (coll && k && o[k - 1] == ' ')
		k--;
	out->len = k;
	o[k] = 0;
	return 0;
}

/* Whitespace collapse in place (after Unicode processing). */
static void collapse(buf *out)
{
	size_t o = 0;
	int space = 1;
	for (size_t i = 0; i < out->len; i++) {
		unsigned char c = (unsigned char)out->p[i];
		if (c == ' ' || (c >= '\t' && c <= '\r')) {
			if (!space)
				out->p[o++] = ' ';
			space = 1;
		} else {
			out->p[o++] = (char)c;
			space = 0;
		}
	}
	if (o && out->p[o - 1] == ' ')
		o--;
	out->len = o;
	out->p[o] = 0;
}

int text_clean(buf *out, const char *s, size_t n, int flags)
{
	out->len = 0;
	/* NFC and NFKC leave ASCII unchanged */
	if (ascii_fold(out, s, n, flags & TEXT_LOWER, flags & TEXT_COLLAPSE) == 0) {
		return 0;
	} else {
		out->len = 0;
		utf8proc_option_t opt = UTF8PROC_STABLE;
		if (flags & TEXT_NFKC)
			opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
		else if (flags & TEXT_NFC)
			opt |= UTF8PROC_COMPOSE;
		utf8proc_uint8_t *res = NULL;
		utf8proc_ssize_t r;
		if (flags & (TEXT_NFC | TEXT_NFKC)) {
			r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res, opt);
			if (r < 0)
				return -1;
		} else {
			res = malloc(n + 1);
			memcpy(res, s, n);
			r = (utf8proc_ssize_t)n;
		}
		if (flags & TEXT_LOWER) {
			utf8proc_ssize_t i = 0;
			while (i < r) {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k = utf8proc_iterate(res + i, r - i, &cp);
				if (k <= 0)
					break;
				utf8proc_uint8_t enc[4];
				utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(cp), enc);
				buf_add(out, enc, (size_t)m);
				i += k;
			}
		} else {
			buf_add(out, res, (size_t)r);
		}
		free(res);
	}
	if (!out->p)
		buf_reserve(out, 0), out->p[0] = 0;
	if (flags & TEXT_COLLAPSE)
		collapse(out);
	return 0;
}
