/*
 * dedupe — removes exact duplicates (on one or more key fields, after
 * optional case/whitespace/Unicode normalization) and near duplicates
 * (MinHash over character or word shingles, LSH banding, candidates
 * verified by the exact Jaccard similarity of their shingle sets), keeping
 * the first occurrence in input order. Deterministic for a given seed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../io/minhash.h"
#include "../io/records.h"
#include "../io/text.h"
#include "../kernel.h"
#include "stages.h"

typedef struct dd {
	kctx *c;
	rec_reader r;
	int *keys;
	size_t nkeys;
	int norm;           /* TEXT_* flags for the key */
	buf keybuf, tmp;
	mh_cfg mh;
	/* the block of rows being worked on: its first key field's values,
	 * read with one pread (recr_read_strs) rather than through the map */
	buf win;
	uint64_t win_lo, win_hi;
} dd;

/* A string or category value of a row: from the block's window where it
 * holds it, else from the map. */
static const char *field_str(const dd *d, int f, uint64_t row, size_t *n)
{
	const rec_field *c = &d->r.fields[f];
	if (f == d->keys[0] && row >= d->win_lo && row < d->win_hi) {
		*n = 0;
		if (recr_is_null(&d->r, f, row))
			return NULL;
		*n = (size_t)(c->offs[row + 1] - c->offs[row]);
		return d->win.p + (c->offs[row] - c->offs[d->win_lo]);
	}
	return recr_str(&d->r, f, row, n);
}

/* Appends row `row` to w, which has the input's fields first. */
static void emit_row(const dd *d, rec_writer *w, uint64_t row)
{
	for (uint32_t i = 0; i < d->r.nfields; i++) {
		if ((int)i == d->keys[0] && d->r.fields[i].type == REC_STR) {
			size_t n;
			const char *s = field_str(d, (int)i, row, &n);
			if (s)
				recw_str(w, (int)i, s, n);
		} else {
			recw_copy_value(w, (int)i, &d->r, (int)i, row);
		}
	}
	recw_end_row(w);
}

/* The normalized key of a row: its key fields joined by \x1f. */
static void row_key(dd *d, uint64_t row, buf *out, buf *tmp)
{
	out->len = 0;
	for (size_t i = 0; i < d->nkeys; i++) {
		int f = d->keys[i];
		size_t n;
		const char *s;
		char num[48];
		switch (d->r.fields[f].type) {
		case REC_STR:
		case REC_CAT:
			s = field_str(d, f, row, &n);
			if (!s)
				s = "", n = 0;
			break;
		case REC_INT: n = (size_t)snprintf(num, sizeof num, "%lld", recr_int(&d->r, f, row)); s = num; break;
		case REC_FLOAT: n = (size_t)snprintf(num, sizeof num, "%.17g", recr_float(&d->r, f, row)); s = num; break;
		default: n = 1; s = recr_bool(&d->r, f, row) ? "1" : "0";
		}
		if (i)
			buf_addc(out, '\x1f');
		if (d->nkeys == 1 && !(d->norm && d->r.fields[f].type == REC_STR)) {
			buf_add(out, s, n); /* a single raw key: nothing to join */
		} else if (d->nkeys == 1) {
			/* a single normalized key: clean straight into out */
			if (text_clean(out, s, n, d->norm) != 0) {
				out->len = 0;
				buf_add(out, s, n);
			}
		} else if (d->norm && (d->r.fields[f].type == REC_STR)) {
			if (text_clean(tmp, s, n, d->norm) == 0)
				buf_add(out, tmp->p, tmp->len);
			else
				buf_add(out, s, n);
		} else {
			buf_add(out, s, n);
		}
	}
	if (!out->p)
		buf_reserve(out, 0);
}

/* What the parallel phase computes for a row: its key's hash and length,
 * and (near) its MinHash signature. */
typedef struct prep {
	XXH128_hash_t h;
	size_t len;
} prep;

/* A block of rows to prepare, shared by the crew; each member keeps its
 * scratch buffers across blocks. */
typedef struct prep_job {
	dd *d;
	uint64_t base, end;
	prep *pr;
	uint32_t *sigs;     /* (end - base) x perm */
	const uint32_t *a, *b;
	int near;
	buf key[64], tmp[64];
	uint64_t *sh[64];
	size_t shcap[64];
} prep_job;

static void prepare(void *ud, int t, int nt)
{
	prep_job *j = ud;
	buf *key = &j->key[t];
	for (uint64_t row = j->base + (uint64_t)t; row < j->end; row += (uint64_t)nt) {
		row_key(j->d, row, key, &j->tmp[t]);
		prep *p = &j->pr[row - j->base];
		p->h = XXH3_128bits(key->p, key->len);
		p->len = key->len;
		if (j->near) {
			size_t m = mh_shingles(&j->d->mh, key->p, key->len, &j->sh[t], &j->shcap[t]);
			mh_signature(j->sigs + (row - j->base) * (uint64_t)j->d->mh.perm, j->a, j->b, j->d->mh.perm, j->sh[t], m);
		}
	}
}

/* The end of the block of rows from base: at most max rows, and about
 * `bytes` of key text, so that the block is still in the CPU's cache when
 * its kept rows are written out. */
static uint64_t block_end(const dd *d, uint64_t base, uint64_t max, uint64_t bytes)
{
	uint64_t end = base + max < d->r.rows ? base + max : d->r.rows;
	const rec_field *f = &d->r.fields[d->keys[0]];
	if (f->type != REC_STR)
		return end;
	uint64_t lo = base + 1, hi = end; /* the first row past `bytes`, or end */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (f->offs[mid] - f->offs[base] >= bytes)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static int k_dedupe(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	(void)nin;
	dd d;
	memset(&d, 0, sizeof d);
	d.c = c;
	char *path = path_join(in[0].path, RECORDS_FILE);
	int rc = recr_open(&c->err, &d.r, path);
	free(path);
	if (rc)
		return kctx_fail(c, "dedupe: input %s is not a dataset: %s", in[0].label, c->err.msg);
	/* key fields */
	const hval *key = hval_get(params, "key");
	size_t nk = key && key->t == HV_LIST ? key->n : 1;
	d.keys = xcalloc(nk, sizeof *d.keys);
	for (size_t i = 0; i < nk && rc == 0; i++) {
		const char *name = key && key->t == HV_LIST ? (key->v[i].t == HV_STR ? key->v[i].s : "?")
		                                           : hval_get_str(params, "key", "text");
		int f = recr_find(&d.r, name);
		if (f < 0)
			rc = (kctx_fail(c, "dedupe: key field '%s' is not in the dataset %s", name, in[0].label), recr_hint_field(&c->err, &d.r, name));
		d.keys[d.nkeys++] = f;
	}
	if (hval_get_bool(params, "normalize", 1))
		d.norm = TEXT_NFKC | TEXT_LOWER | TEXT_COLLAPSE;
	double near = hval_get_num(params, "near", 0);
	d.mh.word = !strcmp(hval_get_str(params, "shingle_unit", "char"), "word");
	d.mh.k = (int)hval_get_int(params, "shingle", d.mh.word ? 3 : 5);
	d.mh.perm = (int)hval_get_int(params, "num_perm", 128);
	d.mh.seed = (uint64_t)hval_get_int(params, "seed", 1);
	d.mh.bands = (int)hval_get_int(params, "bands", 0);
	d.mh.rows = d.mh.bands ? d.mh.perm / d.mh.bands : 0;
	if (near > 0 && !d.mh.bands)
		mh_choose_bands(d.mh.perm, near, &d.mh.bands, &d.mh.rows);
	int keep_removed = hval_get_bool(params, "keep_removed", 0);

	uint64_t N = d.r.rows;
	/* the outputs are written as the pass goes, a block of rows at a time,
	 * while the block's text is still in the CPU's cache */
	char *out = NULL;
	rec_writer *w = NULL, *rw = NULL;
	int fk = -1, fkind = -1;
	if (rc == 0 && (rc = kctx_out_path(c, outdir, RECORDS_FILE, &out)) == 0) {
		int ft = recr_find(&d.r, "text");
		int streamed = ft >= 0 && d.r.fields[ft].type == REC_STR;
		w = recw_like(&d.r, streamed ? 0 : 1.0);
		if (streamed)
			rc = recw_stream(&c->err, w, ft, out);
		if (keep_removed) {
			rw = recw_like(&d.r, 0);
			fk = recw_field(rw, "duplicate_of", REC_INT);
			fkind = recw_field(rw, "duplicate", REC_CAT);
		}
	}
	uint8_t *removed = xcalloc(N ? N : 1, 1);
	uint32_t *dup_of = xcalloc(N ? N : 1, sizeof *dup_of); /* kept row + 1 */
	size_t exact = 0, nearn = 0;
	/* one pass: the normalized key of each row is checked against the exact
	 * set (XXH3-128), then its MinHash signature against the LSH buckets;
	 * candidates are verified by the exact Jaccard similarity of the two
	 * rows' shingle sets */
	if (rc == 0) {
		size_t cap = 1024;
		while (cap < 2 * N + 2)
			cap *= 2;
		XXH128_hash_t *set = xcalloc_big(cap, sizeof *set);
		uint32_t *who = xcalloc_big(cap, sizeof *who);
		uint32_t *sig = NULL, *a = NULL, *b = NULL;
		uint8_t *sig8 = NULL; /* low byte of every row's signature (b-bit MinHash) */
		uint64_t cache_row[4] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
		uint64_t *cache_sh[4] = {NULL, NULL, NULL, NULL};
		size_t cache_n[4] = {0, 0, 0, 0}, cache_cap[4] = {0, 0, 0, 0};
		unsigned cache_next = 0;
		size_t verified = 0;
		mh_buckets *maps = NULL;
		size_t *used = NULL;
		uint64_t *sh = NULL, *bk = NULL;
		uint32_t **slots = NULL;
		size_t shcap = 0;
		buf other;
		buf_init(&other);
		if (near > 0) {
			a = xmalloc((size_t)d.mh.perm * sizeof *a);
			b = xmalloc((size_t)d.mh.perm * sizeof *b);
			mh_coeffs(&d.mh, a, b);
			sig8 = xmalloc((size_t)N * (size_t)d.mh.perm + 1);
			maps = xcalloc((size_t)d.mh.bands, sizeof *maps);
			used = xcalloc((size_t)d.mh.bands, sizeof *used);
			bk = xcalloc((size_t)d.mh.bands, sizeof *bk);
			slots = xcalloc((size_t)d.mh.bands, sizeof *slots);
		}
		double bytes = 0;
		/* blocks of rows: keys, hashes and signatures on every thread (they
		 * do not depend on each other), then the exact set, the LSH buckets
		 * and the verification in row order on this one, so the result is
		 * the same for any number of threads */
		/* exact alone runs on this thread: its keys cost less than handing
		 * blocks to others and back (measured: 0.22 s on one thread, 0.31 s
		 * on two, for 282 MB) */
		crew *cw = crew_new(near > 0 && c->threads > 0 ? c->threads : 1);
		int nt = crew_size(cw);
		const uint64_t B = 4096;
		prep *pr = xcalloc(B, sizeof *pr);
		uint32_t *sigs = near > 0 ? xmalloc(B * (size_t)d.mh.perm * sizeof *sigs) : NULL;
		prep_job *job = xcalloc(1, sizeof *job);
		*job = (prep_job){.d = &d, .pr = pr, .sigs = sigs, .a = a, .b = b, .near = near > 0};
		for (uint64_t base = 0, end; base < N; base = end) {
			/* 256 KiB of text per member: the block stays in cache, and
			 * each round has work enough to be worth its wake-ups */
			end = block_end(&d, base, B, (uint64_t)nt << 18);
			if (d.r.fields[d.keys[0]].type == REC_STR) {
				d.win_lo = d.win_hi = 0;
				if (recr_read_strs(&c->err, &d.r, d.keys[0], base, end, &d.win) != 0) {
					rc = -1;
					break;
				}
				d.win_lo = base;
				d.win_hi = end;
			}
			job->base = base;
			job->end = end;
			crew_run(cw, prepare, job);
			for (uint64_t row = base; row < end; row++) {
				prep *p = &pr[row - base];
				bytes += (double)p->len;
				XXH128_hash_t h = p->h;
				size_t q = (size_t)h.low64 & (cap - 1);
				while (who[q] && !(set[q].low64 == h.low64 && set[q].high64 == h.high64))
					q = (q + 1) & (cap - 1);
				if (who[q]) {
					removed[row] = 1;
					dup_of[row] = who[q];
					exact++;
					continue;
				}
				set[q] = h;
				who[q] = (uint32_t)row + 1;
				if (near <= 0)
					continue;
				sig = sigs + (row - base) * (uint64_t)d.mh.perm;
				uint8_t *mine = sig8 + row * (uint64_t)d.mh.perm;
				for (int i = 0; i < d.mh.perm; i++)
					mine[i] = (uint8_t)sig[i];
				size_t m = 0;
				int sorted = 0, dup = 0;
				for (int band = 0; band < d.mh.bands && !dup; band++) {
					bk[band] = XXH3_64bits_withSeed(sig + band * d.mh.rows, (size_t)d.mh.rows * 4, (uint64_t)band);
					uint32_t *slot = mh_bucket(&maps[band], bk[band], &used[band]);
					slots[band] = slot; /* valid until band's map grows: only below */
					if (!*slot)
						continue;
					uint64_t cand = *slot - 1;
					/* b-bit estimate first: equal low bytes happen with
					 * probability J + (1 - J)/256 */
					const uint8_t *theirs = sig8 + cand * (uint64_t)d.mh.perm;
					int eq = 0;
					for (int i = 0; i < d.mh.perm; i++)
						eq += mine[i] == theirs[i];
					double est = ((double)eq / d.mh.perm - 1.0 / 256) / (1 - 1.0 / 256);
					if (est < near - 0.25)
						continue;
					if (!sorted) {
						row_key(&d, row, &d.keybuf, &d.tmp);
						m = mh_sort_unique(sh, mh_shingles(&d.mh, d.keybuf.p, d.keybuf.len, &sh, &shcap));
						sorted = 1;
					}
					unsigned slotc = 4;
					for (unsigned ci = 0; ci < 4; ci++)
						if (cache_row[ci] == cand)
							slotc = ci;
					if (slotc == 4) {
						slotc = cache_next++ % 4;
						row_key(&d, cand, &other, &d.tmp);
						cache_n[slotc] = mh_sort_unique(cache_sh[slotc], mh_shingles(&d.mh, other.p, other.len, &cache_sh[slotc], &cache_cap[slotc]));
						cache_row[slotc] = cand;
					}
					verified++;
					if (mh_jaccard(sh, m, cache_sh[slotc], cache_n[slotc]) >= near) {
						dup = 1;
						removed[row] = 2;
						dup_of[row] = (uint32_t)cand + 1;
						nearn++;
					}
				}
				if (!dup) /* claim the buckets nobody holds yet */
					for (int band = 0; band < d.mh.bands; band++)
						if (!*slots[band])
							*slots[band] = (uint32_t)row + 1;
			}
			for (uint64_t row = base; row < end; row++) {
				if (!removed[row]) {
					emit_row(&d, w, row);
				} else if (rw) {
					recw_int(rw, fk, (long long)dup_of[row] - 1);
					recw_str(rw, fkind, removed[row] == 1 ? "exact" : "near", removed[row] == 1 ? 5 : 4);
					emit_row(&d, rw, row);
				}
			}
			if (kctx_progress(c, (double)end, (double)N, "rows") != 0) {
				rc = -1; /* timed out or interrupted */
				break;
			}
		}
		sig = NULL;
		crew_free(cw);
		for (int t = 0; t < 64; t++) {
			buf_free(&job->key[t]);
			buf_free(&job->tmp[t]);
			free(job->sh[t]);
		}
		free(job);
		free(sigs);
		free(pr);
		d.win_lo = d.win_hi = 0;
		kctx_metric(c, "threads", nt);
		kctx_metric(c, "key_bytes", bytes);
		if (near > 0)
			kctx_metric(c, "candidates_verified", (double)verified);
		for (int ci = 0; ci < 4; ci++)
			free(cache_sh[ci]);
		free(sig8);
		mh_buckets_free(maps, d.mh.bands);
		free(used);
		free(bk);
		free(slots);
		free(sh);
		free(sig);
		free(a);
		free(b);
		xfree_big(set, cap, sizeof *set);
		xfree_big(who, cap, sizeof *who);
		buf_free(&other);
	}
	if (rc == 0) {
		rc = recw_write(&c->err, w, out);
		free(out);
		out = NULL;
		if (rc == 0 && rw) {
			rc = kctx_out_path(c, outdir, "removed/" RECORDS_FILE, &out);
			if (rc == 0)
				rc = recw_write(&c->err, rw, out);
		}
		/* report: the largest clusters with an example */
		size_t *size = xcalloc(N ? N : 1, sizeof *size);
		for (uint64_t row = 0; row < N; row++)
			if (removed[row])
				size[dup_of[row] - 1]++;
		for (int top = 0; top < 3; top++) {
			uint64_t best = N;
			for (uint64_t row = 0; row < N; row++)
				if (size[row] && (best == N || size[row] > size[best]))
					best = row;
			if (best == N)
				break;
			uint64_t ex = 0;
			for (uint64_t row = 0; row < N; row++)
				if (removed[row] && dup_of[row] - 1 == best) {
					ex = row;
					break;
				}
			row_key(&d, best, &d.keybuf, &d.tmp);
			kctx_log(c, "cluster of %zu: row %llu kept, e.g. row %llu removed (%s): \"%.60s%s\"", size[best] + 1,
			         (unsigned long long)best, (unsigned long long)ex, removed[ex] == 1 ? "exact" : "near",
			         d.keybuf.p, d.keybuf.len > 60 ? "..." : "");
			size[best] = 0;
		}
		free(size);
		kctx_metric(c, "rows_in", (double)N);
		kctx_metric(c, "rows", (double)(N - exact - nearn));
		kctx_metric(c, "exact_removed", (double)exact);
		kctx_metric(c, "near_removed", (double)nearn);
		if (near > 0) {
			kctx_metric(c, "bands", d.mh.bands);
			kctx_metric(c, "rows_per_band", d.mh.rows);
		}
	}
	free(out);
	recw_free(w);
	recw_free(rw);
	free(removed);
	free(dup_of);
	free(d.keys);
	buf_free(&d.keybuf);
	buf_free(&d.tmp);
	buf_free(&d.win);
	recr_close(&d.r);
	return rc;
}

const kernel_def stage_dedupe = {"dedupe", 1, k_dedupe, NULL};
