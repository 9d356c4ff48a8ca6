#include "mldata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "metrics.h"
#include "../stages/stages.h"

int ml_split_open(herr *e, ml_split *s, const char *dir, const char *label)
{
	memset(s, 0, sizeof *s);
	buf_init(&s->ids);
	s->label = xstrdup(label);
	s->eos = -1;
	char *p = path_join(dir, RECORDS_FILE);
	int rc = recr_open(e, &s->r, p);
	free(p);
	if (rc) {
		free(s->label);
		s->label = NULL;
		return herr_prefix(e, "%s", label);
	}
	p = path_join(dir, "tokens.u32");
	char *meta = path_join(dir, TOKENIZE_META);
	if (fs_exists(p) && fs_exists(meta)) {
		buf js;
		buf_init(&js);
		rc = fs_read(e, meta, &js);
		if (rc == 0)
			rc = fs_read(e, p, &s->ids);
		if (rc == 0 && s->ids.len % 4)
			rc = herr_set(e, "%s: tokens.u32 is %zu bytes, not a whole number of ids", label, s->ids.len);
		if (rc == 0) {
			jarena *a = json_arena_new();
			jerror je;
			jnode *root = json_parse(a, js.p, js.len, &je);
			const jnode *f = root ? json_member(root, "field", 5) : NULL, *v = root ? json_member(root, "vocab", 5) : NULL,
			            *ml = root ? json_member(root, "max_len", 7) : NULL, *eo = root ? json_member(root, "eos", 3) : NULL,
			            *tr = root ? json_member(root, "truncation", 10) : NULL;
			if (!f || f->t != J_STR || !v || v->t != J_NUM || !ml || ml->t != J_NUM || !eo || eo->t != J_NUM || !tr ||
			    tr->t != J_STR) {
				rc = herr_set(e, "%s: %s is not what tokenize writes", label, TOKENIZE_META);
			} else {
				s->tok_field = xstrndup(f->s, f->len);
				s->vocab = strtoll(v->s, NULL, 10);
				s->max_len = strtoll(ml->s, NULL, 10);
				s->eos = strtoll(eo->s, NULL, 10);
				s->left = tr->len == 4 && !memcmp(tr->s, "left", 4);
				s->has_tokens = 1;
			}
			json_arena_free(a);
		}
		buf_free(&js);
	}
	free(p);
	free(meta);
	if (rc)
		ml_split_close(s);
	return rc;
}

void ml_split_close(ml_split *s)
{
	if (s->label)
		recr_close(&s->r);
	clf_data_free(&s->d, s->nf);
	buf_free(&s->ids);
	free(s->tok_field);
	free(s->label);
	memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ml_find_sorted(char *const *v, size_t nv, const char *s, size_t n)
{
	char tmp[256];
	char *k = n < sizeof tmp ? tmp : xmalloc(n + 1);
	memcpy(k, s, n);
	k[n] = 0;
	const char *key = k;
	char *const *hit = bsearch(&key, v, nv, sizeof *v, cmp_str);
	if (k != tmp)
		free(k);
	return hit ? (int)(hit - v) : -1;
}

int ml_class_index(const clf_model *m, const char *s, size_t n)
{
	return ml_find_sorted(m->classes, (size_t)m->ncls, s, n);
}

static uint32_t cat_code(const clf_feat *f, const char *s, size_t n)
{
	return s ? (uint32_t)(ml_find_sorted(f->labels, f->nlabels, s, n) + 1) : 0;
}

int ml_split_fill(herr *e, ml_split *s, const clf_model *m, int need_target)
{
	const rec_reader *r = &s->r;
	size_t n = (size_t)r->rows;
	clf_data *d = &s->d;
	clf_data_free(d, s->nf);
	d->n = n;
	d->col = xcalloc((size_t)m->nf, sizeof *d->col);
	s->nf = m->nf;
	d->tokens = (const uint32_t *)s->ids.p;
	d->ntokens = s->ids.len / 4;
	for (int i = 0; i < m->nf; i++) {
		const clf_feat *f = &m->f[i];
		clf_col *c = &d->col[i];
		if (f->type == FEAT_TEXT) {
			if (!s->has_tokens || strcmp(s->tok_field, f->field))
				return herr_set(e, "%s: input '%s' is text, but the dataset has no token ids for field '%s' "
				                "(give the output of tokenize { ..., field = \"%s\" })", s->label, f->name, f->field, f->field);
			int fo = recr_find(r, "tok_off"), fl = recr_find(r, "tok_len");
			if (fo < 0 || fl < 0)
				return herr_set(e, "%s: no tok_off / tok_len fields", s->label);
			c->off = xmalloc((n ? n : 1) * sizeof *c->off);
			c->len = xmalloc((n ? n : 1) * sizeof *c->len);
			for (size_t k = 0; k < n; k++) {
				long long o = recr_int(r, fo, k), l = recr_int(r, fl, k);
				if (o < 0 || l < 0 || (size_t)o > d->ntokens || (size_t)l > d->ntokens - (size_t)o)
					return herr_set(e, "%s: row %zu: token range %lld+%lld outside tokens.u32", s->label, k + 1, o, l);
				c->off[k] = (uint64_t)o;
				c->len[k] = (uint32_t)l;
			}
			continue;
		}
		int fi = recr_find(r, f->field);
		if (fi < 0)
			return herr_set(e, "%s: no field '%s' (input '%s')", s->label, f->field, f->name);
		rec_type t = r->fields[fi].type;
		if (f->type == FEAT_CAT) {
			if (t != REC_CAT && t != REC_STR)
				return herr_set(e, "%s: field '%s' is %s; a category input needs a string or category field",
				                s->label, f->field, rec_type_name(t));
			c->code = xmalloc((n ? n : 1) * sizeof *c->code);
			for (size_t k = 0; k < n; k++) {
				size_t len;
				const char *v = recr_str(r, fi, k, &len);
				c->code[k] = cat_code(f, v, len);
			}
			continue;
		}
		if (f->type == FEAT_NUM ? (t != REC_INT && t != REC_FLOAT) : (t != REC_BOOL && t != REC_INT))
			return herr_set(e, "%s: field '%s' is %s; a %s input needs %s", s->label, f->field, rec_type_name(t),
			                f->type == FEAT_NUM ? "number" : "binary", f->type == FEAT_NUM ? "an int or float field" : "a bool or int field");
		c->x = xmalloc((n ? n : 1) * sizeof *c->x);
		for (size_t k = 0; k < n; k++) {
			double v = 0;
			if (!recr_is_null(r, fi, k)) {
				if (f->type == FEAT_NUM)
					v = ((t == REC_INT ? (double)recr_int(r, fi, k) : recr_float(r, fi, k)) - f->mean) / f->std;
				else
					v = (t == REC_BOOL ? recr_bool(r, fi, k) : recr_int(r, fi, k)) != 0;
			}
			c->x[k] = (float)v;
		}
	}
	if (!need_target)
		return 0;
	int fi = recr_find(r, m->target);
	if (fi < 0)
		return herr_set(e, "%s: no output field '%s'", s->label, m->target);
	rec_type t = r->fields[fi].type;
	if (m->out == OUT_NUM) {
		if (t != REC_INT && t != REC_FLOAT)
			return herr_set(e, "%s: output '%s' is %s; a number output needs an int or float field", s->label, m->target,
			                rec_type_name(t));
		d->yv = xmalloc((n ? n : 1) * sizeof *d->yv);
		for (size_t k = 0; k < n; k++) {
			if (recr_is_null(r, fi, k))
				return herr_set(e, "%s: row %zu: output '%s' is null", s->label, k + 1, m->target);
			double v = t == REC_INT ? (double)recr_int(r, fi, k) : recr_float(r, fi, k);
			d->yv[k] = (float)((v - m->y_mean) / m->y_std);
		}
		return 0;
	}
	d->y = xmalloc((n ? n : 1) * sizeof *d->y);
	for (size_t k = 0; k < n; k++) {
		if (recr_is_null(r, fi, k))
			return herr_set(e, "%s: row %zu: output '%s' is null", s->label, k + 1, m->target);
		int y;
		if (t == REC_BOOL) {
			y = ml_class_index(m, recr_bool(r, fi, k) ? "true" : "false", recr_bool(r, fi, k) ? 4 : 5);
		} else if (t == REC_CAT || t == REC_STR) {
			size_t len;
			const char *v = recr_str(r, fi, k, &len);
			y = ml_class_index(m, v, len);
			if (y < 0)
				return herr_set(e, "%s: row %zu: output '%s' is \"%.*s\", a class the model was not trained on",
				                s->label, k + 1, m->target, (int)(len > 60 ? 60 : len), v);
		} else {
			return herr_set(e, "%s: output '%s' is %s; a %s output needs a category, string or bool field", s->label,
			                m->target, rec_type_name(t), m->out == OUT_BIN ? "binary" : "category");
		}
		if (y < 0)
			return herr_set(e, "%s: row %zu: output '%s' does not fit the model's classes", s->label, k + 1, m->target);
		d->y[k] = (uint32_t)y;
	}
	return 0;
}

int ml_out_width(const clf_model *m)
{
	return m->out == OUT_NUM ? 1 : m->out == OUT_BIN ? 2 : m->ncls;
}

uint32_t ml_decide(const clf_model *m, const double *prob)
{
	if (m->out == OUT_BIN)
		return prob[1] >= m->threshold;
	uint32_t best = 0;
	for (int k = 1; k < m->ncls; k++)
		if (prob[k] > prob[best])
			best = (uint32_t)k;
	return best;
}

void ml_predict(const clf_model *m, const clf_data *d, int threads, double *out)
{
	clf_ws *w = clf_ws_new(m, ML_PREDICT_BATCH, threads);
	ml_predict_ws(m, d, w, out);
	clf_ws_free(w);
}

void ml_predict_ws(const clf_model *m, const clf_data *d, clf_ws *w, double *out)
{
	const int B = ML_PREDICT_BATCH;
	uint32_t idx[ML_PREDICT_BATCH];
	int K = ml_out_width(m);
	for (size_t at = 0; at < d->n; at += B) {
		int nb = d->n - at < (size_t)B ? (int)(d->n - at) : B;
		for (int b = 0; b < nb; b++)
			idx[b] = (uint32_t)(at + (size_t)b);
		clf_data nolabels = *d;
		nolabels.y = NULL;
		nolabels.yv = NULL;
		clf_forward(m, &nolabels, idx, nb, w, 0, 0, 0, NULL);
		for (int b = 0; b < nb; b++)
			clf_outputs(m, w, b, out + (at + (size_t)b) * (size_t)K);
	}
}

const char *ml_metric_names(const clf_model *m)
{
	return m->out == OUT_NUM ? "loss, rmse, mae, r2" : "loss, accuracy, f1, roc_auc";
}

int ml_metric_higher(const char *metric)
{
	return strcmp(metric, "loss") && strcmp(metric, "rmse") && strcmp(metric, "mae");
}

int ml_score(herr *e, const clf_model *m, const clf_data *d, const double *out, const char *metric, double *v)
{
	if (m->out == OUT_NUM) {
		double *y = xmalloc((d->n ? d->n : 1) * sizeof *y);
		for (size_t i = 0; i < d->n; i++)
			y[i] = (double)d->yv[i] * m->y_std + m->y_mean;
		reg_report r;
		int rc = metrics_regress(e, &r, y, out, d->n);
		free(y);
		if (rc)
			return -1;
		if (!strcmp(metric, "rmse"))
			*v = r.rmse;
		else if (!strcmp(metric, "loss"))
			*v = r.rmse * r.rmse;
		else if (!strcmp(metric, "mae"))
			*v = r.mae;
		else if (!strcmp(metric, "r2"))
			*v = r.r2;
		else
			return herr_set(e, "unknown metric '%s' (expected one of: %s)", metric, ml_metric_names(m));
		return 0;
	}
	size_t K = (size_t)ml_out_width(m);
	uint32_t *pred = xmalloc((d->n ? d->n : 1) * sizeof *pred);
	for (size_t i = 0; i < d->n; i++)
		pred[i] = ml_decide(m, out + i * K);
	cls_report r;
	int rc = metrics_classify(e, &r, d->y, pred, out, d->n, K);
	free(pred);
	if (rc)
		return -1;
	if (!strcmp(metric, "loss"))
		*v = r.log_loss;
	else if (!strcmp(metric, "accuracy"))
		*v = r.accuracy;
	else if (!strcmp(metric, "f1"))
		*v = m->out == OUT_BIN ? r.f1[1] : r.macro_f1;
	else if (!strcmp(metric, "roc_auc"))
		*v = r.roc_auc;
	else
		rc = herr_set(e, "unknown metric '%s' (expected one of: %s)", metric, ml_metric_names(m));
	cls_report_free(&r);
	return rc;
}

int ml_model_load_dir(herr *e, clf_model *m, const char *dir, const char *label)
{
	char *cp = path_join(dir, "config.json"), *wp = path_join(dir, "model.safetensors");
	buf cfg;
	buf_init(&cfg);
	st_file st;
	memset(&st, 0, sizeof st);
	memset(m, 0, sizeof m[0]);
	int rc = 0;
	if (!fs_exists(cp) || !fs_exists(wp))
		rc = herr_set(e, "%s: not a model (expected config.json and model.safetensors from train)", label);
	if (rc == 0)
		rc = fs_read(e, cp, &cfg);
	if (rc == 0)
		rc = st_read(e, &st, wp);
	if (rc == 0)
		rc = clf_load(e, m, cfg.p, cfg.len, cp, &st, wp);
	st_free(&st);
	buf_free(&cfg);
	free(cp);
	free(wp);
	return rc;
}
