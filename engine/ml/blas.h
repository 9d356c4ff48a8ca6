/*
 * blas — OpenBLAS, loaded on first use (dlopen) like libarchive: linking it
 * would start its thread pool in every `hone` process, some 7 ms that the
 * no-op re-run would pay. Only the model stages and `hone predict` load it.
 *
 * Relies on: OpenBLAS (libopenblas.so.0 at run time), libdl.
 * Ownership: the table is process-wide, filled once, never freed.
 */
#ifndef HONE_BLAS_H
#define HONE_BLAS_H

#include <cblas.h>
#include "../util.h"

typedef struct blas_api {
	void (*sgemm)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE,
	              const blasint, const blasint, const blasint, const float, const float *, const blasint,
	              const float *, const blasint, const float, float *, const blasint);
	void (*set_num_threads)(int);
} blas_api;

/* The table, loading the library on the first call (thread-safe); NULL with
 * a message in e when it cannot be loaded. */
const blas_api *blas_get(herr *e);

/* C[m×n] = alpha·op(A)·op(B) + beta·C, row-major; ta/tb transpose A/B.
 * lda etc. are the row strides as stored. blas_get must have succeeded. */
void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc);

#endif
