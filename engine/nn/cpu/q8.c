#include "../q8.h"

#include <math.h>
#include <string.h>

#include "../../io/gguf.h"
#include "../../util.h"

void q8_quantize(const float *x, int n, int8_t *q, float *d)
{
	for (int b = 0; b < n / Q8_BLOCK; b++) {
		const float *xb = x + b * Q8_BLOCK;
		float amax = 0;
		for (int i = 0; i < Q8_BLOCK; i++)
			amax = fmaxf(amax, fabsf(xb[i]));
		float s = amax / 127.0f, id = s ? 1.0f / s : 0.0f;
		for (int i = 0; i < Q8_BLOCK; i++)
			q[b * Q8_BLOCK + i] = (int8_t)lroundf(xb[i] * id);
		d[b] = s;
	}
}

static float scale_of(const uint8_t *blk)
{
	uint16_t h;
	memcpy(&h, blk, 2);
	return gguf_f32(h);
}

/* The order of the sums, which the fast path keeps: within a block, eight
 * int32 partial sums of four products each (exact); each partial, as a
 * float, times the block's two scales goes to its own fp32 lane (lane i
 * takes bytes 4i..4i+3 of every block, in block order); the eight lanes
 * are then added pairwise (0+4, 1+5, 2+6, 3+7, then 0+2, 1+3, then 0+1).
 * This is llama.cpp's shape of the sum (a vector of fp32 lanes across the
 * blocks, no reduction inside the loop), written out in plain C. */
float q8_dot_ref(const uint8_t *wrow, const int8_t *xq, const float *xd, int cols)
{
	float lane[8] = {0};
	for (int b = 0; b < cols / Q8_BLOCK; b++) {
		const uint8_t *blk = wrow + (size_t)b * Q8_BLOCK_BYTES;
		const int8_t *wq = (const int8_t *)(blk + 2), *aq = xq + b * Q8_BLOCK;
		float sc = scale_of(blk) * xd[b];
		for (int i = 0; i < 8; i++) {
			int32_t s = 0;
			for (int k = 4 * i; k < 4 * i + 4; k++)
				s += (int32_t)wq[k] * aq[k];
			lane[i] = lane[i] + (float)s * sc;
		}
	}
	for (int i = 0; i < 4; i++)
		lane[i] = lane[i] + lane[i + 4];
	lane[0] = lane[0] + lane[2], lane[1] = lane[1] + lane[3];
	return lane[0] + lane[1];
}

#if defined(__x86_64__) && (defined(__GNUC__) && !defined(__clang__) || defined(__clang__))
#include <immintrin.h>
#define Q8_HAVE_VNNI 1

/* dpbusd on |x| and w·sign(x) gives the eight partials of a block at once;
 * they go to the eight fp32 lanes as in the reference (a multiply, then an
 * add: no fused multiply-add, so the bits are the reference's) */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,f16c"))) static float q8_dot_vnni(const uint8_t *wrow,
                                                                                             const int8_t *xq,
                                                                                             const float *xd, int cols)
{
	__m256 acc = _mm256_setzero_ps();
	for (int b = 0; b < cols / Q8_BLOCK; b++) {
		const uint8_t *blk = wrow + (size_t)b * Q8_BLOCK_BYTES;
		uint16_t h;
		memcpy(&h, blk, 2);
		__m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
		__m256i a = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
		__m256i ua = _mm256_abs_epi8(a), sw = _mm256_sign_epi8(w, a);
		__m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ua, sw);
		__m256 sc = _mm256_set1_ps(_cvtsh_ss(h) * xd[b]);
		acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(p), sc));
	}
	__m128 v = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)); /* 0+4, 1+5, 2+6, 3+7 */
	v = _mm_add_ps(v, _mm_movehl_ps(v, v));                                             /* 0+2, 1+3 */
	return _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)));                       /* 0+1 */
}
#endif

int q8_fast(void)
{
#ifdef Q8_HAVE_VNNI
	static int have = -1;
	if (have < 0)
		have = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
		       __builtin_cpu_supports("avx512bw");
	return have;
#else
	return 0;
#endif
}

typedef struct mv_job {
	float *y;
	const uint8_t *w;
	int rows, cols, acc;
	const int8_t *xq;
	const float *xd, *bias;
} mv_job;

static void mv_part(void *ud, int t, int nt)
{
	mv_job *j = ud;
	size_t rb = (size_t)(j->cols / Q8_BLOCK) * Q8_BLOCK_BYTES;
	int fast = q8_fast();
	for (int r = j->rows * t / nt; r < j->rows * (t + 1) / nt; r++) {
		const uint8_t *row = j->w + (size_t)r * rb;
#ifdef Q8_HAVE_VNNI
		float v = fast ? q8_dot_vnni(row, j->xq, j->xd, j->cols) : q8_dot_ref(row, j->xq, j->xd, j->cols);
#else
		(void)fast;
		float v = q8_dot_ref(row, j->xq, j->xd, j->cols);
#endif
		if (j->bias)
			v += j->bias[r];
		j->y[r] = j->acc ? j->y[r] + v : v;
	}
}

void q8_matvec(float *y, const uint8_t *w, int rows, int cols, const int8_t *xq, const float *xd, const float *bias,
               int acc, crew *cw)
{
	mv_job j = {y, w, rows, cols, acc, xq, xd, bias};
	if (cw && (size_t)rows * (size_t)cols >= ((size_t)1 << 20)) /* a crew's wake-up costs more than a smaller product */
		crew_run(cw, mv_part, &j);
	else
		mv_part(&j, 0, 1);
}
