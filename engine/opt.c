#include "opt.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int opt_usage_error(const opt_verb *v, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "hone: error: %s: ", v->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nhint: hone %s --help\n", v->name);
	return OPT_USAGE;
}

void opt_help(const opt_verb *v, FILE *out)
{
	fprintf(out, "usage: hone %s%s%s [options]\n", v->name, v->args && *v->args ? " " : "", v->args ? v->args : "");
	if (v->about)
		fprintf(out, "%s", v->about);
	for (const opt_spec *s = v->opts; s->name; s++) {
		char left[64];
		int n = 0;
		if (s->letter)
			n = snprintf(left, sizeof left, "-%c, ", s->letter);
		snprintf(left + n, sizeof left - (size_t)n, "--%s%s%s", s->name, s->meta ? " " : "", s->meta ? s->meta : "");
		fprintf(out, "  %-26s %s\n", left, s->help);
	}
	fprintf(out, "  %-26s %s\n", "-h, --help", "this help");
}

/* a negative number is a positional argument (a run: -1, -2), not an option */
static int negative_number(const char *a)
{
	if (a[0] != '-' || !a[1])
		return 0;
	for (const char *p = a + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

static int value_of(const opt_verb *v, const opt_spec *s, const char *val, opt_hit *h)
{
	h->spec = s;
	h->val = val;
	if (s->kind != OPT_INT && s->kind != OPT_NUM)
		return 0;
	char *end;
	double d = strtod(val, &end);
	if (end == val || *end || !isfinite(d))
		return opt_usage_error(v, "--%s expects %s, got '%s'", s->name, s->kind == OPT_INT ? "an integer" : "a number", val);
	if (s->kind == OPT_INT && d != floor(d))
		return opt_usage_error(v, "--%s expects an integer, got '%s'", s->name, val);
	if (d < s->min || d > s->max) {
		char lo[40], hi[40];
		snprintf(lo, sizeof lo, "%g", s->min);
		snprintf(hi, sizeof hi, "%g", s->max);
		if (s->kind == OPT_INT) {
			snprintf(lo, sizeof lo, "%.0f", s->min);
			snprintf(hi, sizeof hi, "%.0f", s->max);
		}
		return opt_usage_error(v, "--%s expects %s from %s to %s, got '%s'", s->name,
		                       s->kind == OPT_INT ? "an integer" : "a number", lo, hi, val);
	}
	h->i = (long long)d;
	h->d = d;
	return 0;
}

int opt_parse(const opt_verb *v, int argc, char **argv, opt_parsed *out)
{
	memset(out, 0, sizeof *out);
	size_t n = 0;
	while (v->opts[n].name)
		n++;
	struct option *lo = xcalloc(n + 2, sizeof *lo);
	buf shorts;
	buf_init(&shorts);
	buf_adds(&shorts, ":h"); /* ':' first: a missing value is reported as ':' */
	for (size_t i = 0; i < n; i++) {
		const opt_spec *s = &v->opts[i];
		lo[i] = (struct option){s->name, s->kind == OPT_FLAG ? no_argument : required_argument, NULL, 256 + (int)i};
		if (s->letter) {
			buf_addc(&shorts, s->letter);
			if (s->kind != OPT_FLAG)
				buf_addc(&shorts, ':');
		}
	}
	lo[n] = (struct option){"help", no_argument, NULL, 'h'};
	/* GNU getopt permutes, so options may follow positional arguments;
	 * negative numbers are marked (a \x01 before them) so that it leaves
	 * them alone, and given back as they were */
	const char *optstring = shorts.p;
	char **av = xcalloc((size_t)argc + 1, sizeof *av);
	char **copy = xcalloc((size_t)argc + 1, sizeof *copy), **orig = xcalloc((size_t)argc + 1, sizeof *orig);
	size_t ncopy = 0;
	for (int i = 0; i < argc; i++) {
		av[i] = argv[i];
		if (i && negative_number(argv[i]) && strcmp(argv[i - 1], "--")) {
			/* the value of an option that takes one stays a value */
			int is_value = 0;
			const char *p = argv[i - 1];
			for (size_t k = 0; k < n && p[0] == '-'; k++) {
				const opt_spec *s = &v->opts[k];
				if (s->kind == OPT_FLAG)
					continue;
				if ((p[1] == '-' && !strcmp(p + 2, s->name)) || (p[1] == s->letter && !p[2]))
					is_value = 1;
			}
			if (!is_value) {
				av[i] = copy[ncopy] = xasprintf("\x01%s", argv[i]);
				orig[ncopy++] = argv[i];
			}
		}
	}
	opterr = 0;
	optind = 1;
	int rc = OPT_OK, c, idx;
	out->hits = xcalloc((size_t)argc + 1, sizeof *out->hits);
	out->pos = xcalloc((size_t)argc + 1, sizeof *out->pos);
	while (rc == OPT_OK && (c = getopt_long(argc, av, optstring, lo, &idx)) != -1) {
		if (c == 'h') {
			opt_help(v, stdout);
			rc = OPT_HELP;
		} else if (c == '?' || c == ':') {
			const char *a = av[optind - 1];
			if (c == ':')
				rc = opt_usage_error(v, "%s needs a value", a);
			else if (optopt && !(a[0] == '-' && a[1] == '-'))
				rc = opt_usage_error(v, "unknown option '-%c'", optopt);
			else {
				char name[128];
				snprintf(name, sizeof name, "%s", a);
				char *eq = strchr(name, '=');
				if (eq)
					*eq = 0;
				rc = opt_usage_error(v, "unknown option '%s'", name);
			}
		} else {
			const opt_spec *s = NULL;
			if (c >= 256)
				s = &v->opts[c - 256];
			else
				for (size_t k = 0; k < n; k++)
					if (v->opts[k].letter == c)
						s = &v->opts[k];
			rc = value_of(v, s, s->kind == OPT_FLAG ? NULL : optarg, &out->hits[out->nhits]);
			out->nhits++;
		}
	}
	for (int i = optind; rc == OPT_OK && i < argc; i++) {
		const char *a = av[i];
		for (size_t k = 0; k < ncopy; k++)
			if (a == copy[k])
				a = orig[k];
		out->pos[out->npos++] = a;
	}
	if (rc == OPT_OK && (int)out->npos < v->min_pos)
		rc = opt_usage_error(v, "expected %s", v->args && *v->args ? v->args : "arguments");
	else if (rc == OPT_OK && (int)out->npos > v->max_pos)
		rc = opt_usage_error(v, "unexpected argument '%s'", out->pos[v->max_pos]);
	for (size_t k = 0; k < ncopy; k++)
		free(copy[k]);
	free(copy);
	free(orig);
	free(av);
	free(lo);
	buf_free(&shorts);
	if (rc != OPT_OK)
		opt_free(out);
	return rc;
}

void opt_free(opt_parsed *p)
{
	free(p->hits);
	free(p->pos);
	memset(p, 0, sizeof *p);
}

const opt_hit *opt_get(const opt_parsed *p, const char *name)
{
	const opt_hit *h = NULL;
	for (size_t i = 0; i < p->nhits; i++)
		if (!strcmp(p->hits[i].spec->name, name))
			h = &p->hits[i];
	return h;
}

int opt_has(const opt_parsed *p, const char *name)
{
	int n = 0;
	for (size_t i = 0; i < p->nhits; i++)
		n += !strcmp(p->hits[i].spec->name, name);
	return n;
}

void opt_bash_completion(const opt_verb *const *verbs, FILE *out)
{
	fprintf(out, "# bash completion for hone (generated by `hone completion bash` from its option tables)\n"
	             "_hone() {\n"
	             "  local cur prev verb\n"
	             "  cur=${COMP_WORDS[COMP_CWORD]}\n"
	             "  prev=${COMP_WORDS[COMP_CWORD-1]}\n"
	             "  verb=${COMP_WORDS[1]}\n"
	             "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
	             "    COMPREPLY=($(compgen -W \"");
	for (size_t i = 0; verbs[i]; i++)
		fprintf(out, "%s%s", i ? " " : "", verbs[i]->name);
	fprintf(out, " --help --version\" -- \"$cur\"))\n    return\n  fi\n  case \"$verb\" in\n");
	for (size_t i = 0; verbs[i]; i++) {
		const opt_verb *v = verbs[i];
		fprintf(out, "  %s)\n    case \"$prev\" in\n", v->name);
		for (const opt_spec *s = v->opts; s->name; s++)
			if (s->kind != OPT_FLAG) {
				fprintf(out, "      --%s", s->name);
				if (s->letter)
					fprintf(out, "|-%c", s->letter);
				fprintf(out, ") %s; return ;;\n", s->complete ? "COMPREPLY=($(compgen -f -- \"$cur\"))" : "COMPREPLY=()");
			}
		fprintf(out, "    esac\n    COMPREPLY=($(compgen -W \"--help");
		for (const opt_spec *s = v->opts; s->name; s++)
			fprintf(out, " --%s", s->name);
		fprintf(out, "\" -- \"$cur\"))\n");
		if (v->files)
			fprintf(out, "    [[ $cur != -* ]] && COMPREPLY+=($(compgen -f -- \"$cur\"))\n");
		fprintf(out, "    ;;\n");
	}
	fprintf(out, "  esac\n}\ncomplete -o filenames -F _hone hone\n");
}
