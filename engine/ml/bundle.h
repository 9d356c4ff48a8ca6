/*
 * bundle — export's archive: a gzip-compressed ustar file of named members,
 * written with fixed order, times (0), owners (0) and modes (0644) so the
 * same members give the same bytes, and read back whole into memory.
 *
 * Relies on: archive (libarchive, loaded on first use).
 * Ownership: a bundle owns its members' names and bytes.
 */
#ifndef HONE_BUNDLE_H
#define HONE_BUNDLE_H

#include <stddef.h>
#include "../util.h"

typedef struct bundle_member {
	char *name;
	buf data;
} bundle_member;

typedef struct bundle {
	bundle_member *m;
	size_t n;
} bundle;

/* The archive of members in the order given. */
int bundle_write(herr *e, const bundle_member *m, size_t n, buf *out);
/* Reads every member of the archive at path (regular files only; at most
 * max_bytes in all); path names the archive in messages. */
int bundle_read(herr *e, bundle *b, const char *path, size_t max_bytes);
void bundle_free(bundle *b);
/* The member called name, or NULL. */
const buf *bundle_get(const bundle *b, const char *name);
/* A model bundle's config.json and model.safetensors (and tokenize.json when
 * present) written into a new temporary folder *dir (the caller removes
 * it); path names the bundle in messages. */
int bundle_unpack_model(herr *e, const bundle *b, const char *path, char **dir);

#endif
