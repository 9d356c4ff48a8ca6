/*
 * split — assigns every row of a dataset to one of several named parts
 * (default train/val/test = 0.70/0.15/0.15), reproducibly.
 *
 * The rule (docs/stages/split.md):
 *   u(row) = XXH3-64(seed, the row's content) / 2^64, a number in [0, 1).
 *   Without stratify, a row goes to the first part whose cumulative ratio
 *   exceeds u: a row's part depends only on its own content and the seed,
 *   so appending rows never moves existing ones.
 *   With stratify = FIELD, each class's rows are ordered by u and cut at
 *   exact counts (largest remainder), so every class's proportions are
 *   within one row of exact in every part; appending rows can move only
 *   rows next to a cut, by one part.
 *   With group = FIELD, u is computed from the group's value, so all rows
 *   of a group share a part (proportions then hold in expectation).
 * Also reports leakage: rows whose text (exact) appears in two parts.
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

typedef struct part {
	char *name;
	double ratio;
	rec_writer *w;
	size_t rows;
} part;

static uint64_t row_hash(const rec_reader *r, uint64_t row, int only, uint64_t seed)
{
	XXH3_state_t *st = XXH3_createState();
	XXH3_64bits_reset_withSeed(st, seed);
	for (uint32_t f = 0; f < r->nfields; f++) {
		if (only >= 0 && (int)f != only)
			continue;
		uint8_t tag = recr_is_null(r, (int)f, row) ? 0 : (uint8_t)r->fields[f].type;
		XXH3_64bits_update(st, &tag, 1);
		if (!tag)
			continue;
		size_t n;
		const char *s;
		switch (r->fields[f].type) {
		case REC_STR:
		case REC_CAT:
			s = recr_str(r, (int)f, row, &n);
			XXH3_64bits_update(st, &n, sizeof n);
			XXH3_64bits_update(st, s, n);
			break;
		case REC_BOOL:
			XXH3_64bits_update(st, r->fields[f].data + row, 1);
			break;
		default:
			XXH3_64bits_update(st, r->fields[f].data + 8 * row, 8);
		}
	}
	uint64_t h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

typedef struct item {
	uint64_t u;
	uint64_t row;
} item;

static int by_u(const void *a, const void *b)
{
	const item *x = a, *y = b;
	if (x->u != y->u)
		return x->u < y->u ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

/* Near duplicates (Jaccard >= near over 5-character shingles of the
 * normalized text) that landed in different parts: MinHash/LSH candidates,
 * verified exactly, the way dedupe finds them. */
static void near_leaks(kctx *c, const rec_reader *r, int ft, const uint8_t *assign, const part *parts,
                       double near)
{
	mh_cfg mh = {0, 5, 128, 0, 0, 1};
	mh_choose_bands(mh.perm, near, &mh.bands, &mh.rows);
	uint32_t *a = xmalloc((size_t)mh.perm * sizeof *a), *b = xmalloc((size_t)mh.perm * sizeof *b);
	uint32_t *sig = xmalloc((size_t)mh.perm * sizeof *sig);
	mh_coeffs(&mh, a, b);
	mh_buckets *maps = xcalloc((size_t)mh.bands, sizeof *maps);
	size_t *used = xcalloc((size_t)mh.bands, sizeof *used);
	uint64_t *sh = NULL, *sh2 = NULL;
	size_t cap = 0, cap2 = 0, leaks = 0;
	buf key, other;
	buf_init(&key);
	buf_init(&other);
	const int norm = TEXT_NFKC | TEXT_LOWER | TEXT_COLLAPSE;
	for (uint64_t row = 0; row < r->rows; row++) {
		size_t n;
		const char *s = recr_str(r, ft, row, &n);
		if (text_clean(&key, s ? s : "", n, norm) != 0)
			continue;
		size_t m = mh_shingles(&mh, key.p, key.len, &sh, &cap);
		mh_signature(sig, a, b, mh.perm, sh, m);
		int sorted = 0, found = 0;
		for (int band = 0; band < mh.bands && !found; band++) {
			uint64_t bk = XXH3_64bits_withSeed(sig + band * mh.rows, (size_t)mh.rows * 4, (uint64_t)band);
			uint32_t *slot = mh_bucket(&maps[band], bk, &used[band]);
			if (!*slot) {
				*slot = (uint32_t)row + 1;
				continue;
			}
			uint64_t cand = *slot - 1;
			if (assign[cand] == assign[row])
				continue;
			if (!sorted)
				m = mh_sort_unique(sh, m), sorted = 1;
			const char *t = recr_str(r, ft, cand, &n);
			if (text_clean(&other, t ? t : "", n, norm) != 0)
				continue;
			size_t m2 = mh_sort_unique(sh2, mh_shingles(&mh, other.p, other.len, &sh2, &cap2));
			if (mh_jaccard(sh, m, sh2, m2) >= near) {
				found = 1;
				if (++leaks <= 3)
					kctx_log(c, "leak: rows %llu (%s) and %llu (%s) are near duplicates",
					         (unsigned long long)cand, parts[assign[cand]].name,
					         (unsigned long long)row, parts[assign[row]].name);
			}
		}
	}
	kctx_metric(c, "leaked_near", (double)leaks);
	mh_buckets_free(maps, mh.bands);
	free(used);
	free(sh);
	free(sh2);
	free(sig);
	free(a);
	free(b);
	buf_free(&key);
	buf_free(&other);
}

static int k_split(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	(void)nin;
	rec_reader r;
	char *path = path_join(in[0].path, RECORDS_FILE);
	int rc = recr_open(&c->err, &r, path);
	free(path);
	if (rc)
		return -1;
	const hval *parts_v = hval_get(params, "parts");
	size_t np = parts_v && parts_v->t == HV_MAP ? parts_v->n : 0;
	part *parts = xcalloc(np ? np : 1, sizeof *parts);
	double total = 0;
	/* parts in the order of their ratios' declaration is unknown (Lua
	 * tables have none): keep the canonical (sorted) order, except that
	 * the conventional train, val, test come first in that order */
	static const char *conv[] = {"train", "val", "validation", "dev", "test"};
	size_t k = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < np; i++) {
			int is_conv = -1;
			for (int j = 0; j < 5; j++)
				if (!strcmp(parts_v->k[i], conv[j]))
					is_conv = j;
			if ((pass == 0) != (is_conv >= 0))
				continue;
			parts[k].name = parts_v->k[i];
			parts[k].ratio = parts_v->v[i].t == HV_INT ? (double)parts_v->v[i].i : parts_v->v[i].f;
			parts[k].w = recw_like(&r, parts_v->v[i].t == HV_INT ? (double)parts_v->v[i].i : parts_v->v[i].f);
			total += parts[k].ratio;
			k++;
		}
	/* conventional names ordered train, val, test */
	for (size_t i = 0; i < np; i++)
		for (size_t j = i + 1; j < np; j++) {
			int a = 99, b = 99;
			for (int q = 0; q < 5; q++) {
				if (!strcmp(parts[i].name, conv[q])) a = q;
				if (!strcmp(parts[j].name, conv[q])) b = q;
			}
			if (b < a) {
				part t = parts[i];
				parts[i] = parts[j];
				parts[j] = t;
			}
		}
	if (total <= 0 || fabs(total - 1.0) > 1e-6) {
		rc = kctx_fail(c, "split: part ratios must add up to 1, they add up to %g", total);
		goto out;
	}
	uint64_t seed = (uint64_t)hval_get_int(params, "seed", 42);
	const char *strat = hval_get_str(params, "stratify", NULL);
	const char *group = hval_get_str(params, "group", NULL);
	int fs = strat ? recr_find(&r, strat) : -1, fg = group ? recr_find(&r, group) : -1;
	if (strat && fs < 0) {
		rc = (kctx_fail(c, "split: stratify field '%s' is not in the dataset", strat), recr_hint_field(&c->err, &r, strat));
		goto out;
	}
	if (group && fg < 0) {
		rc = (kctx_fail(c, "split: group field '%s' is not in the dataset", group), recr_hint_field(&c->err, &r, group));
		goto out;
	}
	uint64_t N = r.rows;
	uint8_t *assign = xcalloc(N ? N : 1, 1);
	item *items = xcalloc(N ? N : 1, sizeof *items);
	for (uint64_t row = 0; row < N; row++) {
		items[row].u = row_hash(&r, row, fg, seed);
		items[row].row = row;
	}
	if (fs < 0 || fg >= 0) {
		for (uint64_t row = 0; row < N; row++) {
			double u = (double)(items[row].u >> 11) * (1.0 / 9007199254740992.0);
			double cum = 0;
			size_t p = np - 1;
			for (size_t i = 0; i < np; i++) {
				cum += parts[i].ratio;
				if (u < cum) {
					p = i;
					break;
				}
			}
			assign[row] = (uint8_t)p;
		}
	} else {
		/* stratified: per class, order by u, cut at exact counts */
		size_t nclass = 0;
		char **cls = NULL;
		uint32_t *cid = xcalloc(N ? N : 1, sizeof *cid);
		for (uint64_t row = 0; row < N; row++) {
			size_t n;
			const char *s = recr_str(&r, fs, row, &n);
			char *v = s ? xstrndup(s, n) : xstrdup("");
			size_t j;
			for (j = 0; j < nclass; j++)
				if (!strcmp(cls[j], v))
					break;
			if (j == nclass) {
				cls = xrealloc(cls, (nclass + 1) * sizeof *cls);
				cls[nclass++] = v;
			} else {
				free(v);
			}
			cid[row] = (uint32_t)j;
		}
		item *sub = xcalloc(N ? N : 1, sizeof *sub);
		for (size_t j = 0; j < nclass; j++) {
			size_t m = 0;
			for (uint64_t row = 0; row < N; row++)
				if (cid[row] == j)
					sub[m++] = items[row];
			qsort(sub, m, sizeof *sub, by_u);
			/* largest remainder counts */
			size_t *cnt = xcalloc(np, sizeof *cnt), given = 0;
			double *rem = xcalloc(np, sizeof *rem);
			for (size_t i = 0; i < np; i++) {
				double exact = parts[i].ratio * (double)m;
				cnt[i] = (size_t)floor(exact);
				rem[i] = exact - (double)cnt[i];
				given += cnt[i];
			}
			while (given < m) {
				size_t best = 0;
				for (size_t i = 1; i < np; i++)
					if (rem[i] > rem[best])
						best = i;
				cnt[best]++;
				rem[best] = -1;
				given++;
			}
			size_t at = 0;
			for (size_t i = 0; i < np; i++)
				for (size_t q = 0; q < cnt[i]; q++)
					assign[sub[at++].row] = (uint8_t)i;
			free(cnt);
			free(rem);
		}
		free(sub);
		for (size_t j = 0; j < nclass; j++)
			free(cls[j]);
		free(cls);
		free(cid);
	}
	for (uint64_t row = 0; row < N; row++) {
		recw_copy_row(parts[assign[row]].w, &r, row);
		parts[assign[row]].rows++;
	}
	/* leakage: identical text in two parts */
	int ft = recr_find(&r, "text");
	if (ft >= 0) {
		size_t cap = 1024;
		while (cap < 2 * N + 2)
			cap *= 2;
		uint64_t *hs = xcalloc(cap, sizeof *hs);
		uint32_t *who = xcalloc(cap, sizeof *who);
		size_t leaks = 0;
		for (uint64_t row = 0; row < N; row++) {
			size_t n;
			const char *s = recr_str(&r, ft, row, &n);
			uint64_t h = XXH3_64bits(s ? s : "", n) | 1;
			size_t q = (size_t)h & (cap - 1);
			while (who[q] && hs[q] != h)
				q = (q + 1) & (cap - 1);
			if (who[q]) {
				uint64_t other = who[q] - 1;
				if (assign[other] != assign[row]) {
					if (++leaks <= 3)
						kctx_log(c, "leak: rows %llu (%s) and %llu (%s) have the same text",
						         (unsigned long long)other, parts[assign[other]].name,
						         (unsigned long long)row, parts[assign[row]].name);
				}
			} else {
				hs[q] = h;
				who[q] = (uint32_t)row + 1;
			}
		}
		kctx_metric(c, "leaked_exact", (double)leaks);
		free(hs);
		free(who);
		double near = hval_get_num(params, "leak_near", 0.85);
		if (near > 0)
			near_leaks(c, &r, ft, assign, parts, near);
	}
	/* an empty part fails here, not two stages later ("no rows to evaluate") */
	if (rc == 0 && r.rows == 0)
		rc = kctx_fail(c, "split: the dataset has no rows");
	for (size_t i = 0; i < np && rc == 0; i++)
		if (parts[i].rows == 0 && r.rows > 0) {
			kctx_fail(c, "split: part '%s' gets no rows: %llu row%s at ratio %g", parts[i].name,
			          (unsigned long long)r.rows, r.rows == 1 ? "" : "s", parts[i].ratio);
			rc = herr_hint(&c->err, "give more rows, raise the part's ratio, or leave the part out");
		}
	for (size_t i = 0; i < np && rc == 0; i++) {
		char *rel = xasprintf("%s/%s", parts[i].name, RECORDS_FILE), *out;
		rc = kctx_out_path(c, outdir, rel, &out);
		if (rc == 0)
			rc = recw_write(&c->err, parts[i].w, out);
		free(out);
		free(rel);
		kctx_metric(c, parts[i].name, (double)parts[i].rows);
	}
	free(assign);
	free(items);
out:
	for (size_t i = 0; i < np; i++)
		recw_free(parts[i].w);
	free(parts);
	recr_close(&r);
	return rc;
}

const kernel_def stage_split = {"split", 1, k_split, NULL};
