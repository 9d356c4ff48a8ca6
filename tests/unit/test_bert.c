/*
 * BERT (engine/models/bert.c) against transformers: for each head
 * (tests/fixtures/bert/<head>, made by gen_bert_fixture.py there) the
 * checkpoint loads, and logits, loss and every parameter's gradient match;
 * peft's LoRA adapter on it loads and its gradients match; what hone saves
 * loads back the same.
 */
#include <math.h>

#include "testutil.h"
#include "io/json.h"
#include "ml/blas.h"
#include "models/bert.h"
#include "nn/nn.h"
#include "refjson.h"

typedef struct ref {
	buf text;
	jarena *a;
	const jnode *r;
	int B, T;
	uint32_t ids[64], types[64];
	uint8_t mask[64];
	int32_t li[64];
	float lf[64];
	int nl;
} ref;

static void ref_open(ref *f, const char *dir)
{
	herr e;
	char *p = path_join(dir, "reference.json");
	buf_init(&f->text);
	assert_int_equal(fs_read(&e, p, &f->text), 0);
	free(p);
	f->a = json_arena_new();
	jerror je;
	f->r = json_parse(f->a, f->text.p, f->text.len, &je);
	assert_non_null(f->r);
	f->B = (int)num(json_member(f->r, "B", 1));
	f->T = (int)num(json_member(f->r, "T", 1));
	int k = 0;
	for (const jnode *v = json_member(f->r, "input_ids", 9)->kid; v; v = v->next)
		f->ids[k++] = (uint32_t)num(v);
	k = 0;
	for (const jnode *v = json_member(f->r, "token_type_ids", 14)->kid; v; v = v->next)
		f->types[k++] = (uint32_t)num(v);
	k = 0;
	for (const jnode *v = json_member(f->r, "attention_mask", 14)->kid; v; v = v->next)
		f->mask[k++] = num(v) != 0;
	k = 0;
	for (const jnode *v = json_member(f->r, "labels", 6)->kid; v; v = v->next, k++) {
		f->lf[k] = (float)num(v);
		f->li[k] = (int32_t)num(v);
	}
	f->nl = k;
}

static void ref_close(ref *f)
{
	json_arena_free(f->a);
	buf_free(&f->text);
}

/* logits, loss and every gradient of a fixture's model */
static void check_head(const char *dir, int head)
{
	herr e;
	bert m;
	if (bert_load_dir(&e, &m, dir) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(m.cfg.head, head);
	ref f;
	ref_open(&f, dir);
	bert_ws *w = bert_ws_new(&m, f.B, f.T, 2);
	int multi = m.cfg.problem != BERT_SINGLE && head == BERT_SEQCLS;
	bert_batch b = {f.ids, f.types, f.mask, multi ? NULL : f.li, multi ? f.lf : NULL};
	double loss = bert_forward(&m, w, &b);
	double want = num(json_member(f.r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * fabs(want))
		fail_msg("%s: loss %.9g, transformers %.9g", dir, loss, want);
	const jnode *lg = json_member(f.r, "logits", 6);
	size_t nlog = head == BERT_SEQCLS ? (size_t)f.B * (size_t)m.cfg.nlabels
	            : head == BERT_TOKCLS ? (size_t)f.B * (size_t)f.T * (size_t)m.cfg.nlabels
	                                  : (size_t)f.B * (size_t)f.T * (size_t)m.cfg.vocab;
	near(bert_logits(w), lg, nlog, 1e-4, "logits");
	bert_backward(&m, w);
	const float *g = bert_grad(w);
	size_t checked = 0;
	for (const jnode *t = json_member(f.r, "grads", 5)->kid; t; t = t->next) {
		char name[96];
		snprintf(name, sizeof name, "%.*s", (int)t->klen, t->key);
		const model_tensor *mt = bert_find(&m, name);
		if (!mt)
			fail_msg("%s: no tensor %s", dir, name);
		near(g + mt->off, t, mt->n, 1e-3, name);
		checked++;
	}
	assert_int_equal(checked, m.nt);
	bert_ws_free(w);
	ref_close(&f);
	bert_free(&m);
}

static void test_seqcls(void **st)
{
	(void)st;
	check_head("tests/fixtures/bert/seqcls", BERT_SEQCLS);
	check_head("tests/fixtures/bert/shard", BERT_SEQCLS); /* the same model, in shards */
}

static void test_multilabel_regression(void **st)
{
	(void)st;
	check_head("tests/fixtures/bert/multilabel", BERT_SEQCLS);
	check_head("tests/fixtures/bert/regression", BERT_SEQCLS);
}

static void test_tokcls(void **st)
{
	(void)st;
	check_head("tests/fixtures/bert/tokcls", BERT_TOKCLS);
}

static void test_mlm(void **st)
{
	(void)st;
	check_head("tests/fixtures/bert/mlm", BERT_MLM);
	/* the training path: the head on the labelled rows only gives the same
	 * loss and gradients */
	herr e;
	bert m;
	assert_int_equal(bert_load_dir(&e, &m, "tests/fixtures/bert/mlm"), 0);
	ref f;
	ref_open(&f, "tests/fixtures/bert/mlm");
	bert_ws *dense = bert_ws_new(&m, f.B, f.T, 2), *sparse = bert_ws_new(&m, f.B, f.T, 2);
	bert_ws_mlm_sparse(sparse, 1);
	bert_batch b = {f.ids, f.types, f.mask, f.li, NULL};
	double l1 = bert_forward(&m, dense, &b), l2 = bert_forward(&m, sparse, &b);
	assert_true(fabs(l1 - l2) < 1e-6 * l1);
	assert_int_equal(bert_mlm_rows(sparse), 4);
	bert_backward(&m, dense);
	bert_backward(&m, sparse);
	const float *g1 = bert_grad(dense), *g2 = bert_grad(sparse);
	for (size_t i = 0; i < m.nparams; i++)
		if (fabsf(g1[i] - g2[i]) > 1e-5f * (fabsf(g1[i]) + 1e-3f))
			fail_msg("gradient %zu: dense %.9g, sparse %.9g", i, g1[i], g2[i]);
	bert_ws_free(dense);
	bert_ws_free(sparse);
	ref_close(&f);
	bert_free(&m);
}

/* peft's LoRA on BertForSequenceClassification (query, value; classifier in
 * modules_to_save): loss, logits, every adapter and head gradient */
static void test_lora_peft(void **st)
{
	(void)st;
	herr e;
	bert m;
	if (bert_load_dir(&e, &m, "tests/fixtures/bert/lora/base") != 0)
		fail_msg("%s", e.msg);
	lora lo;
	if (bert_lora_load(&e, &lo, &m, "tests/fixtures/bert/lora/adapter") != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(lo.nsaved, 2);
	m.lora = &lo;
	ref f;
	ref_open(&f, "tests/fixtures/bert/lora");
	bert_ws *w = bert_ws_new(&m, f.B, f.T, 2);
	bert_batch b = {f.ids, f.types, f.mask, f.li, NULL};
	double loss = bert_forward(&m, w, &b), want = num(json_member(f.r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * want)
		fail_msg("loss %.9g, peft %.9g", loss, want);
	near(bert_logits(w), json_member(f.r, "logits", 6), (size_t)f.B * 3, 1e-4, "lora logits");
	assert_null(bert_grad(w));
	bert_backward(&m, w);
	const float *g = bert_lora_grad(w);
	size_t checked = 0;
	for (const jnode *t = json_member(f.r, "grads", 5)->kid; t; t = t->next) {
		char name[160];
		snprintf(name, sizeof name, "%.*s", (int)t->klen, t->key);
		size_t n = 0;
		const float *gp = lora_grad_of(&lo, g, name, &n);
		if (!gp)
			fail_msg("no adapter tensor for %s", name);
		near(gp, t, n, 1e-3, name);
		checked++;
	}
	assert_int_equal(checked, 4 * 2 + 2);
	/* merged into the base, the model gives the same logits without adapters */
	float logits[6];
	memcpy(logits, bert_logits(w), sizeof logits);
	bert_ws_free(w);
	m.lora = NULL;
	bert_lora_merge(&lo, &m);
	w = bert_ws_new(&m, f.B, f.T, 1);
	bert_forward(&m, w, &b);
	for (int k = 0; k < 6; k++)
		assert_true(fabsf(bert_logits(w)[k] - logits[k]) < 1e-5f * (1 + fabsf(logits[k])));
	/* saved in PEFT's layout, it reads back the same */
	char *d = tmpdir_new();
	assert_int_equal(lora_save(&e, &lo, d), 0);
	lora back;
	if (bert_lora_load(&e, &back, &m, d) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(back.n, lo.n);
	assert_memory_equal(back.p, lo.p, lo.n * sizeof(float));
	lora_free(&back);
	tmpdir_rm(d);
	lora_free(&lo);
	bert_ws_free(w);
	ref_close(&f);
	bert_free(&m);
}

/* Backward's gradient g against central finite differences (step 1e-2) on
 * a few values of each tensor named: at least 30 tried, none off */
static void check_fd(bert *m, bert_ws *w, const bert_batch *b, const float *g, const char *const *names, size_t nn)
{
	size_t bad = 0, tried = 0;
	for (size_t k = 0; k < nn; k++) {
		const model_tensor *t = bert_find(m, names[k]);
		for (size_t j = 0; j < t->n; j += t->n / 5 + 1) {
			float *x = m->p + t->off + j, keep = *x;
			*x = keep + 1e-2f;
			double up = bert_forward(m, w, b);
			*x = keep - 1e-2f;
			double dn = bert_forward(m, w, b);
			*x = keep;
			double fd = (up - dn) / 2e-2, an = g[t->off + j];
			tried++;
			if (fabs(fd - an) > 2e-3 + 3e-2 * fabs(fd)) {
				bad++;
				print_message("%s[%zu]: backward %.6g, finite difference %.6g\n", names[k], j, an, fd);
			}
		}
	}
	assert_true(tried > 30);
	assert_int_equal(bad, 0);
}

/* bert_ws_cls_only on the classifier fixture: the loss, logits and every
 * gradient as with every row (up to summation order), the same bits on 2
 * and 3 threads; with dropout, backward matches finite differences through
 * the last layer's masks; the bare model's pooler likewise */
static void test_cls_only(void **st)
{
	(void)st;
	herr e;
	bert m;
	assert_int_equal(bert_load_dir(&e, &m, "tests/fixtures/bert/seqcls"), 0);
	ref f;
	ref_open(&f, "tests/fixtures/bert/seqcls");
	bert_batch b = {f.ids, f.types, f.mask, f.li, NULL};
	bert_ws *full = bert_ws_new(&m, f.B, f.T, 2), *co = bert_ws_new(&m, f.B, f.T, 2), *co3 = bert_ws_new(&m, f.B, f.T, 3);
	bert_ws_cls_only(co, &m, 1);
	bert_ws_cls_only(co3, &m, 1);
	double lf = bert_forward(&m, full, &b), lc = bert_forward(&m, co, &b), l3 = bert_forward(&m, co3, &b);
	assert_true(fabs(lf - lc) <= 1e-6 * fabs(lf));
	assert_true(lc == l3);
	for (int k = 0; k < f.B * m.cfg.nlabels; k++)
		assert_true(fabsf(bert_logits(full)[k] - bert_logits(co)[k]) <= 1e-5f * (fabsf(bert_logits(full)[k]) + 1e-3f));
	bert_backward(&m, full);
	bert_backward(&m, co);
	bert_backward(&m, co3);
	const float *gf = bert_grad(full), *gc = bert_grad(co);
	assert_memory_equal(gc, bert_grad(co3), m.nparams * sizeof(float));
	for (size_t i = 0; i < m.nt; i++) {
		const model_tensor *t = &m.t[i];
		double scale = 0;
		for (size_t j = 0; j < t->n; j++)
			scale = fmax(scale, fabs(gf[t->off + j]));
		for (size_t j = 0; j < t->n; j++)
			if (!(fabs(gc[t->off + j] - gf[t->off + j]) <= 1e-4 * fabs(gf[t->off + j]) + 1e-5 * scale + 1e-9))
				fail_msg("%s[%zu]: cls_only %.9g, every row %.9g", t->name, j, gc[t->off + j], gf[t->off + j]);
	}
	/* dropout: finite differences, the last layer's parameters among them */
	m.cfg.dropout = 0.3f;
	bert_ws_free(co);
	co = bert_ws_new(&m, f.B, f.T, 2);
	bert_ws_cls_only(co, &m, 1);
	bert_ws_dropout(co, 77);
	double d1 = bert_forward(&m, co, &b), d2 = bert_forward(&m, co, &b);
	assert_true(d1 == d2);
	memset(bert_grad(co), 0, m.nparams * sizeof(float));
	bert_backward(&m, co);
	float *g = xmalloc(m.nparams * sizeof(float));
	memcpy(g, bert_grad(co), m.nparams * sizeof(float));
	const char *names[] = {"bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.output.dense.weight",
	                       "bert.encoder.layer.1.attention.self.key.weight", "bert.encoder.layer.1.attention.output.dense.weight",
	                       "bert.encoder.layer.1.attention.output.LayerNorm.bias", "bert.encoder.layer.1.intermediate.dense.weight",
	                       "bert.encoder.layer.1.output.dense.bias", "bert.encoder.layer.1.output.LayerNorm.weight"};
	check_fd(&m, co, &b, g, names, sizeof names / sizeof *names);
	free(g);
	bert_ws_free(full);
	bert_ws_free(co);
	bert_ws_free(co3);
	ref_close(&f);
	bert_free(&m);
}

/* Dropout (hidden_dropout_prob 0.3 on the classifier fixture): it changes
 * the loss, the same seed gives the same loss, seed 0 gives transformers'
 * value again, and backward matches finite differences through the masks */
static void test_dropout(void **st)
{
	(void)st;
	herr e;
	bert m;
	assert_int_equal(bert_load_dir(&e, &m, "tests/fixtures/bert/seqcls"), 0);
	m.cfg.dropout = 0.3f;
	ref f;
	ref_open(&f, "tests/fixtures/bert/seqcls");
	bert_ws *w = bert_ws_new(&m, f.B, f.T, 2);
	bert_batch b = {f.ids, f.types, f.mask, f.li, NULL};
	double plain = bert_forward(&m, w, &b), want = num(json_member(f.r, "loss", 4));
	assert_true(fabs(plain - want) < 1e-4 * want);
	bert_ws_dropout(w, 77);
	double l1 = bert_forward(&m, w, &b), l2 = bert_forward(&m, w, &b);
	assert_true(l1 == l2);
	assert_true(fabs(l1 - plain) > 1e-4);
	memset(bert_grad(w), 0, m.nparams * sizeof(float));
	bert_backward(&m, w);
	float *g = xmalloc(m.nparams * sizeof(float));
	memcpy(g, bert_grad(w), m.nparams * sizeof(float));
	/* a few parameters of every kind: embeddings, attention, MLP, LayerNorm, pooler, classifier */
	const char *names[] = {"bert.embeddings.word_embeddings.weight", "bert.embeddings.LayerNorm.weight",
	                       "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.output.dense.weight",
	                       "bert.encoder.layer.1.output.dense.weight", "bert.encoder.layer.1.intermediate.dense.bias",
	                       "bert.pooler.dense.weight", "classifier.weight"};
	check_fd(&m, w, &b, g, names, sizeof names / sizeof *names);
	bert_ws_dropout(w, 0);
	assert_true(fabs(bert_forward(&m, w, &b) - plain) < 1e-12);
	free(g);
	bert_ws_free(w);
	ref_close(&f);
	bert_free(&m);
}

/* hone's own files: saved and loaded again, the same parameters and head;
 * a new head on a trained encoder; broken checkpoints refused */
static void test_save_load_heads(void **st)
{
	(void)st;
	herr e;
	bert m, back;
	if (bert_load_dir(&e, &m, "tests/fixtures/bert/mlm") != 0)
		fail_msg("%s", e.msg);
	char *d = tmpdir_new();
	assert_int_equal(bert_save_dir(&e, &m, NULL, d), 0);
	if (bert_load_dir(&e, &back, d) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(back.nparams, m.nparams);
	assert_memory_equal(back.p, m.p, m.nparams * sizeof(float));
	bert_free(&back);
	/* the MLM base becomes a 4-class classifier: encoder kept, head drawn */
	const char *labels[4] = {"a", "b", "c", "d"};
	size_t enc = bert_find(&m, "bert.encoder.layer.1.output.LayerNorm.bias")->off + 16;
	float *keep = xmalloc(enc * sizeof(float));
	memcpy(keep, m.p, enc * sizeof(float));
	bert_set_head(&m, BERT_SEQCLS, 4, labels, BERT_SINGLE, 5);
	assert_memory_equal(m.p, keep, enc * sizeof(float));
	assert_non_null(bert_find(&m, "bert.pooler.dense.weight"));
	assert_int_equal(bert_find(&m, "classifier.weight")->shape[0], 4);
	assert_null(bert_find(&m, "cls.predictions.bias"));
	assert_int_equal(bert_save_dir(&e, &m, NULL, d), 0);
	if (bert_load_dir(&e, &back, d) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(back.cfg.head, BERT_SEQCLS);
	assert_string_equal(back.labels[3], "d");
	assert_memory_equal(back.p, m.p, m.nparams * sizeof(float));
	bert_free(&back);
	free(keep);
	/* a config that is not BERT's, and a wrong head */
	write_file(d, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 16}");
	assert_int_not_equal(bert_load_dir(&e, &back, d), 0);
	assert_non_null(strstr(e.msg, "expected integers num_hidden_layers"));
	write_file(d, "config.json", "{\"model_type\": \"bert\", \"architectures\": [\"BertForPreTraining\"], \"vocab_size\": 50, "
	           "\"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 32, "
	           "\"max_position_embeddings\": 16}");
	assert_int_not_equal(bert_load_dir(&e, &back, d), 0);
	assert_non_null(strstr(e.msg, "BertForPreTraining"));
	tmpdir_rm(d);
	bert_free(&m);
}

int main(void)
{
	herr e;
	if (!blas_get(&e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seqcls),
		cmocka_unit_test(test_multilabel_regression),
		cmocka_unit_test(test_tokcls),
		cmocka_unit_test(test_mlm),
		cmocka_unit_test(test_lora_peft),
		cmocka_unit_test(test_save_load_heads),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_cls_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
