/*
 * runlog — run records in SQLite (`runs.sqlite` in the store): one row per
 * `hone run`, one row per stage of it (ran, cached or failed, with timing,
 * key, object, parameters, input ids and metrics). It answers `hone runs`,
 * `hone diff`, the reasons `hone status` gives, and what `hone gc` keeps.
 *
 * Relies on: sqlite3, util, key.
 * Ownership: a runlog owns its connection; records returned by the readers
 * own their strings and are released with runlog_rec_free.
 *
 * Schema version lives in PRAGMA user_version (1). A database with another
 * version, or one SQLite cannot read, is moved aside to runs.sqlite.bad and
 * started afresh: run history is a record, never an input to a key.
 */
#ifndef HONE_RUNLOG_H
#define HONE_RUNLOG_H

#include <stdio.h>
#include "key.h"
#include "util.h"

typedef struct runlog runlog;

typedef struct runlog_stage {
	char *name, *kind, *kernel;
	int version;
	char key[HKEY_HEX], object[HKEY_HEX];
	char *status;  /* "ran", "cached", "failed" */
	double seconds;
	char *params;  /* hval_encode_lines of the parameters */
	char *inputs;  /* lines "slot<TAB>label<TAB>id" */
	char *metrics; /* JSON object */
} runlog_stage;

typedef struct runlog_run {
	long long id;
	double started;  /* unix seconds */
	double seconds;
	char *pipeline, *args, *status;
	int ran, cached, failed;
	runlog_stage *stages;
	size_t nstages;
} runlog_run;

/* Opens (creating when needed) the run log at path. */
int runlog_open(herr *e, runlog **out, const char *path);
void runlog_close(runlog *rl);

/* Records one finished run with its stages in a single transaction. */
int runlog_add(herr *e, runlog *rl, runlog_run *run);

/* Latest record of stage `name` that finished (ran or cached: not failed,
 * not stopped by an interrupt), in `pipeline` when given; 1 found, 0 not. */
int runlog_last_stage(herr *e, runlog *rl, const char *pipeline, const char *name,
                      runlog_stage *out);
/* Loads run `id` (negative: counted from the latest, -1 = latest). 1 found. */
int runlog_get(herr *e, runlog *rl, long long id, runlog_run *out);
/* The latest `limit` runs (no stages), newest first. */
int runlog_list(herr *e, runlog *rl, int limit, runlog_run **out, size_t *n);
/* Object ids referenced by the latest keep_last runs (0: all runs). */
int runlog_objects(herr *e, runlog *rl, int keep_last, hkey **out, size_t *n);

void runlog_stage_free(runlog_stage *s);
void runlog_run_free(runlog_run *r);

#endif
