/*
 * LayerNorm and RMSNorm on the GPU: a warp per row for the row statistics
 * and dx; the weight and bias gradients by columns, each column summed over
 * chunks of rows and the chunks then added in order (no atomics).
 */
#include "cuda.cuh"

#define ROWS_PER_CHUNK 64

__global__ void k_ln_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                         int C, float eps)
{
	int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (r >= N)
		return;
	const float *xr = x + (size_t)r * C;
	float s = 0;
	for (int k = lane; k < C; k += 32)
		s += xr[k];
	float mu = warp_sum(s) / C;
	float v = 0;
	for (int k = lane; k < C; k += 32)
		v += (xr[k] - mu) * (xr[k] - mu);
	float rs = 1.0f / sqrtf(warp_sum(v) / C + eps);
	float *o = out + (size_t)r * C;
	for (int k = lane; k < C; k += 32)
		o[k] = (xr[k] - mu) * rs * w[k] + b[k];
	if (lane == 0) {
		mean[r] = mu;
		rstd[r] = rs;
	}
}

void cu_layernorm_forward(nn_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int N, int C, float eps)
{
	(void)c;
	if (N <= 0)
		return;
	k_ln_fwd<<<(N + 7) / 8, 256, 0, cu.s>>>(out, mean, rstd, x, w, b, N, C, eps);
	CKL();
}

/* dx for a row; mean NULL: RMSNorm (x̂ = x·rstd, no centring, no mean term) */
__global__ void k_norm_dx(float *dx, const float *dy, const float *x, const float *w, const float *mean,
                          const float *rstd, int N, int C)
{
	int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (r >= N)
		return;
	const float *xr = x + (size_t)r * C, *g = dy + (size_t)r * C;
	float mu = mean ? mean[r] : 0.0f, rs = rstd[r], a = 0, bb = 0;
	for (int k = lane; k < C; k += 32) {
		float xh = (xr[k] - mu) * rs, gw = g[k] * w[k];
		a += gw;
		bb += gw * xh;
	}
	a = warp_sum(a) / C;
	bb = warp_sum(bb) / C;
	float *d = dx + (size_t)r * C;
	for (int k = lane; k < C; k += 32) {
		float xh = (xr[k] - mu) * rs;
		d[k] += rs * (g[k] * w[k] - (mean ? a : 0.0f) - xh * bb);
	}
}

/* per chunk of rows and column: Σ dy·x̂ (and Σ dy) */
__global__ void k_norm_colpart(float *pw, float *pb, const float *dy, const float *x, const float *mean,
                               const float *rstd, int N, int C)
{
	int col = blockIdx.x * blockDim.x + threadIdx.x, ch = blockIdx.y;
	if (col >= C)
		return;
	int lo = ch * ROWS_PER_CHUNK, hi = lo + ROWS_PER_CHUNK < N ? lo + ROWS_PER_CHUNK : N;
	float sw = 0, sb = 0;
	for (int r = lo; r < hi; r++) {
		float g = dy[(size_t)r * C + col], xh = (x[(size_t)r * C + col] - (mean ? mean[r] : 0.0f)) * rstd[r];
		sw += g * xh;
		sb += g;
	}
	pw[(size_t)ch * C + col] = sw;
	if (pb)
		pb[(size_t)ch * C + col] = sb;
}

__global__ void k_norm_colsum(float *dw, float *db, const float *pw, const float *pb, int chunks, int C)
{
	int col = blockIdx.x * blockDim.x + threadIdx.x;
	if (col >= C)
		return;
	float sw = 0, sb = 0;
	for (int ch = 0; ch < chunks; ch++) {
		sw += pw[(size_t)ch * C + col];
		if (pb)
			sb += pb[(size_t)ch * C + col];
	}
	dw[col] += sw;
	if (db)
		db[col] += sb;
}

static void norm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C)
{
	if (N <= 0)
		return;
	if (dx) {
		k_norm_dx<<<(N + 7) / 8, 256, 0, cu.s>>>(dx, dy, x, w, mean, rstd, N, C);
		CKL();
	}
	if (dw) {
		int chunks = (N + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
		float *pw = (float *)nn_scratch(c, 2 * (size_t)chunks * (size_t)C * sizeof(float)), *pb = db ? pw + (size_t)chunks * C : NULL;
		dim3 g((unsigned)((C + 127) / 128), (unsigned)chunks);
		k_norm_colpart<<<g, 128, 0, cu.s>>>(pw, pb, dy, x, mean, rstd, N, C);
		CKL();
		k_norm_colsum<<<(C + 127) / 128, 128, 0, cu.s>>>(dw, db, pw, pb, chunks, C);
		CKL();
	}
}

void cu_layernorm_backward(nn_ctx *c, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                           const float *mean, const float *rstd, int N, int C)
{
	norm_backward(c, dx, dw, db, dy, x, w, mean, rstd, N, C);
}

__global__ void k_rms_fwd(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
	int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (r >= N)
		return;
	const float *xr = x + (size_t)r * C;
	float s = 0;
	for (int k = lane; k < C; k += 32)
		s += xr[k] * xr[k];
	float rs = 1.0f / sqrtf(warp_sum(s) / C + eps);
	float *o = out + (size_t)r * C;
	for (int k = lane; k < C; k += 32)
		o[k] = xr[k] * rs * w[k];
	if (lane == 0)
		rstd[r] = rs;
}

void cu_rmsnorm_forward(nn_ctx *c, float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
	(void)c;
	if (N <= 0)
		return;
	k_rms_fwd<<<(N + 7) / 8, 256, 0, cu.s>>>(out, rstd, x, w, N, C, eps);
	CKL();
}

void cu_rmsnorm_backward(nn_ctx *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int N, int C)
{
	norm_backward(c, dx, dw, NULL, dy, x, w, NULL, rstd, N, C);
}
