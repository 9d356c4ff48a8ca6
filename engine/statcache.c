#include "statcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "store.h"

typedef struct sc_entry {
	char *path;
	uint64_t dev, ino, size;
	int64_t mtime, ctime;
	hkey id;
} sc_entry;

struct statcache {
	char *file;
	sc_entry *slots; /* open addressing; path == NULL marks empty */
	size_t cap, n;
	int dirty;
	unsigned hashed, hits;
	pthread_mutex_t mu;
};

static size_t slot_of(const statcache *sc, const char *path)
{
	return (size_t)XXH3_64bits(path, strlen(path)) & (sc->cap - 1);
}

static sc_entry *find(statcache *sc, const char *path)
{
	size_t i = slot_of(sc, path);
	while (sc->slots[i].path) {
		if (!strcmp(sc->slots[i].path, path))
			return &sc->slots[i];
		i = (i + 1) & (sc->cap - 1);
	}
	return &sc->slots[i];
}

static void grow(statcache *sc)
{
	sc_entry *old = sc->slots;
	size_t oldcap = sc->cap;
	sc->cap = oldcap ? oldcap * 2 : 64;
	sc->slots = xcalloc(sc->cap, sizeof *sc->slots);
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].path)
			*find(sc, old[i].path) = old[i];
	free(old);
}

static void put(statcache *sc, const sc_entry *e)
{
	if ((sc->n + 1) * 2 > sc->cap)
		grow(sc);
	sc_entry *s = find(sc, e->path);
	if (s->path) {
		free(s->path);
	} else {
		sc->n++;
	}
	*s = *e;
}

static uint64_t rd64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr64(buf *b, uint64_t v)
{
	unsigned char x[8];
	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	buf_add(b, x, 8);
}

static void wr32(buf *b, uint32_t v)
{
	unsigned char x[4];
	for (int i = 0; i < 4; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	buf_add(b, x, 4);
}

static void parse(statcache *sc, const unsigned char *p, size_t n)
{
	if (n < 16 + 16 || memcmp(p, "HONESTC\0", 8) != 0 || rd32(p + 8) != 1)
		return;
	hkey want, got;
	memcpy(want.b, p + n - 16, 16);
	hkey_of(&got, p, n - 16);
	if (!hkey_eq(&want, &got))
		return;
	uint32_t count = rd32(p + 12);
	size_t off = 16, end = n - 16;
	for (uint32_t i = 0; i < count; i++) {
		if (end - off < 8 * 5 + 16 + 4)
			return;
		sc_entry e;
		e.dev = rd64(p + off);
		e.ino = rd64(p + off + 8);
		e.size = rd64(p + off + 16);
		e.mtime = (int64_t)rd64(p + off + 24);
		e.ctime = (int64_t)rd64(p + off + 32);
		memcpy(e.id.b, p + off + 40, 16);
		uint32_t len = rd32(p + off + 56);
		off += 60;
		if (len == 0 || end - off < len)
			return;
		e.path = xstrndup((const char *)p + off, len);
		off += len;
		put(sc, &e);
	}
}

statcache *statcache_load(const char *path)
{
	statcache *sc = xcalloc(1, sizeof *sc);
	sc->file = xstrdup(path);
	pthread_mutex_init(&sc->mu, NULL);
	grow(sc);
	buf b;
	herr e;
	buf_init(&b);
	if (fs_read(&e, path, &b) == 0)
		parse(sc, (const unsigned char *)b.p, b.len);
	buf_free(&b);
	sc->dirty = 0;
	return sc;
}

void statcache_free(statcache *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->cap; i++)
		free(sc->slots[i].path);
	free(sc->slots);
	free(sc->file);
	pthread_mutex_destroy(&sc->mu);
	free(sc);
}

static int64_t ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static int file_id(statcache *sc, herr *e, const char *path, const struct stat *st, hkey *id)
{
	pthread_mutex_lock(&sc->mu);
	sc_entry *s = find(sc, path);
	if (s->path && s->dev == (uint64_t)st->st_dev && s->ino == (uint64_t)st->st_ino &&
	    s->size == (uint64_t)st->st_size && s->mtime == ns(st->st_mtim) &&
	    s->ctime == ns(st->st_ctim)) {
		*id = s->id;
		sc->hits++;
		pthread_mutex_unlock(&sc->mu);
		return 0;
	}
	pthread_mutex_unlock(&sc->mu);
	uint64_t size;
	if (hkey_file(e, path, id, &size) != 0)
		return -1;
	/* A file modified within the last second could change again without its
	 * mtime moving (coarse timestamps): hash it, but don't remember it. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&sc->mu);
	sc->hashed++;
	if (ns(now) - ns(st->st_mtim) > 1000000000LL && size == (uint64_t)st->st_size) {
		sc_entry ent = {xstrdup(path), (uint64_t)st->st_dev, (uint64_t)st->st_ino,
		                (uint64_t)st->st_size, ns(st->st_mtim), ns(st->st_ctim), *id};
		put(sc, &ent);
		sc->dirty = 1;
	}
	pthread_mutex_unlock(&sc->mu);
	return 0;
}

int statcache_id(statcache *sc, herr *e, const char *abspath, hkey *id, uint64_t *bytes)
{
	struct stat st;
	if (stat(abspath, &st) != 0)
		return herr_set(e, "%s: input not found", abspath);
	if (S_ISREG(st.st_mode)) {
		if (bytes)
			*bytes = (uint64_t)st.st_size;
		return file_id(sc, e, abspath, &st, id);
	}
	if (!S_ISDIR(st.st_mode))
		return herr_set(e, "%s: not a regular file or folder", abspath);
	char **files;
	size_t n;
	if (fs_list_files(e, abspath, &files, &n) != 0)
		return -1;
	buf body;
	buf_init(&body);
	int rc = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *full = path_join(abspath, files[i]);
		struct stat fst;
		hkey fid;
		if (stat(full, &fst) != 0)
			rc = herr_set(e, "%s: vanished while hashing", full);
		else
			rc = file_id(sc, e, full, &fst, &fid);
		if (rc == 0) {
			char hex[HKEY_HEX];
			hkey_hex(&fid, hex);
			buf_printf(&body, "%s %llu %s\n", hex, (unsigned long long)fst.st_size, files[i]);
			total += (uint64_t)fst.st_size;
		}
		free(full);
	}
	if (rc == 0) {
		store_subtree_id(body.p ? body.p : "", body.len, "", id);
		if (bytes)
			*bytes = total;
	}
	buf_free(&body);
	strv_free(files, n);
	return rc;
}

int statcache_peek(statcache *sc, const char *abspath, hkey *id, uint64_t *bytes)
{
	struct stat st;
	if (stat(abspath, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	int hit = 0;
	pthread_mutex_lock(&sc->mu);
	sc_entry *s = find(sc, abspath);
	if (s->path && s->dev == (uint64_t)st.st_dev && s->ino == (uint64_t)st.st_ino &&
	    s->size == (uint64_t)st.st_size && s->mtime == ns(st.st_mtim) &&
	    s->ctime == ns(st.st_ctim)) {
		*id = s->id;
		if (bytes)
			*bytes = s->size;
		sc->hits++;
		hit = 1;
	}
	pthread_mutex_unlock(&sc->mu);
	return hit;
}

int statcache_save(statcache *sc, herr *e)
{
	if (!sc->dirty)
		return 0;
	buf b;
	buf_init(&b);
	buf_add(&b, "HONESTC\0", 8);
	wr32(&b, 1);
	wr32(&b, (uint32_t)sc->n);
	for (size_t i = 0; i < sc->cap; i++) {
		sc_entry *s = &sc->slots[i];
		if (!s->path)
			continue;
		wr64(&b, s->dev);
		wr64(&b, s->ino);
		wr64(&b, s->size);
		wr64(&b, (uint64_t)s->mtime);
		wr64(&b, (uint64_t)s->ctime);
		buf_add(&b, s->id.b, 16);
		wr32(&b, (uint32_t)strlen(s->path));
		buf_adds(&b, s->path);
	}
	hkey sum;
	hkey_of(&sum, b.p, b.len);
	buf_add(&b, sum.b, 16);
	int rc = fs_write_atomic(e, sc->file, b.p, b.len);
	buf_free(&b);
	if (rc == 0)
		sc->dirty = 0;
	return rc;
}

void statcache_counts(const statcache *sc, unsigned *hashed, unsigned *hits)
{
	*hashed = sc->hashed;
	*hits = sc->hits;
}
