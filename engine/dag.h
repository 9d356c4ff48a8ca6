/*
 * dag — the pipeline graph: source nodes (files or folders the script
 * declared) and stage nodes, joined by inputs. Provides name lookup, forward
 * references, the cycle check (naming the stages on the cycle) and a
 * deterministic topological order.
 *
 * Relies on: util, hval.
 * Ownership: the dag owns every node, string and parameter tree in it;
 * dag_free releases them all.
 */
#ifndef HONE_DAG_H
#define HONE_DAG_H

#include <stddef.h>
#include "hval.h"
#include "util.h"

typedef enum { NODE_SOURCE, NODE_STAGE } node_type;

typedef struct dag_input {
	char *slot;   /* "1", "2", ... for positional inputs, else the name */
	int node;     /* producing node, or -1 until a forward ref resolves */
	char *output; /* named output of that node, NULL for the whole object */
	char *ref;    /* "stage[.output]" for forward references, else NULL */
} dag_input;

typedef struct dag_node {
	node_type type;
	char *name;        /* stage: "train", "train_2"; source: path as shown */
	char *kind;        /* stage kind ("train", "stage", "map"); "source" */
	char *kernel;      /* kernel that runs it ("lua", "concat", ...) */
	int version;       /* kernel version */
	hval *params;      /* HV_MAP, keys sorted */
	dag_input *in;
	size_t nin;
	char **outputs;    /* declared named outputs (may be 0) */
	size_t nout;
	char *where;       /* "pipeline.lua:12" of the declaration */
	double timeout;    /* seconds the stage may run, 0 = no limit (not in params: not keyed) */
	long budget;       /* Lua body: millions of instructions, 0 = the default (not keyed) */
	char *path;        /* source: absolute path */
} dag_node;

typedef struct dag {
	dag_node *nodes;
	size_t n;
	int *src_slot;     /* open-addressing index of the sources by path: node + 1, 0 empty */
	size_t src_cap;    /* a power of two, or 0 */
	size_t nsrc;
} dag;

void dag_init(dag *g);
void dag_free(dag *g);

/* Adds a source node for an absolute path (deduplicated, in O(1)). Returns index. */
int dag_add_source(dag *g, const char *abspath, const char *shown, const char *where);
/* Adds a stage node; takes ownership of params. Returns index. */
int dag_add_stage(dag *g, const char *name, const char *kind, const char *kernel,
                  int version, hval *params, const char *where);
void dag_add_input(dag *g, int node, const char *slot, int from, const char *output,
                   const char *ref);
void dag_add_output(dag *g, int node, const char *name);

/* Index of the stage named name, or -1. */
int dag_find(const dag *g, const char *name);
/* 1 when node declares output `out`. */
int dag_has_output(const dag_node *n, const char *out);

/* Resolves forward references; errors name the referring stage. */
int dag_resolve(herr *e, dag *g);
/* Fails with "cycle: a -> b -> a" when the graph has a cycle. */
int dag_check_cycles(herr *e, const dag *g);
/* Fills order (g->n entries) with a topological order: among ready nodes,
 * the one declared first goes first. O((nodes + edges) log nodes). Returns
 * the number of nodes placed: g->n, or fewer when the graph has a cycle. */
size_t dag_topo(const dag *g, int *order);
/* 1 when some stage reads node i. O(edges): for many queries build a
 * dag_rev once. */
int dag_has_dependents(const dag *g, int i);

/* The reverse index, built in O(nodes + edges): the stages reading node i
 * are to[off[i]] .. to[off[i + 1] - 1], in increasing index, once per input
 * edge (a stage reading i twice appears twice). */
typedef struct dag_rev {
	size_t *off; /* n + 1 offsets into to */
	int *to;     /* consumer node of every edge */
} dag_rev;

void dag_rev_build(const dag *g, dag_rev *r);
void dag_rev_free(dag_rev *r);

/* A binary min-heap of (key, node): the ready sets of dag_topo and of the
 * scheduler (keyed by index or by topological position). Zero-initialize;
 * dag_heap_pop requires n > 0. */
typedef struct dag_heap_ent {
	int key, v;
} dag_heap_ent;

typedef struct dag_heap {
	dag_heap_ent *e;
	size_t n, cap;
} dag_heap;

void dag_heap_push(dag_heap *h, int key, int v);
/* Removes and returns the node with the smallest key. */
int dag_heap_pop(dag_heap *h);
void dag_heap_free(dag_heap *h);

#endif
