/*
 * basic — small native kernels that need no data format: concat and wc.
 * They stream their inputs in 1 MiB blocks and report progress in bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kernel.h"
#include "stages.h"

/* The files an input stands for: itself, or a folder's files in byte order. */
static int input_files(kctx *c, const kinput *in, char ***paths, size_t *n)
{
	if (!in->is_dir) {
		*paths = xmalloc(sizeof **paths);
		(*paths)[0] = xstrdup(in->path);
		*n = 1;
		return 0;
	}
	char **rel;
	size_t m;
	if (fs_list_files(&c->err, in->path, &rel, &m) != 0)
		return -1;
	*paths = xcalloc(m ? m : 1, sizeof **paths);
	*n = 0;
	for (size_t i = 0; i < m; i++)
		if (strcmp(rel[i], ".hone-manifest") != 0)
			(*paths)[(*n)++] = path_join(in->path, rel[i]);
	strv_free(rel, m);
	return 0;
}

static double total_bytes(char **paths, size_t n)
{
	double t = 0;
	struct stat st;
	for (size_t i = 0; i < n; i++)
		if (stat(paths[i], &st) == 0)
			t += (double)st.st_size;
	return t;
}

/* Streams a file through fn in blocks; updates progress. */
static int stream(kctx *c, const char *path, double *done, double total,
                  void (*fn)(void *ud, const char *p, size_t n), void *ud, char *blk, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kctx_fail(c, "%s: cannot open: %s", path, strerror(errno));
	for (;;) {
		ssize_t r = read(fd, blk, cap);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return kctx_fail(c, "%s: read error: %s", path, strerror(errno));
		}
		if (r == 0)
			break;
		fn(ud, blk, (size_t)r);
		*done += (double)r;
		if (kctx_progress(c, *done, total, "B") != 0) {
			close(fd);
			return -1; /* timed out or interrupted */
		}
	}
	close(fd);
	return 0;
}

typedef struct { FILE *f; int err; } sink;

static void to_file(void *ud, const char *p, size_t n)
{
	sink *s = ud;
	if (fwrite(p, 1, n, s->f) != n)
		s->err = 1;
}

static int k_concat(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const char *name = hval_get_str(params, "output", "concat.txt");
	const hval *sepv = hval_get(params, "sep");
	char *out;
	if (kctx_out_path(c, outdir, name, &out) != 0)
		return -1;
	FILE *f = fopen(out, "wb");
	if (!f) {
		kctx_fail(c, "%s: cannot create: %s", out, strerror(errno));
		free(out);
		return -1;
	}
	size_t cap = 1 << 20;
	char *blk = xmalloc(cap);
	char **all = NULL;
	size_t nall = 0;
	int rc = 0;
	for (size_t i = 0; i < nin && rc == 0; i++) {
		char **p;
		size_t n;
		if ((rc = input_files(c, &in[i], &p, &n)) != 0)
			break;
		all = xrealloc(all, (nall + n + 1) * sizeof *all);
		memcpy(all + nall, p, n * sizeof *p);
		nall += n;
		free(p);
	}
	double total = total_bytes(all, nall), done = 0;
	sink s = {f, 0};
	for (size_t i = 0; i < nall && rc == 0; i++) {
		if (i && sepv && sepv->slen)
			to_file(&s, sepv->s, sepv->slen);
		rc = stream(c, all[i], &done, total, to_file, &s, blk, cap);
	}
	if (fclose(f) != 0 || s.err)
		rc = rc ? rc : kctx_fail(c, "%s: write error", out);
	if (rc == 0) {
		kctx_metric(c, "files", (double)nall);
		kctx_metric(c, "bytes", done);
	}
	strv_free(all, nall);
	free(blk);
	free(out);
	return rc;
}

typedef struct { double lines, words, bytes; int in_word; } counts;

static void count(void *ud, const char *p, size_t n)
{
	counts *k = ud;
	const char *end = p + n;
	k->bytes += (double)n;
	for (const char *q = p; q < end; q++) {
		unsigned char ch = (unsigned char)*q;
		int space = ch == ' ' || (ch >= '\t' && ch <= '\r');
		if (ch == '\n')
			k->lines++;
		if (!space && !k->in_word)
			k->words++;
		k->in_word = !space;
	}
}

static int k_wc(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	(void)params;
	(void)nin;
	char **paths;
	size_t n;
	if (input_files(c, &in[0], &paths, &n) != 0)
		return -1;
	char *out;
	if (kctx_out_path(c, outdir, "counts.tsv", &out) != 0) {
		strv_free(paths, n);
		return -1;
	}
	size_t cap = 1 << 20;
	char *blk = xmalloc(cap);
	double total = total_bytes(paths, n), done = 0;
	counts sum = {0, 0, 0, 0};
	buf tsv;
	buf_init(&tsv);
	buf_adds(&tsv, "file\tlines\twords\tbytes\n");
	int rc = 0;
	size_t skip = in[0].is_dir ? strlen(in[0].path) + 1 : 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		counts k = {0, 0, 0, 0};
		rc = stream(c, paths[i], &done, total, count, &k, blk, cap);
		const char *shown = skip ? paths[i] + skip : in[0].label;
		buf_printf(&tsv, "%s\t%.0f\t%.0f\t%.0f\n", shown, k.lines, k.words, k.bytes);
		sum.lines += k.lines;
		sum.words += k.words;
		sum.bytes += k.bytes;
	}
	if (rc == 0) {
		buf_printf(&tsv, "total\t%.0f\t%.0f\t%.0f\n", sum.lines, sum.words, sum.bytes);
		rc = fs_write_atomic(&c->err, out, tsv.p, tsv.len);
		kctx_metric(c, "lines", sum.lines);
		kctx_metric(c, "words", sum.words);
		kctx_metric(c, "bytes", sum.bytes);
	}
	buf_free(&tsv);
	free(blk);
	free(out);
	strv_free(paths, n);
	return rc;
}

const kernel_def stage_concat = {"concat", 1, k_concat, NULL};
const kernel_def stage_wc = {"wc", 1, k_wc, NULL};
