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

#include "bench_lm.h"
#include "ml/blas.h"
#include "models/gpt2.h"
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
	bench_fill(m.p, m.nparams);
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
	clm cm = clm_of_gpt2(&m);
	if (gen)
		bench_generate(&cm, ops, T, steps);
	else
		bench_train(api, &cm, ops, dev, B, T, steps, th, 6.0 * (double)m.nparams + 12.0 * L * (double)T * C);
	gpt2_lora_free(&lo);
	gpt2_free(&m);
	return 0;
}
