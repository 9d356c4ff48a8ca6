#include "bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/blas.h"
#include "../nn/nn.h"

/* --- configuration ----------------------------------------------------------------- */

static int jint(const jnode *o, const char *name, long long lo, long long hi, long long *v)
{
	return json_int(json_member(o, name, strlen(name)), lo, hi, v);
}

static int jstr_is(const jnode *v, const char *s)
{
	return v && v->t == J_STR && v->len == strlen(s) && !memcmp(v->s, s, v->len);
}

static double jnum(const jnode *o, const char *name, double dflt)
{
	double v;
	const jnode *j = json_member(o, name, strlen(name));
	return j && json_number(j, &v) == 0 ? v : dflt;
}

int bert_config_parse(herr *e, bert_config *c, const char *json, size_t n, const char *what)
{
	memset(c, 0, sizeof *c);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je);
	int rc = 0;
	long long L, H, C, I, P, V, Tt = 2, pad = 0;
	model_arch arch;
	if (!r || r->t != J_OBJ) {
		rc = herr_set(e, "%s: not a JSON object", what);
	} else if (model_detect(e, json, n, what, &arch) != 0) {
		rc = -1;
	} else if (arch != ARCH_BERT) {
		rc = herr_set(e, "%s: not a BERT config (model_type \"bert\")", what);
	} else if (jint(r, "num_hidden_layers", 0, 1024, &L) || jint(r, "num_attention_heads", 1, 1024, &H) ||
	           jint(r, "hidden_size", 1, 65536, &C) || jint(r, "intermediate_size", 1, 1 << 20, &I) ||
	           jint(r, "max_position_embeddings", 1, 1 << 20, &P) || jint(r, "vocab_size", 1, 1 << 24, &V)) {
		rc = herr_set(e, "%s: expected integers num_hidden_layers, num_attention_heads, hidden_size, intermediate_size, "
		              "max_position_embeddings and vocab_size (a BERT config)", what);
	} else if (C % H) {
		rc = herr_set(e, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", what, C, H);
	} else if (json_member(r, "type_vocab_size", 15) && jint(r, "type_vocab_size", 1, 1 << 16, &Tt)) {
		rc = herr_set(e, "%s: type_vocab_size: expected a positive integer", what);
	} else {
		c->n_layer = (int)L;
		c->n_head = (int)H;
		c->hidden = (int)C;
		c->inter = (int)I;
		c->max_pos = (int)P;
		c->vocab = (int)V;
		c->type_vocab = (int)Tt;
		c->eps = (float)jnum(r, "layer_norm_eps", 1e-12);
		c->dropout = (float)jnum(r, "hidden_dropout_prob", 0.1);
		if (json_member(r, "pad_token_id", 12) && jint(r, "pad_token_id", 0, V - 1, &pad) == 0)
			c->pad_id = (int)pad;
		const jnode *act = json_member(r, "hidden_act", 10), *pe = json_member(r, "position_embedding_type", 23);
		if (!act || jstr_is(act, "gelu"))
			c->act = NN_GELU_ERF;
		else if (jstr_is(act, "gelu_new") || jstr_is(act, "gelu_pytorch_tanh"))
			c->act = NN_GELU_TANH;
		else
			rc = herr_set(e, "%s: hidden_act: only \"gelu\" (erf) and \"gelu_new\" (tanh) are supported", what);
		if (rc == 0 && pe && pe->t != J_NULL && !jstr_is(pe, "absolute"))
			rc = herr_set(e, "%s: position_embedding_type: only \"absolute\" position embeddings are supported", what);
		const jnode *dec = json_member(r, "is_decoder", 10), *xa = json_member(r, "add_cross_attention", 19);
		if (rc == 0 && ((dec && dec->t == J_TRUE) || (xa && xa->t == J_TRUE)))
			rc = herr_set(e, "%s: is_decoder / add_cross_attention: a BERT decoder is not supported (encoders only)", what);
		/* the head, from architectures */
		const jnode *ar = json_member(r, "architectures", 13);
		const jnode *a0 = ar && ar->t == J_ARR ? ar->kid : NULL;
		c->head = BERT_BASE;
		if (rc == 0 && a0) {
			if (jstr_is(a0, "BertForSequenceClassification"))
				c->head = BERT_SEQCLS;
			else if (jstr_is(a0, "BertForTokenClassification"))
				c->head = BERT_TOKCLS;
			else if (jstr_is(a0, "BertForMaskedLM"))
				c->head = BERT_MLM;
			else if (!jstr_is(a0, "BertModel"))
				rc = herr_set(e, "%s: architectures: \"%.*s\" is not supported (BertModel, BertForMaskedLM, "
				              "BertForSequenceClassification, BertForTokenClassification)", what, (int)a0->len, a0->s);
		}
		if (rc == 0 && (c->head == BERT_SEQCLS || c->head == BERT_TOKCLS)) {
			const jnode *il = json_member(r, "id2label", 8);
			long long nl = 0;
			for (const jnode *k = il && il->t == J_OBJ ? il->kid : NULL; k; k = k->next)
				nl++;
			if (!nl && (!json_member(r, "num_labels", 10) || jint(r, "num_labels", 1, 1 << 20, &nl)))
				nl = 2;
			c->nlabels = (int)nl;
			const jnode *pt = json_member(r, "problem_type", 12);
			if (jstr_is(pt, "multi_label_classification"))
				c->problem = BERT_MULTI;
			else if (jstr_is(pt, "regression") || (c->head == BERT_SEQCLS && nl == 1 && !(pt && pt->t == J_STR)))
				c->problem = BERT_REGRESSION;
			else if (!pt || pt->t == J_NULL || jstr_is(pt, "single_label_classification"))
				c->problem = BERT_SINGLE;
			else
				rc = herr_set(e, "%s: problem_type: expected single_label_classification, multi_label_classification "
				              "or regression", what);
			if (rc == 0 && c->problem == BERT_REGRESSION && nl != 1)
				rc = herr_set(e, "%s: regression needs num_labels 1, not %lld", what, nl);
			if (rc == 0 && c->head == BERT_TOKCLS && c->problem != BERT_SINGLE)
				rc = herr_set(e, "%s: token classification is single-label", what);
		}
	}
	json_arena_free(a);
	return rc;
}

/* --- layout ----------------------------------------------------------------------- */

static void add(bert *m, size_t *at, const char *name, int64_t d0, int64_t d1)
{
	model_add_tensor(m->t, &m->nt, at, name, d0, d1);
}

static void add_head(bert *m, size_t *at)
{
	const bert_config *c = &m->cfg;
	int C = c->hidden;
	if (c->head == BERT_BASE || c->head == BERT_SEQCLS) {
		add(m, at, "bert.pooler.dense.weight", C, C);
		add(m, at, "bert.pooler.dense.bias", C, 0);
	}
	if (c->head == BERT_SEQCLS || c->head == BERT_TOKCLS) {
		add(m, at, "classifier.weight", c->nlabels, C);
		add(m, at, "classifier.bias", c->nlabels, 0);
	}
	if (c->head == BERT_MLM) {
		add(m, at, "cls.predictions.transform.dense.weight", C, C);
		add(m, at, "cls.predictions.transform.dense.bias", C, 0);
		add(m, at, "cls.predictions.transform.LayerNorm.weight", C, 0);
		add(m, at, "cls.predictions.transform.LayerNorm.bias", C, 0);
		add(m, at, "cls.predictions.bias", c->vocab, 0);
	}
}

int bert_init(herr *e, bert *m, const bert_config *c)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	int C = c->hidden, I = c->inter;
	m->t = xcalloc((size_t)c->n_layer * 16 + 16, sizeof *m->t);
	size_t at = 0;
	add(m, &at, "bert.embeddings.word_embeddings.weight", c->vocab, C);
	add(m, &at, "bert.embeddings.position_embeddings.weight", c->max_pos, C);
	add(m, &at, "bert.embeddings.token_type_embeddings.weight", c->type_vocab, C);
	add(m, &at, "bert.embeddings.LayerNorm.weight", C, 0);
	add(m, &at, "bert.embeddings.LayerNorm.bias", C, 0);
	char nm[80];
	for (int l = 0; l < c->n_layer; l++) {
#define T(s, d0, d1) (snprintf(nm, sizeof nm, "bert.encoder.layer.%d." s, l), add(m, &at, nm, d0, d1))
		/* query, key, value side by side: one [3C, C] product */
		T("attention.self.query.weight", C, C);
		T("attention.self.key.weight", C, C);
		T("attention.self.value.weight", C, C);
		T("attention.self.query.bias", C, 0);
		T("attention.self.key.bias", C, 0);
		T("attention.self.value.bias", C, 0);
		T("attention.output.dense.weight", C, C);
		T("attention.output.dense.bias", C, 0);
		T("attention.output.LayerNorm.weight", C, 0);
		T("attention.output.LayerNorm.bias", C, 0);
		T("intermediate.dense.weight", I, C);
		T("intermediate.dense.bias", I, 0);
		T("output.dense.weight", C, I);
		T("output.dense.bias", C, 0);
		T("output.LayerNorm.weight", C, 0);
		T("output.LayerNorm.bias", C, 0);
#undef T
	}
	add_head(m, &at);
	m->nparams = at;
	if (at > ((size_t)1 << 34))
		return herr_set(e, "BERT config with %zu parameters is too large", at);
	m->p = xcalloc(at ? at : 1, sizeof *m->p);
	return 0;
}

void bert_free(bert *m)
{
	for (int k = 0; m->labels && k < m->cfg.nlabels; k++)
		free(m->labels[k]);
	free(m->labels);
	free(m->p);
	free(m->t);
	memset(m, 0, sizeof *m);
}

const model_tensor *bert_find(const bert *m, const char *name) { return model_find(m->t, m->nt, name); }

static int is_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), k = strlen(suf);
	return n >= k && !strcmp(s + n - k, suf);
}

static void init_tensor(bert *m, const model_tensor *t, uint64_t *s)
{
	int ln = strstr(t->name, "LayerNorm") != NULL, bias = is_suffix(t->name, ".bias");
	for (size_t k = 0; k < t->n; k++)
		m->p[t->off + k] = bias ? 0.0f : ln ? 1.0f : (float)(0.02 * model_normal(s));
}

void bert_init_random(bert *m, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x62657274ull;
	for (size_t i = 0; i < m->nt; i++)
		init_tensor(m, &m->t[i], &s);
}

void bert_set_head(bert *m, int head, int nlabels, const char *const *labels, int problem, uint64_t seed)
{
	/* the encoder's tensors stay where they are; the head's are laid out again */
	size_t keep = 5 + 16 * (size_t)m->cfg.n_layer, at = m->t[keep - 1].off + m->t[keep - 1].n;
	float *old = m->p;
	model_tensor *ot = m->t;
	size_t ont = m->nt;
	m->t = xcalloc(keep + 16, sizeof *m->t);
	memcpy(m->t, ot, keep * sizeof *m->t);
	m->nt = keep;
	m->cfg.head = head;
	m->cfg.nlabels = head == BERT_SEQCLS || head == BERT_TOKCLS ? nlabels : 0;
	m->cfg.problem = problem;
	add_head(m, &at);
	m->nparams = at;
	m->p = xcalloc(at, sizeof *m->p);
	memcpy(m->p, old, (m->t[keep - 1].off + m->t[keep - 1].n) * sizeof *m->p);
	/* a tensor the old head had (the pooler) is kept; new ones are drawn */
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x68656164ull;
	for (size_t i = keep; i < m->nt; i++) {
		const model_tensor *o = model_find(ot, ont, m->t[i].name);
		if (o && o->n == m->t[i].n)
			memcpy(m->p + m->t[i].off, old + o->off, o->n * sizeof(float));
		else
			init_tensor(m, &m->t[i], &s);
	}
	free(old);
	free(ot);
	for (int k = 0; m->labels && m->labels[k]; k++)
		free(m->labels[k]);
	free(m->labels);
	m->labels = NULL;
	if (m->cfg.nlabels) {
		m->labels = xcalloc((size_t)m->cfg.nlabels + 1, sizeof *m->labels);
		for (int k = 0; k < m->cfg.nlabels; k++)
			m->labels[k] = labels ? xstrdup(labels[k]) : xasprintf("LABEL_%d", k);
	}
}

/* --- loading and saving ---------------------------------------------------------- */

typedef struct load_ctx {
	bert *m;
	uint8_t *seen;
	float *decoder;       /* a checkpoint's tied decoder weight, to be checked */
	float *decoder_bias;
} load_ctx;

/* transformers' name for a checkpoint's: "bert." for BertModel's bare
 * names, gamma/beta of old LayerNorms */
static void canon(char *out, size_t n, const char *name)
{
	const char *bare[] = {"embeddings.", "encoder.", "pooler."};
	int pre = 0;
	for (size_t k = 0; k < 3; k++)
		pre |= !strncmp(name, bare[k], strlen(bare[k]));
	snprintf(out, n, "%s%s", pre ? "bert." : "", name);
	size_t l = strlen(out);
	if (strstr(out, "LayerNorm") && l > 6 && !strcmp(out + l - 6, ".gamma"))
		snprintf(out + l - 6, n - (l - 6), ".weight");
	else if (strstr(out, "LayerNorm") && l > 5 && !strcmp(out + l - 5, ".beta"))
		snprintf(out + l - 5, n - (l - 5), ".bias");
}

static float *copy_of(herr *e, const st_file *f, const char *path, const char *name, const model_tensor *like, int *rc)
{
	const float *src = st_f32(e, f, path, name, like->ndim, like->shape);
	if (!src) {
		*rc = -1;
		return NULL;
	}
	float *c = xmalloc(like->n * sizeof(float));
	memcpy(c, src, like->n * sizeof(float));
	return c;
}

static int take(void *ud, herr *e, const st_file *f, const char *path)
{
	load_ctx *l = ud;
	bert *m = l->m;
	int rc = 0;
	for (size_t i = 0; i < f->n && rc == 0; i++) {
		char name[96];
		canon(name, sizeof name, f->t[i].name);
		const model_tensor *t = bert_find(m, name);
		if (!t && m->cfg.head == BERT_MLM && !strcmp(name, "cls.predictions.decoder.weight")) {
			free(l->decoder);
			l->decoder = copy_of(e, f, path, f->t[i].name, bert_find(m, "bert.embeddings.word_embeddings.weight"), &rc);
			continue;
		}
		if (!t && m->cfg.head == BERT_MLM && !strcmp(name, "cls.predictions.decoder.bias")) {
			free(l->decoder_bias);
			l->decoder_bias = copy_of(e, f, path, f->t[i].name, bert_find(m, "cls.predictions.bias"), &rc);
			continue;
		}
		if (!t && (!strcmp(name, "bert.embeddings.position_ids") || !strcmp(name, "bert.embeddings.token_type_ids")))
			continue; /* buffers, not parameters */
		if (!t) {
			rc = herr_set(e, "%s: tensor '%s' is not part of this BERT (%s)", path, f->t[i].name,
			              m->cfg.head == BERT_SEQCLS ? "BertForSequenceClassification" :
			              m->cfg.head == BERT_TOKCLS ? "BertForTokenClassification" :
			              m->cfg.head == BERT_MLM ? "BertForMaskedLM" : "BertModel");
			if (strncmp(name, "cls.", 4) == 0 || strncmp(name, "classifier.", 11) == 0)
				herr_hint(e, "the checkpoint has another head than its config.json's architectures says; fix "
				          "architectures, or load it as the architecture it is and change the head in the pipeline");
			break;
		}
		const float *src = st_f32(e, f, path, f->t[i].name, t->ndim, t->shape);
		if (!src)
			rc = -1;
		else
			memcpy(m->p + t->off, src, t->n * sizeof(float));
		l->seen[t - m->t] = 1;
	}
	return rc;
}

int bert_load_dir(herr *e, bert *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	char *cp = path_join(dir, "config.json");
	buf cfg;
	buf_init(&cfg);
	bert_config c;
	int rc = fs_read(e, cp, &cfg);
	if (rc == 0)
		rc = bert_config_parse(e, &c, cfg.p, cfg.len, cp);
	if (rc == 0)
		rc = bert_init(e, m, &c);
	if (rc == 0 && c.nlabels)
		rc = model_read_labels(e, cfg.p, cfg.len, cp, c.nlabels, &m->labels);
	load_ctx l = {m, rc == 0 ? xcalloc(m->nt, 1) : NULL, NULL, NULL};
	if (rc == 0)
		rc = model_load_dir(e, dir, take, &l);
	for (size_t i = 0; rc == 0 && i < m->nt; i++)
		if (!l.seen[i])
			rc = herr_set(e, "%s: no tensor '%s' in the checkpoint", dir, m->t[i].name);
	/* a saved decoder must be the tied one: ignoring a different one would
	 * give other logits */
	if (rc == 0 && l.decoder &&
	    memcmp(l.decoder, m->p + bert_find(m, "bert.embeddings.word_embeddings.weight")->off,
	           bert_find(m, "bert.embeddings.word_embeddings.weight")->n * sizeof(float)))
		rc = herr_set(e, "%s: cls.predictions.decoder.weight differs from the word embeddings: an untied decoder, "
		              "which hone's BERT does not support", dir);
	if (rc == 0 && l.decoder_bias &&
	    memcmp(l.decoder_bias, m->p + bert_find(m, "cls.predictions.bias")->off, (size_t)c.vocab * sizeof(float)))
		rc = herr_set(e, "%s: cls.predictions.decoder.bias differs from cls.predictions.bias", dir);
	free(l.decoder);
	free(l.decoder_bias);
	free(l.seen);
	if (rc && m->p)
		bert_free(m);
	buf_free(&cfg);
	free(cp);
	return rc;
}

void bert_config_json(const bert *m, buf *out)
{
	const bert_config *c = &m->cfg;
	static const char *const arch[] = {"BertModel", "BertForSequenceClassification", "BertForTokenClassification",
	                                   "BertForMaskedLM"};
	buf_printf(out, "{\n  \"model_type\": \"bert\",\n  \"architectures\": [\"%s\"],\n", arch[c->head]);
	if (c->nlabels) {
		model_labels_json(out, m->labels, c->nlabels);
		static const char *const prob[] = {"single_label_classification", "multi_label_classification", "regression"};
		buf_printf(out, "  \"num_labels\": %d,\n  \"problem_type\": \"%s\",\n", c->nlabels, prob[c->problem]);
	}
	buf_printf(out, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
	           "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n"
	           "  \"type_vocab_size\": %d,\n  \"hidden_act\": \"%s\",\n  \"layer_norm_eps\": ",
	           c->vocab, c->hidden, c->n_layer, c->n_head, c->inter, c->max_pos, c->type_vocab,
	           c->act == NN_GELU_ERF ? "gelu" : "gelu_new");
	buf_json_float(out, c->eps);
	buf_adds(out, ",\n  \"hidden_dropout_prob\": ");
	buf_json_float(out, c->dropout);
	buf_printf(out, ",\n  \"attention_probs_dropout_prob\": 0.0,\n  \"position_embedding_type\": \"absolute\",\n"
	           "  \"pad_token_id\": %d,\n  \"initializer_range\": 0.02,\n  \"tie_word_embeddings\": true\n}\n", c->pad_id);
}

int bert_save_dir(herr *e, const bert *m, const float *base, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	bert_config_json(m, &cfg);
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	const float *p = base ? base : m->p;
	for (size_t i = 0; i < m->nt; i++)
		st_add_f32(&w, m->t[i].name, p + m->t[i].off, m->t[i].ndim, m->t[i].shape);
	int rc = st_save_pair(e, dir, "config.json", &cfg, "model.safetensors", &w);
	st_writer_free(&w);
	buf_free(&cfg);
	return rc;
}

/* --- LoRA ------------------------------------------------------------------------------ */

static const char *const site_name[6] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                         "attention.output.dense", "intermediate.dense", "output.dense"};

void bert_lora_arch(const bert *m, lora_arch *a)
{
	static const char *const path[6] = {
		"bert.encoder.layer.%d.attention.self.query", "bert.encoder.layer.%d.attention.self.key",
		"bert.encoder.layer.%d.attention.self.value", "bert.encoder.layer.%d.attention.output.dense",
		"bert.encoder.layer.%d.intermediate.dense", "bert.encoder.layer.%d.output.dense"};
	int C = m->cfg.hidden, I = m->cfg.inter, in[6] = {C, C, C, C, C, I}, out[6] = {C, C, C, C, I, C};
	memset(a, 0, sizeof *a);
	a->arch = "BERT";
	a->n_layer = m->cfg.n_layer;
	a->nsite = 6;
	a->fan_in_fan_out = 0;
	for (int s = 0; s < 6; s++)
		a->site[s] = (lora_site){site_name[s], path[s], in[s], out[s]};
}

void bert_lora_add_head(lora *l, const bert *m)
{
	const char *names[2] = {"classifier.weight", "classifier.bias"};
	for (int k = 0; k < 2; k++) {
		const model_tensor *t = bert_find(m, names[k]);
		if (t)
			lora_add_saved(l, "classifier", names[k], m->p + t->off, t->ndim, t->shape);
	}
	l->task_type = m->cfg.head == BERT_SEQCLS ? "SEQ_CLS" : m->cfg.head == BERT_TOKCLS ? "TOKEN_CLS" : "FEATURE_EXTRACTION";
}

static model_view bert_view(const bert *m)
{
	return (model_view){m->p, m->t, m->nt, "bert.encoder.layer.%d.%s.weight", "classifier."};
}

void bert_lora_merge(const lora *l, bert *m)
{
	model_view v = bert_view(m);
	model_lora_merge(l, &v);
}

int bert_lora_load(herr *e, lora *l, const bert *m, const char *dir)
{
	lora_arch a;
	bert_lora_arch(m, &a);
	model_view v = bert_view(m);
	int rc = model_lora_load(e, l, &a, dir, &v);
	if (rc == 0)
		l->task_type = m->cfg.head == BERT_SEQCLS ? "SEQ_CLS" : m->cfg.head == BERT_TOKCLS ? "TOKEN_CLS" : "FEATURE_EXTRACTION";
	return rc;
}

/* --- compute ------------------------------------------------------------------------ */

typedef struct block_act {
	float *x;                  /* block input (the previous block's out), N × C; not owned */
	float *qkv;                /* N × 3C */
	float *ctx;                /* attention output, N × C */
	float *res1, *h1, *m1, *r1; /* x + attention.output.dense(ctx); its LayerNorm */
	float *f1, *f2;            /* intermediate.dense, its GELU: N × I */
	float *res2, *out, *m2, *r2; /* h1 + output.dense(f2); its LayerNorm */
} block_act;

struct bert_ws {
	nn_ctx nn;
	int B, T, N, C, H, nl, labelled;
	uint32_t *ids, *types, *pos; /* backend memory, as the labels and the mask */
	uint8_t *mask;
	int has_mask;
	float *p;                    /* the parameters on a device backend (NULL on the CPU: the model's) */
	uint32_t *htypes;            /* host staging for the token types and the gathered labels */
	int32_t *hlab;
	float *hlogits, *hhidden;    /* on a device: the logits and last hidden states brought back */
	float *emb, *h0, *me, *re;   /* embeddings' sum, their LayerNorm */
	block_act *l;
	float *cls, *pool1, *pool;   /* sequence classification: [CLS] rows, pooler dense, tanh (B × C) */
	float *t1, *t2, *t3, *mt, *rt; /* MLM transform: dense, GELU, LayerNorm (M × C) */
	int sparse, M;               /* MLM: the head only on the M labelled rows (training), or on all N */
	int *rows;                   /* sparse: which rows, in order */
	float *hs;                   /* sparse: their hidden states, M × C */
	float *logits, *dlogits;
	size_t nlogits;
	int32_t *lab_i;
	float *lab_f;
	float *lse;                  /* per layer B·H·T: attention's log-sum-exp (a fused backend's), or NULL */
	float *g;
	float *gOut, *gIn, *gRes, *gMid, *gCtx, *gQKV, *gF1, *gF2, *gP1, *gP2, *gCls;
	/* dropout (hidden_dropout_prob, training only): the embeddings after it,
	 * the classifier's input after it, and a scratch row block; masks drawn
	 * again in backward from (seed, site) */
	uint64_t drop_seed;
	int dropped;
	float *h0d, *cin, *dtmp;
	lora_ws *lw;
	/* cls_only (bert_ws_cls_only): the last layer after its attention on
	 * the B [CLS] rows, in cl's buffers (B rows each); co: this forward did
	 * so; gradients of those rows in the g*c buffers */
	int cls_only, co;
	block_act cl;
	float *gOutc, *gMidc, *gInc, *gCtxc, *gF1c, *gF2c;
	size_t bytes;
};

bert_ws *bert_ws_new(const bert *m, int B, int T, int threads) { return bert_ws_new_on(m, B, T, threads, &nn_cpu); }

bert_ws *bert_ws_new_on(const bert *m, int B, int T, int threads, const nn_ops *ops)
{
	bert_ws *w = xcalloc(1, sizeof *w);
	nn_ctx_init(&w->nn, ops, threads);
	nn_ctx *c = &w->nn;
	const bert_config *cf = &m->cfg;
	size_t N = (size_t)B * (size_t)T, C = (size_t)cf->hidden, I = (size_t)cf->inter, F = N * C * sizeof(float);
#define A(n) (w->bytes += (size_t)(n), (float *)nn_alloc(c, (size_t)(n)))
	w->B = B;
	w->T = T;
	w->N = (int)N;
	w->C = cf->hidden;
	w->H = cf->n_head;
	w->nl = cf->n_layer;
	w->ids = nn_alloc(c, N * sizeof *w->ids);
	w->types = nn_alloc(c, N * sizeof *w->types);
	w->pos = nn_alloc(c, N * sizeof *w->pos);
	w->mask = nn_alloc(c, N);
	w->htypes = xcalloc(N, sizeof *w->htypes);
	w->hlab = xcalloc(N, sizeof *w->hlab);
	for (size_t i = 0; i < N; i++)
		w->htypes[i] = (uint32_t)(i % (size_t)T);
	nn_upload(c, w->pos, w->htypes, N * sizeof *w->pos);
	if (!nn_on_host(ops)) {
		w->p = A(m->nparams * sizeof(float));
		nn_upload(c, w->p, m->p, m->nparams * sizeof(float));
	}
	if (nn_attention_lse(c))
		w->lse = A((size_t)(cf->n_layer ? cf->n_layer : 1) * N * (size_t)cf->n_head * sizeof(float));
	w->emb = A(F);
	w->h0 = A(F);
	w->me = A(N * sizeof(float));
	w->re = A(N * sizeof(float));
	w->l = xcalloc((size_t)(cf->n_layer ? cf->n_layer : 1), sizeof *w->l);
	for (int l = 0; l < cf->n_layer; l++) {
		block_act *a = &w->l[l];
		a->x = l ? w->l[l - 1].out : w->h0;
		a->qkv = A(3 * F);
		a->ctx = A(F);
		a->res1 = A(F);
		a->h1 = A(F);
		a->m1 = A(N * sizeof(float));
		a->r1 = A(N * sizeof(float));
		a->f1 = A(N * I * sizeof(float));
		a->f2 = A(N * I * sizeof(float));
		a->res2 = A(F);
		a->out = A(F);
		a->m2 = A(N * sizeof(float));
		a->r2 = A(N * sizeof(float));
	}
	size_t K = (size_t)cf->nlabels;
	w->nlogits = cf->head == BERT_SEQCLS ? (size_t)B * K : cf->head == BERT_TOKCLS ? N * K : cf->head == BERT_MLM ? N * (size_t)cf->vocab : 1;
	w->logits = A(w->nlogits * sizeof(float));
	w->dlogits = A(w->nlogits * sizeof(float));
	w->lab_i = (int32_t *)A(N * sizeof *w->lab_i);
	w->lab_f = A(N * (K ? K : 1) * sizeof *w->lab_f);
	if (!nn_on_host(ops)) {
		w->hlogits = xcalloc(w->nlogits, sizeof *w->hlogits);
		w->hhidden = xcalloc(N * C, sizeof *w->hhidden);
	}
	if (cf->head == BERT_SEQCLS || cf->head == BERT_BASE) {
		w->cls = A((size_t)B * C * sizeof(float));
		w->pool1 = A((size_t)B * C * sizeof(float));
		w->pool = A((size_t)B * C * sizeof(float));
		w->gP1 = A((size_t)B * C * sizeof(float));
		w->gP2 = A((size_t)B * C * sizeof(float));
		w->gCls = A((size_t)B * C * sizeof(float));
	}
	if (cf->head == BERT_MLM) {
		w->t1 = A(F);
		w->t2 = A(F);
		w->t3 = A(F);
		w->mt = A(N * sizeof(float));
		w->rt = A(N * sizeof(float));
		w->hs = A(F);
		w->rows = xcalloc(N, sizeof *w->rows);
	}
	if (!m->lora)
		w->g = A(m->nparams * sizeof(float));
	if (cf->dropout > 0) {
		w->h0d = A(F);
		w->dtmp = A(F);
		w->cin = A(F);
	}
	w->gOut = A(F);
	w->gIn = A(F);
	w->gRes = A(F);
	w->gMid = A(F);
	w->gCtx = A(F);
	w->gQKV = A(3 * F);
	w->gF1 = A(N * I * sizeof(float));
	w->gF2 = A(N * I * sizeof(float));
	size_t nt = (size_t)(c->threads > 64 ? 64 : c->threads), sb = nt * 2 * (size_t)T * (size_t)T * sizeof(float);
	nn_scratch(c, sb);
	w->bytes += sb + N * (3 * sizeof(uint32_t) + 1);
	if (m->lora) {
		w->lw = lora_ws_new(c, m->lora, (int)N);
		w->bytes += w->lw->bytes;
	}
	const blas_api *api = blas_get(NULL);
	if (api)
		api->set_num_threads(1);
#undef A
	return w;
}

size_t bert_ws_bytes(const bert_ws *w) { return w->bytes; }

void bert_ws_mlm_sparse(bert_ws *w, int on) { w->sparse = on; }

void bert_ws_cls_only(bert_ws *w, const bert *m, int on)
{
	w->cls_only = on;
	if (!on || w->cl.out)
		return;
	nn_ctx *c = &w->nn;
	size_t BC = (size_t)w->B * (size_t)m->cfg.hidden * sizeof(float), BI = (size_t)w->B * (size_t)m->cfg.inter * sizeof(float),
	       Bf = (size_t)w->B * sizeof(float);
	float **f[] = {&w->cl.x, &w->cl.ctx, &w->cl.res1, &w->cl.h1, &w->cl.res2, &w->cl.out,
	               &w->gOutc, &w->gMidc, &w->gInc, &w->gCtxc};
	for (size_t k = 0; k < sizeof f / sizeof *f; k++)
		*f[k] = nn_alloc(c, BC);
	float **fi[] = {&w->cl.f1, &w->cl.f2, &w->gF1c, &w->gF2c};
	for (size_t k = 0; k < sizeof fi / sizeof *fi; k++)
		*fi[k] = nn_alloc(c, BI);
	float **fr[] = {&w->cl.m1, &w->cl.r1, &w->cl.m2, &w->cl.r2};
	for (size_t k = 0; k < sizeof fr / sizeof *fr; k++)
		*fr[k] = nn_alloc(c, Bf);
	w->bytes += 10 * BC + 4 * BI + 4 * Bf;
}
void bert_ws_dropout(bert_ws *w, uint64_t seed) { w->drop_seed = seed; }

/* dropout's streams: one per site */
#define DROP_EMB 1u
#define DROP_ATT(l) (2u + 2u * (unsigned)(l))
#define DROP_FFN(l) (3u + 2u * (unsigned)(l))
#define DROP_CLS (1u << 20)
int bert_mlm_rows(const bert_ws *w) { return w->M; }

void bert_ws_free(bert_ws *w)
{
	if (!w)
		return;
	nn_ctx *c = &w->nn;
	for (int l = 0; l < w->nl; l++) {
		block_act *a = &w->l[l];
		float *b[] = {a->qkv, a->ctx, a->res1, a->h1, a->m1, a->r1, a->f1, a->f2, a->res2, a->out, a->m2, a->r2};
		for (size_t k = 0; k < sizeof b / sizeof *b; k++)
			nn_free(c, b[k]);
	}
	free(w->rows);
	float *b[] = {w->emb, w->h0, w->me, w->re, w->cls, w->pool1, w->pool, w->t1, w->t2, w->t3, w->mt, w->rt, w->hs,
	              w->logits, w->dlogits, w->g, w->gOut, w->gIn, w->gRes, w->gMid, w->gCtx, w->gQKV, w->gF1, w->gF2,
	              w->gP1, w->gP2, w->gCls, w->h0d, w->cin, w->dtmp};
	for (size_t k = 0; k < sizeof b / sizeof *b; k++)
		if (b[k])
			nn_free(c, b[k]);
	lora_ws_free(c, w->lw);
	float *cb[] = {w->cl.x, w->cl.ctx, w->cl.res1, w->cl.h1, w->cl.res2, w->cl.out, w->gOutc, w->gMidc, w->gInc, w->gCtxc,
	               w->cl.f1, w->cl.f2, w->gF1c, w->gF2c, w->cl.m1, w->cl.r1, w->cl.m2, w->cl.r2};
	for (size_t k = 0; k < sizeof cb / sizeof *cb; k++)
		if (cb[k])
			nn_free(c, cb[k]);
	free(w->l);
	void *d[] = {w->ids, w->types, w->pos, w->mask, w->lab_i, w->lab_f, w->p, w->lse};
	for (size_t k = 0; k < sizeof d / sizeof *d; k++)
		if (d[k])
			nn_free(c, d[k]);
	free(w->htypes);
	free(w->hlab);
	free(w->hlogits);
	free(w->hhidden);
	nn_ctx_free(c);
	free(w);
}

/* the last hidden states where the compute keeps them */
static const float *hidden(const bert_ws *w) { return w->nl ? w->l[w->nl - 1].out : w->h0; }

const float *bert_logits(bert_ws *w)
{
	if (!w->hlogits)
		return w->logits;
	nn_download(&w->nn, w->hlogits, w->logits, w->nlogits * sizeof(float));
	return w->hlogits;
}
const float *bert_hidden(bert_ws *w)
{
	if (!w->hhidden)
		return hidden(w);
	nn_download(&w->nn, w->hhidden, hidden(w), (size_t)w->N * (size_t)w->C * sizeof(float));
	return w->hhidden;
}
float *bert_grad(bert_ws *w) { return w->g; }
float *bert_lora_grad(bert_ws *w) { return w->lw ? w->lw->g : NULL; }
float *bert_ws_params(bert_ws *w, const bert *m) { return w->p ? w->p : m->p; }
float *bert_ws_lora_params(bert_ws *w, const bert *m) { return w->lw ? lora_ws_params(w->lw, m->lora) : NULL; }
nn_ctx *bert_ws_nn(bert_ws *w) { return &w->nn; }

/* a parameter where the compute finds it: the adapters' saved copy (a
 * classifier trained beside LoRA) or the model's own, on the workspace's
 * device */
static const float *par(const bert *m, const bert_ws *w, const char *name)
{
	const float *s = lora_saved_ptr(m->lora, name);
	if (s)
		return lora_ws_params(w->lw, m->lora) + (s - m->lora->p);
	return (w->p ? w->p : m->p) + bert_find(m, name)->off;
}

/* its gradient; NULL when frozen */
static float *grd(const bert *m, bert_ws *w, const char *name)
{
	const float *s = lora_saved_ptr(m->lora, name);
	if (s)
		return w->lw->g + (size_t)(s - m->lora->p);
	return w->g ? w->g + bert_find(m, name)->off : NULL;
}

static const char *lay(char *nm, size_t n, int l, const char *s)
{
	snprintf(nm, n, "bert.encoder.layer.%d.%s", l, s);
	return nm;
}

#define LP(s) par(m, w, lay(nm, sizeof nm, l, s))
#define LG(s) grd(m, w, lay(nm, sizeof nm, l, s))

/* A block after its attention: x + dense(ctx), LayerNorm, the feed-forward
 * layers, x + ..., LayerNorm, on `rows` rows of a's buffers */
static void block_tail_forward(const bert *m, bert_ws *w, int l, block_act *a, int rows)
{
	const bert_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const lora *lo = m->lora;
	int C = cf->hidden, I = cf->inter;
	size_t F = (size_t)rows * (size_t)C * sizeof(float);
	int drop = w->dropped;
	float p = cf->dropout;
	uint64_t ds = w->drop_seed;
	char nm[96];
	nn_copy(c, a->res1, a->x, F);
	if (drop) { /* x + dropout(dense(ctx)) */
		linear_forward(c, w->dtmp, a->ctx, LP("attention.output.dense.weight"), LP("attention.output.dense.bias"), rows,
		               C, C, NN_W_OUT_IN, 0);
		lora_forward(c, w->lw, lo, l, 3, w->dtmp, C, a->ctx);
		dropout_add(c, a->res1, w->dtmp, (size_t)rows * (size_t)C, p, ds, DROP_ATT(l));
	} else {
		linear_forward(c, a->res1, a->ctx, LP("attention.output.dense.weight"), LP("attention.output.dense.bias"), rows,
		               C, C, NN_W_OUT_IN, 1);
		lora_forward(c, w->lw, lo, l, 3, a->res1, C, a->ctx);
	}
	layernorm_forward(c, a->h1, a->m1, a->r1, a->res1, LP("attention.output.LayerNorm.weight"),
	                  LP("attention.output.LayerNorm.bias"), rows, C, cf->eps);
	linear_forward(c, a->f1, a->h1, LP("intermediate.dense.weight"), LP("intermediate.dense.bias"), rows, C, I,
	               NN_W_OUT_IN, 0);
	lora_forward(c, w->lw, lo, l, 4, a->f1, I, a->h1);
	gelu_forward(c, a->f2, a->f1, (size_t)rows * (size_t)I, cf->act);
	nn_copy(c, a->res2, a->h1, F);
	if (drop) { /* h1 + dropout(dense(f2)) */
		linear_forward(c, w->dtmp, a->f2, LP("output.dense.weight"), LP("output.dense.bias"), rows, I, C, NN_W_OUT_IN,
		               0);
		lora_forward(c, w->lw, lo, l, 5, w->dtmp, C, a->f2);
		dropout_add(c, a->res2, w->dtmp, (size_t)rows * (size_t)C, p, ds, DROP_FFN(l));
	} else {
		linear_forward(c, a->res2, a->f2, LP("output.dense.weight"), LP("output.dense.bias"), rows, I, C, NN_W_OUT_IN,
		               1);
		lora_forward(c, w->lw, lo, l, 5, a->res2, C, a->f2);
	}
	layernorm_forward(c, a->out, a->m2, a->r2, a->res2, LP("output.LayerNorm.weight"), LP("output.LayerNorm.bias"),
	                  rows, C, cf->eps);
}

double bert_forward(const bert *m, bert_ws *w, const bert_batch *bt)
{
	const bert_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const lora *lo = m->lora;
	int B = w->B, T = w->T, N = w->N, C = cf->hidden, H = cf->n_head, K = cf->nlabels;
	char nm[96];
	nn_upload(c, w->ids, bt->ids, (size_t)N * sizeof *w->ids);
	for (int i = 0; i < N; i++)
		w->htypes[i] = bt->types ? bt->types[i] : 0;
	nn_upload(c, w->types, w->htypes, (size_t)N * sizeof *w->types);
	w->has_mask = bt->mask != NULL;
	if (bt->mask)
		nn_upload(c, w->mask, bt->mask, (size_t)N);
	const uint8_t *mask = w->has_mask ? w->mask : NULL;
	/* embeddings: word + token type, then + position (transformers' order), LayerNorm */
	embedding_forward(c, w->emb, w->ids, par(m, w, "bert.embeddings.word_embeddings.weight"), N, C, cf->vocab, 0);
	embedding_forward(c, w->emb, w->types, par(m, w, "bert.embeddings.token_type_embeddings.weight"), N, C, cf->type_vocab, 1);
	embedding_forward(c, w->emb, w->pos, par(m, w, "bert.embeddings.position_embeddings.weight"), N, C, cf->max_pos, 1);
	layernorm_forward(c, w->h0, w->me, w->re, w->emb, par(m, w, "bert.embeddings.LayerNorm.weight"),
	                  par(m, w, "bert.embeddings.LayerNorm.bias"), N, C, cf->eps);
	int drop = w->drop_seed && cf->dropout > 0 && w->dtmp;
	float p = cf->dropout;
	uint64_t ds = w->drop_seed;
	w->dropped = drop;
	if (drop)
		dropout_forward(c, w->h0d, w->h0, (size_t)N * (size_t)C, p, ds, DROP_EMB);
	if (cf->n_layer)
		w->l[0].x = drop ? w->h0d : w->h0;
	w->co = w->cls_only && w->cl.out && cf->n_layer > 0 && !lo && (cf->head == BERT_SEQCLS || cf->head == BERT_BASE);
	for (int l = 0; l < cf->n_layer; l++) {
		block_act *a = &w->l[l];
		linear_forward(c, a->qkv, a->x, LP("attention.self.query.weight"), LP("attention.self.query.bias"), N, C, 3 * C,
		               NN_W_OUT_IN, 0);
		for (int s = 0; s < 3; s++)
			lora_forward(c, w->lw, lo, l, s, a->qkv + s * C, 3 * C, a->x);
		attention_forward_keep(c, a->ctx, w->lse ? w->lse + (size_t)l * (size_t)N * (size_t)H : NULL, a->qkv, mask, B, T, C,
		                       H, 0);
		if (l == cf->n_layer - 1 && w->co) {
			/* the heads read the last layer only at [CLS]: the rest of it on
			 * those rows alone, gathered, then put back in place */
			block_act *k = &w->cl;
			for (int b = 0; b < B; b++) {
				size_t from = (size_t)b * (size_t)T * (size_t)C, to = (size_t)b * (size_t)C;
				nn_copy(c, k->x + to, a->x + from, (size_t)C * sizeof(float));
				nn_copy(c, k->ctx + to, a->ctx + from, (size_t)C * sizeof(float));
			}
			block_tail_forward(m, w, l, k, B);
			for (int b = 0; b < B; b++)
				nn_copy(c, a->out + (size_t)b * (size_t)T * (size_t)C, k->out + (size_t)b * (size_t)C,
				        (size_t)C * sizeof(float));
		} else {
			block_tail_forward(m, w, l, a, N);
		}
	}
	const float *h = hidden(w);
	double loss = 0;
	w->labelled = bt->labels_i || bt->labels_f;
	if (cf->head == BERT_SEQCLS || cf->head == BERT_BASE) {
		for (int b = 0; b < B; b++)
			nn_copy(c, w->cls + (size_t)b * (size_t)C, h + (size_t)b * (size_t)T * (size_t)C, (size_t)C * sizeof(float));
		linear_forward(c, w->pool1, w->cls, par(m, w, "bert.pooler.dense.weight"), par(m, w, "bert.pooler.dense.bias"), B, C, C,
		               NN_W_OUT_IN, 0);
		tanh_forward(c, w->pool, w->pool1, (size_t)B * (size_t)C);
	}
	if (cf->head == BERT_SEQCLS) {
		const float *ci = w->pool;
		if (drop) {
			dropout_forward(c, w->cin, w->pool, (size_t)B * (size_t)C, p, ds, DROP_CLS);
			ci = w->cin;
		}
		linear_forward(c, w->logits, ci, par(m, w, "classifier.weight"), par(m, w, "classifier.bias"), B, C, K, NN_W_OUT_IN, 0);
		if (cf->problem == BERT_SINGLE && bt->labels_i) {
			nn_upload(c, w->lab_i, bt->labels_i, (size_t)B * sizeof *w->lab_i);
			loss = softmax_crossentropy(c, w->dlogits, w->logits, w->lab_i, B, K, NULL);
		} else if (cf->problem != BERT_SINGLE && bt->labels_f) {
			size_t n = (size_t)B * (size_t)K;
			nn_upload(c, w->lab_f, bt->labels_f, n * sizeof *w->lab_f);
			loss = cf->problem == BERT_MULTI ? bce_logits(c, w->dlogits, w->logits, w->lab_f, NULL, n, NULL)
			                                 : mse_loss(c, w->dlogits, w->logits, w->lab_f, NULL, n, NULL);
		} else {
			w->labelled = 0;
		}
	} else if (cf->head == BERT_TOKCLS) {
		const float *ci = h;
		if (drop) {
			dropout_forward(c, w->cin, h, (size_t)N * (size_t)C, p, ds, DROP_CLS);
			ci = w->cin;
		}
		linear_forward(c, w->logits, ci, par(m, w, "classifier.weight"), par(m, w, "classifier.bias"), N, C, K, NN_W_OUT_IN, 0);
		if (bt->labels_i) {
			nn_upload(c, w->lab_i, bt->labels_i, (size_t)N * sizeof *w->lab_i);
			loss = softmax_crossentropy(c, w->dlogits, w->logits, w->lab_i, N, K, NULL);
		}
	} else if (cf->head == BERT_MLM) {
		/* sparse (training): the head on the labelled rows only, gathered */
		int M = N;
		const float *hin = h;
		if (w->sparse && bt->labels_i) {
			M = 0;
			for (int i = 0; i < N; i++)
				if (bt->labels_i[i] >= 0 && bt->labels_i[i] < cf->vocab) {
					w->rows[M] = i;
					w->hlab[M] = bt->labels_i[i];
					nn_copy(c, w->hs + (size_t)M * (size_t)C, h + (size_t)i * (size_t)C, (size_t)C * sizeof(float));
					M++;
				}
			hin = w->hs;
			nn_upload(c, w->lab_i, w->hlab, (size_t)M * sizeof *w->lab_i);
		} else if (bt->labels_i) {
			nn_upload(c, w->lab_i, bt->labels_i, (size_t)N * sizeof *w->lab_i);
		}
		w->M = M;
		if (M > 0) {
			linear_forward(c, w->t1, hin, par(m, w, "cls.predictions.transform.dense.weight"),
			               par(m, w, "cls.predictions.transform.dense.bias"), M, C, C, NN_W_OUT_IN, 0);
			gelu_forward(c, w->t2, w->t1, (size_t)M * (size_t)C, cf->act);
			layernorm_forward(c, w->t3, w->mt, w->rt, w->t2, par(m, w, "cls.predictions.transform.LayerNorm.weight"),
			                  par(m, w, "cls.predictions.transform.LayerNorm.bias"), M, C, cf->eps);
			/* the decoder: tied to the word embeddings, its own bias */
			linear_forward(c, w->logits, w->t3, par(m, w, "bert.embeddings.word_embeddings.weight"),
			               par(m, w, "cls.predictions.bias"), M, C, cf->vocab, NN_W_OUT_IN, 0);
		}
		if (bt->labels_i && M > 0)
			loss = softmax_crossentropy(c, w->dlogits, w->logits, w->lab_i, M, cf->vocab, NULL);
		else if (bt->labels_i)
			w->labelled = 0;
	} else {
		w->labelled = 0;
	}
	return loss;
}

/* g (n floats) through dropout site stream: g ⊙ mask, in the workspace's scratch */
static float *drop_grad(const bert *m, bert_ws *w, const float *g, size_t n, uint64_t stream)
{
	nn_zero(&w->nn, w->dtmp, n * sizeof(float));
	dropout_backward(&w->nn, w->dtmp, g, n, m->cfg.dropout, w->drop_seed, stream);
	return w->dtmp;
}

/* linear_backward (torch's layout) with the input gradient dx written
 * rather than added: the same product, into a buffer that then needs no
 * zeroing (and that the product need not read) */
static void dense_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *wt,
                           int N, int in, int out)
{
	linear_backward(c, NULL, dw, db, dy, x, wt, N, in, out, NN_W_OUT_IN);
	matmul(c, 0, 0, N, in, out, 1.0f, dy, out, wt, in, 0.0f, dx, in);
}

/* Back through block_tail_forward on `rows` rows: from gOut (the block
 * output's gradient) to gIn (written: the residual's share of the block
 * input's gradient, q | k | v's is added later) and gCtx (written: the
 * attention output's); gMid, gF2, gF1 scratch of rows × C, I, I */
static void block_tail_backward(const bert *m, bert_ws *w, int l, const block_act *a, int rows, const float *gOut,
                                float *gMid, float *gF2, float *gF1, float *gIn, float *gCtx)
{
	const bert_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const lora *lo = m->lora;
	int C = cf->hidden, I = cf->inter, drop = w->dropped;
	size_t F = (size_t)rows * (size_t)C * sizeof(float), FI = (size_t)rows * (size_t)I * sizeof(float);
	char nm[96];
	/* output LayerNorm into gMid; the residual carries it to h1, the
	 * intermediate layer's input gradient is added to it there */
	nn_zero(c, gMid, F);
	layernorm_backward(c, gMid, LG("output.LayerNorm.weight"), LG("output.LayerNorm.bias"), gOut, a->res2,
	                   LP("output.LayerNorm.weight"), a->m2, a->r2, rows, C);
	const float *gd = gMid; /* the dense layer's output gradient: through its dropout */
	if (drop)
		gd = drop_grad(m, w, gMid, (size_t)rows * (size_t)C, DROP_FFN(l));
	dense_backward(c, gF2, LG("output.dense.weight"), LG("output.dense.bias"), gd, a->f2, LP("output.dense.weight"), rows,
	               I, C);
	lora_backward(c, w->lw, lo, l, 5, gF2, gd, C, a->f2);
	nn_zero(c, gF1, FI);
	gelu_backward(c, gF1, gF2, a->f1, (size_t)rows * (size_t)I, cf->act);
	linear_backward(c, gMid, LG("intermediate.dense.weight"), LG("intermediate.dense.bias"), gF1, a->h1,
	                LP("intermediate.dense.weight"), rows, C, I, NN_W_OUT_IN);
	lora_backward(c, w->lw, lo, l, 4, gMid, gF1, I, a->h1);
	/* attention's LayerNorm (into gIn), dense */
	nn_zero(c, gIn, F);
	layernorm_backward(c, gIn, LG("attention.output.LayerNorm.weight"), LG("attention.output.LayerNorm.bias"), gMid,
	                   a->res1, LP("attention.output.LayerNorm.weight"), a->m1, a->r1, rows, C);
	gd = gIn;
	if (drop)
		gd = drop_grad(m, w, gIn, (size_t)rows * (size_t)C, DROP_ATT(l));
	dense_backward(c, gCtx, LG("attention.output.dense.weight"), LG("attention.output.dense.bias"), gd, a->ctx,
	               LP("attention.output.dense.weight"), rows, C, C);
	lora_backward(c, w->lw, lo, l, 3, gCtx, gd, C, a->ctx);
}

void bert_backward(const bert *m, bert_ws *w)
{
	const bert_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const lora *lo = m->lora;
	if (!w->labelled)
		return;
	int B = w->B, T = w->T, N = w->N, C = cf->hidden, H = cf->n_head, K = cf->nlabels;
	size_t F = (size_t)N * (size_t)C * sizeof(float);
	const uint8_t *mask = w->has_mask ? w->mask : NULL;
	const float *h = hidden(w);
	char nm[96];
	int drop = w->dropped;
	nn_zero(c, w->gOut, F);
	if (cf->head == BERT_SEQCLS) {
		nn_zero(c, w->gP1, (size_t)B * (size_t)C * sizeof(float));
		nn_zero(c, w->gP2, (size_t)B * (size_t)C * sizeof(float));
		nn_zero(c, w->gCls, (size_t)B * (size_t)C * sizeof(float));
		linear_backward(c, w->gP1, grd(m, w, "classifier.weight"), grd(m, w, "classifier.bias"), w->dlogits,
		                drop ? w->cin : w->pool, par(m, w, "classifier.weight"), B, C, K, NN_W_OUT_IN);
		if (drop) { /* through the classifier's dropout */
			size_t BC = (size_t)B * (size_t)C;
			nn_copy(c, w->gP1, drop_grad(m, w, w->gP1, BC, DROP_CLS), BC * sizeof(float));
		}
		tanh_backward(c, w->gP2, w->gP1, w->pool, (size_t)B * (size_t)C);
		linear_backward(c, w->gCls, grd(m, w, "bert.pooler.dense.weight"), grd(m, w, "bert.pooler.dense.bias"), w->gP2,
		                w->cls, par(m, w, "bert.pooler.dense.weight"), B, C, C, NN_W_OUT_IN);
		for (int b = 0; b < B; b++)
			nn_copy(c, w->gOut + (size_t)b * (size_t)T * (size_t)C, w->gCls + (size_t)b * (size_t)C, (size_t)C * sizeof(float));
	} else if (cf->head == BERT_TOKCLS) {
		linear_backward(c, w->gOut, grd(m, w, "classifier.weight"), grd(m, w, "classifier.bias"), w->dlogits,
		                drop ? w->cin : h, par(m, w, "classifier.weight"), N, C, K, NN_W_OUT_IN);
		if (drop) {
			nn_copy(c, w->gOut, drop_grad(m, w, w->gOut, (size_t)N * (size_t)C, DROP_CLS), F);
		}
	} else if (cf->head == BERT_MLM) {
		int M = w->M, sp = M < N || w->sparse;
		size_t FM = (size_t)M * (size_t)C * sizeof(float);
		nn_zero(c, w->gRes, FM);
		nn_zero(c, w->gMid, FM);
		nn_zero(c, w->gCtx, FM);
		linear_backward(c, w->gRes, grd(m, w, "bert.embeddings.word_embeddings.weight"), grd(m, w, "cls.predictions.bias"),
		                w->dlogits, w->t3, par(m, w, "bert.embeddings.word_embeddings.weight"), M, C, cf->vocab, NN_W_OUT_IN);
		layernorm_backward(c, w->gMid, grd(m, w, "cls.predictions.transform.LayerNorm.weight"),
		                   grd(m, w, "cls.predictions.transform.LayerNorm.bias"), w->gRes, w->t2,
		                   par(m, w, "cls.predictions.transform.LayerNorm.weight"), w->mt, w->rt, M, C);
		gelu_backward(c, w->gCtx, w->gMid, w->t1, (size_t)M * (size_t)C, cf->act);
		float *gh = sp ? w->gIn : w->gOut;
		if (sp)
			nn_zero(c, gh, FM);
		linear_backward(c, gh, grd(m, w, "cls.predictions.transform.dense.weight"),
		                grd(m, w, "cls.predictions.transform.dense.bias"), w->gCtx, sp ? w->hs : h,
		                par(m, w, "cls.predictions.transform.dense.weight"), M, C, C, NN_W_OUT_IN);
		for (int r = 0; sp && r < M; r++) /* scattered back to their rows (each once; gOut is 0) */
			nn_copy(c, w->gOut + (size_t)w->rows[r] * (size_t)C, gh + (size_t)r * (size_t)C, (size_t)C * sizeof(float));
	}
	for (int l = cf->n_layer - 1; l >= 0; l--) {
		block_act *a = &w->l[l];
		if (l == cf->n_layer - 1 && w->co) {
			/* the last layer after its attention ran on the [CLS] rows alone
			 * (bert_forward): their gradients gathered, back through it, the
			 * results put in place among zeros */
			block_act *k = &w->cl;
			for (int b = 0; b < B; b++)
				nn_copy(c, w->gOutc + (size_t)b * (size_t)C, w->gOut + (size_t)b * (size_t)T * (size_t)C,
				        (size_t)C * sizeof(float));
			block_tail_backward(m, w, l, k, B, w->gOutc, w->gMidc, w->gF2c, w->gF1c, w->gInc, w->gCtxc);
			nn_zero(c, w->gIn, F);
			nn_zero(c, w->gCtx, F);
			for (int b = 0; b < B; b++) {
				size_t to = (size_t)b * (size_t)T * (size_t)C, from = (size_t)b * (size_t)C;
				nn_copy(c, w->gIn + to, w->gInc + from, (size_t)C * sizeof(float));
				nn_copy(c, w->gCtx + to, w->gCtxc + from, (size_t)C * sizeof(float));
			}
		} else {
			block_tail_backward(m, w, l, a, N, w->gOut, w->gMid, w->gF2, w->gF1, w->gIn, w->gCtx);
		}
		nn_zero(c, w->gQKV, 3 * F);
		attention_backward_keep(c, w->gQKV, w->gCtx, a->qkv, a->ctx, w->lse ? w->lse + (size_t)l * (size_t)N * (size_t)H : NULL,
		                        mask, B, T, C, H, 0);
		linear_backward(c, w->gIn, LG("attention.self.query.weight"), LG("attention.self.query.bias"), w->gQKV, a->x,
		                LP("attention.self.query.weight"), N, C, 3 * C, NN_W_OUT_IN);
		for (int s = 0; s < 3; s++)
			lora_backward(c, w->lw, lo, l, s, w->gIn, w->gQKV + s * C, 3 * C, a->x);
		float *t = w->gOut;
		w->gOut = w->gIn;
		w->gIn = t;
	}
	/* embeddings (frozen with adapters) */
	if (!w->g)
		return;
	if (drop) { /* through the embeddings' dropout */
		nn_copy(c, w->gOut, drop_grad(m, w, w->gOut, (size_t)N * (size_t)C, DROP_EMB), F);
	}
	nn_zero(c, w->gRes, F);
	layernorm_backward(c, w->gRes, grd(m, w, "bert.embeddings.LayerNorm.weight"), grd(m, w, "bert.embeddings.LayerNorm.bias"),
	                   w->gOut, w->emb, par(m, w, "bert.embeddings.LayerNorm.weight"), w->me, w->re, N, C);
	embedding_backward(c, grd(m, w, "bert.embeddings.word_embeddings.weight"), w->ids, w->gRes, N, C, cf->vocab);
	embedding_backward(c, grd(m, w, "bert.embeddings.token_type_embeddings.weight"), w->types, w->gRes, N, C, cf->type_vocab);
	embedding_backward(c, grd(m, w, "bert.embeddings.position_embeddings.weight"), w->pos, w->gRes, N, C, cf->max_pos);
}
