#include "dag.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void dag_init(dag *g) { memset(g, 0, sizeof *g); }

void dag_free(dag *g)
{
	for (size_t i = 0; i < g->n; i++) {
		dag_node *n = &g->nodes[i];
		free(n->name);
		free(n->kind);
		free(n->kernel);
		hval_free(n->params);
		for (size_t j = 0; j < n->nin; j++) {
			free(n->in[j].slot);
			free(n->in[j].output);
			free(n->in[j].ref);
		}
		free(n->in);
		strv_free(n->outputs, n->nout);
		free(n->where);
		free(n->path);
	}
	free(g->nodes);
	free(g->src_slot);
	dag_init(g);
}

static dag_node *new_node(dag *g)
{
	g->nodes = xrealloc(g->nodes, (g->n + 1) * sizeof *g->nodes);
	dag_node *n = &g->nodes[g->n++];
	memset(n, 0, sizeof *n);
	return n;
}

static size_t path_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)h;
}

/* The slot of abspath in the source index: its node's, or the empty one
 * where it goes. */
static size_t src_find(const dag *g, const char *abspath)
{
	size_t m = g->src_cap - 1, i = path_hash(abspath) & m;
	while (g->src_slot[i] && strcmp(g->nodes[g->src_slot[i] - 1].path, abspath))
		i = (i + 1) & m;
	return i;
}

static void src_grow(dag *g)
{
	free(g->src_slot);
	g->src_cap = g->src_cap ? 2 * g->src_cap : 64;
	g->src_slot = xcalloc(g->src_cap, sizeof *g->src_slot);
	for (size_t i = 0; i < g->n; i++)
		if (g->nodes[i].type == NODE_SOURCE)
			g->src_slot[src_find(g, g->nodes[i].path)] = (int)i + 1;
}

int dag_add_source(dag *g, const char *abspath, const char *shown, const char *where)
{
	if (2 * (g->nsrc + 1) > g->src_cap)
		src_grow(g);
	size_t slot = src_find(g, abspath);
	if (g->src_slot[slot])
		return g->src_slot[slot] - 1;
	g->src_slot[slot] = (int)g->n + 1;
	g->nsrc++;
	dag_node *n = new_node(g);
	n->type = NODE_SOURCE;
	n->name = xstrdup(shown);
	n->kind = xstrdup("source");
	n->kernel = xstrdup("source");
	n->version = 1;
	n->params = hval_new(HV_MAP);
	n->where = xstrdup(where ? where : "");
	n->path = xstrdup(abspath);
	return (int)(g->n - 1);
}

int dag_add_stage(dag *g, const char *name, const char *kind, const char *kernel,
                  int version, hval *params, const char *where)
{
	dag_node *n = new_node(g);
	n->type = NODE_STAGE;
	n->name = xstrdup(name);
	n->kind = xstrdup(kind);
	n->kernel = xstrdup(kernel);
	n->version = version;
	n->params = params ? params : hval_new(HV_MAP);
	n->where = xstrdup(where ? where : "");
	return (int)(g->n - 1);
}

void dag_add_input(dag *g, int node, const char *slot, int from, const char *output,
                   const char *ref)
{
	dag_node *n = &g->nodes[node];
	n->in = xrealloc(n->in, (n->nin + 1) * sizeof *n->in);
	dag_input *in = &n->in[n->nin++];
	in->slot = xstrdup(slot);
	in->node = from;
	in->output = output ? xstrdup(output) : NULL;
	in->ref = ref ? xstrdup(ref) : NULL;
}

void dag_add_output(dag *g, int node, const char *name)
{
	dag_node *n = &g->nodes[node];
	n->outputs = xrealloc(n->outputs, (n->nout + 1) * sizeof *n->outputs);
	n->outputs[n->nout++] = xstrdup(name);
}

int dag_find(const dag *g, const char *name)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->nodes[i].type == NODE_STAGE && !strcmp(g->nodes[i].name, name))
			return (int)i;
	return -1;
}

int dag_has_output(const dag_node *n, const char *out)
{
	for (size_t i = 0; i < n->nout; i++)
		if (!strcmp(n->outputs[i], out))
			return 1;
	return 0;
}

static const char *closest_stage(const dag *g, const char *name)
{
	const char *best = NULL;
	size_t bd = (size_t)-1;
	for (size_t i = 0; i < g->n; i++) {
		if (g->nodes[i].type != NODE_STAGE)
			continue;
		size_t d = edit_distance(name, g->nodes[i].name);
		if (d < bd)
			bd = d, best = g->nodes[i].name;
	}
	return bd <= 3 ? best : NULL;
}

int dag_resolve(herr *e, dag *g)
{
	for (size_t i = 0; i < g->n; i++) {
		dag_node *n = &g->nodes[i];
		for (size_t j = 0; j < n->nin; j++) {
			dag_input *in = &n->in[j];
			if (!in->ref)
				continue;
			char *name = xstrdup(in->ref);
			char *dot = strchr(name, '.');
			if (dot)
				*dot++ = 0;
			int to = dag_find(g, name);
			if (to < 0) {
				const char *c = closest_stage(g, name);
				herr_set(e, "%s: stage %s: ref \"%s\": no stage named '%s'", n->where,
				         n->name, in->ref, name);
				if (c)
					herr_hint(e, "did you mean '%s'?", c);
				free(name);
				return -1;
			}
			if (dot && !dag_has_output(&g->nodes[to], dot)) {
				herr_set(e, "%s: stage %s: ref \"%s\": stage '%s' has no output '%s'",
				         n->where, n->name, in->ref, name, dot);
				free(name);
				return -1;
			}
			in->node = to;
			free(in->output);
			in->output = dot ? xstrdup(dot) : NULL;
			free(name);
		}
	}
	return 0;
}

/* Iterative-enough DFS: pipelines are small, recursion depth = path length. */
static int dfs(herr *e, const dag *g, int u, int *state, int *stack, int depth)
{
	state[u] = 1;
	stack[depth] = u;
	const dag_node *n = &g->nodes[u];
	for (size_t j = 0; j < n->nin; j++) {
		int v = n->in[j].node;
		if (v < 0)
			continue;
		if (state[v] == 1) {
			/* cycle: v ... u (stack order is consumer -> producer) */
			buf b;
			buf_init(&b);
			int start = depth;
			while (start > 0 && stack[start] != v)
				start--;
			/* print in data-flow order: producer -> consumer */
			for (int k = depth; k >= start; k--)
				buf_printf(&b, "%s -> ", g->nodes[stack[k]].name);
			buf_adds(&b, g->nodes[u].name);
			herr_set(e, "%s: cycle in the pipeline: %s", g->nodes[u].where, b.p);
			buf_free(&b);
			return -1;
		}
		if (state[v] == 0 && dfs(e, g, v, state, stack, depth + 1) != 0)
			return -1;
	}
	state[u] = 2;
	return 0;
}

int dag_check_cycles(herr *e, const dag *g)
{
	int *state = xcalloc(g->n, sizeof *state);
	int *stack = xcalloc(g->n + 1, sizeof *stack);
	int rc = 0;
	for (size_t i = 0; i < g->n && rc == 0; i++)
		if (state[i] == 0)
			rc = dfs(e, g, (int)i, state, stack, 0);
	free(state);
	free(stack);
	return rc;
}

void dag_rev_build(const dag *g, dag_rev *r)
{
	r->off = xcalloc(g->n + 1, sizeof *r->off);
	size_t e = 0;
	for (size_t c = 0; c < g->n; c++)
		for (size_t j = 0; j < g->nodes[c].nin; j++)
			if (g->nodes[c].in[j].node >= 0) {
				r->off[g->nodes[c].in[j].node + 1]++;
				e++;
			}
	for (size_t i = 0; i < g->n; i++)
		r->off[i + 1] += r->off[i];
	r->to = xmalloc((e ? e : 1) * sizeof *r->to);
	size_t *fill = xmalloc((g->n ? g->n : 1) * sizeof *fill);
	memcpy(fill, r->off, g->n * sizeof *fill);
	/* consumers in increasing index, so walks over them are deterministic */
	for (size_t c = 0; c < g->n; c++)
		for (size_t j = 0; j < g->nodes[c].nin; j++)
			if (g->nodes[c].in[j].node >= 0)
				r->to[fill[g->nodes[c].in[j].node]++] = (int)c;
	free(fill);
}

void dag_rev_free(dag_rev *r)
{
	free(r->off);
	free(r->to);
	r->off = NULL;
	r->to = NULL;
}

void dag_heap_push(dag_heap *h, int key, int v)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->e = xrealloc(h->e, h->cap * sizeof *h->e);
	}
	size_t i = h->n++;
	while (i > 0 && h->e[(i - 1) / 2].key > key) {
		h->e[i] = h->e[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->e[i].key = key;
	h->e[i].v = v;
}

int dag_heap_pop(dag_heap *h)
{
	int v = h->e[0].v;
	dag_heap_ent last = h->e[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->e[c + 1].key < h->e[c].key)
			c++;
		if (h->e[c].key >= last.key)
			break;
		h->e[i] = h->e[c];
		i = c;
	}
	if (h->n)
		h->e[i] = last;
	return v;
}

void dag_heap_free(dag_heap *h)
{
	free(h->e);
	memset(h, 0, sizeof *h);
}

/* Kahn's algorithm; the ready set is a heap on the node index, so that among
 * ready nodes the one declared first is placed first. */
size_t dag_topo(const dag *g, int *order)
{
	dag_rev r;
	dag_rev_build(g, &r);
	int *missing = xcalloc(g->n ? g->n : 1, sizeof *missing);
	for (size_t i = 0; i < g->n; i++)
		for (size_t j = 0; j < g->nodes[i].nin; j++)
			if (g->nodes[i].in[j].node >= 0)
				missing[i]++;
	dag_heap h = {0};
	for (size_t i = 0; i < g->n; i++)
		if (!missing[i])
			dag_heap_push(&h, (int)i, (int)i);
	size_t k = 0;
	while (h.n) {
		int u = dag_heap_pop(&h);
		order[k++] = u;
		for (size_t e = r.off[u]; e < r.off[u + 1]; e++)
			if (--missing[r.to[e]] == 0)
				dag_heap_push(&h, r.to[e], r.to[e]);
	}
	dag_heap_free(&h);
	free(missing);
	dag_rev_free(&r);
	return k; /* < g->n on a cycle; callers check first */
}

int dag_has_dependents(const dag *g, int i)
{
	for (size_t c = 0; c < g->n; c++)
		for (size_t j = 0; j < g->nodes[c].nin; j++)
			if (g->nodes[c].in[j].node == i)
				return 1;
	return 0;
}
