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

float q8_dot_ref(const uint8_t *wrow, const int8_t *xq, const float *xd, int cols)
{
	float sum = 0;
	for (int b = 0; b < cols / Q8_BLOCK; b++) {
		const uint8_t *blk = wrow + (size_t)b * Q8_BLOCK_BYTES;
		const int8_t *wq = (const int8_t *)(blk + 2), *aq = xq + b * Q8_BLOCK;
		int32_t s = 0;
		for (int i = 0; i < Q8_BLOCK; i++)
			s += (int32_t)wq[i] * aq[i];
		sum += scale_of(blk) * xd[b] * (float)s;
	}
	return sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) && !defined(__clang__) || defined(__clang__))
#include <immintrin.h>
#define Q8_HAVE_VNNI 1

/* the block's int32 sum exactly (dpbusd on |x| and w·sign(x)), then the
 * same fp32 arithmetic as the reference, block by block */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni"))) static float q8_dot_vnni(const uint8_t *wrow,
                                                                                        const int8_t *xq,
                                                                                        const float *xd, int cols)
{
	float sum = 0;
	for (int b = 0; b < cols / Q8_BLOCK; b++) {
		const uint8_t *blk = wrow + (size_t)b * Q8_BLOCK_BYTES;
		__m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
		__m256i a = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
		__m256i ua = _mm256_abs_epi8(a), sw = _mm256_sign_epi8(w, a);
		__m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ua, sw);
		__m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
		s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
		s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
		sum += scale_of(blk) * xd[b] * (float)_mm_cvtsi128_si32(s);
	}
	return sum;
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
	if (cw && (size_t)rows * (size_t)cols >= 65536)
		crew_run(cw, mv_part, &j);
	else
		mv_part(&j, 0, 1);
}
