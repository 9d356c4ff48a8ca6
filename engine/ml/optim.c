#include "optim.h"

#include "../nn/nn.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct par_job {
	void (*fn)(void *, int, int);
	void *ud;
	int t, nt;
} par_job;

static void *par_main(void *arg)
{
	par_job *j = arg;
	j->fn(j->ud, j->t, j->nt);
	return NULL;
}

void par_run(int nt, void (*fn)(void *ud, int t, int nt), void *ud)
{
	if (nt > 64)
		nt = 64;
	if (nt <= 1) {
		fn(ud, 0, 1);
		return;
	}
	pthread_t th[64];
	par_job jobs[64];
	int started[64] = {0};
	for (int t = 1; t < nt; t++) {
		jobs[t] = (par_job){fn, ud, t, nt};
		started[t] = pthread_create(&th[t], NULL, par_main, &jobs[t]) == 0;
	}
	fn(ud, 0, nt);
	for (int t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(th[t], NULL);
		else
			fn(ud, t, nt); /* no thread: do its share here */
	}
}

/* [lo, hi) of n split into nt ranges, aligned to 16 values */
static void range(size_t n, int t, int nt, size_t *lo, size_t *hi)
{
	size_t per = (n / (size_t)nt + 15) & ~(size_t)15;
	*lo = per * (size_t)t;
	*hi = *lo + per;
	if (*lo > n)
		*lo = n;
	if (*hi > n || t == nt - 1)
		*hi = n;
}

typedef struct adamw_job {
	const adamw_cfg *c;
	float lr, gscale, bc1, bc2s;
	float *p, *g, *m, *v;
	size_t n;
} adamw_job;

/* The update, one value at a time */
static void adamw_def(adamw_job *j, size_t lo, size_t hi)
{
	const float b1 = j->c->b1, b2 = j->c->b2, eps = j->c->eps;
	const float decay = 1.0f - j->lr * j->c->wd, step = j->lr / j->bc1, bc2s = j->bc2s, gs = j->gscale;
	float *restrict p = j->p, *restrict g = j->g, *restrict m = j->m, *restrict v = j->v;
	for (size_t i = lo; i < hi; i++)
		nn_adamw_one(p + i, g + i, m + i, v + i, b1, b2, eps, decay, step, bc2s, gs);
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HAS512() __builtin_cpu_supports("avx512f")
/* The same update 16 values at a time (AVX-512F): the same operations in
 * the same order, no FMA, sqrt and division correctly rounded: the same
 * bits as adamw_def (whose sqrtf the compiler will not vectorize: errno) */
__attribute__((target("avx512f"))) static void adamw_512(adamw_job *j, size_t lo, size_t hi)
{
	const float b1 = j->c->b1, b2 = j->c->b2, eps = j->c->eps;
	const float decay = 1.0f - j->lr * j->c->wd, step = j->lr / j->bc1, bc2s = j->bc2s, gs = j->gscale;
	const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2), vc1 = _mm512_set1_ps(1.0f - b1),
	             vc2 = _mm512_set1_ps(1.0f - b2), veps = _mm512_set1_ps(eps), vdec = _mm512_set1_ps(decay),
	             vstep = _mm512_set1_ps(step), vbc = _mm512_set1_ps(bc2s), vgs = _mm512_set1_ps(gs);
	size_t i = lo;
	for (; i + 16 <= hi; i += 16) {
		__m512 gi = _mm512_mul_ps(_mm512_loadu_ps(j->g + i), vgs);
		__m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_loadu_ps(j->m + i)), _mm512_mul_ps(vc1, gi));
		__m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_loadu_ps(j->v + i)), _mm512_mul_ps(_mm512_mul_ps(vc2, gi), gi));
		_mm512_storeu_ps(j->m + i, mi);
		_mm512_storeu_ps(j->v + i, vi);
		__m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc), veps);
		__m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(j->p + i), vdec), _mm512_div_ps(_mm512_mul_ps(vstep, mi), den));
		_mm512_storeu_ps(j->p + i, pi);
		_mm512_storeu_ps(j->g + i, _mm512_setzero_ps());
	}
	adamw_def(j, i, hi);
}
#else
#define HAS512() 0
#define adamw_512 adamw_def
#endif

static void adamw_part(void *ud, int t, int nt)
{
	adamw_job *j = ud;
	size_t lo, hi;
	range(j->n, t, nt, &lo, &hi);
	if (HAS512())
		adamw_512(j, lo, hi);
	else
		adamw_def(j, lo, hi);
}

void adamw_step(const adamw_cfg *c, float lr, long long t, float gscale, float *p, float *g, float *m, float *v,
                size_t n, int threads)
{
	adamw_job j = {c, lr, gscale, (float)(1.0 - pow(c->b1, (double)t)), (float)sqrt(1.0 - pow(c->b2, (double)t)),
	               p, g, m, v, n};
	int nt = threads;
	if (n < 65536 || nt < 1)
		nt = 1;
	par_run(nt, adamw_part, &j);
}

#define CHUNK 16384

typedef struct norm_job {
	const float *g;
	size_t n;
	double *part;
} norm_job;

/* Each chunk's Σ g² in double over 8 lanes (value i in lane i mod 8, the
 * lanes added in a fixed order, then the chunk's last values): 8
 * independent additions rather than one chain, the same for any thread
 * count */
static void norm_part(void *ud, int t, int nt)
{
	norm_job *j = ud;
	size_t chunks = (j->n + CHUNK - 1) / CHUNK;
	for (size_t c = (size_t)t; c < chunks; c += (size_t)nt) {
		size_t lo = c * CHUNK, hi = lo + CHUNK < j->n ? lo + CHUNK : j->n, i = lo;
		double l[8] = {0};
		for (; i + 8 <= hi; i += 8)
			for (int k = 0; k < 8; k++)
				l[k] += (double)j->g[i + k] * j->g[i + k];
		double s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
		for (; i < hi; i++)
			s += (double)j->g[i] * j->g[i];
		j->part[c] = s;
	}
}

double grad_sumsq(const float *g, size_t n, int threads)
{
	size_t chunks = (n + CHUNK - 1) / CHUNK;
	double stack[4096], *part = chunks <= 4096 ? stack : malloc(chunks * sizeof *part); /* no allocation below 67M values */
	if (!part)
		return NAN;
	norm_job j = {g, n, part};
	par_run(chunks < 4 ? 1 : threads, norm_part, &j);
	double s = 0;
	for (size_t c = 0; c < chunks; c++)
		s += part[c];
	if (part != stack)
		free(part);
	return s;
}

double grad_norm(const float *g, size_t n, int threads) { return sqrt(grad_sumsq(g, n, threads)); }

float clip_factor(double norm, double max_norm)
{
	if (max_norm <= 0)
		return 1.0f;
	double f = max_norm / (norm + 1e-6);
	return f < 1 ? (float)f : 1.0f;
}

int sched_parse(const char *s)
{
	if (!strcmp(s, "constant"))
		return SCHED_CONSTANT;
	if (!strcmp(s, "linear"))
		return SCHED_LINEAR;
	if (!strcmp(s, "cosine"))
		return SCHED_COSINE;
	return -1;
}

double lr_factor(sched_kind k, long long step, long long warmup, long long total)
{
	if (step < warmup)
		return (double)step / (double)(warmup > 1 ? warmup : 1);
	if (k == SCHED_CONSTANT)
		return 1.0;
	long long span = total - warmup > 1 ? total - warmup : 1;
	double prog = (double)(step - warmup) / (double)span;
	double f = k == SCHED_LINEAR ? (double)(total - step) / (double)span : 0.5 * (1.0 + cos(M_PI * prog));
	return f > 0 ? f : 0;
}
