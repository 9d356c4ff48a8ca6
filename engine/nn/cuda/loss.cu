/*
 * Losses on the GPU: softmax cross-entropy over the vocabulary (a block per
 * row, the gradient written in the same pass, no second copy of the
 * logits), binary cross-entropy with logits, mean squared error. Counts and
 * sums go through fixed-order reductions into cu.red, read back once.
 */
#include "cuda.cuh"

#include <math.h>

#define CHUNK 16384

/* rows whose target is in [0, V) → cu.red[1] */
__global__ void k_count_targets(double *out, const int32_t *tg, int N, int V)
{
	__shared__ double sh[1024];
	double s = 0;
	for (int r = threadIdx.x; r < N; r += blockDim.x)
		s += tg[r] >= 0 && tg[r] < V;
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		*out = s;
}

__global__ void k_ce(float *dl, double *rowloss, const float *z, const int32_t *tg, int V, const double *cnt)
{
	__shared__ double sh[256];
	int r = blockIdx.x, t = tg[r], on = t >= 0 && t < V;
	const float *zr = z + (size_t)r * V;
	double mx = -INFINITY;
	for (int k = threadIdx.x; k < V; k += blockDim.x)
		mx = zr[k] > mx ? zr[k] : mx;
	mx = block_max(mx, sh);
	float fm = (float)mx;
	double s = 0;
	for (int k = threadIdx.x; k < V; k += blockDim.x)
		s += expf(zr[k] - fm);
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		rowloss[r] = on ? log(s) + mx - zr[t] : 0.0;
	if (!dl)
		return;
	float *d = dl + (size_t)r * V;
	if (!on) {
		for (int k = threadIdx.x; k < V; k += blockDim.x)
			d[k] = 0.0f;
		return;
	}
	float inv = (float)(1.0 / s), ic = (float)(1.0 / *cnt);
	for (int k = threadIdx.x; k < V; k += blockDim.x)
		d[k] = (expf(zr[k] - fm) * inv - (k == t ? 1.0f : 0.0f)) * ic;
}

double cu_softmax_crossentropy(nn_ctx *c, float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                               double *count)
{
	if (N <= 0) {
		if (count)
			*count = 0;
		return 0;
	}
	double *rowloss = (double *)nn_scratch(c, (size_t)N * sizeof(double));
	k_count_targets<<<1, 1024, 0, cu.s>>>(cu.red + 1, targets, N, V);
	CKL();
	k_ce<<<N, 256, 0, cu.s>>>(dlogits, rowloss, logits, targets, V, cu.red + 1);
	CKL();
	cu_sum_into(rowloss, (size_t)N, 0);
	const double *r = cu_red_get(2);
	if (count)
		*count = r[1];
	return r[1] ? r[0] / r[1] : 0;
}

/* entries with the mask set, per chunk */
__global__ void k_count_mask(double *part, const uint8_t *m, size_t n)
{
	__shared__ double sh[256];
	size_t lo = (size_t)blockIdx.x * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
	double s = 0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
		s += !m || m[i];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

/* kind 0: BCE with logits; 1: squared error. Loss per chunk, the gradient
 * divided by the count in cu.red[1]. */
__global__ void k_pointwise_loss(double *part, float *dl, const float *z, const float *y, const uint8_t *m, size_t n,
                                 const double *cnt, int kind)
{
	__shared__ double sh[256];
	size_t lo = (size_t)blockIdx.x * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
	double s = 0, ic = *cnt ? 1.0 / *cnt : 0.0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
		int on = !m || m[i];
		double g;
		if (kind == 0) {
			double p = 1 / (1 + exp(-(double)z[i]));
			if (on)
				s -= y[i] * log(p) + (1 - y[i]) * log(1 - p);
			g = p - y[i];
		} else {
			double d = (double)z[i] - y[i];
			if (on)
				s += d * d;
			g = 2 * d;
		}
		if (dl)
			dl[i] = on ? (float)(g * ic) : 0.0f;
	}
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

static double pointwise(nn_ctx *c, float *dl, const float *z, const float *y, const uint8_t *m, size_t n, double *count,
                        int kind)
{
	if (!n) {
		if (count)
			*count = 0;
		return 0;
	}
	size_t chunks = (n + CHUNK - 1) / CHUNK;
	double *part = (double *)nn_scratch(c, 2 * chunks * sizeof(double));
	k_count_mask<<<(unsigned)chunks, 256, 0, cu.s>>>(part + chunks, m, n);
	CKL();
	cu_sum_into(part + chunks, chunks, 1);
	k_pointwise_loss<<<(unsigned)chunks, 256, 0, cu.s>>>(part, dl, z, y, m, n, cu.red + 1, kind);
	CKL();
	cu_sum_into(part, chunks, 0);
	const double *r = cu_red_get(2);
	if (count)
		*count = r[1];
	return r[1] ? r[0] / r[1] : 0;
}

double cu_bce_logits(nn_ctx *c, float *dlogits, const float *logits, const float *labels, const uint8_t *lmask,
                     size_t n, double *count)
{
	return pointwise(c, dlogits, logits, labels, lmask, n, count, 0);
}

double cu_mse(nn_ctx *c, float *dpred, const float *pred, const float *target, const uint8_t *lmask, size_t n,
              double *count)
{
	return pointwise(c, dpred, pred, target, lmask, n, count, 1);
}
