/* key: XXH3-128 matches xxhsum's reference values; stage keys change with
 * every component and with nothing else. */
#include "testutil.h"
#include "key.h"

static void test_reference_vectors(void **s)
{
	(void)s;
	/* `printf '' | xxhsum -H2` and `printf hone | xxhsum -H2` */
	hkey k;
	char hex[HKEY_HEX];
	hkey_of(&k, "", 0);
	hkey_hex(&k, hex);
	assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
	hkey_of(&k, "hone", 4);
	hkey_hex(&k, hex);
	assert_string_equal(hex, "0133b54c63aaf3f824685cb7b03d3dc2");
}

static void test_hex_roundtrip(void **s)
{
	(void)s;
	hkey k, back;
	char hex[HKEY_HEX];
	hkey_of(&k, "abc", 3);
	hkey_hex(&k, hex);
	assert_int_equal(hkey_parse(&back, hex), 0);
	assert_true(hkey_eq(&k, &back));
	assert_int_equal(hkey_parse(&back, "zz"), -1);
	assert_int_equal(hkey_parse(&back, "0123"), -1);
}

static void test_file_hash_matches_memory(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	/* bigger than the 1 MiB read block, so streaming is exercised */
	size_t n = (3u << 20) + 12345;
	char *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 2654435761u >> 13);
	char *p = path_join(d, "f.bin");
	FILE *f = fopen(p, "wb");
	fwrite(data, 1, n, f);
	fclose(f);
	hkey a, b;
	uint64_t size = 0;
	herr e;
	assert_int_equal(hkey_file(&e, p, &a, &size), 0);
	assert_int_equal(size, n);
	hkey_of(&b, data, n);
	assert_true(hkey_eq(&a, &b));
	assert_int_equal(hkey_file(&e, "/nonexistent/x", &a, NULL), -1);
	assert_non_null(strstr(e.msg, "/nonexistent/x"));
	free(p);
	free(data);
	tmpdir_rm(d);
}

static void stage_key(hkey *out, const char *kind, int version, const char *lr, const char *slot,
                      const char *input)
{
	hval *params = hval_new(HV_MAP);
	hval_map_set(params, "lr", hval_decode(lr, strlen(lr)));
	hval_map_set(params, "batch", hval_int(32));
	key_input in = {slot, "data/x.txt", {{0}}};
	hkey_of(&in.id, input, strlen(input));
	key_stage(out, kind, "k", version, NULL, params, &in, 1);
	hval_free(params);
}

static void test_stage_key_components(void **s)
{
	(void)s;
	hkey base, again, k;
	stage_key(&base, "train", 1, "0.001", "1", "data");
	stage_key(&again, "train", 1, "0.001", "1", "data");
	assert_true(hkey_eq(&base, &again));
	stage_key(&k, "evaluate", 1, "0.001", "1", "data");
	assert_false(hkey_eq(&base, &k));
	stage_key(&k, "train", 2, "0.001", "1", "data");
	assert_false(hkey_eq(&base, &k));
	stage_key(&k, "train", 1, "0.002", "1", "data");
	assert_false(hkey_eq(&base, &k));
	stage_key(&k, "train", 1, "1", "1", "data"); /* integer vs float */
	stage_key(&again, "train", 1, "1.0", "1", "data");
	assert_false(hkey_eq(&k, &again));
	stage_key(&k, "train", 1, "0.001", "val", "data");
	assert_false(hkey_eq(&base, &k));
	stage_key(&k, "train", 1, "0.001", "1", "datb");
	assert_false(hkey_eq(&base, &k));
}

static void test_stage_key_name_and_label(void **s)
{
	(void)s;
	hval *params = hval_new(HV_MAP);
	key_input in = {"1", "data/a.txt", {{0}}};
	hkey_of(&in.id, "bytes", 5);
	hkey a, b, c, d;
	key_stage(&a, "stage", "lua", 1, "clean", params, &in, 1);
	key_stage(&b, "stage", "lua", 1, "clean2", params, &in, 1);
	assert_false(hkey_eq(&a, &b)); /* the body can read its name */
	in.label = "data/b.txt";
	key_stage(&c, "stage", "lua", 1, "clean", params, &in, 1);
	assert_false(hkey_eq(&a, &c)); /* same bytes, another file name */
	in.label = "data/a.txt";
	key_stage(&d, "stage", "lua", 1, "clean", params, &in, 1);
	assert_true(hkey_eq(&a, &d));
	hval_free(params);
}

static void test_fields_are_length_prefixed(void **s)
{
	(void)s;
	/* ("ab","c") and ("a","bc") must not collide */
	hkey a, b;
	keyhash *h = keyhash_new();
	keyhash_str(h, "ab");
	keyhash_str(h, "c");
	keyhash_done(h, &a);
	h = keyhash_new();
	keyhash_str(h, "a");
	keyhash_str(h, "bc");
	keyhash_done(h, &b);
	assert_false(hkey_eq(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_vectors),
		cmocka_unit_test(test_hex_roundtrip),
		cmocka_unit_test(test_file_hash_matches_memory),
		cmocka_unit_test(test_stage_key_components),
		cmocka_unit_test(test_stage_key_name_and_label),
		cmocka_unit_test(test_fields_are_length_prefixed),
	};
	return cmocka_run_group_tests_name("key", tests, NULL, NULL);
}
