/*
 * json — a strict RFC 8259 JSON parser into a read-only tree allocated from
 * an arena (reset between documents, so parsing many small documents does
 * not touch malloc). Strings without escapes point into the input
 * (zero-copy); others are decoded into the arena. Numbers keep their text.
 *
 * Relies on: util.
 * Ownership: the tree lives in the jarena until json_arena_reset/free; it
 * also points into the input buffer, which must outlive it.
 *
 * UTF-8 inside strings is not validated here (callers apply their own
 * policy: error, replace or drop); control characters and bad escapes are
 * errors. Lone surrogates in \u escapes are errors.
 */
#ifndef HONE_JSON_H
#define HONE_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jnode {
	jtype t;
	uint32_t n;          /* children (array/object) */
	const char *s;       /* string bytes (decoded) or number text */
	size_t len;          /* of s */
	const char *key;     /* member name when inside an object */
	size_t klen;
	size_t off;          /* byte offset of the value in the input */
	struct jnode *kid;   /* first child */
	struct jnode *next;  /* next sibling */
} jnode;

typedef struct jarena jarena;

jarena *json_arena_new(void);
void json_arena_reset(jarena *a);
void json_arena_free(jarena *a);

typedef struct jerror {
	const char *what; /* static text: "expected ',' or '}'" */
	size_t off;       /* byte offset in the input */
} jerror;

/* Parses one JSON value spanning p[0..n) (surrounding whitespace allowed).
 * Returns the root, or NULL with *err set. */
jnode *json_parse(jarena *a, const char *p, size_t n, jerror *err);

/* Parses the value starting at *pos (skipping whitespace) and advances *pos
 * past it; for streams of values such as a JSON array's elements. */
jnode *json_parse_next(jarena *a, const char *p, size_t n, size_t *pos, jerror *err);

/* Member `name` of an object, or NULL. */
const jnode *json_member(const jnode *obj, const char *name, size_t nlen);
/* Follows a dotted path ("meta.queue"; array elements by index: "tags.0"). */
const jnode *json_path(const jnode *root, const char *path);

/* Line (1-based) and column of byte offset off in p. */
/* The value of a number node (-1 when j is not a number). */
int json_number(const jnode *j, double *v);
/* A number node that is an integer within [lo, hi] (-1 otherwise). */
int json_int(const jnode *j, long long lo, long long hi, long long *v);
/* The value as compact JSON text, appended to out (strings escaped, numbers
 * as they were written, members in their order). */
struct buf;
void json_write_node(struct buf *out, const jnode *j);

void json_line_col(const char *p, size_t off, size_t *line, size_t *col);

#endif
