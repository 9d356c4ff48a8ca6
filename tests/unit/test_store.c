/* store: atomic publication, content ids, named-output ids, the action
 * cache, and verification catching damage of every kind. */
#include <sys/stat.h>

#include "testutil.h"
#include "store.h"

static char *publish(store *st, const char *files[][2], size_t n, hkey *id)
{
	herr e;
	char *w = store_tmpdir(&e, st, "t");
	assert_non_null(w);
	for (size_t i = 0; i < n; i++)
		write_file(w, files[i][0], files[i][1]);
	assert_int_equal(store_publish(&e, st, w, id), 0);
	assert_false(fs_exists(w)); /* consumed */
	free(w);
	return store_object_path(st, id);
}

static void test_publish_and_ids(void **s)
{
	(void)s;
	char *root = tmpdir_new();
	store st;
	herr e;
	assert_int_equal(store_open(&e, &st, root, 1), 0);
	const char *f1[][2] = {{"train/a.txt", "alpha\n"}, {"test/a.txt", "beta\n"}};
	hkey id1, id2, sub, direct;
	char *p1 = publish(&st, f1, 2, &id1);
	assert_true(store_object_exists(&st, &id1));
	/* same content again: same id, still one object */
	char *p2 = publish(&st, f1, 2, &id2);
	assert_true(hkey_eq(&id1, &id2));
	assert_string_equal(p1, p2);
	/* a named output's id equals the id of an object holding just its files */
	assert_int_equal(store_output_id(&e, &st, &id1, "train", &sub), 0);
	const char *f2[][2] = {{"a.txt", "alpha\n"}};
	char *p3 = publish(&st, f2, 1, &direct);
	assert_true(hkey_eq(&sub, &direct));
	assert_int_equal(store_output_id(&e, &st, &id1, "test", &sub), 0);
	assert_false(hkey_eq(&sub, &direct));
	/* published files are read-only */
	char *f = path_join(p1, "train/a.txt");
	struct stat sb;
	assert_int_equal(stat(f, &sb), 0);
	assert_int_equal(sb.st_mode & 0222, 0);
	free(f);
	free(p1);
	free(p2);
	free(p3);
	store_close(&st);
	tmpdir_rm(root);
}

static void test_action_cache(void **s)
{
	(void)s;
	char *root = tmpdir_new();
	store st;
	herr e;
	assert_int_equal(store_open(&e, &st, root, 1), 0);
	const char *f[][2] = {{"x", "1"}};
	hkey obj, key, got;
	char *p = publish(&st, f, 1, &obj);
	hkey_of(&key, "some stage key", 14);
	assert_int_equal(store_key_get(&st, &key, &got, NULL), 0);
	assert_int_equal(store_key_put(&e, &st, &key, &obj, "{\"acc\":0.5}"), 0);
	char *m = NULL;
	assert_int_equal(store_key_get(&st, &key, &got, &m), 1);
	assert_true(hkey_eq(&got, &obj));
	assert_string_equal(m, "{\"acc\":0.5}");
	free(m);
	/* truncate the entry at every byte: always a miss, never a crash */
	char hex[HKEY_HEX];
	hkey_hex(&key, hex);
	char *kp = xasprintf("%s/keys/%.2s/%s", root, hex, hex);
	buf full;
	buf_init(&full);
	assert_int_equal(fs_read(&e, kp, &full), 0);
	for (size_t n = 0; n < full.len; n++) {
		assert_int_equal(fs_write_atomic(&e, kp, full.p, n), 0);
		assert_int_equal(store_key_get(&st, &key, &got, NULL), 0);
	}
	assert_int_equal(fs_write_atomic(&e, kp, full.p, full.len), 0);
	assert_int_equal(store_key_get(&st, &key, &got, NULL), 1);
	/* an entry whose object is gone is a miss */
	assert_int_equal(fs_rmtree(&e, p), 0);
	assert_int_equal(store_key_get(&st, &key, &got, NULL), 0);
	buf_free(&full);
	free(kp);
	free(p);
	store_close(&st);
	tmpdir_rm(root);
}

static size_t verify_bad(store *st)
{
	herr e;
	store_report r;
	FILE *devnull = fopen("/dev/null", "w");
	assert_int_equal(store_verify(&e, st, 0, devnull, &r), 0);
	fclose(devnull);
	return r.bad_objects + r.bad_keys;
}

static void test_verify_detects_damage(void **s)
{
	(void)s;
	char *root = tmpdir_new();
	store st;
	herr e;
	assert_int_equal(store_open(&e, &st, root, 1), 0);
	const char *f[][2] = {{"a.txt", "hello\n"}, {"sub/b.txt", "world\n"}};
	hkey id;
	char *p = publish(&st, f, 2, &id);
	assert_int_equal(verify_bad(&st), 0);

	/* 1: a changed byte */
	char *a = path_join(p, "a.txt");
	chmod(a, 0644);
	write_file(p, "a.txt", "hellO\n");
	assert_int_equal(verify_bad(&st), 1);
	write_file(p, "a.txt", "hello\n");
	assert_int_equal(verify_bad(&st), 0);
	/* 2: an extra file */
	write_file(p, "extra", "x");
	assert_int_equal(verify_bad(&st), 1);
	char *x = path_join(p, "extra");
	unlink(x);
	free(x);
	/* 3: the manifest truncated at every byte */
	char *mp = path_join(p, STORE_MANIFEST);
	buf m;
	buf_init(&m);
	assert_int_equal(fs_read(&e, mp, &m), 0);
	chmod(mp, 0644);
	for (size_t n = 0; n < m.len; n++) {
		assert_int_equal(fs_write_atomic(&e, mp, m.p, n), 0);
		assert_int_equal(verify_bad(&st), 1);
	}
	assert_int_equal(fs_write_atomic(&e, mp, m.p, m.len), 0);
	assert_int_equal(verify_bad(&st), 0);
	/* publishing the same content again replaces a damaged object */
	write_file(p, "a.txt", "damaged\n");
	assert_int_equal(verify_bad(&st), 1);
	hkey again;
	free(publish(&st, f, 2, &again));
	assert_true(hkey_eq(&again, &id));
	assert_int_equal(verify_bad(&st), 0);
	chmod(a, 0644);
	/* repair removes the damaged object */
	write_file(p, "a.txt", "damaged\n");
	store_report r;
	FILE *devnull = fopen("/dev/null", "w");
	assert_int_equal(store_verify(&e, &st, 1, devnull, &r), 0);
	fclose(devnull);
	assert_int_equal(r.bad_objects, 1);
	assert_false(store_object_exists(&st, &id));
	assert_int_equal(verify_bad(&st), 0);
	buf_free(&m);
	free(mp);
	free(a);
	free(p);
	store_close(&st);
	tmpdir_rm(root);
}

static void test_gc(void **s)
{
	(void)s;
	char *root = tmpdir_new();
	store st;
	herr e;
	assert_int_equal(store_open(&e, &st, root, 1), 0);
	const char *f1[][2] = {{"a", "1"}}, *f2[][2] = {{"a", "2"}};
	hkey keep, drop, k1, k2, got;
	free(publish(&st, f1, 1, &keep));
	free(publish(&st, f2, 1, &drop));
	hkey_of(&k1, "k1", 2);
	hkey_of(&k2, "k2", 2);
	store_key_put(&e, &st, &k1, &keep, NULL);
	store_key_put(&e, &st, &k2, &drop, NULL);
	char *w = store_tmpdir(&e, &st, "leftover");
	write_file(w, "partial", "x");
	store_report r;
	FILE *devnull = fopen("/dev/null", "w");
	assert_int_equal(store_gc(&e, &st, &keep, 1, devnull, &r), 0);
	fclose(devnull);
	assert_int_equal(r.bad_objects, 1);
	assert_int_equal(r.tmp_dirs, 1);
	assert_true(store_object_exists(&st, &keep));
	assert_false(store_object_exists(&st, &drop));
	assert_int_equal(store_key_get(&st, &k1, &got, NULL), 1);
	assert_int_equal(store_key_get(&st, &k2, &got, NULL), 0);
	assert_false(fs_exists(w));
	assert_int_equal(verify_bad(&st), 0);
	free(w);
	store_close(&st);
	tmpdir_rm(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_and_ids),
		cmocka_unit_test(test_action_cache),
		cmocka_unit_test(test_verify_detects_damage),
		cmocka_unit_test(test_gc),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
