#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>

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
	if (!api.sgemm || !api.set_num_threads)
		load_error = "missing symbol cblas_sgemm or openblas_set_num_threads";
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
