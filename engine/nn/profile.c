/*
 * HONE_PROFILE=1: every call through a backend's table timed (the device
 * waited for before and after each), and the totals per layer function
 * printed to stderr at exit, most expensive first. A developer's tool: the
 * waits make the run slower, and the shares are what matter.
 */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"

static const nn_ops *in; /* the backend measured */
static nn_ops prof;

enum {
	P_ALLOC, P_FREE, P_ZERO, P_COPY, P_UPLOAD, P_DOWNLOAD, P_MATMUL, P_LINF, P_LINB, P_EMBF, P_EMBB, P_LNF, P_LNB, P_RMSF,
	P_RMSB, P_ATTF, P_ATTB, P_ATTD, P_GELUF, P_GELUB, P_TANHF, P_TANHB, P_CE, P_BCE, P_MSE, P_DROPF, P_DROPB, P_SUMSQ,
	P_ADAMW, P_ROPE, P_SWF, P_SWB, P_KVF, P_KVB, P_N
};
static const char *const pname[P_N] = {
	"alloc", "free", "zero", "copy", "upload", "download", "matmul", "linear_forward", "linear_backward",
	"embedding_forward", "embedding_backward", "layernorm_forward", "layernorm_backward", "rmsnorm_forward",
	"rmsnorm_backward", "attention_forward", "attention_backward", "attention_decode", "gelu_forward", "gelu_backward",
	"tanh_forward", "tanh_backward", "softmax_crossentropy", "bce_logits", "mse", "dropout_forward", "dropout_backward",
	"sumsq", "adamw", "rope", "swiglu_forward", "swiglu_backward", "kv_expand_forward", "kv_expand_backward"};
static double tsum[P_N];
static long ncall[P_N];

static void wait_dev(nn_ctx *c)
{
	if (!nn_on_host(in))
		in->download(c, NULL, NULL, 0); /* a device backend: waits for its queue */
}

#define T0(k)                                                                                                           \
	wait_dev(c);                                                                                                        \
	double t0_ = now_seconds();                                                                                         \
	int k_ = (k)
#define T1()                                                                                                            \
	wait_dev(c);                                                                                                        \
	tsum[k_] += now_seconds() - t0_;                                                                                    \
	ncall[k_]++

static void *p_alloc(nn_ctx *c, size_t n) { T0(P_ALLOC); void *p = in->alloc(c, n); T1(); return p; }
static void p_free(nn_ctx *c, void *p) { T0(P_FREE); in->free(c, p); T1(); }
static void p_zero(nn_ctx *c, void *p, size_t n) { T0(P_ZERO); in->zero(c, p, n); T1(); }
static void p_copy(nn_ctx *c, void *d, const void *s, size_t n) { T0(P_COPY); in->copy(c, d, s, n); T1(); }
static void p_upload(nn_ctx *c, void *d, const void *s, size_t n) { T0(P_UPLOAD); in->upload(c, d, s, n); T1(); }
static void p_download(nn_ctx *c, void *d, const void *s, size_t n) { T0(P_DOWNLOAD); in->download(c, d, s, n); T1(); }
static void p_matmul(nn_ctx *c, int ta, int tb, int m, int n, int k, float al, const float *a, int lda, const float *b,
                     int ldb, float be, float *cm, int ldc)
{
	T0(P_MATMUL);
	in->matmul(c, ta, tb, m, n, k, al, a, lda, b, ldb, be, cm, ldc);
	T1();
}
static void p_linf(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int i, int o, int l, int a)
{
	T0(P_LINF);
	in->linear_forward(c, y, x, w, b, N, i, o, l, a);
	T1();
}
static void p_linb(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int N,
                   int i, int o, int l)
{
	T0(P_LINB);
	in->linear_backward(c, dx, dw, db, dy, x, w, N, i, o, l);
	T1();
}
static void p_embf(nn_ctx *c, float *o, const uint32_t *ids, const float *t, int N, int C, int V, int a)
{
	T0(P_EMBF);
	in->embedding_forward(c, o, ids, t, N, C, V, a);
	T1();
}
static void p_embb(nn_ctx *c, float *dt, const uint32_t *ids, const float *d, int N, int C, int V)
{
	T0(P_EMBB);
	in->embedding_backward(c, dt, ids, d, N, C, V);
	T1();
}
static void p_lnf(nn_ctx *c, float *o, float *m, float *r, const float *x, const float *w, const float *b, int N, int C,
                  float e)
{
	T0(P_LNF);
	in->layernorm_forward(c, o, m, r, x, w, b, N, C, e);
	T1();
}
static void p_lnb(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                  const float *m, const float *r, int N, int C)
{
	T0(P_LNB);
	in->layernorm_backward(c, dx, dw, db, dy, x, w, m, r, N, C);
	T1();
}
static void p_rmsf(nn_ctx *c, float *o, float *r, const float *x, const float *w, int N, int C, float e)
{
	T0(P_RMSF);
	in->rmsnorm_forward(c, o, r, x, w, N, C, e);
	T1();
}
static void p_rmsb(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w, const float *r,
                   int N, int C)
{
	T0(P_RMSB);
	in->rmsnorm_backward(c, dx, dw, dy, x, w, r, N, C);
	T1();
}
static void p_attf(nn_ctx *c, float *y, const float *qkv, const uint8_t *m, int B, int T, int C, int H, int cz)
{
	T0(P_ATTF);
	in->attention_forward(c, y, qkv, m, B, T, C, H, cz);
	T1();
}
static void p_attb(nn_ctx *c, float *d, const float *dy, const float *qkv, const uint8_t *m, int B, int T, int C, int H,
                   int cz)
{
	T0(P_ATTB);
	in->attention_backward(c, d, dy, qkv, m, B, T, C, H, cz);
	T1();
}
static void p_attd(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C, int H)
{
	T0(P_ATTD);
	in->attention_decode(c, y, q, K, V, ld, n, C, H);
	T1();
}
static void p_geluf(nn_ctx *c, float *y, const float *x, size_t n, int k) { T0(P_GELUF); in->gelu_forward(c, y, x, n, k); T1(); }
static void p_gelub(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int k)
{
	T0(P_GELUB);
	in->gelu_backward(c, dx, dy, x, n, k);
	T1();
}
static void p_tanhf(nn_ctx *c, float *y, const float *x, size_t n) { T0(P_TANHF); in->tanh_forward(c, y, x, n); T1(); }
static void p_tanhb(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n)
{
	T0(P_TANHB);
	in->tanh_backward(c, dx, dy, y, n);
	T1();
}
static double p_ce(nn_ctx *c, float *dl, const float *z, const int32_t *t, int N, int V, double *cnt)
{
	T0(P_CE);
	double r = in->softmax_crossentropy(c, dl, z, t, N, V, cnt);
	T1();
	return r;
}
static double p_bce(nn_ctx *c, float *dl, const float *z, const float *y, const uint8_t *m, size_t n, double *cnt)
{
	T0(P_BCE);
	double r = in->bce_logits(c, dl, z, y, m, n, cnt);
	T1();
	return r;
}
static double p_mse(nn_ctx *c, float *dp, const float *p, const float *t, const uint8_t *m, size_t n, double *cnt)
{
	T0(P_MSE);
	double r = in->mse(c, dp, p, t, m, n, cnt);
	T1();
	return r;
}
static void p_dropf(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t s, uint64_t st)
{
	T0(P_DROPF);
	in->dropout_forward(c, y, x, n, p, s, st);
	T1();
}
static void p_dropb(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t s, uint64_t st)
{
	T0(P_DROPB);
	in->dropout_backward(c, dx, dy, n, p, s, st);
	T1();
}
static void p_rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inv)
{
	T0(P_ROPE);
	in->rope(c, x, pos, cs, N, ld, nh, D, inv);
	T1();
}
static void p_swf(nn_ctx *c, float *h, const float *gu, int N, int I)
{
	T0(P_SWF);
	in->swiglu_forward(c, h, gu, N, I);
	T1();
}
static void p_swb(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I)
{
	T0(P_SWB);
	in->swiglu_backward(c, dgu, dh, gu, N, I);
	T1();
}
static void p_kvf(nn_ctx *c, float *o, const float *i, int N, int H, int Hk, int D)
{
	T0(P_KVF);
	in->kv_expand_forward(c, o, i, N, H, Hk, D);
	T1();
}
static void p_kvb(nn_ctx *c, float *di, const float *d, int N, int H, int Hk, int D)
{
	T0(P_KVB);
	in->kv_expand_backward(c, di, d, N, H, Hk, D);
	T1();
}
static double p_sumsq(nn_ctx *c, const float *x, size_t n)
{
	T0(P_SUMSQ);
	double r = in->sumsq(c, x, n);
	T1();
	return r;
}
static void p_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float e,
                    float wd, long long t, float gs)
{
	T0(P_ADAMW);
	in->adamw(c, p, g, m, v, n, lr, b1, b2, e, wd, t, gs);
	T1();
}
static void p_attfl(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *m, int B, int T, int C, int H, int cz)
{
	T0(P_ATTF);
	in->attention_forward_lse(c, y, lse, qkv, m, B, T, C, H, cz);
	T1();
}
static void p_attbl(nn_ctx *c, float *d, const float *dy, const float *qkv, const float *y, const float *lse,
                    const uint8_t *m, int B, int T, int C, int H, int cz)
{
	T0(P_ATTB);
	in->attention_backward_lse(c, d, dy, qkv, y, lse, m, B, T, C, H, cz);
	T1();
}

static void report(void)
{
	double all = 0;
	for (int k = 0; k < P_N; k++)
		all += tsum[k];
	int order[P_N];
	for (int k = 0; k < P_N; k++)
		order[k] = k;
	for (int i = 0; i < P_N; i++)
		for (int j = i + 1; j < P_N; j++)
			if (tsum[order[j]] > tsum[order[i]]) {
				int t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
	fprintf(stderr, "hone profile (%s): %.3f s in the layer functions\n", in->name, all);
	for (int i = 0; i < P_N && tsum[order[i]] > 0; i++)
		fprintf(stderr, "  %-22s %9.3f ms %5.1f%%  %7ld calls\n", pname[order[i]], tsum[order[i]] * 1e3,
		        all > 0 ? 100 * tsum[order[i]] / all : 0, ncall[order[i]]);
}

const nn_ops *nn_profiled(const nn_ops *ops)
{
	if (in)
		return in == ops ? &prof : ops; /* one backend measured per process */
	in = ops;
	prof = (nn_ops){ops->name, ops->init, ops->fini, p_alloc, p_free, p_zero, p_copy, p_upload, p_download, p_matmul,
	                p_linf, p_linb, p_embf, p_embb, p_lnf, p_lnb, p_rmsf, p_rmsb, p_attf, p_attb, p_attd, p_geluf,
	                p_gelub, p_tanhf, p_tanhb, p_ce, p_bce, p_mse, p_dropf, p_dropb, p_rope, p_swf, p_swb, p_kvf, p_kvb,
	                p_sumsq, p_adamw,
	                ops->attention_forward_lse ? p_attfl : NULL, ops->attention_backward_lse ? p_attbl : NULL,
	                ops->peak_bytes};
	atexit(report);
	return &prof;
}
