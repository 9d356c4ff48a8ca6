#include "gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"

enum { V_U8 = 0, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR, V_U64, V_I64, V_F64 };
#define ALIGN 32

/* --- numbers and blocks ------------------------------------------------------------ */

uint16_t gguf_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
	int exp = (int)((x >> 23) & 0xff);
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
	int e = exp - 127 + 15;
	if (e >= 0x1f)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) { /* a subnormal half (or zero): h = the full mantissa >> (14 - e), rounded */
		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000u;
		int sh = 14 - e;
		uint32_t h = mant >> sh, rem = mant & ((1u << sh) - 1), half = 1u << (sh - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++; /* a carry into the exponent is right, up to infinity */
	return (uint16_t)(sign | h);
}

float gguf_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, x;
	if (exp == 0) {
		float v = ldexpf((float)mant, -24);
		return sign ? -v : v;
	}
	if (exp == 31)
		x = sign | 0x7f800000u | (mant << 13);
	else
		x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
	float f;
	memcpy(&f, &x, 4);
	return f;
}

int gguf_type_parse(const char *s, int *ftype)
{
	static const struct {
		const char *n;
		int t, ft;
	} k[] = {{"f32", GGUF_F32, GGUF_FTYPE_F32}, {"f16", GGUF_F16, GGUF_FTYPE_F16}, {"q8_0", GGUF_Q8_0, GGUF_FTYPE_Q8_0},
	         {"q4_0", GGUF_Q4_0, GGUF_FTYPE_Q4_0}, {"q6_k", GGUF_Q6_K, GGUF_FTYPE_Q6_K},
	         {"q4_k_m", GGUF_Q4_K, GGUF_FTYPE_Q4_K_M}, {"q5_k_m", GGUF_Q5_K, GGUF_FTYPE_Q5_K_M}};
	for (size_t i = 0; i < sizeof k / sizeof *k; i++)
		if (!strcmp(s, k[i].n)) {
			if (ftype)
				*ftype = k[i].ft;
			return k[i].t;
		}
	return -1;
}

const char *gguf_type_name(int type)
{
	return type == GGUF_F32 ? "F32" : type == GGUF_F16 ? "F16" : type == GGUF_Q8_0 ? "Q8_0" : type == GGUF_Q4_0 ? "Q4_0" : type == GGUF_Q6_K ? "Q6_K" : type == GGUF_Q4_K ? "Q4_K" : type == GGUF_Q5_K ? "Q5_K" : "?";
}

int gguf_block(int type, size_t *bytes)
{
	*bytes = type == GGUF_F32 ? 4 : type == GGUF_F16 ? 2 : type == GGUF_Q4_0 ? 18 : type == GGUF_Q6_K ? 210 :
	         type == GGUF_Q4_K ? 144 : type == GGUF_Q5_K ? 176 : 34;
	return type == GGUF_Q6_K || type == GGUF_Q4_K || type == GGUF_Q5_K ? 256 : type == GGUF_Q8_0 || type == GGUF_Q4_0 ? 32 : 1;
}

size_t gguf_row_bytes(int type, size_t n)
{
	size_t b;
	int k = gguf_block(type, &b);
	return n / (size_t)k * b;
}

/* Q4_K and Q5_K (bits 4 or 5): one super-block of 256 into o */
static void quant_k(const float *x, uint8_t *o, int bits)
{
	int top = (1 << bits) - 1;
	float scale[8], mn[8], smax = 0, mmax = 0;
	for (int j = 0; j < 8; j++) {
		float lo = 0, hi = -INFINITY;
		for (int i = 0; i < 32; i++) {
			lo = fminf(lo, x[j * 32 + i]);
			hi = fmaxf(hi, x[j * 32 + i]);
		}
		scale[j] = (hi - lo) / (float)top;
		mn[j] = -lo;
		smax = fmaxf(smax, scale[j]);
		mmax = fmaxf(mmax, mn[j]);
	}
	uint16_t hd = gguf_f16(smax / 63.0f), hm = gguf_f16(mmax / 63.0f);
	float d = gguf_f32(hd), dmin = gguf_f32(hm);
	uint8_t sc[8], mq[8];
	for (int j = 0; j < 8; j++) {
		long a = d ? lroundf(scale[j] / d) : 0, b = dmin ? lroundf(mn[j] / dmin) : 0;
		sc[j] = (uint8_t)(a > 63 ? 63 : a);
		mq[j] = (uint8_t)(b > 63 ? 63 : b);
	}
	memcpy(o, &hd, 2);
	memcpy(o + 2, &hm, 2);
	uint8_t *scales = o + 4, *qh = bits == 5 ? o + 16 : NULL, *qs = bits == 5 ? o + 48 : o + 16;
	memset(scales, 0, 12);
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			scales[j] |= sc[j] & 63;
			scales[j + 4] |= mq[j] & 63;
		} else {
			scales[j + 4] = (uint8_t)((sc[j] & 0xf) | (mq[j] & 0xf) << 4);
			scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
			scales[j] |= (uint8_t)((mq[j] >> 4) << 6);
		}
	}
	memset(qs, 0, 128);
	if (qh)
		memset(qh, 0, 32);
	for (int g = 0; g < 256; g++) {
		int j = g / 32, p = g / 64, l = g % 32, second = (g / 32) & 1;
		float s = d * (float)sc[j], m = dmin * (float)mq[j];
		long q = s ? lroundf((x[g] + m) / s) : 0;
		q = q < 0 ? 0 : q > top ? top : q;
		qs[32 * p + l] |= (uint8_t)((q & 0xf) << (second ? 4 : 0));
		if (qh && (q & 16))
			qh[l] |= (uint8_t)(1u << (2 * p + second));
	}
}

static void dequant_k(const uint8_t *o, float *y, int bits)
{
	uint16_t hd, hm;
	memcpy(&hd, o, 2);
	memcpy(&hm, o + 2, 2);
	float d = gguf_f32(hd), dmin = gguf_f32(hm);
	const uint8_t *q = o + 4, *qh = bits == 5 ? o + 16 : NULL, *qs = bits == 5 ? o + 48 : o + 16;
	for (int j = 0; j < 8; j++) {
		int sc, m;
		if (j < 4) {
			sc = q[j] & 63;
			m = q[j + 4] & 63;
		} else {
			sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
			m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
		}
		int p = j / 2, second = j & 1;
		for (int l = 0; l < 32; l++) {
			int v = second ? qs[32 * p + l] >> 4 : qs[32 * p + l] & 0xf;
			if (qh && (qh[l] >> (2 * p + second) & 1))
				v += 16;
			y[j * 32 + l] = d * (float)sc * (float)v - dmin * (float)m;
		}
	}
}

void gguf_quantize(int type, const float *x, size_t n, void *out)
{
	uint8_t *o = out;
	if (type == GGUF_F32) {
		memcpy(o, x, n * 4);
		return;
	}
	if (type == GGUF_F16) {
		for (size_t i = 0; i < n; i++) {
			uint16_t h = gguf_f16(x[i]);
			memcpy(o + 2 * i, &h, 2);
		}
		return;
	}
	if (type == GGUF_Q4_K || type == GGUF_Q5_K) {
		size_t bb = type == GGUF_Q4_K ? 144 : 176;
		for (size_t b = 0; b < n / 256; b++)
			quant_k(x + b * 256, o + b * bb, type == GGUF_Q4_K ? 4 : 5);
		return;
	}
	if (type == GGUF_Q6_K) {
		for (size_t b = 0; b < n / 256; b++, x += 256, o += 210) {
			float sub[16], smax = 0;
			for (int j = 0; j < 16; j++) {
				float amax = 0;
				for (int i = 0; i < 16; i++)
					amax = fmaxf(amax, fabsf(x[j * 16 + i]));
				sub[j] = amax / 31.0f;
				smax = fmaxf(smax, sub[j]);
			}
			float d = smax / 127.0f, id = d ? 1.0f / d : 0.0f;
			uint8_t *ql = o, *qh = o + 128;
			int8_t *sc = (int8_t *)(o + 192);
			memset(o, 0, 192);
			for (int j = 0; j < 16; j++) {
				int v = (int)lroundf(sub[j] * id);
				sc[j] = (int8_t)(v > 127 ? 127 : v);
			}
			uint16_t h = gguf_f16(d);
			memcpy(o + 208, &h, 2);
			d = gguf_f32(h); /* the scale as the file keeps it */
			for (int g = 0; g < 256; g++) {
				float s = d * (float)sc[g / 16];
				int q = s ? (int)lroundf(x[g] / s) : 0;
				q = q < -32 ? -32 : q > 31 ? 31 : q;
				unsigned u = (unsigned)(q + 32), half = (unsigned)g / 128, p = (unsigned)g % 128, k = p / 32, l = p % 32;
				uint8_t *lo = ql + half * 64 + l + (k & 1) * 32;
				*lo = (uint8_t)(*lo | (k < 2 ? (u & 0xf) : (u & 0xf) << 4));
				qh[half * 32 + l] = (uint8_t)(qh[half * 32 + l] | ((u >> 4) & 3) << (2 * k));
			}
		}
		return;
	}
	if (type == GGUF_Q4_0) {
		for (size_t b = 0; b < n / 32; b++, x += 32, o += 18) {
			float amax = 0, mx = 0;
			for (int j = 0; j < 32; j++)
				if (fabsf(x[j]) > amax) {
					amax = fabsf(x[j]);
					mx = x[j];
				}
			float d = mx / -8.0f, id = d ? 1.0f / d : 0.0f;
			uint16_t h = gguf_f16(d);
			memcpy(o, &h, 2);
			for (int j = 0; j < 16; j++) {
				int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
				q0 = q0 > 15 ? 15 : q0;
				q1 = q1 > 15 ? 15 : q1;
				o[2 + j] = (uint8_t)(q0 | (q1 << 4));
			}
		}
		return;
	}
	for (size_t b = 0; b < n / 32; b++, x += 32, o += 34) { /* Q8_0 */
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
		uint16_t h = gguf_f16(d);
		memcpy(o, &h, 2);
		for (int j = 0; j < 32; j++)
			o[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
	}
}

void gguf_dequantize(int type, const void *q, size_t n, float *out)
{
	const uint8_t *p = q;
	if (type == GGUF_F32) {
		memcpy(out, p, n * 4);
		return;
	}
	if (type == GGUF_F16) {
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			out[i] = gguf_f32(h);
		}
		return;
	}
	if (type == GGUF_Q4_K || type == GGUF_Q5_K) {
		size_t bb = type == GGUF_Q4_K ? 144 : 176;
		for (size_t b = 0; b < n / 256; b++)
			dequant_k(p + b * bb, out + b * 256, type == GGUF_Q4_K ? 4 : 5);
		return;
	}
	if (type == GGUF_Q6_K) {
		for (size_t b = 0; b < n / 256; b++, p += 210) {
			uint16_t h;
			memcpy(&h, p + 208, 2);
			float d = gguf_f32(h);
			const int8_t *sc = (const int8_t *)(p + 192);
			for (int g = 0; g < 256; g++) {
				unsigned half = (unsigned)g / 128, q = (unsigned)g % 128, k = q / 32, l = q % 32;
				uint8_t lo = p[half * 64 + l + (k & 1) * 32];
				unsigned u = (k < 2 ? lo & 0xf : lo >> 4) | ((p[128 + half * 32 + l] >> (2 * k)) & 3) << 4;
				out[b * 256 + (size_t)g] = d * (float)sc[g / 16] * (float)((int)u - 32);
			}
		}
		return;
	}
	if (type == GGUF_Q4_0) {
		for (size_t b = 0; b < n / 32; b++, p += 18) {
			uint16_t h;
			memcpy(&h, p, 2);
			float d = gguf_f32(h);
			for (int j = 0; j < 16; j++) {
				out[b * 32 + (size_t)j] = (float)((p[2 + j] & 0xf) - 8) * d;
				out[b * 32 + (size_t)j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
			}
		}
		return;
	}
	for (size_t b = 0; b < n / 32; b++, p += 34) {
		uint16_t h;
		memcpy(&h, p, 2);
		float d = gguf_f32(h);
		for (int j = 0; j < 32; j++)
			out[b * 32 + (size_t)j] = d * (float)(int8_t)p[2 + j];
	}
}

/* --- writing ----------------------------------------------------------------------- */

struct gguf_w {
	buf kv, ti, data;
	uint64_t nkv, nt;
};

gguf_w *gguf_new(void)
{
	gguf_w *g = xcalloc(1, sizeof *g);
	buf_init(&g->kv);
	buf_init(&g->ti);
	buf_init(&g->data);
	return g;
}

void gguf_free(gguf_w *g)
{
	if (!g)
		return;
	buf_free(&g->kv);
	buf_free(&g->ti);
	buf_free(&g->data);
	free(g);
}

static void put(buf *b, const void *p, size_t n) { buf_add(b, p, n); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s)
{
	size_t n = strlen(s);
	put_u64(b, n);
	put(b, s, n);
}

static void key(gguf_w *g, const char *k, uint32_t type)
{
	put_str(&g->kv, k);
	put_u32(&g->kv, type);
	g->nkv++;
}

void gguf_kv_str(gguf_w *g, const char *k, const char *v)
{
	key(g, k, V_STR);
	put_str(&g->kv, v);
}

void gguf_kv_u32(gguf_w *g, const char *k, uint32_t v)
{
	key(g, k, V_U32);
	put_u32(&g->kv, v);
}

void gguf_kv_f32(gguf_w *g, const char *k, float v)
{
	key(g, k, V_F32);
	put(&g->kv, &v, 4);
}

void gguf_kv_strs(gguf_w *g, const char *k, const char *const *v, size_t n)
{
	key(g, k, V_ARR);
	put_u32(&g->kv, V_STR);
	put_u64(&g->kv, n);
	for (size_t i = 0; i < n; i++)
		put_str(&g->kv, v[i]);
}

void gguf_kv_i32s(gguf_w *g, const char *k, const int32_t *v, size_t n)
{
	key(g, k, V_ARR);
	put_u32(&g->kv, V_I32);
	put_u64(&g->kv, n);
	put(&g->kv, v, n * 4);
}

void gguf_tensor(gguf_w *g, const char *name, int type, int ndim, const uint64_t *ne, const float *x)
{
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		n *= (size_t)ne[d];
	while (g->data.len % ALIGN)
		buf_addc(&g->data, 0);
	put_str(&g->ti, name);
	put_u32(&g->ti, (uint32_t)ndim);
	for (int d = 0; d < ndim; d++)
		put_u64(&g->ti, ne[d]);
	put_u32(&g->ti, (uint32_t)type);
	put_u64(&g->ti, g->data.len);
	size_t bytes = gguf_row_bytes(type, n), at = g->data.len;
	buf_reserve(&g->data, bytes);
	gguf_quantize(type, x, n, (uint8_t *)g->data.p + at);
	g->data.len = at + bytes;
	g->nt++;
}

int gguf_save(herr *e, gguf_w *g, const char *path)
{
	buf f;
	buf_init(&f);
	put(&f, "GGUF", 4);
	put_u32(&f, 3);
	put_u64(&f, g->nt);
	put_u64(&f, g->nkv);
	put(&f, g->kv.p, g->kv.len);
	put(&f, g->ti.p, g->ti.len);
	while (f.len % ALIGN)
		buf_addc(&f, 0);
	put(&f, g->data.p, g->data.len);
	int rc = fs_write_atomic(e, path, f.p, f.len);
	buf_free(&f);
	return rc;
}

/* --- reading ----------------------------------------------------------------------- */

typedef struct rd {
	const uint8_t *p, *end;
	int bad;
} rd;

static const uint8_t *take(rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *q = r->p;
	r->p += n;
	return q;
}
static uint32_t get_u32(rd *r)
{
	uint32_t v = 0;
	const uint8_t *q = take(r, 4);
	if (q)
		memcpy(&v, q, 4);
	return v;
}
static uint64_t get_u64(rd *r)
{
	uint64_t v = 0;
	const uint8_t *q = take(r, 8);
	if (q)
		memcpy(&v, q, 8);
	return v;
}

static size_t scalar_size(uint32_t t)
{
	static const size_t s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	return t < sizeof s / sizeof *s ? s[t] : 0;
}

/* skips one value of type t */
static void skip_value(rd *r, uint32_t t, int depth)
{
	if (t == V_STR) {
		take(r, (size_t)get_u64(r));
	} else if (t == V_ARR && depth < 4) {
		uint32_t et = get_u32(r);
		uint64_t n = get_u64(r);
		if (et != V_STR && et != V_ARR) {
			if (!scalar_size(et) || n > (uint64_t)(r->end - r->p) / scalar_size(et))
				r->bad = 1;
			else
				take(r, (size_t)n * scalar_size(et));
		} else
			for (uint64_t i = 0; i < n && !r->bad; i++)
				skip_value(r, et, depth + 1);
	} else if (scalar_size(t)) {
		take(r, scalar_size(t));
	} else {
		r->bad = 1;
	}
}

int gguf_open(herr *e, gguf_file *f, const char *path)
{
	memset(f, 0, sizeof *f);
	buf b;
	buf_init(&b);
	if (fs_read(e, path, &b) != 0)
		return -1;
	f->n = b.len;
	f->p = (uint8_t *)buf_take(&b);
	rd r = {f->p, f->p + f->n, 0};
	const uint8_t *magic = take(&r, 4);
	if (!magic || memcmp(magic, "GGUF", 4)) {
		gguf_close(f);
		return herr_set(e, "%s: not a GGUF file (no GGUF magic)", path);
	}
	f->version = get_u32(&r);
	f->nt = get_u64(&r);
	f->nkv = get_u64(&r);
	if (f->version != 3 || f->nt > 1u << 20 || f->nkv > 1u << 20) {
		gguf_close(f);
		return herr_set(e, "%s: GGUF version %u with %llu tensors and %llu keys: expected version 3", path, f->version,
		                (unsigned long long)f->nt, (unsigned long long)f->nkv);
	}
	f->kv = r.p;
	uint32_t align = ALIGN;
	for (uint64_t i = 0; i < f->nkv && !r.bad; i++) {
		uint64_t kl = get_u64(&r);
		const uint8_t *k = take(&r, (size_t)kl);
		uint32_t t = get_u32(&r);
		if (k && kl == 17 && !memcmp(k, "general.alignment", 17) && t == V_U32) {
			align = get_u32(&r);
			continue;
		}
		skip_value(&r, t, 0);
	}
	f->t = xcalloc(f->nt ? f->nt : 1, sizeof *f->t);
	uint64_t *off = xcalloc(f->nt ? f->nt : 1, sizeof *off);
	for (uint64_t i = 0; i < f->nt && !r.bad; i++) {
		gguf_tinfo *t = &f->t[i];
		uint64_t nl = get_u64(&r);
		const uint8_t *nm = take(&r, (size_t)nl);
		if (nm)
			snprintf(t->name, sizeof t->name, "%.*s", (int)(nl < 127 ? nl : 127), (const char *)nm);
		t->ndim = (int)get_u32(&r);
		if (t->ndim < 1 || t->ndim > 4) {
			r.bad = 1;
			break;
		}
		for (int d = 0; d < t->ndim; d++)
			t->ne[d] = get_u64(&r);
		t->type = (int)get_u32(&r);
		off[i] = get_u64(&r);
	}
	size_t start = (size_t)(r.p - f->p);
	if (align == 0 || align > 4096)
		r.bad = 1;
	else
		start = (start + align - 1) / align * align;
	for (uint64_t i = 0; i < f->nt && !r.bad; i++) {
		gguf_tinfo *t = &f->t[i];
		size_t n = 1, b;
		for (int d = 0; d < t->ndim; d++)
			n *= (size_t)t->ne[d];
		int k = gguf_block(t->type, &b);
		if ((t->type != GGUF_F32 && t->type != GGUF_F16 && t->type != GGUF_Q8_0 && t->type != GGUF_Q4_0 &&
		     t->type != GGUF_Q6_K && t->type != GGUF_Q4_K && t->type != GGUF_Q5_K) || n % (size_t)k ||
		    start + off[i] + gguf_row_bytes(t->type, n) > f->n)
			r.bad = 1;
		else
			t->data = f->p + start + off[i];
	}
	free(off);
	if (r.bad) {
		gguf_close(f);
		return herr_set(e, "%s: a truncated or malformed GGUF file (or a tensor type hone does not read)", path);
	}
	return 0;
}

void gguf_close(gguf_file *f)
{
	free(f->p);
	free(f->t);
	memset(f, 0, sizeof *f);
}

const uint8_t *gguf_get(const gguf_file *f, const char *k, uint32_t *type)
{
	rd r = {f->kv, f->p + f->n, 0};
	size_t kn = strlen(k);
	for (uint64_t i = 0; i < f->nkv && !r.bad; i++) {
		uint64_t kl = get_u64(&r);
		const uint8_t *kk = take(&r, (size_t)kl);
		uint32_t t = get_u32(&r);
		if (kk && kl == kn && !memcmp(kk, k, kn)) {
			*type = t;
			return r.bad ? NULL : r.p;
		}
		skip_value(&r, t, 0);
	}
	return NULL;
}

const gguf_tinfo *gguf_find(const gguf_file *f, const char *name)
{
	for (uint64_t i = 0; i < f->nt; i++)
		if (!strcmp(f->t[i].name, name))
			return &f->t[i];
	return NULL;
}
