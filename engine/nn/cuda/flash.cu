/*
 * Fused attention for precision NN_BF16, in the flash-attention manner: q,
 * k, v in bf16 tiles of 64 rows in shared memory, the products on the tensor
 * cores (wmma, fp32 accumulation), the softmax online, so that no T×T
 * matrix is ever written to device memory. Forward keeps each row's
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
#include <mma.h>
#include <stdlib.h>
#include <string.h>

using namespace nvcuda;
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

/* rows [row0, row0 + TILE) of one head's [T, D] bf16 array into shared, zero past T */
template <int D> __device__ inline void load_tile(bf16 *dst, const bf16 *src, int row0, int T)
{
	const int per = D / 8; /* 16-byte pieces per row */
	for (int i = threadIdx.x; i < TILE * per; i += blockDim.x) {
		int r = i / per, c = i % per, t = row0 + r;
		uint4 v = make_uint4(0, 0, 0, 0);
		if (t < T)
			v = *(const uint4 *)(src + (size_t)t * D + c * 8);
		*(uint4 *)(dst + r * D + c * 8) = v;
	}
}

/* Does query t of batch row b see no key at all (then: uniform over all keys)? */
__device__ inline bool uniform_row(int first, int causal, int T, int t)
{
	return first > (causal ? (t < T ? t : T - 1) : T - 1);
}

/* Shared strides padded against bank conflicts: S rows (fp32) SLD apart,
 * P rows (bf16) PLD apart, O rows (fp32) D + 4 apart. */
#define SLD (TILE + 4)
#define PLD (TILE + 8)

/* One block per (64 queries, b·h); each warp owns 16 queries, and each lane
 * half a row: row lane / 2, the columns of parity lane % 2. */
template <int D>
__global__ void __launch_bounds__(WARPS * 32) k_flash_fwd(float *y, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                          const uint8_t *mask, const int *first, int B, int T, int H,
                                                          int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	const int OLD = D + 4;
	bf16 *Qs = (bf16 *)sm, *Ks = Qs + TILE * D, *Vs = Ks + TILE * D;
	int w = threadIdx.x / 32, lane = threadIdx.x % 32;
	float *Ss = (float *)(Vs + TILE * D) + w * 16 * SLD;
	bf16 *Ps = (bf16 *)((float *)(Vs + TILE * D) + WARPS * 16 * SLD) + w * 16 * PLD;
	float *Os = (float *)((bf16 *)((float *)(Vs + TILE * D) + WARPS * 16 * SLD) + WARPS * 16 * PLD) + w * 16 * OLD;
	uint8_t *vk = (uint8_t *)((float *)((bf16 *)((float *)(Vs + TILE * D) + WARPS * 16 * SLD) + WARPS * 16 * PLD) +
	                          WARPS * 16 * OLD);
	int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D;
	int fb = first[b], r = lane >> 1, hf = lane & 1, t = qt * TILE + w * 16 + r;
	bool uni = uniform_row(fb, causal, T, t);
	load_tile<D>(Qs, qh, qt * TILE, T);
	for (int i = lane; i < 16 * OLD; i += 32)
		Os[i] = 0;
	__syncthreads();
	wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa[D / 16];
	for (int kk = 0; kk < D / 16; kk++)
		wmma::load_matrix_sync(qa[kk], Qs + w * 16 * D + kk * 16, D);
	float mrow = -INFINITY, lrow = 0;
	int nt = (T + TILE - 1) / TILE, last = causal && fb <= qt * TILE ? qt + 1 : nt;
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_tile<D>(Ks, kh, kt * TILE, T);
		load_tile<D>(Vs, vh, kt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int x = kt * TILE + i;
			vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
		}
		__syncthreads();
		for (int n = 0; n < TILE / 16; n++) {
			wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
			wmma::fill_fragment(acc, 0.0f);
			for (int kk = 0; kk < D / 16; kk++) {
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb;
				wmma::load_matrix_sync(kb, Ks + n * 16 * D + kk * 16, D);
				wmma::mma_sync(acc, qa[kk], kb, acc);
			}
			wmma::store_matrix_sync(Ss + n * 16, acc, SLD, wmma::mem_row_major);
		}
		__syncwarp();
		float sv[TILE / 2], mx = -INFINITY;
#pragma unroll
		for (int j = 0; j < TILE / 2; j++) {
			int c = 2 * j + hf, x = kt * TILE + c;
			bool vis = uni ? x < T : vk[c] && (!causal || x <= t);
			sv[j] = vis ? (uni ? 0.0f : Ss[r * SLD + c] * scale) : -INFINITY;
			mx = fmaxf(mx, sv[j]);
		}
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
		float mn = fmaxf(mrow, mx), alpha = 1, ps = 0;
		if (mn != -INFINITY)
			alpha = mrow == -INFINITY ? 0.0f : __expf(mrow - mn);
#pragma unroll
		for (int j = 0; j < TILE / 2; j++) {
			float p = sv[j] == -INFINITY ? 0.0f : __expf(sv[j] - mn);
			ps += p;
			Ps[r * PLD + 2 * j + hf] = __float2bfloat16_rn(p);
		}
		ps += __shfl_xor_sync(0xffffffffu, ps, 1);
		lrow = lrow * alpha + ps;
		mrow = mn;
		for (int d = hf; d < D; d += 2)
			Os[r * OLD + d] *= alpha;
		__syncwarp();
		for (int n = 0; n < D / 16; n++) {
			wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
			wmma::load_matrix_sync(acc, Os + n * 16, OLD, wmma::mem_row_major);
			for (int kk = 0; kk < TILE / 16; kk++) {
				wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa;
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vb;
				wmma::load_matrix_sync(pa, Ps + kk * 16, PLD);
				wmma::load_matrix_sync(vb, Vs + kk * 16 * D + n * 16, D);
				wmma::mma_sync(acc, pa, vb, acc);
			}
			wmma::store_matrix_sync(Os + n * 16, acc, OLD, wmma::mem_row_major);
		}
		__syncwarp();
	}
	if (t < T) {
		float inv = lrow > 0 ? 1.0f / lrow : 0.0f;
		for (int d = hf; d < D; d += 2)
			y[((size_t)b * T + t) * C + (size_t)h * D + d] = Os[r * OLD + d] * inv;
		if (hf == 0)
			lse[(size_t)bh * T + t] = mrow + logf(lrow);
	}
}

/* dk, dv for one key tile: each warp owns 16 keys; over the query tiles */
template <int D>
__global__ void __launch_bounds__(WARPS * 32)
	k_flash_bwd_kv(float *dqkv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse,
	               const float *Dv, const uint8_t *mask, const int *first, int B, int T, int H, int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Ks = (bf16 *)sm, *Vs = Ks + TILE * D, *Qs = Vs + TILE * D, *Gs = Qs + TILE * D; /* Gs: dout */
	float *Ls = (float *)(Gs + TILE * D), *Ds = Ls + TILE;
	int w = threadIdx.x / 32, lane = threadIdx.x % 32;
	float *Sw = Ds + TILE + w * 16 * TILE;                 /* per warp 16 keys × 64 queries: Sᵀ, then dPᵀ */
	float *Pf = Ds + TILE + WARPS * 16 * TILE + w * 16 * TILE; /* Pᵀ in fp32 */
	bf16 *Pw = (bf16 *)(Ds + TILE + 2 * WARPS * 16 * TILE) + w * 2 * 16 * TILE, *dSw = Pw + 16 * TILE;
	float *Ow = (float *)((bf16 *)(Ds + TILE + 2 * WARPS * 16 * TILE) + WARPS * 2 * 16 * TILE) + w * 16 * D;
	int kt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D,
	           *gh = dout + (size_t)bh * T * D;
	int fb = first[b];
	uint8_t *vk = (uint8_t *)(Ow + (WARPS - w) * 16 * D); /* after the last warp's Ow: the key tile's mask */
	load_tile<D>(Ks, kh, kt * TILE, T);
	load_tile<D>(Vs, vh, kt * TILE, T);
	for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
		int x = kt * TILE + i;
		vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
	}
	__syncthreads();
	wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> ka[D / 16], va[D / 16];
	for (int kk = 0; kk < D / 16; kk++) {
		wmma::load_matrix_sync(ka[kk], Ks + w * 16 * D + kk * 16, D);
		wmma::load_matrix_sync(va[kk], Vs + w * 16 * D + kk * 16, D);
	}
	wmma::fragment<wmma::accumulator, 16, 16, 16, float> dK[D / 16], dV[D / 16];
	for (int n = 0; n < D / 16; n++) {
		wmma::fill_fragment(dK[n], 0.0f);
		wmma::fill_fragment(dV[n], 0.0f);
	}
	int nt = (T + TILE - 1) / TILE, from = causal && fb == 0 ? kt : 0;
	for (int qt = from; qt < nt; qt++) {
		__syncthreads();
		load_tile<D>(Qs, qh, qt * TILE, T);
		load_tile<D>(Gs, gh, qt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int t = qt * TILE + i;
			Ls[i] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
			Ds[i] = t < T ? Dv[(size_t)bh * T + t] : 0.0f;
		}
		__syncthreads();
		/* Sᵀ (16 keys × 64 queries) = K_w Qᵀ, and dPᵀ = V_w dOᵀ */
		for (int pass = 0; pass < 2; pass++) {
			for (int n = 0; n < TILE / 16; n++) {
				wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
				wmma::fill_fragment(acc, 0.0f);
				for (int kk = 0; kk < D / 16; kk++) {
					wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> qb;
					wmma::load_matrix_sync(qb, (pass ? Gs : Qs) + n * 16 * D + kk * 16, D);
					wmma::mma_sync(acc, pass ? va[kk] : ka[kk], qb, acc);
				}
				wmma::store_matrix_sync(Sw + n * 16, acc, TILE, wmma::mem_row_major);
			}
			__syncwarp();
			for (int i = lane; i < 16 * TILE; i += 32) {
				int jr = i / TILE, c = i % TILE, x = kt * TILE + w * 16 + jr, t = qt * TILE + c;
				bool uni = t < T && uniform_row(fb, causal, T, t);
				if (pass == 0) {
					float p = 0;
					if (t < T && x < T)
						p = uni ? 1.0f / T : vk[w * 16 + jr] && (!causal || x <= t) ? __expf(Sw[i] * scale - Ls[c]) : 0.0f;
					Pf[i] = p;
					Pw[i] = __float2bfloat16_rn(p);
				} else {
					dSw[i] = __float2bfloat16_rn(uni ? 0.0f : Pf[i] * (Sw[i] - Ds[c]) * scale);
				}
			}
			__syncwarp();
		}
		/* dV_w += Pᵀ dO; dK_w += dSᵀ Q */
		for (int n = 0; n < D / 16; n++)
			for (int kk = 0; kk < TILE / 16; kk++) {
				wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa, sa;
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> gb, qb;
				wmma::load_matrix_sync(pa, Pw + kk * 16, TILE);
				wmma::load_matrix_sync(gb, Gs + kk * 16 * D + n * 16, D);
				wmma::mma_sync(dV[n], pa, gb, dV[n]);
				wmma::load_matrix_sync(sa, dSw + kk * 16, TILE);
				wmma::load_matrix_sync(qb, Qs + kk * 16 * D + n * 16, D);
				wmma::mma_sync(dK[n], sa, qb, dK[n]);
			}
	}
	/* add into dqkv's k and v parts */
	for (int part = 1; part <= 2; part++) {
		for (int n = 0; n < D / 16; n++)
			wmma::store_matrix_sync(Ow + n * 16, part == 1 ? dK[n] : dV[n], D, wmma::mem_row_major);
		__syncwarp();
		for (int i = lane; i < 16 * D; i += 32) {
			int jr = i / D, d = i % D, x = kt * TILE + w * 16 + jr;
			if (x < T)
				dqkv[((size_t)b * T + x) * 3 * C + (size_t)part * C + (size_t)h * D + d] += Ow[i];
		}
		__syncwarp();
	}
}

/* dq for one query tile: each warp owns 16 queries; over the key tiles */
template <int D>
__global__ void __launch_bounds__(WARPS * 32)
	k_flash_bwd_q(float *dqkv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse,
	              const float *Dv, const uint8_t *mask, const int *first, int B, int T, int H, int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Ks = (bf16 *)sm, *Vs = Ks + TILE * D, *Qs = Vs + TILE * D, *Gs = Qs + TILE * D;
	int w = threadIdx.x / 32, lane = threadIdx.x % 32;
	float *Sw = (float *)(Gs + TILE * D) + w * 16 * TILE;                     /* S, then dP */
	float *Pf = (float *)(Gs + TILE * D) + WARPS * 16 * TILE + w * 16 * TILE; /* P in fp32 */
	bf16 *Pw = (bf16 *)((float *)(Gs + TILE * D) + 2 * WARPS * 16 * TILE) + w * 16 * TILE; /* dS in bf16 */
	float *Ow = (float *)((bf16 *)((float *)(Gs + TILE * D) + 2 * WARPS * 16 * TILE) + WARPS * 16 * TILE) + w * 16 * D;
	int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D,
	           *gh = dout + (size_t)bh * T * D;
	int fb = first[b];
	load_tile<D>(Qs, qh, qt * TILE, T);
	load_tile<D>(Gs, gh, qt * TILE, T);
	__syncthreads();
	wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa[D / 16], ga[D / 16];
	for (int kk = 0; kk < D / 16; kk++) {
		wmma::load_matrix_sync(qa[kk], Qs + w * 16 * D + kk * 16, D);
		wmma::load_matrix_sync(ga[kk], Gs + w * 16 * D + kk * 16, D);
	}
	wmma::fragment<wmma::accumulator, 16, 16, 16, float> dQ[D / 16];
	for (int n = 0; n < D / 16; n++)
		wmma::fill_fragment(dQ[n], 0.0f);
	float L[16], Dr[16];
	bool uni[16];
	for (int r = 0; r < 16; r++) {
		int t = qt * TILE + w * 16 + r;
		L[r] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
		Dr[r] = t < T ? Dv[(size_t)bh * T + t] : 0.0f;
		uni[r] = t >= T || uniform_row(fb, causal, T, t); /* no gradient to q */
	}
	int nt = (T + TILE - 1) / TILE, last = causal ? qt + 1 : nt;
	uint8_t *vk = (uint8_t *)(Ow + (WARPS - w) * 16 * D); /* after the last warp's Ow: this key tile's mask */
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_tile<D>(Ks, kh, kt * TILE, T);
		load_tile<D>(Vs, vh, kt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int x = kt * TILE + i;
			vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
		}
		__syncthreads();
		/* S = Q_w Kᵀ, P from it; then dP = dO_w Vᵀ and dS */
		for (int pass = 0; pass < 2; pass++) {
			for (int n = 0; n < TILE / 16; n++) {
				wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
				wmma::fill_fragment(acc, 0.0f);
				for (int kk = 0; kk < D / 16; kk++) {
					wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb;
					wmma::load_matrix_sync(kb, (pass ? Vs : Ks) + n * 16 * D + kk * 16, D);
					wmma::mma_sync(acc, pass ? ga[kk] : qa[kk], kb, acc);
				}
				wmma::store_matrix_sync(Sw + n * 16, acc, TILE, wmma::mem_row_major);
			}
			__syncwarp();
#pragma unroll
			for (int r = 0; r < 16; r++) {
				int t = qt * TILE + w * 16 + r;
				for (int c = lane; c < TILE; c += 32) {
					int x = kt * TILE + c, i = r * TILE + c;
					if (pass == 0)
						Pf[i] = !uni[r] && vk[c] && (!causal || x <= t) ? __expf(Sw[i] * scale - L[r]) : 0.0f;
					else
						Pw[i] = __float2bfloat16_rn(Pf[i] * (Sw[i] - Dr[r]) * scale); /* dS */
				}
			}
			__syncwarp();
		}
		for (int n = 0; n < D / 16; n++)
			for (int kk = 0; kk < TILE / 16; kk++) {
				wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> sa;
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> kb;
				wmma::load_matrix_sync(sa, Pw + kk * 16, TILE);
				wmma::load_matrix_sync(kb, Ks + kk * 16 * D + n * 16, D);
				wmma::mma_sync(dQ[n], sa, kb, dQ[n]);
			}
	}
	for (int n = 0; n < D / 16; n++)
		wmma::store_matrix_sync(Ow + n * 16, dQ[n], D, wmma::mem_row_major);
	__syncwarp();
	for (int i = lane; i < 16 * D; i += 32) {
		int r = i / D, d = i % D, t = qt * TILE + w * 16 + r;
		if (t < T)
			dqkv[((size_t)b * T + t) * 3 * C + (size_t)h * D + d] += Ow[i];
	}
}

/* --- the same three kernels on mma.sync, the tiles' products in registers --------------- */

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
		load_tp<D>(Ks, kh, kt * TILE, T);
		load_tp<D>(Vs, vh, kt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int x = kt * TILE + i;
			vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
		}
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
		load_tp<D>(Ks, kh, kt * TILE, T);
		load_tp<D>(Vs, vh, kt * TILE, T);
		for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
			int x = kt * TILE + i;
			vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
		}
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
	load_tp<D>(Ks, kh, kt * TILE, T);
	load_tp<D>(Vs, vh, kt * TILE, T);
	for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
		int x = kt * TILE + i;
		vk[i] = x < T && (!mask || mask[(size_t)b * T + x]);
	}
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

static size_t fwd_smem(int D) { return 3 * TILE * D * 2 + WARPS * 16 * (SLD * 4 + PLD * 2 + (D + 4) * 4) + TILE; }
static size_t kv_smem(int D)
{
	return 4 * TILE * D * 2 + 2 * TILE * 4 + WARPS * 16 * TILE * (4 + 4 + 2 + 2) + WARPS * 16 * D * 4 + TILE;
}
static size_t q_smem(int D) { return 4 * TILE * D * 2 + WARPS * 16 * TILE * (4 + 4 + 2) + WARPS * 16 * D * 4 + TILE; }

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
	unsigned char *s = (unsigned char *)cu_scratch(c, bytes);
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

/* HONE_FLASH=wmma: the first kernels (wmma through shared memory), to compare */
static int use_wmma(void)
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("HONE_FLASH");
		v = e && !strcmp(e, "wmma");
	}
	return v;
}

template <int D> static void fwd(float *y, float *lse, const flash_bufs &f, const uint8_t *mask, int B, int T, int H, int causal)
{
	if (!use_wmma()) {
		static int set2;
		size_t sm = fa_smem(D, 3, TILE);
		if (!set2) {
			CK(cudaFuncSetAttribute(k_fa_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
			set2 = 1;
		}
		dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
		k_fa_fwd<D><<<g, WARPS * 32, sm, cu.s>>>(y, lse, f.q, f.k, f.v, mask, f.first, B, T, H, causal, 1.0f / sqrtf((float)D));
		CKL();
		return;
	}
	static int set;
	size_t sm = fwd_smem(D);
	if (!set) {
		CK(cudaFuncSetAttribute(k_flash_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
		set = 1;
	}
	dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
	k_flash_fwd<D><<<g, WARPS * 32, sm, cu.s>>>(y, lse, f.q, f.k, f.v, mask, f.first, B, T, H, causal, 1.0f / sqrtf((float)D));
	CKL();
}

template <int D>
static void bwd(float *dqkv, const float *lse, const flash_bufs &f, const uint8_t *mask, int B, int T, int H, int causal)
{
	if (!use_wmma()) {
		static int set2;
		size_t s1 = fa_smem(D, 4, 2 * TILE * 4 + TILE), s2 = fa_smem(D, 4, TILE);
		if (!set2) {
			CK(cudaFuncSetAttribute(k_fa_bwd_kv<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s1));
			CK(cudaFuncSetAttribute(k_fa_bwd_q<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s2));
			set2 = 1;
		}
		dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
		float sc = 1.0f / sqrtf((float)D);
		k_fa_bwd_kv<D><<<g, WARPS * 32, s1, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
		CKL();
		k_fa_bwd_q<D><<<g, WARPS * 32, s2, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
		CKL();
		return;
	}
	static int set;
	size_t s1 = kv_smem(D), s2 = q_smem(D);
	if (!set) {
		CK(cudaFuncSetAttribute(k_flash_bwd_kv<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s1));
		CK(cudaFuncSetAttribute(k_flash_bwd_q<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s2));
		set = 1;
	}
	dim3 g((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
	float sc = 1.0f / sqrtf((float)D);
	k_flash_bwd_kv<D><<<g, WARPS * 32, s1, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
	CKL();
	k_flash_bwd_q<D><<<g, WARPS * 32, s2, cu.s>>>(dqkv, f.q, f.k, f.v, f.g, lse, f.Dv, mask, f.first, B, T, H, causal, sc);
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
