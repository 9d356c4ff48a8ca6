#include "clm.h"

#include <stdlib.h>
#include <string.h>

#include "../nn/nn.h"
#include "../nn/ptune.h"

clm clm_of_gpt2(gpt2 *g) { return (clm){ARCH_GPT2, g, NULL, 0, NULL, 0}; }
clm clm_of_llama(llama *l) { return (clm){ARCH_LLAMA, NULL, l, 0, NULL, 0}; }

void clm_set_ptune(clm *m, ptune *pt)
{
	m->pt = pt;
	if (m->l)
		m->l->ptune = pt;
	else
		m->g->ptune = pt;
}

int clm_heads(const clm *m) { return m->l ? m->l->cfg.n_head : m->g->cfg.n_head; }
int clm_kv_heads(const clm *m) { return m->l ? m->l->cfg.n_kv : m->g->cfg.n_head; }
int clm_kv_width(const clm *m) { return m->l ? m->l->cfg.n_kv * m->l->cfg.head_dim : m->g->cfg.n_embd; }
int clm_layers(const clm *m) { return m->l ? m->l->cfg.n_layer : m->g->cfg.n_layer; }

/* train's output of prompt tuning: the base and its adapter/ */
static int attach_ptune(herr *e, clm *m, const char *dir)
{
	char *ad = path_join(dir, "adapter");
	int rc = 0;
	if (ptune_is_dir(ad)) {
		ptune *pt = xcalloc(1, sizeof *pt);
		rc = ptune_load(e, pt, ad, clm_width(m), clm_kv_width(m), clm_layers(m), clm_heads(m), clm_kv_heads(m));
		if (rc == 0) {
			clm_set_ptune(m, pt);
			m->own_pt = 1;
		} else {
			free(pt);
		}
	}
	free(ad);
	return rc;
}

int clm_load_dir(herr *e, clm *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	model_arch arch;
	if (model_detect_dir(e, dir, &arch) != 0)
		return -1;
	m->owned = 1;
	m->arch = arch;
	if (arch == ARCH_LLAMA) {
		m->l = xcalloc(1, sizeof *m->l);
		if (llama_load_dir(e, m->l, dir) == 0) {
			if (attach_ptune(e, m, dir) == 0)
				return 0;
			llama_free(m->l);
		}
	} else if (arch == ARCH_GPT2) {
		m->g = xcalloc(1, sizeof *m->g);
		if (gpt2_load_dir(e, m->g, dir) == 0) {
			if (!m->g->cfg.ncls && attach_ptune(e, m, dir) == 0)
				return 0;
			if (m->g->cfg.ncls)
				herr_set(e, "%s is a classifier (GPT2ForSequenceClassification), not a language model", dir);
			gpt2_free(m->g);
		}
	} else {
		herr_set(e, "%s: a %s model, where a language model (GPT-2, Llama, Mistral, Qwen2) is needed", dir,
		         model_arch_name(arch));
	}
	free(m->g);
	free(m->l);
	memset(m, 0, sizeof *m);
	return -1;
}

void clm_free(clm *m)
{
	if (m->own_pt && m->pt) {
		ptune_free(m->pt);
		free(m->pt);
	}
	if (m->owned && m->g) {
		gpt2_free(m->g);
		free(m->g);
	}
	if (m->owned && m->l) {
		llama_free(m->l);
		free(m->l);
	}
	memset(m, 0, sizeof *m);
}

int clm_save_dir(herr *e, const clm *m, const char *dir)
{
	return m->l ? llama_save_dir(e, m->l, NULL, dir) : gpt2_save_dir(e, m->g, NULL, dir);
}

const char *clm_name(const clm *m)
{
	if (!m->l)
		return "GPT-2";
	const char *f = m->l->cfg.family;
	return !strcmp(f, "mistral") ? "Mistral" : !strcmp(f, "qwen2") ? "Qwen2" : "Llama";
}

int clm_vocab(const clm *m) { return m->l ? m->l->cfg.vocab : m->g->cfg.vocab; }
int clm_max_pos(const clm *m) { return m->l ? m->l->cfg.max_pos : m->g->cfg.n_positions; }
int clm_width(const clm *m) { return m->l ? m->l->cfg.hidden : m->g->cfg.n_embd; }
size_t clm_nparams(const clm *m) { return m->l ? m->l->nparams : m->g->nparams; }
float *clm_params(const clm *m) { return m->l ? m->l->p : m->g->p; }
int clm_check_len(herr *e, const clm *m, int T, const char *what) { return m->l ? llama_check_len(e, m->l, T, what) : 0; }

void clm_lora_arch(const clm *m, lora_arch *a)
{
	if (m->l)
		llama_lora_arch(m->l, a);
	else
		gpt2_lora_arch(m->g, a);
}

const char *const *clm_lora_default(const clm *m)
{
	static const char *const g[] = {"c_attn", NULL}, *const l[] = {"q_proj", "v_proj", NULL}; /* PEFT's defaults */
	return m->l ? l : g;
}

void clm_set_lora(clm *m, const lora *lo)
{
	if (m->l)
		m->l->lora = lo;
	else
		m->g->lora = lo;
}

const lora *clm_lora(const clm *m) { return m->l ? m->l->lora : m->g->lora; }

void clm_lora_merge(const lora *lo, clm *m)
{
	if (m->l)
		llama_lora_merge(lo, m->l);
	else
		gpt2_lora_merge(lo, m->g);
}

int clm_lora_load(herr *e, lora *lo, const clm *m, const char *dir)
{
	return m->l ? llama_lora_load(e, lo, m->l, dir) : gpt2_lora_load(e, lo, m->g, dir);
}

/* --- workspaces ------------------------------------------------------------------------ */

struct clm_ws {
	const clm *m;
	gpt2_ws *g;
	llama_ws *l;
	/* prompt tuning: the rows n positions longer (ids, targets), the
	 * tokens' logits gathered for the caller */
	int B, T, n;
	uint32_t *ids;
	int32_t *tg;
	float *lg;
};

clm_ws *clm_ws_new_on(const clm *m, int B, int T, int threads, const nn_ops *ops)
{
	clm_ws *w = xcalloc(1, sizeof *w);
	w->m = m;
	w->B = B;
	w->T = T;
	w->n = m->pt ? m->pt->n : 0;
	if (w->n) {
		w->ids = xcalloc((size_t)B * (size_t)(T + w->n), sizeof *w->ids);
		w->tg = xmalloc((size_t)B * (size_t)(T + w->n) * sizeof *w->tg);
	}
	if (m->l)
		w->l = llama_ws_new_on(m->l, B, T + w->n, threads, ops);
	else
		w->g = gpt2_ws_new_on(m->g, B, T + w->n, threads, ops);
	return w;
}

void clm_ws_free(clm_ws *w)
{
	if (!w)
		return;
	gpt2_ws_free(w->g);
	llama_ws_free(w->l);
	free(w->ids);
	free(w->tg);
	free(w->lg);
	free(w);
}

double clm_forward(clm_ws *w, const uint32_t *ids, const int32_t *targets)
{
	if (w->n) { /* n virtual positions before each row: no ids there (their embeddings replace them), no targets */
		int T2 = w->T + w->n;
		for (int b = 0; b < w->B; b++) {
			memcpy(w->ids + (size_t)b * T2 + w->n, ids + (size_t)b * w->T, (size_t)w->T * sizeof *ids);
			for (int t = 0; t < T2; t++)
				w->tg[(size_t)b * T2 + t] = t < w->n || !targets ? -1 : targets[(size_t)b * w->T + t - w->n];
		}
		ids = w->ids;
		targets = targets ? w->tg : NULL;
	}
	return w->l ? llama_forward(w->m->l, w->l, ids, targets) : gpt2_forward(w->m->g, w->g, ids, targets);
}

void clm_backward(clm_ws *w)
{
	if (w->l)
		llama_backward(w->m->l, w->l);
	else
		gpt2_backward(w->m->g, w->g);
}

const float *clm_logits(const clm_ws *w)
{
	const float *lg = w->l ? llama_logits(w->l) : gpt2_logits(w->g);
	if (!w->n)
		return lg;
	/* the tokens' rows, without the virtual ones (on the host) */
	clm_ws *mw = (clm_ws *)w;
	nn_ctx *c = clm_ws_nn(mw);
	size_t V = (size_t)clm_vocab(w->m), row = (size_t)w->T * V;
	if (!mw->lg)
		mw->lg = xmalloc((size_t)w->B * row * sizeof *mw->lg);
	for (int b = 0; b < w->B; b++)
		nn_download(c, mw->lg + (size_t)b * row, lg + ((size_t)b * (size_t)(w->T + w->n) + (size_t)w->n) * V,
		            row * sizeof(float));
	return mw->lg;
}
float *clm_ptune_grad(clm_ws *w) { return w->l ? llama_ptune_grad(w->l) : gpt2_ptune_grad(w->g); }
float *clm_ws_ptune_params(clm_ws *w) { return w->l ? llama_ws_ptune_params(w->l) : gpt2_ws_ptune_params(w->g); }
float *clm_grad(clm_ws *w) { return w->l ? llama_grad(w->l) : gpt2_grad(w->g); }
float *clm_lora_grad(clm_ws *w) { return w->l ? llama_lora_grad(w->l) : gpt2_lora_grad(w->g); }
float *clm_ws_params(clm_ws *w) { return w->l ? llama_ws_params(w->l, w->m->l) : gpt2_ws_params(w->g, w->m->g); }
float *clm_ws_lora_params(clm_ws *w)
{
	return w->l ? llama_ws_lora_params(w->l, w->m->l) : gpt2_ws_lora_params(w->g, w->m->g);
}
nn_ctx *clm_ws_nn(clm_ws *w) { return w->l ? llama_ws_nn(w->l) : gpt2_ws_nn(w->g); }
size_t clm_ws_bytes(const clm_ws *w) { return w->l ? llama_ws_bytes(w->l) : gpt2_ws_bytes(w->g); }
void clm_ws_dropout(clm_ws *w, uint64_t seed)
{
	if (w->l)
		llama_ws_dropout(w->l, seed);
	else
		gpt2_ws_dropout(w->g, seed);
}

/* --- generation ------------------------------------------------------------------------- */

struct clm_kv {
	const clm *m;
	gpt2_kv *g;
	llama_kv *l;
};

clm_kv *clm_kv_new_on(const clm *m, const nn_ops *ops)
{
	clm_kv *kv = xcalloc(1, sizeof *kv);
	kv->m = m;
	if (m->l)
		kv->l = llama_kv_new_on(m->l, ops ? ops : &nn_cpu, 0);
	else
		kv->g = gpt2_kv_new_on(m->g, ops ? ops : &nn_cpu);
	return kv;
}

void clm_kv_free(clm_kv *kv)
{
	if (!kv)
		return;
	gpt2_kv_free(kv->g);
	llama_kv_free(kv->l);
	free(kv);
}

void clm_kv_reset(clm_kv *kv)
{
	if (kv->l)
		llama_kv_reset(kv->l);
	else
		gpt2_kv_reset(kv->g);
}

int clm_kv_max(const clm_kv *kv)
{
	return (kv->l ? llama_kv_max(kv->l) : kv->m->g->cfg.n_positions) - (kv->m->pt ? kv->m->pt->n : 0);
}
gpt2_kv *clm_kv_gpt2(clm_kv *kv) { return kv->g; }

int clm_kv_len(const clm_kv *kv)
{
	return (kv->l ? llama_kv_len(kv->l) : gpt2_kv_len(kv->g)) - (kv->m->pt ? kv->m->pt->n : 0);
}

int clm_step(clm_kv *kv, uint32_t id, float *logits)
{
	return kv->l ? llama_step(kv->m->l, kv->l, id, logits) : gpt2_step(kv->m->g, kv->g, id, logits);
}
int clm_prefill(clm_kv *kv, const uint32_t *ids, int n, float *logits)
{
	const ptune *pt = kv->m->pt;
	uint32_t *all = NULL;
	if (pt) { /* the virtual tokens first: their rows take the prompt embeddings in the batched forward */
		all = xcalloc((size_t)(n + pt->n), sizeof *all);
		memcpy(all + pt->n, ids, (size_t)n * sizeof *ids);
		ids = all;
		n += pt->n;
	}
	int rc = kv->l ? llama_prefill(kv->m->l, kv->l, ids, n, logits) : gpt2_prefill(kv->m->g, kv->g, ids, n, logits);
	free(all);
	return rc;
}
