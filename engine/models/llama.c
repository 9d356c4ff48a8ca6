#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/blas.h"
#include "../nn/nn.h"
#include "../nn/ptune.h"

/* --- configuration -------------------------------------------------------------------- */

static const jnode *mem(const jnode *o, const char *name) { return o ? json_member(o, name, strlen(name)) : NULL; }

/* an optional integer member: absent or null keeps *v */
static int opt_int(herr *e, const jnode *o, const char *name, long long lo, long long hi, int *v, const char *what)
{
	const jnode *j = mem(o, name);
	long long x;
	if (!j || j->t == J_NULL)
		return 0;
	if (json_int(j, lo, hi, &x) != 0)
		return herr_set(e, "%s: %s: expected an integer in %lld..%lld", what, name, lo, hi);
	*v = (int)x;
	return 0;
}

static int opt_num(herr *e, const jnode *o, const char *name, double *v, const char *what)
{
	const jnode *j = mem(o, name);
	if (!j || j->t == J_NULL)
		return 0;
	if (json_number(j, v) != 0 || !(*v > 0))
		return herr_set(e, "%s: %s: expected a positive number", what, name);
	return 0;
}

static int opt_bool(herr *e, const jnode *o, const char *name, int *v, const char *what)
{
	const jnode *j = mem(o, name);
	if (!j || j->t == J_NULL)
		return 0;
	if (j->t != J_TRUE && j->t != J_FALSE)
		return herr_set(e, "%s: %s: expected true or false", what, name);
	*v = j->t == J_TRUE;
	return 0;
}

static int is_str(const jnode *j, const char *s) { return j && j->t == J_STR && j->len == strlen(s) && !memcmp(j->s, s, j->len); }

/* rope_scaling (or rope_parameters): its type and factors */
static int rope_parse(herr *e, llama_config *c, const jnode *rs, const char *what)
{
	if (!rs || rs->t == J_NULL)
		return 0;
	if (rs->t != J_OBJ)
		return herr_set(e, "%s: rope_scaling: expected an object or null", what);
	if (opt_num(e, rs, "rope_theta", &c->theta, what)) /* rope_parameters carries the base too */
		return -1;
	const jnode *ty = mem(rs, "rope_type");
	if (!ty)
		ty = mem(rs, "type");
	if (!ty || is_str(ty, "default"))
		return 0;
	if (is_str(ty, "linear"))
		c->rope_type = ROPE_LINEAR;
	else if (is_str(ty, "llama3"))
		c->rope_type = ROPE_LLAMA3;
	else {
		herr_set(e, "%s: rope_scaling: type \"%.*s\" is not supported (supported: default, linear, llama3)", what,
		         ty->t == J_STR ? (int)(ty->len < 40 ? ty->len : 40) : 1, ty->t == J_STR ? ty->s : "?");
		return herr_hint(e, "positions scaled another way would give other logits; use a checkpoint with one of these");
	}
	c->rope_factor = 1;
	if (opt_num(e, rs, "factor", &c->rope_factor, what))
		return -1;
	if (c->rope_type == ROPE_LLAMA3) {
		c->low_freq = 1;
		c->high_freq = 4;
		c->rope_orig_max = 8192;
		if (opt_num(e, rs, "low_freq_factor", &c->low_freq, what) || opt_num(e, rs, "high_freq_factor", &c->high_freq, what) ||
		    opt_int(e, rs, "original_max_position_embeddings", 1, 1 << 24, &c->rope_orig_max, what))
			return -1;
		if (!(c->high_freq > c->low_freq))
			return herr_set(e, "%s: rope_scaling: high_freq_factor must be above low_freq_factor", what);
	}
	return 0;
}

int llama_config_parse(herr *e, llama_config *c, const char *json, size_t n, const char *what)
{
	memset(c, 0, sizeof *c);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je);
	model_arch arch = ARCH_LLAMA;
	int rc = 0;
	if (!r || r->t != J_OBJ)
		rc = herr_set(e, "%s: not a JSON object", what);
	else if (model_detect(e, json, n, what, &arch) != 0)
		rc = -1;
	else if (arch != ARCH_LLAMA)
		rc = herr_set(e, "%s: a %s model, where a Llama-family one (llama, mistral, qwen2) is needed", what,
		              model_arch_name(arch));
	if (rc) {
		json_arena_free(a);
		return rc;
	}
	const jnode *mt = mem(r, "model_type"), *ar = mem(r, "architectures");
	const char *fam = is_str(mt, "mistral") ? "mistral" : is_str(mt, "qwen2") ? "qwen2" : "llama";
	if (!mt && ar && ar->kid && ar->kid->t == J_STR)
		fam = !strncmp(ar->kid->s, "Mistral", 7) ? "mistral" : !strncmp(ar->kid->s, "Qwen2", 5) ? "qwen2" : "llama";
	snprintf(c->family, sizeof c->family, "%s", fam);
	long long v;
	static const char *const need[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
	                                   "num_attention_heads"};
	int *dst[] = {&c->vocab, &c->hidden, &c->inter, &c->n_layer, &c->n_head};
	for (int k = 0; k < 5 && rc == 0; k++) {
		if (json_int(mem(r, need[k]), 1, 1 << 24, &v) != 0)
			rc = herr_set(e, "%s: %s: expected a positive integer (a %s config)", what, need[k], fam);
		else
			*dst[k] = (int)v;
	}
	c->n_kv = c->n_head;
	c->max_pos = 2048;
	c->eps = 1e-6f;
	c->theta = 10000;
	c->tied = 0; /* transformers' default for all three */
	int qwen = !strcmp(fam, "qwen2"), use_sw = !strcmp(fam, "mistral");
	double eps = 1e-6;
	if (rc == 0)
		rc = opt_int(e, r, "num_key_value_heads", 1, 1 << 16, &c->n_kv, what) ||
		     opt_int(e, r, "max_position_embeddings", 1, 1 << 24, &c->max_pos, what) ||
		     opt_num(e, r, "rms_norm_eps", &eps, what) || opt_num(e, r, "rope_theta", &c->theta, what) ||
		     opt_bool(e, r, "tie_word_embeddings", &c->tied, what) || opt_bool(e, r, "use_sliding_window", &use_sw, what);
	c->head_dim = c->n_head ? c->hidden / c->n_head : 0;
	if (rc == 0)
		rc = opt_int(e, r, "head_dim", 1, 1 << 16, &c->head_dim, what);
	c->eps = (float)eps;
	int ab = 0;
	if (rc == 0)
		rc = opt_bool(e, r, "attention_bias", &ab, what) || opt_bool(e, r, "mlp_bias", &c->mlp_bias, what);
	c->qkv_bias = qwen || ab; /* Qwen2 has q, k, v biases always, and no o_proj bias */
	c->o_bias = !qwen && ab;
	if (rc == 0 && use_sw && qwen) {
		rc = herr_set(e, "%s: use_sliding_window: true is not supported for qwen2 (its window covers only some layers)",
		              what);
		herr_hint(e, "set use_sliding_window to false, as Qwen2's released checkpoints have it");
	}
	if (rc == 0 && use_sw)
		rc = opt_int(e, r, "sliding_window", 1, 1 << 24, &c->sliding_window, what);
	if (!use_sw)
		c->sliding_window = 0;
	if (rc == 0) {
		const jnode *rs = mem(r, "rope_parameters");
		rc = rope_parse(e, c, rs ? rs : mem(r, "rope_scaling"), what);
	}
	const jnode *act = mem(r, "hidden_act");
	if (rc == 0 && act && !is_str(act, "silu"))
		rc = herr_set(e, "%s: hidden_act: only silu (SwiGLU) is supported, got %.*s", what,
		              act->t == J_STR ? (int)(act->len < 40 ? act->len : 40) : 1, act->t == J_STR ? act->s : "?");
	if (rc == 0 && (c->n_head % c->n_kv))
		rc = herr_set(e, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, c->n_head, c->n_kv);
	if (rc == 0 && (c->head_dim % 2))
		rc = herr_set(e, "%s: head_dim %d is odd: rotary embeddings rotate pairs", what, c->head_dim);
	json_arena_free(a);
	return rc;
}

void llama_config_json(const llama_config *c, buf *out)
{
	const char *cls = !strcmp(c->family, "mistral") ? "MistralForCausalLM"
	                  : !strcmp(c->family, "qwen2") ? "Qwen2ForCausalLM"
	                                                : "LlamaForCausalLM";
	buf_printf(out, "{\n  \"model_type\": \"%s\",\n  \"architectures\": [\"%s\"],\n", c->family[0] ? c->family : "llama", cls);
	buf_printf(out,
	           "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
	           "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
	           "  \"head_dim\": %d,\n  \"max_position_embeddings\": %d,\n  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": ",
	           c->vocab, c->hidden, c->inter, c->n_layer, c->n_head, c->n_kv, c->head_dim, c->max_pos);
	buf_json_float(out, c->eps);
	buf_adds(out, ",\n  \"rope_theta\": ");
	buf_json_num(out, c->theta);
	if (c->rope_type == ROPE_LINEAR) {
		buf_adds(out, ",\n  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": ");
		buf_json_num(out, c->rope_factor);
		buf_adds(out, "}");
	} else if (c->rope_type == ROPE_LLAMA3) {
		buf_adds(out, ",\n  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": ");
		buf_json_num(out, c->rope_factor);
		buf_adds(out, ", \"low_freq_factor\": ");
		buf_json_num(out, c->low_freq);
		buf_adds(out, ", \"high_freq_factor\": ");
		buf_json_num(out, c->high_freq);
		buf_printf(out, ", \"original_max_position_embeddings\": %d}", c->rope_orig_max);
	}
	if (strcmp(c->family, "qwen2"))
		buf_printf(out, ",\n  \"attention_bias\": %s", c->o_bias ? "true" : "false");
	buf_printf(out, ",\n  \"mlp_bias\": %s,\n  \"tie_word_embeddings\": %s", c->mlp_bias ? "true" : "false",
	           c->tied ? "true" : "false");
	if (c->sliding_window)
		buf_printf(out, ",\n  \"sliding_window\": %d", c->sliding_window);
	buf_adds(out, ",\n  \"torch_dtype\": \"float32\"\n}\n");
}

/* --- layout ---------------------------------------------------------------------------- */

int llama_init(herr *e, llama *m, const llama_config *c)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	m->dtype = ST_F32;
	int C = c->hidden, I = c->inter, HD = c->n_head * c->head_dim, KD = c->n_kv * c->head_dim;
	m->t = xcalloc((size_t)c->n_layer * 16 + 4, sizeof *m->t);
	size_t at = 0;
	char nm[96];
	model_add_tensor(m->t, &m->nt, &at, "model.embed_tokens.weight", c->vocab, C);
	for (int l = 0; l < c->n_layer; l++) {
#define T(suffix, d0, d1) (snprintf(nm, sizeof nm, "model.layers.%d." suffix, l), model_add_tensor(m->t, &m->nt, &at, nm, d0, d1))
		T("input_layernorm.weight", C, 0);
		T("self_attn.q_proj.weight", HD, C); /* q, k, v: one [HD + 2KD, C] product */
		T("self_attn.k_proj.weight", KD, C);
		T("self_attn.v_proj.weight", KD, C);
		if (c->qkv_bias) {
			T("self_attn.q_proj.bias", HD, 0);
			T("self_attn.k_proj.bias", KD, 0);
			T("self_attn.v_proj.bias", KD, 0);
		}
		T("self_attn.o_proj.weight", C, HD);
		if (c->o_bias)
			T("self_attn.o_proj.bias", C, 0);
		T("post_attention_layernorm.weight", C, 0);
		T("mlp.gate_proj.weight", I, C); /* gate, up: one [2I, C] product */
		T("mlp.up_proj.weight", I, C);
		if (c->mlp_bias) {
			T("mlp.gate_proj.bias", I, 0);
			T("mlp.up_proj.bias", I, 0);
		}
		T("mlp.down_proj.weight", C, I);
		if (c->mlp_bias)
			T("mlp.down_proj.bias", C, 0);
#undef T
	}
	model_add_tensor(m->t, &m->nt, &at, "model.norm.weight", C, 0);
	if (!c->tied)
		model_add_tensor(m->t, &m->nt, &at, "lm_head.weight", c->vocab, C);
	m->nparams = at;
	if (at > ((size_t)1 << 34))
		return herr_set(e, "a Llama config with %zu parameters is too large", at);
	m->p = xcalloc(at, sizeof *m->p);
	return 0;
}

void llama_free(llama *m)
{
	free(m->p);
	free(m->t);
	free(m->config_json);
	memset(m, 0, sizeof *m);
}

const model_tensor *llama_find(const llama *m, const char *name) { return model_find(m->t, m->nt, name); }

int llama_check_len(herr *e, const llama *m, int T, const char *what)
{
	if (!m->cfg.sliding_window || T <= m->cfg.sliding_window)
		return 0;
	herr_set(e, "%s: sequences of %d tokens are longer than the model's sliding_window of %d, which hone's attention "
	         "does not apply", what, T, m->cfg.sliding_window);
	return herr_hint(e, "cut the rows to at most %d tokens (tokenize { max_len = %d })", m->cfg.sliding_window,
	                 m->cfg.sliding_window);
}

void llama_init_random(llama *m, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x6C6C616D61ull;
	for (size_t i = 0; i < m->nt; i++) {
		const model_tensor *t = &m->t[i];
		size_t len = strlen(t->name);
		int norm = strstr(t->name, "norm.weight") != NULL, bias = len > 5 && !strcmp(t->name + len - 5, ".bias");
		for (size_t k = 0; k < t->n; k++)
			m->p[t->off + k] = bias ? 0.0f : norm ? 1.0f : (float)(0.02 * model_normal(&s));
	}
}

/* --- checkpoints ------------------------------------------------------------------------ */

typedef struct load_ctx {
	llama *m;
	uint8_t *seen;
	float *head; /* an lm_head.weight beside a tied embedding: checked against it */
} load_ctx;

static int ignorable(const char *name)
{
	size_t n = strlen(name);
	return n > 22 && !strcmp(name + n - 22, "rotary_emb.inv_freq");
}

static int take(void *ud, herr *e, const st_file *f, const char *path)
{
	load_ctx *l = ud;
	llama *m = l->m;
	for (size_t i = 0; i < f->n; i++) {
		const char *name = f->t[i].name;
		char full[128];
		const model_tensor *t = llama_find(m, name);
		if (!t && strncmp(name, "model.", 6) && strcmp(name, "lm_head.weight")) { /* a LlamaModel's names */
			snprintf(full, sizeof full, "model.%s", name);
			t = llama_find(m, full);
		}
		if (!t && !strcmp(name, "lm_head.weight") && m->cfg.tied) {
			const model_tensor *emb = llama_find(m, "model.embed_tokens.weight");
			free(l->head);
			l->head = xmalloc(emb->n * sizeof(float));
			if (st_to_f32(e, f, path, name, 2, emb->shape, l->head, NULL) != 0)
				return -1;
			continue;
		}
		if (!t) {
			if (ignorable(name))
				continue;
			return herr_set(e, "%s: tensor '%s' is not part of a %s model of this config", path, name, m->cfg.family);
		}
		st_dtype dt;
		if (st_to_f32(e, f, path, name, t->ndim, t->shape, m->p + t->off, &dt) != 0)
			return -1;
		m->dtype = dt;
		l->seen[t - m->t] = 1;
	}
	return 0;
}

int llama_load_dir(herr *e, llama *m, const char *dir)
{
	memset(m, 0, sizeof *m);
	char *cp = path_join(dir, "config.json");
	buf cfg;
	buf_init(&cfg);
	llama_config c;
	int rc = fs_read(e, cp, &cfg);
	if (rc == 0)
		rc = llama_config_parse(e, &c, cfg.p, cfg.len, cp);
	if (rc == 0)
		rc = llama_init(e, m, &c);
	load_ctx l = {m, rc == 0 ? xcalloc(m->nt, 1) : NULL, NULL};
	if (rc == 0)
		rc = model_load_dir(e, dir, take, &l);
	for (size_t i = 0; rc == 0 && i < m->nt; i++)
		if (!l.seen[i])
			rc = herr_set(e, "%s: no tensor '%s' in the checkpoint", dir, m->t[i].name);
	if (rc == 0 && l.head) {
		const model_tensor *emb = llama_find(m, "model.embed_tokens.weight");
		if (memcmp(l.head, m->p + emb->off, emb->n * sizeof(float))) {
			herr_set(e, "%s: lm_head.weight differs from model.embed_tokens.weight, and config.json says "
			         "tie_word_embeddings: true", dir);
			rc = herr_hint(e, "set tie_word_embeddings to false in config.json if the head is its own");
		}
	}
	free(l.head);
	free(l.seen);
	if (rc == 0)
		m->config_json = xstrndup(cfg.p, cfg.len);
	else if (m->p)
		llama_free(m);
	buf_free(&cfg);
	free(cp);
	return rc;
}

int llama_save_dir(herr *e, const llama *m, const float *base, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	if (m->config_json)
		buf_adds(&cfg, m->config_json);
	else
		llama_config_json(&m->cfg, &cfg);
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	const float *p = base ? base : m->p;
	for (size_t i = 0; i < m->nt; i++)
		st_add_as(&w, m->t[i].name, p + m->t[i].off, m->t[i].ndim, m->t[i].shape, m->dtype);
	int rc = st_save_pair(e, dir, "config.json", &cfg, "model.safetensors", &w);
	st_writer_free(&w);
	buf_free(&cfg);
	return rc;
}

/* --- rotary embeddings ------------------------------------------------------------------ */

/* transformers' inverse frequencies, in float as it computes them */
static void inv_freq(const llama_config *c, float *f)
{
	int D = c->head_dim;
	for (int i = 0; i < D / 2; i++) {
		float ex = (float)(2 * i) / (float)D;
		f[i] = (float)(1.0 / (double)powf((float)c->theta, ex));
		if (c->rope_type == ROPE_LINEAR) {
			f[i] = (float)(f[i] / c->rope_factor);
		} else if (c->rope_type == ROPE_LLAMA3) {
			double lo_wl = c->rope_orig_max / c->low_freq, hi_wl = c->rope_orig_max / c->high_freq;
			double wl = 2 * M_PI / f[i], v = f[i];
			double scaled = wl > lo_wl ? v / c->rope_factor : v;
			if (!(wl < hi_wl) && !(wl > lo_wl)) {
				double sm = (c->rope_orig_max / wl - c->low_freq) / (c->high_freq - c->low_freq);
				scaled = (1 - sm) * scaled / c->rope_factor + sm * scaled;
			}
			f[i] = (float)scaled;
		}
	}
}

void llama_rope_table(const llama_config *c, int P, float *cs)
{
	int D = c->head_dim, h2 = D / 2;
	float *f = xmalloc((size_t)h2 * sizeof *f);
	inv_freq(c, f);
	for (int p = 0; p < P; p++)
		for (int i = 0; i < h2; i++) {
			float ang = (float)p * f[i]; /* the angle in float, as transformers' product */
			cs[(size_t)p * D + i] = (float)cos((double)ang);
			cs[(size_t)p * D + h2 + i] = (float)sin((double)ang);
		}
	free(f);
}

/* --- LoRA ------------------------------------------------------------------------------- */

static const char *const site_name[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

void llama_lora_arch(const llama *m, lora_arch *a)
{
	const llama_config *c = &m->cfg;
	int C = c->hidden, I = c->inter, HD = c->n_head * c->head_dim, KD = c->n_kv * c->head_dim;
	int in[7] = {C, C, C, HD, C, C, I}, out[7] = {HD, KD, KD, C, I, I, C};
	static const char *const path[7] = {"model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj",
	                                    "model.layers.%d.self_attn.v_proj", "model.layers.%d.self_attn.o_proj",
	                                    "model.layers.%d.mlp.gate_proj",    "model.layers.%d.mlp.up_proj",
	                                    "model.layers.%d.mlp.down_proj"};
	memset(a, 0, sizeof *a);
	a->arch = "Llama";
	a->n_layer = c->n_layer;
	a->nsite = 7;
	for (int s = 0; s < 7; s++)
		a->site[s] = (lora_site){site_name[s], path[s], in[s], out[s]};
}

static model_view llama_view(const llama *m)
{
	return (model_view){m->p, m->t, m->nt, "model.layers.%d.%s.weight", "lm_head."};
}

void llama_lora_merge(const lora *l, llama *m)
{
	model_view v = llama_view(m);
	model_lora_merge(l, &v);
}

int llama_lora_load(herr *e, lora *l, const llama *m, const char *dir)
{
	lora_arch a;
	llama_lora_arch(m, &a);
	model_view v = llama_view(m);
	return model_lora_load(e, l, &a, dir, &v);
}

/* --- compute ------------------------------------------------------------------------------ */

typedef struct layer_act {
	float *res;       /* block input, N × C */
	float *rn1, *r1;  /* input RMSNorm's output and rstd */
	float *qkvg;      /* N × (HD + 2KD): q | k | v, rotated */
	float *qkv;       /* N × 3HD: the heads attention reads (qkvg itself without grouped heads) */
	float *y, *lse;   /* attention's output (N × HD), its log-sum-exp (a fused backend's) */
	float *res2;      /* after attention */
	float *rn2, *r2;
	float *gu, *h;    /* N × 2I gate | up; N × I silu(gate) ⊙ up */
} layer_act;

struct llama_ws {
	nn_ctx nn;
	float *p;         /* the parameters on a device (NULL on the host) */
	int own_p;
	int B, T, N, nl;
	layer_act *l;
	float *res_out, *nf, *rf, *logits, *dlogits, *g;
	double count;
	float *dres, *dx, *dy, *dqkv, *dqkvg, *dgu, *dh;
	float *cs;        /* rope's table for T positions */
	uint32_t *ids, *pos;
	int32_t *tg;
	lora_ws *lw;
	float *pt_p, *pt_g; /* prompt tuning: the virtual embeddings used and their gradient */
	int own_pt;
	size_t bytes;
};

#define QKVW(cf) ((cf)->n_head * (cf)->head_dim + 2 * (cf)->n_kv * (cf)->head_dim)

static llama_ws *ws_new(const llama *m, int B, int T, int threads, const nn_ops *ops, float *shared_p)
{
	llama_ws *w = xcalloc(1, sizeof *w);
	nn_ctx_init(&w->nn, ops, threads);
	nn_ctx *c = &w->nn;
#define WSA(n) (w->bytes += (size_t)(n), (float *)nn_alloc(c, (size_t)(n)))
	const llama_config *cf = &m->cfg;
	size_t N = (size_t)B * (size_t)T, C = (size_t)cf->hidden, I = (size_t)cf->inter, HD = (size_t)cf->n_head * cf->head_dim;
	size_t QW = (size_t)QKVW(cf), F = N * sizeof(float);
	int gqa = cf->n_kv != cf->n_head;
	w->B = B;
	w->T = T;
	w->N = (int)N;
	w->nl = cf->n_layer;
	w->l = xcalloc((size_t)cf->n_layer, sizeof *w->l);
	for (int l = 0; l < cf->n_layer; l++) {
		layer_act *a = &w->l[l];
		a->res = WSA(F * C);
		a->rn1 = WSA(F * C);
		a->r1 = WSA(F);
		a->qkvg = WSA(F * QW);
		a->qkv = gqa ? WSA(F * 3 * HD) : a->qkvg;
		a->y = WSA(F * HD);
		a->lse = nn_attention_lse(c) ? WSA(F * (size_t)cf->n_head) : NULL;
		a->res2 = WSA(F * C);
		a->rn2 = WSA(F * C);
		a->r2 = WSA(F);
		a->gu = WSA(F * 2 * I);
		a->h = WSA(F * I);
	}
	w->res_out = WSA(F * C);
	w->nf = WSA(F * C);
	w->rf = WSA(F);
	w->logits = WSA(F * (size_t)cf->vocab);
	w->dlogits = WSA(F * (size_t)cf->vocab);
	if (!nn_on_host(ops) && shared_p)
		w->p = shared_p;
	else if (!nn_on_host(ops)) {
		w->p = WSA(m->nparams * sizeof(float));
		w->own_p = 1;
		nn_upload(c, w->p, m->p, m->nparams * sizeof(float));
	}
	if (!m->lora && !m->ptune)
		w->g = WSA(m->nparams * sizeof(float));
	if (m->ptune)
		ptune_ws_new(c, m->ptune, &w->pt_p, &w->pt_g, &w->own_pt, &w->bytes);
	size_t wide = C > HD ? C : HD;
	w->dres = WSA(F * C);
	w->dx = WSA(F * wide);
	w->dy = WSA(F * HD);
	w->dqkv = WSA(F * 3 * HD);
	w->dqkvg = gqa ? WSA(F * QW) : w->dqkv;
	w->dgu = WSA(F * 2 * I);
	w->dh = WSA(F * I);
	float *cs = xmalloc((size_t)T * (size_t)cf->head_dim * sizeof *cs);
	llama_rope_table(cf, T, cs);
	w->cs = WSA((size_t)T * (size_t)cf->head_dim * sizeof(float));
	nn_upload(c, w->cs, cs, (size_t)T * (size_t)cf->head_dim * sizeof(float));
	free(cs);
	w->ids = nn_alloc(c, N * sizeof *w->ids);
	w->pos = nn_alloc(c, N * sizeof *w->pos);
	w->tg = nn_alloc(c, N * sizeof *w->tg);
	w->bytes += 3 * N * sizeof(uint32_t);
	uint32_t *pos = xmalloc(N * sizeof *pos);
	for (size_t i = 0; i < N; i++)
		pos[i] = (uint32_t)(i % (size_t)T);
	nn_upload(c, w->pos, pos, N * sizeof *pos);
	free(pos);
	size_t nt = (size_t)(c->threads > 64 ? 64 : c->threads), sb = nt * 2 * (size_t)T * (size_t)T * sizeof(float);
	nn_scratch(c, sb);
	w->bytes += sb;
	if (m->lora) {
		w->lw = lora_ws_new(c, m->lora, (int)N);
		w->bytes += w->lw->bytes;
	}
	const blas_api *api = blas_get(NULL);
	if (api)
		api->set_num_threads(1);
#undef WSA
	return w;
}

llama_ws *llama_ws_new_on(const llama *m, int B, int T, int threads, const nn_ops *ops)
{
	return ws_new(m, B, T, threads, ops, NULL);
}

void llama_ws_free(llama_ws *w)
{
	if (!w)
		return;
	nn_ctx *c = &w->nn;
	for (int l = 0; w->l && l < w->nl; l++) {
		layer_act *a = &w->l[l];
		float *b[] = {a->res, a->rn1, a->r1, a->qkv != a->qkvg ? a->qkv : NULL, a->qkvg, a->y, a->lse, a->res2, a->rn2,
		              a->r2, a->gu, a->h};
		for (size_t k = 0; k < sizeof b / sizeof *b; k++)
			if (b[k])
				nn_free(c, b[k]);
	}
	free(w->l);
	lora_ws_free(c, w->lw);
	ptune_ws_free(c, w->pt_p, w->pt_g, w->own_pt);
	float *b[] = {w->res_out, w->nf, w->rf, w->logits, w->dlogits, w->g, w->dres, w->dx, w->dy,
	              w->dqkvg != w->dqkv ? w->dqkvg : NULL, w->dqkv, w->dgu, w->dh, w->cs, (float *)w->ids, (float *)w->pos,
	              (float *)w->tg, w->own_p ? w->p : NULL};
	for (size_t k = 0; k < sizeof b / sizeof *b; k++)
		if (b[k])
			nn_free(c, b[k]);
	nn_ctx_free(c);
	free(w);
}

size_t llama_ws_bytes(const llama_ws *w) { return w->bytes; }
nn_ctx *llama_ws_nn(llama_ws *w) { return &w->nn; }
float *llama_ws_params(llama_ws *w, const llama *m) { return w->p ? w->p : m->p; }
float *llama_ws_lora_params(llama_ws *w, const llama *m) { return w->lw ? lora_ws_params(w->lw, m->lora) : NULL; }
void llama_ws_dropout(llama_ws *w, uint64_t seed)
{
	if (w->lw)
		w->lw->drop_seed = seed;
}
const float *llama_logits(const llama_ws *w) { return w->logits; }
float *llama_grad(llama_ws *w) { return w->g; }
float *llama_lora_grad(llama_ws *w) { return w->lw ? w->lw->g : NULL; }
float *llama_ws_ptune_params(llama_ws *w) { return w->pt_p; }
float *llama_ptune_grad(llama_ws *w) { return w->pt_g; }

/* a tensor of layer l (NULL when the config has none: a bias) */
static const float *lp(const llama *m, const float *p, int l, const char *s)
{
	char nm[96];
	snprintf(nm, sizeof nm, "model.layers.%d.%s", l, s);
	const model_tensor *t = llama_find(m, nm);
	return t ? p + t->off : NULL;
}
static float *lg(const llama *m, float *g, int l, const char *s)
{
	char nm[96];
	snprintf(nm, sizeof nm, "model.layers.%d.%s", l, s);
	const model_tensor *t = llama_find(m, nm);
	return t && g ? g + t->off : NULL;
}
static const float *tp(const llama *m, const float *p, const char *name) { return p + llama_find(m, name)->off; }
/* the head: lm_head, or the embedding when tied */
static const char *head_name(const llama *m) { return m->cfg.tied ? "model.embed_tokens.weight" : "lm_head.weight"; }

double llama_forward(const llama *m, llama_ws *w, const uint32_t *ids, const int32_t *targets)
{
	const llama_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const float *p = w->p ? w->p : m->p;
	const lora *lo = m->lora;
	int B = w->B, T = w->T, N = w->N, C = cf->hidden, I = cf->inter, H = cf->n_head, Hk = cf->n_kv, D = cf->head_dim;
	int HD = H * D, KD = Hk * D, QW = QKVW(cf);
	size_t NC = (size_t)N * (size_t)C;
	nn_upload(c, w->ids, ids, (size_t)N * sizeof *ids);
	float *x = cf->n_layer ? w->l[0].res : w->res_out;
	embedding_forward(c, x, w->ids, tp(m, p, "model.embed_tokens.weight"), N, C, cf->vocab, 0);
	if (m->ptune)
		ptune_forward(c, w->pt_p, m->ptune, x, B, T);
	for (int l = 0; l < cf->n_layer; l++) {
		layer_act *a = &w->l[l];
		rmsnorm_forward(c, a->rn1, a->r1, a->res, lp(m, p, l, "input_layernorm.weight"), N, C, cf->eps);
		linear_forward(c, a->qkvg, a->rn1, lp(m, p, l, "self_attn.q_proj.weight"), lp(m, p, l, "self_attn.q_proj.bias"), N,
		               C, QW, NN_W_OUT_IN, 0);
		lora_forward(c, w->lw, lo, l, 0, a->qkvg, QW, a->rn1);
		lora_forward(c, w->lw, lo, l, 1, a->qkvg + HD, QW, a->rn1);
		lora_forward(c, w->lw, lo, l, 2, a->qkvg + HD + KD, QW, a->rn1);
		rope(c, a->qkvg, w->pos, w->cs, N, QW, H + Hk, D, 0);
		if (m->ptune && m->ptune->kind == PT_PREFIX) /* the layer's prefix keys (not rotated) and values */
			prefix_forward(c, w->pt_p, m->ptune, l, a->qkvg, B, T, QW, HD, HD + KD);
		if (a->qkv != a->qkvg)
			kv_expand_forward(c, a->qkv, a->qkvg, N, H, Hk, D);
		attention_forward_keep(c, a->y, a->lse, a->qkv, NULL, B, T, HD, H, 1);
		nn_copy(c, a->res2, a->res, NC * sizeof(float));
		linear_forward(c, a->res2, a->y, lp(m, p, l, "self_attn.o_proj.weight"), lp(m, p, l, "self_attn.o_proj.bias"), N,
		               HD, C, NN_W_OUT_IN, 1);
		lora_forward(c, w->lw, lo, l, 3, a->res2, C, a->y);
		rmsnorm_forward(c, a->rn2, a->r2, a->res2, lp(m, p, l, "post_attention_layernorm.weight"), N, C, cf->eps);
		linear_forward(c, a->gu, a->rn2, lp(m, p, l, "mlp.gate_proj.weight"), lp(m, p, l, "mlp.gate_proj.bias"), N, C,
		               2 * I, NN_W_OUT_IN, 0);
		lora_forward(c, w->lw, lo, l, 4, a->gu, 2 * I, a->rn2);
		lora_forward(c, w->lw, lo, l, 5, a->gu + I, 2 * I, a->rn2);
		swiglu_forward(c, a->h, a->gu, N, I);
		float *next = l + 1 < cf->n_layer ? w->l[l + 1].res : w->res_out;
		nn_copy(c, next, a->res2, NC * sizeof(float));
		linear_forward(c, next, a->h, lp(m, p, l, "mlp.down_proj.weight"), lp(m, p, l, "mlp.down_proj.bias"), N, I, C,
		               NN_W_OUT_IN, 1);
		lora_forward(c, w->lw, lo, l, 6, next, C, a->h);
	}
	rmsnorm_forward(c, w->nf, w->rf, w->res_out, tp(m, p, "model.norm.weight"), N, C, cf->eps);
	linear_forward(c, w->logits, w->nf, tp(m, p, head_name(m)), NULL, N, C, cf->vocab, NN_W_OUT_IN, 0);
	if (!targets)
		return 0;
	nn_upload(c, w->tg, targets, (size_t)N * sizeof *targets);
	return softmax_crossentropy(c, w->dlogits, w->logits, w->tg, N, cf->vocab, &w->count);
}

void llama_backward(const llama *m, llama_ws *w)
{
	const llama_config *cf = &m->cfg;
	nn_ctx *c = &w->nn;
	const float *p = w->p ? w->p : m->p;
	float *g = w->g;
	const lora *lo = m->lora;
	int B = w->B, T = w->T, N = w->N, C = cf->hidden, I = cf->inter, H = cf->n_head, Hk = cf->n_kv, D = cf->head_dim;
	int HD = H * D, KD = Hk * D, QW = QKVW(cf);
	size_t F = (size_t)N * sizeof(float);
	float *dn = w->dx;
	nn_zero(c, dn, F * (size_t)C);
	const char *hn = head_name(m);
	linear_backward(c, dn, g ? g + llama_find(m, hn)->off : NULL, NULL, w->dlogits, w->nf, tp(m, p, hn), N, C, cf->vocab,
	                NN_W_OUT_IN);
	nn_zero(c, w->dres, F * (size_t)C);
	rmsnorm_backward(c, w->dres, g ? g + llama_find(m, "model.norm.weight")->off : NULL, dn, w->res_out,
	                 tp(m, p, "model.norm.weight"), w->rf, N, C);
	for (int l = cf->n_layer - 1; l >= 0; l--) {
		layer_act *a = &w->l[l];
		/* MLP: down, SwiGLU, gate | up, the post-attention norm */
		nn_zero(c, w->dh, F * (size_t)I);
		linear_backward(c, w->dh, lg(m, g, l, "mlp.down_proj.weight"), lg(m, g, l, "mlp.down_proj.bias"), w->dres, a->h,
		                lp(m, p, l, "mlp.down_proj.weight"), N, I, C, NN_W_OUT_IN);
		lora_backward(c, w->lw, lo, l, 6, w->dh, w->dres, C, a->h);
		nn_zero(c, w->dgu, F * 2 * (size_t)I);
		swiglu_backward(c, w->dgu, w->dh, a->gu, N, I);
		nn_zero(c, dn, F * (size_t)C);
		linear_backward(c, dn, lg(m, g, l, "mlp.gate_proj.weight"), lg(m, g, l, "mlp.gate_proj.bias"), w->dgu, a->rn2,
		                lp(m, p, l, "mlp.gate_proj.weight"), N, C, 2 * I, NN_W_OUT_IN);
		lora_backward(c, w->lw, lo, l, 4, dn, w->dgu, 2 * I, a->rn2);
		lora_backward(c, w->lw, lo, l, 5, dn, w->dgu + I, 2 * I, a->rn2);
		rmsnorm_backward(c, w->dres, lg(m, g, l, "post_attention_layernorm.weight"), dn, a->res2,
		                 lp(m, p, l, "post_attention_layernorm.weight"), a->r2, N, C);
		/* attention: o_proj, the heads, the grouped heads gathered, rope undone, q | k | v */
		nn_zero(c, w->dy, F * (size_t)HD);
		linear_backward(c, w->dy, lg(m, g, l, "self_attn.o_proj.weight"), lg(m, g, l, "self_attn.o_proj.bias"), w->dres,
		                a->y, lp(m, p, l, "self_attn.o_proj.weight"), N, HD, C, NN_W_OUT_IN);
		lora_backward(c, w->lw, lo, l, 3, w->dy, w->dres, C, a->y);
		nn_zero(c, w->dqkv, F * 3 * (size_t)HD);
		attention_backward_keep(c, w->dqkv, w->dy, a->qkv, a->y, a->lse, NULL, B, T, HD, H, 1);
		if (w->dqkvg != w->dqkv) {
			nn_zero(c, w->dqkvg, F * (size_t)QW);
			kv_expand_backward(c, w->dqkvg, w->dqkv, N, H, Hk, D);
		}
		if (m->ptune && m->ptune->kind == PT_PREFIX)
			prefix_backward(c, w->pt_g, m->ptune, l, w->dqkvg, B, T, QW, HD, HD + KD);
		rope(c, w->dqkvg, w->pos, w->cs, N, QW, H + Hk, D, 1);
		nn_zero(c, dn, F * (size_t)C);
		linear_backward(c, dn, lg(m, g, l, "self_attn.q_proj.weight"), lg(m, g, l, "self_attn.q_proj.bias"), w->dqkvg,
		                a->rn1, lp(m, p, l, "self_attn.q_proj.weight"), N, C, QW, NN_W_OUT_IN);
		lora_backward(c, w->lw, lo, l, 0, dn, w->dqkvg, QW, a->rn1);
		lora_backward(c, w->lw, lo, l, 1, dn, w->dqkvg + HD, QW, a->rn1);
		lora_backward(c, w->lw, lo, l, 2, dn, w->dqkvg + HD + KD, QW, a->rn1);
		rmsnorm_backward(c, w->dres, lg(m, g, l, "input_layernorm.weight"), dn, a->res, lp(m, p, l, "input_layernorm.weight"),
		                 a->r1, N, C);
	}
	if (m->ptune)
		ptune_backward(c, w->pt_g, m->ptune, w->dres, B, T);
	if (g)
		embedding_backward(c, g + llama_find(m, "model.embed_tokens.weight")->off, w->ids, w->dres, N, C, cf->vocab);
}

/* --- generation ---------------------------------------------------------------------------- */

struct llama_kv {
	int t, maxt;
	nn_ctx nn;
	llama_ws *ws;    /* prefill */
	float *p;        /* the parameters on a device (NULL on the host) */
	float *cache;    /* per layer: maxt rows of the expanded q | k | v (3HD) */
	float *cs;       /* rope's table for maxt positions */
	float *x, *rn, *qg, *y, *gu, *h, *r, *lgt;
	uint32_t *ip;    /* the token's id and position */
};

llama_kv *llama_kv_new_on(const llama *m, const nn_ops *ops, int ctx)
{
	const llama_config *cf = &m->cfg;
	llama_kv *kv = xcalloc(1, sizeof *kv);
	int maxt = ctx > 0 ? ctx : cf->max_pos < 4096 ? cf->max_pos : 4096;
	maxt = maxt > cf->max_pos ? cf->max_pos : maxt;
	if (cf->sliding_window && maxt > cf->sliding_window)
		maxt = cf->sliding_window;
	kv->maxt = maxt;
	nn_ctx_init(&kv->nn, ops, default_threads());
	nn_ctx *c = &kv->nn;
	size_t C = (size_t)cf->hidden, I = (size_t)cf->inter, HD = (size_t)cf->n_head * cf->head_dim, D = (size_t)cf->head_dim;
	if (!nn_on_host(ops)) {
		kv->p = nn_alloc(c, m->nparams * sizeof(float));
		nn_upload(c, kv->p, m->p, m->nparams * sizeof(float));
	}
	kv->cache = nn_alloc(c, (size_t)cf->n_layer * (size_t)maxt * 3 * HD * sizeof(float));
	float *cs = xmalloc((size_t)maxt * D * sizeof *cs);
	llama_rope_table(cf, maxt, cs);
	kv->cs = nn_alloc(c, (size_t)maxt * D * sizeof(float));
	nn_upload(c, kv->cs, cs, (size_t)maxt * D * sizeof(float));
	free(cs);
	kv->x = nn_alloc(c, C * sizeof(float));
	kv->rn = nn_alloc(c, C * sizeof(float));
	kv->qg = nn_alloc(c, (size_t)QKVW(cf) * sizeof(float));
	kv->y = nn_alloc(c, HD * sizeof(float));
	kv->gu = nn_alloc(c, 2 * I * sizeof(float));
	kv->h = nn_alloc(c, I * sizeof(float));
	kv->r = nn_alloc(c, sizeof(float));
	kv->lgt = nn_alloc(c, (size_t)cf->vocab * sizeof(float));
	kv->ip = nn_alloc(c, 2 * sizeof(uint32_t));
	return kv;
}

void llama_kv_free(llama_kv *kv)
{
	if (!kv)
		return;
	llama_ws_free(kv->ws);
	nn_ctx *c = &kv->nn;
	float *b[] = {kv->p, kv->cache, kv->cs, kv->x, kv->rn, kv->qg, kv->y, kv->gu, kv->h, kv->r, kv->lgt, (float *)kv->ip};
	for (size_t i = 0; i < sizeof b / sizeof *b; i++)
		if (b[i])
			nn_free(c, b[i]);
	nn_ctx_free(c);
	free(kv);
}

void llama_kv_reset(llama_kv *kv) { kv->t = 0; }
int llama_kv_len(const llama_kv *kv) { return kv->t; }
int llama_kv_max(const llama_kv *kv) { return kv->maxt; }

int llama_step(const llama *m, llama_kv *kv, uint32_t id, float *logits)
{
	const llama_config *cf = &m->cfg;
	nn_ctx *c = &kv->nn;
	const float *p = kv->p ? kv->p : m->p;
	int C = cf->hidden, I = cf->inter, H = cf->n_head, Hk = cf->n_kv, D = cf->head_dim, HD = H * D, QW = QKVW(cf);
	int t = kv->t;
	if (t >= kv->maxt)
		return -1;
	uint32_t ip[2] = {id, (uint32_t)t};
	nn_upload(c, kv->ip, ip, sizeof ip);
	embedding_forward(c, kv->x, kv->ip, tp(m, p, "model.embed_tokens.weight"), 1, C, cf->vocab, 0);
	for (int l = 0; l < cf->n_layer; l++) {
		float *base = kv->cache + (size_t)l * (size_t)kv->maxt * 3 * (size_t)HD, *row = base + (size_t)t * 3 * (size_t)HD;
		rmsnorm_forward(c, kv->rn, kv->r, kv->x, lp(m, p, l, "input_layernorm.weight"), 1, C, cf->eps);
		linear_forward(c, kv->qg, kv->rn, lp(m, p, l, "self_attn.q_proj.weight"), lp(m, p, l, "self_attn.q_proj.bias"), 1,
		               C, QW, NN_W_OUT_IN, 0);
		rope(c, kv->qg, kv->ip + 1, kv->cs, 1, QW, H + Hk, D, 0);
		if (Hk != H)
			kv_expand_forward(c, row, kv->qg, 1, H, Hk, D);
		else
			nn_copy(c, row, kv->qg, 3 * (size_t)HD * sizeof(float));
		attention_decode(c, kv->y, row, base + HD, base + 2 * HD, 3 * HD, t + 1, HD, H);
		linear_forward(c, kv->x, kv->y, lp(m, p, l, "self_attn.o_proj.weight"), lp(m, p, l, "self_attn.o_proj.bias"), 1, HD,
		               C, NN_W_OUT_IN, 1);
		rmsnorm_forward(c, kv->rn, kv->r, kv->x, lp(m, p, l, "post_attention_layernorm.weight"), 1, C, cf->eps);
		linear_forward(c, kv->gu, kv->rn, lp(m, p, l, "mlp.gate_proj.weight"), lp(m, p, l, "mlp.gate_proj.bias"), 1, C,
		               2 * I, NN_W_OUT_IN, 0);
		swiglu_forward(c, kv->h, kv->gu, 1, I);
		linear_forward(c, kv->x, kv->h, lp(m, p, l, "mlp.down_proj.weight"), lp(m, p, l, "mlp.down_proj.bias"), 1, I, C,
		               NN_W_OUT_IN, 1);
	}
	rmsnorm_forward(c, kv->rn, kv->r, kv->x, tp(m, p, "model.norm.weight"), 1, C, cf->eps);
	linear_forward(c, kv->lgt, kv->rn, tp(m, p, head_name(m)), NULL, 1, C, cf->vocab, NN_W_OUT_IN, 0);
	nn_download(c, logits, kv->lgt, (size_t)cf->vocab * sizeof *logits);
	kv->t++;
	return 0;
}

int llama_prefill(const llama *m, llama_kv *kv, const uint32_t *ids, int n, float *logits)
{
	const llama_config *cf = &m->cfg;
	int HD = cf->n_head * cf->head_dim, V = cf->vocab;
	if (n < 1 || kv->t + n > kv->maxt)
		return -1;
	if (kv->t > 0 || n == 1) {
		for (int i = 0; i < n; i++)
			if (llama_step(m, kv, ids[i], logits) != 0)
				return -1;
		return 0;
	}
	int T = model_prefill_len(n, kv->maxt);
	if (!kv->ws || kv->ws->T != T) {
		llama_ws_free(kv->ws);
		kv->ws = ws_new(m, 1, T, 1, kv->nn.ops, kv->p);
	}
	llama_ws *w = kv->ws;
	uint32_t *pad = model_prefill_ids(ids, n, T);
	llama_forward(m, w, pad, NULL);
	free(pad);
	for (int l = 0; l < cf->n_layer; l++)
		nn_copy(&kv->nn, kv->cache + (size_t)l * (size_t)kv->maxt * 3 * (size_t)HD, w->l[l].qkv,
		        (size_t)n * 3 * (size_t)HD * sizeof(float));
	nn_download(&kv->nn, logits, w->logits + (size_t)(n - 1) * (size_t)V, (size_t)V * sizeof *logits);
	kv->t = n;
	return 0;
}
