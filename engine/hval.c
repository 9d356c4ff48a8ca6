#include "hval.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

hval *hval_new(hv_type t)
{
	hval *v = xcalloc(1, sizeof *v);
	v->t = t;
	return v;
}

hval *hval_bool(int b) { hval *v = hval_new(HV_BOOL); v->b = !!b; return v; }
hval *hval_int(long long i) { hval *v = hval_new(HV_INT); v->i = i; return v; }
hval *hval_float(double f) { hval *v = hval_new(HV_FLOAT); v->f = f; return v; }

hval *hval_str(const char *s, size_t n)
{
	hval *v = hval_new(HV_STR);
	v->s = xstrndup(s, n);
	v->slen = n;
	return v;
}

void hval_clear(hval *v)
{
	free(v->s);
	for (size_t i = 0; i < v->n; i++) {
		hval_clear(&v->v[i]);
		if (v->k)
			free(v->k[i]);
	}
	free(v->v);
	free(v->k);
	v->s = NULL;
	v->v = NULL;
	v->k = NULL;
	v->n = 0;
}

void hval_free(hval *v)
{
	if (!v)
		return;
	hval_clear(v);
	free(v);
}

static void copy_into(hval *dst, const hval *src)
{
	*dst = *src;
	dst->s = src->s ? xstrndup(src->s, src->slen) : NULL;
	dst->v = NULL;
	dst->k = NULL;
	if (src->n) {
		dst->v = xcalloc(src->n, sizeof *dst->v);
		for (size_t i = 0; i < src->n; i++)
			copy_into(&dst->v[i], &src->v[i]);
		if (src->k) {
			dst->k = xcalloc(src->n, sizeof *dst->k);
			for (size_t i = 0; i < src->n; i++)
				dst->k[i] = xstrdup(src->k[i]);
		}
	}
}

hval *hval_dup(const hval *v)
{
	hval *d = xcalloc(1, sizeof *d);
	copy_into(d, v);
	return d;
}

void hval_list_push(hval *list, hval *child)
{
	list->v = xrealloc(list->v, (list->n + 1) * sizeof *list->v);
	list->v[list->n++] = *child;
	free(child);
}

void hval_map_set(hval *map, const char *key, hval *child)
{
	size_t lo = 0, hi = map->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(map->k[mid], key);
		if (c == 0) {
			hval_clear(&map->v[mid]);
			map->v[mid] = *child;
			free(child);
			return;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	map->v = xrealloc(map->v, (map->n + 1) * sizeof *map->v);
	map->k = xrealloc(map->k, (map->n + 1) * sizeof *map->k);
	memmove(map->v + lo + 1, map->v + lo, (map->n - lo) * sizeof *map->v);
	memmove(map->k + lo + 1, map->k + lo, (map->n - lo) * sizeof *map->k);
	map->v[lo] = *child;
	map->k[lo] = xstrdup(key);
	map->n++;
	free(child);
}

const hval *hval_get(const hval *map, const char *key)
{
	if (!map || map->t != HV_MAP)
		return NULL;
	size_t lo = 0, hi = map->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(map->k[mid], key);
		if (c == 0)
			return &map->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const char *hval_get_str(const hval *map, const char *key, const char *def)
{
	const hval *v = hval_get(map, key);
	return v && v->t == HV_STR ? v->s : def;
}

long long hval_get_int(const hval *map, const char *key, long long def)
{
	const hval *v = hval_get(map, key);
	if (!v)
		return def;
	if (v->t == HV_INT)
		return v->i;
	if (v->t == HV_FLOAT)
		return (long long)v->f;
	return def;
}

double hval_get_num(const hval *map, const char *key, double def)
{
	const hval *v = hval_get(map, key);
	if (!v)
		return def;
	if (v->t == HV_INT)
		return (double)v->i;
	if (v->t == HV_FLOAT)
		return v->f;
	return def;
}

int hval_get_bool(const hval *map, const char *key, int def)
{
	const hval *v = hval_get(map, key);
	return v && v->t == HV_BOOL ? v->b : def;
}

static void encode_str(buf *out, const char *s, size_t n)
{
	buf_addc(out, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': buf_adds(out, "\\\""); break;
		case '\\': buf_adds(out, "\\\\"); break;
		case '\n': buf_adds(out, "\\n"); break;
		case '\t': buf_adds(out, "\\t"); break;
		case '\r': buf_adds(out, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				buf_printf(out, "\\x%02x", c);
			else
				buf_addc(out, (char)c);
		}
	}
	buf_addc(out, '"');
}

static int is_ident(const char *s)
{
	if (!(isalpha((unsigned char)*s) || *s == '_'))
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_'))
			return 0;
	return 1;
}

void hval_encode(buf *out, const hval *v)
{
	char tmp[40];
	switch (v->t) {
	case HV_NIL: buf_adds(out, "nil"); break;
	case HV_BOOL: buf_adds(out, v->b ? "true" : "false"); break;
	case HV_INT: buf_printf(out, "%lld", v->i); break;
	case HV_FLOAT: fmt_double(tmp, v->f); buf_adds(out, tmp); break;
	case HV_STR: encode_str(out, v->s, v->slen); break;
	case HV_FN: buf_adds(out, "fn:"); buf_add(out, v->s, v->slen); break;
	case HV_LIST:
		buf_addc(out, '[');
		for (size_t i = 0; i < v->n; i++) {
			if (i)
				buf_addc(out, ',');
			hval_encode(out, &v->v[i]);
		}
		buf_addc(out, ']');
		break;
	case HV_MAP:
		buf_addc(out, '{');
		for (size_t i = 0; i < v->n; i++) {
			if (i)
				buf_addc(out, ',');
			if (is_ident(v->k[i]))
				buf_adds(out, v->k[i]);
			else
				encode_str(out, v->k[i], strlen(v->k[i]));
			buf_addc(out, '=');
			hval_encode(out, &v->v[i]);
		}
		buf_addc(out, '}');
		break;
	}
}

void hval_encode_lines(buf *out, const hval *map)
{
	for (size_t i = 0; map && map->t == HV_MAP && i < map->n; i++) {
		buf_adds(out, map->k[i]);
		buf_addc(out, '=');
		hval_encode(out, &map->v[i]);
		buf_addc(out, '\n');
	}
}

int hval_equal(const hval *a, const hval *b)
{
	buf x, y;
	buf_init(&x);
	buf_init(&y);
	hval_encode(&x, a);
	hval_encode(&y, b);
	int eq = x.len == y.len && memcmp(x.p, y.p, x.len) == 0;
	buf_free(&x);
	buf_free(&y);
	return eq;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct {
	const char *p, *end;
} dec;

static hval *dec_value(dec *d, int depth);

static int dec_strbody(dec *d, buf *b)
{
	if (d->p >= d->end || *d->p != '"')
		return -1;
	d->p++;
	while (d->p < d->end && *d->p != '"') {
		char c = *d->p++;
		if (c != '\\') {
			buf_addc(b, c);
			continue;
		}
		if (d->p >= d->end)
			return -1;
		c = *d->p++;
		switch (c) {
		case 'n': buf_addc(b, '\n'); break;
		case 't': buf_addc(b, '\t'); break;
		case 'r': buf_addc(b, '\r'); break;
		case '"': buf_addc(b, '"'); break;
		case '\\': buf_addc(b, '\\'); break;
		case 'x': {
			if (d->end - d->p < 2)
				return -1;
			char hx[3] = {d->p[0], d->p[1], 0};
			char *e;
			long x = strtol(hx, &e, 16);
			if (*e)
				return -1;
			buf_addc(b, (char)x);
			d->p += 2;
			break;
		}
		default: return -1;
		}
	}
	if (d->p >= d->end)
		return -1;
	d->p++;
	return 0;
}

static hval *dec_value(dec *d, int depth)
{
	if (d->p >= d->end || depth > 64)
		return NULL;
	char c = *d->p;
	size_t left = (size_t)(d->end - d->p);
	if (c == '"') {
		buf b;
		buf_init(&b);
		if (dec_strbody(d, &b) != 0) {
			buf_free(&b);
			return NULL;
		}
		hval *v = hval_str(b.p ? b.p : "", b.len);
		buf_free(&b);
		return v;
	}
	if (c == '[' || c == '{') {
		int is_map = c == '{';
		hval *v = hval_new(is_map ? HV_MAP : HV_LIST);
		d->p++;
		char close = is_map ? '}' : ']';
		while (d->p < d->end && *d->p != close) {
			if (v->n) {
				if (*d->p != ',')
					goto bad;
				d->p++;
			}
			char *key = NULL;
			if (is_map) {
				buf kb;
				buf_init(&kb);
				if (d->p < d->end && *d->p == '"') {
					if (dec_strbody(d, &kb) != 0) {
						buf_free(&kb);
						goto bad;
					}
				} else {
					while (d->p < d->end && *d->p != '=')
						buf_addc(&kb, *d->p++);
				}
				if (d->p >= d->end || *d->p != '=') {
					buf_free(&kb);
					goto bad;
				}
				d->p++;
				key = buf_take(&kb);
			}
			hval *child = dec_value(d, depth + 1);
			if (!child) {
				free(key);
				goto bad;
			}
			if (is_map) {
				hval_map_set(v, key, child);
				free(key);
			} else {
				hval_list_push(v, child);
			}
		}
		if (d->p >= d->end)
			goto bad;
		d->p++;
		return v;
	bad:
		hval_free(v);
		return NULL;
	}
	if (left >= 3 && !strncmp(d->p, "nil", 3)) {
		d->p += 3;
		return hval_new(HV_NIL);
	}
	if (left >= 4 && !strncmp(d->p, "true", 4)) {
		d->p += 4;
		return hval_bool(1);
	}
	if (left >= 5 && !strncmp(d->p, "false", 5)) {
		d->p += 5;
		return hval_bool(0);
	}
	if (left >= 3 && !strncmp(d->p, "fn:", 3)) {
		d->p += 3;
		const char *s = d->p;
		while (d->p < d->end && isxdigit((unsigned char)*d->p))
			d->p++;
		hval *v = hval_str(s, (size_t)(d->p - s));
		v->t = HV_FN;
		return v;
	}
	/* number */
	const char *s = d->p;
	while (d->p < d->end && strchr("+-0123456789.eEinfa", *d->p))
		d->p++;
	if (d->p == s)
		return NULL;
	char tmp[64];
	size_t n = (size_t)(d->p - s);
	if (n >= sizeof tmp)
		return NULL;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	char *e;
	if (strpbrk(tmp, ".eEn")) {
		double f = strtod(tmp, &e);
		if (*e)
			return NULL;
		return hval_float(f);
	}
	errno = 0;
	long long i = strtoll(tmp, &e, 10);
	if (*e || errno)
		return NULL;
	return hval_int(i);
}

hval *hval_decode(const char *s, size_t n)
{
	dec d = {s, s + n};
	hval *v = dec_value(&d, 0);
	if (v && d.p != d.end) {
		hval_free(v);
		return NULL;
	}
	return v;
}

void hval_json(buf *out, const hval *v)
{
	switch (v ? v->t : HV_NIL) {
	case HV_NIL: buf_adds(out, "null"); break;
	case HV_BOOL: buf_adds(out, v->b ? "true" : "false"); break;
	case HV_INT: buf_printf(out, "%lld", v->i); break;
	case HV_FLOAT: buf_json_num(out, v->f); break;
	case HV_STR: buf_json_strn(out, v->s, v->slen); break;
	case HV_FN: buf_adds(out, "{\"function\":"); buf_json_strn(out, v->s, v->slen); buf_addc(out, '}'); break;
	case HV_LIST:
	case HV_MAP:
		buf_addc(out, v->t == HV_LIST ? '[' : '{');
		for (size_t i = 0; i < v->n; i++) {
			if (i)
				buf_addc(out, ',');
			if (v->t == HV_MAP) {
				buf_json_str(out, v->k[i]);
				buf_addc(out, ':');
			}
			hval_json(out, &v->v[i]);
		}
		buf_addc(out, v->t == HV_LIST ? ']' : '}');
		break;
	}
}
