#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "objcheck.h"

void engine_init(engine *en)
{
	memset(en, 0, sizeof *en);
	dag_init(&en->g);
	en->jobs = 1;
	en->out = stdout;
	en->msg = stderr;
	en->st.lockfd = -1;
}

void engine_free(engine *en)
{
	if (en->ns) {
		for (size_t i = 0; i < en->g.n; i++) {
			free(en->ns[i].metrics);
			free(en->ns[i].error);
		}
		free(en->ns);
	}
	dag_free(&en->g);
	dsl_opts_free(&en->dsl);
	if (en->st.root)
		store_close(&en->st);
	statcache_free(en->sc);
	runlog_close(en->rl);
	strv_free(en->force, en->nforce);
	free(en->cache_root);
	free(en->args);
}

int engine_open_store(engine *en, int create)
{
	if (store_open(&en->err, &en->st, en->cache_root, create) != 0)
		return -1;
	char *p = path_join(en->cache_root, "statcache");
	en->sc = statcache_load(p);
	free(p);
	return 0;
}

int engine_open_runlog(engine *en)
{
	if (en->rl)
		return 0;
	if (fs_mkdirs(&en->err, en->cache_root) != 0)
		return -1;
	char *p = path_join(en->cache_root, "runs.sqlite");
	int rc = runlog_open(&en->err, &en->rl, p);
	free(p);
	return rc;
}

char *sched_input_label(const engine *en, int i, size_t j)
{
	const dag_input *in = &en->g.nodes[i].in[j];
	const dag_node *from = &en->g.nodes[in->node];
	if (in->output)
		return xasprintf("%s.%s", from->name, in->output);
	return xstrdup(from->name);
}

char *sched_output_path(const engine *en, int i, const char *output)
{
	const node_state *s = &en->ns[i];
	if (!s->known)
		return NULL;
	if (en->g.nodes[i].type == NODE_SOURCE)
		return xstrdup(en->g.nodes[i].path);
	char *p = store_object_path(&en->st, &s->id);
	if (output) {
		char *q = path_join(p, output);
		free(p);
		return q;
	}
	return p;
}

static int is_forced(const engine *en, const char *name)
{
	for (size_t i = 0; i < en->nforce; i++)
		if (!strcmp(en->force[i], name))
			return 1;
	return 0;
}

/* Content id bound to input j of node i; -1 when not known yet. */
static int input_id_e(herr *e, engine *en, int i, size_t j, hkey *id)
{
	const dag_input *in = &en->g.nodes[i].in[j];
	const node_state *s = &en->ns[in->node];
	if (!s->known)
		return -1;
	if (!in->output) {
		*id = s->id;
		return 0;
	}
	return store_output_id(e, &en->st, &s->id, in->output, id);
}

static int input_id(engine *en, int i, size_t j, hkey *id) { return input_id_e(&en->err, en, i, j, id); }

/* Computes node i's stage key when all its inputs are known. 1 done, 0 not
 * yet, -1 error. */
static int compute_key(engine *en, int i)
{
	dag_node *n = &en->g.nodes[i];
	key_input *ki = xcalloc(n->nin ? n->nin : 1, sizeof *ki);
	int rc = 1;
	for (size_t j = 0; j < n->nin && rc == 1; j++) {
		ki[j].slot = n->in[j].slot;
		ki[j].label = sched_input_label(en, i, j);
		if (!en->ns[n->in[j].node].known)
			rc = 0; /* not known yet */
		else if (input_id(en, i, j, &ki[j].id) != 0)
			rc = -1;
	}
	if (rc == 1) {
		/* a custom Lua stage can read its own name (ctx.stage) */
		const char *name = !strcmp(n->kernel, "lua") ? n->name : NULL;
		key_stage(&en->ns[i].key, n->kind, n->kernel, n->version, name, n->params, ki, n->nin);
		en->ns[i].has_key = 1;
	}
	for (size_t j = 0; j < n->nin; j++)
		free((char *)ki[j].label);
	free(ki);
	return rc;
}

/* ---- the read-only plan ----------------------------------------------------- */

int sched_plan(engine *en)
{
	size_t n = en->g.n;
	if (!en->ns)
		en->ns = xcalloc(n, sizeof *en->ns);
	int *order = xmalloc(n * sizeof *order);
	dag_topo(&en->g, order);
	int rc = 0;
	for (size_t k = 0; k < n && rc == 0; k++) {
		int i = order[k];
		dag_node *d = &en->g.nodes[i];
		node_state *s = &en->ns[i];
		if (d->type == NODE_SOURCE) {
			rc = statcache_id(en->sc, &en->err, d->path, &s->id, &s->bytes);
			if (rc)
				herr_set(&en->err, "%s: input not readable: %s", d->where, d->name);
			s->known = rc == 0;
			s->state = 2;
			continue;
		}
		int got = compute_key(en, i);
		if (got < 0) {
			rc = -1;
			break;
		}
		hkey obj;
		char *m = NULL;
		if (got == 1 && !is_forced(en, d->name) && store_key_get(&en->st, &s->key, &obj, &m)) {
			s->state = 2;
			s->known = 1;
			s->cached = 1;
			s->id = obj;
			free(s->metrics);
			s->metrics = m;
		} else {
			s->state = 5;
		}
	}
	free(order);
	return rc;
}

/* ---- running -------------------------------------------------------------- */

struct runner;

typedef struct task {
	engine *en;
	struct runner *r;
	int started;    /* a thread runs (or ran) it */
	int node;
	kinput *in;
	char **labels, **paths;
	size_t nin;
	char *workdir;
	kctx kc;
	herr err;
	double timeout;  /* seconds, 0 = none */
	int rc, finished, joined;
	hkey obj;
	uint64_t bytes;
	double t0, t1;
	pthread_t th;
} task;

typedef struct runner {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	task **tasks;    /* started and not collected yet (at most -j) */
	size_t ntasks;
	int running;
	double last_plain;
	int drawn;
	const int *order; /* the run's topological order */
	const int *pos;   /* node -> position in it */
	dsl_pool *lua;   /* the run's Lua states */
	dag_rev rev;     /* the stages reading each node */
} runner;

static void *worker(void *arg)
{
	task *t = arg;
	engine *en = t->en;
	dag_node *d = &en->g.nodes[t->node];
	if (d->type == NODE_SOURCE) {
		t->rc = statcache_id(en->sc, &t->err, d->path, &t->obj, &t->bytes);
	} else {
		const kernel_def *k = kernel_find(d->kernel);
		t->rc = k->run(&t->kc, d->params, t->in, t->nin, t->workdir);
		int stop = atomic_load(&t->kc.stop);
		if (stop) {
			/* asked to stop: what it made, if anything, is not kept */
			t->rc = -1;
			if (stop == 2)
				herr_set(&t->err, "timed out after %g s", t->timeout);
			else
				herr_set(&t->err, "interrupted");
			if (stop == 2)
				herr_hint(&t->err, "raise its timeout (seconds), or --set %s.timeout=N", d->name);
		} else if (t->rc != 0) {
			t->err = t->kc.err;
			if (!t->err.msg[0])
				herr_set(&t->err, "kernel %s failed without a message", d->kernel);
		}
		if (t->rc == 0)
			t->rc = objcheck_dir(&t->err, t->workdir);
		if (t->rc == 0)
			t->rc = store_publish(&t->err, &en->st, t->workdir, &t->obj);
		if (t->rc == 0) {
			char *m = xasprintf("{%s}", t->kc.metrics.p ? t->kc.metrics.p : "");
			t->rc = store_key_put(&t->err, &en->st, &en->ns[t->node].key, &t->obj, m);
			free(m);
		}
		if (t->rc == 0 && t->kc.scratch && fs_exists(t->kc.scratch)) {
			herr tmp;
			fs_rmtree(&tmp, t->kc.scratch);
		}
		if (t->rc != 0) {
			herr tmp;
			fs_rmtree(&tmp, t->workdir);
		}
	}
	t->t1 = now_seconds();
	pthread_mutex_lock(t->kc.mu);
	t->finished = 1;
	pthread_cond_broadcast(&t->r->cv);
	pthread_mutex_unlock(t->kc.mu);
	return NULL;
}

static void fmt_rate(char *out, size_t n, double per_s, const char *unit)
{
	if (!strcmp(unit, "B")) {
		char b[32];
		fmt_bytes(b, per_s);
		snprintf(out, n, "%s/s", b);
	} else if (per_s >= 1e6) {
		snprintf(out, n, "%.1fM %s/s", per_s / 1e6, unit);
	} else if (per_s >= 1e4) {
		snprintf(out, n, "%.1fk %s/s", per_s / 1e3, unit);
	} else {
		snprintf(out, n, "%.0f %s/s", per_s, unit);
	}
}

static void fmt_eta(char *out, size_t n, double s)
{
	if (s < 0 || s > 1e7)
		snprintf(out, n, "?");
	else if (s >= 3600)
		snprintf(out, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
	else
		snprintf(out, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

/* One task's progress as text; call with the mutex held. */
static void progress_text(task *t, char *out, size_t n, int bar)
{
	engine *en = t->en;
	const char *name = en->g.nodes[t->node].name;
	double now = now_seconds(), el = now - t->t0;
	kctx *c = &t->kc;
	char rate[48] = "", eta[24] = "";
	/* a resumed stage counts only what this process did (kctx_progress_from) */
	double per_s, left;
	kctx_rate(c, now, &per_s, &left);
	if (per_s > 0)
		fmt_rate(rate, sizeof rate, per_s, c->unit);
	if (c->total > 0 && c->done > 0) {
		double frac = c->done / c->total;
		if (frac > 1)
			frac = 1;
		fmt_eta(eta, sizeof eta, left);
		char b[24];
		int w = 20, full = (int)(frac * w);
		for (int i = 0; i < w; i++)
			b[i] = i < full ? '=' : (i == full ? '>' : ' ');
		b[w] = 0;
		if (bar)
			snprintf(out, n, "%-14s [%s] %3.0f%% %s ETA %s%s%s", name, b, frac * 100, rate, eta,
			         c->note[0] ? "  " : "", c->note);
		else
			snprintf(out, n, "%s: %.0f%% %s ETA %s%s%s", name, frac * 100, rate, eta, c->note[0] ? "  " : "", c->note);
	} else if (c->done > 0) {
		snprintf(out, n, "%s: %s (%.0fs)%s%s", name, rate, el, c->note[0] ? "  " : "", c->note);
	} else {
		snprintf(out, n, "%s: running (%.0fs)", name, el);
	}
}

static void clear_line(engine *en, runner *r)
{
	if (en->tty && r->drawn) {
		fputs("\r\033[K", en->msg);
		r->drawn = 0;
	}
}

static void draw_progress(engine *en, runner *r)
{
	double now = now_seconds();
	char line[400];
	if (en->tty) {
		int shown = 0, more = 0;
		for (size_t i = 0; i < r->ntasks; i++) {
			task *t = r->tasks[i];
			if (t->finished || en->g.nodes[t->node].type == NODE_SOURCE)
				continue;
			if (!shown) {
				progress_text(t, line, sizeof line, 1);
				shown = 1;
			} else {
				more++;
			}
		}
		if (shown) {
			fprintf(en->msg, "\r\033[K  %s", line);
			if (more)
				fprintf(en->msg, " (+%d running)", more);
			fflush(en->msg);
			r->drawn = 1;
		}
	} else if (now - r->last_plain >= 10) {
		r->last_plain = now;
		for (size_t i = 0; i < r->ntasks; i++) {
			task *t = r->tasks[i];
			if (t->finished || now - t->t0 < 5 || en->g.nodes[t->node].type == NODE_SOURCE)
				continue;
			progress_text(t, line, sizeof line, 0);
			fprintf(en->msg, "  ... %s\n", line);
		}
		fflush(en->msg);
	}
}

/* "{"a":1,"b":"x"}" -> "a=1 b=x" for the one-line report; when that does
 * not fit in n bytes, as many whole key=value pairs as fit, then "...". */
static void metrics_short(const char *m, char *out, size_t n)
{
	buf b;
	buf_init(&b);
	for (const char *p = m; *p; p++) {
		if (*p == '{' || *p == '}' || *p == '"')
			continue;
		buf_addc(&b, *p == ':' ? '=' : (*p == ',' ? ' ' : *p));
	}
	const char *all = b.p ? b.p : "";
	if (b.len < n) {
		snprintf(out, n, "%s", all);
	} else {
		size_t cut = 0; /* the last pair boundary leaving room for " ..." */
		for (size_t i = 0; i < b.len && i + 4 < n; i++)
			if (all[i] == ' ')
				cut = i;
		snprintf(out, n, "%.*s%s...", (int)cut, all, cut ? " " : "");
	}
	buf_free(&b);
}

static void report(engine *en, runner *r, int i, const char *status)
{
	if (en->quiet)
		return;
	node_state *s = &en->ns[i];
	char ms[160] = "";
	if (s->metrics)
		metrics_short(s->metrics, ms, sizeof ms);
	if (r)
		clear_line(en, r);
	fprintf(en->out, "  %-9s %-18s %8.2fs%s%s\n", status, en->g.nodes[i].name, s->seconds,
	        ms[0] ? "  " : "", ms);
	fflush(en->out);
}

/* Input j of node i's content id in hex, "" when not known yet. */
static void input_hex(engine *en, int i, size_t j, char hex[HKEY_HEX])
{
	hkey id;
	herr e;
	hex[0] = 0;
	if (input_id_e(&e, en, i, j, &id) == 0)
		hkey_hex(&id, hex);
}

static char *inputs_text(engine *en, int i)
{
	buf b;
	buf_init(&b);
	dag_node *d = &en->g.nodes[i];
	for (size_t j = 0; j < d->nin; j++) {
		char hex[HKEY_HEX];
		input_hex(en, i, j, hex);
		char *label = sched_input_label(en, i, j);
		buf_printf(&b, "%s\t%s\t%s\n", d->in[j].slot, label, hex);
		free(label);
	}
	return buf_take(&b);
}

/* Every stage and source upstream of node i (and i itself), in the run's
 * topological order, as a JSON array: enough to re-run the experiment.
 * Reads only settled nodes, so a kernel's thread may call it. */
static char *lineage_json(engine *en, const int *order, int i)
{
	size_t n = en->g.n;
	char *up = xcalloc(n, 1);
	up[i] = 1;
	for (size_t k = n; k-- > 0;) {
		int v = order[k];
		if (up[v])
			for (size_t j = 0; j < en->g.nodes[v].nin; j++)
				up[en->g.nodes[v].in[j].node] = 1;
	}
	buf b;
	buf_init(&b);
	buf_addc(&b, '[');
	int first = 1;
	for (size_t k = 0; k < n; k++) {
		int v = order[k];
		if (!up[v])
			continue;
		const dag_node *d = &en->g.nodes[v];
		const node_state *s = &en->ns[v];
		char hex[HKEY_HEX] = "";
		buf_adds(&b, first ? "\n" : ",\n");
		first = 0;
		if (d->type == NODE_SOURCE) {
			if (s->known)
				hkey_hex(&s->id, hex);
			buf_adds(&b, "{\"source\":");
			buf_json_str(&b, d->name);
			buf_adds(&b, ",\"content\":");
			buf_json_str(&b, hex);
			buf_addc(&b, '}');
			continue;
		}
		if (s->has_key)
			hkey_hex(&s->key, hex);
		buf_adds(&b, "{\"stage\":");
		buf_json_str(&b, d->name);
		buf_adds(&b, ",\"kind\":");
		buf_json_str(&b, d->kind);
		buf_adds(&b, ",\"kernel\":");
		buf_json_str(&b, d->kernel);
		buf_printf(&b, ",\"version\":%d,\"key\":", d->version);
		buf_json_str(&b, hex);
		buf_adds(&b, ",\"params\":");
		hval_json(&b, d->params);
		buf_adds(&b, ",\"inputs\":[");
		for (size_t j = 0; j < d->nin; j++) {
			char ih[HKEY_HEX];
			input_hex(en, v, j, ih);
			char *label = sched_input_label(en, v, j);
			buf_adds(&b, j ? ",{\"slot\":" : "{\"slot\":");
			buf_json_str(&b, d->in[j].slot);
			buf_adds(&b, ",\"from\":");
			buf_json_str(&b, label);
			buf_adds(&b, ",\"content\":");
			buf_json_str(&b, ih);
			buf_addc(&b, '}');
			free(label);
		}
		buf_adds(&b, "]}");
	}
	buf_adds(&b, "\n]\n");
	free(up);
	return buf_take(&b);
}

/* kctx_lineage's callback: only the kernels that record it pay for it. */
static char *task_lineage(kctx *c)
{
	task *t = c->lineage_ud;
	return lineage_json(t->en, t->r->order, t->node);
}

static task *start_task(engine *en, runner *r, int i)
{
	dag_node *d = &en->g.nodes[i];
	task *t = xcalloc(1, sizeof *t);
	t->en = en;
	t->node = i;
	kctx_init(&t->kc, d->name, &r->mu);
	t->kc.node = i;
	t->r = r;
	t->kc.dsl = &en->dsl;
	t->kc.threads = en->threads > 0 ? en->threads : 1;
	t->t0 = now_seconds();
	if (d->type == NODE_STAGE) {
		t->nin = d->nin;
		t->in = xcalloc(d->nin ? d->nin : 1, sizeof *t->in);
		t->labels = xcalloc(d->nin ? d->nin : 1, sizeof *t->labels);
		t->paths = xcalloc(d->nin ? d->nin : 1, sizeof *t->paths);
		for (size_t j = 0; j < d->nin; j++) {
			t->labels[j] = sched_input_label(en, i, j);
			t->paths[j] = sched_output_path(en, d->in[j].node, d->in[j].output);
			t->in[j].slot = d->in[j].slot;
			t->in[j].label = t->labels[j];
			t->in[j].path = t->paths[j];
			t->in[j].is_dir = fs_is_dir(t->paths[j]);
		}
		char hex[HKEY_HEX];
		hkey_hex(&en->ns[i].key, hex);
		char *rel = xasprintf("work/%s", hex);
		t->kc.scratch = path_join(en->st.root, rel);
		free(rel);
		t->kc.lineage_fn = task_lineage;
		t->kc.lineage_ud = t;
		t->kc.lua = r->lua;
		t->timeout = d->timeout;
		t->workdir = store_tmpdir(&t->err, &en->st, d->name);
		if (!t->workdir) {
			t->rc = -1;
			t->finished = 1;
			t->joined = 1;
			return t;
		}
	}
	/* signals are for the scheduler's thread (sched_run), not the kernels' */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int failed = pthread_create(&t->th, NULL, worker, t) != 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (failed) {
		herr_set(&t->err, "cannot start a thread: %s", strerror(errno));
		t->rc = -1;
		t->finished = 1;
		t->joined = 1;
	} else {
		t->started = 1;
		r->running++;
	}
	return t;
}

static void task_free(task *t)
{
	for (size_t j = 0; j < t->nin; j++) {
		free(t->labels[j]);
		free(t->paths[j]);
	}
	free(t->labels);
	free(t->paths);
	free(t->in);
	free(t->workdir);
	kctx_free(&t->kc);
	free(t);
}

/* ---- signals ----------------------------------------------------------------- */

/* The one process-wide state of the engine: which signal (SIGINT, SIGTERM)
 * asked the run to stop. A handler can do nothing else safely; sched_run
 * polls it. */
static volatile sig_atomic_t got_signal;

static void on_signal(int sig) { got_signal = sig; }

/* Catches SIGINT and SIGTERM once (a second one acts as usual: the process
 * ends at once; the store stays valid and `gc` collects what was left). */
static void catch_signals(struct sigaction old[2])
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	got_signal = 0;
	sigaction(SIGINT, &sa, &old[0]);
	sigaction(SIGTERM, &sa, &old[1]);
}

static void restore_signals(const struct sigaction old[2])
{
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGTERM, &old[1], NULL);
}

/* ---- the run ------------------------------------------------------------------ */

typedef struct plan {
	int *pending;    /* inputs whose producer has not settled */
	char *blocked;   /* an input failed or was not run */
	dag_heap ready;  /* inputs settled, not looked at yet; keyed by position */
	dag_heap runq;   /* to run (cache miss, or a source to hash); by position */
	size_t settled;
} plan;

/* Node i is settled (done, failed, not run): its readers learn it. */
static void settle(engine *en, runner *r, plan *p, int i)
{
	int bad = en->ns[i].state == 3 || en->ns[i].state == 4;
	p->settled++;
	for (size_t e = r->rev.off[i]; e < r->rev.off[i + 1]; e++) {
		int c = r->rev.to[e];
		if (bad)
			p->blocked[c] = 1;
		if (--p->pending[c] == 0)
			dag_heap_push(&p->ready, r->pos[c], c);
	}
}

int sched_run(engine *en)
{
	if (en->dry_run) {
		if (sched_plan(en) != 0)
			return -1;
		int *order = xmalloc((en->g.n ? en->g.n : 1) * sizeof *order);
		dag_topo(&en->g, order);
		size_t would = 0;
		for (size_t k = 0; k < en->g.n; k++) {
			int i = order[k];
			if (en->g.nodes[i].type != NODE_STAGE)
				continue;
			int run = en->ns[i].state != 2;
			would += run;
			fprintf(en->out, "  %-9s %s\n", run ? "would run" : "cached", en->g.nodes[i].name);
		}
		fprintf(en->out, "hone: dry run: %zu stage%s would run\n", would, would == 1 ? "" : "s");
		free(order);
		return 0;
	}
	if (store_lock(&en->err, &en->st) != 0)
		return -1;
	size_t n = en->g.n;
	en->ns = xcalloc(n ? n : 1, sizeof *en->ns);
	runner r;
	memset(&r, 0, sizeof r);
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	r.last_plain = now_seconds();
	double t0 = now_seconds();
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	/* one order, one reverse index, and the ready set kept as nodes settle */
	int *order = xmalloc((n ? n : 1) * sizeof *order);
	int *pos = xmalloc((n ? n : 1) * sizeof *pos);
	dag_topo(&en->g, order);
	for (size_t k = 0; k < n; k++)
		pos[order[k]] = (int)k;
	r.order = order;
	r.pos = pos;
	dag_rev_build(&en->g, &r.rev);
	r.lua = dsl_pool_new();
	plan p;
	memset(&p, 0, sizeof p);
	p.pending = xcalloc(n ? n : 1, sizeof *p.pending);
	p.blocked = xcalloc(n ? n : 1, 1);
	for (size_t i = 0; i < n; i++) {
		p.pending[i] = (int)en->g.nodes[i].nin;
		if (!p.pending[i])
			dag_heap_push(&p.ready, pos[i], (int)i);
	}
	struct sigaction old_sig[2];
	catch_signals(old_sig);
	int failed = 0, ran = 0, cached = 0, skipped = 0, stopping = 0;
	herr first_err;
	first_err.msg[0] = 0;
	first_err.hint[0] = 0;

	pthread_mutex_lock(&r.mu);
	while (p.settled < n) {
		int progressed = 0;
		if (got_signal && !stopping) {
			/* stop the running stages; start nothing more */
			stopping = got_signal;
			for (size_t k = 0; k < r.ntasks; k++)
				atomic_store(&r.tasks[k]->kc.stop, 1);
			pthread_mutex_unlock(&r.mu);
			clear_line(en, &r);
			fprintf(en->msg, "hone: interrupted: stopping %d running stage%s (again to quit at once)\n",
			        r.running, r.running == 1 ? "" : "s");
			fflush(en->msg);
			pthread_mutex_lock(&r.mu);
		}
		/* stages past their timeout are asked to stop */
		double now = now_seconds();
		for (size_t k = 0; k < r.ntasks; k++) {
			task *t = r.tasks[k];
			if (!t->finished && t->timeout > 0 && now - t->t0 >= t->timeout && !atomic_load(&t->kc.stop))
				atomic_store(&t->kc.stop, 2);
		}
		/* collect finished tasks */
		for (size_t k = 0; k < r.ntasks;) {
			task *t = r.tasks[k];
			if (!t->finished) {
				k++;
				continue;
			}
			if (!t->joined)
				pthread_join(t->th, NULL);
			r.tasks[k] = r.tasks[--r.ntasks];
			r.running -= t->started;
			node_state *s = &en->ns[t->node];
			dag_node *d = &en->g.nodes[t->node];
			s->seconds = t->t1 - t->t0;
			int stop = atomic_load(&t->kc.stop);
			if (t->rc == 0) {
				s->state = 2;
				s->known = 1;
				s->id = t->obj;
				s->bytes = t->bytes;
				if (d->type == NODE_STAGE) {
					s->metrics = xasprintf("{%s}", t->kc.metrics.p ? t->kc.metrics.p : "");
					ran++;
					pthread_mutex_unlock(&r.mu);
					report(en, &r, t->node, "ran");
					if (t->kc.log.len && !en->quiet)
						fprintf(en->msg, "%s", t->kc.log.p);
					pthread_mutex_lock(&r.mu);
				}
			} else if (stop == 1) {
				/* interrupted: not a failure of the stage */
				s->state = 4;
				s->stopped = 1;
				skipped += d->type == NODE_STAGE;
				if (d->type == NODE_STAGE) {
					pthread_mutex_unlock(&r.mu);
					report(en, &r, t->node, "stopped");
					pthread_mutex_lock(&r.mu);
				}
			} else {
				s->state = 3;
				failed++;
				s->error = xstrdup(t->err.msg);
				if (!first_err.msg[0]) {
					first_err = t->err;
					if (d->type == NODE_STAGE)
						herr_prefix(&first_err, "stage %s", d->name);
				}
				if (d->type == NODE_STAGE) {
					pthread_mutex_unlock(&r.mu);
					report(en, &r, t->node, "FAILED");
					pthread_mutex_lock(&r.mu);
				}
			}
			settle(en, &r, &p, t->node);
			task_free(t);
			progressed = 1;
		}
		/* look at what became ready: skip it, reuse it, or queue it */
		while (p.ready.n) {
			int i = dag_heap_pop(&p.ready);
			node_state *s = &en->ns[i];
			dag_node *d = &en->g.nodes[i];
			progressed = 1;
			if (p.blocked[i] || stopping || (failed && d->type == NODE_STAGE)) {
				s->state = 4;
				skipped += d->type == NODE_STAGE;
				settle(en, &r, &p, i);
				continue;
			}
			if (d->type == NODE_STAGE) {
				pthread_mutex_unlock(&r.mu);
				int got = compute_key(en, i);
				hkey obj;
				char *m = NULL;
				int hit = got == 1 && !is_forced(en, d->name) &&
				          store_key_get(&en->st, &s->key, &obj, &m);
				pthread_mutex_lock(&r.mu);
				if (got < 0) {
					s->state = 3;
					failed++;
					if (!first_err.msg[0])
						first_err = en->err;
					settle(en, &r, &p, i);
					continue;
				}
				if (hit) {
					s->state = 2;
					s->known = 1;
					s->cached = 1;
					s->id = obj;
					s->metrics = m;
					cached++;
					pthread_mutex_unlock(&r.mu);
					report(en, &r, i, "cached");
					pthread_mutex_lock(&r.mu);
					settle(en, &r, &p, i);
					continue;
				}
			} else if (statcache_peek(en->sc, d->path, &s->id, &s->bytes)) {
				/* known unchanged file: no need for a hashing task */
				s->state = 2;
				s->known = 1;
				settle(en, &r, &p, i);
				continue;
			}
			dag_heap_push(&p.runq, pos[i], i);
		}
		/* start what is queued, lowest position first, up to -j at once */
		while (p.runq.n && r.running < en->jobs) {
			int i = dag_heap_pop(&p.runq);
			node_state *s = &en->ns[i];
			dag_node *d = &en->g.nodes[i];
			progressed = 1;
			if (stopping || (failed && d->type == NODE_STAGE)) {
				s->state = 4;
				skipped += d->type == NODE_STAGE;
				settle(en, &r, &p, i);
				continue;
			}
			s->state = 1;
			task *t = start_task(en, &r, i);
			r.tasks = xrealloc(r.tasks, (r.ntasks + 1) * sizeof *r.tasks);
			r.tasks[r.ntasks++] = t;
		}
		if (p.settled >= n)
			break;
		if (!progressed) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L)
				ts.tv_sec++, ts.tv_nsec -= 1000000000L;
			pthread_cond_timedwait(&r.cv, &r.mu, &ts);
			draw_progress(en, &r);
		}
	}
	pthread_mutex_unlock(&r.mu);
	clear_line(en, &r);
	double secs = now_seconds() - t0;

	/* the run record */
	herr e2;
	statcache_save(en->sc, &e2);
	runlog_run run;
	memset(&run, 0, sizeof run);
	run.started = (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9;
	run.seconds = secs;
	run.pipeline = en->dsl.script_abs;
	run.args = en->args;
	run.status = stopping ? "interrupted" : failed ? "failed" : "ok";
	run.ran = ran;
	run.cached = cached;
	run.failed = failed;
	run.stages = xcalloc(n ? n : 1, sizeof *run.stages);
	for (size_t k = 0; k < n; k++) {
		int i = order[k];
		dag_node *d = &en->g.nodes[i];
		node_state *s = &en->ns[i];
		if (d->type != NODE_STAGE || (s->state != 2 && s->state != 3 && !s->stopped))
			continue;
		runlog_stage *rs = &run.stages[run.nstages++];
		rs->name = d->name;
		rs->kind = d->kind;
		rs->kernel = d->kernel;
		rs->version = d->version;
		if (s->has_key)
			hkey_hex(&s->key, rs->key);
		if (s->known)
			hkey_hex(&s->id, rs->object);
		rs->status = s->stopped ? "stopped" : s->state == 3 ? "failed" : (s->cached ? "cached" : "ran");
		rs->seconds = s->seconds;
		buf p;
		buf_init(&p);
		hval_encode_lines(&p, d->params);
		rs->params = buf_take(&p);
		rs->inputs = inputs_text(en, i);
		rs->metrics = s->metrics ? s->metrics : "{}";
	}
	int rc = engine_open_runlog(en);
	if (rc == 0)
		rc = runlog_add(&en->err, en->rl, &run);
	if (rc != 0)
		fprintf(en->msg, "hone: warning: run not recorded: %s\n", en->err.msg);
	en->run_id = run.id;
	for (size_t k = 0; k < run.nstages; k++) {
		free(run.stages[k].params);
		free(run.stages[k].inputs);
	}
	free(run.stages);

	free(r.tasks);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	dsl_pool_free(r.lua);
	free(p.pending);
	free(p.blocked);
	dag_heap_free(&p.ready);
	dag_heap_free(&p.runq);

	/* copies of outputs the script asked for (export's `to`) */
	for (size_t k = 0; !failed && !stopping && k < n; k++) {
		int i = order[k];
		const dag_node *d = &en->g.nodes[i];
		const kernel_def *kd = d->type == NODE_STAGE ? kernel_find(d->kernel) : NULL;
		const char *to = kd && kd->materialize ? hval_get_str(d->params, "to", NULL) : NULL;
		if (!to || !en->ns[i].known)
			continue;
		char *obj = sched_output_path(en, i, NULL);
		/* the first of the kernel's |-separated files that the output has */
		char name[64];
		const char *m = kd->materialize;
		for (;;) {
			const char *bar = strchr(m, '|');
			size_t l = bar ? (size_t)(bar - m) : strlen(m);
			snprintf(name, sizeof name, "%.*s", (int)l, m);
			char *cand = path_join(obj, name);
			int ok = fs_exists(cand);
			free(cand);
			if (ok || !bar)
				break;
			m = bar + 1;
		}
		char *src = path_join(obj, name), *dst = path_resolve(en->dsl.base, to);
		buf a, b;
		buf_init(&a);
		buf_init(&b);
		herr tmp;
		if (fs_read(&en->err, src, &a) != 0) {
			first_err = en->err;
			failed++;
		} else if (!fs_exists(dst) || fs_read(&tmp, dst, &b) != 0 || a.len != b.len || memcmp(a.p, b.p, a.len)) {
			char *dir = path_dirname(dst);
			if (fs_mkdirs(&first_err, dir) != 0 || fs_write_atomic(&first_err, dst, a.p, a.len) != 0)
				failed++;
			else if (!en->quiet)
				fprintf(en->out, "  wrote     %s\n", to);
			free(dir);
		}
		buf_free(&a);
		buf_free(&b);
		free(obj);
		free(src);
		free(dst);
	}
	if (stopping) {
		/* what was finished is kept (cached for the next run); the rest is not */
		fprintf(en->msg, "hone: interrupted: %d ran, %d cached, %d not run (run %lld)\n", ran, cached,
		        skipped, en->run_id);
		fprintf(en->msg, "hint: `hone run` again goes on from there; `hone runs -1` shows this run\n");
	} else if (!en->quiet) {
		fprintf(en->out, "hone: %d ran, %d cached", ran, cached);
		if (failed)
			fprintf(en->out, ", %d failed", failed);
		if (skipped)
			fprintf(en->out, ", %d not run", skipped);
		fprintf(en->out, " in %.2fs (run %lld)\n", secs, en->run_id);
		if (!failed) {
			char cwd[4096];
			if (!getcwd(cwd, sizeof cwd))
				cwd[0] = 0;
			int header = 0;
			for (size_t k = 0; k < n; k++) {
				int i = order[k];
				if (en->g.nodes[i].type != NODE_STAGE || r.rev.off[i + 1] > r.rev.off[i])
					continue;
				if (!header++)
					fprintf(en->out, "outputs:\n");
				char *p = sched_output_path(en, i, NULL);
				char *rel = path_relative(cwd, p);
				fprintf(en->out, "  %-18s %s/\n", en->g.nodes[i].name, rel);
				free(rel);
				free(p);
			}
		}
	}
	free(order);
	free(pos);
	dag_rev_free(&r.rev);
	restore_signals(old_sig);
	store_unlock(&en->st);
	if (stopping) {
		en->interrupted = stopping;
		herr_set(&en->err, "interrupted");
		return -1;
	}
	if (failed) {
		en->err = first_err;
		return -1;
	}
	return 0;
}



/* ---- status ------------------------------------------------------------------ */

/* Value of "key=..." in params lines, or NULL. Caller frees. */
static char *line_value(const char *lines, const char *key, size_t klen)
{
	const char *p = lines;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > klen && !strncmp(p, key, klen) && p[klen] == '=')
			return xstrndup(p + klen + 1, len - klen - 1);
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static void diff_params(buf *why, const char *old, const char *now)
{
	/* keys of both, in order */
	const char *sides[2] = {now, old};
	for (int s = 0; s < 2; s++) {
		const char *p = sides[s];
		while (p && *p) {
			const char *nl = strchr(p, '\n');
			const char *eq = strchr(p, '=');
			if (!eq || (nl && eq > nl))
				break;
			size_t kl = (size_t)(eq - p);
			char *key = xstrndup(p, kl);
			char *a = line_value(old, key, kl), *b = line_value(now, key, kl);
			if (s == 1 && b) {
				/* seen already from the new side */
			} else if (!a || !b || strcmp(a, b)) {
				if (why->len)
					buf_adds(why, "; ");
				if ((a && !strncmp(a, "fn:", 3)) || (b && !strncmp(b, "fn:", 3)))
					buf_printf(why, "function '%s' changed", key);
				else if (!a)
					buf_printf(why, "param added: %s=%s", key, b);
				else if (!b)
					buf_printf(why, "param removed: %s (was %s)", key, a);
				else
					buf_printf(why, "params changed: %s %s -> %s", key, a, b);
			}
			free(a);
			free(b);
			free(key);
			p = nl ? nl + 1 : NULL;
		}
	}
}

/* Appends a reason to why ("a; b"), unless it is there already: two inputs
 * from one stale stage make one reason. */
static void add_reason(buf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reason(buf *why, const char *fmt, ...)
{
	buf r;
	buf_init(&r);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&r, fmt, ap);
	va_end(ap);
	for (const char *p = why->p; p && *p;) {
		const char *end = strstr(p, "; ");
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == r.len && !memcmp(p, r.p, len)) {
			buf_free(&r);
			return;
		}
		p = end ? end + 2 : NULL;
	}
	if (why->len)
		buf_adds(why, "; ");
	buf_adds(why, r.p ? r.p : "");
	buf_free(&r);
}

/* one stage of status --json */
static void status_json_stage(buf *j, const dag_node *d, const node_state *s, const char *why)
{
	buf_adds(j, j->len && j->p[j->len - 1] == '[' ? "\n  {\"stage\": " : ",\n  {\"stage\": ");
	buf_json_str(j, d->name);
	buf_adds(j, ", \"kind\": ");
	buf_json_str(j, d->kind);
	if (!why) {
		char hex[HKEY_HEX];
		hkey_hex(&s->id, hex);
		buf_printf(j, ", \"state\": \"up-to-date\", \"object\": \"%s\"}", hex);
		return;
	}
	buf_adds(j, ", \"state\": \"stale\", \"reasons\": [");
	for (const char *p = why; *p;) {
		const char *e = strstr(p, "; ");
		size_t n = e ? (size_t)(e - p) : strlen(p);
		buf_adds(j, p == why ? "" : ", ");
		buf_json_strn(j, p, n);
		p += n + (e ? 2 : 0);
	}
	buf_adds(j, "]}");
}

int sched_status(engine *en, FILE *out, int json)
{
	if (sched_plan(en) != 0)
		return -1;
	/* no store: no run log either (and none is made); every stage never ran */
	if (fs_is_dir(en->cache_root) && engine_open_runlog(en) != 0)
		return -1;
	int *order = xmalloc(en->g.n * sizeof *order);
	dag_topo(&en->g, order);
	size_t stale = 0, total = 0;
	buf j;
	buf_init(&j);
	if (json) {
		buf_adds(&j, "{\"pipeline\": ");
		buf_json_str(&j, en->dsl.script);
		buf_adds(&j, ", \"cache\": ");
		buf_json_str(&j, en->cache_root);
		buf_adds(&j, ", \"stages\": [");
	}
	for (size_t k = 0; k < en->g.n; k++) {
		int i = order[k];
		dag_node *d = &en->g.nodes[i];
		node_state *s = &en->ns[i];
		if (d->type != NODE_STAGE)
			continue;
		total++;
		if (s->state == 2) {
			if (json)
				status_json_stage(&j, d, s, NULL);
			else
				fprintf(out, "  %-10s %s\n", "up to date", d->name);
			continue;
		}
		stale++;
		buf why;
		buf_init(&why);
		runlog_stage rec;
		memset(&rec, 0, sizeof rec);
		int found = en->rl ? runlog_last_stage(&en->err, en->rl, en->dsl.script_abs, d->name, &rec) : 0;
		if (found <= 0 && en->rl)
			found = runlog_last_stage(&en->err, en->rl, NULL, d->name, &rec);
		if (is_forced(en, d->name))
			buf_adds(&why, "forced");
		if (found <= 0) {
			if (!why.len)
				buf_adds(&why, "never run");
		} else {
			if (strcmp(rec.kernel, d->kernel) || rec.version != d->version)
				buf_printf(&why, "%skernel version changed: %s %d -> %s %d", why.len ? "; " : "",
				           rec.kernel, rec.version, d->kernel, d->version);
			buf p;
			buf_init(&p);
			hval_encode_lines(&p, d->params);
			diff_params(&why, rec.params, p.p ? p.p : "");
			buf_free(&p);
			for (size_t j = 0; j < d->nin; j++) {
				int from = d->in[j].node;
				char *label = sched_input_label(en, i, j);
				hkey id;
				if (!en->ns[from].known) {
					add_reason(&why, "upstream stage %s is stale", en->g.nodes[from].name);
				} else if (input_id(en, i, j, &id) == 0) {
					char hex[HKEY_HEX], want[128];
					hkey_hex(&id, hex);
					snprintf(want, sizeof want, "%s\t%s\t", d->in[j].slot, label);
					const char *old = strstr(rec.inputs, want);
					if (!old || strncmp(old + strlen(want), hex, 32) != 0) {
						if (en->g.nodes[from].type == NODE_SOURCE)
							add_reason(&why, "input changed: %s", label);
						else
							add_reason(&why, "upstream stage %s changed", en->g.nodes[from].name);
					}
				}
				free(label);
			}
			if (!why.len)
				buf_adds(&why, "output no longer in the cache (removed by gc or verify --repair)");
			runlog_stage_free(&rec);
		}
		if (json)
			status_json_stage(&j, d, s, why.p);
		else
			fprintf(out, "  %-10s %-18s %s\n", "stale", d->name, why.p);
		buf_free(&why);
	}
	if (json) {
		buf_printf(&j, "\n], \"stale\": %zu, \"total\": %zu}\n", stale, total);
		fwrite(j.p, 1, j.len, out);
	} else {
		fprintf(out, "hone: %zu of %zu stage%s stale\n", stale, total, total == 1 ? "" : "s");
	}
	buf_free(&j);
	free(order);
	return 0;
}
