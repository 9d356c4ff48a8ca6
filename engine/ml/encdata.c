#include "encdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"

/* the evaluations' progress report: set by the calling stage (one thread) */
static _Thread_local enc_progress progress_fn;
static _Thread_local void *progress_ud;

void enc_set_progress(enc_progress fn, void *ud)
{
	progress_fn = fn;
	progress_ud = ud;
}

static int report(size_t done, size_t total)
{
	return progress_fn ? progress_fn(progress_ud, (double)done, (double)total) : 0;
}

void enc_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, uint32_t pad, uint32_t *ids, uint32_t *types,
              uint8_t *mask)
{
	const uint32_t *src = (const uint32_t *)sp->s.ids.p;
	const uint8_t *ty = sp->types.len ? (const uint8_t *)sp->types.p : NULL;
	for (int b = 0; b < B; b++) {
		uint32_t len = b < nb ? sp->len[idx[b]] : 0;
		uint64_t off = b < nb ? sp->off[idx[b]] : 0;
		for (int t = 0; t < T; t++) {
			size_t i = (size_t)b * (size_t)T + (size_t)t;
			int in = (uint32_t)t < len;
			ids[i] = in ? src[off + (uint64_t)t] : pad;
			types[i] = in && ty ? ty[off + (uint64_t)t] : 0;
			mask[i] = in || (len == 0 && t == 0); /* an empty row still attends to its first position */
		}
	}
}

static uint64_t mixer(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

void enc_mlm(const mlm_cfg *mc, uint32_t *ids, int32_t *labels, const uint8_t *mask, const uint32_t *rows, int B, int T,
             uint64_t seed)
{
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			size_t i = (size_t)b * (size_t)T + (size_t)t;
			labels[i] = -1;
			int special = !mask[i];
			for (int k = 0; k < mc->nspecial && !special; k++)
				special = ids[i] == mc->special[k];
			if (special)
				continue;
			uint64_t z = mixer(seed ^ mixer(((uint64_t)rows[b] << 20) + (uint64_t)t));
			double u = (double)(z >> 11) / 9007199254740992.0;
			if (u >= mc->rate)
				continue;
			labels[i] = (int32_t)ids[i];
			double v = u / mc->rate; /* uniform in [0, 1) given the choice */
			z = mixer(z);
			if (v < 0.8)
				ids[i] = mc->mask_id;
			else if (v < 0.9)
				ids[i] = (uint32_t)(z % (uint64_t)mc->vocab);
		}
}

double enc_cls_eval(const bert *m, bert_ws *w, const lm_split *sp, const uint32_t *y, int B, int T, double *prob)
{
	size_t N = (size_t)B * (size_t)T;
	uint32_t *idx = xmalloc((size_t)B * sizeof *idx), *ids = xmalloc(N * sizeof *ids), *ty = xmalloc(N * sizeof *ty);
	uint8_t *mk = xmalloc(N);
	int32_t *lab = xmalloc((size_t)B * sizeof *lab);
	int K = m->cfg.nlabels;
	double loss = 0;
	for (size_t at = 0; at < sp->n; at += (size_t)B) {
		int nb = lm_batch_rows(idx, at, sp->n, B);
		for (int b = 0; b < B; b++)
			lab[b] = b < nb && y ? (int32_t)y[at + (size_t)b] : -1;
		enc_fill(sp, idx, nb, B, T, (uint32_t)m->cfg.pad_id, ids, ty, mk);
		bert_batch bb = {ids, ty, mk, y ? lab : NULL, NULL};
		loss += bert_forward(m, w, &bb) * nb;
		if (report(at + (size_t)nb, sp->n))
			break;
		const float *z = bert_logits(w);
		for (int b = 0; prob && b < nb; b++) {
			const float *zb = z + (size_t)b * (size_t)K;
			double mx = zb[0], s = 0;
			for (int k = 1; k < K; k++)
				mx = zb[k] > mx ? zb[k] : mx;
			for (int k = 0; k < K; k++)
				s += exp(zb[k] - mx);
			for (int k = 0; k < K; k++)
				prob[(at + (size_t)b) * (size_t)K + (size_t)k] = exp(zb[k] - mx) / s;
		}
	}
	free(idx);
	free(ids);
	free(ty);
	free(mk);
	free(lab);
	return sp->n && y ? loss / (double)sp->n : 0;
}

double enc_mlm_eval(const bert *m, bert_ws *w, const lm_split *sp, const mlm_cfg *mc, int B, int T, uint64_t seed,
                    double *acc, double *count)
{
	size_t N = (size_t)B * (size_t)T;
	uint32_t *idx = xmalloc((size_t)B * sizeof *idx), *ids = xmalloc(N * sizeof *ids), *ty = xmalloc(N * sizeof *ty);
	uint8_t *mk = xmalloc(N);
	int32_t *lab = xmalloc(N * sizeof *lab);
	int V = m->cfg.vocab;
	double loss = 0, n = 0, hit = 0;
	bert_ws_mlm_sparse(w, 1);
	for (size_t at = 0; at < sp->n; at += (size_t)B) {
		int nb = lm_batch_rows(idx, at, sp->n, B);
		enc_fill(sp, idx, nb, B, T, (uint32_t)m->cfg.pad_id, ids, ty, mk);
		enc_mlm(mc, ids, lab, mk, idx, B, T, seed);
		for (int b = nb; b < B; b++)
			for (int t = 0; t < T; t++)
				lab[(size_t)b * (size_t)T + (size_t)t] = -1;
		double cnt = 0;
		for (size_t i = 0; i < N; i++)
			cnt += lab[i] >= 0;
		bert_batch bb = {ids, ty, mk, lab, NULL};
		loss += bert_forward(m, w, &bb) * cnt;
		n += cnt;
		/* the logits of the labelled rows, in order (sparse head) */
		const float *z = bert_logits(w);
		size_t r = 0;
		for (size_t i = 0; i < N; i++) {
			if (lab[i] < 0)
				continue;
			const float *zi = z + r++ * (size_t)V;
			int best = 0;
			for (int k = 1; k < V; k++)
				best = zi[k] > zi[best] ? k : best;
			hit += best == lab[i];
		}
		if (report(at + (size_t)nb, sp->n))
			break;
	}
	free(idx);
	free(ids);
	free(ty);
	free(mk);
	free(lab);
	if (acc)
		*acc = n ? hit / n : NAN;
	if (count)
		*count = n;
	return n ? loss / n : NAN;
}

int enc_mlm_setup(herr *e, mlm_cfg *mc, const char *who, const char *dir, const char *label, int vocab, long long mask_id,
                  double rate)
{
	memset(mc, 0, sizeof *mc);
	mc->rate = (float)rate;
	mc->vocab = vocab;
	char *p = path_join(dir, "tokenize.json");
	buf b;
	buf_init(&b);
	long long v = -1;
	if (fs_exists(p) && fs_read(e, p, &b) == 0) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, b.p, b.len, &je);
		const char *names[4] = {"mask_token", "cls", "sep", "pad"};
		for (int k = 0; r && k < 4; k++) {
			long long id;
			if (json_int(json_member(r, names[k], strlen(names[k])), 0, vocab - 1, &id) != 0)
				continue;
			if (k == 0)
				v = id;
			else
				mc->special[mc->nspecial++] = (uint32_t)id;
		}
		json_arena_free(a);
	}
	buf_free(&b);
	free(p);
	if (mask_id > 0)
		v = mask_id;
	if (v < 0 || v >= vocab) {
		herr_set(e, "%s: masked-LM needs a [MASK] token, and %s's tokenizer has none", who, label);
		return herr_hint(e, "tokenize with a WordPiece tokenizer (tokenizer { ..., kind = \"wordpiece\" }), or give "
		                 "mask_id = the id of a token to mask with");
	}
	mc->mask_id = (uint32_t)v;
	return 0;
}

void enc_tag_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, int32_t *labels)
{
	const int32_t *src = (const int32_t *)sp->labels.p;
	for (int b = 0; b < B; b++) {
		uint32_t len = b < nb ? sp->len[idx[b]] : 0;
		uint64_t off = b < nb ? sp->off[idx[b]] : 0;
		for (int t = 0; t < T; t++) {
			int32_t v = (uint32_t)t < len && src ? src[off + (uint64_t)t] : -1;
			labels[(size_t)b * (size_t)T + (size_t)t] = v < 0 ? -1 : v;
		}
	}
}

double enc_tag_eval(const bert *m, bert_ws *w, const lm_split *sp, int B, int T, uint32_t **gold, uint32_t **pred,
                    size_t **off)
{
	size_t N = (size_t)B * (size_t)T, cap = 1024, n = 0;
	uint32_t *idx = xmalloc((size_t)B * sizeof *idx), *ids = xmalloc(N * sizeof *ids), *ty = xmalloc(N * sizeof *ty);
	uint8_t *mk = xmalloc(N);
	int32_t *lab = xmalloc(N * sizeof *lab);
	int K = m->cfg.nlabels;
	*gold = xmalloc(cap * sizeof **gold);
	*pred = xmalloc(cap * sizeof **pred);
	*off = xcalloc(sp->n + 1, sizeof **off);
	double loss = 0, cnt = 0;
	for (size_t at = 0; at < sp->n; at += (size_t)B) {
		int nb = lm_batch_rows(idx, at, sp->n, B);
		enc_fill(sp, idx, nb, B, T, (uint32_t)m->cfg.pad_id, ids, ty, mk);
		enc_tag_fill(sp, idx, nb, B, T, lab);
		double c = 0;
		for (size_t i = 0; i < N; i++)
			c += lab[i] >= 0 && lab[i] < K;
		bert_batch bb = {ids, ty, mk, lab, NULL};
		loss += bert_forward(m, w, &bb) * c;
		cnt += c;
		const float *z = bert_logits(w);
		for (int b = 0; b < nb; b++) {
			for (int t = 0; t < T; t++) {
				size_t i = (size_t)b * (size_t)T + (size_t)t;
				if (lab[i] < 0 || lab[i] >= K)
					continue;
				const float *zi = z + i * (size_t)K;
				int best = 0;
				for (int k = 1; k < K; k++)
					best = zi[k] > zi[best] ? k : best;
				if (n == cap) {
					cap *= 2;
					*gold = xrealloc(*gold, cap * sizeof **gold);
					*pred = xrealloc(*pred, cap * sizeof **pred);
				}
				(*gold)[n] = (uint32_t)lab[i];
				(*pred)[n++] = (uint32_t)best;
			}
			(*off)[at + (size_t)b + 1] = n;
		}
		if (report(at + (size_t)nb, sp->n)) {
			for (size_t r = at + (size_t)nb; r < sp->n; r++)
				(*off)[r + 1] = n; /* the rows not reached: empty */
			break;
		}
	}
	free(idx);
	free(ids);
	free(ty);
	free(mk);
	free(lab);
	return cnt ? loss / cnt : NAN;
}
