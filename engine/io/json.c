#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "../util.h"

#define MAX_DEPTH 256

typedef struct chunk {
	struct chunk *prev;
	size_t used, cap;
	char data[];
} chunk;

struct jarena {
	chunk *cur;
};

jarena *json_arena_new(void) { return xcalloc(1, sizeof(jarena)); }

static void *arena_alloc(jarena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!a->cur || a->cur->used + n > a->cur->cap) {
		size_t cap = n > 65536 ? n : 65536;
		if (a->cur && a->cur->cap * 2 > cap && a->cur->cap < ((size_t)64 << 20))
			cap = a->cur->cap * 2 > n ? a->cur->cap * 2 : n;
		chunk *c = xmalloc(sizeof *c + cap);
		c->prev = a->cur;
		c->used = 0;
		c->cap = cap;
		a->cur = c;
	}
	void *p = a->cur->data + a->cur->used;
	a->cur->used += n;
	return p;
}

void json_arena_reset(jarena *a)
{
	/* keep the newest (largest) chunk, free the rest */
	if (!a->cur)
		return;
	chunk *c = a->cur->prev;
	while (c) {
		chunk *p = c->prev;
		free(c);
		c = p;
	}
	a->cur->prev = NULL;
	a->cur->used = 0;
}

void json_arena_free(jarena *a)
{
	if (!a)
		return;
	chunk *c = a->cur;
	while (c) {
		chunk *p = c->prev;
		free(c);
		c = p;
	}
	free(a);
}

typedef struct P {
	jarena *a;
	const char *p;
	size_t n, i;
	jerror *err;
} P;

static jnode *fail(P *s, const char *what)
{
	if (!s->err->what) {
		s->err->what = what;
		s->err->off = s->i;
	}
	return NULL;
}

static void ws(P *s)
{
	while (s->i < s->n) {
		char c = s->p[s->i];
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
			s->i++;
		else
			break;
	}
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
		else return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63));
		o[2] = (char)(0x80 | (cp & 63));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
	o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
	return 4;
}

/* Parses a string at s->i (which is at '"'); sets out and len. */
/* The first index at or after i of a byte that ends a plain run in a
 * string: '"', '\\' or a control byte; n when none. Eight bytes at a time. */
static size_t plain_run(const char *p, size_t i, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	while (i + 8 <= n) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
		uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | (w - ones * 0x20);
		hit &= ~w & highs; /* bytes >= 0x80 never end a run */
		if (hit)
			return i + (size_t)(__builtin_ctzll(hit) >> 3);
		i += 8;
	}
	while (i < n && p[i] != '"' && p[i] != '\\' && (unsigned char)p[i] >= 0x20)
		i++;
	return i;
}

static int string(P *s, const char **out, size_t *len)
{
	size_t start = ++s->i;
	const char *p = s->p;
	/* fast scan: no escapes */
	size_t i = plain_run(p, start, s->n);
	while (i < s->n) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"') {
			*out = p + start;
			*len = i - start;
			s->i = i + 1;
			return 0;
		}
		if (c == '\\' || c < 0x20)
			break;
		i++;
	}
	if (i >= s->n) {
		s->i = s->n;
		fail(s, "unterminated string");
		return -1;
	}
	/* slow path: find the closing quote, then decode into the arena (the
	 * decoded text is never longer than the raw text) */
	size_t end = i;
	while (end < s->n && p[end] != '"')
		end = p[end] == '\\' ? end + 2 : (p[end] < 0x20 && p[end] >= 0 ? end + 1 : plain_run(p, end, s->n));
	size_t max = (end < s->n ? end : s->n) - start;
	char *o = arena_alloc(s->a, max + 1);
	size_t k = i - start;
	memcpy(o, p + start, k);
	while (i < s->n) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"') {
			o[k] = 0;
			*out = o;
			*len = k;
			s->i = i + 1;
			return 0;
		}
		if (c < 0x20) {
			s->i = i;
			fail(s, "control character in string (escape it)");
			return -1;
		}
		if (c != '\\') {
			size_t j = plain_run(p, i + 1, s->n); /* c and the plain bytes after it */
			memcpy(o + k, p + i, j - i);
			k += j - i;
			i = j;
			continue;
		}
		if (i + 1 >= s->n)
			break;
		char e = p[i + 1];
		i += 2;
		switch (e) {
		case '"': o[k++] = '"'; break;
		case '\\': o[k++] = '\\'; break;
		case '/': o[k++] = '/'; break;
		case 'b': o[k++] = '\b'; break;
		case 'f': o[k++] = '\f'; break;
		case 'n': o[k++] = '\n'; break;
		case 'r': o[k++] = '\r'; break;
		case 't': o[k++] = '\t'; break;
		case 'u': {
			unsigned cp;
			if (i + 4 > s->n || hex4(p + i, &cp) != 0) {
				s->i = i - 2;
				fail(s, "bad \\u escape");
				return -1;
			}
			i += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				unsigned lo;
				if (i + 6 > s->n || p[i] != '\\' || p[i + 1] != 'u' || hex4(p + i + 2, &lo) != 0 ||
				    lo < 0xDC00 || lo > 0xDFFF) {
					s->i = i - 6;
					fail(s, "lone surrogate in \\u escape");
					return -1;
				}
				i += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				s->i = i - 6;
				fail(s, "lone surrogate in \\u escape");
				return -1;
			}
			k += put_utf8(o + k, cp);
			break;
		}
		default:
			s->i = i - 2;
			fail(s, "bad escape in string");
			return -1;
		}
	}
	s->i = s->n;
	fail(s, "unterminated string");
	return -1;
}

static jnode *value(P *s, int depth);

static jnode *node(P *s, jtype t)
{
	jnode *j = arena_alloc(s->a, sizeof *j);
	memset(j, 0, sizeof *j);
	j->t = t;
	j->off = s->i;
	return j;
}

static int digits(P *s)
{
	size_t st = s->i;
	while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
		s->i++;
	return s->i > st;
}

static jnode *number(P *s)
{
	jnode *j = node(s, J_NUM);
	size_t st = s->i;
	if (s->p[s->i] == '-')
		s->i++;
	if (s->i < s->n && s->p[s->i] == '0') {
		s->i++;
	} else if (!digits(s)) {
		return fail(s, "bad number");
	}
	if (s->i < s->n && s->p[s->i] == '.') {
		s->i++;
		if (!digits(s))
			return fail(s, "bad number: digits expected after '.'");
	}
	if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
			s->i++;
		if (!digits(s))
			return fail(s, "bad number: digits expected in exponent");
	}
	j->s = s->p + st;
	j->len = s->i - st;
	return j;
}

static jnode *literal(P *s, const char *word, jtype t)
{
	size_t n = strlen(word);
	if (s->n - s->i < n || memcmp(s->p + s->i, word, n) != 0)
		return fail(s, "unexpected character (expected a JSON value)");
	jnode *j = node(s, t);
	s->i += n;
	return j;
}

static jnode *value(P *s, int depth)
{
	ws(s);
	if (s->i >= s->n)
		return fail(s, "unexpected end of input (expected a JSON value)");
	if (depth > MAX_DEPTH)
		return fail(s, "nested too deeply");
	char c = s->p[s->i];
	switch (c) {
	case '"': {
		jnode *j = node(s, J_STR);
		if (string(s, &j->s, &j->len) != 0)
			return NULL;
		return j;
	}
	case '{':
	case '[': {
		int obj = c == '{';
		jnode *j = node(s, obj ? J_OBJ : J_ARR);
		s->i++;
		ws(s);
		jnode **tail = &j->kid;
		if (s->i < s->n && s->p[s->i] == (obj ? '}' : ']')) {
			s->i++;
			return j;
		}
		for (;;) {
			const char *key = NULL;
			size_t klen = 0;
			if (obj) {
				ws(s);
				if (s->i >= s->n || s->p[s->i] != '"')
					return fail(s, s->i >= s->n ? "unexpected end of input in object" : "expected a member name in quotes");
				if (string(s, &key, &klen) != 0)
					return NULL;
				ws(s);
				if (s->i >= s->n || s->p[s->i] != ':')
					return fail(s, "expected ':' after member name");
				s->i++;
			}
			jnode *v = value(s, depth + 1);
			if (!v)
				return NULL;
			v->key = key;
			v->klen = klen;
			*tail = v;
			tail = &v->next;
			j->n++;
			ws(s);
			if (s->i >= s->n)
				return fail(s, obj ? "unexpected end of input in object" : "unexpected end of input in array");
			char d = s->p[s->i++];
			if (d == ',')
				continue;
			if (d == (obj ? '}' : ']'))
				return j;
			s->i--;
			return fail(s, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		}
	}
	case 't': return literal(s, "true", J_TRUE);
	case 'f': return literal(s, "false", J_FALSE);
	case 'n': return literal(s, "null", J_NULL);
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return number(s);
		return fail(s, "unexpected character (expected a JSON value)");
	}
}

jnode *json_parse_next(jarena *a, const char *p, size_t n, size_t *pos, jerror *err)
{
	P s = {a, p, n, *pos, err};
	err->what = NULL;
	jnode *j = value(&s, 0);
	*pos = s.i;
	return j;
}

jnode *json_parse(jarena *a, const char *p, size_t n, jerror *err)
{
	size_t pos = 0;
	/* a UTF-8 byte order mark is allowed before a document */
	if (n >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
		pos = 3;
	jnode *j = json_parse_next(a, p, n, &pos, err);
	if (!j)
		return NULL;
	P s = {a, p, n, pos, err};
	ws(&s);
	if (s.i != n) {
		err->what = "trailing characters after the JSON value";
		err->off = s.i;
		return NULL;
	}
	return j;
}

const jnode *json_member(const jnode *obj, const char *name, size_t nlen)
{
	if (!obj || obj->t != J_OBJ)
		return NULL;
	const jnode *found = NULL;
	for (const jnode *k = obj->kid; k; k = k->next)
		if (k->klen == nlen && memcmp(k->key, name, nlen) == 0)
			found = k; /* the last one wins, as in most parsers */
	return found;
}

const jnode *json_path(const jnode *root, const char *path)
{
	const jnode *cur = root;
	const char *p = path;
	while (cur && *p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (cur->t == J_OBJ) {
			cur = json_member(cur, p, len);
		} else if (cur->t == J_ARR) {
			char *end;
			long idx = strtol(p, &end, 10);
			if (end != p + len || idx < 0)
				return NULL;
			const jnode *k = cur->kid;
			while (k && idx--)
				k = k->next;
			cur = k;
		} else {
			return NULL;
		}
		p += len;
		if (*p == '.')
			p++;
	}
	return cur;
}

void json_line_col(const char *p, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, last = 0;
	for (size_t i = 0; i < off; i++)
		if (p[i] == '\n')
			l++, last = i + 1;
	*line = l;
	*col = off - last + 1;
}

int json_number(const jnode *j, double *v)
{
	char tmp[64];
	if (!j || j->t != J_NUM || j->len >= sizeof tmp)
		return -1;
	memcpy(tmp, j->s, j->len);
	tmp[j->len] = 0;
	char *end;
	*v = strtod(tmp, &end);
	return *end ? -1 : 0;
}

int json_int(const jnode *j, long long lo, long long hi, long long *v)
{
	double d;
	if (json_number(j, &d) != 0 || d != (double)(long long)d || d < (double)lo || d > (double)hi)
		return -1;
	*v = (long long)d;
	return 0;
}

void json_write_node(buf *out, const jnode *j)
{
	switch (j->t) {
	case J_NULL: buf_adds(out, "null"); break;
	case J_FALSE: buf_adds(out, "false"); break;
	case J_TRUE: buf_adds(out, "true"); break;
	case J_NUM: buf_add(out, j->s, j->len); break;
	case J_STR: buf_json_strn(out, j->s, j->len); break;
	case J_ARR:
	case J_OBJ:
		buf_addc(out, j->t == J_ARR ? '[' : '{');
		for (const jnode *k = j->kid; k; k = k->next) {
			if (k != j->kid)
				buf_addc(out, ',');
			if (j->t == J_OBJ) {
				buf_json_strn(out, k->key, k->klen);
				buf_addc(out, ':');
			}
			json_write_node(out, k);
		}
		buf_addc(out, j->t == J_ARR ? ']' : '}');
		break;
	}
}
