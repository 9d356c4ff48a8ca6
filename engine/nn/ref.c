/*
 * The plain reference of every layer in nn.h: one loop nest each, sums in
 * double, one thread, no BLAS. Only the tests use it (tests/unit/test_nn.c
 * holds the CPU backend to it, and it to PyTorch's fixtures).
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ml/optim.h"
#include "../util.h"

static void *ref_alloc(nn_ctx *c, size_t n) { (void)c; return xcalloc(n ? n : 1, 1); }
static void ref_free(nn_ctx *c, void *p) { (void)c; free(p); }
static void ref_zero(nn_ctx *c, void *p, size_t n) { (void)c; memset(p, 0, n); }
static void ref_copy(nn_ctx *c, void *d, const void *s, size_t n) { (void)c; if (d != s) memmove(d, s, n); }

static void ref_matmul(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *cm, int ldc)
{
	(void)c;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int q = 0; q < k; q++)
				s += (double)(ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q]) *
				     (tb ? b[(size_t)j * ldb + q] : b[(size_t)q * ldb + j]);
			float *o = &cm[(size_t)i * ldc + j];
			*o = (float)(alpha * s + (beta != 0 ? (double)beta * *o : 0));
		}
}

/* W's element for input i, output o */
static inline float wat(const float *w, int layout, int in, int out, int i, int o)
{
	return layout == NN_W_IN_OUT ? w[(size_t)i * out + o] : w[(size_t)o * in + i];
}

static void ref_linear_forward(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int in,
                               int out, int layout, int acc)
{
	(void)c;
	for (int r = 0; r < N; r++)
		for (int o = 0; o < out; o++) {
			double s = acc ? y[(size_t)r * out + o] : 0;
			for (int i = 0; i < in; i++)
				s += (double)x[(size_t)r * in + i] * wat(w, layout, in, out, i, o);
			y[(size_t)r * out + o] = (float)(s + (b ? b[o] : 0));
		}
}

static void ref_linear_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                const float *w, int N, int in, int out, int layout)
{
	(void)c;
	for (int i = 0; i < in && dw; i++)
		for (int o = 0; o < out; o++) {
			double s = 0;
			for (int r = 0; r < N; r++)
				s += (double)x[(size_t)r * in + i] * dy[(size_t)r * out + o];
			dw[layout == NN_W_IN_OUT ? (size_t)i * out + o : (size_t)o * in + i] += (float)s;
		}
	for (int o = 0; o < out && db; o++) {
		double s = 0;
		for (int r = 0; r < N; r++)
			s += dy[(size_t)r * out + o];
		db[o] += (float)s;
	}
	for (int r = 0; r < N && dx; r++)
		for (int i = 0; i < in; i++) {
			double s = 0;
			for (int o = 0; o < out; o++)
				s += (double)dy[(size_t)r * out + o] * wat(w, layout, in, out, i, o);
			dx[(size_t)r * in + i] += (float)s;
		}
}

static void ref_embedding_forward(nn_ctx *c, float *out, const uint32_t *ids, const float *t, int N, int C, int V, int acc)
{
	(void)c;
	for (int r = 0; r < N; r++)
		for (int k = 0; k < C; k++) {
			uint32_t id = ids[r] < (uint32_t)V ? ids[r] : 0;
			out[(size_t)r * C + k] = (acc ? out[(size_t)r * C + k] : 0) + t[(size_t)id * C + k];
		}
}

static void ref_embedding_backward(nn_ctx *c, float *dt, const uint32_t *ids, const float *dout, int N, int C, int V)
{
	(void)c;
	for (int r = 0; r < N; r++)
		for (int k = 0; k < C; k++)
			dt[(size_t)(ids[r] < (uint32_t)V ? ids[r] : 0) * C + k] += dout[(size_t)r * C + k];
}

static void ref_layernorm_forward(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                                  const float *b, int N, int C, float eps)
{
	(void)c;
	for (int r = 0; r < N; r++) {
		const float *xr = x + (size_t)r * C;
		double mu = 0, var = 0;
		for (int k = 0; k < C; k++)
			mu += xr[k];
		mu /= C;
		for (int k = 0; k < C; k++)
			var += (xr[k] - mu) * (xr[k] - mu);
		double rs = 1 / sqrt(var / C + eps);
		for (int k = 0; k < C; k++)
			out[(size_t)r * C + k] = (float)((xr[k] - mu) * rs * w[k] + b[k]);
		mean[r] = (float)mu;
		rstd[r] = (float)rs;
	}
}

static void ref_layernorm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, int N, int C)
{
	(void)c;
	for (int r = 0; r < N; r++) {
		const float *xr = x + (size_t)r * C, *g = dy + (size_t)r * C;
		double a = 0, bb = 0;
		for (int k = 0; k < C; k++) {
			double xh = (xr[k] - mean[r]) * (double)rstd[r];
			a += (double)g[k] * w[k];
			bb += (double)g[k] * w[k] * xh;
			if (dw) {
				dw[k] += (float)(g[k] * xh);
				db[k] += g[k];
			}
		}
		for (int k = 0; k < C; k++) {
			double xh = (xr[k] - mean[r]) * (double)rstd[r];
			dx[(size_t)r * C + k] += (float)(rstd[r] * ((double)g[k] * w[k] - a / C - xh * bb / C));
		}
	}
}

static void ref_rmsnorm_forward(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
	(void)c;
	for (int r = 0; r < N; r++) {
		double ss = 0;
		for (int k = 0; k < C; k++)
			ss += (double)x[(size_t)r * C + k] * x[(size_t)r * C + k];
		double rs = 1 / sqrt(ss / C + eps);
		for (int k = 0; k < C; k++)
			out[(size_t)r * C + k] = (float)(x[(size_t)r * C + k] * rs * w[k]);
		rstd[r] = (float)rs;
	}
}

static void ref_rmsnorm_backward(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                                 const float *rstd, int N, int C)
{
	(void)c;
	for (int r = 0; r < N; r++) {
		const float *xr = x + (size_t)r * C, *g = dy + (size_t)r * C;
		double rs = rstd[r], a = 0;
		for (int k = 0; k < C; k++) {
			a += (double)g[k] * w[k] * xr[k] * rs;
			if (dw)
				dw[k] += (float)(g[k] * xr[k] * rs);
		}
		for (int k = 0; k < C; k++)
			dx[(size_t)r * C + k] += (float)(rs * ((double)g[k] * w[k] - xr[k] * rs * a / C));
	}
}

static int vis(const uint8_t *mask, int causal, int b, int T, int i, int x)
{
	return (!causal || x <= i) && (!mask || mask[(size_t)b * T + x]);
}

/* probabilities of one (b, h) in double: P [T × T] */
static void ref_probs(double *P, const float *qkv, const uint8_t *mask, int b, int h, int T, int C, int H, int causal)
{
	int hd = C / H;
	double sc = 1 / sqrt((double)hd);
	for (int i = 0; i < T; i++) {
		double mx = -INFINITY, s = 0;
		int any = 0;
		for (int x = 0; x < T; x++) {
			double d = 0;
			for (int q = 0; q < hd; q++)
				d += (double)qkv[((size_t)b * T + i) * 3 * C + (size_t)h * hd + q] *
				     qkv[((size_t)b * T + x) * 3 * C + C + (size_t)h * hd + q];
			P[(size_t)i * T + x] = d * sc;
			if (vis(mask, causal, b, T, i, x)) {
				any = 1;
				mx = P[(size_t)i * T + x] > mx ? P[(size_t)i * T + x] : mx;
			}
		}
		for (int x = 0; x < T; x++) {
			double e = !any ? 1 : vis(mask, causal, b, T, i, x) ? exp(P[(size_t)i * T + x] - mx) : 0;
			P[(size_t)i * T + x] = e;
			s += e;
		}
		for (int x = 0; x < T; x++)
			P[(size_t)i * T + x] /= s;
	}
}

static void ref_attention_forward(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                                  int causal)
{
	(void)c;
	int hd = C / H;
	double *P = xmalloc((size_t)T * T * sizeof *P);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			ref_probs(P, qkv, mask, b, h, T, C, H, causal);
			for (int i = 0; i < T; i++)
				for (int q = 0; q < hd; q++) {
					double s = 0;
					for (int x = 0; x < T; x++)
						s += P[(size_t)i * T + x] * qkv[((size_t)b * T + x) * 3 * C + 2 * C + (size_t)h * hd + q];
					y[((size_t)b * T + i) * C + (size_t)h * hd + q] = (float)s;
				}
		}
	free(P);
}

static void ref_attention_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask, int B,
                                   int T, int C, int H, int causal)
{
	(void)c;
	int hd = C / H;
	double sc = 1 / sqrt((double)hd);
	double *P = xmalloc((size_t)T * T * sizeof *P), *dP = xmalloc((size_t)T * T * sizeof *dP);
#define Q(b, t, q) qkv[((size_t)(b) * T + (t)) * 3 * C + (size_t)h * hd + (q)]
#define K(b, t, q) qkv[((size_t)(b) * T + (t)) * 3 * C + C + (size_t)h * hd + (q)]
#define VV(b, t, q) qkv[((size_t)(b) * T + (t)) * 3 * C + 2 * C + (size_t)h * hd + (q)]
#define D(b, t, q, part) dqkv[((size_t)(b) * T + (t)) * 3 * C + (size_t)(part) * C + (size_t)h * hd + (q)]
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			ref_probs(P, qkv, mask, b, h, T, C, H, causal);
			for (int i = 0; i < T; i++) {
				int any = 0;
				for (int x = 0; x < T; x++)
					any |= vis(mask, causal, b, T, i, x);
				double s = 0;
				for (int x = 0; x < T; x++) {
					double d = 0;
					for (int q = 0; q < hd; q++)
						d += (double)dy[((size_t)b * T + i) * C + (size_t)h * hd + q] * VV(b, x, q);
					dP[(size_t)i * T + x] = d;
					s += d * P[(size_t)i * T + x];
				}
				for (int x = 0; x < T; x++)
					dP[(size_t)i * T + x] = any ? P[(size_t)i * T + x] * (dP[(size_t)i * T + x] - s) * sc : 0;
			}
			for (int t = 0; t < T; t++)
				for (int q = 0; q < hd; q++) {
					double dq = 0, dk = 0, dv = 0;
					for (int x = 0; x < T; x++) {
						dq += dP[(size_t)t * T + x] * K(b, x, q);
						dk += dP[(size_t)x * T + t] * Q(b, x, q);
						dv += P[(size_t)x * T + t] * dy[((size_t)b * T + x) * C + (size_t)h * hd + q];
					}
					D(b, t, q, 0) += (float)dq;
					D(b, t, q, 1) += (float)dk;
					D(b, t, q, 2) += (float)dv;
				}
		}
#undef Q
#undef K
#undef VV
#undef D
	free(P);
	free(dP);
}

static void ref_attention_decode(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C,
                                 int H)
{
	(void)c;
	int hd = C / H;
	double *p = xmalloc((size_t)n * sizeof *p);
	for (int h = 0; h < H; h++) {
		double mx = -INFINITY, s = 0;
		for (int j = 0; j < n; j++) {
			double d = 0;
			for (int k = 0; k < hd; k++)
				d += (double)q[h * hd + k] * K[(size_t)j * ld + (size_t)h * hd + k];
			p[j] = d / sqrt((double)hd);
			mx = p[j] > mx ? p[j] : mx;
		}
		for (int j = 0; j < n; j++)
			s += (p[j] = exp(p[j] - mx));
		for (int k = 0; k < hd; k++) {
			double acc = 0;
			for (int j = 0; j < n; j++)
				acc += p[j] / s * V[(size_t)j * ld + (size_t)h * hd + k];
			y[h * hd + k] = (float)acc;
		}
	}
	free(p);
}

static double gelu_d(double z, int kind, int grad)
{
	if (kind == NN_GELU_ERF)
		return grad ? 0.5 * (1 + erf(z / sqrt(2))) + z * exp(-0.5 * z * z) / sqrt(2 * M_PI) : 0.5 * z * (1 + erf(z / sqrt(2)));
	double k = sqrt(2 / M_PI), u = k * (z + 0.044715 * z * z * z), t = tanh(u);
	return grad ? 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z) : 0.5 * z * (1 + t);
}

static void ref_gelu_forward(nn_ctx *c, float *y, const float *x, size_t n, int kind)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		y[i] = (float)gelu_d(x[i], kind, 0);
}

static void ref_gelu_backward(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		dx[i] += (float)(dy[i] * gelu_d(x[i], kind, 1));
}

static void ref_tanh_forward(nn_ctx *c, float *y, const float *x, size_t n)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		y[i] = (float)tanh(x[i]);
}

static void ref_tanh_backward(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		dx[i] += (float)(dy[i] * (1 - (double)y[i] * y[i]));
}

static double ref_ce(nn_ctx *c, float *dl, const float *z, const int32_t *tg, int N, int V, double *count)
{
	(void)c;
	double cnt = 0, loss = 0;
	for (int r = 0; r < N; r++)
		cnt += tg[r] >= 0 && tg[r] < V;
	for (int r = 0; r < N; r++) {
		const float *zr = z + (size_t)r * V;
		int on = tg[r] >= 0 && tg[r] < V;
		double mx = zr[0], s = 0;
		for (int k = 1; k < V; k++)
			mx = zr[k] > mx ? zr[k] : mx;
		for (int k = 0; k < V; k++)
			s += exp(zr[k] - mx);
		if (on)
			loss += log(s) + mx - zr[tg[r]];
		for (int k = 0; k < V && dl; k++)
			dl[(size_t)r * V + k] = on ? (float)((exp(zr[k] - mx) / s - (k == tg[r])) / cnt) : 0.0f;
	}
	if (count)
		*count = cnt;
	return cnt ? loss / cnt : 0;
}

static double ref_bce(nn_ctx *c, float *dl, const float *z, const float *y, const uint8_t *m, size_t n, double *count)
{
	(void)c;
	double cnt = 0, loss = 0;
	for (size_t i = 0; i < n; i++)
		cnt += !m || m[i];
	for (size_t i = 0; i < n; i++) {
		int on = !m || m[i];
		double p = 1 / (1 + exp(-(double)z[i]));
		if (on)
			loss -= y[i] * log(p) + (1 - y[i]) * log(1 - p);
		if (dl)
			dl[i] = on ? (float)((p - y[i]) / cnt) : 0.0f;
	}
	if (count)
		*count = cnt;
	return cnt ? loss / cnt : 0;
}

static double ref_mse(nn_ctx *c, float *dp, const float *p, const float *t, const uint8_t *m, size_t n, double *count)
{
	(void)c;
	double cnt = 0, loss = 0;
	for (size_t i = 0; i < n; i++)
		cnt += !m || m[i];
	for (size_t i = 0; i < n; i++) {
		int on = !m || m[i];
		double d = (double)p[i] - t[i];
		if (on)
			loss += d * d;
		if (dp)
			dp[i] = on ? (float)(2 * d / cnt) : 0.0f;
	}
	if (count)
		*count = cnt;
	return cnt ? loss / cnt : 0;
}

static void ref_dropout_forward(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		y[i] = p > 0 && seed ? x[i] * nn_dropout_keep(seed, stream, i, p) : x[i];
}

static void ref_dropout_backward(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		dx[i] += p > 0 && seed ? dy[i] * nn_dropout_keep(seed, stream, i, p) : dy[i];
}

static double ref_sumsq(nn_ctx *c, const float *x, size_t n)
{
	(void)c;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return s;
}

static void ref_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                      float wd, long long t, float gscale)
{
	(void)c;
	adamw_cfg ac = {b1, b2, eps, wd};
	adamw_step(&ac, lr, t, gscale, p, g, m, v, n, 1);
}

static void ref_rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse)
{
	(void)c;
	nn_rope_rows(x, pos, cs, 0, N, ld, nh, D, inverse);
}
static void ref_swiglu_forward(nn_ctx *c, float *h, const float *gu, int N, int I)
{
	(void)c;
	nn_swiglu_rows(h, gu, 0, N, I);
}
static void ref_swiglu_backward(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I)
{
	(void)c;
	nn_swiglu_back_rows(dgu, dh, gu, 0, N, I);
}
static void ref_kv_expand_forward(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D)
{
	(void)c;
	nn_kv_expand_rows(out, in, 0, N, H, Hk, D);
}
static void ref_kv_expand_backward(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D)
{
	(void)c;
	nn_kv_expand_back_rows(din, dout, 0, N, H, Hk, D);
}

const nn_ops nn_ref = {
	"ref", NULL, NULL,
	ref_alloc, ref_free, ref_zero, ref_copy, ref_copy, ref_copy,
	ref_matmul,
	ref_linear_forward, ref_linear_backward,
	ref_embedding_forward, ref_embedding_backward,
	ref_layernorm_forward, ref_layernorm_backward,
	ref_rmsnorm_forward, ref_rmsnorm_backward,
	ref_attention_forward, ref_attention_backward, ref_attention_decode,
	ref_gelu_forward, ref_gelu_backward,
	ref_tanh_forward, ref_tanh_backward,
	ref_ce, ref_bce, ref_mse,
	ref_dropout_forward, ref_dropout_backward,
	ref_rope, ref_swiglu_forward, ref_swiglu_backward, ref_kv_expand_forward, ref_kv_expand_backward,
	ref_sumsq, ref_adamw,
	NULL, NULL, NULL,
};
