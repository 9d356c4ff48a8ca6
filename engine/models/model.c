#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../nn/lora.h"

void model_add_tensor(model_tensor *t, size_t *nt, size_t *at, const char *name, int64_t d0, int64_t d1)
{
	model_tensor *x = &t[(*nt)++];
	snprintf(x->name, sizeof x->name, "%s", name);
	x->off = *at;
	x->ndim = d1 ? 2 : 1;
	x->shape[0] = d0;
	x->shape[1] = d1;
	x->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
	*at += x->n;
}

const model_tensor *model_find(const model_tensor *t, size_t nt, const char *name)
{
	for (size_t i = 0; i < nt; i++)
		if (!strcmp(t[i].name, name))
			return &t[i];
	return NULL;
}

static int take_file(herr *e, const char *path, int (*take)(void *, herr *, const st_file *, const char *), void *ud)
{
	st_file f;
	int rc = st_read(e, &f, path);
	if (rc == 0) {
		rc = take(ud, e, &f, path);
		st_free(&f);
	}
	return rc;
}

int model_load_dir(herr *e, const char *dir, int (*take)(void *ud, herr *e, const st_file *f, const char *path), void *ud)
{
	char *wp = path_join(dir, "model.safetensors"), *ip = path_join(dir, "model.safetensors.index.json");
	int rc = 0;
	if (fs_exists(wp)) {
		rc = take_file(e, wp, take, ud);
	} else if (fs_exists(ip)) {
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
			rc = take_file(e, sp, take, ud);
			free(sp);
		}
		strv_free(done, nd);
		json_arena_free(a);
		buf_free(&idx);
	} else {
		rc = herr_set(e, "%s: no model.safetensors or model.safetensors.index.json", dir);
	}
	free(wp);
	free(ip);
	return rc;
}

static const struct {
	const char *type, *arch_prefix;
	model_arch arch;
} known[] = {{"gpt2", "GPT2", ARCH_GPT2},     {"bert", "Bert", ARCH_BERT},       {"llama", "Llama", ARCH_LLAMA},
             {"mistral", "Mistral", ARCH_LLAMA}, {"qwen2", "Qwen2", ARCH_LLAMA}};

const char *model_arch_name(model_arch a) { return a == ARCH_GPT2 ? "GPT-2" : a == ARCH_BERT ? "BERT" : "Llama"; }

int model_detect(herr *e, const char *json, size_t n, const char *what, model_arch *arch)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je);
	int rc = -1;
	char seen[80] = "";
	if (!r || r->t != J_OBJ) {
		herr_set(e, "%s: not a JSON object", what);
		json_arena_free(a);
		return -1;
	}
	const jnode *mt = json_member(r, "model_type", 10), *ar = json_member(r, "architectures", 13);
	if (mt && mt->t == J_STR) {
		snprintf(seen, sizeof seen, "model_type \"%.*s\"", (int)(mt->len < 40 ? mt->len : 40), mt->s);
		for (size_t k = 0; k < sizeof known / sizeof *known && rc; k++)
			if (mt->len == strlen(known[k].type) && !memcmp(mt->s, known[k].type, mt->len)) {
				*arch = known[k].arch;
				rc = 0;
			}
	} else if (ar && ar->t == J_ARR && ar->kid && ar->kid->t == J_STR) {
		const jnode *k0 = ar->kid;
		snprintf(seen, sizeof seen, "architectures [\"%.*s\"]", (int)(k0->len < 40 ? k0->len : 40), k0->s);
		for (size_t k = 0; k < sizeof known / sizeof *known && rc; k++) {
			size_t pl = strlen(known[k].arch_prefix);
			if (k0->len > pl && !memcmp(k0->s, known[k].arch_prefix, pl)) {
				*arch = known[k].arch;
				rc = 0;
			}
		}
	} else if (json_member(r, "n_layer", 7) || json_member(r, "n_embd", 6)) {
		*arch = ARCH_GPT2; /* GPT-2's fields, from before model_type was written */
		rc = 0;
	}
	if (rc) {
		herr_set(e, "%s: %s is not an architecture hone has (supported: model_type \"gpt2\" (GPT2LMHeadModel, "
		         "GPT2ForSequenceClassification), \"bert\" (BertModel, BertForMaskedLM, BertForSequenceClassification, "
		         "BertForTokenClassification), \"llama\", \"mistral\", \"qwen2\" (LlamaForCausalLM, MistralForCausalLM, "
		         "Qwen2ForCausalLM))", what, seen[0] ? seen : "a config with no model_type or architectures");
		herr_hint(e, "give the folder of a Hugging Face checkpoint of one of these, or build one with "
		          "model { arch = \"gpt2\" | \"bert\" | \"llama\", ... }");
	}
	json_arena_free(a);
	return rc;
}

int model_detect_dir(herr *e, const char *dir, model_arch *arch)
{
	char *cp = path_join(dir, "config.json");
	buf b;
	buf_init(&b);
	int rc = fs_read(e, cp, &b);
	if (rc == 0)
		rc = model_detect(e, b.p, b.len, cp, arch);
	buf_free(&b);
	free(cp);
	return rc;
}

int model_read_labels(herr *e, const char *json, size_t n, const char *what, int count, char ***labels)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, json, n, &je), *il = r ? json_member(r, "id2label", 8) : NULL;
	char **l = xcalloc((size_t)count + 1, sizeof *l);
	int rc = 0;
	for (const jnode *k = il && il->t == J_OBJ ? il->kid : NULL; k && rc == 0; k = k->next) {
		char key[24];
		snprintf(key, sizeof key, "%.*s", (int)(k->klen < 20 ? k->klen : 20), k->key);
		char *end;
		long id = strtol(key, &end, 10);
		if (*end || end == key || id < 0 || id >= count || l[id] || k->t != J_STR)
			rc = herr_set(e, "%s: id2label: expected ids 0..%d, each once, with string names ('%s')", what, count - 1, key);
		else
			l[id] = xasprintf("%.*s", (int)k->len, k->s);
	}
	for (int k = 0; rc == 0 && k < count; k++)
		if (!l[k])
			l[k] = xasprintf("LABEL_%d", k);
	json_arena_free(a);
	*labels = l;
	return rc;
}

void model_labels_json(buf *out, char *const *labels, int count)
{
	for (int pass = 0; pass < 2; pass++) {
		buf_adds(out, pass ? "  \"label2id\": {" : "  \"id2label\": {");
		for (int k = 0; k < count; k++) {
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

double model_normal(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	double u1 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	double u2 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

typedef struct view_ud {
	const model_view *v;
	const struct lora *l;
} view_ud;

static float *view_weight(void *ud, int layer, int site)
{
	const view_ud *u = ud;
	char nm[128];
	snprintf(nm, sizeof nm, u->v->weight_fmt, layer, u->l->a.site[site].name);
	const model_tensor *t = model_find(u->v->t, u->v->nt, nm);
	return t ? u->v->p + t->off : NULL;
}

static float *view_saved(void *ud, const char *name)
{
	const view_ud *u = ud;
	const model_tensor *t = model_find(u->v->t, u->v->nt, name);
	return t ? u->v->p + t->off : NULL;
}

void model_lora_merge(const struct lora *l, const model_view *v)
{
	view_ud u = {v, l};
	lora_merge(l, view_weight, view_saved, &u);
}

static int view_shape(void *ud, const char *name, int64_t *shape, int *ndim)
{
	const model_view *v = ud;
	size_t pl = strlen(v->saved_prefix);
	const model_tensor *t = strncmp(name, v->saved_prefix, pl) ? NULL : model_find(v->t, v->nt, name);
	if (!t)
		return 0;
	shape[0] = t->shape[0];
	shape[1] = t->shape[1];
	*ndim = t->ndim;
	return 1;
}

int model_lora_load(herr *e, struct lora *l, const struct lora_arch *a, const char *dir, const model_view *v)
{
	return lora_load(e, l, a, dir, view_shape, (void *)v);
}

int model_prefill_len(int n, int maxt)
{
	int T = 16;
	while (T < n)
		T *= 2;
	return T > maxt ? maxt : T;
}

uint32_t *model_prefill_ids(const uint32_t *ids, int n, int T)
{
	uint32_t *pad = xcalloc((size_t)T, sizeof *pad);
	memcpy(pad, ids, (size_t)n * sizeof *ids);
	return pad;
}
