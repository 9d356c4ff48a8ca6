#include "wordpiece.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "json.h"

/* ---- character classes, as HF's BERT code has them ------------------------ */

/* HF tokenizers takes Mn, P* and Cf from the unicode_categories crate, whose
 * tables are Unicode 8.0's, and lowercase from Rust's std (Unicode 16);
 * utf8proc here knows Unicode 15. So that every code point gets what HF
 * gives it, these tables list where they part, measured on every code point
 * against tokenizers 0.23.2 (tests/fixtures/wordpiece/gen_sweep.mjs, checked
 * by tests/unit/test_wordpiece.c's sweep):
 *   hf_unassigned  marks and punctuation assigned after Unicode 8.0: to HF
 *                  plain characters (not dropped with the accents, not split)
 *   hf_lower       lowercase mappings newer than utf8proc's: first, last, delta
 * and, below, U+166D and U+111C9 (punctuation in Unicode 8.0), U+1734 (a
 * nonspacing mark then), U+11938 (no decomposition in HF's NFD tables). */
static const int32_t hf_unassigned[][2] = {
	{0x061d, 0x061d}, {0x07fd, 0x07fd}, {0x0898, 0x089f}, {0x08ca, 0x08e1}, {0x09fd, 0x09fe},
	{0x0a76, 0x0a76}, {0x0afa, 0x0aff}, {0x0b55, 0x0b55}, {0x0c04, 0x0c04}, {0x0c3c, 0x0c3c},
	{0x0c77, 0x0c77}, {0x0c84, 0x0c84}, {0x0d00, 0x0d00}, {0x0d3b, 0x0d3c}, {0x0d81, 0x0d81},
	{0x0eba, 0x0eba}, {0x0ece, 0x0ece}, {0x180f, 0x180f}, {0x1885, 0x1886}, {0x1abf, 0x1ace},
	{0x1b7d, 0x1b7e}, {0x1df6, 0x1dfb}, {0x2e43, 0x2e4f}, {0x2e52, 0x2e5d}, {0xa82c, 0xa82c},
	{0xa8c5, 0xa8c5}, {0xa8ff, 0xa8ff}, {0xa9bd, 0xa9bd}, {0x10d24, 0x10d27}, {0x10eab, 0x10ead},
	{0x10efd, 0x10eff}, {0x10f46, 0x10f50}, {0x10f55, 0x10f59}, {0x10f82, 0x10f89}, {0x11070, 0x11070},
	{0x11073, 0x11074}, {0x110c2, 0x110c2}, {0x111c9, 0x111c9}, {0x111cf, 0x111cf}, {0x1123e, 0x1123e},
	{0x11241, 0x11241}, {0x1133b, 0x1133b}, {0x11438, 0x1143f}, {0x11442, 0x11444}, {0x11446, 0x11446},
	{0x1144b, 0x1144f}, {0x1145a, 0x1145b}, {0x1145d, 0x1145e}, {0x11660, 0x1166c}, {0x116b9, 0x116b9},
	{0x1182f, 0x11837}, {0x11839, 0x1183b}, {0x1193b, 0x1193c}, {0x1193e, 0x1193e}, {0x11943, 0x11946},
	{0x119d4, 0x119d7}, {0x119da, 0x119db}, {0x119e0, 0x119e0}, {0x119e2, 0x119e2}, {0x11a01, 0x11a0a},
	{0x11a33, 0x11a38}, {0x11a3b, 0x11a47}, {0x11a51, 0x11a56}, {0x11a59, 0x11a5b}, {0x11a8a, 0x11a96},
	{0x11a98, 0x11a9c}, {0x11a9e, 0x11aa2}, {0x11b00, 0x11b09}, {0x11c30, 0x11c36}, {0x11c38, 0x11c3d},
	{0x11c3f, 0x11c3f}, {0x11c41, 0x11c45}, {0x11c70, 0x11c71}, {0x11c92, 0x11ca7}, {0x11caa, 0x11cb0},
	{0x11cb2, 0x11cb3}, {0x11cb5, 0x11cb6}, {0x11d31, 0x11d36}, {0x11d3a, 0x11d3a}, {0x11d3c, 0x11d3d},
	{0x11d3f, 0x11d45}, {0x11d47, 0x11d47}, {0x11d90, 0x11d91}, {0x11d95, 0x11d95}, {0x11d97, 0x11d97},
	{0x11ef3, 0x11ef4}, {0x11ef7, 0x11ef8}, {0x11f00, 0x11f01}, {0x11f36, 0x11f3a}, {0x11f40, 0x11f40},
	{0x11f42, 0x11f4f}, {0x11fff, 0x11fff}, {0x12ff1, 0x12ff2}, {0x13440, 0x13440}, {0x13447, 0x13455},
	{0x16e97, 0x16e9a}, {0x16f4f, 0x16f4f}, {0x16fe2, 0x16fe2}, {0x16fe4, 0x16fe4}, {0x1cf00, 0x1cf2d},
	{0x1cf30, 0x1cf46}, {0x1e000, 0x1e006}, {0x1e008, 0x1e018}, {0x1e01b, 0x1e021}, {0x1e023, 0x1e024},
	{0x1e026, 0x1e02a}, {0x1e08f, 0x1e08f}, {0x1e130, 0x1e136}, {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef},
	{0x1e4ec, 0x1e4ef}, {0x1e944, 0x1e94a}, {0x1e95e, 0x1e95f},
};

static const int32_t hf_lower[][3] = {
	{0x1c89, 0x1c89, 1}, {0xa7cb, 0xa7cb, -42343}, {0xa7cc, 0xa7cc, 1}, {0xa7ce, 0xa7ce, 1},
	{0xa7d2, 0xa7d2, 1}, {0xa7d4, 0xa7d4, 1}, {0xa7da, 0xa7da, 1}, {0xa7dc, 0xa7dc, -42561},
	{0x10d50, 0x10d65, 32}, {0x16ea0, 0x16eb8, 27},
};

static int in_ranges(const int32_t (*r)[2], size_t n, int32_t c)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c < r[mid][0])
			hi = mid;
		else if (c > r[mid][1])
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

#define NRANGES (sizeof hf_unassigned / sizeof hf_unassigned[0])

/* Rust's char::is_whitespace: Unicode White_Space. */
int wordpiece_is_whitespace(int32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
	       c == 0x3000;
}

/* HF's is_control: Cc, Cf and Co, but not \t \n \r. HF takes Cf from the
 * unicode_categories crate's tables (Unicode 8); the format characters
 * assigned since are not controls there, so not here either. */
int wordpiece_is_control(int32_t c)
{
	if (c == '\t' || c == '\n' || c == '\r')
		return 0;
	if (c < 0x80)
		return c < 0x20 || c == 0x7f;
	utf8proc_category_t k = utf8proc_category(c);
	if (k == UTF8PROC_CATEGORY_CF)
		return !(c == 0x08e2 || c == 0x0890 || c == 0x0891 || c == 0x110cd || (c >= 0x13430 && c <= 0x1343f));
	return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CO;
}

/* ASCII punctuation (!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~) or a P* category. */
int wordpiece_is_punct(int32_t c)
{
	if (c < 0x80)
		return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
	if (c == 0x166d || c == 0x111c9)
		return 1;
	utf8proc_category_t k = utf8proc_category(c);
	return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO && !in_ranges(hf_unassigned, NRANGES, c);
}

/* The CJK Unified Ideographs blocks BERT spaces out. */
int wordpiece_is_cjk(int32_t c)
{
	return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
	       (c >= 0x2a700 && c <= 0x2b73f) || (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
	       (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

static int is_mn(int32_t c)
{
	if (c == 0x1734)
		return 1;
	return utf8proc_category(c) == UTF8PROC_CATEGORY_MN && !in_ranges(hf_unassigned, NRANGES, c);
}


static void put_cp(buf *out, int32_t c)
{
	uint8_t u[4];
	utf8proc_ssize_t l = utf8proc_encode_char(c, u);
	buf_add(out, u, (size_t)l);
}

/* ---- the tokenizer ----------------------------------------------------------- */

/* A token -> id table over the vocabulary's bytes (open addressing). */
typedef struct wtab {
	uint32_t *slots; /* id + 1 */
	size_t cap;
} wtab;

typedef struct added {
	uint32_t id;
	uint32_t len;
	const char *s; /* into the vocabulary blob */
} added;

/* A template piece: a special token's ids, or sequence A or B. */
typedef struct tpiece {
	int kind; /* 0 special, 1 A, 2 B */
	uint8_t type;
	uint32_t first, count; /* special: ids tmpl_ids[first .. first+count) */
} tpiece;

struct wordpiece {
	buf blob;          /* token bytes */
	uint64_t *off;     /* id -> offset in blob */
	uint32_t *len;
	size_t n;
	wtab whole;        /* every token */
	wtab cont;         /* tokens starting with the prefix, keyed without it */
	size_t max_whole, max_cont; /* longest of each, in bytes */
	char prefix[32];
	size_t prefix_len;
	size_t max_chars;  /* max_input_chars_per_word */
	int64_t unk;
	int has_norm;      /* a BertNormalizer (0: no normalizer) */
	wordpiece_norm norm;
	int strip;         /* resolved strip_accents */
	added *add;        /* special tokens matched in raw text, longest first */
	size_t nadd;
	uint8_t add_first[256];
	int has_template;
	tpiece *single, *pair;
	size_t nsingle, npair;
	uint32_t *tmpl_ids;
	size_t ntmpl_ids;
	wordpiece_special sp;
	int8_t ascii[128]; /* normalized ASCII byte, or -1: dropped */
};

static size_t tab_slot(const char *p, size_t n, size_t cap)
{
	return (size_t)XXH3_64bits(p, n) & (cap - 1);
}

static int64_t tab_get(const wordpiece *w, const wtab *t, size_t skip, const char *p, size_t n)
{
	size_t h = tab_slot(p, n, t->cap);
	while (t->slots[h]) {
		uint32_t id = t->slots[h] - 1;
		if (w->len[id] == n + skip && !memcmp(w->blob.p + w->off[id] + skip, p, n))
			return id;
		h = (h + 1) & (t->cap - 1);
	}
	return -1;
}

static void tab_put(const wordpiece *w, wtab *t, size_t skip, uint32_t id)
{
	size_t h = tab_slot(w->blob.p + w->off[id] + skip, w->len[id] - skip, t->cap);
	while (t->slots[h])
		h = (h + 1) & (t->cap - 1);
	t->slots[h] = id + 1;
}

wordpiece_norm wordpiece_norm_default(void)
{
	wordpiece_norm n = {1, 1, -1, 1};
	return n;
}

static wordpiece *wp_new(void)
{
	wordpiece *w = xcalloc(1, sizeof *w);
	buf_init(&w->blob);
	memcpy(w->prefix, "##", 3);
	w->prefix_len = 2;
	w->max_chars = 100;
	w->unk = -1;
	w->sp = (wordpiece_special){-1, -1, -1, -1, -1};
	return w;
}

void wordpiece_free(wordpiece *w)
{
	if (!w)
		return;
	buf_free(&w->blob);
	free(w->off);
	free(w->len);
	free(w->whole.slots);
	free(w->cont.slots);
	free(w->add);
	free(w->single);
	free(w->pair);
	free(w->tmpl_ids);
	free(w);
}

static void add_token(wordpiece *w, size_t cap_tokens, const char *p, size_t n)
{
	if (!w->off) {
		w->off = xmalloc((cap_tokens + 1) * sizeof *w->off);
		w->len = xmalloc((cap_tokens + 1) * sizeof *w->len);
	}
	w->off[w->n] = w->blob.len;
	w->len[w->n] = (uint32_t)n;
	buf_add(&w->blob, p, n);
	w->n++;
}

/* The tables, after the tokens are in: -1 with the first repeated id. */
static int64_t build_tables(wordpiece *w)
{
	size_t cap = 1024;
	while (cap < 2 * w->n)
		cap *= 2;
	w->whole.cap = w->cont.cap = cap;
	w->whole.slots = xcalloc(cap, sizeof *w->whole.slots);
	w->cont.slots = xcalloc(cap, sizeof *w->cont.slots);
	w->max_whole = w->max_cont = 0;
	for (size_t id = 0; id < w->n; id++) {
		const char *p = w->blob.p + w->off[id];
		if (tab_get(w, &w->whole, 0, p, w->len[id]) >= 0)
			return (int64_t)id;
		tab_put(w, &w->whole, 0, (uint32_t)id);
		if (w->len[id] > w->max_whole)
			w->max_whole = w->len[id];
		if (w->prefix_len && w->len[id] >= w->prefix_len && !memcmp(p, w->prefix, w->prefix_len)) {
			tab_put(w, &w->cont, w->prefix_len, (uint32_t)id);
			if (w->len[id] - w->prefix_len > w->max_cont)
				w->max_cont = w->len[id] - w->prefix_len;
		}
	}
	return -1;
}

static void set_norm(wordpiece *w, int has, const wordpiece_norm *n)
{
	w->has_norm = has;
	w->norm = n ? *n : wordpiece_norm_default();
	if (!has)
		w->norm = (wordpiece_norm){0, 0, 0, 0};
	w->strip = w->norm.strip_accents < 0 ? w->norm.lowercase : w->norm.strip_accents;
	for (int c = 0; c < 128; c++) {
		int v = c;
		if (w->norm.clean_text) {
			if (c == 0 || wordpiece_is_control(c))
				v = -1;
			else if (wordpiece_is_whitespace(c))
				v = ' ';
		}
		if (v >= 'A' && v <= 'Z' && w->norm.lowercase)
			v += 32;
		w->ascii[c] = (int8_t)v;
	}
}

static int by_len_desc(const void *x, const void *y)
{
	const added *a = x, *b = y;
	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

static void add_special(wordpiece *w, uint32_t id)
{
	for (size_t i = 0; i < w->nadd; i++)
		if (w->add[i].id == id)
			return;
	w->add = xrealloc(w->add, (w->nadd + 1) * sizeof *w->add);
	w->add[w->nadd++] = (added){id, w->len[id], NULL};
}

/* After the tokens and added tokens: pointers, order, first bytes. */
static void finish_added(wordpiece *w)
{
	for (size_t i = 0; i < w->nadd; i++)
		w->add[i].s = w->blob.p + w->off[w->add[i].id];
	if (w->nadd)
		qsort(w->add, w->nadd, sizeof *w->add, by_len_desc);
	memset(w->add_first, 0, sizeof w->add_first);
	for (size_t i = 0; i < w->nadd; i++)
		if (w->add[i].len)
			w->add_first[(uint8_t)w->add[i].s[0]] = 1;
}

static int64_t find(const wordpiece *w, const char *s)
{
	return tab_get(w, &w->whole, 0, s, strlen(s));
}

static void find_specials(wordpiece *w)
{
	w->sp.pad = find(w, "[PAD]");
	w->sp.unk = w->unk;
	w->sp.cls = find(w, "[CLS]");
	w->sp.sep = find(w, "[SEP]");
	w->sp.mask = find(w, "[MASK]");
}

/* BERT's template: [CLS] $A [SEP] and [CLS] $A [SEP] $B:1 [SEP]:1. */
static void bert_template(wordpiece *w, uint32_t cls, uint32_t sep)
{
	w->has_template = 1;
	w->tmpl_ids = xmalloc(2 * sizeof *w->tmpl_ids);
	w->tmpl_ids[0] = cls;
	w->tmpl_ids[1] = sep;
	w->ntmpl_ids = 2;
	w->single = xmalloc(3 * sizeof *w->single);
	w->single[0] = (tpiece){0, 0, 0, 1};
	w->single[1] = (tpiece){1, 0, 0, 0};
	w->single[2] = (tpiece){0, 0, 1, 1};
	w->nsingle = 3;
	w->pair = xmalloc(5 * sizeof *w->pair);
	w->pair[0] = (tpiece){0, 0, 0, 1};
	w->pair[1] = (tpiece){1, 0, 0, 0};
	w->pair[2] = (tpiece){0, 0, 1, 1};
	w->pair[3] = (tpiece){2, 1, 0, 0};
	w->pair[4] = (tpiece){0, 1, 1, 1};
	w->npair = 5;
}

static int done(wordpiece *w, int rc, wordpiece **out)
{
	if (rc != 0) {
		wordpiece_free(w);
		return -1;
	}
	*out = w;
	return 0;
}

/* Specials of a vocab.txt or a trained vocabulary: [UNK] [CLS] [SEP]
 * needed; the five BERT ones become added tokens. */
static int vocab_specials(herr *e, wordpiece *w, const char *what)
{
	w->unk = find(w, "[UNK]");
	find_specials(w);
	const char *miss = w->unk < 0 ? "[UNK]" : w->sp.cls < 0 ? "[CLS]" : w->sp.sep < 0 ? "[SEP]" : NULL;
	if (miss) {
		herr_set(e, "%s: no %s token: expected a BERT vocabulary with [UNK], [CLS] and [SEP] (and [PAD], [MASK])",
		         what, miss);
		return herr_hint(e, "add a line %s (BERT's vocab.txt has [PAD] [UNK] [CLS] [SEP] [MASK] among its first lines)",
		                 miss);
	}
	int64_t s[5] = {w->sp.pad, w->sp.unk, w->sp.cls, w->sp.sep, w->sp.mask};
	for (int i = 0; i < 5; i++)
		if (s[i] >= 0)
			add_special(w, (uint32_t)s[i]);
	finish_added(w);
	bert_template(w, (uint32_t)w->sp.cls, (uint32_t)w->sp.sep);
	return 0;
}

int wordpiece_load_vocab_mem(herr *e, wordpiece **out, const char *p, size_t n, const char *what,
                             const wordpiece_norm *norm)
{
	*out = NULL;
	wordpiece *w = wp_new();
	set_norm(w, 1, norm);
	size_t lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += p[i] == '\n';
	const char *q = p, *end = p + n;
	int rc = 0;
	size_t lineno = 0;
	size_t *line_of = xmalloc((lines + 2) * sizeof *line_of);
	while (q < end && rc == 0) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		size_t len = nl ? (size_t)(nl - q) : (size_t)(end - q);
		lineno++;
		/* trailing whitespace trimmed (Rust's trim_end) */
		while (len) {
			size_t k = len, l;
			while (k > 0 && ((unsigned char)q[k - 1] & 0xc0) == 0x80)
				k--;
			if (k == 0)
				break;
			int32_t c = utf8_cp_at(q, len, k - 1, &l);
			if (c < 0 || !wordpiece_is_whitespace(c))
				break;
			len = k - 1;
		}
		if (len == 0) {
			/* only blank lines may follow at the end */
			const char *r = nl ? nl + 1 : end;
			int rest = 0;
			for (; r < end; r++)
				if (*r != '\n' && *r != '\r' && *r != ' ' && *r != '\t')
					rest = 1;
			if (rest) {
				herr_set(e, "%s:%zu: empty line: expected one token per line (the line number is the id)", what,
				         lineno);
				rc = herr_hint(e, "remove the line or put a token there; every later token's id depends on it");
			}
			break;
		}
		line_of[w->n] = lineno;
		add_token(w, lines + 1, q, len);
		q = nl ? nl + 1 : end;
	}
	if (rc == 0 && w->n == 0)
		rc = herr_set(e, "%s: no tokens: expected a vocab.txt, one token per line", what);
	if (rc == 0) {
		int64_t dup = build_tables(w);
		if (dup >= 0) {
			int64_t first = tab_get(w, &w->whole, 0, w->blob.p + w->off[dup], w->len[dup]);
			herr_set(e, "%s:%zu: token \"%.*s\" repeats line %zu: expected each token once", what, line_of[dup],
			         (int)w->len[dup], w->blob.p + w->off[dup], line_of[first]);
			rc = herr_hint(e, "a vocab.txt's ids are its line numbers; remove the repeated line");
		}
	}
	free(line_of);
	if (rc == 0)
		rc = vocab_specials(e, w, what);
	return done(w, rc, out);
}

int wordpiece_load_vocab(herr *e, wordpiece **out, const char *path, const wordpiece_norm *norm)
{
	*out = NULL;
	buf b;
	buf_init(&b);
	int rc = fs_read(e, path, &b);
	if (rc == 0)
		rc = wordpiece_load_vocab_mem(e, out, b.p ? b.p : "", b.len, path, norm);
	buf_free(&b);
	return rc;
}

wordpiece *wordpiece_new_normalizer(const wordpiece_norm *norm)
{
	wordpiece *w = wp_new();
	set_norm(w, 1, norm);
	return w;
}

int wordpiece_from_tokens(herr *e, wordpiece **out, const char *const *tok, const size_t *len, size_t n,
                          const wordpiece_norm *norm)
{
	*out = NULL;
	wordpiece *w = wp_new();
	set_norm(w, 1, norm);
	for (size_t i = 0; i < n; i++)
		add_token(w, n, tok[i], len[i]);
	int rc = 0;
	int64_t dup = build_tables(w);
	if (dup >= 0)
		rc = herr_set(e, "trained vocabulary: token \"%.*s\" twice", (int)w->len[dup], w->blob.p + w->off[dup]);
	if (rc == 0)
		rc = vocab_specials(e, w, "trained vocabulary");
	return done(w, rc, out);
}

#define MEMBER(o, name) json_member(o, name, sizeof name - 1)

static int jis(const jnode *j, const char *s)
{
	return j && j->t == J_STR && j->len == strlen(s) && !memcmp(j->s, s, j->len);
}

static int jbool(const jnode *j, int *v)
{
	if (!j || (j->t != J_TRUE && j->t != J_FALSE))
		return -1;
	*v = j->t == J_TRUE;
	return 0;
}

static int key_error(herr *e, const char *what, const char *key, const char *expected, const char *hint)
{
	herr_set(e, "%s: %s: expected %s", what, key, expected);
	return hint ? herr_hint(e, "%s", hint) : -1;
}

static int load_normalizer(herr *e, wordpiece *w, const jnode *nz, const char *what)
{
	if (!nz || nz->t == J_NULL) {
		set_norm(w, 0, NULL);
		return 0;
	}
	if (!jis(MEMBER(nz, "type"), "BertNormalizer"))
		return key_error(e, what, "normalizer.type", "\"BertNormalizer\" or a null normalizer",
		                 "hone reads BERT's tokenizers (BertNormalizer, BertPreTokenizer, WordPiece)");
	wordpiece_norm n = wordpiece_norm_default();
	const jnode *sa = MEMBER(nz, "strip_accents");
	if ((MEMBER(nz, "clean_text") && jbool(MEMBER(nz, "clean_text"), &n.clean_text)) ||
	    (MEMBER(nz, "handle_chinese_chars") && jbool(MEMBER(nz, "handle_chinese_chars"), &n.handle_chinese_chars)) ||
	    (MEMBER(nz, "lowercase") && jbool(MEMBER(nz, "lowercase"), &n.lowercase)))
		return key_error(e, what, "normalizer", "clean_text, handle_chinese_chars and lowercase as true or false", NULL);
	if (sa && sa->t != J_NULL && jbool(sa, &n.strip_accents))
		return key_error(e, what, "normalizer.strip_accents", "true, false or null (null: as lowercase)", NULL);
	set_norm(w, 1, &n);
	return 0;
}

/* Template pieces from TemplateProcessing's "single"/"pair" lists. */
static int load_pieces(herr *e, wordpiece *w, const jnode *list, const jnode *specials, const char *what,
                       const char *key, tpiece **out, size_t *nout)
{
	if (!list || list->t != J_ARR)
		return key_error(e, what, key, "a list of {\"SpecialToken\": ...} and {\"Sequence\": ...}", NULL);
	*out = xcalloc(list->n + 1, sizeof **out);
	*nout = 0;
	size_t k = 0;
	for (const jnode *it = list->kid; it; it = it->next, k++) {
		const jnode *st = MEMBER(it, "SpecialToken"), *sq = MEMBER(it, "Sequence");
		const jnode *body = st ? st : sq;
		const jnode *id = body ? MEMBER(body, "id") : NULL, *ty = body ? MEMBER(body, "type_id") : NULL;
		long long type = 0;
		char kk[64];
		snprintf(kk, sizeof kk, "%s[%zu]", key, k);
		if (!body || !id || id->t != J_STR || (ty && json_int(ty, 0, 255, &type) != 0))
			return key_error(e, what, kk, "{\"SpecialToken\": {\"id\": ..., \"type_id\": N}} or {\"Sequence\": {\"id\": \"A\", \"type_id\": N}}", NULL);
		tpiece p = {0, (uint8_t)type, 0, 0};
		if (sq) {
			if (jis(id, "A"))
				p.kind = 1;
			else if (jis(id, "B"))
				p.kind = 2;
			else
				return key_error(e, what, kk, "a Sequence id \"A\" or \"B\"", NULL);
		} else {
			const jnode *def = specials ? json_member(specials, id->s, id->len) : NULL;
			const jnode *ids = def ? MEMBER(def, "ids") : NULL;
			if (!ids || ids->t != J_ARR)
				return key_error(e, what, kk, "a special token named in post_processor.special_tokens with its \"ids\"",
				                 NULL);
			p.first = (uint32_t)w->ntmpl_ids;
			for (const jnode *v = ids->kid; v; v = v->next) {
				long long x;
				if (json_int(v, 0, (long long)w->n - 1, &x) != 0)
					return key_error(e, what, "post_processor.special_tokens", "ids of the vocabulary", NULL);
				w->tmpl_ids = xrealloc(w->tmpl_ids, (w->ntmpl_ids + 1) * sizeof *w->tmpl_ids);
				w->tmpl_ids[w->ntmpl_ids++] = (uint32_t)x;
			}
			p.count = (uint32_t)(w->ntmpl_ids - p.first);
		}
		(*out)[(*nout)++] = p;
	}
	return 0;
}

static int load_post(herr *e, wordpiece *w, const jnode *pp, const char *what)
{
	if (!pp || pp->t == J_NULL)
		return 0;
	const jnode *ty = MEMBER(pp, "type");
	if (jis(ty, "BertProcessing")) {
		const jnode *sep = MEMBER(pp, "sep"), *cls = MEMBER(pp, "cls");
		long long si, ci;
		if (!sep || !cls || sep->t != J_ARR || cls->t != J_ARR || sep->n != 2 || cls->n != 2 ||
		    json_int(sep->kid->next, 0, (long long)w->n - 1, &si) || json_int(cls->kid->next, 0, (long long)w->n - 1, &ci))
			return key_error(e, what, "post_processor", "BertProcessing's \"sep\" and \"cls\" as [token, id] of the vocabulary",
			                 NULL);
		bert_template(w, (uint32_t)ci, (uint32_t)si);
		return 0;
	}
	if (!jis(ty, "TemplateProcessing"))
		return key_error(e, what, "post_processor.type", "\"TemplateProcessing\", \"BertProcessing\" or null",
		                 "hone adds BERT's [CLS] ... [SEP] template; other post-processors are not supported");
	const jnode *specials = MEMBER(pp, "special_tokens");
	if (load_pieces(e, w, MEMBER(pp, "single"), specials, what, "post_processor.single", &w->single, &w->nsingle) ||
	    load_pieces(e, w, MEMBER(pp, "pair"), specials, what, "post_processor.pair", &w->pair, &w->npair))
		return -1;
	w->has_template = 1;
	return 0;
}

int wordpiece_load_hf(herr *e, wordpiece **out, const char *json, size_t n, const char *what)
{
	*out = NULL;
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, json, n, &je);
	wordpiece *w = wp_new();
	int rc = 0;
	const jnode *model = root && root->t == J_OBJ ? MEMBER(root, "model") : NULL;
	const jnode *vocab = model ? MEMBER(model, "vocab") : NULL;
	const jnode *pre = root && root->t == J_OBJ ? MEMBER(root, "pre_tokenizer") : NULL;
	if (!root) {
		size_t line, col;
		json_line_col(json, je.off, &line, &col);
		rc = herr_set(e, "%s:%zu:%zu: %s", what, line, col, je.what);
	} else if (root->t != J_OBJ || !model || model->t != J_OBJ) {
		rc = key_error(e, what, "model", "an object (a Hugging Face tokenizer.json)", NULL);
	} else if (!jis(MEMBER(model, "type"), "WordPiece")) {
		rc = key_error(e, what, "model.type", "\"WordPiece\"", "byte-level BPE tokenizer.json files load as BPE");
	} else if (!vocab || vocab->t != J_OBJ || vocab->n == 0) {
		rc = key_error(e, what, "model.vocab", "an object of token -> id", NULL);
	} else if (pre && pre->t != J_NULL && !jis(MEMBER(pre, "type"), "BertPreTokenizer")) {
		rc = key_error(e, what, "pre_tokenizer.type", "\"BertPreTokenizer\"",
		               "hone reads BERT's tokenizers (BertNormalizer, BertPreTokenizer, WordPiece)");
	} else if (!pre || pre->t == J_NULL) {
		rc = key_error(e, what, "pre_tokenizer", "{\"type\": \"BertPreTokenizer\"}", NULL);
	}
	if (rc == 0) {
		const jnode *pf = MEMBER(model, "continuing_subword_prefix"), *mc = MEMBER(model, "max_input_chars_per_word");
		long long m = 100;
		if (pf && (pf->t != J_STR || pf->len >= sizeof w->prefix))
			rc = key_error(e, what, "model.continuing_subword_prefix", "a short string such as \"##\"", NULL);
		else if (pf) {
			memcpy(w->prefix, pf->s, pf->len);
			w->prefix[pf->len] = 0;
			w->prefix_len = pf->len;
		}
		if (rc == 0 && mc && json_int(mc, 1, 1 << 30, &m) != 0)
			rc = key_error(e, what, "model.max_input_chars_per_word", "a positive integer", NULL);
		w->max_chars = (size_t)m;
	}
	if (rc == 0)
		rc = load_normalizer(e, w, MEMBER(root, "normalizer"), what);
	if (rc == 0) {
		/* tokens by id */
		size_t nv = vocab->n;
		const jnode **by = xcalloc(nv, sizeof *by);
		for (const jnode *k = vocab->kid; k && rc == 0; k = k->next) {
			long long id;
			if (json_int(k, 0, (long long)nv - 1, &id) != 0 || by[id]) {
				herr_set(e, "%s: model.vocab: token \"%.*s\": expected a unique id in 0..%zu", what, (int)k->klen,
				         k->key, nv - 1);
				rc = herr_hint(e, "ids must be 0..N-1, each once");
			} else {
				by[id] = k;
			}
		}
		for (size_t id = 0; rc == 0 && id < nv; id++)
			add_token(w, nv, by[id]->key, by[id]->klen);
		free(by);
		if (rc == 0 && build_tables(w) >= 0)
			rc = key_error(e, what, "model.vocab", "each token once", NULL);
	}
	if (rc == 0) {
		const jnode *unk = MEMBER(model, "unk_token");
		w->unk = unk && unk->t == J_STR ? tab_get(w, &w->whole, 0, unk->s, unk->len) : -1;
		if (w->unk < 0)
			rc = key_error(e, what, "model.unk_token", "a token of the vocabulary (\"[UNK]\")",
			               "WordPiece gives the unknown token to words it cannot split");
	}
	const jnode *added_l = rc == 0 ? MEMBER(root, "added_tokens") : NULL;
	size_t k = 0;
	for (const jnode *t = added_l && added_l->t == J_ARR ? added_l->kid : NULL; t && rc == 0; t = t->next, k++) {
		const jnode *ct = MEMBER(t, "content");
		long long id;
		int sw = 0, ls = 0, rs = 0, nm = 0;
		char kk[64];
		snprintf(kk, sizeof kk, "added_tokens[%zu]", k);
		if (!ct || ct->t != J_STR || json_int(MEMBER(t, "id"), 0, (long long)w->n - 1, &id) != 0 ||
		    w->len[id] != ct->len || memcmp(w->blob.p + w->off[id], ct->s, ct->len)) {
			rc = key_error(e, what, kk, "an \"id\" of the vocabulary whose token is its \"content\"", NULL);
			break;
		}
		jbool(MEMBER(t, "single_word"), &sw);
		jbool(MEMBER(t, "lstrip"), &ls);
		jbool(MEMBER(t, "rstrip"), &rs);
		jbool(MEMBER(t, "normalized"), &nm);
		if (sw || ls || rs || nm) {
			rc = key_error(e, what, kk, "single_word, lstrip, rstrip and normalized false (as in BERT's tokenizers)",
			               "hone matches added tokens in the raw text only");
			break;
		}
		add_special(w, (uint32_t)id);
	}
	if (rc == 0) {
		finish_added(w);
		find_specials(w);
		rc = load_post(e, w, MEMBER(root, "post_processor"), what);
	}
	json_arena_free(a);
	return done(w, rc, out);
}

int wordpiece_load_dir(herr *e, wordpiece **out, const char *dir)
{
	char *p = path_join(dir, "tokenizer.json");
	buf b;
	buf_init(&b);
	int rc = fs_read(e, p, &b);
	if (rc == 0)
		rc = wordpiece_load_hf(e, out, b.p, b.len, p);
	buf_free(&b);
	free(p);
	return rc;
}

int wordpiece_sniff(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	if (i == n || memchr(p, 0, n < 4096 ? n : 4096))
		return 0; /* empty, or binary */
	if (p[i] != '{')
		return 3;
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, p, n, &je);
	const jnode *model = root && root->t == J_OBJ ? MEMBER(root, "model") : NULL;
	int r = model && jis(MEMBER(model, "type"), "WordPiece") ? 1 : 2;
	json_arena_free(a);
	return r;
}

void wordpiece_vocab_txt(const wordpiece *w, buf *out)
{
	for (size_t id = 0; id < w->n; id++) {
		buf_add(out, w->blob.p + w->off[id], w->len[id]);
		buf_addc(out, '\n');
	}
}

static void json_piece(buf *out, const wordpiece *w, const tpiece *p)
{
	if (p->kind) {
		buf_printf(out, "{\"Sequence\": {\"id\": \"%s\", \"type_id\": %d}}", p->kind == 1 ? "A" : "B", p->type);
		return;
	}
	uint32_t id = w->tmpl_ids[p->first];
	buf_adds(out, "{\"SpecialToken\": {\"id\": ");
	buf_json_strn(out, w->blob.p + w->off[id], w->len[id]);
	buf_printf(out, ", \"type_id\": %d}}", p->type);
}

void wordpiece_hf_json(const wordpiece *w, buf *out)
{
	buf_adds(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
	/* in id order, as HF writes them */
	uint32_t *ids = xmalloc((w->nadd + 1) * sizeof *ids);
	for (size_t i = 0; i < w->nadd; i++)
		ids[i] = w->add[i].id;
	for (size_t i = 1; i < w->nadd; i++)
		for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
			uint32_t t = ids[j];
			ids[j] = ids[j - 1];
			ids[j - 1] = t;
		}
	for (size_t i = 0; i < w->nadd; i++) {
		buf_printf(out, "%s\n    {\"id\": %u, \"content\": ", i ? "," : "", ids[i]);
		buf_json_strn(out, w->blob.p + w->off[ids[i]], w->len[ids[i]]);
		buf_adds(out, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
		         "\"special\": true}");
	}
	free(ids);
	buf_adds(out, w->nadd ? "\n  ],\n" : "],\n");
	if (w->has_norm) {
		const char *sa = w->norm.strip_accents < 0 ? "null" : w->norm.strip_accents ? "true" : "false";
		buf_printf(out, "  \"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": %s, \"handle_chinese_chars\": %s, "
		           "\"strip_accents\": %s, \"lowercase\": %s},\n", w->norm.clean_text ? "true" : "false",
		           w->norm.handle_chinese_chars ? "true" : "false", sa, w->norm.lowercase ? "true" : "false");
	} else {
		buf_adds(out, "  \"normalizer\": null,\n");
	}
	buf_adds(out, "  \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},\n");
	if (w->has_template) {
		buf_adds(out, "  \"post_processor\": {\"type\": \"TemplateProcessing\",\n    \"single\": [");
		for (size_t i = 0; i < w->nsingle; i++) {
			buf_adds(out, i ? ", " : "");
			json_piece(out, w, &w->single[i]);
		}
		buf_adds(out, "],\n    \"pair\": [");
		for (size_t i = 0; i < w->npair; i++) {
			buf_adds(out, i ? ", " : "");
			json_piece(out, w, &w->pair[i]);
		}
		buf_adds(out, "],\n    \"special_tokens\": {");
		/* one entry per distinct special token of the templates */
		int first = 1;
		for (size_t i = 0; i < w->nsingle + w->npair; i++) {
			const tpiece *p = i < w->nsingle ? &w->single[i] : &w->pair[i - w->nsingle];
			if (p->kind)
				continue;
			uint32_t id = w->tmpl_ids[p->first];
			int seen = 0;
			for (size_t j = 0; j < i; j++) {
				const tpiece *q = j < w->nsingle ? &w->single[j] : &w->pair[j - w->nsingle];
				if (!q->kind && w->tmpl_ids[q->first] == id)
					seen = 1;
			}
			if (seen)
				continue;
			buf_adds(out, first ? "\n      " : ",\n      ");
			first = 0;
			const char *s = w->blob.p + w->off[id];
			buf_json_strn(out, s, w->len[id]);
			buf_adds(out, ": {\"id\": ");
			buf_json_strn(out, s, w->len[id]);
			buf_adds(out, ", \"ids\": [");
			for (uint32_t k = 0; k < p->count; k++)
				buf_printf(out, "%s%u", k ? ", " : "", w->tmpl_ids[p->first + k]);
			buf_adds(out, "], \"tokens\": [");
			for (uint32_t k = 0; k < p->count; k++) {
				uint32_t t = w->tmpl_ids[p->first + k];
				buf_adds(out, k ? ", " : "");
				buf_json_strn(out, w->blob.p + w->off[t], w->len[t]);
			}
			buf_adds(out, "]}");
		}
		buf_adds(out, "\n    }\n  },\n");
	} else {
		buf_adds(out, "  \"post_processor\": null,\n");
	}
	buf_adds(out, "  \"decoder\": {\"type\": \"WordPiece\", \"prefix\": ");
	buf_json_strn(out, w->prefix, w->prefix_len);
	buf_adds(out, ", \"cleanup\": true},\n  \"model\": {\"type\": \"WordPiece\", \"unk_token\": ");
	buf_json_strn(out, w->blob.p + w->off[w->unk], w->len[w->unk]);
	buf_adds(out, ", \"continuing_subword_prefix\": ");
	buf_json_strn(out, w->prefix, w->prefix_len);
	buf_printf(out, ", \"max_input_chars_per_word\": %zu,\n    \"vocab\": {", w->max_chars);
	for (size_t id = 0; id < w->n; id++) {
		buf_adds(out, id ? ",\n      " : "\n      ");
		buf_json_strn(out, w->blob.p + w->off[id], w->len[id]);
		buf_printf(out, ": %zu", id);
	}
	buf_adds(out, "\n    }\n  }\n}\n");
}

size_t wordpiece_vocab_size(const wordpiece *w) { return w->n; }

int64_t wordpiece_token_id(const wordpiece *w, const char *s, size_t n) { return tab_get(w, &w->whole, 0, s, n); }

const char *wordpiece_token(const wordpiece *w, uint32_t id, size_t *len)
{
	if (id >= w->n)
		return NULL;
	*len = w->len[id];
	return w->blob.p + w->off[id];
}

wordpiece_special wordpiece_specials(const wordpiece *w) { return w->sp; }

wordpiece_norm wordpiece_normalizer(const wordpiece *w) { return w->norm; }

/* ---- normalizing -------------------------------------------------------------- */

/* Rust's char::to_lowercase: utf8proc's simple mapping, and U+0130 (the
 * one code point whose lowercase is two). */
static void put_lower(buf *out, int32_t c, int lower)
{
	if (!lower) {
		put_cp(out, c);
	} else if (c == 0x130) {
		buf_adds(out, "i\xcc\x87");
	} else {
		for (size_t i = 0; c >= 0x1c89 && i < sizeof hf_lower / sizeof hf_lower[0]; i++)
			if (c >= hf_lower[i][0] && c <= hf_lower[i][1]) {
				put_cp(out, c + hf_lower[i][2]);
				return;
			}
		put_cp(out, utf8proc_tolower(c));
	}
}

/* Decomposed code points waiting for canonical ordering (NFD) before the
 * nonspacing marks are dropped. */
typedef struct pend {
	int32_t *cp;
	size_t n, cap;
} pend;

static void pend_flush(pend *p, buf *out, int lower)
{
	/* canonical ordering: stable sort of each run of non-starters by
	 * combining class */
	for (size_t i = 1; i < p->n; i++) {
		int ci = utf8proc_get_property(p->cp[i])->combining_class;
		if (!ci)
			continue;
		for (size_t j = i; j > 0; j--) {
			int cj = utf8proc_get_property(p->cp[j - 1])->combining_class;
			if (!cj || cj <= ci)
				break;
			int32_t t = p->cp[j];
			p->cp[j] = p->cp[j - 1];
			p->cp[j - 1] = t;
		}
	}
	for (size_t i = 0; i < p->n; i++)
		if (!is_mn(p->cp[i]))
			put_lower(out, p->cp[i], lower);
	p->n = 0;
}

void wordpiece_normalize(const wordpiece *w, const char *s, size_t n, buf *out)
{
	const wordpiece_norm *nm = &w->norm;
	int32_t small[64];
	pend pd = {small, 0, 64};
	buf_reserve(out, n + 16);
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x80) {
			if (pd.n)
				pend_flush(&pd, out, nm->lowercase);
			int8_t v = w->ascii[ch];
			if (v >= 0)
				buf_addc(out, (char)v);
			i++;
			continue;
		}
		size_t l;
		int32_t c = utf8_cp_at(s, n, i, &l);
		i += l;
		if (c < 0)
			c = 0xfffd; /* an invalid byte reads as the replacement character */
		if (nm->clean_text) {
			if (c == 0xfffd || wordpiece_is_control(c))
				continue;
			if (wordpiece_is_whitespace(c)) {
				if (pd.n)
					pend_flush(&pd, out, nm->lowercase);
				buf_addc(out, ' ');
				continue;
			}
		}
		int cjk = nm->handle_chinese_chars && wordpiece_is_cjk(c);
		if (cjk) {
			if (pd.n)
				pend_flush(&pd, out, nm->lowercase);
			buf_addc(out, ' ');
		}
		if (w->strip) {
			int32_t d[32];
			int bc = 0;
			utf8proc_ssize_t k = c == 0x11938 ? -1 : utf8proc_decompose_char(c, d, 32, UTF8PROC_DECOMPOSE, &bc);
			if (k < 0 || k > 32) {
				d[0] = c;
				k = 1;
			}
			if (pd.n + (size_t)k > pd.cap) {
				size_t cap = (pd.n + (size_t)k) * 2;
				int32_t *np = xmalloc(cap * sizeof *np);
				memcpy(np, pd.cp, pd.n * sizeof *np);
				if (pd.cp != small)
					free(pd.cp);
				pd.cp = np;
				pd.cap = cap;
			}
			memcpy(pd.cp + pd.n, d, (size_t)k * sizeof *d);
			pd.n += (size_t)k;
		} else {
			put_lower(out, c, nm->lowercase);
		}
		if (cjk) {
			if (pd.n)
				pend_flush(&pd, out, nm->lowercase);
			buf_addc(out, ' ');
		}
	}
	if (pd.n)
		pend_flush(&pd, out, nm->lowercase);
	if (pd.cp != small)
		free(pd.cp);
}

/* ---- pre-tokenizing ------------------------------------------------------------ */

/* ASCII classes: 0 other, 1 whitespace, 2 punctuation */
static int ascii_class(int c)
{
	if (c == ' ' || (c >= 9 && c <= 13))
		return 1;
	return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) ? 2 : 0;
}

void wordpiece_pretokenize(const char *s, size_t n, void (*fn)(void *ud, const char *p, size_t len), void *ud)
{
	size_t start = 0, i = 0;
	while (i < n) {
		unsigned char ch = (unsigned char)s[i];
		int k;
		size_t l = 1;
		if (ch < 0x80) {
			k = ascii_class(ch);
		} else {
			int32_t c = utf8_cp_at(s, n, i, &l);
			k = c < 0 ? 0 : wordpiece_is_whitespace(c) ? 1 : wordpiece_is_punct(c) ? 2 : 0;
		}
		if (k) {
			if (i > start)
				fn(ud, s + start, i - start);
			if (k == 2)
				fn(ud, s + i, l);
			start = i + l;
		}
		i += l;
	}
	if (n > start)
		fn(ud, s + start, n - start);
}

/* ---- WordPiece -------------------------------------------------------------------- */

#define CACHE_SLOTS 16384
#define CACHE_BYTES 22
#define CACHE_IDS 5

typedef struct cache_entry {
	uint8_t len, nids; /* len 0: empty */
	char bytes[CACHE_BYTES];
	uint32_t ids[CACHE_IDS];
} cache_entry;

struct wordpiece_cache {
	cache_entry e[CACHE_SLOTS];
};

wordpiece_cache *wordpiece_cache_new(void) { return xcalloc(1, sizeof(wordpiece_cache)); }
void wordpiece_cache_free(wordpiece_cache *c) { free(c); }

/* Where each split (a word, or a special token of the raw text) ends in
 * the ids, for HF's early cut (encode_pair). */
typedef struct splits {
	size_t *end;
	uint8_t *added;
	size_t n, cap;
} splits;

typedef struct wctx {
	const wordpiece *w;
	wordpiece_cache *cache;
	uint32_t **ids;
	size_t *nids, *cap;
	splits *sp; /* or NULL */
} wctx;

static void split_end(wctx *c, int added)
{
	splits *sp = c->sp;
	if (!sp)
		return;
	if (sp->n == sp->cap) {
		sp->cap = sp->cap ? sp->cap * 2 : 64;
		sp->end = xrealloc(sp->end, sp->cap * sizeof *sp->end);
		sp->added = xrealloc(sp->added, sp->cap);
	}
	sp->end[sp->n] = *c->nids;
	sp->added[sp->n++] = (uint8_t)added;
}

static void push(wctx *c, uint32_t id)
{
	if (*c->nids == *c->cap) {
		*c->cap = *c->cap ? *c->cap * 2 : 256;
		*c->ids = xrealloc(*c->ids, *c->cap * sizeof **c->ids);
	}
	(*c->ids)[(*c->nids)++] = id;
}

/* Greedy longest match first over one word, as HF's WordPiece: from each
 * position the longest token (with the prefix after the first piece); no
 * match anywhere, or more than max_chars characters: the unknown token. */
static void encode_word(void *ud, const char *p, size_t n)
{
	wctx *c = ud;
	const wordpiece *w = c->w;
	cache_entry *ce = NULL;
	if (c->cache && n <= CACHE_BYTES) {
		ce = &c->cache->e[(size_t)XXH3_64bits(p, n) & (CACHE_SLOTS - 1)];
		if (ce->len == n && !memcmp(ce->bytes, p, n)) {
			for (size_t i = 0; i < ce->nids; i++)
				push(c, ce->ids[i]);
			split_end(c, 0);
			return;
		}
	}
	size_t first = *c->nids;
	size_t chars = 0;
	for (size_t i = 0; i < n; i++)
		chars += ((unsigned char)p[i] & 0xc0) != 0x80;
	int bad = chars > w->max_chars;
	for (size_t start = 0; !bad && start < n;) {
		const wtab *t = start ? &w->cont : &w->whole;
		size_t longest = start ? w->max_cont : w->max_whole;
		size_t end = n - start > longest ? start + longest : n;
		while (end < n && end > start && ((unsigned char)p[end] & 0xc0) == 0x80)
			end--; /* a character boundary */
		int64_t id = -1;
		while (end > start) {
			id = tab_get(w, t, start ? w->prefix_len : 0, p + start, end - start);
			if (id >= 0)
				break;
			end--;
			while (end > start && ((unsigned char)p[end] & 0xc0) == 0x80)
				end--;
		}
		if (id < 0) {
			bad = 1;
			break;
		}
		push(c, (uint32_t)id);
		start = end;
	}
	if (bad) {
		*c->nids = first;
		push(c, (uint32_t)w->unk);
	}
	split_end(c, 0);
	size_t got = *c->nids - first;
	if (ce && got <= CACHE_IDS) {
		ce->len = (uint8_t)n;
		ce->nids = (uint8_t)got;
		memcpy(ce->bytes, p, n);
		memcpy(ce->ids, *c->ids + first, got * sizeof *ce->ids);
	}
}

static void encode_plain(wctx *c, const char *s, size_t n, buf *norm)
{
	norm->len = 0;
	wordpiece_normalize(c->w, s, n, norm);
	wordpiece_pretokenize(norm->p, norm->len, encode_word, c);
}

static void encode_splits(const wordpiece *w, wordpiece_cache *cache, const char *s, size_t n, uint32_t **ids,
                          size_t *nids, size_t *cap, splits *sp)
{
	wctx c = {w, cache, ids, nids, cap, sp};
	buf norm;
	buf_init(&norm);
	size_t from = 0;
	/* special tokens in the raw text: leftmost, then longest */
	for (size_t i = 0; w->nadd && i < n; i++) {
		if (!w->add_first[(uint8_t)s[i]])
			continue;
		for (size_t k = 0; k < w->nadd; k++) {
			const added *a = &w->add[k];
			if (a->len && a->len <= n - i && !memcmp(s + i, a->s, a->len)) {
				if (i > from)
					encode_plain(&c, s + from, i - from, &norm);
				push(&c, a->id);
				split_end(&c, 1);
				from = i + a->len;
				i = from - 1;
				break;
			}
		}
	}
	if (n > from)
		encode_plain(&c, s + from, n - from, &norm);
	buf_free(&norm);
}

void wordpiece_encode(const wordpiece *w, wordpiece_cache *cache, const char *s, size_t n, uint32_t **ids,
                      size_t *nids, size_t *cap)
{
	encode_splits(w, cache, s, n, ids, nids, cap, NULL);
}

/* HF tokenizers (0.23) stops encoding a sequence early when truncation is
 * set: splits are encoded from the kept end until their ids reach max
 * (the whole max_length, special tokens not taken off; a special token of
 * the text counts but does not stop it), and only those ids take part in
 * longest_first. Returns that count. */
static size_t early_cut(const splits *sp, size_t max, int left)
{
	size_t total = 0;
	for (size_t k = 0; k < sp->n; k++) {
		size_t i = left ? sp->n - 1 - k : k;
		size_t start = i ? sp->end[i - 1] : 0;
		total += sp->end[i] - start;
		if (!sp->added[i] && total >= max)
			break;
	}
	return total;
}

void wordpiece_enc_free(wordpiece_enc *x)
{
	free(x->ids);
	free(x->types);
	memset(x, 0, sizeof *x);
}

size_t wordpiece_added(const wordpiece *w, int pair)
{
	if (!w->has_template)
		return 0;
	size_t k = 0;
	const tpiece *t = pair ? w->pair : w->single;
	for (size_t i = 0; i < (pair ? w->npair : w->nsingle); i++)
		if (!t[i].kind)
			k += t[i].count;
	return k;
}

static void enc_push(wordpiece_enc *o, uint32_t id, uint8_t type)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 256;
		o->ids = xrealloc(o->ids, o->cap * sizeof *o->ids);
	}
	if (o->n == o->tcap) {
		o->tcap = o->tcap ? o->tcap * 2 : 256;
		o->types = xrealloc(o->types, o->tcap);
	}
	o->ids[o->n] = id;
	o->types[o->n++] = type;
}

void wordpiece_encode_pair(const wordpiece *w, wordpiece_cache *cache, const char *a, size_t an, const char *b,
                           size_t bn, size_t max_len, int left, int add_special, wordpiece_enc *out)
{
	uint32_t *ia = NULL, *ib = NULL;
	size_t na = 0, ca = 0, nb = 0, cb = 0;
	splits sa = {NULL, NULL, 0, 0}, sb = {NULL, NULL, 0, 0};
	int cut = max_len && b;
	encode_splits(w, cache, a, an, &ia, &na, &ca, cut ? &sa : NULL);
	if (b)
		encode_splits(w, cache, b, bn, &ib, &nb, &cb, cut ? &sb : NULL);
	out->n = 0;
	out->a_len = na;
	out->b_len = nb;
	/* HF's truncation: the template's special tokens counted first */
	size_t n1 = na, n2 = nb;
	if (cut) {
		n1 = early_cut(&sa, max_len, left);
		n2 = early_cut(&sb, max_len, left);
	}
	free(sa.end);
	free(sa.added);
	free(sb.end);
	free(sb.added);
	if (max_len) {
		size_t extra = add_special ? wordpiece_added(w, b != NULL) : 0;
		size_t target = max_len > extra ? max_len - extra : 0;
		if (!b) {
			if (n1 > target)
				n1 = target;
		} else if (n1 + n2 > target) {
			/* longest_first, as HF does it: s the shorter, l the longer;
			 * keep s and give l the rest; if that is too little (or s
			 * alone is too long), half each, the odd id to the longer */
			int swap = n1 > n2;
			size_t s = swap ? n2 : n1, l;
			l = s > target ? s : (s > target - s ? s : target - s);
			if (s + l > target) {
				s = target / 2;
				l = s + target % 2;
			}
			n1 = swap ? l : s;
			n2 = swap ? s : l;
			if (n1 > na)
				n1 = na;
			if (n2 > nb)
				n2 = nb;
		}
	}
	out->a_kept = n1;
	out->b_kept = n2;
	const uint32_t *pa = ia + (left ? na - n1 : 0), *pb = ib ? ib + (left ? nb - n2 : 0) : NULL;
	if (add_special && w->has_template) {
		const tpiece *t = b ? w->pair : w->single;
		size_t nt = b ? w->npair : w->nsingle;
		for (size_t i = 0; i < nt; i++) {
			if (t[i].kind == 0)
				for (uint32_t k = 0; k < t[i].count; k++)
					enc_push(out, w->tmpl_ids[t[i].first + k], t[i].type);
			else if (t[i].kind == 1)
				for (size_t k = 0; k < n1; k++)
					enc_push(out, pa[k], t[i].type);
			else if (b)
				for (size_t k = 0; k < n2; k++)
					enc_push(out, pb[k], t[i].type);
		}
	} else {
		for (size_t k = 0; k < n1; k++)
			enc_push(out, pa[k], 0);
		for (size_t k = 0; k < n2; k++)
			enc_push(out, pb[k], 1);
	}
	if (!out->ids) {
		out->cap = 1;
		out->ids = xmalloc(sizeof *out->ids);
	}
	if (!out->types) {
		out->tcap = 1;
		out->types = xmalloc(1);
	}
	free(ia);
	free(ib);
}

int wordpiece_decode(const wordpiece *w, const uint32_t *ids, size_t n, buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= w->n)
			return -1;
		const char *p = w->blob.p + w->off[ids[i]];
		size_t l = w->len[ids[i]];
		if (w->prefix_len && l >= w->prefix_len && !memcmp(p, w->prefix, w->prefix_len)) {
			p += w->prefix_len;
			l -= w->prefix_len;
		} else if (i) {
			buf_addc(out, ' ');
		}
		buf_add(out, p, l);
	}
	if (!out->p)
		buf_reserve(out, 0);
	return 0;
}
