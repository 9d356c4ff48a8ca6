#include "lmdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int lm_open(herr *e, lm_split *l, const char *dir, const char *label, int vocab, int max_t)
{
	memset(l, 0, sizeof *l);
	buf_init(&l->mask);
	if (ml_split_open(e, &l->s, dir, label) != 0)
		return -1;
	if (!l->s.has_tokens)
		return herr_set(e, "%s has no token ids: give tokenize's output", label);
	char *mp = path_join(dir, "mask.u8");
	int rc = 0;
	if (fs_exists(mp) && (rc = fs_read(e, mp, &l->mask)) == 0 && l->mask.len * 4 != l->s.ids.len)
		rc = herr_set(e, "%s: mask.u8 does not match tokens.u32", label);
	free(mp);
	if (rc)
		return -1;
	const rec_reader *r = &l->s.r;
	int fo = recr_find(r, "tok_off"), fl = recr_find(r, "tok_len");
	if (fo < 0 || fl < 0)
		return herr_set(e, "%s has no tok_off / tok_len", label);
	l->n = (size_t)r->rows;
	l->off = xmalloc((l->n ? l->n : 1) * sizeof *l->off);
	l->len = xmalloc((l->n ? l->n : 1) * sizeof *l->len);
	size_t nid = l->s.ids.len / 4;
	const uint32_t *ids = (const uint32_t *)l->s.ids.p;
	for (size_t i = 0; i < l->n; i++) {
		long long o = recr_int(r, fo, i), n = recr_int(r, fl, i);
		if (o < 0 || n < 0 || (size_t)o > nid || (size_t)n > nid - (size_t)o)
			return herr_set(e, "%s: row %zu: token range outside tokens.u32", label, i + 1);
		l->off[i] = (uint64_t)o;
		l->len[i] = (uint32_t)(n > max_t ? max_t : n);
		for (long long k = 0; k < n; k++)
			if (ids[o + k] >= (uint32_t)vocab)
				return herr_set(e, "%s: token id %u is outside the model's vocabulary of %d (tokenize with the "
				                "model's own tokenizer)", label, ids[o + k], vocab);
	}
	return 0;
}

void lm_close(lm_split *l)
{
	ml_split_close(&l->s);
	buf_free(&l->mask);
	free(l->off);
	free(l->len);
}

void lm_fill(lm_batch *l, const lm_split *sp, const uint32_t *idx, int nb)
{
	const uint32_t *ids = (const uint32_t *)sp->s.ids.p;
	for (int b = 0; b < l->B; b++) {
		uint32_t *x = l->ids + (size_t)b * (size_t)l->T;
		int32_t *y = l->tg + (size_t)b * (size_t)l->T;
		uint32_t len = b < nb ? sp->len[idx[b]] : 0;
		uint64_t off = b < nb ? sp->off[idx[b]] : 0;
		for (int t = 0; t < l->T; t++) {
			x[t] = (uint32_t)t < len ? ids[off + (uint64_t)t] : 0;
			int has = (uint32_t)t + 1 < len && (!sp->mask.len || sp->mask.p[off + (uint64_t)t + 1]);
			y[t] = has ? (int32_t)ids[off + (uint64_t)t + 1] : -1;
		}
	}
}


double lm_eval(lm_batch *l, const lm_split *sp, double *acc, double *targets)
{
	double loss = 0, count = 0, right = 0;
	uint32_t idx[4096];
	int V = l->m->cfg.vocab;
	for (size_t at = 0; at < sp->n; at += (size_t)l->B) {
		int nb = sp->n - at < (size_t)l->B ? (int)(sp->n - at) : l->B;
		for (int b = 0; b < nb; b++)
			idx[b] = (uint32_t)(at + (size_t)b);
		lm_fill(l, sp, idx, nb);
		double cnt = 0;
		for (int i = 0; i < l->B * l->T; i++)
			cnt += l->tg[i] >= 0;
		double ls = gpt2_forward(l->m, l->ws, l->ids, l->tg);
		loss += ls * cnt;
		count += cnt;
		const float *lg = gpt2_logits(l->ws);
		for (int i = 0; acc && i < l->B * l->T; i++) {
			if (l->tg[i] < 0)
				continue;
			const float *z = lg + (size_t)i * (size_t)V;
			int best = 0;
			for (int k = 1; k < V; k++)
				if (z[k] > z[best])
					best = k;
			right += best == l->tg[i];
		}
	}
	if (acc)
		*acc = count ? right / count : NAN;
	if (targets)
		*targets = count;
	return count ? loss / count : NAN;
}

