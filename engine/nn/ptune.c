#include "ptune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/safetensors.h"
#include "../models/model.h"

void ptune_init(ptune *pt, int n, int dim, int layers, int heads, uint64_t seed)
{
	memset(pt, 0, sizeof *pt);
	pt->kind = PT_PROMPT;
	pt->n = n;
	pt->dim = dim;
	pt->layers = layers;
	pt->heads = heads;
	pt->np = (size_t)n * (size_t)dim;
	pt->p = xmalloc(pt->np * sizeof *pt->p);
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x7074756E65ull;
	for (size_t i = 0; i < pt->np; i++)
		pt->p[i] = (float)model_normal(&s);
}

void ptune_init_prefix(ptune *pt, int n, int kv, int layers, int heads, uint64_t seed)
{
	ptune_init(pt, n, kv * 2 * layers, layers, heads, seed); /* the same draws over the whole table */
	pt->kind = PT_PREFIX;
	pt->dim = kv;
}

void ptune_free(ptune *pt)
{
	free(pt->p);
	memset(pt, 0, sizeof *pt);
}

int ptune_save(herr *e, const ptune *pt, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	buf_printf(&cfg,
	           "{\n  \"peft_type\": \"%s\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"num_virtual_tokens\": %d,\n"
	           "  \"token_dim\": %d,\n  \"num_transformer_submodules\": 1,\n  \"num_attention_heads\": %d,\n"
	           "  \"num_layers\": %d,\n%s  \"base_model_name_or_path\": null,\n  \"inference_mode\": true\n}\n",
	           pt->kind == PT_PREFIX ? "PREFIX_TUNING" : "PROMPT_TUNING", pt->n, pt->dim, pt->heads, pt->layers,
	           pt->kind == PT_PREFIX ? "  \"prefix_projection\": false,\n  \"encoder_hidden_size\": null,\n"
	                                 : "  \"prompt_tuning_init\": \"RANDOM\",\n");
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	int64_t sh[2] = {pt->n, (int64_t)(pt->np / (size_t)pt->n)};
	st_add_f32(&w, "prompt_embeddings", pt->p, 2, sh);
	int rc = st_save_pair(e, dir, "adapter_config.json", &cfg, "adapter_model.safetensors", &w);
	st_writer_free(&w);
	buf_free(&cfg);
	return rc;
}

static int peft_type(const char *dir, char *out, size_t n)
{
	char *p = path_join(dir, "adapter_config.json");
	buf b;
	buf_init(&b);
	herr e;
	int rc = fs_exists(p) ? fs_read(&e, p, &b) : -1;
	free(p);
	out[0] = 0;
	if (rc == 0) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, b.p, b.len, &je), *t = r ? json_member(r, "peft_type", 9) : NULL;
		if (t && t->t == J_STR)
			snprintf(out, n, "%.*s", (int)t->len, t->s);
		json_arena_free(a);
	}
	buf_free(&b);
	return rc;
}

int ptune_is_dir(const char *dir)
{
	char t[32];
	return peft_type(dir, t, sizeof t) == 0 && (!strcmp(t, "PROMPT_TUNING") || !strcmp(t, "PREFIX_TUNING"));
}

int ptune_load(herr *e, ptune *pt, const char *dir, int dim, int kv, int layers, int heads, int kv_heads)
{
	memset(pt, 0, sizeof *pt);
	char t[32];
	char *cp = path_join(dir, "adapter_config.json"), *wp = path_join(dir, "adapter_model.safetensors");
	int rc = 0;
	if (peft_type(dir, t, sizeof t) != 0)
		rc = herr_set(e, "%s: not a PEFT adapter folder (no adapter_config.json)", dir);
	else if (!strcmp(t, "LORA"))
		rc = -2;
	else if (strcmp(t, "PROMPT_TUNING") && strcmp(t, "PREFIX_TUNING")) {
		rc = herr_set(e, "%s: peft_type \"%s\": supported are LORA, PROMPT_TUNING and PREFIX_TUNING", cp, t);
	}
	int prefix = !strcmp(t, "PREFIX_TUNING");
	if (prefix) {
		dim = kv;
		heads = kv_heads;
	}
	buf b;
	buf_init(&b);
	long long nv = 0, td = 0;
	if (rc == 0 && (rc = fs_read(e, cp, &b)) == 0) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, b.p, b.len, &je);
		const jnode *ts = r ? json_member(r, "num_transformer_submodules", 26) : NULL;
		long long nts = 1;
		if (!r || json_int(json_member(r, "num_virtual_tokens", 18), 1, 1 << 20, &nv) ||
		    json_int(json_member(r, "token_dim", 9), 1, 1 << 20, &td))
			rc = herr_set(e, "%s: expected integers num_virtual_tokens and token_dim", cp);
		else if (td != dim)
			rc = herr_set(e, "%s: token_dim %lld, but the model's %s are %d wide", cp, td, prefix ? "keys and values" : "embeddings",
			              dim);
		else if (prefix) {
			const jnode *pp = json_member(r, "prefix_projection", 17);
			long long nl = 0;
			if (pp && pp->t == J_TRUE)
				rc = herr_set(e, "%s: prefix_projection: true (an MLP over the prefix) is not supported", cp);
			else if (json_int(json_member(r, "num_layers", 10), 1, 1 << 16, &nl) || nl != layers)
				rc = herr_set(e, "%s: num_layers: the model has %d", cp, layers);
		}
		else if (ts && ts->t != J_NULL && (json_int(ts, 1, 2, &nts) || nts != 1))
			rc = herr_set(e, "%s: num_transformer_submodules: 1 expected (a decoder)", cp);
		json_arena_free(a);
	}
	buf_free(&b);
	st_file f;
	memset(&f, 0, sizeof f);
	if (rc == 0 && (rc = st_read(e, &f, wp)) == 0) {
		int64_t sh[2] = {nv, td * (prefix ? 2 * layers : 1)};
		pt->kind = prefix ? PT_PREFIX : PT_PROMPT;
		pt->n = (int)nv;
		pt->dim = (int)td;
		pt->layers = layers;
		pt->heads = heads;
		pt->np = (size_t)nv * (size_t)sh[1];
		pt->p = xmalloc(pt->np * sizeof *pt->p);
		rc = st_to_f32(e, &f, wp, "prompt_embeddings", 2, sh, pt->p, NULL);
		if (rc == 0 && f.n != 1)
			rc = herr_set(e, "%s: tensors other than prompt_embeddings", wp);
		st_free(&f);
		if (rc)
			ptune_free(pt);
	}
	free(cp);
	free(wp);
	return rc;
}

void ptune_ws_new(nn_ctx *c, const ptune *pt, float **p, float **g, int *own, size_t *bytes)
{
	size_t nb = pt->np * sizeof(float);
	*g = nn_alloc(c, nb);
	*own = !nn_on_host(c->ops);
	*p = *own ? nn_alloc(c, nb) : pt->p;
	if (*own)
		nn_upload(c, *p, pt->p, nb);
	*bytes += nb * (*own ? 2 : 1);
}

void ptune_ws_free(nn_ctx *c, float *p, float *g, int own)
{
	if (g)
		nn_free(c, g);
	if (own && p)
		nn_free(c, p);
}

void ptune_forward(nn_ctx *c, const float *p, const ptune *pt, float *x, int B, int T)
{
	if (pt->kind != PT_PROMPT)
		return;
	for (int b = 0; b < B; b++)
		nn_copy(c, x + (size_t)b * (size_t)T * (size_t)pt->dim, p, pt->np * sizeof(float));
}

void ptune_backward(nn_ctx *c, float *g, const ptune *pt, const float *dx, int B, int T)
{
	if (pt->kind != PT_PROMPT)
		return;
	for (int b = 0; b < B; b++) /* g += rows: dropout_add with p = 0 adds */
		dropout_add(c, g, dx + (size_t)b * (size_t)T * (size_t)pt->dim, pt->np, 0, 0, 0);
}

void prefix_forward(nn_ctx *c, const float *p, const ptune *pt, int layer, float *qkv, int B, int T, int ld, int koff,
                    int voff)
{
	size_t row = (size_t)pt->layers * 2 * (size_t)pt->dim, kv = (size_t)pt->dim;
	for (int b = 0; b < B; b++)
		for (int v = 0; v < pt->n; v++) {
			float *r = qkv + ((size_t)b * (size_t)T + (size_t)v) * (size_t)ld;
			const float *src = p + (size_t)v * row + (size_t)layer * 2 * kv;
			nn_copy(c, r + koff, src, kv * sizeof(float));
			nn_copy(c, r + voff, src + kv, kv * sizeof(float));
		}
}

void prefix_backward(nn_ctx *c, float *g, const ptune *pt, int layer, float *dqkv, int B, int T, int ld, int koff,
                     int voff)
{
	size_t row = (size_t)pt->layers * 2 * (size_t)pt->dim, kv = (size_t)pt->dim;
	for (int b = 0; b < B; b++)
		for (int v = 0; v < pt->n; v++) {
			float *r = dqkv + ((size_t)b * (size_t)T + (size_t)v) * (size_t)ld;
			float *dst = g + (size_t)v * row + (size_t)layer * 2 * kv;
			dropout_add(c, dst, r + koff, kv, 0, 0, 0);
			dropout_add(c, dst + kv, r + voff, kv, 0, 0, 0);
			nn_zero(c, r + koff, kv * sizeof(float));
			nn_zero(c, r + voff, kv * sizeof(float));
		}
}
