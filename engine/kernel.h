/*
 * kernel — the contract between the scheduler and a stage's native code.
 *
 * A kernel gets its decoded parameters, read-only input paths (a file, or a
 * folder for stage outputs and folder sources), an empty output directory,
 * and a context for progress, logging, metrics and errors. It never sees Lua
 * or the store's layout, so it can be tested on its own.
 *
 * Relies on: util, hval.
 * Ownership: the scheduler owns the context and everything passed in; a
 * kernel owns only what it writes under outdir.
 */
#ifndef HONE_KERNEL_H
#define HONE_KERNEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "hval.h"
#include "util.h"

typedef struct kinput {
	const char *slot;  /* "1", "2", ... or the parameter name */
	const char *label; /* what the user calls it: "data/a.txt", "split.train" */
	const char *path;  /* absolute path: a file or a folder */
	int is_dir;
} kinput;

struct dsl_opts;
struct dsl_pool;

typedef struct kctx kctx;

struct kctx {
	herr err;                     /* set by kctx_fail */
	const char *stage;            /* stage name, for messages */
	int node;                     /* node index (Lua kernels find their function by it) */
	const struct dsl_opts *dsl;   /* script and overrides (Lua kernels) */
	struct dsl_pool *lua;         /* the run's Lua states (Lua kernels); may be NULL */
	atomic_int stop;              /* set by the scheduler: 1 interrupted, 2 timed out */
	int threads;                  /* threads a kernel may use (never changes its output) */
	pthread_mutex_t *mu;          /* guards the fields below (shared with the display) */
	double done, total;           /* progress; total 0 = unknown */
	double done0, t_from;         /* done when this process began (a resumed stage), and when
	                                 that was said: rate and ETA count from there */
	char unit[16];                /* "B", "rows", ... */
	double t0;                    /* start, monotonic seconds */
	buf metrics;                  /* JSON object body: "\"a\":1,\"b\":2" */
	buf log;                      /* lines logged by the kernel */
	char note[96];                /* shown after the progress bar ("epoch 2 loss 0.31") */
	char *scratch;                /* a folder kept across interrupted runs of this stage key
	                                 (checkpoints); made on demand, removed once published */
	char *lineage;                /* made on demand by kctx_lineage */
	char *(*lineage_fn)(struct kctx *c);
	void *lineage_ud;             /* for lineage_fn (the scheduler's) */
};

typedef int (*kernel_fn)(kctx *ctx, const hval *params, const kinput *in, size_t nin,
                         const char *outdir);

typedef struct kernel_def {
	const char *name;
	int version;
	kernel_fn run;
	/* a file of the output that the engine copies to the stage's `to`
	 * parameter (a path beside the script) after every successful run,
	 * cached or not, when it is missing or differs (export's bundle);
	 * "a|b": the first of them that the output holds */
	const char *materialize;
} kernel_def;

/* The kernel registered under name, or NULL. */
const kernel_def *kernel_find(const char *name);

void kctx_init(kctx *c, const char *stage, pthread_mutex_t *mu);
void kctx_free(kctx *c);
/* Reports progress: done out of total (0 when unknown) in unit. Returns 0,
 * or -1 when the stage is to stop (timed out or interrupted: kctx_stopping);
 * a kernel that checks it returns -1 then, with the message set. */
int kctx_progress(kctx *c, double done, double total, const char *unit);
/* Says that done units were finished before this process (a stage resumed
 * from a checkpoint), so that the rate and ETA shown count only the rest. */
void kctx_progress_from(kctx *c, double done);
/* The rate (units per second) and the seconds left (-1 when unknown) at
 * time now (now_seconds), counting only the progress made since this
 * process began the stage (kctx_progress_from). Call with mu held. */
void kctx_rate(const kctx *c, double now, double *per_s, double *eta_s);
/* -1 (and the message set) when the scheduler asks the stage to stop, else 0.
 * For kernels with long loops that report progress rarely. */
int kctx_stopping(kctx *c);
void kctx_log(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kctx_metric(kctx *c, const char *name, double v);
void kctx_metric_str(kctx *c, const char *name, const char *v);
/* Sets the note shown after the progress bar. */
void kctx_note(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the error message and returns -1. */
int kctx_fail(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON array of every stage and source upstream of this stage, and itself:
 * kinds, kernel versions, parameters, keys, content ids (export's
 * lineage.json). Made on the first call; NULL when not known. */
const char *kctx_lineage(kctx *c);

/* The input in slot name ("1", "val", ...), or NULL. */
const kinput *kinput_slot(const kinput *in, size_t nin, const char *name);

/* Opens an output file for writing under outdir (creating folders); rejects
 * absolute paths, "..", and the store's reserved names. */
int kctx_out_path(kctx *c, const char *outdir, const char *rel, char **full);

#endif
