/*
 * Fused attention for precision NN_BF16, in the flash-attention manner: q,
 * k, v in bf16 tiles of 64 rows in shared memory, the products on the tensor
 * cores (mma.sync m16n8k16, fp32 accumulation, operands through ldmatrix),
 * the scores, probabilities and outputs in registers, the softmax online,
 * so that no T×T matrix is ever written to device memory. Forward keeps each row's
 * log-sum-exp; backward takes it and the forward's output and runs as two
 * kernels, one for dk and dv (a block per key tile, looping over queries)
 * and one for dq (a block per query tile, looping over keys), so that every
 * gradient is summed by one block in a fixed order: no atomics.
 *
 * Head sizes 32, 64 and 128; others go the plain way (attention.cu). The
 * semantics are attention.cu's: a row with no visible key attends uniformly
 * to all T keys and passes no gradient to q and k.
 */
#include "cuda.cuh"

#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

#define TILE 64
#define WARPS 4

/* parts [B·T, parts·C] fp32 (rows ld apart) → [B·H, T, D] bf16 each (q, k,
 * v for qkv; one for dy), eight values per thread */
__global__ void k_heads_bf16(bf16 *q, bf16 *k, bf16 *v, const float *src, int parts, int ld, int B, int T, int C, int H)
{
	int D = C / H, per = parts * C / 8;
	size_t n = (size_t)B * T * per;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / per;
		int j = (int)(i % per) * 8, part = j / C, hc = j % C, h = hc / D, d = hc % D, b = (int)(r / T), t = (int)(r % T);
		const float4 *x = (const float4 *)(src + r * ld + j);
		float4 u = x[0], w = x[1];
		__nv_bfloat162 o[4] = {__floats2bfloat162_rn(u.x, u.y), __floats2bfloat162_rn(u.z, u.w),
		                       __floats2bfloat162_rn(w.x, w.y), __floats2bfloat162_rn(w.z, w.w)};
		bf16 *dst = part == 0 ? q : part == 1 ? k : v;
		*(uint4 *)(dst + (((size_t)b * H + h) * T + t) * D + d) = *(uint4 *)o;
	}
}

/* first[b]: the first key with mask 1 in row b (T: none); 0 without a mask */
__global__ void k_first_key(int *first, const uint8_t *mask, int B, int T)
{
	int b = blockIdx.x * blockDim.x + threadIdx.x;
	if (b >= B)
		return;
	int f = 0;
	if (mask)
		for (f = 0; f < T && !mask[(size_t)b * T + f]; f++)
			;
	first[b] = f;
}

/* D_i = Σ_d dy·y per row and head */
__global__ void k_rowdot(float *Dv, const float *dy, const float *y, int B, int T, int C, int H)
{
	int D = C / H;
	size_t n = (size_t)B * T * H;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / H; /* b·T + t */
		int h = (int)(i % H), b = (int)(r / T), t = (int)(r % T);
		const float *a = dy + r * C + (size_t)h * D, *o = y + r * C + (size_t)h * D;
		float s = 0;
		for (int d = 0; d < D; d++)
			s += a[d] * o[d];
		Dv[((size_t)b * H + h) * T + t] = s;
	}
}

/* Does query t of batch row b see no key at all (then: uniform over all keys)? */
__device__ inline bool uniform_row(int first, int causal, int T, int t)
{
	return first > (causal ? (t < T ? t : T - 1) : T - 1);
}

/* One block per (64 queries, b·h); each warp owns 16 queries, and each lane
 * half a row: row lane / 2, the columns of parity lane % 2. */
/* Tiles in shared memory are rows of D bf16 padded to SD (16 bytes more),
 * so that ldmatrix's eight rows fall in different banks. */
#define SD(D) ((D) + 8)

__device__ inline void ldsm4(uint32_t r[4], const bf16 *p)
{
	uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(a));
}

__device__ inline void ldsm4t(uint32_t r[4], const bf16 *p)
{
	uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(a));
}

/* c (16 × 8, fp32) += a (16 × 16, bf16, row) · b (16 × 8, bf16, col) */
__device__ inline void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	             "{%0,%1,%2,%3};\n"
	             : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline uint32_t pack2(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *(uint32_t *)&v;
}

/* The A operand (16 rows from r0, 16 columns from c0) of a tile X [rows][SD] */
template <int D> __device__ inline void frag_a(uint32_t a[4], const bf16 *X, int r0, int c0, int lane)
{
	ldsm4(a, X + (r0 + (lane & 15)) * SD(D) + c0 + (lane >> 4) * 8);
}

/* B for the two 8-column tiles from n0 and 16 k from k0, X stored [n][k] */
template <int D> __device__ inline void frag_b_nk(uint32_t b[4], const bf16 *X, int n0, int k0, int lane)
{
	ldsm4(b, X + (n0 + (lane & 7) + (lane >> 4) * 8) * SD(D) + k0 + ((lane >> 3) & 1) * 8);
}

/* the same with X stored [k][n] */
template <int D> __device__ inline void frag_b_kn(uint32_t b[4], const bf16 *X, int k0, int n0, int lane)
{
	ldsm4t(b, X + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * SD(D) + n0 + (lane >> 4) * 8);
}

/* acc [8][4] (16 rows × 64 columns) = A (regs, 16 × D) · Xᵀ where X [64][D] is stored [n][k] */
template <int D> __device__ inline void rows_x_tile(float acc[8][4], const uint32_t a[D / 16][4], const bf16 *X, int lane)
{
#pragma unroll
	for (int n = 0; n < 8; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
	for (int n2 = 0; n2 < 4; n2++)
#pragma unroll
		for (int kc = 0; kc < D / 16; kc++) {
			uint32_t b[4];
			frag_b_nk<D>(b, X, n2 * 16, kc * 16, lane);
			mma(acc[2 * n2], a[kc], b[0], b[1]);
			mma(acc[2 * n2 + 1], a[kc], b[2], b[3]);
		}
}

/* out [D/8][4] (16 rows × D) += P (16 × 64, fp32 in acc layout, made bf16) · X where X [64][D] is stored [k][n] */
template <int D> __device__ inline void p_x_tile(float out[D / 8][4], const float p[8][4], const bf16 *X, int lane)
{
#pragma unroll
	for (int kc = 0; kc < 4; kc++) {
		uint32_t a[4] = {pack2(p[2 * kc][0], p[2 * kc][1]), pack2(p[2 * kc][2], p[2 * kc][3]),
		                 pack2(p[2 * kc + 1][0], p[2 * kc + 1][1]), pack2(p[2 * kc + 1][2], p[2 * kc + 1][3])};
#pragma unroll
		for (int n2 = 0; n2 < D / 16; n2++) {
			uint32_t b[4];
			frag_b_kn<D>(b, X, kc * 16, n2 * 16, lane);
			mma(out[2 * n2], a, b[0], b[1]);
			mma(out[2 * n2 + 1], a, b[2], b[3]);
		}
	}
}

/* rows [row0, row0 + 64) of one head's [T, D] array into a padded tile, zero past T */
template <int D> __device__ inline void load_tp(bf16 *dst, const bf16 *src, int row0, int T)
{
	const int per = D / 8;
	for (int i = threadIdx.x; i < TILE * per; i += blockDim.x) {
		int r = i / per, c = i % per, t = row0 + r;
		uint4 v = make_uint4(0, 0, 0, 0);
		if (t < T)
			v = *(const uint4 *)(src + (size_t)t * D + c * 8);
		*(uint4 *)(dst + r * SD(D) + c * 8) = v;
	}
}

/* key tile kt of one head into Ks, Vs, and which of its keys the mask lets
 * through (and exist) into vk; every thread of the block calls it */
template <int D>
__device__ inline void load_keys(bf16 *Ks, bf16 *Vs, uint8_t *vk, const bf16 *kh, const bf16 *vh, const uint8_t *mask, int b,
                                 int T, int kt)
{
	load_tp<D>(Ks, kh, kt * TILE, T);
	load_tp<D>(Vs, vh, kt * TILE, T);
	for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
		int x = kt * TILE + i;
		vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
	}
}

__device__ inline float quad_max(float v)
{
	v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
	return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v)
{
	v += __shfl_xor_sync(0xffffffffu, v, 1);
	return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* Forward: a block per (64 queries, b·h), a warp per 16 queries; each lane
 * holds rows g and g + 8 of its warp's (g = lane / 4) at columns 2t, 2t + 1
 * of every 8 (t = lane % 4), as mma.sync lays out its results. */
template <int D>
__global__ void __launch_bounds__(WARPS * 32) k_fa_fwd(float *y, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                       const uint8_t *mask, const int *first, int B, int T, int H,
                                                       int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Qs = (bf16 *)sm, *Ks = Qs + TILE * SD(D), *Vs = Ks + TILE * SD(D);
	uint8_t *vk = (uint8_t *)(Vs + TILE * SD(D));
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
	int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D;
	int fb = first[b], row[2] = {qt * TILE + w * 16 + g, qt * TILE + w * 16 + g + 8};
	bool uni[2] = {uniform_row(fb, causal, T, row[0]), uniform_row(fb, causal, T, row[1])};
	load_tp<D>(Qs, qh, qt * TILE, T);
	__syncthreads();
	uint32_t qf[D / 16][4];
#pragma unroll
	for (int kc = 0; kc < D / 16; kc++)
		frag_a<D>(qf[kc], Qs, w * 16, kc * 16, lane);
	float o[D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};
#pragma unroll
	for (int n = 0; n < D / 8; n++)
		o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
	int nt = (T + TILE - 1) / TILE, last = causal && fb <= qt * TILE ? qt + 1 : nt;
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_keys<D>(Ks, Vs, vk, kh, vh, mask, b, T, kt);
		__syncthreads();
		float s[8][4];
		rows_x_tile<D>(s, qf, Ks, lane);
		float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
		for (int n = 0; n < 8; n++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int r = e >> 1, c = n * 8 + 2 * t4 + (e & 1), x = kt * TILE + c;
				bool vis = uni[r] ? x < T : vk[c] && (!causal || x <= row[r]);
				s[n][e] = vis ? (uni[r] ? 0.0f : s[n][e] * scale) : -INFINITY;
				mx[r] = fmaxf(mx[r], s[n][e]);
			}
		float alpha[2];
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float mn = fmaxf(m[r], quad_max(mx[r]));
			alpha[r] = mn == -INFINITY || m[r] == -INFINITY ? (mn == -INFINITY ? 1.0f : 0.0f) : __expf(m[r] - mn);
			mx[r] = mn; /* the new max */
		}
		float ps[2] = {0, 0};
#pragma unroll
		for (int n = 0; n < 8; n++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int r = e >> 1;
				float pv = s[n][e] == -INFINITY ? 0.0f : __expf(s[n][e] - mx[r]);
				s[n][e] = pv;
				ps[r] += pv;
			}
#pragma unroll
		for (int r = 0; r < 2; r++) {
			l[r] = l[r] * alpha[r] + quad_sum(ps[r]);
			m[r] = mx[r];
		}
#pragma unroll
		for (int n = 0; n < D / 8; n++) {
			o[n][0] *= alpha[0];
			o[n][1] *= alpha[0];
			o[n][2] *= alpha[1];
			o[n][3] *= alpha[1];
		}
		p_x_tile<D>(o, s, Vs, lane);
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		if (row[r] >= T)
			continue;
		float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
		float *yr = y + ((size_t)b * T + row[r]) * C + (size_t)h * D;
#pragma unroll
		for (int n = 0; n < D / 8; n++) {
			yr[n * 8 + 2 * t4] = o[n][2 * r] * inv;
			yr[n * 8 + 2 * t4 + 1] = o[n][2 * r + 1] * inv;
		}
		if (t4 == 0)
			lse[(size_t)bh * T + row[r]] = m[r] + logf(l[r]);
	}
}

/* dq: a block per (64 queries, b·h), a warp per 16 queries, over the key tiles */
template <int D>
__global__ void __launch_bounds__(WARPS * 32)
	k_fa_bwd_q(float *dqkv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse,
	           const float *Dv, const uint8_t *mask, const int *first, int B, int T, int H, int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Qs = (bf16 *)sm, *Gs = Qs + TILE * SD(D), *Ks = Gs + TILE * SD(D), *Vs = Ks + TILE * SD(D);
	uint8_t *vk = (uint8_t *)(Vs + TILE * SD(D));
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
	int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D,
	           *gh = dout + (size_t)bh * T * D;
	int fb = first[b], row[2] = {qt * TILE + w * 16 + g, qt * TILE + w * 16 + g + 8};
	bool off[2]; /* no gradient to q: past T, or a row that sees no key */
	float L[2], Dr[2];
	for (int r = 0; r < 2; r++) {
		off[r] = row[r] >= T || uniform_row(fb, causal, T, row[r]);
		L[r] = row[r] < T ? lse[(size_t)bh * T + row[r]] : 0.0f;
		Dr[r] = row[r] < T ? Dv[(size_t)bh * T + row[r]] : 0.0f;
	}
	load_tp<D>(Qs, qh, qt * TILE, T);
	load_tp<D>(Gs, gh, qt * TILE, T);
	__syncthreads();
	uint32_t qf[D / 16][4], gf[D / 16][4];
#pragma unroll
	for (int kc = 0; kc < D / 16; kc++) {
		frag_a<D>(qf[kc], Qs, w * 16, kc * 16, lane);
		frag_a<D>(gf[kc], Gs, w * 16, kc * 16, lane);
	}
	float dq[D / 8][4];
#pragma unroll
	for (int n = 0; n < D / 8; n++)
		dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
	int nt = (T + TILE - 1) / TILE, last = causal ? qt + 1 : nt;
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_keys<D>(Ks, Vs, vk, kh, vh, mask, b, T, kt);
		__syncthreads();
		float s[8][4], dp[8][4];
		rows_x_tile<D>(s, qf, Ks, lane);
		rows_x_tile<D>(dp, gf, Vs, lane);
#pragma unroll
		for (int n = 0; n < 8; n++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int r = e >> 1, c = n * 8 + 2 * t4 + (e & 1), x = kt * TILE + c;
				bool vis = !off[r] && vk[c] && (!causal || x <= row[r]);
				float pv = vis ? __expf(s[n][e] * scale - L[r]) : 0.0f;
				s[n][e] = pv * (dp[n][e] - Dr[r]) * scale; /* dS */
			}
		p_x_tile<D>(dq, s, Ks, lane);
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		if (row[r] >= T)
			continue;
		float *dr = dqkv + ((size_t)b * T + row[r]) * 3 * C + (size_t)h * D;
#pragma unroll
		for (int n = 0; n < D / 8; n++) {
			dr[n * 8 + 2 * t4] += dq[n][2 * r];
			dr[n * 8 + 2 * t4 + 1] += dq[n][2 * r + 1];
		}
	}
}

/* dk, dv: a block per (64 keys, b·h), a warp per 16 keys, over the query tiles */
template <int D>
__global__ void __launch_bounds__(WARPS * 32)
	k_fa_bwd_kv(float *dqkv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse,
	            const float *Dv, const uint8_t *mask, const int *first, int B, int T, int H, int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Ks = (bf16 *)sm, *Vs = Ks + TILE * SD(D), *Qs = Vs + TILE * SD(D), *Gs = Qs + TILE * SD(D);
	float *Ls = (float *)(Gs + TILE * SD(D)), *Ds = Ls + TILE;
	uint8_t *vk = (uint8_t *)(Ds + TILE);
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
	int kt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D,
	           *gh = dout + (size_t)bh * T * D;
	int fb = first[b], key[2] = {kt * TILE + w * 16 + g, kt * TILE + w * 16 + g + 8};
	load_keys<D>(Ks, Vs, vk, kh, vh, mask, b, T, kt);
	__syncthreads();
	uint32_t kf[D / 16][4], vf[D / 16][4];
#pragma unroll
	for (int kc = 0; kc < D / 16; kc++) {
		frag_a<D>(kf[kc], Ks, w * 16, kc * 16, lane);
		frag_a<D>(vf[kc], Vs, w * 16, kc * 16, lane);
	}
	bool kvis[2] = {vk[w * 16 + g] != 0, vk[w * 16 + g + 8] != 0};
	float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
	for (int n = 0; n < D / 8; n++)
		dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.0f;
	int nt = (T + TILE - 1) / TILE, from = causal && fb == 0 ? kt : 0;
	for (int qt = from; qt < nt; qt++) {
		__syncthreads();
		load_tp<D>(Qs, qh, qt * TILE, T);
		load_tp<D>(Gs, gh, qt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int tq = qt * TILE + i;
			Ls[i] = tq < T ? lse[(size_t)bh * T + tq] : 0.0f;
			Ds[i] = tq < T ? Dv[(size_t)bh * T + tq] : 0.0f;
		}
		__syncthreads();
		float st[8][4], dpt[8][4]; /* rows: this warp's keys; columns: the tile's queries */
		rows_x_tile<D>(st, kf, Qs, lane);
		rows_x_tile<D>(dpt, vf, Gs, lane);
#pragma unroll
		for (int n = 0; n < 8; n++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int r = e >> 1, c = n * 8 + 2 * t4 + (e & 1), tq = qt * TILE + c, x = key[r];
				bool qin = tq < T && x < T, uni = qin && uniform_row(fb, causal, T, tq);
				float pv = !qin ? 0.0f : uni ? 1.0f / T : kvis[r] && (!causal || x <= tq) ? __expf(st[n][e] * scale - Ls[c]) : 0.0f;
				st[n][e] = pv;
				dpt[n][e] = uni ? 0.0f : pv * (dpt[n][e] - Ds[c]) * scale; /* dSᵀ */
			}
		p_x_tile<D>(dv, st, Gs, lane);
		p_x_tile<D>(dk, dpt, Qs, lane);
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		if (key[r] >= T)
			continue;
		float *dr = dqkv + ((size_t)b * T + key[r]) * 3 * C + (size_t)h * D;
#pragma unroll
		for (int n = 0; n < D / 8; n++) {
			dr[C + n * 8 + 2 * t4] += dk[n][2 * r];
			dr[C + n * 8 + 2 * t4 + 1] += dk[n][2 * r + 1];
			dr[2 * C + n * 8 + 2 * t4] += dv[n][2 * r];
			dr[2 * C + n * 8 + 2 * t4 + 1] += dv[n][2 * r + 1];
		}
	}
}

static size_t fa_smem(int D, int tiles, int extra) { return (size_t)tiles * TILE * SD(D) * 2 + (size_t)extra; }

int cu_flash_ok(int C, int H) { int D = C / H; return C % H == 0 && (D == 32 || D == 64 || D == 128); }

/* the bf16 head-major q, k, v (and dout) and first[] in scratch */
struct flash_bufs {
	bf16 *q, *k, *v, *g;
	int *first;
	float *Dv;
};

static flash_bufs flash_prep(nn_ctx *c, const float *qkv, const float *dy, const uint8_t *mask, int B, int T, int C, int H)
{
	size_t NC = (size_t)B * T * C, BHT = (size_t)B * H * T;
	size_t bytes = (dy ? 4 : 3) * NC * sizeof(bf16) + 256 + (size_t)B * sizeof(int) + 256 + (dy ? BHT * sizeof(float) : 0);
	unsigned char *s = (unsigned char *)nn_scratch(c, bytes);
	flash_bufs f;
	f.q = (bf16 *)s;
	f.k = f.q + NC;
	f.v = f.k + NC;
	f.g = dy ? f.v + NC : NULL;
	unsigned char *after = (unsigned char *)(f.v + (dy ? 2 : 1) * NC);
	after += (256 - (size_t)after % 256) % 256;
	f.first = (int *)after;
	after = (unsigned char *)(f.first + B);
	after += (256 - (size_t)after % 256) % 256;
	f.Dv = dy ? (float *)after : NULL;
	k_heads_bf16<<<cu_blocks(3 * NC / 8, 256), 256, 0, cu.s>>>(f.q, f.k, f.v, qkv, 3, 3 * C, B, T, C, H);
	if (dy)
		k_heads_bf16<<<cu_blocks(NC / 8, 256), 256, 0, cu.s>>>(f.g, NULL, NULL, dy, 1, C, B, T, C, H);
	k_first_key<<<(B + 127) / 128, 128, 0, cu.s>>>(f.first, mask, B, T);
	CKL();
	return f;
}

template <int D> static void fwd(float *y, float *lse, const flash_bufs &f, const uint8_t *mask, int B, int T, int H, int causal)
{
	static int set;
	size_t sm = fa_smem(D, 3, TILE);
	if (!set) {
		CK(cudaFuncSetAttribute(k_fa_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
		set = 1;
	}
	dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
	k_fa_fwd<D><<<g, WARPS * 32, sm, cu.s>>>(y, lse, f.q, f.k, f.v, mask, f.first, B, T, H, causal, 1.0f / sqrtf((float)D));
	CKL();
}

template <int D>
static void bwd(float *dqkv, const float *lse, const flash_bufs &f, const uint8_t *mask, int B, int T, int H, int causal)
{
	static int set;
	size_t s1 = fa_smem(D, 4, 2 * TILE * 4 + TILE), s2 = fa_smem(D, 4, TILE);
	if (!set) {
		CK(cudaFuncSetAttribute(k_fa_bwd_kv<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s1));
		CK(cudaFuncSetAttribute(k_fa_bwd_q<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s2));
		set = 1;
	}
	dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
	float sc = 1.0f / sqrtf((float)D);
	k_fa_bwd_kv<D><<<g, WARPS * 32, s1, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
	CKL();
	k_fa_bwd_q<D><<<g, WARPS * 32, s2, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
	CKL();
}

void cu_flash_forward(nn_ctx *c, float *y, float *lse, const float *qkv, const uint8_t *mask, int B, int T, int C, int H,
                      int causal)
{
	flash_bufs f = flash_prep(c, qkv, NULL, mask, B, T, C, H);
	int D = C / H;
	if (D == 32)
		fwd<32>(y, lse, f, mask, B, T, H, causal);
	else if (D == 64)
		fwd<64>(y, lse, f, mask, B, T, H, causal);
	else
		fwd<128>(y, lse, f, mask, B, T, H, causal);
}

void cu_flash_backward(nn_ctx *c, float *dqkv, const float *dy, const float *qkv, const float *y, const float *lse,
                       const uint8_t *mask, int B, int T, int C, int H, int causal)
{
	flash_bufs f = flash_prep(c, qkv, dy, mask, B, T, C, H);
	k_rowdot<<<cu_blocks((size_t)B * T * H, 256), 256, 0, cu.s>>>(f.Dv, dy, y, B, T, C, H);
	CKL();
	int D = C / H;
	if (D == 32)
		bwd<32>(dqkv, lse, f, mask, B, T, H, causal);
	else if (D == 64)
		bwd<64>(dqkv, lse, f, mask, B, T, H, causal);
	else
		bwd<128>(dqkv, lse, f, mask, B, T, H, causal);
}
