#include "key.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static void from_hash(hkey *k, XXH128_hash_t h)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(k->b, c.digest, 16);
}

void hkey_of(hkey *k, const void *p, size_t n)
{
	from_hash(k, XXH3_128bits(p, n));
}

void hkey_hex(const hkey *k, char out[HKEY_HEX])
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hx[k->b[i] >> 4];
		out[2 * i + 1] = hx[k->b[i] & 15];
	}
	out[32] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

int hkey_parse(hkey *k, const char *hex)
{
	for (int i = 0; i < 16; i++) {
		int a = hexval(hex[2 * i]), b = a < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (a < 0 || b < 0)
			return -1;
		k->b[i] = (uint8_t)(a << 4 | b);
	}
	return 0;
}

int hkey_eq(const hkey *a, const hkey *b) { return memcmp(a->b, b->b, 16) == 0; }

int hkey_is_zero(const hkey *k)
{
	for (int i = 0; i < 16; i++)
		if (k->b[i])
			return 0;
	return 1;
}

/* Notes of files written and hashed by this process (hkey_note): a small
 * table, the oldest dropped when full. */
typedef struct fnote {
	char *path;
	dev_t dev;
	ino_t ino;
	uint64_t size;
	struct timespec mtime;
	hkey k;
} fnote;

#define NOTES 64
static fnote notes[NOTES];
static unsigned nnotes_next;
static pthread_mutex_t notes_mu = PTHREAD_MUTEX_INITIALIZER;

void hkey_note(const char *path, const hkey *k, uint64_t size)
{
	struct stat st;
	if (stat(path, &st) != 0 || (uint64_t)st.st_size != size)
		return; /* nothing to note: hkey_file reads the file */
	pthread_mutex_lock(&notes_mu);
	fnote *n = &notes[nnotes_next++ % NOTES];
	free(n->path);
	*n = (fnote){xstrdup(path), st.st_dev, st.st_ino, size, st.st_mtim, *k};
	pthread_mutex_unlock(&notes_mu);
}

/* Takes the note of path, if one matches the file as it is now. */
static int noted(const char *path, hkey *k, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	int found = 0;
	pthread_mutex_lock(&notes_mu);
	for (int i = 0; i < NOTES && !found; i++) {
		fnote *n = &notes[i];
		if (n->path && !strcmp(n->path, path) && n->dev == st.st_dev && n->ino == st.st_ino &&
		    n->size == (uint64_t)st.st_size && n->mtime.tv_sec == st.st_mtim.tv_sec &&
		    n->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			*k = n->k;
			if (size)
				*size = n->size;
			found = 1;
		}
		if (n->path && !strcmp(n->path, path)) { /* used or stale: gone */
			free(n->path);
			n->path = NULL;
		}
	}
	pthread_mutex_unlock(&notes_mu);
	return found;
}

int hkey_file(herr *e, const char *path, hkey *k, uint64_t *size)
{
	if (noted(path, k, size))
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return herr_set(e, "%s: cannot open: %s", path, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	size_t cap = 1 << 20;
	char *b = xmalloc(cap);
	uint64_t total = 0;
	int rc = 0;
	for (;;) {
		ssize_t r = read(fd, b, cap);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = herr_set(e, "%s: read error: %s", path, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		XXH3_128bits_update(st, b, (size_t)r);
		total += (uint64_t)r;
	}
	if (rc == 0) {
		from_hash(k, XXH3_128bits_digest(st));
		if (size)
			*size = total;
	}
	free(b);
	XXH3_freeState(st);
	close(fd);
	return rc;
}

struct keyhash {
	XXH3_state_t *st;
};

keyhash *keyhash_new(void)
{
	keyhash *h = xmalloc(sizeof *h);
	h->st = XXH3_createState();
	XXH3_128bits_reset(h->st);
	return h;
}

void keyhash_field(keyhash *h, const void *p, size_t n)
{
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((uint64_t)n >> (8 * i));
	XXH3_128bits_update(h->st, len, 8);
	XXH3_128bits_update(h->st, p, n);
}

void keyhash_str(keyhash *h, const char *s) { keyhash_field(h, s, strlen(s)); }

void keyhash_bytes(keyhash *h, const void *p, size_t n) { XXH3_128bits_update(h->st, p, n); }

void keyhash_done(keyhash *h, hkey *out)
{
	from_hash(out, XXH3_128bits_digest(h->st));
	XXH3_freeState(h->st);
	free(h);
}

void key_stage(hkey *out, const char *kind, const char *kernel, int version, const char *name,
               const hval *params, const key_input *in, size_t nin)
{
	keyhash *h = keyhash_new();
	char ver[32];
	buf enc;
	keyhash_str(h, "hone-stage-key/2");
	keyhash_str(h, kind);
	keyhash_str(h, kernel);
	snprintf(ver, sizeof ver, "%d", version);
	keyhash_str(h, ver);
	keyhash_str(h, name ? name : "");
	buf_init(&enc);
	if (params)
		hval_encode(&enc, params);
	keyhash_field(h, enc.p ? enc.p : "", enc.len);
	buf_free(&enc);
	for (size_t i = 0; i < nin; i++) {
		keyhash_str(h, in[i].slot);
		keyhash_str(h, in[i].label ? in[i].label : "");
		keyhash_field(h, in[i].id.b, 16);
	}
	keyhash_done(h, out);
}
