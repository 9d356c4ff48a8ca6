/*
 * generate — text from a GPT-2 for every prompt of a split, scored against
 * the reference completion. Inputs, in any order: a model (train's output
 * or a model stage: config.json + model.safetensors), its tokenizer, and
 * tokenize's output in prompt_completion / instruction format (rows with
 * prompt_len): the prompt is a row's first prompt_len ids, the reference
 * the rest without <|endoftext|>. With compare = another model, that model
 * generates for the same prompts too.
 *
 * Writes generations.jsonl ({"prompt", "reference", "generated",
 * "exact_match", "rouge_l", "tokens"} per row, then "compare_generated" ...)
 * and generate.json (the means and tokens/s). Rows are shared out over the
 * threads, one KV cache each; a row's draws are seeded by seed and its
 * index, so the output does not depend on the thread count.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../io/bpe.h"
#include "../ml/blas.h"
#include "../ml/lmdata.h"
#include "../ml/optim.h"
#include "../ml/textgen.h"
#include "../nn/nn.h"
#include "stages.h"

typedef struct row_out {
	buf text;
	int tokens;
	double em, rl;
} row_out;

typedef struct gen_job {
	kctx *c;
	const clm *m;
	const bpe *b;
	const lm_split *sp;
	const int64_t *plen;
	const buf *refs;
	row_out *out;
	size_t n;
	gpt2_sampler smp;
	int max_tokens;
	const char *const *stops;
	int nstop;
	atomic_size_t done;
	const nn_ops *ops; /* the device (NULL: the CPU) */
} gen_job;

static void gen_part(void *ud, int t, int nt)
{
	gen_job *j = ud;
	textgen g;
	textgen_init(&g, j->m, j->b, j->ops);
	g.max_tokens = j->max_tokens;
	g.stops = j->stops;
	g.nstop = j->nstop;
	const uint32_t *ids = (const uint32_t *)j->sp->s.ids.p;
	for (size_t i = (size_t)t; i < j->n && !atomic_load(&j->c->stop); i += (size_t)nt) {
		g.smp = j->smp;
		g.smp.state = j->smp.state * 0x9E3779B97F4A7C15ull + i;
		row_out *o = &j->out[i];
		const char *why;
		o->tokens = textgen_run(&g, ids + j->sp->off[i], (size_t)j->plen[i], &o->text, NULL, &why, NULL);
		o->em = exact_match(o->text.p ? o->text.p : "", o->text.len, j->refs[i].p ? j->refs[i].p : "", j->refs[i].len);
		o->rl = rouge_l(o->text.p ? o->text.p : "", o->text.len, j->refs[i].p ? j->refs[i].p : "", j->refs[i].len);
		size_t d = atomic_fetch_add(&j->done, 1) + 1;
		if (t == 0)
			kctx_progress(j->c, (double)d, (double)j->n, "rows");
	}
	textgen_free(&g);
}

static int is_model(const kinput *in)
{
	char *a = path_join(in->path, "config.json"), *b = path_join(in->path, "model.safetensors");
	int ok = in->is_dir && fs_exists(a) && fs_exists(b);
	free(a);
	free(b);
	return ok;
}

/* every row's generation with one model; *tps its tokens/s */
static int run_model(kctx *c, const kinput *mi, gen_job *j, double *tps)
{
	clm m;
	if (clm_load_dir(&c->err, &m, mi->path) != 0)
		return herr_prefix(&c->err, "generate: %s", mi->label);
	int rc = 0, V = clm_vocab(&m), P = clm_max_pos(&m);
	if (bpe_vocab_size(j->b) > (size_t)V)
		rc = kctx_fail(c, "generate: the tokenizer has %zu tokens, the model %s %d", bpe_vocab_size(j->b), mi->label, V);
	for (size_t i = 0; rc == 0 && i < j->n; i++)
		if (j->plen[i] < 1 || j->plen[i] >= P)
			rc = kctx_fail(c, "generate: row %zu: a prompt of %lld tokens; the model %s takes 1 to %d", i + 1,
			               (long long)j->plen[i], mi->label, P - 1);
	if (rc == 0) {
		j->m = &m;
		atomic_store(&j->done, 0);
		kctx_note(c, "%s", mi->label);
		double t0 = now_seconds();
		par_run(j->ops ? 1 : c->threads, gen_part, j); /* a device: one stream of tokens */
		if (kctx_stopping(c) != 0)
			rc = -1; /* timed out or interrupted: the rows left are not answered */
		double el = now_seconds() - t0, toks = 0;
		for (size_t i = 0; i < j->n; i++)
			toks += j->out[i].tokens;
		*tps = el > 0 ? toks / el : 0;
	}
	clm_free(&m);
	return rc;
}

static void means(const row_out *o, size_t n, double *em, double *rl, double *toks)
{
	*em = *rl = *toks = 0;
	for (size_t i = 0; i < n; i++) {
		*em += o[i].em;
		*rl += o[i].rl;
		*toks += o[i].tokens;
	}
	if (n) {
		*em /= (double)n;
		*rl /= (double)n;
		*toks /= (double)n;
	}
}

static int k_generate(kctx *c, const hval *p, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *mi = NULL, *ti = NULL, *di = NULL, *ci = kinput_slot(in, nin, "compare");
	for (size_t i = 0; i < nin; i++) {
		if (&in[i] == ci)
			continue;
		char *enc = path_join(in[i].path, "encoder.json"), *tok = path_join(in[i].path, "tokens.u32");
		if (is_model(&in[i]))
			mi = &in[i];
		else if (in[i].is_dir && bpe_dir_is_bpe(in[i].path))
			ti = &in[i];
		else if (in[i].is_dir && fs_exists(tok))
			di = &in[i];
		else {
			free(enc);
			free(tok);
			return kctx_fail(c, "generate: input %s is not a model, a tokenizer or tokenize's output", in[i].label);
		}
		free(enc);
		free(tok);
	}
	if (!mi || !ti || !di)
		return kctx_fail(c, "generate: give a model, its tokenizer and prompt rows, as in generate { lm, tok, ids.test }");
	if (ci && !is_model(ci))
		return kctx_fail(c, "generate: compare: %s is not a model", ci->label);
	if (!blas_get(&c->err))
		return -1;
	bpe *b = NULL;
	if (bpe_load_dir(&c->err, &b, ti->path) != 0)
		return herr_prefix(&c->err, "generate: %s", ti->label);
	lm_split sp;
	int rc = lm_open(&c->err, &sp, di->path, di->label, (int)bpe_vocab_size(b), 1 << 30);
	int fp = rc == 0 ? recr_find(&sp.s.r, "prompt_len") : -1;
	if (rc == 0 && fp < 0)
		rc = kctx_fail(c, "generate: %s has no prompts: tokenize with format = \"prompt_completion\" or \"instruction\"",
		               di->label);
	size_t n = rc == 0 ? sp.n : 0;
	long long limit = hval_get_int(p, "limit", 0);
	if (limit > 0 && (size_t)limit < n)
		n = (size_t)limit;
	int64_t *plen = xcalloc(n ? n : 1, sizeof *plen);
	buf *refs = xcalloc(n ? n : 1, sizeof *refs), prompt;
	buf_init(&prompt);
	int64_t eos = bpe_eos_id(b);
	const uint32_t *ids = rc == 0 ? (const uint32_t *)sp.s.ids.p : NULL;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		plen[i] = recr_int(&sp.s.r, fp, i);
		size_t len = sp.len[i];
		if (plen[i] < 0 || (size_t)plen[i] > len) {
			rc = kctx_fail(c, "generate: %s row %zu: prompt_len %lld is outside the row", di->label, i + 1, (long long)plen[i]);
			break;
		}
		if (len > (size_t)plen[i] && eos >= 0 && ids[sp.off[i] + len - 1] == (uint32_t)eos)
			len--;
		buf_init(&refs[i]);
		bpe_decode(b, ids + sp.off[i] + plen[i], len - (size_t)plen[i], &refs[i]);
	}
	const hval *sl = hval_get(p, "stop");
	const char *stops[16];
	int nstop = 0;
	for (size_t i = 0; sl && sl->t == HV_LIST && i < sl->n && nstop < 16; i++)
		if (sl->v[i].t == HV_STR)
			stops[nstop++] = sl->v[i].s;
	gen_job j;
	memset(&j, 0, sizeof j);
	j.c = c;
	j.b = b;
	j.sp = &sp;
	j.plen = plen;
	j.refs = refs;
	j.n = n;
	j.smp = (gpt2_sampler){(float)hval_get_num(p, "temperature", 0), (int)hval_get_int(p, "top_k", 0),
	                       (float)hval_get_num(p, "top_p", 1), (uint64_t)hval_get_int(p, "seed", 0)};
	j.max_tokens = (int)hval_get_int(p, "max_tokens", 64);
	j.stops = stops;
	j.nstop = nstop;
	const char *device = hval_get_str(p, "device", "cpu");
	if (rc == 0 && strcmp(device, "cpu") && !(j.ops = nn_backend(&c->err, device)))
		rc = herr_prefix(&c->err, "generate");
	row_out *mo = xcalloc(n ? n : 1, sizeof *mo), *co = ci ? xcalloc(n ? n : 1, sizeof *co) : NULL;
	double tps = 0, ctps = 0;
	j.out = mo;
	if (rc == 0)
		rc = run_model(c, mi, &j, &tps);
	if (rc == 0 && ci) {
		j.out = co;
		rc = run_model(c, ci, &j, &ctps);
	}
	if (rc == 0) {
		buf o;
		buf_init(&o);
		for (size_t i = 0; i < n; i++) {
			prompt.len = 0;
			bpe_decode(b, ids + sp.off[i], (size_t)plen[i], &prompt);
			buf_adds(&o, "{\"prompt\": ");
			buf_json_strn(&o, prompt.p ? prompt.p : "", prompt.len);
			buf_adds(&o, ", \"reference\": ");
			buf_json_strn(&o, refs[i].p ? refs[i].p : "", refs[i].len);
			for (int k = 0; k < (ci ? 2 : 1); k++) {
				const row_out *r = k ? &co[i] : &mo[i];
				buf_adds(&o, k ? ", \"compare_generated\": " : ", \"generated\": ");
				buf_json_strn(&o, r->text.p ? r->text.p : "", r->text.len);
				buf_printf(&o, ", \"%sexact_match\": %d, \"%srouge_l\": ", k ? "compare_" : "", (int)r->em, k ? "compare_" : "");
				buf_json_num(&o, r->rl);
				buf_printf(&o, ", \"%stokens\": %d", k ? "compare_" : "", r->tokens);
			}
			buf_adds(&o, "}\n");
		}
		char *path = NULL;
		rc = kctx_out_path(c, outdir, "generations.jsonl", &path);
		if (rc == 0)
			rc = fs_write_atomic(&c->err, path, o.p ? o.p : "", o.len);
		free(path);
		double em, rl, tk, cem = NAN, crl = NAN, ctk = NAN;
		means(mo, n, &em, &rl, &tk);
		if (ci)
			means(co, n, &cem, &crl, &ctk);
		o.len = 0;
		buf_printf(&o, "{\"task\": \"generate\", \"rows\": %zu, \"model\": {\"exact_match\": ", n);
		buf_json_num(&o, em);
		buf_adds(&o, ", \"rouge_l\": ");
		buf_json_num(&o, rl);
		buf_adds(&o, ", \"tokens_per_row\": ");
		buf_json_num(&o, tk);
		buf_adds(&o, "}");
		if (ci) {
			buf_adds(&o, ", \"compare\": {\"exact_match\": ");
			buf_json_num(&o, cem);
			buf_adds(&o, ", \"rouge_l\": ");
			buf_json_num(&o, crl);
			buf_adds(&o, ", \"tokens_per_row\": ");
			buf_json_num(&o, ctk);
			buf_adds(&o, "}");
		}
		buf_adds(&o, "}\n");
		if (rc == 0 && (rc = kctx_out_path(c, outdir, "generate.json", &path)) == 0)
			rc = fs_write_atomic(&c->err, path, o.p, o.len);
		free(path);
		buf_free(&o);
		kctx_metric(c, "rows", (double)n);
		kctx_metric(c, "exact_match", em);
		kctx_metric(c, "rouge_l", rl);
		if (ci) {
			kctx_metric(c, "compare_exact_match", cem);
			kctx_metric(c, "compare_rouge_l", crl);
		}
		kctx_metric(c, "tokens_per_s", round(tps));
	}
	for (size_t i = 0; i < n; i++) {
		buf_free(&refs[i]);
		buf_free(&mo[i].text);
		if (co)
			buf_free(&co[i].text);
	}
	free(mo);
	free(co);
	free(refs);
	free(plen);
	buf_free(&prompt);
	lm_close(&sp);
	bpe_free(b);
	return rc;
}

const kernel_def stage_generate = {"generate", 1, k_generate, NULL};
