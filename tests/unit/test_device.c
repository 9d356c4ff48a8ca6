/*
 * The models' device paths without a device: a backend that is the CPU's
 * kernels under another name (so nn_on_host says no) makes GPT-2 take the
 * code a GPU takes — its own copy of the parameters and of the adapters,
 * ids and targets uploaded, the classifier's head gathered and scattered
 * through the backend, the KV cache on the backend — while every number
 * still comes from the CPU's kernels (BERT's too). Where the path does the same
 * arithmetic, the results must be the CPU's bits; the classifier's head,
 * which the device computes another way, within 1e-5. (The CUDA kernels
 * themselves are tested on a GPU: tests/gpu/.)
 */
#include <math.h>

#include "testutil.h"
#include "ml/blas.h"
#include "models/bert.h"
#include "models/gpt2.h"
#include "nn/nn.h"

static nn_ops fake;

static int setup(void **st)
{
	(void)st;
	herr e;
	if (!blas_get(&e))
		return -1;
	fake = nn_cpu;
	fake.name = "device-like";
	return 0;
}

static void model(gpt2 *m, int ncls)
{
	gpt2_config cf = {2, 2, 32, 32, 97, 1e-5f, 0};
	herr e;
	assert_int_equal(gpt2_init(&e, m, &cf), 0);
	gpt2_init_random(m, 3);
	if (ncls) {
		const char *labels[] = {"x", "y", "z"};
		gpt2_add_classifier(m, ncls, labels, 4);
	}
}

static void batch(uint32_t *ids, int32_t *tg, int N, int V)
{
	for (int i = 0; i < N; i++) {
		ids[i] = (uint32_t)((i * 29 + 3) % V);
		tg[i] = i % 11 == 0 ? -1 : (int32_t)((i * 7 + 1) % V);
	}
}

/* the language model, in full and with LoRA (dropout on): loss, logits and
 * gradients bit for bit, and the device's copy is what the step updates */
static void test_lm(void **st)
{
	(void)st;
	gpt2 m;
	model(&m, 0);
	int B = 3, T = 20, N = B * T;
	uint32_t ids[60];
	int32_t tg[60];
	batch(ids, tg, N, m.cfg.vocab);
	for (int withlora = 0; withlora < 2; withlora++) {
		gpt2_lora lo;
		memset(&lo, 0, sizeof lo);
		if (withlora) {
			gpt2_lora_init(&lo, &m, 4, 8, LORA_C_ATTN | LORA_MLP_C_PROJ, 9);
			for (size_t i = 0; i < lo.n; i++)
				lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f * (float)((int)(i % 5) - 2);
			lo.dropout = 0.2f;
			m.lora = &lo;
		}
		gpt2_ws *h = gpt2_ws_new(&m, B, T, 1), *d = gpt2_ws_new_on(&m, B, T, 1, &fake);
		assert_non_null(d);
		assert_true(withlora ? gpt2_ws_lora_params(d, &m) != lo.p : gpt2_ws_params(d, &m) != m.p); /* a copy */
		gpt2_ws_dropout(h, 5);
		gpt2_ws_dropout(d, 5);
		double lh = gpt2_forward(&m, h, ids, tg), ld = gpt2_forward(&m, d, ids, tg);
		assert_true(lh == ld);
		assert_memory_equal(gpt2_logits(h), gpt2_logits(d), (size_t)N * m.cfg.vocab * sizeof(float));
		gpt2_backward(&m, h);
		gpt2_backward(&m, d);
		if (withlora)
			assert_memory_equal(gpt2_lora_grad(h), gpt2_lora_grad(d), lo.n * sizeof(float));
		else
			assert_memory_equal(gpt2_grad(h), gpt2_grad(d), m.nparams * sizeof(float));
		gpt2_ws_free(h);
		gpt2_ws_free(d);
		m.lora = NULL;
		gpt2_lora_free(&lo);
	}
	gpt2_free(&m);
}

/* the classifier: the device gathers each row's last position and runs
 * the head as a product and a cross-entropy; the host path sums in double */
static void test_classifier(void **st)
{
	(void)st;
	gpt2 m;
	model(&m, 3);
	int B = 4, T = 12, N = B * T, last[4] = {11, 3, 0, 30}, lab[4] = {2, -1, 0, 1};
	uint32_t ids[48];
	int32_t tg[48];
	batch(ids, tg, N, m.cfg.vocab);
	gpt2_ws *h = gpt2_ws_new(&m, B, T, 1), *d = gpt2_ws_new_on(&m, B, T, 1, &fake);
	double lh = gpt2_forward_cls(&m, h, ids, last, lab), ld = gpt2_forward_cls(&m, d, ids, last, lab);
	assert_true(fabs(lh - ld) <= 1e-6 * fabs(lh));
	for (int i = 0; i < B * 3; i++) {
		assert_true(fabsf(gpt2_cls_probs(h)[i] - gpt2_cls_probs(d)[i]) < 1e-6f);
		assert_true(fabsf(gpt2_cls_logits(h)[i] - gpt2_cls_logits(d)[i]) < 1e-5f);
	}
	gpt2_backward(&m, h);
	gpt2_backward(&m, d);
	const float *gh = gpt2_grad(h), *gd = gpt2_grad(d);
	double mx = 0, diff = 0;
	for (size_t i = 0; i < m.nparams; i++) {
		mx = fmax(mx, fabs(gh[i]));
		diff = fmax(diff, fabs((double)gh[i] - gd[i]));
	}
	assert_true(mx > 0 && diff <= 1e-5 * mx);
	gpt2_ws_free(h);
	gpt2_ws_free(d);
	gpt2_free(&m);
}

/* generation: the cache on the backend, prefill and steps, the CPU's logits */
static void test_generation(void **st)
{
	(void)st;
	gpt2 m;
	model(&m, 0);
	uint32_t ids[60];
	int32_t tg[60];
	batch(ids, tg, 60, m.cfg.vocab);
	gpt2_kv *a = gpt2_kv_new(&m), *b = gpt2_kv_new_on(&m, &fake);
	float la[97], lb[97];
	assert_int_equal(gpt2_prefill(&m, a, ids, 9, la), 0);
	assert_int_equal(gpt2_prefill(&m, b, ids, 9, lb), 0);
	assert_memory_equal(la, lb, sizeof la);
	for (int s = 0; s < 5; s++) {
		assert_int_equal(gpt2_step(&m, a, ids[20 + s], la), 0);
		assert_int_equal(gpt2_step(&m, b, ids[20 + s], lb), 0);
		assert_memory_equal(la, lb, sizeof la);
	}
	assert_int_equal(gpt2_kv_len(b), 14);
	gpt2_kv_free(a);
	gpt2_kv_free(b);
	gpt2_free(&m);
}

/* BERT with each head (the classifier with [CLS]-only last layer and
 * dropout, the tagger, masked LM on its labelled rows; and LoRA): the
 * device path's loss, logits and gradients are the CPU's bits */
static void test_bert(void **st)
{
	(void)st;
	int heads[3] = {BERT_SEQCLS, BERT_TOKCLS, BERT_MLM};
	for (int hi = 0; hi < 3; hi++)
		for (int withlora = 0; withlora < 2; withlora++) {
			bert_config cf = {2, 2, 32, 64, 24, 2, 90, 1e-12f, NN_GELU_ERF, heads[hi], 3, BERT_SINGLE, 0, 0.1f};
			bert m;
			herr e;
			assert_int_equal(bert_init(&e, &m, &cf), 0);
			bert_init_random(&m, 7);
			lora lo;
			memset(&lo, 0, sizeof lo);
			if (withlora) {
				lora_arch a;
				bert_lora_arch(&m, &a);
				lora_init(&lo, &a, 4, 8, 1u | 4u, 3); /* query, value */
				for (size_t i = 0; i < lo.n; i++)
					lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f * (float)((int)(i % 5) - 2);
				if (heads[hi] != BERT_MLM)
					bert_lora_add_head(&lo, &m);
				m.lora = &lo;
			}
			int B = 3, T = 16, N = B * T;
			uint32_t ids[48], types[48];
			uint8_t mask[48];
			int32_t lab[48];
			for (int i = 0; i < N; i++) {
				ids[i] = (uint32_t)((i * 13 + 2) % cf.vocab);
				types[i] = (uint32_t)(i % T >= 8);
				mask[i] = (i % T) < T - 3 * (i / T);
				lab[i] = heads[hi] == BERT_SEQCLS ? (i < B ? i % 3 : 0) : i % 4 == 0 ? (int32_t)(i % 3) : -100;
			}
			bert_batch bt = {ids, types, mask, lab, NULL};
			bert_ws *h = bert_ws_new(&m, B, T, 1), *d = bert_ws_new_on(&m, B, T, 1, &fake);
			bert_ws *ws[2] = {h, d};
			for (int k = 0; k < 2; k++) {
				bert_ws_mlm_sparse(ws[k], 1);
				bert_ws_cls_only(ws[k], &m, 1);
				bert_ws_dropout(ws[k], 11);
			}
			double lh = bert_forward(&m, h, &bt), ld = bert_forward(&m, d, &bt);
			assert_true(lh == ld && lh > 0);
			size_t nl = heads[hi] == BERT_SEQCLS ? (size_t)B * 3 : heads[hi] == BERT_TOKCLS ? (size_t)N * 3 :
			                                                                          (size_t)bert_mlm_rows(h) * cf.vocab;
			assert_memory_equal(bert_logits(h), bert_logits(d), nl * sizeof(float));
			bert_backward(&m, h);
			bert_backward(&m, d);
			if (withlora)
				assert_memory_equal(bert_lora_grad(h), bert_lora_grad(d), lo.n * sizeof(float));
			else
				assert_memory_equal(bert_grad(h), bert_grad(d), m.nparams * sizeof(float));
			bert_ws_free(h);
			bert_ws_free(d);
			m.lora = NULL;
			lora_free(&lo);
			bert_free(&m);
		}
}

/* nn_backend: the CPU by name, an unknown one refused with the names */
static void test_backend_names(void **st)
{
	(void)st;
	herr e;
	assert_true(nn_backend(&e, "cpu") == &nn_cpu);
	assert_null(nn_backend(&e, "tpu"));
	assert_non_null(strstr(e.msg, "expected \"cpu\" or \"cuda\""));
	assert_true(nn_on_host(&nn_cpu) && nn_on_host(&nn_ref) && !nn_on_host(&fake));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lm),
		cmocka_unit_test(test_classifier),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_bert),
		cmocka_unit_test(test_backend_names),
	};
	return cmocka_run_group_tests_name("device", tests, setup, NULL);
}
