/*
 * The native model's pieces: AdamW, clipping and the schedules against
 * PyTorch / transformers (tests/fixtures/train/reference.json, made by
 * gen_train_fixtures.py there), the classifier's forward and backward
 * against PyTorch, gradient checks by finite differences for every layer,
 * activation and head (dropout on), and the safetensors and bundle formats:
 * round trips, determinism, and every truncation or corruption refused.
 */
#include <math.h>

#include "testutil.h"
#include "io/json.h"
#include "ml/blas.h"
#include "ml/bundle.h"
#include "ml/classifier.h"
#include "ml/optim.h"
#include "ml/safetensors.h"

#define FIXTURE "tests/fixtures/train/reference.json"

static jarena *arena;
static buf fixture;

static const jnode *root(void)
{
	if (!arena) {
		herr e;
		buf_init(&fixture);
		if (fs_read(&e, FIXTURE, &fixture) != 0)
			fail_msg("%s", e.msg);
		arena = json_arena_new();
		jerror je;
		const jnode *r = json_parse(arena, fixture.p, fixture.len, &je);
		assert_non_null(r);
	}
	jerror je;
	json_arena_reset(arena);
	return json_parse(arena, fixture.p, fixture.len, &je);
}

static const jnode *get(const jnode *o, const char *name)
{
	const jnode *v = json_member(o, name, strlen(name));
	if (!v)
		fail_msg("fixture: no member \"%s\"", name);
	return v;
}

static double num(const jnode *v)
{
	if (!v || v->t != J_NUM)
		fail_msg("fixture: expected a number");
	char tmp[64];
	memcpy(tmp, v->s, v->len < 63 ? v->len : 63);
	tmp[v->len < 63 ? v->len : 63] = 0;
	return strtod(tmp, NULL);
}

static double numm(const jnode *o, const char *name) { return num(get(o, name)); }

/* A JSON array of numbers into a fresh array of n floats. */
static float *floats(const jnode *a, size_t *n)
{
	assert_int_equal(a->t, J_ARR);
	float *v = xcalloc(a->n ? a->n : 1, sizeof *v);
	size_t i = 0;
	for (const jnode *k = a->kid; k; k = k->next)
		v[i++] = (float)num(k);
	*n = i;
	return v;
}

static const jnode *at(const jnode *a, size_t i)
{
	const jnode *k = a->kid;
	while (k && i--)
		k = k->next;
	assert_non_null(k);
	return k;
}

static void close_to(double got, double want, double rel, double abs_tol, const char *what, size_t i)
{
	if (!(fabs(got - want) <= abs_tol + rel * fabs(want)))
		fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got, want);
}

static void test_schedules(void **st)
{
	(void)st;
	const jnode *s = get(root(), "schedules");
	long long w = (long long)numm(s, "warmup"), total = (long long)numm(s, "total");
	const char *kinds[] = {"constant", "linear", "cosine"};
	for (int k = 0; k < 3; k++) {
		const jnode *f = get(get(s, "factors"), kinds[k]);
		size_t i = 0;
		for (const jnode *v = f->kid; v; v = v->next, i++)
			close_to(lr_factor((sched_kind)sched_parse(kinds[k]), (long long)i, w, total), num(v), 1e-12, 1e-15, kinds[k], i);
		assert_int_equal(i, 25);
	}
	assert_int_equal(sched_parse("step"), -1);
}

/* adamw_step (vectorized where the machine can, over threads) against the
 * update written out one value at a time: the same bits, on a length that
 * is not a multiple of 16 */
static void test_adamw_bits(void **st)
{
	(void)st;
	size_t n = 100003;
	float *p = xmalloc(n * 4), *g = xmalloc(n * 4), *m = xcalloc(n, 4), *v = xcalloc(n, 4);
	float *p2 = xmalloc(n * 4), *m2 = xcalloc(n, 4), *v2 = xcalloc(n, 4);
	uint64_t s = 5;
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = p2[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
	}
	adamw_cfg c = {0.9f, 0.999f, 1e-8f, 0.01f};
	for (int t = 1; t <= 3; t++) {
		float *g2 = xmalloc(n * 4);
		for (size_t i = 0; i < n; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			g[i] = g2[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * (i % 7 ? 1e-3f : 10.0f);
		}
		float lr = 1e-3f, gs = 0.5f;
		adamw_step(&c, lr, t, gs, p, g, m, v, n, 2);
		float bc1 = (float)(1.0 - pow(c.b1, (double)t)), bc2s = (float)sqrt(1.0 - pow(c.b2, (double)t));
		float decay = 1.0f - lr * c.wd, step = lr / bc1;
		for (size_t i = 0; i < n; i++) {
			float gi = g2[i] * gs;
			float mi = c.b1 * m2[i] + (1.0f - c.b1) * gi;
			float vi = c.b2 * v2[i] + (1.0f - c.b2) * gi * gi;
			m2[i] = mi;
			v2[i] = vi;
			p2[i] = p2[i] * decay - step * mi / (sqrtf(vi) / bc2s + c.eps);
		}
		assert_memory_equal(p, p2, n * 4);
		assert_memory_equal(m, m2, n * 4);
		assert_memory_equal(v, v2, n * 4);
		for (size_t i = 0; i < n; i++)
			assert_true(g[i] == 0.0f);
		free(g2);
	}
	free(p), free(g), free(m), free(v), free(p2), free(m2), free(v2);
}

static void test_adamw(void **st)
{
	(void)st;
	const jnode *a = get(root(), "adamw");
	size_t n, gn;
	float *p = floats(get(a, "p0"), &n);
	float *m = xcalloc(n, sizeof *m), *v = xcalloc(n, sizeof *v);
	adamw_cfg c = {(float)numm(a, "b1"), (float)numm(a, "b2"), (float)numm(a, "eps"), (float)numm(a, "wd")};
	const jnode *steps = get(a, "steps"), *grads = get(a, "grads");
	long long total = (long long)steps->n, warm = (long long)numm(a, "warmup");
	for (long long t = 0; t < total; t++) {
		const jnode *s = at(steps, (size_t)t);
		float *g = floats(at(grads, (size_t)t), &gn);
		assert_int_equal(gn, n);
		double lr = numm(a, "lr") * lr_factor(SCHED_COSINE, t, warm, total);
		close_to(lr, numm(s, "lr"), 1e-12, 1e-15, "lr", (size_t)t);
		double norm = grad_norm(g, n, 2);
		close_to(norm, numm(s, "norm"), 1e-6, 1e-7, "norm", (size_t)t);
		adamw_step(&c, (float)lr, t + 1, clip_factor(norm, numm(a, "clip")), p, g, m, v, n, 2);
		for (size_t i = 0; i < n; i++)
			assert_true(g[i] == 0.0f); /* zeroed for the next step */
		size_t pn;
		float *want = floats(get(s, "p"), &pn);
		for (size_t i = 0; i < n; i++)
			close_to(p[i], want[i], 2e-6, 1e-7, "p", i);
		free(want);
		free(g);
	}
	assert_true(clip_factor(10, 0) == 1.0f);
	free(p);
	free(m);
	free(v);
}

/* --- the classifier against PyTorch ------------------------------------------ */

static void build(clf_model *m, const char *act, const char *head, const int *hidden, int nl, int vocab, int buckets,
                  int tdim, int ncat, int cdim)
{
	memset(m, 0, sizeof *m);
	m->f = xcalloc(4, sizeof *m->f);
	const char *names[] = {"text", "kind", "num", "bin"};
	feat_type types[] = {FEAT_TEXT, FEAT_CAT, FEAT_NUM, FEAT_BIN};
	for (int i = 0; i < 4; i++) {
		clf_feat *f = &m->f[m->nf++];
		f->name = xstrdup(names[i]);
		f->field = xstrdup(names[i]);
		f->type = types[i];
		f->dim = 1;
		f->std = 1;
	}
	m->f[0].dim = tdim;
	m->f[0].vocab = (uint32_t)vocab;
	m->f[0].buckets = (uint32_t)buckets;
	m->f[1].dim = cdim;
	m->f[1].nlabels = (uint32_t)ncat;
	m->f[1].labels = xcalloc((size_t)ncat, sizeof *m->f[1].labels);
	for (int k = 0; k < ncat; k++)
		m->f[1].labels[k] = xasprintf("c%d", k);
	m->nl = nl;
	for (int l = 0; l < nl; l++)
		m->hidden[l] = hidden[l];
	m->act = (act_type)clf_act_parse(act);
	m->out = !strcmp(head, "category") ? OUT_CAT : !strcmp(head, "binary") ? OUT_BIN : OUT_NUM;
	m->target = xstrdup("y");
	m->ncls = m->out == OUT_CAT ? 3 : m->out == OUT_BIN ? 2 : 0;
	m->classes = m->ncls ? xcalloc((size_t)m->ncls, sizeof *m->classes) : NULL;
	for (int k = 0; k < m->ncls; k++)
		m->classes[k] = xasprintf("k%d", k);
	m->y_std = 1;
	m->threshold = 0.5;
	m->tok_eos = -1;
	clf_layout(m);
}

typedef struct toy {
	clf_data d;
	uint32_t *tokens;
} toy;

static void toy_data(toy *t, const jnode *examples, const clf_model *m, const jnode *y)
{
	memset(t, 0, sizeof *t);
	size_t n = examples->n, nt = 0;
	t->tokens = xcalloc(256, sizeof *t->tokens);
	t->d.n = n;
	t->d.col = xcalloc(4, sizeof *t->d.col);
	t->d.col[0].off = xcalloc(n, sizeof(uint64_t));
	t->d.col[0].len = xcalloc(n, sizeof(uint32_t));
	t->d.col[1].code = xcalloc(n, sizeof(uint32_t));
	t->d.col[2].x = xcalloc(n, sizeof(float));
	t->d.col[3].x = xcalloc(n, sizeof(float));
	if (m->out == OUT_NUM)
		t->d.yv = xcalloc(n, sizeof(float));
	else
		t->d.y = xcalloc(n, sizeof(uint32_t));
	size_t i = 0;
	for (const jnode *e = examples->kid; e; e = e->next, i++) {
		const jnode *ids = get(e, "ids");
		t->d.col[0].off[i] = nt;
		for (const jnode *k = ids->kid; k; k = k->next)
			t->tokens[nt++] = (uint32_t)num(k);
		t->d.col[0].len[i] = (uint32_t)ids->n;
		t->d.col[1].code[i] = (uint32_t)numm(e, "cat");
		t->d.col[2].x[i] = (float)numm(e, "num");
		t->d.col[3].x[i] = (float)numm(e, "bin");
		if (m->out == OUT_NUM)
			t->d.yv[i] = (float)num(at(y, i));
		else
			t->d.y[i] = (uint32_t)num(at(y, i));
	}
	t->d.tokens = t->tokens;
	t->d.ntokens = nt;
}

static void toy_free(toy *t)
{
	clf_data_free(&t->d, 4);
	free(t->tokens);
}

static void test_classifier_vs_torch(void **st)
{
	(void)st;
	herr e;
	assert_non_null(blas_get(&e));
	const jnode *ms = get(root(), "models");
	int vocab = (int)numm(ms, "vocab"), buckets = (int)numm(ms, "buckets"), tdim = (int)numm(ms, "text_dim");
	int ncat = (int)numm(ms, "categories"), cdim = (int)numm(ms, "category_dim");
	for (const jnode *c = get(ms, "cases")->kid; c; c = c->next) {
		const jnode *hj = get(c, "hidden"), *hd = get(c, "head"), *ac = get(c, "activation");
		int hidden[8], nl = 0;
		for (const jnode *k = hj->kid; k; k = k->next)
			hidden[nl++] = (int)num(k);
		char head[16], act[16];
		snprintf(head, sizeof head, "%.*s", (int)hd->len, hd->s);
		snprintf(act, sizeof act, "%.*s", (int)ac->len, ac->s);
		clf_model m;
		build(&m, act, head, hidden, nl, vocab, buckets, tdim, ncat, cdim);
		st_writer w;
		st_writer_init(&w);
		clf_tensors(&m, &w);
		for (size_t i = 0; i < w.n; i++) {
			size_t n;
			float *src = floats(get(get(c, "weights"), w.t[i].name), &n);
			assert_int_equal(n * 4, w.t[i].nbytes);
			memcpy((float *)w.t[i].data, src, n * 4);
			free(src);
		}
		toy t;
		toy_data(&t, get(ms, "examples"), &m, get(c, "y"));
		float cw[3];
		const jnode *cwj = get(c, "class_weights");
		for (size_t k = 0; cwj->t == J_ARR && k < cwj->n; k++)
			cw[k] = (float)num(at(cwj, k));
		uint32_t idx[5] = {0, 1, 2, 3, 4};
		clf_ws *ws = clf_ws_new(&m, 5, 2);
		double loss = clf_forward(&m, &t.d, idx, 5, ws, 1, 1, 1, cwj->t == J_ARR ? cw : NULL);
		close_to(loss, numm(c, "loss"), 1e-5, 1e-6, head, 0);
		size_t no;
		float *outs = floats(get(c, "outputs"), &no);
		int K = m.out == OUT_CAT ? 3 : m.out == OUT_BIN ? 2 : 1;
		for (int b = 0; b < 5; b++) {
			double o[3];
			clf_outputs(&m, ws, b, o);
			for (int k = 0; k < K; k++)
				close_to(o[k], outs[b * K + k], 1e-5, 1e-6, "outputs", (size_t)(b * K + k));
		}
		clf_backward(&m, &t.d, idx, 5, ws);
		const float *g = clf_grad(ws);
		for (size_t i = 0; i < w.n; i++) {
			size_t n;
			float *want = floats(get(get(c, "grads"), w.t[i].name), &n);
			size_t off = (size_t)((const float *)w.t[i].data - m.p);
			for (size_t k = 0; k < n; k++)
				close_to(g[off + k], want[k], 1e-4, 1e-6, w.t[i].name, k);
			free(want);
		}
		free(outs);
		clf_ws_free(ws);
		st_writer_free(&w);
		toy_free(&t);
		clf_free(&m);
	}
}

/* Finite differences on every parameter of small models, dropout on (its
 * mask depends only on seed and step, so the loss is a fixed function). */
static void test_gradcheck(void **st)
{
	(void)st;
	herr e;
	assert_non_null(blas_get(&e));
	const jnode *ms = get(root(), "models");
	const char *acts[] = {"relu", "gelu", "tanh"}, *heads[] = {"category", "binary", "number"};
	for (int a = 0; a < 3; a++)
		for (int h = 0; h < 3; h++) {
			int hidden[2] = {5, 4};
			clf_model m;
			build(&m, acts[a], heads[h], hidden, 1 + (a + h) % 2, 20, h == 1 ? 0 : 7, 6, 3, 3);
			m.dropout = 0.3;
			clf_init(&m, (uint64_t)(a * 3 + h));
			/* a target per head */
			const jnode *y = NULL;
			for (const jnode *c = get(ms, "cases")->kid; c; c = c->next) {
				const jnode *hd = get(c, "head");
				if (hd->len == strlen(heads[h]) && !memcmp(hd->s, heads[h], hd->len))
					y = get(c, "y");
			}
			toy t;
			toy_data(&t, get(ms, "examples"), &m, y);
			uint32_t idx[5] = {0, 1, 2, 3, 4};
			float cw[3] = {1.0f, 2.0f, 0.5f};
			const float *w = h < 2 ? cw : NULL;
			clf_ws *ws = clf_ws_new(&m, 5, 1);
			clf_forward(&m, &t.d, idx, 5, ws, 1, 9, 3, w);
			clf_backward(&m, &t.d, idx, 5, ws);
			float *g = xmalloc(m.nparams * sizeof *g);
			memcpy(g, clf_grad(ws), m.nparams * sizeof *g);
			size_t checked = 0;
			for (size_t i = 0; i < m.nparams; i++) {
				float keep = m.p[i];
				const float eps = 1e-2f;
				m.p[i] = keep + eps;
				double up = clf_forward(&m, &t.d, idx, 5, ws, 1, 9, 3, w);
				m.p[i] = keep - eps;
				double down = clf_forward(&m, &t.d, idx, 5, ws, 1, 9, 3, w);
				m.p[i] = keep;
				double fd = (up - down) / (2.0 * eps);
				int ok = fabs(fd - g[i]) <= 2e-3 + 3e-2 * fabs(fd);
				/* a ReLU kink inside [-eps, eps] makes the difference
				 * meaningless there: skipped, but they must stay rare */
				if (!ok && a == 0)
					continue;
				if (!ok)
					fail_msg("%s/%s: parameter %zu: backward %.6g, finite difference %.6g", acts[a], heads[h], i, g[i], fd);
				checked++;
			}
			assert_true(checked > m.nparams * 9 / 10);
			free(g);
			clf_ws_free(ws);
			toy_free(&t);
			clf_free(&m);
		}
}

/* --- files ------------------------------------------------------------------------- */

static void test_safetensors(void **st)
{
	(void)st;
	herr e;
	float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1, 0.5f, 7};
	int64_t sa[2] = {2, 3}, sb[1] = {3};
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	st_add_f32(&w, "a.weight", a, 2, sa);
	st_add_f32(&w, "b", b, 1, sb);
	buf out;
	buf_init(&out);
	st_serialize(&w, &out);
	size_t hdr = 0;
	for (int i = 7; i >= 0; i--)
		hdr = hdr << 8 | (uint8_t)out.p[i];
	assert_int_equal((8 + hdr) % 8, 0); /* data aligned */
	st_file f;
	char *copy = xmalloc(out.len);
	memcpy(copy, out.p, out.len);
	assert_int_equal(st_parse(&e, &f, copy, out.len, "t"), 0);
	assert_int_equal(f.n, 2);
	assert_string_equal(f.meta_k[0], "format");
	const float *ra = st_f32(&e, &f, "t", "a.weight", 2, sa);
	assert_non_null(ra);
	assert_memory_equal(ra, a, sizeof a);
	assert_null(st_f32(&e, &f, "t", "b", 2, sa));
	assert_non_null(strstr(e.msg, "expected F32 of shape [2, 3]"));
	assert_null(st_f32(&e, &f, "t", "nope", 1, sb));
	st_free(&f);
	/* every truncation is refused with a message */
	for (size_t n = 0; n < out.len; n++) {
		char *p = xmalloc(n ? n : 1);
		memcpy(p, out.p, n);
		e.msg[0] = 0;
		assert_int_not_equal(st_parse(&e, &f, p, n, "cut"), 0);
		assert_true(e.msg[0] != 0);
	}
	/* corruptions of the header */
	const char *bad[][2] = {
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "4 bytes for a F32 tensor of 2 values"},
		{"{\"x\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,4]}}", "unknown dtype"},
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
		 "overlaps"},
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "gap"},
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape must be"},
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,400]}}", "outside"},
		{"{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", "expected {"},
		{"[1,2]", "not a JSON object"},
		{"{\"__metadata__\":{\"a\":1}}", "must be a string"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		buf c;
		buf_init(&c);
		size_t hl = strlen(bad[i][0]);
		uint8_t len8[8];
		for (int k = 0; k < 8; k++)
			len8[k] = (uint8_t)((uint64_t)hl >> (8 * k));
		buf_add(&c, len8, 8);
		buf_add(&c, bad[i][0], hl);
		buf_add(&c, "\0\0\0\0\0\0\0\0", 8);
		assert_int_not_equal(st_parse(&e, &f, c.p, c.len, "bad"), 0);
		if (!strstr(e.msg, bad[i][1]))
			fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, e.msg, bad[i][1]);
	}
	/* a header size beyond the file */
	char *p = xmalloc(out.len);
	memcpy(p, out.p, out.len);
	p[5] = 1;
	assert_int_not_equal(st_parse(&e, &f, p, out.len, "big"), 0);
	assert_non_null(strstr(e.msg, "does not fit"));
	buf_free(&out);
	st_writer_free(&w);
}

static void test_bundle(void **st)
{
	(void)st;
	herr e;
	bundle_member m[2];
	m[0].name = xstrdup("config.json");
	buf_init(&m[0].data);
	buf_adds(&m[0].data, "{\"a\": 1}\n");
	m[1].name = xstrdup("dir/model.bin");
	buf_init(&m[1].data);
	for (int i = 0; i < 100000; i++)
		buf_addc(&m[1].data, (char)(i * 7));
	buf one, two;
	buf_init(&one);
	buf_init(&two);
	assert_int_equal(bundle_write(&e, m, 2, &one), 0);
	assert_int_equal(bundle_write(&e, m, 2, &two), 0);
	assert_int_equal(one.len, two.len);
	assert_memory_equal(one.p, two.p, one.len); /* same members, same bytes */
	char *d = tmpdir_new();
	char *path = path_join(d, "b.tar.gz");
	assert_int_equal(fs_write_atomic(&e, path, one.p, one.len), 0);
	bundle b;
	assert_int_equal(bundle_read(&e, &b, path, 1 << 20), 0);
	assert_int_equal(b.n, 2);
	const buf *got = bundle_get(&b, "dir/model.bin");
	assert_non_null(got);
	assert_int_equal(got->len, m[1].data.len);
	assert_memory_equal(got->p, m[1].data.p, got->len);
	assert_null(bundle_get(&b, "nope"));
	bundle_free(&b);
	assert_int_not_equal(bundle_read(&e, &b, path, 1000), 0); /* over the size limit */
	assert_non_null(strstr(e.msg, "more than 1000 bytes"));
	/* truncated archives are errors, never partial bundles */
	for (size_t cut = 10; cut < one.len; cut += one.len / 7) {
		assert_int_equal(fs_write_atomic(&e, path, one.p, cut), 0);
		e.msg[0] = 0;
		assert_int_not_equal(bundle_read(&e, &b, path, 1 << 20), 0);
		assert_true(e.msg[0] != 0);
	}
	free(path);
	tmpdir_rm(d);
	for (int i = 0; i < 2; i++) {
		free(m[i].name);
		buf_free(&m[i].data);
	}
	buf_free(&one);
	buf_free(&two);
}

static int teardown(void **st)
{
	(void)st;
	if (arena)
		json_arena_free(arena);
	buf_free(&fixture);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schedules),   cmocka_unit_test(test_adamw),  cmocka_unit_test(test_adamw_bits),  cmocka_unit_test(test_classifier_vs_torch),
		cmocka_unit_test(test_gradcheck),   cmocka_unit_test(test_safetensors), cmocka_unit_test(test_bundle),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
