#include "cli.h"
#include "predict.h"
#include "forward.h"
#include "generate.h"
#include "serve/serve.h"
#include "io/bpe.h"
#include "io/wordpiece.h"
#include "stages/stages.h"
#include "io/json.h"
#include <math.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/records.h"
#include "opt.h"
#include "sched.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

static const char *usage_main =
	"usage: hone COMMAND [options]\n"
	"\n"
	"commands:\n"
	"  run [FILE]            run the stale stages of a pipeline, reuse the rest\n"
	"  status [FILE]         which stages are up to date, and why the others are stale\n"
	"  dag [FILE] [--dot]    the pipeline graph, as text or Graphviz DOT\n"
	"  show [FILE] STAGE[.OUTPUT]  where a stage's output is, and a preview\n"
	"  runs [RUN]            run history; with RUN, that run's stages and metrics\n"
	"  diff RUN_A RUN_B      parameters and metrics that differ between two runs\n"
	"  gc [--keep-last N]    remove cached objects no recorded run references\n"
	"  verify [--repair]     rehash every cached object and check it\n"
	"  hash FILE...          print files' XXH3-128 content ids\n"
	"  predict BUNDLE        predictions of an exported model for JSON Lines / CSV rows\n"
	"  generate MODEL        text from a GPT-2 folder (--tokenizer, --prompt)\n"
	"  quantize MODEL        a GPT-2 as a GGUF file for llama.cpp (--to, -o)\n"
	"  forward MODEL         a model's logits and loss for given token ids\n"
	"  serve MODEL|BUNDLE    an HTTP server: OpenAI-style completions, or /predict\n"
	"\n"
	"FILE defaults to pipeline.lua. Common options:\n"
	"  --cache DIR           the store (default: $HONE_CACHE, else ./cache)\n"
	"  -h, --help            help for a command;  --version  print the version\n"
	"\n"
	"Run `hone COMMAND --help` for a command's options. Docs: docs/guide.md\n";

#define OPT_END {NULL, 0, 0, 0, 0, NULL, NULL, 0}
#define O_SET {"set", 0, OPT_STR, 0, 0, "STAGE.PARAM=VALUE", "override a parameter (repeatable; lists as {a, b})", 0}
#define O_DEVICE {"device", 0, OPT_STR, 0, 0, "cpu|cuda", "where stages with a device parameter run when the script gives none (train)", 0}
#define O_CACHE {"cache", 0, OPT_STR, 0, 0, "DIR", "the store (default: $HONE_CACHE, else the project's cache/)", 1}
#define O_JSON {"json", 0, OPT_FLAG, 0, 0, NULL, "print JSON, for scripts", 0}

static const opt_spec run_opts[] = {
	O_SET, O_DEVICE,
	{"jobs", 'j', OPT_INT, 1, 1024, "N", "run up to N independent stages at once (default 1)", 0},
	{"threads", 0, OPT_INT, 1, 4096, "N", "threads one stage may use (default: all cores; never changes outputs)", 0},
	{"dry-run", 'n', OPT_FLAG, 0, 0, NULL, "show what would run; run nothing", 0},
	{"force", 0, OPT_STR, 0, 0, "STAGE", "run STAGE even if cached (repeatable)", 0},
	{"quiet", 'q', OPT_FLAG, 0, 0, NULL, "print only errors", 0},
	O_CACHE, OPT_END};
static const opt_spec status_opts[] = {O_SET, O_DEVICE, O_JSON, O_CACHE, OPT_END};
static const opt_spec dag_opts[] = {{"dot", 0, OPT_FLAG, 0, 0, NULL, "Graphviz DOT instead of text", 0}, O_JSON, O_SET, O_DEVICE, O_CACHE, OPT_END};
static const opt_spec show_opts[] = {
	{"limit", 0, OPT_INT, 0, 1e12, "N", "rows to preview (default 10)", 0},
	{"where", 0, OPT_STR, 0, 0, "FIELD=VALUE", "preview only rows whose FIELD is VALUE", 0},
	{"jsonl", 0, OPT_FLAG, 0, 0, NULL, "a dataset's rows as JSON lines", 0},
	O_JSON, O_SET, O_DEVICE, O_CACHE, OPT_END};
static const opt_spec runs_opts[] = {{"limit", 'n', OPT_INT, 1, 1e9, "N", "list the last N runs (default 20)", 0}, O_JSON, O_CACHE, OPT_END};
static const opt_spec diff_opts[] = {O_CACHE, OPT_END};
static const opt_spec gc_opts[] = {{"keep-last", 0, OPT_INT, 1, 1e9, "N", "keep what the last N runs reference", 0}, O_CACHE, OPT_END};
static const opt_spec verify_opts[] = {{"repair", 0, OPT_FLAG, 0, 0, NULL, "remove damaged objects so they are recomputed", 0}, O_CACHE, OPT_END};
static const opt_spec none_opts[] = {OPT_END};

static const opt_verb verb_run = {"run", "[FILE]", 0, 1, NULL, run_opts, 1};
static const opt_verb verb_status = {"status", "[FILE]", 0, 1,
	"Prints every stage as up to date or stale, with the reason: params changed,\n"
	"input changed, upstream stage changed or stale, kernel version changed, never run.\n", status_opts, 1};
static const opt_verb verb_dag = {"dag", "[FILE]", 0, 1, NULL, dag_opts, 1};
static const opt_verb verb_show = {"show", "[FILE] STAGE[.OUTPUT]", 1, 2,
	"Prints where the stage's up-to-date output is and a preview of its files;\n"
	"for a dataset: its schema, row count and first rows (as a table, or JSON lines).\n", show_opts, 1};
static const opt_verb verb_runs = {"runs", "[RUN]", 0, 1, "RUN is a run number, or -1 for the latest, -2 the one before.\n", runs_opts, 0};
static const opt_verb verb_diff = {"diff", "RUN_A RUN_B", 2, 2, NULL, diff_opts, 0};
static const opt_verb verb_gc = {"gc", "", 0, 0,
	"Removes objects that no recorded run (or none of the last N runs) references.\n", gc_opts, 0};
static const opt_verb verb_verify = {"verify", "", 0, 0,
	"Rehashes every object; with --repair removes damaged ones so they are recomputed.\n", verify_opts, 0};
static const opt_verb verb_hash = {"hash", "FILE...", 1, 1 << 20, NULL, none_opts, 1};
static const opt_verb verb_completion = {"completion", "bash", 1, 1, "Prints a bash completion script: source <(hone completion bash)\n", none_opts, 0};


static int error_out(const herr *e)
{
	fprintf(stderr, "hone: error: %s\n", e->msg);
	if (e->hint[0])
		fprintf(stderr, "hint: %s\n", e->hint);
	return EXIT_FAIL;
}

/* Folder holding lua/ and stdlib/: $HONE_HOME, the executable's folder, or
 * ../share/hone beside it. */
static char *find_home(void)
{
	const char *env = getenv("HONE_HOME");
	if (env && *env)
		return path_resolve(NULL, env);
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *dir = path_dirname(exe);
		char *probe = path_join(dir, "lua/hone.lua");
		if (fs_exists(probe)) {
			free(probe);
			return dir;
		}
		free(probe);
		char *share = path_join(dir, "../share/hone");
		char *norm = path_resolve(NULL, share);
		free(share);
		free(dir);
		return norm;
	}
	return xstrdup(".");
}

static int cache_named; /* the store was named by --cache or HONE_CACHE (find_root) */

typedef struct opts {
	const char *cache;
	const char *positional[4];
	int npos;
	int dot, repair, limit, keep_last, help, jsonl, json;
	const char *where;
} opts;

/* Parses verb v's options into en and o: -1 to go on, 0 after --help,
 * EXIT_USAGE after a usage error. */
static int parse(const opt_verb *v, int argc, char **argv, engine *en, opts *o)
{
	buf args;
	buf_init(&args);
	for (int i = 0; i < argc; i++) {
		if (i)
			buf_addc(&args, ' ');
		buf_adds(&args, argv[i]);
	}
	en->args = buf_take(&args);
	opt_parsed p;
	int rc = opt_parse(v, argc, argv, &p);
	if (rc == OPT_HELP) {
		o->help = 1;
		return 0;
	}
	if (rc != OPT_OK)
		return EXIT_USAGE;
	rc = -1;
	for (size_t i = 0; i < p.nhits && rc < 0; i++) {
		const opt_hit *h = &p.hits[i];
		const char *n = h->spec->name;
		if (!strcmp(n, "cache"))
			o->cache = h->val;
		else if (!strcmp(n, "set") && dsl_add_override(&en->err, &en->dsl, h->val) != 0)
			rc = (error_out(&en->err), EXIT_USAGE);
		else if (!strcmp(n, "device")) {
			if (strcmp(h->val, "cpu") && strcmp(h->val, "cuda")) {
				herr_set(&en->err, "--device %s: expected cpu or cuda", h->val);
				rc = (error_out(&en->err), EXIT_USAGE);
			} else {
				free(en->dsl.device);
				en->dsl.device = xstrdup(h->val);
			}
		} else if (!strcmp(n, "jobs"))
			en->jobs = (int)h->i;
		else if (!strcmp(n, "threads"))
			en->threads = (int)h->i;
		else if (!strcmp(n, "dry-run"))
			en->dry_run = 1;
		else if (!strcmp(n, "force")) {
			en->force = xrealloc(en->force, (en->nforce + 1) * sizeof *en->force);
			en->force[en->nforce++] = xstrdup(h->val);
		} else if (!strcmp(n, "quiet"))
			en->quiet = 1;
		else if (!strcmp(n, "jsonl"))
			o->jsonl = 1;
		else if (!strcmp(n, "json"))
			o->json = 1;
		else if (!strcmp(n, "where"))
			o->where = h->val;
		else if (!strcmp(n, "dot"))
			o->dot = 1;
		else if (!strcmp(n, "repair"))
			o->repair = 1;
		else if (!strcmp(n, "limit"))
			o->limit = (int)(h->i > 1000000000 ? 1000000000 : h->i);
		else if (!strcmp(n, "keep-last"))
			o->keep_last = (int)h->i;
	}
	for (size_t i = 0; i < p.npos && i < 4; i++)
		o->positional[o->npos++] = p.pos[i];
	opt_free(&p);
	if (rc >= 0)
		return rc;
	if (!en->threads)
		en->threads = default_threads();
	const char *c = o->cache ? o->cache : getenv("HONE_CACHE");
	if (c && *c)
		en->cache_root = path_resolve(NULL, c);
	cache_named = c && *c;
	return -1;
}

/* The project root: the nearest folder, from dir upwards, holding
 * hone.toml, .hone, or (unless the store is named by --cache or
 * HONE_CACHE, which would make the root move once it exists) a store,
 * cache/objects; as git and DVC find theirs. dir itself when there is
 * none. Caller frees. */
static char *find_root(const char *dir)
{
	char *d = path_resolve(NULL, dir);
	for (;;) {
		char *a = path_join(d, "hone.toml"), *b = path_join(d, ".hone"), *c = path_join(d, "cache/objects");
		int hit = fs_exists(a) || fs_exists(b) || (!cache_named && fs_is_dir(c));
		free(a);
		free(b);
		free(c);
		if (hit)
			return d;
		if (!strcmp(d, "/"))
			break;
		char *up = path_dirname(d);
		free(d);
		d = up;
	}
	free(d);
	return path_resolve(NULL, dir);
}

/* The store, unless --cache or HONE_CACHE named one: the project root's cache/. */
static void set_cache_root(engine *en, const char *root)
{
	if (!en->cache_root)
		en->cache_root = path_join(root, "cache");
}

/* Read-only verbs never create a store: 1 when there is one, else 0 after
 * saying there is none. */
static int have_store(engine *en)
{
	if (fs_is_dir(en->cache_root))
		return 1;
	herr_set(&en->err, "no cache at %s: nothing has run in this project yet", en->cache_root);
	herr_hint(&en->err, "`hone run` runs the pipeline; --cache DIR or HONE_CACHE point at another store");
	return 0;
}

/* Loads the pipeline (first positional or pipeline.lua). */
static int load_pipeline(engine *en, const char *file)
{
	const char *f = file ? file : "pipeline.lua";
	en->dsl.script = xstrdup(f);
	en->dsl.script_abs = path_resolve(NULL, f);
	en->dsl.base = path_dirname(en->dsl.script_abs);
	en->dsl.root = find_root(en->dsl.base);
	set_cache_root(en, en->dsl.root);
	en->dsl.home = find_home();
	if (dsl_load(&en->err, &en->dsl, &en->g) != 0) {
		error_out(&en->err);
		return EXIT_USAGE;
	}
	return 0;
}

/* NAME is not a stage of the pipeline: say so, with the closest name and the list. */
static int no_stage(engine *en, const char *name, const char *what)
{
	buf names;
	buf_init(&names);
	const char *best = NULL;
	size_t bd = (size_t)-1;
	for (size_t k = 0; k < en->g.n; k++) {
		const dag_node *d = &en->g.nodes[k];
		if (d->type != NODE_STAGE)
			continue;
		buf_printf(&names, "%s%s", names.len ? ", " : "", d->name);
		size_t dist = edit_distance(name, d->name);
		if (dist < bd)
			bd = dist, best = d->name;
	}
	herr_set(&en->err, "%s%s%s: no stage named '%s'", en->dsl.script, what ? ": " : "", what ? what : "", name);
	if (best && bd <= 2)
		herr_hint(&en->err, "did you mean '%s'? stages: %s", best, names.p);
	else
		herr_hint(&en->err, "stages: %s", names.p ? names.p : "(none)");
	buf_free(&names);
	return error_out(&en->err);
}

/* run --dry-run without a store: every stage would run, and none is created */
static int dry_run_no_store(engine *en)
{
	fprintf(stderr, "hone: no cache at %s yet: every stage would run\n", en->cache_root);
	int *order = xmalloc((en->g.n ? en->g.n : 1) * sizeof *order);
	dag_topo(&en->g, order);
	for (size_t k = 0; k < en->g.n; k++) {
		const dag_node *d = &en->g.nodes[order[k]];
		if (d->type == NODE_STAGE)
			printf("  %-10s %-18s never run\n", "would run", d->name);
	}
	free(order);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_run, argc, argv, &en, &o);
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	for (size_t k = 0; rc == 0 && !o.help && k < en.nforce; k++)
		if (dag_find(&en.g, en.force[k]) < 0)
			rc = no_stage(&en, en.force[k], "--force");
	if (rc == 0 && !o.help) {
		en.tty = isatty(2);
		if (en.dry_run && !fs_is_dir(en.cache_root))
			rc = dry_run_no_store(&en);
		else if (engine_open_store(&en, 1) != 0)
			rc = error_out(&en.err);
		else if (sched_run(&en) != 0)
			rc = en.interrupted ? EXIT_INTERRUPTED : error_out(&en.err);
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static int cmd_status(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_status, argc, argv, &en, &o);
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		/* without a store (none is made) every stage is stale, never run */
		int have = fs_is_dir(en.cache_root);
		if (!have)
			fprintf(stderr, "hone: no cache at %s yet: every stage is stale\n", en.cache_root);
		if (engine_open_store(&en, 0) != 0 || sched_status(&en, stdout, o.json) != 0) {
			rc = error_out(&en.err);
		} else if (have) {
			herr e;
			statcache_save(en.sc, &e);
		}
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static void dot_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

static int cmd_dag(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_dag, argc, argv, &en, &o);
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		dag *g = &en.g;
		int *order = xmalloc(g->n * sizeof *order);
		dag_topo(g, order);
		if (o.json) {
			buf j;
			buf_init(&j);
			buf_adds(&j, "{\"pipeline\": ");
			buf_json_str(&j, en.dsl.script);
			buf_adds(&j, ", \"nodes\": [");
			for (size_t k = 0; k < g->n; k++) {
				int i = order[k];
				dag_node *d = &g->nodes[i];
				buf_adds(&j, k ? ",\n  {\"name\": " : "\n  {\"name\": ");
				buf_json_str(&j, d->name);
				buf_adds(&j, ", \"kind\": ");
				buf_json_str(&j, d->type == NODE_SOURCE ? "source" : d->kind);
				buf_adds(&j, ", \"where\": ");
				buf_json_str(&j, d->where);
				buf_adds(&j, ", \"outputs\": [");
				for (size_t q = 0; q < d->nout; q++) {
					buf_adds(&j, q ? ", " : "");
					buf_json_str(&j, d->outputs[q]);
				}
				buf_adds(&j, "], \"inputs\": [");
				for (size_t q = 0; q < d->nin; q++) {
					char *label = sched_input_label(&en, i, q);
					buf_adds(&j, q ? ", {\"slot\": " : "{\"slot\": ");
					buf_json_str(&j, d->in[q].slot);
					buf_adds(&j, ", \"from\": ");
					buf_json_str(&j, label);
					buf_addc(&j, '}');
					free(label);
				}
				buf_adds(&j, "]}");
			}
			buf_adds(&j, "\n]}\n");
			fwrite(j.p, 1, j.len, stdout);
			buf_free(&j);
		} else if (o.dot) {
			printf("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
			for (size_t k = 0; k < g->n; k++) {
				dag_node *d = &g->nodes[order[k]];
				printf("  n%d [label=\"", order[k]);
				dot_escape(stdout, d->name);
				if (d->type == NODE_STAGE && strcmp(d->name, d->kind)) {
					printf("\\n(");
					dot_escape(stdout, d->kind);
					printf(")");
				}
				printf("\", shape=%s];\n", d->type == NODE_SOURCE ? "note" : "box");
			}
			for (size_t k = 0; k < g->n; k++) {
				dag_node *d = &g->nodes[order[k]];
				for (size_t j = 0; j < d->nin; j++) {
					printf("  n%d -> n%d", d->in[j].node, order[k]);
					if (d->in[j].output) {
						printf(" [label=\"");
						dot_escape(stdout, d->in[j].output);
						printf("\"]");
					}
					printf(";\n");
				}
			}
			printf("}\n");
		} else {
			for (size_t k = 0; k < g->n; k++) {
				int i = order[k];
				dag_node *d = &g->nodes[i];
				if (d->type == NODE_SOURCE) {
					printf("%-20s source  %s\n", d->name, d->where);
					continue;
				}
				printf("%-20s %-7s %s", d->name, d->kind, d->where);
				if (d->nout) {
					printf("  outputs:");
					for (size_t j = 0; j < d->nout; j++)
						printf(" %s", d->outputs[j]);
				}
				printf("\n");
				for (size_t j = 0; j < d->nin; j++) {
					char *label = sched_input_label(&en, i, j);
					printf("  <- %s", label);
					if (!isdigit((unsigned char)d->in[j].slot[0]))
						printf(" (as %s)", d->in[j].slot);
					printf("\n");
					free(label);
				}
			}
		}
		free(order);
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static int is_text(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == 0)
			return 0;
	return 1;
}


/* Prints a value of a dataset cell for the table (escaped, cut to width). */
static void cell_text(const rec_reader *r, int f, uint64_t row, char *out, size_t n)
{
	if (recr_is_null(r, f, row)) {
		snprintf(out, n, "null");
		return;
	}
	size_t len, o = 0;
	const char *s;
	switch (r->fields[f].type) {
	case REC_INT: snprintf(out, n, "%lld", recr_int(r, f, row)); return;
	case REC_FLOAT: snprintf(out, n, "%g", recr_float(r, f, row)); return;
	case REC_BOOL: snprintf(out, n, "%s", recr_bool(r, f, row) ? "true" : "false"); return;
	default: s = recr_str(r, f, row, &len);
	}
	for (size_t i = 0; i < len && o + 4 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' || c == '\t' || c == '\r') {
			out[o++] = ' ';
		} else {
			out[o++] = (char)c;
		}
	}
	if (o + 4 >= n) {
		/* cut at a character boundary */
		while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80)
			o--;
		if (o > 0 && (unsigned char)out[o - 1] >= 0xC0)
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static void json_out(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c == '\t')
			printf("\\t");
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int show_dataset(const char *file, const opts *o, herr *e)
{
	rec_reader r;
	if (recr_open(e, &r, file) != 0)
		return -1;
	int wf = -1;
	const char *wval = NULL;
	if (o->where) {
		const char *eq = strchr(o->where, '=');
		char *name = eq ? xstrndup(o->where, (size_t)(eq - o->where)) : xstrdup(o->where);
		wf = recr_find(&r, name);
		wval = eq ? eq + 1 : "";
		if (wf < 0 || !eq) {
			herr_set(e, "--where %s: %s", o->where, !eq ? "expected FIELD=VALUE" : "no such field");
			free(name);
			recr_close(&r);
			return -1;
		}
		free(name);
	}
	int limit = o->limit;
	uint64_t *rows = xcalloc((size_t)limit + 1, sizeof *rows);
	size_t nrows = 0;
	char cell[256];
	for (uint64_t row = 0; row < r.rows && nrows < (size_t)limit; row++) {
		if (wf >= 0) {
			cell_text(&r, wf, row, cell, sizeof cell);
			if (strcmp(cell, wval) != 0)
				continue;
		}
		rows[nrows++] = row;
	}
	if (o->jsonl) {
		for (size_t k = 0; k < nrows; k++) {
			putchar('{');
			for (uint32_t f = 0; f < r.nfields; f++) {
				if (f)
					putchar(',');
				json_out(r.fields[f].name, strlen(r.fields[f].name));
				putchar(':');
				uint64_t row = rows[k];
				if (recr_is_null(&r, (int)f, row)) {
					printf("null");
				} else if (r.fields[f].type == REC_STR || r.fields[f].type == REC_CAT) {
					size_t len;
					const char *s = recr_str(&r, (int)f, row, &len);
					json_out(s, len);
				} else if (r.fields[f].type == REC_FLOAT) {
					char num[40];
					fmt_double(num, recr_float(&r, (int)f, row));
					printf("%s", num);
				} else {
					cell_text(&r, (int)f, row, cell, sizeof cell);
					printf("%s", cell);
				}
			}
			printf("}\n");
		}
	} else {
		printf("dataset %llu rows, %u fields\nschema:\n", (unsigned long long)r.rows, r.nfields);
		for (uint32_t f = 0; f < r.nfields; f++) {
			printf("  %-16s %s", r.fields[f].name, rec_type_name(r.fields[f].type));
			if (r.fields[f].type == REC_CAT)
				printf(" (%u values)", r.fields[f].ncat);
			if (r.fields[f].nulls)
				printf(", nullable");
			printf("\n");
		}
		size_t *w = xcalloc(r.nfields ? r.nfields : 1, sizeof *w);
		for (uint32_t f = 0; f < r.nfields; f++) {
			w[f] = display_width(r.fields[f].name);
			for (size_t k = 0; k < nrows; k++) {
				cell_text(&r, (int)f, rows[k], cell, 48);
				size_t dw = display_width(cell);
				if (dw > w[f])
					w[f] = dw;
			}
		}
		printf("first %zu rows%s:\n", nrows, o->where ? " matching" : "");
		for (int pass = 0; pass < 1 + (int)nrows; pass++) {
			printf(" ");
			for (uint32_t f = 0; f < r.nfields; f++) {
				const char *t = r.fields[f].name;
				if (pass) {
					cell_text(&r, (int)f, rows[pass - 1], cell, 48);
					t = cell;
				}
				printf(" %s", t);
				for (size_t pad = display_width(t); pad < w[f] && f + 1 < r.nfields; pad++)
					putchar(' ');
			}
			printf("\n");
		}
		free(w);
	}
	free(rows);
	recr_close(&r);
	return 0;
}

/* A number member of a JSON object, NAN when absent or null. */
static double jget(const jnode *o, const char *name)
{
	double v;
	return o && json_number(json_member(o, name, strlen(name)), &v) == 0 ? v : NAN;
}

static void print_report_line(const char *what, const jnode *r)
{
	if (!r)
		return;
	if (json_member(r, "rmse", 4)) {
		printf("  %-10s MAE %.4g   RMSE %.4g   R2 %.4f\n", what, jget(r, "mae"), jget(r, "rmse"), jget(r, "r2"));
		return;
	}
	printf("  %-10s accuracy %.4f   macro F1 %.4f   ROC-AUC %.4f   PR-AUC %.4f   log loss %.4f\n", what,
	       jget(r, "accuracy"), jget(json_member(r, "macro", 5), "f1"), jget(r, "roc_auc"), jget(r, "pr_auc"),
	       jget(r, "log_loss"));
}

/* evaluate's metrics.json as a readable summary. */
static void show_evaluation(const char *path)
{
	buf b;
	buf_init(&b);
	herr e;
	if (fs_read(&e, path, &b) != 0)
		return;
	jarena *a = json_arena_new();
	jerror je;
	const jnode *root = json_parse(a, b.p, b.len, &je);
	const jnode *m = root ? json_member(root, "model", 5) : NULL;
	const jnode *task = root ? json_member(root, "task", 4) : NULL;
	if (m && task && task->t == J_STR && task->len == 7 && !memcmp(task->s, "tagging", 7)) {
		printf("evaluation: tagging, %.0f tokens, %.0f entities (seqeval's chunks)\n", jget(m, "tokens"),
		       jget(m, "true_entities"));
		printf("  %-16s %9s %9s %9s %9s\n", "entity type", "precision", "recall", "f1", "support");
		const jnode *ty = json_member(m, "types", 5);
		for (const jnode *t = ty && ty->t == J_OBJ ? ty->kid : NULL; t; t = t->next)
			printf("  %-16.*s %9.4f %9.4f %9.4f %9.0f\n", (int)t->klen, t->key, jget(t, "precision"), jget(t, "recall"),
			       jget(t, "f1"), jget(t, "support"));
		const char *who[2] = {"model", "compare"};
		for (int k = 0; k < 2; k++) {
			const jnode *r = json_member(root, who[k], strlen(who[k]));
			if (r)
				printf("  %-10s precision %.4f   recall %.4f   F1 %.4f   token accuracy %.4f\n", who[k],
				       jget(r, "precision"), jget(r, "recall"), jget(r, "f1"), jget(r, "token_accuracy"));
		}
	} else if (m && task && task->t == J_STR && task->len > 3 && !memcmp(task->s + task->len - 3, "_lm", 3)) {
		/* a language model: causal_lm (token accuracy) or masked_lm (accuracy on the masked tokens) */
		int mlm = task->s[0] == 'm';
		const char *acc = mlm ? "masked_accuracy" : "token_accuracy";
		printf("evaluation: %s\n", mlm ? "masked language model" : "language model");
		const char *who[2] = {"model", "compare"};
		for (int k = 0; k < 2; k++) {
			const jnode *r = json_member(root, who[k], strlen(who[k]));
			if (r)
				printf("  %-10s loss %.4f   perplexity %.4g   %s %.4f\n", who[k], jget(r, "loss"), jget(r, "perplexity"),
				       mlm ? "masked accuracy" : "token accuracy", jget(r, acc));
		}
	} else if (m) {
		const jnode *out = json_member(root, "output", 6);
		printf("evaluation: %.0f rows, output '%.*s'\n", jget(root, "rows"), out ? (int)out->len : 0, out ? out->s : "");
		const jnode *cl = json_member(m, "classes", 7), *labels = json_member(m, "labels", 6);
		if (cl && labels) {
			printf("  %-16s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1", "support");
			for (const jnode *l = labels->kid; l; l = l->next) {
				const jnode *c = json_member(cl, l->s, l->len);
				printf("  %-16.*s %9.4f %9.4f %9.4f %9.0f\n", (int)l->len, l->s, jget(c, "precision"), jget(c, "recall"),
				       jget(c, "f1"), jget(c, "support"));
			}
			const char *avg[] = {"macro", "weighted"};
			for (int k = 0; k < 2; k++) {
				const jnode *v = json_member(m, avg[k], strlen(avg[k]));
				printf("  %-16s %9.4f %9.4f %9.4f\n", avg[k], jget(v, "precision"), jget(v, "recall"), jget(v, "f1"));
			}
		}
		print_report_line("model", m);
		print_report_line("baseline", json_member(root, "baseline", 8));
		print_report_line("compare", json_member(root, "compare", 7));
		const jnode *cf = json_member(m, "confusion", 9);
		if (cf && labels && cf->t == J_ARR) {
			printf("confusion (rows: true class, columns: predicted):\n  %-16s", "");
			for (const jnode *l = labels->kid; l; l = l->next)
				printf(" %9.*s", (int)(l->len > 9 ? 9 : l->len), l->s);
			printf("\n");
			const jnode *l = labels->kid;
			for (const jnode *row = cf->kid; row && l; row = row->next, l = l->next) {
				printf("  %-16.*s", (int)l->len, l->s);
				for (const jnode *x = row->kid; x; x = x->next)
					printf(" %9.*s", (int)x->len, x->s);
				printf("\n");
			}
		}
	}
	json_arena_free(a);
	buf_free(&b);
}

/* A tokenize output's first rows decoded, token by token: '|' between
 * tokens, ' || ' where the prompt ends (prompt/completion records). */
static void show_tokens(engine *en, int i, const char *path, int limit)
{
	char *ids_p = path_join(path, "tokens.u32"), *rec_p = path_join(path, RECORDS_FILE), *mask_p = path_join(path, "mask.u8");
	const dag_node *d = &en->g.nodes[i];
	bpe *b = NULL;
	wordpiece *wp = NULL;
	herr e;
	for (size_t j = 0; j < d->nin && !b && !wp; j++) {
		char *tp = sched_output_path(en, d->in[j].node, d->in[j].output);
		char *ej = tp ? path_join(tp, "encoder.json") : NULL, *vt = tp ? path_join(tp, "vocab.txt") : NULL;
		if (ej && bpe_dir_is_bpe(tp) && bpe_load_dir(&e, &b, tp) != 0)
			b = NULL;
		if (!b && vt && fs_exists(vt) && wordpiece_load_dir(&e, &wp, tp) != 0)
			wp = NULL;
		free(tp);
		free(ej);
		free(vt);
	}
	buf ids, mask, text;
	buf_init(&ids);
	buf_init(&mask);
	buf_init(&text);
	rec_reader r;
	if ((b || wp) && fs_read(&e, ids_p, &ids) == 0 && recr_open(&e, &r, rec_p) == 0) {
		int has_mask = fs_exists(mask_p) && fs_read(&e, mask_p, &mask) == 0 && mask.len * 4 == ids.len;
		int fo = recr_find(&r, "tok_off"), fl = recr_find(&r, "tok_len");
		size_t nid = ids.len / 4;
		const uint32_t *v = (const uint32_t *)ids.p;
		printf("decoded (first %llu rows; '|' between tokens%s):\n",
		       (unsigned long long)((uint64_t)limit < r.rows ? (uint64_t)limit : r.rows),
		       has_mask ? ", ' || ' where the prompt ends" : "");
		for (uint64_t row = 0; fo >= 0 && fl >= 0 && row < r.rows && (int)row < limit; row++) {
			long long off = recr_int(&r, fo, row), len = recr_int(&r, fl, row);
			if (off < 0 || len < 0 || (size_t)off > nid || (size_t)len > nid - (size_t)off)
				break;
			printf("  %-4llu ", (unsigned long long)row + 1);
			for (long long k = 0; k < len; k++) {
				if (k)
					fputs(has_mask && !mask.p[off + k - 1] && mask.p[off + k] ? " || " : "|", stdout);
				text.len = 0;
				size_t tl = 0;
				const char *tk = wp ? wordpiece_token(wp, v[off + k], &tl) : NULL;
				if (tk)
					buf_add(&text, tk, tl); /* WordPiece: the token as it is, "##" and all */
				if (wp ? !tk : bpe_decode(b, v + off + k, 1, &text) != 0) {
					printf("<?%u>", v[off + k]);
					continue;
				}
				for (size_t q = 0; q < text.len; q++) {
					unsigned char c = (unsigned char)text.p[q];
					if (c == '\n')
						fputs("\\n", stdout);
					else if (c == '\t')
						fputs("\\t", stdout);
					else if (c < 0x20 || c == 0x7f)
						printf("\\x%02x", c);
					else
						putchar(c);
				}
			}
			putchar('\n');
		}
		recr_close(&r);
	}
	buf_free(&ids);
	buf_free(&mask);
	buf_free(&text);
	if (b)
		bpe_free(b);
	wordpiece_free(wp);
	free(ids_p);
	free(rec_p);
	free(mask_p);
}

static int cmd_show(int argc, char **argv)
{
	engine en;
	opts o = {0};
	o.limit = 10;
	engine_init(&en);
	int rc = parse(&verb_show, argc, argv, &en, &o);
	if (rc < 0)
		rc = load_pipeline(&en, o.npos == 2 ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		char *target = xstrdup(o.positional[o.npos - 1]);
		char *dot = strchr(target, '.');
		if (dot)
			*dot++ = 0;
		int i = dag_find(&en.g, target);
		if (i < 0 || en.g.nodes[i].type != NODE_STAGE) {
			rc = no_stage(&en, target, NULL);
		} else if (dot && !dag_has_output(&en.g.nodes[i], dot)) {
			herr_set(&en.err, "stage '%s' has no output '%s'", target, dot);
			rc = error_out(&en.err);
		} else if (!have_store(&en) || engine_open_store(&en, 0) != 0 || sched_plan(&en) != 0) {
			rc = error_out(&en.err);
		} else if (en.ns[i].state != 2) {
			herr_set(&en.err, "stage '%s' has no up-to-date output", target);
			herr_hint(&en.err, "run `hone run %s` first; `hone status` says why it is stale", en.dsl.script);
			rc = error_out(&en.err);
		} else {
			char *path = sched_output_path(&en, i, dot);
			char *rec = path_join(path, RECORDS_FILE);
			if (fs_exists(rec) && o.jsonl) {
				if (show_dataset(rec, &o, &en.err) != 0)
					rc = error_out(&en.err);
				free(rec);
				free(path);
				free(target);
				engine_free(&en);
				return rc < 0 ? 0 : rc;
			}
			char hex[HKEY_HEX];
			hkey_hex(&en.ns[i].id, hex);
			if (o.json) {
				buf j;
				buf_init(&j);
				buf_adds(&j, "{\"stage\": ");
				buf_json_str(&j, en.g.nodes[i].name);
				buf_adds(&j, ", \"kind\": ");
				buf_json_str(&j, en.g.nodes[i].kind);
				buf_printf(&j, ", \"object\": \"%s\", \"path\": ", hex);
				buf_json_str(&j, path);
				buf_printf(&j, ", \"metrics\": %s}\n", en.ns[i].metrics ? en.ns[i].metrics : "{}");
				fwrite(j.p, 1, j.len, stdout);
				buf_free(&j);
				free(rec);
				free(path);
				free(target);
				engine_free(&en);
				return rc < 0 ? 0 : rc;
			}
			printf("stage   %s (%s)\nobject  %s\npath    %s/\n", en.g.nodes[i].name,
			       en.g.nodes[i].kind, hex, path);
			if (en.ns[i].metrics && strcmp(en.ns[i].metrics, "{}"))
				printf("metrics %s\n", en.ns[i].metrics);
			char *mj = path_join(path, "metrics.json");
			if (fs_exists(mj))
				show_evaluation(mj);
			free(mj);
			char **files;
			size_t n;
			if (fs_exists(rec)) {
				if (show_dataset(rec, &o, &en.err) != 0)
					rc = error_out(&en.err);
				char *tj = path_join(path, TOKENIZE_META);
				if (rc >= 0 && fs_exists(tj))
					show_tokens(&en, i, path, o.limit < 5 ? o.limit : 5);
				free(tj);
			} else if (fs_list_files(&en.err, path, &files, &n) == 0) {
				printf("files:\n");
				const char *first = NULL;
				for (size_t k = 0, shown = 0; k < n; k++) {
					if (!strcmp(files[k], STORE_MANIFEST))
						continue;
					if (!first)
						first = files[k];
					if (shown++ < 20) {
						char *f = path_join(path, files[k]);
						buf b;
						buf_init(&b);
						herr e;
						char sz[32] = "?";
						FILE *fp = fopen(f, "rb");
						if (fp) {
							fseek(fp, 0, SEEK_END);
							fmt_bytes(sz, (double)ftell(fp));
							fclose(fp);
						}
						printf("  %-40s %s\n", files[k], sz);
						(void)e;
						buf_free(&b);
						free(f);
					}
				}
				if (first) {
					char *f = path_join(path, first);
					FILE *fp = fopen(f, "rb");
					char chunk[65536];
					size_t got = fp ? fread(chunk, 1, sizeof chunk, fp) : 0;
					if (fp)
						fclose(fp);
					if (got && is_text(chunk, got)) {
						printf("preview of %s:\n", first);
						int lines = 0;
						size_t s = 0;
						for (size_t k = 0; k < got && lines < o.limit; k++) {
							if (chunk[k] == '\n') {
								printf("  %.*s\n", (int)(k - s > 200 ? 200 : k - s), chunk + s);
								s = k + 1;
								lines++;
							}
						}
						if (lines < o.limit && s < got)
							printf("  %.*s\n", (int)(got - s > 200 ? 200 : got - s), chunk + s);
					}
					free(f);
				}
				strv_free(files, n);
			}
			free(rec);
			free(path);
		}
		free(target);
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static long long parse_run_id(const char *s, int *ok)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	*ok = *end == 0 && v != 0;
	return v;
}

static void fmt_time(char *out, size_t n, double unix_s)
{
	time_t t = (time_t)unix_s;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Iterates a flat JSON object {"k":v,...}; returns 0 at the end. */
static int json_next(const char **p, char *key, size_t kn, char *val, size_t vn)
{
	const char *s = *p;
	while (*s && *s != '"')
		s++;
	if (!*s)
		return 0;
	s++;
	size_t k = 0;
	while (*s && *s != '"') {
		if (*s == '\\' && s[1])
			s++;
		if (k + 1 < kn)
			key[k++] = *s;
		s++;
	}
	key[k] = 0;
	if (*s)
		s++;
	while (*s == ':' || *s == ' ')
		s++;
	size_t v = 0;
	int quoted = *s == '"';
	if (quoted)
		s++;
	while (*s && (quoted ? *s != '"' : (*s != ',' && *s != '}'))) {
		if (quoted && *s == '\\' && s[1])
			s++;
		if (v + 1 < vn)
			val[v++] = *s;
		s++;
	}
	val[v] = 0;
	if (quoted && *s)
		s++;
	*p = s;
	return 1;
}

/* One run as JSON; with its stages when stages is set. */
static void run_json(buf *j, const runlog_run *r, int stages)
{
	buf_printf(j, "{\"run\": %lld, \"started\": %.3f, \"seconds\": %.3f, \"status\": ", r->id, r->started, r->seconds);
	buf_json_str(j, r->status);
	buf_printf(j, ", \"ran\": %d, \"cached\": %d, \"failed\": %d, \"pipeline\": ", r->ran, r->cached, r->failed);
	buf_json_str(j, r->pipeline);
	buf_adds(j, ", \"args\": ");
	buf_json_str(j, r->args);
	if (stages) {
		buf_adds(j, ", \"stages\": [");
		for (size_t i = 0; i < r->nstages; i++) {
			const runlog_stage *s = &r->stages[i];
			buf_adds(j, i ? ",\n  {\"stage\": " : "\n  {\"stage\": ");
			buf_json_str(j, s->name);
			buf_adds(j, ", \"kind\": ");
			buf_json_str(j, s->kind);
			buf_adds(j, ", \"status\": ");
			buf_json_str(j, s->status);
			buf_printf(j, ", \"seconds\": %.3f, \"key\": \"%s\", \"object\": \"%s\", \"metrics\": %s}", s->seconds, s->key,
			           s->object, s->metrics && *s->metrics ? s->metrics : "{}");
		}
		buf_adds(j, "]");
	}
	buf_addc(j, '}');
}

static int cmd_runs(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_runs, argc, argv, &en, &o);
	if (rc < 0)
		set_cache_root(&en, en.dsl.root = find_root("."));
	if (rc < 0 && !have_store(&en))
		rc = error_out(&en.err);
	if (rc < 0 && engine_open_runlog(&en) != 0)
		rc = error_out(&en.err);
	if (rc < 0 && o.npos == 1) {
		int ok;
		long long id = parse_run_id(o.positional[0], &ok);
		runlog_run run;
		int found = ok ? runlog_get(&en.err, en.rl, id, &run) : 0;
		if (found <= 0) {
			herr_set(&en.err, "no run '%s'", o.positional[0]);
			herr_hint(&en.err, "`hone runs` lists the recorded runs");
			rc = error_out(&en.err);
		} else if (o.json) {
			buf j;
			buf_init(&j);
			run_json(&j, &run, 1);
			buf_addc(&j, '\n');
			fwrite(j.p, 1, j.len, stdout);
			buf_free(&j);
			runlog_run_free(&run);
			rc = 0;
		} else {
			char when[64];
			fmt_time(when, sizeof when, run.started);
			printf("run %lld  %s  %s  %.2fs  %s\n  %s\n", run.id, when, run.status, run.seconds,
			       run.pipeline, run.args);
			for (size_t i = 0; i < run.nstages; i++) {
				runlog_stage *s = &run.stages[i];
				printf("  %-7s %-18s %8.2fs  %.12s  %s\n", s->status, s->name, s->seconds,
				       s->object, strcmp(s->metrics, "{}") ? s->metrics : "");
			}
			runlog_run_free(&run);
			rc = 0;
		}
	} else if (rc < 0) {
		runlog_run *runs;
		size_t n;
		if (runlog_list(&en.err, en.rl, o.limit ? o.limit : 20, &runs, &n) != 0) {
			rc = error_out(&en.err);
		} else {
			char cwd[4096];
			if (!getcwd(cwd, sizeof cwd))
				cwd[0] = 0;
			if (o.json) {
				buf j;
				buf_init(&j);
				buf_addc(&j, '[');
				for (size_t i = 0; i < n; i++) {
					buf_adds(&j, i ? ",\n " : "\n ");
					run_json(&j, &runs[i], 0);
					runlog_run_free(&runs[i]);
				}
				buf_adds(&j, "\n]\n");
				fwrite(j.p, 1, j.len, stdout);
				buf_free(&j);
				free(runs);
				engine_free(&en);
				return 0;
			}
			printf("%5s  %-19s  %-6s  %4s  %6s  %8s  %s\n", "run", "started", "status", "ran",
			       "cached", "time", "pipeline");
			for (size_t i = 0; i < n; i++) {
				char when[64];
				fmt_time(when, sizeof when, runs[i].started);
				char *rel = path_relative(cwd, runs[i].pipeline);
				printf("%5lld  %-19s  %-6s  %4d  %6d  %7.2fs  %s\n", runs[i].id, when,
				       runs[i].status, runs[i].ran, runs[i].cached, runs[i].seconds, rel);
				free(rel);
				runlog_run_free(&runs[i]);
			}
			if (n == 0)
				printf("(no runs recorded in %s)\n", en.cache_root);
			free(runs);
			rc = 0;
		}
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static const runlog_stage *find_stage(const runlog_run *r, const char *name)
{
	for (size_t i = 0; i < r->nstages; i++)
		if (!strcmp(r->stages[i].name, name))
			return &r->stages[i];
	return NULL;
}

/* Prints "key=value" lines of a that differ in b, prefixed with stage. */
static int diff_lines(const char *stage, const char *a, const char *b, int first_is_a)
{
	int n = 0;
	const char *p = a;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			size_t kl = (size_t)(eq - p);
			/* find the same key in b */
			const char *q = b, *other = NULL;
			size_t olen = 0;
			while (q && *q) {
				const char *nl2 = strchr(q, '\n');
				size_t l2 = nl2 ? (size_t)(nl2 - q) : strlen(q);
				if (l2 > kl && !strncmp(q, p, kl) && q[kl] == '=') {
					other = q + kl + 1;
					olen = l2 - kl - 1;
				}
				q = nl2 ? nl2 + 1 : NULL;
			}
			size_t vl = len - kl - 1;
			if (first_is_a && (!other || olen != vl || strncmp(other, eq + 1, vl))) {
				printf("  %s.%.*s  %.*s -> %.*s\n", stage, (int)kl, p, (int)vl, eq + 1,
				       other ? (int)olen : 6, other ? other : "(none)");
				n++;
			} else if (!first_is_a && !other) {
				printf("  %s.%.*s  (none) -> %.*s\n", stage, (int)kl, p, (int)vl, eq + 1);
				n++;
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	return n;
}

static int cmd_diff(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_diff, argc, argv, &en, &o);
	if (rc < 0)
		set_cache_root(&en, en.dsl.root = find_root("."));
	if (rc < 0 && !have_store(&en))
		rc = error_out(&en.err);
	if (rc < 0 && engine_open_runlog(&en) != 0)
		rc = error_out(&en.err);
	if (rc < 0) {
		runlog_run r[2];
		int found[2] = {0, 0};
		for (int k = 0; k < 2; k++) {
			int ok;
			long long id = parse_run_id(o.positional[k], &ok);
			found[k] = ok ? runlog_get(&en.err, en.rl, id, &r[k]) : 0;
			if (found[k] <= 0 && rc < 0) {
				herr_set(&en.err, "no run '%s'", o.positional[k]);
				herr_hint(&en.err, "`hone runs` lists the recorded runs");
				rc = error_out(&en.err);
			}
		}
		if (rc < 0) {
			printf("run %lld -> run %lld\n", r[0].id, r[1].id);
			printf("parameters:\n");
			int nparam = 0;
			for (size_t i = 0; i < r[0].nstages; i++) {
				const runlog_stage *a = &r[0].stages[i], *b = find_stage(&r[1], a->name);
				if (!b) {
					printf("  %s  only in run %lld\n", a->name, r[0].id);
					nparam++;
					continue;
				}
				nparam += diff_lines(a->name, a->params, b->params, 1);
				nparam += diff_lines(a->name, b->params, a->params, 0);
			}
			for (size_t i = 0; i < r[1].nstages; i++)
				if (!find_stage(&r[0], r[1].stages[i].name)) {
					printf("  %s  only in run %lld\n", r[1].stages[i].name, r[1].id);
					nparam++;
				}
			if (!nparam)
				printf("  (same)\n");
			printf("metrics:\n");
			int nmet = 0;
			for (size_t i = 0; i < r[1].nstages; i++) {
				const runlog_stage *b = &r[1].stages[i], *a = find_stage(&r[0], b->name);
				const char *p = b->metrics;
				char key[128], vb[128], va[128];
				while (json_next(&p, key, sizeof key, vb, sizeof vb)) {
					const char *q = a ? a->metrics : "";
					int have = 0;
					char k2[128];
					while (json_next(&q, k2, sizeof k2, va, sizeof va))
						if (!strcmp(k2, key)) {
							have = 1;
							break;
						}
					if (have && !strcmp(va, vb))
						continue;
					char *e1, *e2;
					double x = strtod(va, &e1), y = strtod(vb, &e2);
					if (have && !*e1 && !*e2)
						printf("  %s.%s  %s -> %s (%+g)\n", b->name, key, va, vb, y - x);
					else
						printf("  %s.%s  %s -> %s\n", b->name, key, have ? va : "(none)", vb);
					nmet++;
				}
			}
			if (!nmet)
				printf("  (same)\n");
			rc = 0;
		}
		for (int k = 0; k < 2; k++)
			if (found[k] > 0)
				runlog_run_free(&r[k]);
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static int cmd_gc(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_gc, argc, argv, &en, &o);
	if (rc < 0)
		set_cache_root(&en, en.dsl.root = find_root("."));
	if (rc < 0 && !have_store(&en))
		rc = error_out(&en.err);
	if (rc < 0) {
		hkey *keep = NULL;
		size_t nkeep = 0;
		store_report r;
		if (engine_open_store(&en, 1) != 0 || store_lock(&en.err, &en.st) != 0 ||
		    engine_open_runlog(&en) != 0 ||
		    runlog_objects(&en.err, en.rl, o.keep_last, &keep, &nkeep) != 0 ||
		    store_gc(&en.err, &en.st, keep, nkeep, stdout, &r) != 0) {
			rc = error_out(&en.err);
		} else {
			char b[32];
			fmt_bytes(b, r.bytes);
			printf("hone: gc removed %zu of %zu objects, %zu cache entries, %zu work dirs (%s)\n",
			       r.bad_objects, r.objects, r.bad_keys, r.tmp_dirs, b);
			rc = 0;
		}
		free(keep);
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static int cmd_verify(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(&verb_verify, argc, argv, &en, &o);
	if (rc < 0)
		set_cache_root(&en, en.dsl.root = find_root("."));
	if (rc < 0 && !have_store(&en))
		rc = error_out(&en.err);
	if (rc < 0) {
		store_report r;
		if (engine_open_store(&en, 1) != 0 || (o.repair && store_lock(&en.err, &en.st) != 0) ||
		    store_verify(&en.err, &en.st, o.repair, stdout, &r) != 0) {
			rc = error_out(&en.err);
		} else {
			printf("hone: verified %zu objects (%zu files) and %zu cache entries: ", r.objects,
			       r.files, r.keys);
			if (r.bad_objects || r.bad_keys)
				printf("%zu damaged objects, %zu bad entries%s\n", r.bad_objects, r.bad_keys,
				       o.repair ? " (removed)" : "");
			else
				printf("all good\n");
			rc = (r.bad_objects || r.bad_keys) && !o.repair ? EXIT_FAIL : 0;
		}
	}
	engine_free(&en);
	return rc < 0 ? 0 : rc;
}

static int cmd_hash(int argc, char **argv)
{
	opt_parsed p;
	int rc = opt_parse(&verb_hash, argc, argv, &p);
	if (rc != OPT_OK)
		return rc == OPT_HELP ? 0 : EXIT_USAGE;
	for (size_t i = 0; i < p.npos; i++) {
		herr e;
		hkey k;
		if (hkey_file(&e, p.pos[i], &k, NULL) != 0) {
			rc = error_out(&e);
			continue;
		}
		char hex[HKEY_HEX];
		hkey_hex(&k, hex);
		printf("%s  %s\n", hex, p.pos[i]);
	}
	opt_free(&p);
	return rc;
}

static const opt_verb *const all_verbs[] = {&verb_run, &verb_status, &verb_dag, &verb_show, &verb_runs, &verb_diff,
                                           &verb_gc, &verb_verify, &verb_hash, &predict_verb, &generate_verb, &quantize_verb, &forward_verb, &serve_verb,
                                           &verb_completion, NULL};

static int cmd_completion(int argc, char **argv)
{
	opt_parsed p;
	int rc = opt_parse(&verb_completion, argc, argv, &p);
	if (rc != OPT_OK)
		return rc == OPT_HELP ? 0 : EXIT_USAGE;
	if (strcmp(p.pos[0], "bash"))
		rc = opt_usage_error(&verb_completion, "only bash is supported, not '%s'", p.pos[0]);
	else
		opt_bash_completion(all_verbs, stdout);
	opt_free(&p);
	return rc;
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "%s", usage_main);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		printf("%s", usage_main);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("hone %s\n", HONE_VERSION);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {{"run", cmd_run}, {"status", cmd_status}, {"dag", cmd_dag}, {"show", cmd_show},
	            {"runs", cmd_runs}, {"diff", cmd_diff}, {"gc", cmd_gc}, {"verify", cmd_verify},
	            {"hash", cmd_hash}, {"predict", predict_main}, {"generate", generate_main}, {"quantize", quantize_main}, {"forward", forward_main}, {"serve", serve_main},
	            {"completion", cmd_completion}};
	for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
		if (!strcmp(cmd, cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	const char *best = NULL;
	size_t bd = 99;
	for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
		size_t d = edit_distance(cmd, cmds[i].name);
		if (d < bd)
			bd = d, best = cmds[i].name;
	}
	fprintf(stderr, "hone: error: unknown command '%s'\n", cmd);
	if (bd <= 2)
		fprintf(stderr, "hint: did you mean 'hone %s'?\n", best);
	fprintf(stderr, "%s", usage_main);
	return EXIT_USAGE;
}
