/*
 * GGUF (engine/io/gguf.c): half precision against known bit patterns and
 * round-to-nearest-even, Q8_0's and Q4_0's error bounds and zero blocks, a file
 * written and read back (metadata, tensor shapes, values), and malformed
 * files refused with the file named.
 */
#include <math.h>

#include "testutil.h"
#include "io/gguf.h"

static void test_f16(void **st)
{
	(void)st;
	struct {
		float f;
		uint16_t h;
	} k[] = {{0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {1e6f, 0x7c00},
	         {5.9604645e-8f, 0x0001}, {6.1035156e-5f, 0x0400}, {0.333333343f, 0x3555}, {1.0009765625f, 0x3c01},
	         {1.00048828125f, 0x3c00} /* a tie: to even */, {1.00146484375f, 0x3c02} /* a tie: up to even */};
	for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
		assert_int_equal(gguf_f16(k[i].f), k[i].h);
		if (k[i].h != 0x7c00)
			assert_true(fabsf(gguf_f32(k[i].h) - k[i].f) <= fabsf(k[i].f) * 1e-3f + 6e-8f);
	}
	assert_true(isnan(gguf_f32(gguf_f16(NAN))));
	for (int h = 0; h < 0x7c00; h++) /* every finite half survives the round trip */
		assert_int_equal(gguf_f16(gguf_f32((uint16_t)h)), h);
}

static void test_q8_0(void **st)
{
	(void)st;
	float x[64], y[64];
	for (int i = 0; i < 64; i++)
		x[i] = i < 32 ? sinf((float)i) * 3.0f : 0.0f; /* the second block all zero */
	uint8_t q[68];
	assert_int_equal(gguf_row_bytes(GGUF_Q8_0, 64), 68);
	gguf_quantize(GGUF_Q8_0, x, 64, q);
	gguf_dequantize(GGUF_Q8_0, q, 64, y);
	float amax = 0;
	for (int i = 0; i < 32; i++)
		amax = fmaxf(amax, fabsf(x[i]));
	for (int i = 0; i < 64; i++)
		assert_true(fabsf(x[i] - y[i]) <= amax / 127.0f * 0.5f + amax * 1e-3f);
	for (int i = 32; i < 64; i++)
		assert_true(y[i] == 0.0f);
}

/* Q4_0: 16 levels of d = m / -8 (m the value of largest magnitude); the
 * error at most |d| (the far end clamps to 7·d), zero blocks exact */
static void test_q4_0(void **st)
{
	(void)st;
	float x[64], y[64];
	for (int i = 0; i < 64; i++)
		x[i] = i < 32 ? cosf((float)i * 0.7f) * 2.0f - 0.3f : 0.0f;
	uint8_t q[36];
	assert_int_equal(gguf_row_bytes(GGUF_Q4_0, 64), 36);
	gguf_quantize(GGUF_Q4_0, x, 64, q);
	gguf_dequantize(GGUF_Q4_0, q, 64, y);
	float amax = 0;
	for (int i = 0; i < 32; i++)
		amax = fmaxf(amax, fabsf(x[i]));
	for (int i = 0; i < 64; i++)
		assert_true(fabsf(x[i] - y[i]) <= amax / 8.0f * 1.001f);
	for (int i = 32; i < 64; i++)
		assert_true(y[i] == 0.0f);
	int ft;
	assert_int_equal(gguf_type_parse("q4_0", &ft), GGUF_Q4_0);
	assert_int_equal(ft, GGUF_FTYPE_Q4_0);
	assert_int_equal(gguf_type_parse("q3", &ft), -1);
}

/* Q6_K: a super-block of 256 with sub-blocks of very different sizes,
 * then an all-zero one; within a few percent of the largest value */
static void test_q6_k(void **st)
{
	(void)st;
	float x[512], y[512];
	for (int i = 0; i < 512; i++)
		x[i] = i < 256 ? sinf((float)i * 1.3f) * (1.0f + (float)(i / 16)) : 0.0f;
	uint8_t q[420];
	assert_int_equal(gguf_row_bytes(GGUF_Q6_K, 512), 420);
	gguf_quantize(GGUF_Q6_K, x, 512, q);
	gguf_dequantize(GGUF_Q6_K, q, 512, y);
	float amax = 0, err = 0;
	for (int i = 0; i < 256; i++) {
		amax = fmaxf(amax, fabsf(x[i]));
		err = fmaxf(err, fabsf(x[i] - y[i]));
	}
	assert_true(err <= 0.03f * amax);
	for (int j = 0; j < 16; j++) { /* each sub-block within its own size */
		float sa = 0, se = 0;
		for (int i = j * 16; i < j * 16 + 16; i++) {
			sa = fmaxf(sa, fabsf(x[i]));
			se = fmaxf(se, fabsf(x[i] - y[i]));
		}
		assert_true(se <= sa / 31.0f + amax / 127.0f / 2.0f);
	}
	for (int i = 256; i < 512; i++)
		assert_true(y[i] == 0.0f);
}

/* Q4_K and Q5_K: sub-blocks with their own offsets and sizes, then an
 * all-zero super-block; within the quantization step of each sub-block */
static void test_k(void **st)
{
	(void)st;
	int types[2] = {GGUF_Q4_K, GGUF_Q5_K}, top[2] = {15, 31};
	for (int k = 0; k < 2; k++) {
		float x[512], y[512];
		for (int i = 0; i < 512; i++)
			x[i] = i < 256 ? cosf((float)i * 0.9f) * (0.5f + (float)(i / 32)) + (float)(i / 32) * 0.3f : 0.0f;
		uint8_t q[352];
		assert_int_equal(gguf_row_bytes(types[k], 512), k ? 352 : 288);
		gguf_quantize(types[k], x, 512, q);
		gguf_dequantize(types[k], q, 512, y);
		for (int j = 0; j < 8; j++) {
			float lo = 0, hi = -INFINITY, e = 0;
			for (int i = j * 32; i < j * 32 + 32; i++) {
				lo = fminf(lo, x[i]);
				hi = fmaxf(hi, x[i]);
				e = fmaxf(e, fabsf(x[i] - y[i]));
			}
			assert_true(e <= (hi - lo) / (float)top[k] * 1.1f + 0.05f);
		}
		for (int i = 256; i < 512; i++)
			assert_true(fabsf(y[i]) < 1e-6f);
	}
}

static void test_roundtrip(void **st)
{
	(void)st;
	char *d = tmpdir_new();
	char *path = path_join(d, "t.gguf");
	gguf_w *g = gguf_new();
	gguf_kv_str(g, "general.architecture", "gpt2");
	gguf_kv_u32(g, "gpt2.block_count", 7);
	const char *toks[] = {"a", "\xc4\xa0" "b"};
	gguf_kv_strs(g, "tokenizer.ggml.tokens", toks, 2);
	float w[64 * 3], b[5] = {1, 2, 3, 4, 5};
	for (int i = 0; i < 64 * 3; i++)
		w[i] = (float)i / 10.0f;
	uint64_t ne[2] = {64, 3}, nb[1] = {5};
	gguf_tensor(g, "w16", GGUF_F16, 2, ne, w);
	gguf_tensor(g, "bias", GGUF_F32, 1, nb, b);
	gguf_tensor(g, "w8", GGUF_Q8_0, 2, ne, w);
	herr e;
	assert_int_equal(gguf_save(&e, g, path), 0);
	gguf_free(g);
	gguf_file f;
	assert_int_equal(gguf_open(&e, &f, path), 0);
	assert_int_equal(f.version, 3);
	assert_int_equal(f.nt, 3);
	uint32_t t;
	const uint8_t *v = gguf_get(&f, "gpt2.block_count", &t);
	assert_non_null(v);
	assert_int_equal(t, 4); /* u32 */
	uint32_t n;
	memcpy(&n, v, 4);
	assert_int_equal(n, 7);
	assert_null(gguf_get(&f, "gpt2.nothing", &t));
	const gguf_tinfo *w16 = gguf_find(&f, "w16"), *w8 = gguf_find(&f, "w8"), *bi = gguf_find(&f, "bias");
	assert_true(w16 && w8 && bi);
	assert_true(w16->ndim == 2 && w16->ne[0] == 64 && w16->ne[1] == 3 && w16->type == GGUF_F16);
	assert_int_equal((uintptr_t)(w16->data - f.p) % 32, 0); /* aligned */
	float y[64 * 3];
	gguf_dequantize(GGUF_F16, w16->data, 64 * 3, y);
	for (int i = 0; i < 64 * 3; i++)
		assert_true(fabsf(y[i] - w[i]) <= fabsf(w[i]) * 1e-3f);
	gguf_dequantize(GGUF_F32, bi->data, 5, y);
	assert_memory_equal(y, b, sizeof b);
	gguf_dequantize(GGUF_Q8_0, w8->data, 64 * 3, y);
	for (int i = 0; i < 64 * 3; i++)
		assert_true(fabsf(y[i] - w[i]) <= 19.2f / 127.0f);
	gguf_close(&f);
	/* cut short, or not GGUF */
	buf all;
	buf_init(&all);
	assert_int_equal(fs_read(&e, path, &all), 0);
	assert_int_equal(fs_write_atomic(&e, path, all.p, all.len - 40), 0);
	assert_int_not_equal(gguf_open(&e, &f, path), 0);
	assert_non_null(strstr(e.msg, "truncated or malformed"));
	assert_int_equal(fs_write_atomic(&e, path, "GGML", 4), 0);
	assert_int_not_equal(gguf_open(&e, &f, path), 0);
	assert_non_null(strstr(e.msg, "not a GGUF file"));
	buf_free(&all);
	free(path);
	tmpdir_rm(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f16),
		cmocka_unit_test(test_q8_0),
		cmocka_unit_test(test_q4_0),
		cmocka_unit_test(test_q6_k),
		cmocka_unit_test(test_k),
		cmocka_unit_test(test_roundtrip),
	};
	return cmocka_run_group_tests_name("gguf", tests, NULL, NULL);
}
