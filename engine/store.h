/*
 * store — the content-addressed cache: immutable objects, their manifests,
 * the action cache (stage key -> object id + metrics), the run lock,
 * verification and garbage collection.
 *
 * Relies on: util, key.
 * Ownership: a store owns its paths and lock descriptor; store_close
 * releases them. Returned paths are the caller's to free.
 *
 * Layout under the root (see cache/README.md):
 *   objects/ab/<id>/...           an object: the files a stage wrote
 *   objects/ab/<id>/.hone-manifest   its manifest (below)
 *   keys/ab/<key>                 action-cache entry for a stage key
 *   tmp/                          stage work areas; renamed into objects/
 *   work/<key>/                   a stage's checkpoints (kctx.scratch), kept across
 *                                 interrupted runs, removed once it publishes; gc drops them
 *   statcache                     source-file stat cache (statcache.h)
 *   runs.sqlite                   run records (runlog.h)
 *   lock                          flock(2) held by a running `hone run`
 *
 * Manifest (text, one entry per regular file, sorted by path bytes):
 *   line 1        "hone-manifest 1"
 *   lines 2..n+1  "<32 hex XXH3-128 of the file> <size> <relative path>"
 *   last line     "end <n>"
 * An object's id is XXH3-128 of the entry lines (each with its '\n'). The
 * id of a named output "part" is the same over the entries under "part/"
 * with that prefix removed, so a folder's id does not depend on where it
 * sits. A manifest without its end line is truncated and the object bad.
 *
 * Action-cache entry (text):
 *   "hone-key 1\nobject <id>\nmetrics <json on one line>\nend\n"
 *
 * Publication: a stage writes into tmp/, the store hashes what it wrote,
 * writes the manifest, marks the files read-only and renames the directory
 * to objects/ab/<id>; only then is the key entry written (atomically). A
 * crash at any point leaves either no object or a complete one.
 */
#ifndef HONE_STORE_H
#define HONE_STORE_H

#include <stdio.h>
#include "key.h"
#include "util.h"

#define STORE_MANIFEST ".hone-manifest"

typedef struct store {
	char *root;
	int lockfd;
	unsigned tmpseq;
} store;

/* Opens (and with create, makes) the store at root. */
int store_open(herr *e, store *st, const char *root, int create);
void store_close(store *st);

/* Takes the exclusive run lock; prints a waiting note to stderr when another
 * process holds it, then blocks. */
int store_lock(herr *e, store *st);
void store_unlock(store *st);

/* Creates a fresh, empty work directory under tmp/. Caller frees. */
char *store_tmpdir(herr *e, store *st, const char *label);

/* Hashes the files in dir into a manifest body (entry lines). */
int store_manifest_body(herr *e, const char *dir, buf *body);
/* Id of the subtree `prefix` ("" for all) of a manifest body. */
void store_subtree_id(const char *body, size_t n, const char *prefix, hkey *id);

/* Publishes a finished work directory as an object; sets *id. The work
 * directory is consumed (renamed or removed). */
int store_publish(herr *e, store *st, const char *workdir, hkey *id);

/* Path of an object (whether or not it exists). Caller frees. */
char *store_object_path(const store *st, const hkey *id);
int store_object_exists(const store *st, const hkey *id);
/* Id of a named output of an object (NULL output: the object id itself). */
int store_output_id(herr *e, const store *st, const hkey *obj, const char *output, hkey *out);

/* Action cache. Returns 1 on a hit (filling obj, and *metrics when not NULL;
 * caller frees), 0 on a miss (missing, truncated, or object gone). */
int store_key_get(const store *st, const hkey *key, hkey *obj, char **metrics);
int store_key_put(herr *e, store *st, const hkey *key, const hkey *obj, const char *metrics);

typedef struct store_report {
	size_t objects, files, bad_objects, keys, bad_keys, tmp_dirs;
	double bytes;
} store_report;

/* Rehashes every object and checks every key entry; prints each problem to
 * out. With repair, bad objects and dangling keys are removed. */
int store_verify(herr *e, store *st, int repair, FILE *out, store_report *r);

/* Removes objects not in keep[], key entries pointing at removed objects,
 * and leftover work directories. Requires the lock. */
int store_gc(herr *e, store *st, const hkey *keep, size_t nkeep, FILE *out, store_report *r);

#endif
