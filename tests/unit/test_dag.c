/* dag: topological order, forward references, cycles named. */
#include "testutil.h"
#include "dag.h"

static int stage(dag *g, const char *name)
{
	return dag_add_stage(g, name, "stage", "lua", 1, NULL, "p.lua:1");
}

static void test_topo_order(void **s)
{
	(void)s;
	dag g;
	dag_init(&g);
	int src = dag_add_source(&g, "/abs/a.txt", "a.txt", "p.lua:1");
	assert_int_equal(dag_add_source(&g, "/abs/a.txt", "a.txt", "p.lua:2"), src); /* dedup */
	int c = stage(&g, "c");
	int b = stage(&g, "b");
	int a = stage(&g, "a");
	dag_add_input(&g, a, "1", src, NULL, NULL);
	dag_add_input(&g, b, "1", a, NULL, NULL);
	dag_add_input(&g, c, "1", b, NULL, NULL);
	dag_add_input(&g, c, "2", a, NULL, NULL);
	herr e;
	assert_int_equal(dag_check_cycles(&e, &g), 0);
	int order[4];
	dag_topo(&g, order);
	int pos[4];
	for (int i = 0; i < 4; i++)
		pos[order[i]] = i;
	assert_true(pos[src] < pos[a]);
	assert_true(pos[a] < pos[b]);
	assert_true(pos[b] < pos[c]);
	assert_true(dag_has_dependents(&g, a));
	assert_false(dag_has_dependents(&g, c));
	assert_int_equal(dag_find(&g, "b"), b);
	assert_int_equal(dag_find(&g, "zz"), -1);
	dag_free(&g);
}

static void test_cycle_named(void **s)
{
	(void)s;
	dag g;
	dag_init(&g);
	int a = stage(&g, "alpha");
	int b = stage(&g, "beta");
	int c = stage(&g, "gamma");
	dag_add_input(&g, a, "1", -1, NULL, "gamma");
	dag_add_input(&g, b, "1", a, NULL, NULL);
	dag_add_input(&g, c, "1", b, NULL, NULL);
	herr e;
	assert_int_equal(dag_resolve(&e, &g), 0);
	assert_int_equal(dag_check_cycles(&e, &g), -1);
	assert_non_null(strstr(e.msg, "cycle"));
	assert_non_null(strstr(e.msg, "alpha"));
	assert_non_null(strstr(e.msg, "beta"));
	assert_non_null(strstr(e.msg, "gamma"));
	dag_free(&g);
}

static void test_bad_refs(void **s)
{
	(void)s;
	dag g;
	dag_init(&g);
	int a = stage(&g, "split");
	dag_add_output(&g, a, "train");
	int b = stage(&g, "train");
	dag_add_input(&g, b, "1", -1, NULL, "splt");
	herr e;
	assert_int_equal(dag_resolve(&e, &g), -1);
	assert_non_null(strstr(e.msg, "no stage named 'splt'"));
	assert_non_null(strstr(e.hint, "split"));
	dag_free(&g);

	dag_init(&g);
	a = stage(&g, "split");
	dag_add_output(&g, a, "train");
	b = stage(&g, "train");
	dag_add_input(&g, b, "1", -1, NULL, "split.tset");
	assert_int_equal(dag_resolve(&e, &g), -1);
	assert_non_null(strstr(e.msg, "no output 'tset'"));
	dag_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topo_order),
		cmocka_unit_test(test_cycle_named),
		cmocka_unit_test(test_bad_refs),
	};
	return cmocka_run_group_tests_name("dag", tests, NULL, NULL);
}
