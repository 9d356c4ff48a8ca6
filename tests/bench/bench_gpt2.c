/*
 * bench_gpt2 — training steps of the native GPT-2 (forward, backward, AdamW)
 * on random tokens, and OpenBLAS sgemm's peak on the same threads.
 *   bench_gpt2 LAYERS EMBD HEADS T B VOCAB STEPS THREADS [full|lora|generate] [cpu|cuda|cuda-bf16]
 * Prints tokens/s, the FLOP rate (6·params·tokens + attention) and sgemm's,
 * and peak RSS against what the step needs: parameters, gradients, AdamW's
 * two moments (of the trained parameters) and the workspace's activations.
 * lora: rank 8 adapters on c_attn, c_proj, c_fc; the base frozen.
 * generate: greedy generation of STEPS tokens after a prompt of T/2 tokens
 * (the KV cache; batch 1), tokens/s.
 * cuda: the steps on the GPU (make cuda), fp32; its memory is the
 * workspace's, parameters' and moments' device bytes (no sgemm line).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "ml/blas.h"
#include "models/gpt2.h"
#include "ml/optim.h"
#include "nn/nn.h"

int main(int argc, char **argv)
{
	if (argc < 9 || argc > 11) {
		fprintf(stderr, "usage: bench_gpt2 LAYERS EMBD HEADS T B VOCAB STEPS THREADS [full|lora|generate] [cpu|cuda|cuda-bf16]\n");
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
	int lora = argc >= 10 && !strcmp(argv[9], "lora"), gen = argc >= 10 && !strcmp(argv[9], "generate");
	const char *dev = argc == 11 ? argv[10] : "cpu";
	const nn_ops *ops = nn_backend(&e, !strncmp(dev, "cuda", 4) ? "cuda" : dev);
	if (!ops) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	gpt2_lora lo;
	memset(&lo, 0, sizeof lo);
	if (lora) {
		gpt2_lora_init(&lo, &m, 8, 16, LORA_C_ATTN | LORA_ATTN_C_PROJ | LORA_MLP_C_PROJ | LORA_C_FC, 1);
		for (size_t i = 0; i < lo.n; i++)
			lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f; /* B nonzero: a real update */
		m.lora = &lo;
	}
	if (gen) { /* generation: a prompt of T tokens in one forward, then STEPS tokens one at a time */
		gpt2_kv *kv = gpt2_kv_new_on(&m, ops);
		uint32_t *pr = malloc((size_t)T * sizeof *pr);
		float *lg = malloc((size_t)V * sizeof *lg);
		for (int i = 0; i < T; i++)
			pr[i] = (uint32_t)((i * 7919u) % (unsigned)V);
		gpt2_prefill(&m, kv, pr, T / 2, lg); /* warm */
		gpt2_kv_reset(kv);
		double t0 = now_seconds();
		gpt2_prefill(&m, kv, pr, T / 2, lg);
		double t1 = now_seconds();
		int made = 0;
		for (; made < steps && gpt2_kv_len(kv) < m.cfg.n_positions; made++) {
			uint32_t best = 0;
			for (int k = 1; k < V; k++)
				best = lg[k] > lg[best] ? (uint32_t)k : best;
			if (gpt2_step(&m, kv, best, lg) != 0)
				break;
		}
		double t2 = now_seconds();
		printf("hone   generate %.0f tokens/s at batch 1 (%d tokens after a %d-token prompt, %.1f ms; %s)\n",
		       made / (t2 - t1), made, T / 2, (t1 - t0) * 1e3, ops->name);
		free(pr);
		free(lg);
		gpt2_kv_free(kv);
		gpt2_free(&m);
		return 0;
	}
	size_t tn = lora ? lo.n : m.nparams;
	gpt2_ws *w = gpt2_ws_new_on(&m, B, T, th, ops);
	if (!w) {
		fprintf(stderr, "bench_gpt2: %s runs full fine-tuning only\n", ops->name);
		return 1;
	}
	nn_ctx *nc = gpt2_ws_nn(w);
	nc->precision = strstr(dev, "bf16") ? NN_BF16 : NN_FP32;
	float *tp = lora ? lo.p : gpt2_ws_params(w, &m);
	uint32_t *ids = malloc((size_t)B * T * sizeof *ids);
	int32_t *tg = malloc((size_t)B * T * sizeof *tg);
	float *mo = nn_alloc(nc, tn * sizeof(float)), *vo = nn_alloc(nc, tn * sizeof(float));
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
		float *g = lora ? gpt2_lora_grad(w) : gpt2_grad(w);
		nn_adamw(nc, tp, g, mo, vo, tn, 3e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, st + 1,
		         clip_factor(sqrt(nn_sumsq(nc, g, tn)), 1.0));
	}
	nn_sumsq(nc, mo, 1); /* waits for the device */
	double dt = now_seconds() - t0;
	double tokens = (double)B * T * steps;
	double flops = 6.0 * (double)m.nparams * tokens + 12.0 * L * (double)T * C * tokens;
	if (nn_on_host(ops)) {
		double peak = bench_sgemm_peak(api, th);
		bench_report(tokens, dt, flops, m.nparams, loss, steps, th, lora ? "lora" : "full", (double)(m.nparams + lo.n) * 4,
		             2.0 * (double)tn * 4, (double)gpt2_ws_bytes(w), tn, peak);
	} else {
		printf("hone   %.0f tokens/s  %.2f TFLOP/s  params %zu  loss %.4f  (%d steps, %.3f s, %s, %s)\n", tokens / dt,
		       flops / dt / 1e12, m.nparams, loss, steps, dt, ops->name, nc->precision == NN_BF16 ? "bf16" : "fp32");
		printf("memory (%s): workspace %.0f MiB (parameters, activations, gradients) + AdamW moments %.0f MiB; "
		       "device memory in use at most %.0f MiB (the backend's scratch, cuBLAS and the context included)\n",
		       ops->name, (double)gpt2_ws_bytes(w) / 1048576.0, 2.0 * (double)tn * 4 / 1048576.0,
		       ops->peak_bytes ? (double)ops->peak_bytes(nc) / 1048576.0 : 0.0);
	}
	gpt2_lora_free(&lo);
	free(ids);
	free(tg);
	nn_free(nc, mo);
	nn_free(nc, vo);
	gpt2_ws_free(w);
	gpt2_free(&m);
	return 0;
}
