/*
 * bench_bert — training steps of the native BERT as a sequence classifier
 * (forward, backward, AdamW) on random tokens and labels with a padding mask
 * of all ones, and OpenBLAS sgemm's peak on the same threads.
 *   bench_bert LAYERS HIDDEN HEADS INTER T B VOCAB STEPS THREADS [full|lora]
 * Prints tokens/s, the FLOP rate (6·non-embedding parameters·tokens +
 * attention) and sgemm's, and peak RSS against what the step needs.
 * lora: rank 8 on query, key, value and the dense layers; the base frozen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "ml/blas.h"
#include "ml/optim.h"
#include "models/bert.h"
#include "nn/nn.h"

/* sgemm's rate on the fastest of 10 BENCH_GEMM_N³ products on th threads,
 * OpenBLAS left on one thread after (the step splits the products itself) */
static double sgemm_best(const blas_api *api, int th)
{
	double best;
	bench_sgemm_rates(api, th, &best);
	api->set_num_threads(1);
	return best;
}

int main(int argc, char **argv)
{
	if (argc != 10 && argc != 11) {
		fprintf(stderr, "usage: bench_bert LAYERS HIDDEN HEADS INTER T B VOCAB STEPS THREADS [full|lora]\n");
		return 2;
	}
	int L = atoi(argv[1]), C = atoi(argv[2]), H = atoi(argv[3]), I = atoi(argv[4]), T = atoi(argv[5]), B = atoi(argv[6]),
	    V = atoi(argv[7]), steps = atoi(argv[8]), th = atoi(argv[9]);
	herr e;
	const blas_api *api = blas_get(&e);
	if (!api) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	bert_config c = {L, H, C, I, T, 2, V, 1e-12f, NN_GELU_ERF, BERT_SEQCLS, 2, BERT_SINGLE, 0, 0};
	bert m;
	if (bert_init(&e, &m, &c) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	bert_init_random(&m, 1);
	int lora_m = argc == 11 && !strcmp(argv[10], "lora");
	lora lo;
	memset(&lo, 0, sizeof lo);
	if (lora_m) {
		lora_arch a;
		bert_lora_arch(&m, &a);
		lora_init(&lo, &a, 8, 16, lora_target(&a, "query") | lora_target(&a, "key") | lora_target(&a, "value") |
		                          lora_target(&a, "dense"), 1);
		for (size_t i = 0; i < lo.n; i++)
			lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f; /* B nonzero: a real update */
		bert_lora_add_head(&lo, &m);
		m.lora = &lo;
	}
	float *tp = lora_m ? lo.p : m.p;
	size_t tn = lora_m ? lo.n : m.nparams;
	bert_ws *w = bert_ws_new(&m, B, T, th);
	bert_ws_cls_only(w, &m, 1); /* as the trainer does */
	size_t N = (size_t)B * (size_t)T;
	uint32_t *ids = malloc(N * sizeof *ids), *types = calloc(N, sizeof *types);
	uint8_t *mask = malloc(N);
	memset(mask, 1, N);
	int32_t *lab = malloc((size_t)B * sizeof *lab);
	float *mo = calloc(tn, sizeof(float)), *vo = calloc(tn, sizeof(float));
	adamw_cfg ac = {0.9f, 0.999f, 1e-8f, 0.01f};
	double t0 = 0, loss = 0, best_step = 1e30, tp0 = 0;
	double best_gemm = sgemm_best(api, th); /* before and after the steps: the better */
	uint64_t s = 1;
	for (int st = 0; st <= steps; st++) {
		if (st == 1)
			t0 = now_seconds(); /* step 0 warms up */
		if (st >= 1)
			tp0 = now_seconds();
		for (size_t i = 0; i < N; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			ids[i] = (uint32_t)((s >> 33) % (uint64_t)V);
		}
		for (int b = 0; b < B; b++)
			lab[b] = (int32_t)((s >> (20 + b % 30)) & 1);
		bert_batch bb = {ids, types, mask, lab, NULL};
		loss = bert_forward(&m, w, &bb);
		bert_backward(&m, w);
		float *g = lora_m ? bert_lora_grad(w) : bert_grad(w);
		adamw_step(&ac, 3e-4f, st + 1, clip_factor(grad_norm(g, tn, th), 1.0), tp, g, mo, vo, tn, th);
		if (st >= 1 && now_seconds() - tp0 < best_step)
			best_step = now_seconds() - tp0;
	}
	double dt = now_seconds() - t0;
	double tokens = (double)N * steps;
	size_t emb = (size_t)(V + T + 2) * (size_t)C;
	double flops = 6.0 * (double)(m.nparams - emb) * tokens + 12.0 * L * (double)T * C * tokens;
	double peak = bench_sgemm_peak(api, th), bg = sgemm_best(api, th);
	best_gemm = bg > best_gemm ? bg : best_gemm;
	/* On a shared machine the mean of the steps and the peak can each catch
	 * another load; the fastest step against the fastest 1024^3 product
	 * (of 20, before and after the steps) is the steadier figure. */
	/* FLOPs the [CLS]-only last layer does not execute (its dense and
	 * feed-forward layers on N - B rows; not with LoRA): the model FLOPs
	 * above count them, as the formula does */
	double skipped = lora_m || L == 0 ? 0 : 6.0 * ((double)C * C + C + 2.0 * C * I + I + C + 4.0 * C) * (double)(N - (size_t)B);
	if (steps > 0)
		printf("cls    the last layer on the [CLS] rows only: %.1f of %.1f GFLOP a step not executed; %.0f%% of the fastest product on executed FLOPs\n",
		       skipped / 1e9, flops / steps / 1e9, 100.0 * (flops / steps - skipped) / best_step / best_gemm);
	if (steps > 0)
		printf("best   %.0f tokens/s (fastest of %d steps, %.3f s) = %.0f%% of sgemm's fastest 1024^3 product, %.1f GFLOP/s\n",
		       (double)N / best_step, steps, best_step, 100.0 * flops / steps / best_step / best_gemm, best_gemm / 1e9);
	bench_report(tokens, dt, flops, m.nparams, loss, steps, th, lora_m ? "lora" : "full", (double)(m.nparams + lo.n) * 4,
	             2.0 * (double)tn * 4, (double)bert_ws_bytes(w), tn, peak);
	lora_free(&lo);
	free(ids);
	free(types);
	free(mask);
	free(lab);
	free(mo);
	free(vo);
	bert_ws_free(w);
	bert_free(&m);
	return 0;
}
