#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int store_open(herr *e, store *st, const char *root, int create)
{
	st->root = xstrdup(root);
	st->lockfd = -1;
	st->tmpseq = 0;
	if (!create)
		return 0;
	const char *sub[] = {"objects", "keys", "tmp"};
	for (int i = 0; i < 3; i++) {
		char *p = path_join(root, sub[i]);
		int rc = fs_mkdirs(e, p);
		free(p);
		if (rc)
			return rc;
	}
	return 0;
}

void store_close(store *st)
{
	store_unlock(st);
	free(st->root);
	st->root = NULL;
}

int store_lock(herr *e, store *st)
{
	char *p = path_join(st->root, "lock");
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		herr_set(e, "%s: cannot open lock file: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char who[32] = "";
		ssize_t r = pread(fd, who, sizeof who - 1, 0);
		if (r > 0)
			who[r] = 0;
		fprintf(stderr, "hone: waiting for another hone process on this cache (pid %s)...\n",
		        r > 0 ? who : "?");
		while (flock(fd, LOCK_EX) != 0) {
			if (errno != EINTR) {
				herr_set(e, "%s: cannot lock: %s", p, strerror(errno));
				close(fd);
				free(p);
				return -1;
			}
		}
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) {
		/* the pid is only informative */
	}
	free(p);
	st->lockfd = fd;
	return 0;
}

void store_unlock(store *st)
{
	if (st->lockfd >= 0) {
		flock(st->lockfd, LOCK_UN);
		close(st->lockfd);
		st->lockfd = -1;
	}
}

char *store_tmpdir(herr *e, store *st, const char *label)
{
	char *tmp = path_join(st->root, "tmp");
	for (int tries = 0; tries < 100; tries++) {
		char *p = xasprintf("%s/%ld-%u-%s", tmp, (long)getpid(), st->tmpseq++, label);
		if (mkdir(p, 0755) == 0) {
			free(tmp);
			return p;
		}
		if (errno != EEXIST) {
			herr_set(e, "%s: cannot create work directory: %s", p, strerror(errno));
			free(p);
			free(tmp);
			return NULL;
		}
		free(p);
	}
	herr_set(e, "%s: cannot create a work directory", tmp);
	free(tmp);
	return NULL;
}

int store_manifest_body(herr *e, const char *dir, buf *body)
{
	char **files;
	size_t n;
	if (fs_list_files(e, dir, &files, &n) != 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!strcmp(files[i], STORE_MANIFEST))
			continue;
		if (strchr(files[i], '\n')) {
			rc = herr_set(e, "%s: output file name contains a newline", files[i]);
			break;
		}
		char *full = path_join(dir, files[i]);
		hkey k;
		uint64_t size;
		rc = hkey_file(e, full, &k, &size);
		free(full);
		if (rc == 0) {
			char hex[HKEY_HEX];
			hkey_hex(&k, hex);
			buf_printf(body, "%s %llu %s\n", hex, (unsigned long long)size, files[i]);
		}
	}
	strv_free(files, n);
	return rc;
}

void store_subtree_id(const char *body, size_t n, const char *prefix, hkey *id)
{
	size_t plen = strlen(prefix);
	if (plen == 0) {
		hkey_of(id, body, n);
		return;
	}
	buf sub;
	buf_init(&sub);
	const char *p = body, *end = body + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		/* "<hex> <size> <path>" */
		const char *sp1 = memchr(p, ' ', (size_t)(nl - p));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
		if (sp2) {
			const char *path = sp2 + 1;
			if ((size_t)(nl - path) > plen && !strncmp(path, prefix, plen) && path[plen] == '/') {
				buf_add(&sub, p, (size_t)(sp2 + 1 - p));
				buf_add(&sub, path + plen + 1, (size_t)(nl - path - plen - 1));
				buf_addc(&sub, '\n');
			}
		}
		p = nl + 1;
	}
	hkey_of(id, sub.p ? sub.p : "", sub.len);
	buf_free(&sub);
}

static char *shard_path(const store *st, const char *area, const hkey *id)
{
	char hex[HKEY_HEX];
	hkey_hex(id, hex);
	return xasprintf("%s/%s/%.2s/%s", st->root, area, hex, hex);
}

char *store_object_path(const store *st, const hkey *id) { return shard_path(st, "objects", id); }

int store_object_exists(const store *st, const hkey *id)
{
	char *p = store_object_path(st, id);
	char *m = path_join(p, STORE_MANIFEST);
	int ok = fs_exists(m);
	free(m);
	free(p);
	return ok;
}

static void make_readonly(const char *dir, const char *body, size_t n)
{
	const char *p = body, *end = body + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		const char *sp1 = memchr(p, ' ', (size_t)(nl - p));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
		if (sp2) {
			char *rel = xstrndup(sp2 + 1, (size_t)(nl - sp2 - 1));
			char *full = path_join(dir, rel);
			chmod(full, 0444);
			free(full);
			free(rel);
		}
		p = nl + 1;
	}
}

static int read_manifest(herr *e, const char *objdir, buf *body);

int store_publish(herr *e, store *st, const char *workdir, hkey *id)
{
	buf body, man;
	buf_init(&body);
	buf_init(&man);
	int rc = store_manifest_body(e, workdir, &body);
	if (rc == 0) {
		size_t count = 0;
		for (size_t i = 0; i < body.len; i++)
			count += body.p[i] == '\n';
		store_subtree_id(body.p ? body.p : "", body.len, "", id);
		buf_adds(&man, "hone-manifest 1\n");
		buf_add(&man, body.p ? body.p : "", body.len);
		buf_printf(&man, "end %zu\n", count);
		char *mp = path_join(workdir, STORE_MANIFEST);
		rc = fs_write_atomic(e, mp, man.p, man.len);
		if (rc == 0)
			chmod(mp, 0444);
		free(mp);
	}
	if (rc == 0)
		make_readonly(workdir, body.p ? body.p : "", body.len);
	char *dst = rc == 0 ? store_object_path(st, id) : NULL;
	if (rc == 0) {
		char *parent = path_dirname(dst);
		rc = fs_mkdirs(e, parent);
		free(parent);
	}
	if (rc == 0 && rename(workdir, dst) != 0) {
		if (errno == EEXIST || errno == ENOTEMPTY) {
			/* the same content is already published. Ours was just
			 * written and hashed, theirs may have been damaged since:
			 * swap ours in, atomically (a reader sees one or the
			 * other, whole), and remove theirs. Where the file system
			 * cannot swap, keep theirs if it is intact, else move it
			 * aside and publish ours. */
			herr tmp;
			buf old, now;
			buf_init(&old);
			buf_init(&now);
			int swapped = renameat2(AT_FDCWD, workdir, AT_FDCWD, dst, RENAME_EXCHANGE) == 0;
			int intact = swapped || (read_manifest(&tmp, dst, &old) == 0 &&
			             store_manifest_body(&tmp, dst, &now) == 0 && old.len == now.len &&
			             memcmp(old.p ? old.p : "", now.p ? now.p : "", old.len) == 0);
			buf_free(&old);
			buf_free(&now);
			if (intact) {
				fs_rmtree(&tmp, workdir);
			} else {
				char *aside = store_tmpdir(e, st, "damaged");
				if (!aside || rename(dst, aside) != 0 || rename(workdir, dst) != 0)
					rc = herr_set(e, "%s: cannot replace a damaged object: %s", dst, strerror(errno));
				if (aside)
					fs_rmtree(&tmp, aside);
				free(aside);
			}
		} else {
			rc = herr_set(e, "%s: cannot publish object: %s", dst, strerror(errno));
		}
	}
	free(dst);
	buf_free(&body);
	buf_free(&man);
	return rc;
}

/* Reads a manifest and returns its body; -1 when missing or malformed. */
static int read_manifest(herr *e, const char *objdir, buf *body)
{
	char *mp = path_join(objdir, STORE_MANIFEST);
	buf m;
	buf_init(&m);
	int rc = fs_read(e, mp, &m);
	if (rc == 0) {
		const char *hdr = "hone-manifest 1\n";
		size_t hl = strlen(hdr);
		if (m.len < hl || memcmp(m.p, hdr, hl) != 0) {
			rc = herr_set(e, "%s: not a manifest (bad header)", mp);
		} else {
			/* last line must be "end <n>" with n entries */
			char *last = m.len >= 2 ? m.p + m.len - 2 : m.p;
			while (last > m.p && *last != '\n')
				last--;
			if (last > m.p)
				last++;
			size_t count = 0;
			for (char *q = m.p + hl; q < last; q++)
				count += *q == '\n';
			char expect[48];
			snprintf(expect, sizeof expect, "end %zu\n", count);
			if (m.p[m.len - 1] != '\n' || strcmp(last, expect) != 0)
				rc = herr_set(e, "%s: manifest is truncated", mp);
			else
				buf_add(body, m.p + hl, (size_t)(last - m.p - (ptrdiff_t)hl));
		}
	}
	buf_free(&m);
	free(mp);
	return rc;
}

int store_output_id(herr *e, const store *st, const hkey *obj, const char *output, hkey *out)
{
	if (!output) {
		*out = *obj;
		return 0;
	}
	char *dir = store_object_path(st, obj);
	buf body;
	buf_init(&body);
	int rc = read_manifest(e, dir, &body);
	if (rc == 0)
		store_subtree_id(body.p ? body.p : "", body.len, output, out);
	buf_free(&body);
	free(dir);
	return rc;
}

int store_key_get(const store *st, const hkey *key, hkey *obj, char **metrics)
{
	char *p = shard_path(st, "keys", key);
	buf b;
	buf_init(&b);
	herr e;
	int hit = 0;
	if (fs_read(&e, p, &b) == 0 && b.len > 0) {
		char *s = b.p;
		if (!strncmp(s, "hone-key 1\nobject ", 18) && strlen(s) >= 18 + 32 &&
		    hkey_parse(obj, s + 18) == 0 && s[50] == '\n' && !strncmp(s + 51, "metrics ", 8)) {
			char *m = s + 59;
			char *nl = strchr(m, '\n');
			if (nl && !strcmp(nl, "\nend\n") && store_object_exists(st, obj)) {
				hit = 1;
				if (metrics)
					*metrics = xstrndup(m, (size_t)(nl - m));
			}
		}
	}
	buf_free(&b);
	free(p);
	return hit;
}

int store_key_put(herr *e, store *st, const hkey *key, const hkey *obj, const char *metrics)
{
	char *p = shard_path(st, "keys", key);
	char *dir = path_dirname(p);
	char hex[HKEY_HEX];
	hkey_hex(obj, hex);
	int rc = fs_mkdirs(e, dir);
	if (rc == 0) {
		char *s = xasprintf("hone-key 1\nobject %s\nmetrics %s\nend\n", hex,
		                    metrics && *metrics ? metrics : "{}");
		rc = fs_write_atomic(e, p, s, strlen(s));
		free(s);
	}
	free(dir);
	free(p);
	return rc;
}

/* Calls fn for every entry two levels down area/xx/name. */
typedef int (*visit_fn)(void *ud, const char *path, const char *name);

static int visit_sharded(herr *e, const store *st, const char *area, visit_fn fn, void *ud, int prune)
{
	char *top = path_join(st->root, area);
	DIR *d = opendir(top);
	if (!d) {
		free(top);
		return 0;
	}
	struct dirent *de;
	int rc = 0;
	/* collect first so callbacks may delete */
	char **names = NULL;
	size_t n = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *shard = path_join(top, names[i]);
		DIR *s = opendir(shard);
		char **sub = NULL;
		size_t m = 0;
		if (s) {
			while ((de = readdir(s))) {
				if (de->d_name[0] == '.')
					continue;
				sub = xrealloc(sub, (m + 1) * sizeof *sub);
				sub[m++] = xstrdup(de->d_name);
			}
			closedir(s);
		}
		for (size_t j = 0; j < m && rc == 0; j++) {
			char *full = path_join(shard, sub[j]);
			rc = fn(ud, full, sub[j]);
			free(full);
		}
		strv_free(sub, m);
		if (prune)
			rmdir(shard); /* only succeeds when emptied; needs the lock */
		free(shard);
	}
	strv_free(names, n);
	free(top);
	(void)e;
	return rc;
}

typedef struct verify_ctx {
	herr *e;
	store *st;
	int repair;
	FILE *out;
	store_report *r;
	const hkey *keep;
	size_t nkeep;
} verify_ctx;

static int check_object(verify_ctx *v, const char *path, const char *name)
{
	herr e;
	buf body, now;
	buf_init(&body);
	buf_init(&now);
	int bad = 0;
	hkey id, want;
	v->r->objects++;
	if (hkey_parse(&want, name) != 0 || strlen(name) != 32) {
		fprintf(v->out, "bad object %s: name is not an object id\n", path);
		bad = 1;
	} else if (read_manifest(&e, path, &body) != 0) {
		fprintf(v->out, "bad object %s: %s\n", name, e.msg);
		bad = 1;
	} else {
		store_subtree_id(body.p ? body.p : "", body.len, "", &id);
		if (!hkey_eq(&id, &want)) {
			fprintf(v->out, "bad object %s: manifest does not hash to the object id\n", name);
			bad = 1;
		} else if (store_manifest_body(&e, path, &now) != 0) {
			fprintf(v->out, "bad object %s: %s\n", name, e.msg);
			bad = 1;
		} else if (now.len != body.len || memcmp(now.p, body.p, body.len) != 0) {
			/* name the first differing file */
			const char *base = body.p ? body.p : "", *a = base, *b = now.p ? now.p : "";
			while (*a && *a == *b)
				a++, b++;
			while (a > base && a[-1] != '\n')
				a--;
			const char *nl = strchr(a, '\n');
			const char *sp1 = nl ? memchr(a, ' ', (size_t)(nl - a)) : NULL;
			const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
			int len = sp2 ? (int)(nl - sp2 - 1) : 0;
			fprintf(v->out, "bad object %s: contents do not match the manifest (%.*s)\n", name,
			        len, len ? sp2 + 1 : "a file was added");
			bad = 1;
		} else {
			for (size_t i = 0; i < now.len; i++)
				v->r->files += now.p[i] == '\n';
			struct stat sb;
			(void)sb;
		}
	}
	if (bad) {
		v->r->bad_objects++;
		if (v->repair) {
			fs_rmtree(&e, path);
			fprintf(v->out, "  removed %s\n", name);
		}
	}
	buf_free(&body);
	buf_free(&now);
	return 0;
}

static int check_key(verify_ctx *v, const char *path, const char *name)
{
	hkey k, obj;
	v->r->keys++;
	if (strstr(name, ".tmp."))
		return 0;
	if (hkey_parse(&k, name) != 0 || !store_key_get(v->st, &k, &obj, NULL)) {
		fprintf(v->out, "bad key %s: truncated, malformed, or its object is gone\n", name);
		v->r->bad_keys++;
		if (v->repair)
			unlink(path);
	}
	return 0;
}

int store_verify(herr *e, store *st, int repair, FILE *out, store_report *r)
{
	memset(r, 0, sizeof *r);
	verify_ctx v = {e, st, repair, out, r, NULL, 0};
	int rc = visit_sharded(e, st, "objects", (visit_fn)check_object, &v, repair);
	if (rc == 0)
		rc = visit_sharded(e, st, "keys", (visit_fn)check_key, &v, repair);
	return rc;
}

static double tree_bytes(const char *path)
{
	herr e;
	char **files;
	size_t n;
	double total = 0;
	if (fs_list_files(&e, path, &files, &n) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char *f = path_join(path, files[i]);
		struct stat sb;
		if (stat(f, &sb) == 0)
			total += (double)sb.st_size;
		free(f);
	}
	strv_free(files, n);
	return total;
}

static int gc_object(verify_ctx *v, const char *path, const char *name)
{
	hkey id;
	v->r->objects++;
	if (hkey_parse(&id, name) == 0)
		for (size_t i = 0; i < v->nkeep; i++)
			if (hkey_eq(&id, &v->keep[i]))
				return 0;
	v->r->bytes += tree_bytes(path);
	v->r->bad_objects++;
	return fs_rmtree(v->e, path);
}

static int gc_key(verify_ctx *v, const char *path, const char *name)
{
	hkey k, obj;
	v->r->keys++;
	if (strstr(name, ".tmp.") || strlen(name) != 32) {
		/* an entry's temporary file left by a killed run */
		unlink(path);
		v->r->tmp_dirs++;
		return 0;
	}
	if (hkey_parse(&k, name) != 0 || !store_key_get(v->st, &k, &obj, NULL)) {
		v->r->bad_keys++;
		unlink(path);
	}
	return 0;
}

int store_gc(herr *e, store *st, const hkey *keep, size_t nkeep, FILE *out, store_report *r)
{
	memset(r, 0, sizeof *r);
	verify_ctx v = {e, st, 0, out, r, keep, nkeep};
	int rc = visit_sharded(e, st, "objects", (visit_fn)gc_object, &v, 1);
	if (rc == 0)
		rc = visit_sharded(e, st, "keys", (visit_fn)gc_key, &v, 1);
	/* work areas left by failed runs, and checkpoints of interrupted ones */
	for (int w = 0; rc == 0 && w < 2; w++) {
		char *tmp = path_join(st->root, w ? "work" : "tmp");
		DIR *d = opendir(tmp);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char *p = path_join(tmp, de->d_name);
			r->bytes += tree_bytes(p);
			fs_rmtree(e, p);
			r->tmp_dirs++;
			free(p);
		}
		if (d)
			closedir(d);
		free(tmp);
	}
	return rc;
}
