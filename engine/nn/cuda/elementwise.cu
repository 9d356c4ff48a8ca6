/*
 * Element-wise layers on the GPU: embedding lookup and its gradient, GELU
 * (tanh and erf), tanh, and the seeded dropout (the same mask as the CPU's:
 * a function of seed, stream and index).
 */
#include "cuda.cuh"

#include <stdlib.h>
#include <string.h>

#define GRID_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* --- embedding ------------------------------------------------------------------------ */

__global__ void k_embed(float *out, const uint32_t *ids, const float *t, size_t n, int C, int V, int acc)
{
	GRID_LOOP(i, n)
	{
		size_t r = i / (size_t)C, k = i % (size_t)C;
		uint32_t id = ids[r] < (uint32_t)V ? ids[r] : 0;
		float v = t[(size_t)id * C + k];
		out[i] = acc ? out[i] + v : v;
	}
}

void cu_embedding_forward(nn_ctx *c, float *out, const uint32_t *ids, const float *table, int N, int C, int V, int acc)
{
	(void)c;
	size_t n = (size_t)N * (size_t)C;
	k_embed<<<cu_blocks(n, 256), 256, 0, cu.s>>>(out, ids, table, n, C, V, acc);
	CKL();
}

/* one block per distinct id: its rows added in row order, as the CPU does */
__global__ void k_embed_back(float *dt, const uint32_t *rows, const uint32_t *uid, const uint32_t *off,
                             const float *dout, int C)
{
	uint32_t id = uid[blockIdx.x], lo = off[blockIdx.x], hi = off[blockIdx.x + 1];
	for (int k = threadIdx.x; k < C; k += blockDim.x) {
		float a = dt[(size_t)id * C + k];
		for (uint32_t j = lo; j < hi; j++)
			a += dout[(size_t)rows[j] * C + k];
		dt[(size_t)id * C + k] = a;
	}
}

/* The rows are grouped by id on the host (a counting sort of N ids, read
 * back from the device), so that each table row is one block's and no two
 * blocks add into the same place. */
void cu_embedding_backward(nn_ctx *c, float *dtable, const uint32_t *ids, const float *dout, int N, int C, int V)
{
	if (N <= 0 || V <= 0)
		return;
	uint32_t *h = (uint32_t *)malloc(((size_t)N * 4 + 1 + (size_t)V + 1) * sizeof(uint32_t));
	uint32_t *hid = h, *rows = h + N, *uid = h + 2 * (size_t)N, *off = h + 3 * (size_t)N, *cnt = off + N + 1;
	CK(cudaMemcpyAsync(hid, ids, (size_t)N * sizeof(uint32_t), cudaMemcpyDeviceToHost, cu.s));
	CK(cudaStreamSynchronize(cu.s));
	memset(cnt, 0, ((size_t)V + 1) * sizeof(uint32_t));
	for (int r = 0; r < N; r++)
		cnt[(hid[r] < (uint32_t)V ? hid[r] : 0) + 1]++;
	for (int v = 0; v < V; v++)
		cnt[v + 1] += cnt[v];
	/* cnt[v]: where id v's rows start; fill rows in row order */
	uint32_t *pos = (uint32_t *)malloc((size_t)V * sizeof(uint32_t));
	memcpy(pos, cnt, (size_t)V * sizeof(uint32_t));
	for (int r = 0; r < N; r++)
		rows[pos[hid[r] < (uint32_t)V ? hid[r] : 0]++] = (uint32_t)r;
	free(pos);
	/* the distinct ids and where their rows start */
	uint32_t U = 0;
	for (int v = 0; v < V; v++)
		if (cnt[v + 1] > cnt[v]) {
			uid[U] = (uint32_t)v;
			off[U] = cnt[v];
			U++;
		}
	off[U] = (uint32_t)N;
	size_t bytes = ((size_t)N + 2 * (size_t)U + 1) * sizeof(uint32_t);
	uint32_t *d = (uint32_t *)nn_scratch(c, bytes);
	CK(cudaMemcpyAsync(d, rows, (size_t)N * sizeof(uint32_t), cudaMemcpyHostToDevice, cu.s));
	CK(cudaMemcpyAsync(d + N, uid, (size_t)U * sizeof(uint32_t), cudaMemcpyHostToDevice, cu.s));
	CK(cudaMemcpyAsync(d + N + U, off, ((size_t)U + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice, cu.s));
	k_embed_back<<<U, C < 256 ? 128 : 256, 0, cu.s>>>(dtable, d, d + N, d + N + U, dout, C);
	CKL();
	CK(cudaStreamSynchronize(cu.s)); /* the host arrays go now */
	free(h);
}

/* --- activations ---------------------------------------------------------------------- */

__device__ inline float gelu_f(float z, int kind)
{
	if (kind == NN_GELU_ERF)
		return 0.5f * z * (1.0f + erff(z * 0.7071067811865476f));
	const float k = 0.7978845608028654f;
	return 0.5f * z * (1.0f + tanhf(k * (z + 0.044715f * z * z * z)));
}

__device__ inline float gelu_g(float z, int kind)
{
	if (kind == NN_GELU_ERF)
		return 0.5f * (1.0f + erff(z * 0.7071067811865476f)) + z * expf(-0.5f * z * z) * 0.3989422804014327f;
	const float k = 0.7978845608028654f;
	float t = tanhf(k * (z + 0.044715f * z * z * z));
	return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * z * z);
}

__global__ void k_gelu(float *y, const float *x, size_t n, int kind)
{
	GRID_LOOP(i, n) y[i] = gelu_f(x[i], kind);
}

__global__ void k_gelu_back(float *dx, const float *dy, const float *x, size_t n, int kind)
{
	GRID_LOOP(i, n) dx[i] += dy[i] * gelu_g(x[i], kind);
}

void cu_gelu_forward(nn_ctx *c, float *y, const float *x, size_t n, int kind)
{
	(void)c;
	k_gelu<<<cu_blocks(n, 256), 256, 0, cu.s>>>(y, x, n, kind);
	CKL();
}

void cu_gelu_backward(nn_ctx *c, float *dx, const float *dy, const float *x, size_t n, int kind)
{
	(void)c;
	k_gelu_back<<<cu_blocks(n, 256), 256, 0, cu.s>>>(dx, dy, x, n, kind);
	CKL();
}

__global__ void k_tanh(float *y, const float *x, size_t n)
{
	GRID_LOOP(i, n) y[i] = tanhf(x[i]);
}

__global__ void k_tanh_back(float *dx, const float *dy, const float *y, size_t n)
{
	GRID_LOOP(i, n) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

void cu_tanh_forward(nn_ctx *c, float *y, const float *x, size_t n)
{
	(void)c;
	k_tanh<<<cu_blocks(n, 256), 256, 0, cu.s>>>(y, x, n);
	CKL();
}

void cu_tanh_backward(nn_ctx *c, float *dx, const float *dy, const float *y, size_t n)
{
	(void)c;
	k_tanh_back<<<cu_blocks(n, 256), 256, 0, cu.s>>>(dx, dy, y, n);
	CKL();
}

/* --- dropout -------------------------------------------------------------------------- */

/* nn_dropout_keep (engine/nn/nn.c), bit for bit */
__device__ inline float drop_keep(uint64_t seed, uint64_t stream, size_t i, float p)
{
	uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream << 40) + i;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0 < p ? 0.0f : 1.0f / (1.0f - p);
}

__global__ void k_dropout(float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream, int add)
{
	GRID_LOOP(i, n)
	{
		float v = seed && p > 0 ? x[i] * drop_keep(seed, stream, i, p) : x[i];
		y[i] = add ? y[i] + v : v;
	}
}

void cu_dropout_forward(nn_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	k_dropout<<<cu_blocks(n, 256), 256, 0, cu.s>>>(y, x, n, p, seed, stream, 0);
	CKL();
}

void cu_dropout_backward(nn_ctx *c, float *dx, const float *dy, size_t n, float p, uint64_t seed, uint64_t stream)
{
	(void)c;
	k_dropout<<<cu_blocks(n, 256), 256, 0, cu.s>>>(dx, dy, n, p, seed, stream, 1);
	CKL();
}

/* --- Llama's pieces: rotary embedding, SwiGLU, grouped-query heads ----------------------- */

/* one thread per rotated pair */
__global__ void k_rope(float *x, const uint32_t *pos, const float *cs, size_t n, int ld, int nh, int D, int inverse)
{
	int h2 = D / 2;
	GRID_LOOP(k, n)
	{
		size_t r = k / ((size_t)nh * h2), rest = k % ((size_t)nh * h2);
		int h = (int)(rest / h2), i = (int)(rest % h2);
		float *v = x + r * (size_t)ld + (size_t)h * D;
		const float *co = cs + (size_t)pos[r] * D;
		nn_rope_pair(v + i, v + i + h2, co[i], co[h2 + i], inverse);
	}
}

void cu_rope(nn_ctx *c, float *x, const uint32_t *pos, const float *cs, int N, int ld, int nh, int D, int inverse)
{
	(void)c;
	size_t n = (size_t)N * (size_t)nh * (size_t)(D / 2);
	if (n)
		k_rope<<<cu_blocks(n, 256), 256, 0, cu.s>>>(x, pos, cs, n, ld, nh, D, inverse);
	CKL();
}

__global__ void k_swiglu(float *h, const float *gu, size_t n, int I)
{
	GRID_LOOP(k, n)
	{
		size_t r = k / I, i = k % I;
		const float *g = gu + r * 2 * I;
		h[k] = nn_swiglu_one(g[i], g[I + i]);
	}
}

__global__ void k_swiglu_back(float *dgu, const float *dh, const float *gu, size_t n, int I)
{
	GRID_LOOP(k, n)
	{
		size_t r = k / I, i = k % I;
		const float *g = gu + r * 2 * I;
		float *dg = dgu + r * 2 * I;
		nn_swiglu_grad(g[i], g[I + i], dh[k], dg + i, dg + I + i);
	}
}

void cu_swiglu_forward(nn_ctx *c, float *h, const float *gu, int N, int I)
{
	(void)c;
	size_t n = (size_t)N * (size_t)I;
	if (n)
		k_swiglu<<<cu_blocks(n, 256), 256, 0, cu.s>>>(h, gu, n, I);
	CKL();
}

void cu_swiglu_backward(nn_ctx *c, float *dgu, const float *dh, const float *gu, int N, int I)
{
	(void)c;
	size_t n = (size_t)N * (size_t)I;
	if (n)
		k_swiglu_back<<<cu_blocks(n, 256), 256, 0, cu.s>>>(dgu, dh, gu, n, I);
	CKL();
}

__global__ void k_kv_expand(float *out, const float *in, size_t n, int H, int Hk, int D)
{
	size_t wo = 3 * (size_t)H * D, wi = (size_t)(H + 2 * Hk) * D;
	GRID_LOOP(k, n)
	{
		size_t r = k / wo, j = k % wo;
		out[k] = in[r * wi + nn_kv_src(j, H, Hk, D)];
	}
}

/* one thread per input float: its repeats added in order, as the host does */
__global__ void k_kv_expand_back(float *din, const float *dout, size_t n, int H, int Hk, int D)
{
	size_t HD = (size_t)H * D, KD = (size_t)Hk * D, wo = 3 * HD, wi = HD + 2 * KD;
	int rep = H / Hk;
	GRID_LOOP(k, n)
	{
		size_t r = k / wi, j = k % wi;
		const float *o = dout + r * wo;
		if (j < HD) {
			din[k] += o[j];
			continue;
		}
		size_t part = j < HD + KD ? 0 : 1, jj = j - HD - part * KD, kh = jj / D, q = jj % D;
		float a = 0;
		for (int t = 0; t < rep; t++)
			a += o[HD + part * HD + (kh * rep + t) * D + q];
		din[k] += a;
	}
}

void cu_kv_expand_forward(nn_ctx *c, float *out, const float *in, int N, int H, int Hk, int D)
{
	(void)c;
	size_t n = (size_t)N * 3 * (size_t)H * (size_t)D;
	if (n)
		k_kv_expand<<<cu_blocks(n, 256), 256, 0, cu.s>>>(out, in, n, H, Hk, D);
	CKL();
}

void cu_kv_expand_backward(nn_ctx *c, float *din, const float *dout, int N, int H, int Hk, int D)
{
	(void)c;
	size_t n = (size_t)N * (size_t)(H + 2 * Hk) * (size_t)D;
	if (n)
		k_kv_expand_back<<<cu_blocks(n, 256), 256, 0, cu.s>>>(din, dout, n, H, Hk, D);
	CKL();
}
