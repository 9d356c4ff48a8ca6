/*
 * The native GPT-2: logits, loss and every parameter's gradient against
 * PyTorch (tests/fixtures/gpt2model, made by gen_gpt2_fixture.py there),
 * loading Hugging Face checkpoints (single file, shards, "transformer."
 * prefixes) and refusing broken ones.
 */
#include <math.h>

#include "testutil.h"
#include "io/json.h"
#include "ml/blas.h"
#include "models/gpt2.h"
#include "ml/safetensors.h"
#include "ml/textgen.h"

#define DIR "tests/fixtures/gpt2model"

static double num(const jnode *v)
{
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%.*s", (int)v->len, v->s);
	return strtod(tmp, NULL);
}

/* Every tensor of a reference's "grads" object (names with or without the
 * "transformer." prefix) against the gradients g of m: 1e-3 relative, and
 * against the tensor's largest gradient for values near 0. Every tensor of
 * m must be there. */
static void check_grads(const gpt2 *m, const float *g, const jnode *grads, const char *who)
{
	size_t checked = 0;
	for (const jnode *t = grads->kid; t; t = t->next) {
		char name[80];
		snprintf(name, sizeof name, "%.*s", (int)t->klen, t->key);
		const char *nm = strncmp(name, "transformer.", 12) ? name : name + 12;
		const gpt2_tensor *gt = gpt2_find(m, nm);
		if (!gt)
			fail_msg("no tensor %s", nm);
		double scale = 0;
		for (const jnode *k = t->kid; k; k = k->next)
			scale = fmax(scale, fabs(num(k)));
		size_t j = 0;
		for (const jnode *k = t->kid; k; k = k->next, j++) {
			double v = num(k), got = g[gt->off + j];
			if (fabs(got - v) > 1e-3 * fabs(v) + 1e-5 * scale + 1e-7)
				fail_msg("%s[%zu]: gradient %.8g, %s %.8g", nm, j, got, who, v);
		}
		assert_int_equal(j, gt->n);
		checked++;
	}
	assert_int_equal(checked, m->nt);
}

/* A fixture's reference.json, parsed (the caller frees rj and a), and its
 * "ids" into ids; their count. */
static const jnode *ref_open(const char *path, buf *rj, jarena **a, uint32_t *ids, int *n)
{
	herr e;
	buf_init(rj);
	assert_int_equal(fs_read(&e, path, rj), 0);
	*a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(*a, rj->p, rj->len, &je);
	assert_non_null(r);
	*n = 0;
	for (const jnode *k = json_member(r, "ids", 3)->kid; k && *n < 64; k = k->next)
		ids[(*n)++] = (uint32_t)num(k);
	return r;
}

static void test_against_pytorch(void **st)
{
	(void)st;
	herr e;
	assert_non_null(blas_get(&e));
	gpt2 m;
	if (gpt2_load_dir(&e, &m, DIR) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(m.cfg.n_layer, 2);
	buf rj;
	jarena *a;
	uint32_t ids[64];
	int32_t tg[64];
	int n;
	const jnode *r = ref_open(DIR "/reference.json", &rj, &a, ids, &n);
	int B = (int)num(json_member(r, "B", 1)), T = (int)num(json_member(r, "T", 1));
	assert_int_equal(n, B * T);
	for (int i = 0; i < n; i++)
		tg[i] = (i % T == T - 1) ? -1 : (int32_t)ids[i + 1];
	gpt2_ws *w = gpt2_ws_new(&m, B, T, 1);
	double loss = gpt2_forward(&m, w, ids, tg);
	double want = num(json_member(r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * fabs(want))
		fail_msg("loss %.8g, PyTorch %.8g", loss, want);
	const float *lg = gpt2_logits(w);
	size_t i = 0;
	for (const jnode *k = json_member(r, "logits", 6)->kid; k; k = k->next, i++) {
		double v = num(k);
		if (fabs(lg[i] - v) > 1e-4 * fabs(v) + 1e-5)
			fail_msg("logit %zu: %.8g, PyTorch %.8g", i, lg[i], v);
	}
	assert_int_equal(i, (size_t)n * (size_t)m.cfg.vocab);
	gpt2_backward(&m, w);
	check_grads(&m, gpt2_grad(w), json_member(r, "grads", 5), "PyTorch");
	gpt2_ws_free(w);
	json_arena_free(a);
	buf_free(&rj);
	gpt2_free(&m);
}

/* Batched decoding: three sequences at different positions, one token each
 * per step, give what gpt2_step gives each of them alone; a full cache or a
 * batch larger than the decoder is refused, feeding nothing. */
static void test_step_batch(void **st)
{
	(void)st;
	herr e;
	gpt2 m;
	assert_int_equal(gpt2_load_dir(&e, &m, DIR), 0);
	int V = m.cfg.vocab, S = 3;
	uint32_t ids[12] = {3, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7, 1};
	gpt2_kv *kb[3], *ks[3];
	float *lb = xmalloc((size_t)S * (size_t)V * sizeof *lb), *ls = xmalloc((size_t)V * sizeof *ls);
	for (int i = 0; i < S; i++) { /* prompts of 1, 4 and 7 tokens */
		kb[i] = gpt2_kv_new(&m);
		ks[i] = gpt2_kv_new(&m);
		assert_int_equal(gpt2_prefill(&m, kb[i], ids + i, 1 + 3 * i, ls), 0);
		assert_int_equal(gpt2_prefill(&m, ks[i], ids + i, 1 + 3 * i, ls), 0);
	}
	gpt2_dec *d = gpt2_dec_new(&m, S, 2);
	for (int step = 0; step < 5; step++) {
		uint32_t feed[3] = {ids[step], ids[step + 3], ids[11 - step]};
		assert_int_equal(gpt2_step_batch(&m, d, kb, feed, S, lb), 0);
		for (int i = 0; i < S; i++) {
			assert_int_equal(gpt2_step(&m, ks[i], feed[i], ls), 0);
			assert_int_equal(gpt2_kv_len(kb[i]), gpt2_kv_len(ks[i]));
			for (int k = 0; k < V; k++) {
				float got = lb[(size_t)i * (size_t)V + (size_t)k], want = ls[k];
				double dd = fabs((double)got - want);
				if (dd > 1e-4 * fabs(want) + 1e-5)
					fail_msg("step %d, sequence %d, logit %d: batched %.8g, alone %.8g", step, i, k, got, want);
			}
		}
	}
	/* a batch of one is gpt2_step too */
	assert_int_equal(gpt2_step_batch(&m, d, kb + 1, ids, 1, lb), 0);
	assert_int_equal(gpt2_step(&m, ks[1], ids[0], ls), 0);
	for (int k = 0; k < V; k++)
		if (fabsf(lb[k] - ls[k]) > 1e-4f * fabsf(ls[k]) + 1e-5f)
			fail_msg("a batch of one, logit %d: %.8g, alone %.8g", k, lb[k], ls[k]);
	assert_int_equal(gpt2_step_batch(&m, d, kb, ids, S + 1, lb), -1);
	assert_int_equal(gpt2_step_batch(&m, d, kb, ids, 0, lb), -1);
	while (gpt2_kv_len(kb[2]) < m.cfg.n_positions)
		assert_int_equal(gpt2_step(&m, kb[2], 1, ls), 0);
	int t0 = gpt2_kv_len(kb[0]);
	assert_int_equal(gpt2_step_batch(&m, d, kb, ids, S, lb), -1);
	assert_int_equal(gpt2_kv_len(kb[0]), t0);
	gpt2_dec_free(d);
	for (int i = 0; i < S; i++) {
		gpt2_kv_free(kb[i]);
		gpt2_kv_free(ks[i]);
	}
	free(lb);
	free(ls);
	gpt2_free(&m);
}

/* Token by token with the key/value cache: the same logits as the full
 * forward at every position; and the sampler's rules. */
static void test_generation(void **st)
{
	(void)st;
	herr e;
	gpt2 m;
	assert_int_equal(gpt2_load_dir(&e, &m, DIR), 0);
	uint32_t ids[12] = {3, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7, 1};
	int T = 10, V = m.cfg.vocab;
	gpt2_ws *w = gpt2_ws_new(&m, 1, T, 1);
	gpt2_forward(&m, w, ids, NULL);
	const float *full = gpt2_logits(w);
	gpt2_kv *kv = gpt2_kv_new(&m);
	float *lg = xmalloc((size_t)V * sizeof *lg);
	for (int t = 0; t < T; t++) {
		assert_int_equal(gpt2_step(&m, kv, ids[t], lg), 0);
		for (int k = 0; k < V; k++) {
			float want = full[(size_t)t * (size_t)V + (size_t)k];
			if (fabsf(lg[k] - want) > 1e-4f * fabsf(want) + 1e-5f)
				fail_msg("position %d, logit %d: cached %.8g, full %.8g", t, k, lg[k], want);
		}
	}
	assert_int_equal(gpt2_kv_len(kv), T);
	/* a prefilled prompt: the same logits, and the same next steps */
	gpt2_kv *pk = gpt2_kv_new(&m);
	float *pl = xmalloc((size_t)V * sizeof *pl);
	for (int n = 1; n <= T; n += 4) {
		gpt2_kv_reset(pk);
		assert_int_equal(gpt2_prefill(&m, pk, ids, n, pl), 0);
		assert_int_equal(gpt2_kv_len(pk), n);
		for (int at = n; at <= T; at++) {
			for (int k = 0; k < V; k++) {
				float want = full[(size_t)(at - 1) * (size_t)V + (size_t)k];
				if (fabsf(pl[k] - want) > 1e-4f * fabsf(want) + 1e-5f)
					fail_msg("prefill %d, position %d, logit %d: %.8g, full %.8g", n, at - 1, k, pl[k], want);
			}
			if (at < T)
				assert_int_equal(gpt2_step(&m, pk, ids[at], pl), 0);
		}
	}
	gpt2_kv_reset(pk);
	assert_int_equal(gpt2_prefill(&m, pk, ids, m.cfg.n_positions + 1, pl), -1);
	free(pl);
	gpt2_kv_free(pk);
	/* the context is n_positions long */
	while (gpt2_kv_len(kv) < m.cfg.n_positions)
		assert_int_equal(gpt2_step(&m, kv, 1, lg), 0);
	assert_int_equal(gpt2_step(&m, kv, 1, lg), -1);
	/* sampling: greedy is the argmax; top_k = 1 too; the same seed draws the same */
	float z[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f}, c[5];
	gpt2_sampler g = {0, 0, 1, 1};
	memcpy(c, z, sizeof z);
	assert_int_equal(gpt2_sample(&g, c, 5), 1);
	gpt2_sampler k1 = {1.5f, 1, 1, 7};
	memcpy(c, z, sizeof z);
	assert_int_equal(gpt2_sample(&k1, c, 5), 1);
	gpt2_sampler a = {1.0f, 0, 0.8f, 42}, b = {1.0f, 0, 0.8f, 42};
	int seen[5] = {0};
	for (int i = 0; i < 200; i++) {
		float ca[5], cb[5];
		memcpy(ca, z, sizeof z);
		memcpy(cb, z, sizeof z);
		uint32_t x = gpt2_sample(&a, ca, 5), y = gpt2_sample(&b, cb, 5);
		assert_int_equal(x, y);
		seen[x]++;
	}
	/* probabilities 0.45 (id 1), 0.40 (3), 0.07 (0), ...: top_p 0.8 keeps ids 1 and 3 */
	assert_true(seen[1] > 0 && seen[3] > 0);
	assert_int_equal(seen[0] + seen[2] + seen[4], 0);
	free(lg);
	gpt2_kv_free(kv);
	gpt2_ws_free(w);
	gpt2_free(&m);
}

/* transformers' GPT2ForSequenceClassification (tests/fixtures/gpt2cls,
 * gen_cls_fixture.py): its saved folder loads with its classes; loss,
 * class probabilities and every gradient (the score head's too) agree for
 * rows of different lengths. */
static void test_classifier(void **st)
{
	(void)st;
	herr e;
	gpt2 m;
	if (gpt2_load_dir(&e, &m, "tests/fixtures/gpt2cls") != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(m.cfg.ncls, 3);
	assert_string_equal(m.labels[2], "c");
	buf rj;
	jarena *a;
	uint32_t ids[64];
	int n, last[8];
	int32_t lab[8];
	const jnode *r = ref_open("tests/fixtures/gpt2cls/reference.json", &rj, &a, ids, &n);
	int B = (int)num(json_member(r, "B", 1)), T = (int)num(json_member(r, "T", 1));
	n = 0;
	for (const jnode *k = json_member(r, "lengths", 7)->kid; k; k = k->next, n++)
		last[n] = (int)num(k) - 1;
	n = 0;
	for (const jnode *k = json_member(r, "labels", 6)->kid; k; k = k->next)
		lab[n++] = (int32_t)num(k);
	gpt2_ws *w = gpt2_ws_new(&m, B, T, 2);
	double loss = gpt2_forward_cls(&m, w, ids, last, lab), want = num(json_member(r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * fabs(want))
		fail_msg("loss %.8g, transformers %.8g", loss, want);
	const jnode *lg = json_member(r, "logits", 6)->kid;
	for (int b = 0; b < B; b++) {
		double z[3], mx = -1e30, sum = 0;
		for (int k = 0; k < 3; k++, lg = lg->next)
			mx = fmax(mx, z[k] = num(lg));
		for (int k = 0; k < 3; k++)
			sum += exp(z[k] - mx);
		for (int k = 0; k < 3; k++) {
			double p = exp(z[k] - mx) / sum, got = gpt2_cls_probs(w)[b * 3 + k];
			if (fabs(got - p) > 1e-5)
				fail_msg("row %d class %d: probability %.8g, transformers %.8g", b, k, got, p);
		}
	}
	gpt2_backward(&m, w);
	check_grads(&m, gpt2_grad(w), json_member(r, "grads", 5), "transformers");
	/* LoRA with the head trained too: finite differences for the adapters
	 * and the head; saved with the head (modules_to_save) and read back */
	gpt2_lora lo;
	gpt2_lora_init(&lo, &m, 2, 4.0f, LORA_C_ATTN | LORA_C_FC, 3);
	for (size_t i = 0; i < lo.n; i++)
		lo.p[i] = lo.p[i] ? lo.p[i] : 0.05f;
	gpt2_lora_add_head(&lo, &m);
	assert_int_equal(lo.nsaved, 1);
	assert_int_equal(lo.saved[0].n, 3 * 16);
	m.lora = &lo;
	gpt2_ws *wl = gpt2_ws_new(&m, B, T, 1);
	double l0 = gpt2_forward_cls(&m, wl, ids, last, lab);
	gpt2_backward(&m, wl);
	const float *lgr = gpt2_lora_grad(wl);
	size_t bad = 0;
	for (size_t i = 0; i < lo.n; i += 5) {
		float keep = lo.p[i];
		lo.p[i] = keep + 1e-2f;
		double up = gpt2_forward_cls(&m, wl, ids, last, lab);
		lo.p[i] = keep - 1e-2f;
		double down = gpt2_forward_cls(&m, wl, ids, last, lab);
		lo.p[i] = keep;
		double fd = (up - down) / 2e-2;
		if (!(fabs(fd - lgr[i]) <= 2e-3 + 3e-2 * fabs(fd)) && bad++ < 3)
			fprintf(stderr, "classifier LoRA parameter %zu: backward %.6g, finite difference %.6g\n", i, lgr[i], fd);
	}
	assert_int_equal(bad, 0);
	assert_true(isfinite(l0));
	char *ld = tmpdir_new();
	assert_int_equal(gpt2_lora_save(&e, &lo, ld), 0);
	m.lora = NULL;
	gpt2_lora back;
	if (gpt2_lora_load(&e, &back, &m, ld) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(back.nsaved, 1);
	assert_int_equal(back.saved[0].n, lo.saved[0].n);
	assert_memory_equal(back.p, lo.p, lo.n * sizeof(float));
	gpt2_lora_free(&back);
	tmpdir_rm(ld);
	gpt2_ws_free(wl);
	gpt2_lora_free(&lo);
	/* written back, it reads as the same classifier */
	char *d = tmpdir_new();
	assert_int_equal(gpt2_save_dir(&e, &m, NULL, d), 0);
	gpt2 m2;
	if (gpt2_load_dir(&e, &m2, d) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(m2.cfg.ncls, 3);
	assert_string_equal(m2.labels[0], "a");
	assert_memory_equal(m2.p, m.p, m.nparams * sizeof(float));
	/* a language model gains a head */
	gpt2 lm;
	assert_int_equal(gpt2_load_dir(&e, &lm, DIR), 0);
	const char *names[2] = {"ham", "spam"};
	gpt2_add_classifier(&lm, 2, names, 1);
	assert_int_equal(lm.nparams, m.nparams - 16);
	assert_non_null(gpt2_find(&lm, "score.weight"));
	gpt2_free(&lm);
	gpt2_free(&m2);
	tmpdir_rm(d);
	gpt2_ws_free(w);
	json_arena_free(a);
	buf_free(&rj);
	gpt2_free(&m);
}

/* ROUGE-L F1 over lowercase alphanumeric words, worked by hand:
 * LCS("the cat sat on the mat", "The cat, on the mat!") = 5 words;
 * P = 5/6, R = 5/5, F = 2PR/(P+R) = 10/11. */
static void test_scores(void **st)
{
	(void)st;
#define RL(a, b) rouge_l(a, strlen(a), b, strlen(b))
	assert_true(fabs(RL("the cat sat on the mat", "The cat, on the mat!") - 10.0 / 11.0) < 1e-12);
	assert_true(fabs(RL("a b c d", "d c b a") - 0.25) < 1e-12); /* LCS 1 of 4 and 4 */
	assert_true(RL("x y", "p q") == 0);
	assert_true(RL("", "") == 1);
	assert_true(RL("", "a") == 0);
	assert_true(RL("...", "!!") == 1); /* no words on either side */
	/* LCS("a b a b", "b a b") = 3: P = 3/4, R = 1 → 6/7 */
	assert_true(fabs(RL("a b a b", "b a b") - 6.0 / 7.0) < 1e-12);
	/* words split at any other byte, UTF-8 included */
	assert_true(fabs(RL("über-cool 42x", "ber cool 42X") - 1.0) < 1e-12);
#undef RL
	assert_int_equal(exact_match("  Re: hi\n", 9, "Re: hi", 6), 1);
	assert_int_equal(exact_match("Re: hi", 6, "re: hi", 6), 0);
	assert_int_equal(exact_match("", 0, " \t", 2), 1);
}

/* peft's own LoRA (tests/fixtures/lora, gen_lora_fixture.py): its saved
 * adapter loads; loss, logits, every adapter gradient and the merged
 * model's logits agree. */
static void test_lora_peft(void **st)
{
	(void)st;
	herr e;
	gpt2 m;
	assert_int_equal(gpt2_load_dir(&e, &m, DIR), 0);
	gpt2_lora lo;
	if (gpt2_lora_load(&e, &lo, &m, "tests/fixtures/lora") != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(lo.rank, 4);
	m.lora = &lo;
	buf rj;
	jarena *a;
	uint32_t ids[64];
	int32_t tg[64];
	int n;
	const jnode *r = ref_open("tests/fixtures/lora/reference.json", &rj, &a, ids, &n);
	int B = (int)num(json_member(r, "B", 1)), T = (int)num(json_member(r, "T", 1));
	for (int i = 0; i < n; i++)
		tg[i] = (i % T == T - 1) ? -1 : (int32_t)ids[i + 1];
	gpt2_ws *w = gpt2_ws_new(&m, B, T, 1);
	double loss = gpt2_forward(&m, w, ids, tg), want = num(json_member(r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * fabs(want))
		fail_msg("loss %.8g, peft %.8g", loss, want);
	size_t i = 0;
	for (const jnode *k = json_member(r, "logits", 6)->kid; k; k = k->next, i++)
		if (fabs(gpt2_logits(w)[i] - num(k)) > 1e-4 * fabs(num(k)) + 1e-5)
			fail_msg("logit %zu: %.8g, peft %.8g", i, gpt2_logits(w)[i], num(k));
	gpt2_backward(&m, w);
	const float *g = gpt2_lora_grad(w);
	size_t checked = 0;
	static const char *mods[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
	for (int k = 0; k < lo.a.n_layer * 4; k++)
		for (int ab = 0; ab < 2; ab++) {
			char nm[128];
			snprintf(nm, sizeof nm, "base_model.model.transformer.h.%d.%s.lora_%c.weight", k / 4, mods[k % 4], ab ? 'B' : 'A');
			const jnode *t = json_member(json_member(r, "grads", 5), nm, strlen(nm));
			if (!t)
				fail_msg("reference has no gradient for %s", nm);
			const float *gk = g + lo.off[k] + (ab ? (size_t)lo.rank * (size_t)lo.a.site[k % 4].in : 0);
			double scale = 0;
			for (const jnode *v = t->kid; v; v = v->next)
				scale = fmax(scale, fabs(num(v)));
			size_t j = 0;
			for (const jnode *v = t->kid; v; v = v->next, j++)
				if (fabs(gk[j] - num(v)) > 1e-3 * fabs(num(v)) + 1e-5 * scale + 1e-7)
					fail_msg("%s[%zu]: gradient %.8g, peft %.8g", nm, j, gk[j], num(v));
			assert_int_equal(j, (size_t)lo.rank * (size_t)(ab ? lo.a.site[k % 4].out : lo.a.site[k % 4].in));
			checked++;
		}
	assert_int_equal(checked, 16);
	m.lora = NULL;
	gpt2_lora_merge(&lo, &m);
	gpt2_forward(&m, w, ids, tg);
	i = 0;
	for (const jnode *k = json_member(r, "merged_logits", 13)->kid; k; k = k->next, i++)
		if (fabs(gpt2_logits(w)[i] - num(k)) > 1e-4 * fabs(num(k)) + 1e-5)
			fail_msg("merged logit %zu: %.8g, peft merge_and_unload %.8g", i, gpt2_logits(w)[i], num(k));
	assert_int_equal(i, (size_t)n * (size_t)m.cfg.vocab);
	gpt2_ws_free(w);
	json_arena_free(a);
	buf_free(&rj);
	gpt2_lora_free(&lo);
	gpt2_free(&m);
}

/* Central differences of the loss for every stride-th adapter parameter
 * against backward's g; the number that disagree (the first few printed). */
static size_t fd_bad(const gpt2 *m, gpt2_lora *lo, gpt2_ws *w, const uint32_t *ids, const int32_t *tg, const float *g,
                     size_t stride, const char *what)
{
	size_t bad = 0;
	for (size_t i = 0; i < lo->n; i += stride) {
		float keep = lo->p[i];
		const float eps = 1e-2f;
		lo->p[i] = keep + eps;
		double up = gpt2_forward(m, w, ids, tg);
		lo->p[i] = keep - eps;
		double down = gpt2_forward(m, w, ids, tg);
		lo->p[i] = keep;
		double fd = (up - down) / (2.0 * eps);
		if (!(fabs(fd - g[i]) <= 2e-3 + 3e-2 * fabs(fd)) && bad++ < 3)
			fprintf(stderr, "adapter %zu%s: backward %.6g, finite difference %.6g\n", i, what, g[i], fd);
	}
	return bad;
}

/* LoRA: starts at the base; equals its merged weights; finite differences
 * for every adapter parameter; PEFT's names and shapes. */
static void test_lora(void **st)
{
	(void)st;
	herr e;
	gpt2 m, mm;
	assert_int_equal(gpt2_load_dir(&e, &m, DIR), 0);
	assert_int_equal(gpt2_load_dir(&e, &mm, DIR), 0);
	assert_int_equal(gpt2_lora_target("c_proj"), LORA_ATTN_C_PROJ | LORA_MLP_C_PROJ);
	assert_int_equal(gpt2_lora_target("q_proj"), 0);
	int all = LORA_C_ATTN | LORA_ATTN_C_PROJ | LORA_C_FC | LORA_MLP_C_PROJ;
	gpt2_lora lo;
	gpt2_lora_init(&lo, &m, 2, 4.0f, all, 1);
	int B = 2, T = 10, V = m.cfg.vocab;
	uint32_t ids[20];
	int32_t tg[20];
	for (int i = 0; i < B * T; i++)
		ids[i] = (uint32_t)((i * 7 + 3) % V);
	for (int i = 0; i < B * T; i++)
		tg[i] = i % T == T - 1 ? -1 : (int32_t)ids[i + 1];
	/* B = 0: the base's logits */
	gpt2_ws *wb = gpt2_ws_new(&m, B, T, 1);
	double base_loss = gpt2_forward(&m, wb, ids, tg);
	m.lora = &lo;
	gpt2_ws *w = gpt2_ws_new(&m, B, T, 1);
	double l0 = gpt2_forward(&m, w, ids, tg);
	assert_true(fabs(l0 - base_loss) < 1e-6);
	/* random B: LoRA forward = forward of the merged weights */
	uint64_t sd = 5;
	for (int k = 0; k < lo.a.n_layer * 4; k++) {
		float *Bm = lo.p + lo.off[k] + (size_t)lo.rank * (size_t)lo.a.site[k % 4].in;
		for (size_t i = 0; i < (size_t)lo.rank * (size_t)lo.a.site[k % 4].out; i++) {
			sd = sd * 6364136223846793005ull + 1442695040888963407ull;
			Bm[i] = ((float)(sd >> 40) / 16777216.0f - 0.5f) * 0.5f;
		}
	}
	double la = gpt2_forward(&m, w, ids, tg);
	gpt2_lora_merge(&lo, &mm);
	gpt2_ws *wm = gpt2_ws_new(&mm, B, T, 1);
	double lm = gpt2_forward(&mm, wm, ids, tg);
	if (fabs(la - lm) > 1e-4 * fabs(lm))
		fail_msg("LoRA loss %.8g, merged %.8g", la, lm);
	const float *x = gpt2_logits(w), *y = gpt2_logits(wm);
	for (int i = 0; i < B * T * V; i++)
		if (fabsf(x[i] - y[i]) > 1e-4f * fabsf(y[i]) + 1e-5f)
			fail_msg("logit %d: LoRA %.8g, merged %.8g", i, x[i], y[i]);
	/* finite differences on every adapter parameter; the base stays frozen */
	gpt2_forward(&m, w, ids, tg);
	gpt2_backward(&m, w);
	float *g = gpt2_lora_grad(w);
	assert_null(gpt2_grad(w)); /* nothing of the frozen base is kept */
	assert_int_equal(fd_bad(&m, &lo, w, ids, tg, g, 1, ""), 0);
	/* LoRA dropout: off without a seed; a seed gives its own masks, the same
	 * each time; backward follows them (finite differences again) */
	lo.dropout = 0.3f;
	gpt2_ws *wd = gpt2_ws_new(&m, B, T, 1);
	double nd = gpt2_forward(&m, wd, ids, tg), ref = gpt2_forward(&m, w, ids, tg);
	assert_true(nd == ref);
	gpt2_ws_dropout(wd, 7);
	double d1 = gpt2_forward(&m, wd, ids, tg), d2 = gpt2_forward(&m, wd, ids, tg);
	assert_true(d1 == d2 && fabs(d1 - ref) > 1e-6);
	memset(gpt2_lora_grad(wd), 0, lo.n * sizeof(float));
	gpt2_forward(&m, wd, ids, tg);
	gpt2_backward(&m, wd);
	assert_int_equal(fd_bad(&m, &lo, wd, ids, tg, gpt2_lora_grad(wd), 3, " with dropout"), 0);
	gpt2_ws_free(wd);
	lo.dropout = 0;
	/* PEFT files */
	char *d = tmpdir_new();
	assert_int_equal(gpt2_lora_save(&e, &lo, d), 0);
	char *wp = path_join(d, "adapter_model.safetensors"), *cp = path_join(d, "adapter_config.json");
	st_file f;
	assert_int_equal(st_read(&e, &f, wp), 0);
	assert_int_equal(f.n, (size_t)lo.a.n_layer * 4 * 2);
	const st_tensor *t = st_find(&f, "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight");
	assert_non_null(t);
	assert_int_equal(t->shape[0], 2);
	assert_int_equal(t->shape[1], 16);
	t = st_find(&f, "base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight");
	assert_non_null(t);
	assert_int_equal(t->shape[0], 16);
	assert_int_equal(t->shape[1], 2);
	buf cfg;
	buf_init(&cfg);
	assert_int_equal(fs_read(&e, cp, &cfg), 0);
	assert_non_null(strstr(cfg.p, "\"peft_type\": \"LORA\""));
	assert_non_null(strstr(cfg.p, "\"fan_in_fan_out\": true"));
	buf_free(&cfg);
	st_free(&f);
	/* and back: the same adapter */
	gpt2_lora back;
	if (gpt2_lora_load(&e, &back, &m, d) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(back.n, lo.n);
	assert_int_equal(back.targets, all);
	assert_true(back.scale == lo.scale);
	assert_memory_equal(back.p, lo.p, lo.n * sizeof(float));
	gpt2_lora_free(&back);
	/* refused: DoRA, an unknown module, a tensor of a layer the model lacks */
	write_file(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"use_dora\": true, \"target_modules\": [\"c_attn\"]}");
	assert_int_not_equal(gpt2_lora_load(&e, &back, &m, d), 0);
	assert_non_null(strstr(e.msg, "use_dora"));
	write_file(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"]}");
	assert_int_not_equal(gpt2_lora_load(&e, &back, &m, d), 0);
	assert_non_null(strstr(e.msg, "q_proj"));
	write_file(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\"]}");
	assert_int_not_equal(gpt2_lora_load(&e, &back, &m, d), 0);
	assert_non_null(strstr(e.msg, "attn.c_proj.lora_A"));
	write_file(d, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\", \"c_proj\", \"c_fc\"]}");
	assert_int_not_equal(gpt2_lora_load(&e, &back, &m, d), 0);
	assert_non_null(strstr(e.msg, "shape"));
	free(wp);
	free(cp);
	tmpdir_rm(d);
	gpt2_ws_free(w);
	gpt2_ws_free(wb);
	gpt2_ws_free(wm);
	gpt2_lora_free(&lo);
	gpt2_free(&m);
	gpt2_free(&mm);
}

static void write_json(const char *dir, const char *name, const char *text) { write_file(dir, name, text); }

static void test_checkpoints(void **st)
{
	(void)st;
	herr e;
	gpt2 m, m2;
	assert_int_equal(gpt2_load_dir(&e, &m, DIR), 0);
	char *d = tmpdir_new();
	buf cfg;
	buf_init(&cfg);
	assert_int_equal(fs_read(&e, DIR "/config.json", &cfg), 0);
	/* shards: the first half of the tensors in one file, the rest in another */
	st_writer a, b;
	st_writer_init(&a);
	st_writer_init(&b);
	buf idx;
	buf_init(&idx);
	buf_adds(&idx, "{\"metadata\": {}, \"weight_map\": {");
	for (size_t i = 0; i < m.nt; i++) {
		st_writer *s = i < m.nt / 2 ? &a : &b;
		st_add_f32(s, m.t[i].name, m.p + m.t[i].off, m.t[i].ndim, m.t[i].shape);
		buf_printf(&idx, "%s\"%s\": \"%s\"", i ? ", " : "", m.t[i].name, i < m.nt / 2 ? "m-1.safetensors" : "m-2.safetensors");
	}
	buf_adds(&idx, "}}");
	char *p1 = path_join(d, "m-1.safetensors"), *p2 = path_join(d, "m-2.safetensors");
	assert_int_equal(st_write(&e, &a, p1), 0);
	assert_int_equal(st_write(&e, &b, p2), 0);
	write_json(d, "config.json", cfg.p);
	write_json(d, "model.safetensors.index.json", idx.p);
	if (gpt2_load_dir(&e, &m2, d) != 0)
		fail_msg("shards: %s", e.msg);
	assert_int_equal(m2.nparams, m.nparams);
	assert_memory_equal(m2.p, m.p, m.nparams * sizeof(float));
	gpt2_free(&m2);
	/* a missing shard tensor */
	buf_free(&idx);
	buf_init(&idx);
	buf_adds(&idx, "{\"weight_map\": {\"wte.weight\": \"m-1.safetensors\"}}");
	write_json(d, "model.safetensors.index.json", idx.p);
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "no tensor"));
	/* a shard outside the folder */
	write_json(d, "model.safetensors.index.json", "{\"weight_map\": {\"wte.weight\": \"../x.safetensors\"}}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "not a file in the folder"));
	/* a wrong shape */
	st_writer c;
	st_writer_init(&c);
	for (size_t i = 0; i < m.nt; i++) {
		int64_t sh[2] = {m.t[i].shape[0], m.t[i].shape[1]};
		if (!strcmp(m.t[i].name, "h.1.mlp.c_fc.weight")) {
			sh[0] = m.t[i].shape[1]; /* transposed, as a Linear would store it */
			sh[1] = m.t[i].shape[0];
		}
		st_add_f32(&c, m.t[i].name, m.p + m.t[i].off, m.t[i].ndim, sh);
	}
	char *p3 = path_join(d, "model.safetensors");
	assert_int_equal(st_write(&e, &c, p3), 0);
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "h.1.mlp.c_fc.weight"));
	assert_non_null(strstr(e.msg, "[16, 64]"));
	/* an LM head: loaded when it is wte itself, refused when it differs or
	 * the config unties it (it would be ignored, and the logits wrong) */
	{
		const gpt2_tensor *wte = gpt2_find(&m, "wte.weight");
		float *head = xmalloc(wte->n * sizeof *head);
		memcpy(head, m.p + wte->off, wte->n * sizeof *head);
		for (int pass = 0; pass < 2; pass++) {
			st_writer h;
			st_writer_init(&h);
			for (size_t i = 0; i < m.nt; i++)
				st_add_f32(&h, m.t[i].name, m.p + m.t[i].off, m.t[i].ndim, m.t[i].shape);
			st_add_f32(&h, "lm_head.weight", head, 2, wte->shape);
			assert_int_equal(st_write(&e, &h, p3), 0);
			st_writer_free(&h);
			write_json(d, "config.json", cfg.p);
			int rc = gpt2_load_dir(&e, &m2, d);
			if (pass == 0) {
				if (rc != 0)
					fail_msg("a tied lm_head: %s", e.msg);
				assert_memory_equal(m2.p, m.p, m.nparams * sizeof(float));
				gpt2_free(&m2);
			} else {
				assert_int_not_equal(rc, 0);
				assert_non_null(strstr(e.msg, "lm_head.weight differs from wte.weight"));
			}
			head[5] += 0.25f;
		}
		free(head);
		char *text = xstrndup(cfg.p, cfg.len), *tie = strstr(text, "\"tie_word_embeddings\": true");
		assert_non_null(tie);
		memcpy(tie + 22, "false", 5); /* " true" becomes "false" */
		write_json(d, "config.json", text);
		assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
		assert_non_null(strstr(e.msg, "tie_word_embeddings: false"));
		free(text);
	}
	/* configs */
	write_json(d, "config.json", "{\"n_layer\": 2, \"n_head\": 3, \"n_embd\": 16, \"n_positions\": 12, \"vocab_size\": 37}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "not a multiple of n_head"));
	write_json(d, "config.json", "{\"n_layer\": 2}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "expected integers"));
	/* another architecture: named, and the supported ones listed */
	write_json(d, "config.json", "{\"model_type\": \"gemma\", \"hidden_size\": 16}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "model_type \"gemma\" is not an architecture hone has"));
	assert_non_null(strstr(e.msg, "\"bert\""));
	assert_non_null(strstr(e.msg, "\"qwen2\""));
	write_json(d, "config.json", "{\"model_type\": \"llama\", \"hidden_size\": 16}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "a Llama model, where a GPT-2 is needed"));
	write_json(d, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 16}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "a BERT model, where a GPT-2 is needed"));
	write_json(d, "config.json", "{\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"n_positions\": 12, \"vocab_size\": 37, \"activation_function\": \"relu\"}");
	assert_int_not_equal(gpt2_load_dir(&e, &m2, d), 0);
	assert_non_null(strstr(e.msg, "gelu_new"));
	free(p1);
	free(p2);
	free(p3);
	st_writer_free(&a);
	st_writer_free(&b);
	st_writer_free(&c);
	buf_free(&idx);
	buf_free(&cfg);
	tmpdir_rm(d);
	gpt2_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_pytorch),
		cmocka_unit_test(test_checkpoints),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_step_batch),
		cmocka_unit_test(test_lora),
		cmocka_unit_test(test_lora_peft),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_classifier),
	};
	return cmocka_run_group_tests_name("gpt2", tests, NULL, NULL);
}
