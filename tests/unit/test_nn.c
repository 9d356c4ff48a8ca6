/*
 * The layer library (engine/nn): every layer of both backends (nn_cpu, the
 * fast one; nn_ref, the plain one) against PyTorch's values
 * (tests/fixtures/nn/layers.json, made by gen_nn_fixture.py there), the CPU
 * backend against the reference on larger random shapes and thread counts,
 * and backward against finite differences (dropout included).
 */
#include <math.h>

#include "testutil.h"
#include "io/json.h"
#include "ml/blas.h"
#include "nn/nn.h"
#include "nn/cpu/cpu.h"

static jarena *A;
static const jnode *R;
static buf RJ;

static int setup(void **st)
{
	(void)st;
	herr e;
	buf_init(&RJ);
	if (fs_read(&e, "tests/fixtures/nn/layers.json", &RJ) != 0)
		return -1;
	A = json_arena_new();
	jerror je;
	R = json_parse(A, RJ.p, RJ.len, &je);
	assert_non_null(blas_get(&e));
	return R ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	json_arena_free(A);
	buf_free(&RJ);
	return 0;
}

/* a fixture array as floats (caller frees); its length in *n */
static float *arr(const jnode *o, const char *k, size_t *n)
{
	const jnode *a = json_member(o, k, strlen(k));
	assert_non_null(a);
	size_t c = 0;
	for (const jnode *v = a->kid; v; v = v->next)
		c++;
	float *f = xcalloc(c ? c : 1, sizeof *f);
	c = 0;
	for (const jnode *v = a->kid; v; v = v->next) {
		double d;
		assert_int_equal(json_number(v, &d), 0);
		f[c++] = (float)d;
	}
	if (n)
		*n = c;
	return f;
}

static int iv(const jnode *o, const char *k)
{
	long long v;
	assert_int_equal(json_int(json_member(o, k, strlen(k)), -1000000, 1000000, &v), 0);
	return (int)v;
}

/* got against want: |Δ| ≤ tol·(|want| + max|want|·1e-2) */
static void near(const float *got, const float *want, size_t n, double tol, const char *what)
{
	double scale = 0;
	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(want[i]));
	for (size_t i = 0; i < n; i++)
		if (!(fabs(got[i] - want[i]) <= tol * (fabs(want[i]) + 1e-2 * scale) + 1e-30))
			fail_msg("%s[%zu]: %.9g, expected %.9g", what, i, got[i], want[i]);
}

static const nn_ops *const backends[] = {&nn_cpu, &nn_ref};

static void test_linear(void **st)
{
	(void)st;
	const char *cases[2] = {"linear_out_in", "linear_in_out"};
	for (int b = 0; b < 2; b++)
		for (int k = 0; k < 2; k++) {
			nn_ctx c;
			nn_ctx_init(&c, backends[b], 2);
			const jnode *o = json_member(R, cases[k], strlen(cases[k]));
			int N = iv(o, "N"), in = iv(o, "in"), out = iv(o, "out"), lay = k ? NN_W_IN_OUT : NN_W_OUT_IN;
			float *x = arr(o, "x", NULL), *w = arr(o, "w", NULL), *bb = arr(o, "b", NULL), *y = arr(o, "y", NULL),
			      *dy = arr(o, "dy", NULL), *dx = arr(o, "dx", NULL), *dw = arr(o, "dw", NULL), *db = arr(o, "db", NULL);
			float *gy = xcalloc((size_t)N * out, 4), *gdx = xcalloc((size_t)N * in, 4), *gdw = xcalloc((size_t)in * out, 4),
			      *gdb = xcalloc((size_t)out, 4);
			linear_forward(&c, gy, x, w, bb, N, in, out, lay, 0);
			near(gy, y, (size_t)N * out, 1e-5, cases[k]);
			/* acc: y + (x W + b) */
			linear_forward(&c, gy, x, w, bb, N, in, out, lay, 1);
			for (int i = 0; i < N * out; i++)
				gy[i] *= 0.5f;
			near(gy, y, (size_t)N * out, 1e-5, "linear acc");
			linear_backward(&c, gdx, gdw, gdb, dy, x, w, N, in, out, lay);
			near(gdx, dx, (size_t)N * in, 1e-5, "linear dx");
			near(gdw, dw, (size_t)in * out, 1e-5, "linear dw");
			near(gdb, db, (size_t)out, 1e-5, "linear db");
			/* backward adds; NULL gradients are left alone */
			linear_backward(&c, gdx, NULL, NULL, dy, x, w, N, in, out, lay);
			for (int i = 0; i < N * in; i++)
				gdx[i] *= 0.5f;
			near(gdx, dx, (size_t)N * in, 1e-5, "linear dx accumulated");
			float *ptrs[] = {x, w, bb, y, dy, dx, dw, db, gy, gdx, gdw, gdb};
			for (size_t q = 0; q < sizeof ptrs / sizeof *ptrs; q++)
				free(ptrs[q]);
			nn_ctx_free(&c);
		}
}

static void test_embedding_norms(void **st)
{
	(void)st;
	for (int b = 0; b < 2; b++) {
		nn_ctx c;
		nn_ctx_init(&c, backends[b], 2);
		const jnode *o = json_member(R, "embedding", 9);
		int N = iv(o, "N"), C = iv(o, "C"), V = iv(o, "V");
		uint32_t ids[16];
		int q = 0;
		for (const jnode *v = json_member(o, "ids", 3)->kid; v; v = v->next)
			ids[q++] = (uint32_t)atoi(v->s);
		float *t = arr(o, "table", NULL), *y = arr(o, "y", NULL), *dy = arr(o, "dy", NULL), *dt = arr(o, "dtable", NULL);
		float *gy = xcalloc((size_t)N * C, 4), *gdt = xcalloc((size_t)V * C, 4);
		embedding_forward(&c, gy, ids, t, N, C, V, 0);
		near(gy, y, (size_t)N * C, 1e-6, "embedding");
		embedding_backward(&c, gdt, ids, dy, N, C, V);
		near(gdt, dt, (size_t)V * C, 1e-6, "embedding dtable");
		free(t), free(y), free(dy), free(dt), free(gy), free(gdt);

		o = json_member(R, "layernorm", 9);
		N = iv(o, "N"), C = iv(o, "C");
		float *x = arr(o, "x", NULL), *w = arr(o, "w", NULL), *bb = arr(o, "b", NULL);
		y = arr(o, "y", NULL), dy = arr(o, "dy", NULL);
		float *dx = arr(o, "dx", NULL), *dw = arr(o, "dw", NULL), *db = arr(o, "db", NULL);
		float *mean = xcalloc((size_t)N, 4), *rstd = xcalloc((size_t)N, 4), *gdx = xcalloc((size_t)N * C, 4),
		      *gdw = xcalloc((size_t)C, 4), *gdb = xcalloc((size_t)C, 4);
		gy = xcalloc((size_t)N * C, 4);
		layernorm_forward(&c, gy, mean, rstd, x, w, bb, N, C, 1e-5f);
		near(gy, y, (size_t)N * C, 1e-5, "layernorm");
		layernorm_backward(&c, gdx, gdw, gdb, dy, x, w, mean, rstd, N, C);
		near(gdx, dx, (size_t)N * C, 1e-4, "layernorm dx");
		near(gdw, dw, (size_t)C, 1e-5, "layernorm dw");
		near(gdb, db, (size_t)C, 1e-5, "layernorm db");
		free(x), free(w), free(bb), free(y), free(dy), free(dx), free(dw), free(db), free(gy), free(gdx), free(gdw), free(gdb);

		o = json_member(R, "rmsnorm", 7);
		x = arr(o, "x", NULL), w = arr(o, "w", NULL), y = arr(o, "y", NULL), dy = arr(o, "dy", NULL);
		dx = arr(o, "dx", NULL), dw = arr(o, "dw", NULL);
		gy = xcalloc((size_t)N * C, 4), gdx = xcalloc((size_t)N * C, 4), gdw = xcalloc((size_t)C, 4);
		rmsnorm_forward(&c, gy, rstd, x, w, N, C, 1e-6f);
		near(gy, y, (size_t)N * C, 1e-5, "rmsnorm");
		rmsnorm_backward(&c, gdx, gdw, dy, x, w, rstd, N, C);
		near(gdx, dx, (size_t)N * C, 1e-4, "rmsnorm dx");
		near(gdw, dw, (size_t)C, 1e-5, "rmsnorm dw");
		free(x), free(w), free(y), free(dy), free(dx), free(dw), free(gy), free(gdx), free(gdw), free(mean), free(rstd);
		nn_ctx_free(&c);
	}
}

static void test_attention(void **st)
{
	(void)st;
	const char *cases[2] = {"attention_causal", "attention_masked"};
	for (int b = 0; b < 2; b++)
		for (int k = 0; k < 2; k++) {
			nn_ctx c;
			nn_ctx_init(&c, backends[b], 2);
			const jnode *o = json_member(R, cases[k], strlen(cases[k]));
			int B = iv(o, "B"), T = iv(o, "T"), C = iv(o, "C"), H = iv(o, "H");
			uint8_t mask[64];
			const jnode *mj = json_member(o, "mask", 4);
			int q = 0;
			for (const jnode *v = mj && mj->t == J_ARR ? mj->kid : NULL; v; v = v->next)
				mask[q++] = v->s[0] == '1';
			const uint8_t *mk = q ? mask : NULL;
			float *qkv = arr(o, "qkv", NULL), *y = arr(o, "y", NULL), *dy = arr(o, "dy", NULL), *dq = arr(o, "dqkv", NULL);
			float *gy = xcalloc((size_t)B * T * C, 4), *gdq = xcalloc((size_t)B * T * 3 * C, 4);
			attention_forward(&c, gy, qkv, mk, B, T, C, H, k == 0);
			near(gy, y, (size_t)B * T * C, 1e-5, cases[k]);
			attention_backward(&c, gdq, dy, qkv, mk, B, T, C, H, k == 0);
			near(gdq, dq, (size_t)B * T * 3 * C, 1e-4, "attention dqkv");
			if (k == 0) {
				/* decoding the last position against its cache: the same row */
				float yd[64];
				const float *last = qkv + (size_t)(T - 1) * 3 * C;
				attention_decode(&c, yd, last, qkv + C, qkv + 2 * C, 3 * C, T, C, H);
				near(yd, y + (size_t)(T - 1) * C, (size_t)C, 1e-5, "attention_decode");
			}
			free(qkv), free(y), free(dy), free(dq), free(gy), free(gdq);
			nn_ctx_free(&c);
		}
}

static void test_elementwise_losses(void **st)
{
	(void)st;
	const char *ew[3] = {"gelu_tanh", "gelu_erf", "tanh"};
	for (int b = 0; b < 2; b++) {
		nn_ctx c;
		nn_ctx_init(&c, backends[b], 2);
		for (int k = 0; k < 3; k++) {
			const jnode *o = json_member(R, ew[k], strlen(ew[k]));
			size_t n;
			float *x = arr(o, "x", &n), *y = arr(o, "y", NULL), *dy = arr(o, "dy", NULL), *dx = arr(o, "dx", NULL);
			float *gy = xcalloc(n, 4), *gdx = xcalloc(n, 4);
			if (k < 2) {
				gelu_forward(&c, gy, x, n, k);
				gelu_backward(&c, gdx, dy, x, n, k);
			} else {
				tanh_forward(&c, gy, x, n);
				tanh_backward(&c, gdx, dy, gy, n);
			}
			near(gy, y, n, 1e-5, ew[k]);
			near(gdx, dx, n, 1e-4, ew[k]);
			free(x), free(y), free(dy), free(dx), free(gy), free(gdx);
		}
		const jnode *o = json_member(R, "softmax_crossentropy", 20);
		int N = iv(o, "N"), V = iv(o, "V");
		int32_t tg[16];
		int q = 0;
		for (const jnode *v = json_member(o, "targets", 7)->kid; v; v = v->next)
			tg[q++] = (int32_t)strtol(v->s, NULL, 10);
		float *z = arr(o, "logits", NULL), *dz = arr(o, "dlogits", NULL), *gdz = xcalloc((size_t)N * V, 4);
		double loss, cnt, want;
		json_number(json_member(o, "loss", 4), &want);
		loss = softmax_crossentropy(&c, gdz, z, tg, N, V, &cnt);
		assert_true(fabs(loss - want) < 1e-5 * want);
		assert_true(cnt == 4);
		near(gdz, dz, (size_t)N * V, 1e-5, "softmax_crossentropy dlogits");
		assert_true(fabs(softmax_crossentropy(&c, NULL, z, tg, N, V, NULL) - want) < 1e-5 * want);
		free(z), free(dz), free(gdz);

		o = json_member(R, "bce_logits", 10);
		size_t n;
		z = arr(o, "logits", &n), dz = arr(o, "dlogits", NULL);
		float *lab = arr(o, "labels", NULL);
		gdz = xcalloc(n, 4);
		json_number(json_member(o, "loss", 4), &want);
		loss = bce_logits(&c, gdz, z, lab, NULL, n, &cnt);
		assert_true(fabs(loss - want) < 1e-5 * want);
		near(gdz, dz, n, 1e-5, "bce dlogits");
		free(z), free(dz), free(lab), free(gdz);

		o = json_member(R, "mse", 3);
		float *p = arr(o, "pred", &n), *t = arr(o, "target", NULL), *dp = arr(o, "dpred", NULL), *gdp = xcalloc(n, 4);
		json_number(json_member(o, "loss", 4), &want);
		loss = mse_loss(&c, gdp, p, t, NULL, n, &cnt);
		assert_true(fabs(loss - want) < 1e-5 * want);
		near(gdp, dp, n, 1e-5, "mse dpred");
		free(p), free(t), free(dp), free(gdp);
		nn_ctx_free(&c);
	}
}

static uint64_t rs = 12345;
static float rnd(void)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rs >> 11) / 9007199254740992.0 * 2 - 1);
}

static float *randv(size_t n, float s)
{
	float *v = xmalloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = s * rnd();
	return v;
}

/* The CPU backend against the reference on shapes large enough for its
 * threads and BLAS blocking, with 1 and 3 threads giving the same bits. */
static void test_cpu_vs_ref(void **st)
{
	(void)st;
	int B = 3, T = 37, C = 48, H = 4, N = B * T;
	float *qkv = randv((size_t)N * 3 * C, 1.5f), *dy = randv((size_t)N * C, 1.0f);
	uint8_t *mask = xcalloc((size_t)N, 1);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			mask[b * T + t] = t < T - 7 * b;
	nn_ctx cp, c1, rf;
	nn_ctx_init(&cp, &nn_cpu, 3);
	nn_ctx_init(&c1, &nn_cpu, 1);
	nn_ctx_init(&rf, &nn_ref, 1);
	for (int causal = 0; causal < 2; causal++)
		for (int m = 0; m < 2; m++) {
			const uint8_t *mk = m ? mask : NULL;
			float *y1 = xcalloc((size_t)N * C, 4), *y2 = xcalloc((size_t)N * C, 4), *y3 = xcalloc((size_t)N * C, 4);
			float *d1 = xcalloc((size_t)N * 3 * C, 4), *d2 = xcalloc((size_t)N * 3 * C, 4), *d3 = xcalloc((size_t)N * 3 * C, 4);
			attention_forward(&cp, y1, qkv, mk, B, T, C, H, causal);
			attention_forward(&c1, y2, qkv, mk, B, T, C, H, causal);
			attention_forward(&rf, y3, qkv, mk, B, T, C, H, causal);
			assert_memory_equal(y1, y2, (size_t)N * C * 4);
			near(y1, y3, (size_t)N * C, 1e-5, "attention cpu vs ref");
			attention_backward(&cp, d1, dy, qkv, mk, B, T, C, H, causal);
			attention_backward(&c1, d2, dy, qkv, mk, B, T, C, H, causal);
			attention_backward(&rf, d3, dy, qkv, mk, B, T, C, H, causal);
			assert_memory_equal(d1, d2, (size_t)N * 3 * C * 4);
			near(d1, d3, (size_t)N * 3 * C, 1e-4, "attention backward cpu vs ref");
			free(y1), free(y2), free(y3), free(d1), free(d2), free(d3);
		}
	/* linear over a product big enough for the threaded split */
	int in = 96, out = 130;
	float *x = randv((size_t)N * in, 1), *w = randv((size_t)in * out, 0.3f), *b = randv((size_t)out, 1);
	float *g = randv((size_t)N * out, 1);
	for (int lay = 0; lay < 2; lay++) {
		float *y1 = xcalloc((size_t)N * out, 4), *y3 = xcalloc((size_t)N * out, 4);
		float *dx1 = xcalloc((size_t)N * in, 4), *dx3 = xcalloc((size_t)N * in, 4);
		float *dw1 = xcalloc((size_t)in * out, 4), *dw3 = xcalloc((size_t)in * out, 4);
		float *db1 = xcalloc((size_t)out, 4), *db3 = xcalloc((size_t)out, 4);
		linear_forward(&cp, y1, x, w, b, N, in, out, lay, 0);
		linear_forward(&rf, y3, x, w, b, N, in, out, lay, 0);
		near(y1, y3, (size_t)N * out, 1e-4, "linear cpu vs ref");
		linear_backward(&cp, dx1, dw1, db1, g, x, w, N, in, out, lay);
		linear_backward(&rf, dx3, dw3, db3, g, x, w, N, in, out, lay);
		near(dx1, dx3, (size_t)N * in, 1e-4, "linear dx cpu vs ref");
		near(dw1, dw3, (size_t)in * out, 1e-4, "linear dw cpu vs ref");
		near(db1, db3, (size_t)out, 1e-5, "linear db cpu vs ref");
		free(y1), free(y3), free(dx1), free(dx3), free(dw1), free(dw3), free(db1), free(db3);
	}
	free(x), free(w), free(b), free(g), free(qkv), free(dy), free(mask);
	nn_ctx_free(&cp);
	nn_ctx_free(&c1);
	nn_ctx_free(&rf);
}

/* The fused attention kernel (engine/nn/cpu/attn.c, where the machine has
 * it) against the reference and the sgemm path, on odd lengths (1, 7, 130:
 * partial register tiles and vectors), head sizes 32, 64 and 24 (not a
 * multiple of 8), causal or not, without a mask, with padding prefixes
 * (one of length 1) and with a mask that has holes and a row that sees no
 * key; backward adding into a gradient that is not zero; 1 and 3 threads
 * giving the same bits. */
static void test_attention_fused(void **st)
{
	(void)st;
	if (!cpu_attn_fused())
		skip();
	const int Ts[3] = {1, 7, 130}, hds[3] = {32, 64, 24};
	nn_ctx c3, c1, rf;
	nn_ctx_init(&c3, &nn_cpu, 3);
	nn_ctx_init(&c1, &nn_cpu, 1);
	nn_ctx_init(&rf, &nn_ref, 1);
	for (int ti = 0; ti < 3; ti++)
		for (int hi = 0; hi < 3; hi++) {
			int B = 3, T = Ts[ti], H = hi == 1 ? 2 : 3, C = H * hds[hi], N = B * T;
			float *qkv = randv((size_t)N * 3 * C, 1.0f), *dy = randv((size_t)N * C, 1.0f);
			float *d0 = randv((size_t)N * 3 * C, 0.5f);
			uint8_t *pad = xcalloc((size_t)N, 1), *holes = xcalloc((size_t)N, 1);
			for (int b = 0; b < B; b++)
				for (int t = 0; t < T; t++) {
					int len = b == 0 ? T : b == 1 ? 1 : (T + 1) / 2;
					pad[b * T + t] = t < len;
					/* row 0 sees no key when causal; sequence 2 sees none at all */
					holes[b * T + t] = b == 2 ? 0 : (t % 3 == 1 || (b == 1 && t == T - 1));
				}
			const uint8_t *masks[3] = {NULL, pad, holes};
			for (int causal = 0; causal < 2; causal++)
				for (int mk = 0; mk < 3; mk++) {
					float *y1 = xcalloc((size_t)N * C, 4), *y3 = xcalloc((size_t)N * C, 4), *yr = xcalloc((size_t)N * C, 4);
					float *ys = xcalloc((size_t)N * C, 4);
					size_t nd = (size_t)N * 3 * C;
					float *g1 = xmalloc(nd * 4), *g3 = xmalloc(nd * 4), *gr = xmalloc(nd * 4), *gs = xmalloc(nd * 4);
					memcpy(g1, d0, nd * 4), memcpy(g3, d0, nd * 4), memcpy(gr, d0, nd * 4), memcpy(gs, d0, nd * 4);
					attention_forward(&c1, y1, qkv, masks[mk], B, T, C, H, causal);
					attention_forward(&c3, y3, qkv, masks[mk], B, T, C, H, causal);
					attention_forward(&rf, yr, qkv, masks[mk], B, T, C, H, causal);
					attention_backward(&c1, g1, dy, qkv, masks[mk], B, T, C, H, causal);
					attention_backward(&c3, g3, dy, qkv, masks[mk], B, T, C, H, causal);
					attention_backward(&rf, gr, dy, qkv, masks[mk], B, T, C, H, causal);
					nn_cpu_attention_fused(0);
					attention_forward(&c3, ys, qkv, masks[mk], B, T, C, H, causal);
					attention_backward(&c3, gs, dy, qkv, masks[mk], B, T, C, H, causal);
					nn_cpu_attention_fused(1);
					assert_memory_equal(y1, y3, (size_t)N * C * 4);
					assert_memory_equal(g1, g3, nd * 4);
					/* outputs are means of up to 130 values: float sums of that many
					 * are within 1e-4 of the double ones on this scale */
					near(y1, yr, (size_t)N * C, 1e-4, "fused attention vs ref");
					near(g1, gr, nd, 1e-4, "fused attention backward vs ref");
					near(y1, ys, (size_t)N * C, 1e-4, "fused attention vs sgemm path");
					near(g1, gs, nd, 1e-4, "fused attention backward vs sgemm path");
					free(y1), free(y3), free(yr), free(ys), free(g1), free(g3), free(gr), free(gs);
				}
			free(qkv), free(dy), free(d0), free(pad), free(holes);
		}
	nn_ctx_free(&c3);
	nn_ctx_free(&c1);
	nn_ctx_free(&rf);
}

/* Finite differences of L = Σ r ⊙ f(x) against backward(dy = r), for the
 * layers whose backward is not otherwise held to PyTorch: dropout (its own
 * mask) and attention with a query that sees no key at all. */
static void test_finite_differences(void **st)
{
	(void)st;
	nn_ctx c;
	nn_ctx_init(&c, &nn_ref, 1);
	size_t n = 400;
	float *x = randv(n, 1), *r = randv(n, 1), *y = xcalloc(n, 4), *dx = xcalloc(n, 4);
	uint64_t seed = 99;
	dropout_forward(&c, y, x, n, 0.25f, seed, 3);
	size_t zeros = 0;
	for (size_t i = 0; i < n; i++)
		zeros += y[i] == 0;
	assert_true(zeros > n / 8 && zeros < n * 3 / 8); /* about a quarter dropped */
	dropout_backward(&c, dx, r, n, 0.25f, seed, 3);
	for (size_t i = 0; i < n; i++) {
		float keep = nn_dropout_keep(seed, 3, i, 0.25f);
		assert_true(keep == 0 || fabsf(keep - 1 / 0.75f) < 1e-6f);
		assert_true(fabsf(y[i] - x[i] * keep) < 1e-7f);
		assert_true(fabsf(dx[i] - r[i] * keep) < 1e-7f); /* d/dx Σ r·x·keep */
	}
	/* the same seed and stream, the same mask; another stream, another */
	float *y2 = xcalloc(n, 4);
	dropout_forward(&c, y2, x, n, 0.25f, seed, 3);
	assert_memory_equal(y, y2, n * 4);
	dropout_forward(&c, y2, x, n, 0.25f, seed, 4);
	assert_memory_not_equal(y, y2, n * 4);
	free(x), free(r), free(y), free(dx), free(y2);

	/* attention: a padding row masks every key of row 1 */
	int B = 2, T = 4, C = 4, H = 2, N = B * T;
	uint8_t mask[8] = {1, 1, 1, 0, 0, 0, 0, 0};
	float *qkv = randv((size_t)N * 3 * C, 1), *rr = randv((size_t)N * C, 1), *g = xcalloc((size_t)N * 3 * C, 4);
	float *o = xcalloc((size_t)N * C, 4);
	nn_ctx cp;
	nn_ctx_init(&cp, &nn_cpu, 2);
	attention_backward(&cp, g, rr, qkv, mask, B, T, C, H, 0);
	for (int i = 0; i < N * 3 * C; i++) {
		double L[2];
		float keep = qkv[i];
		for (int s = 0; s < 2; s++) {
			qkv[i] = keep + (s ? -1e-2f : 1e-2f);
			attention_forward(&c, o, qkv, mask, B, T, C, H, 0);
			L[s] = 0;
			for (int k = 0; k < N * C; k++)
				L[s] += (double)rr[k] * o[k];
		}
		qkv[i] = keep;
		double fd = (L[0] - L[1]) / 2e-2;
		if (fabs(fd - g[i]) > 2e-3 + 2e-2 * fabs(fd))
			fail_msg("attention d qkv[%d]: backward %.6g, finite difference %.6g", i, g[i], fd);
	}
	free(qkv), free(rr), free(g), free(o);
	nn_ctx_free(&cp);
	nn_ctx_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linear),
		cmocka_unit_test(test_embedding_norms),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_elementwise_losses),
		cmocka_unit_test(test_cpu_vs_ref),
		cmocka_unit_test(test_attention_fused),
		cmocka_unit_test(test_finite_differences),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
