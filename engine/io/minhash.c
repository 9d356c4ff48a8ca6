#include "minhash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../util.h"

static int cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Hashes of the shingles of s into *h (unsorted, may repeat). Character
 * shingles of up to 8 bytes are hashed from one 64-bit load. */
size_t mh_shingles(const mh_cfg *d, const char *s, size_t n, uint64_t **h, size_t *cap)
{
	size_t m = 0;
	size_t need = n + 1;
	if (need > *cap) {
		*cap = need;
		*h = xrealloc(*h, *cap * sizeof **h);
	}
	uint64_t *o = *h;
	if (d->word) {
		/* word k-grams: hash of k consecutive whitespace-separated words */
		size_t starts[64], lens[64];
		size_t nw = 0, i = 0;
		while (i < n) {
			while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
				i++;
			if (i >= n)
				break;
			size_t st = i;
			while (i < n && !(s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
				i++;
			starts[nw % 64] = st;
			lens[nw % 64] = i - st;
			nw++;
			if (nw >= (size_t)d->k) {
				size_t first = starts[(nw - (size_t)d->k) % 64];
				size_t last = (nw - 1) % 64;
				o[m++] = XXH3_64bits_withSeed(s + first, starts[last] + lens[last] - first, d->seed);
			}
		}
		if (nw > 0 && nw < (size_t)d->k)
			o[m++] = XXH3_64bits_withSeed(s, n, d->seed);
	} else if (n < (size_t)d->k) {
		if (n)
			o[m++] = XXH3_64bits_withSeed(s, n, d->seed);
	} else if (d->k <= 8 && n >= 8) {
		uint64_t mask = d->k == 8 ? ~0ULL : ((1ULL << (8 * d->k)) - 1);
		size_t last = n - (size_t)d->k;
		for (size_t i = 0; i <= last; i++) {
			uint64_t w;
			if (i + 8 <= n) {
				memcpy(&w, s + i, 8);
			} else {
				w = 0;
				memcpy(&w, s + i, n - i);
			}
			o[m++] = mix64((w & mask) ^ d->seed);
		}
	} else {
		for (size_t i = 0; i + (size_t)d->k <= n; i++)
			o[m++] = XXH3_64bits_withSeed(s + i, (size_t)d->k, d->seed);
	}
	return m;
}

/* LSD radix sort of 64-bit keys, 8 bits a pass, through tmp (m entries). */
static void radix_sort(uint64_t *h, uint64_t *tmp, size_t m)
{
	size_t count[256];
	uint64_t *src = h, *dst = tmp;
	for (int shift = 0; shift < 64; shift += 8) {
		memset(count, 0, sizeof count);
		for (size_t i = 0; i < m; i++)
			count[(src[i] >> shift) & 255]++;
		size_t sum = 0;
		for (int k = 0; k < 256; k++) {
			size_t c = count[k];
			count[k] = sum;
			sum += c;
		}
		for (size_t i = 0; i < m; i++)
			dst[count[(src[i] >> shift) & 255]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	/* 8 passes: the result is back in h */
}

size_t mh_sort_unique(uint64_t *h, size_t m)
{
	if (m < 2)
		return m;
	if (m < 64) {
		qsort(h, m, sizeof *h, cmp64);
	} else {
		uint64_t *tmp = xmalloc(m * sizeof *tmp);
		radix_sort(h, tmp, m);
		free(tmp);
	}
	size_t u = 1;
	for (size_t i = 1; i < m; i++)
		if (h[i] != h[u - 1])
			h[u++] = h[i];
	return u;
}

/* sig[i] = min over shingles of (a[i] * x + b[i]) mod 2^32: 32-bit lanes so
 * the loop vectorizes (AVX2 when the CPU has it). */
__attribute__((target_clones("avx2", "default"), optimize("O3")))
void mh_signature(uint32_t *restrict sig, const uint32_t *restrict a, const uint32_t *restrict b,
                    int perm, const uint64_t *h, size_t m)
{
	for (int i = 0; i < perm; i++)
		sig[i] = UINT32_MAX;
	for (size_t j = 0; j < m; j++) {
		uint32_t x = (uint32_t)(h[j] ^ (h[j] >> 32));
		for (int i = 0; i < perm; i++) {
			uint32_t v = a[i] * x + b[i];
			sig[i] = v < sig[i] ? v : sig[i];
		}
	}
}

double mh_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
	size_t i = 0, j = 0, inter = 0;
	while (i < na && j < nb) {
		if (a[i] == b[j])
			inter++, i++, j++;
		else if (a[i] < b[j])
			i++;
		else
			j++;
	}
	size_t uni = na + nb - inter;
	return uni ? (double)inter / (double)uni : 1.0;
}

/* Chooses bands*rows = perm so the LSH S-curve passes 0.5 a little below
 * the threshold (recall first; verification gives precision). */
void mh_choose_bands(int perm, double t, int *bands, int *rows)
{
	double target = t - 0.1 > 0.05 ? t - 0.1 : 0.05;
	double best = 1e9;
	for (int r = 1; r <= perm; r++) {
		if (perm % r)
			continue;
		int b = perm / r;
		double knee = pow(1.0 / b, 1.0 / r); /* similarity where P(candidate) ~ 1 - 1/e */
		double d = fabs(knee - target);
		if (d < best)
			best = d, *bands = b, *rows = r;
	}
}

uint32_t *mh_bucket(mh_buckets *m, uint64_t key, size_t *used)
{
	if ((*used + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		uint64_t *k = xcalloc(cap, sizeof *k);
		uint32_t *v = xcalloc(cap, sizeof *v);
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->vals[i])
				continue;
			size_t h = (size_t)(m->keys[i] * 0x9E3779B97F4A7C15ULL >> 20) & (cap - 1);
			while (v[h])
				h = (h + 1) & (cap - 1);
			k[h] = m->keys[i];
			v[h] = m->vals[i];
		}
		free(m->keys);
		free(m->vals);
		m->keys = k;
		m->vals = v;
		m->cap = cap;
	}
	size_t h = (size_t)(key * 0x9E3779B97F4A7C15ULL >> 20) & (m->cap - 1);
	while (m->vals[h] && m->keys[h] != key)
		h = (h + 1) & (m->cap - 1);
	if (!m->vals[h]) {
		m->keys[h] = key;
		(*used)++;
	}
	return &m->vals[h];
}


void mh_coeffs(const mh_cfg *c, uint32_t *a, uint32_t *b)
{
	for (int i = 0; i < c->perm; i++) {
		uint64_t r = XXH3_64bits_withSeed(&i, sizeof i, c->seed);
		a[i] = (uint32_t)r | 1;
		b[i] = (uint32_t)(r >> 32);
	}
}

void mh_buckets_free(mh_buckets *maps, int n)
{
	for (int i = 0; maps && i < n; i++) {
		free(maps[i].keys);
		free(maps[i].vals);
	}
	free(maps);
}
