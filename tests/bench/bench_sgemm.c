/* OpenBLAS sgemm's peak on TH threads (default 2): the reference line the
 * benchmarks print beside their own numbers. Usage: bench_sgemm [TH] */
#include <stdlib.h>

#include "bench_common.h"

int main(int argc, char **argv)
{
	int th = argc > 1 ? atoi(argv[1]) : 2;
	(void)bench_report; /* the model benchmarks' */
	(void)bench_sgemm_peak;
	herr e;
	const blas_api *api = blas_get(&e);
	if (!api) {
		fprintf(stderr, "bench_sgemm: %s\n", e.msg);
		return 1;
	}
	double best, mean = bench_sgemm_rates(api, th, &best);
	printf("sgemm  %.1f GFLOP/s peak (1024^3, %d threads; fastest product %.1f)\n", mean / 1e9, th, best / 1e9);
	return 0;
}
