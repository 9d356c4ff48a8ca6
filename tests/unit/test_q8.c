/*
 * q8 (engine/nn/q8.h): the Q8_0 product of the decode steps. The fast path
 * (AVX-512 VNNI, where the machine has it) gives the reference's bits; both
 * are within Q8_0's rounding of the fp32 product; activations quantize as
 * llama.cpp's quantize_row_q8_0; a GPT-2's decode steps from a Q8_0 GGUF
 * file's weights give the dequantized model's logits within 2% of their
 * range, and the same text greedily.
 */
#include <math.h>

#include "testutil.h"
#include "io/gguf.h"
#include "ml/blas.h"
#include "models/gpt2.h"
#include "nn/nn.h"
#include "nn/q8.h"

static uint64_t rs = 99;
static float frand(void)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rs >> 11) / 9007199254740992.0) * 2 - 1;
}

static void test_kernel(void **st)
{
	(void)st;
	enum { R = 37, K = 384 };
	float *w = xmalloc(R * K * sizeof *w), x[K];
	for (int i = 0; i < R * K; i++)
		w[i] = frand() * 0.1f;
	for (int i = 0; i < K; i++)
		x[i] = frand() * (i % 7 == 0 ? 5.0f : 1.0f);
	size_t rb = K / Q8_BLOCK * Q8_BLOCK_BYTES;
	uint8_t *wq = xmalloc(R * rb);
	for (int r = 0; r < R; r++)
		gguf_quantize(GGUF_Q8_0, w + (size_t)r * K, K, wq + (size_t)r * rb);
	int8_t xq[K];
	float xd[K / Q8_BLOCK];
	q8_quantize(x, K, xq, xd);
	for (int b = 0; b < K / Q8_BLOCK; b++) { /* llama.cpp's: d = max|x| / 127, q = round(x / d) */
		float amax = 0;
		for (int i = 0; i < Q8_BLOCK; i++)
			amax = fmaxf(amax, fabsf(x[b * Q8_BLOCK + i]));
		assert_true(xd[b] == amax / 127.0f);
		for (int i = 0; i < Q8_BLOCK; i++)
			assert_int_equal(xq[b * Q8_BLOCK + i], (int)lroundf(x[b * Q8_BLOCK + i] / xd[b]));
	}
	float y[R], y2[R], bias[R];
	for (int r = 0; r < R; r++)
		bias[r] = frand();
	q8_matvec(y, wq, R, K, xq, xd, bias, 0, NULL);
	crew *cw = crew_new(3);
	q8_matvec(y2, wq, R, K, xq, xd, bias, 0, cw);
	crew_free(cw);
	assert_memory_equal(y, y2, sizeof y);
	double err = 0, scale = 0;
	for (int r = 0; r < R; r++) {
		assert_true(y[r] == q8_dot_ref(wq + (size_t)r * rb, xq, xd, K) + bias[r]); /* fast = reference, bit for bit */
		double exact = bias[r];
		for (int i = 0; i < K; i++)
			exact += (double)w[(size_t)r * K + i] * x[i];
		err = fmax(err, fabs(y[r] - exact));
		scale = fmax(scale, fabs(exact));
	}
	if (!(err <= 1e-2 * scale))
		fail_msg("Q8_0 product: max error %.3g against a largest value of %.3g", err, scale);
	print_message("q8: %s path, max error %.2e of %.2e\n", q8_fast() ? "AVX-512 VNNI" : "plain C", err, scale);
	free(w);
	free(wq);
}

/* A GPT-2 decoding from Q8_0 weights against the same weights dequantized */
static void test_gpt2_decode(void **st)
{
	(void)st;
	herr e;
	gpt2_config cf = {2, 2, 64, 64, 96, 1e-5f, 0};
	gpt2 m;
	assert_int_equal(gpt2_init(&e, &m, &cf), 0);
	gpt2_init_random(&m, 4);
	/* the matrices as a file stores them: ggml's rows of outputs, Q8_0 */
	const char *hf[4] = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"};
	const uint8_t *w[4 * 2 + 1];
	uint8_t *own[4 * 2 + 1];
	for (int k = 0; k < 9; k++) {
		const gpt2_tensor *t = k < 8 ? NULL : gpt2_find(&m, "wte.weight");
		char nm[64];
		if (k < 8) {
			snprintf(nm, sizeof nm, "h.%d.%s", k / 4, hf[k % 4]);
			t = gpt2_find(&m, nm);
		}
		float *x = m.p + t->off;
		size_t in = (size_t)t->shape[0], out = (size_t)t->shape[1];
		if (k == 8)
			in = (size_t)t->shape[1], out = (size_t)t->shape[0]; /* wte: already rows of outputs */
		float *rows = xmalloc(in * out * sizeof *rows);
		for (size_t i = 0; i < in; i++)
			for (size_t o = 0; o < out; o++)
				rows[o * in + i] = k == 8 ? x[o * in + i] : x[i * out + o];
		size_t rb = in / Q8_BLOCK * Q8_BLOCK_BYTES;
		own[k] = xmalloc(out * rb);
		for (size_t o = 0; o < out; o++) {
			gguf_quantize(GGUF_Q8_0, rows + o * in, in, own[k] + o * rb);
			gguf_dequantize(GGUF_Q8_0, own[k] + o * rb, in, rows + o * in);
		}
		for (size_t i = 0; i < in; i++) /* the model's fp32 weights become the file's, turned back */
			for (size_t o = 0; o < out; o++)
				*(k == 8 ? &x[o * in + i] : &x[i * out + o]) = rows[o * in + i];
		w[k] = own[k];
		free(rows);
	}
	gpt2_kv *a = gpt2_kv_new(&m), *b = gpt2_kv_new(&m);
	assert_int_equal(gpt2_kv_q8(b, &m, w), 0);
	float la[96], lb[96];
	uint32_t ida = 5, idb = 5;
	int same = 1;
	for (int s = 0; s < 20; s++) {
		gpt2_step(&m, a, ida, la);
		gpt2_step(&m, b, idb, lb);
		float lo = la[0], hi = la[0];
		for (int v = 0; v < 96; v++)
			lo = fminf(lo, la[v]), hi = fmaxf(hi, la[v]);
		for (int v = 0; v < 96; v++)
			if (fabsf(la[v] - lb[v]) > 0.02f * (hi - lo))
				fail_msg("step %d logit %d: %.5g from the int8 weights, %.5g dequantized", s, v, lb[v], la[v]);
		int ba = 0, bb = 0;
		for (int v = 1; v < 96; v++) {
			ba = la[v] > la[ba] ? v : ba;
			bb = lb[v] > lb[bb] ? v : bb;
		}
		same &= ba == bb;
		ida = (uint32_t)ba;
		idb = (uint32_t)bb;
	}
	assert_true(same);
	gpt2_kv_free(a);
	gpt2_kv_free(b);
	for (int k = 0; k < 9; k++)
		free(own[k]);
	gpt2_free(&m);
}

int main(void)
{
	herr e;
	if (!blas_get(&e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_kernel), cmocka_unit_test(test_gpt2_decode)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
