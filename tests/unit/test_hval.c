/* hval: canonical encoding distinguishes types, sorts keys, round-trips. */
#include "testutil.h"
#include "hval.h"

static char *enc(const hval *v)
{
	buf b;
	buf_init(&b);
	hval_encode(&b, v);
	return buf_take(&b);
}

static void test_scalars(void **s)
{
	(void)s;
	struct { hval *v; const char *want; } cases[] = {
		{hval_int(42), "42"},
		{hval_int(-7), "-7"},
		{hval_float(1.0), "1.0"},
		{hval_float(0.1), "0.1"},
		{hval_float(2e-5), "2e-05"},
		{hval_float(1e-3), "0.001"},
		{hval_float(123456789.125), "123456789.125"},
		{hval_bool(1), "true"},
		{hval_bool(0), "false"},
		{hval_new(HV_NIL), "nil"},
		{hval_str("a\"b\\c\n\t\x01", 8), "\"a\\\"b\\\\c\\n\\t\\x01\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *got = enc(cases[i].v);
		assert_string_equal(got, cases[i].want);
		free(got);
		hval_free(cases[i].v);
	}
}

static void test_int_and_float_differ(void **s)
{
	(void)s;
	hval *a = hval_int(1), *b = hval_float(1.0);
	assert_false(hval_equal(a, b));
	hval_free(a);
	hval_free(b);
}

static void test_map_sorted(void **s)
{
	(void)s;
	hval *m1 = hval_new(HV_MAP), *m2 = hval_new(HV_MAP);
	hval_map_set(m1, "lr", hval_float(0.001));
	hval_map_set(m1, "batch", hval_int(32));
	hval_map_set(m1, "my key", hval_str("x", 1));
	hval_map_set(m2, "my key", hval_str("x", 1));
	hval_map_set(m2, "batch", hval_int(32));
	hval_map_set(m2, "lr", hval_float(0.001));
	char *a = enc(m1), *b = enc(m2);
	assert_string_equal(a, "{batch=32,lr=0.001,\"my key\"=\"x\"}");
	assert_string_equal(a, b);
	/* replacing a key keeps one entry */
	hval_map_set(m1, "lr", hval_float(0.002));
	assert_int_equal(m1->n, 3);
	assert_true(hval_get_num(m1, "lr", 0) == 0.002);
	assert_int_equal(hval_get_int(m1, "batch", 0), 32);
	assert_string_equal(hval_get_str(m1, "my key", NULL), "x");
	assert_null(hval_get(m1, "absent"));
	free(a);
	free(b);
	hval_free(m1);
	hval_free(m2);
}

static hval *sample(void)
{
	hval *m = hval_new(HV_MAP);
	hval *l = hval_new(HV_LIST);
	hval_list_push(l, hval_int(1));
	hval_list_push(l, hval_float(2.5));
	hval_list_push(l, hval_str("three, \"3\"", 10));
	hval_map_set(m, "list", l);
	hval *inner = hval_new(HV_MAP);
	hval_map_set(inner, "deep", hval_bool(1));
	hval_map_set(inner, "x y", hval_new(HV_NIL));
	hval_map_set(m, "inner", inner);
	hval *fn = hval_str("0123abcd", 8);
	fn->t = HV_FN;
	hval_map_set(m, "run", fn);
	hval_map_set(m, "eps", hval_float(1e-300));
	return m;
}

static void test_roundtrip(void **s)
{
	(void)s;
	hval *m = sample();
	char *a = enc(m);
	hval *back = hval_decode(a, strlen(a));
	assert_non_null(back);
	char *b = enc(back);
	assert_string_equal(a, b);
	hval *copy = hval_dup(m);
	assert_true(hval_equal(copy, m));
	free(a);
	free(b);
	hval_free(back);
	hval_free(copy);
	hval_free(m);
}

/* Every prefix of a valid encoding either fails to decode or decodes to a
 * value; never crashes (run under ASan too). */
static void test_truncation_sweep(void **s)
{
	(void)s;
	hval *m = sample();
	char *a = enc(m);
	size_t n = strlen(a);
	for (size_t i = 0; i < n; i++) {
		hval *v = hval_decode(a, i);
		hval_free(v);
	}
	assert_null(hval_decode(a, n - 1));
	free(a);
	hval_free(m);
}

static void test_lines(void **s)
{
	(void)s;
	hval *m = hval_new(HV_MAP);
	hval_map_set(m, "b", hval_int(2));
	hval_map_set(m, "a", hval_str("x", 1));
	buf b;
	buf_init(&b);
	hval_encode_lines(&b, m);
	assert_string_equal(b.p, "a=\"x\"\nb=2\n");
	buf_free(&b);
	hval_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_int_and_float_differ),
		cmocka_unit_test(test_map_sorted),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_truncation_sweep),
		cmocka_unit_test(test_lines),
	};
	return cmocka_run_group_tests_name("hval", tests, NULL, NULL);
}
