/*
 * bpe_train — learning a byte-level BPE from text, GPT-2 style (bpe.h).
 *
 * The text is cut into pre-tokens by GPT-2's rule and each distinct one is
 * counted. Every pre-token starts as its bytes (ids 0..255: the bytes in
 * the order of GPT-2's printable stand-ins, as in GPT-2's encoder.json).
 * Then, until the vocabulary is full: the adjacent pair with the highest
 * count over all pre-tokens (weighted by how often each occurs) becomes a
 * new token with the next id; ties go to the pair whose joined bytes sort
 * first (bytewise), so the result does not depend on hashing or input order.
 * Pairs below min_frequency are never merged. Special tokens take the ids
 * after the merges.
 *
 * Counting is incremental: each pair keeps the pre-tokens it occurs in, and
 * a merge re-counts only those; a max-heap with lazy updates finds the best
 * pair.
 */
#include "bpe.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

/* --- counting pre-tokens ------------------------------------------------------ */

typedef struct wslot {
	uint64_t hash, count;
	uint64_t off; /* into bytes */
	uint32_t len, used;
} wslot;

struct bpe_trainer {
	buf bytes;
	wslot *slots;
	size_t cap, n;
	uint64_t total_bytes;
};

bpe_trainer *bpe_trainer_new(void)
{
	bpe_trainer *t = xcalloc(1, sizeof *t);
	buf_init(&t->bytes);
	t->cap = 1 << 16;
	t->slots = xcalloc(t->cap, sizeof *t->slots);
	return t;
}

void bpe_trainer_free(bpe_trainer *t)
{
	if (!t)
		return;
	buf_free(&t->bytes);
	free(t->slots);
	free(t);
}

static void grow(bpe_trainer *t)
{
	size_t cap = t->cap * 2;
	wslot *s = xcalloc(cap, sizeof *s);
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->slots[i].used)
			continue;
		size_t h = (size_t)t->slots[i].hash & (cap - 1);
		while (s[h].used)
			h = (h + 1) & (cap - 1);
		s[h] = t->slots[i];
	}
	free(t->slots);
	t->slots = s;
	t->cap = cap;
}

static int count_piece(void *ud, const char *p, size_t n)
{
	bpe_trainer *t = ud;
	uint64_t hash = XXH3_64bits(p, n);
	size_t h = (size_t)hash & (t->cap - 1);
	while (t->slots[h].used) {
		wslot *s = &t->slots[h];
		if (s->hash == hash && s->len == n && !memcmp(t->bytes.p + s->off, p, n)) {
			s->count++;
			return 0;
		}
		h = (h + 1) & (t->cap - 1);
	}
	wslot *s = &t->slots[h];
	s->used = 1;
	s->hash = hash;
	s->count = 1;
	s->off = t->bytes.len;
	s->len = (uint32_t)n;
	buf_add(&t->bytes, p, n);
	if (++t->n * 2 > t->cap)
		grow(t);
	return 0;
}

void bpe_trainer_add(bpe_trainer *t, const char *s, size_t n)
{
	t->total_bytes += n;
	bpe_pretokenize(s, n, count_piece, t);
}

size_t bpe_trainer_words(const bpe_trainer *t) { return t->n; }

void bpe_trainer_add_word(bpe_trainer *t, const char *p, size_t n)
{
	t->total_bytes += n;
	count_piece(t, p, n);
}

/* --- merging ------------------------------------------------------------------------ */

typedef struct pair {
	uint32_t a, b;
	int64_t count;
	uint32_t *words; /* pre-tokens it occurs in (may repeat) */
	uint32_t nw, cw;
} pair;

typedef struct heap_item {
	int64_t count;
	uint32_t pair;
} heap_item;

typedef struct tstate {
	/* tokens: bytes of each id */
	buf tok;
	uint64_t *toff;
	uint32_t *tlen;
	size_t ntok, tcap;
	/* pre-tokens */
	uint32_t *sym;     /* all symbols */
	uint64_t *woff;
	uint32_t *wlen;
	uint64_t *wcount;
	uint32_t *stamp;
	size_t nwords;
	/* pairs */
	pair *pairs;
	size_t npairs, pcap;
	uint32_t *pslot; /* hash: pair index + 1 */
	size_t pscap;
	heap_item *heap;
	size_t nheap, hcap;
	/* WordPiece: token bytes -> id + 1, so that a join that makes a token
	 * already there reuses it */
	uint32_t *tslot;
	size_t tscap;
} tstate;

static uint64_t pkey(uint32_t a, uint32_t b) { return (uint64_t)a << 32 | b; }

static size_t phash(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

static uint32_t pair_get(tstate *s, uint32_t a, uint32_t b, int create)
{
	uint64_t k = pkey(a, b);
	size_t h = phash(k, s->pscap);
	while (s->pslot[h]) {
		pair *p = &s->pairs[s->pslot[h] - 1];
		if (p->a == a && p->b == b)
			return s->pslot[h] - 1;
		h = (h + 1) & (s->pscap - 1);
	}
	if (!create)
		return UINT32_MAX;
	if (s->npairs == s->pcap) {
		s->pcap = s->pcap ? s->pcap * 2 : 1 << 16;
		s->pairs = xrealloc(s->pairs, s->pcap * sizeof *s->pairs);
	}
	uint32_t idx = (uint32_t)s->npairs++;
	s->pairs[idx] = (pair){a, b, 0, NULL, 0, 0};
	s->pslot[h] = idx + 1;
	if (s->npairs * 2 > s->pscap) {
		size_t cap = s->pscap * 2;
		uint32_t *n = xcalloc(cap, sizeof *n);
		for (size_t i = 0; i < s->npairs; i++) {
			size_t g = phash(pkey(s->pairs[i].a, s->pairs[i].b), cap);
			while (n[g])
				g = (g + 1) & (cap - 1);
			n[g] = (uint32_t)i + 1;
		}
		free(s->pslot);
		s->pslot = n;
		s->pscap = cap;
	}
	return idx;
}

static void pair_add_word(pair *p, uint32_t w)
{
	if (p->nw && p->words[p->nw - 1] == w)
		return;
	if (p->nw == p->cw) {
		p->cw = p->cw ? p->cw * 2 : 4;
		p->words = xrealloc(p->words, p->cw * sizeof *p->words);
	}
	p->words[p->nw++] = w;
}

/* a before b in the heap: higher count, then joined bytes first */
static int better(const tstate *s, const heap_item *x, const heap_item *y)
{
	if (x->count != y->count)
		return x->count > y->count;
	const pair *p = &s->pairs[x->pair], *q = &s->pairs[y->pair];
	/* compare bytes(p.a)+bytes(p.b) with bytes(q.a)+bytes(q.b) */
	const char *pa = s->tok.p + s->toff[p->a], *pb = s->tok.p + s->toff[p->b];
	const char *qa = s->tok.p + s->toff[q->a], *qb = s->tok.p + s->toff[q->b];
	size_t pl = s->tlen[p->a] + s->tlen[p->b], ql = s->tlen[q->a] + s->tlen[q->b];
	for (size_t i = 0; i < pl && i < ql; i++) {
		unsigned char c = (unsigned char)(i < s->tlen[p->a] ? pa[i] : pb[i - s->tlen[p->a]]);
		unsigned char d = (unsigned char)(i < s->tlen[q->a] ? qa[i] : qb[i - s->tlen[q->a]]);
		if (c != d)
			return c < d;
	}
	if (pl != ql)
		return pl < ql;
	return x->pair < y->pair;
}

static void heap_push(tstate *s, int64_t count, uint32_t pidx)
{
	if (s->nheap == s->hcap) {
		s->hcap = s->hcap ? s->hcap * 2 : 1 << 16;
		s->heap = xrealloc(s->heap, s->hcap * sizeof *s->heap);
	}
	size_t i = s->nheap++;
	s->heap[i] = (heap_item){count, pidx};
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!better(s, &s->heap[i], &s->heap[up]))
			break;
		heap_item t = s->heap[i];
		s->heap[i] = s->heap[up];
		s->heap[up] = t;
		i = up;
	}
}

static heap_item heap_pop(tstate *s)
{
	heap_item top = s->heap[0];
	s->heap[0] = s->heap[--s->nheap];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && better(s, &s->heap[l], &s->heap[m]))
			m = l;
		if (r < s->nheap && better(s, &s->heap[r], &s->heap[m]))
			m = r;
		if (m == i)
			break;
		heap_item t = s->heap[i];
		s->heap[i] = s->heap[m];
		s->heap[m] = t;
		i = m;
	}
	return top;
}

static uint32_t add_token(tstate *s, const char *p, size_t n, const char *q, size_t m)
{
	if (s->ntok == s->tcap) {
		s->tcap = s->tcap ? s->tcap * 2 : 1024;
		s->toff = xrealloc(s->toff, s->tcap * sizeof *s->toff);
		s->tlen = xrealloc(s->tlen, s->tcap * sizeof *s->tlen);
	}
	s->toff[s->ntok] = s->tok.len;
	s->tlen[s->ntok] = (uint32_t)(n + m);
	buf_add(&s->tok, p, n);
	buf_add(&s->tok, q, m);
	return (uint32_t)s->ntok++;
}

/* GPT-2's order of the byte stand-ins: 33..126, 161..172, 174..255, then
 * the other bytes in order. */
static void byte_order(uint8_t order[256])
{
	int k = 0;
	for (int b = 0; b < 256; b++)
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
			order[k++] = (uint8_t)b;
	for (int b = 0; b < 256; b++)
		if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)))
			order[k++] = (uint8_t)b;
}

typedef struct wrec {
	uint64_t off, count;
	uint32_t len;
} wrec;

static int by_off(const void *x, const void *y)
{
	uint64_t a = ((const wrec *)x)->off, b = ((const wrec *)y)->off;
	return a < b ? -1 : a > b;
}

static void state_free(tstate *s)
{
	buf_free(&s->tok);
	free(s->toff);
	free(s->tlen);
	free(s->sym);
	free(s->woff);
	free(s->wlen);
	free(s->wcount);
	free(s->stamp);
	for (size_t i = 0; i < s->npairs; i++)
		free(s->pairs[i].words);
	free(s->pairs);
	free(s->pslot);
	free(s->heap);
	free(s->tslot);
}

/* WordPiece's token index (tslot) */
static int64_t tok_find(const tstate *s, const char *p, size_t n)
{
	size_t h = (size_t)XXH3_64bits(p, n) & (s->tscap - 1);
	while (s->tslot[h]) {
		uint32_t id = s->tslot[h] - 1;
		if (s->tlen[id] == n && !memcmp(s->tok.p + s->toff[id], p, n))
			return id;
		h = (h + 1) & (s->tscap - 1);
	}
	return -1;
}

static void tok_index(tstate *s, uint32_t id)
{
	if ((s->ntok + 1) * 2 > s->tscap) {
		size_t cap = s->tscap ? s->tscap * 2 : 1 << 12;
		while (cap < (s->ntok + 1) * 2)
			cap *= 2;
		free(s->tslot);
		s->tslot = xcalloc(cap, sizeof *s->tslot);
		s->tscap = cap;
		for (size_t i = 0; i < s->ntok; i++)
			if (i != id) {
				size_t h = (size_t)XXH3_64bits(s->tok.p + s->toff[i], s->tlen[i]) & (cap - 1);
				while (s->tslot[h])
					h = (h + 1) & (cap - 1);
				s->tslot[h] = (uint32_t)i + 1;
			}
	}
	size_t h = (size_t)XXH3_64bits(s->tok.p + s->toff[id], s->tlen[id]) & (s->tscap - 1);
	while (s->tslot[h])
		h = (h + 1) & (s->tscap - 1);
	s->tslot[h] = id + 1;
}

/* WordPiece's start: every character of the words (the limit_alphabet most
 * frequent, in code point order) as a token, then "##" + each character
 * that occurs after a word's first, in the same order; each word's symbols
 * are its first character and the "##" forms of the others (characters
 * left out of the alphabet are skipped). */
static void wordpiece_start(tstate *s, const bpe_trainer *t, const bpe_train_opts *o, const uint64_t *woff_in,
                            const uint32_t *wlen_in)
{
	const char *pf = o->wordpiece_prefix;
	size_t pl = strlen(pf);
	uint64_t *count = xcalloc(0x110000, sizeof *count);
	uint8_t *later = xcalloc(0x110000, 1);
	for (size_t w = 0; w < s->nwords; w++) {
		const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)t->bytes.p + woff_in[w];
		utf8proc_ssize_t n = wlen_in[w], i = 0;
		while (i < n) {
			utf8proc_int32_t c;
			utf8proc_ssize_t k = utf8proc_iterate(p + i, n - i, &c);
			if (k <= 0) {
				i++;
				continue;
			}
			count[c] += s->wcount[w];
			if (i)
				later[c] = 1;
			i += k;
		}
	}
	size_t nchars = 0;
	for (size_t c = 0; c < 0x110000; c++)
		nchars += count[c] > 0;
	if (o->limit_alphabet && nchars > o->limit_alphabet) {
		/* the count the last kept character has: keep those above it,
		 * then those at it in code point order */
		uint64_t *sorted = xmalloc(nchars * sizeof *sorted);
		size_t k = 0;
		for (size_t c = 0; c < 0x110000; c++)
			if (count[c])
				sorted[k++] = count[c];
		for (size_t i = 0; i < o->limit_alphabet; i++) { /* partial selection: the limit largest */
			size_t m = i;
			for (size_t j = i + 1; j < k; j++)
				if (sorted[j] > sorted[m])
					m = j;
			uint64_t tmp = sorted[i];
			sorted[i] = sorted[m];
			sorted[m] = tmp;
		}
		uint64_t cut = sorted[o->limit_alphabet - 1];
		size_t above = 0;
		for (size_t i = 0; i < k; i++)
			above += sorted[i] > cut;
		size_t room = o->limit_alphabet - above;
		for (size_t c = 0; c < 0x110000; c++) {
			if (count[c] > cut)
				continue;
			if (count[c] == cut && room) {
				room--;
				continue;
			}
			count[c] = 0;
		}
		free(sorted);
	}
	uint32_t *first_id = xcalloc(0x110000, sizeof *first_id), *later_id = xcalloc(0x110000, sizeof *later_id);
	char u[8 + 32];
	for (int pass = 0; pass < 2; pass++)
		for (size_t c = 0; c < 0x110000; c++) {
			if (!count[c] || (pass && !later[c]))
				continue;
			memcpy(u, pf, pl);
			size_t l = (size_t)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)u + pl);
			uint32_t id = pass ? add_token(s, u, pl + l, "", 0) : add_token(s, u + pl, l, "", 0);
			tok_index(s, id);
			(pass ? later_id : first_id)[c] = id + 1;
		}
	size_t at = 0;
	for (size_t w = 0; w < s->nwords; w++) {
		const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)t->bytes.p + woff_in[w];
		utf8proc_ssize_t n = wlen_in[w], i = 0;
		s->woff[w] = at;
		while (i < n) {
			utf8proc_int32_t c;
			utf8proc_ssize_t k = utf8proc_iterate(p + i, n - i, &c);
			if (k <= 0) {
				i++;
				continue;
			}
			uint32_t id = (i ? later_id : first_id)[c];
			if (id)
				s->sym[at++] = id - 1;
			i += k;
		}
		s->wlen[w] = (uint32_t)(at - s->woff[w]);
	}
	free(count);
	free(later);
	free(first_id);
	free(later_id);
}

int bpe_trainer_run(herr *e, bpe_trainer *t, const bpe_train_opts *o, bpe_train_result *st)
{
	size_t nspecial = o->nspecial;
	const char *wp = o->wordpiece_prefix;
	size_t wpl = wp ? strlen(wp) : 0;
	if (!wp && o->vocab < 256 + nspecial)
		return herr_set(e, "vocab %zu is too small: 256 byte tokens and %zu special token%s come first", o->vocab,
		                nspecial, nspecial == 1 ? "" : "s");
	tstate s;
	memset(&s, 0, sizeof s);
	buf_init(&s.tok);
	uint8_t order[256], id_of[256];
	byte_order(order);
	for (int i = 0; !wp && i < 256; i++) {
		char c = (char)order[i];
		add_token(&s, &c, 1, "", 0);
		id_of[order[i]] = (uint8_t)i;
	}
	/* pre-tokens in first-seen order (deterministic: the slots' offsets
	 * grow in input order) */
	s.nwords = t->n;
	s.woff = xmalloc((s.nwords ? s.nwords : 1) * sizeof *s.woff);
	s.wlen = xmalloc((s.nwords ? s.nwords : 1) * sizeof *s.wlen);
	s.wcount = xmalloc((s.nwords ? s.nwords : 1) * sizeof *s.wcount);
	s.stamp = xcalloc(s.nwords ? s.nwords : 1, sizeof *s.stamp);
	s.sym = xmalloc((t->bytes.len ? t->bytes.len : 1) * sizeof *s.sym);
	{
		wrec *r = xmalloc((s.nwords ? s.nwords : 1) * sizeof *r);
		size_t k = 0;
		for (size_t i = 0; i < t->cap; i++)
			if (t->slots[i].used)
				r[k++] = (wrec){t->slots[i].off, t->slots[i].count, t->slots[i].len};
		qsort(r, k, sizeof *r, by_off);
		size_t at = 0;
		for (size_t w = 0; !wp && w < k; w++) {
			s.woff[w] = at;
			s.wlen[w] = r[w].len;
			s.wcount[w] = r[w].count;
			for (uint32_t j = 0; j < r[w].len; j++)
				s.sym[at++] = id_of[(uint8_t)t->bytes.p[r[w].off + j]];
		}
		if (wp) {
			uint64_t *off = xmalloc((k ? k : 1) * sizeof *off);
			uint32_t *len = xmalloc((k ? k : 1) * sizeof *len);
			for (size_t w = 0; w < k; w++) {
				off[w] = r[w].off;
				len[w] = r[w].len;
				s.wcount[w] = r[w].count;
			}
			wordpiece_start(&s, t, o, off, len);
			free(off);
			free(len);
		}
		free(r);
	}
	s.pscap = 1 << 16;
	s.pslot = xcalloc(s.pscap, sizeof *s.pslot);
	for (size_t w = 0; w < s.nwords; w++) {
		const uint32_t *y = s.sym + s.woff[w];
		for (uint32_t i = 0; i + 1 < s.wlen[w]; i++) {
			uint32_t pi = pair_get(&s, y[i], y[i + 1], 1);
			s.pairs[pi].count += (int64_t)s.wcount[w];
			pair_add_word(&s.pairs[pi], (uint32_t)w);
		}
	}
	for (size_t i = 0; i < s.npairs; i++)
		heap_push(&s, s.pairs[i].count, (uint32_t)i);
	size_t want = o->vocab - nspecial, merges = 0, mcap = 0;
	uint32_t *mp = NULL;
	uint32_t *touched = NULL;
	size_t ntouched = 0, ctouched = 0;
	uint32_t round = 0;
	while (s.ntok < want && s.nheap) {
		heap_item top = heap_pop(&s);
		pair *p = &s.pairs[top.pair];
		if (top.count != p->count) {
			if (p->count > 0)
				heap_push(&s, p->count, top.pair);
			continue;
		}
		if (p->count < (int64_t)(o->min_frequency ? o->min_frequency : 1))
			break;
		uint32_t a = p->a, b = p->b;
		/* room first: the joined bytes come from the same buffer */
		buf_reserve(&s.tok, (size_t)s.tlen[a] + s.tlen[b]);
		uint32_t z;
		if (!wp) {
			z = add_token(&s, s.tok.p + s.toff[a], s.tlen[a], s.tok.p + s.toff[b], s.tlen[b]);
		} else {
			/* WordPiece: a + b less b's "##"; a token made twice is one */
			size_t skip = s.tlen[b] >= wpl && !memcmp(s.tok.p + s.toff[b], wp, wpl) ? wpl : 0;
			size_t jl = s.tlen[a] + s.tlen[b] - skip;
			buf_reserve(&s.tok, jl);
			memcpy(s.tok.p + s.tok.len, s.tok.p + s.toff[a], s.tlen[a]);
			memcpy(s.tok.p + s.tok.len + s.tlen[a], s.tok.p + s.toff[b] + skip, s.tlen[b] - skip);
			int64_t old = tok_find(&s, s.tok.p + s.tok.len, jl);
			if (old >= 0) {
				z = (uint32_t)old;
			} else {
				z = add_token(&s, s.tok.p + s.tok.len, jl, "", 0);
				tok_index(&s, z);
			}
		}
		if (merges == mcap) {
			mcap = mcap ? mcap * 2 : 1024;
			mp = xrealloc(mp, 2 * mcap * sizeof *mp);
		}
		mp[2 * merges] = a;
		mp[2 * merges + 1] = b;
		merges++;
		round++;
		ntouched = 0;
		uint32_t *ws = p->words;
		uint32_t nw = p->nw;
		p->words = NULL;
		p->nw = p->cw = 0;
		for (uint32_t k = 0; k < nw; k++) {
			uint32_t w = ws[k];
			if (s.stamp[w] == round)
				continue;
			s.stamp[w] = round;
			uint32_t *y = s.sym + s.woff[w], len = s.wlen[w];
			int64_t c = (int64_t)s.wcount[w];
			int has = 0;
			for (uint32_t i = 0; i + 1 < len; i++)
				if (y[i] == a && y[i + 1] == b) {
					has = 1;
					break;
				}
			if (!has)
				continue;
			for (uint32_t i = 0; i + 1 < len; i++)
				s.pairs[pair_get(&s, y[i], y[i + 1], 0)].count -= c;
			uint32_t o2 = 0;
			for (uint32_t i = 0; i < len;) {
				if (i + 1 < len && y[i] == a && y[i + 1] == b) {
					y[o2++] = z;
					i += 2;
				} else {
					y[o2++] = y[i++];
				}
			}
			s.wlen[w] = len = o2;
			for (uint32_t i = 0; i + 1 < len; i++) {
				uint32_t pi = pair_get(&s, y[i], y[i + 1], 1);
				pair *q = &s.pairs[pi];
				q->count += c;
				if (y[i] == z || y[i + 1] == z) {
					pair_add_word(q, w);
					if (ntouched == ctouched) {
						ctouched = ctouched ? ctouched * 2 : 256;
						touched = xrealloc(touched, ctouched * sizeof *touched);
					}
					touched[ntouched++] = pi;
				}
			}
		}
		free(ws);
		for (size_t k = 0; k < ntouched; k++) {
			pair *q = &s.pairs[touched[k]];
			if (q->count > 0 && (k == 0 || touched[k - 1] != touched[k]))
				heap_push(&s, q->count, touched[k]);
		}
		if (o->progress && merges % 64 == 0)
			o->progress(o->ud, (double)merges, (double)(want - (wp ? 0 : 256)));
	}
	free(touched);
	memset(st, 0, sizeof *st);
	st->merges = merges;
	st->merge_ids = mp;
	st->words = s.nwords;
	/* the vocabulary, as token bytes, for the caller */
	buf_init(&st->tokens);
	st->lens = xmalloc((s.ntok ? s.ntok : 1) * sizeof *st->lens);
	for (size_t i = 0; i < s.ntok; i++) {
		buf_add(&st->tokens, s.tok.p + s.toff[i], s.tlen[i]);
		st->lens[i] = s.tlen[i];
	}
	st->ntokens = s.ntok;
	state_free(&s);
	return 0;
}

