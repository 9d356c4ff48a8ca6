#include "csv.h"

#include <stdlib.h>
#include <string.h>

void csv_init(csv *c, const char *p, size_t n, char delim)
{
	memset(c, 0, sizeof *c);
	c->p = p;
	c->n = n;
	c->delim = delim;
	c->line = 1;
	if (n >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
		c->i = 3;
	buf_init(&c->fields);
}

void csv_free(csv *c)
{
	buf_free(&c->fields);
	free(c->start);
	free(c->len);
}

static void push(csv *c, size_t start)
{
	if (c->nf == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->start = xrealloc(c->start, c->cap * sizeof *c->start);
		c->len = xrealloc(c->len, c->cap * sizeof *c->len);
	}
	c->start[c->nf] = start;
	c->len[c->nf] = c->fields.len - start;
	c->nf++;
}

int csv_next(csv *c)
{
	c->nf = 0;
	c->fields.len = 0;
	if (c->i >= c->n)
		return 0;
	size_t row_line = c->line;
	const char *p = c->p;
	for (;;) {
		size_t start = c->fields.len;
		if (c->i < c->n && p[c->i] == '"') {
			c->i++;
			for (;;) {
				if (c->i >= c->n) {
					c->err = "unterminated quoted field";
					c->err_line = row_line;
					return -1;
				}
				const char *q = memchr(p + c->i, '"', c->n - c->i);
				size_t end = q ? (size_t)(q - p) : c->n;
				for (size_t k = c->i; k < end; k++)
					c->line += p[k] == '\n';
				buf_add(&c->fields, p + c->i, end - c->i);
				c->i = end;
				if (!q)
					continue;
				if (c->i + 1 < c->n && p[c->i + 1] == '"') {
					buf_addc(&c->fields, '"');
					c->i += 2;
					continue;
				}
				c->i++; /* closing quote */
				break;
			}
			if (c->i < c->n && p[c->i] != c->delim && p[c->i] != '\n' &&
			    !(p[c->i] == '\r' && c->i + 1 < c->n && p[c->i + 1] == '\n') &&
			    !(p[c->i] == '\r' && c->i + 1 == c->n)) {
				c->err = "unexpected character after a closing quote";
				c->err_line = c->line;
				return -1;
			}
		} else {
			size_t k = c->i;
			while (k < c->n && p[k] != c->delim && p[k] != '\n')
				k++;
			size_t end = k;
			if (end > c->i && p[end - 1] == '\r' && (k == c->n || p[k] == '\n'))
				end--;
			buf_add(&c->fields, p + c->i, end - c->i);
			c->i = end;
			if (c->i < c->n && p[c->i] == '\r')
				c->i++;
		}
		push(c, start);
		if (c->i >= c->n)
			break;
		if (p[c->i] == c->delim) {
			c->i++;
			continue;
		}
		if (p[c->i] == '\r')
			c->i++;
		if (c->i < c->n && p[c->i] == '\n') {
			c->i++;
			c->line++;
		}
		break;
	}
	c->line = c->line > row_line ? c->line : row_line;
	if (!c->fields.p)
		buf_reserve(&c->fields, 0);
	return 1;
}
