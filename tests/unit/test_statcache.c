/* statcache: hashes once, survives reload, re-hashes touched files without
 * changing their id, and ignores a damaged cache file at every length. */
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>

#include "testutil.h"
#include "statcache.h"

/* Sets a file's mtime into the past so the cache may remember it. */
static void age(const char *path, int seconds_ago)
{
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= seconds_ago;
	t[1] = t[0];
	assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void test_hit_touch_change(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	write_file(d, "data.txt", "some bytes\n");
	char *f = path_join(d, "data.txt"), *c = path_join(d, "statcache");
	age(f, 100);
	herr e;
	hkey a, b;
	unsigned hashed, hits;
	statcache *sc = statcache_load(c);
	assert_int_equal(statcache_id(sc, &e, f, &a, NULL), 0);
	assert_int_equal(statcache_id(sc, &e, f, &b, NULL), 0);
	assert_true(hkey_eq(&a, &b));
	statcache_counts(sc, &hashed, &hits);
	assert_int_equal(hashed, 1);
	assert_int_equal(hits, 1);
	assert_int_equal(statcache_save(sc, &e), 0);
	statcache_free(sc);

	/* reloaded: a hit without hashing */
	sc = statcache_load(c);
	assert_int_equal(statcache_id(sc, &e, f, &b, NULL), 0);
	statcache_counts(sc, &hashed, &hits);
	assert_int_equal(hashed, 0);
	assert_true(hkey_eq(&a, &b));
	/* touched: re-hashed, same id */
	age(f, 50);
	assert_int_equal(statcache_id(sc, &e, f, &b, NULL), 0);
	statcache_counts(sc, &hashed, &hits);
	assert_int_equal(hashed, 1);
	assert_true(hkey_eq(&a, &b));
	/* same size, different byte: new id */
	write_file(d, "data.txt", "some bytez\n");
	age(f, 40);
	assert_int_equal(statcache_id(sc, &e, f, &b, NULL), 0);
	assert_false(hkey_eq(&a, &b));
	/* missing file: error naming it */
	char *m = path_join(d, "missing");
	assert_int_equal(statcache_id(sc, &e, m, &b, NULL), -1);
	assert_non_null(strstr(e.msg, "missing"));
	free(m);
	statcache_free(sc);
	free(f);
	free(c);
	tmpdir_rm(d);
}

static void test_folder_id(void **s)
{
	(void)s;
	char *d = tmpdir_new(), *c = path_join(d, "statcache");
	write_file(d, "src/a.txt", "a");
	write_file(d, "src/sub/b.txt", "b");
	write_file(d, "copy/a.txt", "a");
	write_file(d, "copy/sub/b.txt", "b");
	char *s1 = path_join(d, "src"), *s2 = path_join(d, "copy");
	herr e;
	hkey a, b;
	uint64_t bytes;
	statcache *sc = statcache_load(c);
	assert_int_equal(statcache_id(sc, &e, s1, &a, &bytes), 0);
	assert_int_equal(bytes, 2);
	assert_int_equal(statcache_id(sc, &e, s2, &b, NULL), 0);
	assert_true(hkey_eq(&a, &b)); /* content, not location */
	write_file(d, "copy/sub/c.txt", "");
	assert_int_equal(statcache_id(sc, &e, s2, &b, NULL), 0);
	assert_false(hkey_eq(&a, &b));
	statcache_free(sc);
	free(s1);
	free(s2);
	free(c);
	tmpdir_rm(d);
}

static void test_damaged_file_ignored(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	write_file(d, "x.txt", "x");
	write_file(d, "y.txt", "yy");
	char *x = path_join(d, "x.txt"), *y = path_join(d, "y.txt"), *c = path_join(d, "statcache");
	age(x, 100);
	age(y, 100);
	herr e;
	hkey a, want;
	statcache *sc = statcache_load(c);
	assert_int_equal(statcache_id(sc, &e, x, &want, NULL), 0);
	assert_int_equal(statcache_id(sc, &e, y, &a, NULL), 0);
	assert_int_equal(statcache_save(sc, &e), 0);
	statcache_free(sc);
	buf full;
	buf_init(&full);
	assert_int_equal(fs_read(&e, c, &full), 0);
	for (size_t n = 0; n <= full.len; n++) {
		assert_int_equal(fs_write_atomic(&e, c, full.p, n), 0);
		sc = statcache_load(c);
		assert_int_equal(statcache_id(sc, &e, x, &a, NULL), 0);
		assert_true(hkey_eq(&a, &want));
		unsigned hashed, hits;
		statcache_counts(sc, &hashed, &hits);
		assert_int_equal(hashed, n == full.len ? 0 : 1);
		statcache_free(sc);
	}
	/* a flipped byte in the middle fails the checksum */
	full.p[full.len / 2] ^= 1;
	assert_int_equal(fs_write_atomic(&e, c, full.p, full.len), 0);
	sc = statcache_load(c);
	assert_int_equal(statcache_id(sc, &e, x, &a, NULL), 0);
	assert_true(hkey_eq(&a, &want));
	statcache_free(sc);
	buf_free(&full);
	free(x);
	free(y);
	free(c);
	tmpdir_rm(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_touch_change),
		cmocka_unit_test(test_folder_id),
		cmocka_unit_test(test_damaged_file_ignored),
	};
	return cmocka_run_group_tests_name("statcache", tests, NULL, NULL);
}
