/*
 * metrics — hone serve's counters in Prometheus' text format (version
 * 0.0.4): requests by path and status code, errors by code, tokens in and
 * out, and a latency histogram; the queue's depth and the active sequences
 * are gauges the caller passes in when rendering.
 *
 * Relies on: util, pthreads.
 * Ownership: one serve_metrics per server; every call takes its lock.
 */
#ifndef HONE_METRICS_H
#define HONE_METRICS_H

#include <pthread.h>
#include "../util.h"

#define METRICS_PATHS 9  /* the routes, and "other" */
#define METRICS_CODES 11 /* the codes the server answers with */
#define METRICS_BUCKETS 12

typedef struct serve_metrics {
	pthread_mutex_t mu;
	unsigned long long req[METRICS_PATHS][METRICS_CODES];
	unsigned long long prompt_tokens, completion_tokens;
	unsigned long long hist[METRICS_BUCKETS + 1]; /* by upper bound, then +Inf */
	double sum;
	unsigned long long count;
} serve_metrics;

void metrics_init(serve_metrics *m);
void metrics_free(serve_metrics *m);
/* One answered request: its path (unknown paths count as "other"), its
 * status code, the seconds it took, and its tokens. */
void metrics_request(serve_metrics *m, const char *path, int code, double seconds, int prompt_tokens, int completion_tokens);
/* The text /metrics answers; queue: requests waiting, active: sequences
 * decoding (or predictions running), slots: their number. */
void metrics_render(serve_metrics *m, buf *out, int queue, int active, int slots);

#endif
