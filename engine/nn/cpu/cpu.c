/*
 * The CPU backend of engine/nn/nn.h: OpenBLAS sgemm (kept to one thread of
 * its own) split over our threads, and the other layers as loops split by
 * rows (or by heads for attention) over the same threads. Each row's
 * arithmetic does not depend on the split, so the thread count never
 * changes a bit.
 */
#include "../nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../ml/act.h"
#include "../../ml/blas.h"
#include "../../ml/optim.h"
#include "../../util.h"
#include "cpu.h"

/* fn over nt threads: the context's crew when it has nt members (no thread
 * start per call), else threads of their own; the same split either way */
static void nn_par(nn_ctx *c, int nt, void (*fn)(void *, int, int), void *ud)
{
	if (nt <= 1)
		fn(ud, 0, 1);
	else if (c->crew && crew_size(c->crew) == nt)
		crew_run(c->crew, fn, ud);
	else
		par_run(nt, fn, ud);
}

/* Loops that the compiler vectorizes are built twice: as they are, and as
 * a twin for AVX-512F (vectors 16 wide), taken where the machine has it.
 * The twins do the same float operations in the same order per element (C11
 * mode: no FMA contraction), so they give the same bits. */
#if defined(__clang__)
#define VECOPT /* clang vectorizes these at -O2 and has no optimize attribute */
#else
#define VECOPT optimize("O3", "no-trapping-math")
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define VEC512 __attribute__((target("avx512f"), VECOPT))
static int has512(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define VEC512 __attribute__((VECOPT))
static int has512(void) { return 0; }
#endif
#define VECDEF __attribute__((VECOPT))
#define INLINE static inline __attribute__((always_inline))

/* --- memory ---------------------------------------------------------------------- */

static void *cpu_alloc(nn_ctx *c, size_t n)
{
	(void)c;
	return xcalloc(n ? n : 1, 1);
}

static void cpu_free(nn_ctx *c, void *p)
{
	(void)c;
	free(p);
}

typedef struct zero_job {
	char *p;
	size_t n;
} zero_job;

static void zero_part(void *ud, int t, int nt)
{
	zero_job *j = ud;
	size_t lo = j->n * (size_t)t / (size_t)nt, hi = j->n * (size_t)(t + 1) / (size_t)nt;
	memset(j->p + lo, 0, hi - lo);
}

static void cpu_zero(nn_ctx *c, void *p, size_t n)
{
	zero_job j = {p, n};
	nn_par(c, n >= ((size_t)1 << 20) ? c->threads : 1, zero_part, &j);
}

static void cpu_copy(nn_ctx *c, void *d, const void *s, size_t n)
{
	(void)c;
	if (d != s)
		memcpy(d, s, n);
}

static void cpu_matmul(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *cm, int ldc)
{
	psgemm_crew(c->crew, c->threads, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
}

/* --- linear ------------------------------------------------------------------------ */

typedef struct bias_job {
	float *y;
	const float *b;
	int N, D;
} bias_job;

/* rows [lo, hi) of y += b */
INLINE void add_bias_rows(float *restrict y, const float *restrict b, int lo, int hi, int D)
{
	for (int i = lo; i < hi; i++)
		for (int k = 0; k < D; k++)
			y[(size_t)i * (size_t)D + (size_t)k] += b[k];
}
VECDEF static void add_bias_def(bias_job *j, int lo, int hi) { add_bias_rows(j->y, j->b, lo, hi, j->D); }
VEC512 static void add_bias_512(bias_job *j, int lo, int hi) { add_bias_rows(j->y, j->b, lo, hi, j->D); }

static void add_bias_part(void *ud, int t, int nt)
{
	bias_job *j = ud;
	int lo = j->N * t / nt, hi = j->N * (t + 1) / nt;
	if (has512())
		add_bias_512(j, lo, hi);
	else
		add_bias_def(j, lo, hi);
}

/* columns [lo, hi) of db += Σ rows of dy, each column summed in row order
 * (the same bits for any split) */
INLINE void bias_grad_cols(float *restrict db, const float *restrict dy, int N, int D, int lo, int hi)
{
	for (int i = 0; i < N; i++)
		for (int k = lo; k < hi; k++)
			db[k] += dy[(size_t)i * (size_t)D + (size_t)k];
}
VECDEF static void bias_grad_def(bias_job *j, int lo, int hi) { bias_grad_cols(j->y, j->b, j->N, j->D, lo, hi); }
VEC512 static void bias_grad_512(bias_job *j, int lo, int hi) { bias_grad_cols(j->y, j->b, j->N, j->D, lo, hi); }

static void bias_grad_part(void *ud, int t, int nt)
{
	bias_job *j = ud;
	int lo = j->D * t / nt, hi = j->D * (t + 1) / nt;
	if (has512())
		bias_grad_512(j, lo, hi);
	else
		bias_grad_def(j, lo, hi);
}

static int split_for(nn_ctx *c, size_t work) { return work >= 65536 ? c->threads : 1; }

static void add_bias(nn_ctx *c, float *y, const float *b, int N, int D)
{
	bias_job j = {y, b, N, D};
	nn_par(c, split_for(c, (size_t)N * (size_t)D), add_bias_part, &j);
}

static void bias_grad(nn_ctx *c, float *db, const float *dy, int N, int D)
{
	bias_job j = {db, dy, N, D};
	nn_par(c, D >= 64 ? split_for(c, (size_t)N * (size_t)D) : 1, bias_grad_part, &j);
}

static void cpu_linear_forward(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int in,
                               int out, int layout, int acc)
{
	if (layout == NN_W_IN_OUT)
		psgemm_crew(c->crew, c->threads, 0, 0, N, out, in, 1.0f, x, in, w, out, acc ? 1.0f : 0.0f, y, out);
	else
		psgemm_crew(c->crew, c->threads, 0, 1, N, out, in, 1.0f, x, in, w, in, acc ? 1.0f : 0.0f, y, out);
	if (b)
		add_bias(c, y, b, N, out);
}

static void cpu_linear_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                const float *w, int N, int in, int out, int layout)
{
	if (dw && layout == NN_W_IN_OUT)
		psgemm_crew(c->crew, c->threads, 1, 0, in, out, N, 1.0f, x, in, dy, out, 1.0f, dw, out);
	else if (dw)
		psgemm_crew(c->crew, c->threads, 1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
	if (db)
		bias_grad(c, db, dy, N, out);
	if (dx && layout == NN_W_IN_OUT)
		psgemm_crew(c->crew, c->threads, 0, 1, N, in, out, 1.0f, dy, out, w, out, 1.0f, dx, in);
	else if (dx)
		psgemm_crew(c->crew, c->threads, 0, 0, N, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
}

/* --- embedding ------------------------------------------------------------------- */

static void cpu_embedding_forward(nn_ctx *c, float *out, const uint32_t *ids, const float *table, int N, int C, int V,
                                  int acc)
{
	(void)c;
	for (int i = 0; i < N; i++) {
		uint32_t id = ids[i] < (uint32_t)V ? ids[i] : 0;
		const float *r = table + (size_t)id * (size_t)C;
		float *o = out + (size_t)i * (size_t)C;
		if (acc)
			for (int k = 0; k < C; k++)
				o[k] += r[k];
		else
			memcpy(o, r, (size_t)C * sizeof *o);
	}
}

static void cpu_embedding_backward(nn_ctx *c, float *dtable, const uint32_t *ids, const float *dout, int N, int C, int V)
{
	(void)c;
	for (int i = 0; i < N; i++) {
		uint32_t id = ids[i] < (uint32_t)V ? ids[i] : 0;
		float *r = dtable + (size_t)id * (size_t)C;
		const float *d = dout + (size_t)i * (size_t)C;
		for (int k = 0; k < C; k++)
			r[k] += d[k];
	}
}

/* --- LayerNorm, RMSNorm ------------------------------------------------------------ */

typedef struct norm_job {
	float *out, *mean, *rstd;
	const float *x, *w, *b;
	int N, C;
	float eps;
} norm_job;

/* 8 lanes (GCC's vector extension: 16 bytes at a time by default, one
 * register in the AVX-512 twin; the same lane arithmetic either way) */
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

/* Σ of 8 lanes of doubles, in a fixed order */
INLINE double sum8(const double *v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

/* Rows [lo, hi). The row sums are in double over 8 lanes (element k in lane
 * k mod 8, the lanes then added in a fixed order, the last C mod 8 elements
 * after them), so that they vectorize; the same order in either twin. */
INLINE void ln_rows(norm_job *j, int lo, int hi)
{
	int C = j->C, C8 = C & ~7;
	const float *restrict w = j->w, *restrict b = j->b;
	for (int i = lo; i < hi; i++) {
		const float *restrict xi = j->x + (size_t)i * (size_t)C;
		double s8[8] = {0}, q8[8] = {0};
		for (int k = 0; k < C8; k += 8)
			for (int l = 0; l < 8; l++)
				s8[l] += xi[k + l];
		double s = sum8(s8);
		for (int k = C8; k < C; k++)
			s += xi[k];
		double mu = s / C;
		for (int k = 0; k < C8; k += 8)
			for (int l = 0; l < 8; l++)
				q8[l] += (xi[k + l] - mu) * (xi[k + l] - mu);
		double ss = sum8(q8);
		for (int k = C8; k < C; k++)
			ss += (xi[k] - mu) * (xi[k] - mu);
		float r = (float)(1.0 / sqrt(ss / C + j->eps));
		float *restrict o = j->out + (size_t)i * (size_t)C;
		for (int k = 0; k < C; k++)
			o[k] = ((float)(xi[k] - mu)) * r * w[k] + b[k];
		j->mean[i] = (float)mu;
		j->rstd[i] = r;
	}
}
VECDEF static void ln_def(norm_job *j, int lo, int hi) { ln_rows(j, lo, hi); }
VEC512 static void ln_512(norm_job *j, int lo, int hi) { ln_rows(j, lo, hi); }

static void ln_part(void *ud, int t, int nt)
{
	norm_job *j = ud;
	int lo = j->N * t / nt, hi = j->N * (t + 1) / nt;
	if (has512())
		ln_512(j, lo, hi);
	else
		ln_def(j, lo, hi);
}

static void cpu_layernorm_forward(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                                  const float *b, int N, int C, float eps)
{
	norm_job j = {out, mean, rstd, x, w, b, N, C, eps};
	nn_par(c, N >= 64 ? c->threads : 1, ln_part, &j);
}

typedef struct lnb_job {
	float *dx;
	const float *dy, *x, *w, *mean, *rstd;
	int N, C;
} lnb_job;

/* dx of rows [lo, hi): each row on its own; its two sums as in ln_rows */
INLINE void lnb_rows(lnb_job *j, int lo, int hi)
{
	int C = j->C, C8 = C & ~7;
	const float *restrict w = j->w;
	for (int i = lo; i < hi; i++) {
		const float *restrict xi = j->x + (size_t)i * (size_t)C, *restrict dyi = j->dy + (size_t)i * (size_t)C;
		float *restrict dxi = j->dx + (size_t)i * (size_t)C;
		float mu = j->mean[i], r = j->rstd[i];
		v8d a8 = {0}, b8 = {0};
		for (int k = 0; k < C8; k += 8) {
			v8f x8, dy8, w8;
			memcpy(&x8, xi + k, sizeof x8);
			memcpy(&dy8, dyi + k, sizeof dy8);
			memcpy(&w8, w + k, sizeof w8);
			v8f xh = (x8 - mu) * r, d = dy8 * w8, e = d * xh;
			a8 += __builtin_convertvector(d, v8d);
			b8 += __builtin_convertvector(e, v8d);
		}
		double av[8], bv[8];
		memcpy(av, &a8, sizeof av);
		memcpy(bv, &b8, sizeof bv);
		double a = sum8(av), bb = sum8(bv);
		for (int k = C8; k < C; k++) {
			float xh = (xi[k] - mu) * r;
			float d = dyi[k] * w[k];
			a += d;
			bb += d * xh;
		}
		float ma = (float)(a / C), mb = (float)(bb / C);
		for (int k = 0; k < C; k++) {
			float xh = (xi[k] - mu) * r;
			dxi[k] += r * (dyi[k] * w[k] - ma - xh * mb);
		}
	}
}
VECDEF static void lnb_def(lnb_job *j, int lo, int hi) { lnb_rows(j, lo, hi); }
VEC512 static void lnb_512(lnb_job *j, int lo, int hi) { lnb_rows(j, lo, hi); }

static void lnb_part(void *ud, int t, int nt)
{
	lnb_job *j = ud;
	int lo = j->N * t / nt, hi = j->N * (t + 1) / nt;
	if (has512())
		lnb_512(j, lo, hi);
	else
		lnb_def(j, lo, hi);
}

typedef struct lnw_job {
	float *dw, *db;
	const float *dy, *x, *mean, *rstd;
	int N, C;
} lnw_job;

/* columns [lo, hi) of dw, db: each summed over the rows in row order */
INLINE void lnw_cols(float *restrict dw, float *restrict db, const float *restrict dy, const float *restrict x,
                     const float *restrict mean, const float *restrict rstd, int N, int C, int lo, int hi)
{
	for (int i = 0; i < N; i++) {
		const float *xi = x + (size_t)i * (size_t)C, *dyi = dy + (size_t)i * (size_t)C;
		float mu = mean[i], r = rstd[i];
		for (int k = lo; k < hi; k++) {
			float xh = (xi[k] - mu) * r;
			dw[k] += dyi[k] * xh;
			db[k] += dyi[k];
		}
	}
}
VECDEF static void lnw_def(lnw_job *j, int lo, int hi) { lnw_cols(j->dw, j->db, j->dy, j->x, j->mean, j->rstd, j->N, j->C, lo, hi); }
VEC512 static void lnw_512(lnw_job *j, int lo, int hi) { lnw_cols(j->dw, j->db, j->dy, j->x, j->mean, j->rstd, j->N, j->C, lo, hi); }

static void lnw_part(void *ud, int t, int nt)
{
	lnw_job *j = ud;
	int lo = j->C * t / nt, hi = j->C * (t + 1) / nt;
	if (has512())
		lnw_512(j, lo, hi);
	else
		lnw_def(j, lo, hi);
}

/* dx by rows over the threads; dw and db by columns, each summed over the
 * rows in row order (the same bits for any thread count) */
static void cpu_layernorm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, int N, int C)
{
	lnb_job j = {dx, dy, x, w, mean, rstd, N, C};
	nn_par(c, N >= 64 ? c->threads : 1, lnb_part, &j);
	if (dw) {
		lnw_job k = {dw, db, dy, x, mean, rstd, N, C};
		nn_par(c, C >= 64 && N >= 64 ? c->threads : 1, lnw_part, &k);
	}
}

static void rms_part(void *ud, int t, int nt)
{
	norm_job *j = ud;
	int C = j->C;
	for (int i = j->N * t / nt; i < j->N * (t + 1) / nt; i++) {
		const float *xi = j->x + (size_t)i * (size_t)C;
		double ss = 0;
		for (int k = 0; k < C; k++)
			ss += (double)xi[k] * xi[k];
		float r = (float)(1.0 / sqrt(ss / C + j->eps));
		float *o = j->out + (size_t)i * (size_t)C;
		for (int k = 0; k < C; k++)
			o[k] = xi[k] * r * j->w[k];
		j->rstd[i] = r;
	}
}

static void cpu_rmsnorm_forward(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
	norm_job j = {out, NULL, rstd, x, w, NULL, N, C, eps};
	nn_par(c, N >= 64 ? c->threads : 1, rms_part, &j);
}

static void cpu_rmsnorm_backward(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                                 const float *rstd, int N, int C)
{
	(void)c;
	for (int i = 0; i < N; i++) {
		const float *xi = x + (size_t)i * (size_t)C, *dyi = dy + (size_t)i * (size_t)C;
		float *dxi = dx + (size_t)i * (size_t)C;
		double a = 0;
		for (int k = 0; k < C; k++) {
			float xh = xi[k] * rstd[i];
			a += (double)dyi[k] * w[k] * xh;
			if (dw)
				dw[k] += dyi[k] * xh;
		}
		float ma = (float)(a / C);
		for (int k = 0; k < C; k++)
			dxi[k] += rstd[i] * (dyi[k] * w[k] - xi[k] * rstd[i] * ma);
	}
}

/* e^x for x ≤ 0 (GELU's Gaussian), in plain arithmetic that the compiler
 * vectorizes: 2^(x·log2 e) as 2^n (exponent bits) times a degree-6
 * polynomial for 2^f, |f| ≤ 1/2; relative error below 2e-7. Results are the
 * same on every machine (no libm call, no FMA contraction across units). */
static inline __attribute__((always_inline)) float exp_neg(float x)
{
	float keep = (float)(x >= -87.0f); /* branch-free clamp at -87 (e^-87 ~ 1.6e-38) */
	x = keep * x - (1.0f - keep) * 87.0f;
	float t = x * 1.44269504088896341f;
	float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
	float f = t - n;
	float p = 1.5403530e-4f;
	p = p * f + 1.3333558e-3f;
	p = p * f + 9.6181291e-3f;
	p = p * f + 5.5504109e-2f;
	p = p * f + 2.4022651e-1f;
	p = p * f + 6.9314718e-1f;
	p = p * f + 1.0f;
	union { float f; uint32_t i; } u = {p};
	u.i += (uint32_t)(int32_t)n << 23; /* n ≥ -126: the exponent stays normal */
	return u.f;
}

/* --- attention --------------------------------------------------------------------- */

typedef struct att_job {
	float *y;
	const float *qkv;
	const float *dy;
	float *dqkv;
	const uint8_t *mask;
	float *scratch; /* per thread: `per` floats */
	int B, T, C, H, hd, causal;
	float scale;
	int fused;  /* attn.c's kernel, else sgemm per head */
	size_t per; /* scratch floats per thread */
} att_job;

/* key x visible from query i (km: the row's key mask) */
static inline int visible(const att_job *j, const uint8_t *km, int i, int x)
{
	return (!j->causal || x <= i) && km[x];
}

/* One head's attention probabilities S [T × T], masked entries 0. A query
 * that sees no key at all (a padding row with every key masked) attends to
 * all keys evenly, as an additive mask of the most negative float gives.
 * Forward and backward compute them alike. */
static void att_probs(const att_job *j, int b, const float *q, const float *k, float *S)
{
	int T = j->T, C = j->C;
	const uint8_t *km = j->mask ? j->mask + (size_t)b * (size_t)T : NULL;
	int L = prefix_len(km, T);
	sgemm(0, 1, T, T, j->hd, j->scale, q, 3 * C, k, 3 * C, 0.0f, S, T);
	for (int i = 0; i < T; i++) {
		float *row = S + (size_t)i * (size_t)T;
		if (L > 0) { /* keys 0..last: causal, a padding prefix, or all */
			int last = j->causal && i < L ? i : L - 1;
			float mx = row[0];
			for (int x = 1; x <= last; x++)
				mx = row[x] > mx ? row[x] : mx;
			double s = 0;
			for (int x = 0; x <= last; x++) {
				row[x] = expf(row[x] - mx);
				s += row[x];
			}
			float inv = (float)(1.0 / s);
			for (int x = 0; x <= last; x++)
				row[x] *= inv;
			for (int x = last + 1; x < T; x++)
				row[x] = 0;
			continue;
		}
		float mx = -INFINITY;
		for (int x = 0; x < T; x++)
			if (visible(j, km, i, x))
				mx = row[x] > mx ? row[x] : mx;
		if (mx == -INFINITY) {
			for (int x = 0; x < T; x++)
				row[x] = 1.0f / (float)T;
			continue;
		}
		double s = 0;
		for (int x = 0; x < T; x++) {
			row[x] = visible(j, km, i, x) ? expf(row[x] - mx) : 0.0f;
			s += row[x];
		}
		float inv = (float)(1.0 / s);
		for (int x = 0; x < T; x++)
			row[x] *= inv;
	}
}

static void att_fwd_part(void *ud, int t, int nt)
{
	att_job *j = ud;
	int T = j->T, C = j->C, H = j->H, hd = j->hd, BH = j->B * j->H;
	float *S = j->scratch + (size_t)t * j->per;
	for (int bh = BH * t / nt; bh < BH * (t + 1) / nt; bh++) {
		int b = bh / H, h = bh % H;
		const float *q = j->qkv + (size_t)b * (size_t)T * 3 * (size_t)C + (size_t)h * (size_t)hd;
		if (j->fused) {
			cpu_attn_fwd_head(j->y + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd, q,
			                  j->mask ? j->mask + (size_t)b * (size_t)T : NULL, T, C, hd, j->causal, j->scale, S);
			continue;
		}
		att_probs(j, b, q, q + C, S);
		sgemm(0, 0, T, hd, T, 1.0f, S, T, q + 2 * C, 3 * C, 0.0f, j->y + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd,
		      C);
	}
}

static void att_back_part(void *ud, int t, int nt)
{
	att_job *j = ud;
	int T = j->T, C = j->C, H = j->H, hd = j->hd, BH = j->B * j->H;
	float *Pm = j->scratch + (size_t)t * j->per, *dS = Pm + (size_t)T * (size_t)T;
	for (int bh = BH * t / nt; bh < BH * (t + 1) / nt; bh++) {
		int b = bh / H, h = bh % H;
		size_t qo = (size_t)b * (size_t)T * 3 * (size_t)C + (size_t)h * (size_t)hd;
		const float *q = j->qkv + qo, *k = q + C, *v = q + 2 * C;
		float *dq = j->dqkv + qo, *dk = dq + C, *dv = dq + 2 * C;
		const uint8_t *km = j->mask ? j->mask + (size_t)b * (size_t)T : NULL;
		if (j->fused) {
			cpu_attn_bwd_head(dq, j->dy + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd, q, km, T, C, hd,
			                  j->causal, j->scale, Pm);
			continue;
		}
		int L = prefix_len(km, T);
		att_probs(j, b, q, k, Pm);
		const float *dyh = j->dy + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hd;
		sgemm(0, 1, T, T, hd, 1.0f, dyh, C, v, 3 * C, 0.0f, dS, T);  /* dP = dy vᵀ */
		sgemm(1, 0, T, hd, T, 1.0f, Pm, T, dyh, C, 1.0f, dv, 3 * C); /* dv += Pᵀ dy */
		for (int i = 0; i < T; i++) {
			float *r = dS + (size_t)i * (size_t)T;
			const float *pr = Pm + (size_t)i * (size_t)T;
			if (L > 0) { /* keys 0..last: causal, a padding prefix, or all */
				int last = j->causal && i < L ? i : L - 1;
				double s = 0;
				for (int x = 0; x <= last; x++)
					s += (double)r[x] * pr[x];
				for (int x = 0; x < T; x++)
					r[x] = x <= last ? pr[x] * (r[x] - (float)s) * j->scale : 0.0f;
				continue;
			}
			int any = 0;
			for (int x = 0; x < T && !any; x++)
				any = visible(j, km, i, x);
			double s = 0;
			for (int x = 0; x < T; x++)
				if (visible(j, km, i, x))
					s += (double)r[x] * pr[x];
			/* a query seeing nothing has constant probabilities: no gradient to q or k */
			for (int x = 0; x < T; x++)
				r[x] = any && visible(j, km, i, x) ? pr[x] * (r[x] - (float)s) * j->scale : 0.0f;
		}
		sgemm(0, 0, T, hd, T, 1.0f, dS, T, k, 3 * C, 1.0f, dq, 3 * C); /* dq += dS k */
		sgemm(1, 0, T, hd, T, 1.0f, dS, T, q, 3 * C, 1.0f, dk, 3 * C); /* dk += dSᵀ q */
	}
}

/* fused kernel or not: chosen here, on the caller's thread */
static void attention_run(nn_ctx *c, att_job *j, void (*fn)(void *, int, int), int backward)
{
	int nt = c->threads < 1 ? 1 : c->threads > 64 ? 64 : c->threads;
	j->fused = cpu_attn_fused();
	j->per = j->fused ? cpu_attn_scratch(j->T, j->hd, backward) : 2 * (size_t)j->T * (size_t)j->T;
	j->scratch = nn_scratch(c, (size_t)nt * j->per * sizeof(float));
	nn_par(c, nt, fn, j);
}

static void cpu_attention_forward(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                                  int causal)
{
	att_job j = {y, qkv, NULL, NULL, mask, NULL, B, T, C, H, C / H, causal, 1.0f / sqrtf((float)(C / H)), 0, 0};
	attention_run(c, &j, att_fwd_part, 0);
}

static void cpu_attention_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask, int B,
                                   int T, int C, int H, int causal)
{
	att_job j = {NULL, qkv, dy, dqkv, mask, NULL, B, T, C, H, C / H, causal, 1.0f / sqrtf((float)(C / H)), 0, 0};
	attention_run(c, &j, att_back_part, 1);
}

/* y += a·x, the two apart (so that it vectorizes) */
static inline void axpy(float *restrict y, const float *restrict x, float a, int n)
{
	int d = 0;
	for (; d + 8 <= n; d += 8)
		for (int u = 0; u < 8; u++)
			y[d + u] += a * x[d + u];
	for (; d < n; d++)
		y[d] += a * x[d];
}

static void cpu_attention_decode(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C,
                                 int H)
{
	int hd = C / H;
	float scale = 1.0f / sqrtf((float)hd);
	float *att = nn_scratch(c, (size_t)n * sizeof(float));
	for (int h = 0; h < H; h++) {
		const float *qh = q + (size_t)h * (size_t)hd;
		float mx = -INFINITY;
		for (int j = 0; j < n; j++) {
			const float *kj = K + (size_t)j * (size_t)ld + (size_t)h * (size_t)hd;
			/* eight partial sums, so that the products vectorize */
			float acc[8] = {0}, s = 0;
			int d = 0;
			for (; d + 8 <= hd; d += 8)
				for (int u = 0; u < 8; u++)
					acc[u] += qh[d + u] * kj[d + u];
			for (; d < hd; d++)
				s += qh[d] * kj[d];
			s += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
			att[j] = s * scale;
			mx = att[j] > mx ? att[j] : mx;
		}
		double sum = 0;
		for (int j = 0; j < n; j++) {
			att[j] = expf(att[j] - mx);
			sum += att[j];
		}
		float *yh = y + (size_t)h * (size_t)hd;
		memset(yh, 0, (size_t)hd * sizeof *yh);
		for (int j = 0; j < n; j++)
			axpy(yh, V + (size_t)j * (size_t)ld + (size_t)h * (size_t)hd, (float)(att[j] / sum), hd);
	}
}

/* --- element-wise ------------------------------------------------------------------ */

/* GELU with the exact (erf) form, and its derivative: erf by Abramowitz
 * and Stegun 7.1.26 (|error| ≤ 1.5e-7), sharing e^(-z²) with the Gaussian */
static inline __attribute__((always_inline)) float gelu_erf_parts(float x, float *grad)
{
	float z = x * 0.70710678118654752f, a = fabsf(z);
	float t = 1.0f / (1.0f + 0.3275911f * a);
	float e = exp_neg(-z * z);
	float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
	float erfa = 1.0f - poly * e, erfz = copysignf(erfa, z);
	*grad = 0.5f * (1.0f + erfz) + x * 0.3989422804014327f * e;
	return 0.5f * x * (1.0f + erfz);
}

static inline __attribute__((always_inline)) float gelu_erf(float x)
{
	float g;
	return gelu_erf_parts(x, &g);
}

static inline __attribute__((always_inline)) float gelu_erf_grad(float x)
{
	float g;
	gelu_erf_parts(x, &g);
	return g;
}

typedef struct ew_job {
	float *y;
	const float *x, *dy;
	size_t n;
	int op; /* 0 gelu tanh, 1 gelu erf, 2 tanh; +4: backward */
} ew_job;

/* O3 for its if-conversion: the element-wise loops vectorize */
INLINE void ew_range(ew_job *j, size_t lo, size_t hi)
{
	float *restrict y = j->y;
	const float *restrict x = j->x, *restrict dy = j->dy;
	switch (j->op) {
	case 0: for (size_t i = lo; i < hi; i++) y[i] = gelu_tanh(x[i]); break;
	case 1: for (size_t i = lo; i < hi; i++) y[i] = gelu_erf(x[i]); break;
	case 2: for (size_t i = lo; i < hi; i++) y[i] = tanhf(x[i]); break;
	case 4: for (size_t i = lo; i < hi; i++) y[i] += dy[i] * gelu_tanh_grad(x[i]); break;
	case 5: for (size_t i = lo; i < hi; i++) y[i] += dy[i] * gelu_erf_grad(x[i]); break;
	case 6: for (size_t i = lo; i < hi; i++) y[i] += dy[i] * (1.0f - x[i] * x[i]); break;
	}
}
VECDEF static void ew_def(ew_job *j, size_t lo, size_t hi) { ew_range(j, lo, hi); }
VEC512 static void ew_512(ew_job *j, size_t lo, size_t hi) { ew_range(j, lo, hi); }

static void ew_part(void *ud, int t, int nt)
{
	ew_job *j = ud;
	size_t lo = j->n * (size_t)t / (size_t)nt, hi = j->n * (size_t)(t + 1) / (size_t)nt;
	if (has512())
		ew_512(j, lo, hi);
	else
		ew_def(j, lo, hi);
}

static void ew_run(nn_ctx *c, float *y, const float *x, const float *dy, size_t n, int op)
{
	ew_job j = {y, x, dy, n, op};
	nn_par(c, n >= 65536 ? c->threads : 1, ew_part, &j);
}

static void cpu_gelu_forward(nn_ctx *c, float *y, const float *x, size_t n, int kind) { ew_run(c, y, x, NULL, n, kind ? 1 : 0); }
static void cpu_gelu_backward(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind)
{
	ew_run(c, dx, x, dy, n, kind ? 5 : 4);
}
static void cpu_tanh_forward(nn_ctx *c, float *y, const float *x, size_t n) { ew_run(c, y, x, NULL, n, 2); }
static void cpu_tanh_backward(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n) { ew_run(c, dx, y, dy, n, 6); }

/* --- losses ----------------------------------------------------------------------- */

typedef struct ce_job {
	const float *logits;
	float *dlogits;
	const int32_t *targets;
	int N, V;
	double count, part[64];
} ce_job;

static void ce_part(void *ud, int t, int nt)
{
	ce_job *j = ud;
	double loss = 0;
	int V = j->V;
	for (int i = j->N * t / nt; i < j->N * (t + 1) / nt; i++) {
		const float *z = j->logits + (size_t)i * (size_t)V;
		float *dz = j->dlogits ? j->dlogits + (size_t)i * (size_t)V : NULL;
		int32_t y = j->targets[i];
		if (y < 0 || y >= V || !j->count) {
			if (dz)
				memset(dz, 0, (size_t)V * sizeof *dz);
			continue;
		}
		float mx = z[0];
		for (int k = 1; k < V; k++)
			mx = z[k] > mx ? z[k] : mx;
		double s = 0;
		if (dz) {
			for (int k = 0; k < V; k++) {
				dz[k] = expf(z[k] - mx);
				s += dz[k];
			}
		} else {
			for (int k = 0; k < V; k++)
				s += expf(z[k] - mx);
		}
		loss += log(s) + mx - z[y];
		if (!dz)
			continue;
		float inv = (float)(1.0 / (s * j->count));
		for (int k = 0; k < V; k++)
			dz[k] *= inv;
		dz[y] -= (float)(1.0 / j->count);
	}
	j->part[t] = loss;
}

static double cpu_softmax_crossentropy(nn_ctx *c, float *dlogits, const float *logits, const int32_t *targets, int N,
                                       int V, double *count)
{
	ce_job j;
	j.logits = logits;
	j.dlogits = dlogits;
	j.targets = targets;
	j.N = N;
	j.V = V;
	j.count = 0;
	for (int i = 0; i < N; i++)
		j.count += targets[i] >= 0 && targets[i] < V;
	int nt = c->threads > 64 ? 64 : c->threads < 1 ? 1 : c->threads;
	if ((size_t)N * (size_t)V < 65536)
		nt = 1;
	nn_par(c, nt, ce_part, &j);
	double loss = 0;
	for (int t = 0; t < nt; t++)
		loss += j.part[t];
	if (count)
		*count = j.count;
	return j.count ? loss / j.count : 0;
}

static double cpu_bce_logits(nn_ctx *c, float *dlogits, const float *logits, const float *labels, const uint8_t *lmask,
                             size_t n, double *count)
{
	(void)c;
	double cnt = 0, loss = 0;
	for (size_t i = 0; i < n; i++)
		cnt += !lmask || lmask[i];
	for (size_t i = 0; i < n; i++) {
		int on = (!lmask || lmask[i]) && cnt > 0;
		double z = logits[i], y = on ? labels[i] : 0;
		/* log(1 + e^-|z|) + max(z, 0) - z·y: stable for either sign */
		if (on)
			loss += log1p(exp(-fabs(z))) + (z > 0 ? z : 0) - z * y;
		if (dlogits)
			dlogits[i] = on ? (float)((1.0 / (1.0 + exp(-z)) - y) / cnt) : 0.0f;
	}
	if (count)
		*count = cnt;
	return cnt ? loss / cnt : 0;
}

static double cpu_mse(nn_ctx *c, float *dpred, const float *pred, const float *target, const uint8_t *lmask, size_t n,
                      double *count)
{
	(void)c;
	double cnt = 0, loss = 0;
	for (size_t i = 0; i < n; i++)
		cnt += !lmask || lmask[i];
	for (size_t i = 0; i < n; i++) {
		int on = (!lmask || lmask[i]) && cnt > 0;
		double d = on ? (double)pred[i] - target[i] : 0;
		loss += d * d;
		if (dpred)
			dpred[i] = on ? (float)(2 * d / cnt) : 0.0f;
	}
	if (count)
		*count = cnt;
	return cnt ? loss / cnt : 0;
}

/* --- dropout ---------------------------------------------------------------------- */

static void cpu_dropout_forward(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		y[i] = p > 0 && seed ? x[i] * nn_dropout_keep(seed, stream, i, p) : x[i];
}

static void cpu_dropout_backward(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		dx[i] += p > 0 && seed ? dy[i] * nn_dropout_keep(seed, stream, i, p) : dy[i];
}

/* rope, SwiGLU and kv_expand: the host loops over rows split between threads */
typedef struct rows_job {
	float *o;
	const float *a, *b;
	const uint32_t *pos;
	int N, ld, nh, D, inv, H, Hk, kind;
} rows_job;

static void rows_part(void *ud, int t, int nt)
{
	rows_job *j = ud;
	int r0 = (int)((long long)j->N * t / nt), r1 = (int)((long long)j->N * (t + 1) / nt);
	switch (j->kind) {
	case 0: nn_rope_rows(j->o, j->pos, j->a, r0, r1, j->ld, j->nh, j->D, j->inv); break;
	case 1: nn_swiglu_rows(j->o, j->a, r0, r1, j->D); break;
	case 2: nn_swiglu_back_rows(j->o, j->a, j->b, r0, r1, j->D); break;
	case 3: nn_kv_expand_rows(j->o, j->a, r0, r1, j->H, j->Hk, j->D); break;
	default: nn_kv_expand_back_rows(j->o, j->a, r0, r1, j->H, j->Hk, j->D); break;
	}
}

static void rows_run(nn_ctx *c, rows_job *j, size_t work) { nn_par(c, j->N >= 64 ? split_for(c, work) : 1, rows_part, j); }

static void cpu_rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse)
{
	rows_job j = {x, cs, NULL, pos, N, ld, nh, D, inverse, 0, 0, 0};
	rows_run(c, &j, (size_t)N * (size_t)nh * (size_t)D);
}

static void cpu_swiglu_forward(nn_ctx *c, float *h, const float *gu, int N, int I)
{
	rows_job j = {h, gu, NULL, NULL, N, 0, 0, I, 0, 0, 0, 1};
	rows_run(c, &j, (size_t)N * (size_t)I);
}

static void cpu_swiglu_backward(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I)
{
	rows_job j = {dgu, dh, gu, NULL, N, 0, 0, I, 0, 0, 0, 2};
	rows_run(c, &j, (size_t)N * (size_t)I);
}

static void cpu_kv_expand_forward(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D)
{
	rows_job j = {out, in, NULL, NULL, N, 0, 0, D, 0, H, Hk, 3};
	rows_run(c, &j, (size_t)N * 3 * (size_t)H * (size_t)D);
}

static void cpu_kv_expand_backward(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D)
{
	rows_job j = {din, dout, NULL, NULL, N, 0, 0, D, 0, H, Hk, 4};
	rows_run(c, &j, (size_t)N * 3 * (size_t)H * (size_t)D);
}

static double cpu_sumsq(nn_ctx *c, const float *x, size_t n) { return grad_sumsq(x, n, c->threads); }

static void cpu_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                      float wd, long long t, float gscale)
{
	adamw_cfg ac = {b1, b2, eps, wd};
	adamw_step(&ac, lr, t, gscale, p, g, m, v, n, c->threads);
}

const nn_ops nn_cpu = {
	"cpu", NULL, NULL,
	cpu_alloc, cpu_free, cpu_zero, cpu_copy, cpu_copy, cpu_copy,
	cpu_matmul,
	cpu_linear_forward, cpu_linear_backward,
	cpu_embedding_forward, cpu_embedding_backward,
	cpu_layernorm_forward, cpu_layernorm_backward,
	cpu_rmsnorm_forward, cpu_rmsnorm_backward,
	cpu_attention_forward, cpu_attention_backward, cpu_attention_decode,
	cpu_gelu_forward, cpu_gelu_backward,
	cpu_tanh_forward, cpu_tanh_backward,
	cpu_softmax_crossentropy, cpu_bce_logits, cpu_mse,
	cpu_dropout_forward, cpu_dropout_backward,
	cpu_rope, cpu_swiglu_forward, cpu_swiglu_backward, cpu_kv_expand_forward, cpu_kv_expand_backward,
	cpu_sumsq, cpu_adamw,
	NULL, NULL, /* no fused attention: backward computes the probabilities again */
	NULL,
};
