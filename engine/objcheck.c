#include "objcheck.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf.h"
#include "io/json.h"
#include "io/records.h"
#include "ml/safetensors.h"

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix) && (n == k || s[n - k - 1] == '/');
}

static int is_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && !strcmp(s + n - k, suffix);
}

static int file_size(const char *path, uint64_t *n)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	*n = (uint64_t)st.st_size;
	return 0;
}

/* a dataset, and the token ids beside it within the ranges it names */
static int check_records(herr *e, const char *dir, const char *rel)
{
	char *path = path_join(dir, rel);
	rec_reader r;
	int rc = recr_open(e, &r, path);
	free(path);
	if (rc)
		return -1;
	char *sub = path_dirname(rel);
	char *base = strcmp(sub, ".") ? path_join(dir, sub) : xstrdup(dir);
	char *ids = path_join(base, "tokens.u32"), *mask = path_join(base, "mask.u8"), *types = path_join(base, "types.u8");
	uint64_t nids = 0, nmask = 0, ntypes = 0;
	int fo = recr_find(&r, "tok_off"), fl = recr_find(&r, "tok_len");
	if (file_size(ids, &nids) == 0) {
		if (nids % 4)
			rc = herr_set(e, "%s: %llu bytes, not a whole number of u32 ids", ids, (unsigned long long)nids);
		nids /= 4;
		if (rc == 0 && (fo < 0 || fl < 0))
			rc = herr_set(e, "%s: token ids without tok_off / tok_len in %s", ids, RECORDS_FILE);
		for (uint64_t i = 0; rc == 0 && i < r.rows; i++) {
			long long o = recr_int(&r, fo, i), n = recr_int(&r, fl, i);
			if (o < 0 || n < 0 || (uint64_t)o > nids || (uint64_t)n > nids - (uint64_t)o)
				rc = herr_set(e, "%s: row %llu: ids %lld..%lld outside tokens.u32 (%llu ids)", rel,
				              (unsigned long long)i + 1, o, o + n, (unsigned long long)nids);
		}
		if (rc == 0 && file_size(mask, &nmask) == 0 && nmask != nids)
			rc = herr_set(e, "%s: %llu bytes for %llu ids", mask, (unsigned long long)nmask, (unsigned long long)nids);
		/* token types (WordPiece pairs): a byte per id, 0 or 1 */
		if (rc == 0 && file_size(types, &ntypes) == 0) {
			buf tb;
			buf_init(&tb);
			if (ntypes != nids)
				rc = herr_set(e, "%s: %llu bytes for %llu ids", types, (unsigned long long)ntypes, (unsigned long long)nids);
			else if (fs_read(e, types, &tb) == 0) {
				for (size_t k = 0; rc == 0 && k < tb.len; k++)
					if ((unsigned char)tb.p[k] > 1)
						rc = herr_set(e, "%s: id %zu has token type %d, expected 0 or 1", types, k, (unsigned char)tb.p[k]);
			} else {
				rc = -1;
			}
			buf_free(&tb);
		}
		/* tags (WordPiece tagging): an int32 per id, -100 or a tag index */
		char *labels = path_join(base, "labels.i32");
		uint64_t nlab = 0;
		if (rc == 0 && file_size(labels, &nlab) == 0) {
			buf lb;
			buf_init(&lb);
			if (nlab != nids * 4)
				rc = herr_set(e, "%s: %llu bytes for %llu ids (4 each)", labels, (unsigned long long)nlab,
				              (unsigned long long)nids);
			else if (fs_read(e, labels, &lb) == 0) {
				for (size_t k = 0; rc == 0 && k < nids; k++) {
					int32_t v;
					memcpy(&v, lb.p + 4 * k, 4);
					if (v != -100 && (v < 0 || v >= 4096))
						rc = herr_set(e, "%s: id %zu has tag %d, expected -100 or a tag index", labels, k, v);
				}
			} else {
				rc = -1;
			}
			buf_free(&lb);
		}
		free(labels);
	}
	free(ids);
	free(mask);
	free(types);
	free(base);
	free(sub);
	recr_close(&r);
	return rc;
}

static int check_json(herr *e, const char *path)
{
	buf b;
	buf_init(&b);
	int rc = fs_read(e, path, &b);
	if (rc == 0) {
		jarena *a = json_arena_new();
		jerror je;
		if (!json_parse(a, b.p ? b.p : "", b.len, &je)) {
			size_t line, col;
			json_line_col(b.p ? b.p : "", je.off, &line, &col);
			rc = herr_set(e, "%s:%zu:%zu: not valid JSON: %s", path, line, col, je.what);
		}
		json_arena_free(a);
	}
	buf_free(&b);
	return rc;
}

int objcheck_dir(herr *e, const char *dir)
{
	char **files;
	size_t n;
	if (fs_list_files(e, dir, &files, &n) != 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *f = files[i];
		char *path = path_join(dir, f);
		if (ends_with(f, RECORDS_FILE)) {
			rc = check_records(e, dir, f);
		} else if (is_suffix(f, ".gguf")) {
			gguf_file g;
			rc = gguf_open(e, &g, path);
			if (rc == 0)
				gguf_close(&g);
		} else if (is_suffix(f, ".safetensors")) {
			st_file s;
			rc = st_read(e, &s, path);
			if (rc == 0)
				st_free(&s);
		} else if (ends_with(f, "config.json") || ends_with(f, "metrics.json") || ends_with(f, "tokenize.json") ||
		           ends_with(f, "adapter_config.json") || ends_with(f, "tokenizer.json")) {
			rc = check_json(e, path);
		}
		free(path);
	}
	strv_free(files, n);
	if (rc) {
		/* name files as the stage wrote them, not by the temporary folder */
		size_t dl = strlen(dir);
		char *at;
		while ((at = strstr(e->msg, dir)) && at[dl] == '/')
			memmove(at, at + dl + 1, strlen(at + dl + 1) + 1);
		herr_prefix(e, "output is not readable");
	}
	return rc;
}
