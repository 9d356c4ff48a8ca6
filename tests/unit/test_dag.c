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

/* The order as it was first defined: repeatedly place the lowest-index node
 * whose inputs are all placed (quadratic, kept as the reference). */
static void topo_reference(const dag *g, int *order)
{
	char *done = calloc(g->n, 1);
	for (size_t k = 0; k < g->n; k++) {
		for (size_t i = 0; i < g->n; i++) {
			if (done[i])
				continue;
			int ready = 1;
			for (size_t j = 0; j < g->nodes[i].nin; j++)
				if (g->nodes[i].in[j].node >= 0 && !done[g->nodes[i].in[j].node])
					ready = 0;
			if (ready) {
				done[i] = 1;
				order[k] = (int)i;
				break;
			}
		}
	}
	free(done);
}

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 8) & 0xffffff;
}

/* Random DAGs whose edges go both up and down the index order (ranks from a
 * random permutation), with repeated edges and isolated nodes. */
static void test_topo_random(void **s)
{
	(void)s;
	unsigned seed = 12;
	for (int round = 0; round < 300; round++) {
		size_t n = 1 + rnd(&seed) % 60;
		dag g;
		dag_init(&g);
		int *rank = malloc(n * sizeof *rank);
		for (size_t i = 0; i < n; i++) {
			char name[32];
			snprintf(name, sizeof name, "s%zu", i);
			stage(&g, name);
			rank[i] = (int)i;
		}
		for (size_t i = n; i > 1; i--) {
			size_t j = rnd(&seed) % i;
			int t = rank[i - 1];
			rank[i - 1] = rank[j];
			rank[j] = t;
		}
		size_t edges = rnd(&seed) % (3 * n);
		for (size_t e = 0; e < edges; e++) {
			int a = (int)(rnd(&seed) % n), b = (int)(rnd(&seed) % n);
			if (rank[a] < rank[b])
				dag_add_input(&g, b, "1", a, NULL, NULL);
		}
		herr err;
		assert_int_equal(dag_check_cycles(&err, &g), 0);
		int *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
		topo_reference(&g, want);
		assert_int_equal(dag_topo(&g, got), n);
		assert_memory_equal(got, want, n * sizeof *got);
		/* the reverse index lists every edge once, consumers ascending */
		dag_rev r;
		dag_rev_build(&g, &r);
		for (size_t i = 0; i < n; i++) {
			size_t count = 0;
			for (size_t c = 0; c < n; c++)
				for (size_t j = 0; j < g.nodes[c].nin; j++)
					count += g.nodes[c].in[j].node == (int)i;
			assert_int_equal(r.off[i + 1] - r.off[i], count);
			for (size_t e = r.off[i]; e + 1 < r.off[i + 1]; e++)
				assert_true(r.to[e] <= r.to[e + 1]);
			assert_int_equal(count > 0, dag_has_dependents(&g, (int)i));
		}
		dag_rev_free(&r);
		free(want);
		free(got);
		free(rank);
		dag_free(&g);
	}
}

static void test_topo_cycle_count(void **s)
{
	(void)s;
	dag g;
	dag_init(&g);
	int a = stage(&g, "a"), b = stage(&g, "b"), c = stage(&g, "c");
	dag_add_input(&g, a, "1", b, NULL, NULL);
	dag_add_input(&g, b, "1", a, NULL, NULL);
	(void)c;
	int order[3];
	assert_int_equal(dag_topo(&g, order), 1); /* only c is placed */
	assert_int_equal(order[0], c);
	dag_free(&g);
}

static void test_heap(void **s)
{
	(void)s;
	dag_heap h = {0};
	unsigned seed = 7;
	int keys[500];
	for (int i = 0; i < 500; i++) {
		keys[i] = (int)(rnd(&seed) % 1000);
		dag_heap_push(&h, keys[i], i);
	}
	int last = -1;
	for (int i = 0; i < 500; i++) {
		int v = dag_heap_pop(&h);
		assert_true(keys[v] >= last);
		last = keys[v];
	}
	assert_int_equal(h.n, 0);
	dag_heap_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topo_order),
		cmocka_unit_test(test_cycle_named),
		cmocka_unit_test(test_bad_refs),
		cmocka_unit_test(test_topo_random),
		cmocka_unit_test(test_topo_cycle_count),
		cmocka_unit_test(test_heap),
	};
	return cmocka_run_group_tests_name("dag", tests, NULL, NULL);
}
