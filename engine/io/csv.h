/*
 * csv — RFC 4180 CSV/TSV reading: a delimiter, double-quoted fields with ""
 * escapes and embedded newlines, LF or CRLF line ends, a leading UTF-8 BOM.
 *
 * Relies on: util.
 * Ownership: the csv owns the decoded fields of the current row until the
 * next call; the input buffer is the caller's.
 */
#ifndef HONE_CSV_H
#define HONE_CSV_H

#include <stddef.h>
#include "../util.h"

typedef struct csv {
	const char *p;
	size_t n, i;
	char delim;
	size_t line;        /* line where the current row starts (1-based) */
	buf fields;         /* decoded bytes of the current row's fields */
	size_t *start, *len;
	size_t nf, cap;
	const char *err;    /* static message on error */
	size_t err_line;
} csv;

void csv_init(csv *c, const char *p, size_t n, char delim);
void csv_free(csv *c);
/* Reads the next row: 1 a row, 0 end of input, -1 malformed (c->err). */
int csv_next(csv *c);
/* Field k of the current row. */
static inline const char *csv_field(const csv *c, size_t k, size_t *len)
{
	*len = c->len[k];
	return c->fields.p + c->start[k];
}

#endif
