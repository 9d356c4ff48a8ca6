/*
 * ingest — reads files, folders and archives (tar, tar.gz, tar.xz, tar.zst,
 * tar.bz2, zip; read in place through libarchive, never extracted) in JSON
 * Lines, JSON, CSV/TSV or plain text, maps fields (dotted paths), labels,
 * applies text hygiene and writes a dataset (records.h).
 *
 * Every bad row is an error naming the file (and archive member), line and
 * what was expected, unless on_error = "skip", which counts it and reports
 * the first reasons.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/archive.h"
#include "../io/csv.h"
#include "../io/json.h"
#include "../io/records.h"
#include "../io/text.h"
#include "../kernel.h"
#include "stages.h"

enum { F_AUTO, F_JSONL, F_JSON, F_CSV, F_TSV, F_TEXT };
enum { U_ERROR, U_REPLACE, U_DROP };

typedef struct field {
	char *name;     /* in the dataset */
	char *path;     /* in the input: JSON dotted path or CSV column */
	rec_type type;
	int required;
	int idx;        /* writer field */
	int col;        /* CSV: column index of the current file, -1 if absent */
	char *mail;     /* "path@body" / "path@subject": a part of an RFC 822 message */
	int json;       /* types.<name> = "json": any JSON value, kept as its JSON text */
} field;

typedef struct reason {
	char *what;
	size_t count;
} reason;

typedef struct ing {
	kctx *c;
	const hval *p;
	rec_writer *w;
	field *f;
	size_t nf;
	int label;          /* index of the "label" field or -1 */
	int text;           /* index of the "text" field or -1 */
	int format, utf8, skip, drop_empty, flags, label_from_dir, text_per_file;
	char delim;
	const hval *labels;
	const hval *members;
	uint64_t max_bytes, bytes, total, done_base;
	size_t rows_read, rows_kept, skipped, dropped_empty, documents, links_skipped;
	reason *reasons;
	size_t nreasons;
	buf examples;       /* first skipped rows, for the log */
	jarena *arena;
	buf tmp, clean, part;
	const char *map;    /* start of the current file's mapping, or NULL */
	size_t dropped;     /* bytes of it already released */
	const char *where;  /* "data/a.jsonl" or "data/x.tgz[member]" */
	const char *name;   /* file or member name, for format and dirname */
} ing;

/* ---- bad rows ------------------------------------------------------------- */

/* Counts a skipped row under its reason. */
static void count_skip(ing *g, const char *reason_key)
{
	g->skipped++;
	size_t i;
	for (i = 0; i < g->nreasons; i++)
		if (!strcmp(g->reasons[i].what, reason_key))
			break;
	if (i == g->nreasons) {
		g->reasons = xrealloc(g->reasons, (g->nreasons + 1) * sizeof *g->reasons);
		g->reasons[g->nreasons].what = xstrdup(reason_key);
		g->reasons[g->nreasons++].count = 0;
	}
	g->reasons[i].count++;
}

/* Reports a bad row: an error, or with on_error = "skip" a counted skip.
 * Returns -1 to stop the stage, 0 to go on. */
static int bad_row(ing *g, size_t line, const char *reason_key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad_row(ing *g, size_t line, const char *reason_key, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!g->skip) {
		if (line)
			kctx_fail(g->c, "%s:%zu: %s", g->where, line, msg);
		else
			kctx_fail(g->c, "%s: %s", g->where, msg);
		if (!strcmp(reason_key, "invalid_utf8"))
			herr_hint(&g->c->err, "pass utf8 = \"replace\" to replace invalid bytes with U+FFFD, or on_error = \"skip\" to "
			          "skip such rows and count them");
		else
			herr_hint(&g->c->err, "fix the input, or pass on_error = \"skip\" to skip such rows and count them");
		return -1;
	}
	count_skip(g, reason_key);
	if (g->skipped <= 5)
		buf_printf(&g->examples, "skipped %s:%zu: %s\n", g->where, line, msg);
	return 0;
}

/* ---- values --------------------------------------------------------------- */

/* Cleans and stores a text value into field k; 1 stored, 0 row dropped
 * (already counted), -1 stop. */
static int put_text(ing *g, size_t k, const char *s, size_t n, size_t line, size_t off)
{
	field *f = &g->f[k];
	int ascii;
	size_t bad = utf8_check(s, n, &ascii);
	if (bad != (size_t)-1) {
		if (g->utf8 == U_ERROR) {
			if (bad_row(g, line, "invalid_utf8", "field '%s': invalid UTF-8 at byte %zu of the value (input byte offset %zu)",
			            f->name, bad, off + bad) < 0)
				return -1;
			return 0;
		}
		if (g->utf8 == U_DROP) {
			count_skip(g, "invalid_utf8_dropped");
			return 0;
		}
		utf8_repair(&g->tmp, s, n);
		s = g->tmp.p;
		n = g->tmp.len;
	}
	if (f->type == REC_STR && g->flags && !(ascii && text_clean_is_identity_ascii(g->flags))) {
		if (text_clean(&g->clean, s, n, g->flags) != 0) {
			if (bad_row(g, line, "normalization_failed", "field '%s': Unicode normalization failed", f->name) < 0)
				return -1;
			return 0;
		}
		s = g->clean.p;
		n = g->clean.len;
	}
	if ((int)k == g->label && g->labels) {
		char *key = xstrndup(s, n);
		const hval *m = hval_get(g->labels, key);
		if (!m)
			m = hval_get(g->labels, "*");
		free(key);
		if (m && m->t == HV_STR) {
			s = m->s;
			n = m->slen;
		}
	}
	if ((int)k == g->text && g->drop_empty && n == 0) {
		g->dropped_empty++;
		return 0;
	}
	recw_str(g->w, f->idx, s, n);
	return 1;
}

static const char *jtype_name(jtype t)
{
	static const char *n[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
	return n[t];
}

/* Stores a scalar given as text (CSV cell, JSON number/string) into a typed
 * field. */
static int put_scalar(ing *g, size_t k, const char *s, size_t n, size_t line, size_t off)
{
	field *f = &g->f[k];
	char tmp[64];
	char *end;
	switch (f->type) {
	case REC_STR:
	case REC_CAT:
		return put_text(g, k, s, n, line, off);
	case REC_INT:
	case REC_FLOAT:
		if (n == 0 || n >= sizeof tmp)
			goto bad;
		memcpy(tmp, s, n);
		tmp[n] = 0;
		errno = 0;
		if (f->type == REC_INT) {
			long long v = strtoll(tmp, &end, 10);
			if (*end || errno)
				goto bad;
			recw_int(g->w, f->idx, v);
		} else {
			double v = strtod(tmp, &end);
			if (*end)
				goto bad;
			recw_float(g->w, f->idx, v);
		}
		return 1;
	case REC_BOOL:
		if ((n == 4 && !memcmp(s, "true", 4)) || (n == 1 && s[0] == '1'))
			recw_bool(g->w, f->idx, 1);
		else if ((n == 5 && !memcmp(s, "false", 5)) || (n == 1 && s[0] == '0'))
			recw_bool(g->w, f->idx, 0);
		else
			goto bad;
		return 1;
	}
bad:
	return bad_row(g, line, "wrong_type", "field '%s': expected %s, got \"%.*s\"", f->name,
	               f->type == REC_INT ? "an integer" : f->type == REC_FLOAT ? "a number" : "true or false",
	               (int)(n > 40 ? 40 : n), s) < 0 ? -1 : 0;
}

static int missing(ing *g, size_t k, size_t line)
{
	field *f = &g->f[k];
	if (!f->required)
		return 1;
	return bad_row(g, line, "missing_field", "field '%s' (from '%s') is missing or null", f->name, f->path) < 0 ? -1 : 0;
}

/* Ends a row that put all fields; labels from the path. */
static void end_row(ing *g)
{
	recw_end_row(g->w);
	g->rows_kept++;
}

/* The label of the current document from its folder name. */
static int put_dir_label(ing *g, size_t line)
{
	const char *name = g->name;
	const char *slash = strrchr(name, '/');
	if (!slash)
		return bad_row(g, line, "no_folder_for_label", "label_from = \"dirname\": '%s' is not inside a folder", name) < 0 ? -1 : 0;
	const char *start = slash;
	while (start > name && start[-1] != '/')
		start--;
	return put_text(g, (size_t)g->label, start, (size_t)(slash - start), line, 0);
}

/* A part of an e-mail message (headers, a blank line, the body): "body",
 * or a header by name (any case), its folded lines joined by a space.
 * NULL when the message has no such header. */
static const char *mail_part(buf *out, const char *s, size_t n, const char *sel, size_t *len)
{
	size_t i = 0;
	int body = !strcmp(sel, "body"), sl = (int)strlen(sel);
	while (i < n) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - s) : n, e = end;
		if (e > i && s[e - 1] == '\r')
			e--;
		if (e == i) { /* the blank line */
			if (!body)
				return NULL;
			*len = n - (end < n ? end + 1 : n);
			return s + (end < n ? end + 1 : n);
		}
		if (!body && e - i > (size_t)sl && s[i + (size_t)sl] == ':' && !strncasecmp(s + i, sel, (size_t)sl)) {
			out->len = 0;
			size_t v = i + (size_t)sl + 1;
			for (;;) {
				while (v < e && (s[v] == ' ' || s[v] == '\t'))
					v++;
				if (out->len && v < e)
					buf_add(out, " ", 1);
				buf_add(out, s + v, e - v);
				/* continuation lines start with a space or a tab */
				if (end >= n || (s[end + 1] != ' ' && s[end + 1] != '\t'))
					break;
				v = end + 1;
				nl = memchr(s + v, '\n', n - v);
				end = nl ? (size_t)(nl - s) : n;
				e = end > v && s[end - 1] == '\r' ? end - 1 : end;
			}
			*len = out->len;
			return out->p ? out->p : "";
		}
		i = end + 1;
	}
	*len = 0;
	return body ? s + n : NULL;
}

static int json_record(ing *g, const jnode *doc, size_t line, size_t base)
{
	g->rows_read++;
	int rc = 1;
	for (size_t k = 0; k < g->nf && rc == 1; k++) {
		if ((int)k == g->label && g->label_from_dir) {
			rc = put_dir_label(g, line);
			continue;
		}
		const jnode *v = json_path(doc, g->f[k].path);
		if (!v || v->t == J_NULL) {
			rc = missing(g, k, line);
			continue;
		}
		if (g->f[k].json) {
			buf js;
			buf_init(&js);
			json_write_node(&js, v);
			rc = put_scalar(g, k, js.p, js.len, line, base + v->off);
			buf_free(&js);
			continue;
		}
		if (g->f[k].mail && v->t == J_STR) {
			size_t len;
			const char *part = mail_part(&g->part, v->s, v->len, g->f[k].mail, &len);
			rc = part ? put_scalar(g, k, part, len, line, base + v->off) : missing(g, k, line);
			continue;
		}
		switch (v->t) {
		case J_STR:
		case J_NUM:
			rc = put_scalar(g, k, v->s, v->len, line, base + v->off);
			break;
		case J_TRUE:
		case J_FALSE:
			if (g->f[k].type == REC_BOOL) {
				recw_bool(g->w, g->f[k].idx, v->t == J_TRUE);
				rc = 1;
			} else {
				rc = put_scalar(g, k, v->t == J_TRUE ? "true" : "false", v->t == J_TRUE ? 4 : 5, line, base + v->off);
			}
			break;
		default:
			rc = bad_row(g, line, "wrong_type", "field '%s' (from '%s'): expected a scalar, got %s",
			             g->f[k].name, g->f[k].path, jtype_name(v->t)) < 0 ? -1 : 0;
		}
	}
	if (rc == 1)
		end_row(g);
	else
		recw_cancel_row(g->w);
	return rc < 0 ? -1 : 0;
}

/* ---- formats -------------------------------------------------------------- */

static int fmt_jsonl(ing *g, const char *p, size_t n)
{
	size_t line = 0, i = 0;
	if (n >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
		i = 3;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - p) : n;
		line++;
		size_t s = i, e = end;
		while (s < e && (p[s] == ' ' || p[s] == '\t' || p[s] == '\r'))
			s++;
		while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t' || p[e - 1] == '\r'))
			e--;
		if (e > s) {
			jerror err;
			json_arena_reset(g->arena);
			jnode *doc = json_parse(g->arena, p + s, e - s, &err);
			if (!doc) {
				g->rows_read++;
				if (bad_row(g, line, "malformed_json", "malformed JSON at column %zu: %s", err.off + 1, err.what) < 0)
					return -1;
			} else if (doc->t != J_OBJ) {
				g->rows_read++;
				if (bad_row(g, line, "not_an_object", "expected a JSON object, got %s", jtype_name(doc->t)) < 0)
					return -1;
			} else if (json_record(g, doc, line, s) != 0) {
				return -1;
			}
		}
		i = end + 1;
		if ((line & 8191) == 0) {
			if (kctx_progress(g->c, (double)(g->done_base + i), (double)g->total, "B") != 0)
				return -1; /* timed out or interrupted */
			/* parsed lines of a mapped file are not needed again: release
			 * them so memory stays about the size of what is written */
			if (g->map == p && i - g->dropped >= ((size_t)64 << 20)) {
				size_t upto = i & ~(size_t)4095;
				madvise((void *)(p + g->dropped), upto - g->dropped, MADV_DONTNEED);
				g->dropped = upto;
			}
		}
	}
	return 0;
}

static int fmt_json(ing *g, const char *p, size_t n)
{
	jerror err;
	size_t line, col;
	json_arena_reset(g->arena);
	jnode *doc = json_parse(g->arena, p, n, &err);
	if (!doc) {
		json_line_col(p, err.off, &line, &col);
		g->rows_read++;
		return bad_row(g, line, "malformed_json", "malformed JSON at column %zu: %s", col, err.what) < 0 ? -1 : 0;
	}
	if (doc->t == J_OBJ)
		return json_record(g, doc, 1, 0);
	if (doc->t != J_ARR) {
		g->rows_read++;
		return bad_row(g, 1, "not_an_object", "expected a JSON object or an array of objects, got %s",
		               jtype_name(doc->t)) < 0 ? -1 : 0;
	}
	for (const jnode *k = doc->kid; k; k = k->next) {
		json_line_col(p, k->off, &line, &col);
		if (k->t != J_OBJ) {
			g->rows_read++;
			if (bad_row(g, line, "not_an_object", "array element: expected a JSON object, got %s", jtype_name(k->t)) < 0)
				return -1;
			continue;
		}
		if (json_record(g, k, line, 0) != 0)
			return -1;
	}
	return 0;
}

static int fmt_csv(ing *g, const char *p, size_t n, char delim)
{
	csv c;
	csv_init(&c, p, n, delim);
	int rc = csv_next(&c);
	if (rc <= 0) {
		if (rc < 0)
			kctx_fail(g->c, "%s:%zu: malformed CSV: %s", g->where, c.err_line, c.err);
		csv_free(&c);
		return rc;
	}
	/* header: find each field's column */
	size_t ncols = c.nf;
	for (size_t k = 0; k < g->nf; k++) {
		g->f[k].col = -1;
		for (size_t j = 0; j < c.nf; j++) {
			size_t len;
			const char *h = csv_field(&c, j, &len);
			if (strlen(g->f[k].path) == len && !memcmp(h, g->f[k].path, len))
				g->f[k].col = (int)j;
		}
		if (g->f[k].col < 0 && !((int)k == g->label && g->label_from_dir) && g->f[k].required) {
			kctx_fail(g->c, "%s:1: no column '%s' in the header (for field '%s')", g->where, g->f[k].path, g->f[k].name);
			csv_free(&c);
			return -1;
		}
	}
	while ((rc = csv_next(&c)) == 1) {
		size_t line = c.line - 1;
		size_t len0;
		if (c.nf == 1 && (csv_field(&c, 0, &len0), len0 == 0))
			continue; /* blank line */
		g->rows_read++;
		if (c.nf != ncols) {
			if (bad_row(g, line, "wrong_column_count", "expected %zu columns, got %zu", ncols, c.nf) < 0) {
				csv_free(&c);
				return -1;
			}
			continue;
		}
		int r = 1;
		for (size_t k = 0; k < g->nf && r == 1; k++) {
			if ((int)k == g->label && g->label_from_dir) {
				r = put_dir_label(g, line);
				continue;
			}
			if (g->f[k].col < 0) {
				r = missing(g, k, line);
				continue;
			}
			size_t len;
			const char *s = csv_field(&c, (size_t)g->f[k].col, &len);
			r = put_scalar(g, k, s, len, line, 0);
		}
		if (r == 1)
			end_row(g);
		else
			recw_cancel_row(g->w);
		if (r < 0) {
			csv_free(&c);
			return -1;
		}
	}
	if (rc < 0)
		kctx_fail(g->c, "%s:%zu: malformed CSV: %s", g->where, c.err_line, c.err);
	csv_free(&c);
	return rc < 0 ? -1 : 0;
}

static int text_row(ing *g, const char *s, size_t n, size_t line)
{
	g->rows_read++;
	int r = 1;
	for (size_t k = 0; k < g->nf && r == 1; k++) {
		if ((int)k == g->label && g->label_from_dir)
			r = put_dir_label(g, line);
		else if ((int)k == g->text)
			r = put_text(g, k, s, n, line, 0);
		else
			r = missing(g, k, line);
	}
	if (r == 1)
		end_row(g);
	else
		recw_cancel_row(g->w);
	return r < 0 ? -1 : 0;
}

static int fmt_text(ing *g, const char *p, size_t n)
{
	if (g->text_per_file)
		return text_row(g, p, n, 1);
	size_t line = 0, i = 0;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - p) : n;
		size_t e = end > i && p[end - 1] == '\r' ? end - 1 : end;
		line++;
		if (text_row(g, p + i, e - i, line) != 0)
			return -1;
		i = end + 1;
	}
	return 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

static int document(ing *g, const char *p, size_t n)
{
	int fmt = g->format;
	if (fmt == F_AUTO) {
		const char *nm = g->name;
		if (ends_with(nm, ".jsonl") || ends_with(nm, ".ndjson")) fmt = F_JSONL;
		else if (ends_with(nm, ".json")) fmt = F_JSON;
		else if (ends_with(nm, ".csv")) fmt = F_CSV;
		else if (ends_with(nm, ".tsv")) fmt = F_TSV;
		else if (ends_with(nm, ".txt") || ends_with(nm, ".text")) fmt = F_TEXT;
		else
			return kctx_fail(g->c, "%s: cannot tell the format from the name; set format = \"jsonl\", \"json\", \"csv\", \"tsv\" or \"text\"", g->where);
	}
	g->documents++;
	switch (fmt) {
	case F_JSONL: return fmt_jsonl(g, p, n);
	case F_JSON: return fmt_json(g, p, n);
	case F_CSV: return fmt_csv(g, p, n, g->delim ? g->delim : ',');
	case F_TSV: return fmt_csv(g, p, n, g->delim ? g->delim : '\t');
	default: return fmt_text(g, p, n);
	}
}

/* ---- sources -------------------------------------------------------------- */

static int wanted(ing *g, const char *name)
{
	const hval *m = g->members;
	if (!m || m->t == HV_NIL)
		return 1;
	if (m->t == HV_STR)
		return fnmatch(m->s, name, 0) == 0;
	for (size_t i = 0; m->t == HV_LIST && i < m->n; i++)
		if (m->v[i].t == HV_STR && fnmatch(m->v[i].s, name, 0) == 0)
			return 1;
	return 0;
}

static int budget(ing *g, uint64_t more)
{
	g->bytes += more;
	if (g->bytes > g->max_bytes)
		return kctx_fail(g->c, "%s: input exceeds max_bytes (%llu bytes decompressed so far); a decompression bomb? Raise max_bytes if this is expected",
		                 g->where, (unsigned long long)g->max_bytes);
	return 0;
}

static int is_archive(const char *path)
{
	unsigned char m[264];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, m, sizeof m);
	close(fd);
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) return 1;                    /* gzip */
	if (n >= 6 && !memcmp(m, "\xfd" "7zXZ\0", 6)) return 1;                   /* xz */
	if (n >= 4 && !memcmp(m, "\x28\xb5\x2f\xfd", 4)) return 1;                /* zstd */
	if (n >= 3 && !memcmp(m, "BZh", 3)) return 1;                             /* bzip2 */
	if (n >= 4 && !memcmp(m, "PK\x03\x04", 4)) return 1;                      /* zip */
	if (n >= 4 && !memcmp(m, "PK\x05\x06", 4)) return 1;                      /* empty zip */
	if (n >= 262 && !memcmp(m + 257, "ustar", 5)) return 1;                   /* tar */
	return 0;
}

static int unsafe_name(const char *name)
{
	if (name[0] == '/')
		return 1;
	const char *p = name;
	while ((p = strstr(p, "..")) != NULL) {
		if ((p == name || p[-1] == '/') && (p[2] == 0 || p[2] == '/'))
			return 1;
		p += 2;
	}
	return 0;
}

static int from_archive(ing *g, const kinput *in)
{
	const archive_api *A = archive_api_get(&g->c->err);
	if (!A)
		return -1;
	struct archive *a = A->read_new();
	A->read_support_filter_all(a);
	A->read_support_format_tar(a);
	A->read_support_format_zip(a);
	A->read_support_format_gnutar(a);
	/* anything else behind a compression filter is one file (data.jsonl.gz):
	 * libarchive's raw format, tried after the archive formats */
	A->read_support_format_raw(a);
	int rc = 0;
	if (A->read_open_filename(a, in->path, 1 << 16) != ARCHIVE_OK) {
		rc = kctx_fail(g->c, "%s: corrupt or truncated archive: %s", in->label, A->error_string(a));
		A->read_free(a);
		return rc;
	}
	struct archive_entry *ent;
	buf data, where;
	buf_init(&data);
	buf_init(&where);
	int r;
	char *raw_name = NULL;
	while (rc == 0 && (r = A->read_next_header(a, &ent)) == ARCHIVE_OK) {
		const char *name = A->entry_pathname(ent);
		if (A->format(a) == ARCHIVE_FORMAT_RAW) {
			/* the member is the file without its compression suffix, so
			 * that the format follows its own extension (x.csv.gz: CSV) */
			const char *base = strrchr(in->label, '/') ? strrchr(in->label, '/') + 1 : in->label;
			const char *dot = strrchr(base, '.');
			static const char *const sfx[] = {".gz", ".gzip", ".xz", ".zst", ".zstd", ".bz2", ".lz4", ".lzma", ".z"};
			int cut = 0;
			for (size_t k = 0; dot && k < sizeof sfx / sizeof *sfx; k++)
				cut |= !strcasecmp(dot, sfx[k]);
			free(raw_name);
			raw_name = cut ? xstrndup(base, (size_t)(dot - base)) : xstrdup(base);
			name = raw_name;
		}
		if (!name)
			continue;
		int type = A->entry_filetype(ent);
		if (type == AE_IFDIR)
			continue;
		if (type != AE_IFREG || A->entry_hardlink(ent) || A->entry_symlink(ent)) {
			g->links_skipped++; /* links and special files are never followed */
			continue;
		}
		if (unsafe_name(name)) {
			g->links_skipped++;
			continue;
		}
		if (!wanted(g, name))
			continue;
		where.len = 0;
		buf_printf(&where, "%s[%s]", in->label, name);
		g->where = where.p;
		g->name = name;
		data.len = 0;
		for (;;) {
			buf_reserve(&data, 1 << 16);
			la_ssize_t got = A->read_data(a, data.p + data.len, data.cap - data.len - 1);
			if (got < 0) {
				rc = kctx_fail(g->c, "%s: corrupt or truncated archive: %s", where.p, A->error_string(a));
				break;
			}
			if (got == 0)
				break;
			data.len += (size_t)got;
			if ((rc = budget(g, (uint64_t)got)) != 0)
				break;
		}
		if (rc == 0) {
			data.p[data.len] = 0;
			rc = document(g, data.p, data.len);
		}
		if (kctx_progress(g->c, (double)(g->done_base + (uint64_t)A->filter_bytes(a, -1)), (double)g->total, "B") != 0 &&
		    rc == 0)
			rc = -1;
	}
	if (rc == 0 && r != ARCHIVE_EOF)
		rc = kctx_fail(g->c, "%s: corrupt or truncated archive: %s", in->label,
		               A->error_string(a) ? A->error_string(a) : "read error");
	A->read_free(a);
	free(raw_name);
	buf_free(&data);
	buf_free(&where);
	return rc;
}

static int from_file(ing *g, const char *path, const char *label, const char *name)
{
	if (is_archive(path)) {
		kinput in = {"", label, path, 0};
		return from_archive(g, &in);
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kctx_fail(g->c, "%s: cannot open: %s", label, strerror(errno));
	struct stat st;
	fstat(fd, &st);
	size_t n = (size_t)st.st_size;
	const char *p = "";
	void *map = NULL;
	if (n) {
		/* populate at once: far fewer faults than touching page by page */
		map = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (map == MAP_FAILED) {
			close(fd);
			return kctx_fail(g->c, "%s: cannot map: %s", label, strerror(errno));
		}
		madvise(map, n, MADV_SEQUENTIAL);
		p = map;
	}
	close(fd);
	g->where = label;
	g->name = name;
	g->map = map;
	g->dropped = 0;
	int rc = budget(g, n);
	if (rc == 0)
		rc = document(g, p, n);
	if (map)
		munmap(map, n);
	g->map = NULL;
	g->done_base += n;
	if (kctx_progress(g->c, (double)g->done_base, (double)g->total, "B") != 0 && rc == 0)
		rc = -1;
	return rc;
}

/* ---- the kernel ----------------------------------------------------------- */

static int setup_fields(ing *g)
{
	const hval *fields = hval_get(g->p, "fields");
	const hval *types = hval_get(g->p, "types");
	const hval *req = hval_get(g->p, "required");
	int fmt = g->format;
	g->label = g->text = -1;
	(void)fmt;
	size_t n = fields && fields->t == HV_MAP ? fields->n : 0;
	/* without fields: { text = "text" } (the line, the "text" member, the
	 * "text" column) */
	int add_text = n == 0;
	int add_label = g->label_from_dir && !hval_get(fields, "label");
	g->f = xcalloc(n + 2, sizeof *g->f);
	g->nf = n; /* so that an error below frees what is set */
	for (size_t i = 0; i < n; i++) {
		g->f[i].name = xstrdup(fields->k[i]);
		g->f[i].path = xstrdup(fields->v[i].t == HV_STR ? fields->v[i].s : fields->k[i]);
		char *at = strchr(g->f[i].path, '@');
		if (at) {
			*at = 0;
			g->f[i].mail = xstrdup(at + 1);
			if (!at[1] || g->format >= 3) /* csv, tsv, text */
				return kctx_fail(g->c, "ingest: fields.%s = \"%s@%s\": give path@body or path@Header-Name, in JSON input",
				                 g->f[i].name, g->f[i].path, at + 1);
		}
	}
	g->nf = n;
	if (add_text) {
		g->f[g->nf].name = xstrdup("text");
		g->f[g->nf++].path = xstrdup("text");
	}
	if (add_label) {
		g->f[g->nf].name = xstrdup("label");
		g->f[g->nf++].path = xstrdup("(dirname)");
	}
	for (size_t i = 0; i < g->nf; i++) {
		field *f = &g->f[i];
		const char *t = hval_get_str(types, f->name, NULL);
		f->json = t && !strcmp(t, "json"); /* CSV and text input: the column's text as it is */
		f->type = f->json ? REC_STR : t ? rec_type_parse(t) : (!strcmp(f->name, "label") ? REC_CAT : REC_STR);
		if (!f->type)
			return kctx_fail(g->c, "ingest: types.%s = \"%s\": expected string, int, float, bool, category or json", f->name, t);
		f->required = 1;
		if (req && req->t == HV_LIST) {
			f->required = 0;
			for (size_t k = 0; k < req->n; k++)
				if (req->v[k].t == HV_STR && !strcmp(req->v[k].s, f->name))
					f->required = 1;
		}
		if (!strcmp(f->name, "label"))
			g->label = (int)i;
		if (!strcmp(f->name, "text"))
			g->text = (int)i;
		f->idx = recw_field(g->w, f->name, f->type);
	}
	if (g->label_from_dir && g->label < 0)
		return kctx_fail(g->c, "ingest: label_from needs a field named label");
	return 0;
}

static int k_ingest(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	ing g;
	memset(&g, 0, sizeof g);
	g.c = c;
	g.p = params;
	g.w = recw_new();
	g.arena = json_arena_new();
	buf_init(&g.tmp);
	buf_init(&g.clean);
	buf_init(&g.part);
	buf_init(&g.examples);
	const char *fmt = hval_get_str(params, "format", "auto");
	static const char *fmts[] = {"auto", "jsonl", "json", "csv", "tsv", "text"};
	for (int i = 0; i < 6; i++)
		if (!strcmp(fmt, fmts[i]))
			g.format = i;
	const char *u = hval_get_str(params, "utf8", "error");
	g.utf8 = !strcmp(u, "replace") ? U_REPLACE : !strcmp(u, "drop") ? U_DROP : U_ERROR;
	g.skip = !strcmp(hval_get_str(params, "on_error", "error"), "skip");
	g.drop_empty = hval_get_bool(params, "drop_empty", 1);
	const char *norm = hval_get_str(params, "normalize", "nfc");
	g.flags = !strcmp(norm, "nfc") ? TEXT_NFC : !strcmp(norm, "nfkc") ? TEXT_NFKC : 0;
	if (hval_get_bool(params, "lowercase", 0))
		g.flags |= TEXT_LOWER;
	if (hval_get_bool(params, "collapse_whitespace", 0))
		g.flags |= TEXT_COLLAPSE;
	g.label_from_dir = !strcmp(hval_get_str(params, "label_from", ""), "dirname");
	g.text_per_file = !strcmp(hval_get_str(params, "text_unit", "line"), "file");
	const char *d = hval_get_str(params, "delimiter", NULL);
	g.delim = d && d[0] ? d[0] : 0;
	g.labels = hval_get(params, "labels");
	if (g.labels && g.labels->t != HV_MAP)
		g.labels = NULL;
	g.members = hval_get(params, "members");
	g.max_bytes = (uint64_t)hval_get_num(params, "max_bytes", 68719476736.0);
	int rc = setup_fields(&g);

	/* total bytes, for progress */
	for (size_t i = 0; i < nin; i++) {
		struct stat st;
		if (!in[i].is_dir && stat(in[i].path, &st) == 0)
			g.total += (uint64_t)st.st_size;
	}
	/* the text usually dominates: stream it to the output file as rows end
	 * instead of holding it in memory */
	char *outpath = NULL;
	if (rc == 0)
		rc = kctx_out_path(c, outdir, RECORDS_FILE, &outpath);
	if (rc == 0 && g.text >= 0 && g.f[g.text].type == REC_STR)
		rc = recw_stream(&c->err, g.w, g.f[g.text].idx, outpath);
	for (size_t i = 0; i < nin && rc == 0; i++) {
		if (!in[i].is_dir) {
			rc = from_file(&g, in[i].path, in[i].label, in[i].label);
			continue;
		}
		char **files;
		size_t n;
		if (fs_list_files(&c->err, in[i].path, &files, &n) != 0) {
			rc = -1;
			break;
		}
		for (size_t k = 0; k < n && rc == 0; k++) {
			if (!strcmp(files[k], ".hone-manifest") || !wanted(&g, files[k]))
				continue;
			char *full = path_join(in[i].path, files[k]);
			char *label = path_join(in[i].label, files[k]);
			rc = from_file(&g, full, label, label);
			free(label);
			free(full);
		}
		strv_free(files, n);
	}
	if (rc == 0 && g.rows_kept == 0 && g.rows_read == 0)
		rc = kctx_fail(c, "ingest: no records found in %zu input%s%s", nin, nin == 1 ? "" : "s",
		               g.members ? " (check members = ...)" : "");
	if (rc == 0)
		rc = recw_write(&c->err, g.w, outpath);
	free(outpath);
	if (rc == 0) {
		kctx_metric(c, "rows_read", (double)g.rows_read);
		kctx_metric(c, "rows", (double)g.rows_kept);
		kctx_metric(c, "skipped", (double)g.skipped);
		kctx_metric(c, "dropped_empty", (double)g.dropped_empty);
		kctx_metric(c, "documents", (double)g.documents);
		kctx_metric(c, "bytes", (double)g.bytes);
		if (g.links_skipped)
			kctx_metric(c, "members_skipped", (double)g.links_skipped);
		for (size_t i = 0; i < g.nreasons; i++) {
			char *k = xasprintf("skipped.%s", g.reasons[i].what);
			kctx_metric(c, k, (double)g.reasons[i].count);
			free(k);
		}
		if (g.examples.len)
			kctx_log(c, "%s", g.examples.p);
	}
	if (rc == 0 && g.label >= 0) {
		/* label counts from what was written */
		rec_reader r;
		char *out = path_join(outdir, RECORDS_FILE);
		if (recr_open(&c->err, &r, out) == 0) {
			int f = recr_find(&r, "label");
			if (f >= 0 && r.fields[f].type == REC_CAT) {
				size_t *cnt = xcalloc(r.fields[f].ncat + 1, sizeof *cnt);
				for (uint64_t row = 0; row < r.rows; row++)
					if (!recr_is_null(&r, f, row))
						cnt[recr_cat(&r, f, row)]++;
				for (uint32_t k = 0; k < r.fields[f].ncat; k++) {
					size_t len;
					const char *s = recr_cat_label(&r, f, k, &len);
					if (!cnt[k])
						continue;
					char *key = xasprintf("label.%.*s", (int)len, s);
					kctx_metric(c, key, (double)cnt[k]);
					free(key);
				}
				free(cnt);
			}
			recr_close(&r);
		}
		free(out);
	}
	for (size_t i = 0; i < g.nf; i++) {
		free(g.f[i].name);
		free(g.f[i].path);
		free(g.f[i].mail);
	}
	free(g.f);
	for (size_t i = 0; i < g.nreasons; i++)
		free(g.reasons[i].what);
	free(g.reasons);
	recw_free(g.w);
	json_arena_free(g.arena);
	buf_free(&g.tmp);
	buf_free(&g.clean);
	buf_free(&g.part);
	buf_free(&g.examples);
	return rc;
}

const kernel_def stage_ingest = {"ingest", 1, k_ingest, NULL};
