#include "textgen.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void textgen_init(textgen *g, const clm *m, const bpe *b, const nn_ops *ops)
{
	memset(g, 0, sizeof *g);
	g->m = m;
	g->b = b;
	g->kv = clm_kv_new_on(m, ops);
	g->logits = xmalloc((size_t)clm_vocab(m) * sizeof *g->logits);
	g->eos = bpe_eos_id(b);
	g->smp.top_p = 1;
	g->max_tokens = 64;
}

void textgen_free(textgen *g)
{
	clm_kv_free(g->kv);
	free(g->logits);
	memset(g, 0, sizeof *g);
}

int textgen_run(textgen *g, const uint32_t *ids, size_t n, buf *out, FILE *stream, const char **why, double *prompt_s)
{
	clm_kv_reset(g->kv);
	double t0 = now_seconds();
	int full = 0, made = 0, stopped = 0, ctx = clm_kv_max(g->kv);
	if (n)
		full = clm_prefill(g->kv, ids, n > (size_t)ctx ? ctx : (int)n, g->logits) != 0 || n > (size_t)ctx;
	if (prompt_s)
		*prompt_s = now_seconds() - t0;
	*why = full ? "the prompt fills the context" : n ? "max tokens" : "an empty prompt";
	size_t start = out->len, printed = out->len, keep = 0;
	for (int s = 0; s < g->nstop; s++)
		keep = strlen(g->stops[s]) > keep ? strlen(g->stops[s]) : keep;
	buf piece;
	buf_init(&piece);
	while (!full && !stopped && made < g->max_tokens && n) {
		uint32_t id = gpt2_sample(&g->smp, g->logits, clm_vocab(g->m));
		if (g->eos >= 0 && id == (uint32_t)g->eos) {
			*why = "the end token";
			break;
		}
		made++;
		piece.len = 0;
		if (bpe_decode(g->b, &id, 1, &piece) == 0)
			buf_add(out, piece.p, piece.len);
		for (int s = 0; s < g->nstop; s++) {
			/* a stop text can only end in what this token added */
			size_t from = out->len - piece.len, sl = strlen(g->stops[s]);
			from = from > start + sl ? from - sl : start;
			char *hit = out->p ? memmem(out->p + from, out->len - from, g->stops[s], sl) : NULL;
			if (hit && sl) {
				out->len = (size_t)(hit - out->p);
				out->p[out->len] = 0;
				stopped = 1;
				*why = "a stop text";
			}
		}
		if (stream && !stopped && out->len > printed + keep) {
			fwrite(out->p + printed, 1, out->len - keep - printed, stream);
			fflush(stream);
			printed = out->len - keep;
		}
		if (!stopped && clm_step(g->kv, id, g->logits) != 0) {
			*why = "the context is full";
			break;
		}
	}
	if (stream && out->len > printed)
		fwrite(out->p + printed, 1, out->len - printed, stream);
	buf_free(&piece);
	return made;
}

/* words: maximal runs of ASCII letters and digits, lowercased; other bytes
 * (UTF-8 included) separate them, as rouge_score's [^a-z0-9]+ split does */
static size_t words(const char *s, size_t n, uint32_t **out)
{
	size_t cnt = 0, cap = 16;
	*out = xmalloc(cap * sizeof **out);
	for (size_t i = 0; i < n;) {
		if (!isalnum((unsigned char)s[i])) {
			i++;
			continue;
		}
		uint32_t h = 2166136261u;
		for (; i < n && isalnum((unsigned char)s[i]); i++)
			h = (h ^ (uint32_t)tolower((unsigned char)s[i])) * 16777619u;
		if (cnt == cap)
			*out = xrealloc(*out, (cap *= 2) * sizeof **out);
		(*out)[cnt++] = h;
	}
	return cnt;
}

double rouge_l(const char *cand, size_t nc, const char *ref, size_t nr)
{
	uint32_t *a, *b;
	size_t na = words(cand, nc, &a), nb = words(ref, nr, &b);
	double f = 0;
	if (na == 0 && nb == 0) {
		f = 1;
	} else if (na && nb) {
		/* longest common subsequence, one row at a time */
		uint32_t *row = xcalloc(nb + 1, sizeof *row);
		for (size_t i = 1; i <= na; i++) {
			uint32_t diag = 0;
			for (size_t j = 1; j <= nb; j++) {
				uint32_t up = row[j];
				row[j] = a[i - 1] == b[j - 1] ? diag + 1 : (row[j] > row[j - 1] ? row[j] : row[j - 1]);
				diag = up;
			}
		}
		double lcs = row[nb], p = lcs / (double)na, r = lcs / (double)nb;
		f = lcs > 0 ? 2 * p * r / (p + r) : 0;
		free(row);
	}
	free(a);
	free(b);
	return f;
}

int exact_match(const char *a, size_t na, const char *b, size_t nb)
{
	while (na && isspace((unsigned char)*a))
		a++, na--;
	while (na && isspace((unsigned char)a[na - 1]))
		na--;
	while (nb && isspace((unsigned char)*b))
		b++, nb--;
	while (nb && isspace((unsigned char)b[nb - 1]))
		nb--;
	return na == nb && !memcmp(a, b, na);
}
