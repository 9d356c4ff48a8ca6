/*
 * Multi-head attention on the GPU, in the plain manner: q, k and v taken
 * apart per head, every head's T×T scores in one batched product, a warp
 * per row for the masked softmax, one more batched product for the output;
 * backward computes the probabilities again and goes back through the same
 * products. The T×T matrices live in the backend's scratch for the length
 * of one call. (A fused kernel that keeps tiles in shared memory is the
 * next step for speed; this one is the checking path.)
 */
#include "cuda.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Element i of a [B·T, parts·C] array (row-major: q | k | v for parts 3)
 * and where it goes in the per-head layout [B·H, T, D]: which part, and
 * the index in that part */
__device__ inline size_t head_pos(size_t i, int parts, int T, int C, int H, int *part)
{
	int D = C / H;
	size_t r = i / ((size_t)parts * C);
	int j = (int)(i % ((size_t)parts * C)), hc = j % C, h = hc / D, d = hc % D, b = (int)(r / T), t = (int)(r % T);
	*part = j / C;
	return (((size_t)b * H + h) * T + t) * D + d;
}

#define GRID_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* qkv [B·T, 3C] → q, k, v [B·H, T, D] */
__global__ void k_split(float *q, float *k, float *v, const float *qkv, int B, int T, int C, int H)
{
	GRID_LOOP(i, (size_t)B * T * 3 * C)
	{
		int part;
		size_t o = head_pos(i, 3, T, C, H, &part);
		(part == 0 ? q : part == 1 ? k : v)[o] = qkv[i];
	}
}

/* [B·H, T, D] → y [B·T, C] (set, or added into) */
__global__ void k_merge(float *y, const float *yh, int B, int T, int C, int H, int add)
{
	GRID_LOOP(i, (size_t)B * T * C)
	{
		int part;
		float v = yh[head_pos(i, 1, T, C, H, &part)];
		y[i] = add ? y[i] + v : v;
	}
}

/* dq, dk, dv [B·H, T, D] added into dqkv [B·T, 3C] */
__global__ void k_merge3(float *dqkv, const float *dq, const float *dk, const float *dv, int B, int T, int C, int H)
{
	GRID_LOOP(i, (size_t)B * T * 3 * C)
	{
		int part;
		size_t o = head_pos(i, 3, T, C, H, &part);
		dqkv[i] += (part == 0 ? dq : part == 1 ? dk : dv)[o];
	}
}

/* y [B·T, C] → [B·H, T, D] */
__global__ void k_heads(float *yh, const float *y, int B, int T, int C, int H)
{
	GRID_LOOP(i, (size_t)B * T * C)
	{
		int part;
		yh[head_pos(i, 1, T, C, H, &part)] = y[i];
	}
}

__device__ inline int att_vis(const uint8_t *mask, int causal, int b, int T, int t, int x)
{
	return (!causal || x <= t) && (!mask || mask[(size_t)b * T + x]);
}

/* a warp per row of scores (already scaled): the masked softmax in place; a
 * row with no visible key is uniform, as the CPU's */
__global__ void k_softmax(float *P, const uint8_t *mask, int BH, int H, int T, int causal)
{
	size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;
	if (row >= (size_t)BH * T)
		return;
	int t = (int)(row % T), b = (int)(row / T) / H;
	float *p = P + row * T;
	float mx = -INFINITY;
	for (int x = lane; x < T; x += 32)
		if (att_vis(mask, causal, b, T, t, x))
			mx = fmaxf(mx, p[x]);
	mx = warp_max(mx);
	if (mx == -INFINITY) {
		for (int x = lane; x < T; x += 32)
			p[x] = 1.0f / T;
		return;
	}
	float s = 0;
	for (int x = lane; x < T; x += 32) {
		float e = att_vis(mask, causal, b, T, t, x) ? expf(p[x] - mx) : 0.0f;
		p[x] = e;
		s += e;
	}
	float inv = 1.0f / warp_sum(s);
	for (int x = lane; x < T; x += 32)
		p[x] *= inv;
}

/* dS = P ⊙ (dP − Σ P·dP) · scale in place of dP; 0 on rows with no visible key */
__global__ void k_softmax_back(float *dP, const float *P, const uint8_t *mask, int BH, int H, int T, int causal,
                               float scale)
{
	size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;
	if (row >= (size_t)BH * T)
		return;
	int t = (int)(row % T), b = (int)(row / T) / H;
	float *d = dP + row * T;
	const float *p = P + row * T;
	int any = 0;
	float s = 0;
	for (int x = lane; x < T; x += 32) {
		any |= att_vis(mask, causal, b, T, t, x);
		s += p[x] * d[x];
	}
	any = __any_sync(0xffffffffu, any);
	s = warp_sum(s);
	for (int x = lane; x < T; x += 32)
		d[x] = any ? p[x] * (d[x] - s) * scale : 0.0f;
}

/* the probabilities of every (b, h) into P from q and k */
static void probs(float *P, const float *q, const float *k, const uint8_t *mask, int B, int T, int C, int H, int causal)
{
	int D = C / H, BH = B * H;
	long long TD = (long long)T * D, TT = (long long)T * T;
	cu_gemm(0, 1, T, T, D, (float)(1.0 / sqrt((double)D)), q, D, TD, k, D, TD, 0.0f, P, T, TT, BH);
	size_t rows = (size_t)BH * T;
	k_softmax<<<(unsigned)((rows + 7) / 8), 256, 0, cu.s>>>(P, mask, BH, H, T, causal);
	CKL();
}

void cu_attention_forward(nn_ctx *c, float *y, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                          int causal)
{
	if (B <= 0 || T <= 0)
		return;
	int D = C / H, BH = B * H;
	size_t NC = (size_t)B * T * C, TT = (size_t)T * T;
	float *q = (float *)nn_scratch(c, (4 * NC + (size_t)BH * TT) * sizeof(float));
	float *k = q + NC, *v = k + NC, *yh = v + NC, *P = yh + NC;
	k_split<<<cu_blocks(3 * NC, 256), 256, 0, cu.s>>>(q, k, v, qkv, B, T, C, H);
	CKL();
	probs(P, q, k, mask, B, T, C, H, causal);
	cu_gemm(0, 0, T, D, T, 1.0f, P, T, (long long)TT, v, D, (long long)T * D, 0.0f, yh, D, (long long)T * D, BH);
	k_merge<<<cu_blocks(NC, 256), 256, 0, cu.s>>>(y, yh, B, T, C, H, 0);
	CKL();
}

void cu_attention_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const uint8_t *mask, int B, int T,
                           int C, int H, int causal)
{
	if (B <= 0 || T <= 0)
		return;
	int D = C / H, BH = B * H;
	size_t NC = (size_t)B * T * C, TT = (size_t)T * T;
	long long TD = (long long)T * D;
	float *q = (float *)nn_scratch(c, (7 * NC + 2 * (size_t)BH * TT) * sizeof(float));
	float *k = q + NC, *v = k + NC, *dyh = v + NC, *dq = dyh + NC, *dk = dq + NC, *dv = dk + NC, *P = dv + NC,
	      *dP = P + (size_t)BH * TT;
	k_split<<<cu_blocks(3 * NC, 256), 256, 0, cu.s>>>(q, k, v, qkv, B, T, C, H);
	CKL();
	probs(P, q, k, mask, B, T, C, H, causal);
	k_heads<<<cu_blocks(NC, 256), 256, 0, cu.s>>>(dyh, dy, B, T, C, H); /* dy per head */
	CKL();
	cu_gemm(1, 0, T, D, T, 1.0f, P, T, (long long)TT, dyh, D, TD, 0.0f, dv, D, TD, BH);
	cu_gemm(0, 1, T, T, D, 1.0f, dyh, D, TD, v, D, TD, 0.0f, dP, T, (long long)TT, BH);
	size_t rows = (size_t)BH * T;
	k_softmax_back<<<(unsigned)((rows + 7) / 8), 256, 0, cu.s>>>(dP, P, mask, BH, H, T, causal,
	                                                             (float)(1.0 / sqrt((double)D)));
	CKL();
	cu_gemm(0, 0, T, D, T, 1.0f, dP, T, (long long)TT, k, D, TD, 0.0f, dq, D, TD, BH);
	cu_gemm(1, 0, T, D, T, 1.0f, dP, T, (long long)TT, q, D, TD, 0.0f, dk, D, TD, BH);
	k_merge3<<<cu_blocks(3 * NC, 256), 256, 0, cu.s>>>(dqkv, dq, dk, dv, B, T, C, H);
	CKL();
}

/* One block per head, 8 warps: a warp per key for the scores (lanes across
 * the head's dimensions), the softmax over the block, then each warp sums
 * the values of its keys and the warps' sums are added in warp order. */
#define DEC_WARPS 8
__global__ void k_decode(float *y, const float *q, const float *K, const float *V, int ld, int n, int C, int H, float *s)
{
	__shared__ float sh[256];
	__shared__ float part[DEC_WARPS][128];
	int h = blockIdx.x, D = C / H, w = threadIdx.x / 32, lane = threadIdx.x % 32;
	float *sc = s + (size_t)h * n, scale = 1.0f / sqrtf((float)D);
	const float *qh = q + (size_t)h * D;
	for (int j = w; j < n; j += DEC_WARPS) {
		const float *kr = K + (size_t)j * ld + (size_t)h * D;
		float d = 0;
		for (int e = lane; e < D; e += 32)
			d += qh[e] * kr[e];
		d = warp_sum(d);
		if (lane == 0)
			sc[j] = d * scale;
	}
	__syncthreads();
	float mx = -INFINITY;
	for (int j = threadIdx.x; j < n; j += blockDim.x)
		mx = fmaxf(mx, sc[j]);
	mx = block_max(mx, sh);
	float sum = 0;
	for (int j = threadIdx.x; j < n; j += blockDim.x) {
		float e = expf(sc[j] - mx);
		sc[j] = e;
		sum += e;
	}
	sum = block_sum(sum, sh);
	float acc[4] = {0, 0, 0, 0}; /* D up to 128: four per lane */
	for (int j = w; j < n; j += DEC_WARPS) {
		const float *vr = V + (size_t)j * ld + (size_t)h * D;
		float pj = sc[j];
		for (int i = 0; i < 4 && lane + 32 * i < D; i++)
			acc[i] += pj * vr[lane + 32 * i];
	}
	for (int i = 0; i < 4 && lane + 32 * i < D; i++)
		part[w][lane + 32 * i] = acc[i];
	__syncthreads();
	for (int e = threadIdx.x; e < D; e += blockDim.x) {
		float a = 0;
		for (int k = 0; k < DEC_WARPS; k++)
			a += part[k][e];
		y[h * D + e] = a / sum;
	}
}

void cu_attention_decode(nn_ctx *c, float *y, const float *q, const float *K, const float *V, int ld, int n, int C, int H)
{
	if (n <= 0)
		return;
	if (C / H > 128) { /* beyond the kernel's registers: the plain path, a batch of one */
		fprintf(stderr, "hone: CUDA: attention_decode takes head sizes up to 128, not %d\n", C / H);
		exit(1);
	}
	float *s = (float *)nn_scratch(c, (size_t)H * n * sizeof(float));
	k_decode<<<H, DEC_WARPS * 32, 0, cu.s>>>(y, q, K, V, ld, n, C, H, s);
	CKL();
}
