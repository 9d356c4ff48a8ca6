/*
 * The Llama family (engine/models/llama.c) against transformers: for each
 * fixture (tests/fixtures/llama/<name>, made by gen_llama_torch.py there and
 * matched by transformers and peft themselves: check_transformers.py)
 * the checkpoint loads, the rotary table, logits, loss and every
 * parameter's gradient match; peft's LoRA on all seven projections loads
 * and its gradients match; generation with the cache gives the full
 * forward's logits; what hone saves loads back the same; the layers that
 * Llama adds (rope, SwiGLU, grouped heads) match the reference backend and
 * finite differences.
 */
#include <math.h>

#include "testutil.h"
#include "ml/blas.h"
#include "models/clm.h"
#include "models/llama.h"
#include "nn/nn.h"
#include "nn/ptune.h"
#include "refjson.h"

#define FX "tests/fixtures/llama/"

typedef struct ref {
	buf text;
	jarena *a;
	const jnode *r;
	int B, T;
	uint32_t ids[64];
	int32_t tg[64]; /* next-token targets from the labels (transformers shifts them) */
} ref;

static void ref_open(ref *f, const char *dir)
{
	herr e;
	char *p = path_join(dir, "reference.json");
	buf_init(&f->text);
	if (fs_read(&e, p, &f->text) != 0)
		fail_msg("%s (make the fixtures with tests/fixtures/llama/gen_llama_fixture.py)", e.msg);
	free(p);
	f->a = json_arena_new();
	jerror je;
	f->r = json_parse(f->a, f->text.p, f->text.len, &je);
	assert_non_null(f->r);
	f->B = (int)num(json_member(f->r, "B", 1));
	f->T = (int)num(json_member(f->r, "T", 1));
	int k = 0, lab[64];
	for (const jnode *v = json_member(f->r, "input_ids", 9)->kid; v; v = v->next)
		f->ids[k++] = (uint32_t)num(v);
	k = 0;
	for (const jnode *v = json_member(f->r, "labels", 6)->kid; v; v = v->next)
		lab[k++] = (int)num(v);
	for (int b = 0; b < f->B; b++)
		for (int t = 0; t < f->T; t++)
			f->tg[b * f->T + t] = t + 1 < f->T ? lab[b * f->T + t + 1] : -1;
}

static void ref_close(ref *f)
{
	json_arena_free(f->a);
	buf_free(&f->text);
}

static void load(llama *m, const char *dir)
{
	herr e;
	if (llama_load_dir(&e, m, dir) != 0)
		fail_msg("%s", e.msg);
}

/* rope table, logits, loss and every gradient of a fixture's model */
static void check_model(const char *name, st_dtype dtype)
{
	char dir[128];
	snprintf(dir, sizeof dir, FX "%s", name);
	llama m;
	load(&m, dir);
	assert_int_equal(m.dtype, dtype);
	ref f;
	ref_open(&f, dir);
	int D = m.cfg.head_dim;
	float *cs = xmalloc((size_t)f.T * (size_t)D * sizeof *cs), *co = xmalloc((size_t)f.T * (size_t)D * sizeof *co);
	llama_rope_table(&m.cfg, f.T, cs);
	/* transformers' cos and sin are [T, D] with each half repeated */
	for (int part = 0; part < 2; part++) {
		for (int t = 0; t < f.T; t++)
			for (int i = 0; i < D; i++)
				co[t * D + i] = cs[t * D + part * (D / 2) + i % (D / 2)];
		const jnode *want = json_member(f.r, part ? "sin" : "cos", 3);
		size_t k = 0;
		for (const jnode *v = want->kid; v; v = v->next, k++)
			if (fabs(co[k] - num(v)) > 2e-6)
				fail_msg("%s: rope %s[%zu]: %.9g, transformers %.9g", name, part ? "sin" : "cos", k, co[k], num(v));
		assert_int_equal(k, (size_t)f.T * (size_t)D);
	}
	free(cs);
	free(co);
	llama_ws *w = llama_ws_new_on(&m, f.B, f.T, 2, &nn_cpu);
	double loss = llama_forward(&m, w, f.ids, f.tg), want = num(json_member(f.r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * fabs(want))
		fail_msg("%s: loss %.9g, transformers %.9g", name, loss, want);
	near(llama_logits(w), json_member(f.r, "logits", 6), (size_t)f.B * f.T * m.cfg.vocab, 1e-4, "logits");
	llama_backward(&m, w);
	const float *g = llama_grad(w);
	size_t checked = 0;
	for (const jnode *t = json_member(f.r, "grads", 5)->kid; t; t = t->next) {
		char tn[128];
		snprintf(tn, sizeof tn, "%.*s", (int)t->klen, t->key);
		const model_tensor *mt = llama_find(&m, tn);
		if (!mt)
			fail_msg("%s: no tensor %s", name, tn);
		near(g + mt->off, t, mt->n, 1e-3, tn);
		checked++;
	}
	assert_int_equal(checked, m.nt);
	/* the same bits on 1 and 3 threads */
	float *g2 = xmalloc(m.nparams * sizeof *g2);
	memcpy(g2, g, m.nparams * sizeof *g2);
	llama_ws *w3 = llama_ws_new_on(&m, f.B, f.T, 3, &nn_cpu);
	llama_forward(&m, w3, f.ids, f.tg);
	llama_backward(&m, w3);
	assert_memory_equal(llama_grad(w3), g2, m.nparams * sizeof *g2);
	llama_ws_free(w3);
	free(g2);
	llama_ws_free(w);
	ref_close(&f);
	llama_free(&m);
}

static void test_llama_gqa(void **st)
{
	(void)st;
	check_model("llama", ST_F32);
}

static void test_llama3_rope(void **st)
{
	(void)st;
	check_model("llama3", ST_F32);
}

static void test_qwen2_bf16_tied(void **st)
{
	(void)st;
	check_model("qwen2", ST_BF16);
}

static void test_mistral(void **st)
{
	(void)st;
	check_model("mistral", ST_F32);
	llama m;
	load(&m, FX "mistral");
	herr e;
	assert_int_equal(llama_check_len(&e, &m, 32, "t"), 0);
	assert_int_equal(llama_check_len(&e, &m, 33, "t"), -1);
	assert_non_null(strstr(e.msg, "sliding_window of 32"));
	llama_free(&m);
}

/* peft's LoRA on the seven projections: loss, logits, every adapter gradient */
/* transformers and peft themselves on these fixtures (check_transformers.py,
 * run on the device machine; its report committed): every fixture that the
 * tests here match was also matched by transformers, within the issue's
 * tolerances, with no fixture left out or failed */
static void test_transformers_agree(void **st)
{
	(void)st;
	herr e;
	buf t;
	buf_init(&t);
	if (fs_read(&e, FX "transformers_check.json", &t) != 0)
		fail_msg("%s (run tests/fixtures/llama/check_transformers.py on a machine with transformers)", e.msg);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = json_parse(a, t.p, t.len, &je);
	assert_non_null(r);
	static const char *const want[] = {"llama", "llama3", "qwen2", "mistral", "lora", "ptune", "prefix"};
	const jnode *fx = json_member(r, "fixtures", 8);
	assert_non_null(fx);
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		const jnode *row = json_member(fx, want[i], strlen(want[i]));
		if (!row)
			fail_msg("transformers_check.json: no row for %s", want[i]);
		if (json_member(row, "error", 5))
			fail_msg("transformers_check.json: %s failed under transformers", want[i]);
		double lr = num(json_member(row, "loss_rel", 8)), gr = num(json_member(row, "logits_rel", 10)),
		       dr = num(json_member(row, "grads_rel", 9));
		if (!(lr < 1e-4 && gr < 1e-4 && dr < 1e-3))
			fail_msg("%s: transformers differs: loss %.3g, logits %.3g, gradients %.3g (relative)", want[i], lr, gr, dr);
		assert_non_null(json_member(row, "grads", 5)->kid);
	}
	json_arena_free(a);
	buf_free(&t);
}

static void test_lora_peft(void **st)
{
	(void)st;
	herr e;
	llama m;
	load(&m, FX "lora/base");
	lora lo;
	if (llama_lora_load(&e, &lo, &m, FX "lora/adapter") != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(lo.targets, 0x7f);
	m.lora = &lo;
	ref f;
	ref_open(&f, FX "lora");
	llama_ws *w = llama_ws_new_on(&m, f.B, f.T, 2, &nn_cpu);
	double loss = llama_forward(&m, w, f.ids, f.tg), want = num(json_member(f.r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * want)
		fail_msg("loss %.9g, peft %.9g", loss, want);
	size_t NV = (size_t)f.B * f.T * m.cfg.vocab;
	near(llama_logits(w), json_member(f.r, "logits", 6), NV, 1e-4, "lora logits");
	assert_null(llama_grad(w));
	llama_backward(&m, w);
	const float *g = llama_lora_grad(w);
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
	assert_int_equal(checked, (size_t)m.cfg.n_layer * 7 * 2);
	/* merged, the model gives the same logits without adapters */
	float *logits = xmalloc(NV * sizeof *logits);
	memcpy(logits, llama_logits(w), NV * sizeof *logits);
	llama_ws_free(w);
	m.lora = NULL;
	llama_lora_merge(&lo, &m);
	w = llama_ws_new_on(&m, f.B, f.T, 1, &nn_cpu);
	llama_forward(&m, w, f.ids, NULL);
	for (size_t k = 0; k < NV; k++)
		assert_true(fabsf(llama_logits(w)[k] - logits[k]) < 1e-4f * (1 + fabsf(logits[k])));
	free(logits);
	lora_free(&lo);
	llama_ws_free(w);
	ref_close(&f);
	llama_free(&m);
}

/* A fixture's virtual tokens (prompt or prefix tuning) on its base model
 * (a folder clm_load_dir opens): PEFT's arithmetic (loss, the tokens'
 * logits, the table's gradient), and generation: a prefill of 5 ids then a
 * step give the full forward's logits at the sixth */
static void check_virtual_on(const char *base, const char *dir, const char *ad, int kind, size_t np)
{
	herr e;
	clm cm;
	if (clm_load_dir(&e, &cm, base) != 0)
		fail_msg("%s", e.msg);
	ptune pt;
	if (ptune_load(&e, &pt, ad, clm_width(&cm), clm_kv_width(&cm), clm_layers(&cm), clm_heads(&cm),
	               clm_kv_heads(&cm)) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(pt.kind, kind);
	assert_int_equal(pt.n, 3);
	assert_int_equal(pt.np, np);
	ref f;
	ref_open(&f, dir);
	int V = clm_vocab(&cm);
	clm_set_ptune(&cm, &pt);
	clm_ws *w = clm_ws_new_on(&cm, f.B, f.T, 2, &nn_cpu);
	double loss = clm_forward(w, f.ids, f.tg), want = num(json_member(f.r, "loss", 4));
	if (fabs(loss - want) > 1e-4 * want)
		fail_msg("%s: loss %.9g, reference %.9g", dir, loss, want);
	near(clm_logits(w), json_member(f.r, "logits", 6), (size_t)f.B * f.T * V, 1e-4, "logits");
	assert_null(clm_grad(w));
	clm_backward(w);
	near(clm_ptune_grad(w), json_member(json_member(f.r, "grads", 5), "prompt_embeddings", 17), pt.np, 1e-3,
	     "prompt_embeddings");
	clm_ws_free(w);
	clm_ws *w1 = clm_ws_new_on(&cm, 1, 6, 1, &nn_cpu);
	clm_forward(w1, f.ids, NULL);
	clm_kv *kv = clm_kv_new_on(&cm, &nn_cpu);
	float *lg = xmalloc((size_t)V * sizeof *lg);
	assert_int_equal(clm_prefill(kv, f.ids, 5, lg), 0);
	assert_int_equal(clm_step(kv, f.ids[5], lg), 0);
	for (int v = 0; v < V; v++)
		assert_true(fabsf(lg[v] - clm_logits(w1)[(size_t)5 * V + v]) < 1e-4f);
	assert_int_equal(clm_kv_max(kv), clm_max_pos(&cm) - 3);
	free(lg);
	clm_kv_free(kv);
	clm_ws_free(w1);
	ref_close(&f);
	clm_set_ptune(&cm, NULL);
	ptune_free(&pt);
	clm_free(&cm);
}

/* the Llama fixture's (gen_llama_torch.py: adapter/ beside reference.json) */
static void check_virtual(const char *name, int kind, size_t np)
{
	char dir[128], ad[160];
	snprintf(dir, sizeof dir, FX "%s", name);
	snprintf(ad, sizeof ad, "%s/adapter", dir);
	check_virtual_on(FX "llama", dir, ad, kind, np);
}

/* GPT-2 with peft's own prompt and prefix tuning (check_transformers.py on
 * the device: each folder as peft saved it, its reference.json beside) */
static void test_gpt2_peft_virtual(void **state)
{
	(void)state;
	check_virtual_on(FX "gpt2_peft/base", FX "gpt2_peft/ptune", FX "gpt2_peft/ptune", PT_PROMPT, 3 * 16);
	check_virtual_on(FX "gpt2_peft/base", FX "gpt2_peft/prefix", FX "gpt2_peft/prefix", PT_PREFIX, 3 * 2 * 2 * 16);
}

/* GPT-2 with virtual tokens (prompt or prefix): the table's gradient
 * against central differences */
static void gpt2_virtual_fd(int kind)
{
	herr e;
	gpt2_config gc = {2, 2, 16, 32, 40, 1e-5f, 0};
	gpt2 g;
	assert_int_equal(gpt2_init(&e, &g, &gc), 0);
	gpt2_init_random(&g, 3);
	ptune gp;
	if (kind == PT_PREFIX)
		ptune_init_prefix(&gp, 2, 16, 2, 2, 9);
	else
		ptune_init(&gp, 2, 16, 2, 2, 9);
	clm gm = clm_of_gpt2(&g);
	clm_set_ptune(&gm, &gp);
	uint32_t ids[16];
	int32_t tg[16];
	for (int i = 0; i < 16; i++) {
		ids[i] = (uint32_t)((i * 7 + 3) % 40);
		tg[i] = i % 8 == 7 ? -1 : (int32_t)((i * 5 + 1) % 40);
	}
	clm_ws *gw = clm_ws_new_on(&gm, 2, 8, 1, &nn_cpu);
	clm_forward(gw, ids, tg);
	clm_backward(gw);
	float *gg = xmalloc(gp.np * sizeof *gg);
	memcpy(gg, clm_ptune_grad(gw), gp.np * sizeof *gg);
	for (size_t k = 0; k < gp.np; k += 5) {
		float keep = gp.p[k], h = 1e-2f;
		gp.p[k] = keep + h;
		double lp = clm_forward(gw, ids, tg);
		gp.p[k] = keep - h;
		double lm = clm_forward(gw, ids, tg);
		gp.p[k] = keep;
		double fd = (lp - lm) / (2 * h);
		if (fabs(fd - gg[k]) > 2e-3 * (1 + fabs(fd)))
			fail_msg("gpt2 %s gradient %zu: %.6g, finite differences %.6g", kind ? "prefix" : "prompt", k, gg[k], fd);
	}
	free(gg);
	clm_ws_free(gw);
	ptune_free(&gp);
	gpt2_free(&g);
}

static void test_prompt_tuning(void **st)
{
	(void)st;
	check_virtual("ptune", PT_PROMPT, 3 * 32);
	gpt2_virtual_fd(PT_PROMPT);
	/* saved in PEFT's layout, it reads back the same; a LoRA folder is told apart */
	herr e;
	ptune pt, back;
	ptune_init(&pt, 3, 32, 2, 4, 1);
	char *d = tmpdir_new();
	assert_int_equal(ptune_save(&e, &pt, d), 0);
	assert_int_equal(ptune_load(&e, &back, d, 32, 16, 2, 4, 2), 0);
	assert_memory_equal(back.p, pt.p, pt.np * sizeof(float));
	ptune_free(&back);
	assert_int_equal(ptune_load(&e, &back, FX "lora/adapter", 32, 16, 2, 4, 2), -2);
	assert_int_equal(ptune_load(&e, &back, FX "ptune/adapter", 16, 16, 2, 4, 2), -1);
	assert_non_null(strstr(e.msg, "token_dim 32"));
	tmpdir_rm(d);
	ptune_free(&pt);
}

static void test_prefix_tuning(void **st)
{
	(void)st;
	check_virtual("prefix", PT_PREFIX, 3 * 2 * 2 * 16);
	gpt2_virtual_fd(PT_PREFIX);
}

/* the cache's logits, token by token and prefilled, are the full forward's */
static void test_kv_cache(void **st)
{
	(void)st;
	const char *const names[] = {"llama", "qwen2", "llama3"};
	for (int k = 0; k < 3; k++) {
		char dir[128];
		snprintf(dir, sizeof dir, FX "%s", names[k]);
		llama m;
		load(&m, dir);
		ref f;
		ref_open(&f, dir);
		int T = f.T, V = m.cfg.vocab;
		llama_ws *w = llama_ws_new_on(&m, 1, T, 1, &nn_cpu);
		llama_forward(&m, w, f.ids, NULL);
		llama_kv *kv = llama_kv_new_on(&m, &nn_cpu, 32);
		float *lg = xmalloc((size_t)V * sizeof *lg);
		for (int t = 0; t < T; t++) {
			assert_int_equal(llama_step(&m, kv, f.ids[t], lg), 0);
			for (int v = 0; v < V; v++) {
				float want = llama_logits(w)[(size_t)t * V + v];
				if (fabsf(lg[v] - want) > 1e-4f * (1 + fabsf(want)))
					fail_msg("%s: step %d logit %d: %.9g, forward %.9g", names[k], t, v, lg[v], want);
			}
		}
		llama_kv_reset(kv);
		assert_int_equal(llama_prefill(&m, kv, f.ids, 7, lg), 0);
		assert_int_equal(llama_kv_len(kv), 7);
		assert_int_equal(llama_step(&m, kv, f.ids[7], lg), 0);
		for (int v = 0; v < V; v++)
			assert_true(fabsf(lg[v] - llama_logits(w)[(size_t)7 * V + v]) < 1e-4f);
		assert_int_equal(llama_kv_max(kv), 32);
		free(lg);
		llama_kv_free(kv);
		llama_ws_free(w);
		ref_close(&f);
		llama_free(&m);
	}
}

/* saved and read back: the same config, dtype and weights */
static void test_save_load(void **st)
{
	(void)st;
	const char *const names[] = {"llama", "qwen2"};
	for (int k = 0; k < 2; k++) {
		char dir[128];
		snprintf(dir, sizeof dir, FX "%s", names[k]);
		llama m, back;
		load(&m, dir);
		char *d = tmpdir_new();
		herr e;
		assert_int_equal(llama_save_dir(&e, &m, NULL, d), 0);
		load(&back, d);
		assert_int_equal(back.dtype, m.dtype);
		assert_int_equal(back.nparams, m.nparams);
		assert_memory_equal(back.p, m.p, m.nparams * sizeof(float));
		assert_string_equal(back.config_json, m.config_json);
		llama_free(&back);
		/* a config written from scratch reads back as the same configuration */
		buf cj;
		buf_init(&cj);
		llama_config_json(&m.cfg, &cj);
		llama_config c2;
		if (llama_config_parse(&e, &c2, cj.p, cj.len, "written") != 0)
			fail_msg("%s", e.msg);
		assert_memory_equal(&c2, &m.cfg, sizeof c2);
		buf_free(&cj);
		tmpdir_rm(d);
		llama_free(&m);
	}
}

static void parse_fails(const char *json, const char *needle)
{
	herr e;
	llama_config c;
	assert_int_equal(llama_config_parse(&e, &c, json, strlen(json), "config.json"), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error '%s' does not say '%s'", e.msg, needle);
}

static void test_config_errors(void **st)
{
	(void)st;
#define BASE "\"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1, "
	parse_fails("{\"model_type\": \"llama\", " BASE "\"num_attention_heads\": 2, \"hidden_act\": \"gelu\"}", "hidden_act");
	parse_fails("{\"model_type\": \"llama\", " BASE "\"num_attention_heads\": 2, \"rope_scaling\": {\"rope_type\": \"yarn\"}}",
	            "\"yarn\" is not supported");
	parse_fails("{\"model_type\": \"llama\", " BASE "\"num_attention_heads\": 3, \"num_key_value_heads\": 2}", "multiple");
	parse_fails("{\"model_type\": \"qwen2\", " BASE "\"num_attention_heads\": 2, \"use_sliding_window\": true}",
	            "use_sliding_window");
	parse_fails("{\"model_type\": \"llama\", \"vocab_size\": 10}", "hidden_size");
	parse_fails("{\"model_type\": \"gpt2\", \"n_layer\": 1}", "a GPT-2 model");
	herr e;
	llama_config c;
	const char *ok = "{\"model_type\": \"mistral\", " BASE "\"num_attention_heads\": 2, \"sliding_window\": null, "
	                 "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 4, \"rope_theta\": 500000}}";
	if (llama_config_parse(&e, &c, ok, strlen(ok), "ok") != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(c.rope_type, ROPE_LINEAR);
	assert_true(c.theta == 500000 && c.rope_factor == 4 && c.sliding_window == 0 && c.n_kv == 2 && c.head_dim == 4);
#undef BASE
}

/* the layers Llama adds, on the CPU, against the reference and finite differences */
static void test_layers(void **st)
{
	(void)st;
	enum { N = 70, H = 4, Hk = 2, D = 8, I = 24 };
	nn_ctx cpu, ref;
	nn_ctx_init(&cpu, &nn_cpu, 3);
	nn_ctx_init(&ref, &nn_ref, 1);
	uint64_t s = 5;
	size_t QW = (size_t)(H + 2 * Hk) * D, XW = 3 * (size_t)H * D;
	float *x = xmalloc(N * QW * 4), *a = xmalloc(N * QW * 4), *b = xmalloc(N * QW * 4);
	for (size_t i = 0; i < N * QW; i++)
		x[i] = (float)model_normal(&s);
	uint32_t pos[N];
	for (int i = 0; i < N; i++)
		pos[i] = (uint32_t)(i % 33);
	llama_config c = {.head_dim = D, .theta = 10000};
	float *cs = xmalloc(33 * D * 4);
	llama_rope_table(&c, 33, cs);
	/* rope: the CPU's bits are the reference's; the inverse undoes it */
	memcpy(a, x, N * QW * 4);
	memcpy(b, x, N * QW * 4);
	rope(&cpu, a, pos, cs, N, (int)QW, H + Hk, D, 0);
	rope(&ref, b, pos, cs, N, (int)QW, H + Hk, D, 0);
	assert_memory_equal(a, b, N * QW * 4);
	for (size_t i = 0; i < (size_t)(H + Hk) * D; i++) /* position 0 is the identity */
		assert_true(a[i] == x[i]);
	for (size_t i = (H + Hk) * D; i < QW; i++) /* v is left alone */
		assert_true(a[(size_t)5 * QW + i] == x[(size_t)5 * QW + i]);
	rope(&cpu, a, pos, cs, N, (int)QW, H + Hk, D, 1);
	for (size_t i = 0; i < N * QW; i++)
		assert_true(fabsf(a[i] - x[i]) < 1e-5f);
	/* kv_expand: head h reads kv head h / 2; backward gathers the repeats */
	float *e = xmalloc(N * XW * 4), *e2 = xmalloc(N * XW * 4);
	kv_expand_forward(&cpu, e, x, N, H, Hk, D);
	kv_expand_forward(&ref, e2, x, N, H, Hk, D);
	assert_memory_equal(e, e2, N * XW * 4);
	for (int h = 0; h < H; h++)
		for (int d = 0; d < D; d++) {
			assert_true(e[3 * XW + XW / 3 + (size_t)h * D + d] == x[3 * QW + H * D + (size_t)(h / 2) * D + d]);
			assert_true(e[3 * XW + 2 * XW / 3 + (size_t)h * D + d] == x[3 * QW + (H + Hk) * D + (size_t)(h / 2) * D + d]);
		}
	memset(a, 0, N * QW * 4);
	memset(b, 0, N * QW * 4);
	kv_expand_backward(&cpu, a, e, N, H, Hk, D);
	kv_expand_backward(&ref, b, e, N, H, Hk, D);
	assert_memory_equal(a, b, N * QW * 4);
	for (size_t r = 0; r < N; r++)
		for (size_t i = 0; i < QW; i++) /* each key and value was read twice */
			assert_true(a[r * QW + i] == (i < (size_t)H * D ? 1.0f : 2.0f) * x[r * QW + i]);
	free(e);
	free(e2);
	/* SwiGLU against finite differences */
	float *gu = xmalloc(N * 2 * I * 4), *h = xmalloc(N * I * 4), *dh = xmalloc(N * I * 4), *dgu = xcalloc(N * 2 * I, 4);
	for (size_t i = 0; i < N * 2 * I; i++)
		gu[i] = (float)(2 * model_normal(&s));
	for (size_t i = 0; i < N * I; i++)
		dh[i] = (float)model_normal(&s);
	swiglu_forward(&cpu, h, gu, N, I);
	for (size_t i = 0; i < N * I; i += 7) {
		size_t r = i / I, k = i % I;
		double g = gu[r * 2 * I + k], u = gu[r * 2 * I + I + k];
		assert_true(fabs(h[i] - g / (1 + exp(-g)) * u) < 1e-5 * (1 + fabs(h[i])));
	}
	swiglu_backward(&cpu, dgu, dh, gu, N, I);
	for (size_t j = 0; j < N * 2 * I; j += 11) {
		size_t r = j / (2 * I);
		float keep = gu[j], ep = 1e-2f;
		double lp = 0, lm = 0;
		gu[j] = keep + ep;
		swiglu_forward(&ref, h, gu, N, I);
		for (size_t k = 0; k < I; k++)
			lp += (double)dh[r * I + k] * h[r * I + k];
		gu[j] = keep - ep;
		swiglu_forward(&ref, h, gu, N, I);
		for (size_t k = 0; k < I; k++)
			lm += (double)dh[r * I + k] * h[r * I + k];
		gu[j] = keep;
		double fd = (lp - lm) / (2 * ep);
		if (fabs(fd - dgu[j]) > 2e-3 * (1 + fabs(fd)))
			fail_msg("swiglu grad %zu: %.6g, finite differences %.6g", j, dgu[j], fd);
	}
	free(gu);
	free(h);
	free(dh);
	free(dgu);
	free(cs);
	free(x);
	free(a);
	free(b);
	nn_ctx_free(&cpu);
	nn_ctx_free(&ref);
}

int main(void)
{
	herr e;
	if (!blas_get(&e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layers),          cmocka_unit_test(test_config_errors), cmocka_unit_test(test_llama_gqa),
		cmocka_unit_test(test_llama3_rope),     cmocka_unit_test(test_qwen2_bf16_tied), cmocka_unit_test(test_mistral),
		cmocka_unit_test(test_lora_peft),       cmocka_unit_test(test_kv_cache),      cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_prompt_tuning),     cmocka_unit_test(test_prefix_tuning), cmocka_unit_test(test_gpt2_peft_virtual), cmocka_unit_test(test_transformers_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
