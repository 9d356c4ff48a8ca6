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

#include "../util.h"

/* cblas_sgemm as the CBLAS standard declares it (order, transposes as their
 * enum values: row-major 101, no transpose 111, transpose 112); Debian's
 * OpenBLAS uses 32-bit integers. Declared here rather than through cblas.h,
 * whose includes collide with the engine's header names. */
typedef struct blas_api {
	void (*sgemm)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	              const float *b, int ldb, float beta, float *c, int ldc);
	void (*set_num_threads)(int);
	void (*sgemv)(int order, int t, int m, int n, float alpha, const float *a, int lda, const float *x, int incx,
	              float beta, float *y, int incy);
} blas_api;

/* The table, loading the library on the first call (thread-safe); NULL with
 * a message in e when it cannot be loaded. */
const blas_api *blas_get(herr *e);

/* C[m×n] = alpha·op(A)·op(B) + beta·C, row-major; ta/tb transpose A/B.
 * lda etc. are the row strides as stored. blas_get must have succeeded. */
void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc);

/* sgemm split over `threads` of our own (OpenBLAS itself kept to one
 * thread: its idle workers spin, and on few cores they take the time the
 * other loops need). Splits the larger of m and n. */
void psgemm(int threads, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
            int ldb, float beta, float *c, int ldc);
/* The same on a crew of threads kept between calls (when it has `threads`
 * members; else as psgemm): the same split, the same bits. */
void psgemm_crew(crew *cw, int threads, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

#endif
