/*
 * hub — models named by their Hugging Face id ("org/name", "org/name@rev")
 * found in the local Hugging Face cache, as transformers leaves it, or
 * downloaded into it:
 *
 *   $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 *   else ~/.cache/huggingface/hub; a model's folder models--ORG--NAME/ with
 *   refs/REV (the commit), snapshots/COMMIT/FILE (links into blobs/).
 *
 * Downloading (libcurl) asks $HF_ENDPOINT (default https://huggingface.co)
 * for the revision's commit and files (api/models/ID/revision/REV), then
 * fetches config.json, the weights (model.safetensors, or the index and its
 * shards) and the tokenizer files from ID/resolve/COMMIT/FILE: each into
 * blobs/ under its ETag, resumed from a partial .incomplete file with a
 * Range request, checked against the sha256 of the LFS pointer (the
 * X-Linked-Etag header) before it is renamed into place, and linked from
 * the snapshot. $HF_TOKEN goes as a bearer token (gated models).
 * $HF_HUB_OFFLINE=1 (or HONE_OFFLINE=1) never downloads.
 *
 * Relies on: libcurl, json, util.
 */
#ifndef HONE_HUB_H
#define HONE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "../util.h"

/* Whether s has the shape of a model id (ORG/NAME, optionally @REV) */
int hub_is_id(const char *s);
/* The snapshot folder of id in the cache (*dir, owned), downloading it
 * when it is not there and downloads are allowed; an error says where it
 * looked and what failed. progress: messages on stderr when non-zero. */
int hub_resolve(herr *e, const char *id, char **dir, int progress);

/* SHA-256 of n bytes (FIPS 180-4), as 64 lowercase hex digits and a NUL */
void hub_sha256_hex(const void *p, size_t n, char out[65]);
typedef struct hub_sha256 {
	uint32_t h[8];
	uint8_t block[64];
	size_t fill;
	uint64_t bytes;
} hub_sha256;
void hub_sha256_init(hub_sha256 *s);
void hub_sha256_add(hub_sha256 *s, const void *p, size_t n);
void hub_sha256_done(hub_sha256 *s, char out[65]);

#endif
