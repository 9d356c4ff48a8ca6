#include "textgen.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "deploy.h"

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
	buf_free(&g->piece);
	memset(g, 0, sizeof *g);
}

int textgen_begin(textgen *g, const uint32_t *ids, size_t n, buf *out)
{
	clm_kv_reset(g->kv);
	int np = clm_kv_max(g->kv), full = 0;
	if (n)
		full = clm_prefill(g->kv, ids, n > (size_t)np ? np : (int)n, g->logits) != 0 || n > (size_t)np;
	g->why = full ? "the prompt fills the context" : n ? "max tokens" : "an empty prompt";
	g->made = 0;
	g->start = out->len;
	g->keep = 0;
	for (int s = 0; s < g->nstop; s++)
		g->keep = strlen(g->stops[s]) > g->keep ? strlen(g->stops[s]) : g->keep;
	return n && !full;
}

int textgen_take(textgen *g, buf *out, uint32_t *id)
{
	if (g->made >= g->max_tokens) {
		g->why = "max tokens";
		return 0;
	}
	*id = gpt2_sample(&g->smp, g->logits, clm_vocab(g->m));
	if (g->eos >= 0 && *id == (uint32_t)g->eos) {
		g->why = "the end token";
		return 0;
	}
	g->made++;
	g->piece.len = 0;
	if (bpe_decode(g->b, id, 1, &g->piece) == 0)
		buf_add(out, g->piece.p, g->piece.len);
	for (int s = 0; s < g->nstop; s++) {
		/* a stop text can only end in what this token added */
		size_t from = out->len - g->piece.len, sl = strlen(g->stops[s]);
		from = from > g->start + sl ? from - sl : g->start;
		char *hit = out->p && sl ? memmem(out->p + from, out->len - from, g->stops[s], sl) : NULL;
		if (hit) {
			out->len = (size_t)(hit - out->p);
			out->p[out->len] = 0;
			g->why = "a stop text";
			return 0;
		}
	}
	if (g->made >= g->max_tokens) {
		g->why = "max tokens";
		return 0;
	}
	return 1;
}

size_t textgen_final(const textgen *g, const buf *out, int ended)
{
	size_t n = out->len - g->start;
	if (ended)
		return n;
	n = n > g->keep ? n - g->keep : 0;
	/* back off to the start of a character that is not complete yet */
	const unsigned char *p = (const unsigned char *)out->p + g->start;
	size_t k = n;
	while (k > 0 && n - k < 4 && (p[k - 1] & 0xC0) == 0x80)
		k--;
	if (k > 0 && p[k - 1] >= 0xC0) {
		size_t need = p[k - 1] >= 0xF0 ? 4 : p[k - 1] >= 0xE0 ? 3 : 2;
		if (n - (k - 1) < need)
			return k - 1;
	}
	return n;
}

int textgen_run(textgen *g, const uint32_t *ids, size_t n, buf *out, FILE *stream, const char **why, double *prompt_s)
{
	double t0 = now_seconds();
	int more = textgen_begin(g, ids, n, out);
	if (prompt_s)
		*prompt_s = now_seconds() - t0;
	size_t printed = 0;
	uint32_t id;
	while (more && (more = textgen_take(g, out, &id))) {
		size_t ready = textgen_final(g, out, 0);
		if (stream && ready > printed) {
			fwrite(out->p + g->start + printed, 1, ready - printed, stream);
			fflush(stream);
			printed = ready;
		}
		if (clm_step(g->kv, id, g->logits) != 0) {
			g->why = "the context is full";
			break;
		}
	}
	size_t all = out->len - g->start;
	if (stream && all > printed)
		fwrite(out->p + g->start + printed, 1, all - printed, stream);
	*why = g->why;
	return g->made;
}

int textgen_load_tokenizer(herr *e, const char *path, bpe **b)
{
	int rc;
	if (fs_is_dir(path)) {
		rc = bpe_load_dir(e, b, path);
	} else {
		buf js;
		buf_init(&js);
		rc = fs_read(e, path, &js);
		if (rc == 0)
			rc = bpe_load_hf(e, b, js.p, js.len, path);
		buf_free(&js);
	}
	return rc;
}

/* a bundle: config.json, model.safetensors and (unless given) tokenizer.json */
static int load_bundle(herr *e, const char *path, gpt2 *m, bpe **b)
{
	bundle bd;
	if (bundle_read(e, &bd, path, (size_t)16 << 30) != 0)
		return -1;
	const buf *tj = bundle_get(&bd, "tokenizer.json");
	char *wt = xasprintf("%s[tokenizer.json]", path);
	int rc = gpt2_load_bundle(e, m, &bd, path);
	if (rc == 0 && !*b && (!tj ? herr_set(e, "%s: the bundle has no tokenizer.json: give --tokenizer", path)
	                           : bpe_load_hf(e, b, tj->p, tj->len, wt)) != 0) {
		gpt2_free(m);
		rc = -1;
	}
	free(wt);
	bundle_free(&bd);
	return rc;
}

int textgen_load(herr *e, const char *model, const char *tok, gpt2 *m, bpe **b)
{
	memset(m, 0, sizeof *m);
	size_t ml = strlen(model);
	int is_gguf = ml > 5 && !strcmp(model + ml - 5, ".gguf"), is_bundle = !fs_is_dir(model);
	int rc = is_gguf ? deploy_load_gguf(e, model, m, b) : is_bundle ? load_bundle(e, model, m, b) : gpt2_load_dir(e, m, model);
	if (rc)
		return rc;
	if (m->cfg.ncls)
		rc = herr_set(e, "%s is a classifier (GPT2ForSequenceClassification), not a language model", model);
	else if (*b && bpe_vocab_size(*b) > (size_t)m->cfg.vocab)
		rc = herr_set(e, "%s: the tokenizer has %zu tokens, the model %d", tok ? tok : model, bpe_vocab_size(*b), m->cfg.vocab);
	if (rc)
		gpt2_free(m);
	return rc;
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
