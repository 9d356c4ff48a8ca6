/*
 * bench_llama — training steps of the native Llama (forward, backward,
 * AdamW) on random tokens, and OpenBLAS sgemm's peak on the same threads.
 *   bench_llama LAYERS EMBD HEADS KV_HEADS INTER T B VOCAB STEPS THREADS [full|lora|generate] [cpu|cuda|cuda-bf16]
 * As bench_gpt2 (tests/bench/bench_lm.h has the loop and the report): the
 * rate against 6·params·tokens + attention, memory against peak RSS.
 * lora: rank 8 adapters on the seven projections; prompt: prompt tuning
 * with 20 virtual tokens (the step 20 positions longer); generate: greedy
 * generation of STEPS tokens at batch 1 after a prompt of T/2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_lm.h"
#include "models/llama.h"
#include "nn/ptune.h"

int main(int argc, char **argv)
{
	if (argc < 11 || argc > 13) {
		fprintf(stderr, "usage: bench_llama LAYERS EMBD HEADS KV_HEADS INTER T B VOCAB STEPS THREADS [full|lora|prompt|generate] "
		                "[cpu|cuda|cuda-bf16]\n");
		return 2;
	}
	int L = atoi(argv[1]), C = atoi(argv[2]), H = atoi(argv[3]), Hk = atoi(argv[4]), I = atoi(argv[5]), T = atoi(argv[6]),
	    B = atoi(argv[7]), V = atoi(argv[8]), steps = atoi(argv[9]), th = atoi(argv[10]);
	herr e;
	const blas_api *api = blas_get(&e);
	if (!api) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	llama_config c = {.n_layer = L, .hidden = C, .inter = I, .n_head = H, .n_kv = Hk, .head_dim = C / H, .max_pos = T,
	                  .vocab = V, .eps = 1e-5f, .theta = 10000, .family = "llama"};
	llama m;
	if (H < 1 || Hk < 1 || H % Hk || C % H || llama_init(&e, &m, &c) != 0) {
		fprintf(stderr, "bench_llama: a bad shape (%s)\n", H < 1 || Hk < 1 || H % Hk || C % H ? "heads" : e.msg);
		return 1;
	}
	bench_fill(m.p, m.nparams);
	const char *mode = argc >= 12 ? argv[11] : "full", *dev = argc == 13 ? argv[12] : "cpu";
	const nn_ops *ops = nn_backend(&e, !strncmp(dev, "cuda", 4) ? "cuda" : dev);
	if (!ops) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	lora lo;
	memset(&lo, 0, sizeof lo);
	if (!strcmp(mode, "lora")) {
		lora_arch a;
		llama_lora_arch(&m, &a);
		lora_init(&lo, &a, 8, 16, 0x7f, 1);
		for (size_t i = 0; i < lo.n; i++)
			lo.p[i] = lo.p[i] ? lo.p[i] : 0.01f;
		m.lora = &lo;
	}
	ptune pt;
	memset(&pt, 0, sizeof pt);
	clm cm = clm_of_llama(&m);
	if (!strcmp(mode, "prompt")) {
		ptune_init(&pt, 20, C, L, H, 1);
		clm_set_ptune(&cm, &pt);
	}
	if (!strcmp(mode, "generate"))
		bench_generate(&cm, ops, T, steps);
	else
		bench_train(api, &cm, ops, dev, B, T, steps, th, 6.0 * (double)m.nparams + 12.0 * L * (double)T * C);
	lora_free(&lo);
	ptune_free(&pt);
	llama_free(&m);
	return 0;
}
