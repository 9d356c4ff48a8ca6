/*
 * bench_gpt2 — training steps of the native GPT-2 (forward, backward, AdamW)
 * on random tokens, and OpenBLAS sgemm's peak on the same threads.
 *   bench_gpt2 LAYERS EMBD HEADS T B VOCAB STEPS THREADS
 * Prints tokens/s, the FLOP rate (6·params·tokens + attention) and sgemm's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/blas.h"
#include "ml/gpt2.h"
#include "ml/optim.h"

int main(int argc, char **argv)
{
	if (argc != 9) {
		fprintf(stderr, "usage: bench_gpt2 LAYERS EMBD HEADS T B VOCAB STEPS THREADS\n");
		return 2;
	}
	int L = atoi(argv[1]), C = atoi(argv[2]), H = atoi(argv[3]), T = atoi(argv[4]), B = atoi(argv[5]),
	    V = atoi(argv[6]), steps = atoi(argv[7]), th = atoi(argv[8]);
	herr e;
	const blas_api *api = blas_get(&e);
	if (!api) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	gpt2_config c = {L, H, C, T, V, 1e-5f, 0};
	gpt2 m;
	if (gpt2_init(&e, &m, &c) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	uint64_t s = 1;
	for (size_t i = 0; i < m.nparams; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		m.p[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
	}
	gpt2_ws *w = gpt2_ws_new(&m, B, T, th);
	uint32_t *ids = malloc((size_t)B * T * sizeof *ids);
	int32_t *tg = malloc((size_t)B * T * sizeof *tg);
	float *mo = calloc(m.nparams, sizeof(float)), *vo = calloc(m.nparams, sizeof(float));
	adamw_cfg ac = {0.9f, 0.999f, 1e-8f, 0.01f};
	double t0 = 0, loss = 0;
	for (int st = 0; st <= steps; st++) {
		if (st == 1)
			t0 = now_seconds(); /* step 0 warms up */
		for (int i = 0; i < B * T; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			ids[i] = (uint32_t)((s >> 33) % (uint64_t)V);
		}
		for (int i = 0; i < B * T; i++)
			tg[i] = i % T == T - 1 ? -1 : (int32_t)ids[i + 1];
		loss = gpt2_forward(&m, w, ids, tg);
		gpt2_backward(&m, w);
		float *g = gpt2_grad(w);
		adamw_step(&ac, 3e-4f, st + 1, clip_factor(grad_norm(g, m.nparams, th), 1.0), m.p, g, mo, vo, m.nparams, th);
	}
	double dt = now_seconds() - t0;
	double tokens = (double)B * T * steps;
	double flops = 6.0 * (double)m.nparams * tokens + 12.0 * L * (double)T * C * tokens;
	/* sgemm peak: 1024^3, same threads */
	int n = 1024;
	float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *cc = malloc((size_t)n * n * 4);
	for (size_t i = 0; i < (size_t)n * n; i++)
		a[i] = b[i] = 0.001f * (float)(i % 97);
	api->set_num_threads(th);
	sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, cc, n);
	double g0 = now_seconds();
	int reps = 10;
	for (int r = 0; r < reps; r++)
		sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, cc, n);
	double gdt = now_seconds() - g0;
	double peak = 2.0 * n * n * (double)n * reps / gdt;
	printf("hone   %.0f tokens/s  %.1f GFLOP/s  params %zu  loss %.4f  (%d steps, %.2f s)\n", tokens / dt, flops / dt / 1e9,
	       m.nparams, loss, steps, dt);
	printf("sgemm  %.1f GFLOP/s peak (1024^3, %d threads); hone reaches %.0f%% of it\n", peak / 1e9, th,
	       100.0 * flops / dt / peak);
	free(a);
	free(b);
	free(cc);
	free(ids);
	free(tg);
	free(mo);
	free(vo);
	gpt2_ws_free(w);
	gpt2_free(&m);
	return 0;
}
