#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int herr_set(herr *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	e->hint[0] = 0;
	return -1;
}

int herr_hint(herr *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->hint, sizeof e->hint, fmt, ap);
	va_end(ap);
	return -1;
}

int herr_prefix(herr *e, const char *fmt, ...)
{
	buf b;
	va_list ap;
	buf_init(&b);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_printf(&b, ": %s", e->msg);
	size_t n = b.len < sizeof e->msg - 1 ? b.len : sizeof e->msg - 1;
	memcpy(e->msg, b.p, n);
	e->msg[n] = 0;
	buf_free(&b);
	return -1;
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "hone: error: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p) {
		fprintf(stderr, "hone: error: out of memory\n");
		abort();
	}
	return p;
}

typedef struct crew_member {
	crew *c;
	int t;
} crew_member;

struct crew {
	int nt;
	pthread_t th[64];
	crew_member m[64];
	pthread_mutex_t mu;
	pthread_cond_t go, fin;
	unsigned gen;       /* rounds started */
	int pending;        /* members still working on this round */
	int quit;
	void (*fn)(void *, int, int);
	void *ud;
};

static void *crew_main(void *arg)
{
	crew_member *m = arg;
	crew *c = m->c;
	unsigned seen = 0;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (c->gen == seen && !c->quit)
			pthread_cond_wait(&c->go, &c->mu);
		seen = c->gen;
		int quit = c->quit;
		pthread_mutex_unlock(&c->mu);
		if (quit)
			return NULL;
		c->fn(c->ud, m->t, c->nt);
		pthread_mutex_lock(&c->mu);
		if (--c->pending == 0)
			pthread_cond_signal(&c->fin);
		pthread_mutex_unlock(&c->mu);
	}
}

crew *crew_new(int nt)
{
	crew *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->go, NULL);
	pthread_cond_init(&c->fin, NULL);
	if (nt > 64)
		nt = 64;
	c->nt = 1;
	for (int t = 1; t < nt; t++) {
		c->m[t] = (crew_member){c, t};
		if (pthread_create(&c->th[t], NULL, crew_main, &c->m[t]) != 0)
			break;
		c->nt = t + 1;
	}
	return c;
}

int crew_size(const crew *c) { return c->nt; }

void crew_run(crew *c, void (*fn)(void *ud, int t, int nt), void *ud)
{
	pthread_mutex_lock(&c->mu);
	c->fn = fn;
	c->ud = ud;
	c->pending = c->nt - 1;
	c->gen++;
	pthread_cond_broadcast(&c->go);
	pthread_mutex_unlock(&c->mu);
	fn(ud, 0, c->nt);
	pthread_mutex_lock(&c->mu);
	while (c->pending)
		pthread_cond_wait(&c->fin, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

void crew_free(crew *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->quit = 1;
	pthread_cond_broadcast(&c->go);
	pthread_mutex_unlock(&c->mu);
	for (int t = 1; t < c->nt; t++)
		pthread_join(c->th[t], NULL);
	pthread_cond_destroy(&c->go);
	pthread_cond_destroy(&c->fin);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

#define BIG ((size_t)4 << 20) /* below this, calloc */

void *xcalloc_big(size_t n, size_t m)
{
	if (m && n > SIZE_MAX / m) {
		fprintf(stderr, "hone: error: out of memory\n");
		abort();
	}
	if (n * m < BIG)
		return xcalloc(n, m);
	void *p = mmap(NULL, n * m, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "hone: error: out of memory\n");
		abort();
	}
	madvise(p, n * m, MADV_HUGEPAGE); /* a hint: fine where refused */
	return p;
}

void xfree_big(void *p, size_t n, size_t m)
{
	if (!p)
		return;
	if (n * m < BIG)
		free(p);
	else
		munmap(p, n * m);
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "hone: error: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	buf b;
	va_list ap;
	buf_init(&b);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_take(&b);
}

void buf_init(buf *b) { b->p = NULL; b->len = b->cap = 0; }

void buf_free(buf *b)
{
	free(b->p);
	buf_init(b);
}

void buf_reserve(buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
	/* large buffers: ask for huge pages (fewer page faults) */
	if (cap >= ((size_t)32 << 20)) {
		uintptr_t a = ((uintptr_t)b->p + 4095) & ~(uintptr_t)4095;
		uintptr_t e = ((uintptr_t)b->p + cap) & ~(uintptr_t)4095;
		if (e > a)
			madvise((void *)a, e - a, MADV_HUGEPAGE);
	}
}

void buf_add(buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void buf_adds(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_addc(buf *b, char c) { buf_add(b, &c, 1); }

void buf_vprintf(buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_printf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

char *buf_take(buf *b)
{
	if (!b->p)
		buf_reserve(b, 0), b->p[0] = 0;
	char *p = b->p;
	buf_init(b);
	return p;
}

int fs_read_fd(herr *e, int fd, const char *name, buf *out)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0)
		buf_reserve(out, (size_t)st.st_size);
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t r = read(fd, out->p + out->len, out->cap - out->len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return herr_set(e, "%s: read error: %s", name, strerror(errno));
		}
		if (r == 0)
			break;
		out->len += (size_t)r;
	}
	out->p[out->len] = 0;
	return 0;
}

int fs_read(herr *e, const char *path, buf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return herr_set(e, "%s: cannot open: %s", path, strerror(errno));
	int rc = fs_read_fd(e, fd, path, out);
	close(fd);
	return rc;
}

int fs_write_atomic(herr *e, const char *path, const void *p, size_t n)
{
	/* unique per process and call: two threads may publish the same path */
	static unsigned long seq;
	unsigned long mine = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	char *tmp = xasprintf("%s.tmp.%ld.%lu", path, (long)getpid(), mine);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		herr_set(e, "%s: cannot create: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	const char *c = p;
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fd, c + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			herr_set(e, "%s: write error: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			free(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		herr_set(e, "%s: cannot publish: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

int fs_mkdirs(herr *e, const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) != 0 && errno != EEXIST) {
			herr_set(e, "%s: cannot create directory: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = '/';
	}
	if (mkdir(p, 0755) != 0 && errno != EEXIST) {
		herr_set(e, "%s: cannot create directory: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	free(p);
	return 0;
}

int fs_rmtree(herr *e, const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : herr_set(e, "%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d)
			return herr_set(e, "%s: cannot open directory: %s", path, strerror(errno));
		struct dirent *de;
		int rc = 0;
		while (rc == 0 && (de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *sub = path_join(path, de->d_name);
			rc = fs_rmtree(e, sub);
			free(sub);
		}
		closedir(d);
		if (rc == 0 && rmdir(path) != 0)
			return herr_set(e, "%s: cannot remove: %s", path, strerror(errno));
		return rc;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return herr_set(e, "%s: cannot remove: %s", path, strerror(errno));
	return 0;
}

int fs_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int fs_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a);
	if (n && a[n - 1] == '/')
		return xasprintf("%s%s", a, b);
	return xasprintf("%s/%s", a, b);
}

char *path_dirname(const char *path)
{
	const char *s = strrchr(path, '/');
	if (!s)
		return xstrdup(".");
	if (s == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(s - path));
}

char *path_resolve(const char *base, const char *path)
{
	char *full;
	if (path[0] == '/') {
		full = xstrdup(path);
	} else if (base && base[0] == '/') {
		full = path_join(base, path);
	} else {
		char cwd[4096];
		if (!getcwd(cwd, sizeof cwd))
			strcpy(cwd, "/");
		char *b = base ? path_join(cwd, base) : xstrdup(cwd);
		full = path_join(b, path);
		free(b);
	}
	/* lexical normalization */
	size_t n = strlen(full);
	char *out = xmalloc(n + 2);
	size_t o = 0;
	const char *s = full;
	while (*s) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		const char *t = strchr(s, '/');
		size_t len = t ? (size_t)(t - s) : strlen(s);
		if (len == 1 && s[0] == '.') {
			/* skip */
		} else if (len == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			out[o++] = '/';
			memcpy(out + o, s, len);
			o += len;
		}
		s += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	free(full);
	return out;
}

char *path_relative(const char *base, const char *path)
{
	size_t n = strlen(base);
	if (n == 1 && base[0] == '/')
		return xstrdup(path + 1);
	if (strncmp(base, path, n) == 0 && path[n] == '/')
		return xstrdup(path + n + 1);
	return xstrdup(path);
}

int path_safe_relative(const char *rel)
{
	if (!rel[0] || rel[0] == '/' || strchr(rel, '\n'))
		return 0;
	for (const char *p = rel; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += len + (slash ? 1 : 0);
		if (slash && !*p)
			return 0; /* trailing slash */
	}
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_rec(herr *e, const char *root, const char *rel, char ***v, size_t *n, size_t *cap)
{
	char *dir = rel[0] ? path_join(root, rel) : xstrdup(root);
	DIR *d = opendir(dir);
	if (!d) {
		herr_set(e, "%s: cannot open directory: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *r = rel[0] ? path_join(rel, de->d_name) : xstrdup(de->d_name);
		char *full = path_join(root, r);
		struct stat st;
		if (lstat(full, &st) != 0) {
			rc = herr_set(e, "%s: %s", full, strerror(errno));
		} else if (S_ISDIR(st.st_mode)) {
			rc = list_rec(e, root, r, v, n, cap);
		} else if (S_ISREG(st.st_mode) || (S_ISLNK(st.st_mode) && stat(full, &st) == 0 && S_ISREG(st.st_mode))) {
			/* a link to a file counts as the file (the Hugging Face cache's
			 * snapshots link into its blobs); links to folders are not followed */
			if (*n == *cap) {
				*cap = *cap ? *cap * 2 : 16;
				*v = xrealloc(*v, *cap * sizeof **v);
			}
			(*v)[(*n)++] = r;
			r = NULL;
		} else {
			rc = herr_set(e, "%s: not a regular file or directory (links to folders are not followed)", full);
		}
		free(full);
		free(r);
	}
	closedir(d);
	free(dir);
	return rc;
}

int fs_list_files(herr *e, const char *dir, char ***out, size_t *n)
{
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	if (list_rec(e, dir, "", out, n, &cap) != 0) {
		strv_free(*out, *n);
		*out = NULL;
		*n = 0;
		return -1;
	}
	if (*n)
		qsort(*out, *n, sizeof **out, cmp_str);
	return 0;
}

void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int default_threads(void)
{
	const char *t = getenv("HONE_THREADS");
	int n = t && atoi(t) > 0 ? atoi(t) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n;
}

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = xmalloc((lb + 1) * sizeof *row);
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

void fmt_double(char out[40], double v)
{
	if (isnan(v)) {
		strcpy(out, "nan");
		return;
	}
	if (isinf(v)) {
		strcpy(out, v > 0 ? "inf" : "-inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 40, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			break;
	}
	if (!strpbrk(out, ".en"))
		strcat(out, ".0");
}

void fmt_bytes(char out[32], double n)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (n >= 1024 && i < 4)
		n /= 1024, i++;
	if (i == 0)
		snprintf(out, 32, "%.0f B", n);
	else
		snprintf(out, 32, "%.1f %s", n, u[i]);
}

void buf_json_str(buf *b, const char *s)
{
	buf_json_strn(b, s, strlen(s));
}

void buf_json_strn(buf *b, const char *s, size_t n)
{
	buf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			buf_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			buf_printf(b, "\\u%04x", ch);
		else
			buf_addc(b, (char)ch);
	}
	buf_addc(b, '"');
}

void buf_json_float(buf *b, float v)
{
	char tmp[32];
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
		if ((float)strtod(tmp, NULL) == v)
			break;
	}
	buf_adds(b, tmp);
}

void buf_json_num(buf *b, double v)
{
	char num[40];
	if (!isfinite(v)) {
		buf_adds(b, "null");
		return;
	}
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(num, sizeof num, "%.0f", v);
	else
		fmt_double(num, v);
	buf_adds(b, num);
}
