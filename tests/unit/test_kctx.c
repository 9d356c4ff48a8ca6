/* kctx: progress rate and ETA (a resumed stage counts only its own steps),
 * the stop request a kernel polls. */
#include "testutil.h"
#include "kernel.h"

static void test_rate_fresh(void **s)
{
	(void)s;
	kctx c;
	kctx_init(&c, "train", NULL);
	c.t0 = 100;
	assert_int_equal(kctx_progress(&c, 200, 1000, "steps"), 0);
	double per_s, eta;
	kctx_rate(&c, 110, &per_s, &eta);
	assert_true(per_s > 19.999 && per_s < 20.001);
	assert_true(eta > 39.999 && eta < 40.001);
	kctx_free(&c);
}

static void test_rate_resumed(void **s)
{
	(void)s;
	kctx c;
	kctx_init(&c, "train", NULL);
	c.t0 = 100;
	/* resumed at step 500 two seconds in; 100 more steps in the next 10 s */
	kctx_progress_from(&c, 500);
	c.t_from = 102;
	kctx_progress(&c, 600, 1000, "steps");
	double per_s, eta;
	kctx_rate(&c, 112, &per_s, &eta);
	assert_true(per_s > 9.999 && per_s < 10.001);  /* not 600 / 12 */
	assert_true(eta > 39.999 && eta < 40.001);     /* 400 left at 10/s */
	kctx_free(&c);
}

static void test_rate_unknown(void **s)
{
	(void)s;
	kctx c;
	kctx_init(&c, "x", NULL);
	double per_s, eta;
	kctx_rate(&c, c.t0 + 1, &per_s, &eta);
	assert_true(per_s == 0 && eta < 0);
	kctx_progress(&c, 10, 0, "rows"); /* no total: a rate, no ETA */
	kctx_rate(&c, c.t0 + 1, &per_s, &eta);
	assert_true(per_s > 0 && eta < 0);
	kctx_free(&c);
}

static void test_stop(void **s)
{
	(void)s;
	kctx c;
	kctx_init(&c, "x", NULL);
	assert_int_equal(kctx_stopping(&c), 0);
	atomic_store(&c.stop, 2);
	assert_int_equal(kctx_progress(&c, 1, 2, "B"), -1);
	assert_non_null(strstr(c.err.msg, "timed out"));
	atomic_store(&c.stop, 1);
	assert_int_equal(kctx_stopping(&c), -1);
	assert_non_null(strstr(c.err.msg, "interrupted"));
	kctx_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_fresh),
		cmocka_unit_test(test_rate_resumed),
		cmocka_unit_test(test_rate_unknown),
		cmocka_unit_test(test_stop),
	};
	return cmocka_run_group_tests_name("kctx", tests, NULL, NULL);
}
