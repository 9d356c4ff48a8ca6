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
	char *path;        /* source: absolute path */
} dag_node;

typedef struct dag {
	dag_node *nodes;
	size_t n;
} dag;

void dag_init(dag *g);
void dag_free(dag *g);

/* Adds a source node for an absolute path (deduplicated). Returns index. */
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
 * the one declared first goes first. Requires an acyclic graph. */
void dag_topo(const dag *g, int *order);
/* 1 when some stage reads node i. */
int dag_has_dependents(const dag *g, int i);

#endif
