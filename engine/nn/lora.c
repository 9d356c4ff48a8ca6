#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/safetensors.h"

unsigned lora_target(const lora_arch *a, const char *name)
{
	unsigned m = 0;
	size_t n = strlen(name);
	for (int s = 0; s < a->nsite && n; s++) {
		const char *sn = a->site[s].name;
		size_t k = strlen(sn);
		if (!strcmp(sn, name) || (k > n && sn[k - n - 1] == '.' && !strcmp(sn + k - n, name)))
			m |= 1u << s;
	}
	return m;
}

void lora_site_names(const lora_arch *a, buf *out)
{
	for (int s = 0; s < a->nsite; s++) {
		buf_adds(out, s ? ", " : "");
		buf_adds(out, a->site[s].name);
	}
}

void lora_init(lora *l, const lora_arch *a, int rank, float alpha, unsigned targets, uint64_t seed)
{
	memset(l, 0, sizeof *l);
	l->a = *a;
	l->rank = rank;
	l->alpha = alpha;
	l->scale = alpha / (float)rank;
	l->targets = targets;
	l->task_type = "CAUSAL_LM";
	int K = a->n_layer * a->nsite;
	l->off = xcalloc((size_t)(K ? K : 1), sizeof *l->off);
	size_t at = 0;
	for (int k = 0; k < K; k++) {
		const lora_site *s = &a->site[k % a->nsite];
		if (!(targets & (1u << (k % a->nsite))))
			continue;
		l->off[k] = at;
		at += (size_t)rank * (size_t)(s->in + s->out);
	}
	l->n = at;
	l->p = xcalloc(at ? at : 1, sizeof(float));
	uint64_t st = seed * 0x9E3779B97F4A7C15ull + 0x6C6F7261ull;
	for (int k = 0; k < K; k++) {
		const lora_site *s = &a->site[k % a->nsite];
		if (!(targets & (1u << (k % a->nsite))))
			continue;
		float bound = 1.0f / sqrtf((float)s->in);
		for (size_t i = 0; i < (size_t)rank * (size_t)s->in; i++) {
			st = st * 6364136223846793005ull + 1442695040888963407ull;
			l->p[l->off[k] + i] = (float)(((double)(st >> 11) / 9007199254740992.0) * 2 - 1) * bound;
		}
	}
}

void lora_free(lora *l)
{
	free(l->p);
	free(l->off);
	memset(l, 0, sizeof *l);
}

void lora_add_saved(lora *l, const char *module, const char *name, const float *src, int ndim, const int64_t *shape)
{
	if (l->nsaved >= LORA_MAX_SAVED || lora_saved_ptr(l, name))
		return;
	lora_saved *s = &l->saved[l->nsaved++];
	snprintf(s->name, sizeof s->name, "%s", name);
	snprintf(s->module, sizeof s->module, "%s", module);
	s->ndim = ndim;
	s->shape[0] = shape[0];
	s->shape[1] = ndim > 1 ? shape[1] : 0;
	s->n = (size_t)shape[0] * (size_t)(ndim > 1 ? shape[1] : 1);
	s->off = l->n;
	l->p = xrealloc(l->p, (l->n + s->n) * sizeof *l->p);
	memcpy(l->p + s->off, src, s->n * sizeof(float));
	l->n += s->n;
}

float *lora_saved_ptr(const lora *l, const char *name)
{
	for (int i = 0; l && i < l->nsaved; i++)
		if (!strcmp(l->saved[i].name, name))
			return l->p + l->saved[i].off;
	return NULL;
}

float *lora_A(const lora *l, int layer, int site)
{
	if (!l || !(l->targets & (1u << site)))
		return NULL;
	return l->p + l->off[layer * l->a.nsite + site];
}

void lora_merge(const lora *l, float *(*weight)(void *ud, int layer, int site), float *(*saved)(void *ud, const char *name),
                void *ud)
{
	for (int i = 0; i < l->nsaved; i++) {
		float *dst = saved(ud, l->saved[i].name);
		if (dst)
			memcpy(dst, l->p + l->saved[i].off, l->saved[i].n * sizeof(float));
	}
	nn_ctx c;
	nn_ctx_init(&c, &nn_cpu, 1);
	for (int k = 0; k < l->a.n_layer * l->a.nsite; k++) {
		int s = k % l->a.nsite, in = l->a.site[s].in, out = l->a.site[s].out;
		if (!(l->targets & (1u << s)))
			continue;
		const float *A = l->p + l->off[k], *B = A + (size_t)l->rank * (size_t)in;
		float *W = weight(ud, k / l->a.nsite, s);
		if (!W)
			continue; /* not the model's: lora_load refused such adapters already */
		if (l->a.fan_in_fan_out) /* W[in, out] += scale · Aᵀ[in, r] · Bᵀ[r, out] */
			matmul(&c, 1, 1, in, out, l->rank, l->scale, A, in, B, l->rank, 1.0f, W, out);
		else /* W[out, in] += scale · B[out, r] · A[r, in] */
			matmul(&c, 0, 0, out, in, l->rank, l->scale, B, l->rank, A, in, 1.0f, W, in);
	}
	nn_ctx_free(&c);
}

static void tensor_name(char *nm, size_t n, const lora *l, int layer, int site, int ab)
{
	char path[160];
	snprintf(path, sizeof path, l->a.site[site].path, layer);
	snprintf(nm, n, "base_model.model.%s.lora_%c.weight", path, ab ? 'B' : 'A');
}

int lora_save(herr *e, const lora *l, const char *dir)
{
	buf cfg;
	buf_init(&cfg);
	buf_printf(&cfg, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"%s\",\n  \"r\": %d,\n  \"lora_alpha\": ", l->task_type,
	           l->rank);
	buf_json_float(&cfg, l->alpha);
	buf_adds(&cfg, ",\n  \"lora_dropout\": ");
	buf_json_float(&cfg, l->dropout);
	buf_printf(&cfg, ",\n  \"fan_in_fan_out\": %s,\n  \"bias\": \"none\",\n  \"target_modules\": [",
	           l->a.fan_in_fan_out ? "true" : "false");
	int first = 1;
	for (int s = 0; s < l->a.nsite; s++)
		if (l->targets & (1u << s)) {
			buf_printf(&cfg, "%s\"%s\"", first ? "" : ", ", l->a.site[s].name);
			first = 0;
		}
	buf_adds(&cfg, "],\n");
	if (l->nsaved) {
		buf_adds(&cfg, "  \"modules_to_save\": [");
		int k = 0;
		for (int i = 0; i < l->nsaved; i++) {
			int dup = 0;
			for (int j = 0; j < i; j++)
				dup |= !strcmp(l->saved[j].module, l->saved[i].module);
			if (!dup)
				buf_printf(&cfg, "%s\"%s\"", k++ ? ", " : "", l->saved[i].module);
		}
		buf_adds(&cfg, "],\n");
	}
	buf_adds(&cfg, "  \"base_model_name_or_path\": null,\n  \"inference_mode\": true\n}\n");
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	char nm[256];
	for (int k = 0; k < l->a.n_layer * l->a.nsite; k++) {
		int s = k % l->a.nsite, in = l->a.site[s].in, out = l->a.site[s].out;
		if (!(l->targets & (1u << s)))
			continue;
		const float *A = l->p + l->off[k], *B = A + (size_t)l->rank * (size_t)in;
		int64_t sa[2] = {l->rank, in}, sb[2] = {out, l->rank};
		tensor_name(nm, sizeof nm, l, k / l->a.nsite, s, 0);
		st_add_f32(&w, nm, A, 2, sa);
		tensor_name(nm, sizeof nm, l, k / l->a.nsite, s, 1);
		st_add_f32(&w, nm, B, 2, sb);
	}
	for (int i = 0; i < l->nsaved; i++) {
		snprintf(nm, sizeof nm, "base_model.model.%s", l->saved[i].name);
		st_add_f32(&w, nm, l->p + l->saved[i].off, l->saved[i].ndim, l->saved[i].shape);
	}
	int rc = st_save_pair(e, dir, "adapter_config.json", &cfg, "adapter_model.safetensors", &w);
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
static int lora_config(herr *e, const lora_arch *ar, const char *path, int *rank, float *alpha, unsigned *targets,
                       int *rslora, char ***saved, int *nsaved)
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
	int obj = r && r->t == J_OBJ;
	const jnode *pt = obj ? json_member(r, "peft_type", 9) : NULL;
	const jnode *tm = obj ? json_member(r, "target_modules", 14) : NULL;
	const jnode *bias = obj ? json_member(r, "bias", 4) : NULL;
	const jnode *ms = obj ? json_member(r, "modules_to_save", 15) : NULL;
	if (!obj)
		rc = herr_set(e, "%s: not a JSON object", path);
	else if (!pt || pt->t != J_STR || pt->len != 4 || memcmp(pt->s, "LORA", 4))
		rc = herr_set(e, "%s: peft_type: expected \"LORA\"", path);
	else if (json_int(json_member(r, "r", 1), 1, 65536, &rk))
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
			unsigned t = 0;
			if (k->t == J_STR && k->len < sizeof nm) {
				snprintf(nm, sizeof nm, "%.*s", (int)k->len, k->s);
				t = lora_target(ar, nm);
			}
			if (!t) {
				buf names;
				buf_init(&names);
				lora_site_names(ar, &names);
				rc = herr_set(e, "%s: target_modules: '%.*s' is not a %s module (%s)", path, (int)k->len, k->s, ar->arch,
				              names.p);
				buf_free(&names);
			}
			*targets |= t;
		}
		for (const jnode *k = ms && ms->t == J_ARR ? ms->kid : NULL; k && rc == 0; k = k->next)
			if (k->t == J_STR) {
				*saved = xrealloc(*saved, (size_t)(*nsaved + 1) * sizeof **saved);
				(*saved)[(*nsaved)++] = xstrndup(k->s, k->len);
			}
		*rank = (int)rk;
		*alpha = (float)al;
		*rslora = json_true(r, "use_rslora");
	}
	json_arena_free(a);
	buf_free(&b);
	return rc;
}

int lora_load(herr *e, lora *l, const lora_arch *a, const char *dir,
              int (*saved_shape)(void *ud, const char *name, int64_t *shape, int *ndim), void *ud)
{
	char *cp = path_join(dir, "adapter_config.json"), *wp = path_join(dir, "adapter_model.safetensors");
	int rank = 0, rslora = 0, nsaved = 0;
	unsigned targets = 0;
	char **saved = NULL;
	float alpha = 0;
	int rc = lora_config(e, a, cp, &rank, &alpha, &targets, &rslora, &saved, &nsaved);
	st_file f;
	if (rc == 0)
		rc = st_read(e, &f, wp);
	if (rc == 0) {
		lora_init(l, a, rank, alpha, targets, 0);
		if (rslora)
			l->scale = alpha / sqrtf((float)rank);
		size_t used = 0;
		char nm[256];
		for (int k = 0; k < a->n_layer * a->nsite && rc == 0; k++) {
			int s = k % a->nsite, in = a->site[s].in, out = a->site[s].out;
			if (!(targets & (1u << s)))
				continue;
			float *A = l->p + l->off[k], *B = A + (size_t)rank * (size_t)in;
			int64_t sa[2] = {rank, in}, sb[2] = {out, rank};
			for (int ab = 0; ab < 2 && rc == 0; ab++) {
				tensor_name(nm, sizeof nm, l, k / a->nsite, s, ab);
				const float *src = st_f32(e, &f, wp, nm, 2, ab ? sb : sa);
				if (!src)
					rc = -1;
				else
					memcpy(ab ? B : A, src, (size_t)(ab ? sb[0] * sb[1] : sa[0] * sa[1]) * sizeof(float));
				used++;
			}
		}
		/* the saved modules' tensors (a classifier's head) */
		for (size_t i = 0; i < f.n && rc == 0; i++) {
			const char *tn = f.t[i].name;
			if (strncmp(tn, "base_model.model.", 17) || strstr(tn, ".lora_"))
				continue;
			const char *name = tn + 17;
			int64_t shape[2] = {0, 0};
			int ndim = 0, listed = 0;
			for (int q = 0; q < nsaved; q++) {
				size_t ml = strlen(saved[q]);
				listed |= !strncmp(name, saved[q], ml) && name[ml] == '.';
			}
			if (!listed || !saved_shape(ud, name, shape, &ndim))
				continue;
			const float *src = st_f32(e, &f, wp, tn, ndim, shape);
			if (!src) {
				rc = -1;
				break;
			}
			char module[32];
			snprintf(module, sizeof module, "%.*s", (int)(strrchr(name, '.') - name), name);
			lora_add_saved(l, module, name, src, ndim, shape);
			used++;
		}
		/* every tensor was read: anything else (another layer, a module not
		 * in target_modules, DoRA magnitudes) would be silently dropped */
		for (size_t i = 0; i < f.n && rc == 0 && used != f.n; i++) {
			int found = lora_saved_ptr(l, f.t[i].name + (strncmp(f.t[i].name, "base_model.model.", 17) ? 0 : 17)) != NULL;
			for (int k = 0; k < a->n_layer * a->nsite && !found; k++)
				for (int ab = 0; ab < 2 && (targets & (1u << (k % a->nsite))); ab++) {
					tensor_name(nm, sizeof nm, l, k / a->nsite, k % a->nsite, ab);
					found |= !strcmp(nm, f.t[i].name);
				}
			if (!found)
				rc = herr_set(e, "%s: tensor '%s' is not a LoRA weight of target_modules in %s for this %d-layer %s", wp,
				              f.t[i].name, cp, a->n_layer, a->arch);
		}
		if (rc != 0)
			lora_free(l);
		st_free(&f);
	}
	strv_free(saved, (size_t)nsaved);
	free(cp);
	free(wp);
	return rc;
}

/* --- compute ----------------------------------------------------------------------- */

lora_ws *lora_ws_new(nn_ctx *c, const lora *l, int N)
{
	lora_ws *w = xcalloc(1, sizeof *w);
	int K = l->a.n_layer * l->a.nsite, maxin = 1;
	w->N = N;
	w->K = K;
	w->u = xcalloc((size_t)(K ? K : 1), sizeof *w->u);
	for (int k = 0; k < K; k++)
		if (l->targets & (1u << (k % l->a.nsite))) {
			w->u[k] = nn_alloc(c, (size_t)N * (size_t)l->rank * sizeof(float));
			w->bytes += (size_t)N * (size_t)l->rank * sizeof(float);
		}
	for (int s = 0; s < l->a.nsite; s++)
		maxin = l->a.site[s].in > maxin ? l->a.site[s].in : maxin;
	w->g = nn_alloc(c, (l->n ? l->n : 1) * sizeof(float));
	w->du = nn_alloc(c, (size_t)N * (size_t)l->rank * sizeof(float));
	w->bytes += (l->n + (size_t)N * (size_t)l->rank) * sizeof(float);
	if (!nn_on_host(c->ops)) { /* the adapters beside the base on the device */
		w->p = nn_alloc(c, (l->n ? l->n : 1) * sizeof(float));
		nn_upload(c, w->p, l->p, l->n * sizeof(float));
		w->bytes += l->n * sizeof(float);
	}
	if (l->dropout > 0) {
		w->xd = nn_alloc(c, (size_t)N * (size_t)maxin * sizeof(float));
		w->dxd = nn_alloc(c, (size_t)N * (size_t)maxin * sizeof(float));
		w->bytes += 2 * (size_t)N * (size_t)maxin * sizeof(float);
	}
	return w;
}

void lora_ws_free(nn_ctx *c, lora_ws *w)
{
	if (!w)
		return;
	for (int k = 0; k < w->K; k++)
		if (w->u[k])
			nn_free(c, w->u[k]);
	free(w->u);
	nn_free(c, w->g);
	nn_free(c, w->du);
	if (w->p)
		nn_free(c, w->p);
	if (w->xd)
		nn_free(c, w->xd);
	if (w->dxd)
		nn_free(c, w->dxd);
	free(w);
}

float *lora_ws_params(lora_ws *w, const lora *l) { return w->p ? w->p : l->p; }

/* x, or x with the dropout mask applied (into w->xd) */
static const float *lora_input(nn_ctx *c, const lora *l, lora_ws *w, int k, const float *x, int in)
{
	if (!(l->dropout > 0 && w->drop_seed && w->xd))
		return x;
	dropout_forward(c, w->xd, x, (size_t)w->N * (size_t)in, l->dropout, w->drop_seed, (uint64_t)k);
	return w->xd;
}

void lora_forward(nn_ctx *c, lora_ws *w, const lora *l, int layer, int site, float *y, int ldy, const float *x)
{
	if (!l || !(l->targets & (1u << site)))
		return;
	int k = layer * l->a.nsite + site, r = l->rank, in = l->a.site[site].in, out = l->a.site[site].out;
	const float *A = lora_ws_params(w, l) + l->off[k], *B = A + (size_t)r * (size_t)in;
	x = lora_input(c, l, w, k, x, in);
	matmul(c, 0, 1, w->N, r, in, 1.0f, x, in, A, in, 0.0f, w->u[k], r);
	matmul(c, 0, 1, w->N, out, r, l->scale, w->u[k], r, B, r, 1.0f, y, ldy);
}

void lora_backward(nn_ctx *c, lora_ws *w, const lora *l, int layer, int site, float *dx, const float *dy, int ldy,
                   const float *x)
{
	if (!l || !(l->targets & (1u << site)))
		return;
	int k = layer * l->a.nsite + site, r = l->rank, in = l->a.site[site].in, out = l->a.site[site].out, N = w->N;
	const float *A = lora_ws_params(w, l) + l->off[k], *B = A + (size_t)r * (size_t)in;
	float *dA = w->g + l->off[k], *dB = dA + (size_t)r * (size_t)in;
	const float *xin = lora_input(c, l, w, k, x, in);
	matmul(c, 1, 0, out, r, N, l->scale, dy, ldy, w->u[k], r, 1.0f, dB, r);
	matmul(c, 0, 0, N, r, out, l->scale, dy, ldy, B, r, 0.0f, w->du, r);
	matmul(c, 1, 0, r, in, N, 1.0f, w->du, r, xin, in, 1.0f, dA, in);
	if (xin == x) {
		matmul(c, 0, 0, N, in, r, 1.0f, w->du, r, A, in, 1.0f, dx, in);
		return;
	}
	/* through the mask */
	matmul(c, 0, 0, N, in, r, 1.0f, w->du, r, A, in, 0.0f, w->dxd, in);
	dropout_backward(c, dx, w->dxd, (size_t)N * (size_t)in, l->dropout, w->drop_seed, (uint64_t)k);
}
