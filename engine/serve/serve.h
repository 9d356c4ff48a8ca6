/*
 * serve — `hone serve MODEL|BUNDLE`: an HTTP server (libmicrohttpd, a
 * thread per connection) for a GPT-2 language model (OpenAI-compatible
 * /v1/completions, /v1/chat/completions with server-sent events, /v1/models)
 * or a classifier bundle (/predict, /batch_predict, hone predict's answers),
 * with /health and /metrics (Prometheus text).
 *
 * Generation goes through the continuous-batching scheduler (serve/sched):
 * --parallel KV-cache slots decoded together, a bounded queue before them.
 * Limits: the queue (503 with Retry-After when full), the body's size (413),
 * a per-request timeout (504), max_tokens capped by the context; malformed
 * JSON or a wrong type is a 400 whose JSON error names the field. Binds to
 * 127.0.0.1 unless --host says otherwise; --api-key (or HONE_API_KEY) wants
 * "Authorization: Bearer KEY" on every path but /health, compared in
 * constant time (401). SIGTERM (or SIGINT) stops accepting connections,
 * lets the requests in flight finish, and exits 0. One line per request on
 * stderr: method, path, status, milliseconds, tokens.
 *
 * Relies on: serve/sched, serve/chat, serve/metrics, ml/textgen, predict,
 * io/json, libmicrohttpd.
 * Ownership: the server owns the model, the scheduler and every
 * connection's state, which it frees when libmicrohttpd reports the
 * request complete.
 */
#ifndef HONE_SERVE_H
#define HONE_SERVE_H

int serve_main(int argc, char **argv);

#include "../opt.h"
extern const opt_verb serve_verb;

#endif
