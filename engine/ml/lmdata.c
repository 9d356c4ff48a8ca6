#include "lmdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int lm_open(herr *e, lm_split *l, const char *dir, const char *label, int vocab, int max_t)
{
	memset(l, 0, sizeof *l);
	buf_init(&l->mask);
	buf_init(&l->types);
	buf_init(&l->labels);
	if (ml_split_open(e, &l->s, dir, label) != 0)
		return -1;
	if (!l->s.has_tokens)
		return herr_set(e, "%s has no token ids: give tokenize's output", label);
	char *mp = path_join(dir, "mask.u8");
	int rc = 0;
	if (fs_exists(mp) && (rc = fs_read(e, mp, &l->mask)) == 0 && l->mask.len * 4 != l->s.ids.len)
		rc = herr_set(e, "%s: mask.u8 does not match tokens.u32", label);
	free(mp);
	mp = path_join(dir, "types.u8");
	if (rc == 0 && fs_exists(mp) && (rc = fs_read(e, mp, &l->types)) == 0 && l->types.len * 4 != l->s.ids.len)
		rc = herr_set(e, "%s: types.u8 does not match tokens.u32", label);
	free(mp);
	mp = path_join(dir, "labels.i32");
	if (rc == 0 && fs_exists(mp) && (rc = fs_read(e, mp, &l->labels)) == 0 && l->labels.len != l->s.ids.len)
		rc = herr_set(e, "%s: labels.i32 does not match tokens.u32", label);
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
		for (uint32_t t = 1; t < l->len[i]; t++)
			l->targets += !l->mask.len || l->mask.p[(uint64_t)o + t];
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
	buf_free(&l->types);
	buf_free(&l->labels);
	free(l->off);
	free(l->len);
}

int lm_require_targets(herr *e, const lm_split *sp, const char *who, const char *label)
{
	if (sp->n == 0)
		return herr_set(e, "%s: %s has no rows", who, label);
	if (sp->targets == 0) {
		if (!sp->mask.len)
			return herr_set(e, "%s: %s has no token the loss counts: every row is a single token, with no next "
			                "token to predict", who, label);
		herr_set(e, "%s: %s has no token the loss counts: every row is prompt only (its completion was "
		         "cut away or is empty), so its loss would say nothing", who, label);
		return herr_hint(e, "tokenize with a larger max_len, or truncation = \"left\" to cut prompts from the left");
	}
	return 0;
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
	int V = clm_vocab(l->m);
	for (size_t at = 0; at < sp->n; at += (size_t)l->B) {
		int nb = sp->n - at < (size_t)l->B ? (int)(sp->n - at) : l->B;
		for (int b = 0; b < nb; b++)
			idx[b] = (uint32_t)(at + (size_t)b);
		lm_fill(l, sp, idx, nb);
		double cnt = 0;
		for (int i = 0; i < l->B * l->T; i++)
			cnt += l->tg[i] >= 0;
		double ls = clm_forward(l->ws, l->ids, l->tg);
		loss += ls * cnt;
		count += cnt;
		const float *lg = clm_logits(l->ws);
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


int lm_batch_rows(uint32_t *idx, size_t at, size_t n, int B)
{
	int nb = n - at < (size_t)B ? (int)(n - at) : B;
	for (int b = 0; b < B; b++)
		idx[b] = (uint32_t)(at + (size_t)(b < nb ? b : 0));
	return nb;
}

void lm_cls_proxy(clf_model *p, const char *target, char *const *classes, int k)
{
	memset(p, 0, sizeof *p);
	p->out = OUT_CAT;
	p->target = xstrdup(target);
	p->ncls = k;
	p->O = k;
	p->classes = xcalloc((size_t)k, sizeof *p->classes);
	for (int i = 0; i < k; i++)
		p->classes[i] = xstrdup(classes[i]);
	p->threshold = 0.5;
}

void lm_cls_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, uint32_t *ids, int *last)
{
	const uint32_t *src = (const uint32_t *)sp->s.ids.p;
	for (int b = 0; b < B; b++) {
		uint32_t len = b < nb ? sp->len[idx[b]] : 1;
		uint64_t off = b < nb ? sp->off[idx[b]] : 0;
		for (int t = 0; t < T; t++)
			ids[(size_t)b * (size_t)T + (size_t)t] = b < nb && (uint32_t)t < len ? src[off + (uint64_t)t] : 0;
		last[b] = len ? (int)len - 1 : 0;
	}
}

double lm_cls_eval(const gpt2 *m, gpt2_ws *ws, const lm_split *sp, const uint32_t *y, int B, int T, double *prob)
{
	uint32_t *idx = xmalloc((size_t)B * sizeof *idx), *ids = xmalloc((size_t)B * (size_t)T * sizeof *ids);
	int *last = xmalloc((size_t)B * sizeof *last);
	int32_t *lab = xmalloc((size_t)B * sizeof *lab);
	int K = m->cfg.ncls;
	double loss = 0;
	for (size_t at = 0; at < sp->n; at += (size_t)B) {
		int nb = lm_batch_rows(idx, at, sp->n, B);
		for (int b = 0; b < B; b++)
			lab[b] = b < nb && y ? (int32_t)y[at + (size_t)b] : -1;
		lm_cls_fill(sp, idx, nb, B, T, ids, last);
		loss += gpt2_forward_cls(m, ws, ids, last, lab) * nb;
		const float *p = gpt2_cls_probs(ws);
		for (int b = 0; prob && b < nb; b++)
			for (int k = 0; k < K; k++)
				prob[(at + (size_t)b) * (size_t)K + (size_t)k] = p[(size_t)b * (size_t)K + (size_t)k];
	}
	free(idx);
	free(ids);
	free(last);
	free(lab);
	return sp->n ? loss / (double)sp->n : NAN;
}
