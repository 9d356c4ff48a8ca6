#include "metrics.h"

#include <string.h>

static const char *const paths[METRICS_PATHS] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/predict",
                                                 "/batch_predict", "/health", "/metrics", "other", NULL};
static const int codes[METRICS_CODES] = {200, 400, 401, 404, 405, 413, 499, 500, 503, 504, 0 /* any other */};
static const double bounds[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

void metrics_init(serve_metrics *m)
{
	memset(m, 0, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

static int path_index(const char *path)
{
	int i = 0;
	while (paths[i] && strcmp(paths[i], path) && strcmp(paths[i], "other"))
		i++;
	return i;
}

static int code_index(int code)
{
	int i = 0;
	while (codes[i] && codes[i] != code)
		i++;
	return i;
}

void metrics_request(serve_metrics *m, const char *path, int code, double seconds, int prompt_tokens, int completion_tokens)
{
	int p = path_index(path), c = code_index(code), b = 0;
	while (b < METRICS_BUCKETS && seconds > bounds[b])
		b++;
	pthread_mutex_lock(&m->mu);
	m->req[p][c]++;
	m->prompt_tokens += (unsigned long long)(prompt_tokens > 0 ? prompt_tokens : 0);
	m->completion_tokens += (unsigned long long)(completion_tokens > 0 ? completion_tokens : 0);
	m->hist[b]++;
	m->sum += seconds;
	m->count++;
	pthread_mutex_unlock(&m->mu);
}

void metrics_render(serve_metrics *m, buf *out, int queue, int active, int slots)
{
	pthread_mutex_lock(&m->mu);
	buf_adds(out, "# HELP hone_requests_total HTTP requests answered, by path and status code.\n"
	              "# TYPE hone_requests_total counter\n");
	unsigned long long err[METRICS_CODES] = {0};
	for (int p = 0; paths[p]; p++)
		for (int c = 0; c < METRICS_CODES; c++) {
			if (!m->req[p][c])
				continue;
			if (codes[c] >= 400 || !codes[c])
				err[c] += m->req[p][c];
			if (codes[c])
				buf_printf(out, "hone_requests_total{path=\"%s\",code=\"%d\"} %llu\n", paths[p], codes[c], m->req[p][c]);
			else
				buf_printf(out, "hone_requests_total{path=\"%s\",code=\"other\"} %llu\n", paths[p], m->req[p][c]);
		}
	buf_adds(out, "# HELP hone_errors_total Requests answered with an error (4xx, 5xx), by status code.\n"
	              "# TYPE hone_errors_total counter\n");
	for (int c = 0; c < METRICS_CODES; c++)
		if (codes[c] >= 400 || !codes[c]) {
			if (codes[c])
				buf_printf(out, "hone_errors_total{code=\"%d\"} %llu\n", codes[c], err[c]);
			else
				buf_printf(out, "hone_errors_total{code=\"other\"} %llu\n", err[c]);
		}
	buf_printf(out, "# HELP hone_queue_depth Requests waiting for a slot.\n# TYPE hone_queue_depth gauge\nhone_queue_depth %d\n",
	           queue);
	buf_printf(out, "# HELP hone_active_sequences Requests being decoded or predicted now.\n"
	                "# TYPE hone_active_sequences gauge\nhone_active_sequences %d\n", active);
	buf_printf(out, "# HELP hone_slots KV-cache slots (--parallel).\n# TYPE hone_slots gauge\nhone_slots %d\n", slots);
	buf_printf(out, "# HELP hone_prompt_tokens_total Prompt tokens read.\n# TYPE hone_prompt_tokens_total counter\n"
	                "hone_prompt_tokens_total %llu\n", m->prompt_tokens);
	buf_printf(out, "# HELP hone_tokens_generated_total Tokens generated.\n# TYPE hone_tokens_generated_total counter\n"
	                "hone_tokens_generated_total %llu\n", m->completion_tokens);
	buf_adds(out, "# HELP hone_request_duration_seconds Time from a request's arrival to its last byte.\n"
	              "# TYPE hone_request_duration_seconds histogram\n");
	unsigned long long acc = 0;
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		acc += m->hist[b];
		buf_printf(out, "hone_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bounds[b], acc);
	}
	acc += m->hist[METRICS_BUCKETS];
	buf_printf(out, "hone_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", acc);
	buf_printf(out, "hone_request_duration_seconds_sum %.6f\nhone_request_duration_seconds_count %llu\n", m->sum, m->count);
	pthread_mutex_unlock(&m->mu);
}
