/*
 * key — content hashing (XXH3-128) and stage keys.
 *
 * Relies on: libxxhash, hval.
 * Ownership: digests are plain values (struct hkey); nothing is allocated
 * except where a function says so.
 *
 * A stage key is XXH3-128 over, in this order and length-prefixed:
 *   "hone-stage-key/2", the stage kind, the kernel name, the kernel version,
 *   the stage name when the kernel can see it (custom Lua stages, else ""),
 *   the canonical parameter encoding (hval_encode of the params map), and for
 *   every input in declaration order its slot name, its label (the source
 *   path relative to the pipeline, or "stage.output": kernels may write these
 *   names into their outputs) and its content id.
 * Nothing that depends on paths, times or the machine enters a key.
 */
#ifndef HONE_KEY_H
#define HONE_KEY_H

#include <stddef.h>
#include <stdint.h>
#include "hval.h"
#include "util.h"

typedef struct hkey {
	uint8_t b[16]; /* XXH3-128 in canonical (big-endian) byte order */
} hkey;

#define HKEY_HEX 33 /* 32 hex digits + NUL */

void hkey_of(hkey *k, const void *p, size_t n);
void hkey_hex(const hkey *k, char out[HKEY_HEX]);
int hkey_parse(hkey *k, const char *hex);
int hkey_eq(const hkey *a, const hkey *b);
int hkey_is_zero(const hkey *k);

/* Hashes a file's bytes, streaming. Sets *size. A file this process noted
 * with hkey_note is not read again: see there. */
int hkey_file(herr *e, const char *path, hkey *k, uint64_t *size);

/* Records the content key of a file this process has just written whole,
 * its writer having hashed the bytes as they went out (keyhash_bytes), so
 * that hkey_file need not read them back. The note names the file by its
 * path, device, inode, size and modification time; hkey_file takes it once,
 * and only while all of them are still as noted. Thread-safe. */
void hkey_note(const char *path, const hkey *k, uint64_t size);

/* Incremental hashing of a list of length-prefixed fields. */
typedef struct keyhash keyhash;
keyhash *keyhash_new(void);
void keyhash_field(keyhash *h, const void *p, size_t n);
void keyhash_str(keyhash *h, const char *s);
/* Raw bytes, no length prefix: keyhash_new, keyhash_bytes over a file's
 * bytes in order, keyhash_done give hkey_file's key of that file. */
void keyhash_bytes(keyhash *h, const void *p, size_t n);
void keyhash_done(keyhash *h, hkey *out); /* frees h */

typedef struct key_input {
	const char *slot;  /* "1", "2", "val", ... */
	const char *label; /* "data/a.txt", "split.train" */
	hkey id;           /* content id of what is bound to the slot */
} key_input;

void key_stage(hkey *out, const char *kind, const char *kernel, int version, const char *name,
               const hval *params, const key_input *in, size_t nin);

#endif
