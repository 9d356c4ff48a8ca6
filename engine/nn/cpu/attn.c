/*
 * Fused multi-head attention for the CPU backend (AVX-512F + FMA, chosen at
 * run time; cpu.c keeps the sgemm-per-head path for other machines).
 *
 * One head at a time, in blocks of MR query rows: the block's scores
 * q·kᵀ for the keys its rows see (a register-tiled product against kᵀ
 * packed once per head), the softmax of each row while the block is in L1
 * (one vectorized e^x, no libm call), and the block's output P·v, before
 * the next block. Backward does the same per block (probabilities again,
 * dP = dy·vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, dq += dS·k) and keeps
 * the head's P and dS (T × T, as the sgemm path does) for dv += Pᵀ·dy and
 * dk += dSᵀ·q at the end. Masked and causal keys are skipped, not computed
 * and thrown away: a causal block stops at its last row's key, a padded
 * row's keys stop at its prefix.
 *
 * Every product sums over its inner index in increasing order in one
 * thread; a head never depends on the thread that runs it, so the bits do
 * not depend on the thread count. They do differ from the sgemm path's
 * (another summation order, another e^x): both are within a few float
 * roundings of the double-precision reference (engine/nn/ref.c).
 */
#include "cpu.h"

#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_FUSED 1
#endif

static int allow_fused = 1;

void nn_cpu_attention_fused(int allow) { allow_fused = allow; }

#define MR 6 /* query (or key) rows per register tile */

static int pad16(int n) { return (n + 15) & ~15; }

size_t cpu_attn_scratch(int T, int hd, int backward)
{
	size_t Tp = (size_t)pad16(T), d = (size_t)hd;
	return backward ? 2 * d * Tp + 2 * (size_t)T * Tp : d * Tp + MR * Tp;
}

/* the keys 0..n-1 that row i may see (with a general mask, those of them
 * the mask lets through) */
static int row_n(int i, int L, int causal, int T)
{
	if (L > 0)
		return (causal && i < L ? i : L - 1) + 1;
	return causal ? i + 1 : T;
}

/* dst [hd × Tp] = srcᵀ (src: T rows ld apart, hd floats each) */
static void pack_t(float *dst, const float *src, int T, ptrdiff_t ld, int hd, int Tp)
{
	for (int j = 0; j < T; j++)
		for (int d = 0; d < hd; d++)
			dst[(ptrdiff_t)d * Tp + j] = src[(ptrdiff_t)j * ld + d];
}

#ifdef HAVE_FUSED

#define T512 __attribute__((target("avx512f,fma")))
#define INL static inline __attribute__((always_inline))

/* One register tile: c[mr × (16·nv, the last vector cut to tail)]
 * (acc ? += : =) Σ_{k0 ≤ kk < k1} a[r·ars + kk·acs] · b[kk·ldb + j] */
INL T512 void tile(const int mr, const int nv, __mmask16 tail, int k0, int k1, const float *a, ptrdiff_t ars,
                   ptrdiff_t acs, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, int acc)
{
	__m512 z[MR][4];
#pragma GCC unroll 6
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			z[r][v] = _mm512_setzero_ps();
	for (int kk = k0; kk < k1; kk++) {
		const float *bk = b + (ptrdiff_t)kk * ldb, *ak = a + (ptrdiff_t)kk * acs;
		__m512 bv[4];
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			bv[v] = v < nv - 1 ? _mm512_loadu_ps(bk + 16 * v) : _mm512_maskz_loadu_ps(tail, bk + 16 * v);
#pragma GCC unroll 6
		for (int r = 0; r < mr; r++) {
			__m512 av = _mm512_set1_ps(ak[r * ars]);
#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				z[r][v] = _mm512_fmadd_ps(av, bv[v], z[r][v]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++) {
			float *cp = c + r * ldc + 16 * v;
			__mmask16 m = v < nv - 1 ? (__mmask16)0xFFFF : tail;
			__m512 o = z[r][v];
			if (acc)
				o = _mm512_add_ps(_mm512_maskz_loadu_ps(m, cp), o);
			_mm512_mask_storeu_ps(cp, m, o);
		}
}

/* c[m × n] (acc ? += : =) A·B over the inner index [k0, k1): A's element
 * (i, kk) at a[i·ars + kk·acs] (so Aᵀ is a stride swap), B's rows ldb apart */
static T512 void mm(int m, int n, int k0, int k1, const float *a, ptrdiff_t ars, ptrdiff_t acs, const float *b,
                    ptrdiff_t ldb, float *c, ptrdiff_t ldc, int acc)
{
	for (int j0 = 0; j0 < n; j0 += 64) {
		int w = n - j0 < 64 ? n - j0 : 64, nv = (w + 15) / 16;
		__mmask16 tail = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xFFFFu);
		for (int i0 = 0; i0 < m; i0 += MR) {
			int mr = m - i0 < MR ? m - i0 : MR;
			const float *ai = a + (ptrdiff_t)i0 * ars, *bj = b + j0;
			float *cij = c + (ptrdiff_t)i0 * ldc + j0;
			switch (mr * 8 + nv) {
#define TILE(R, V)                                                                                                     \
	case R * 8 + V: tile(R, V, tail, k0, k1, ai, ars, acs, bj, ldb, cij, ldc, acc); break;
#define TILES(R) TILE(R, 1) TILE(R, 2) TILE(R, 3) TILE(R, 4)
				TILES(1) TILES(2) TILES(3) TILES(4) TILES(5) TILES(6)
#undef TILES
#undef TILE
			default: break;
			}
		}
	}
}

/* e^x for x ≤ 0: n = round(x·log2 e), r = x − n·ln 2 (in two parts), e^r
 * by its degree-7 Taylor polynomial (|r| ≤ 0.35: error below 1e-8), times
 * 2^n. Clamped at -87, where e^x is still a normal float. */
INL T512 __m512 exp512(__m512 x)
{
	x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
	                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
	__m512 p = _mm512_set1_ps(1.0f / 5040);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

/* lanes x..x+15 that are below n and (with a general mask) let through */
static inline __mmask16 lanes(int x, int n, const uint8_t *km)
{
	unsigned m = n - x >= 16 ? 0xFFFFu : (1u << (n - x)) - 1;
	if (km) {
		unsigned v = 0;
		for (int l = 0; l < 16 && x + l < n; l++)
			v |= (unsigned)(km[x + l] != 0) << l;
		m &= v;
	}
	return (__mmask16)m;
}

/* One row's probabilities in place over [0, w) (w a multiple of 16, ≥ T):
 * its raw scores q·k in row[0, n) on entry; keys from n on, and keys km
 * masks, get 0. A row that sees no key at all attends to all T keys evenly
 * (as an additive mask of the most negative float gives); returns 1 then. */
static T512 int softmax_row(float *row, int n, int w, const uint8_t *km, float scale, int T)
{
	__m512 vs = _mm512_set1_ps(scale), mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
	int nr = pad16(n);
	for (int x = 0; x < n; x += 16) {
		__mmask16 m = lanes(x, n, km);
		__m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + x), vs);
		_mm512_storeu_ps(row + x, s);
		mx = _mm512_mask_max_ps(mx, m, mx, s);
	}
	float M = _mm512_reduce_max_ps(mx);
	if (M == -INFINITY) {
		for (int x = 0; x < w; x++)
			row[x] = x < T ? 1.0f / (float)T : 0.0f;
		return 1;
	}
	__m512 vm = _mm512_set1_ps(M);
	for (int x = 0; x < n; x += 16) {
		__m512 e = _mm512_maskz_mov_ps(lanes(x, n, km), exp512(_mm512_sub_ps(_mm512_loadu_ps(row + x), vm)));
		_mm512_storeu_ps(row + x, e);
		sum = _mm512_add_ps(sum, e);
	}
	__m512 inv = _mm512_set1_ps((float)(1.0 / (double)_mm512_reduce_add_ps(sum)));
	for (int x = 0; x < n; x += 16)
		_mm512_storeu_ps(row + x, _mm512_mul_ps(_mm512_loadu_ps(row + x), inv));
	for (int x = nr; x < w; x += 16)
		_mm512_storeu_ps(row + x, _mm512_setzero_ps());
	return 0;
}

/* dS over [0, w) from dP (in ds[0, n) on entry) and the row's P:
 * P ⊙ (dP − Σ P ⊙ dP) · scale; 0 for a row that saw no key */
static T512 void dscore_row(float *ds, const float *p, int n, int w, int dead, float scale)
{
	int nr = dead ? 0 : pad16(n);
	if (!dead) {
		__m512 acc = _mm512_setzero_ps();
		for (int x = 0; x < n; x += 16) {
			__mmask16 m = lanes(x, n, NULL);
			acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + x), _mm512_maskz_loadu_ps(m, ds + x), acc);
		}
		__m512 D = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), vs = _mm512_set1_ps(scale);
		for (int x = 0; x < n; x += 16) {
			__mmask16 m = lanes(x, n, NULL);
			__m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, ds + x), D);
			_mm512_storeu_ps(ds + x, _mm512_maskz_mov_ps(m, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(p + x), d), vs)));
		}
	}
	for (int x = nr; x < w; x += 16)
		_mm512_storeu_ps(ds + x, _mm512_setzero_ps());
}

static T512 void fwd512(float *y, const float *q, const uint8_t *km, int T, int C, int hd, int causal, float scale,
                        float *scratch)
{
	int Tp = pad16(T), L = prefix_len(km, T);
	ptrdiff_t ld = 3 * (ptrdiff_t)C;
	const uint8_t *gm = L > 0 ? NULL : km; /* a mask looked up key by key */
	float *Kt = scratch, *P = scratch + (ptrdiff_t)hd * Tp;
	const float *v = q + 2 * (ptrdiff_t)C;
	pack_t(Kt, q + C, T, ld, hd, Tp);
	for (int i0 = 0; i0 < T; i0 += MR) {
		int mr = T - i0 < MR ? T - i0 : MR, nb = 0, kv = 0;
		for (int r = 0; r < mr; r++) {
			int n = row_n(i0 + r, L, causal, T);
			nb = n > nb ? n : nb;
		}
		mm(mr, nb, 0, hd, q + i0 * ld, ld, 1, Kt, Tp, P, Tp, 0);
		for (int r = 0; r < mr; r++)
			if (softmax_row(P + (ptrdiff_t)r * Tp, row_n(i0 + r, L, causal, T), Tp, gm, scale, T))
				kv = T;
		kv = nb > kv ? nb : kv;
		mm(mr, hd, 0, kv, P, Tp, 1, v, ld, y + (ptrdiff_t)i0 * C, C, 0);
	}
}

static T512 void bwd512(float *dq, const float *dy, const float *q, const uint8_t *km, int T, int C, int hd, int causal,
                        float scale, float *scratch)
{
	int Tp = pad16(T), L = prefix_len(km, T);
	ptrdiff_t ld = 3 * (ptrdiff_t)C;
	const uint8_t *gm = L > 0 ? NULL : km;
	float *Kt = scratch, *Vt = Kt + (ptrdiff_t)hd * Tp, *P = Vt + (ptrdiff_t)hd * Tp, *dS = P + (ptrdiff_t)T * Tp;
	const float *k = q + C, *v = q + 2 * (ptrdiff_t)C;
	float *dk = dq + C, *dv = dq + 2 * (ptrdiff_t)C;
	pack_t(Kt, k, T, ld, hd, Tp);
	pack_t(Vt, v, T, ld, hd, Tp);
	for (int i0 = 0; i0 < T; i0 += MR) {
		int mr = T - i0 < MR ? T - i0 : MR, nb = 0, dead[MR];
		for (int r = 0; r < mr; r++) {
			int n = row_n(i0 + r, L, causal, T);
			nb = n > nb ? n : nb;
		}
		float *Pb = P + (ptrdiff_t)i0 * Tp, *dSb = dS + (ptrdiff_t)i0 * Tp;
		mm(mr, nb, 0, hd, q + i0 * ld, ld, 1, Kt, Tp, Pb, Tp, 0);
		for (int r = 0; r < mr; r++)
			dead[r] = softmax_row(Pb + (ptrdiff_t)r * Tp, row_n(i0 + r, L, causal, T), Tp, gm, scale, T);
		mm(mr, nb, 0, hd, dy + (ptrdiff_t)i0 * C, C, 1, Vt, Tp, dSb, Tp, 0); /* dP = dy vᵀ */
		for (int r = 0; r < mr; r++)
			dscore_row(dSb + (ptrdiff_t)r * Tp, Pb + (ptrdiff_t)r * Tp, row_n(i0 + r, L, causal, T), Tp, dead[r], scale);
		mm(mr, hd, 0, nb, dSb, Tp, 1, k, ld, dq + i0 * ld, ld, 1); /* dq += dS k */
	}
	/* keys no row sees (past a padding prefix) get nothing */
	int nk = L > 0 ? L : T;
	for (int j0 = 0; j0 < nk; j0 += MR) {
		int mr = nk - j0 < MR ? nk - j0 : MR;
		/* causal: rows before the block's first key do not see it (but a
		 * row that saw no key spreads over all of them) */
		int r0v = causal && L > 0 ? j0 : 0, r0k = causal ? j0 : 0;
		mm(mr, hd, r0v, T, P + j0, 1, Tp, dy, C, dv + j0 * ld, ld, 1);  /* dv += Pᵀ dy */
		mm(mr, hd, r0k, T, dS + j0, 1, Tp, q, ld, dk + j0 * ld, ld, 1); /* dk += dSᵀ q */
	}
}

int cpu_attn_fused(void) { return allow_fused && __builtin_cpu_supports("avx512f"); }

void cpu_attn_fwd_head(float *y, const float *q, const uint8_t *km, int T, int C, int hd, int causal, float scale,
                       float *scratch)
{
	fwd512(y, q, km, T, C, hd, causal, scale, scratch);
}

void cpu_attn_bwd_head(float *dq, const float *dy, const float *q, const uint8_t *km, int T, int C, int hd, int causal,
                       float scale, float *scratch)
{
	bwd512(dq, dy, q, km, T, C, hd, causal, scale, scratch);
}

#else /* no fused kernel on this compiler or machine: cpu.c's path runs */

int cpu_attn_fused(void) { return 0; }

void cpu_attn_fwd_head(float *y, const float *q, const uint8_t *km, int T, int C, int hd, int causal, float scale,
                       float *scratch)
{
	(void)y, (void)q, (void)km, (void)T, (void)C, (void)hd, (void)causal, (void)scale, (void)scratch;
	(void)pack_t, (void)row_n, (void)prefix_len;
}

void cpu_attn_bwd_head(float *dq, const float *dy, const float *q, const uint8_t *km, int T, int C, int hd, int causal,
                       float scale, float *scratch)
{
	(void)dq, (void)dy;
	cpu_attn_fwd_head(NULL, q, km, T, C, hd, causal, scale, scratch);
}

#endif
