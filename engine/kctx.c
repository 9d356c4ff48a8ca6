/* kctx — the kernel context: progress, log, metrics and errors (kernel.h). */
#include "kernel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kctx_init(kctx *c, const char *stage, pthread_mutex_t *mu)
{
	memset(c, 0, sizeof *c);
	c->stage = stage;
	c->mu = mu;
	c->node = -1;
	c->threads = 1;
	c->t0 = now_seconds();
	atomic_init(&c->stop, 0);
	buf_init(&c->metrics);
	buf_init(&c->log);
}

void kctx_free(kctx *c)
{
	free(c->scratch);
	free(c->lineage);
	buf_free(&c->metrics);
	buf_free(&c->log);
}

static void lock(kctx *c) { if (c->mu) pthread_mutex_lock(c->mu); }
static void unlock(kctx *c) { if (c->mu) pthread_mutex_unlock(c->mu); }

int kctx_progress(kctx *c, double done, double total, const char *unit)
{
	lock(c);
	c->done = done;
	c->total = total;
	snprintf(c->unit, sizeof c->unit, "%s", unit ? unit : "");
	unlock(c);
	return kctx_stopping(c);
}

void kctx_progress_from(kctx *c, double done)
{
	lock(c);
	c->done0 = done;
	c->t_from = now_seconds();
	unlock(c);
}

void kctx_rate(const kctx *c, double now, double *per_s, double *eta_s)
{
	double from = c->t_from > 0 ? c->t_from : c->t0;
	double did = c->done - c->done0, el = now - from;
	*per_s = did > 0 && el > 0 ? did / el : 0;
	*eta_s = *per_s > 0 && c->total > 0 ? (c->total > c->done ? c->total - c->done : 0) / *per_s : -1;
}

int kctx_stopping(kctx *c)
{
	int why = atomic_load(&c->stop);
	if (!why)
		return 0;
	return kctx_fail(c, "%s", why == 2 ? "timed out" : "interrupted");
}

void kctx_log(kctx *c, const char *fmt, ...)
{
	va_list ap;
	lock(c);
	va_start(ap, fmt);
	buf_vprintf(&c->log, fmt, ap);
	va_end(ap);
	buf_addc(&c->log, '\n');
	unlock(c);
}

void kctx_metric(kctx *c, const char *name, double v)
{
	char num[40];
	if (isfinite(v)) {
		fmt_double(num, v);
		if (v == floor(v) && fabs(v) < 1e15)
			snprintf(num, sizeof num, "%.0f", v);
	} else {
		snprintf(num, sizeof num, "null");
	}
	lock(c);
	if (c->metrics.len)
		buf_addc(&c->metrics, ',');
	buf_json_str(&c->metrics, name);
	buf_printf(&c->metrics, ":%s", num);
	unlock(c);
}

void kctx_metric_str(kctx *c, const char *name, const char *v)
{
	lock(c);
	if (c->metrics.len)
		buf_addc(&c->metrics, ',');
	buf_json_str(&c->metrics, name);
	buf_addc(&c->metrics, ':');
	buf_json_str(&c->metrics, v);
	unlock(c);
}

int kctx_fail(kctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
	va_end(ap);
	return -1;
}

int kctx_out_path(kctx *c, const char *outdir, const char *rel, char **full)
{
	*full = NULL;
	int bad = !path_safe_relative(rel) || !strcmp(rel, ".hone-manifest");
	if (bad)
		return kctx_fail(c, "output name \"%s\": use a relative path without \".\" or \"..\" parts", rel);
	char *p = path_join(outdir, rel);
	char *dir = path_dirname(p);
	int rc = fs_mkdirs(&c->err, dir);
	free(dir);
	if (rc) {
		free(p);
		return -1;
	}
	*full = p;
	return 0;
}

void kctx_note(kctx *c, const char *fmt, ...)
{
	va_list ap;
	lock(c);
	va_start(ap, fmt);
	vsnprintf(c->note, sizeof c->note, fmt, ap);
	va_end(ap);
	unlock(c);
}

const char *kctx_lineage(kctx *c)
{
	if (!c->lineage && c->lineage_fn)
		c->lineage = c->lineage_fn(c);
	return c->lineage;
}

const kinput *kinput_slot(const kinput *in, size_t nin, const char *name)
{
	for (size_t i = 0; i < nin; i++)
		if (!strcmp(in[i].slot, name))
			return &in[i];
	return NULL;
}
