/*
 * train — fits the native classifier (engine/ml/classifier.h) on a split,
 * with AdamW, warmup + decay, clipping, class weights and early stopping on
 * a validation metric.
 *
 * Inputs: slot "1" is the train split (tokenize's output for it, or any
 * dataset when no input is text), slot "val" the validation split.
 * Output folder:
 *   model.safetensors  the weights (the best epoch's, with val)
 *   config.json        features, statistics, layers, classes, tokenization
 *   curve.jsonl        the training curve: step lines and epoch lines
 *   train.json         a summary: steps, epochs, best epoch and metric, time
 *
 * Checkpoints: at the end of every epoch (and every checkpoint_every steps)
 * the whole state goes to ckpt.bin in the stage's scratch folder; a run of
 * the same stage key after an interruption resumes from it and ends with
 * the same bits as an uninterrupted run (the data order and dropout are
 * functions of (seed, epoch, step), not of a generator's history).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../ml/blas.h"
#include "../ml/classifier.h"
#include "../models/gpt2.h"
#include "../nn/nn.h"
#include "../ml/lmdata.h"
#include "../ml/mldata.h"
#include "../ml/optim.h"
#include "../ml/safetensors.h"
#include "stages.h"
#include "../nn/ptune.h"
#include "trainer.h"


static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted distinct non-null values of a string/category field. */
char **train_distinct(const rec_reader *r, int f, uint32_t *n)
{
	size_t cap = 16, k = 0;
	char **v = xmalloc(cap * sizeof *v);
	if (r->fields[f].type == REC_CAT) {
		/* the dictionary, restricted to codes that occur */
		uint8_t *seen = xcalloc(r->fields[f].ncat + 1, 1);
		for (uint64_t row = 0; row < r->rows; row++)
			if (!recr_is_null(r, f, row))
				seen[recr_cat(r, f, row)] = 1;
		for (uint32_t c = 0; c < r->fields[f].ncat; c++)
			if (seen[c]) {
				size_t len;
				const char *s = recr_cat_label(r, f, c, &len);
				if (k == cap)
					v = xrealloc(v, (cap *= 2) * sizeof *v);
				v[k++] = xstrndup(s, len);
			}
		free(seen);
	} else {
		for (uint64_t row = 0; row < r->rows; row++) {
			size_t len;
			const char *s = recr_str(r, f, row, &len);
			if (!s)
				continue;
			if (k == cap)
				v = xrealloc(v, (cap *= 2) * sizeof *v);
			v[k++] = xstrndup(s, len);
		}
	}
	qsort(v, k, sizeof *v, cmp_str);
	size_t o = 0;
	for (size_t i = 0; i < k; i++) {
		if (o && !strcmp(v[o - 1], v[i]))
			free(v[i]);
		else
			v[o++] = v[i];
	}
	*n = (uint32_t)o;
	return v;
}

static int parse_type(const char *s)
{
	static const char *names[] = {"", "text", "category", "number", "binary"};
	for (int i = 1; i < 5; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

/* The model's shape and statistics, from the parameters and the train split. */
static int build_model(kctx *c, const hval *p, ml_split *tr, clf_model *m)
{
	const hval *ins = hval_get(p, "inputs"), *outs = hval_get(p, "output");
	if (!ins || ins->t != HV_MAP || ins->n == 0)
		return kctx_fail(c, "train: inputs: expected a table of field = type, as in inputs = { text = \"text\" }");
	if (!outs || outs->t != HV_MAP || outs->n != 1)
		return kctx_fail(c, "train: output: expected one field = type, as in output = { label = \"category\" }");
	const rec_reader *r = &tr->r;
	m->f = xcalloc(ins->n, sizeof *m->f);
	long long edim = hval_get_int(p, "embedding_dim", 64), cdim = hval_get_int(p, "category_dim", 8);
	long long buckets = hval_get_int(p, "bigrams", 0);
	int ntext = 0;
	for (size_t i = 0; i < ins->n; i++) {
		const char *name = ins->k[i];
		const hval *tv = &ins->v[i];
		int t = tv->t == HV_STR ? parse_type(tv->s) : -1;
		if (t < 0)
			return kctx_fail(c, "train: inputs.%s: expected \"text\", \"category\", \"number\" or \"binary\"", name);
		clf_feat *f = &m->f[m->nf++];
		f->name = xstrdup(name);
		f->field = xstrdup(name);
		f->type = (feat_type)t;
		f->dim = 1;
		if (t == FEAT_TEXT) {
			if (++ntext > 1)
				return kctx_fail(c, "train: inputs: one text input at most (tokenize encodes one field)");
			if (!tr->has_tokens)
				return kctx_fail(c, "train: inputs.%s is text, but %s has no token ids: give tokenize's output", name, tr->label);
			if (strcmp(tr->tok_field, name))
				return kctx_fail(c, "train: inputs.%s is text, but %s holds the ids of field '%s'", name, tr->label, tr->tok_field);
			if (edim < 1 || edim > 1024)
				return kctx_fail(c, "train: embedding_dim: expected 1..1024, got %lld", edim);
			f->dim = (int)edim;
			f->vocab = (uint32_t)tr->vocab;
			f->buckets = (uint32_t)buckets;
			continue;
		}
		int fi = recr_find(r, name);
		if (fi < 0)
			return kctx_fail(c, "train: inputs.%s: %s has no field '%s'", name, tr->label, name);
		if (t == FEAT_CAT) {
			if (r->fields[fi].type != REC_CAT && r->fields[fi].type != REC_STR)
				return kctx_fail(c, "train: inputs.%s: a category input needs a string or category field, not %s", name,
				                 rec_type_name(r->fields[fi].type));
			f->labels = train_distinct(r, fi, &f->nlabels);
			f->dim = (int)(cdim < 1 ? 1 : cdim);
		} else if (t == FEAT_NUM) {
			rec_type ft = r->fields[fi].type;
			if (ft != REC_INT && ft != REC_FLOAT)
				return kctx_fail(c, "train: inputs.%s: a number input needs an int or float field, not %s", name, rec_type_name(ft));
			double s = 0, ss = 0;
			size_t n = 0;
			for (uint64_t row = 0; row < r->rows; row++)
				if (!recr_is_null(r, fi, row)) {
					double v = ft == REC_INT ? (double)recr_int(r, fi, row) : recr_float(r, fi, row);
					s += v;
					n++;
				}
			f->mean = n ? s / (double)n : 0;
			for (uint64_t row = 0; row < r->rows; row++)
				if (!recr_is_null(r, fi, row)) {
					double v = (ft == REC_INT ? (double)recr_int(r, fi, row) : recr_float(r, fi, row)) - f->mean;
					ss += v * v;
				}
			f->std = n ? sqrt(ss / (double)n) : 1;
			if (!(f->std > 0))
				f->std = 1;
		}
	}
	const hval *ly = hval_get(p, "layers");
	if (ly && ly->t == HV_LIST) {
		if (ly->n > CLF_MAX_LAYERS)
			return kctx_fail(c, "train: layers: at most %d", CLF_MAX_LAYERS);
		for (size_t i = 0; i < ly->n; i++) {
			if (ly->v[i].t != HV_INT || ly->v[i].i < 1 || ly->v[i].i > 65536)
				return kctx_fail(c, "train: layers[%zu]: expected a width 1..65536", i + 1);
			m->hidden[m->nl++] = (int)ly->v[i].i;
		}
	}
	int act = clf_act_parse(hval_get_str(p, "activation", "relu"));
	if (act < 0)
		return kctx_fail(c, "train: activation: expected relu, gelu or tanh");
	m->act = (act_type)act;
	m->dropout = hval_get_num(p, "dropout", 0.1);
	/* the output */
	const char *oname = outs->k[0];
	const hval *ov = &outs->v[0];
	static const char *onames[] = {"", "category", "binary", "number"};
	int ot = -1;
	for (int i = 1; ov->t == HV_STR && i < 4; i++)
		if (!strcmp(ov->s, onames[i]))
			ot = i;
	if (ot < 0)
		return kctx_fail(c, "train: output.%s: expected \"category\", \"binary\" or \"number\"", oname);
	m->out = (out_type)ot;
	m->target = xstrdup(oname);
	int fi = recr_find(r, oname);
	if (fi < 0)
		return kctx_fail(c, "train: output.%s: %s has no field '%s'", oname, tr->label, oname);
	rec_type ft = r->fields[fi].type;
	m->threshold = hval_get_num(p, "threshold", 0.5);
	if (m->out == OUT_NUM) {
		if (ft != REC_INT && ft != REC_FLOAT)
			return kctx_fail(c, "train: output.%s: a number output needs an int or float field, not %s", oname, rec_type_name(ft));
		double s = 0, ss = 0;
		for (uint64_t row = 0; row < r->rows; row++)
			s += ft == REC_INT ? (double)recr_int(r, fi, row) : recr_float(r, fi, row);
		m->y_mean = r->rows ? s / (double)r->rows : 0;
		for (uint64_t row = 0; row < r->rows; row++) {
			double v = (ft == REC_INT ? (double)recr_int(r, fi, row) : recr_float(r, fi, row)) - m->y_mean;
			ss += v * v;
		}
		m->y_std = r->rows ? sqrt(ss / (double)r->rows) : 1;
		if (!(m->y_std > 0))
			m->y_std = 1;
	} else if (ft == REC_BOOL) {
		m->classes = xmalloc(2 * sizeof *m->classes);
		m->classes[0] = xstrdup("false");
		m->classes[1] = xstrdup("true");
		m->ncls = 2;
	} else if (ft == REC_CAT || ft == REC_STR) {
		uint32_t n;
		m->classes = train_distinct(r, fi, &n);
		m->ncls = (int)n;
		if (n < 2)
			return kctx_fail(c, "train: output.%s: %s has %u distinct value%s; a classifier needs at least 2", oname,
			                 tr->label, n, n == 1 ? "" : "s");
		if (m->out == OUT_BIN && n != 2)
			return kctx_fail(c, "train: output.%s is binary, but %s has %u distinct values (use \"category\")", oname,
			                 tr->label, n);
	} else {
		return kctx_fail(c, "train: output.%s: a %s output needs a category, string or bool field, not %s", oname,
		                 onames[ot], rec_type_name(ft));
	}
	m->tok_max_len = tr->has_tokens ? tr->max_len : 0;
	m->tok_left = tr->left;
	m->tok_eos = tr->has_tokens ? tr->eos : -1;
	clf_layout(m);
	return 0;
}

/* --- checkpoints ----------------------------------------------------------- */


#define CKPT_MAGIC "HONECKP1"

static int ckpt_save(kctx *c, const float *params, size_t nparams, const tstate *s, uint64_t tag)
{
	if (!c->scratch)
		return 0;
	if (fs_mkdirs(&c->err, c->scratch) != 0)
		return -1;
	buf b;
	buf_init(&b);
	buf_add(&b, CKPT_MAGIC, 8);
	uint64_t hdr[6] = {tag, (uint64_t)nparams, (uint64_t)s->step, (uint64_t)s->best_epoch, (uint64_t)s->bad,
	                   (uint64_t)s->curve.len};
	buf_add(&b, hdr, sizeof hdr);
	buf_add(&b, &s->best, sizeof s->best);
	size_t bytes = nparams * sizeof(float);
	buf_add(&b, params, bytes);
	buf_add(&b, s->m, bytes);
	buf_add(&b, s->v, bytes);
	buf_add(&b, s->best_p, bytes);
	buf_add(&b, s->curve.p, s->curve.len);
	uint64_t sum = XXH3_64bits(b.p, b.len);
	buf_add(&b, &sum, 8);
	char *path = path_join(c->scratch, "ckpt.bin");
	int rc = fs_write_atomic(&c->err, path, b.p, b.len);
	free(path);
	buf_free(&b);
	return rc;
}

/* 1 resumed, 0 nothing (or unusable) to resume from. */
static int ckpt_load(kctx *c, float *params, size_t nparams, tstate *s, uint64_t tag)
{
	if (!c->scratch)
		return 0;
	char *path = path_join(c->scratch, "ckpt.bin");
	buf b;
	buf_init(&b);
	herr e;
	int ok = fs_exists(path) && fs_read(&e, path, &b) == 0;
	free(path);
	size_t bytes = nparams * sizeof(float), fixed = 8 + 48 + 8 + 4 * bytes + 8;
	uint64_t hdr[6], sum;
	if (ok && b.len >= fixed && !memcmp(b.p, CKPT_MAGIC, 8)) {
		memcpy(hdr, b.p + 8, sizeof hdr);
		memcpy(&sum, b.p + b.len - 8, 8);
		ok = hdr[0] == tag && hdr[1] == nparams && b.len == fixed + hdr[5] && sum == XXH3_64bits(b.p, b.len - 8);
	} else {
		ok = 0;
	}
	if (ok) {
		const char *p = b.p + 56;
		memcpy(&s->best, p, 8);
		p += 8;
		memcpy(params, p, bytes);
		memcpy(s->m, p + bytes, bytes);
		memcpy(s->v, p + 2 * bytes, bytes);
		memcpy(s->best_p, p + 3 * bytes, bytes);
		s->curve.len = 0;
		buf_add(&s->curve, p + 4 * bytes, (size_t)hdr[5]);
		s->step = (long long)hdr[2];
		s->best_epoch = (long long)hdr[3];
		s->bad = (long long)hdr[4];
	} else if (b.len) {
		kctx_log(c, "train: the checkpoint in %s does not fit this stage; starting over", c->scratch);
	}
	buf_free(&b);
	return ok;
}

/* --- the loop ---------------------------------------------------------------- */

uint64_t train_mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* The order of epoch e: a Fisher-Yates shuffle seeded by (seed, e). */
static void epoch_order(uint32_t *perm, size_t n, uint64_t seed, long long e)
{
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	uint64_t s = train_mix(seed ^ train_mix((uint64_t)e + 1));
	for (size_t i = n; i > 1; i--) {
		s = train_mix(s);
		size_t j = (size_t)(s % i);
		uint32_t t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
}

static int class_weights(kctx *c, const hval *p, const clf_model *m, const clf_data *d, float **out)
{
	*out = NULL;
	const hval *cw = hval_get(p, "class_weights");
	if (!cw || cw->t == HV_NIL)
		return 0;
	if (m->out == OUT_NUM)
		return kctx_fail(c, "train: class_weights: only for category and binary outputs");
	float *w = xmalloc((size_t)m->ncls * sizeof *w);
	*out = w;
	if (cw->t == HV_STR && !strcmp(cw->s, "balanced")) {
		/* n / (k · count), as scikit-learn's "balanced" */
		double *cnt = xcalloc((size_t)m->ncls, sizeof *cnt);
		for (size_t i = 0; i < d->n; i++)
			cnt[d->y[i]]++;
		for (int k = 0; k < m->ncls; k++)
			w[k] = cnt[k] > 0 ? (float)((double)d->n / ((double)m->ncls * cnt[k])) : 0.0f;
		free(cnt);
		return 0;
	}
	if (cw->t != HV_MAP)
		return kctx_fail(c, "train: class_weights: expected \"balanced\" or a table of class = weight");
	for (int k = 0; k < m->ncls; k++)
		w[k] = 1.0f;
	for (size_t i = 0; i < cw->n; i++) {
		int k = ml_class_index(m, cw->k[i], strlen(cw->k[i]));
		double v = cw->v[i].t == HV_INT ? (double)cw->v[i].i : cw->v[i].t == HV_FLOAT ? cw->v[i].f : -1;
		if (k < 0)
			return kctx_fail(c, "train: class_weights.%s: not a class of output '%s'", cw->k[i], m->target);
		if (!(v >= 0))
			return kctx_fail(c, "train: class_weights.%s: expected a number >= 0", cw->k[i]);
		w[k] = (float)v;
	}
	return 0;
}

static int write_outputs(kctx *c, const clf_model *m, const char *outdir, const buf *curve, const char *summary)
{
	char *path = NULL;
	int rc = kctx_out_path(c, outdir, "model.safetensors", &path);
	if (rc == 0) {
		st_writer w;
		st_writer_init(&w);
		st_add_meta(&w, "format", "hone-classifier/1");
		clf_tensors(m, &w);
		rc = st_write(&c->err, &w, path);
		st_writer_free(&w);
	}
	free(path);
	path = NULL;
	buf b;
	buf_init(&b);
	clf_config_json(m, &b);
	if (rc == 0 && (rc = kctx_out_path(c, outdir, "config.json", &path)) == 0)
		rc = fs_write_atomic(&c->err, path, b.p, b.len);
	free(path);
	path = NULL;
	if (rc == 0 && (rc = kctx_out_path(c, outdir, "curve.jsonl", &path)) == 0)
		rc = fs_write_atomic(&c->err, path, curve->p ? curve->p : "", curve->len);
	free(path);
	path = NULL;
	if (rc == 0 && (rc = kctx_out_path(c, outdir, "train.json", &path)) == 0)
		rc = fs_write_atomic(&c->err, path, summary, strlen(summary));
	free(path);
	buf_free(&b);
	return rc;
}

/* What a model gives the training loop: its parameters, one step (forward
 * and backward over rows idx of the train split; returns the loss and the
 * gradient), and a score on the validation split. */


/* The trainer: epochs of shuffled batches, AdamW with the schedule and
 * clipping, the curve, validation and early stopping, checkpoints and
 * resume. Leaves the last weights in L->p and the best in s->best_p. */
int train_loop(kctx *c, const tcfg *cf, learner *L, size_t n, int has_val, const char *metric, int higher,
                      tstate *s, loop_result *out)
{
	size_t B = (size_t)cf->batch < n ? (size_t)cf->batch : n;
	int rc = 0;
	long long spe = (long long)((n + B - 1) / B);
	long long total = cf->steps > 0 ? cf->steps : cf->epochs * spe;
	long long epochs = (total + spe - 1) / spe;
	size_t bytes = L->n * sizeof(float);
	s->m = xcalloc(L->n, sizeof(float));
	s->v = xcalloc(L->n, sizeof(float));
	s->best_p = xmalloc(bytes);
	memcpy(s->best_p, L->p, bytes);
	s->best = higher ? -INFINITY : INFINITY;
	s->best_epoch = -1;
	/* the checkpoint's tag: the parameter layout and the seed (the scratch
	 * folder is already specific to this stage key) */
	uint64_t tag = XXH3_64bits_withSeed(L->p, bytes, (uint64_t)cf->seed);
	int resumed = ckpt_load(c, L->p, L->n, s, tag);
	nn_ctx *dev = L->nn;
	float *dm = NULL, *dv = NULL;
	if (dev) { /* AdamW's state beside the parameters on the device */
		dm = nn_alloc(dev, bytes);
		dv = nn_alloc(dev, bytes);
		if (resumed) {
			nn_upload(dev, L->dp, L->p, bytes);
			nn_upload(dev, dm, s->m, bytes);
			nn_upload(dev, dv, s->v, bytes);
		}
	}
	if (resumed) {
		kctx_log(c, "train: resumed at step %lld of %lld from %s", s->step, total, c->scratch);
		kctx_progress_from(c, (double)s->step); /* rate and ETA: this process's steps */
	}
	uint32_t *perm = xmalloc((n ? n : 1) * sizeof *perm), *idx = xmalloc(B * sizeof *idx);
	adamw_cfg ac = {(float)cf->b1, (float)cf->b2, (float)cf->eps, (float)cf->wd};
	long long perm_epoch = -1, log_every = spe / 10 > 1 ? spe / 10 : 1;
	double run_loss = 0, ep_loss = 0, t0 = now_seconds(), last_val = NAN;
	long long run_n = 0, ep_n = 0, stopped = 0, t_start = s->step;
	while (rc == 0 && s->step < total) {
		long long e = s->step / spe, bi = s->step % spe;
		if (perm_epoch != e) {
			epoch_order(perm, n, (uint64_t)cf->seed, e);
			perm_epoch = e;
		}
		size_t lo = (size_t)bi * B, hi = lo + B < n ? lo + B : n;
		int nb = (int)(hi - lo);
		memcpy(idx, perm + lo, (size_t)nb * sizeof *idx);
		float lr = (float)(cf->lr * lr_factor((sched_kind)cf->sched, s->step, cf->warmup, total));
		float *g;
		double loss = L->step(L->ud, idx, nb, (uint64_t)s->step, &g);
		float gs;
		if (dev) {
			gs = cf->clip > 0 ? clip_factor(sqrt(nn_sumsq(dev, g, L->n)), cf->clip) : 1.0f;
			nn_adamw(dev, L->dp, g, dm, dv, L->n, lr, ac.b1, ac.b2, ac.eps, ac.wd, s->step + 1, gs);
		} else {
			gs = cf->clip > 0 ? clip_factor(grad_norm(g, L->n, c->threads), cf->clip) : 1.0f;
			adamw_step(&ac, lr, s->step + 1, gs, L->p, g, s->m, s->v, L->n, c->threads);
		}
		s->step++;
		run_loss += loss;
		run_n++;
		ep_loss += loss;
		ep_n++;
		if (!isfinite(loss)) {
			rc = kctx_fail(c, "train: the loss is %g at step %lld (lower lr, or clip gradients)", loss, s->step);
			break;
		}
		if (s->step % log_every == 0) {
			buf_printf(&s->curve, "{\"step\": %lld, \"epoch\": %.4f, \"lr\": ", s->step, (double)s->step / (double)spe);
			buf_json_num(&s->curve, lr);
			buf_adds(&s->curve, ", \"loss\": ");
			buf_json_num(&s->curve, run_loss / (double)run_n);
			buf_adds(&s->curve, "}\n");
			run_loss = 0;
			run_n = 0;
		}
		int epoch_end = s->step % spe == 0 || s->step == total;
		if (epoch_end) {
			long long ep = (s->step - 1) / spe + 1;
			buf_printf(&s->curve, "{\"epoch\": %lld, \"step\": %lld, \"train_loss\": ", ep, s->step);
			buf_json_num(&s->curve, ep_n ? ep_loss / (double)ep_n : NAN);
			ep_loss = 0;
			ep_n = 0;
			if (has_val) {
				double v;
				if (L->score(L->ud, &c->err, metric, &v) != 0) {
					rc = -1;
					break;
				}
				last_val = v;
				buf_printf(&s->curve, ", \"val_%s\": ", metric);
				buf_json_num(&s->curve, v);
				int better = isfinite(v) && (higher ? v > s->best : v < s->best);
				if (better) {
					s->best = v;
					s->best_epoch = ep;
					s->bad = 0;
					if (dev)
						nn_download(dev, s->best_p, L->dp, bytes);
					else
						memcpy(s->best_p, L->p, bytes);
				} else {
					s->bad++;
				}
			}
			buf_adds(&s->curve, "}\n");
			if (has_val && cf->patience > 0 && s->bad >= cf->patience && s->step < total) {
				kctx_log(c, "train: stopped early after epoch %lld (no better val %s for %lld epochs)", ep, metric, cf->patience);
				stopped = ep;
				break;
			}
		}
		if ((epoch_end || (cf->ckpt_every > 0 && s->step % cf->ckpt_every == 0)) && s->step < total) {
			if (dev) {
				nn_download(dev, L->p, L->dp, bytes);
				nn_download(dev, s->m, dm, bytes);
				nn_download(dev, s->v, dv, bytes);
			}
			if (ckpt_save(c, L->p, L->n, s, tag) != 0)
				rc = -1;
		}
		double el = now_seconds() - t0;
		if (kctx_progress(c, (double)s->step, (double)total, "steps") != 0) {
			rc = -1; /* timed out or interrupted: the checkpoint stays for the next run */
			break;
		}
		if (has_val && isfinite(last_val))
			kctx_note(c, "epoch %lld/%lld loss %.4f val %s %.4f (%.0f ex/s)", s->step / spe + (s->step % spe != 0), epochs, loss,
			          metric, last_val, el > 0 ? (double)(s->step - t_start) * (double)B / el : 0);
		else
			kctx_note(c, "epoch %lld/%lld loss %.4f (%.0f ex/s)", s->step / spe + (s->step % spe != 0), epochs, loss,
			          el > 0 ? (double)(s->step - t_start) * (double)B / el : 0);
	}
	if (dev) { /* the last weights, as on the CPU */
		nn_download(dev, L->p, L->dp, bytes);
		nn_free(dev, dm);
		nn_free(dev, dv);
	}
	free(perm);
	free(idx);
	out->batch = B;
	out->spe = spe;
	out->stopped = stopped;
	out->t_start = t_start;
	out->resumed = resumed;
	out->t0 = t0;
	return rc;
}

void tstate_init(tstate *s)
{
	memset(s, 0, sizeof *s);
	buf_init(&s->curve);
}

void tstate_free(tstate *s)
{
	free(s->m);
	free(s->v);
	free(s->best_p);
	buf_free(&s->curve);
}

/* The end of train.json, and the validation metric in the run record
 * (val_<metric>; a language model reports val_loss and val_perplexity itself) */
void train_finish_summary(kctx *c, buf *sum, const tstate *s, const char *metric, int has_val, int resumed, int lm)
{
	buf_json_num(sum, has_val ? s->best : NAN);
	buf_printf(sum, ", \"threads\": %d, \"resumed\": %s}\n", c->threads, resumed ? "true" : "false");
	kctx_metric(c, "steps", (double)s->step);
	if (has_val && !lm) {
		char name[64];
		snprintf(name, sizeof name, "val_%s", metric);
		kctx_metric(c, name, s->best);
	}
	if (has_val)
		kctx_metric(c, "best_epoch", (double)s->best_epoch);
}

/* A transformer's outputs: the Hugging Face folder, curve.jsonl and train.json */
static int model_outputs(kctx *c, const char *outdir, const clm *m, const buf *curve, const buf *summary)
{
	char *dir = NULL;
	int rc = kctx_out_path(c, outdir, "curve.jsonl", &dir);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, dir, curve->p ? curve->p : "", curve->len);
	free(dir);
	dir = NULL;
	if (rc == 0)
		rc = clm_save_dir(&c->err, m, outdir);
	if (rc == 0 && (rc = kctx_out_path(c, outdir, "train.json", &dir)) == 0)
		rc = fs_write_atomic(&c->err, dir, summary->p, summary->len);
	free(dir);
	return rc;
}

int train_find_classes(kctx *c, const rec_reader *r, const char *label, const char *target, char ***cls, uint32_t *k)
{
	*cls = NULL;
	*k = 0;
	int f = recr_find(r, target);
	if (f < 0) {
		kctx_fail(c, "train: %s has no field '%s' (the output)", label, target);
		recr_hint_field(&c->err, r, target);
		return -1;
	}
	if (r->fields[f].type != REC_CAT && r->fields[f].type != REC_STR)
		return kctx_fail(c, "train: output '%s' is %s; a classification head needs a category or string field", target,
		                 rec_type_name(r->fields[f].type));
	*cls = train_distinct(r, f, k);
	if (*k >= 2)
		return 0;
	int rc = kctx_fail(c, "train: output '%s' has %u class%s in %s; a classifier needs 2 or more", target, *k,
	                   *k == 1 ? "" : "es", label);
	strv_free(*cls, *k);
	*cls = NULL;
	return rc;
}

int train_class_ids(kctx *c, clf_model *proxy, const char *target, char **labels, int K, const kinput *ti,
                    const kinput *vi, ml_split *ytr, ml_split *yva)
{
	lm_cls_proxy(proxy, target, labels, K);
	int rc = ml_split_open(&c->err, ytr, ti->path, ti->label);
	if (rc == 0)
		rc = ml_split_fill(&c->err, ytr, proxy, 1);
	if (rc == 0 && vi && (rc = ml_split_open(&c->err, yva, vi->path, vi->label)) == 0)
		rc = ml_split_fill(&c->err, yva, proxy, 1);
	if (rc == 0) {
		size_t n = ytr->d.n;
		proxy->prior = xcalloc((size_t)proxy->ncls, sizeof *proxy->prior);
		for (size_t i = 0; i < n; i++)
			proxy->prior[ytr->d.y[i]] += 1.0 / (double)n;
	}
	return rc;
}

void train_classes_json(buf *sum, const char *target, char *const *labels, int K, const double *prior)
{
	buf_adds(sum, "\"output\": ");
	buf_json_str(sum, target);
	buf_adds(sum, ", \"classes\": [");
	for (int k = 0; k < K; k++) {
		buf_adds(sum, k ? ", " : "");
		buf_json_str(sum, labels[k]);
	}
	buf_adds(sum, "], \"priors\": [");
	for (int k = 0; k < K; k++) {
		buf_adds(sum, k ? ", " : "");
		buf_json_num(sum, prior[k]);
	}
	buf_adds(sum, "], ");
}

int train_copy_tokenize(kctx *c, const kinput *ti, const char *outdir)
{
	char *src = path_join(ti->path, "tokenize.json"), *dst = NULL;
	buf b;
	buf_init(&b);
	int rc = 0;
	if (fs_exists(src) && (rc = fs_read(&c->err, src, &b)) == 0 && (rc = kctx_out_path(c, outdir, "tokenize.json", &dst)) == 0)
		rc = fs_write_atomic(&c->err, dst, b.p, b.len);
	buf_free(&b);
	free(src);
	free(dst);
	return rc;
}

/* The train split and the optional val split as token rows, and their
 * longest row (the batch's T). */
static int lm_open_splits(kctx *c, const clm *m, const kinput *ti, const kinput *vi, lm_split *tr, lm_split *va, int *T,
                          int lm)
{
	/* lm: the rows must hold next-token targets (a classifier's need none) */
	memset(va, 0, sizeof *va);
	int rc = lm_open(&c->err, tr, ti->path, ti->label, clm_vocab(m), clm_max_pos(m));
	if (rc == 0 && vi)
		rc = lm_open(&c->err, va, vi->path, vi->label, clm_vocab(m), clm_max_pos(m));
	if (rc == 0 && !lm && tr->n == 0)
		rc = kctx_fail(c, "train: %s has no rows", ti->label);
	if (rc == 0 && lm)
		rc = lm_require_targets(&c->err, tr, "train", ti->label);
	if (rc == 0 && lm && vi)
		rc = lm_require_targets(&c->err, va, "train: val", vi->label);
	*T = 1;
	for (size_t i = 0; rc == 0 && i < tr->n; i++)
		*T = (int)tr->len[i] > *T ? (int)tr->len[i] : *T;
	for (size_t i = 0; rc == 0 && vi && i < va->n; i++)
		*T = (int)va->len[i] > *T ? (int)va->len[i] : *T;
	if (rc == 0)
		rc = clm_check_len(&c->err, m, *T, "train");
	return rc;
}

/* method = "lora": adapters on the targets, the base frozen (m->lora set) */
int train_lora_init(kctx *c, const hval *p, const lora_arch *a, const char *const *dflt, int width,
                    const char *width_name, lora *lo, uint64_t seed)
{
	unsigned targets = 0;
	const hval *tl = hval_get(p, "targets");
	for (size_t i = 0; tl && tl->t == HV_LIST && i < tl->n; i++) {
		unsigned t = tl->v[i].t == HV_STR ? lora_target(a, tl->v[i].s) : 0;
		if (!t) {
			buf names;
			buf_init(&names);
			lora_site_names(a, &names);
			int rc = kctx_fail(c, "train: targets[%zu]: '%s' is not a %s module (%s, or a last part of one)", i + 1,
			                   tl->v[i].t == HV_STR ? tl->v[i].s : "?", a->arch, names.p);
			buf_free(&names);
			return rc;
		}
		targets |= t;
	}
	for (size_t i = 0; !tl && dflt[i]; i++)
		targets |= lora_target(a, dflt[i]);
	long long rank = hval_get_int(p, "rank", 8);
	if (rank < 1 || rank > width)
		return kctx_fail(c, "train: rank: expected 1..%d (%s), got %lld", width, width_name, rank);
	lora_init(lo, a, (int)rank, (float)hval_get_num(p, "alpha", 16), targets, seed);
	lo->dropout = (float)hval_get_num(p, "lora_dropout", 0);
	return 0;
}

int train_batch(const tcfg *cf, size_t n)
{
	size_t b = (size_t)cf->batch < n ? (size_t)cf->batch : n;
	return (int)(b > 4096 ? 4096 : b);
}

/* method = "lora": adapters on the targets (the architecture's default:
 * c_attn for GPT-2, q_proj and v_proj for Llama), the base frozen */
static int lora_setup(kctx *c, const hval *p, clm *m, lora *lo, uint64_t seed)
{
	lora_arch a;
	clm_lora_arch(m, &a);
	if (train_lora_init(c, p, &a, clm_lora_default(m), clm_width(m), m->l ? "hidden_size" : "n_embd", lo, seed) != 0)
		return -1;
	if (m->g && m->g->cfg.ncls)
		gpt2_lora_add_head(lo, m->g);
	clm_set_lora(m, lo);
	return 0;
}

/* The adapter (PEFT's layout) in outdir/adapter, then the base with it merged */
static int lora_finish(kctx *c, clm *m, lora *lo, const char *outdir)
{
	char *dir = NULL;
	int rc = kctx_out_path(c, outdir, "adapter/adapter_config.json", &dir);
	char *ad = rc == 0 ? path_dirname(dir) : NULL;
	if (rc == 0)
		rc = lora_save(&c->err, lo, ad);
	free(ad);
	free(dir);
	clm_lora_merge(lo, m);
	clm_set_lora(m, NULL);
	return rc;
}

/* After training: the best epoch's weights; with LoRA, the adapter saved
 * and merged into the base */
static int keep_best(kctx *c, clm *m, lora *lo, const tstate *s, int has_val, const char *outdir)
{
	if (has_val && s->best_epoch > 0)
		memcpy(lo ? lo->p : clm_params(m), s->best_p, (lo ? lo->n : clm_nparams(m)) * sizeof(float));
	return lo ? lora_finish(c, m, lo, outdir) : 0;
}

/* A transformer's learner on a device workspace (context nc): the
 * parameters the loop updates there (dp: the model's copy, or the
 * adapters'), and the products' precision */
static void device_learner(kctx *c, const hval *p, learner *L, nn_ctx *nc, float *dp)
{
	if (nn_on_host(nc->ops))
		return;
	L->nn = nc;
	L->dp = dp;
	const char *prec = hval_get_str(p, "precision", "bf16");
	nc->precision = !strcmp(prec, "bf16") ? NN_BF16 : NN_FP32;
	kctx_log(c, "train: on device %s, %s", nc->ops->name, prec);
}

/* --- language models (GPT-2, the Llama family) on token ids ---------------------------------------------- */

static double lm_step(void *ud, const uint32_t *idx, int nb, uint64_t step, float **grad)
{
	lm_batch *l = ud;
	lm_fill(l, l->tr, idx, nb);
	const lora *lo = clm_lora(l->m);
	if (lo && lo->dropout > 0)
		clm_ws_dropout(l->ws, train_mix(l->seed ^ (step * 0x9E3779B97F4A7C15ull)) | 1);
	double loss = clm_forward(l->ws, l->ids, l->tg);
	clm_backward(l->ws);
	clm_ws_dropout(l->ws, 0);
	*grad = l->m->pt ? clm_ptune_grad(l->ws) : lo ? clm_lora_grad(l->ws) : clm_grad(l->ws);
	return loss;
}

static int lm_score(void *ud, herr *e, const char *metric, double *v)
{
	lm_batch *l = ud;
	(void)e;
	double loss = lm_eval(l, l->va, NULL, NULL);
	*v = !strcmp(metric, "perplexity") ? exp(loss) : loss;
	return 0;
}

static int train_lm(kctx *c, const hval *p, const tcfg *cf, const kinput *ti, const kinput *vi, const kinput *base,
                    const char *outdir)
{
	const char *metric = cf->metric ? cf->metric : "loss";
	if (strcmp(metric, "loss") && strcmp(metric, "perplexity"))
		return kctx_fail(c, "train: metric: a language model is selected on loss or perplexity, not %s", metric);
	clm m;
	if (clm_load_dir(&c->err, &m, base->path) != 0)
		return herr_prefix(&c->err, "train: base %s", base->label);
	lm_split tr, va;
	int T;
	int rc = lm_open_splits(c, &m, ti, vi, &tr, &va, &T, 1);
	int B = train_batch(cf, tr.n);
	/* LoRA: adapters on the targets, the base frozen; prompt tuning:
	 * virtual tokens before every row, the base frozen */
	const char *method = hval_get_str(p, "method", "full");
	int use_lora = !strcmp(method, "lora"), use_pt = !strcmp(method, "prompt_tuning") || !strcmp(method, "prefix_tuning");
	lora lo;
	memset(&lo, 0, sizeof lo);
	ptune pt;
	memset(&pt, 0, sizeof pt);
	if (rc == 0 && use_lora)
		rc = lora_setup(c, p, &m, &lo, (uint64_t)cf->seed);
	if (rc == 0 && m.pt)
		rc = kctx_fail(c, "train: base %s carries a prompt-tuning adapter: train from the model it was tuned on",
		               base->label);
	if (rc == 0 && use_pt) {
		long long nv = hval_get_int(p, "virtual_tokens", 20);
		if (nv < 1 || T + nv > clm_max_pos(&m))
			rc = kctx_fail(c, "train: virtual_tokens: %lld virtual and %d real tokens do not fit the model's %d positions",
			               nv, T, clm_max_pos(&m));
		else {
			if (!strcmp(method, "prefix_tuning"))
				ptune_init_prefix(&pt, (int)nv, clm_kv_width(&m), clm_layers(&m), clm_kv_heads(&m), (uint64_t)cf->seed);
			else
				ptune_init(&pt, (int)nv, clm_width(&m), clm_layers(&m), clm_heads(&m), (uint64_t)cf->seed);
			clm_set_ptune(&m, &pt);
		}
	}
	size_t ntrain = use_pt ? pt.np : use_lora ? lo.n : 0;
	float *ptrain = use_pt ? pt.p : use_lora ? lo.p : NULL;
	lm_batch l = {&m, NULL, &tr, &va, B, T, NULL, NULL, (uint64_t)cf->seed};
	tstate s;
	tstate_init(&s);
	loop_result lr;
	memset(&lr, 0, sizeof lr);
	const nn_ops *ops = nn_backend(&c->err, hval_get_str(p, "device", "cpu"));
	if (rc == 0) {
		l.ws = clm_ws_new_on(&m, B, T, c->threads, ops);
		l.ids = xmalloc((size_t)B * (size_t)T * sizeof *l.ids);
		l.tg = xmalloc((size_t)B * (size_t)T * sizeof *l.tg);
		learner L = {ptrain ? ptrain : clm_params(&m), ptrain ? ntrain : clm_nparams(&m), lm_step, lm_score, &l, NULL, NULL};
		kctx_log(c, "train: a %s of %zu parameters", clm_name(&m), clm_nparams(&m));
		device_learner(c, p, &L, clm_ws_nn(l.ws),
		               use_pt ? clm_ws_ptune_params(l.ws) : use_lora ? clm_ws_lora_params(l.ws) : clm_ws_params(l.ws));
		rc = train_loop(c, cf, &L, tr.n, vi != NULL, metric, 0, &s, &lr);
	}
	if (rc == 0) {
		if (use_pt) { /* the best epoch's virtual tokens, as a PEFT adapter beside the (unchanged) base */
			if (vi != NULL && s.best_epoch > 0)
				memcpy(pt.p, s.best_p, pt.np * sizeof(float));
			char *dir = NULL;
			rc = kctx_out_path(c, outdir, "adapter/adapter_config.json", &dir);
			char *ad = rc == 0 ? path_dirname(dir) : NULL;
			if (rc == 0)
				rc = ptune_save(&c->err, &pt, ad);
			free(ad);
			free(dir);
		} else {
			rc = keep_best(c, &m, use_lora ? &lo : NULL, &s, vi != NULL, outdir);
		}
		buf sum;
		buf_init(&sum);
		double el = now_seconds() - lr.t0;
		size_t np = clm_nparams(&m);
		buf_printf(&sum, "{\"task\": \"causal_lm\", \"method\": \"%s\", \"steps\": %lld, \"batch\": %d, \"block\": %d, "
		           "\"params\": %zu, \"trainable\": %zu, \"metric\": \"%s\", \"best_epoch\": %lld, \"best\": ",
		           method, s.step, B, T, np, ptrain ? ntrain : np, metric, s.best_epoch);
		kctx_metric(c, "params", (double)np);
		train_finish_summary(c, &sum, &s, metric, vi != NULL, lr.resumed, 1);
		if (rc == 0)
			rc = model_outputs(c, outdir, &m, &s.curve, &sum);
		if (rc == 0) /* how the ids were made (a chat's template too) travels with the model */
			rc = train_copy_tokenize(c, ti, outdir);
		buf_free(&sum);
		kctx_metric(c, "trainable", (double)(ptrain ? ntrain : np));
		if (vi) {
			kctx_metric(c, "val_loss", !strcmp(metric, "loss") ? s.best : log(s.best));
			kctx_metric(c, "val_perplexity", !strcmp(metric, "loss") ? exp(s.best) : s.best);
		}
		if (el > 0 && s.step > lr.t_start)
			kctx_metric(c, "tokens_per_s", round((double)(s.step - lr.t_start) * B * T / el));
	}
	clm_ws_free(l.ws);
	free(l.ids);
	free(l.tg);
	tstate_free(&s);
	lm_close(&tr);
	if (vi)
		lm_close(&va);
	lora_free(&lo);
	if (use_pt)
		clm_set_ptune(&m, NULL);
	ptune_free(&pt);
	clm_free(&m);
	return rc;
}

/* --- sequence classification: a GPT-2 with a score head ------------------------------ */

typedef struct seq_learn {
	gpt2 *m;
	gpt2_ws *ws;
	lm_split *tr, *va;
	const uint32_t *ytr, *yva;
	clf_model *proxy;
	int B, T, threads;
	uint32_t *ids;
	int *last;
	int32_t *lab;
	double *vprob;
	uint64_t seed;
} seq_learn;

static double seq_step(void *ud, const uint32_t *idx, int nb, uint64_t step, float **grad)
{
	seq_learn *l = ud;
	lm_cls_fill(l->tr, idx, nb, l->B, l->T, l->ids, l->last);
	for (int b = 0; b < l->B; b++)
		l->lab[b] = b < nb ? (int32_t)l->ytr[idx[b]] : -1;
	if (l->m->lora && l->m->lora->dropout > 0)
		gpt2_ws_dropout(l->ws, train_mix(l->seed ^ (step * 0x9E3779B97F4A7C15ull)) | 1);
	double loss = gpt2_forward_cls(l->m, l->ws, l->ids, l->last, l->lab);
	gpt2_backward(l->m, l->ws);
	gpt2_ws_dropout(l->ws, 0);
	*grad = l->m->lora ? gpt2_lora_grad(l->ws) : gpt2_grad(l->ws);
	return loss;
}

static int seq_score(void *ud, herr *e, const char *metric, double *v)
{
	seq_learn *l = ud;
	double loss = lm_cls_eval(l->m, l->ws, l->va, l->yva, l->B, l->T, l->vprob);
	if (!strcmp(metric, "loss")) {
		*v = loss;
		return 0;
	}
	clf_data d = {l->va->n, NULL, 0, NULL, (uint32_t *)l->yva, NULL};
	return ml_score(e, l->proxy, &d, l->vprob, metric, v);
}

static int train_seqcls(kctx *c, const hval *p, const tcfg *cf, const kinput *ti, const kinput *vi, const kinput *base,
                        const char *outdir)
{
	const hval *o = hval_get(p, "output");
	if (!o || o->t != HV_MAP || o->n != 1)
		return kctx_fail(c, "train: output: give exactly one field = \"category\"");
	const char *target = o->k[0];
	const char *metric = cf->metric ? cf->metric : "f1";
	if (strcmp(metric, "loss") && strcmp(metric, "accuracy") && strcmp(metric, "f1") && strcmp(metric, "roc_auc"))
		return kctx_fail(c, "train: metric: a classifier is selected on loss, accuracy, f1 or roc_auc, not %s", metric);
	gpt2 m;
	if (gpt2_load_dir(&c->err, &m, base->path) != 0)
		return herr_prefix(&c->err, "train: base %s", base->label);
	clm cm = clm_of_gpt2(&m);
	lm_split tr, va;
	ml_split ytr, yva;
	memset(&ytr, 0, sizeof ytr);
	memset(&yva, 0, sizeof yva);
	clf_model proxy;
	memset(&proxy, 0, sizeof proxy);
	int T;
	int rc = lm_open_splits(c, &cm, ti, vi, &tr, &va, &T, 0);
	if (rc == 0 && m.cfg.ncls == 0) {
		/* the classes: the train split's values, sorted */
		uint32_t k;
		char **cls;
		rc = train_find_classes(c, &tr.s.r, ti->label, target, &cls, &k);
		if (rc == 0)
			gpt2_add_classifier(&m, (int)k, (const char *const *)cls, (uint64_t)cf->seed);
		strv_free(cls, k);
	}
	if (rc == 0)
		rc = train_class_ids(c, &proxy, target, m.labels, m.cfg.ncls, ti, vi, &ytr, &yva);
	int use_lora = !strcmp(hval_get_str(p, "method", "full"), "lora");
	lora lo;
	memset(&lo, 0, sizeof lo);
	if (rc == 0 && use_lora)
		rc = lora_setup(c, p, &cm, &lo, (uint64_t)cf->seed);
	int B = train_batch(cf, tr.n);
	seq_learn l;
	memset(&l, 0, sizeof l);
	tstate s;
	tstate_init(&s);
	loop_result lr;
	memset(&lr, 0, sizeof lr);
	if (rc == 0) {
		const nn_ops *ops = nn_backend(&c->err, hval_get_str(p, "device", "cpu"));
		l = (seq_learn){&m, gpt2_ws_new_on(&m, B, T, c->threads, ops), &tr, &va, ytr.d.y, vi ? yva.d.y : NULL, &proxy, B, T,
		                c->threads, xmalloc((size_t)B * (size_t)T * sizeof *l.ids), xmalloc((size_t)B * sizeof *l.last),
		                xmalloc((size_t)B * sizeof *l.lab), vi ? xmalloc((va.n ? va.n : 1) * (size_t)m.cfg.ncls * sizeof(double)) : NULL,
		                (uint64_t)cf->seed};
		learner L = {use_lora ? lo.p : m.p, use_lora ? lo.n : m.nparams, seq_step, seq_score, &l, NULL, NULL};
		device_learner(c, p, &L, gpt2_ws_nn(l.ws), use_lora ? gpt2_ws_lora_params(l.ws, &m) : gpt2_ws_params(l.ws, &m));
		kctx_metric(c, "params", (double)m.nparams);
		rc = train_loop(c, cf, &L, tr.n, vi != NULL, metric, ml_metric_higher(metric), &s, &lr);
	}
	if (rc == 0) {
		rc = keep_best(c, &cm, use_lora ? &lo : NULL, &s, vi != NULL, outdir);
		buf sum;
		buf_init(&sum);
		double el = now_seconds() - lr.t0;
		buf_printf(&sum, "{\"task\": \"classification\", \"method\": \"%s\", \"trainable\": %zu, ",
		           use_lora ? "lora" : "full", use_lora ? lo.n : m.nparams);
		train_classes_json(&sum, target, m.labels, m.cfg.ncls, proxy.prior);
		buf_printf(&sum, "\"steps\": %lld, \"batch\": %d, \"block\": %d, \"params\": %zu, \"metric\": \"%s\", "
		           "\"best_epoch\": %lld, \"best\": ", s.step, B, T, m.nparams, metric, s.best_epoch);
		train_finish_summary(c, &sum, &s, metric, vi != NULL, lr.resumed, 0);
		if (rc == 0)
			rc = model_outputs(c, outdir, &cm, &s.curve, &sum);
		if (rc == 0)
			rc = train_copy_tokenize(c, ti, outdir);
		buf_free(&sum);
		kctx_metric(c, "trainable", (double)(use_lora ? lo.n : m.nparams));
		if (el > 0 && s.step > lr.t_start)
			kctx_metric(c, "examples_per_s", round((double)(s.step - lr.t_start) * B / el));
	}
	gpt2_ws_free(l.ws);
	free(l.ids);
	free(l.last);
	free(l.lab);
	free(l.vprob);
	tstate_free(&s);
	lm_close(&tr);
	if (vi)
		lm_close(&va);
	ml_split_close(&ytr);
	if (vi)
		ml_split_close(&yva);
	clf_free(&proxy);
	lora_free(&lo);
	gpt2_free(&m);
	return rc;
}

typedef struct clf_learn {
	clf_model *m;
	const clf_data *tr, *va;
	clf_ws *ws;
	double *vout;
	const float *cw;
	int pad;
	uint64_t seed;
	int threads;
} clf_learn;

static double clf_step(void *ud, const uint32_t *idx, int nb, uint64_t step, float **grad)
{
	clf_learn *l = ud;
	double loss = clf_forward(l->m, l->tr, idx, nb, l->ws, 1, l->seed, step, l->cw);
	clf_backward(l->m, l->tr, idx, nb, l->ws);
	*grad = clf_grad(l->ws);
	return loss;
}

static int clf_score(void *ud, herr *e, const char *metric, double *v)
{
	clf_learn *l = ud;
	ml_predict(l->m, l->va, l->threads, l->vout);
	return ml_score(e, l->m, l->va, l->vout, metric, v);
}

static int k_train(kctx *c, const hval *p, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *ti = kinput_slot(in, nin, "1"), *vi = kinput_slot(in, nin, "val");
	if (!ti)
		return kctx_fail(c, "train: give the train split first, as in train { ids.train, val = ids.val, ... }");
	if (!blas_get(&c->err))
		return -1;
	tcfg cf = {
		.lr = hval_get_num(p, "lr", 1e-3), .wd = hval_get_num(p, "weight_decay", 0.01),
		.b1 = hval_get_num(p, "beta1", 0.9), .b2 = hval_get_num(p, "beta2", 0.999), .eps = hval_get_num(p, "eps", 1e-8),
		.clip = hval_get_num(p, "clip", 1.0), .batch = hval_get_int(p, "batch", 32), .epochs = hval_get_int(p, "epochs", 5),
		.steps = hval_get_int(p, "steps", 0), .warmup = hval_get_int(p, "warmup", 0),
		.patience = hval_get_int(p, "patience", 0), .ckpt_every = hval_get_int(p, "checkpoint_every", 0),
		.seed = hval_get_int(p, "seed", 0), .sched = sched_parse(hval_get_str(p, "schedule", "cosine")),
		.metric = hval_get_str(p, "metric", NULL),
	};
	if (cf.sched < 0)
		return kctx_fail(c, "train: schedule: expected constant, linear or cosine");
	if (cf.batch < 1 || cf.batch > 65536)
		return kctx_fail(c, "train: batch: expected 1..65536, got %lld", cf.batch);
	const kinput *base = kinput_slot(in, nin, "base");
	model_arch arch = ARCH_GPT2;
	if (base && model_detect_dir(&c->err, base->path, &arch) != 0)
		return herr_prefix(&c->err, "train: base %s", base->label);
	/* device = "cuda": a GPT-2 language model, fully fine-tuned, for now */
	const char *device = hval_get_str(p, "device", "cpu");
	if (!strcmp(device, "cpu") && !strcmp(hval_get_str(p, "precision", "fp32"), "bf16"))
		return kctx_fail(c, "train: precision = \"bf16\" is for device = \"cuda\"; the CPU trains in fp32");
	if (strcmp(device, "cpu") && !base)
		return kctx_fail(c, "train: device = \"%s\" trains transformers (a base = model); this stage trains a "
		                 "classifier on features, on device = \"cpu\"", device);
	if (!nn_backend(&c->err, device))
		return herr_prefix(&c->err, "train");
	if (base && arch == ARCH_BERT)
		return train_bert(c, p, &cf, ti, vi, base, outdir);
	if (base && hval_get(p, "objective"))
		return kctx_fail(c, "train: objective: masked-LM training needs a BERT base; a GPT-2 base trains as a language model "
		                 "(no objective) or a classifier (output = { ... })");
	const hval *out = hval_get(p, "output");
	if (base && out && out->t == HV_MAP && out->n == 1 && out->v[0].t == HV_STR && !strcmp(out->v[0].s, "tags"))
		return kctx_fail(c, "train: output { %s = \"tags\" }: tagging needs a BERT base (BertForTokenClassification)",
		                 out->k[0]);
	if (base && out && arch == ARCH_LLAMA)
		return kctx_fail(c, "train: output = { ... }: a classification head on a Llama-family base is not supported; "
		                 "GPT-2 and BERT bases have one, or train the Llama as a language model (no output)");
	if (base && out)
		return train_seqcls(c, p, &cf, ti, vi, base, outdir);
	if (base)
		return train_lm(c, p, &cf, ti, vi, base, outdir);
	ml_split tr, va;
	memset(&va, 0, sizeof va);
	if (ml_split_open(&c->err, &tr, ti->path, ti->label) != 0)
		return -1;
	if (vi && ml_split_open(&c->err, &va, vi->path, vi->label) != 0) {
		ml_split_close(&tr);
		return -1;
	}
	clf_model m;
	memset(&m, 0, sizeof m);
	tstate s;
	tstate_init(&s);
	float *cw = NULL;
	uint32_t *perm = NULL, *idx = NULL;
	double *vout = NULL;
	clf_ws *ws = NULL;
	int rc = build_model(c, p, &tr, &m);
	if (rc == 0)
		rc = ml_split_fill(&c->err, &tr, &m, 1);
	if (rc == 0 && vi)
		rc = ml_split_fill(&c->err, &va, &m, 1);
	if (rc == 0 && tr.d.n == 0)
		rc = kctx_fail(c, "train: %s has no rows", tr.label);
	if (rc == 0 && m.out != OUT_NUM) {
		m.prior = xcalloc((size_t)m.ncls, sizeof *m.prior);
		for (size_t i = 0; i < tr.d.n; i++)
			m.prior[tr.d.y[i]] += 1.0 / (double)tr.d.n;
	}
	if (rc == 0)
		rc = class_weights(c, p, &m, &tr.d, &cw);
	const char *metric = cf.metric ? cf.metric : m.out == OUT_NUM ? "rmse" : "f1";
	if (rc == 0 && strcmp(metric, "loss") && strcmp(metric, "accuracy") && strcmp(metric, "f1") && strcmp(metric, "roc_auc") &&
	    strcmp(metric, "rmse") && strcmp(metric, "mae") && strcmp(metric, "r2"))
		rc = kctx_fail(c, "train: metric: '%s' is not one of: %s", metric, ml_metric_names(&m));
	if (rc) {
		free(cw);
		clf_free(&m);
		ml_split_close(&tr);
		ml_split_close(&va);
		buf_free(&s.curve);
		return -1;
	}
	clf_init(&m, (uint64_t)cf.seed);
	clf_learn cl = {&m, &tr.d, &va.d, NULL, NULL, cw, 0, (uint64_t)cf.seed, c->threads};
	cl.ws = clf_ws_new(&m, (int)((size_t)cf.batch < tr.d.n ? (size_t)cf.batch : tr.d.n), c->threads);
	cl.vout = vi ? xmalloc((va.d.n ? va.d.n : 1) * (size_t)ml_out_width(&m) * sizeof *cl.vout) : NULL;
	learner L = {m.p, m.nparams, clf_step, clf_score, &cl, NULL, NULL};
	kctx_metric(c, "params", (double)m.nparams);
	loop_result lr;
	rc = train_loop(c, &cf, &L, tr.d.n, vi != NULL, metric, ml_metric_higher(metric), &s, &lr);
	ws = cl.ws;
	vout = cl.vout;
	size_t B = lr.batch;
	long long spe = lr.spe, stopped = lr.stopped, t_start = lr.t_start;
	int resumed = lr.resumed;
	double t0 = lr.t0;
	size_t bytes = m.nparams * sizeof(float);
	if (rc == 0) {
		if (vi && s.best_epoch > 0)
			memcpy(m.p, s.best_p, bytes);
		double el = now_seconds() - t0;
		buf sum;
		buf_init(&sum);
		buf_printf(&sum, "{\"steps\": %lld, \"epochs\": %lld, \"steps_per_epoch\": %lld, \"batch\": %zu, \"params\": %zu, "
		           "\"stopped_early_after_epoch\": %lld, \"metric\": \"%s\", \"best_epoch\": %lld, \"best\": ",
		           s.step, (s.step + spe - 1) / spe, spe, B, m.nparams, stopped, metric, s.best_epoch);
		train_finish_summary(c, &sum, &s, metric, vi != NULL, resumed, 0);
		rc = write_outputs(c, &m, outdir, &s.curve, sum.p);
		buf_free(&sum);
		if (el > 0 && s.step > t_start)
			kctx_metric(c, "examples_per_s", round((double)(s.step - t_start) * (double)B / el));
	}
	clf_ws_free(ws);
	free(perm);
	free(idx);
	free(vout);
	free(cw);
	tstate_free(&s);
	clf_free(&m);
	ml_split_close(&tr);
	ml_split_close(&va);
	return rc;
}

const kernel_def stage_train = {"train", 3, k_train, NULL};
