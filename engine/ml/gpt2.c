#include "gpt2.h"
#include "bundle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "act.h"
#include "blas.h"
#include "optim.h"

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
	if (!r || r->t != J_OBJ) {
		rc = herr_set(e, "%s: not a JSON object", what);
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
	gpt2_tensor *t = &m->t[m->nt++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->off = *at;
	t->ndim = d1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
	*at += t->n;
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

/* the shortest decimal that reads back as the same float: 1e-05, not 9.99999974e-06 */
static void json_float(buf *out, float v)
{
	char tmp[32];
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
		if ((float)strtod(tmp, NULL) == v)
			break;
	}
	buf_adds(out, tmp);
}

void gpt2_config_json(const gpt2_config *c, const char *const *labels, buf *out)
{
	buf_printf(out, "{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"%s\"],\n",
	           c->ncls ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel");
	if (c->ncls) {
		/* class names; the pad token (0) only matters to transformers, which
		 * then finds each row's last token before the first pad: hone's rows
		 * are given their lengths */
		for (int pass = 0; pass < 2; pass++) {
			buf_adds(out, pass ? "  \"label2id\": {" : "  \"id2label\": {");
			for (int k = 0; k < c->ncls; k++) {
				buf_adds(out, k ? ", " : "");
				if (pass) {
					buf_json_str(out, labels[k]);
					buf_printf(out, ": %d", k);
				} else {
					buf_printf(out, "\"%d\": ", k);
					buf_json_str(out, labels[k]);
				}
			}
			buf_adds(out, "},\n");
		}
	}
	buf_printf(out, ""
	           "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n"
	           "  \"n_ctx\": %d,\n  \"vocab_size\": %d,\n  \"layer_norm_epsilon\": ",
	           c->n_layer, c->n_head, c->n_embd, c->n_positions, c->n_positions, c->vocab);
	json_float(out, c->eps);
	buf_adds(out, ",\n  \"activation_function\": \"gelu_new\",\n  \"tie_word_embeddings\": true\n}\n");
}

/* A JSON file and a safetensors file into dir (a model, an adapter). */
static int save_pair(herr *e, const char *dir, const char *json_name, const buf *json, const char *st_name,
                     const st_writer *w)
{
	char *cp = path_join(dir, json_name), *wp = path_join(dir, st_name);
	int rc = fs_write_atomic(e, cp, json->p, json->len);
	if (rc == 0)
		rc = st_write(e, w, wp);
	free(cp);
	free(wp);
	return rc;
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
	int rc = save_pair(e, dir, "config.json", &cfg, "model.safetensors", &w);
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
				/* Box-Muller over a 64-bit LCG */
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				double u1 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				double u2 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
				v = (float)(sd * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
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
	for (size_t i = m->nparams; i < at; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		double u1 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		double u2 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
		m->p[i] = (float)(0.02 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
	}
	m->nparams = at;
	m->cfg.ncls = ncls;
	m->labels = xcalloc((size_t)ncls, sizeof *m->labels);
	for (int k = 0; k < ncls; k++)
		m->labels[k] = xstrdup(labels[k]);
}

const gpt2_tensor *gpt2_find(const gpt2 *m, const char *name)
{
	for (size_t i = 0; i < m->nt; i++)
		if (!strcmp(m->t[i].name, name))
			return &m->t[i];
	return NULL;
}

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

/* id2label: {"0": name, "1": name, ...}, every id from 0 to ncls - 1 once */
static int read_labels(herr *e, gpt2 *m, const char *json, size_t n, const char *what)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je), *il = r ? json_member(r, "id2label", 8) : NULL;
	m->labels = xcalloc((size_t)m->cfg.ncls, sizeof *m->labels);
	int rc = 0;
	for (const jnode *k = il ? il->kid : NULL; k && rc == 0; k = k->next) {
		char key[24];
		snprintf(key, sizeof key, "%.*s", (int)(k->klen < 20 ? k->klen : 20), k->key);
		char *end;
		long id = strtol(key, &end, 10);
		if (*end || end == key || id < 0 || id >= m->cfg.ncls || m->labels[id] || k->t != J_STR)
			rc = herr_set(e, "%s: id2label: expected ids 0..%d, each once, with string names ('%s')", what, m->cfg.ncls - 1, key);
		else
			m->labels[id] = xasprintf("%.*s", (int)k->len, k->s);
	}
	json_arena_free(a);
	return rc;
}

int gpt2_load_dir(herr *e, gpt2 *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	char *cp = path_join(dir, "config.json"), *wp = path_join(dir, "model.safetensors"),
	     *ip = path_join(dir, "model.safetensors.index.json");
	buf cfg;
	buf_init(&cfg);
	gpt2_config c;
	int rc = fs_read(e, cp, &cfg);
	if (rc == 0)
		rc = gpt2_config_parse(e, &c, cfg.p, cfg.len, cp);
	if (rc == 0)
		rc = gpt2_init(e, m, &c);
	if (rc == 0 && c.ncls)
		rc = read_labels(e, m, cfg.p, cfg.len, cp);
	uint8_t *seen = rc == 0 ? xcalloc(m->nt, 1) : NULL;
	float *head = NULL;
	if (rc == 0 && fs_exists(wp)) {
		st_file f;
		rc = st_read(e, &f, wp);
		if (rc == 0) {
			rc = load_from(e, m, &f, wp, seen, &head);
			st_free(&f);
		}
	} else if (rc == 0 && fs_exists(ip)) {
		/* shards: the files named in weight_map, each read once */
		buf idx;
		buf_init(&idx);
		rc = fs_read(e, ip, &idx);
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = rc == 0 ? json_parse(a, idx.p, idx.len, &je) : NULL;
		const jnode *wm = r ? json_member(r, "weight_map", 10) : NULL;
		if (rc == 0 && (!wm || wm->t != J_OBJ))
			rc = herr_set(e, "%s: expected {\"weight_map\": {tensor: file}}", ip);
		char **done = NULL;
		size_t nd = 0;
		for (const jnode *k = wm && rc == 0 ? wm->kid : NULL; k && rc == 0; k = k->next) {
			if (k->t != J_STR) {
				rc = herr_set(e, "%s: weight_map values must be file names", ip);
				break;
			}
			char *file = xstrndup(k->s, k->len);
			int dup = 0;
			for (size_t q = 0; q < nd; q++)
				dup |= !strcmp(done[q], file);
			if (dup || !path_safe_relative(file)) {
				if (!dup)
					rc = herr_set(e, "%s: shard '%s' is not a file in the folder", ip, file);
				free(file);
				continue;
			}
			done = xrealloc(done, (nd + 1) * sizeof *done);
			done[nd++] = file;
			char *sp = path_join(dir, file);
			st_file f;
			rc = st_read(e, &f, sp);
			if (rc == 0) {
				rc = load_from(e, m, &f, sp, seen, &head);
				st_free(&f);
			}
			free(sp);
		}
		strv_free(done, nd);
		json_arena_free(a);
		buf_free(&idx);
	} else if (rc == 0) {
		rc = herr_set(e, "%s: no model.safetensors or model.safetensors.index.json", dir);
	}
	for (size_t i = 0; rc == 0 && i < m->nt; i++)
		if (!seen[i])
			rc = herr_set(e, "%s: no tensor '%s' in the checkpoint", dir, m->t[i].name);
	if (rc == 0)
		rc = check_head(e, m, head, dir);
	else
		free(head);
	free(seen);
	if (rc && m->p)
		gpt2_free(m);
	buf_free(&cfg);
	free(cp);
	free(wp);
	free(ip);
	return rc;
}

/* --- compute ------------------------------------------------------------------- */

typedef struct layer_act {
	float *res;            /* block input (residual stream), N × C */
	float *ln1, *m1, *r1;  /* LayerNorm 1: output, mean, rstd */
	float *qkv;            /* N × 3C */
	float *y;              /* attention output before c_proj, N × C */
	float *res2;           /* after attention, N × C */
	float *ln2, *m2, *r2;
	float *fch, *fcg;      /* MLP pre- and post-GELU, N × 4C */
} layer_act;

struct gpt2_ws {
	int B, T, N, nl, threads;
	layer_act *l;
	float *res_out, *lnf, *mf, *rf;
	float *logits;         /* N × V */
	float *dlogits;
	const int32_t *targets;
	int32_t *tgt;
	double count;
	float *g;              /* gradients */
	/* backward scratch */
	float *dres, *dx, *dqkv, *dfc, *dS;
	const uint32_t *ids;
	uint32_t *idbuf;
	/* LoRA: x Aᵀ per (layer, target), N × rank; adapter gradients */
	float **u;
	float *lg, *du;
	int frozen;
	/* sequence classification: each row's last position, class probabilities
	 * and their gradients (B × ncls); cls: the last forward was one */
	int *last;
	float *cp, *dcp;
	int cls;
	size_t bytes; /* allocated for activations, gradients and scratch */
	uint64_t drop_seed; /* LoRA dropout: 0 off */
	float *xd, *dxd;    /* LoRA dropout: the masked input, and its gradient (N × 4C each) */
};

gpt2_ws *gpt2_ws_new(const gpt2 *m, int B, int T, int threads)
{
	gpt2_ws *w = xcalloc(1, sizeof *w);
#define WSM(n) (w->bytes += (n), xmalloc(n))
#define WSC(n, sz) (w->bytes += (size_t)(n) * (sz), xcalloc(n, sz))
	const gpt2_config *c = &m->cfg;
	size_t N = (size_t)B * (size_t)T, C = (size_t)c->n_embd;
	w->B = B;
	w->T = T;
	w->N = (int)N;
	w->l = WSC((size_t)c->n_layer, sizeof *w->l);
	w->nl = c->n_layer;
	for (int l = 0; l < c->n_layer; l++) {
		layer_act *a = &w->l[l];
		a->res = WSM(N * C * sizeof(float));
		a->ln1 = WSM(N * C * sizeof(float));
		a->m1 = WSM(N * sizeof(float));
		a->r1 = WSM(N * sizeof(float));
		a->qkv = WSM(N * 3 * C * sizeof(float));
		a->y = WSM(N * C * sizeof(float));
		a->res2 = WSM(N * C * sizeof(float));
		a->ln2 = WSM(N * C * sizeof(float));
		a->m2 = WSM(N * sizeof(float));
		a->r2 = WSM(N * sizeof(float));
		a->fch = WSM(N * 4 * C * sizeof(float));
		a->fcg = WSM(N * 4 * C * sizeof(float));
	}
	w->res_out = WSM(N * C * sizeof(float));
	w->lnf = WSM(N * C * sizeof(float));
	w->mf = WSM(N * sizeof(float));
	w->rf = WSM(N * sizeof(float));
	/* a classifier needs no vocabulary logits */
	size_t NV = c->ncls ? 1 : N * (size_t)c->vocab;
	w->logits = WSM(NV * sizeof(float));
	w->dlogits = WSM(NV * sizeof(float));
	if (c->ncls) {
		w->last = WSC((size_t)B, sizeof *w->last);
		w->cp = WSC((size_t)B * (size_t)c->ncls, sizeof *w->cp);
		w->dcp = WSC((size_t)B * (size_t)c->ncls, sizeof *w->dcp);
	}
	w->tgt = WSM(N * sizeof *w->tgt);
	w->idbuf = WSM(N * sizeof *w->idbuf);
	if (!m->lora) /* with adapters the base is frozen: no gradient of it is kept */
		w->g = WSC(m->nparams, sizeof(float));
	w->dres = WSM(N * C * sizeof(float));
	w->dx = WSM(N * C * sizeof(float));
	w->dqkv = WSM(N * 3 * C * sizeof(float));
	w->dfc = WSM(N * 4 * C * sizeof(float));
	w->dS = WSM((size_t)(threads < 1 ? 1 : threads > 64 ? 64 : threads) * 2 * (size_t)T * (size_t)T * sizeof(float));
	w->threads = threads < 1 ? 1 : threads;
	if (m->lora) {
		const gpt2_lora *lo = m->lora;
		w->frozen = 1;
		w->u = WSC((size_t)c->n_layer * 4, sizeof *w->u);
		for (int k = 0; k < c->n_layer * 4; k++)
			if (lo->targets & (1 << (k % 4)))
				w->u[k] = WSM(N * (size_t)lo->rank * sizeof(float));
		w->lg = WSC(lo->n, sizeof(float));
		w->du = WSM(N * (size_t)lo->rank * sizeof(float));
		if (lo->dropout > 0) {
			w->xd = WSM(N * 4 * C * sizeof(float));
			w->dxd = WSM(N * 4 * C * sizeof(float));
		}
	}
	const blas_api *api = blas_get(NULL);
	if (api)
		api->set_num_threads(1); /* psgemm splits the products itself */
#undef WSM
#undef WSC
	return w;
}

size_t gpt2_ws_bytes(const gpt2_ws *w) { return w->bytes; }

void gpt2_ws_dropout(gpt2_ws *w, uint64_t seed) { w->drop_seed = seed; }

void gpt2_ws_free(gpt2_ws *w)
{
	if (!w)
		return;
	for (int l = 0; w->l && l < w->nl; l++) {
		layer_act *a = &w->l[l];
		float *bufs[] = {a->res, a->ln1, a->m1, a->r1, a->qkv, a->y, a->res2, a->ln2, a->m2, a->r2, a->fch, a->fcg};
		for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
			free(bufs[k]);
	}
	free(w->l);
	for (int k = 0; w->u && k < w->nl * 4; k++)
		free(w->u[k]);
	free(w->u);
	free(w->lg);
	free(w->du);
	free(w->xd);
	free(w->dxd);
	free(w->res_out);
	free(w->lnf);
	free(w->mf);
	free(w->rf);
	free(w->logits);
	free(w->dlogits);
	free(w->last);
	free(w->cp);
	free(w->dcp);
	free(w->tgt);
	free(w->idbuf);
	free(w->g);
	free(w->dres);
	free(w->dx);
	free(w->dqkv);
	free(w->dfc);
	free(w->dS);
	free(w);
}

const float *gpt2_logits(const gpt2_ws *w) { return w->logits; }
float *gpt2_grad(gpt2_ws *w) { return w->g; }
float *gpt2_lora_grad(gpt2_ws *w) { return w->lg; }

/* --- LoRA ---------------------------------------------------------------------------- */

int gpt2_lora_target(const char *name)
{
	if (!strcmp(name, "c_attn") || !strcmp(name, "attn.c_attn"))
		return LORA_C_ATTN;
	if (!strcmp(name, "attn.c_proj"))
		return LORA_ATTN_C_PROJ;
	if (!strcmp(name, "c_fc") || !strcmp(name, "mlp.c_fc"))
		return LORA_C_FC;
	if (!strcmp(name, "mlp.c_proj"))
		return LORA_MLP_C_PROJ;
	if (!strcmp(name, "c_proj"))
		return LORA_ATTN_C_PROJ | LORA_MLP_C_PROJ;
	return 0;
}

static const char *lora_module[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

void gpt2_lora_init(gpt2_lora *l, const gpt2 *m, int rank, float alpha, int targets, uint64_t seed)
{
	memset(l, 0, sizeof *l);
	int C = m->cfg.n_embd;
	int in[4] = {C, C, C, 4 * C}, out[4] = {3 * C, C, 4 * C, C};
	memcpy(l->in, in, sizeof in);
	memcpy(l->out, out, sizeof out);
	l->rank = rank;
	l->alpha = alpha;
	l->scale = alpha / (float)rank;
	l->targets = targets;
	l->n_layer = m->cfg.n_layer;
	l->off = xcalloc((size_t)l->n_layer * 4, sizeof *l->off);
	size_t at = 0;
	for (int k = 0; k < l->n_layer * 4; k++) {
		if (!(targets & (1 << (k % 4))))
			continue;
		l->off[k] = at;
		at += (size_t)rank * (size_t)(in[k % 4] + out[k % 4]);
	}
	l->n = at;
	l->p = xcalloc(at ? at : 1, sizeof(float));
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x6C6F7261ull;
	for (int k = 0; k < l->n_layer * 4; k++) {
		if (!(targets & (1 << (k % 4))))
			continue;
		float bound = 1.0f / sqrtf((float)in[k % 4]);
		for (size_t i = 0; i < (size_t)rank * (size_t)in[k % 4]; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			l->p[l->off[k] + i] = (float)(((double)(s >> 11) / 9007199254740992.0) * 2 - 1) * bound;
		}
	}
}

void gpt2_lora_free(gpt2_lora *l)
{
	free(l->p);
	free(l->off);
	memset(l, 0, sizeof *l);
}

void gpt2_lora_add_head(gpt2_lora *l, const gpt2 *m)
{
	const gpt2_tensor *t = gpt2_find(m, "score.weight");
	if (!t || l->head_n)
		return;
	l->head_off = l->n;
	l->head_n = t->n;
	l->p = xrealloc(l->p, (l->n + t->n) * sizeof *l->p);
	memcpy(l->p + l->head_off, m->p + t->off, t->n * sizeof(float));
	l->n += t->n;
}

void gpt2_lora_merge(const gpt2_lora *l, gpt2 *m)
{
	const gpt2_tensor *ht = l->head_n ? gpt2_find(m, "score.weight") : NULL;
	if (ht)
		memcpy(m->p + ht->off, l->p + l->head_off, l->head_n * sizeof(float));
	char nm[64];
	for (int k = 0; k < l->n_layer * 4; k++) {
		int t = k % 4;
		if (!(l->targets & (1 << t)))
			continue;
		snprintf(nm, sizeof nm, "h.%d.%s.weight", k / 4, lora_module[t]);
		const float *A = l->p + l->off[k], *B = A + (size_t)l->rank * (size_t)l->in[t];
		/* W[in, out] += scale · Aᵀ[in, r] · Bᵀ[r, out] */
		sgemm(1, 1, l->in[t], l->out[t], l->rank, l->scale, A, l->in[t], B, l->rank, 1.0f, m->p + gpt2_find(m, nm)->off,
		      l->out[t]);
	}
}

int gpt2_lora_save(herr *e, const gpt2_lora *l, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	buf_printf(&cfg, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"%s\",\n  \"r\": %d,\n  \"lora_alpha\": ",
	           l->head_n ? "SEQ_CLS" : "CAUSAL_LM", l->rank);
	json_float(&cfg, l->alpha);
	buf_adds(&cfg, ",\n  \"lora_dropout\": ");
	json_float(&cfg, l->dropout);
	buf_adds(&cfg, ",\n  \"fan_in_fan_out\": true,\n  \"bias\": \"none\",\n  \"target_modules\": [");
	int first = 1;
	for (int t = 0; t < 4; t++)
		if (l->targets & (1 << t)) {
			buf_printf(&cfg, "%s\"%s\"", first ? "" : ", ", lora_module[t]);
			first = 0;
		}
	buf_adds(&cfg, "],\n");
	if (l->head_n)
		buf_adds(&cfg, "  \"modules_to_save\": [\"score\"],\n");
	buf_adds(&cfg, "  \"base_model_name_or_path\": null,\n  \"inference_mode\": true\n}\n");
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	char nm[128];
	for (int k = 0; k < l->n_layer * 4; k++) {
		int t = k % 4;
		if (!(l->targets & (1 << t)))
			continue;
		const float *A = l->p + l->off[k], *B = A + (size_t)l->rank * (size_t)l->in[t];
		int64_t sa[2] = {l->rank, l->in[t]}, sb[2] = {l->out[t], l->rank};
		snprintf(nm, sizeof nm, "base_model.model.transformer.h.%d.%s.lora_A.weight", k / 4, lora_module[t]);
		st_add_f32(&w, nm, A, 2, sa);
		snprintf(nm, sizeof nm, "base_model.model.transformer.h.%d.%s.lora_B.weight", k / 4, lora_module[t]);
		st_add_f32(&w, nm, B, 2, sb);
	}
	if (l->head_n) {
		int64_t sh[2] = {(int64_t)(l->head_n / (size_t)l->in[0]), l->in[0]};
		st_add_f32(&w, "base_model.model.score.weight", l->p + l->head_off, 2, sh);
	}
	int rc = save_pair(e, dir, "adapter_config.json", &cfg, "adapter_model.safetensors", &w);
	st_writer_free(&w);
	buf_free(&cfg);
	return rc;
}

static int json_true(const jnode *r, const char *k)
{
	const jnode *v = json_member(r, k, strlen(k));
	return v && v->t == J_TRUE;
}

/* adapter_config.json: what hone can apply, or an error naming the key */
static int lora_config(herr *e, const char *path, int *rank, float *alpha, int *targets, int *rslora)
{
	buf b;
	buf_init(&b);
	if (fs_read(e, path, &b) != 0) {
		buf_free(&b);
		return -1;
	}
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, b.p, b.len, &je);
	int rc = 0;
	long long rk;
	double al = 0;
	const jnode *pt = r && r->t == J_OBJ ? json_member(r, "peft_type", 9) : NULL;
	const jnode *tm = r && r->t == J_OBJ ? json_member(r, "target_modules", 14) : NULL;
	const jnode *bias = r && r->t == J_OBJ ? json_member(r, "bias", 4) : NULL;
	if (!r || r->t != J_OBJ)
		rc = herr_set(e, "%s: not a JSON object", path);
	else if (!pt || pt->t != J_STR || pt->len != 4 || memcmp(pt->s, "LORA", 4))
		rc = herr_set(e, "%s: peft_type: expected \"LORA\"", path);
	else if (jint(r, "r", 1, 65536, &rk))
		rc = herr_set(e, "%s: r: expected a positive integer rank", path);
	else if (json_number(json_member(r, "lora_alpha", 10), &al) != 0 || al < 0)
		rc = herr_set(e, "%s: lora_alpha: expected a number >= 0", path);
	else if (json_true(r, "use_dora"))
		rc = herr_set(e, "%s: use_dora: DoRA adapters are not supported (plain LoRA only)", path);
	else if (bias && !(bias->t == J_STR && bias->len == 4 && !memcmp(bias->s, "none", 4)))
		rc = herr_set(e, "%s: bias: only \"none\" is supported", path);
	else if (!tm || tm->t != J_ARR || !tm->kid)
		rc = herr_set(e, "%s: target_modules: expected a list of module names", path);
	else {
		const char *pats[2] = {"rank_pattern", "alpha_pattern"};
		for (int i = 0; i < 2 && rc == 0; i++) {
			const jnode *v = json_member(r, pats[i], strlen(pats[i]));
			if (v && v->t == J_OBJ && v->kid)
				rc = herr_set(e, "%s: %s: per-module ranks are not supported", path, pats[i]);
		}
		*targets = 0;
		for (const jnode *k = tm->kid; k && rc == 0; k = k->next) {
			char nm[64];
			int t = 0;
			if (k->t == J_STR && k->len < sizeof nm) {
				snprintf(nm, sizeof nm, "%.*s", (int)k->len, k->s);
				t = gpt2_lora_target(nm);
			}
			if (!t)
				rc = herr_set(e, "%s: target_modules: '%.*s' is not a GPT-2 module (c_attn, c_proj, attn.c_proj, c_fc, mlp.c_proj)",
				              path, (int)k->len, k->s);
			*targets |= t;
		}
		*rank = (int)rk;
		*alpha = (float)al;
		*rslora = json_true(r, "use_rslora");
	}
	json_arena_free(a);
	buf_free(&b);
	return rc;
}

int gpt2_lora_load(herr *e, gpt2_lora *l, const gpt2 *m, const char *dir)
{
	char *cp = path_join(dir, "adapter_config.json"), *wp = path_join(dir, "adapter_model.safetensors");
	int rank = 0, targets = 0, rslora = 0;
	float alpha = 0;
	int rc = lora_config(e, cp, &rank, &alpha, &targets, &rslora);
	st_file f;
	if (rc == 0)
		rc = st_read(e, &f, wp);
	if (rc == 0) {
		gpt2_lora_init(l, m, rank, alpha, targets, 0);
		if (rslora)
			l->scale = alpha / sqrtf((float)rank);
		size_t used = 0;
		char nm[128];
		for (int k = 0; k < l->n_layer * 4 && rc == 0; k++) {
			int t = k % 4;
			if (!(targets & (1 << t)))
				continue;
			float *A = l->p + l->off[k], *B = A + (size_t)rank * (size_t)l->in[t];
			int64_t sa[2] = {rank, l->in[t]}, sb[2] = {l->out[t], rank};
			for (int ab = 0; ab < 2 && rc == 0; ab++) {
				snprintf(nm, sizeof nm, "base_model.model.transformer.h.%d.%s.lora_%c.weight", k / 4, lora_module[t],
				         ab ? 'B' : 'A');
				const float *src = st_f32(e, &f, wp, nm, 2, ab ? sb : sa);
				if (!src)
					rc = -1;
				else
					memcpy(ab ? B : A, src, (size_t)(ab ? sb[0] * sb[1] : sa[0] * sa[1]) * sizeof(float));
				used++;
			}
		}
		/* a classifier's head, saved with it (modules_to_save) */
		if (rc == 0 && m->cfg.ncls && st_find(&f, "base_model.model.score.weight")) {
			int64_t sh[2] = {m->cfg.ncls, m->cfg.n_embd};
			const float *src = st_f32(e, &f, wp, "base_model.model.score.weight", 2, sh);
			if (!src) {
				rc = -1;
			} else {
				gpt2_lora_add_head(l, m);
				memcpy(l->p + l->head_off, src, l->head_n * sizeof(float));
				used++;
			}
		}
		/* every tensor was read: anything else (another layer, a module not
		 * in target_modules, DoRA magnitudes) would be silently dropped */
		for (size_t i = 0; i < f.n && rc == 0 && used != f.n; i++) {
			int found = 0;
			for (int k = 0; k < l->n_layer * 4 && !found; k++)
				for (int ab = 0; ab < 2 && (targets & (1 << (k % 4))); ab++) {
					snprintf(nm, sizeof nm, "base_model.model.transformer.h.%d.%s.lora_%c.weight", k / 4,
					         lora_module[k % 4], ab ? 'B' : 'A');
					found |= !strcmp(nm, f.t[i].name);
				}
			if (!found)
				rc = herr_set(e, "%s: tensor '%s' is not a LoRA weight of target_modules in %s for this %d-layer GPT-2",
				              wp, f.t[i].name, cp, l->n_layer);
		}
		if (rc != 0)
			gpt2_lora_free(l);
		st_free(&f);
	}
	free(cp);
	free(wp);
	return rc;
}

/* LoRA dropout: the mask of adapter k's input element i, from the step's
 * seed, the same in forward and backward (nothing stored); kept elements
 * are scaled by 1 / (1 - p) */
static float drop_keep(uint64_t seed, int k, size_t i, float p)
{
	uint64_t z = seed * 0x9E3779B97F4A7C15ull + ((uint64_t)k << 40) + i;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0 < p ? 0.0f : 1.0f / (1.0f - p);
}

/* x, or x with the dropout mask applied (into w->xd) */
static const float *lora_input(const gpt2_lora *lo, gpt2_ws *w, int k, const float *x, int in)
{
	if (!(lo->dropout > 0 && w->drop_seed && w->xd))
		return x;
	size_t n = (size_t)w->N * (size_t)in;
	for (size_t i = 0; i < n; i++)
		w->xd[i] = x[i] * drop_keep(w->drop_seed, k, i, lo->dropout);
	return w->xd;
}

/* y[N, out] += scale · (x[N, in] Aᵀ) Bᵀ, keeping u = x Aᵀ for backward */
static void lora_fwd(const gpt2 *m, gpt2_ws *w, int l, int t, const float *x, float *y)
{
	const gpt2_lora *lo = m->lora;
	if (!lo || !(lo->targets & (1 << t)))
		return;
	int k = l * 4 + t, r = lo->rank, in = lo->in[t], out = lo->out[t];
	const float *A = lo->p + lo->off[k], *B = A + (size_t)r * (size_t)in;
	x = lora_input(lo, w, k, x, in);
	psgemm(w->threads, 0, 1, w->N, r, in, 1.0f, x, in, A, in, 0.0f, w->u[k], r);
	psgemm(w->threads, 0, 1, w->N, out, r, lo->scale, w->u[k], r, B, r, 1.0f, y, out);
}

/* Given dy: dA, dB accumulate; dx += the adapter's share */
static void lora_back(const gpt2 *m, gpt2_ws *w, int l, int t, const float *x, const float *dy, float *dx)
{
	const gpt2_lora *lo = m->lora;
	if (!lo || !(lo->targets & (1 << t)))
		return;
	int k = l * 4 + t, r = lo->rank, in = lo->in[t], out = lo->out[t], N = w->N;
	const float *A = lo->p + lo->off[k], *B = A + (size_t)r * (size_t)in;
	float *dA = w->lg + lo->off[k], *dB = dA + (size_t)r * (size_t)in;
	const float *xin = lora_input(lo, w, k, x, in);
	psgemm(w->threads, 1, 0, out, r, N, lo->scale, dy, out, w->u[k], r, 1.0f, dB, r);
	psgemm(w->threads, 0, 0, N, r, out, lo->scale, dy, out, B, r, 0.0f, w->du, r);
	psgemm(w->threads, 1, 0, r, in, N, 1.0f, w->du, r, xin, in, 1.0f, dA, in);
	if (xin == x) {
		psgemm(w->threads, 0, 0, N, in, r, 1.0f, w->du, r, A, in, 1.0f, dx, in);
		return;
	}
	/* through the mask */
	psgemm(w->threads, 0, 0, N, in, r, 1.0f, w->du, r, A, in, 0.0f, w->dxd, in);
	size_t n = (size_t)N * (size_t)in;
	for (size_t i = 0; i < n; i++)
		dx[i] += w->dxd[i] * drop_keep(w->drop_seed, k, i, lo->dropout);
}

#define P(name) (m->p + gpt2_find(m, name)->off)
#define G(name) (w->g ? w->g + gpt2_find(m, name)->off : NULL) /* NULL: frozen */

static void layernorm_rows(float *out, float *mean, float *rstd, const float *x, const float *wt, const float *b, int lo,
                           int N, int C, float eps)
{
	for (int i = lo; i < N; i++) {
		const float *xi = x + (size_t)i * (size_t)C;
		double s = 0, ss = 0;
		for (int k = 0; k < C; k++)
			s += xi[k];
		double mu = s / C;
		for (int k = 0; k < C; k++)
			ss += (xi[k] - mu) * (xi[k] - mu);
		float r = (float)(1.0 / sqrt(ss / C + eps));
		float *o = out + (size_t)i * (size_t)C;
		for (int k = 0; k < C; k++)
			o[k] = ((float)(xi[k] - mu)) * r * wt[k] + b[k];
		mean[i] = (float)mu;
		rstd[i] = r;
	}
}

typedef struct ln_job {
	float *out, *mean, *rstd;
	const float *x, *wt, *b;
	int N, C;
	float eps;
} ln_job;

static void ln_part(void *ud, int t, int nt)
{
	ln_job *j = ud;
	layernorm_rows(j->out, j->mean, j->rstd, j->x, j->wt, j->b, j->N * t / nt, j->N * (t + 1) / nt, j->C, j->eps);
}

/* rows split over the threads; each row's arithmetic is the same */
static void layernorm(int threads, float *out, float *mean, float *rstd, const float *x, const float *wt, const float *b,
                      int N, int C, float eps)
{
	ln_job j = {out, mean, rstd, x, wt, b, N, C, eps};
	par_run(threads, ln_part, &j);
}

/* dx += LayerNorm backward; dw, db accumulate */
static void layernorm_back(float *dx, float *dw, float *db, const float *dy, const float *x, const float *wt,
                           const float *mean, const float *rstd, int N, int C)
{
	for (int i = 0; i < N; i++) {
		const float *xi = x + (size_t)i * (size_t)C, *dyi = dy + (size_t)i * (size_t)C;
		float *dxi = dx + (size_t)i * (size_t)C;
		double a = 0, b = 0;
		for (int k = 0; k < C; k++) {
			float xh = (xi[k] - mean[i]) * rstd[i];
			float d = dyi[k] * wt[k];
			a += d;
			b += d * xh;
			if (dw) { /* NULL: frozen */
				dw[k] += dyi[k] * xh;
				db[k] += dyi[k];
			}
		}
		float ma = (float)(a / C), mb = (float)(b / C);
		for (int k = 0; k < C; k++) {
			float xh = (xi[k] - mean[i]) * rstd[i];
			dxi[k] += rstd[i] * (dyi[k] * wt[k] - ma - xh * mb);
		}
	}
}

static void add_bias(float *y, const float *b, int N, int D)
{
	for (int i = 0; i < N; i++)
		for (int k = 0; k < D; k++)
			y[(size_t)i * (size_t)D + (size_t)k] += b[k];
}

static void bias_grad(float *db, const float *dy, int N, int D)
{
	if (!db)
		return; /* frozen */
	for (int i = 0; i < N; i++)
		for (int k = 0; k < D; k++)
			db[k] += dy[(size_t)i * (size_t)D + (size_t)k];
}

typedef struct gelu_job {
	float *y;
	const float *x;
	size_t n;
	int back; /* y *= gelu'(x) instead of y = gelu(x) */
} gelu_job;

static void gelu_part(void *ud, int t, int nt)
{
	gelu_job *j = ud;
	size_t lo = j->n * (size_t)t / (size_t)nt, hi = j->n * (size_t)(t + 1) / (size_t)nt;
	if (j->back)
		for (size_t i = lo; i < hi; i++)
			j->y[i] *= gelu_tanh_grad(j->x[i]);
	else
		for (size_t i = lo; i < hi; i++)
			j->y[i] = gelu_tanh(j->x[i]);
}

/* Cross-entropy rows [lo, hi): loss into part[t], dlogits = softmax - onehot,
 * over count rows. */
typedef struct ce_job {
	const float *logits;
	float *dlogits;
	const int32_t *targets;
	int N, V;
	double count, part[64];
} ce_job;

static void ce_part(void *ud, int t, int nt)
{
	ce_job *j = ud;
	double loss = 0;
	int V = j->V;
	for (int i = j->N * t / nt; i < j->N * (t + 1) / nt; i++) {
		const float *z = j->logits + (size_t)i * (size_t)V;
		float *dz = j->dlogits + (size_t)i * (size_t)V;
		int32_t y = j->targets[i];
		if (y < 0 || y >= V || !j->count) {
			memset(dz, 0, (size_t)V * sizeof *dz);
			continue;
		}
		float mx = z[0];
		for (int k = 1; k < V; k++)
			mx = z[k] > mx ? z[k] : mx;
		double s = 0;
		for (int k = 0; k < V; k++) {
			dz[k] = expf(z[k] - mx);
			s += dz[k];
		}
		loss += log(s) + mx - z[y];
		float inv = (float)(1.0 / (s * j->count));
		for (int k = 0; k < V; k++)
			dz[k] *= inv;
		dz[y] -= (float)(1.0 / j->count);
	}
	j->part[t] = loss;
}

/* Attention of heads [lo, hi) of the B·H: scores, causal softmax, output. */
typedef struct att_job {
	layer_act *a;
	float *dy;       /* backward: d(attention output) */
	float *dqkv;
	float *dS;       /* scratch: 2 T·T per thread (probabilities, their gradient) */
	int B, T, C, H, hd;
	float scale;
} att_job;

/* One head's causal attention probabilities: S = softmax(q kᵀ · scale)
 * with the future masked, T × T. Forward and backward both compute them
 * (the same values), so that no head's T × T is kept in between. */
static void att_probs(const float *q, const float *k, int T, int C, int hd, float scale, float *S)
{
	sgemm(0, 1, T, T, hd, scale, q, 3 * C, k, 3 * C, 0.0f, S, T);
	for (int i = 0; i < T; i++) {
		float *row = S + (size_t)i * (size_t)T, mx = row[0];
		for (int x = 1; x <= i; x++)
			mx = row[x] > mx ? row[x] : mx;
		double s = 0;
		for (int x = 0; x <= i; x++) {
			row[x] = expf(row[x] - mx);
			s += row[x];
		}
		float inv = (float)(1.0 / s);
		for (int x = 0; x <= i; x++)
			row[x] *= inv;
		for (int x = i + 1; x < T; x++)
			row[x] = 0;
	}
}

static void att_fwd_part(void *ud, int t, int nt)
{
	att_job *j = ud;
	int T = j->T, C = j->C, H = j->H, hd = j->hd, BH = j->B * j->H;
	float *S = j->dS + (size_t)t * 2 * (size_t)T * (size_t)T;
	for (int bh = BH * t / nt; bh < BH * (t + 1) / nt; bh++) {
		int b = bh / H, h = bh % H;
		const float *q = j->a->qkv + (size_t)b * (size_t)T * 3 * (size_t)C + (size_t)h * (size_t)hd;
		const float *k = q + C, *v = q + 2 * C;
		att_probs(q, k, T, C, hd, j->scale, S);
		sgemm(0, 0, T, hd, T, 1.0f, S, T, v, 3 * C, 0.0f, j->a->y + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd, C);
	}
}

static void att_back_part(void *ud, int t, int nt)
{
	att_job *j = ud;
	int T = j->T, C = j->C, H = j->H, hd = j->hd, BH = j->B * j->H;
	float *Pm = j->dS + (size_t)t * 2 * (size_t)T * (size_t)T, *dS = Pm + (size_t)T * (size_t)T;
	for (int bh = BH * t / nt; bh < BH * (t + 1) / nt; bh++) {
		int b = bh / H, h = bh % H;
		size_t qo = (size_t)b * (size_t)T * 3 * (size_t)C + (size_t)h * (size_t)hd;
		const float *q = j->a->qkv + qo, *k = q + C, *v = q + 2 * C;
		float *dq = j->dqkv + qo, *dk = dq + C, *dv = dq + 2 * C;
		att_probs(q, k, T, C, hd, j->scale, Pm);
		const float *dyh = j->dy + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd;
		sgemm(0, 1, T, T, hd, 1.0f, dyh, C, v, 3 * C, 0.0f, dS, T);  /* dP = dy v^T */
		sgemm(1, 0, T, hd, T, 1.0f, Pm, T, dyh, C, 0.0f, dv, 3 * C); /* dv = P^T dy */
		for (int i = 0; i < T; i++) {
			float *r = dS + (size_t)i * (size_t)T;
			const float *pr = Pm + (size_t)i * (size_t)T;
			double s = 0;
			for (int x = 0; x <= i; x++)
				s += (double)r[x] * pr[x];
			for (int x = 0; x < T; x++)
				r[x] = x <= i ? pr[x] * (r[x] - (float)s) * j->scale : 0.0f;
		}
		sgemm(0, 0, T, hd, T, 1.0f, dS, T, k, 3 * C, 0.0f, dq, 3 * C); /* dq = dS k */
		sgemm(1, 0, T, hd, T, 1.0f, dS, T, q, 3 * C, 0.0f, dk, 3 * C); /* dk = dS^T q */
	}
}

/* Heads run on our threads (OpenBLAS single-threaded: small products). */
static void attention(gpt2_ws *w, att_job *j, void (*fn)(void *, int, int))
{
	par_run(w->threads, fn, j);
}

/* embeddings, blocks and the final LayerNorm: w->lnf */
static void trunk_forward(const gpt2 *m, gpt2_ws *w, const uint32_t *ids)
{
	const gpt2_config *c = &m->cfg;
	int B = w->B, T = w->T, N = w->N, C = c->n_embd, H = c->n_head, hd = C / H, V = c->vocab;
	memcpy(w->idbuf, ids, (size_t)N * sizeof *ids);
	w->ids = w->idbuf;
	/* embeddings */
	float *x = c->n_layer ? w->l[0].res : w->res_out;
	const float *wte = P("wte.weight"), *wpe = P("wpe.weight");
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			size_t i = (size_t)b * (size_t)T + (size_t)t;
			uint32_t id = ids[i] < (uint32_t)V ? ids[i] : 0;
			for (int k = 0; k < C; k++)
				x[i * (size_t)C + (size_t)k] = wte[(size_t)id * (size_t)C + (size_t)k] + wpe[(size_t)t * (size_t)C + (size_t)k];
		}
	float scale = 1.0f / sqrtf((float)hd);
	char nm[64];
	for (int l = 0; l < c->n_layer; l++) {
		layer_act *a = &w->l[l];
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
		layernorm(w->threads, a->ln1, a->m1, a->r1, a->res, LP("ln_1.weight"), LP("ln_1.bias"), N, C, c->eps);
		psgemm(w->threads, 0, 0, N, 3 * C, C, 1.0f, a->ln1, C, LP("attn.c_attn.weight"), 3 * C, 0.0f, a->qkv, 3 * C);
		add_bias(a->qkv, LP("attn.c_attn.bias"), N, 3 * C);
		lora_fwd(m, w, l, 0, a->ln1, a->qkv);
		att_job aj = {a, NULL, NULL, w->dS, B, T, C, H, hd, scale};
		attention(w, &aj, att_fwd_part);
		memcpy(a->res2, a->res, (size_t)N * (size_t)C * sizeof(float));
		psgemm(w->threads, 0, 0, N, C, C, 1.0f, a->y, C, LP("attn.c_proj.weight"), C, 1.0f, a->res2, C);
		add_bias(a->res2, LP("attn.c_proj.bias"), N, C);
		lora_fwd(m, w, l, 1, a->y, a->res2);
		layernorm(w->threads, a->ln2, a->m2, a->r2, a->res2, LP("ln_2.weight"), LP("ln_2.bias"), N, C, c->eps);
		psgemm(w->threads, 0, 0, N, 4 * C, C, 1.0f, a->ln2, C, LP("mlp.c_fc.weight"), 4 * C, 0.0f, a->fch, 4 * C);
		add_bias(a->fch, LP("mlp.c_fc.bias"), N, 4 * C);
		lora_fwd(m, w, l, 2, a->ln2, a->fch);
		gelu_job gj = {a->fcg, a->fch, (size_t)N * 4 * (size_t)C, 0};
		par_run(w->threads, gelu_part, &gj);
		float *next = l + 1 < c->n_layer ? w->l[l + 1].res : w->res_out;
		memcpy(next, a->res2, (size_t)N * (size_t)C * sizeof(float));
		psgemm(w->threads, 0, 0, N, C, 4 * C, 1.0f, a->fcg, 4 * C, LP("mlp.c_proj.weight"), C, 1.0f, next, C);
		add_bias(next, LP("mlp.c_proj.bias"), N, C);
		lora_fwd(m, w, l, 3, a->fcg, next);
#undef LP
	}
	layernorm(w->threads, w->lnf, w->mf, w->rf, w->res_out, P("ln_f.weight"), P("ln_f.bias"), N, C, c->eps);
}

double gpt2_forward(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int32_t *targets)
{
	const gpt2_config *c = &m->cfg;
	int N = w->N, C = c->n_embd, V = c->vocab;
	if (c->ncls)
		return NAN; /* a classifier: gpt2_forward_cls */
	w->cls = 0;
	trunk_forward(m, w, ids);
	psgemm(w->threads, 0, 1, N, V, C, 1.0f, w->lnf, C, P("wte.weight"), C, 0.0f, w->logits, V);
	w->targets = targets;
	if (!targets)
		return 0;
	/* cross-entropy over the rows with a target; dlogits for backward */
	w->count = 0;
	for (int i = 0; i < N; i++)
		w->count += targets[i] >= 0 && targets[i] < V;
	ce_job cj;
	cj.logits = w->logits;
	cj.dlogits = w->dlogits;
	cj.targets = targets;
	cj.N = N;
	cj.V = V;
	cj.count = w->count;
	int nt = w->threads > 64 ? 64 : w->threads;
	par_run(nt, ce_part, &cj);
	double loss = 0;
	for (int t = 0; t < nt; t++)
		loss += cj.part[t];
	return w->count ? loss / w->count : 0;
}

double gpt2_forward_cls(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int *last, const int32_t *labels)
{
	const gpt2_config *c = &m->cfg;
	int B = w->B, T = w->T, C = c->n_embd, K = c->ncls;
	if (!K)
		return NAN;
	w->cls = 1;
	trunk_forward(m, w, ids);
	const float *S = m->lora && m->lora->head_n ? m->lora->p + m->lora->head_off : P("score.weight");
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

const float *gpt2_cls_probs(const gpt2_ws *w) { return w->cp; }

void gpt2_backward(const gpt2 *m, gpt2_ws *w)
{
	const gpt2_config *c = &m->cfg;
	int B = w->B, T = w->T, N = w->N, C = c->n_embd, H = c->n_head, hd = C / H, V = c->vocab;
	float scale = 1.0f / sqrtf((float)hd);
	float *dln = w->dx;
	if (w->cls) {
		/* the score head at each row's last position; nothing flows elsewhere */
		int K = c->ncls;
		memset(dln, 0, (size_t)N * (size_t)C * sizeof(float));
		int lh = m->lora && m->lora->head_n;
		const float *S = lh ? m->lora->p + m->lora->head_off : P("score.weight");
		float *dS = lh ? w->lg + m->lora->head_off : G("score.weight");
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
		/* LM head (tied): dwte += dlogits^T lnf; dlnf = dlogits wte */
		if (!w->frozen)
			psgemm(w->threads, 1, 0, V, C, N, 1.0f, w->dlogits, V, w->lnf, C, 1.0f, G("wte.weight"), C);
		psgemm(w->threads, 0, 0, N, C, V, 1.0f, w->dlogits, V, P("wte.weight"), C, 0.0f, dln, C);
	}
	memset(w->dres, 0, (size_t)N * (size_t)C * sizeof(float));
	layernorm_back(w->dres, G("ln_f.weight"), G("ln_f.bias"), dln, w->res_out, P("ln_f.weight"), w->mf, w->rf, N, C);
	char nm[64];
	for (int l = c->n_layer - 1; l >= 0; l--) {
		layer_act *a = &w->l[l];
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
#define LG(s) (snprintf(nm, sizeof nm, "h.%d." s, l), G(nm))
		/* MLP: dres flows into res2 unchanged, and through c_proj, GELU, c_fc, ln_2 */
		if (!w->frozen)
			psgemm(w->threads, 1, 0, 4 * C, C, N, 1.0f, a->fcg, 4 * C, w->dres, C, 1.0f, LG("mlp.c_proj.weight"), C);
		bias_grad(LG("mlp.c_proj.bias"), w->dres, N, C);
		psgemm(w->threads, 0, 1, N, 4 * C, C, 1.0f, w->dres, C, LP("mlp.c_proj.weight"), C, 0.0f, w->dfc, 4 * C);
		lora_back(m, w, l, 3, a->fcg, w->dres, w->dfc);
		gelu_job gb = {w->dfc, a->fch, (size_t)N * 4 * (size_t)C, 1};
		par_run(w->threads, gelu_part, &gb);
		if (!w->frozen)
			psgemm(w->threads, 1, 0, C, 4 * C, N, 1.0f, a->ln2, C, w->dfc, 4 * C, 1.0f, LG("mlp.c_fc.weight"), 4 * C);
		bias_grad(LG("mlp.c_fc.bias"), w->dfc, N, 4 * C);
		psgemm(w->threads, 0, 1, N, C, 4 * C, 1.0f, w->dfc, 4 * C, LP("mlp.c_fc.weight"), 4 * C, 0.0f, dln, C);
		lora_back(m, w, l, 2, a->ln2, w->dfc, dln);
		layernorm_back(w->dres, LG("ln_2.weight"), LG("ln_2.bias"), dln, a->res2, LP("ln_2.weight"), a->m2, a->r2, N, C);
		/* attention: c_proj, then per head */
		if (!w->frozen)
			psgemm(w->threads, 1, 0, C, C, N, 1.0f, a->y, C, w->dres, C, 1.0f, LG("attn.c_proj.weight"), C);
		bias_grad(LG("attn.c_proj.bias"), w->dres, N, C);
		float *dy = dln; /* reuse: d(attention output) */
		psgemm(w->threads, 0, 1, N, C, C, 1.0f, w->dres, C, LP("attn.c_proj.weight"), C, 0.0f, dy, C);
		lora_back(m, w, l, 1, a->y, w->dres, dy);
		att_job aj = {a, dy, w->dqkv, w->dS, B, T, C, H, hd, scale};
		attention(w, &aj, att_back_part);
		if (!w->frozen)
			psgemm(w->threads, 1, 0, C, 3 * C, N, 1.0f, a->ln1, C, w->dqkv, 3 * C, 1.0f, LG("attn.c_attn.weight"), 3 * C);
		bias_grad(LG("attn.c_attn.bias"), w->dqkv, N, 3 * C);
		psgemm(w->threads, 0, 1, N, C, 3 * C, 1.0f, w->dqkv, 3 * C, LP("attn.c_attn.weight"), 3 * C, 0.0f, dln, C);
		lora_back(m, w, l, 0, a->ln1, w->dqkv, dln);
		layernorm_back(w->dres, LG("ln_1.weight"), LG("ln_1.bias"), dln, a->res, LP("ln_1.weight"), a->m1, a->r1, N, C);
#undef LP
#undef LG
	}
	/* embeddings (frozen with adapters) */
	if (w->frozen)
		return;
	float *dwte = G("wte.weight"), *dwpe = G("wpe.weight");
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			size_t i = (size_t)b * (size_t)T + (size_t)t;
			uint32_t id = w->ids[i] < (uint32_t)V ? w->ids[i] : 0;
			for (int k = 0; k < C; k++) {
				float d = w->dres[i * (size_t)C + (size_t)k];
				dwte[(size_t)id * (size_t)C + (size_t)k] += d;
				dwpe[(size_t)t * (size_t)C + (size_t)k] += d;
			}
		}
}

/* --- generation -------------------------------------------------------------------- */

struct gpt2_kv {
	int t, maxt, C;
	gpt2_ws *ws;             /* prefill: a batch of one, ws->T positions */
	float *k, *v;            /* per layer: maxt × C */
	float *x, *ln, *qkv, *y, *h, *att;
};

gpt2_kv *gpt2_kv_new(const gpt2 *m)
{
	const gpt2_config *c = &m->cfg;
	gpt2_kv *kv = xcalloc(1, sizeof *kv);
	size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer, T = (size_t)c->n_positions;
	kv->maxt = c->n_positions;
	kv->C = c->n_embd;
	kv->k = xmalloc(L * T * C * sizeof(float));
	kv->v = xmalloc(L * T * C * sizeof(float));
	kv->x = xmalloc(C * sizeof(float));
	kv->ln = xmalloc(C * sizeof(float));
	kv->qkv = xmalloc(3 * C * sizeof(float));
	kv->y = xmalloc(C * sizeof(float));
	kv->h = xmalloc(4 * C * sizeof(float));
	kv->att = xmalloc(T * sizeof(float));
	return kv;
}

void gpt2_kv_reset(gpt2_kv *kv) { kv->t = 0; }

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
	/* one forward over the prompt (padded to a power of two, so that the
	 * workspace is reused across prompts of similar length): causal
	 * attention keeps the padding out of the first n positions */
	int T = 16;
	while (T < n)
		T *= 2;
	T = T > kv->maxt ? kv->maxt : T;
	if (!kv->ws || kv->ws->T != T) {
		gpt2_ws_free(kv->ws);
		kv->ws = gpt2_ws_new(m, 1, T, 1);
	}
	gpt2_ws *w = kv->ws;
	memset(w->idbuf, 0, (size_t)T * sizeof *w->idbuf);
	uint32_t *pad = xcalloc((size_t)T, sizeof *pad);
	memcpy(pad, ids, (size_t)n * sizeof *ids);
	gpt2_forward(m, w, pad, NULL);
	free(pad);
	for (int l = 0; l < c->n_layer; l++) {
		float *K = kv->k + (size_t)l * (size_t)kv->maxt * (size_t)C, *Vv = kv->v + (size_t)l * (size_t)kv->maxt * (size_t)C;
		for (int t = 0; t < n; t++) {
			const float *q = w->l[l].qkv + (size_t)t * 3 * (size_t)C;
			memcpy(K + (size_t)t * (size_t)C, q + C, (size_t)C * sizeof(float));
			memcpy(Vv + (size_t)t * (size_t)C, q + 2 * C, (size_t)C * sizeof(float));
		}
	}
	memcpy(logits, w->logits + (size_t)(n - 1) * (size_t)V, (size_t)V * sizeof *logits);
	kv->t = n;
	return 0;
}

void gpt2_kv_free(gpt2_kv *kv)
{
	if (!kv)
		return;
	gpt2_ws_free(kv->ws);
	free(kv->k);
	free(kv->v);
	free(kv->x);
	free(kv->ln);
	free(kv->qkv);
	free(kv->y);
	free(kv->h);
	free(kv->att);
	free(kv);
}

int gpt2_kv_len(const gpt2_kv *kv) { return kv->t; }

int gpt2_step(const gpt2 *m, gpt2_kv *kv, uint32_t id, float *logits)
{
	const gpt2_config *c = &m->cfg;
	int C = c->n_embd, H = c->n_head, hd = C / H, V = c->vocab, t = kv->t;
	if (t >= kv->maxt)
		return -1;
	const float *wte = P("wte.weight"), *wpe = P("wpe.weight");
	uint32_t tok = id < (uint32_t)V ? id : 0;
	for (int k = 0; k < C; k++)
		kv->x[k] = wte[(size_t)tok * (size_t)C + (size_t)k] + wpe[(size_t)t * (size_t)C + (size_t)k];
	float scale = 1.0f / sqrtf((float)hd), m0, r0;
	char nm[64];
	for (int l = 0; l < c->n_layer; l++) {
#define LP(s) (snprintf(nm, sizeof nm, "h.%d." s, l), P(nm))
		float *K = kv->k + (size_t)l * (size_t)kv->maxt * (size_t)C, *Vv = kv->v + (size_t)l * (size_t)kv->maxt * (size_t)C;
		layernorm_rows(kv->ln, &m0, &r0, kv->x, LP("ln_1.weight"), LP("ln_1.bias"), 0, 1, C, c->eps);
		memcpy(kv->qkv, LP("attn.c_attn.bias"), 3 * (size_t)C * sizeof(float));
		sgemm(0, 0, 1, 3 * C, C, 1.0f, kv->ln, C, LP("attn.c_attn.weight"), 3 * C, 1.0f, kv->qkv, 3 * C);
		memcpy(K + (size_t)t * (size_t)C, kv->qkv + C, (size_t)C * sizeof(float));
		memcpy(Vv + (size_t)t * (size_t)C, kv->qkv + 2 * C, (size_t)C * sizeof(float));
		for (int h = 0; h < H; h++) {
			const float *q = kv->qkv + (size_t)h * (size_t)hd;
			float mx = -INFINITY;
			for (int j = 0; j <= t; j++) {
				const float *kj = K + (size_t)j * (size_t)C + (size_t)h * (size_t)hd;
				float s = 0;
				for (int d = 0; d < hd; d++)
					s += q[d] * kj[d];
				kv->att[j] = s * scale;
				mx = kv->att[j] > mx ? kv->att[j] : mx;
			}
			double sum = 0;
			for (int j = 0; j <= t; j++) {
				kv->att[j] = expf(kv->att[j] - mx);
				sum += kv->att[j];
			}
			float *y = kv->y + (size_t)h * (size_t)hd;
			memset(y, 0, (size_t)hd * sizeof *y);
			for (int j = 0; j <= t; j++) {
				float p = (float)(kv->att[j] / sum);
				const float *vj = Vv + (size_t)j * (size_t)C + (size_t)h * (size_t)hd;
				for (int d = 0; d < hd; d++)
					y[d] += p * vj[d];
			}
		}
		const float *pb = LP("attn.c_proj.bias");
		for (int k = 0; k < C; k++)
			kv->x[k] += pb[k];
		sgemm(0, 0, 1, C, C, 1.0f, kv->y, C, LP("attn.c_proj.weight"), C, 1.0f, kv->x, C);
		layernorm_rows(kv->ln, &m0, &r0, kv->x, LP("ln_2.weight"), LP("ln_2.bias"), 0, 1, C, c->eps);
		memcpy(kv->h, LP("mlp.c_fc.bias"), 4 * (size_t)C * sizeof(float));
		sgemm(0, 0, 1, 4 * C, C, 1.0f, kv->ln, C, LP("mlp.c_fc.weight"), 4 * C, 1.0f, kv->h, 4 * C);
		for (int k = 0; k < 4 * C; k++)
			kv->h[k] = gelu_tanh(kv->h[k]);
		const float *mb = LP("mlp.c_proj.bias");
		for (int k = 0; k < C; k++)
			kv->x[k] += mb[k];
		sgemm(0, 0, 1, C, 4 * C, 1.0f, kv->h, 4 * C, LP("mlp.c_proj.weight"), C, 1.0f, kv->x, C);
#undef LP
	}
	layernorm_rows(kv->ln, &m0, &r0, kv->x, P("ln_f.weight"), P("ln_f.bias"), 0, 1, C, c->eps);
	sgemm(0, 1, 1, V, C, 1.0f, kv->ln, C, wte, C, 0.0f, logits, V);
	kv->t++;
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
