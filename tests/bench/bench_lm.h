/*
 * What the language-model benchmarks (bench_gpt2.c, bench_llama.c) share,
 * over clm: STEPS training steps (forward, backward, AdamW with clipping) on
 * random tokens after one to warm up, and greedy generation at batch 1 with
 * the KV cache; the report lines of bench_common.h.
 */
#ifndef HONE_BENCH_LM_H
#define HONE_BENCH_LM_H

#include <math.h>
#include <string.h>

#include "bench_common.h"
#include "ml/optim.h"
#include "models/clm.h"
#include "nn/nn.h"

/* parameters uniform in ±0.02 from a fixed LCG */
static void bench_fill(float *p, size_t n)
{
	uint64_t s = 1;
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
	}
}

/* a prompt of T/2 tokens in one forward, then steps tokens one at a time */
static void bench_generate(const clm *m, const nn_ops *ops, int T, int steps)
{
	int V = clm_vocab(m);
	clm_kv *kv = clm_kv_new_on(m, ops);
	uint32_t *pr = malloc((size_t)T * sizeof *pr);
	float *lg = malloc((size_t)V * sizeof *lg);
	for (int i = 0; i < T; i++)
		pr[i] = (uint32_t)((i * 7919u) % (unsigned)V);
	clm_prefill(kv, pr, T / 2, lg); /* warm */
	clm_kv_reset(kv);
	double t0 = now_seconds();
	clm_prefill(kv, pr, T / 2, lg);
	double t1 = now_seconds();
	int made = 0;
	for (; made < steps && T / 2 + made < clm_kv_max(kv); made++) {
		uint32_t best = 0;
		for (int k = 1; k < V; k++)
			best = lg[k] > lg[best] ? (uint32_t)k : best;
		if (clm_step(kv, best, lg) != 0)
			break;
	}
	double t2 = now_seconds();
	printf("hone   generate %.0f tokens/s at batch 1 (%d tokens after a %d-token prompt, %.1f ms; %s)\n", made / (t2 - t1),
	       made, T / 2, (t1 - t0) * 1e3, ops->name);
	free(pr);
	free(lg);
	clm_kv_free(kv);
}

/* steps of training: tokens/s, FLOP/s (flop_per_token · tokens), memory */
static void bench_train(const blas_api *api, const clm *m, const nn_ops *ops, const char *dev, int B, int T, int steps,
                        int th, double flop_per_token)
{
	const lora *lo = clm_lora(m);
	const ptune *pt = m->pt;
	int V = clm_vocab(m);
	size_t np = clm_nparams(m), tn = pt ? pt->np : lo ? lo->n : np;
	clm_ws *w = clm_ws_new_on(m, B, T, th, ops);
	nn_ctx *nc = clm_ws_nn(w);
	nc->precision = strstr(dev, "bf16") ? NN_BF16 : NN_FP32;
	float *tp = pt ? clm_ws_ptune_params(w) : lo ? clm_ws_lora_params(w) : clm_ws_params(w); /* the copy the step reads */
	uint32_t *ids = malloc((size_t)B * T * sizeof *ids);
	int32_t *tg = malloc((size_t)B * T * sizeof *tg);
	float *mo = nn_alloc(nc, tn * sizeof(float)), *vo = nn_alloc(nc, tn * sizeof(float));
	double t0 = 0, loss = 0;
	uint64_t s = 7;
	for (int st = 0; st <= steps; st++) {
		if (st == 1)
			t0 = now_seconds(); /* step 0 warms up */
		for (int i = 0; i < B * T; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			ids[i] = (uint32_t)((s >> 33) % (uint64_t)V);
		}
		for (int i = 0; i < B * T; i++)
			tg[i] = i % T == T - 1 ? -1 : (int32_t)ids[i + 1];
		loss = clm_forward(w, ids, tg);
		clm_backward(w);
		float *g = pt ? clm_ptune_grad(w) : lo ? clm_lora_grad(w) : clm_grad(w);
		nn_adamw(nc, tp, g, mo, vo, tn, 3e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, st + 1, clip_factor(sqrt(nn_sumsq(nc, g, tn)), 1.0));
	}
	nn_sumsq(nc, mo, 1); /* waits for the device */
	double dt = now_seconds() - t0, tokens = (double)B * T * steps, flops = flop_per_token * tokens;
	if (nn_on_host(ops)) {
		double peak = bench_sgemm_peak(api, th);
		bench_report(tokens, dt, flops, np, loss, steps, th, pt ? "prompt tuning" : lo ? "lora" : "full",
		             (double)(np + (lo ? lo->n : 0) + (pt ? pt->np : 0)) * 4,
		             2.0 * (double)tn * 4, (double)clm_ws_bytes(w), tn, peak);
	} else {
		printf("hone   %.0f tokens/s  %.2f TFLOP/s  params %zu  loss %.4f  (%d steps, %.3f s, %s, %s)\n", tokens / dt,
		       flops / dt / 1e12, np, loss, steps, dt, ops->name, nc->precision == NN_BF16 ? "bf16" : "fp32");
		printf("memory (%s): workspace %.0f MiB (parameters, activations, gradients) + AdamW moments %.0f MiB; "
		       "device memory in use at most %.0f MiB (the backend's scratch, cuBLAS and the context included)\n",
		       ops->name, (double)clm_ws_bytes(w) / 1048576.0, 2.0 * (double)tn * 4 / 1048576.0,
		       ops->peak_bytes ? (double)ops->peak_bytes(nc) / 1048576.0 : 0.0);
	}
	free(ids);
	free(tg);
	nn_free(nc, mo);
	nn_free(nc, vo);
	clm_ws_free(w);
}

#endif
