/*
 * hval — the engine's plain value tree: what stage parameters are after they
 * leave Lua, what keys are computed from, and what kernels read.
 *
 * Relies on: util.
 * Ownership: a value owns all of its children; hval_free releases the tree.
 * Maps keep their keys sorted by byte order, so iteration order is canonical.
 */
#ifndef HONE_HVAL_H
#define HONE_HVAL_H

#include <stddef.h>
#include "util.h"

typedef enum {
	HV_NIL, HV_BOOL, HV_INT, HV_FLOAT, HV_STR, HV_LIST, HV_MAP,
	HV_FN /* a Lua function, carried as the digest of its source closure */
} hv_type;

typedef struct hval {
	hv_type t;
	int b;             /* HV_BOOL */
	long long i;       /* HV_INT */
	double f;          /* HV_FLOAT */
	char *s;           /* HV_STR, HV_FN: bytes (NUL-terminated) */
	size_t slen;
	struct hval *v;    /* HV_LIST, HV_MAP: n children */
	char **k;          /* HV_MAP: n keys, sorted */
	size_t n;
} hval;

hval *hval_new(hv_type t);
hval *hval_bool(int b);
hval *hval_int(long long i);
hval *hval_float(double f);
hval *hval_str(const char *s, size_t n);
void hval_free(hval *v);
/* Frees the children of v, not v itself. */
void hval_clear(hval *v);
/* Deep copy. */
hval *hval_dup(const hval *v);

/* Appends a child to a list (moves *child into it; child is freed). */
void hval_list_push(hval *list, hval *child);
/* Sets key in a map, keeping keys sorted (moves *child; replaces any old). */
void hval_map_set(hval *map, const char *key, hval *child);
/* Child of a map by key, or NULL. */
const hval *hval_get(const hval *map, const char *key);

/* Typed getters for kernels: the default is returned when the key is absent
 * or nil. */
const char *hval_get_str(const hval *map, const char *key, const char *def);
long long hval_get_int(const hval *map, const char *key, long long def);
double hval_get_num(const hval *map, const char *key, double def);
int hval_get_bool(const hval *map, const char *key, int def);

/*
 * Canonical encoding. Deterministic text that distinguishes types:
 *   nil  true  false  42  1.0  2e-05  "str\n"  [a,b]  {k=v,...}  fn:<hex>
 * Integers print in decimal; floats print as the shortest decimal that
 * round-trips and always carry '.', 'e', "inf" or "nan", so 1 and 1.0 differ.
 * Strings are quoted with \" \\ \n \t \r and \xHH escapes for other control
 * bytes. Map keys are sorted and printed bare when they are identifiers,
 * quoted otherwise.
 */
void hval_encode(buf *out, const hval *v);

/* Encodes a map of parameters as one "key=value" line per entry, keys
 * sorted: the form stored in run records and diffed by `hone status`. */
void hval_encode_lines(buf *out, const hval *map);

/* Parses the canonical encoding back (used by run records). NULL on error. */
hval *hval_decode(const char *s, size_t n);

/* 1 when the two trees encode identically. */
int hval_equal(const hval *a, const hval *b);

/* Appends v as JSON (maps in key order; a function as {"function": digest}). */
void hval_json(buf *out, const hval *v);

#endif
