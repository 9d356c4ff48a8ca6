/*
 * nn — the layer library: one function per layer and direction, shared by
 * every architecture (engine/models/), reached through one backend table so
 * that another device can provide the same functions over its own memory.
 *
 * Conventions (llm.c's):
 *   - arguments are outputs, then inputs, then sizes;
 *   - activations are row-major, N rows (N = B·T tokens) of C floats;
 *   - forward writes its outputs; backward ADDS into every gradient it is
 *     given (parameters and inputs alike) — the caller zeroes them once.
 *     A NULL parameter gradient means "frozen": it is neither computed nor
 *     written. The one exception is softmax_crossentropy, whose dlogits is
 *     the start of backward and is written;
 *   - weights of a linear layer come in one of two layouts, as the
 *     checkpoint stores them: NN_W_IN_OUT (GPT-2's Conv1D, [in, out]) or
 *     NN_W_OUT_IN (torch.nn.Linear, [out, in]).
 *
 * The backend seam. A model never calls OpenBLAS (or CUDA): it calls the
 * wrappers below, which go through ctx->ops. A backend provides every entry
 * of nn_ops, and every pointer it receives is memory it allocated itself
 * (ops->alloc): parameters, activations, gradients and scratch all live on
 * the backend's device. What the caller owns: the model's parameter arena
 * and the workspace (activations, gradients), allocated with nn_alloc and
 * freed with nn_free. What the backend owns: its scratch (ctx->scratch, e.g.
 * one head's T×T attention probabilities per thread), grown on demand and
 * freed by nn_ctx_free. Token ids, targets and masks are backend memory too:
 * the model copies them in once per batch (nn_upload; a plain copy on the
 * CPU). Reductions are done in a fixed order: the same inputs give the same
 * bits for any thread count (and, on a GPU, from run to run).
 *
 * engine/nn/cpu/cpu.c is the CPU backend (OpenBLAS sgemm split over our own
 * threads); engine/nn/ref.c holds the plain reference of every layer, used by
 * the tests only; engine/nn/cuda/ is the CUDA backend, built apart (make
 * cuda) into a library that nn_backend loads when a run asks for it.
 *
 * Ownership: an nn_ctx is made by the caller (nn_ctx_init) and owns only its
 * scratch.
 */
#ifndef HONE_NN_H
#define HONE_NN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum { NN_W_IN_OUT = 0, NN_W_OUT_IN = 1 };
enum { NN_GELU_TANH = 0, NN_GELU_ERF = 1 };

typedef struct nn_ctx nn_ctx;

typedef struct nn_ops {
	const char *name; /* "cpu", "ref", "cuda" */
	/* the backend's per-context state in c->dev (NULL: none needed) */
	void (*init)(nn_ctx *c);
	void (*fini)(nn_ctx *c);
	void *(*alloc)(nn_ctx *c, size_t bytes);       /* zeroed */
	void (*free)(nn_ctx *c, void *p);
	void (*zero)(nn_ctx *c, void *p, size_t bytes);
	void (*copy)(nn_ctx *c, void *dst, const void *src, size_t bytes); /* device to device */
	void (*upload)(nn_ctx *c, void *dst, const void *host, size_t bytes);
	void (*download)(nn_ctx *c, void *host, const void *src, size_t bytes);

	/* C[m×n] = alpha·op(A)·op(B) + beta·C, row-major, row strides as stored */
	void (*matmul)(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	               const float *b, int ldb, float beta, float *cm, int ldc);
	/* y[N, out] = (acc ? y : 0) + x[N, in] · W (+ b) */
	void (*linear_forward)(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int in, int out,
	                       int layout, int acc);
	/* dx += dy · Wᵀ; dw += (x, dy) product in W's layout; db += Σ dy */
	void (*linear_backward)(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
	                        int N, int in, int out, int layout);
	/* out[i] = (acc ? out[i] : 0) + table[ids[i]] (ids out of range read row 0) */
	void (*embedding_forward)(nn_ctx *c, float *out, const uint32_t *ids, const float *table, int N, int C, int V, int acc);
	void (*embedding_backward)(nn_ctx *c, float *dtable, const uint32_t *ids, const float *dout, int N, int C, int V);
	/* out = (x - mean) · rstd · w + b per row; mean, rstd [N] kept for backward */
	void (*layernorm_forward)(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
	                          const float *b, int N, int C, float eps);
	void (*layernorm_backward)(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
	                           const float *w, const float *mean, const float *rstd, int N, int C);
	/* out = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps) (Llama's RMSNorm) */
	void (*rmsnorm_forward)(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
	void (*rmsnorm_backward)(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
	                         const float *rstd, int N, int C);
	/* Multi-head attention over qkv [B·T, 3C] (per row q | k | v, heads of
	 * C/H contiguous): y [B·T, C] = softmax(q kᵀ / sqrt(C/H) + mask) v per
	 * head. causal: key s > query t masked; mask (B·T bytes, NULL: none):
	 * keys with mask 0 masked (a padding mask). One head's T×T at a time;
	 * backward computes the probabilities again rather than keeping them. */
	void (*attention_forward)(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
	                          int causal);
	void (*attention_backward)(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask, int B,
	                           int T, int C, int H, int causal);
	/* One query against a cache (generation): y [C] = per head softmax(q kᵀ
	 * / sqrt(C/H)) v over the n cached keys K and values V (rows ld apart;
	 * q is the first C floats of qkv). */
	void (*attention_decode)(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C,
	                         int H);
	void (*gelu_forward)(nn_ctx *c, float *y, const float *x, size_t n, int kind);
	void (*gelu_backward)(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind);
	void (*tanh_forward)(nn_ctx *c, float *y, const float *x, size_t n);
	void (*tanh_backward)(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n); /* y: the output */
	/* Mean cross-entropy of softmax(logits) over the rows whose target is in
	 * [0, V) (others are ignored, as -100 is by PyTorch); dlogits (NULL: not
	 * wanted) = (softmax - onehot) / count on those rows, 0 on the others.
	 * *count: the rows counted. */
	double (*softmax_crossentropy)(nn_ctx *c, float *dlogits, const float *logits, const int32_t *targets, int N, int V,
	                               double *count);
	/* Mean binary cross-entropy with logits over N·K entries whose label mask
	 * is set (labels in [0, 1]); dlogits written as for the softmax one. */
	double (*bce_logits)(nn_ctx *c, float *dlogits, const float *logits, const float *labels, const uint8_t *lmask,
	                     size_t n, double *count);
	/* Mean squared error over n entries with the mask set; dpred written. */
	double (*mse)(nn_ctx *c, float *dpred, const float *pred, const float *target, const uint8_t *lmask, size_t n,
	              double *count);
	/* Inverted dropout with rate p: element i kept with probability 1 - p and
	 * scaled by 1/(1 - p); the mask is a function of (seed, stream, i), so
	 * backward draws it again and nothing is stored. seed 0 or p 0: identity. */
	void (*dropout_forward)(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream);
	void (*dropout_backward)(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream);
	/* Rotary position embedding (Llama's; Hugging Face's rotate_half
	 * layout) in place on the first nh heads of D floats of each of N rows
	 * (rows ld floats apart): for i < D/2, with co = cs[pos[r]·D + i] and
	 * si = cs[pos[r]·D + D/2 + i] (the model's table of cosines and sines),
	 * (x_i, x_{i+D/2}) ← (x_i·co − x_{i+D/2}·si, x_{i+D/2}·co + x_i·si).
	 * inverse: the rotation by the opposite angle, which is the backward of
	 * the forward (applied to the gradient in place: the one in-place
	 * backward of the table). */
	void (*rope)(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse);
	/* SwiGLU: h [N, I] = silu(g) ⊙ u, for gu [N, 2I] rows gate | up */
	void (*swiglu_forward)(nn_ctx *c, float *h, const float *gu, int N, int I);
	void (*swiglu_backward)(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I);
	/* Grouped-query attention's heads for the attention above: out [N,
	 * 3·H·D] = q | k | v per row with each of the Hk key and value heads of
	 * in [N, (H + 2·Hk)·D] repeated H/Hk times (head h reads kv head
	 * h / (H/Hk), as transformers' repeat_kv); backward adds the repeats'
	 * gradients into din. */
	void (*kv_expand_forward)(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D);
	void (*kv_expand_backward)(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D);

	/* The optimizer's two passes over the parameters (engine/ml/optim.h has
	 * the arithmetic): Σ x² in double over fixed chunks; one AdamW update t
	 * (1-based) with the gradient first scaled by gscale, then zeroed. */
	double (*sumsq)(nn_ctx *c, const float *x, size_t n);
	void (*adamw)(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
	              float wd, long long t, float gscale);

	/* Optional (NULL: not offered): attention that keeps each row's
	 * log-sum-exp, lse [B·H·T], for a backward that is also given the
	 * forward's output y, so that a fused kernel need not compute the
	 * probabilities' normalisation again. Same semantics as above. Models
	 * call them through attention_forward_keep / attention_backward_keep,
	 * which fall back to the two above. */
	void (*attention_forward_lse)(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *mask, int B, int T,
	                              int C, int H, int causal);
	void (*attention_backward_lse)(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const float *y,
	                               const float *lse, const uint8_t *mask, int B, int T, int C, int H, int causal);
	/* Optional: the most device memory the backend has held at once (its
	 * own buffers included), for the benchmarks. */
	size_t (*peak_bytes)(nn_ctx *c);
} nn_ops;

struct crew;

struct nn_ctx {
	const nn_ops *ops;
	int threads;      /* CPU: threads of our own to split work over */
	struct crew *crew; /* CPU: those threads, kept between calls (NULL: one thread) */
	void *scratch;    /* backend-owned, grown on demand */
	size_t scratch_n;
	void *dev;        /* a device backend's state (ops->init) */
	int precision;    /* NN_FP32, or NN_BF16: products from bf16 copies of their inputs, fp32 accumulation
	                     and outputs (a device backend may offer it; the CPU computes fp32 always) */
};

enum { NN_FP32 = 0, NN_BF16 = 1 };

extern const nn_ops nn_cpu;

/* The backend called name: "cpu", or "cuda" (the library make cuda builds,
 * build/libhone-cuda.so, or $HONE_CUDA_LIB; loaded on first use). NULL with
 * e set when it is unknown or cannot be had here (no library, no GPU). */
struct herr;
const nn_ops *nn_backend(struct herr *e, const char *name);
/* (HONE_DEVICE_EMULATE=1 makes "cuda" the CPU's kernels behind the device
 * code paths: a testing aid, engine/nn/nn.c says more.) */

/* One AdamW update of one value (engine/ml/optim.h has the arithmetic),
 * for the CPU's loop and a device's kernel alike: decay = 1 - lr·wd,
 * step = lr / (1 - b1^t), bc2s = sqrt(1 - b2^t), gs the clipping factor. */
#ifdef __CUDACC__
#define NN_HD __host__ __device__
#else
#define NN_HD
#endif
static inline NN_HD void nn_adamw_one(float *p, float *g, float *m, float *v, float b1, float b2, float eps, float decay,
                                      float step, float bc2s, float gs)
{
	float gi = *g * gs;
	float mi = b1 * *m + (1.0f - b1) * gi;
	float vi = b2 * *v + (1.0f - b2) * gi * gi;
	*m = mi;
	*v = vi;
	*p = *p * decay - step * mi / (sqrtf(vi) / bc2s + eps);
	*g = 0;
}

/* The element arithmetic of rope, SwiGLU and kv_expand, shared by every
 * backend's loop. One rotated pair: a = x_i, b = x_{i+D/2}. */
static inline NN_HD void nn_rope_pair(float *a, float *b, float co, float si, int inverse)
{
	float x = *a, y = *b;
	if (inverse)
		si = -si;
	*a = x * co - y * si;
	*b = y * co + x * si;
}
/* silu(g)·u, and its gradients for dh: dg, du */
static inline NN_HD float nn_swiglu_one(float g, float u) { return g / (1.0f + expf(-g)) * u; }
static inline NN_HD void nn_swiglu_grad(float g, float u, float dh, float *dg, float *du)
{
	float sg = 1.0f / (1.0f + expf(-g));
	*dg += dh * u * sg * (1.0f + g * (1.0f - sg));
	*du += dh * g * sg;
}
/* Where float k of an expanded row [3·H·D] is read from in a row of
 * [(H + 2·Hk)·D] (q as is, key and value head h from h / (H/Hk)) */
static inline NN_HD size_t nn_kv_src(size_t k, int H, int Hk, int D)
{
	size_t HD = (size_t)H * (size_t)D, KD = (size_t)Hk * (size_t)D;
	if (k < HD)
		return k;
	size_t part = k < 2 * HD ? 0 : 1, j = k - HD - part * HD, h = j / (size_t)D, d = j % (size_t)D;
	return HD + part * KD + (h / (size_t)(H / Hk)) * (size_t)D + d;
}

/* The host's loops of rope, SwiGLU and kv_expand over rows [r0, r1): the
 * reference runs them whole, the CPU splits the rows over its threads. */
void nn_rope_rows(float *x, const uint32_t *pos, const float *cs, int r0, int r1, int ld, int nh, int D, int inverse);
void nn_swiglu_rows(float *h, const float *gu, int r0, int r1, int I);
void nn_swiglu_back_rows(float *dgu, const float *dh, const float *gu, int r0, int r1, int I);
void nn_kv_expand_rows(float *out, const float *in, int r0, int r1, int H, int Hk, int D);
void nn_kv_expand_back_rows(float *din, const float *dout, int r0, int r1, int H, int Hk, int D);

/* Whether the backend's memory is the host's (the CPU, the reference) */
static inline int nn_on_host(const nn_ops *o) { return o->name[0] == 'c' ? o->name[1] == 'p' : o->name[0] == 'r'; }

/* HONE_PROFILE=1 (engine/nn/profile.c): ops wrapped so that every call is
 * timed, the device waited for around it, and the totals printed at exit. */
const nn_ops *nn_profiled(const nn_ops *ops);

/* A context on backend ops with `threads` threads (at least 1; the CPU's). */
void nn_ctx_init(nn_ctx *c, const nn_ops *ops, int threads);
void nn_ctx_free(nn_ctx *c);
/* The backend's scratch, at least n bytes (kept until the next call); inline
 * so that a backend built apart (libhone-cuda.so) has it too. */
static inline void *nn_scratch(nn_ctx *c, size_t n)
{
	if (n > c->scratch_n) {
		if (c->scratch)
			c->ops->free(c, c->scratch);
		c->scratch = c->ops->alloc(c, n);
		c->scratch_n = n;
	}
	return c->scratch;
}

/* The dropout mask's value for element i: 0 or 1/(1 - p). */
float nn_dropout_keep(uint64_t seed, uint64_t stream, size_t i, float p);

/* The wrappers models call: llm.c's names, the context first. */
static inline void *nn_alloc(nn_ctx *c, size_t n) { return c->ops->alloc(c, n); }
static inline void nn_free(nn_ctx *c, void *p) { c->ops->free(c, p); }
static inline void nn_zero(nn_ctx *c, void *p, size_t n) { c->ops->zero(c, p, n); }
static inline void nn_copy(nn_ctx *c, void *d, const void *s, size_t n) { c->ops->copy(c, d, s, n); }
static inline void nn_upload(nn_ctx *c, void *d, const void *host, size_t n) { c->ops->upload(c, d, host, n); }
static inline void nn_download(nn_ctx *c, void *host, const void *s, size_t n) { c->ops->download(c, host, s, n); }
static inline double nn_sumsq(nn_ctx *c, const float *x, size_t n) { return c->ops->sumsq(c, x, n); }
static inline void nn_adamw(nn_ctx *c, float *p, float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                            float eps, float wd, long long t, float gscale)
{
	c->ops->adamw(c, p, g, m, v, n, lr, b1, b2, eps, wd, t, gscale);
}
static inline void matmul(nn_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *cm, int ldc)
{
	c->ops->matmul(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
}
static inline void linear_forward(nn_ctx *c, float *y, const float *x, const float *w, const float *b, int N, int in,
                                  int out, int layout, int acc)
{
	c->ops->linear_forward(c, y, x, w, b, N, in, out, layout, acc);
}
static inline void linear_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, int N, int in, int out, int layout)
{
	c->ops->linear_backward(c, dx, dw, db, dy, x, w, N, in, out, layout);
}
static inline void embedding_forward(nn_ctx *c, float *out, const uint32_t *ids, const float *table, int N, int C, int V,
                                     int acc)
{
	c->ops->embedding_forward(c, out, ids, table, N, C, V, acc);
}
static inline void embedding_backward(nn_ctx *c, float *dtable, const uint32_t *ids, const float *dout, int N, int C, int V)
{
	c->ops->embedding_backward(c, dtable, ids, dout, N, C, V);
}
static inline void layernorm_forward(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, int N, int C, float eps)
{
	c->ops->layernorm_forward(c, out, mean, rstd, x, w, b, N, C, eps);
}
static inline void layernorm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x,
                                      const float *w, const float *mean, const float *rstd, int N, int C)
{
	c->ops->layernorm_backward(c, dx, dw, db, dy, x, w, mean, rstd, N, C);
}
static inline void rmsnorm_forward(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
	c->ops->rmsnorm_forward(c, out, rstd, x, w, N, C, eps);
}
static inline void rmsnorm_backward(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                                    const float *rstd, int N, int C)
{
	c->ops->rmsnorm_backward(c, dx, dw, dy, x, w, rstd, N, C);
}
static inline void attention_forward(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C,
                                     int H, int causal)
{
	c->ops->attention_forward(c, y, qkv, mask, B, T, C, H, causal);
}
static inline void attention_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask,
                                      int B, int T, int C, int H, int causal)
{
	c->ops->attention_backward(c, dqkv, dy, qkv, mask, B, T, C, H, causal);
}
/* With lse (a model's [B·H·T] buffer per layer, nn_attention_lse says
 * whether to keep one): the backend's fused path where it has one. */
static inline int nn_attention_lse(const nn_ctx *c) { return c->ops->attention_forward_lse != NULL; }
static inline void attention_forward_keep(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *mask, int B,
                                          int T, int C, int H, int causal)
{
	if (lse && c->ops->attention_forward_lse)
		c->ops->attention_forward_lse(c, y, lse, qkv, mask, B, T, C, H, causal);
	else
		c->ops->attention_forward(c, y, qkv, mask, B, T, C, H, causal);
}
static inline void attention_backward_keep(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const float *y,
                                           const float *lse, const uint8_t *mask, int B, int T, int C, int H, int causal)
{
	if (lse && c->ops->attention_backward_lse)
		c->ops->attention_backward_lse(c, dqkv, dy, qkv, y, lse, mask, B, T, C, H, causal);
	else
		c->ops->attention_backward(c, dqkv, dy, qkv, mask, B, T, C, H, causal);
}
static inline void attention_decode(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n,
                                    int C, int H)
{
	c->ops->attention_decode(c, y, q, K, V, ld, n, C, H);
}
static inline void gelu_forward(nn_ctx *c, float *y, const float *x, size_t n, int kind) { c->ops->gelu_forward(c, y, x, n, kind); }
static inline void gelu_backward(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind)
{
	c->ops->gelu_backward(c, dx, dy, x, n, kind);
}
static inline void tanh_forward(nn_ctx *c, float *y, const float *x, size_t n) { c->ops->tanh_forward(c, y, x, n); }
static inline void tanh_backward(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n)
{
	c->ops->tanh_backward(c, dx, dy, y, n);
}
static inline double softmax_crossentropy(nn_ctx *c, float *dlogits, const float *logits, const int32_t *targets, int N,
                                          int V, double *count)
{
	return c->ops->softmax_crossentropy(c, dlogits, logits, targets, N, V, count);
}
static inline double bce_logits(nn_ctx *c, float *dlogits, const float *logits, const float *labels, const uint8_t *lmask,
                                size_t n, double *count)
{
	return c->ops->bce_logits(c, dlogits, logits, labels, lmask, n, count);
}
static inline double mse_loss(nn_ctx *c, float *dpred, const float *pred, const float *target, const uint8_t *lmask,
                              size_t n, double *count)
{
	return c->ops->mse(c, dpred, pred, target, lmask, n, count);
}
static inline void dropout_forward(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream)
{
	c->ops->dropout_forward(c, y, x, n, p, seed, stream);
}
static inline void dropout_backward(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream)
{
	c->ops->dropout_backward(c, dx, dy, n, p, seed, stream);
}
static inline void rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse)
{
	c->ops->rope(c, x, pos, cs, N, ld, nh, D, inverse);
}
static inline void swiglu_forward(nn_ctx *c, float *h, const float *gu, int N, int I) { c->ops->swiglu_forward(c, h, gu, N, I); }
static inline void swiglu_backward(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I)
{
	c->ops->swiglu_backward(c, dgu, dh, gu, N, I);
}
static inline void kv_expand_forward(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D)
{
	c->ops->kv_expand_forward(c, out, in, N, H, Hk, D);
}
static inline void kv_expand_backward(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D)
{
	c->ops->kv_expand_backward(c, din, dout, N, H, Hk, D);
}
/* y += dropout(x): a residual branch's dropout, added in. The same
 * arithmetic as dropout_backward (dx += dy ⊙ mask), which it calls. */
static inline void dropout_add(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream)
{
	c->ops->dropout_backward(c, y, x, n, p, seed, stream);
}

/* The plain references (engine/nn/ref.c), one loop nest per layer in double
 * where it matters, single-threaded: what the tests hold the backend to. */
extern const nn_ops nn_ref;

#endif
