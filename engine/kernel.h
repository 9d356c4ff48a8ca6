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

typedef struct kctx {
	herr err;                     /* set by kctx_fail */
	const char *stage;            /* stage name, for messages */
	int node;                     /* node index (Lua kernels find their function by it) */
	const struct dsl_opts *dsl;   /* script and overrides (Lua kernels) */
	int threads;                  /* threads a kernel may use (never changes its output) */
	pthread_mutex_t *mu;          /* guards the fields below (shared with the display) */
	double done, total;           /* progress; total 0 = unknown */
	char unit[16];                /* "B", "rows", ... */
	double t0;                    /* start, monotonic seconds */
	buf metrics;                  /* JSON object body: "\"a\":1,\"b\":2" */
	buf log;                      /* lines logged by the kernel */
	char note[96];                /* shown after the progress bar ("epoch 2 loss 0.31") */
	char *scratch;                /* a folder kept across interrupted runs of this stage key
	                                 (checkpoints); made on demand, removed once published */
	char *lineage;                /* JSON array: every upstream stage and source (export) */
} kctx;

typedef int (*kernel_fn)(kctx *ctx, const hval *params, const kinput *in, size_t nin,
                         const char *outdir);

typedef struct kernel_def {
	const char *name;
	int version;
	kernel_fn run;
	/* a file of the output that the engine copies to the stage's `to`
	 * parameter (a path beside the script) after every successful run,
	 * cached or not, when it is missing or differs (export's bundle) */
	const char *materialize;
} kernel_def;

/* The kernel registered under name, or NULL. */
const kernel_def *kernel_find(const char *name);

void kctx_init(kctx *c, const char *stage, pthread_mutex_t *mu);
void kctx_free(kctx *c);
/* Reports progress: done out of total (0 when unknown) in unit. */
void kctx_progress(kctx *c, double done, double total, const char *unit);
void kctx_log(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kctx_metric(kctx *c, const char *name, double v);
void kctx_metric_str(kctx *c, const char *name, const char *v);
/* Sets the note shown after the progress bar. */
void kctx_note(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the error message and returns -1. */
int kctx_fail(kctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The input in slot name ("1", "val", ...), or NULL. */
const kinput *kinput_slot(const kinput *in, size_t nin, const char *name);

/* Opens an output file for writing under outdir (creating folders); rejects
 * absolute paths, "..", and the store's reserved names. */
int kctx_out_path(kctx *c, const char *outdir, const char *rel, char **full);

#endif
