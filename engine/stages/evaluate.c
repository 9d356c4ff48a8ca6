/*
 * evaluate — a trained model on a split: every metric of engine/ml/metrics
 * (scikit-learn's definitions), a trivial baseline (the train split's class
 * frequencies / mean), and optionally another model on the same rows.
 *
 * Inputs: slot "1" the model (train's output), slot "2" the split to score
 * (tokenize's output for it), slot "compare" another model (optional).
 * Output folder:
 *   metrics.json  {"model": report, "baseline": report, "compare": report,
 *                  "difference": {metric: model - compare}}
 *   data.rec      one row per input row: row, the true value, predicted,
 *                 prob_<class> for each class, correct (and id when the
 *                 input has one)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/blas.h"
#include "../ml/metrics.h"
#include "../ml/encdata.h"
#include "../ml/lmdata.h"
#include "../ml/mldata.h"
#include "../ml/deploy.h"
#include "stages.h"

typedef struct score {
	double *out;          /* n × K */
	uint32_t *pred;
	cls_report cr;
	reg_report rr;
} score;

static int score_of(kctx *c, const clf_model *m, const clf_data *d, double *out, score *s)
{
	memset(s, 0, sizeof *s);
	s->out = out;
	size_t K = (size_t)ml_out_width(m);
	if (m->out == OUT_NUM) {
		double *y = xmalloc((d->n ? d->n : 1) * sizeof *y);
		for (size_t i = 0; i < d->n; i++)
			y[i] = (double)d->yv[i] * m->y_std + m->y_mean;
		int rc = metrics_regress(&c->err, &s->rr, y, out, d->n);
		free(y);
		return rc;
	}
	s->pred = xmalloc((d->n ? d->n : 1) * sizeof *s->pred);
	for (size_t i = 0; i < d->n; i++)
		s->pred[i] = ml_decide(m, out + i * K);
	return metrics_classify(&c->err, &s->cr, d->y, s->pred, out, d->n, K);
}

static void score_free(score *s)
{
	free(s->pred);
	cls_report_free(&s->cr);
}

static void score_json(const clf_model *m, const score *s, buf *b)
{
	if (m->out == OUT_NUM)
		reg_report_json(&s->rr, b);
	else
		cls_report_json(&s->cr, (const char *const *)m->classes, b);
}

/* The headline numbers, for the run record and the difference. */
static int headline(const clf_model *m, const score *s, const char **names, double *v)
{
	if (m->out == OUT_NUM) {
		names[0] = "mae", v[0] = s->rr.mae;
		names[1] = "rmse", v[1] = s->rr.rmse;
		names[2] = "r2", v[2] = s->rr.r2;
		return 3;
	}
	int k = 0;
	names[k] = "accuracy", v[k++] = s->cr.accuracy;
	names[k] = "f1_macro", v[k++] = s->cr.macro_f1;
	if (m->out == OUT_BIN || m->ncls == 2) {
		names[k] = "f1", v[k++] = s->cr.f1[1];
		names[k] = "precision", v[k++] = s->cr.precision[1];
		names[k] = "recall", v[k++] = s->cr.recall[1];
	}
	names[k] = "roc_auc", v[k++] = s->cr.roc_auc;
	names[k] = "pr_auc", v[k++] = s->cr.pr_auc;
	names[k] = "log_loss", v[k++] = s->cr.log_loss;
	return k;
}

static int write_predictions(kctx *c, const clf_model *m, const ml_split *sp, const score *s, const char *outdir)
{
	rec_writer *w = recw_new();
	size_t K = (size_t)ml_out_width(m);
	int f_row = recw_field(w, "row", REC_INT);
	int id_in = recr_find(&sp->r, "id");
	int f_id = id_in >= 0 ? recw_field(w, "id", sp->r.fields[id_in].type) : -1;
	rec_type vt = m->out == OUT_NUM ? REC_FLOAT : REC_CAT;
	int f_true = recw_field(w, m->target, vt);
	int f_pred = recw_field(w, "predicted", vt);
	int *f_prob = xcalloc(K, sizeof *f_prob);
	if (m->out != OUT_NUM)
		for (size_t k = 0; k < K; k++) {
			char *nm = xasprintf("prob_%s", m->classes[k]);
			f_prob[k] = recw_field(w, nm, REC_FLOAT);
			free(nm);
		}
	int f_ok = m->out != OUT_NUM ? recw_field(w, "correct", REC_BOOL) : -1;
	for (size_t i = 0; i < sp->d.n; i++) {
		recw_int(w, f_row, (long long)i + 1);
		if (f_id >= 0)
			recw_copy_value(w, f_id, &sp->r, id_in, i);
		if (m->out == OUT_NUM) {
			recw_float(w, f_true, (double)sp->d.yv[i] * m->y_std + m->y_mean);
			recw_float(w, f_pred, s->out[i]);
		} else {
			const char *t = m->classes[sp->d.y[i]], *pr = m->classes[s->pred[i]];
			recw_str(w, f_true, t, strlen(t));
			recw_str(w, f_pred, pr, strlen(pr));
			for (size_t k = 0; k < K; k++)
				recw_float(w, f_prob[k], s->out[i * K + k]);
			recw_bool(w, f_ok, s->pred[i] == sp->d.y[i]);
		}
		recw_end_row(w);
	}
	char *path = NULL;
	int rc = kctx_out_path(c, outdir, RECORDS_FILE, &path);
	if (rc == 0)
		rc = recw_write(&c->err, w, path);
	free(path);
	free(f_prob);
	recw_free(w);
	return rc;
}

/* Scores of the model, the baseline and (co) the compared model on the
 * split's rows; metrics.json, the predictions and the run record. */
static int report(kctx *c, const clf_model *mp, const ml_split *sp, double *out, double *base, double *co, const char *outdir)
{
	const clf_model m = *mp;
	size_t n = sp->d.n;
	int ci = co != NULL;
	score ms, bs, cs;
	memset(&ms, 0, sizeof ms);
	memset(&bs, 0, sizeof bs);
	memset(&cs, 0, sizeof cs);
	int rc = score_of(c, &m, &sp->d, out, &ms);
	if (rc == 0)
		rc = score_of(c, &m, &sp->d, base, &bs);
	if (rc == 0 && co)
		rc = score_of(c, &m, &sp->d, co, &cs);
	const char *names[8], *cn[8];
	double v[8], bv[8], cv[8];
	int nh = 0;
	if (rc == 0) {
		nh = headline(&m, &ms, names, v);
		headline(&m, &bs, cn, bv);
		if (ci)
			headline(&m, &cs, cn, cv);
		buf b;
		buf_init(&b);
		buf_printf(&b, "{\"rows\": %zu, \"output\": ", n);
		buf_json_str(&b, m.target);
		buf_adds(&b, ",\n\"model\": ");
		score_json(&m, &ms, &b);
		buf_adds(&b, ",\n\"baseline\": ");
		score_json(&m, &bs, &b);
		if (ci) {
			buf_adds(&b, ",\n\"compare\": ");
			score_json(&m, &cs, &b);
			buf_adds(&b, ",\n\"difference\": {");
			for (int k = 0; k < nh; k++) {
				buf_printf(&b, "%s\"%s\": ", k ? ", " : "", names[k]);
				buf_json_num(&b, v[k] - cv[k]);
			}
			buf_addc(&b, '}');
		}
		buf_adds(&b, "}\n");
		char *path = NULL;
		rc = kctx_out_path(c, outdir, "metrics.json", &path);
		if (rc == 0)
			rc = fs_write_atomic(&c->err, path, b.p, b.len);
		free(path);
		buf_free(&b);
	}
	if (rc == 0)
		rc = write_predictions(c, &m, sp, &ms, outdir);
	if (rc == 0) {
		kctx_metric(c, "rows", (double)n);
		for (int k = 0; k < nh; k++)
			kctx_metric(c, names[k], v[k]);
		for (int k = 0; k < nh; k++) {
			char nm[64];
			snprintf(nm, sizeof nm, "baseline_%s", names[k]);
			kctx_metric(c, nm, bv[k]);
		}
		for (int k = 0; ci && k < nh; k++) {
			char nm[64];
			snprintf(nm, sizeof nm, "compare_%s", names[k]);
			kctx_metric(c, nm, cv[k]);
		}
	}
	score_free(&ms);
	score_free(&bs);
	score_free(&cs);
	return rc;
}

/* The architecture of a Hugging Face model folder; 0 for hone's own
 * classifiers (their config.json names no model_type). */
static int hf_arch(const char *dir, model_arch *arch)
{
	char *p = path_join(dir, "config.json");
	buf b;
	buf_init(&b);
	herr e;
	int hf = fs_read(&e, p, &b) == 0 && (strstr(b.p, "\"model_type\"") || strstr(b.p, "\"n_layer\"")) &&
	         model_detect(&e, b.p, b.len, p, arch) == 0;
	buf_free(&b);
	free(p);
	return hf;
}

/* Loss, perplexity and token accuracy of a language model on a split. */
static int lm_score_model(kctx *c, const kinput *mi, const kinput *di, const char *quant, double *loss, double *acc,
                          double *tokens)
{
	clm m;
	if (clm_load_dir(&c->err, &m, mi->path) != 0)
		return herr_prefix(&c->err, "evaluate: %s", mi->label);
	if (quant && (!m.g ? herr_set(&c->err, "quant: the stored GGUF types are for GPT-2 models; %s is a %s", mi->label,
	                              clm_name(&m))
	                   : deploy_round_trip(&c->err, m.g, quant)) != 0) {
		clm_free(&m);
		return herr_prefix(&c->err, "evaluate");
	}
	lm_split sp;
	int rc = lm_open(&c->err, &sp, di->path, di->label, clm_vocab(&m), clm_max_pos(&m));
	if (rc == 0)
		rc = lm_require_targets(&c->err, &sp, "evaluate", di->label);
	if (rc == 0) {
		int T = 1;
		for (size_t i = 0; i < sp.n; i++)
			T = (int)sp.len[i] > T ? (int)sp.len[i] : T;
		int B = sp.n < 16 ? (int)sp.n : 16;
		rc = clm_check_len(&c->err, &m, T, "evaluate");
		lm_batch l = {&m, rc ? NULL : clm_ws_new_on(&m, B, T, c->threads, &nn_cpu), &sp, &sp, B, T,
		              xmalloc((size_t)B * (size_t)T * sizeof(uint32_t)), xmalloc((size_t)B * (size_t)T * sizeof(int32_t)), 0};
		if (rc == 0)
			*loss = lm_eval(&l, &sp, acc, tokens);
		clm_ws_free(l.ws);
		free(l.ids);
		free(l.tg);
	}
	lm_close(&sp);
	clm_free(&m);
	return rc;
}

/* A language model's metrics.json and run record: loss, perplexity and an
 * accuracy (acc_key: token_accuracy or masked_accuracy) for the model and
 * the compared one; count_key names how many tokens were scored */
static int lm_report(kctx *c, const char *outdir, const char *task, const char *acc_key, const char *count_key,
                     double count, double loss, double acc, int compare, double closs, double cacc)
{
	buf b;
	buf_init(&b);
	for (int k = 0; k < (compare ? 2 : 1); k++) {
		if (k)
			buf_adds(&b, ",\n\"compare\": {\"loss\": ");
		else
			buf_printf(&b, "{\"task\": \"%s\", \"model\": {\"loss\": ", task);
		buf_json_num(&b, k ? closs : loss);
		buf_adds(&b, ", \"perplexity\": ");
		buf_json_num(&b, exp(k ? closs : loss));
		buf_printf(&b, ", \"%s\": ", acc_key);
		buf_json_num(&b, k ? cacc : acc);
		buf_adds(&b, "}");
	}
	buf_adds(&b, "}\n");
	char *path = NULL;
	int rc = kctx_out_path(c, outdir, "metrics.json", &path);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, path, b.p, b.len);
	free(path);
	buf_free(&b);
	if (rc == 0) {
		char name[64];
		kctx_metric(c, count_key, count);
		kctx_metric(c, "loss", loss);
		kctx_metric(c, "perplexity", exp(loss));
		kctx_metric(c, acc_key, acc);
		if (compare) {
			kctx_metric(c, "compare_perplexity", exp(closs));
			snprintf(name, sizeof name, "compare_%s", acc_key);
			kctx_metric(c, name, cacc);
		}
	}
	return rc;
}

static int evaluate_lm(kctx *c, const kinput *mi, const kinput *di, const kinput *ci, const char *quant, const char *outdir)
{
	double loss, acc, tokens, closs = NAN, cacc = NAN, ctok;
	if (lm_score_model(c, mi, di, quant, &loss, &acc, &tokens) != 0)
		return -1;
	if (ci && lm_score_model(c, ci, di, quant, &closs, &cacc, &ctok) != 0)
		return -1;
	int rc = lm_report(c, outdir, "causal_lm", "token_accuracy", "target_tokens", tokens, loss, acc, ci != NULL, closs, cacc);
	if (rc == 0 && quant) { /* the model as it is, beside its quantized self */
		double uloss, uacc, utok;
		rc = lm_score_model(c, mi, di, NULL, &uloss, &uacc, &utok);
		if (rc == 0) {
			kctx_metric(c, "unquantized_perplexity", exp(uloss));
			kctx_metric(c, "unquantized_token_accuracy", uacc);
			kctx_log(c, "evaluate: %s weights: perplexity %.4f (%.4f unquantized)", quant, exp(loss), exp(uloss));
		}
	}
	return rc;
}

/* the BERT evaluations' progress: the stage's bar, and its stop */
static int eval_progress(void *ud, double done, double total) { return kctx_progress(ud, done, total, "rows"); }

/* A sequence classifier on token ids: a GPT-2 with a score head or a
 * BERT with pooler and classifier (train { base = ..., output = ... }) */
typedef struct seq_model {
	model_arch arch;
	gpt2 g;
	bert b;
	int K;
	char **labels;
} seq_model;

static int seq_load(kctx *c, seq_model *sm, const kinput *mi)
{
	memset(sm, 0, sizeof *sm);
	if (model_detect_dir(&c->err, mi->path, &sm->arch) != 0)
		return herr_prefix(&c->err, "evaluate: %s", mi->label);
	if (sm->arch == ARCH_BERT) {
		if (bert_load_dir(&c->err, &sm->b, mi->path) != 0)
			return herr_prefix(&c->err, "evaluate: %s", mi->label);
		if (sm->b.cfg.head != BERT_SEQCLS || sm->b.cfg.problem != BERT_SINGLE)
			return kctx_fail(c, "evaluate: %s is not a single-label BERT classifier", mi->label);
		sm->K = sm->b.cfg.nlabels;
		sm->labels = sm->b.labels;
		return 0;
	}
	if (gpt2_load_dir(&c->err, &sm->g, mi->path) != 0)
		return herr_prefix(&c->err, "evaluate: %s", mi->label);
	sm->K = sm->g.cfg.ncls;
	sm->labels = sm->g.labels;
	return 0;
}

static void seq_free(seq_model *sm)
{
	if (sm->arch == ARCH_BERT)
		bert_free(&sm->b);
	else if (sm->arch == ARCH_GPT2)
		gpt2_free(&sm->g);
	memset(sm, 0, sizeof *sm);
}

/* its probabilities through the classifier's reports; the baseline from
 * the train split's priors (train.json) */
static int seqcls_probs(kctx *c, const seq_model *sm, const kinput *di, double *out)
{
	lm_split sp;
	int vocab = sm->arch == ARCH_BERT ? sm->b.cfg.vocab : sm->g.cfg.vocab;
	int maxt = sm->arch == ARCH_BERT ? sm->b.cfg.max_pos : sm->g.cfg.n_positions;
	if (lm_open(&c->err, &sp, di->path, di->label, vocab, maxt) != 0)
		return -1;
	int T = 1, B = sp.n < 16 ? (int)(sp.n ? sp.n : 1) : 16;
	for (size_t i = 0; i < sp.n; i++)
		T = (int)sp.len[i] > T ? (int)sp.len[i] : T;
	if (sm->arch == ARCH_BERT) {
		bert_ws *ws = bert_ws_new(&sm->b, B, T, c->threads);
		enc_set_progress(eval_progress, c);
		enc_cls_eval(&sm->b, ws, &sp, NULL, B, T, out);
		enc_set_progress(NULL, NULL);
		if (kctx_stopping(c)) {
			bert_ws_free(ws);
			lm_close(&sp);
			return -1;
		}
		bert_ws_free(ws);
	} else {
		gpt2_ws *ws = gpt2_ws_new(&sm->g, B, T, c->threads);
		lm_cls_eval(&sm->g, ws, &sp, NULL, B, T, out);
		gpt2_ws_free(ws);
	}
	lm_close(&sp);
	return 0;
}

static int evaluate_seqcls(kctx *c, const kinput *mi, const kinput *di, const kinput *ci, const char *outdir)
{
	seq_model m, cm;
	memset(&cm, 0, sizeof cm);
	if (seq_load(c, &m, mi) != 0) {
		seq_free(&m);
		return -1;
	}
	char *tp = path_join(mi->path, "train.json");
	buf tj;
	buf_init(&tj);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = fs_read(&c->err, tp, &tj) == 0 ? json_parse(a, tj.p, tj.len, &je) : NULL;
	const jnode *out_f = r ? json_member(r, "output", 6) : NULL, *pri = r ? json_member(r, "priors", 6) : NULL;
	int rc = 0;
	if (!out_f || out_f->t != J_STR)
		rc = kctx_fail(c, "evaluate: %s: train.json does not name the output field", mi->label);
	clf_model proxy;
	memset(&proxy, 0, sizeof proxy);
	ml_split sp;
	memset(&sp, 0, sizeof sp);
	size_t K = (size_t)m.K;
	if (rc == 0) {
		char *target = xstrndup(out_f->s, out_f->len);
		lm_cls_proxy(&proxy, target, m.labels, m.K);
		free(target);
		proxy.prior = xcalloc(K, sizeof *proxy.prior);
		size_t k = 0;
		for (const jnode *v = pri && pri->t == J_ARR ? pri->kid : NULL; v && k < K; v = v->next, k++)
			json_number(v, &proxy.prior[k]);
		rc = ml_split_open(&c->err, &sp, di->path, di->label);
		if (rc == 0)
			rc = ml_split_fill(&c->err, &sp, &proxy, 1);
		if (rc == 0 && sp.d.n == 0)
			rc = kctx_fail(c, "evaluate: %s has no rows", di->label);
	}
	if (rc == 0 && ci) {
		rc = seq_load(c, &cm, ci);
		if (rc == 0 && cm.K != m.K)
			rc = kctx_fail(c, "evaluate: compare: %s is not a classifier of the same %zu classes", ci->label, K);
		for (size_t k = 0; rc == 0 && k < K; k++)
			if (strcmp(cm.labels[k], m.labels[k]))
				rc = kctx_fail(c, "evaluate: compare: %s has other classes than %s", ci->label, mi->label);
	}
	size_t n = rc == 0 ? sp.d.n : 0;
	double *out = xmalloc((n ? n : 1) * K * sizeof *out), *base = xmalloc((n ? n : 1) * K * sizeof *base), *co = NULL;
	if (rc == 0) {
		kctx_progress(c, 0, (double)n, "rows");
		rc = seqcls_probs(c, &m, di, out);
		kctx_progress(c, (double)n, (double)n, "rows");
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < K; k++)
			base[i * K + k] = proxy.prior[k];
	if (rc == 0 && ci) {
		co = xmalloc(n * K * sizeof *co);
		rc = seqcls_probs(c, &cm, di, co);
	}
	if (rc == 0)
		rc = report(c, &proxy, &sp, out, base, co, outdir);
	free(out);
	free(base);
	free(co);
	free(tp);
	buf_free(&tj);
	json_arena_free(a);
	clf_free(&proxy);
	ml_split_close(&sp);
	seq_free(&m);
	seq_free(&cm);
	return rc;
}

/* A masked LM (BertForMaskedLM) on a split: loss, perplexity and accuracy
 * on BERT's corruption of it, drawn from a fixed seed (the same tokens for
 * every model scored) */
static int mlm_score_model(kctx *c, const kinput *mi, const kinput *di, long long *mask_id, double *loss, double *acc,
                           double *count)
{
	bert m;
	if (bert_load_dir(&c->err, &m, mi->path) != 0)
		return herr_prefix(&c->err, "evaluate: %s", mi->label);
	lm_split sp;
	int rc = m.cfg.head == BERT_MLM ? 0 : kctx_fail(c, "evaluate: %s is a BERT without a masked-LM or classifier head", mi->label);
	if (rc == 0)
		rc = lm_open(&c->err, &sp, di->path, di->label, m.cfg.vocab, m.cfg.max_pos);
	/* the [MASK] id: train.json's (what the model was trained with), else the tokenizer's */
	char *tp = path_join(mi->path, "train.json");
	buf tj;
	buf_init(&tj);
	herr e;
	if (*mask_id <= 0 && fs_exists(tp) && fs_read(&e, tp, &tj) == 0) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, tj.p, tj.len, &je);
		if (r)
			json_int(json_member(r, "mask_id", 7), 1, m.cfg.vocab - 1, mask_id);
		json_arena_free(a);
	}
	buf_free(&tj);
	free(tp);
	mlm_cfg mc;
	if (rc == 0)
		rc = enc_mlm_setup(&c->err, &mc, "evaluate", di->path, di->label, m.cfg.vocab, *mask_id, 0.15);
	if (rc == 0) {
		int T = 1, B = sp.n < 16 ? (int)(sp.n ? sp.n : 1) : 16;
		for (size_t i = 0; i < sp.n; i++)
			T = (int)sp.len[i] > T ? (int)sp.len[i] : T;
		bert_ws *ws = bert_ws_new(&m, B, T, c->threads);
		enc_set_progress(eval_progress, c);
		*loss = enc_mlm_eval(&m, ws, &sp, &mc, B, T, 0x6576616cull, acc, count);
		enc_set_progress(NULL, NULL);
		if (kctx_stopping(c))
			rc = -1;
		bert_ws_free(ws);
		if (*count == 0)
			rc = kctx_fail(c, "evaluate: %s has no tokens to mask", di->label);
	}
	if (m.cfg.head == BERT_MLM)
		lm_close(&sp);
	bert_free(&m);
	return rc;
}

/* A tagger (BertForTokenClassification) on a split tokenized with tags:
 * entity-level precision, recall and F1 as seqeval computes them, per
 * type, and token accuracy over the scored tokens (each word's first piece) */
static int tag_score_model(kctx *c, const kinput *mi, const kinput *di, tag_report *r, double *loss)
{
	bert m;
	if (bert_load_dir(&c->err, &m, mi->path) != 0)
		return herr_prefix(&c->err, "evaluate: %s", mi->label);
	lm_split sp;
	int rc = lm_open(&c->err, &sp, di->path, di->label, m.cfg.vocab, m.cfg.max_pos);
	if (rc == 0 && m.cfg.head != BERT_TOKCLS)
		rc = kctx_fail(c, "evaluate: %s is not a tagger (BertForTokenClassification)", mi->label);
	if (rc == 0 && !sp.labels.len)
		rc = kctx_fail(c, "evaluate: %s has no labels.i32 (tokenize it with tags = \"...\")", di->label);
	/* the split's tag set must be the model's */
	char *tp = path_join(di->path, "tokenize.json");
	buf tj;
	buf_init(&tj);
	if (rc == 0 && fs_read(&c->err, tp, &tj) == 0) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *js = json_parse(a, tj.p, tj.len, &je), *tg = js ? json_member(js, "tags", 4) : NULL;
		int k = 0;
		for (const jnode *v = tg && tg->t == J_ARR ? tg->kid : NULL; v && rc == 0; v = v->next, k++)
			if (k >= m.cfg.nlabels || strlen(m.labels[k]) != v->len || memcmp(m.labels[k], v->s, v->len))
				rc = kctx_fail(c, "evaluate: %s's tags are not %s's (tag %d)", di->label, mi->label, k);
		if (rc == 0 && k != m.cfg.nlabels)
			rc = kctx_fail(c, "evaluate: %s has %d tags, %s %d", di->label, k, mi->label, m.cfg.nlabels);
		json_arena_free(a);
	}
	buf_free(&tj);
	free(tp);
	if (rc == 0) {
		int T = 1, B = sp.n < 16 ? (int)(sp.n ? sp.n : 1) : 16;
		for (size_t i = 0; i < sp.n; i++)
			T = (int)sp.len[i] > T ? (int)sp.len[i] : T;
		bert_ws *ws = bert_ws_new(&m, B, T, c->threads);
		uint32_t *g, *p;
		size_t *off;
		enc_set_progress(eval_progress, c);
		*loss = enc_tag_eval(&m, ws, &sp, B, T, &g, &p, &off);
		enc_set_progress(NULL, NULL);
		if (kctx_stopping(c))
			rc = -1;
		char **names = xcalloc((size_t)m.cfg.nlabels + 1, sizeof *names);
		for (int k = 0; k < m.cfg.nlabels; k++)
			names[k] = m.labels[k];
		metrics_tagging(r, (const char *const *)names, g, p, off, sp.n);
		free(names);
		free(g);
		free(p);
		free(off);
		bert_ws_free(ws);
		if (r->tokens == 0)
			rc = kctx_fail(c, "evaluate: %s has no tagged tokens", di->label);
	}
	lm_close(&sp);
	bert_free(&m);
	return rc;
}

static int evaluate_tagging(kctx *c, const kinput *mi, const kinput *di, const kinput *ci, const char *outdir)
{
	tag_report r, cr;
	memset(&cr, 0, sizeof cr);
	double loss, closs = NAN;
	if (tag_score_model(c, mi, di, &r, &loss) != 0) {
		tag_report_free(&r);
		return -1;
	}
	int rc = ci ? tag_score_model(c, ci, di, &cr, &closs) : 0;
	buf b;
	buf_init(&b);
	buf_adds(&b, "{\"task\": \"tagging\", \"scheme\": \"seqeval (conlleval chunks), micro averages\", \"model\": ");
	tag_report_json(&r, &b);
	buf_adds(&b, ",\n\"loss\": ");
	buf_json_num(&b, loss);
	if (ci && rc == 0) {
		buf_adds(&b, ",\n\"compare\": ");
		tag_report_json(&cr, &b);
	}
	buf_adds(&b, "}\n");
	char *path = NULL;
	if (rc == 0)
		rc = kctx_out_path(c, outdir, "metrics.json", &path);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, path, b.p, b.len);
	free(path);
	buf_free(&b);
	if (rc == 0) {
		kctx_metric(c, "tokens", (double)r.tokens);
		kctx_metric(c, "entities", (double)r.true_entities);
		kctx_metric(c, "precision", r.precision);
		kctx_metric(c, "recall", r.recall);
		kctx_metric(c, "f1", r.f1);
		kctx_metric(c, "token_accuracy", r.token_accuracy);
		kctx_metric(c, "loss", loss);
		if (ci) {
			kctx_metric(c, "compare_f1", cr.f1);
			kctx_metric(c, "compare_token_accuracy", cr.token_accuracy);
		}
	}
	tag_report_free(&r);
	tag_report_free(&cr);
	return rc;
}

static int evaluate_mlm(kctx *c, const kinput *mi, const kinput *di, const kinput *ci, const char *outdir)
{
	double loss, acc, n, closs = NAN, cacc = NAN, cn;
	long long mask_id = 0; /* the model's, for the compared one too */
	if (mlm_score_model(c, mi, di, &mask_id, &loss, &acc, &n) != 0)
		return -1;
	if (ci && mlm_score_model(c, ci, di, &mask_id, &closs, &cacc, &cn) != 0)
		return -1;
	return lm_report(c, outdir, "masked_lm", "masked_accuracy", "masked_tokens", n, loss, acc, ci != NULL, closs, cacc);
}

static int k_evaluate(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const char *quant = hval_get_str(params, "quant", NULL);
	const kinput *mi = kinput_slot(in, nin, "1"), *di = kinput_slot(in, nin, "2"), *ci = kinput_slot(in, nin, "compare");
	if (!mi || !di)
		return kctx_fail(c, "evaluate: give a model and a split, as in evaluate { model, ids.test }");
	if (!blas_get(&c->err))
		return -1;
	model_arch arch;
	int hf = hf_arch(mi->path, &arch);
	if (quant && (!hf || arch != ARCH_GPT2))
		return kctx_fail(c, "evaluate: quant scores GPT-2 language models so far (as hone quantize writes them); %s is %s",
		                 mi->label, hf ? "a BERT" : "a classifier on features");
	if (hf && arch == ARCH_BERT) {
		bert_config bc;
		char *cp = path_join(mi->path, "config.json");
		buf b;
		buf_init(&b);
		int rc = fs_read(&c->err, cp, &b);
		if (rc == 0)
			rc = bert_config_parse(&c->err, &bc, b.p, b.len, cp);
		free(cp);
		buf_free(&b);
		if (rc)
			return herr_prefix(&c->err, "evaluate: %s", mi->label);
		if (bc.head == BERT_MLM)
			return evaluate_mlm(c, mi, di, ci, outdir);
		if (bc.head == BERT_SEQCLS && bc.problem == BERT_SINGLE)
			return evaluate_seqcls(c, mi, di, ci, outdir);
		if (bc.head == BERT_TOKCLS)
			return evaluate_tagging(c, mi, di, ci, outdir);
		return kctx_fail(c, "evaluate: %s: this BERT's head (%s) is not scored yet (sequence classification and masked LM "
		                 "are)", mi->label, bc.head == BERT_TOKCLS ? "token classification" : bc.head == BERT_SEQCLS ?
		                 "multi-label or regression" : "none");
	}
	if (hf_arch(mi->path, &arch)) {
		gpt2_config gc;
		char *cp = path_join(mi->path, "config.json");
		buf b;
		buf_init(&b);
		int cls = fs_read(&c->err, cp, &b) == 0 && gpt2_config_parse(&c->err, &gc, b.p, b.len, cp) == 0 && gc.ncls > 0;
		free(cp);
		buf_free(&b);
		if (cls && quant)
			return kctx_fail(c, "evaluate: quant scores GPT-2 language models so far; %s is a classifier", mi->label);
		return cls ? evaluate_seqcls(c, mi, di, ci, outdir) : evaluate_lm(c, mi, di, ci, quant, outdir);
	}
	clf_model m, cm;
	memset(&cm, 0, sizeof cm);
	ml_split sp;
	if (ml_model_load_dir(&c->err, &m, mi->path, mi->label) != 0)
		return -1;
	if (ml_split_open(&c->err, &sp, di->path, di->label) != 0) {
		clf_free(&m);
		return -1;
	}
	int rc = ml_split_fill(&c->err, &sp, &m, 1);
	if (rc == 0 && sp.d.n == 0)
		rc = kctx_fail(c, "evaluate: %s has no rows", di->label);
	if (rc == 0 && ci) {
		rc = ml_model_load_dir(&c->err, &cm, ci->path, ci->label);
		if (rc == 0 && (cm.out != m.out || cm.ncls != m.ncls || strcmp(cm.target, m.target)))
			rc = kctx_fail(c, "evaluate: compare: %s predicts something else than %s (output '%s')", ci->label, mi->label, m.target);
		for (int k = 0; rc == 0 && k < m.ncls; k++)
			if (strcmp(cm.classes[k], m.classes[k]))
				rc = kctx_fail(c, "evaluate: compare: %s has other classes than %s", ci->label, mi->label);
	}
	if (rc) {
		clf_free(&m);
		clf_free(&cm);
		ml_split_close(&sp);
		return -1;
	}
	size_t n = sp.d.n, K = (size_t)ml_out_width(&m);
	double *out = xmalloc(n * K * sizeof *out), *base = xmalloc(n * K * sizeof *base), *co = NULL;
	kctx_progress(c, 0, (double)n, "rows");
	ml_predict(&m, &sp.d, c->threads, out);
	kctx_progress(c, (double)n, (double)n, "rows");
	/* the baseline: the train split's class frequencies, or its mean */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < K; k++)
			base[i * K + k] = m.out == OUT_NUM ? m.y_mean : m.prior[k];
	if (ci) {
		ml_split cp;
		rc = ml_split_open(&c->err, &cp, di->path, di->label);
		if (rc == 0 && (rc = ml_split_fill(&c->err, &cp, &cm, 1)) == 0) {
			co = xmalloc(n * K * sizeof *co);
			ml_predict(&cm, &cp.d, c->threads, co);
		}
		if (rc == 0 || cp.label)
			ml_split_close(&cp);
	}
	if (rc == 0)
		rc = report(c, &m, &sp, out, base, co, outdir);
	free(out);
	free(base);
	free(co);
	clf_free(&m);
	clf_free(&cm);
	ml_split_close(&sp);
	return rc;
}

const kernel_def stage_evaluate = {"evaluate", 1, k_evaluate, NULL};
