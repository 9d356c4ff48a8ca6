#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>

#include "optim.h"

static blas_api api;
static const char *load_error;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_error = dlerror();
		return;
	}
	*(void **)(&api.sgemm) = dlsym(h, "cblas_sgemm");
	*(void **)(&api.set_num_threads) = dlsym(h, "openblas_set_num_threads");
	*(void **)(&api.sgemv) = dlsym(h, "cblas_sgemv");
	if (!api.sgemm || !api.set_num_threads || !api.sgemv)
		load_error = "missing symbol cblas_sgemm, cblas_sgemv or openblas_set_num_threads";
}

const blas_api *blas_get(herr *e)
{
	pthread_once(&once, load);
	if (load_error || !api.sgemm) {
		herr_set(e, "cannot load OpenBLAS: %s", load_error ? load_error : "unknown error");
		return NULL;
	}
	return &api;
}

void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc)
{
	api.sgemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

typedef struct gemm_job {
	int ta, tb, m, n, k;
	float alpha, beta;
	const float *a, *b;
	float *c;
	int lda, ldb, ldc;
} gemm_job;

static void gemm_part(void *ud, int t, int nt)
{
	gemm_job *j = ud;
	if (j->m >= j->n) {
		int lo = j->m * t / nt, hi = j->m * (t + 1) / nt;
		if (hi <= lo)
			return;
		/* rows lo..hi of op(A) and of C */
		const float *a = j->ta ? j->a + lo : j->a + (size_t)lo * (size_t)j->lda;
		sgemm(j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta,
		      j->c + (size_t)lo * (size_t)j->ldc, j->ldc);
	} else {
		int lo = j->n * t / nt, hi = j->n * (t + 1) / nt;
		if (hi <= lo)
			return;
		/* columns lo..hi of op(B) and of C; for a few rows, in pieces of at
		 * most a million products (OpenBLAS's small-matrix kernels, which
		 * do not pack B, take 8, 16 or 32 rows up to that size) */
		int step = hi - lo;
		if (j->m <= 32 && (double)j->m * step * j->k > 1e6)
			step = (int)(1e6 / ((double)j->m * j->k)) / 16 * 16;
		step = step < 16 ? 16 : step;
		for (int at = lo; at < hi; at += step) {
			int w = hi - at < step ? hi - at : step;
			const float *b = j->tb ? j->b + (size_t)at * (size_t)j->ldb : j->b + at;
			/* one row against a large Bᵀ (a decode step's head): sgemv reads B's
			 * rows as they are, where sgemm would pack all of B for one row */
			if (j->tb && !j->ta && j->m == 1 && (double)j->n * j->k >= 4e6)
				api.sgemv(101, 111, w, j->k, j->alpha, b, j->ldb, j->a, 1, j->beta, j->c + at, 1);
			else
				sgemm(j->ta, j->tb, j->m, w, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta, j->c + at, j->ldc);
		}
	}
}

void psgemm_crew(crew *cw, int threads, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc)
{
	gemm_job j = {ta, tb, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc};
	long long work = (long long)m * n * k;
	int nt = work < (1 << 20) ? 1 : threads;
	if (nt > 1 && cw && crew_size(cw) == nt)
		crew_run(cw, gemm_part, &j); /* the same split, on threads kept between calls */
	else
		par_run(nt, gemm_part, &j);
}

void psgemm(int threads, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
            int ldb, float beta, float *c, int ldc)
{
	psgemm_crew(NULL, threads, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
