#include "cli.h"
#include "predict.h"
#include "generate.h"
#include "io/bpe.h"
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
	"\n"
	"FILE defaults to pipeline.lua. Common options:\n"
	"  --cache DIR           the store (default: $HONE_CACHE, else ./cache)\n"
	"  -h, --help            help for a command;  --version  print the version\n"
	"\n"
	"Run `hone COMMAND --help` for a command's options. Docs: docs/guide.md\n";

static const char *usage_run =
	"usage: hone run [FILE] [options]\n"
	"  --set STAGE.PARAM=VALUE  override a parameter (repeatable)\n"
	"  -j N, --jobs N           run up to N independent stages at once (default 1)\n"
	"  --threads N              threads one stage may use (default: all cores; never changes outputs)\n"
	"  --dry-run                show what would run; run nothing\n"
	"  --force STAGE            run STAGE even if cached (repeatable)\n"
	"  -q, --quiet              print only errors\n"
	"  --cache DIR              the store\n";

static const char *usage_status =
	"usage: hone status [FILE] [--set STAGE.PARAM=VALUE ...] [--cache DIR]\n"
	"Prints every stage as up to date or stale, with the reason: params changed,\n"
	"input changed, upstream stage changed or stale, kernel version changed, never run.\n";

static const char *usage_dag = "usage: hone dag [FILE] [--dot] [--set ...]\n";
static const char *usage_show =
	"usage: hone show [FILE] STAGE[.OUTPUT] [--limit N] [--where FIELD=VALUE] [--jsonl] [--set ...]\n"
	"Prints where the stage's up-to-date output is and a preview of its files;\n"
	"for a dataset: its schema, row count and first rows (as a table, or JSON lines).\n";
static const char *usage_runs = "usage: hone runs [RUN] [-n N] [--cache DIR]\n"
                                "RUN is a run number, or -1 for the latest, -2 the one before.\n";
static const char *usage_diff = "usage: hone diff RUN_A RUN_B [--cache DIR]\n";
static const char *usage_gc = "usage: hone gc [--keep-last N] [--cache DIR]\n"
                              "Removes objects that no recorded run (or none of the last N runs) references.\n";
static const char *usage_verify = "usage: hone verify [--repair] [--cache DIR]\n"
                                  "Rehashes every object; with --repair removes damaged ones so they are recomputed.\n";
static const char *usage_hash = "usage: hone hash FILE...\n";

static int error_out(const herr *e)
{
	fprintf(stderr, "hone: error: %s\n", e->msg);
	if (e->hint[0])
		fprintf(stderr, "hint: %s\n", e->hint);
	return EXIT_FAIL;
}

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "hone: error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage);
	return EXIT_USAGE;
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

typedef struct opts {
	const char *cache;
	const char *positional[4];
	int npos;
	int dot, repair, limit, keep_last, help, jsonl;
	const char *where;
} opts;

/* Parses options shared by every command into en and o. */
static int parse(int argc, char **argv, engine *en, opts *o, const char *usage)
{
	buf args;
	buf_init(&args);
	for (int i = 0; i < argc; i++) {
		if (i)
			buf_addc(&args, ' ');
		buf_adds(&args, argv[i]);
	}
	en->args = buf_take(&args);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL() do { if (!val) return usage_error(usage, "%s needs a value", a); i++; } while (0)
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			o->help = 1;
		} else if (!strcmp(a, "--cache")) {
			NEED_VAL();
			o->cache = val;
		} else if (!strncmp(a, "--cache=", 8)) {
			o->cache = a + 8;
		} else if (!strcmp(a, "--set")) {
			NEED_VAL();
			if (dsl_add_override(&en->err, &en->dsl, val) != 0)
				return error_out(&en->err), EXIT_USAGE;
		} else if (!strncmp(a, "--set=", 6)) {
			if (dsl_add_override(&en->err, &en->dsl, a + 6) != 0)
				return error_out(&en->err), EXIT_USAGE;
		} else if (!strcmp(a, "-j") || !strcmp(a, "--jobs")) {
			NEED_VAL();
			en->jobs = atoi(val);
			if (en->jobs < 1)
				return usage_error(usage, "-j expects a positive number, got '%s'", val);
		} else if (!strncmp(a, "-j", 2) && isdigit((unsigned char)a[2])) {
			en->jobs = atoi(a + 2);
			if (en->jobs < 1)
				return usage_error(usage, "-j expects a positive number, got '%s'", a + 2);
		} else if (!strcmp(a, "-n") && usage == usage_runs) {
			NEED_VAL();
			o->limit = atoi(val);
		} else if (!strcmp(a, "--dry-run") || !strcmp(a, "-n")) {
			en->dry_run = 1;
		} else if (!strcmp(a, "--force")) {
			NEED_VAL();
			en->force = xrealloc(en->force, (en->nforce + 1) * sizeof *en->force);
			en->force[en->nforce++] = xstrdup(val);
		} else if (!strcmp(a, "--threads")) {
			NEED_VAL();
			en->threads = atoi(val);
			if (en->threads < 1)
				return usage_error(usage, "--threads expects a positive number, got '%s'", val);
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			en->quiet = 1;
		} else if (!strcmp(a, "--jsonl")) {
			o->jsonl = 1;
		} else if (!strcmp(a, "--where")) {
			NEED_VAL();
			o->where = val;
		} else if (!strcmp(a, "--dot")) {
			o->dot = 1;
		} else if (!strcmp(a, "--repair")) {
			o->repair = 1;
		} else if (!strcmp(a, "--limit")) {
			NEED_VAL();
			o->limit = atoi(val);
		} else if (!strcmp(a, "--keep-last")) {
			NEED_VAL();
			o->keep_last = atoi(val);
			if (o->keep_last < 1)
				return usage_error(usage, "--keep-last expects a positive number, got '%s'", val);
		} else if (a[0] == '-' && a[1] && !isdigit((unsigned char)a[1])) {
			return usage_error(usage, "unknown option '%s'", a);
		} else {
			if (o->npos == 4)
				return usage_error(usage, "too many arguments at '%s'", a);
			o->positional[o->npos++] = a;
		}
#undef NEED_VAL
	}
	if (!en->threads) {
		const char *t = getenv("HONE_THREADS");
		en->threads = t && atoi(t) > 0 ? atoi(t) : (int)sysconf(_SC_NPROCESSORS_ONLN);
		if (en->threads < 1)
			en->threads = 1;
	}
	const char *c = o->cache ? o->cache : getenv("HONE_CACHE");
	en->cache_root = path_resolve(NULL, c && *c ? c : "cache");
	return -1;
}

/* Loads the pipeline (first positional or pipeline.lua). */
static int load_pipeline(engine *en, const char *file)
{
	const char *f = file ? file : "pipeline.lua";
	en->dsl.script = xstrdup(f);
	en->dsl.script_abs = path_resolve(NULL, f);
	en->dsl.base = path_dirname(en->dsl.script_abs);
	en->dsl.home = find_home();
	if (dsl_load(&en->err, &en->dsl, &en->g) != 0) {
		error_out(&en->err);
		return EXIT_USAGE;
	}
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(argc, argv, &en, &o, usage_run);
	if (rc < 0 && o.help)
		printf("%s", usage_run), rc = 0;
	if (rc < 0 && o.npos > 1)
		rc = usage_error(usage_run, "unexpected argument '%s'", o.positional[1]);
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		en.tty = isatty(2);
		if (engine_open_store(&en, 1) != 0)
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
	int rc = parse(argc, argv, &en, &o, usage_status);
	if (rc < 0 && o.help)
		printf("%s", usage_status), rc = 0;
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		if (engine_open_store(&en, 1) != 0 || sched_status(&en, stdout) != 0)
			rc = error_out(&en.err);
		else {
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
	int rc = parse(argc, argv, &en, &o, usage_dag);
	if (rc < 0 && o.help)
		printf("%s", usage_dag), rc = 0;
	if (rc < 0)
		rc = load_pipeline(&en, o.npos ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		dag *g = &en.g;
		int *order = xmalloc(g->n * sizeof *order);
		dag_topo(g, order);
		if (o.dot) {
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
	if (m) {
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
	herr e;
	for (size_t j = 0; j < d->nin && !b; j++) {
		char *tp = sched_output_path(en, d->in[j].node, d->in[j].output);
		char *ej = tp ? path_join(tp, "encoder.json") : NULL;
		if (ej && fs_exists(ej) && bpe_load_dir(&e, &b, tp) != 0)
			b = NULL;
		free(tp);
		free(ej);
	}
	buf ids, mask, text;
	buf_init(&ids);
	buf_init(&mask);
	buf_init(&text);
	rec_reader r;
	if (b && fs_read(&e, ids_p, &ids) == 0 && recr_open(&e, &r, rec_p) == 0) {
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
				if (bpe_decode(b, v + off + k, 1, &text) != 0) {
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
	int rc = parse(argc, argv, &en, &o, usage_show);
	if (rc < 0 && o.help)
		printf("%s", usage_show), rc = 0;
	if (rc < 0 && o.npos == 0)
		rc = usage_error(usage_show, "%s", "name the stage to show");
	if (rc < 0)
		rc = load_pipeline(&en, o.npos == 2 ? o.positional[0] : NULL);
	if (rc == 0 && !o.help) {
		char *target = xstrdup(o.positional[o.npos - 1]);
		char *dot = strchr(target, '.');
		if (dot)
			*dot++ = 0;
		int i = dag_find(&en.g, target);
		if (i < 0) {
			herr_set(&en.err, "%s: no stage named '%s'", en.dsl.script, target);
			rc = error_out(&en.err);
		} else if (dot && !dag_has_output(&en.g.nodes[i], dot)) {
			herr_set(&en.err, "stage '%s' has no output '%s'", target, dot);
			rc = error_out(&en.err);
		} else if (engine_open_store(&en, 1) != 0 || sched_plan(&en) != 0) {
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

static int cmd_runs(int argc, char **argv)
{
	engine en;
	opts o = {0};
	engine_init(&en);
	int rc = parse(argc, argv, &en, &o, usage_runs);
	if (rc < 0 && o.help)
		printf("%s", usage_runs), rc = 0;
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
	int rc = parse(argc, argv, &en, &o, usage_diff);
	if (rc < 0 && o.help)
		printf("%s", usage_diff), rc = 0;
	if (rc < 0 && o.npos != 2)
		rc = usage_error(usage_diff, "%s", "name two runs, as in `hone diff 3 5` or `hone diff -2 -1`");
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
	int rc = parse(argc, argv, &en, &o, usage_gc);
	if (rc < 0 && o.help)
		printf("%s", usage_gc), rc = 0;
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
	int rc = parse(argc, argv, &en, &o, usage_verify);
	if (rc < 0 && o.help)
		printf("%s", usage_verify), rc = 0;
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
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		printf("%s", usage_hash);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		herr e;
		hkey k;
		if (hkey_file(&e, argv[i], &k, NULL) != 0) {
			rc = error_out(&e);
			continue;
		}
		char hex[HKEY_HEX];
		hkey_hex(&k, hex);
		printf("%s  %s\n", hex, argv[i]);
	}
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
	            {"hash", cmd_hash}, {"predict", predict_main}, {"generate", generate_main}};
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
