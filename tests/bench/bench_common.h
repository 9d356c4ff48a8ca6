/*
 * What the model benchmarks (bench_gpt2.c, bench_bert.c) share: OpenBLAS
 * sgemm's peak on the same threads, and the closing lines that set a
 * step's rate against it and its memory against the process's peak.
 */
#ifndef HONE_BENCH_COMMON_H
#define HONE_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "ml/blas.h"

#define BENCH_GEMM_N 1024

/* sgemm on BENCH_GEMM_N³ with th threads of OpenBLAS's own, 10 products
 * after one to warm up: the mean rate (the return), and the fastest one's
 * in *best when best is given; FLOP/s */
static double bench_sgemm_rates(const blas_api *api, int th, double *best)
{
	int n = BENCH_GEMM_N;
	float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *cc = malloc((size_t)n * n * 4);
	for (size_t i = 0; i < (size_t)n * n; i++)
		a[i] = b[i] = 0.001f * (float)(i % 97);
	api->set_num_threads(th);
	sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, cc, n);
	int reps = 10;
	double fast = 1e30, g0 = now_seconds();
	for (int r = 0; r < reps; r++) {
		double t0 = now_seconds();
		sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, cc, n);
		double d = now_seconds() - t0;
		fast = d < fast ? d : fast;
	}
	double flop = 2.0 * n * n * (double)n, mean = flop * reps / (now_seconds() - g0);
	if (best)
		*best = flop / fast;
	free(a);
	free(b);
	free(cc);
	return mean;
}

static double bench_sgemm_peak(const blas_api *api, int th) { return bench_sgemm_rates(api, th, NULL); }

/* The rate, sgemm's and the memory lines. par: parameter bytes (adapters
 * included), opt: AdamW's moments, ws: the workspace */
static void bench_report(double tokens, double dt, double flops, size_t nparams, double loss, int steps, int th,
                         const char *mode, double par, double opt, double ws, size_t trained, double peak)
{
	printf("hone   %.0f tokens/s  %.1f GFLOP/s  params %zu  loss %.4f  (%d steps, %.2f s)\n", tokens / dt, flops / dt / 1e9,
	       nparams, loss, steps, dt);
	printf("sgemm  %.1f GFLOP/s peak (1024^3, %d threads); hone reaches %.0f%% of it\n", peak / 1e9, th,
	       100.0 * flops / dt / peak);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double mib = 1024.0 * 1024.0, rss = (double)ru.ru_maxrss * 1024.0,
	       gemm = 3.0 * BENCH_GEMM_N * BENCH_GEMM_N * 4.0; /* the peak test's matrices, in the RSS */
	printf("memory (%s): parameters %.0f MiB + AdamW moments %.0f MiB + workspace %.0f MiB (activations, gradients) "
	       "= %.0f MiB; peak RSS %.0f MiB (%.0f MiB without the sgemm test's matrices) = %.2fx of it; trained parameters %zu\n",
	       mode, par / mib, opt / mib, ws / mib, (par + opt + ws) / mib, rss / mib, (rss - gemm) / mib,
	       (rss - gemm) / (par + opt + ws), trained);
}

#endif
