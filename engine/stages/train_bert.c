/*
 * train for a BERT base: sequence classification (output = { label =
 * "field" }: the pooler and a classifier on [CLS], the classes the train
 * split's values) or masked-LM pre-training (objective = "mlm": BERT's
 * 15% of tokens, 80/10/10), in full or with LoRA adapters (PEFT's names;
 * the classifier trained beside them as modules_to_save). The trainer is
 * train.c's loop; the outputs are a Hugging Face folder, curve.jsonl,
 * train.json (and adapter/ with LoRA).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "../ml/classifier.h"
#include "../ml/metrics.h"
#include "../ml/encdata.h"
#include "../ml/mldata.h"
#include "../models/bert.h"
#include "../nn/nn.h"
#include "trainer.h"

typedef struct bert_learn {
	bert *m;
	bert_ws *ws;
	lm_split *tr, *va;
	int B, T, mlm, tag;
	mlm_cfg mc;
	char **tag_names;          /* tagging: the tag set (NULL-terminated) */
	const uint32_t *ytr, *yva; /* classes */
	clf_model *proxy;
	double *vprob;
	uint32_t *ids, *types;
	uint8_t *mask;
	int32_t *lab;
	uint64_t seed;
} bert_learn;

static double bert_step(void *ud, const uint32_t *idx, int nb, uint64_t step, float **grad)
{
	bert_learn *l = ud;
	enc_fill(l->tr, idx, nb, l->B, l->T, (uint32_t)l->m->cfg.pad_id, l->ids, l->types, l->mask);
	if (l->tag) {
		enc_tag_fill(l->tr, idx, nb, l->B, l->T, l->lab);
	} else if (l->mlm) {
		enc_mlm(&l->mc, l->ids, l->lab, l->mask, idx, l->B, l->T, train_mix(l->seed ^ (step * 0x9E3779B97F4A7C15ull)));
		for (int b = nb; b < l->B; b++)
			for (int t = 0; t < l->T; t++)
				l->lab[(size_t)b * (size_t)l->T + (size_t)t] = -1;
	} else {
		for (int b = 0; b < l->B; b++)
			l->lab[b] = b < nb ? (int32_t)l->ytr[idx[b]] : -1;
	}
	bert_batch bb = {l->ids, l->types, l->mask, l->lab, NULL};
	/* hidden_dropout_prob: masks from the seed and the step, validation without */
	bert_ws_dropout(l->ws, train_mix(l->seed ^ (step * 0x9E3779B97F4A7C15ull) ^ 0x64726f70ull) | 1);
	double loss = bert_forward(l->m, l->ws, &bb);
	bert_backward(l->m, l->ws);
	bert_ws_dropout(l->ws, 0);
	*grad = l->m->lora ? bert_lora_grad(l->ws) : bert_grad(l->ws);
	return loss;
}

static int bert_score(void *ud, herr *e, const char *metric, double *v)
{
	bert_learn *l = ud;
	if (l->tag) {
		uint32_t *g, *p;
		size_t *off;
		double loss = enc_tag_eval(l->m, l->ws, l->va, l->B, l->T, &g, &p, &off);
		tag_report r;
		metrics_tagging(&r, (const char *const *)l->tag_names, g, p, off, l->va->n);
		*v = !strcmp(metric, "loss") ? loss : !strcmp(metric, "accuracy") ? r.token_accuracy : r.f1;
		tag_report_free(&r);
		free(g);
		free(p);
		free(off);
		return 0;
	}
	if (l->mlm) {
		double acc;
		double loss = enc_mlm_eval(l->m, l->ws, l->va, &l->mc, l->B, l->T, l->seed ^ 0x76616cull, &acc, NULL);
		*v = !strcmp(metric, "perplexity") ? exp(loss) : !strcmp(metric, "accuracy") ? acc : loss;
		return 0;
	}
	double loss = enc_cls_eval(l->m, l->ws, l->va, l->yva, l->B, l->T, l->vprob);
	if (!strcmp(metric, "loss")) {
		*v = loss;
		return 0;
	}
	clf_data d = {l->va->n, NULL, 0, NULL, (uint32_t *)l->yva, NULL};
	return ml_score(e, l->proxy, &d, l->vprob, metric, v);
}

/* tokenize.json's tag set (NULL-terminated, sorted), for tags of field */
static int read_tags(kctx *c, const kinput *ti, const char *field, char ***names, size_t *n)
{
	char *p = path_join(ti->path, "tokenize.json");
	buf b;
	buf_init(&b);
	int rc = fs_read(&c->err, p, &b);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = rc == 0 ? json_parse(a, b.p, b.len, &je) : NULL;
	const jnode *tf = r ? json_member(r, "tag_field", 9) : NULL, *tg = r ? json_member(r, "tags", 4) : NULL;
	*names = NULL;
	*n = 0;
	if (rc == 0 && (!tf || tf->t != J_STR || !tg || tg->t != J_ARR)) {
		kctx_fail(c, "train: output { %s = \"tags\" }: %s was not tokenized with tags", field, ti->label);
		rc = herr_hint(&c->err, "tokenize { parts, tok, field = \"text\", tags = \"%s\" } (a WordPiece tokenizer)", field);
	} else if (rc == 0 && (tf->len != strlen(field) || memcmp(tf->s, field, tf->len))) {
		rc = kctx_fail(c, "train: output { %s = \"tags\" }: %s was tokenized with tags = \"%.*s\"", field, ti->label,
		               (int)tf->len, tf->s);
	}
	for (const jnode *k = rc == 0 ? tg->kid : NULL; k; k = k->next) {
		*names = xrealloc(*names, (*n + 2) * sizeof **names);
		(*names)[(*n)++] = xstrndup(k->s, k->len);
		(*names)[*n] = NULL;
	}
	if (rc == 0 && *n < 2)
		rc = kctx_fail(c, "train: %s has %zu tag%s; a tagger needs 2 or more", ti->label, *n, *n == 1 ? "" : "s");
	json_arena_free(a);
	buf_free(&b);
	free(p);
	return rc;
}

/* method = "lora": adapters on the targets (default query, value: PEFT's
 * for BERT), the classifier trained in full beside them */
static int lora_setup(kctx *c, const hval *p, bert *m, lora *lo, uint64_t seed)
{
	lora_arch a;
	bert_lora_arch(m, &a);
	static const char *const dflt[] = {"query", "value", NULL};
	if (train_lora_init(c, p, &a, dflt, m->cfg.hidden, "hidden_size", lo, seed) != 0)
		return -1;
	if (lo->dropout > 0)
		kctx_log(c, "train: lora_dropout %.2g applies to GPT-2's adapters only; BERT's train without it", lo->dropout);
	lo->dropout = 0;
	bert_lora_add_head(lo, m);
	m->lora = lo;
	return 0;
}

int train_bert(kctx *c, const hval *p, const tcfg *cf, const kinput *ti, const kinput *vi, const kinput *base,
               const char *outdir)
{
	const char *objective = hval_get_str(p, "objective", NULL);
	const hval *o = hval_get(p, "output");
	int mlm = objective && !strcmp(objective, "mlm");
	if (objective && !mlm)
		return kctx_fail(c, "train: objective: a BERT base trains with \"mlm\" (masked LM), or give output = { label = \"field\" }");
	if (mlm && o)
		return kctx_fail(c, "train: give objective = \"mlm\" or output = { ... }, not both");
	if (!mlm && (!o || o->t != HV_MAP || o->n != 1))
		return kctx_fail(c, "train: a BERT base needs output = { label = \"category\" } (a classifier) or objective = \"mlm\"");
	const char *target = mlm ? NULL : o->k[0];
	int tag = !mlm && o->v[0].t == HV_STR && !strcmp(o->v[0].s, "tags");
	const char *metric = cf->metric ? cf->metric : mlm ? "loss" : "f1";
	if (tag && strcmp(metric, "loss") && strcmp(metric, "accuracy") && strcmp(metric, "f1"))
		return kctx_fail(c, "train: metric: a tagger is selected on f1 (entities), accuracy (tokens) or loss, not %s", metric);
	if (mlm && strcmp(metric, "loss") && strcmp(metric, "perplexity") && strcmp(metric, "accuracy"))
		return kctx_fail(c, "train: metric: masked-LM training is selected on loss, perplexity or accuracy, not %s", metric);
	if (!mlm && strcmp(metric, "loss") && strcmp(metric, "accuracy") && strcmp(metric, "f1") && strcmp(metric, "roc_auc"))
		return kctx_fail(c, "train: metric: a classifier is selected on loss, accuracy, f1 or roc_auc, not %s", metric);
	bert m;
	if (bert_load_dir(&c->err, &m, base->path) != 0)
		return herr_prefix(&c->err, "train: base %s", base->label);
	if (m.cfg.dropout > 0)
		kctx_log(c, "train: dropout %.2g (the config's hidden_dropout_prob) on the embeddings, each block's dense outputs "
		         "and the classifier's input; attention probabilities are not dropped", m.cfg.dropout);
	lm_split tr, va;
	memset(&va, 0, sizeof va);
	ml_split ytr, yva;
	memset(&ytr, 0, sizeof ytr);
	memset(&yva, 0, sizeof yva);
	clf_model proxy;
	memset(&proxy, 0, sizeof proxy);
	bert_learn l;
	memset(&l, 0, sizeof l);
	int rc = lm_open(&c->err, &tr, ti->path, ti->label, m.cfg.vocab, m.cfg.max_pos);
	if (rc == 0 && vi)
		rc = lm_open(&c->err, &va, vi->path, vi->label, m.cfg.vocab, m.cfg.max_pos);
	if (rc == 0 && tr.n == 0)
		rc = kctx_fail(c, "train: %s has no rows", ti->label);
	int T = 1;
	for (size_t i = 0; rc == 0 && i < tr.n; i++)
		T = (int)tr.len[i] > T ? (int)tr.len[i] : T;
	for (size_t i = 0; rc == 0 && vi && i < va.n; i++)
		T = (int)va.len[i] > T ? (int)va.len[i] : T;
	if (rc == 0 && mlm) {
		rc = enc_mlm_setup(&c->err, &l.mc, "train", ti->path, ti->label, m.cfg.vocab, hval_get_int(p, "mask_id", 0),
		                   hval_get_num(p, "mlm_rate", 0.15));
		if (rc == 0 && m.cfg.head != BERT_MLM)
			bert_set_head(&m, BERT_MLM, 0, NULL, 0, (uint64_t)cf->seed);
	}
	char **tag_names = NULL;
	size_t ntags = 0;
	if (rc == 0 && tag) {
		/* the tags: tokenize's tag set, the same for every part */
		rc = read_tags(c, ti, target, &tag_names, &ntags);
		if (rc == 0 && !tr.labels.len)
			rc = kctx_fail(c, "train: %s has no labels.i32", ti->label);
		int same = rc == 0 && m.cfg.head == BERT_TOKCLS && m.cfg.nlabels == (int)ntags;
		for (size_t i = 0; same && i < ntags; i++)
			same = !strcmp(m.labels[i], tag_names[i]);
		if (rc == 0 && !same)
			bert_set_head(&m, BERT_TOKCLS, (int)ntags, (const char *const *)tag_names, BERT_SINGLE, (uint64_t)cf->seed);
		if (rc == 0 && vi && !va.labels.len)
			rc = kctx_fail(c, "train: %s has no labels.i32", vi->label);
	}
	if (rc == 0 && !mlm && !tag) {
		/* the classes: the train split's values, sorted; a base that already
		 * is a classifier of the same classes keeps its head */
		uint32_t k;
		char **cls;
		rc = train_find_classes(c, &tr.s.r, ti->label, target, &cls, &k);
		int same = rc == 0 && m.cfg.head == BERT_SEQCLS && m.cfg.problem == BERT_SINGLE && m.cfg.nlabels == (int)k;
		for (uint32_t i = 0; same && i < k; i++)
			same = !strcmp(m.labels[i], cls[i]);
		if (rc == 0 && !same)
			bert_set_head(&m, BERT_SEQCLS, (int)k, (const char *const *)cls, BERT_SINGLE, (uint64_t)cf->seed);
		strv_free(cls, k);
		if (rc == 0)
			rc = train_class_ids(c, &proxy, target, m.labels, m.cfg.nlabels, ti, vi, &ytr, &yva);
	}
	int lora_m = !strcmp(hval_get_str(p, "method", "full"), "lora");
	lora lo;
	memset(&lo, 0, sizeof lo);
	if (rc == 0 && lora_m)
		rc = lora_setup(c, p, &m, &lo, (uint64_t)cf->seed);
	int B = train_batch(cf, tr.n);
	tstate s;
	tstate_init(&s);
	loop_result lr;
	memset(&lr, 0, sizeof lr);
	size_t N = (size_t)B * (size_t)T;
	if (rc == 0) {
		l.m = &m;
		l.ws = bert_ws_new_on(&m, B, T, c->threads, nn_backend(&c->err, hval_get_str(p, "device", "cpu")));
		bert_ws_mlm_sparse(l.ws, 1);
		bert_ws_cls_only(l.ws, &m, 1);
		l.tr = &tr;
		l.va = &va;
		l.B = B;
		l.T = T;
		l.mlm = mlm;
		l.tag = tag;
		l.tag_names = tag_names;
		l.ytr = mlm || tag ? NULL : ytr.d.y;
		l.yva = mlm || tag || !vi ? NULL : yva.d.y;
		l.proxy = &proxy;
		l.vprob = !mlm && !tag && vi ? xmalloc((va.n ? va.n : 1) * (size_t)m.cfg.nlabels * sizeof(double)) : NULL;
		l.ids = xmalloc(N * sizeof *l.ids);
		l.types = xmalloc(N * sizeof *l.types);
		l.mask = xmalloc(N);
		l.lab = xmalloc(N * sizeof *l.lab);
		l.seed = (uint64_t)cf->seed;
		learner L = {lora_m ? lo.p : m.p, lora_m ? lo.n : m.nparams, bert_step, bert_score, &l, NULL, NULL};
		nn_ctx *nc = bert_ws_nn(l.ws);
		if (!nn_on_host(nc->ops)) { /* on a device: the loop updates the workspace's copy */
			L.nn = nc;
			L.dp = lora_m ? bert_ws_lora_params(l.ws, &m) : bert_ws_params(l.ws, &m);
			const char *prec = hval_get_str(p, "precision", "bf16");
			nc->precision = !strcmp(prec, "bf16") ? NN_BF16 : NN_FP32;
			kctx_log(c, "train: on device %s, %s", nc->ops->name, prec);
		}
		kctx_metric(c, "params", (double)m.nparams);
		int higher = mlm ? !strcmp(metric, "accuracy") : tag ? strcmp(metric, "loss") != 0 : ml_metric_higher(metric);
		rc = train_loop(c, cf, &L, tr.n, vi != NULL, metric, higher, &s, &lr);
	}
	if (rc == 0) {
		if (vi && s.best_epoch > 0)
			memcpy(lora_m ? lo.p : m.p, s.best_p, (lora_m ? lo.n : m.nparams) * sizeof(float));
		if (lora_m) {
			char *dir = NULL;
			rc = kctx_out_path(c, outdir, "adapter/adapter_config.json", &dir);
			char *ad = rc == 0 ? path_dirname(dir) : NULL;
			if (rc == 0)
				rc = lora_save(&c->err, &lo, ad);
			free(ad);
			free(dir);
			m.lora = NULL;
			bert_lora_merge(&lo, &m);
		}
		buf sum;
		buf_init(&sum);
		double el = now_seconds() - lr.t0;
		buf_printf(&sum, "{\"task\": \"%s\", \"arch\": \"bert\", \"method\": \"%s\", \"trainable\": %zu, ",
		           mlm ? "masked_lm" : tag ? "tagging" : "classification", lora_m ? "lora" : "full", lora_m ? lo.n : m.nparams);
		if (tag) {
			buf_adds(&sum, "\"output\": ");
			buf_json_str(&sum, target);
			buf_adds(&sum, ", \"tags\": [");
			for (size_t k = 0; k < ntags; k++) {
				buf_adds(&sum, k ? ", " : "");
				buf_json_str(&sum, tag_names[k]);
			}
			buf_adds(&sum, "], ");
		} else if (!mlm) {
			train_classes_json(&sum, target, m.labels, m.cfg.nlabels, proxy.prior);
		} else {
			buf_printf(&sum, "\"mask_id\": %u, \"mlm_rate\": ", l.mc.mask_id);
			buf_json_num(&sum, l.mc.rate);
			buf_adds(&sum, ", ");
		}
		buf_printf(&sum, "\"steps\": %lld, \"batch\": %d, \"block\": %d, \"params\": %zu, \"metric\": \"%s\", "
		           "\"best_epoch\": %lld, \"best\": ", s.step, B, T, m.nparams, metric, s.best_epoch);
		train_finish_summary(c, &sum, &s, metric, vi != NULL, lr.resumed, 0);
		char *path = NULL;
		if (rc == 0 && (rc = kctx_out_path(c, outdir, "curve.jsonl", &path)) == 0)
			rc = fs_write_atomic(&c->err, path, s.curve.p ? s.curve.p : "", s.curve.len);
		free(path);
		path = NULL;
		if (rc == 0)
			rc = bert_save_dir(&c->err, &m, NULL, outdir);
		if (rc == 0 && !mlm)
			rc = train_copy_tokenize(c, ti, outdir);
		if (rc == 0 && (rc = kctx_out_path(c, outdir, "train.json", &path)) == 0)
			rc = fs_write_atomic(&c->err, path, sum.p, sum.len);
		free(path);
		buf_free(&sum);
		kctx_metric(c, "trainable", (double)(lora_m ? lo.n : m.nparams));
		if (el > 0 && s.step > lr.t_start)
			kctx_metric(c, "tokens_per_s", round((double)(s.step - lr.t_start) * B * T / el));
	}
	bert_ws_free(l.ws);
	free(l.vprob);
	free(l.ids);
	free(l.types);
	free(l.mask);
	free(l.lab);
	tstate_free(&s);
	lm_close(&tr);
	if (vi)
		lm_close(&va);
	ml_split_close(&ytr);
	if (vi)
		ml_split_close(&yva);
	clf_free(&proxy);
	lora_free(&lo);
	bert_free(&m);
	strv_free(tag_names, ntags);
	return rc;
}
