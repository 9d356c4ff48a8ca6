/*
 * dsl — hosts the Lua 5.4 state: loads lua/hone.lua (the runtime) and every
 * stage spec in stdlib/, runs the pipeline script sandboxed, and turns its
 * declarations into a dag. Also runs Lua-bodied stages (custom `stage`,
 * `map`, `filter`) on states that evaluated the (deterministic) script once
 * and are kept for the run (a dsl_pool): one state per stage running at
 * once, each reused by stage after stage. A reused state is as good as a
 * fresh one: math.random's generator is put back as the script left it,
 * and a stage whose function (or anything it closes over) no longer has the
 * digest its key was made with gets a fresh state. A body runs on an
 * instruction budget and stops when the scheduler sets kctx.stop.
 *
 * Relies on: Lua 5.4, util, hval, dag, kernel.
 * Ownership: a dsl_opts is the caller's; the dag filled by dsl_load is the
 * caller's to free. No Lua value or error escapes this module: every call
 * into Lua is protected and failures come back as herr messages.
 */
#ifndef HONE_DSL_H
#define HONE_DSL_H

#include "dag.h"
#include "kernel.h"
#include "util.h"

typedef struct dsl_override {
	char *stage, *param, *value;
} dsl_override;

typedef struct dsl_opts {
	char *script;      /* as the user gave it, for messages: "examples/x/pipeline.lua" */
	char *script_abs;  /* absolute path */
	char *base;        /* folder of the script; relative inputs resolve here */
	char *root;        /* the project root: sources are named relative to it */
	char *home;        /* folder holding lua/ and stdlib/ */
	dsl_override *ov;  /* --set overrides */
	size_t nov;
	char *device;      /* --device: the default of every stage's device parameter (NULL: none) */
} dsl_opts;

/* Parses "stage.param=value" and appends it; -1 with a message if malformed. */
int dsl_add_override(herr *e, dsl_opts *o, const char *arg);
void dsl_opts_free(dsl_opts *o);

/* Runs the script and fills g. Errors name the script file and line. */
int dsl_load(herr *e, const dsl_opts *o, dag *g);

/* The Lua states of one run, shared by its Lua stages (kctx.lua); safe to
 * use from several threads. Without one, every Lua stage makes its own. */
typedef struct dsl_pool dsl_pool;
dsl_pool *dsl_pool_new(void);
void dsl_pool_free(dsl_pool *p);

#endif
