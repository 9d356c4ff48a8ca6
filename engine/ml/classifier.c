#include "classifier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "act.h"
#include "blas.h"
#include "optim.h"

struct clf_ws {
	int maxB, nt;
	float *A[CLF_MAX_LAYERS + 1]; /* A[0]: the combined inputs; A[l + 1]: layer l's output */
	float *Z[CLF_MAX_LAYERS];
	float *mask[CLF_MAX_LAYERS];
	float *logits, *dlog, *prob;
	float *dA, *dB, *dX;
	float *g;
	int train;
	uint64_t seed, step;
};

int clf_act_parse(const char *s)
{
	if (!strcmp(s, "relu"))
		return ACT_RELU;
	if (!strcmp(s, "gelu"))
		return ACT_GELU;
	if (!strcmp(s, "tanh"))
		return ACT_TANH;
	return -1;
}

void clf_data_free(clf_data *d, int nf)
{
	for (int i = 0; d->col && i < nf; i++) {
		free(d->col[i].off);
		free(d->col[i].len);
		free(d->col[i].code);
		free(d->col[i].x);
	}
	free(d->col);
	free(d->y);
	free(d->yv);
	memset(d, 0, sizeof *d);
}

void clf_layout(clf_model *m)
{
	size_t at = 0;
	m->D = 0;
	for (int i = 0; i < m->nf; i++) {
		clf_feat *f = &m->f[i];
		f->rows = 0;
		if (f->type == FEAT_TEXT)
			f->rows = (size_t)f->vocab + f->buckets;
		else if (f->type == FEAT_CAT)
			f->rows = (size_t)f->nlabels + 1;
		else
			f->dim = 1;
		f->off = at;
		at += f->rows * (size_t)f->dim;
		m->D += f->dim;
	}
	m->O = m->out == OUT_CAT ? m->ncls : 1;
	int in = m->D;
	for (int l = 0; l <= m->nl; l++) {
		int out = l < m->nl ? m->hidden[l] : m->O;
		m->w_off[l] = at;
		at += (size_t)out * (size_t)in;
		m->b_off[l] = at;
		at += (size_t)out;
		in = out;
	}
	m->nparams = at;
	free(m->p);
	m->p = xcalloc(at ? at : 1, sizeof *m->p);
}

/* splitmix64: the generator behind initialization, dropout and shuffling */
static uint64_t mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static double unif(uint64_t *s)
{
	*s = mix64(*s);
	return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

void clf_init(clf_model *m, uint64_t seed)
{
	uint64_t s = mix64(seed ^ 0x686F6E65ull);
	for (int i = 0; i < m->nf; i++) {
		clf_feat *f = &m->f[i];
		double sd = 1.0 / sqrt((double)f->dim);
		for (size_t k = 0; k < f->rows * (size_t)f->dim; k++) {
			double u1 = unif(&s), u2 = unif(&s);
			m->p[f->off + k] = (float)(sd * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
		}
	}
	int in = m->D;
	for (int l = 0; l <= m->nl; l++) {
		int out = l < m->nl ? m->hidden[l] : m->O;
		double b = 1.0 / sqrt((double)in);
		for (size_t k = 0; k < (size_t)out * (size_t)in; k++)
			m->p[m->w_off[l] + k] = (float)((2 * unif(&s) - 1) * b);
		for (int k = 0; k < out; k++)
			m->p[m->b_off[l] + (size_t)k] = (float)((2 * unif(&s) - 1) * b);
		in = out;
	}
}

void clf_free(clf_model *m)
{
	for (int i = 0; i < m->nf; i++) {
		free(m->f[i].name);
		free(m->f[i].field);
		for (uint32_t k = 0; k < m->f[i].nlabels; k++)
			free(m->f[i].labels[k]);
		free(m->f[i].labels);
	}
	free(m->f);
	free(m->target);
	for (int k = 0; k < m->ncls; k++)
		free(m->classes[k]);
	free(m->classes);
	free(m->prior);
	free(m->p);
	memset(m, 0, sizeof *m);
}

/* --- files -------------------------------------------------------------- */

static const char *feat_names[] = {"", "text", "category", "number", "binary"};
static const char *out_names[] = {"", "category", "binary", "number"};
static const char *act_names[] = {"relu", "gelu", "tanh"};

void clf_tensors(const clf_model *m, st_writer *w)
{
	for (int i = 0; i < m->nf; i++) {
		const clf_feat *f = &m->f[i];
		if (!f->rows)
			continue;
		char *n = xasprintf("features.%s.embedding", f->name);
		int64_t shape[2] = {(int64_t)f->rows, f->dim};
		st_add_f32(w, n, m->p + f->off, 2, shape);
		free(n);
	}
	int in = m->D;
	for (int l = 0; l <= m->nl; l++) {
		int out = l < m->nl ? m->hidden[l] : m->O;
		char *wn = l < m->nl ? xasprintf("mlp.%d.weight", l) : xstrdup("head.weight");
		char *bn = l < m->nl ? xasprintf("mlp.%d.bias", l) : xstrdup("head.bias");
		int64_t ws[2] = {out, in}, bs[1] = {out};
		st_add_f32(w, wn, m->p + m->w_off[l], 2, ws);
		st_add_f32(w, bn, m->p + m->b_off[l], 1, bs);
		free(wn);
		free(bn);
		in = out;
	}
}

static void str_list(buf *b, char **v, size_t n)
{
	buf_addc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_addc(b, ',');
		buf_json_str(b, v[i]);
	}
	buf_addc(b, ']');
}

void clf_config_json(const clf_model *m, buf *b)
{
	buf_adds(b, "{\n  \"format\": \"hone-classifier/1\",\n  \"features\": [");
	for (int i = 0; i < m->nf; i++) {
		const clf_feat *f = &m->f[i];
		buf_adds(b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
		buf_json_str(b, f->name);
		buf_adds(b, ", \"field\": ");
		buf_json_str(b, f->field);
		buf_printf(b, ", \"type\": \"%s\", \"dim\": %d", feat_names[f->type], f->dim);
		if (f->type == FEAT_TEXT)
			buf_printf(b, ", \"vocab\": %u, \"bigram_buckets\": %u", f->vocab, f->buckets);
		if (f->type == FEAT_CAT) {
			buf_adds(b, ", \"values\": ");
			str_list(b, f->labels, f->nlabels);
		}
		if (f->type == FEAT_NUM) {
			buf_adds(b, ", \"mean\": ");
			buf_json_num(b, f->mean);
			buf_adds(b, ", \"std\": ");
			buf_json_num(b, f->std);
		}
		buf_addc(b, '}');
	}
	buf_adds(b, "\n  ],\n  \"layers\": [");
	for (int l = 0; l < m->nl; l++)
		buf_printf(b, "%s%d", l ? ", " : "", m->hidden[l]);
	buf_printf(b, "],\n  \"activation\": \"%s\",\n  \"dropout\": ", act_names[m->act]);
	buf_json_num(b, m->dropout);
	buf_adds(b, ",\n  \"output\": {\"field\": ");
	buf_json_str(b, m->target);
	buf_printf(b, ", \"type\": \"%s\"", out_names[m->out]);
	if (m->out != OUT_NUM) {
		buf_adds(b, ", \"classes\": ");
		str_list(b, m->classes, (size_t)m->ncls);
	}
	if (m->out != OUT_NUM && m->prior) {
		buf_adds(b, ", \"prior\": [");
		for (int k = 0; k < m->ncls; k++) {
			if (k)
				buf_addc(b, ',');
			buf_json_num(b, m->prior[k]);
		}
		buf_addc(b, ']');
	}
	if (m->out == OUT_BIN) {
		buf_adds(b, ", \"threshold\": ");
		buf_json_num(b, m->threshold);
	}
	if (m->out == OUT_NUM) {
		buf_adds(b, ", \"mean\": ");
		buf_json_num(b, m->y_mean);
		buf_adds(b, ", \"std\": ");
		buf_json_num(b, m->y_std);
	}
	buf_printf(b, "},\n  \"tokenize\": {\"max_len\": %lld, \"truncation\": \"%s\", \"eos\": %lld}\n}\n",
	           m->tok_max_len, m->tok_left ? "left" : "right", m->tok_eos);
}

#define jnum json_number
#define jint json_int

static char *jstr(const jnode *j)
{
	return j && j->t == J_STR ? xstrndup(j->s, j->len) : NULL;
}

static int enum_of(const jnode *j, const char *const *names, int n)
{
	for (int i = 0; j && j->t == J_STR && i < n; i++)
		if (strlen(names[i]) == j->len && !memcmp(names[i], j->s, j->len))
			return i;
	return -1;
}

static int str_array(const jnode *j, char ***out, uint32_t *n)
{
	if (!j || j->t != J_ARR)
		return -1;
	*out = xcalloc(j->n ? j->n : 1, sizeof **out);
	*n = 0;
	for (const jnode *k = j->kid; k; k = k->next) {
		if (k->t != J_STR)
			return -1;
		(*out)[(*n)++] = xstrndup(k->s, k->len);
	}
	return 0;
}

#define MEMBER(o, name) json_member(o, name, sizeof name - 1)

static int parse_config(herr *e, clf_model *m, const jnode *root, const char *what)
{
	const jnode *fmt = root ? MEMBER(root, "format") : NULL;
	if (!root || root->t != J_OBJ || !fmt || fmt->t != J_STR || fmt->len != 17 ||
	    memcmp(fmt->s, "hone-classifier/1", 17))
		return herr_set(e, "%s: not a hone classifier config (expected \"format\": \"hone-classifier/1\")", what);
	const jnode *fs = MEMBER(root, "features");
	if (!fs || fs->t != J_ARR || fs->n == 0 || fs->n > 1024)
		return herr_set(e, "%s: \"features\": expected a list of 1 to 1024 features", what);
	m->f = xcalloc(fs->n, sizeof *m->f);
	for (const jnode *j = fs->kid; j; j = j->next) {
		clf_feat *f = &m->f[m->nf++];
		long long v;
		int t = enum_of(MEMBER(j, "type"), feat_names, 5);
		f->name = jstr(MEMBER(j, "name"));
		f->field = jstr(MEMBER(j, "field"));
		if (!f->name || !f->field || t < 1)
			return herr_set(e, "%s: feature %d: expected name, field and type (text, category, number, binary)", what, m->nf);
		f->type = (feat_type)t;
		if (jint(MEMBER(j, "dim"), 1, 65536, &v) != 0)
			return herr_set(e, "%s: feature '%s': \"dim\": expected an integer 1..65536", what, f->name);
		f->dim = (int)v;
		if (t == FEAT_TEXT) {
			long long bk;
			if (jint(MEMBER(j, "vocab"), 1, 1 << 24, &v) != 0 || jint(MEMBER(j, "bigram_buckets"), 0, 1 << 24, &bk) != 0)
				return herr_set(e, "%s: feature '%s': expected \"vocab\" and \"bigram_buckets\" (integers up to 2^24)", what, f->name);
			f->vocab = (uint32_t)v;
			f->buckets = (uint32_t)bk;
		} else if (t == FEAT_CAT) {
			if (str_array(MEMBER(j, "values"), &f->labels, &f->nlabels) != 0)
				return herr_set(e, "%s: feature '%s': \"values\": expected a list of strings", what, f->name);
		} else if (t == FEAT_NUM) {
			if (jnum(MEMBER(j, "mean"), &f->mean) != 0 || jnum(MEMBER(j, "std"), &f->std) != 0 || !(f->std > 0))
				return herr_set(e, "%s: feature '%s': expected numbers \"mean\" and \"std\" > 0", what, f->name);
		}
	}
	const jnode *ls = MEMBER(root, "layers");
	if (!ls || ls->t != J_ARR || ls->n > CLF_MAX_LAYERS)
		return herr_set(e, "%s: \"layers\": expected a list of at most %d widths", what, CLF_MAX_LAYERS);
	for (const jnode *j = ls->kid; j; j = j->next) {
		long long v;
		if (jint(j, 1, 1 << 16, &v) != 0)
			return herr_set(e, "%s: \"layers\": widths must be integers 1..65536", what);
		m->hidden[m->nl++] = (int)v;
	}
	int act = enum_of(MEMBER(root, "activation"), act_names, 3);
	double dr;
	if (act < 0 || jnum(MEMBER(root, "dropout"), &dr) != 0 || dr < 0 || dr >= 1)
		return herr_set(e, "%s: expected \"activation\" (relu, gelu, tanh) and \"dropout\" in [0, 1)", what);
	m->act = (act_type)act;
	m->dropout = dr;
	const jnode *o = MEMBER(root, "output");
	int ot = o ? enum_of(MEMBER(o, "type"), out_names, 4) : -1;
	m->target = o ? jstr(MEMBER(o, "field")) : NULL;
	if (ot < 1 || !m->target)
		return herr_set(e, "%s: \"output\": expected {\"field\", \"type\": category, binary or number}", what);
	m->out = (out_type)ot;
	if (m->out != OUT_NUM) {
		uint32_t n = 0;
		if (str_array(MEMBER(o, "classes"), &m->classes, &n) != 0 || n < 2 || n > 65536 ||
		    (m->out == OUT_BIN && n != 2)) {
			m->ncls = (int)n;
			return herr_set(e, "%s: \"output.classes\": expected a list of %s class names", what,
			                m->out == OUT_BIN ? "2" : "2 to 65536");
		}
		m->ncls = (int)n;
		const jnode *pr = MEMBER(o, "prior");
		m->prior = xcalloc(n, sizeof *m->prior);
		if (pr && (pr->t != J_ARR || pr->n != n))
			return herr_set(e, "%s: \"output.prior\": expected %u class frequencies", what, n);
		int k = 0;
		for (const jnode *j = pr ? pr->kid : NULL; j; j = j->next)
			if (jnum(j, &m->prior[k++]) != 0)
				return herr_set(e, "%s: \"output.prior\": expected numbers", what);
		for (k = 0; !pr && k < (int)n; k++)
			m->prior[k] = 1.0 / n;
	}
	if (m->out == OUT_BIN && jnum(MEMBER(o, "threshold"), &m->threshold) != 0)
		return herr_set(e, "%s: \"output.threshold\": expected a number", what);
	if (m->out == OUT_NUM && (jnum(MEMBER(o, "mean"), &m->y_mean) != 0 || jnum(MEMBER(o, "std"), &m->y_std) != 0))
		return herr_set(e, "%s: \"output\": expected numbers \"mean\" and \"std\"", what);
	const jnode *tk = MEMBER(root, "tokenize");
	const char *tr[] = {"right", "left"};
	int left = tk ? enum_of(MEMBER(tk, "truncation"), tr, 2) : -1;
	if (!tk || jint(MEMBER(tk, "max_len"), 0, 1LL << 40, &m->tok_max_len) != 0 ||
	    jint(MEMBER(tk, "eos"), -1, 1 << 24, &m->tok_eos) != 0 || left < 0)
		return herr_set(e, "%s: \"tokenize\": expected {\"max_len\", \"truncation\", \"eos\"}", what);
	m->tok_left = left;
	return 0;
}

int clf_load(herr *e, clf_model *m, const char *config, size_t config_len, const char *config_what,
             const st_file *weights, const char *weights_what)
{
	memset(m, 0, sizeof *m);
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, config, config_len, &je);
	int rc;
	if (!root) {
		size_t line, col;
		json_line_col(config, je.off, &line, &col);
		rc = herr_set(e, "%s:%zu:%zu: %s", config_what, line, col, je.what);
	} else {
		rc = parse_config(e, m, root, config_what);
	}
	json_arena_free(a);
	if (rc == 0) {
		clf_layout(m);
		st_writer w;
		st_writer_init(&w);
		clf_tensors(m, &w); /* the names and shapes the config implies */
		for (size_t i = 0; i < w.n && rc == 0; i++) {
			const float *src = st_f32(e, weights, weights_what, w.t[i].name, w.t[i].ndim, w.t[i].shape);
			if (!src)
				rc = -1;
			else
				memcpy((float *)w.t[i].data, src, w.t[i].nbytes);
		}
		if (rc == 0 && weights->n != w.n)
			rc = herr_set(e, "%s: %zu tensors, but %s describes %zu", weights_what, weights->n, config_what, w.n);
		st_writer_free(&w);
	}
	if (rc)
		clf_free(m);
	return rc;
}

/* --- compute ------------------------------------------------------------ */

clf_ws *clf_ws_new(const clf_model *m, int max_batch, int threads)
{
	clf_ws *w = xcalloc(1, sizeof *w);
	w->maxB = max_batch;
	w->nt = threads < 1 ? 1 : threads;
	size_t B = (size_t)max_batch;
	int wide = m->D > m->O ? m->D : m->O;
	w->A[0] = xcalloc(B * (size_t)m->D, sizeof(float));
	for (int l = 0; l < m->nl; l++) {
		size_t h = (size_t)m->hidden[l];
		w->A[l + 1] = xcalloc(B * h, sizeof(float));
		w->Z[l] = xcalloc(B * h, sizeof(float));
		w->mask[l] = xcalloc(B * h, sizeof(float));
		if (m->hidden[l] > wide)
			wide = m->hidden[l];
	}
	w->logits = xcalloc(B * (size_t)m->O, sizeof(float));
	w->dlog = xcalloc(B * (size_t)m->O, sizeof(float));
	w->prob = xcalloc(B * (size_t)(m->O > 1 ? m->O : 2), sizeof(float));
	w->dA = xcalloc(B * (size_t)wide, sizeof(float));
	w->dB = xcalloc(B * (size_t)wide, sizeof(float));
	w->g = xcalloc(m->nparams ? m->nparams : 1, sizeof(float));
	const blas_api *api = blas_get(NULL);
	if (api)
		api->set_num_threads(1);
	return w;
}

void clf_ws_free(clf_ws *w)
{
	if (!w)
		return;
	for (int l = 0; l <= CLF_MAX_LAYERS; l++)
		free(w->A[l]);
	for (int l = 0; l < CLF_MAX_LAYERS; l++) {
		free(w->Z[l]);
		free(w->mask[l]);
	}
	free(w->logits);
	free(w->dlog);
	free(w->prob);
	free(w->dA);
	free(w->dB);
	free(w->g);
	free(w);
}

float *clf_grad(clf_ws *w) { return w->g; }

static inline uint32_t bigram_row(const clf_feat *f, uint32_t a, uint32_t b)
{
	uint64_t h = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
	return f->vocab + (uint32_t)((h >> 32) % f->buckets);
}

static inline size_t text_count(const clf_feat *f, uint32_t len)
{
	return (size_t)len + (f->buckets && len > 1 ? len - 1 : 0);
}

/* x += r over d floats, four at a time (-O2 does not vectorize loops of
 * unknown length; this is most of the time of an embedding bag) */
typedef float v4f __attribute__((vector_size(16)));

static inline void addv(float *restrict x, const float *restrict r, int d)
{
	int q = 0;
	for (; q + 8 <= d; q += 8) {
		v4f a0, a1, b0, b1;
		memcpy(&a0, x + q, 16);
		memcpy(&a1, x + q + 4, 16);
		memcpy(&b0, r + q, 16);
		memcpy(&b1, r + q + 4, 16);
		a0 += b0;
		a1 += b1;
		memcpy(x + q, &a0, 16);
		memcpy(x + q + 4, &a1, 16);
	}
	for (; q < d; q++)
		x[q] += r[q];
}

/* x[0..dim) += the rows of tab listed in rows[0..n), in that order: sixteen
 * columns at a time held in registers across all the rows */
static void bag_sum(float *restrict x, const float *restrict tab, int dim, const uint32_t *rows, size_t n)
{
	int q = 0;
	for (; q + 16 <= dim; q += 16) {
		v4f a0, a1, a2, a3, b;
		memcpy(&a0, x + q, 16);
		memcpy(&a1, x + q + 4, 16);
		memcpy(&a2, x + q + 8, 16);
		memcpy(&a3, x + q + 12, 16);
		for (size_t k = 0; k < n; k++) {
			const float *r = tab + (size_t)rows[k] * (size_t)dim + q;
			memcpy(&b, r, 16);
			a0 += b;
			memcpy(&b, r + 4, 16);
			a1 += b;
			memcpy(&b, r + 8, 16);
			a2 += b;
			memcpy(&b, r + 12, 16);
			a3 += b;
		}
		memcpy(x + q, &a0, 16);
		memcpy(x + q + 4, &a1, 16);
		memcpy(x + q + 8, &a2, 16);
		memcpy(x + q + 12, &a3, 16);
	}
	for (; q < dim; q++)
		for (size_t k = 0; k < n; k++)
			x[q] += tab[(size_t)rows[k] * (size_t)dim + (size_t)q];
}

typedef struct enc_job {
	const clf_model *m;
	const clf_data *d;
	const uint32_t *idx;
	int B;
	clf_ws *w;
} enc_job;

/* Fills A[0] for rows [lo, hi) of the batch. */
static void encode_part(void *ud, int t, int nt)
{
	enc_job *j = ud;
	const clf_model *m = j->m;
	int lo = j->B * t / nt, hi = j->B * (t + 1) / nt;
	for (int b = lo; b < hi; b++) {
		uint32_t r = j->idx[b];
		float *x = j->w->A[0] + (size_t)b * (size_t)m->D;
		for (int i = 0; i < m->nf; i++) {
			const clf_feat *f = &m->f[i];
			const clf_col *c = &j->d->col[i];
			int dim = f->dim;
			if (f->type == FEAT_TEXT) {
				memset(x, 0, (size_t)dim * sizeof *x);
				const uint32_t *ids = j->d->tokens + c->off[r];
				uint32_t len = c->len[r];
				size_t cnt = text_count(f, len);
				const float *tab = m->p + f->off;
				uint32_t rows[512];
				size_t nr = 0;
				for (uint32_t k = 0; k < len; k++) {
					rows[nr++] = ids[k] < f->vocab ? ids[k] : 0;
					if (nr == 512 || k + 1 == len) {
						bag_sum(x, tab, dim, rows, nr);
						nr = 0;
					}
				}
				for (uint32_t k = 0; f->buckets && k + 1 < len; k++) {
					rows[nr++] = bigram_row(f, ids[k], ids[k + 1]);
					if (nr == 512 || k + 2 == len) {
						bag_sum(x, tab, dim, rows, nr);
						nr = 0;
					}
				}
				if (cnt) {
					float inv = 1.0f / (float)cnt;
					for (int q = 0; q < dim; q++)
						x[q] *= inv;
				}
			} else if (f->type == FEAT_CAT) {
				memcpy(x, m->p + f->off + (size_t)c->code[r] * (size_t)dim, (size_t)dim * sizeof *x);
			} else {
				x[0] = c->x[r];
			}
			x += dim;
		}
	}
}

static inline float act_f(act_type a, float z)
{
	if (a == ACT_RELU)
		return z > 0 ? z : 0;
	if (a == ACT_TANH)
		return tanhf(z);
	return gelu_tanh(z);
}

static inline float act_d(act_type a, float z)
{
	if (a == ACT_RELU)
		return z > 0 ? 1.0f : 0.0f;
	if (a == ACT_TANH) {
		float t = tanhf(z);
		return 1.0f - t * t;
	}
	return gelu_tanh_grad(z);
}

double clf_forward(const clf_model *m, const clf_data *d, const uint32_t *idx, int B, clf_ws *w, int train,
                   uint64_t seed, uint64_t step, const float *cw)
{
	enc_job ej = {m, d, idx, B, w};
	par_run(B >= 8 ? w->nt : 1, encode_part, &ej);
	w->train = train;
	int in = m->D;
	const float *prev = w->A[0];
	for (int l = 0; l < m->nl; l++) {
		int out = m->hidden[l];
		float *Z = w->Z[l], *A = w->A[l + 1], *mask = w->mask[l];
		sgemm(0, 1, B, out, in, 1.0f, prev, in, m->p + m->w_off[l], in, 0.0f, Z, out);
		const float *bias = m->p + m->b_off[l];
		float keep = 1.0f - (float)m->dropout, scale = keep > 0 ? 1.0f / keep : 0;
		for (int b = 0; b < B; b++)
			for (int k = 0; k < out; k++) {
				size_t at = (size_t)b * (size_t)out + (size_t)k;
				Z[at] += bias[k];
				float s = 1.0f;
				if (train && m->dropout > 0) {
					/* a draw per (seed, step, layer, row in batch, unit) */
					uint64_t h = mix64(seed ^ mix64(step * 0x100000001B3ull + (uint64_t)l) ^ ((uint64_t)at << 8));
					s = (double)(h >> 11) / 9007199254740992.0 < m->dropout ? 0.0f : scale;
				}
				mask[at] = s;
				A[at] = act_f(m->act, Z[at]) * s;
			}
		prev = A;
		in = out;
	}
	int O = m->O;
	sgemm(0, 1, B, O, in, 1.0f, prev, in, m->p + m->w_off[m->nl], in, 0.0f, w->logits, O);
	const float *hb = m->p + m->b_off[m->nl];
	for (int b = 0; b < B; b++)
		for (int k = 0; k < O; k++)
			w->logits[(size_t)b * (size_t)O + (size_t)k] += hb[k];
	/* probabilities, loss and its gradient */
	double loss = 0, wsum = 0;
	int has_y = m->out == OUT_NUM ? d->yv != NULL : d->y != NULL;
	for (int b = 0; b < B; b++) {
		const float *z = w->logits + (size_t)b * (size_t)O;
		float *pr = w->prob + (size_t)b * (size_t)(O > 1 ? O : 2);
		float *dz = w->dlog + (size_t)b * (size_t)O;
		uint32_t r = idx[b];
		if (m->out == OUT_CAT) {
			float mx = z[0];
			for (int k = 1; k < O; k++)
				mx = z[k] > mx ? z[k] : mx;
			double s = 0;
			for (int k = 0; k < O; k++)
				s += exp((double)(z[k] - mx));
			for (int k = 0; k < O; k++)
				pr[k] = (float)(exp((double)(z[k] - mx)) / s);
			if (has_y) {
				uint32_t y = d->y[r];
				double wt = cw ? cw[y] : 1.0;
				loss += wt * (log(s) + mx - z[y]);
				wsum += wt;
				for (int k = 0; k < O; k++)
					dz[k] = (float)wt * (pr[k] - (k == (int)y ? 1.0f : 0.0f));
			}
		} else if (m->out == OUT_BIN) {
			double p = 1.0 / (1.0 + exp(-(double)z[0]));
			pr[0] = (float)(1 - p);
			pr[1] = (float)p;
			if (has_y) {
				uint32_t y = d->y[r];
				double wt = cw ? cw[y] : 1.0;
				double zz = z[0];
				loss += wt * ((zz > 0 ? zz : 0) - zz * y + log1p(exp(-fabs(zz))));
				wsum += wt;
				dz[0] = (float)(wt * (p - y));
			}
		} else {
			pr[0] = z[0];
			if (has_y) {
				double diff = (double)z[0] - d->yv[r];
				loss += diff * diff;
				wsum += 1;
				dz[0] = (float)(2 * diff);
			}
		}
	}
	if (!has_y || wsum <= 0)
		return 0;
	float inv = (float)(1.0 / wsum);
	for (size_t k = 0; k < (size_t)B * (size_t)O; k++)
		w->dlog[k] *= inv;
	return loss / wsum;
}

typedef struct scat_job {
	const clf_model *m;
	const clf_data *d;
	const uint32_t *idx;
	int B;
	clf_ws *w;
} scat_job;

/* Adds the input gradient (dX, B × D) into the tables; thread t owns the
 * table rows whose 64-row block is t modulo nt, so every row's additions
 * happen in one order. */
static void scatter_part(void *ud, int t, int nt)
{
	scat_job *j = ud;
	const clf_model *m = j->m;
	int xo = 0;
	for (int i = 0; i < m->nf; i++) {
		const clf_feat *f = &m->f[i];
		const clf_col *c = &j->d->col[i];
		int dim = f->dim;
		float *g = j->w->g + f->off;
		for (int b = 0; f->rows && b < j->B; b++) {
			uint32_t r = j->idx[b];
			const float *dx = j->w->dX + (size_t)b * (size_t)m->D + (size_t)xo;
			if (f->type == FEAT_CAT) {
				uint32_t row = c->code[r];
				if ((int)((row >> 6) % (uint32_t)nt) == t)
					for (int q = 0; q < dim; q++)
						g[(size_t)row * (size_t)dim + (size_t)q] += dx[q];
				continue;
			}
			const uint32_t *ids = j->d->tokens + c->off[r];
			uint32_t len = c->len[r];
			size_t cnt = text_count(f, len);
			if (!cnt)
				continue;
			float sc[1024], inv = 1.0f / (float)cnt;
			float *s = dim <= 1024 ? sc : NULL;
			if (!s)
				continue; /* dims above 1024 are refused at training time */
			for (int q = 0; q < dim; q++)
				s[q] = dx[q] * inv;
			for (uint32_t k = 0; k < len; k++) {
				uint32_t row = ids[k] < f->vocab ? ids[k] : 0;
				if ((int)((row >> 6) % (uint32_t)nt) != t)
					continue;
				addv(g + (size_t)row * (size_t)dim, s, dim);
			}
			if (f->buckets)
				for (uint32_t k = 0; k + 1 < len; k++) {
					uint32_t row = bigram_row(f, ids[k], ids[k + 1]);
					if ((int)((row >> 6) % (uint32_t)nt) != t)
						continue;
					addv(g + (size_t)row * (size_t)dim, s, dim);
				}
		}
		xo += dim;
	}
}

void clf_backward(const clf_model *m, const clf_data *d, const uint32_t *idx, int B, clf_ws *w)
{
	float *g = w->g;
	float *dcur = w->dlog; /* gradient wrt the current layer's output (B × out) */
	for (int l = m->nl; l >= 0; l--) {
		int out = l < m->nl ? m->hidden[l] : m->O;
		int in = l > 0 ? m->hidden[l - 1] : m->D;
		const float *prev = w->A[l];
		float *dz = dcur;
		if (l < m->nl) {
			/* through the activation and dropout */
			const float *Z = w->Z[l], *mask = w->mask[l];
			for (size_t k = 0; k < (size_t)B * (size_t)out; k++)
				dz[k] *= mask[k] * act_d(m->act, Z[k]);
		}
		sgemm(1, 0, out, in, B, 1.0f, dz, out, prev, in, 1.0f, g + m->w_off[l], in);
		float *gb = g + m->b_off[l];
		for (int b = 0; b < B; b++)
			for (int k = 0; k < out; k++)
				gb[k] += dz[(size_t)b * (size_t)out + (size_t)k];
		float *dprev = dcur == w->dA ? w->dB : w->dA;
		sgemm(0, 0, B, in, out, 1.0f, dz, out, m->p + m->w_off[l], in, 0.0f, dprev, in);
		dcur = dprev;
	}
	w->dX = dcur;
	scat_job sj = {m, d, idx, B, w};
	par_run(w->nt, scatter_part, &sj);
}

void clf_outputs(const clf_model *m, const clf_ws *w, int b, double *out)
{
	if (m->out == OUT_NUM) {
		out[0] = (double)w->prob[(size_t)b * 2] * m->y_std + m->y_mean;
		return;
	}
	int k = m->out == OUT_CAT ? m->O : 2;
	for (int i = 0; i < k; i++)
		out[i] = w->prob[(size_t)b * (size_t)k + (size_t)i];
}
