#include "bpe.h"
#include "text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
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
		int32_t c = utf8_cp_at(s, n, i, &l);
		if (cls(c) != k)
			break;
		i += l;
	}
	return i;
}

void bpe_pretokenize(const char *s, size_t n, int (*fn)(void *ud, const char *p, size_t len), void *ud)
{
	size_t i = 0;
	while (i < n) {
		size_t l;
		int32_t c = utf8_cp_at(s, n, i, &l);
		/* contractions: 's 't 're 've 'm 'll 'd (lowercase only) */
		if (c == '\'' && i + 1 < n) {
			char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
			size_t m = 0;
			if (a == 's' || a == 't' || a == 'm' || a == 'd')
				m = 2;
			else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
				m = 3;
			if (m) {
				if (fn(ud, s + i, m))
					return;
				i += m;
				continue;
			}
		}
		int k = cls(c);
		size_t start = i, from = i;
		if (c == ' ' && i + 1 < n) {
			/* an optional space before letters, numbers or other symbols */
			size_t l2;
			int k2 = cls(utf8_cp_at(s, n, i + 1, &l2));
			if (k2 != C_WS) {
				k = k2;
				from = i + 1;
			}
		}
		if (k != C_WS) {
			size_t end = run(s, n, from, k);
			if (fn(ud, s + start, end - start))
				return;
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
				utf8_cp_at(s, n, p, &l);
				p += l;
			}
			if (last > i)
				end = last;
		}
		if (fn(ud, s + i, end - i))
			return;
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
	buf merges;           /* "A B\n" per merge, as in the files (to write them back) */
	int64_t last_join;    /* id of the last merge's result (loading) */
	/* a tokenizer.json's own pre-tokenizer (Llama 3's, Qwen2's): a Split
	 * by this regex (matches and what lies between them, "Isolated"), then
	 * the byte mapping; NULL: GPT-2's rule. nfc: text NFC-normalized first */
	char *pattern;
	pcre2_code *re;
	int nfc;
	/* SentencePiece-style BPE (Llama 2, Mistral, TinyLlama): tokens are
	 * text with U+2581 for spaces, "▁" before the text, merges ranked by
	 * their place in the list, characters outside the vocabulary as
	 * <0xNN> byte tokens (byte_id) or <unk> */
	int spm, byte_fallback, fuse_unk;
	int64_t unk;
	uint64_t *mkey;       /* (left id + 1) << 32 | right id: open addressing */
	uint32_t *mrank, *mres;
	size_t mcap, nmerge;
	uint32_t *mlist;      /* 2 ids per merge, in rank order */
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
		int32_t c = utf8_cp_at(s, n, i, &l);
		if (c < 0 || c >= 512 || from_cp[c] < 0)
			return -1;
		buf_addc(out, (char)from_cp[c]);
		i += l;
	}
	if (!out->p)
		buf_reserve(out, 0);
	return 0;
}

/* The bytes -> id table of the vocabulary loaded */
static void build_slots(bpe *b)
{
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
}

/* The vocabulary from a JSON object of mapped token -> id. */
static int load_vocab(herr *e, bpe *b, const jnode *root, const char *what, const int16_t from_cp[512], buf *raw)
{
	int rc = 0;
	b->n = root->n;
	b->off = xcalloc(b->n + 1, sizeof *b->off);
	b->len = xcalloc(b->n + 1, sizeof *b->len);
	uint8_t *seen = xcalloc(b->n + 1, 1);
	for (const jnode *k = root->kid; k && rc == 0; k = k->next) {
		char num[32];
		if (k->t != J_NUM || k->len >= sizeof num) {
			rc = herr_set(e, "%s: token \"%.*s\": expected an id number", what, (int)k->klen, k->key);
			break;
		}
		memcpy(num, k->s, k->len);
		num[k->len] = 0;
		char *end;
		long id = strtol(num, &end, 10);
		if (*end || id < 0 || (size_t)id >= b->n || seen[id]) {
			rc = herr_set(e, "%s: token \"%.*s\": id %s out of range 0..%zu or repeated", what, (int)k->klen, k->key,
			              num, b->n - 1);
			break;
		}
		if (unmap(from_cp, k->key, k->klen, raw) != 0) {
			rc = herr_set(e, "%s: token \"%.*s\" is not in GPT-2's byte alphabet", what, (int)k->klen, k->key);
			break;
		}
		seen[id] = 1;
		b->off[id] = b->blob.len;
		b->len[id] = (uint32_t)raw->len;
		buf_add(&b->blob, raw->p, raw->len);
	}
	free(seen);
	if (rc == 0) {
		build_slots(b);
		for (int bt = 0; bt < 256 && rc == 0; bt++) {
			char c = (char)bt;
			int64_t id = lookup(b, &c, 1);
			if (id < 0)
				rc = herr_set(e, "%s: byte %d has no token", what, bt);
			else
				b->byte_id[bt] = (uint32_t)id;
		}
	}
	return rc;
}

/* One merge "A B" (mapped text): both parts and their join must be tokens.
 * Encoding needs only the ranks, which are the ids (a join of two parts is
 * allowed when it is a token); the merges are kept to be written back. */
static int add_merge(bpe *b, const char *x, size_t xn, const char *y, size_t yn, const int16_t from_cp[512], buf *raw,
                     buf *raw2)
{
	if (unmap(from_cp, x, xn, raw) != 0 || unmap(from_cp, y, yn, raw2) != 0)
		return -1;
	int64_t i = lookup(b, raw->p, raw->len), j = lookup(b, raw2->p, raw2->len);
	buf_add(raw, raw2->p, raw2->len);
	int64_t z = lookup(b, raw->p, raw->len);
	if (i < 0 || j < 0 || z < 0)
		return -1;
	/* encoding ranks joins by id: that is the merge order only if every
	 * merge makes a token of a higher id than the one before */
	if (z <= b->last_join)
		return -2;
	b->last_join = z;
	buf_add(&b->merges, x, xn);
	buf_addc(&b->merges, ' ');
	buf_add(&b->merges, y, yn);
	buf_addc(&b->merges, '\n');
	return 0;
}

static bpe *bpe_new(void)
{
	bpe *b = xcalloc(1, sizeof *b);
	buf_init(&b->blob);
	buf_init(&b->merges);
	b->last_join = -1;
	return b;
}

/* A loader's end: the tokenizer to *out, or freed on an error. */
static int bpe_done(bpe *b, int rc, bpe **out)
{
	if (rc != 0) {
		bpe_free(b);
		return -1;
	}
	*out = b;
	return 0;
}

static int merge_order_error(herr *e, const char *what, size_t k)
{
	herr_set(e, "%s: merge %zu makes a token of a lower id than the merge before it", what, k);
	return herr_hint(e, "hone encodes by id order, which must be the merge order (as in GPT-2's files and "
	                 "byte-level BPE tokenizers trained by Hugging Face tokenizers)");
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
	bpe *b = bpe_new();
	int rc = 0;
	if (!root || root->t != J_OBJ) {
		size_t line, col;
		json_line_col(js.p, root ? 0 : je.off, &line, &col);
		rc = herr_set(e, "%s:%zu: not a GPT-2 encoder.json (%s)", encoder_json, line,
		              root ? "expected an object of token -> id" : je.what);
	}
	if (rc == 0)
		rc = load_vocab(e, b, root, encoder_json, from_cp, &raw);
	/* merges: one "A B" per line after the first line "#version: ..." (other
	 * lines may start with "#": "# #" is a merge) */
	if (rc == 0) {
		size_t lineno = 0;
		const char *p = mg.p, *endp = mg.p + mg.len;
		while (p < endp && rc == 0) {
			const char *nl = memchr(p, '\n', (size_t)(endp - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(endp - p);
			lineno++;
			if (len && p[len - 1] == '\r')
				len--;
			if (len && !(lineno == 1 && len >= 8 && !memcmp(p, "#version", 8))) {
				const char *sp = memchr(p, ' ', len);
				int r = sp ? add_merge(b, p, (size_t)(sp - p), sp + 1, len - (size_t)(sp - p) - 1, from_cp, &raw, &raw2) : -1;
				if (r == -2)
					rc = merge_order_error(e, vocab_bpe, lineno);
				else if (r != 0)
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
	return bpe_done(b, rc, out);
}

int bpe_load_dir(herr *e, bpe **out, const char *dir)
{
	char *tj = path_join(dir, "tokenizer.json");
	if (fs_exists(tj)) { /* the whole tokenizer: its pre-tokenizer and normalizer too */
		buf t;
		buf_init(&t);
		int rc = fs_read(e, tj, &t);
		if (rc == 0)
			rc = bpe_load_hf(e, out, t.p, t.len, tj);
		buf_free(&t);
		free(tj);
		return rc;
	}
	free(tj);
	char *ej = path_join(dir, "encoder.json"), *vb = path_join(dir, "vocab.bpe");
	int rc = bpe_load_gpt2(e, out, ej, vb);
	free(ej);
	free(vb);
	return rc;
}

#define MEMBER(o, name) json_member(o, name, sizeof name - 1)

static int jis(const jnode *j, const char *s)
{
	return j && j->t == J_STR && j->len == strlen(s) && !memcmp(j->s, s, j->len);
}

static int set_pattern(herr *e, bpe *b, const char *pat, size_t n, const char *what)
{
	int err;
	PCRE2_SIZE at;
	b->re = pcre2_compile((PCRE2_SPTR)pat, n, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
	if (!b->re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(err, msg, sizeof msg);
		return herr_set(e, "%s: pre_tokenizer: the Split pattern does not compile at offset %zu: %s", what, (size_t)at,
		                (const char *)msg);
	}
	b->pattern = xstrndup(pat, n);
	return 0;
}

/* GPT-2's ByteLevel (use_regex true), or a Sequence of a regex Split
 * (behavior Isolated) and a ByteLevel without its regex, as Llama 3's and
 * Qwen2's tokenizer.json have it; normalizer null, or NFC (Qwen2's). */
static int pre_tokenizer(herr *e, bpe *b, const jnode *pre, const jnode *norm, const char *what)
{
	if (norm && norm->t != J_NULL) {
		if (!jis(MEMBER(norm, "type"), "NFC"))
			return herr_set(e, "%s: normalizer: only none or NFC is supported with a byte-level BPE", what);
		b->nfc = 1;
	}
	if (pre && jis(MEMBER(pre, "type"), "ByteLevel")) {
		const jnode *ur = MEMBER(pre, "use_regex");
		if (ur && ur->t == J_FALSE)
			return herr_set(e, "%s: pre_tokenizer: a ByteLevel without its regex and no Split before it would "
			                "encode each text as one piece", what);
		return 0;
	}
	const jnode *seq = pre && jis(MEMBER(pre, "type"), "Sequence") ? MEMBER(pre, "pretokenizers") : NULL;
	const jnode *sp = seq && seq->t == J_ARR && seq->n == 2 ? seq->kid : NULL, *bl = sp ? sp->next : NULL;
	const jnode *pat = sp ? MEMBER(sp, "pattern") : NULL, *rx = pat ? MEMBER(pat, "Regex") : NULL;
	const jnode *inv = sp ? MEMBER(sp, "invert") : NULL, *ur = bl ? MEMBER(bl, "use_regex") : NULL;
	if (!sp || !jis(MEMBER(sp, "type"), "Split") || !rx || rx->t != J_STR || !jis(MEMBER(sp, "behavior"), "Isolated") ||
	    (inv && inv->t != J_FALSE) || !jis(MEMBER(bl, "type"), "ByteLevel") || !ur || ur->t != J_FALSE) {
		herr_set(e, "%s: pre_tokenizer: supported are ByteLevel (GPT-2's) and a Sequence of a Split by a Regex "
		         "(behavior Isolated) and a ByteLevel with use_regex false (Llama 3's, Qwen2's)", what);
		return herr_hint(e, "another pre-tokenizer would cut the text elsewhere and give other ids");
	}
	return set_pattern(e, b, rx->s, rx->len, what);
}

/* ---- SentencePiece-style BPE ------------------------------------------------ */

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static int spm_style(const jnode *root, const jnode *model)
{
	const jnode *bf = MEMBER(model, "byte_fallback"), *n = MEMBER(root, "normalizer"), *p = MEMBER(root, "pre_tokenizer");
	const jnode *l = n && n->t == J_OBJ ? MEMBER(n, "normalizers") : NULL;
	int prepend = 0;
	for (const jnode *k = l && l->t == J_ARR ? l->kid : NULL; k; k = k->next)
		prepend |= jis(MEMBER(k, "type"), "Prepend");
	return (bf && bf->t == J_TRUE) || prepend || (p && p->t == J_OBJ && jis(MEMBER(p, "type"), "Metaspace"));
}

static size_t mslot(const bpe *b, uint64_t key) { return (size_t)XXH3_64bits(&key, sizeof key) & (b->mcap - 1); }

static int64_t merge_find(const bpe *b, uint32_t l, uint32_t r, uint32_t *res)
{
	if (!b->mcap)
		return -1;
	uint64_t key = ((uint64_t)l + 1) << 32 | r;
	for (size_t h = mslot(b, key); b->mkey[h]; h = (h + 1) & (b->mcap - 1))
		if (b->mkey[h] == key) {
			*res = b->mres[h];
			return b->mrank[h];
		}
	return -1;
}

/* the normalizer and pre-tokenizer Llama 2's tokenizer.json has (Prepend
 * "▁" then Replace " " by "▁"), or the newer Metaspace without splitting */
static int spm_shape(herr *e, const jnode *root, const char *what)
{
	const jnode *n = MEMBER(root, "normalizer"), *p = MEMBER(root, "pre_tokenizer");
	if (n && n->t == J_OBJ) {
		const jnode *l = jis(MEMBER(n, "type"), "Sequence") ? MEMBER(n, "normalizers") : NULL;
		const jnode *a = l && l->t == J_ARR && l->n == 2 ? l->kid : NULL, *r = a ? a->next : NULL;
		const jnode *pat = r ? MEMBER(r, "pattern") : NULL;
		if (a && jis(MEMBER(a, "type"), "Prepend") && jis(MEMBER(a, "prepend"), SPACE_MARK) && jis(MEMBER(r, "type"), "Replace") &&
		    pat && jis(MEMBER(pat, "String"), " ") && jis(MEMBER(r, "content"), SPACE_MARK) && (!p || p->t == J_NULL))
			return 0;
	} else if (p && p->t == J_OBJ && jis(MEMBER(p, "type"), "Metaspace")) {
		const jnode *sp = MEMBER(p, "split"), *ps = MEMBER(p, "prepend_scheme");
		if (jis(MEMBER(p, "replacement"), SPACE_MARK) && sp && sp->t == J_FALSE && (jis(ps, "first") || jis(ps, "always")))
			return 0;
	}
	herr_set(e, "%s: a SentencePiece-style BPE: supported are the normalizer Prepend(\"▁\") + Replace(\" \", \"▁\") "
	         "with no pre-tokenizer (Llama 2's), or a Metaspace pre-tokenizer with split false", what);
	return herr_hint(e, "another normalizer or split would cut the text elsewhere and give other ids");
}

/* the vocabulary (token text -> id, as it is), <unk>, the byte tokens and
 * the merges in rank order */
static int load_spm(herr *e, bpe *b, const jnode *root, const jnode *model, const char *what)
{
	const jnode *vocab = MEMBER(model, "vocab"), *merges = MEMBER(model, "merges"), *unk = MEMBER(model, "unk_token");
	const jnode *bf = MEMBER(model, "byte_fallback"), *fu = MEMBER(model, "fuse_unk"), *cs = MEMBER(model, "continuing_subword_prefix");
	if (!jis(MEMBER(model, "type"), "BPE"))
		return herr_set(e, "%s: model.type: only \"BPE\" tokenizers are supported", what);
	if (!vocab || vocab->t != J_OBJ || !merges || merges->t != J_ARR)
		return herr_set(e, "%s: model: expected \"vocab\" (an object of token -> id) and \"merges\" (a list)", what);
	if (cs && cs->t == J_STR && cs->len)
		return herr_set(e, "%s: model.continuing_subword_prefix: not supported in a SentencePiece-style BPE", what);
	if (spm_shape(e, root, what) != 0)
		return -1;
	b->spm = 1;
	b->byte_fallback = bf && bf->t == J_TRUE;
	b->fuse_unk = fu && fu->t == J_TRUE;
	b->n = vocab->n;
	b->off = xcalloc(b->n + 1, sizeof *b->off);
	b->len = xcalloc(b->n + 1, sizeof *b->len);
	uint8_t *seen = xcalloc(b->n + 1, 1);
	int rc = 0;
	for (const jnode *k = vocab->kid; k && rc == 0; k = k->next) {
		long long id;
		if (json_int(k, 0, (long long)b->n - 1, &id) != 0 || seen[id]) {
			rc = herr_set(e, "%s: token \"%.*s\": expected an id in 0..%zu, each once", what, (int)k->klen, k->key, b->n - 1);
			break;
		}
		seen[id] = 1;
		b->off[id] = b->blob.len;
		b->len[id] = (uint32_t)k->klen;
		buf_add(&b->blob, k->key, k->klen);
	}
	free(seen);
	if (rc)
		return rc;
	build_slots(b);
	b->unk = unk && unk->t == J_STR ? lookup(b, unk->s, unk->len) : -1;
	if (unk && unk->t == J_STR && b->unk < 0)
		return herr_set(e, "%s: model.unk_token \"%.*s\" is not in the vocabulary", what, (int)unk->len, unk->s);
	for (int bt = 0; bt < 256 && b->byte_fallback; bt++) {
		char nm[8];
		snprintf(nm, sizeof nm, "<0x%02X>", bt);
		int64_t id = lookup(b, nm, 6);
		if (id < 0)
			return herr_set(e, "%s: byte_fallback, but the vocabulary has no %s", what, nm);
		b->byte_id[bt] = (uint32_t)id;
	}
	if (!b->byte_fallback && b->unk < 0)
		return herr_set(e, "%s: no byte_fallback and no unk_token: a character outside the vocabulary would have no id", what);
	b->mcap = 1024;
	while (b->mcap < 2 * (size_t)merges->n + 2)
		b->mcap *= 2;
	b->mkey = xcalloc(b->mcap, sizeof *b->mkey);
	b->mrank = xcalloc(b->mcap, sizeof *b->mrank);
	b->mres = xcalloc(b->mcap, sizeof *b->mres);
	b->mlist = xcalloc(2 * (size_t)merges->n + 2, sizeof *b->mlist);
	buf j;
	buf_init(&j);
	size_t k = 0;
	for (const jnode *m = merges->kid; m && rc == 0; m = m->next, k++) {
		const char *x = NULL, *y = NULL;
		size_t xn = 0, yn = 0;
		if (m->t == J_STR && memchr(m->s, ' ', m->len)) {
			const char *sp = memchr(m->s, ' ', m->len);
			x = m->s, xn = (size_t)(sp - m->s), y = sp + 1, yn = m->len - xn - 1;
		} else if (m->t == J_ARR && m->n == 2 && m->kid->t == J_STR && m->kid->next->t == J_STR) {
			x = m->kid->s, xn = m->kid->len, y = m->kid->next->s, yn = m->kid->next->len;
		}
		j.len = 0;
		buf_add(&j, x, xn);
		buf_add(&j, y, yn);
		int64_t l = x ? lookup(b, x, xn) : -1, r = x ? lookup(b, y, yn) : -1, z = x ? lookup(b, j.p, j.len) : -1;
		uint32_t dup;
		if (l < 0 || r < 0 || z < 0) {
			rc = herr_set(e, "%s: model.merges[%zu]: expected a merge \"A B\" of two tokens whose join is a token", what, k);
			break;
		}
		if (merge_find(b, (uint32_t)l, (uint32_t)r, &dup) >= 0)
			continue; /* a repeat: the first rank holds */
		uint64_t key = ((uint64_t)l + 1) << 32 | (uint64_t)r;
		size_t h = mslot(b, key);
		while (b->mkey[h])
			h = (h + 1) & (b->mcap - 1);
		b->mkey[h] = key;
		b->mrank[h] = (uint32_t)b->nmerge;
		b->mres[h] = (uint32_t)z;
		b->mlist[2 * b->nmerge] = (uint32_t)l;
		b->mlist[2 * b->nmerge + 1] = (uint32_t)r;
		b->nmerge++;
	}
	buf_free(&j);
	const jnode *added = rc == 0 ? MEMBER(root, "added_tokens") : NULL;
	for (const jnode *t = added && added->t == J_ARR ? added->kid : NULL; t && rc == 0; t = t->next) {
		const jnode *id = MEMBER(t, "id"), *ct = MEMBER(t, "content");
		long long v;
		if (!ct || ct->t != J_STR || json_int(id, 0, (long long)b->n - 1, &v) != 0 || b->len[v] != ct->len ||
		    memcmp(b->blob.p + b->off[v], ct->s, ct->len))
			rc = herr_set(e, "%s: added_tokens: each needs an \"id\" of the vocabulary whose token is its \"content\"", what);
	}
	return rc;
}

typedef struct spm_merge {
	uint32_t rank, pos, res;
} spm_merge;

static int spm_before(const spm_merge *a, const spm_merge *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(spm_merge *h, size_t *n, spm_merge m)
{
	size_t i = (*n)++;
	h[i] = m;
	while (i && spm_before(&h[i], &h[(i - 1) / 2])) {
		spm_merge t = h[i];
		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static spm_merge heap_pop(spm_merge *h, size_t *n)
{
	spm_merge top = h[0];
	h[0] = h[--*n];
	for (size_t i = 0;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < *n && spm_before(&h[l], &h[m]))
			m = l;
		if (r < *n && spm_before(&h[r], &h[m]))
			m = r;
		if (m == i)
			break;
		spm_merge t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
	return top;
}

/* As Hugging Face's BPE model does a word: characters (byte tokens, or
 * <unk>, for those outside the vocabulary), then always the adjacent pair
 * of lowest merge rank, leftmost on ties */
static void spm_encode(const bpe *b, const char *s, size_t n, size_t limit, uint32_t **ids, size_t *nids, size_t *cap)
{
	if (!n)
		return;
	buf t;
	buf_init(&t);
	buf_adds(&t, SPACE_MARK);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			buf_adds(&t, SPACE_MARK);
		else
			buf_addc(&t, s[i]);
	}
	size_t cap_sym = t.len + 1, m = 0;
	uint32_t *id = xmalloc(cap_sym * sizeof *id);
	int64_t *prev = xmalloc(cap_sym * sizeof *prev), *next = xmalloc(cap_sym * sizeof *next);
	uint8_t *dead = xcalloc(cap_sym, 1);
	for (size_t i = 0; i < t.len;) {
		size_t l = 1;
		uint8_t c = (uint8_t)t.p[i];
		if (c >= 0xF0)
			l = 4;
		else if (c >= 0xE0)
			l = 3;
		else if (c >= 0xC0)
			l = 2;
		l = i + l > t.len ? t.len - i : l;
		int64_t v = lookup(b, t.p + i, l);
		if (v >= 0) {
			id[m++] = (uint32_t)v;
		} else if (b->byte_fallback) {
			for (size_t k = 0; k < l; k++)
				id[m++] = b->byte_id[(uint8_t)t.p[i + k]];
		} else if (!(b->fuse_unk && m && id[m - 1] == (uint32_t)b->unk)) {
			id[m++] = (uint32_t)b->unk;
		}
		i += l;
	}
	for (size_t i = 0; i < m; i++) {
		prev[i] = (int64_t)i - 1;
		next[i] = i + 1 < m ? (int64_t)i + 1 : -1;
	}
	spm_merge *h = xmalloc((2 * m + 2) * sizeof *h);
	size_t nh = 0;
	uint32_t res;
	for (size_t i = 0; i + 1 < m; i++) {
		int64_t r = merge_find(b, id[i], id[i + 1], &res);
		if (r >= 0)
			heap_push(h, &nh, (spm_merge){(uint32_t)r, (uint32_t)i, res});
	}
	while (nh) {
		spm_merge top = heap_pop(h, &nh);
		size_t p = top.pos;
		if (dead[p] || next[p] < 0)
			continue;
		size_t q = (size_t)next[p];
		int64_t r = merge_find(b, id[p], id[q], &res);
		if (r < 0 || res != top.res)
			continue; /* a stale entry: the pair changed since */
		id[p] = top.res;
		dead[q] = 1;
		next[p] = next[q];
		if (next[q] >= 0)
			prev[next[q]] = (int64_t)p;
		if (prev[p] >= 0 && (r = merge_find(b, id[prev[p]], id[p], &res)) >= 0)
			heap_push(h, &nh, (spm_merge){(uint32_t)r, (uint32_t)prev[p], res});
		if (next[p] >= 0 && (r = merge_find(b, id[p], id[next[p]], &res)) >= 0)
			heap_push(h, &nh, (spm_merge){(uint32_t)r, (uint32_t)p, res});
	}
	for (int64_t i = m ? 0 : -1; i >= 0; i = next[i]) {
		if (limit && *nids >= limit)
			break;
		if (*nids == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*ids = xrealloc(*ids, *cap * sizeof **ids);
		}
		(*ids)[(*nids)++] = id[i];
	}
	free(h);
	free(id);
	free(prev);
	free(next);
	free(dead);
	buf_free(&t);
}

int bpe_load_hf(herr *e, bpe **out, const char *json, size_t n, const char *what)
{
	*out = NULL;
	int32_t to_cp[256];
	int16_t from_cp[512];
	byte_map(to_cp, from_cp);
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, json, n, &je);
	bpe *b = bpe_new();
	buf raw, raw2;
	buf_init(&raw);
	buf_init(&raw2);
	int rc = 0;
	const jnode *model = root ? MEMBER(root, "model") : NULL, *pre = root ? MEMBER(root, "pre_tokenizer") : NULL;
	const jnode *vocab = model ? MEMBER(model, "vocab") : NULL, *merges = model ? MEMBER(model, "merges") : NULL;
	if (root && model && spm_style(root, model)) {
		rc = load_spm(e, b, root, model, what);
		json_arena_free(a);
		return bpe_done(b, rc, out);
	}
	if (!root) {
		size_t line, col;
		json_line_col(json, je.off, &line, &col);
		rc = herr_set(e, "%s:%zu:%zu: %s", what, line, col, je.what);
	} else if (root->t != J_OBJ || !model || model->t != J_OBJ) {
		rc = herr_set(e, "%s: not a tokenizer.json (expected an object with \"model\")", what);
	} else if (!jis(MEMBER(model, "type"), "BPE")) {
		rc = herr_set(e, "%s: model.type: only \"BPE\" tokenizers are supported", what);
	} else if (pre_tokenizer(e, b, pre, MEMBER(root, "normalizer"), what) != 0) {
		rc = -1;
	} else if (!vocab || vocab->t != J_OBJ || !merges || merges->t != J_ARR) {
		rc = herr_set(e, "%s: model: expected \"vocab\" (an object of token -> id) and \"merges\" (a list)", what);
	}
	if (rc == 0)
		rc = load_vocab(e, b, vocab, what, from_cp, &raw);
	size_t k = 0;
	for (const jnode *m = rc == 0 ? merges->kid : NULL; m && rc == 0; m = m->next, k++) {
		int r = -1;
		if (m->t == J_STR) {
			const char *sp = memchr(m->s, ' ', m->len);
			if (sp)
				r = add_merge(b, m->s, (size_t)(sp - m->s), sp + 1, m->len - (size_t)(sp - m->s) - 1, from_cp, &raw, &raw2);
		} else if (m->t == J_ARR && m->n == 2 && m->kid->t == J_STR && m->kid->next->t == J_STR) {
			r = add_merge(b, m->kid->s, m->kid->len, m->kid->next->s, m->kid->next->len, from_cp, &raw, &raw2);
		}
		if (r == -2)
			rc = merge_order_error(e, what, k + 1);
		else if (r != 0)
			rc = herr_set(e, "%s: model.merges[%zu]: expected a merge \"A B\" of two tokens whose join is a token", what, k);
	}
	const jnode *added = root && rc == 0 ? MEMBER(root, "added_tokens") : NULL;
	for (const jnode *t = added && added->t == J_ARR ? added->kid : NULL; t && rc == 0; t = t->next) {
		const jnode *id = MEMBER(t, "id"), *ct = MEMBER(t, "content");
		long v = id && id->t == J_NUM ? strtol(id->s, NULL, 10) : -1;
		if (!ct || ct->t != J_STR || v < 0 || (size_t)v >= b->n || b->len[v] != ct->len ||
		    memcmp(b->blob.p + b->off[v], ct->s, ct->len))
			rc = herr_set(e, "%s: added_tokens: each needs an \"id\" of the vocabulary whose token is its \"content\"", what);
	}
	json_arena_free(a);
	buf_free(&raw);
	buf_free(&raw2);
	return bpe_done(b, rc, out);
}

/* bytes -> GPT-2's printable code points, as JSON string content */
static void mapped_json(buf *out, const char *p, size_t n)
{
	int32_t to_cp[256];
	int16_t from_cp[512];
	byte_map(to_cp, from_cp);
	buf_addc(out, '"');
	for (size_t i = 0; i < n; i++) {
		int32_t c = to_cp[(uint8_t)p[i]];
		if (c == '"' || c == '\\')
			buf_addc(out, '\\');
		uint8_t u[4];
		utf8proc_ssize_t l = utf8proc_encode_char(c, u);
		buf_add(out, u, (size_t)l);
	}
	buf_addc(out, '"');
}

/* bytes -> GPT-2's printable code points, as plain text */
static void mapped_text(buf *out, const char *p, size_t n)
{
	int32_t to_cp[256];
	int16_t from_cp[512];
	byte_map(to_cp, from_cp);
	for (size_t i = 0; i < n; i++) {
		uint8_t u[4];
		utf8proc_ssize_t l = utf8proc_encode_char(to_cp[(uint8_t)p[i]], u);
		buf_add(out, u, (size_t)l);
	}
}

void bpe_train_result_free(bpe_train_result *r)
{
	free(r->merge_ids);
	free(r->lens);
	buf_free(&r->tokens);
	memset(r, 0, sizeof *r);
}

void bpe_train_files(const bpe_train_result *r, const char *const *special, size_t nspecial, buf *encoder, buf *merges)
{
	uint64_t *off = xmalloc((r->ntokens + 1) * sizeof *off);
	off[0] = 0;
	for (size_t i = 0; i < r->ntokens; i++)
		off[i + 1] = off[i] + r->lens[i];
	buf_addc(encoder, '{');
	for (size_t id = 0; id < r->ntokens; id++) {
		if (id)
			buf_adds(encoder, ", ");
		mapped_json(encoder, r->tokens.p + off[id], r->lens[id]);
		buf_printf(encoder, ": %zu", id);
	}
	for (size_t k = 0; k < nspecial; k++) {
		buf_adds(encoder, r->ntokens + k ? ", " : "");
		buf_json_str(encoder, special[k]);
		buf_printf(encoder, ": %zu", r->ntokens + k);
	}
	buf_adds(encoder, "}\n");
	buf_adds(merges, "#version: 0.2\n");
	for (size_t m = 0; m < r->merges; m++) {
		uint32_t a = r->merge_ids[2 * m], b = r->merge_ids[2 * m + 1];
		mapped_text(merges, r->tokens.p + off[a], r->lens[a]);
		buf_addc(merges, ' ');
		mapped_text(merges, r->tokens.p + off[b], r->lens[b]);
		buf_addc(merges, '\n');
	}
	free(off);
}

void bpe_gpt2_files(const bpe *b, buf *encoder, buf *merges)
{
	buf_addc(encoder, '{');
	for (size_t id = 0; id < b->n; id++) {
		if (id)
			buf_adds(encoder, ", ");
		mapped_json(encoder, b->blob.p + b->off[id], b->len[id]);
		buf_printf(encoder, ": %zu", id);
	}
	buf_adds(encoder, "}\n");
	buf_adds(merges, "#version: 0.2\n");
	buf_add(merges, b->merges.p, b->merges.len);
}

/* Llama 2's tokenizer.json: the normalizer that marks spaces, the decoder
 * that unmarks them, BPE with byte fallback and the merges in rank order */
static void spm_hf_json(const bpe *b, buf *out)
{
	buf_adds(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
	static const char *const sp[] = {"<unk>", "<s>", "</s>"};
	int first = 1;
	for (int k = 0; k < 3; k++) {
		int64_t id = lookup(b, sp[k], strlen(sp[k]));
		if (id < 0)
			continue;
		buf_printf(out, "%s\n    {\"id\": %lld, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, "
		           "\"rstrip\": false, \"normalized\": false, \"special\": true}", first ? "" : ",", (long long)id, sp[k]);
		first = 0;
	}
	buf_adds(out, "\n  ],\n  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \""
	         SPACE_MARK "\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SPACE_MARK "\"}]},\n"
	         "  \"pre_tokenizer\": null,\n  \"post_processor\": null,\n"
	         "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SPACE_MARK
	         "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", "
	         "\"start\": 1, \"stop\": 0}]},\n  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": ");
	if (b->unk >= 0)
		buf_json_strn(out, b->blob.p + b->off[b->unk], b->len[b->unk]);
	else
		buf_adds(out, "null");
	buf_printf(out, ", \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, "
	           "\"byte_fallback\": %s, \"ignore_merges\": false,\n    \"vocab\": {", b->fuse_unk ? "true" : "false",
	           b->byte_fallback ? "true" : "false");
	for (size_t id = 0; id < b->n; id++) {
		buf_adds(out, id ? ",\n      " : "\n      ");
		buf_json_strn(out, b->blob.p + b->off[id], b->len[id]);
		buf_printf(out, ": %zu", id);
	}
	buf_adds(out, "\n    },\n    \"merges\": [");
	for (size_t k = 0; k < b->nmerge; k++) {
		uint32_t l = b->mlist[2 * k], r = b->mlist[2 * k + 1];
		buf_adds(out, k ? ",\n      [" : "\n      [");
		buf_json_strn(out, b->blob.p + b->off[l], b->len[l]);
		buf_adds(out, ", ");
		buf_json_strn(out, b->blob.p + b->off[r], b->len[r]);
		buf_addc(out, ']');
	}
	buf_adds(out, "\n    ]\n  }\n}\n");
}

int bpe_is_spm(const bpe *b) { return b->spm; }

int bpe_dir_is_bpe(const char *dir)
{
	char *e = path_join(dir, "encoder.json"), *t = path_join(dir, "tokenizer.json"), *v = path_join(dir, "vocab.txt");
	int ok = fs_exists(e) || (fs_exists(t) && !fs_exists(v));
	free(e);
	free(t);
	free(v);
	return ok;
}

int64_t bpe_eos_id(const bpe *b)
{
	static const char *const eos[] = {"<|endoftext|>", "</s>", "<|end_of_text|>"};
	for (int k = 0; k < 3; k++) {
		int64_t id = lookup(b, eos[k], strlen(eos[k]));
		if (id >= 0)
			return id;
	}
	return -1;
}

void bpe_hf_json(const bpe *b, buf *out)
{
	if (b->spm) {
		spm_hf_json(b, out);
		return;
	}
	const char *eos = "<|endoftext|>";
	int64_t eos_id = lookup(b, eos, strlen(eos));
	buf_adds(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
	if (eos_id >= 0)
		buf_printf(out, "\n    {\"id\": %lld, \"content\": \"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, "
		           "\"rstrip\": false, \"normalized\": true, \"special\": true}\n  ", (long long)eos_id);
	buf_adds(out, b->nfc ? "],\n  \"normalizer\": {\"type\": \"NFC\"},\n" : "],\n  \"normalizer\": null,\n");
	if (b->pattern) {
		buf_adds(out, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
		buf_json_str(out, b->pattern);
		buf_adds(out, "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
		         "\"trim_offsets\": true, \"use_regex\": false}]},\n");
	} else {
		buf_adds(out, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n");
	}
	buf_adds(out, ""
	         "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true},\n"
	         "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
	         "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": \"\", "
	         "\"end_of_word_suffix\": \"\", \"fuse_unk\": false, \"byte_fallback\": false,\n    \"vocab\": {");
	for (size_t id = 0; id < b->n; id++) {
		buf_adds(out, id ? ",\n      " : "\n      ");
		if ((int64_t)id == eos_id)
			buf_adds(out, "\"<|endoftext|>\"");
		else
			mapped_json(out, b->blob.p + b->off[id], b->len[id]);
		buf_printf(out, ": %zu", id);
	}
	buf_adds(out, "\n    },\n    \"merges\": [");
	const char *p = b->merges.p, *end = b->merges.p + b->merges.len;
	int first = 1;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		buf_adds(out, first ? "\n      " : ",\n      ");
		first = 0;
		buf_json_strn(out, p, (size_t)(nl - p));
		p = nl + 1;
	}
	buf_adds(out, "\n    ]\n  }\n}\n");
}

void bpe_free(bpe *b)
{
	if (!b)
		return;
	buf_free(&b->blob);
	buf_free(&b->merges);
	free(b->off);
	free(b->len);
	free(b->slots);
	free(b->pattern);
	if (b->re)
		pcre2_code_free(b->re);
	free(b->mkey);
	free(b->mrank);
	free(b->mres);
	free(b->mlist);
	free(b);
}

size_t bpe_vocab_size(const bpe *b) { return b->n; }
const char *bpe_pattern(const bpe *b) { return b->pattern; }

int64_t bpe_token_id(const bpe *b, const char *s, size_t n) { return lookup(b, s, n); }

/* ---- encoding ------------------------------------------------------------- */

/* Pieces that needed merges, remembered with their ids: words repeat, and
 * a hit costs one hash and one compare instead of the merge loop. Direct
 * mapped; an entry holds a piece of up to CACHE_BYTES bytes and up to
 * CACHE_IDS ids. */
#define CACHE_SLOTS 8192
#define CACHE_BYTES 24
#define CACHE_IDS 6

typedef struct cache_entry {
	uint8_t len, nids; /* len 0: empty */
	char bytes[CACHE_BYTES];
	uint32_t ids[CACHE_IDS];
} cache_entry;

struct bpe_cache {
	cache_entry e[CACHE_SLOTS];
};

bpe_cache *bpe_cache_new(void) { return xcalloc(1, sizeof(bpe_cache)); }
void bpe_cache_free(bpe_cache *c) { free(c); }

typedef struct enc_ctx {
	const bpe *b;
	uint32_t **ids;
	size_t *nids, *cap;
	void *parts;        /* part[], see encode_piece */
	size_t pcap;
	size_t limit;       /* stop once this many ids are out (0: none) */
	bpe_cache *cache;   /* or NULL */
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

static int encode_piece(void *ud, const char *p, size_t n)
{
	enc_ctx *c = ud;
	const bpe *b = c->b;
	int64_t whole = lookup(b, p, n);
	if (whole >= 0) {
		push_id(c, (uint32_t)whole); /* a whole token: what the merges reach */
		return c->limit && *c->nids >= c->limit;
	}
	cache_entry *ce = NULL;
	if (c->cache && n <= CACHE_BYTES) {
		ce = &c->cache->e[(size_t)XXH3_64bits(p, n) & (CACHE_SLOTS - 1)];
		if (ce->len == n && !memcmp(ce->bytes, p, n)) {
			for (size_t i = 0; i < ce->nids; i++)
				push_id(c, ce->ids[i]);
			return c->limit && *c->nids >= c->limit;
		}
	}
	size_t first = *c->nids;
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
	if (ce && m <= CACHE_IDS) {
		ce->len = (uint8_t)n;
		ce->nids = (uint8_t)m;
		memcpy(ce->bytes, p, n);
		memcpy(ce->ids, *c->ids + first, m * sizeof *ce->ids);
	}
	return c->limit && *c->nids >= c->limit;
}

int bpe_encode(const bpe *b, const char *s, size_t n, uint32_t **ids, size_t *nids, size_t *cap)
{
	return bpe_encode_max(b, s, n, 0, ids, nids, cap);
}

int bpe_encode_max(const bpe *b, const char *s, size_t n, size_t max, uint32_t **ids, size_t *nids, size_t *cap)
{
	return bpe_encode_cached(b, NULL, s, n, max, ids, nids, cap);
}

int bpe_encode_cached(const bpe *b, bpe_cache *cache, const char *s, size_t n, size_t max, uint32_t **ids,
                      size_t *nids, size_t *cap)
{
	if (b->spm) {
		spm_encode(b, s, n, max ? *nids + max : 0, ids, nids, cap);
		return 0;
	}
	enc_ctx c = {b, ids, nids, cap, NULL, 0, max ? *nids + max : 0, cache};
	bpe_pieces(b, s, n, encode_piece, &c);
	free(c.parts);
	return 0;
}

/* A regex Split, "Isolated": each match a piece, and what lies between */
static void regex_pieces(const bpe *b, const char *s, size_t n, int (*fn)(void *ud, const char *p, size_t len), void *ud)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(b->re, NULL);
	size_t at = 0, done = 0;
	while (at < n) {
		int r = pcre2_match(b->re, (PCRE2_SPTR)s, n, at, 0, md, NULL);
		if (r < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (me == ms) { /* an empty match: step over one character */
			at = ms + 1;
			while (at < n && ((uint8_t)s[at] & 0xC0) == 0x80)
				at++;
			continue;
		}
		if (ms > done && fn(ud, s + done, ms - done))
			goto out;
		if (fn(ud, s + ms, me - ms))
			goto out;
		done = at = me;
	}
	if (done < n)
		fn(ud, s + done, n - done);
out:
	pcre2_match_data_free(md);
}

void bpe_pieces(const bpe *b, const char *s, size_t n, int (*fn)(void *ud, const char *p, size_t len), void *ud)
{
	char *norm = NULL;
	if (b->nfc && n) {
		char *z = xstrndup(s, n);
		norm = (char *)utf8proc_NFC((const utf8proc_uint8_t *)z);
		free(z);
		if (norm) { /* invalid UTF-8 is left as it is */
			s = norm;
			n = strlen(norm);
		}
	}
	if (b->re)
		regex_pieces(b, s, n, fn, ud);
	else
		bpe_pretokenize(s, n, fn, ud);
	free(norm);
}

int bpe_decode(const bpe *b, const uint32_t *ids, size_t n, buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= b->n)
			return -1;
		const char *p = b->blob.p + b->off[ids[i]];
		size_t l = b->len[ids[i]];
		if (!b->spm) {
			buf_add(out, p, l);
			continue;
		}
		if (b->byte_fallback && l == 6 && !memcmp(p, "<0x", 3) && p[5] == '>') {
			char hx[3] = {p[3], p[4], 0}, *end;
			unsigned long v = strtoul(hx, &end, 16);
			if (!*end && b->byte_id[v & 255] == ids[i]) {
				buf_addc(out, (char)v);
				continue;
			}
		}
		for (size_t k = 0; k < l; k++) { /* ▁ back to a space */
			if (k + 3 <= l && !memcmp(p + k, SPACE_MARK, 3)) {
				buf_addc(out, ' ');
				k += 2;
			} else {
				buf_addc(out, p[k]);
			}
		}
	}
	if (!out->p)
		buf_reserve(out, 0);
	return 0;
}
