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

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define TILE 64
#define WARPS 4

/* qkv [B·T, 3C] fp32 → q, k, v [B·H, T, D] bf16 (x: any [B·T, C] part) */
__global__ void k_heads_bf16(bf16 *dst, const float *src, int ld, int B, int T, int C, int H)
{
	int D = C / H;
	size_t n = (size_t)B * T * C;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / C;
		int hc = (int)(i % C), h = hc / D, d = hc % D, b = (int)(r / T), t = (int)(r % T);
		dst[(((size_t)b * H + h) * T + t) * D + d] = __float2bfloat16_rn(src[r * ld + hc]);
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

__device__ inline bool visible(const uint8_t *mask, int causal, int b, int T, int t, int x)
{
	return x < T && (!causal || x <= t) && (!mask || mask[(size_t)b * T + x]);
}

/* Does query t of batch row b see no key at all (then: uniform over all keys)? */
__device__ inline bool uniform_row(int first, int causal, int T, int t)
{
	return first > (causal ? (t < T ? t : T - 1) : T - 1);
}

template <int D>
__global__ void __launch_bounds__(WARPS * 32) k_flash_fwd(float *y, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                          const uint8_t *mask, const int *first, int B, int T, int H,
                                                          int causal, float scale)
{
	extern __shared__ __align__(128) unsigned char sm[];
	bf16 *Qs = (bf16 *)sm, *Ks = Qs + TILE * D, *Vs = Ks + TILE * D;
	int w = threadIdx.x / 32, lane = threadIdx.x % 32;
	float *Ss = (float *)(Vs + TILE * D) + w * 16 * TILE;                     /* per warp 16 × 64 */
	bf16 *Ps = (bf16 *)((float *)(Vs + TILE * D) + WARPS * 16 * TILE) + w * 16 * TILE;
	float *Os = (float *)((bf16 *)((float *)(Vs + TILE * D) + WARPS * 16 * TILE) + WARPS * 16 * TILE) + w * 16 * D;
	int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, C = H * D;
	const bf16 *qh = q + (size_t)bh * T * D, *kh = k + (size_t)bh * T * D, *vh = v + (size_t)bh * T * D;
	int fb = first[b];
	load_tile<D>(Qs, qh, qt * TILE, T);
	for (int i = lane; i < 16 * D; i += 32)
		Os[i] = 0;
	__syncthreads();
	wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa[D / 16];
	for (int kk = 0; kk < D / 16; kk++)
		wmma::load_matrix_sync(qa[kk], Qs + w * 16 * D + kk * 16, D);
	float m[16], l[16];
	bool uni[16];
	for (int r = 0; r < 16; r++) {
		m[r] = -INFINITY;
		l[r] = 0;
		uni[r] = uniform_row(fb, causal, T, qt * TILE + w * 16 + r);
	}
	int nt = (T + TILE - 1) / TILE, last = causal && fb <= qt * TILE ? qt + 1 : nt;
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_tile<D>(Ks, kh, kt * TILE, T);
		load_tile<D>(Vs, vh, kt * TILE, T);
		__syncthreads();
		for (int n = 0; n < TILE / 16; n++) {
			wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
			wmma::fill_fragment(acc, 0.0f);
			for (int kk = 0; kk < D / 16; kk++) {
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb;
				wmma::load_matrix_sync(kb, Ks + n * 16 * D + kk * 16, D);
				wmma::mma_sync(acc, qa[kk], kb, acc);
			}
			wmma::store_matrix_sync(Ss + n * 16, acc, TILE, wmma::mem_row_major);
		}
		__syncwarp();
#pragma unroll
		for (int r = 0; r < 16; r++) {
			int t = qt * TILE + w * 16 + r;
			float s2[2];
			bool vis2[2];
			for (int j = 0; j < 2; j++) {
				int c = lane + 32 * j, x = kt * TILE + c;
				vis2[j] = uni[r] ? x < T : visible(mask, causal, b, T, t, x);
				s2[j] = vis2[j] ? (uni[r] ? 0.0f : Ss[r * TILE + c] * scale) : -INFINITY;
			}
			float mx = warp_max(fmaxf(s2[0], s2[1])), mn = fmaxf(m[r], mx);
			float p0 = 0, p1 = 0, alpha = 1;
			if (mn != -INFINITY) {
				p0 = vis2[0] ? __expf(s2[0] - mn) : 0.0f;
				p1 = vis2[1] ? __expf(s2[1] - mn) : 0.0f;
				alpha = m[r] == -INFINITY ? 0.0f : __expf(m[r] - mn);
			}
			l[r] = l[r] * alpha + warp_sum(p0 + p1);
			m[r] = mn;
			Ps[r * TILE + lane] = __float2bfloat16_rn(p0);
			Ps[r * TILE + lane + 32] = __float2bfloat16_rn(p1);
			for (int d = lane; d < D; d += 32)
				Os[r * D + d] *= alpha;
		}
		__syncwarp();
		for (int n = 0; n < D / 16; n++) {
			wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
			wmma::load_matrix_sync(acc, Os + n * 16, D, wmma::mem_row_major);
			for (int kk = 0; kk < TILE / 16; kk++) {
				wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa;
				wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vb;
				wmma::load_matrix_sync(pa, Ps + kk * 16, TILE);
				wmma::load_matrix_sync(vb, Vs + kk * 16 * D + n * 16, D);
				wmma::mma_sync(acc, pa, vb, acc);
			}
			wmma::store_matrix_sync(Os + n * 16, acc, D, wmma::mem_row_major);
		}
		__syncwarp();
	}
	for (int r = 0; r < 16; r++) {
		int t = qt * TILE + w * 16 + r;
		if (t >= T)
			break;
		float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
		for (int d = lane; d < D; d += 32)
			y[((size_t)b * T + t) * C + (size_t)h * D + d] = Os[r * D + d] * inv;
		if (lane == 0)
			lse[(size_t)bh * T + t] = m[r] + logf(l[r]);
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
	load_tile<D>(Ks, kh, kt * TILE, T);
	load_tile<D>(Vs, vh, kt * TILE, T);
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
						p = uni ? 1.0f / T : visible(mask, causal, b, T, t, x) ? __expf(Sw[i] * scale - Ls[c]) : 0.0f;
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
	for (int kt = 0; kt < last; kt++) {
		__syncthreads();
		load_tile<D>(Ks, kh, kt * TILE, T);
		load_tile<D>(Vs, vh, kt * TILE, T);
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
						Pf[i] = !uni[r] && visible(mask, causal, b, T, t, x) ? __expf(Sw[i] * scale - L[r]) : 0.0f;
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

static size_t fwd_smem(int D) { return 3 * TILE * D * 2 + WARPS * 16 * TILE * (4 + 2) + WARPS * 16 * D * 4; }
static size_t kv_smem(int D)
{
	return 4 * TILE * D * 2 + 2 * TILE * 4 + WARPS * 16 * TILE * (4 + 4 + 2 + 2) + WARPS * 16 * D * 4;
}
static size_t q_smem(int D) { return 4 * TILE * D * 2 + WARPS * 16 * TILE * (4 + 4 + 2) + WARPS * 16 * D * 4; }

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
	unsigned g = cu_blocks(NC, 256);
	k_heads_bf16<<<g, 256, 0, cu.s>>>(f.q, qkv, 3 * C, B, T, C, H);
	k_heads_bf16<<<g, 256, 0, cu.s>>>(f.k, qkv + C, 3 * C, B, T, C, H);
	k_heads_bf16<<<g, 256, 0, cu.s>>>(f.v, qkv + 2 * C, 3 * C, B, T, C, H);
	if (dy)
		k_heads_bf16<<<g, 256, 0, cu.s>>>(f.g, dy, C, B, T, C, H);
	k_first_key<<<(B + 127) / 128, 128, 0, cu.s>>>(f.first, mask, B, T);
	CKL();
	return f;
}

template <int D> static void fwd(float *y, float *lse, const flash_bufs &f, const uint8_t *mask, int B, int T, int H, int causal)
{
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
