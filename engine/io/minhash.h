/*
 * minhash — near-duplicate machinery shared by dedupe and split: shingle
 * hashing (characters or words), MinHash signatures over 32-bit universal
 * hashes (vectorized; AVX2 where the CPU has it), exact Jaccard similarity of
 * sorted shingle sets, LSH band sizing, and the bucket maps.
 *
 * Relies on: libxxhash, util.
 * Ownership: callers own every array; mh_shingles grows *h as needed.
 */
#ifndef HONE_MINHASH_H
#define HONE_MINHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_cfg {
	int word;       /* word shingles (else characters) */
	int k;          /* shingle size */
	int perm;       /* signature length */
	int bands, rows;/* LSH: bands x rows = perm */
	uint64_t seed;
} mh_cfg;

/* Hashes of the shingles of s into *h (unsorted, may repeat); returns the
 * count. Character shingles of up to 8 bytes are hashed from one load. */
size_t mh_shingles(const mh_cfg *c, const char *s, size_t n, uint64_t **h, size_t *cap);
/* Sorts and removes repeats in place; returns the new count. */
size_t mh_sort_unique(uint64_t *h, size_t m);
/* The perm coefficients of the universal hashes, from the seed. */
void mh_coeffs(const mh_cfg *c, uint32_t *a, uint32_t *b);
/* sig[i] = min over shingles of (a[i] * x + b[i]) mod 2^32. */
void mh_signature(uint32_t *restrict sig, const uint32_t *restrict a, const uint32_t *restrict b,
                  int perm, const uint64_t *h, size_t m);
/* Jaccard similarity of two sorted, unique sets. */
double mh_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb);
/* bands x rows = perm, with the LSH S-curve's knee a little below t. */
void mh_choose_bands(int perm, double t, int *bands, int *rows);

/* An LSH band's buckets: band hash -> first row + 1 (0: empty). */
typedef struct mh_buckets {
	uint64_t *keys;
	uint32_t *vals;
	size_t cap;
} mh_buckets;

/* The bucket for key, inserted (empty) if new; the pointer is valid until
 * the next call on the same map. */
uint32_t *mh_bucket(mh_buckets *m, uint64_t key, size_t *used);
/* Frees n maps and the array holding them. */
void mh_buckets_free(mh_buckets *maps, int n);

#endif
