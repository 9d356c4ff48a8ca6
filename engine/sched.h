/*
 * sched — runs a pipeline: walks the dag in dependency order, identifies
 * sources by content (through the stat cache), computes stage keys, reuses
 * cached objects, runs the stale stages (up to -j at once, each on its own
 * thread), publishes their outputs, shows progress, and records the run.
 * Also the read-only passes over the same plan: --dry-run, `hone status`
 * (with the reason each stale stage is stale) and the lookups of `hone show`.
 *
 * Relies on: dag, key, store, statcache, runlog, kernel, dsl.
 * Ownership: an engine owns everything it points to; engine_free releases it.
 */
#ifndef HONE_SCHED_H
#define HONE_SCHED_H

#include <stdio.h>
#include "dag.h"
#include "dsl.h"
#include "key.h"
#include "runlog.h"
#include "statcache.h"
#include "store.h"

typedef struct node_state {
	int state;       /* 0 pending, 1 running, 2 done, 3 failed, 4 skipped, 5 unknown (plan) */
	int known;       /* id is known */
	int cached;      /* reused from the cache */
	hkey id;         /* content id of the node's whole output */
	hkey key;        /* stage key */
	int has_key;
	double seconds;
	char *metrics;   /* JSON object */
	uint64_t bytes;  /* sources: size */
	char *error;
	int stopped;     /* was running when the run was interrupted */
} node_state;

typedef struct engine {
	herr err;
	dsl_opts dsl;
	dag g;
	store st;
	char *cache_root;
	statcache *sc;
	runlog *rl;
	int jobs;
	int threads;     /* per kernel (--threads, $HONE_THREADS; default: all cores) */
	int dry_run;
	char **force;
	size_t nforce;
	int quiet;
	int color;
	node_state *ns;
	FILE *out;       /* results (stdout) */
	FILE *msg;       /* progress (stderr) */
	int tty;         /* msg is a terminal: redraw a progress line */
	char *args;      /* command line, for the run record */
	long long run_id;
	int interrupted; /* sched_run: the signal that stopped the run, else 0 */
} engine;

void engine_init(engine *en);
void engine_free(engine *en);
/* Opens the store (creating it when create) and the stat cache. */
int engine_open_store(engine *en, int create);
/* Opens the run log (creating it). */
int engine_open_runlog(engine *en);

/* Runs (or with dry_run, plans) the loaded pipeline. Returns 0 when every
 * stage succeeded, -1 otherwise (en->err says what failed first).
 * While it runs, SIGINT and SIGTERM stop it: running stages are asked to
 * stop (kctx.stop), nothing more starts, the run is recorded as
 * "interrupted", "hone: interrupted: ..." goes to en->msg, and it returns
 * -1 with en->interrupted set to the signal. A second signal ends the
 * process at once (default action). */
int sched_run(engine *en);

/* Computes, without running anything, which stages are up to date; fills
 * en->ns (state 2 = up to date, 5 = would run). */
int sched_plan(engine *en);

/* Prints `hone status`: every stage, up to date or stale and why. */
int sched_status(engine *en, FILE *out, int json);

/* Label of input j of node i ("data/a.txt", "split.train"). Caller frees. */
char *sched_input_label(const engine *en, int i, size_t j);

/* Path of node i's output (or of its named output) when known. Caller frees. */
char *sched_output_path(const engine *en, int i, const char *output);

#endif
