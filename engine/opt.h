/*
 * opt — one option parser for every verb: getopt_long over a table.
 *
 * A verb declares its options once (long name, short letter, the kind of
 * value and its range, help text); opt_parse reads `--opt=val`, `--opt
 * val`, bundled short flags (`-qn`), numbers checked against their range,
 * and the verb's count of positional arguments (a negative number such as a
 * run's `-1` is positional). A usage error prints one line and `hint: hone
 * VERB --help`, and returns OPT_USAGE (exit status 2). The same tables give
 * each verb's --help text and the bash completion script.
 *
 * Relies on: util, glibc getopt_long.
 * Ownership: an opt_parsed points into argv and the tables; opt_free
 * releases its arrays.
 */
#ifndef HONE_OPT_H
#define HONE_OPT_H

#include <stdio.h>

enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_NUM };
enum { OPT_OK = 0, OPT_USAGE = 2, OPT_HELP = -2 };

typedef struct opt_spec {
	const char *name; /* long name, without "--" */
	char letter;      /* short form, or 0 */
	int kind;         /* OPT_FLAG, OPT_STR, OPT_INT, OPT_NUM */
	double min, max;  /* OPT_INT / OPT_NUM: the accepted range */
	const char *meta; /* the value's name in help: "N", "FILE" */
	const char *help;
	int complete;     /* bash completion of the value: 0 none, 1 files */
} opt_spec;

typedef struct opt_verb {
	const char *name;      /* "run" */
	const char *args;      /* positional arguments in help: "[FILE]" */
	int min_pos, max_pos;
	const char *about;     /* a line or two after the usage line */
	const opt_spec *opts;  /* ends with an entry whose name is NULL */
	int files;             /* positional arguments complete as files */
} opt_verb;

typedef struct opt_hit {
	const opt_spec *spec;
	const char *val; /* NULL for flags */
	long long i;     /* OPT_INT */
	double d;        /* OPT_NUM */
} opt_hit;

typedef struct opt_parsed {
	opt_hit *hits; /* in command-line order */
	size_t nhits;
	const char **pos;
	size_t npos;
} opt_parsed;

/* Parses argv[1..argc) for verb v (argv[0] is the verb). OPT_OK, OPT_HELP
 * (after printing the help to stdout) or OPT_USAGE (after the error line
 * and hint on stderr). */
int opt_parse(const opt_verb *v, int argc, char **argv, opt_parsed *out);
void opt_free(opt_parsed *p);
/* The last value given for option name, or NULL; opt_has counts flags. */
const opt_hit *opt_get(const opt_parsed *p, const char *name);
int opt_has(const opt_parsed *p, const char *name);
/* A usage error of verb v: "hone: error: VERB: ..." and the hint; OPT_USAGE. */
int opt_usage_error(const opt_verb *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void opt_help(const opt_verb *v, FILE *out);
/* A bash completion script for the verbs (NULL-terminated list). */
void opt_bash_completion(const opt_verb *const *verbs, FILE *out);

#endif
