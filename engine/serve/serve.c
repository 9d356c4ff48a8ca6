#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../io/bpe.h"
#include "../io/gguf.h"
#include "../io/json.h"
#include "../ml/blas.h"
#include "../ml/bundle.h"
#include "../ml/textgen.h"
#include "../models/gpt2.h"
#include "../predict.h"
#include "../ml/chat.h"
#include "metrics.h"
#include "sched.h"

static const opt_spec serve_opts[] = {
	{"host", 0, OPT_STR, 0, 0, "ADDR", "the address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)", 0},
	{"port", 'p', OPT_INT, 0, 65535, "N", "the TCP port (default 8080; 0: a free one, printed at start)", 0},
	{"parallel", 0, OPT_INT, 1, 256, "N", "sequences decoded together, each in its own KV-cache slot (default 4)", 0},
	{"queue", 0, OPT_INT, 0, 1 << 20, "N", "requests waiting for a slot before 503s (default 64)", 0},
	{"threads", 0, OPT_INT, 1, 256, "N", "threads for the batched products (default: the cores)", 0},
	{"device", 0, OPT_STR, 0, 0, "cpu|cuda",
	 "where a language model runs (default cpu; cuda: its weights and KV caches on the GPU, a decode step per sequence)",
	 0},
	{"api-key", 0, OPT_STR, 0, 0, "KEY", "require Authorization: Bearer KEY (default: $HONE_API_KEY when set)", 0},
	{"tokenizer", 0, OPT_STR, 0, 0, "TOK", "a tokenizer folder or tokenizer.json, for a model folder", 1},
	{"chat-template", 0, OPT_STR, 0, 0, "NAME", "chatml, alpaca or llama3 (default: the bundle's, else chatml)", 0},
	{"max-body", 0, OPT_INT, 1, 1 << 30, "BYTES", "the largest request body (default 1048576; larger: 413)", 0},
	{"timeout", 0, OPT_NUM, 0.001, 86400, "SECONDS", "a request's time limit, queue included (default 120; then 504)", 0},
	{"model-name", 0, OPT_STR, 0, 0, "NAME", "the model's id in /v1/models and answers (default: the file's name)", 0},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb serve_verb = {"serve", "MODEL|BUNDLE", 1, 1,
	"Serves a model over HTTP until SIGTERM. A GPT-2 language model (a Hugging Face\n"
	"folder with --tokenizer, an export bundle, or a gpt2 .gguf file, as for generate)\n"
	"gets OpenAI's POST /v1/completions and /v1/chat/completions (stream: true for\n"
	"server-sent events) and GET /v1/models; a classifier bundle (export's) gets\n"
	"POST /predict (one JSON record) and /batch_predict (an array of them), answered\n"
	"as hone predict answers. Both: GET /health and GET /metrics (Prometheus).\n"
	"Generation is continuously batched: --parallel sequences decode together, new\n"
	"requests join between steps, --queue more wait (then 503). Chat messages are\n"
	"rendered with --chat-template, else the bundle's (export's chat_template, or\n"
	"alpaca when the model was tuned with tokenize's format = \"instruction\"), else chatml.\n"
	"Listens on 127.0.0.1 unless --host; SIGTERM finishes the requests in flight\n"
	"and exits 0. docs/deploy.md has examples.\n",
	serve_opts, 1};

/* --- the server and its connections ------------------------------------------------ */

typedef struct server {
	const char *name;
	int lm; /* a language model; else a classifier */
	gpt2 m;  /* a bundle's or .gguf's GPT-2 (cm points at it), or empty */
	gguf_file qf; /* a Q8_0 .gguf file the slots decode from (q8), else closed */
	int q8;
	clm cm;  /* the language model served */
	bpe *b;
	sched *sc;
	int tmpl;          /* the chat template (engine/ml/chat.h) */
	predictor *pr;
	pthread_mutex_t pmu; /* one prediction at a time */
	int slots, qcap;
	const char *key;
	size_t max_body;
	double timeout;
	serve_metrics met;
	pthread_mutex_t mu; /* guards what follows */
	pthread_cond_t cv;
	int inflight, draining, pwait;
	unsigned long long seq;
} server;

typedef struct conn {
	server *sv;
	double t0, deadline;
	char method[16], url[80];
	const char *route; /* the path for the metrics */
	buf body;
	int too_large, code, prompt_tokens, fd;
	/* generation */
	sched_req *r;
	char **stops;
	int nstop, chat, stream, usage, submitted;
	char id[48];
	long long created;
	/* a stream: the bytes to send, the text sent, where it stands */
	buf sse;
	size_t sse_off, sent, cut;
	int stage; /* 0 the role chunk next (chat), 1 text, 2 ended */
} conn;

/* --- JSON text ----------------------------------------------------------------------- */

/* the length of the valid UTF-8 character at p[0..n), 0 if there is none */
static size_t utf8_char(const unsigned char *p, size_t n)
{
	if (p[0] < 0x80)
		return 1;
	size_t len = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
	if (!len || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] > 0x9F) || (p[0] == 0xF0 && p[1] < 0x90) ||
	    (p[0] == 0xF4 && p[1] > 0x8F))
		return 0; /* overlong, a surrogate, past U+10FFFF */
	return len;
}

/* the offset of the first byte that is not valid UTF-8, or n */
static size_t utf8_check(const char *s, size_t n)
{
	size_t i = 0, k;
	while (i < n && (k = utf8_char((const unsigned char *)s + i, n - i)))
		i += k;
	return i;
}

/* a JSON string of s[0..n), bytes that are not UTF-8 as U+FFFD */
static void json_text(buf *o, const char *s, size_t n)
{
	buf_addc(o, '"');
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		size_t k = utf8_char((const unsigned char *)s + i, n - i);
		if (!k) {
			buf_adds(o, "\\ufffd");
			i++;
		} else if (ch == '"' || ch == '\\') {
			buf_printf(o, "\\%c", ch);
			i++;
		} else if (ch < 0x20) {
			buf_printf(o, "\\u%04x", ch);
			i++;
		} else {
			buf_add(o, s + i, k);
			i += k;
		}
	}
	buf_addc(o, '"');
}

/* --- answers ------------------------------------------------------------------------- */

static int is_get_route(const char *rt);

static enum MHD_Result reply(conn *k, struct MHD_Connection *c, int code, const char *type, const char *p, size_t n)
{
	struct MHD_Response *res = MHD_create_response_from_buffer(n, (void *)p, MHD_RESPMEM_MUST_COPY);
	if (!res)
		return MHD_NO;
	MHD_add_response_header(res, "Content-Type", type);
	if (code == 503)
		MHD_add_response_header(res, "Retry-After", "1");
	if (code == 401)
		MHD_add_response_header(res, "WWW-Authenticate", "Bearer");
	if (code == 405)
		MHD_add_response_header(res, "Allow", is_get_route(k->route) ? "GET, HEAD" : "POST");
	if (code == 413 || code == 503)
		MHD_add_response_header(res, "Connection", "close");
	enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, res);
	MHD_destroy_response(res);
	k->code = code;
	return rc;
}

static enum MHD_Result reply_json(conn *k, struct MHD_Connection *c, int code, buf *o)
{
	buf_addc(o, '\n');
	enum MHD_Result rc = reply(k, c, code, "application/json", o->p, o->len);
	buf_free(o);
	return rc;
}

/* {"error": {"message": ..., "type": ..., "param": ..., "code": null}}, OpenAI's shape */
static enum MHD_Result reply_error(conn *k, struct MHD_Connection *c, int code, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_error(conn *k, struct MHD_Connection *c, int code, const char *param, const char *fmt, ...)
{
	char msg[2600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	buf o;
	buf_init(&o);
	buf_adds(&o, "{\"error\": {\"message\": ");
	json_text(&o, msg, strlen(msg));
	buf_printf(&o, ", \"type\": \"%s\", \"param\": ",
	           code == 401 ? "authentication_error" : code >= 500 ? "server_error" : "invalid_request_error");
	if (param)
		json_text(&o, param, strlen(param));
	else
		buf_adds(&o, "null");
	buf_adds(&o, ", \"code\": null}}");
	return reply_json(k, c, code, &o);
}

/* --- reading requests -------------------------------------------------------------- */

/* a request's field error: the parameter's name and what was wrong */
typedef struct ferr {
	char param[64];
	char msg[512];
} ferr;

static int fail(ferr *f, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ferr *f, const char *param, const char *fmt, ...)
{
	snprintf(f->param, sizeof f->param, "%s", param);
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(f->msg, sizeof f->msg, "'%s': ", param);
	vsnprintf(f->msg + n, sizeof f->msg - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* a member, or NULL when absent or null */
static const jnode *field(const jnode *o, const char *name)
{
	const jnode *j = json_member(o, name, strlen(name));
	return j && j->t != J_NULL ? j : NULL;
}

static const char *type_name(const jnode *j)
{
	static const char *const names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
	return names[j->t];
}

static int get_num(ferr *f, const jnode *o, const char *name, double lo, double hi, double *v)
{
	const jnode *j = field(o, name);
	if (!j)
		return 0;
	double x;
	if (j->t != J_NUM || json_number(j, &x) != 0 || !isfinite(x) || x < lo || x > hi)
		return j->t != J_NUM ? fail(f, name, "expected a number from %g to %g, got %s", lo, hi, type_name(j))
		                     : fail(f, name, "expected a number from %g to %g, got %.*s", lo, hi, (int)(j->len > 40 ? 40 : j->len), j->s);
	*v = x;
	return 0;
}

static int get_int(ferr *f, const jnode *o, const char *name, long long lo, long long hi, long long *v)
{
	const jnode *j = field(o, name);
	if (!j)
		return 0;
	if (j->t != J_NUM || json_int(j, lo, hi, v) != 0)
		return j->t != J_NUM ? fail(f, name, "expected an integer from %lld to %lld, got %s", lo, hi, type_name(j))
		                     : fail(f, name, "expected an integer from %lld to %lld, got %.*s", lo, hi, (int)(j->len > 40 ? 40 : j->len), j->s);
	return 0;
}

static int get_bool(ferr *f, const jnode *o, const char *name, int *v)
{
	const jnode *j = field(o, name);
	if (!j)
		return 0;
	if (j->t != J_TRUE && j->t != J_FALSE)
		return fail(f, name, "expected true or false, got %s", type_name(j));
	*v = j->t == J_TRUE;
	return 0;
}

/* a message's content: a string, or OpenAI's parts [{"type": "text", "text": ...}] joined */
static int get_content(ferr *f, const jnode *m, size_t i, buf *out)
{
	char nm[48];
	snprintf(nm, sizeof nm, "messages[%zu].content", i);
	const jnode *j = field(m, "content");
	if (!j)
		return 0;
	if (j->t == J_STR) {
		buf_add(out, j->s, j->len);
		return 0;
	}
	if (j->t != J_ARR)
		return fail(f, nm, "expected a string or an array of text parts, got %s", type_name(j));
	for (const jnode *p = j->kid; p; p = p->next) {
		const jnode *t = p->t == J_OBJ ? field(p, "text") : NULL, *ty = p->t == J_OBJ ? field(p, "type") : NULL;
		if (!t || t->t != J_STR || (ty && (ty->t != J_STR || ty->len != 4 || memcmp(ty->s, "text", 4))))
			return fail(f, nm, "expected text parts ({\"type\": \"text\", \"text\": \"...\"}); hone serves text only");
		buf_add(out, t->s, t->len);
	}
	return 0;
}

/* the prompt: a completion's "prompt" (a string, or an array of one), or
 * the chat messages in the template */
/* a message's role and content (its parts joined), as the template takes it */
typedef struct chat_msg {
	const char *role, *content;
	size_t rlen, clen;
} chat_msg;

static int get_prompt(ferr *f, const server *sv, const jnode *o, int chat, buf *text, uint32_t **ids, size_t *nids,
                      size_t *cap)
{
	if (!chat) {
		const jnode *p = field(o, "prompt");
		if (p && p->t == J_ARR && p->n == 1 && p->kid->t == J_STR)
			p = p->kid;
		if (!p)
			return fail(f, "prompt", "required: the text to continue");
		if (p->t != J_STR)
			return fail(f, "prompt", "expected a string (or an array of one string), got %s", type_name(p));
		buf_add(text, p->s, p->len);
		return 0;
	}
	const jnode *ms = field(o, "messages");
	if (!ms)
		return fail(f, "messages", "required: an array of {\"role\", \"content\"} objects");
	if (ms->t != J_ARR || !ms->n)
		return fail(f, "messages", "expected a non-empty array of {\"role\", \"content\"} objects, got %s",
		            ms->t == J_ARR ? "an empty array" : type_name(ms));
	chat_msg *cm = xcalloc(ms->n, sizeof *cm);
	buf *cs = xcalloc(ms->n, sizeof *cs);
	size_t i = 0;
	int rc = 0;
	for (const jnode *m = ms->kid; m && rc == 0; m = m->next, i++) {
		char nm[48];
		snprintf(nm, sizeof nm, "messages[%zu].role", i);
		const jnode *r = m->t == J_OBJ ? field(m, "role") : NULL;
		if (m->t != J_OBJ)
			rc = fail(f, nm, "expected each message to be an object, got %s", type_name(m));
		else if (!r || r->t != J_STR)
			rc = fail(f, nm, "expected a string: system, user or assistant");
		else if (!((r->len == 6 && !memcmp(r->s, "system", 6)) || (r->len == 4 && !memcmp(r->s, "user", 4)) ||
		           (r->len == 9 && !memcmp(r->s, "assistant", 9))))
			rc = fail(f, nm, "expected system, user or assistant, got \"%.*s\"", (int)(r->len > 20 ? 20 : r->len), r->s);
		else
			rc = get_content(f, m, i, &cs[i]);
		if (rc == 0) {
			cm[i].role = r->s;
			cm[i].rlen = r->len;
			cm[i].content = cs[i].p ? cs[i].p : "";
			cm[i].clen = cs[i].len;
		}
	}
	if (rc == 0) {
		/* the messages as the template takes them (content parts joined),
		 * its special tokens as their ids where the tokenizer has them (as
		 * tokenize's format = "chat" trains), else as their text */
		buf js;
		buf_init(&js);
		buf_addc(&js, '[');
		for (size_t k = 0; k < ms->n; k++) {
			buf_adds(&js, k ? ", {\"role\": " : "{\"role\": ");
			buf_json_strn(&js, cm[k].role, cm[k].rlen);
			buf_adds(&js, ", \"content\": ");
			buf_json_strn(&js, cm[k].content, cm[k].clen);
			buf_addc(&js, '}');
		}
		buf_addc(&js, ']');
		jarena *a = json_arena_new();
		jerror je;
		const jnode *mj = json_parse(a, js.p, js.len, &je);
		herr e;
		uint32_t sp[8];
		int have = chat_special_ids(&e, sv->b, sv->tmpl, sp) == 0;
		chat_ids ci = {*ids, NULL, *nids, *cap, 0, 0, 0};
		if (chat_encode(&e, sv->b, NULL, sv->tmpl, have ? sp : NULL, mj, 1, "messages", &ci) != 0)
			rc = fail(f, "messages", "%s", e.msg);
		*ids = ci.ids;
		*nids = ci.n;
		*cap = ci.cap;
		free(ci.mask);
		json_arena_free(a);
		buf_free(&js);
	}
	(void)text;
	for (size_t k = 0; k < ms->n; k++)
		buf_free(&cs[k]);
	free(cs);
	free(cm);
	return rc;
}

#define MAX_STOPS 16

/* "stop": a string or an array of up to 16 */
static int get_stops(ferr *f, conn *k, const jnode *o)
{
	const jnode *s = field(o, "stop");
	k->stops = xcalloc(MAX_STOPS + 1, sizeof *k->stops);
	if (!s)
		return 0;
	if (s->t == J_STR) {
		if (s->len)
			k->stops[k->nstop++] = xstrndup(s->s, s->len);
		return 0;
	}
	if (s->t != J_ARR)
		return fail(f, "stop", "expected a string or an array of strings, got %s", type_name(s));
	if (s->n > MAX_STOPS)
		return fail(f, "stop", "at most %d stop texts, got %u", MAX_STOPS, s->n);
	for (const jnode *x = s->kid; x; x = x->next) {
		if (x->t != J_STR)
			return fail(f, "stop", "expected strings in the array, got %s", type_name(x));
		if (x->len)
			k->stops[k->nstop++] = xstrndup(x->s, x->len);
	}
	return 0;
}

/* --- generation ------------------------------------------------------------------- */

static int client_gone(int fd)
{
	if (fd < 0)
		return 0;
	struct pollfd p = {fd, POLLRDHUP, 0};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static const char *finish_reason(const sched_req *r) { return r->stopped ? "stop" : "length"; }

static void usage_json(buf *o, const conn *k)
{
	buf_printf(o, "\"usage\": {\"prompt_tokens\": %d, \"completion_tokens\": %d, \"total_tokens\": %d}", k->prompt_tokens,
	           k->r->made, k->prompt_tokens + k->r->made);
}

/* one server-sent event: a chunk with text (or the role, or the end) */
static void sse_chunk(conn *k, const char *text, size_t n, int role, const char *finish)
{
	buf *o = &k->sse;
	buf_adds(o, "data: {\"id\": ");
	json_text(o, k->id, strlen(k->id));
	buf_printf(o, ", \"object\": \"%s\", \"created\": %lld, \"model\": ", k->chat ? "chat.completion.chunk" : "text_completion",
	           k->created);
	json_text(o, k->sv->name, strlen(k->sv->name));
	buf_adds(o, ", \"choices\": [{\"index\": 0, ");
	if (k->chat) {
		buf_adds(o, "\"delta\": {");
		if (role)
			buf_adds(o, "\"role\": \"assistant\", \"content\": \"\"");
		else if (text) {
			buf_adds(o, "\"content\": ");
			json_text(o, text, n);
		}
		buf_adds(o, "}, ");
	} else {
		buf_adds(o, "\"text\": ");
		json_text(o, text ? text : "", text ? n : 0);
		buf_adds(o, ", \"logprobs\": null, ");
	}
	buf_adds(o, "\"finish_reason\": ");
	if (finish)
		buf_printf(o, "\"%s\"", finish);
	else
		buf_adds(o, "null");
	buf_adds(o, "}]");
	if (finish && k->usage) {
		buf_adds(o, ", ");
		usage_json(o, k);
	}
	buf_adds(o, "}\n\n");
}

/* the next events of a stream into k->sse; -1 when the client left */
static int sse_fill(conn *k)
{
	server *sv = k->sv;
	if (k->stage == 0) {
		k->stage = 1;
		if (k->chat) {
			sse_chunk(k, NULL, 0, 1, NULL);
			return 0;
		}
	}
	for (;;) {
		sched_lock(sv->sc);
		sched_req *r = k->r;
		if (r->text.len == k->sent && r->state != SCHED_DONE)
			sched_wait(sv->sc, r, 100);
		int done = r->state == SCHED_DONE;
		/* a chunk per published piece */
		size_t from = k->sent, got = 0;
		for (; k->cut < r->ncut; k->cut++) {
			size_t end = r->cuts[k->cut];
			if (end > from)
				sse_chunk(k, r->text.p + from, end - from, 0, NULL);
			from = end;
			got = 1;
		}
		k->sent = from;
		sched_unlock(sv->sc);
		int delta = got;
		if (done) {
			sse_chunk(k, NULL, 0, 0, finish_reason(r));
			buf_adds(&k->sse, "data: [DONE]\n\n");
			k->stage = 2;
			return 0;
		}
		if (delta)
			return 0;
		if (client_gone(k->fd)) {
			sched_cancel(sv->sc, r);
			return -1;
		}
		if (now_seconds() > k->deadline) {
			sched_cancel(sv->sc, r);
			buf_adds(&k->sse, "data: {\"error\": {\"message\": \"the request did not finish within --timeout\", "
			                  "\"type\": \"server_error\", \"param\": null, \"code\": null}}\n\ndata: [DONE]\n\n");
			k->stage = 2;
			return 0;
		}
	}
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	conn *k = cls;
	(void)pos;
	if (k->sse_off >= k->sse.len) {
		k->sse.len = 0;
		k->sse_off = 0;
		if (k->stage == 2)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (sse_fill(k) != 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t n = k->sse.len - k->sse_off;
	n = n < max ? n : max;
	memcpy(out, k->sse.p + k->sse_off, n);
	k->sse_off += n;
	return (ssize_t)n;
}

static enum MHD_Result generate(conn *k, struct MHD_Connection *c, const jnode *o, int chat)
{
	server *sv = k->sv;
	ferr f;
	buf text;
	buf_init(&text);
	double temperature = 1, top_p = 1;
	long long top_k = 0, n = 1, seed = -1, max_tokens = -1, mct = -1;
	uint32_t *cids = NULL;
	size_t ncid = 0, ccap = 0;
	int stream = 0, usage = 0, rc = get_prompt(&f, sv, o, chat, &text, &cids, &ncid, &ccap);
	if (rc == 0)
		rc = get_num(&f, o, "temperature", 0, 2, &temperature);
	if (rc == 0)
		rc = get_num(&f, o, "top_p", 0, 1, &top_p);
	if (rc == 0)
		rc = get_int(&f, o, "top_k", 0, 1 << 30, &top_k);
	if (rc == 0)
		rc = get_int(&f, o, "n", 1, 1, &n);
	if (rc == 0)
		rc = get_int(&f, o, "seed", -9007199254740991LL, 9007199254740991LL, &seed);
	if (rc == 0)
		rc = get_int(&f, o, "max_tokens", 0, 1 << 30, &max_tokens);
	if (rc == 0 && chat)
		rc = get_int(&f, o, "max_completion_tokens", 0, 1 << 30, &mct);
	if (rc == 0)
		rc = get_bool(&f, o, "stream", &stream);
	const jnode *so = field(o, "stream_options");
	if (rc == 0 && so && so->t != J_OBJ)
		rc = fail(&f, "stream_options", "expected an object, got %s", type_name(so));
	if (rc == 0 && so)
		rc = get_bool(&f, so, "include_usage", &usage);
	if (rc == 0)
		rc = get_stops(&f, k, o);
	if (rc != 0) {
		buf_free(&text);
		free(cids);
		return reply_error(k, c, 400, f.param, "%s", f.msg);
	}
	if (chat)
		k->stops[k->nstop++] = xstrdup(chat_stop(sv->tmpl));
	sched_req *r = xmalloc(sizeof *r);
	sched_req_init(r);
	size_t cap = 0;
	if (chat) { /* rendered and encoded already */
		r->ids = cids;
		r->n = ncid;
	} else {
		bpe_encode(sv->b, text.p ? text.p : "", text.len, &r->ids, &r->n, &cap);
	}
	buf_free(&text);
	k->r = r;
	k->prompt_tokens = (int)r->n;
	int ctx = clm_max_pos(&sv->cm) - (sv->cm.pt ? sv->cm.pt->n : 0);
	if (r->n >= (size_t)ctx)
		return reply_error(k, c, 400, chat ? "messages" : "prompt",
		                   "the prompt has %zu tokens; the model's context is %d, prompt and completion together", r->n, ctx);
	if (mct >= 0)
		max_tokens = mct;
	if (max_tokens < 0)
		max_tokens = chat ? ctx : 16; /* OpenAI's defaults */
	if (max_tokens > ctx - (long long)r->n)
		max_tokens = ctx - (long long)r->n; /* what fits in the context */
	r->max_tokens = (int)max_tokens;
	r->smp.temperature = (float)temperature;
	r->smp.top_p = (float)top_p;
	r->smp.top_k = (int)top_k;
	pthread_mutex_lock(&sv->mu);
	unsigned long long id = ++sv->seq;
	pthread_mutex_unlock(&sv->mu);
	/* no seed: one from the clock and the request's number */
	r->smp.state = field(o, "seed") ? (uint64_t)seed : (uint64_t)time(NULL) * 2654435761u + id;
	r->each = stream;
	r->stops = (const char *const *)k->stops;
	r->nstop = k->nstop;
	k->chat = chat;
	k->stream = stream;
	k->usage = usage;
	k->created = (long long)time(NULL);
	snprintf(k->id, sizeof k->id, "%s-%llu", chat ? "chatcmpl" : "cmpl", id);
	k->submitted = sched_submit(sv->sc, r) == 0;
	if (!k->submitted)
		return reply_error(k, c, 503, NULL, "the queue is full (%d waiting, %d slots busy); retry later", sv->qcap, sv->slots);
	if (stream) {
		struct MHD_Response *res = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, k, NULL);
		if (!res)
			return MHD_NO;
		MHD_add_response_header(res, "Content-Type", "text/event-stream");
		MHD_add_response_header(res, "Cache-Control", "no-cache");
		enum MHD_Result q = MHD_queue_response(c, 200, res);
		MHD_destroy_response(res);
		k->code = 200;
		return q;
	}
	/* wait for the whole completion, watching the client and the clock */
	for (;;) {
		sched_lock(sv->sc);
		if (r->state != SCHED_DONE)
			sched_wait(sv->sc, r, 100);
		int done = r->state == SCHED_DONE;
		sched_unlock(sv->sc);
		if (done)
			break;
		if (client_gone(k->fd)) { /* nobody to answer: 499 in the log and metrics, as nginx has it */
			sched_cancel(sv->sc, r);
			return reply_error(k, c, 499, NULL, "the client closed the connection");
		}
		if (now_seconds() > k->deadline) {
			sched_cancel(sv->sc, r);
			return reply_error(k, c, 504, NULL, "the request did not finish within --timeout %g s", sv->timeout);
		}
	}
	buf out;
	buf_init(&out);
	buf_adds(&out, "{\"id\": ");
	json_text(&out, k->id, strlen(k->id));
	buf_printf(&out, ", \"object\": \"%s\", \"created\": %lld, \"model\": ", chat ? "chat.completion" : "text_completion",
	           k->created);
	json_text(&out, sv->name, strlen(sv->name));
	buf_adds(&out, ", \"choices\": [{\"index\": 0, ");
	if (chat) {
		buf_adds(&out, "\"message\": {\"role\": \"assistant\", \"content\": ");
		json_text(&out, r->text.p ? r->text.p : "", r->text.len);
		buf_adds(&out, "}, ");
	} else {
		buf_adds(&out, "\"text\": ");
		json_text(&out, r->text.p ? r->text.p : "", r->text.len);
		buf_adds(&out, ", \"logprobs\": null, ");
	}
	buf_printf(&out, "\"finish_reason\": \"%s\"}], ", finish_reason(r));
	usage_json(&out, k);
	buf_addc(&out, '}');
	return reply_json(k, c, 200, &out);
}

/* --- classification --------------------------------------------------------------- */

/* the field a predictor's message names ("field 'links'"), or NULL */
static const char *named_field(const char *msg, char *out, size_t cap)
{
	const char *p = strstr(msg, "field '");
	if (!p)
		return NULL;
	p += 7;
	const char *q = strchr(p, '\'');
	if (!q || (size_t)(q - p) >= cap)
		return NULL;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = 0;
	return out;
}

static enum MHD_Result predict(conn *k, struct MHD_Connection *c, const jnode *root, int batch)
{
	server *sv = k->sv;
	const jnode *rows = root;
	if (batch && root->t == J_OBJ) {
		rows = field(root, "records");
		rows = rows ? rows : field(root, "instances");
		if (!rows)
			return reply_error(k, c, 400, "records", "'records': required: an array of records (or give the array itself)");
	}
	if (batch && rows->t != J_ARR)
		return reply_error(k, c, 400, "records", "'records': expected an array of objects, got %s", type_name(rows));
	if (!batch && rows->t != J_OBJ)
		return reply_error(k, c, 400, NULL, "expected one record, a JSON object, got %s%s", type_name(rows),
		                   rows->t == J_ARR ? " (POST an array to /batch_predict)" : "");
	buf in;
	buf_init(&in);
	size_t i = 0;
	for (const jnode *x = batch ? rows->kid : rows; x; x = batch ? x->next : NULL, i++) {
		if (x->t != J_OBJ) {
			buf_free(&in);
			return reply_error(k, c, 400, "records", "'records[%zu]': expected an object, got %s", i, type_name(x));
		}
		json_write_node(&in, x);
		buf_addc(&in, '\n');
	}
	pthread_mutex_lock(&sv->mu);
	int busy = sv->pwait >= sv->slots + sv->qcap;
	sv->pwait += !busy;
	pthread_mutex_unlock(&sv->mu);
	if (busy) {
		buf_free(&in);
		return reply_error(k, c, 503, NULL, "the queue is full (%d waiting); retry later", sv->qcap);
	}
	char *op = NULL;
	size_t on = 0, nrows = 0;
	FILE *f = open_memstream(&op, &on);
	herr e = {{0}, {0}};
	pthread_mutex_lock(&sv->pmu);
	int rc = f ? predictor_run(&e, sv->pr, "request", in.p, in.len, PREDICT_JSONL, MISSING_ERROR, f, &nrows)
	           : herr_set(&e, "out of memory");
	pthread_mutex_unlock(&sv->pmu);
	pthread_mutex_lock(&sv->mu);
	sv->pwait--;
	pthread_mutex_unlock(&sv->mu);
	if (f)
		fclose(f);
	buf_free(&in);
	if (rc != 0) {
		free(op);
		char fld[128];
		return reply_error(k, c, 400, named_field(e.msg, fld, sizeof fld), "%s%s%s", e.msg, e.hint[0] ? "; " : "", e.hint);
	}
	buf o;
	buf_init(&o);
	if (batch) {
		buf_adds(&o, "{\"predictions\": [");
		size_t a = 0;
		for (size_t r = 0; a < on; r++) {
			char *nl = memchr(op + a, '\n', on - a);
			size_t end = nl ? (size_t)(nl - op) : on;
			buf_adds(&o, r ? ", " : "");
			buf_add(&o, op + a, end - a);
			a = end + 1;
		}
		buf_adds(&o, "]}");
	} else {
		while (on && op[on - 1] == '\n')
			on--;
		buf_add(&o, op, on);
	}
	free(op);
	return reply_json(k, c, 200, &o);
}

/* --- routing --------------------------------------------------------------------------- */

static const char *const routes[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/predict",
                                     "/batch_predict", "/health", "/metrics", NULL};

static const char *route_of(const char *url)
{
	for (int i = 0; routes[i]; i++)
		if (!strcmp(url, routes[i]))
			return routes[i];
	return "other";
}

static int is_get_route(const char *rt) { return !strcmp(rt, "/health") || !strcmp(rt, "/metrics") || !strcmp(rt, "/v1/models"); }

/* the bearer token against the key, in time that depends only on the key's length */
static int authorized(const server *sv, struct MHD_Connection *c)
{
	if (!sv->key)
		return 1;
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7))
		return 0;
	h += 7;
	size_t hn = strlen(h), kn = strlen(sv->key);
	unsigned d = hn != kn;
	for (size_t i = 0; i < kn; i++)
		d |= (unsigned)(unsigned char)sv->key[i] ^ (unsigned)(unsigned char)(i < hn ? h[i] : 0);
	return d == 0;
}

static enum MHD_Result answer(conn *k, struct MHD_Connection *c)
{
	server *sv = k->sv;
	const char *rt = k->route;
	int get = !strcmp(k->method, "GET") || !strcmp(k->method, "HEAD"), post = !strcmp(k->method, "POST");
	if (!strcmp(rt, "/health") && get) {
		pthread_mutex_lock(&sv->mu);
		int draining = sv->draining;
		pthread_mutex_unlock(&sv->mu);
		buf o;
		buf_init(&o);
		buf_printf(&o, "{\"status\": \"%s\", \"model\": ", draining ? "draining" : "ok");
		json_text(&o, sv->name, strlen(sv->name));
		buf_printf(&o, ", \"task\": \"%s\"}", sv->lm ? "generate" : "classify");
		return reply_json(k, c, draining ? 503 : 200, &o);
	}
	if (!authorized(sv, c))
		return reply_error(k, c, 401, NULL, "a valid API key is required: send the header Authorization: Bearer KEY");
	pthread_mutex_lock(&sv->mu);
	int draining = sv->draining;
	pthread_mutex_unlock(&sv->mu);
	if (draining)
		return reply_error(k, c, 503, NULL, "the server is shutting down");
	if (k->too_large)
		return reply_error(k, c, 413, NULL, "the body is larger than %zu bytes (--max-body)", sv->max_body);
	if (!strcmp(rt, "/metrics") && get) {
		int q = 0, a = 0;
		if (sv->sc)
			sched_counts(sv->sc, &q, &a);
		else {
			pthread_mutex_lock(&sv->mu);
			a = sv->pwait;
			pthread_mutex_unlock(&sv->mu);
			q = a > 1 ? a - 1 : 0;
			a = a > 0;
		}
		buf o;
		buf_init(&o);
		metrics_render(&sv->met, &o, q, a, sv->slots);
		enum MHD_Result r = reply(k, c, 200, "text/plain; version=0.0.4", o.p, o.len);
		buf_free(&o);
		return r;
	}
	if (!strcmp(rt, "/v1/models") && get) {
		buf o;
		buf_init(&o);
		buf_adds(&o, "{\"object\": \"list\", \"data\": [{\"id\": ");
		json_text(&o, sv->name, strlen(sv->name));
		buf_adds(&o, ", \"object\": \"model\", \"created\": 0, \"owned_by\": \"hone\"}]}");
		return reply_json(k, c, 200, &o);
	}
	if (!strcmp(rt, "other"))
		return reply_error(k, c, 404, NULL, "no such path: %s (hone serves %s, /health, /metrics)", k->url,
		                   sv->lm ? "/v1/completions, /v1/chat/completions, /v1/models" : "/predict, /batch_predict");
	if (is_get_route(rt) || !post)
		return reply_error(k, c, 405, NULL, "%s takes %s, not %s", rt, is_get_route(rt) ? "GET" : "POST", k->method);
	int gen = !strcmp(rt, "/v1/completions") || !strcmp(rt, "/v1/chat/completions");
	if (gen != sv->lm)
		return reply_error(k, c, 404, NULL, "%s: this server serves %s; use %s", rt,
		                   sv->lm ? "a language model" : "a classifier", sv->lm ? "/v1/completions" : "/predict");
	size_t bad = utf8_check(k->body.p ? k->body.p : "", k->body.len);
	if (bad < k->body.len)
		return reply_error(k, c, 400, NULL, "the body is not UTF-8 (byte %zu)", bad);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *root = json_parse(a, k->body.p ? k->body.p : "", k->body.len, &je);
	enum MHD_Result r;
	if (!root)
		r = reply_error(k, c, 400, NULL, "the body is not JSON: %s at byte %zu", je.what, je.off);
	else if (gen && root->t != J_OBJ)
		r = reply_error(k, c, 400, NULL, "expected a JSON object, got %s", type_name(root));
	else if (gen)
		r = generate(k, c, root, !strcmp(rt, "/v1/chat/completions"));
	else
		r = predict(k, c, root, !strcmp(rt, "/batch_predict"));
	json_arena_free(a);
	return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **ptr)
{
	server *sv = cls;
	conn *k = *ptr;
	(void)version;
	if (!k) { /* the headers: a request begins */
		k = xcalloc(1, sizeof *k);
		k->sv = sv;
		k->t0 = now_seconds();
		k->deadline = k->t0 + sv->timeout;
		snprintf(k->method, sizeof k->method, "%s", method);
		snprintf(k->url, sizeof k->url, "%s", url);
		k->route = route_of(url);
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k->fd = ci ? ci->connect_fd : -1;
		buf_init(&k->body);
		buf_init(&k->sse);
		pthread_mutex_lock(&sv->mu);
		sv->inflight++;
		pthread_mutex_unlock(&sv->mu);
		*ptr = k;
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > sv->max_body) {
			k->too_large = 1;
			return answer(k, c); /* at once, not reading the body */
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (k->body.len + *upload_size > sv->max_body)
			k->too_large = 1;
		else if (!k->code)
			buf_add(&k->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (k->code) /* answered already (413 before the body) */
		return MHD_YES;
	return answer(k, c);
}

static void completed(void *cls, struct MHD_Connection *c, void **ptr, enum MHD_RequestTerminationCode toe)
{
	server *sv = cls;
	conn *k = *ptr;
	(void)c;
	if (!k)
		return;
	int made = 0;
	if (k->r) {
		if (k->submitted)
			sched_cancel(sv->sc, k->r); /* at once when it is done */
		made = k->r->made;
		sched_req_free(k->r);
		free(k->r);
	}
	double s = now_seconds() - k->t0;
	fprintf(stderr, "hone: %s %s %d %.1fms %d tokens%s\n", k->method, k->url, k->code, s * 1000, made,
	        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : k->code ? " (the client left)" : " (no answer: the client left)");
	metrics_request(&sv->met, k->route, k->code, s, k->prompt_tokens, made);
	for (int i = 0; k->stops && i < k->nstop; i++)
		free(k->stops[i]);
	free(k->stops);
	buf_free(&k->body);
	buf_free(&k->sse);
	free(k);
	*ptr = NULL;
	pthread_mutex_lock(&sv->mu);
	sv->inflight--;
	pthread_cond_broadcast(&sv->cv);
	pthread_mutex_unlock(&sv->mu);
}

/* --- the verb --------------------------------------------------------------------------- */

/* what the bundle says about itself: a language model or not, and the chat
 * template (chat.json's chat_template, from export { chat_template = ... };
 * else alpaca when tokenize.json says format "instruction") */
static int inspect(herr *e, const char *path, int *lm, int *tmpl)
{
	size_t n = strlen(path);
	*lm = 1;
	*tmpl = -1;
	if (n > 5 && !strcmp(path + n - 5, ".gguf"))
		return 0;
	if (fs_is_dir(path)) { /* a folder train wrote: its tokenize.json may name the chat template */
		char *tp = path_join(path, "tokenize.json");
		buf tb;
		buf_init(&tb);
		herr e3;
		if (fs_exists(tp) && fs_read(&e3, tp, &tb) == 0) {
			jarena *a = json_arena_new();
			jerror je;
			const jnode *r = json_parse(a, tb.p, tb.len, &je), *ct = r ? field(r, "chat_template") : NULL;
			if (ct && ct->t == J_STR) {
				char *nm = xstrndup(ct->s, ct->len);
				*tmpl = chat_template(nm);
				free(nm);
			}
			json_arena_free(a);
		}
		buf_free(&tb);
		free(tp);
		return 0;
	}
	bundle bd;
	if (bundle_read(e, &bd, path, (size_t)16 << 30) != 0)
		return -1;
	const buf *cfg = bundle_get(&bd, "config.json"), *tj = bundle_get(&bd, "chat.json");
	tj = tj ? tj : bundle_get(&bd, "tokenize.json");
	gpt2_config gc;
	herr e2;
	*lm = cfg && strstr(cfg->p, "\"n_layer\"") && gpt2_config_parse(&e2, &gc, cfg->p, cfg->len, path) == 0 && !gc.ncls;
	if (tj) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, tj->p, tj->len, &je), *ct = r ? field(r, "chat_template") : NULL;
		const jnode *fm = r ? field(r, "format") : NULL;
		if (ct && ct->t == J_STR) {
			char *nm = xstrndup(ct->s, ct->len);
			*tmpl = chat_template(nm);
			free(nm);
		} else if (fm && fm->t == J_STR && fm->len == 11 && !memcmp(fm->s, "instruction", 11)) {
			*tmpl = CHAT_ALPACA;
		}
		json_arena_free(a);
	}
	bundle_free(&bd);
	return 0;
}

static char *model_name(const char *path)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	const char *b = path + n;
	while (b > path && b[-1] != '/')
		b--;
	size_t len = (size_t)(path + n - b);
	static const char *const ext[] = {".tar.gz", ".tgz", ".gguf", NULL};
	for (int i = 0; ext[i]; i++) {
		size_t el = strlen(ext[i]);
		if (len > el && !memcmp(b + len - el, ext[i], el)) {
			len -= el;
			break;
		}
	}
	return xstrndup(b, len);
}

int serve_main(int argc, char **argv)
{
	const char *model, *host = "127.0.0.1", *tokp = NULL, *tname = NULL, *mname = NULL, *key = getenv("HONE_API_KEY"),
	           *device = "cpu";
	int port = 8080, slots = 4, queue = 64, threads = default_threads();
	size_t max_body = 1 << 20;
	double timeout = 120;
	opt_parsed op;
	int prc = opt_parse(&serve_verb, argc, argv, &op);
	if (prc != OPT_OK)
		return prc == OPT_HELP ? 0 : 2;
	model = op.pos[0];
	for (size_t i = 0; i < op.nhits; i++) {
		const opt_hit *h = &op.hits[i];
		const char *n = h->spec->name;
		if (!strcmp(n, "host"))
			host = h->val;
		else if (!strcmp(n, "port"))
			port = (int)h->i;
		else if (!strcmp(n, "parallel"))
			slots = (int)h->i;
		else if (!strcmp(n, "queue"))
			queue = (int)h->i;
		else if (!strcmp(n, "threads"))
			threads = (int)h->i;
		else if (!strcmp(n, "api-key"))
			key = h->val;
		else if (!strcmp(n, "tokenizer"))
			tokp = h->val;
		else if (!strcmp(n, "chat-template"))
			tname = h->val;
		else if (!strcmp(n, "max-body"))
			max_body = (size_t)h->i;
		else if (!strcmp(n, "timeout"))
			timeout = h->d;
		else if (!strcmp(n, "model-name"))
			mname = h->val;
		else if (!strcmp(n, "device"))
			device = h->val;
	}
	opt_free(&op);
	threads = threads < 1 ? 1 : threads;
	if (tname && chat_template(tname) < 0)
		return opt_usage_error(&serve_verb, "--chat-template: expected chatml, llama3, mistral, zephyr or alpaca, not '%s'",
		                       tname);
	if (key && !*key)
		key = NULL;
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;
	memset(&a4, 0, sizeof a4);
	memset(&a6, 0, sizeof a6);
	int v6 = strchr(host, ':') != NULL;
	if (v6 ? inet_pton(AF_INET6, host, &a6.sin6_addr) != 1 : inet_pton(AF_INET, host, &a4.sin_addr) != 1)
		return opt_usage_error(&serve_verb, "--host: expected an IPv4 or IPv6 address such as 127.0.0.1, not '%s'", host);
	a4.sin_family = AF_INET;
	a4.sin_port = htons((uint16_t)port);
	a6.sin6_family = AF_INET6;
	a6.sin6_port = htons((uint16_t)port);

	server *sv = xcalloc(1, sizeof *sv);
	herr e = {{0}, {0}};
	char *name = mname ? xstrdup(mname) : model_name(model);
	sv->name = name;
	sv->slots = slots;
	sv->qcap = queue;
	sv->key = key;
	sv->max_body = max_body;
	sv->timeout = timeout;
	pthread_mutex_init(&sv->mu, NULL);
	pthread_mutex_init(&sv->pmu, NULL);
	pthread_cond_init(&sv->cv, NULL);
	metrics_init(&sv->met);
	/* SIGTERM and SIGINT are waited for below; no thread gets them (nor SIGPIPE) */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int tmpl = -1, loaded = 0;
	int rc = inspect(&e, model, &sv->lm, &tmpl);
	sv->tmpl = tname ? chat_template(tname) : tmpl >= 0 ? tmpl : CHAT_CHATML;
	if (rc == 0 && !blas_get(&e))
		rc = -1;
	const nn_ops *ops = NULL;
	if (rc == 0 && strcmp(device, "cpu")) {
		if (!sv->lm)
			rc = herr_set(&e, "--device %s: %s is a classifier, which runs on the CPU (leave --device out)", device, model);
		else if (!(ops = nn_backend(&e, device)))
			rc = herr_prefix(&e, "--device");
	}
	if (rc == 0 && sv->lm) {
		if (tokp)
			rc = textgen_load_tokenizer(&e, tokp, &sv->b);
		if (rc == 0 && !tokp && fs_is_dir(model))
			rc = herr_set(&e, "%s: a model folder needs --tokenizer (a bundle or a .gguf file brings its own)", model);
		model_arch arch = ARCH_GPT2;
		herr e2;
		if (rc == 0 && fs_is_dir(model) && model_detect_dir(&e2, model, &arch) == 0 && arch == ARCH_LLAMA) {
			rc = clm_load_dir(&e, &sv->cm, model); /* a Llama-family folder: one decode step per sequence */
			if (rc == 0 && bpe_vocab_size(sv->b) > (size_t)clm_vocab(&sv->cm)) {
				rc = herr_set(&e, "%s: the tokenizer has %zu tokens, the model %d", tokp, bpe_vocab_size(sv->b),
				              clm_vocab(&sv->cm));
				clm_free(&sv->cm);
			}
		} else if (rc == 0) {
			rc = textgen_load(&e, model, tokp, &sv->m, &sv->b);
			if (rc == 0)
				sv->cm = clm_of_gpt2(&sv->m);
		}
		loaded = rc == 0;
		if (rc == 0 && clm_lora(&sv->cm))
			rc = herr_set(&e, "%s: adapters must be merged before serving", model);
		if (rc == 0)
			sv->sc = sched_new(&sv->cm, sv->b, slots, queue, threads, ops);
		size_t ml = strlen(model);
		herr e3;
		if (rc == 0 && !ops && ml > 5 && !strcmp(model + ml - 5, ".gguf") && gguf_open(&e3, &sv->qf, model) == 0) {
			sv->q8 = sched_q8(sv->sc, &sv->qf) == 0; /* as hone generate decodes the file */
			if (!sv->q8)
				gguf_close(&sv->qf);
		}
	} else if (rc == 0) {
		rc = predictor_open(&e, &sv->pr, model);
	}
	struct MHD_Daemon *d = NULL;
	if (rc == 0) {
		/* an idle connection's limit: 30 s, or longer than a request may take
		 * (libmicrohttpd does not see the socket while a request waits) */
		unsigned idle = timeout + 5 > 30 ? (unsigned)(timeout + 5) : 30;
		unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
		                 (v6 ? MHD_USE_IPv6 : 0);
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, sv, MHD_OPTION_SOCK_ADDR,
		                     v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED, completed, sv,
		                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)(4 * (slots + queue) + 64), MHD_OPTION_CONNECTION_TIMEOUT,
		                     idle, MHD_OPTION_END);
		if (!d) {
			rc = herr_set(&e, "cannot listen on %s port %d: %s", host, port, errno ? strerror(errno) : "libmicrohttpd refused");
			herr_hint(&e, "another server may have the port; --port 0 takes a free one");
		}
	}
	if (rc == 0) {
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		int bound = di ? (int)di->port : port;
		if (sv->lm)
			fprintf(stderr, "hone: serving %s (%s, %d layers, context %d) on http://%s%s%s:%d/v1 with %d slots, queue %d, "
			        "chat template %s%s%s%s%s\n", sv->name, clm_name(&sv->cm), clm_layers(&sv->cm), clm_max_pos(&sv->cm),
			        v6 ? "[" : "", host, v6 ? "]" : "", bound, slots, queue, chat_template_name(sv->tmpl),
			        ops ? ", on " : "", ops ? device : "", sv->q8 ? ", from the Q8_0 weights" : "",
			        key ? ", API key required" : "");
		else
			fprintf(stderr, "hone: serving %s (a classifier) on http://%s%s%s:%d/predict, queue %d%s\n", sv->name,
			        v6 ? "[" : "", host, v6 ? "]" : "", bound, queue, key ? ", API key required" : "");
		int sig = 0;
		sigset_t wait;
		sigemptyset(&wait);
		sigaddset(&wait, SIGTERM);
		sigaddset(&wait, SIGINT);
		sigwait(&wait, &sig);
		/* no new connections; new requests on open ones get 503; the rest finish */
		MHD_socket ls = MHD_quiesce_daemon(d);
		if (ls != MHD_INVALID_SOCKET)
			close(ls);
		pthread_mutex_lock(&sv->mu);
		sv->draining = 1;
		int left = sv->inflight;
		fprintf(stderr, "hone: %s: finishing %d request%s in flight, accepting no more\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
		        left, left == 1 ? "" : "s");
		while (sv->inflight > 0)
			pthread_cond_wait(&sv->cv, &sv->mu);
		pthread_mutex_unlock(&sv->mu);
		MHD_stop_daemon(d);
		fprintf(stderr, "hone: stopped\n");
	} else {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
	}
	sched_free(sv->sc);
	if (sv->q8)
		gguf_close(&sv->qf);
	predictor_close(sv->pr);
	if (loaded && sv->cm.g == &sv->m)
		gpt2_free(&sv->m);
	else if (loaded)
		clm_free(&sv->cm);
	if (sv->b)
		bpe_free(sv->b);
	metrics_free(&sv->met);
	pthread_mutex_destroy(&sv->mu);
	pthread_mutex_destroy(&sv->pmu);
	pthread_cond_destroy(&sv->cv);
	free(name);
	free(sv);
	return rc ? 1 : 0;
}
