#include "runlog.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct runlog {
	sqlite3 *db;
};

static const char *schema =
	"CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, started REAL, seconds REAL,"
	" pipeline TEXT, args TEXT, status TEXT, ran INT, cached INT, failed INT);"
	"CREATE TABLE IF NOT EXISTS stages(run INT, pos INT, name TEXT, kind TEXT, kernel TEXT,"
	" version INT, key TEXT, object TEXT, status TEXT, seconds REAL, params TEXT,"
	" inputs TEXT, metrics TEXT);"
	"CREATE INDEX IF NOT EXISTS stages_by_name ON stages(name, run);"
	"PRAGMA user_version=1;";

static int db_err(herr *e, sqlite3 *db, const char *what)
{
	return herr_set(e, "run log: %s: %s", what, sqlite3_errmsg(db));
}

/* try_open: 0 ok; -1 damaged or of another version (move aside); -2 any
 * other failure (I/O, permissions, locks: report, never move aside). */
static int try_open(sqlite3 **db, const char *path, char **why)
{
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		*why = xstrdup(sqlite3_errmsg(*db));
		return -2;
	}
	sqlite3_busy_timeout(*db, 10000);

	sqlite3_stmt *st;
	int ver = -1, rc = sqlite3_prepare_v2(*db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		if ((rc = sqlite3_step(st)) == SQLITE_ROW)
			ver = sqlite3_column_int(st, 0), rc = SQLITE_OK;
		sqlite3_finalize(st);
	}
	int damaged = rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
	if (ver != 0 && ver != 1) {
		*why = damaged || ver > 1 ? xasprintf(ver > 1 ? "unknown schema version %d" : "not a run log (damaged)", ver)
		                          : xstrdup(sqlite3_errmsg(*db));
		return damaged || ver > 1 ? -1 : -2;
	}
	char *msg = NULL;
	if ((rc = sqlite3_exec(*db, "PRAGMA journal_mode=TRUNCATE; PRAGMA synchronous=OFF;", NULL, NULL, &msg)) != SQLITE_OK ||
	    (ver == 0 && (rc = sqlite3_exec(*db, schema, NULL, NULL, &msg)) != SQLITE_OK)) {
		*why = xstrdup(msg ? msg : "cannot initialize");
		sqlite3_free(msg);
		return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT ? -1 : -2;
	}
	return 0;
}

int runlog_open(herr *e, runlog **out, const char *path)
{
	runlog *rl = xcalloc(1, sizeof *rl);
	char *why = NULL;
	int rc = try_open(&rl->db, path, &why);
	if (rc == -2) {
		herr_set(e, "%s: cannot open the run log: %s", path, why);
		free(why);
		sqlite3_close(rl->db);
		free(rl);
		return -1;
	}
	if (rc != 0) {
		sqlite3_close(rl->db);
		char *bad = xasprintf("%s.bad", path);
		fprintf(stderr, "hone: warning: %s: %s; moved aside to %s, starting a new run log\n",
		        path, why, bad);
		free(why);
		why = NULL;
		rename(path, bad);
		free(bad);
		char *w = xasprintf("%s-wal", path), *s = xasprintf("%s-shm", path);
		unlink(w);
		unlink(s);
		free(w);
		free(s);
		if (try_open(&rl->db, path, &why) != 0) {
			herr_set(e, "%s: cannot open run log: %s", path, why);
			free(why);
			sqlite3_close(rl->db);
			free(rl);
			return -1;
		}
	}
	*out = rl;
	return 0;
}

void runlog_close(runlog *rl)
{
	if (!rl)
		return;
	sqlite3_close(rl->db);
	free(rl);
}

int runlog_add(herr *e, runlog *rl, runlog_run *run)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_exec(rl->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "begin");
	int rc = SQLITE_OK;
	rc = sqlite3_prepare_v2(rl->db,
		"INSERT INTO runs(started,seconds,pipeline,args,status,ran,cached,failed)"
		" VALUES(?,?,?,?,?,?,?,?)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_double(st, 1, run->started);
		sqlite3_bind_double(st, 2, run->seconds);
		sqlite3_bind_text(st, 3, run->pipeline, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, run->args ? run->args : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, run->status, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, run->ran);
		sqlite3_bind_int(st, 7, run->cached);
		sqlite3_bind_int(st, 8, run->failed);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
		st = NULL;
	}
	run->id = sqlite3_last_insert_rowid(rl->db);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(rl->db,
			"INSERT INTO stages(run,pos,name,kind,kernel,version,key,object,status,seconds,"
			"params,inputs,metrics) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < run->nstages; i++) {
		runlog_stage *s = &run->stages[i];
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, run->id);
		sqlite3_bind_int(st, 2, (int)i);
		sqlite3_bind_text(st, 3, s->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, s->kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, s->kernel, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, s->version);
		sqlite3_bind_text(st, 7, s->key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, s->object, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 9, s->status, -1, SQLITE_STATIC);
		sqlite3_bind_double(st, 10, s->seconds);
		sqlite3_bind_text(st, 11, s->params ? s->params : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 12, s->inputs ? s->inputs : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 13, s->metrics ? s->metrics : "{}", -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		db_err(e, rl->db, "write");
		sqlite3_exec(rl->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (sqlite3_exec(rl->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "commit");
	return 0;
}

static char *col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return xstrdup(t ? (const char *)t : "");
}

static void read_stage(sqlite3_stmt *st, runlog_stage *s)
{
	/* columns: name kind kernel version key object status seconds params inputs metrics */
	s->name = col(st, 0);
	s->kind = col(st, 1);
	s->kernel = col(st, 2);
	s->version = sqlite3_column_int(st, 3);
	char *k = col(st, 4), *o = col(st, 5);
	snprintf(s->key, sizeof s->key, "%s", k);
	snprintf(s->object, sizeof s->object, "%s", o);
	free(k);
	free(o);
	s->status = col(st, 6);
	s->seconds = sqlite3_column_double(st, 7);
	s->params = col(st, 8);
	s->inputs = col(st, 9);
	s->metrics = col(st, 10);
}

#define STAGE_COLS "name,kind,kernel,version,key,object,status,seconds,params,inputs,metrics"

int runlog_last_stage(herr *e, runlog *rl, const char *pipeline, const char *name,
                      runlog_stage *out)
{
	sqlite3_stmt *st;
	const char *sql = pipeline
		? "SELECT " STAGE_COLS " FROM stages WHERE name=?1 AND status NOT IN ('failed','stopped') AND run IN"
		  " (SELECT id FROM runs WHERE pipeline=?2) ORDER BY run DESC LIMIT 1"
		: "SELECT " STAGE_COLS " FROM stages WHERE name=?1 AND status NOT IN ('failed','stopped')"
		  " ORDER BY run DESC LIMIT 1";
	if (sqlite3_prepare_v2(rl->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "query");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (pipeline)
		sqlite3_bind_text(st, 2, pipeline, -1, SQLITE_STATIC);
	int found = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		read_stage(st, out);
		found = 1;
	}
	sqlite3_finalize(st);
	return found;
}

static void read_run(sqlite3_stmt *st, runlog_run *r)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	r->started = sqlite3_column_double(st, 1);
	r->seconds = sqlite3_column_double(st, 2);
	r->pipeline = col(st, 3);
	r->args = col(st, 4);
	r->status = col(st, 5);
	r->ran = sqlite3_column_int(st, 6);
	r->cached = sqlite3_column_int(st, 7);
	r->failed = sqlite3_column_int(st, 8);
}

#define RUN_COLS "id,started,seconds,pipeline,args,status,ran,cached,failed"

int runlog_get(herr *e, runlog *rl, long long id, runlog_run *out)
{
	sqlite3_stmt *st;
	const char *sql = id >= 0 ? "SELECT " RUN_COLS " FROM runs WHERE id=?"
	                          : "SELECT " RUN_COLS " FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?";
	if (sqlite3_prepare_v2(rl->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "query");
	sqlite3_bind_int64(st, 1, id >= 0 ? id : -id - 1);
	int found = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		read_run(st, out);
		found = 1;
	}
	sqlite3_finalize(st);
	if (!found)
		return 0;
	if (sqlite3_prepare_v2(rl->db, "SELECT " STAGE_COLS " FROM stages WHERE run=? ORDER BY pos",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "query");
	sqlite3_bind_int64(st, 1, out->id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		out->stages = xrealloc(out->stages, (out->nstages + 1) * sizeof *out->stages);
		read_stage(st, &out->stages[out->nstages++]);
	}
	sqlite3_finalize(st);
	return 1;
}

int runlog_list(herr *e, runlog *rl, int limit, runlog_run **out, size_t *n)
{
	sqlite3_stmt *st;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(rl->db, "SELECT " RUN_COLS " FROM runs ORDER BY id DESC LIMIT ?", -1,
	                       &st, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "query");
	sqlite3_bind_int(st, 1, limit);
	while (sqlite3_step(st) == SQLITE_ROW) {
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		read_run(st, &(*out)[(*n)++]);
	}
	sqlite3_finalize(st);
	return 0;
}

int runlog_objects(herr *e, runlog *rl, int keep_last, hkey **out, size_t *n)
{
	sqlite3_stmt *st;
	*out = NULL;
	*n = 0;
	const char *sql = keep_last > 0
		? "SELECT DISTINCT object FROM stages WHERE run IN"
		  " (SELECT id FROM runs ORDER BY id DESC LIMIT ?)"
		: "SELECT DISTINCT object FROM stages";
	if (sqlite3_prepare_v2(rl->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(e, rl->db, "query");
	if (keep_last > 0)
		sqlite3_bind_int(st, 1, keep_last);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		hkey k;
		if (t && hkey_parse(&k, (const char *)t) == 0) {
			*out = xrealloc(*out, (*n + 1) * sizeof **out);
			(*out)[(*n)++] = k;
		}
	}
	sqlite3_finalize(st);
	return 0;
}

void runlog_stage_free(runlog_stage *s)
{
	free(s->name);
	free(s->kind);
	free(s->kernel);
	free(s->status);
	free(s->params);
	free(s->inputs);
	free(s->metrics);
	memset(s, 0, sizeof *s);
}

void runlog_run_free(runlog_run *r)
{
	for (size_t i = 0; i < r->nstages; i++)
		runlog_stage_free(&r->stages[i]);
	free(r->stages);
	free(r->pipeline);
	free(r->args);
	free(r->status);
	memset(r, 0, sizeof *r);
}
