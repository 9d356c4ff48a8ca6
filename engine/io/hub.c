#include "hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

/* --- SHA-256 ------------------------------------------------------------------------------- */

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
	0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
	0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t b[64])
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
		hh = g, g = f, f = e, e = d + t1, d = c, c = bb, bb = a, a = t1 + t2;
	}
	h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void hub_sha256_init(hub_sha256 *s)
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, h0, sizeof h0);
	s->fill = 0;
	s->bytes = 0;
}

void hub_sha256_add(hub_sha256 *s, const void *p, size_t n)
{
	const uint8_t *b = p;
	s->bytes += n;
	while (n) {
		size_t k = 64 - s->fill < n ? 64 - s->fill : n;
		memcpy(s->block + s->fill, b, k);
		s->fill += k, b += k, n -= k;
		if (s->fill == 64) {
			compress(s->h, s->block);
			s->fill = 0;
		}
	}
}

void hub_sha256_done(hub_sha256 *s, char out[65])
{
	uint64_t bits = s->bytes * 8;
	uint8_t pad = 0x80, z = 0;
	hub_sha256_add(s, &pad, 1);
	while (s->fill != 56)
		hub_sha256_add(s, &z, 1);
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	hub_sha256_add(s, len, 8);
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

void hub_sha256_hex(const void *p, size_t n, char out[65])
{
	hub_sha256 s;
	hub_sha256_init(&s);
	hub_sha256_add(&s, p, n);
	hub_sha256_done(&s, out);
}

/* --- ids and the cache ---------------------------------------------------------------------- */

static int name_char(int c) { return isalnum(c) || c == '-' || c == '_' || c == '.'; }

int hub_is_id(const char *s)
{
	const char *sl = strchr(s, '/');
	if (!sl || sl == s || !name_char((unsigned char)s[0]) || s[0] == '.')
		return 0;
	for (const char *p = s; p < sl; p++)
		if (!name_char((unsigned char)*p))
			return 0;
	const char *p = sl + 1;
	if (!*p || *p == '.')
		return 0;
	for (; *p && *p != '@'; p++)
		if (!name_char((unsigned char)*p))
			return 0;
	if (*p == '@')
		for (p++; *p; p++)
			if (!name_char((unsigned char)*p) && *p != '/')
				return 0;
	return 1;
}

static char *cache_root(void)
{
	const char *c = getenv("HF_HUB_CACHE"), *h = getenv("HF_HOME"), *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	if (c && *c)
		return xstrdup(c);
	if (h && *h)
		return xasprintf("%s/hub", h);
	if (x && *x)
		return xasprintf("%s/huggingface/hub", x);
	return xasprintf("%s/.cache/huggingface/hub", home && *home ? home : ".");
}

static int is_sha(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return n == 40;
}

/* repo folder/snapshots/COMMIT when it holds config.json; NULL if not */
static char *cached(const char *repo, const char *rev)
{
	char commit[64] = "";
	if (is_sha(rev)) {
		snprintf(commit, sizeof commit, "%.40s", rev);
	} else {
		char *ref = xasprintf("%s/refs/%s", repo, rev);
		FILE *f = fopen(ref, "r");
		free(ref);
		if (!f)
			return NULL;
		if (!fgets(commit, sizeof commit, f))
			commit[0] = 0;
		fclose(f);
		commit[strcspn(commit, "\r\n")] = 0;
		if (!is_sha(commit))
			return NULL;
	}
	char *snap = xasprintf("%s/snapshots/%s", repo, commit), *cfg = xasprintf("%s/config.json", snap);
	int ok = fs_exists(cfg);
	free(cfg);
	if (ok)
		return snap;
	free(snap);
	return NULL;
}

/* --- downloading ------------------------------------------------------------------------------ */

typedef struct fetch {
	FILE *out;        /* the body goes here, or into mem */
	buf *mem;
	char etag[128], linked[128];
	long resume_ok;   /* a 206 answer: the partial file is continued */
} fetch;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	fetch *f = ud;
	size_t k = sz * n;
	if (f->mem)
		buf_add(f->mem, p, k);
	else if (fwrite(p, 1, k, f->out) != k)
		return 0;
	return k;
}

/* ETag and X-Linked-Etag (an LFS file's sha256), quotes and W/ taken off */
static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	fetch *f = ud;
	size_t k = sz * n;
	char *dst = NULL;
	size_t skip = 0;
	if (k > 5 && !strncasecmp(p, "etag:", 5))
		dst = f->etag, skip = 5;
	else if (k > 14 && !strncasecmp(p, "x-linked-etag:", 14))
		dst = f->linked, skip = 14;
	if (dst) {
		const char *v = p + skip;
		size_t l = k - skip;
		while (l && (*v == ' ' || *v == '"' || *v == 'W' || *v == '/'))
			v++, l--;
		while (l && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == '"' || v[l - 1] == ' '))
			l--;
		snprintf(dst, 128, "%.*s", (int)(l < 127 ? l : 127), v);
	}
	return k;
}

/* GET url into f; from: resume at this byte (0: from the start). The HTTP
 * status in *status; -1 with e on a transport error. */
static int get(herr *e, const char *url, fetch *f, long long from, long *status)
{
	CURL *c = curl_easy_init();
	if (!c)
		return herr_set(e, "libcurl: cannot start a transfer");
	struct curl_slist *hd = NULL;
	const char *tok = getenv("HF_TOKEN");
	char *auth = tok && *tok ? xasprintf("Authorization: Bearer %s", tok) : NULL;
	if (auth)
		hd = curl_slist_append(hd, auth);
	hd = curl_slist_append(hd, "User-Agent: hone");
	char range[64];
	snprintf(range, sizeof range, "%lld-", from);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (from > 0)
		curl_easy_setopt(c, CURLOPT_RANGE, range);
	CURLcode r = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(hd);
	free(auth);
	curl_easy_cleanup(c);
	if (r != CURLE_OK)
		return herr_set(e, "%s: %s", url, curl_easy_strerror(r));
	f->resume_ok = *status == 206;
	return 0;
}

static int http_error(herr *e, const char *url, long status)
{
	herr_set(e, "%s: HTTP %ld", url, status);
	if (status == 401 || status == 403)
		return herr_hint(e, "a gated or private model: set HF_TOKEN to a token that has access");
	if (status == 404)
		return herr_hint(e, "check the model id and revision");
	return -1;
}

/* One file of the snapshot: into blobs/ under its ETag (resumed, checked
 * against the LFS sha256), linked from snapshots/COMMIT/name */
static int fetch_file(herr *e, const char *base, const char *id, const char *repo, const char *commit, const char *name,
                      int progress)
{
	char *url = xasprintf("%s/%s/resolve/%s/%s", base, id, commit, name);
	char *link = xasprintf("%s/snapshots/%s/%s", repo, commit, name), *ldir = path_dirname(link);
	char *bdir = xasprintf("%s/blobs", repo), *safe = xstrdup(name);
	for (char *p = safe; *p; p++)
		*p = *p == '/' ? '_' : *p;
	/* a partial download of this file (named by commit and file) is resumed */
	char *tmp = xasprintf("%s/%s.%s.incomplete", bdir, commit, safe);
	free(safe);
	int rc = fs_mkdirs(e, ldir);
	if (rc == 0)
		rc = fs_mkdirs(e, bdir);
	struct stat st;
	long long have = rc == 0 && stat(tmp, &st) == 0 ? (long long)st.st_size : 0;
	fetch f;
	long status = 0;
	for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
		FILE *out = fopen(tmp, have ? "ab" : "wb");
		if (!out) {
			rc = herr_set(e, "%s: cannot create: %s", tmp, strerror(errno));
			break;
		}
		memset(&f, 0, sizeof f);
		f.out = out;
		if (progress)
			fprintf(stderr, "hone: downloading %s/%s%s\n", id, name, have ? " (resuming)" : "");
		rc = get(e, url, &f, have, &status);
		if (fclose(out) != 0 && rc == 0)
			rc = herr_set(e, "%s: write error", tmp);
		if (rc == 0 && have && status == 200) { /* no ranges there: the whole file came after the part; again */
			have = 0;
			continue;
		}
		break;
	}
	if (rc == 0 && status != 200 && status != 206)
		rc = http_error(e, url, status);
	/* the digest of the whole file as it now is on disk, read in pieces */
	char hex[65] = "";
	if (rc == 0) {
		FILE *in = fopen(tmp, "rb");
		if (!in) {
			rc = herr_set(e, "%s: cannot read: %s", tmp, strerror(errno));
		} else {
			hub_sha256 sh;
			hub_sha256_init(&sh);
			char *chunk = xmalloc(1 << 20);
			size_t k;
			while ((k = fread(chunk, 1, 1 << 20, in)) > 0)
				hub_sha256_add(&sh, chunk, k);
			free(chunk);
			fclose(in);
			hub_sha256_done(&sh, hex);
		}
	}
	const char *key = f.linked[0] ? f.linked : f.etag[0] ? f.etag : hex;
	if (rc == 0 && f.linked[0] && strcmp(f.linked, hex)) {
		unlink(tmp);
		rc = herr_set(e, "%s: the download's sha256 %s is not the %s its LFS pointer names", url, hex, f.linked);
		herr_hint(e, "a corrupt or truncated transfer: run again to download it anew");
	}
	char *blob = xasprintf("%s/%s", bdir, key);
	if (rc == 0 && (strchr(key, '/') || rename(tmp, blob) != 0))
		rc = herr_set(e, "%s: cannot rename to %s: %s", tmp, blob, strerror(errno));
	if (rc == 0) {
		/* snapshots/COMMIT/name -> ../../blobs/KEY (deeper names: more ../) */
		buf rel;
		buf_init(&rel);
		buf_adds(&rel, "../../");
		for (const char *p = name; *p; p++)
			if (*p == '/')
				buf_adds(&rel, "../");
		buf_printf(&rel, "blobs/%s", key);
		unlink(link);
		if (symlink(rel.p, link) != 0)
			rc = herr_set(e, "%s: cannot link: %s", link, strerror(errno));
		buf_free(&rel);
	}
	free(blob);
	free(url);
	free(tmp);
	free(link);
	free(ldir);
	free(bdir);
	return rc;
}

static int wanted(const char *name)
{
	static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors",
	                                    "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
	                                    "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt"};
	for (size_t k = 0; k < sizeof files / sizeof *files; k++)
		if (!strcmp(name, files[k]))
			return 1;
	return 0;
}

static int download(herr *e, const char *id, const char *rev, const char *repo, char **dir, int progress)
{
	const char *ep = getenv("HF_ENDPOINT");
	char *base = xstrdup(ep && *ep ? ep : "https://huggingface.co");
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		base[--bl] = 0;
	char *api = xasprintf("%s/api/models/%s/revision/%s", base, id, rev);
	buf body;
	buf_init(&body);
	fetch f;
	memset(&f, 0, sizeof f);
	f.mem = &body;
	long status = 0;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = get(e, api, &f, 0, &status);
	if (rc == 0 && status != 200)
		rc = http_error(e, api, status);
	jarena *a = json_arena_new();
	jerror je;
	const jnode *r = rc == 0 ? json_parse(a, body.p ? body.p : "", body.len, &je) : NULL;
	const jnode *sha = r ? json_member(r, "sha", 3) : NULL, *sib = r ? json_member(r, "siblings", 8) : NULL;
	char commit[64] = "";
	if (rc == 0 && (!sha || sha->t != J_STR || sha->len != 40 || !sib || sib->t != J_ARR))
		rc = herr_set(e, "%s: expected the revision's \"sha\" (40 hex digits) and \"siblings\"", api);
	if (rc == 0)
		snprintf(commit, sizeof commit, "%.*s", (int)sha->len, sha->s);
	/* the files to take: config, tokenizer, the weights (the index's shards) */
	int has_st = 0, has_idx = 0;
	for (const jnode *s = rc == 0 ? sib->kid : NULL; s; s = s->next) {
		const jnode *fn = json_member(s, "rfilename", 9);
		has_st |= fn && fn->t == J_STR && fn->len == 17 && !memcmp(fn->s, "model.safetensors", 17);
		has_idx |= fn && fn->t == J_STR && fn->len == 28 && !memcmp(fn->s, "model.safetensors.index.json", 28);
	}
	if (rc == 0 && !has_st && !has_idx) {
		rc = herr_set(e, "%s@%s has no model.safetensors (nor an index of shards)", id, rev);
		herr_hint(e, "hone reads safetensors weights; convert a pytorch_model.bin with transformers' save_pretrained");
	}
	for (const jnode *s = rc == 0 ? sib->kid : NULL; s && rc == 0; s = s->next) {
		const jnode *fn = json_member(s, "rfilename", 9);
		if (!fn || fn->t != J_STR || fn->len > 200)
			continue;
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)fn->len, fn->s);
		if (!wanted(name))
			continue;
		rc = fetch_file(e, base, id, repo, commit, name, progress);
	}
	if (rc == 0 && has_idx) {
		/* the shards the index lists */
		char *ip = xasprintf("%s/snapshots/%s/model.safetensors.index.json", repo, commit);
		buf idx;
		buf_init(&idx);
		rc = fs_read(e, ip, &idx);
		jarena *b = json_arena_new();
		const jnode *ir = rc == 0 ? json_parse(b, idx.p, idx.len, &je) : NULL, *wm = ir ? json_member(ir, "weight_map", 10) : NULL;
		if (rc == 0 && (!wm || wm->t != J_OBJ))
			rc = herr_set(e, "%s: expected a \"weight_map\"", ip);
		char **done = NULL;
		size_t nd = 0;
		for (const jnode *k = wm && rc == 0 ? wm->kid : NULL; k && rc == 0; k = k->next) {
			if (k->t != J_STR || k->len > 200 || memchr(k->s, '/', k->len) || (k->len && k->s[0] == '.'))
				continue;
			char name[256];
			snprintf(name, sizeof name, "%.*s", (int)k->len, k->s);
			int seen = 0;
			for (size_t d = 0; d < nd && !seen; d++)
				seen = !strcmp(done[d], name);
			if (seen)
				continue;
			done = xrealloc(done, (nd + 1) * sizeof *done);
			done[nd++] = xstrdup(name);
			rc = fetch_file(e, base, id, repo, commit, name, progress);
		}
		strv_free(done, nd);
		json_arena_free(b);
		buf_free(&idx);
		free(ip);
	}
	if (rc == 0 && !is_sha(rev)) {
		char *refd = xasprintf("%s/refs", repo), *ref = xasprintf("%s/refs/%s", repo, rev);
		char *rd = path_dirname(ref);
		rc = fs_mkdirs(e, rd);
		if (rc == 0)
			rc = fs_write_atomic(e, ref, commit, strlen(commit));
		free(rd);
		free(refd);
		free(ref);
	}
	if (rc == 0)
		*dir = xasprintf("%s/snapshots/%s", repo, commit);
	json_arena_free(a);
	buf_free(&body);
	free(api);
	free(base);
	return rc;
}

int hub_resolve(herr *e, const char *id_rev, char **dir, int progress)
{
	*dir = NULL;
	char id[256], rev[128] = "main";
	snprintf(id, sizeof id, "%s", id_rev);
	char *at = strchr(id, '@');
	if (at) {
		snprintf(rev, sizeof rev, "%s", at + 1);
		*at = 0;
	}
	char *root = cache_root(), *folder = xstrdup(id);
	for (char *p = folder; *p; p++)
		if (*p == '/')
			*p = 0;
	char *repo = xasprintf("%s/models--%s--%s", root, folder, folder + strlen(folder) + 1);
	free(folder);
	int rc = 0;
	*dir = cached(repo, rev);
	const char *off = getenv("HF_HUB_OFFLINE"), *hoff = getenv("HONE_OFFLINE");
	int offline = (off && *off && strcmp(off, "0")) || (hoff && *hoff && strcmp(hoff, "0"));
	if (!*dir && offline) {
		rc = herr_set(e, "%s@%s is not in the Hugging Face cache (looked in %s) and downloads are off (HF_HUB_OFFLINE)", id,
		              rev, repo);
		herr_hint(e, "download it once with a network (unset HF_HUB_OFFLINE), or give the folder's path");
	} else if (!*dir) {
		herr de;
		rc = download(&de, id, rev, repo, dir, progress);
		if (rc) {
			herr_set(e, "%s@%s is not in the Hugging Face cache (looked in %s), and downloading it failed: %s", id, rev, repo,
			         de.msg);
			herr_hint(e, "%s", de.hint[0] ? de.hint : "with no network, give the folder's path, or fill the cache first");
		}
	}
	free(repo);
	free(root);
	return rc;
}
