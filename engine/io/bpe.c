#include "bpe.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "json.h"

/* ---- GPT-2's pre-tokenization --------------------------------------------- */

/* Unicode White_Space (what \s matches in the reference regex engines). */
static int is_ws(int32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
	       c == 0x205f || c == 0x3000;
}

static int is_letter(int32_t c)
{
	if (c < 0)
		return 0;
	if (c < 0x80)
		return (c | 32) >= 'a' && (c | 32) <= 'z';
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
	       k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

static int is_number(int32_t c)
{
	if (c < 0)
		return 0;
	if (c < 0x80)
		return c >= '0' && c <= '9';
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* Code point at s[i] (-1 for an invalid byte); *len its length (>= 1). */
static int32_t cp_at(const char *s, size_t n, size_t i, size_t *len)
{
	unsigned char c = (unsigned char)s[i];
	if (c < 0x80) {
		*len = 1;
		return c;
	}
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
	if (k <= 0) {
		*len = 1;
		return -1;
	}
	*len = (size_t)k;
	return cp;
}

enum { C_WS, C_L, C_N, C_OTHER };

static int cls(int32_t c)
{
	if (c >= 0 && is_ws(c))
		return C_WS;
	if (is_letter(c))
		return C_L;
	if (is_number(c))
		return C_N;
	return C_OTHER;
}

/* End of the run of class k starting at i. */
static size_t run(const char *s, size_t n, size_t i, int k)
{
	while (i < n) {
		size_t l;
		int32_t c = cp_at(s, n, i, &l);
		if (cls(c) != k)
			break;
		i += l;
	}
	return i;
}

void bpe_pretokenize(const char *s, size_t n, void (*fn)(void *ud, const char *p, size_t len), void *ud)
{
	size_t i = 0;
	while (i < n) {
		size_t l;
		int32_t c = cp_at(s, n, i, &l);
		/* contractions: 's 't 're 've 'm 'll 'd (lowercase only) */
		if (c == '\'' && i + 1 < n) {
			char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
			size_t m = 0;
			if (a == 's' || a == 't' || a == 'm' || a == 'd')
				m = 2;
			else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
				m = 3;
			if (m) {
				fn(ud, s + i, m);
				i += m;
				continue;
			}
		}
		int k = cls(c);
		size_t start = i, from = i;
		if (c == ' ' && i + 1 < n) {
			/* an optional space before letters, numbers or other symbols */
			size_t l2;
			int k2 = cls(cp_at(s, n, i + 1, &l2));
			if (k2 != C_WS) {
				k = k2;
				from = i + 1;
			}
		}
		if (k != C_WS) {
			size_t end = run(s, n, from, k);
			fn(ud, s + start, end - start);
			i = end;
			continue;
		}
		/* whitespace: the run, less its last character when something
		 * other than whitespace follows (that one joins the next piece) */
		size_t end = run(s, n, i, C_WS);
		if (end < n) {
			size_t last = i, p = i;
			while (p < end) {
				last = p;
				cp_at(s, n, p, &l);
				p += l;
			}
			if (last > i)
				end = last;
		}
		fn(ud, s + i, end - i);
		i = end;
	}
}

/* ---- vocabulary ------------------------------------------------------------ */

struct bpe {
	buf blob;             /* token bytes */
	uint64_t *off;        /* id -> offset in blob; off[id + 1] - off[id] = length */
	uint32_t *len;
	size_t n;             /* vocabulary size */
	uint32_t *slots;      /* bytes -> id + 1, open addressing */
	size_t cap;
	uint32_t byte_id[256];
};

static size_t slot_of(const bpe *b, const char *p, size_t n)
{
	return (size_t)XXH3_64bits(p, n) & (b->cap - 1);
}

static int64_t lookup(const bpe *b, const char *p, size_t n)
{
	size_t h = slot_of(b, p, n);
	while (b->slots[h]) {
		uint32_t id = b->slots[h] - 1;
		if (b->len[id] == n && memcmp(b->blob.p + b->off[id], p, n) == 0)
			return id;
		h = (h + 1) & (b->cap - 1);
	}
	return -1;
}

/* GPT-2's printable stand-ins for bytes: 33..126, 161..172 and 174..255 are
 * themselves; the other 68 bytes map to 256, 257, ... in byte order. */
static void byte_map(int32_t to_cp[256], int16_t from_cp[512])
{
	int next = 256;
	for (int i = 0; i < 512; i++)
		from_cp[i] = -1;
	for (int bt = 0; bt < 256; bt++) {
		int self = (bt >= 33 && bt <= 126) || (bt >= 161 && bt <= 172) || (bt >= 174 && bt <= 255);
		to_cp[bt] = self ? bt : next++;
		from_cp[to_cp[bt]] = (int16_t)bt;
	}
}

/* Mapped text (as in the files) -> raw bytes; -1 if not a mapped string. */
static int unmap(const int16_t from_cp[512], const char *s, size_t n, buf *out)
{
	out->len = 0;
	size_t i = 0;
	while (i < n) {
		size_t l;
		int32_t c = cp_at(s, n, i, &l);
		if (c < 0 || c >= 512 || from_cp[c] < 0)
			return -1;
		buf_addc(out, (char)from_cp[c]);
		i += l;
	}
	if (!out->p)
		buf_reserve(out, 0);
	return 0;
}

int bpe_load_gpt2(herr *e, bpe **out, const char *encoder_json, const char *vocab_bpe)
{
	*out = NULL;
	buf js, mg, raw, raw2;
	buf_init(&js);
	buf_init(&mg);
	buf_init(&raw);
	buf_init(&raw2);
	if (fs_read(e, encoder_json, &js) != 0 || fs_read(e, vocab_bpe, &mg) != 0) {
		buf_free(&js);
		buf_free(&mg);
		return -1;
	}
	int32_t to_cp[256];
	int16_t from_cp[512];
	byte_map(to_cp, from_cp);
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, js.p, js.len, &je);
	bpe *b = xcalloc(1, sizeof *b);
	buf_init(&b->blob);
	int rc = 0;
	if (!root || root->t != J_OBJ) {
		size_t line, col;
		json_line_col(js.p, root ? 0 : je.off, &line, &col);
		rc = herr_set(e, "%s:%zu: not a GPT-2 encoder.json (%s)", encoder_json, line,
		              root ? "expected an object of token -> id" : je.what);
	}
	if (rc == 0) {
		b->n = root->n;
		b->off = xcalloc(b->n + 1, sizeof *b->off);
		b->len = xcalloc(b->n + 1, sizeof *b->len);
		uint8_t *seen = xcalloc(b->n + 1, 1);
		for (const jnode *k = root->kid; k && rc == 0; k = k->next) {
			char num[32];
			if (k->t != J_NUM || k->len >= sizeof num) {
				rc = herr_set(e, "%s: token \"%.*s\": expected an id number", encoder_json, (int)k->klen, k->key);
				break;
			}
			memcpy(num, k->s, k->len);
			num[k->len] = 0;
			char *end;
			long id = strtol(num, &end, 10);
			if (*end || id < 0 || (size_t)id >= b->n || seen[id]) {
				rc = herr_set(e, "%s: token \"%.*s\": id %s out of range 0..%zu or repeated", encoder_json,
				              (int)k->klen, k->key, num, b->n - 1);
				break;
			}
			if (unmap(from_cp, k->key, k->klen, &raw) != 0) {
				rc = herr_set(e, "%s: token \"%.*s\" is not in GPT-2's byte alphabet", encoder_json, (int)k->klen, k->key);
				break;
			}
			seen[id] = 1;
			b->off[id] = b->blob.len;
			b->len[id] = (uint32_t)raw.len;
			buf_add(&b->blob, raw.p, raw.len);
		}
		free(seen);
	}
	if (rc == 0) {
		b->cap = 1024;
		while (b->cap < 2 * b->n)
			b->cap *= 2;
		b->slots = xcalloc(b->cap, sizeof *b->slots);
		for (size_t id = 0; id < b->n; id++) {
			size_t h = slot_of(b, b->blob.p + b->off[id], b->len[id]);
			while (b->slots[h])
				h = (h + 1) & (b->cap - 1);
			b->slots[h] = (uint32_t)id + 1;
		}
		for (int bt = 0; bt < 256 && rc == 0; bt++) {
			char c = (char)bt;
			int64_t id = lookup(b, &c, 1);
			if (id < 0)
				rc = herr_set(e, "%s: byte %d has no token", encoder_json, bt);
			else
				b->byte_id[bt] = (uint32_t)id;
		}
	}
	/* merges: one "A B" per line after the "#version" line. Encoding needs
	 * only the ranks, which are the ids (a join of two parts is allowed when
	 * it is a token); the file is checked to be a merge list of this
	 * vocabulary. */
	if (rc == 0) {
		size_t lineno = 0;
		const char *p = mg.p, *endp = mg.p + mg.len;
		while (p < endp && rc == 0) {
			const char *nl = memchr(p, '\n', (size_t)(endp - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(endp - p);
			lineno++;
			if (len && p[len - 1] == '\r')
				len--;
			if (len && p[0] != '#') {
				const char *sp = memchr(p, ' ', len);
				int64_t x = -1, y = -1, z = -1;
				if (sp && unmap(from_cp, p, (size_t)(sp - p), &raw) == 0 &&
				    unmap(from_cp, sp + 1, len - (size_t)(sp - p) - 1, &raw2) == 0) {
					x = lookup(b, raw.p, raw.len);
					y = lookup(b, raw2.p, raw2.len);
					buf_add(&raw, raw2.p, raw2.len);
					z = lookup(b, raw.p, raw.len);
				}
				if (x < 0 || y < 0 || z < 0)
					rc = herr_set(e, "%s:%zu: expected a merge \"A B\" of two tokens whose join is a token", vocab_bpe, lineno);
			}
			p = nl ? nl + 1 : endp;
		}
	}
	json_arena_free(a);
	buf_free(&js);
	buf_free(&mg);
	buf_free(&raw);
	buf_free(&raw2);
	if (rc != 0) {
		bpe_free(b);
		return -1;
	}
	*out = b;
	return 0;
}

void bpe_free(bpe *b)
{
	if (!b)
		return;
	buf_free(&b->blob);
	free(b->off);
	free(b->len);
	free(b->slots);
	free(b);
}

size_t bpe_vocab_size(const bpe *b) { return b->n; }

/* ---- encoding ------------------------------------------------------------- */

typedef struct enc_ctx {
	const bpe *b;
	uint32_t **ids;
	size_t *nids, *cap;
	void *parts;        /* part[], see encode_piece */
	size_t pcap;
} enc_ctx;

static void push_id(enc_ctx *c, uint32_t id)
{
	if (*c->nids == *c->cap) {
		*c->cap = *c->cap ? *c->cap * 2 : 256;
		*c->ids = xrealloc(*c->ids, *c->cap * sizeof **c->ids);
	}
	(*c->ids)[(*c->nids)++] = id;
}

/* BPE over one pre-token, as GPT-2's encoders do it: the parts start as
 * single bytes; two adjacent parts may merge when their joined bytes are a
 * token, and the join with the lowest id (GPT-2's ids are its merge ranks)
 * goes first, leftmost on ties, until none is left. */
typedef struct part {
	size_t start;
	int64_t rank; /* id of this part joined with the next, or -1 */
} part;

static int64_t join_rank(const bpe *b, const char *p, const part *parts, size_t m, size_t i)
{
	if (i + 2 > m)
		return -1;
	size_t end = i + 2 < m ? parts[i + 2].start : parts[m].start;
	return lookup(b, p + parts[i].start, end - parts[i].start);
}

static void encode_piece(void *ud, const char *p, size_t n)
{
	enc_ctx *c = ud;
	const bpe *b = c->b;
	int64_t whole = lookup(b, p, n);
	if (whole >= 0) {
		push_id(c, (uint32_t)whole); /* a whole token: what the merges reach */
		return;
	}
	if (n + 1 > c->pcap) {
		c->pcap = n + 1;
		c->parts = xrealloc(c->parts, c->pcap * sizeof(part));
	}
	part *parts = (part *)c->parts;
	size_t m = n; /* parts[m].start = n is the end sentinel */
	for (size_t i = 0; i <= n; i++)
		parts[i].start = i;
	for (size_t i = 0; i < m; i++)
		parts[i].rank = join_rank(b, p, parts, m, i);
	for (;;) {
		int64_t best = -1;
		size_t at = 0;
		for (size_t i = 0; i + 1 < m; i++)
			if (parts[i].rank >= 0 && (best < 0 || parts[i].rank < best))
				best = parts[i].rank, at = i;
		if (best < 0)
			break;
		memmove(parts + at + 1, parts + at + 2, (m - at - 1) * sizeof *parts); /* keeps the sentinel */
		m--;
		parts[at].rank = join_rank(b, p, parts, m, at);
		if (at > 0)
			parts[at - 1].rank = join_rank(b, p, parts, m, at - 1);
	}
	for (size_t i = 0; i < m; i++) {
		int64_t id = lookup(b, p + parts[i].start, parts[i + 1].start - parts[i].start);
		push_id(c, (uint32_t)id);
	}
}

int bpe_encode(const bpe *b, const char *s, size_t n, uint32_t **ids, size_t *nids, size_t *cap)
{
	enc_ctx c = {b, ids, nids, cap, NULL, 0};
	bpe_pretokenize(s, n, encode_piece, &c);
	free(c.parts);
	return 0;
}

int bpe_decode(const bpe *b, const uint32_t *ids, size_t n, buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= b->n)
			return -1;
		buf_add(out, b->blob.p + b->off[ids[i]], b->len[ids[i]]);
	}
	if (!out->p)
		buf_reserve(out, 0);
	return 0;
}
