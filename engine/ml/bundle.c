#include "bundle.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io/archive.h"

int bundle_write(herr *e, const bundle_member *m, size_t n, buf *out)
{
	const archive_api *A = archive_api_get(e);
	if (!A)
		return -1;
	size_t cap = 1 << 20;
	for (size_t i = 0; i < n; i++)
		cap += m[i].data.len + m[i].data.len / 64 + 1024;
	buf_reserve(out, cap);
	size_t used = 0;
	struct archive *a = A->write_new();
	int rc = 0;
	if (A->write_add_filter_gzip(a) != ARCHIVE_OK || A->write_set_filter_option(a, "gzip", "timestamp", NULL) < ARCHIVE_WARN ||
	    A->write_set_format_ustar(a) != ARCHIVE_OK || A->write_open_memory(a, out->p + out->len, cap, &used) != ARCHIVE_OK)
		rc = herr_set(e, "cannot start a bundle: %s", A->error_string(a));
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct archive_entry *en = A->entry_new();
		A->entry_set_pathname(en, m[i].name);
		A->entry_set_size(en, (la_int64_t)m[i].data.len);
		A->entry_set_filetype(en, AE_IFREG);
		A->entry_set_perm(en, 0644);
		A->entry_set_mtime(en, 0, 0);
		if (A->write_header(a, en) != ARCHIVE_OK ||
		    (m[i].data.len && A->write_data(a, m[i].data.p, m[i].data.len) != (la_ssize_t)m[i].data.len))
			rc = herr_set(e, "cannot write %s into the bundle: %s", m[i].name, A->error_string(a));
		A->entry_free(en);
	}
	if (A->write_close(a) != ARCHIVE_OK && rc == 0)
		rc = herr_set(e, "cannot finish the bundle: %s", A->error_string(a));
	A->write_free(a);
	if (rc == 0)
		out->len += used;
	return rc;
}

void bundle_free(bundle *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->m[i].name);
		buf_free(&b->m[i].data);
	}
	free(b->m);
	b->m = NULL;
	b->n = 0;
}

int bundle_read(herr *e, bundle *b, const char *path, size_t max_bytes)
{
	memset(b, 0, sizeof *b);
	const archive_api *A = archive_api_get(e);
	if (!A)
		return -1;
	struct archive *a = A->read_new();
	A->read_support_filter_all(a);
	A->read_support_format_tar(a);
	A->read_support_format_gnutar(a);
	int rc = 0;
	if (A->read_open_filename(a, path, 1 << 16) != ARCHIVE_OK)
		rc = herr_set(e, "%s: cannot open the bundle: %s", path, A->error_string(a));
	size_t total = 0;
	struct archive_entry *en;
	while (rc == 0) {
		int r = A->read_next_header(a, &en);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK) {
			rc = herr_set(e, "%s: not a valid bundle (a .tar.gz written by export): %s", path, A->error_string(a));
			break;
		}
		if (A->entry_filetype(en) != AE_IFREG)
			continue;
		b->m = xrealloc(b->m, (b->n + 1) * sizeof *b->m);
		bundle_member *m = &b->m[b->n++];
		m->name = xstrdup(A->entry_pathname(en) ? A->entry_pathname(en) : "");
		buf_init(&m->data);
		char chunk[65536];
		la_ssize_t got;
		while ((got = A->read_data(a, chunk, sizeof chunk)) > 0) {
			total += (size_t)got;
			if (total > max_bytes) {
				rc = herr_set(e, "%s: the bundle holds more than %zu bytes", path, max_bytes);
				break;
			}
			buf_add(&m->data, chunk, (size_t)got);
		}
		if (got < 0 && rc == 0)
			rc = herr_set(e, "%s: member %s is damaged: %s", path, m->name, A->error_string(a));
	}
	A->read_free(a);
	if (rc)
		bundle_free(b);
	return rc;
}

const buf *bundle_get(const bundle *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->m[i].name, name))
			return &b->m[i].data;
	return NULL;
}

int bundle_unpack_model(herr *e, const bundle *bd, const char *path, char **dir)
{
	char t[] = "/tmp/hone-model-XXXXXX";
	*dir = NULL;
	if (!mkdtemp(t))
		return herr_set(e, "cannot make a temporary folder for %s", path);
	*dir = xstrdup(t);
	const char *names[3] = {"config.json", "model.safetensors", "tokenize.json"};
	for (int k = 0; k < 3; k++) {
		const buf *b = bundle_get(bd, names[k]);
		if (!b && k == 2)
			break;
		if (!b)
			return herr_set(e, "%s: not a model bundle (no %s)", path, names[k]);
		char *p = path_join(t, names[k]);
		int rc = fs_write_atomic(e, p, b->p, b->len);
		free(p);
		if (rc)
			return rc;
	}
	return 0;
}
