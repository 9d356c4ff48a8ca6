#include "gpt2.h"
#include "../ml/bundle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/blas.h"
#include "../ml/optim.h"
#include "../nn/lora.h"
#include "../nn/nn.h"
#include "../nn/ptune.h"
#include "../nn/q8.h"
#include "model.h"

/* --- configuration and layout ------------------------------------------------- */

static int jint(const jnode *o, const char *name, long long lo, long long hi, long long *v)
{
	return json_int(json_member(o, name, strlen(name)), lo, hi, v);
}

int gpt2_config_parse(herr *e, gpt2_config *c, const char *json, size_t n, const char *what)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je);
	int rc = 0;
	long long nl, nh, ne, np, nv;
	model_arch arch = ARCH_GPT2;
	if (!r || r->t != J_OBJ) {
		rc = herr_set(e, "%s: not a JSON object", what);
	} else if (model_detect(e, json, n, what, &arch) != 0) {
		rc = -1;
	} else if (arch != ARCH_GPT2) {
		rc = herr_set(e, "%s: a %s model, where a GPT-2 is needed (a language model or a GPT-2 classifier)", what,
		              model_arch_name(arch));
	} else if (jint(r, "n_layer", 1, 1024, &nl) || jint(r, "n_head", 1, 1024, &nh) || jint(r, "n_embd", 1, 65536, &ne) ||
	           jint(r, "n_positions", 1, 1 << 20, &np) || jint(r, "vocab_size", 1, 1 << 24, &nv)) {
		rc = herr_set(e, "%s: expected integers n_layer, n_head, n_embd, n_positions and vocab_size (a GPT-2 config)", what);
	} else if (ne % nh) {
		rc = herr_set(e, "%s: n_embd %lld is not a multiple of n_head %lld", what, ne, nh);
	} else {
		c->n_layer = (int)nl;
		c->n_head = (int)nh;
		c->n_embd = (int)ne;
		c->n_positions = (int)np;
		c->vocab = (int)nv;
		c->eps = 1e-5f;
		const jnode *eps = json_member(r, "layer_norm_epsilon", 18), *act = json_member(r, "activation_function", 19);
		if (eps && eps->t == J_NUM) {
			char tmp[40];
			snprintf(tmp, sizeof tmp, "%.*s", (int)eps->len, eps->s);
			c->eps = (float)strtod(tmp, NULL);
		}
		const jnode *tie = json_member(r, "tie_word_embeddings", 19);
		if (tie && tie->t == J_FALSE) {
			rc = herr_set(e, "%s: tie_word_embeddings: false (an untied LM head) is not supported: hone's GPT-2 ties "
			              "the head to the token embeddings, and ignoring lm_head.weight would give other logits", what);
			herr_hint(e, "use a checkpoint whose head is tied (tie_word_embeddings: true)");
		}
		if (rc == 0 && act && !(act->t == J_STR && ((act->len == 8 && !memcmp(act->s, "gelu_new", 8)) ||
		                                 (act->len == 17 && !memcmp(act->s, "gelu_pytorch_tanh", 17)))))
			rc = herr_set(e, "%s: activation_function: only gelu_new (GELU, tanh form) is supported", what);
		/* a sequence classifier: its architecture, and id2label for the classes */
		c->ncls = 0;
		const jnode *ar = json_member(r, "architectures", 13), *il = json_member(r, "id2label", 8);
		int seq = 0;
		for (const jnode *k = ar && ar->t == J_ARR ? ar->kid : NULL; k; k = k->next)
			seq |= k->t == J_STR && k->len == 29 && !memcmp(k->s, "GPT2ForSequenceClassification", 29);
		if (rc == 0 && seq) {
			int n = 0;
			for (const jnode *k = il && il->t == J_OBJ ? il->kid : NULL; k; k = k->next)
				n++;
			if (n < 2)
				rc = herr_set(e, "%s: a GPT2ForSequenceClassification needs id2label with 2 or more classes", what);
			c->ncls = n;
		}
	}
	json_arena_free(a);
	return rc;
}

static void add_tensor(gpt2 *m, size_t *at, const char *name, int64_t d0, int64_t d1)
{
	model_add_tensor(m->t, &m->nt, at, name, d0, d1);
}

int gpt2_init(herr *e, gpt2 *m, const gpt2_config *c)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	int C = c->n_embd;
	m->t = xcalloc((size_t)c->n_layer * 12 + 5, sizeof *m->t);
	size_t at = 0;
	char nm[64];
	add_tensor(m, &at, "wte.weight", c->vocab, C);
	add_tensor(m, &at, "wpe.weight", c->n_positions, C);
	for (int l = 0; l < c->n_layer; l++) {
#define T(suffix, d0, d1) (snprintf(nm, sizeof nm, "h.%d." suffix, l), add_tensor(m, &at, nm, d0, d1))
		T("ln_1.weight", C, 0);
		T("ln_1.bias", C, 0);
		T("attn.c_attn.weight", C, 3 * C);
		T("attn.c_attn.bias", 3 * C, 0);
		T("attn.c_proj.weight", C, C);
		T("attn.c_proj.bias", C, 0);
		T("ln_2.weight", C, 0);
		T("ln_2.bias", C, 0);
		T("mlp.c_fc.weight", C, 4 * C);
		T("mlp.c_fc.bias", 4 * C, 0);
		T("mlp.c_proj.weight", 4 * C, C);
		T("mlp.c_proj.bias", C, 0);
#undef T
	}
	add_tensor(m, &at, "ln_f.weight", C, 0);
	add_tensor(m, &at, "ln_f.bias", C, 0);
	if (c->ncls > 0)
		add_tensor(m, &at, "score.weight", c->ncls, C);
	m->nparams = at;
	if (at > ((size_t)1 << 34))
		return herr_set(e, "GPT-2 config with %zu parameters is too large", at);
	m->p = xcalloc(at, sizeof *m->p);
	return 0;
}

void gpt2_free(gpt2 *m)
{
	for (int k = 0; m->labels && k < m->cfg.ncls; k++)
		free(m->labels[k]);
	free(m->labels);
	free(m->p);
	free(m->t);
	memset(m, 0, sizeof *m);
}

void gpt2_config_json(const gpt2_config *c, const char *const *labels, buf *out)
{
	buf_printf(out, "{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"%s\"],\n",
	           c->ncls ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel");
	if (c->ncls) {
		/* class names; the pad token (0) only matters to transformers, which
		 * then finds each row's last token before the first pad: hone's rows
		 * are given their lengths */
		model_labels_json(out, (char *const *)labels, c->ncls);
	}
	buf_printf(out, ""
	           "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n"
	           "  \"n_ctx\": %d,\n  \"vocab_size\": %d,\n  \"layer_norm_epsilon\": ",
	           c->n_layer, c->n_head, c->n_embd, c->n_positions, c->n_positions, c->vocab);
	buf_json_float(out, c->eps);
	buf_adds(out, ",\n  \"activation_function\": \"gelu_new\",\n  \"tie_word_embeddings\": true\n}\n");
}

int gpt2_save_dir(herr *e, const gpt2 *m, const float *base, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	gpt2_config_json(&m->cfg, (const char *const *)m->labels, &cfg);
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	gpt2_tensors(m, &w, base ? base : m->p);
	int rc = st_save_pair(e, dir, "config.json", &cfg, "model.safetensors", &w);
	st_writer_free(&w);
	buf_free(&cfg);
	return rc;
}

void gpt2_init_random(gpt2 *m, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x686F6E65ull;
	double proj = 0.02 / sqrt(2.0 * m->cfg.n_layer);
	for (size_t i = 0; i < m->nt; i++) {
		const gpt2_tensor *t = &m->t[i];
		const char *n = t->name;
		size_t len = strlen(n);
		int is_ln = strstr(n, "ln_") != NULL, is_bias = len > 5 && !strcmp(n + len - 5, ".bias");
		double sd = strstr(n, "c_proj.weight") ? proj : 0.02;
		for (size_t k = 0; k < t->n; k++) {
			float v;
			if (is_bias)
				v = 0.0f;
			else if (is_ln)
				v = 1.0f;
			else {
				v = (float)(sd * model_normal(&s));
			}
			m->p[t->off + k] = v;
		}
	}
}

void gpt2_add_classifier(gpt2 *m, int ncls, const char *const *labels, uint64_t seed)
{
	int C = m->cfg.n_embd;
	size_t at = m->nparams;
	m->t = xrealloc(m->t, (m->nt + 1) * sizeof *m->t);
	add_tensor(m, &at, "score.weight", ncls, C);
	m->p = xrealloc(m->p, at * sizeof *m->p);
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x73636F7265ull;
	for (size_t i = m->nparams; i < at; i++)
		m->p[i] = (float)(0.02 * model_normal(&s));
	m->nparams = at;
	m->cfg.ncls = ncls;
	m->labels = xcalloc((size_t)ncls, sizeof *m->labels);
	for (int k = 0; k < ncls; k++)
		m->labels[k] = xstrdup(labels[k]);
}

const gpt2_tensor *gpt2_find(const gpt2 *m, const char *name) { return model_find(m->t, m->nt, name); }

void gpt2_tensors(const gpt2 *m, st_writer *w, const float *base)
{
	for (size_t i = 0; i < m->nt; i++)
		st_add_f32(w, m->t[i].name, base + m->t[i].off, m->t[i].ndim, m->t[i].shape);
}

static const char *strip(const char *name)
{
	return !strncmp(name, "transformer.", 12) ? name + 12 : name;
}

static int ignorable(const char *name)
{
	size_t n = strlen(name);
	return (n > 10 && !strcmp(name + n - 10, ".attn.bias")) || (n > 17 && !strcmp(name + n - 17, ".attn.masked_bias"));
}

/* Copies the tensors of f that belong to the model; marks them in seen.
 * An lm_head.weight is kept in *head, to be checked against wte (the head
 * hone computes is tied to it). */
static int load_from(herr *e, gpt2 *m, const st_file *f, const char *what, uint8_t *seen, float **head)
{
	for (size_t i = 0; i < f->n; i++) {
		const char *name = strip(f->t[i].name);
		const gpt2_tensor *t = gpt2_find(m, name);
		if (!t && !strcmp(name, "lm_head.weight")) {
			const gpt2_tensor *wte = gpt2_find(m, "wte.weight");
			const float *src = st_f32(e, f, what, f->t[i].name, 2, wte->shape);
			if (!src)
				return -1;
			free(*head);
			*head = xmalloc(wte->n * sizeof(float));
			memcpy(*head, src, wte->n * sizeof(float));
			continue;
		}
		if (!t) {
			if (ignorable(name))
				continue;
			return herr_set(e, "%s: tensor '%s' is not part of a GPT-2 model of this config", what, f->t[i].name);
		}
		const float *src = st_f32(e, f, what, f->t[i].name, t->ndim, t->shape);
		if (!src)
			return -1;
		memcpy(m->p + t->off, src, t->n * sizeof(float));
		seen[t - m->t] = 1;
	}
	return 0;
}

/* An lm_head.weight must equal wte: hone's LM head is tied to it, and a
 * different head silently ignored would give other logits. */
static int check_head(herr *e, const gpt2 *m, float *head, const char *what)
{
	if (!head)
		return 0;
	const gpt2_tensor *wte = gpt2_find(m, "wte.weight");
	int same = !memcmp(head, m->p + wte->off, wte->n * sizeof(float));
	free(head);
	if (same)
		return 0;
	herr_set(e, "%s: lm_head.weight differs from wte.weight: an untied LM head, which hone's GPT-2 does not "
	         "support (it ties the head to the token embeddings)", what);
	return herr_hint(e, "use a checkpoint with tie_word_embeddings: true, or copy wte.weight into lm_head.weight "
	                 "if the difference is not meant");
}

int gpt2_load_weights(herr *e, gpt2 *m, const st_file *f, const char *what)
{
	uint8_t *seen = xcalloc(m->nt, 1);
	float *head = NULL;
	int rc = load_from(e, m, f, what, seen, &head);
	for (size_t i = 0; rc == 0 && i < m->nt; i++)
		if (!seen[i])
			rc = herr_set(e, "%s: no tensor '%s'", what, m->t[i].name);
	if (rc == 0)
		rc = check_head(e, m, head, what);
	else
		free(head);
	free(seen);
	return rc;
}

typedef struct load_ctx {
	gpt2 *m;
	uint8_t *seen;
	float *head;
} load_ctx;

static int take(void *ud, herr *e, const st_file *f, const char *path)
{
	load_ctx *l = ud;
	return load_from(e, l->m, f, path, l->seen, &l->head);
}

int gpt2_load_dir(herr *e, gpt2 *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	char *cp = path_join(dir, "config.json");
	buf cfg;
	buf_init(&cfg);
	gpt2_config c;
	int rc = fs_read(e, cp, &cfg);
	if (rc == 0)
		rc = gpt2_config_parse(e, &c, cfg.p, cfg.len, cp);
	if (rc == 0)
		rc = gpt2_init(e, m, &c);
	if (rc == 0 && c.ncls)
		rc = model_read_labels(e, cfg.p, cfg.len, cp, c.ncls, &m->labels);
	load_ctx l = {m, rc == 0 ? xcalloc(m->nt, 1) : NULL, NULL};
	if (rc == 0)
		rc = model_load_dir(e, dir, take, &l);
	for (size_t i = 0; rc == 0 && i < m->nt; i++)
		if (!l.seen[i])
			rc = herr_set(e, "%s: no tensor '%s' in the checkpoint", dir, m->t[i].name);
	if (rc == 0)
		rc = check_head(e, m, l.head, dir);
	else
		free(l.head);
	free(l.seen);
	if (rc && m->p)
		gpt2_free(m);
	buf_free(&cfg);
	free(cp);
	return rc;
}

/* --- LoRA: GPT-2's sites on the shared adapter code ---------------------------------- */

static const char *const site_name[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

void gpt2_lora_arch(const gpt2 *m, lora_arch *a)
{
	int C = m->cfg.n_embd, in[4] = {C, C, C, 4 * C}, out[4] = {3 * C, C, 4 * C, C};
	static const char *const path[4] = {"transformer.h.%d.attn.c_attn", "transformer.h.%d.attn.c_proj",
	                                    "transformer.h.%d.mlp.c_fc", "transformer.h.%d.mlp.c_proj"};
	memset(a, 0, sizeof *a);
	a->arch = "GPT-2";
	a->n_layer = m->cfg.n_layer;
	a->nsite = 4;
	a->fan_in_fan_out = 1;
	for (int s = 0; s < 4; s++)
		a->site[s] = (lora_site){site_name[s], path[s], in[s], out[s]};
}

int gpt2_lora_target(const char *name)
{
	lora_arch a;
	gpt2 none;
	memset(&none, 0, sizeof none);
	gpt2_lora_arch(&none, &a);
	return (int)lora_target(&a, name);
}

void gpt2_lora_init(gpt2_lora *l, const gpt2 *m, int rank, float alpha, int targets, uint64_t seed)
{
	lora_arch a;
	gpt2_lora_arch(m, &a);
	lora_init(l, &a, rank, alpha, (unsigned)targets, seed);
}

void gpt2_lora_free(gpt2_lora *l) { lora_free(l); }

void gpt2_lora_add_head(gpt2_lora *l, const gpt2 *m)
{
	const gpt2_tensor *t = gpt2_find(m, "score.weight");
	if (!t)
		return;
	lora_add_saved(l, "score", "score.weight", m->p + t->off, 2, t->shape);
	l->task_type = "SEQ_CLS";
}

static model_view gpt2_view(const gpt2 *m)
{
	return (model_view){m->p, m->t, m->nt, "h.%d.%s.weight", "score."};
}

void gpt2_lora_merge(const gpt2_lora *l, gpt2 *m)
{
	model_view v = gpt2_view(m);
	model_lora_merge(l, &v);
}

int gpt2_lora_save(herr *e, const gpt2_lora *l, const char *dir) { return lora_save(e, l, dir); }

int gpt2_lora_load(herr *e, gpt2_lora *l, const gpt2 *m, const char *dir)
{
	lora_arch a;
	gpt2_lora_arch(m, &a);
	model_view v = gpt2_view(m);
	int rc = model_lora_load(e, l, &a, dir, &v);
	if (rc == 0 && l->nsaved)
		l->task_type = "SEQ_CLS";
	return rc;
}

/* --- compute ------------------------------------------------------------------- */

typedef struct layer_act {
	float *res;            /* block input (residual stream), N × C */
	float *ln1, *m1, *r1;  /* LayerNorm 1: output, mean, rstd */
	float *qkv;            /* N × 3C */
	float *y;              /* attention output before c_proj, N × C */
	float *lse;            /* attention's log-sum-exp per row and head (a fused backend's; else NULL) */
	float *res2;           /* after attention, N × C */
	float *ln2, *m2, *r2;
	float *fch, *fcg;      /* MLP pre- and post-GELU, N × 4C */
} layer_act;

struct gpt2_ws {
	nn_ctx nn;
	float *p;              /* the parameters on a device backend (NULL on the CPU: the model's own) */
	int own_p;             /* p is this workspace's (else a KV cache's, shared) */
	int B, T, N, nl;
	layer_act *l;
	float *res_out, *lnf, *mf, *rf;
	float *logits;         /* N × V */
	float *dlogits;
	double count;
	float *g;              /* gradients; NULL: frozen (adapters) */
	/* backward scratch */
	float *dres, *dx, *dqkv, *dfc, *dh;
	const uint32_t *ids;
	uint32_t *idbuf, *pos;  /* the batch's ids; each row's positions 0..T-1 (backend memory) */
	int32_t *tg;            /* the batch's targets (backend memory) */
	lora_ws *lw;            /* adapters' activations and gradients */
	float *pt_p, *pt_g;     /* prompt tuning: the virtual embeddings (a device copy, or the host's) and their gradient */
	int own_pt;
	/* sequence classification: each row's last position, class probabilities
	 * and their gradients (B × ncls); cls: the last forward was one */
	int *last;
	float *cp, *dcp, *cz; /* probabilities, their gradient, the logits */
	int cls;
	/* the head on a device: the last rows (B × C) and their gradient, the
	 * labels; the logits and probabilities brought back (host) */
	float *hs, *dhs, *hcz, *hcp;
	int32_t *lab;
	size_t bytes; /* allocated for activations, gradients and scratch */
};

gpt2_ws *gpt2_ws_new(const gpt2 *m, int B, int T, int threads) { return gpt2_ws_new_on(m, B, T, threads, &nn_cpu); }

static gpt2_ws *ws_new(const gpt2 *m, int B, int T, int threads, const nn_ops *ops, float *shared_p);

gpt2_ws *gpt2_ws_new_on(const gpt2 *m, int B, int T, int threads, const nn_ops *ops)
{
	return ws_new(m, B, T, threads, ops, NULL);
}

/* shared_p: the parameters already on the device (a KV cache's), or NULL */
static gpt2_ws *ws_new(const gpt2 *m, int B, int T, int threads, const nn_ops *ops, float *shared_p)
{
	gpt2_ws *w = xcalloc(1, sizeof *w);
	nn_ctx_init(&w->nn, ops, threads);
	nn_ctx *c = &w->nn;
#define WSA(n) (w->bytes += (size_t)(n), (float *)nn_alloc(c, (size_t)(n)))
	const gpt2_config *cf = &m->cfg;
	size_t N = (size_t)B * (size_t)T, C = (size_t)cf->n_embd, F = N * C * sizeof(float);
	w->B = B;
	w->T = T;
	w->N = (int)N;
	w->l = xcalloc((size_t)cf->n_layer, sizeof *w->l);
	w->nl = cf->n_layer;
	for (int l = 0; l < cf->n_layer; l++) {
		layer_act *a = &w->l[l];
		a->res = WSA(F);
		a->ln1 = WSA(F);
		a->m1 = WSA(N * sizeof(float));
		a->r1 = WSA(N * sizeof(float));
		a->qkv = WSA(3 * F);
		a->y = WSA(F);
		a->lse = nn_attention_lse(c) ? WSA(N * (size_t)cf->n_head * sizeof(float)) : NULL;
		a->res2 = WSA(F);
		a->ln2 = WSA(F);
		a->m2 = WSA(N * sizeof(float));
		a->r2 = WSA(N * sizeof(float));
		a->fch = WSA(4 * F);
		a->fcg = WSA(4 * F);
	}
	w->res_out = WSA(F);
	w->lnf = WSA(F);
	w->mf = WSA(N * sizeof(float));
	w->rf = WSA(N * sizeof(float));
	/* a classifier needs no vocabulary logits */
	size_t NV = cf->ncls ? 1 : N * (size_t)cf->vocab;
	w->logits = WSA(NV * sizeof(float));
	w->dlogits = WSA(NV * sizeof(float));
	if (cf->ncls) {
		w->last = xcalloc((size_t)B, sizeof *w->last);
		w->cp = WSA((size_t)B * (size_t)cf->ncls * sizeof(float));
		w->dcp = WSA((size_t)B * (size_t)cf->ncls * sizeof(float));
		w->cz = WSA((size_t)B * (size_t)cf->ncls * sizeof(float));
		if (!nn_on_host(ops)) {
			w->hs = WSA((size_t)B * C * sizeof(float));
			w->dhs = WSA((size_t)B * C * sizeof(float));
			w->lab = (int32_t *)WSA((size_t)B * sizeof(int32_t));
			w->hcz = xcalloc((size_t)B * (size_t)cf->ncls, sizeof(float));
			w->hcp = xcalloc((size_t)B * (size_t)cf->ncls, sizeof(float));
		}
	}
	w->idbuf = nn_alloc(c, N * sizeof *w->idbuf);
	w->pos = nn_alloc(c, N * sizeof *w->pos);
	w->tg = nn_alloc(c, N * sizeof *w->tg);
	uint32_t *pos = xmalloc(N * sizeof *pos);
	for (size_t i = 0; i < N; i++)
		pos[i] = (uint32_t)(i % (size_t)T);
	nn_upload(c, w->pos, pos, N * sizeof *pos);
	free(pos);
	w->bytes += 3 * N * sizeof(uint32_t);
	if (!nn_on_host(ops) && shared_p)
		w->p = shared_p;
	else if (!nn_on_host(ops)) {
		w->p = WSA(m->nparams * sizeof(float));
		w->own_p = 1;
		nn_upload(c, w->p, m->p, m->nparams * sizeof(float));
	}
	if (!m->lora && !m->ptune) /* with adapters the base is frozen: no gradient of it is kept */
		w->g = WSA(m->nparams * sizeof(float));
	if (m->ptune)
		ptune_ws_new(c, m->ptune, &w->pt_p, &w->pt_g, &w->own_pt, &w->bytes);
	w->dres = WSA(F);
	w->dx = WSA(F);
	w->dqkv = WSA(3 * F);
	w->dfc = WSA(4 * F);
	w->dh = WSA(4 * F);
	/* attention's scratch: two T × T per thread, taken now so that the
	 * workspace's size is known up front */
	size_t nt = (size_t)(c->threads > 64 ? 64 : c->threads), sb = nt * 2 * (size_t)T * (size_t)T * sizeof(float);
	nn_scratch(c, sb);
	w->bytes += sb;
	if (m->lora) {
		w->lw = lora_ws_new(c, m->lora, (int)N);
		w->bytes += w->lw->bytes;
	}
	const blas_api *api = blas_get(NULL);
	if (api)
		api->set_num_threads(1); /* psgemm splits the products itself */
#undef WSA
	return w;
}

size_t gpt2_ws_bytes(const gpt2_ws *w) { return w->bytes; }

void gpt2_ws_dropout(gpt2_ws *w, uint64_t seed)
{
	if (w->lw)
		w->lw->drop_seed = seed;
}

void gpt2_ws_free(gpt2_ws *w)
{
	if (!w)
		return;
	nn_ctx *c = &w->nn;
	for (int l = 0; w->l && l < w->nl; l++) {
		layer_act *a = &w->l[l];
		float *bufs[] = {a->res, a->ln1, a->m1, a->r1, a->qkv, a->y, a->res2, a->ln2, a->m2, a->r2, a->fch, a->fcg, a->lse};
		for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
			if (bufs[k])
				nn_free(c, bufs[k]);
	}
	free(w->l);
	lora_ws_free(c, w->lw);
	float *bufs[] = {w->res_out, w->lnf, w->mf, w->rf, w->logits, w->dlogits, w->cp, w->dcp, w->cz, w->g,
	                 w->dres, w->dx, w->dqkv, w->dfc, w->dh, w->hs, w->dhs, (float *)w->lab};
	for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
		if (bufs[k])
			nn_free(c, bufs[k]);
	free(w->last);
	free(w->hcz);
	free(w->hcp);
	ptune_ws_free(c, w->pt_p, w->pt_g, w->own_pt);
	nn_free(c, w->idbuf);
	nn_free(c, w->pos);
	nn_free(c, w->tg);
	if (w->own_p)
		nn_free(c, w->p);
	nn_ctx_free(c);
	free(w);
}

const float *gpt2_logits(const gpt2_ws *w) { return w->logits; }
float *gpt2_grad(gpt2_ws *w) { return w->g; }
float *gpt2_lora_grad(gpt2_ws *w) { return w->lw ? w->lw->g : NULL; }
float *gpt2_ws_ptune_params(gpt2_ws *w) { return w->pt_p; }
float *gpt2_ptune_grad(gpt2_ws *w) { return w->pt_g; }
float *gpt2_ws_params(gpt2_ws *w, const gpt2 *m) { return w->p ? w->p : m->p; }
float *gpt2_ws_lora_params(gpt2_ws *w, const gpt2 *m) { return w->lw ? lora_ws_params(w->lw, m->lora) : NULL; }
nn_ctx *gpt2_ws_nn(gpt2_ws *w) { return &w->nn; }

#define P(name) ((w->p ? w->p : m->p) + gpt2_find(m, name)->off)
#define G(name) (w->g ? w->g + gpt2_find(m, name)->off : NULL) /* NULL: frozen */

/* embeddings, blocks and the final LayerNorm: w->lnf */
static void trunk_forward(const gpt2 *m, gpt2_ws *w, const uint32_t *ids)
{
	const gpt2_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	int B = w->B, T = w->T, N = w->N, C = cf->n_embd, H = cf->n_head, V = cf->vocab;
	const lora *lo = m->lora;
	nn_upload(c, w->idbuf, ids, (size_t)N * sizeof *ids);
	w->ids = w->idbuf;
	size_t NC = (size_t)N * (size_t)C;
	float *x = cf->n_layer ? w->l[0].res : w->res_out;
	embedding_forward(c, x, w->ids, P("wte.weight"), N, C, V, 0);
	if (m->ptune) /* the virtual tokens' embeddings, then positions on every row */
		ptune_forward(c, w->pt_p, m->ptune, x, B, T);
	embedding_forward(c, x, w->pos, P("wpe.weight"), N, C, cf->n_positions, 1);
	char nm[64];
	for (int l = 0; l < cf->n_layer; l++) {
		layer_act *a = &w->l[l];
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
		layernorm_forward(c, a->ln1, a->m1, a->r1, a->res, LP("ln_1.weight"), LP("ln_1.bias"), N, C, cf->eps);
		linear_forward(c, a->qkv, a->ln1, LP("attn.c_attn.weight"), LP("attn.c_attn.bias"), N, C, 3 * C, NN_W_IN_OUT, 0);
		lora_forward(c, w->lw, lo, l, 0, a->qkv, 3 * C, a->ln1);
		if (m->ptune && m->ptune->kind == PT_PREFIX) /* the layer's prefix keys and values in the first rows */
			prefix_forward(c, w->pt_p, m->ptune, l, a->qkv, B, T, 3 * C, C, 2 * C);
		attention_forward_keep(c, a->y, a->lse, a->qkv, NULL, B, T, C, H, 1);
		nn_copy(c, a->res2, a->res, NC * sizeof(float));
		linear_forward(c, a->res2, a->y, LP("attn.c_proj.weight"), LP("attn.c_proj.bias"), N, C, C, NN_W_IN_OUT, 1);
		lora_forward(c, w->lw, lo, l, 1, a->res2, C, a->y);
		layernorm_forward(c, a->ln2, a->m2, a->r2, a->res2, LP("ln_2.weight"), LP("ln_2.bias"), N, C, cf->eps);
		linear_forward(c, a->fch, a->ln2, LP("mlp.c_fc.weight"), LP("mlp.c_fc.bias"), N, C, 4 * C, NN_W_IN_OUT, 0);
		lora_forward(c, w->lw, lo, l, 2, a->fch, 4 * C, a->ln2);
		gelu_forward(c, a->fcg, a->fch, 4 * NC, NN_GELU_TANH);
		float *next = l + 1 < cf->n_layer ? w->l[l + 1].res : w->res_out;
		nn_copy(c, next, a->res2, NC * sizeof(float));
		linear_forward(c, next, a->fcg, LP("mlp.c_proj.weight"), LP("mlp.c_proj.bias"), N, 4 * C, C, NN_W_IN_OUT, 1);
		lora_forward(c, w->lw, lo, l, 3, next, C, a->fcg);
#undef LP
	}
	layernorm_forward(c, w->lnf, w->mf, w->rf, w->res_out, P("ln_f.weight"), P("ln_f.bias"), N, C, cf->eps);
}

double gpt2_forward(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int32_t *targets)
{
	const gpt2_config *cf = &m->cfg;
	int N = w->N, C = cf->n_embd, V = cf->vocab;
	if (cf->ncls)
		return NAN; /* a classifier: gpt2_forward_cls */
	w->cls = 0;
	trunk_forward(m, w, ids);
	/* the LM head, tied: logits = lnf · wteᵀ */
	linear_forward(&w->nn, w->logits, w->lnf, P("wte.weight"), NULL, N, C, V, NN_W_OUT_IN, 0);
	if (!targets)
		return 0;
	nn_upload(&w->nn, w->tg, targets, (size_t)N * sizeof *targets);
	return softmax_crossentropy(&w->nn, w->dlogits, w->logits, w->tg, N, V, &w->count);
}

/* The score head's weight (and its gradient) where the compute finds it:
 * the adapters' saved copy, else the model's. */
static const float *score_w(const gpt2 *m, gpt2_ws *w, float **grad)
{
	const lora *lo = m->lora;
	float *Sl = lora_saved_ptr(lo, "score.weight");
	if (Sl) {
		size_t off = (size_t)(Sl - lo->p);
		if (grad)
			*grad = w->lw->g + off;
		return lora_ws_params(w->lw, lo) + off;
	}
	if (grad)
		*grad = G("score.weight");
	return P("score.weight");
}

/* The head on a device: each row's last position gathered, the logits as
 * one product, the cross-entropy of the labelled rows; the logits and
 * probabilities brought back to the host for the caller. */
static double cls_forward_dev(const gpt2 *m, gpt2_ws *w, const int *last, const int32_t *labels)
{
	nn_ctx *c = &w->nn;
	int B = w->B, T = w->T, C = m->cfg.n_embd, K = m->cfg.ncls;
	int32_t *lab = xmalloc((size_t)B * sizeof *lab);
	for (int b = 0; b < B; b++) {
		w->last[b] = last[b] < 0 ? 0 : last[b] >= T ? T - 1 : last[b];
		nn_copy(c, w->hs + (size_t)b * C, w->lnf + ((size_t)b * T + (size_t)w->last[b]) * C, (size_t)C * sizeof(float));
		lab[b] = labels && labels[b] >= 0 && labels[b] < K ? labels[b] : -1;
	}
	linear_forward(c, w->cz, w->hs, score_w(m, w, NULL), NULL, B, C, K, NN_W_OUT_IN, 0);
	nn_upload(c, w->lab, lab, (size_t)B * sizeof *lab);
	free(lab);
	double loss = softmax_crossentropy(c, w->dcp, w->cz, w->lab, B, K, &w->count);
	nn_download(c, w->hcz, w->cz, (size_t)B * K * sizeof(float));
	for (int b = 0; b < B; b++) {
		const float *z = w->hcz + (size_t)b * K;
		double mx = -INFINITY, sum = 0;
		for (int k = 0; k < K; k++)
			mx = z[k] > mx ? z[k] : mx;
		for (int k = 0; k < K; k++)
			sum += exp((double)z[k] - mx);
		for (int k = 0; k < K; k++)
			w->hcp[(size_t)b * K + k] = (float)(exp((double)z[k] - mx) / sum);
	}
	return loss;
}

double gpt2_forward_cls(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int *last, const int32_t *labels)
{
	const gpt2_config *cf = &m->cfg;
	int B = w->B, T = w->T, C = cf->n_embd, K = cf->ncls;
	if (!K)
		return NAN;
	w->cls = 1;
	trunk_forward(m, w, ids);
	if (w->hs)
		return cls_forward_dev(m, w, last, labels);
	const float *S = lora_saved_ptr(m->lora, "score.weight");
	if (!S)
		S = P("score.weight");
	double loss = 0, count = 0;
	for (int b = 0; b < B; b++) {
		w->last[b] = last[b] < 0 ? 0 : last[b] >= T ? T - 1 : last[b];
		const float *h = w->lnf + ((size_t)b * (size_t)T + (size_t)w->last[b]) * (size_t)C;
		float *p = w->cp + (size_t)b * (size_t)K, mx = -INFINITY;
		for (int k = 0; k < K; k++) {
			double z = 0;
			for (int d = 0; d < C; d++)
				z += (double)S[(size_t)k * (size_t)C + (size_t)d] * h[d];
			p[k] = (float)z;
			mx = p[k] > mx ? p[k] : mx;
		}
		double sum = 0;
		for (int k = 0; k < K; k++)
			sum += exp((double)p[k] - mx);
		double lse = mx + log(sum);
		memcpy(w->cz + (size_t)b * (size_t)K, p, (size_t)K * sizeof *p);
		if (labels && labels[b] >= 0 && labels[b] < K) {
			loss += lse - p[labels[b]];
			count++;
		}
		for (int k = 0; k < K; k++)
			p[k] = (float)exp((double)p[k] - lse);
	}
	/* d loss / d z = (p - onehot) / count */
	for (int b = 0; b < B; b++)
		for (int k = 0; k < K; k++) {
			int has = labels && labels[b] >= 0 && labels[b] < K;
			w->dcp[(size_t)b * (size_t)K + (size_t)k] =
				has ? (float)((w->cp[(size_t)b * (size_t)K + (size_t)k] - (k == labels[b])) / count) : 0.0f;
		}
	w->count = count;
	return count ? loss / count : 0;
}

const float *gpt2_cls_probs(const gpt2_ws *w) { return w->hcp ? w->hcp : w->cp; }
const float *gpt2_cls_logits(const gpt2_ws *w) { return w->hcz ? w->hcz : w->cz; }

void gpt2_backward(const gpt2 *m, gpt2_ws *w)
{
	const gpt2_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const lora *lo = m->lora;
	int B = w->B, T = w->T, N = w->N, C = cf->n_embd, H = cf->n_head, V = cf->vocab;
	size_t NC = (size_t)N * (size_t)C, F = NC * sizeof(float);
	float *dln = w->dx;
	nn_zero(c, dln, F);
	if (w->cls && w->hs) { /* on a device: the head's product backward, its rows scattered back */
		int K = cf->ncls;
		float *dS;
		const float *S = score_w(m, w, &dS);
		nn_zero(c, w->dhs, (size_t)B * C * sizeof(float));
		linear_backward(c, w->dhs, dS, NULL, w->dcp, w->hs, S, B, C, K, NN_W_OUT_IN);
		for (int b = 0; b < B; b++)
			nn_copy(c, dln + ((size_t)b * T + (size_t)w->last[b]) * C, w->dhs + (size_t)b * C, (size_t)C * sizeof(float));
	} else if (w->cls) {
		/* the score head at each row's last position; nothing flows elsewhere */
		int K = cf->ncls;
		float *Sl = lora_saved_ptr(lo, "score.weight");
		const float *S = Sl ? Sl : P("score.weight");
		float *dS = Sl ? w->lw->g + (size_t)(Sl - lo->p) : G("score.weight");
		for (int b = 0; b < B; b++) {
			size_t row = (size_t)b * (size_t)T + (size_t)w->last[b];
			const float *h = w->lnf + row * (size_t)C;
			float *dh = dln + row * (size_t)C;
			for (int k = 0; k < K; k++) {
				float g = w->dcp[(size_t)b * (size_t)K + (size_t)k];
				for (int d = 0; d < C; d++) {
					if (dS)
						dS[(size_t)k * (size_t)C + (size_t)d] += g * h[d];
					dh[d] += g * S[(size_t)k * (size_t)C + (size_t)d];
				}
			}
		}
	} else {
		/* LM head (tied): dwte += dlogitsᵀ lnf; dlnf = dlogits wte */
		linear_backward(c, dln, G("wte.weight"), NULL, w->dlogits, w->lnf, P("wte.weight"), N, C, V, NN_W_OUT_IN);
	}
	nn_zero(c, w->dres, F);
	layernorm_backward(c, w->dres, G("ln_f.weight"), G("ln_f.bias"), dln, w->res_out, P("ln_f.weight"), w->mf, w->rf, N, C);
	char nm[64];
	for (int l = cf->n_layer - 1; l >= 0; l--) {
		layer_act *a = &w->l[l];
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
#define LG(s) (snprintf(nm, sizeof nm, "h.%d." s, l), G(nm))
		/* MLP: dres flows into res2 unchanged, and through c_proj, GELU, c_fc, ln_2 */
		nn_zero(c, w->dh, 4 * F);
		linear_backward(c, w->dh, LG("mlp.c_proj.weight"), LG("mlp.c_proj.bias"), w->dres, a->fcg, LP("mlp.c_proj.weight"),
		                N, 4 * C, C, NN_W_IN_OUT);
		lora_backward(c, w->lw, lo, l, 3, w->dh, w->dres, C, a->fcg);
		nn_zero(c, w->dfc, 4 * F);
		gelu_backward(c, w->dfc, w->dh, a->fch, 4 * NC, NN_GELU_TANH);
		nn_zero(c, dln, F);
		linear_backward(c, dln, LG("mlp.c_fc.weight"), LG("mlp.c_fc.bias"), w->dfc, a->ln2, LP("mlp.c_fc.weight"), N, C,
		                4 * C, NN_W_IN_OUT);
		lora_backward(c, w->lw, lo, l, 2, dln, w->dfc, 4 * C, a->ln2);
		layernorm_backward(c, w->dres, LG("ln_2.weight"), LG("ln_2.bias"), dln, a->res2, LP("ln_2.weight"), a->m2, a->r2, N, C);
		/* attention: c_proj, then per head */
		float *dy = dln; /* reuse: d(attention output) */
		nn_zero(c, dy, F);
		linear_backward(c, dy, LG("attn.c_proj.weight"), LG("attn.c_proj.bias"), w->dres, a->y, LP("attn.c_proj.weight"),
		                N, C, C, NN_W_IN_OUT);
		lora_backward(c, w->lw, lo, l, 1, dy, w->dres, C, a->y);
		nn_zero(c, w->dqkv, 3 * F);
		attention_backward_keep(c, w->dqkv, dy, a->qkv, a->y, a->lse, NULL, B, T, C, H, 1);
		if (m->ptune && m->ptune->kind == PT_PREFIX)
			prefix_backward(c, w->pt_g, m->ptune, l, w->dqkv, B, T, 3 * C, C, 2 * C);
		nn_zero(c, dln, F);
		linear_backward(c, dln, LG("attn.c_attn.weight"), LG("attn.c_attn.bias"), w->dqkv, a->ln1, LP("attn.c_attn.weight"),
		                N, C, 3 * C, NN_W_IN_OUT);
		lora_backward(c, w->lw, lo, l, 0, dln, w->dqkv, 3 * C, a->ln1);
		layernorm_backward(c, w->dres, LG("ln_1.weight"), LG("ln_1.bias"), dln, a->res, LP("ln_1.weight"), a->m1, a->r1, N, C);
#undef LP
#undef LG
	}
	if (m->ptune)
		ptune_backward(c, w->pt_g, m->ptune, w->dres, B, T);
	/* embeddings (frozen with adapters) */
	if (!w->g)
		return;
	embedding_backward(c, G("wte.weight"), w->ids, w->dres, N, C, V);
	embedding_backward(c, G("wpe.weight"), w->pos, w->dres, N, C, cf->n_positions);
}

/* --- generation -------------------------------------------------------------------- */

struct gpt2_kv {
	int t, maxt, C;
	nn_ctx nn;               /* one thread: a token at a time, on the CPU or a device */
	gpt2_ws *ws;             /* prefill: a batch of one, ws->T positions */
	float *p;                /* the parameters on a device (NULL on the CPU: the model's) */
	float *cache;            /* per layer: maxt rows of q | k | v (3C; the keys and values are read) */
	float *x, *ln, *qkv, *y, *h, *mr, *lg; /* one token's activations; mean and rstd; the logits */
	uint32_t *ip;            /* the token's id and position */
	const uint8_t **q8;      /* Q8_0 weights for the steps (gpt2_kv_q8), or NULL */
	int8_t *xq;              /* the step's activation quantized, and its scales */
	float *xd;
};

gpt2_kv *gpt2_kv_new(const gpt2 *m) { return gpt2_kv_new_on(m, &nn_cpu); }

gpt2_kv *gpt2_kv_new_on(const gpt2 *m, const nn_ops *ops)
{
	const gpt2_config *cf = &m->cfg;
	gpt2_kv *kv = xcalloc(1, sizeof *kv);
	size_t C = (size_t)cf->n_embd, L = (size_t)cf->n_layer, T = (size_t)cf->n_positions;
	kv->maxt = cf->n_positions;
	kv->C = cf->n_embd;
	nn_ctx_init(&kv->nn, ops, default_threads());
	nn_ctx *c = &kv->nn;
	if (!nn_on_host(ops)) {
		kv->p = nn_alloc(c, m->nparams * sizeof(float));
		nn_upload(c, kv->p, m->p, m->nparams * sizeof(float));
	}
	kv->cache = nn_alloc(c, L * T * 3 * C * sizeof(float));
	kv->x = nn_alloc(c, C * sizeof(float));
	kv->ln = nn_alloc(c, C * sizeof(float));
	kv->qkv = nn_alloc(c, 3 * C * sizeof(float));
	kv->y = nn_alloc(c, C * sizeof(float));
	kv->h = nn_alloc(c, 4 * C * sizeof(float));
	kv->mr = nn_alloc(c, 2 * sizeof(float));
	kv->lg = nn_alloc(c, (size_t)cf->vocab * sizeof(float));
	kv->ip = nn_alloc(c, 2 * sizeof(uint32_t));
	return kv;
}

void gpt2_kv_reset(gpt2_kv *kv) { kv->t = 0; }

int gpt2_kv_q8(gpt2_kv *kv, const gpt2 *m, const uint8_t *const *w)
{
	int C = m->cfg.n_embd, L = m->cfg.n_layer;
	if (C % Q8_BLOCK || !nn_on_host(kv->nn.ops))
		return -1;
	kv->q8 = xmalloc(((size_t)L * 4 + 1) * sizeof *kv->q8);
	memcpy(kv->q8, w, ((size_t)L * 4 + 1) * sizeof *kv->q8);
	kv->xq = xmalloc(4 * (size_t)C);
	kv->xd = xmalloc(4 * (size_t)C / Q8_BLOCK * sizeof *kv->xd);
	return 0;
}

/* y = (acc ? y : 0) + x·W (+ b) for one row, W Q8_0 (out rows of in) */
static void q8_linear(gpt2_kv *kv, float *y, const float *x, const uint8_t *w, const float *b, int in, int out, int acc)
{
	q8_quantize(x, in, kv->xq, kv->xd);
	q8_matvec(y, w, out, in, kv->xq, kv->xd, b, acc, kv->nn.crew); /* the cache's own threads */
}

int gpt2_prefill(const gpt2 *m, gpt2_kv *kv, const uint32_t *ids, int n, float *logits)
{
	const gpt2_config *c = &m->cfg;
	int C = c->n_embd, V = c->vocab;
	if (n < 1 || kv->t + n > kv->maxt)
		return -1;
	if (kv->t > 0 || n == 1) { /* continuing: token by token */
		for (int i = 0; i < n; i++)
			if (gpt2_step(m, kv, ids[i], logits) != 0)
				return -1;
		return 0;
	}
	/* one forward over the prompt, padded (model_prefill_len) */
	int T = model_prefill_len(n, kv->maxt);
	if (!kv->ws || kv->ws->T != T) {
		gpt2_ws_free(kv->ws);
		kv->ws = ws_new(m, 1, T, 1, kv->nn.ops, kv->p);
	}
	gpt2_ws *w = kv->ws;
	uint32_t *pad = model_prefill_ids(ids, n, T);
	gpt2_forward(m, w, pad, NULL);
	free(pad);
	for (int l = 0; l < c->n_layer; l++) /* the prompt's q | k | v rows, as the cache keeps them */
		nn_copy(&kv->nn, kv->cache + (size_t)l * (size_t)kv->maxt * 3 * (size_t)C, w->l[l].qkv,
		        (size_t)n * 3 * (size_t)C * sizeof(float));
	nn_download(&kv->nn, logits, w->logits + (size_t)(n - 1) * (size_t)V, (size_t)V * sizeof *logits);
	kv->t = n;
	return 0;
}

void gpt2_kv_free(gpt2_kv *kv)
{
	if (!kv)
		return;
	gpt2_ws_free(kv->ws);
	nn_ctx *c = &kv->nn;
	float *b[] = {kv->p, kv->cache, kv->x, kv->ln, kv->qkv, kv->y, kv->h, kv->mr, kv->lg, (float *)kv->ip};
	for (size_t i = 0; i < sizeof b / sizeof *b; i++)
		if (b[i])
			nn_free(c, b[i]);
	nn_ctx_free(c);
	free(kv->q8);
	free(kv->xq);
	free(kv->xd);
	free(kv);
}
int gpt2_kv_len(const gpt2_kv *kv) { return kv->t; }

/* generation: the parameters on the cache's device */
#undef P
#define P(name) ((kv->p ? kv->p : m->p) + gpt2_find(m, name)->off)

int gpt2_step(const gpt2 *m, gpt2_kv *kv, uint32_t id, float *logits)
{
	const gpt2_config *cf = &m->cfg;
	nn_ctx *c = &kv->nn;
	int C = cf->n_embd, H = cf->n_head, V = cf->vocab, t = kv->t;
	if (t >= kv->maxt)
		return -1;
	uint32_t ip[2] = {id, (uint32_t)t};
	nn_upload(c, kv->ip, ip, sizeof ip);
	float *m0 = kv->mr, *r0 = kv->mr + 1;
	embedding_forward(c, kv->x, kv->ip, P("wte.weight"), 1, C, V, 0);
	embedding_forward(c, kv->x, kv->ip + 1, P("wpe.weight"), 1, C, cf->n_positions, 1);
	char nm[64];
	for (int l = 0; l < cf->n_layer; l++) {
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
		float *row = kv->cache + ((size_t)l * (size_t)kv->maxt + (size_t)t) * 3 * (size_t)C;
		layernorm_forward(c, kv->ln, m0, r0, kv->x, LP("ln_1.weight"), LP("ln_1.bias"), 1, C, cf->eps);
		const uint8_t *const *q = kv->q8 ? kv->q8 + 4 * (size_t)l : NULL;
		if (q)
			q8_linear(kv, row, kv->ln, q[0], LP("attn.c_attn.bias"), C, 3 * C, 0);
		else
			linear_forward(c, row, kv->ln, LP("attn.c_attn.weight"), LP("attn.c_attn.bias"), 1, C, 3 * C, NN_W_IN_OUT, 0);
		const float *K = kv->cache + (size_t)l * (size_t)kv->maxt * 3 * (size_t)C + C;
		attention_decode(c, kv->y, row, K, K + C, 3 * C, t + 1, C, H);
		if (q)
			q8_linear(kv, kv->x, kv->y, q[1], LP("attn.c_proj.bias"), C, C, 1);
		else
			linear_forward(c, kv->x, kv->y, LP("attn.c_proj.weight"), LP("attn.c_proj.bias"), 1, C, C, NN_W_IN_OUT, 1);
		layernorm_forward(c, kv->ln, m0, r0, kv->x, LP("ln_2.weight"), LP("ln_2.bias"), 1, C, cf->eps);
		if (q)
			q8_linear(kv, kv->h, kv->ln, q[2], LP("mlp.c_fc.bias"), C, 4 * C, 0);
		else
			linear_forward(c, kv->h, kv->ln, LP("mlp.c_fc.weight"), LP("mlp.c_fc.bias"), 1, C, 4 * C, NN_W_IN_OUT, 0);
		gelu_forward(c, kv->h, kv->h, 4 * (size_t)C, NN_GELU_TANH);
		if (q)
			q8_linear(kv, kv->x, kv->h, q[3], LP("mlp.c_proj.bias"), 4 * C, C, 1);
		else
			linear_forward(c, kv->x, kv->h, LP("mlp.c_proj.weight"), LP("mlp.c_proj.bias"), 1, 4 * C, C, NN_W_IN_OUT, 1);
#undef LP
	}
	layernorm_forward(c, kv->ln, m0, r0, kv->x, P("ln_f.weight"), P("ln_f.bias"), 1, C, cf->eps);
	if (kv->q8)
		q8_linear(kv, kv->lg, kv->ln, kv->q8[4 * (size_t)cf->n_layer], NULL, C, V, 0);
	else
		linear_forward(c, kv->lg, kv->ln, P("wte.weight"), NULL, 1, C, V, NN_W_OUT_IN, 0);
	nn_download(c, logits, kv->lg, (size_t)V * sizeof *logits);
	kv->t++;
	return 0;
}

#define DEC_MAXT 64

struct gpt2_dec {
	int nmax, nt;
	nn_ctx nn;
	nn_ctx one[DEC_MAXT]; /* one-thread contexts: the sequences' attention, split over the crew */
	float *x, *ln, *qkv, *y, *h, *mr; /* (n, C), (n, C), (n, 3C), (n, C), (n, 4C), (2n) */
	uint32_t *ip;                     /* (2n): the ids, then the positions */
};

gpt2_dec *gpt2_dec_new(const gpt2 *m, int nmax, int threads)
{
	gpt2_dec *d = xcalloc(1, sizeof *d);
	size_t C = (size_t)m->cfg.n_embd, n = (size_t)(nmax < 1 ? 1 : nmax);
	d->nmax = (int)n;
	nn_ctx_init(&d->nn, &nn_cpu, threads < 1 ? 1 : threads);
	d->nt = d->nn.crew ? crew_size(d->nn.crew) : 1;
	for (int t = 0; t < d->nt; t++)
		nn_ctx_init(&d->one[t], &nn_cpu, 1);
	d->x = xmalloc(n * C * sizeof(float));
	d->ln = xmalloc(n * C * sizeof(float));
	d->qkv = xmalloc(n * 3 * C * sizeof(float));
	d->y = xmalloc(n * C * sizeof(float));
	d->h = xmalloc(n * 4 * C * sizeof(float));
	d->mr = xmalloc(2 * n * sizeof(float));
	d->ip = xmalloc(2 * n * sizeof(uint32_t));
	return d;
}

void gpt2_dec_free(gpt2_dec *d)
{
	if (!d)
		return;
	free(d->x);
	free(d->ln);
	free(d->qkv);
	free(d->y);
	free(d->h);
	free(d->mr);
	free(d->ip);
	for (int t = 0; t < d->nt; t++)
		nn_ctx_free(&d->one[t]);
	nn_ctx_free(&d->nn);
	free(d);
}

#undef P
#define P(name) (m->p + gpt2_find(m, name)->off)

typedef struct dec_att {
	const gpt2 *m;
	gpt2_dec *d;
	gpt2_kv *const *kv;
	int n, l;
} dec_att;

/* thread t of nt: its share of the sequences' rows into their caches, and
 * their attention over them */
static void dec_att_part(void *ud, int t, int nt)
{
	dec_att *j = ud;
	int C = j->m->cfg.n_embd, H = j->m->cfg.n_head;
	size_t C3 = 3 * (size_t)C;
	for (int i = j->n * t / nt; i < j->n * (t + 1) / nt; i++) {
		gpt2_kv *kv = j->kv[i];
		float *lay = kv->cache + (size_t)j->l * (size_t)kv->maxt * C3, *row = lay + (size_t)kv->t * C3;
		memcpy(row, j->d->qkv + (size_t)i * C3, C3 * sizeof(float));
		attention_decode(&j->d->one[t], j->d->y + (size_t)i * (size_t)C, row, lay + C, lay + 2 * C, 3 * C, kv->t + 1, C, H);
	}
}

int gpt2_step_batch(const gpt2 *m, gpt2_dec *d, gpt2_kv *const *kv, const uint32_t *ids, int n, float *logits)
{
	const gpt2_config *cf = &m->cfg;
	nn_ctx *c = &d->nn;
	int C = cf->n_embd, V = cf->vocab;
	if (n < 1 || n > d->nmax)
		return -1;
	for (int i = 0; i < n; i++) {
		if (kv[i]->t >= kv[i]->maxt || kv[i]->p)
			return -1;
		d->ip[i] = ids[i];
		d->ip[n + i] = (uint32_t)kv[i]->t;
	}
	float *m0 = d->mr, *r0 = d->mr + n;
	embedding_forward(c, d->x, d->ip, P("wte.weight"), n, C, V, 0);
	embedding_forward(c, d->x, d->ip + n, P("wpe.weight"), n, C, cf->n_positions, 1);
	char nm[64];
	for (int l = 0; l < cf->n_layer; l++) {
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
		layernorm_forward(c, d->ln, m0, r0, d->x, LP("ln_1.weight"), LP("ln_1.bias"), n, C, cf->eps);
		linear_forward(c, d->qkv, d->ln, LP("attn.c_attn.weight"), LP("attn.c_attn.bias"), n, C, 3 * C, NN_W_IN_OUT, 0);
		dec_att job = {m, d, kv, n, l}; /* each row into its own cache, attended there */
		if (d->nt > 1 && n > 1)
			crew_run(d->nn.crew, dec_att_part, &job);
		else
			dec_att_part(&job, 0, 1);
		linear_forward(c, d->x, d->y, LP("attn.c_proj.weight"), LP("attn.c_proj.bias"), n, C, C, NN_W_IN_OUT, 1);
		layernorm_forward(c, d->ln, m0, r0, d->x, LP("ln_2.weight"), LP("ln_2.bias"), n, C, cf->eps);
		linear_forward(c, d->h, d->ln, LP("mlp.c_fc.weight"), LP("mlp.c_fc.bias"), n, C, 4 * C, NN_W_IN_OUT, 0);
		gelu_forward(c, d->h, d->h, 4 * (size_t)C * (size_t)n, NN_GELU_TANH);
		linear_forward(c, d->x, d->h, LP("mlp.c_proj.weight"), LP("mlp.c_proj.bias"), n, 4 * C, C, NN_W_IN_OUT, 1);
#undef LP
	}
	layernorm_forward(c, d->ln, m0, r0, d->x, P("ln_f.weight"), P("ln_f.bias"), n, C, cf->eps);
	linear_forward(c, logits, d->ln, P("wte.weight"), NULL, n, C, V, NN_W_OUT_IN, 0);
	for (int i = 0; i < n; i++)
		kv[i]->t++;
	return 0;
}

static double draw(uint64_t *s)
{
	uint64_t x = (*s += 0x9E3779B97F4A7C15ull);
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	x ^= x >> 31;
	return (double)(x >> 11) / 9007199254740992.0;
}

typedef struct cand {
	float p;
	uint32_t id;
} cand;

static int by_p(const void *a, const void *b)
{
	const cand *x = a, *y = b;
	if (x->p != y->p)
		return x->p < y->p ? 1 : -1;
	return x->id < y->id ? -1 : (x->id > y->id);
}

/* min-heap on "more likely" order: the root is the least likely kept */
static void sift_down(cand *h, int n, int i)
{
	for (;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && by_p(&h[l], &h[m]) > 0)
			m = l;
		if (r < n && by_p(&h[r], &h[m]) > 0)
			m = r;
		if (m == i)
			return;
		cand t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

uint32_t gpt2_sample(gpt2_sampler *s, float *logits, int vocab)
{
	uint32_t best = 0;
	for (int k = 1; k < vocab; k++)
		if (logits[k] > logits[best])
			best = (uint32_t)k;
	if (s->temperature <= 0)
		return best;
	/* softmax at the temperature; then, when asked, only the top-k ids
	 * (found with a min-heap) and the smallest top set reaching top_p */
	cand *cs = xmalloc((size_t)vocab * sizeof *cs);
	double sum = 0;
	for (int k = 0; k < vocab; k++) {
		cs[k].p = expf((logits[k] - logits[best]) / s->temperature);
		cs[k].id = (uint32_t)k;
		sum += cs[k].p;
	}
	int n = vocab;
	if (s->top_k > 0 && s->top_k < vocab) {
		/* cs[0..k) becomes a min-heap of the k most likely (ties: lower id) */
		int k = s->top_k;
		for (int i = k / 2 - 1; i >= 0; i--)
			sift_down(cs, k, i);
		for (int i = k; i < vocab; i++)
			if (by_p(&cs[i], &cs[0]) < 0) {
				cs[0] = cs[i];
				sift_down(cs, k, 0);
			}
		n = k;
	}
	if (n < vocab || (s->top_p > 0 && s->top_p < 1))
		qsort(cs, (size_t)n, sizeof *cs, by_p);
	if (s->top_p > 0 && s->top_p < 1) {
		double kept = 0;
		for (int k = 0; k < n; k++) {
			kept += cs[k].p / sum;
			if (kept >= s->top_p) {
				n = k + 1;
				break;
			}
		}
	}
	double tot = 0;
	for (int k = 0; k < n; k++)
		tot += cs[k].p;
	double r = draw(&s->state) * tot, acc = 0;
	uint32_t pick = cs[n - 1].id;
	for (int k = 0; k < n; k++) {
		acc += cs[k].p;
		if (r < acc) {
			pick = cs[k].id;
			break;
		}
	}
	free(cs);
	return pick;
}

int gpt2_load_bundle(herr *e, gpt2 *m, const bundle *bd, const char *path)
{
	memset(m, 0, sizeof *m);
	const buf *cfg = bundle_get(bd, "config.json"), *w = bundle_get(bd, "model.safetensors");
	if (!cfg || !w)
		return herr_set(e, "%s: not a model bundle (no config.json or model.safetensors)", path);
	char *wc = xasprintf("%s[config.json]", path), *ww = xasprintf("%s[model.safetensors]", path);
	gpt2_config c;
	int rc = gpt2_config_parse(e, &c, cfg->p, cfg->len, wc);
	if (rc == 0 && c.ncls)
		rc = herr_set(e, "%s: a classifier's bundle (GPT2ForSequenceClassification), not a language model", path);
	if (rc == 0)
		rc = gpt2_init(e, m, &c);
	if (rc == 0) {
		st_file st;
		char *copy = xmalloc(w->len ? w->len : 1);
		memcpy(copy, w->p, w->len);
		rc = st_parse(e, &st, copy, w->len, ww);
		if (rc == 0) {
			rc = gpt2_load_weights(e, m, &st, ww);
			st_free(&st);
		}
		if (rc)
			gpt2_free(m);
	}
	free(wc);
	free(ww);
	return rc;
}
