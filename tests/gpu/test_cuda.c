/*
 * test_cuda — the CUDA backend against the CPU backend (make test-gpu; needs
 * a GPU and build/libhone-cuda.so). Every layer on random inputs, forward
 * and backward, in fp32: agreement within 1e-5 of the largest value
 * (normwise) unless a test says otherwise; then a whole GPT-2's logits, loss
 * and gradients against the CPU's, and two training runs with the same seed
 * giving the same bits. Prints "ok"/"not ok" lines and "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/blas.h"
#include "models/bert.h"
#include "models/gpt2.h"
#include "models/llama.h"
#include "nn/nn.h"
#include "util.h"

static int npass, nfail;
static const nn_ops *GPU;
static nn_ctx gc, cc; /* the GPU's context, the CPU's */

static void check(int ok, const char *name, double err, double tol)
{
	if (ok)
		npass++;
	else
		nfail++;
	printf("%s - %s (err %.3g, tol %.3g)\n", ok ? "ok" : "not ok", name, err, tol);
}

static uint64_t rs = 12345;
static float frand(void)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rs >> 11) / 9007199254740992.0 * 2 - 1);
}
static float *rnd(size_t n, float scale)
{
	float *x = xmalloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = frand() * scale;
	return x;
}
static void *up(const void *h, size_t bytes)
{
	void *d = nn_alloc(&gc, bytes);
	nn_upload(&gc, d, h, bytes);
	return d;
}
static float *down(const float *d, size_t n)
{
	float *h = xmalloc(n * sizeof *h);
	nn_download(&gc, h, d, n * sizeof *h);
	return h;
}
/* max |a - b| / max |b| */
static double nerr(const float *a, const float *b, size_t n)
{
	double m = 0, d = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs((double)b[i]));
		d = fmax(d, fabs((double)a[i] - b[i]));
		if (isnan(a[i]) != isnan(b[i]))
			return INFINITY;
	}
	return m > 0 ? d / m : d;
}
/* the device array d against the host array h */
static void same(const char *name, const float *d, const float *h, size_t n, double tol)
{
	float *g = down(d, n);
	double e = nerr(g, h, n);
	check(e <= tol, name, e, tol);
	free(g);
}

static void test_matmul(void)
{
	int m = 37, n = 53, k = 29;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
			size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
			float *a = rnd(na, 1), *b = rnd(nb, 1), *c0 = rnd(nc, 1);
			float *da = up(a, na * 4), *db = up(b, nb * 4), *dc = up(c0, nc * 4);
			matmul(&cc, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c0, ldc);
			matmul(&gc, ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.3f, dc, ldc);
			char nm[64];
			snprintf(nm, sizeof nm, "matmul ta=%d tb=%d", ta, tb);
			same(nm, dc, c0, nc, 1e-5);
			free(a), free(b), free(c0);
			nn_free(&gc, da), nn_free(&gc, db), nn_free(&gc, dc);
		}
}

/* bf16 products: within bf16's rounding of the fp32 ones */
static void test_bf16(void)
{
	for (int t = 0; t < 4; t++) {
		/* aligned, then every size odd (padded to the tensor cores' 8 inside) */
		int m = t < 2 ? 304 : 301, n = t < 2 ? 256 : 259, k = t < 2 ? 384 : 37;
		float *a = rnd((size_t)m * k, 1), *b = rnd((size_t)k * n, 1), *c0 = xcalloc((size_t)m * n, 4);
		float *da = up(a, (size_t)m * k * 4), *db = up(b, (size_t)k * n * 4), *dc = nn_alloc(&gc, (size_t)m * n * 4);
		int tb = t % 2;
		for (size_t i = 0; i < (size_t)m * n; i++)
			c0[i] = 0.25f;
		nn_upload(&gc, dc, c0, (size_t)m * n * 4);
		matmul(&cc, 0, tb, m, n, k, 1.0f, a, k, b, tb ? k : n, 0.5f, c0, n);
		gc.precision = NN_BF16;
		matmul(&gc, 0, tb, m, n, k, 1.0f, da, k, db, tb ? k : n, 0.5f, dc, n);
		gc.precision = NN_FP32;
		char nm[64];
		snprintf(nm, sizeof nm, "bf16 matmul %d×%d×%d%s, beta 0.5", m, n, k, tb ? ", B transposed" : "");
		same(nm, dc, c0, (size_t)m * n, 1e-2);
		free(a), free(b), free(c0);
		nn_free(&gc, da), nn_free(&gc, db), nn_free(&gc, dc);
	}
}

static void test_linear(void)
{
	int N = 70, in = 48, out = 40;
	for (int lay = 0; lay < 2; lay++) {
		float *x = rnd((size_t)N * in, 1), *w = rnd((size_t)in * out, 0.3f), *b = rnd((size_t)out, 1),
		      *y = rnd((size_t)N * out, 1), *dy = rnd((size_t)N * out, 1), *dx = rnd((size_t)N * in, 1),
		      *dw = rnd((size_t)in * out, 1), *db = rnd((size_t)out, 1);
		float *gx = up(x, (size_t)N * in * 4), *gw = up(w, (size_t)in * out * 4), *gb = up(b, (size_t)out * 4),
		      *gy = up(y, (size_t)N * out * 4), *gdy = up(dy, (size_t)N * out * 4), *gdx = up(dx, (size_t)N * in * 4),
		      *gdw = up(dw, (size_t)in * out * 4), *gdb = up(db, (size_t)out * 4);
		linear_forward(&cc, y, x, w, b, N, in, out, lay, 1);
		linear_forward(&gc, gy, gx, gw, gb, N, in, out, lay, 1);
		same(lay ? "linear forward [out,in] acc" : "linear forward [in,out] acc", gy, y, (size_t)N * out, 1e-5);
		linear_forward(&cc, y, x, w, NULL, N, in, out, lay, 0);
		linear_forward(&gc, gy, gx, gw, NULL, N, in, out, lay, 0);
		same("linear forward, no bias", gy, y, (size_t)N * out, 1e-5);
		linear_backward(&cc, dx, dw, db, dy, x, w, N, in, out, lay);
		linear_backward(&gc, gdx, gdw, gdb, gdy, gx, gw, N, in, out, lay);
		same("linear dx (added)", gdx, dx, (size_t)N * in, 1e-5);
		same("linear dw (added)", gdw, dw, (size_t)in * out, 1e-5);
		same("linear db (added)", gdb, db, (size_t)out, 1e-5);
		float *h[] = {x, w, b, y, dy, dx, dw, db}, *d[] = {gx, gw, gb, gy, gdy, gdx, gdw, gdb};
		for (int i = 0; i < 8; i++)
			free(h[i]), nn_free(&gc, d[i]);
	}
}

static void test_embedding(void)
{
	int N = 300, C = 40, V = 50;
	uint32_t ids[300];
	for (int i = 0; i < N; i++)
		ids[i] = (uint32_t)(i % 7 == 0 ? 3 : i % 11 == 0 ? V + 5 : (i * 13) % V); /* repeats, out of range */
	float *t = rnd((size_t)V * C, 1), *y = rnd((size_t)N * C, 1), *dy = rnd((size_t)N * C, 1), *dt = rnd((size_t)V * C, 1);
	uint32_t *gid = up(ids, sizeof ids);
	float *gt = up(t, (size_t)V * C * 4), *gy = up(y, (size_t)N * C * 4), *gdy = up(dy, (size_t)N * C * 4),
	      *gdt = up(dt, (size_t)V * C * 4);
	embedding_forward(&cc, y, ids, t, N, C, V, 1);
	embedding_forward(&gc, gy, gid, gt, N, C, V, 1);
	same("embedding forward acc", gy, y, (size_t)N * C, 0);
	embedding_backward(&cc, dt, ids, dy, N, C, V);
	embedding_backward(&gc, gdt, gid, gdy, N, C, V);
	same("embedding backward (rows in order: the CPU's bits)", gdt, dt, (size_t)V * C, 0);
	free(t), free(y), free(dy), free(dt);
	nn_free(&gc, gid), nn_free(&gc, gt), nn_free(&gc, gy), nn_free(&gc, gdy), nn_free(&gc, gdt);
}

static void test_norms(void)
{
	int sizes[][2] = {{100, 77}, {300, 768}};
	for (int q = 0; q < 2; q++) {
		int N = sizes[q][0], C = sizes[q][1];
		size_t NC = (size_t)N * C;
		float *x = rnd(NC, 2), *w = rnd((size_t)C, 1), *b = rnd((size_t)C, 1), *y = xcalloc(NC, 4), *mean = xcalloc((size_t)N, 4),
		      *rstd = xcalloc((size_t)N, 4), *dy = rnd(NC, 1), *dx = rnd(NC, 1), *dw = rnd((size_t)C, 1), *db = rnd((size_t)C, 1);
		for (int k = 0; k < C; k++)
			x[k] += 3; /* a row off centre */
		float *gx = up(x, NC * 4), *gw = up(w, (size_t)C * 4), *gb = up(b, (size_t)C * 4), *gy = nn_alloc(&gc, NC * 4),
		      *gm = nn_alloc(&gc, (size_t)N * 4), *gr = nn_alloc(&gc, (size_t)N * 4), *gdy = up(dy, NC * 4),
		      *gdx = up(dx, NC * 4), *gdw = up(dw, (size_t)C * 4), *gdb = up(db, (size_t)C * 4);
		layernorm_forward(&cc, y, mean, rstd, x, w, b, N, C, 1e-5f);
		layernorm_forward(&gc, gy, gm, gr, gx, gw, gb, N, C, 1e-5f);
		same("layernorm forward", gy, y, NC, 1e-5);
		same("layernorm mean", gm, mean, (size_t)N, 1e-5);
		same("layernorm rstd", gr, rstd, (size_t)N, 1e-5);
		layernorm_backward(&cc, dx, dw, db, dy, x, w, mean, rstd, N, C);
		layernorm_backward(&gc, gdx, gdw, gdb, gdy, gx, gw, gm, gr, N, C);
		same("layernorm dx", gdx, dx, NC, 1e-5);
		same("layernorm dw", gdw, dw, (size_t)C, 1e-5);
		same("layernorm db", gdb, db, (size_t)C, 1e-5);
		rmsnorm_forward(&cc, y, rstd, x, w, N, C, 1e-6f);
		rmsnorm_forward(&gc, gy, gr, gx, gw, N, C, 1e-6f);
		same("rmsnorm forward", gy, y, NC, 1e-5);
		rmsnorm_backward(&cc, dx, dw, dy, x, w, rstd, N, C);
		rmsnorm_backward(&gc, gdx, gdw, gdy, gx, gw, gr, N, C);
		same("rmsnorm dx", gdx, dx, NC, 1e-5);
		same("rmsnorm dw", gdw, dw, (size_t)C, 1e-5);
		float *h[] = {x, w, b, y, mean, rstd, dy, dx, dw, db}, *d[] = {gx, gw, gb, gy, gm, gr, gdy, gdx, gdw, gdb};
		for (int i = 0; i < 10; i++)
			free(h[i]), nn_free(&gc, d[i]);
	}
}

static void test_attention(void)
{
	int shapes[][4] = {{2, 37, 64, 4}, {3, 128, 96, 2}, {1, 1, 32, 2}}; /* B T C H */
	for (int s = 0; s < 3; s++)
		for (int kind = 0; kind < 2; kind++) {
			int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], H = shapes[s][3], causal = kind == 0;
			size_t NC = (size_t)B * T * C;
			float *qkv = rnd(3 * NC, 1), *y = xcalloc(NC, 4), *dy = rnd(NC, 1), *dq = rnd(3 * NC, 1);
			uint8_t *mask = NULL, *gmask = NULL;
			if (!causal) {
				mask = xmalloc((size_t)B * T);
				for (int i = 0; i < B * T; i++)
					mask[i] = (i % T) < T - (i / T) * 5; /* padding at the end of later rows */
				if (B > 2)
					memset(mask + 2 * T, 0, (size_t)T); /* a row with every key masked */
				gmask = up(mask, (size_t)B * T);
			}
			float *gq = up(qkv, 3 * NC * 4), *gy = nn_alloc(&gc, NC * 4), *gdy = up(dy, NC * 4), *gdq = up(dq, 3 * NC * 4);
			attention_forward(&cc, y, qkv, mask, B, T, C, H, causal);
			attention_forward(&gc, gy, gq, gmask, B, T, C, H, causal);
			char nm[96];
			snprintf(nm, sizeof nm, "attention forward %s B%d T%d C%d H%d", causal ? "causal" : "masked", B, T, C, H);
			same(nm, gy, y, NC, 1e-5);
			attention_backward(&cc, dq, dy, qkv, mask, B, T, C, H, causal);
			attention_backward(&gc, gdq, gdy, gq, gmask, B, T, C, H, causal);
			snprintf(nm, sizeof nm, "attention backward %s B%d T%d C%d H%d", causal ? "causal" : "masked", B, T, C, H);
			same(nm, gdq, dq, 3 * NC, 1e-5);
			if (causal) {
				float *yd = xmalloc((size_t)C * 4), *gyd = nn_alloc(&gc, (size_t)C * 4);
				const float *last = qkv + (size_t)(T - 1) * 3 * C;
				attention_decode(&cc, yd, last, qkv + C, qkv + 2 * C, 3 * C, T, C, H);
				attention_decode(&gc, gyd, gq + (size_t)(T - 1) * 3 * C, gq + C, gq + 2 * C, 3 * C, T, C, H);
				same("attention decode", gyd, yd, (size_t)C, 1e-5);
				free(yd);
				nn_free(&gc, gyd);
			}
			/* the same call twice from zero: the same bits */
			float *dq1 = xcalloc(3 * NC, 4), *t1, *t2;
			nn_upload(&gc, gdq, dq1, 3 * NC * 4);
			attention_backward(&gc, gdq, gdy, gq, gmask, B, T, C, H, causal);
			t1 = down(gdq, 3 * NC);
			nn_upload(&gc, gdq, dq1, 3 * NC * 4);
			attention_backward(&gc, gdq, gdy, gq, gmask, B, T, C, H, causal);
			t2 = down(gdq, 3 * NC);
			check(!memcmp(t1, t2, 3 * NC * 4), "attention backward twice: identical bits", 0, 0);
			free(dq1), free(t1), free(t2);
			free(qkv), free(y), free(dy), free(dq), free(mask);
			nn_free(&gc, gq), nn_free(&gc, gy), nn_free(&gc, gdy), nn_free(&gc, gdq);
			if (gmask)
				nn_free(&gc, gmask);
		}
}

/* The fused bf16 attention (precision NN_BF16) against the CPU's fp32:
 * head sizes 32, 64, 128, lengths off the 64-row tile, causal and with a
 * padding mask (one row with every key masked), forward and backward. */
static void test_flash(void)
{
	int shapes[][4] = {{3, 37, 64, 2}, {3, 200, 256, 4}, {2, 130, 256, 2}, {2, 64, 192, 3}}; /* B T C H */
	for (int s = 0; s < 4; s++)
		for (int kind = 0; kind < 2; kind++) {
			int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], H = shapes[s][3], causal = kind == 0;
			size_t NC = (size_t)B * T * C;
			float *qkv = rnd(3 * NC, 1), *y = xcalloc(NC, 4), *dy = rnd(NC, 1), *dq = xcalloc(3 * NC, 4);
			uint8_t *mask = xmalloc((size_t)B * T), *gmask;
			for (int i = 0; i < B * T; i++)
				mask[i] = (i % T) < T - (i / T) * 7;
			if (B > 2)
				memset(mask + 2 * T, 0, (size_t)T);
			if (causal)
				for (int i = 0; i < T; i++)
					mask[i] = i >= 3; /* causal and padded at the start: the first rows see nothing */
			gmask = up(mask, (size_t)B * T);
			float *gq = up(qkv, 3 * NC * 4), *gy = nn_alloc(&gc, NC * 4), *gdy = up(dy, NC * 4),
			      *gdq = nn_alloc(&gc, 3 * NC * 4), *glse = nn_alloc(&gc, (size_t)B * H * T * 4);
			attention_forward(&cc, y, qkv, mask, B, T, C, H, causal);
			attention_backward(&cc, dq, dy, qkv, mask, B, T, C, H, causal);
			gc.precision = NN_BF16;
			attention_forward_keep(&gc, gy, glse, gq, gmask, B, T, C, H, causal);
			attention_backward_keep(&gc, gdq, gdy, gq, gy, glse, gmask, B, T, C, H, causal);
			char nm[128];
			snprintf(nm, sizeof nm, "flash attention bf16 forward %s B%d T%d D%d", causal ? "causal" : "masked", B, T, C / H);
			same(nm, gy, y, NC, 2e-2);
			snprintf(nm, sizeof nm, "flash attention bf16 backward %s B%d T%d D%d", causal ? "causal" : "masked", B, T, C / H);
			same(nm, gdq, dq, 3 * NC, 3e-2);
			float *t1 = down(gdq, 3 * NC); /* added into zeros once */
			nn_zero(&gc, gdq, 3 * NC * 4);
			attention_backward_keep(&gc, gdq, gdy, gq, gy, glse, gmask, B, T, C, H, causal);
			gc.precision = NN_FP32;
			float *t2 = down(gdq, 3 * NC);
			check(!memcmp(t1, t2, 3 * NC * 4), "flash attention backward twice: identical bits", 0, 0);
			free(t1), free(t2), free(qkv), free(y), free(dy), free(dq), free(mask);
			nn_free(&gc, gq), nn_free(&gc, gy), nn_free(&gc, gdy), nn_free(&gc, gdq), nn_free(&gc, glse), nn_free(&gc, gmask);
		}
}

static void test_pointwise(void)
{
	size_t n = 100003;
	float *x = rnd(n, 4), *dy = rnd(n, 1), *y = xmalloc(n * 4), *dx = rnd(n, 1);
	float *gx = up(x, n * 4), *gdy = up(dy, n * 4), *gy = nn_alloc(&gc, n * 4), *gdx = up(dx, n * 4);
	for (int kind = 0; kind < 2; kind++) {
		gelu_forward(&cc, y, x, n, kind);
		gelu_forward(&gc, gy, gx, n, kind);
		same(kind ? "gelu erf forward" : "gelu tanh forward", gy, y, n, 1e-5);
		gelu_backward(&cc, dx, dy, x, n, kind);
		gelu_backward(&gc, gdx, gdy, gx, n, kind);
		same(kind ? "gelu erf backward" : "gelu tanh backward", gdx, dx, n, 1e-5);
	}
	tanh_forward(&cc, y, x, n);
	tanh_forward(&gc, gy, gx, n);
	same("tanh forward", gy, y, n, 1e-5);
	tanh_backward(&cc, dx, dy, y, n);
	tanh_backward(&gc, gdx, gdy, gy, n);
	same("tanh backward", gdx, dx, n, 1e-5);
	dropout_forward(&cc, y, x, n, 0.3f, 77, 5);
	dropout_forward(&gc, gy, gx, n, 0.3f, 77, 5);
	same("dropout forward: the CPU's mask", gy, y, n, 0);
	dropout_backward(&cc, dx, dy, n, 0.3f, 77, 5);
	dropout_backward(&gc, gdx, gdy, n, 0.3f, 77, 5);
	same("dropout backward", gdx, dx, n, 1e-6); /* the same mask; an FMA may round once less */
	/* the optimizer's passes */
	double s1 = nn_sumsq(&cc, x, n), s2 = nn_sumsq(&gc, gx, n);
	check(fabs(s1 - s2) <= 1e-12 * s1, "sum of squares", fabs(s1 - s2) / s1, 1e-12);
	float *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
	for (size_t i = 0; i < n; i++)
		v[i] = fabsf(v[i]);
	float *gm = up(m, n * 4), *gv = up(v, n * 4), *gg = up(dy, n * 4);
	nn_adamw(&cc, x, dy, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3, 0.5f);
	nn_adamw(&gc, gx, gg, gm, gv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3, 0.5f);
	same("adamw parameters", gx, x, n, 1e-6);
	same("adamw first moment", gm, m, n, 1e-6);
	same("adamw second moment", gv, v, n, 1e-6);
	same("adamw zeroes the gradient", gg, dy, n, 0);
	free(x), free(dy), free(y), free(dx), free(m), free(v);
	nn_free(&gc, gx), nn_free(&gc, gdy), nn_free(&gc, gy), nn_free(&gc, gdx), nn_free(&gc, gm), nn_free(&gc, gv),
		nn_free(&gc, gg);
}

static void test_losses(void)
{
	int N = 67, V = 5003;
	float *z = rnd((size_t)N * V, 5), *dl = xmalloc((size_t)N * V * 4);
	int32_t tg[67];
	for (int i = 0; i < N; i++)
		tg[i] = i % 9 == 0 ? -100 : (i * 37) % V;
	float *gz = up(z, (size_t)N * V * 4), *gdl = nn_alloc(&gc, (size_t)N * V * 4);
	int32_t *gtg = up(tg, sizeof tg);
	double c1, c2, l1 = softmax_crossentropy(&cc, dl, z, tg, N, V, &c1), l2 = softmax_crossentropy(&gc, gdl, gz, gtg, N, V, &c2);
	check(c1 == c2 && fabs(l1 - l2) <= 1e-6 * fabs(l1), "cross-entropy loss and count", fabs(l1 - l2) / fabs(l1), 1e-6);
	same("cross-entropy dlogits", gdl, dl, (size_t)N * V, 1e-5);
	size_t n = 5000;
	float *p = rnd(n, 3), *lab = rnd(n, 1), *d1 = xmalloc(n * 4);
	uint8_t *mk = xmalloc(n);
	for (size_t i = 0; i < n; i++) {
		lab[i] = fabsf(lab[i]);
		mk[i] = i % 5 != 0;
	}
	float *gp = up(p, n * 4), *glab = up(lab, n * 4), *gd = nn_alloc(&gc, n * 4);
	uint8_t *gmk = up(mk, n);
	l1 = bce_logits(&cc, d1, p, lab, mk, n, &c1);
	l2 = bce_logits(&gc, gd, gp, glab, gmk, n, &c2);
	check(c1 == c2 && fabs(l1 - l2) <= 1e-6 * fabs(l1), "bce loss and count", fabs(l1 - l2) / fabs(l1), 1e-6);
	same("bce dlogits", gd, d1, n, 1e-5);
	l1 = mse_loss(&cc, d1, p, lab, NULL, n, &c1);
	l2 = mse_loss(&gc, gd, gp, glab, NULL, n, &c2);
	check(c1 == c2 && fabs(l1 - l2) <= 1e-6 * fabs(l1), "mse loss and count", fabs(l1 - l2) / fabs(l1), 1e-6);
	same("mse dpred", gd, d1, n, 1e-5);
	free(z), free(dl), free(p), free(lab), free(d1), free(mk);
	nn_free(&gc, gz), nn_free(&gc, gdl), nn_free(&gc, gtg), nn_free(&gc, gp), nn_free(&gc, glab), nn_free(&gc, gd),
		nn_free(&gc, gmk);
}

/* GPT-2 as a classifier (the score head at each row's last token) on both
 * devices: loss, probabilities, every gradient; and with LoRA, the head a
 * saved module. */
static void test_gpt2_cls(void)
{
	gpt2_config cf = {2, 2, 64, 48, 150, 1e-5f, 0};
	gpt2 m;
	herr e;
	if (gpt2_init(&e, &m, &cf) != 0) {
		check(0, e.msg, 0, 0);
		return;
	}
	gpt2_init_random(&m, 11);
	const char *labels[] = {"a", "b", "c"};
	gpt2_add_classifier(&m, 3, labels, 5);
	int B = 5, T = 24, N = B * T, last[5] = {23, 10, 0, 17, 40}, lab[5] = {0, 2, -1, 1, 2};
	uint32_t *ids = xmalloc((size_t)N * 4);
	for (int i = 0; i < N; i++)
		ids[i] = (uint32_t)((i * 13 + 5) % cf.vocab);
	for (int withlora = 0; withlora < 2; withlora++) {
		gpt2_lora lo;
		memset(&lo, 0, sizeof lo);
		if (withlora) {
			gpt2_lora_init(&lo, &m, 4, 8, LORA_C_ATTN | LORA_C_FC, 2);
			for (size_t i = 0; i < lo.n; i++)
				lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f * (float)((int)(i % 5) - 2);
			gpt2_lora_add_head(&lo, &m);
			m.lora = &lo;
		}
		gpt2_ws *wc = gpt2_ws_new(&m, B, T, 2), *wg = gpt2_ws_new_on(&m, B, T, 1, GPU);
		double l1 = gpt2_forward_cls(&m, wc, ids, last, lab), l2 = gpt2_forward_cls(&m, wg, ids, last, lab);
		check(fabs(l1 - l2) <= 1e-5 * fabs(l1), withlora ? "gpt2 classifier with LoRA: loss" : "gpt2 classifier: loss",
		      fabs(l1 - l2) / fabs(l1), 1e-5);
		double pe = nerr(gpt2_cls_probs(wg), gpt2_cls_probs(wc), (size_t)B * 3);
		check(pe <= 1e-5, "  ... class probabilities (on the host)", pe, 1e-5);
		gpt2_backward(&m, wc);
		gpt2_backward(&m, wg);
		if (withlora)
			same("  ... the adapters' and the head's gradients", gpt2_lora_grad(wg), gpt2_lora_grad(wc), lo.n, 1e-4);
		else
			same("  ... every gradient", gpt2_grad(wg), gpt2_grad(wc), m.nparams, 1e-4);
		gpt2_ws_free(wc);
		gpt2_ws_free(wg);
		m.lora = NULL;
		gpt2_lora_free(&lo);
	}
	free(ids);
	gpt2_free(&m);
}

/* BERT with each head on both devices, a padding mask, dropout, the
 * [CLS]-only last layer and the sparse masked-LM head: loss, logits and
 * every gradient against the CPU's (fp32), the loss in bf16 within 1% */
static void test_bert(void)
{
	int heads[3] = {BERT_SEQCLS, BERT_TOKCLS, BERT_MLM};
	const char *hn[3] = {"sequence classifier", "tagger", "masked LM"};
	for (int hi = 0; hi < 3; hi++) {
		bert_config cf = {2, 2, 64, 128, 40, 2, 150, 1e-12f, NN_GELU_ERF, heads[hi], 3, BERT_SINGLE, 0, 0.1f};
		bert m;
		herr e;
		if (bert_init(&e, &m, &cf) != 0) {
			check(0, e.msg, 0, 0);
			return;
		}
		bert_init_random(&m, 5);
		int B = 4, T = 33, N = B * T;
		uint32_t *ids = xmalloc((size_t)N * 4), *types = xmalloc((size_t)N * 4);
		uint8_t *mask = xmalloc((size_t)N);
		int32_t *lab = xmalloc((size_t)N * 4);
		for (int i = 0; i < N; i++) {
			ids[i] = (uint32_t)((i * 17 + 1) % cf.vocab);
			types[i] = (uint32_t)(i % T > 20);
			mask[i] = (i % T) < T - 6 * (i / T);
			lab[i] = heads[hi] == BERT_SEQCLS ? (i < B ? i % 3 : 0) : i % 5 == 0 ? (int32_t)(i % 3) : -100;
		}
		bert_batch bt = {ids, types, mask, lab, NULL};
		for (int prec = 0; prec < 2; prec++) {
			bert_ws *wc = bert_ws_new(&m, B, T, 2), *wg = bert_ws_new_on(&m, B, T, 1, GPU);
			bert_ws_nn(wg)->precision = prec ? NN_BF16 : NN_FP32;
			bert_ws *ws[2] = {wc, wg};
			for (int k = 0; k < 2; k++) {
				bert_ws_mlm_sparse(ws[k], 1);
				bert_ws_cls_only(ws[k], &m, 1);
				bert_ws_dropout(ws[k], 9);
			}
			double l1 = bert_forward(&m, wc, &bt), l2 = bert_forward(&m, wg, &bt);
			char nm[96];
			snprintf(nm, sizeof nm, "bert %s, %s: loss", hn[hi], prec ? "bf16" : "fp32");
			double tol = prec ? 1e-2 : 1e-5;
			check(fabs(l1 - l2) <= tol * fabs(l1), nm, fabs(l1 - l2) / fabs(l1), tol);
			if (!prec) {
				size_t nl = heads[hi] == BERT_SEQCLS ? (size_t)B * 3 : heads[hi] == BERT_TOKCLS ? (size_t)N * 3 :
				                                                                          (size_t)bert_mlm_rows(wc) * cf.vocab;
				double le = nerr(bert_logits(wg), bert_logits(wc), nl);
				check(le <= 1e-4, "  ... logits", le, 1e-4);
				bert_backward(&m, wc);
				bert_backward(&m, wg);
				same("  ... every gradient", bert_grad(wg), bert_grad(wc), m.nparams, 1e-3);
			}
			bert_ws_free(wc);
			bert_ws_free(wg);
		}
		free(ids), free(types), free(mask), free(lab);
		bert_free(&m);
	}
}

/* A small GPT-2 on both devices: logits, loss, every gradient; then a few
 * AdamW steps twice on the GPU from the same start: the same bits. */
static void test_gpt2(void)
{
	gpt2_config cf = {3, 2, 64, 64, 211, 1e-5f, 0}; /* head size 32: bf16 runs the fused attention */
	gpt2 m;
	herr e;
	if (gpt2_init(&e, &m, &cf) != 0) {
		check(0, e.msg, 0, 0);
		return;
	}
	gpt2_init_random(&m, 7);
	int B = 3, T = 40, N = B * T;
	uint32_t *ids = xmalloc((size_t)N * 4);
	int32_t *tg = xmalloc((size_t)N * 4);
	for (int i = 0; i < N; i++) {
		ids[i] = (uint32_t)((i * 31 + 7) % cf.vocab);
		tg[i] = i % 13 == 0 ? -1 : (int32_t)((i * 17 + 3) % cf.vocab);
	}
	gpt2_ws *wc = gpt2_ws_new(&m, B, T, 2), *wg = gpt2_ws_new_on(&m, B, T, 1, GPU);
	double lc = gpt2_forward(&m, wc, ids, tg), lg = gpt2_forward(&m, wg, ids, tg);
	check(fabs(lc - lg) <= 1e-5 * fabs(lc), "gpt2 loss", fabs(lc - lg) / fabs(lc), 1e-5);
	same("gpt2 logits", gpt2_logits(wg), gpt2_logits(wc), (size_t)N * cf.vocab, 1e-4);
	gpt2_backward(&m, wc);
	gpt2_backward(&m, wg);
	/* every tensor's gradient on its own */
	double worst = 0;
	const char *wname = "";
	float *gg = down(gpt2_grad(wg), m.nparams);
	const float *gcpu = gpt2_grad(wc);
	for (size_t i = 0; i < m.nt; i++) {
		double er = nerr(gg + m.t[i].off, gcpu + m.t[i].off, m.t[i].n);
		if (er > worst)
			worst = er, wname = m.t[i].name;
	}
	char nm[128];
	snprintf(nm, sizeof nm, "gpt2 gradients, every tensor (worst: %s)", wname);
	check(worst <= 1e-3, nm, worst, 1e-3);
	free(gg);
	/* LoRA (the input projections, then every site; dropout off, then on):
	 * the loss and the adapters' gradients */
	for (int lc_case = 0; lc_case < 4; lc_case++) {
		gpt2_lora lo;
		int sites = lc_case & 1 ? LORA_C_ATTN | LORA_ATTN_C_PROJ | LORA_C_FC | LORA_MLP_C_PROJ : LORA_C_ATTN | LORA_C_FC;
		gpt2_lora_init(&lo, &m, 4, 8, sites, 3);
		for (size_t i = 0; i < lo.n; i++)
			lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f * (float)((int)(i % 7) - 3); /* B nonzero */
		lo.dropout = lc_case & 2 ? 0.1f : 0.0f;
		printf("# LoRA: %s sites, dropout %.1f\n", lc_case & 1 ? "all" : "two", lo.dropout);
		m.lora = &lo;
		gpt2_ws *lc = gpt2_ws_new(&m, B, T, 2), *lg = gpt2_ws_new_on(&m, B, T, 1, GPU);
		gpt2_ws_dropout(lc, 99);
		gpt2_ws_dropout(lg, 99);
		double a1 = gpt2_forward(&m, lc, ids, tg), a2 = gpt2_forward(&m, lg, ids, tg);
		check(fabs(a1 - a2) <= 1e-5 * fabs(a1), "gpt2 LoRA loss (dropout on)", fabs(a1 - a2) / fabs(a1), 1e-5);
		gpt2_backward(&m, lc);
		gpt2_backward(&m, lg);
		same("gpt2 LoRA gradients", gpt2_lora_grad(lg), gpt2_lora_grad(lc), lo.n, 1e-4);
		check(gpt2_grad(lg) == NULL, "gpt2 LoRA on the GPU: the base keeps no gradient", 0, 0);
		gpt2_ws_free(lc);
		gpt2_ws_free(lg);
		m.lora = NULL;
		gpt2_lora_free(&lo);
	}
	/* generation: the KV cache on the GPU, prefill and steps, against the CPU's logits */
	{
		gpt2_kv *kc = gpt2_kv_new(&m), *kg = gpt2_kv_new_on(&m, GPU);
		float *l1 = xmalloc((size_t)cf.vocab * 4), *l2 = xmalloc((size_t)cf.vocab * 4);
		gpt2_prefill(&m, kc, ids, 20, l1);
		gpt2_prefill(&m, kg, ids, 20, l2);
		double worst = nerr(l2, l1, (size_t)cf.vocab);
		for (int s = 0; s < 6; s++) {
			gpt2_step(&m, kc, ids[30 + s], l1);
			gpt2_step(&m, kg, ids[30 + s], l2);
			double e2 = nerr(l2, l1, (size_t)cf.vocab);
			worst = e2 > worst ? e2 : worst;
		}
		check(worst <= 1e-5 && gpt2_kv_len(kg) == 26, "generation on the GPU: prefill and 6 steps, the CPU's logits", worst, 1e-5);
		free(l1), free(l2);
		gpt2_kv_free(kc);
		gpt2_kv_free(kg);
	}
	/* bf16 products: the loss within 1% */
	gpt2_ws *wb = gpt2_ws_new_on(&m, B, T, 1, GPU);
	gpt2_ws_nn(wb)->precision = NN_BF16;
	double lb = gpt2_forward(&m, wb, ids, tg);
	check(fabs(lb - lc) <= 1e-2 * fabs(lc), "gpt2 loss, bf16 products", fabs(lb - lc) / fabs(lc), 1e-2);
	gpt2_ws_free(wb);
	gpt2_ws_free(wc);
	/* determinism: two runs of 3 steps from the same start, in each precision */
	float *start = xmalloc(m.nparams * 4);
	memcpy(start, m.p, m.nparams * 4);
	for (int prec = 0; prec < 2; prec++) {
		float *run[2];
		for (int r = 0; r < 2; r++) {
			memcpy(m.p, start, m.nparams * 4); /* (a host backend trains m.p itself) */
			gpt2_ws *w = gpt2_ws_new_on(&m, B, T, 1, GPU);
			nn_ctx *c = gpt2_ws_nn(w);
			c->precision = prec ? NN_BF16 : NN_FP32;
			float *p = gpt2_ws_params(w, &m), *mm = nn_alloc(c, m.nparams * 4), *vv = nn_alloc(c, m.nparams * 4);
			for (int s = 1; s <= 3; s++) {
				gpt2_forward(&m, w, ids, tg);
				gpt2_backward(&m, w);
				float gs = (float)(1.0 / (sqrt(nn_sumsq(c, gpt2_grad(w), m.nparams)) + 1e-6));
				nn_adamw(c, p, gpt2_grad(w), mm, vv, m.nparams, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, s, gs);
			}
			run[r] = down(p, m.nparams);
			nn_free(c, mm), nn_free(c, vv);
			gpt2_ws_free(w);
		}
		check(!memcmp(run[0], run[1], m.nparams * 4),
		      prec ? "gpt2, bf16: two trainings with the same start give the same bits"
		           : "gpt2, fp32: two trainings with the same start give the same bits", 0, 0);
		free(run[0]), free(run[1]);
	}
	free(start);
	gpt2_ws_free(wg);
	free(ids), free(tg);
	gpt2_free(&m);
}

/* Llama's layers (rope, SwiGLU, grouped heads) against the CPU's */
static void test_llama_layers(void)
{
	int N = 300, H = 8, Hk = 2, D = 64, I = 1000, QW = (H + 2 * Hk) * D, XW = 3 * H * D;
	llama_config lc = {.head_dim = D, .theta = 10000};
	float *cs = xmalloc((size_t)512 * D * 4);
	llama_rope_table(&lc, 512, cs);
	uint32_t *pos = xmalloc((size_t)N * 4);
	for (int i = 0; i < N; i++)
		pos[i] = (uint32_t)((i * 7) % 512);
	float *x = rnd((size_t)N * QW, 1), *gx = up(x, (size_t)N * QW * 4), *gcs = up(cs, (size_t)512 * D * 4);
	uint32_t *gpos = up(pos, (size_t)N * 4);
	for (int inv = 0; inv < 2; inv++) {
		rope(&cc, x, pos, cs, N, QW, H + Hk, D, inv);
		rope(&gc, gx, gpos, gcs, N, QW, H + Hk, D, inv);
		same(inv ? "rope inverse (backward)" : "rope forward", gx, x, (size_t)N * QW, 1e-6);
	}
	/* kv_expand is a copy: the same input on both sides (rope's results
	 * differ in the last bits between the devices), the same bits out */
	nn_free(&gc, gx);
	gx = up(x, (size_t)N * QW * 4);
	float *e = xmalloc((size_t)N * XW * 4), *ge = nn_alloc(&gc, (size_t)N * XW * 4);
	kv_expand_forward(&cc, e, x, N, H, Hk, D);
	kv_expand_forward(&gc, ge, gx, N, H, Hk, D);
	same("kv_expand forward", ge, e, (size_t)N * XW, 0);
	float *dx = rnd((size_t)N * QW, 1), *gdx = up(dx, (size_t)N * QW * 4);
	kv_expand_backward(&cc, dx, e, N, H, Hk, D);
	kv_expand_backward(&gc, gdx, ge, N, H, Hk, D);
	same("kv_expand backward (the repeats summed in order)", gdx, dx, (size_t)N * QW, 0);
	float *gu = rnd((size_t)N * 2 * I, 3), *h = xmalloc((size_t)N * I * 4), *dh = rnd((size_t)N * I, 1);
	float *dgu = rnd((size_t)N * 2 * I, 1);
	float *ggu = up(gu, (size_t)N * 2 * I * 4), *gh = nn_alloc(&gc, (size_t)N * I * 4), *gdh = up(dh, (size_t)N * I * 4),
	      *gdgu = up(dgu, (size_t)N * 2 * I * 4);
	swiglu_forward(&cc, h, gu, N, I);
	swiglu_forward(&gc, gh, ggu, N, I);
	same("swiglu forward", gh, h, (size_t)N * I, 1e-5);
	swiglu_backward(&cc, dgu, dh, gu, N, I);
	swiglu_backward(&gc, gdgu, gdh, ggu, N, I);
	same("swiglu backward", gdgu, dgu, (size_t)N * 2 * I, 1e-5);
	free(cs), free(pos), free(x), free(e), free(dx), free(gu), free(h), free(dh), free(dgu);
	nn_free(&gc, gx), nn_free(&gc, gcs), nn_free(&gc, gpos), nn_free(&gc, ge), nn_free(&gc, gdx), nn_free(&gc, ggu),
		nn_free(&gc, gh), nn_free(&gc, gdh), nn_free(&gc, gdgu);
}

/* A Llama (grouped heads of 32: bf16 runs the fused attention) on the GPU
 * against the CPU: loss, logits, every gradient; LoRA on all seven sites;
 * generation; bf16; two trainings' bits */
static void test_llama(void)
{
	llama_config cf = {.n_layer = 2, .hidden = 64, .inter = 96, .n_head = 2, .n_kv = 1, .head_dim = 32, .max_pos = 64,
	                   .vocab = 173, .eps = 1e-5f, .theta = 10000, .qkv_bias = 1, .tied = 0, .family = "llama"};
	llama m;
	herr e;
	if (llama_init(&e, &m, &cf) != 0) {
		check(0, e.msg, 0, 0);
		return;
	}
	llama_init_random(&m, 5);
	int B = 3, T = 40, N = B * T;
	uint32_t *ids = xmalloc((size_t)N * 4);
	int32_t *tg = xmalloc((size_t)N * 4);
	for (int i = 0; i < N; i++) {
		ids[i] = (uint32_t)((i * 31 + 7) % cf.vocab);
		tg[i] = i % 13 == 0 ? -1 : (int32_t)((i * 17 + 3) % cf.vocab);
	}
	llama_ws *wc = llama_ws_new_on(&m, B, T, 2, &nn_cpu), *wg = llama_ws_new_on(&m, B, T, 1, GPU);
	double lc = llama_forward(&m, wc, ids, tg), lg = llama_forward(&m, wg, ids, tg);
	check(fabs(lc - lg) <= 1e-5 * fabs(lc), "llama loss", fabs(lc - lg) / fabs(lc), 1e-5);
	same("llama logits", llama_logits(wg), llama_logits(wc), (size_t)N * cf.vocab, 1e-4);
	llama_backward(&m, wc);
	llama_backward(&m, wg);
	double worst = 0;
	const char *wname = "";
	float *gg = down(llama_grad(wg), m.nparams);
	for (size_t i = 0; i < m.nt; i++) {
		double er = nerr(gg + m.t[i].off, llama_grad(wc) + m.t[i].off, m.t[i].n);
		if (er > worst)
			worst = er, wname = m.t[i].name;
	}
	char nm[128];
	snprintf(nm, sizeof nm, "llama gradients, every tensor (worst: %s)", wname);
	check(worst <= 1e-3, nm, worst, 1e-3);
	free(gg);
	{
		lora lo;
		lora_arch a;
		llama_lora_arch(&m, &a);
		lora_init(&lo, &a, 4, 8, 0x7f, 3);
		for (size_t i = 0; i < lo.n; i++)
			lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f * (float)((int)(i % 7) - 3);
		lo.dropout = 0.1f;
		m.lora = &lo;
		llama_ws *a1 = llama_ws_new_on(&m, B, T, 2, &nn_cpu), *a2 = llama_ws_new_on(&m, B, T, 1, GPU);
		llama_ws_dropout(a1, 99);
		llama_ws_dropout(a2, 99);
		double x1 = llama_forward(&m, a1, ids, tg), x2 = llama_forward(&m, a2, ids, tg);
		check(fabs(x1 - x2) <= 1e-5 * fabs(x1), "llama LoRA (7 sites, dropout) loss", fabs(x1 - x2) / fabs(x1), 1e-5);
		llama_backward(&m, a1);
		llama_backward(&m, a2);
		same("llama LoRA gradients", llama_lora_grad(a2), llama_lora_grad(a1), lo.n, 1e-4);
		llama_ws_free(a1);
		llama_ws_free(a2);
		m.lora = NULL;
		lora_free(&lo);
	}
	{
		llama_kv *kc = llama_kv_new_on(&m, &nn_cpu, 0), *kg = llama_kv_new_on(&m, GPU, 0);
		float *l1 = xmalloc((size_t)cf.vocab * 4), *l2 = xmalloc((size_t)cf.vocab * 4);
		llama_prefill(&m, kc, ids, 20, l1);
		llama_prefill(&m, kg, ids, 20, l2);
		double w2 = nerr(l2, l1, (size_t)cf.vocab);
		for (int s = 0; s < 6; s++) {
			llama_step(&m, kc, ids[30 + s], l1);
			llama_step(&m, kg, ids[30 + s], l2);
			double e2 = nerr(l2, l1, (size_t)cf.vocab);
			w2 = e2 > w2 ? e2 : w2;
		}
		check(w2 <= 1e-5 && llama_kv_len(kg) == 26, "llama generation on the GPU: prefill and 6 steps", w2, 1e-5);
		free(l1), free(l2);
		llama_kv_free(kc);
		llama_kv_free(kg);
	}
	llama_ws *wb = llama_ws_new_on(&m, B, T, 1, GPU);
	llama_ws_nn(wb)->precision = NN_BF16;
	double lb = llama_forward(&m, wb, ids, tg);
	check(fabs(lb - lc) <= 1e-2 * fabs(lc), "llama loss, bf16 products", fabs(lb - lc) / fabs(lc), 1e-2);
	llama_backward(&m, wb);
	float *gb = down(llama_grad(wb), m.nparams);
	double gbe = nerr(gb, llama_grad(wc), m.nparams);
	check(gbe <= 5e-2, "llama gradients, bf16 products (all together)", gbe, 5e-2);
	free(gb);
	llama_ws_free(wb);
	float *run[2], *start = xmalloc(m.nparams * 4);
	memcpy(start, m.p, m.nparams * 4);
	for (int r = 0; r < 2; r++) {
		memcpy(m.p, start, m.nparams * 4); /* (a host backend trains m.p itself) */
		llama_ws *w = llama_ws_new_on(&m, B, T, 1, GPU);
		nn_ctx *c = llama_ws_nn(w);
		c->precision = NN_BF16;
		float *p = llama_ws_params(w, &m), *mm = nn_alloc(c, m.nparams * 4), *vv = nn_alloc(c, m.nparams * 4);
		for (int s = 1; s <= 3; s++) {
			llama_forward(&m, w, ids, tg);
			llama_backward(&m, w);
			float gs = (float)(1.0 / (sqrt(nn_sumsq(c, llama_grad(w), m.nparams)) + 1e-6));
			nn_adamw(c, p, llama_grad(w), mm, vv, m.nparams, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, s, gs);
		}
		run[r] = down(p, m.nparams);
		nn_free(c, mm), nn_free(c, vv);
		llama_ws_free(w);
	}
	check(!memcmp(run[0], run[1], m.nparams * 4), "llama, bf16: two trainings with the same start give the same bits", 0, 0);
	free(run[0]), free(run[1]), free(start);
	llama_ws_free(wc);
	llama_ws_free(wg);
	free(ids), free(tg);
	llama_free(&m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	herr e;
	/* HONE_TEST_GPU=ref runs the harness itself on the plain reference */
	GPU = getenv("HONE_TEST_GPU") && !strcmp(getenv("HONE_TEST_GPU"), "ref") ? &nn_ref : nn_backend(&e, "cuda");
	if (!GPU) {
		printf("not ok - the CUDA backend: %s\n0 passed, 1 failed\n", e.msg);
		return 1;
	}
	if (!blas_get(&e)) { /* the CPU side's sgemm */
		printf("not ok - OpenBLAS: %s\n0 passed, 1 failed\n", e.msg);
		return 1;
	}
	nn_ctx_init(&gc, GPU, 1);
	nn_ctx_init(&cc, &nn_cpu, 2);
	void (*tests[])(void) = {test_matmul, test_bf16, test_linear, test_embedding, test_norms, test_attention, test_flash, test_pointwise,
	                         test_losses, test_gpt2, test_gpt2_cls, test_bert, test_llama_layers, test_llama};
	const char *names[] = {"matmul", "bf16", "linear", "embedding", "norms", "attention", "flash", "pointwise", "losses", "gpt2", "gpt2 classifier", "bert", "llama layers", "llama"};
	for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
		printf("# %s\n", names[i]);
		tests[i]();
	}
	nn_ctx_free(&gc);
	nn_ctx_free(&cc);
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
