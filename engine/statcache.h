/*
 * statcache — remembers the content hash of source files by their stat
 * identity (device, inode, size, mtime_ns, ctime_ns), so an unchanged file
 * is hashed once and a `touch`ed one is re-hashed but keeps its id. It is a
 * memo only: keys always come from content hashes.
 *
 * Relies on: util, key, pthreads.
 * Ownership: the statcache owns its entries; statcache_free releases them.
 * Thread-safe: lookups and inserts take an internal mutex, hashing does not.
 *
 * File format (little-endian), rewritten atomically when changed:
 *   offset 0   8 bytes  magic "HONESTC\0"
 *          8   u32      version (1)
 *         12   u32      entry count n
 *         16   n entries of:
 *                u64 dev, u64 ino, u64 size, i64 mtime_ns, i64 ctime_ns,
 *                16 bytes XXH3-128 of the content, u32 path length, path
 *        end   16 bytes XXH3-128 of every byte before it
 * A file that is short, has another magic or version, or fails its checksum
 * is ignored (everything is re-hashed), never trusted.
 */
#ifndef HONE_STATCACHE_H
#define HONE_STATCACHE_H

#include <stdint.h>
#include "key.h"
#include "util.h"

typedef struct statcache statcache;

statcache *statcache_load(const char *path);
void statcache_free(statcache *sc);
/* Content id of a regular file (XXH3-128 of its bytes) or of a folder
 * (the id of a manifest of its files, as for objects). */
int statcache_id(statcache *sc, herr *e, const char *abspath, hkey *id, uint64_t *bytes);
/* Like statcache_id for a regular file, but only when the cache already
 * knows it (no hashing): 1 hit, 0 not known. */
int statcache_peek(statcache *sc, const char *abspath, hkey *id, uint64_t *bytes);
/* Writes the file back if anything changed. */
int statcache_save(statcache *sc, herr *e);
/* Counters for tests: hashes computed / answered from the cache. */
void statcache_counts(const statcache *sc, unsigned *hashed, unsigned *hits);

#endif
