#include "safetensors.h"
#include "../io/gguf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"

static const struct { const char *name; size_t size; } dtypes[] = {
	[ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
	[ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
	[ST_U8] = {"U8", 1},  [ST_BOOL] = {"BOOL", 1},
};
#define NDTYPES (sizeof dtypes / sizeof dtypes[0])

const char *st_dtype_name(st_dtype t) { return dtypes[t].name; }

/* A JSON number that is a non-negative integer below 2^53. */
static int juint(const jnode *j, uint64_t *v)
{
	if (!j || j->t != J_NUM || j->len == 0 || j->len > 16)
		return -1;
	uint64_t x = 0;
	for (size_t i = 0; i < j->len; i++) {
		if (j->s[i] < '0' || j->s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(j->s[i] - '0');
	}
	*v = x;
	return 0;
}

static int cmp_begin(const void *a, const void *b)
{
	const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
	const char *px = x->data, *py = y->data;
	return px < py ? -1 : px > py;
}

void st_free(st_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->t[i].name);
	free(f->t);
	for (size_t i = 0; i < f->nmeta; i++) {
		free(f->meta_k[i]);
		free(f->meta_v[i]);
	}
	free(f->meta_k);
	free(f->meta_v);
	buf_free(&f->bytes);
	memset(f, 0, sizeof *f);
}

int st_parse(herr *e, st_file *f, char *p, size_t n, const char *name)
{
	memset(f, 0, sizeof *f);
	f->bytes.p = p;
	f->bytes.len = n;
	f->bytes.cap = n;
	if (n < 8) {
		st_free(f);
		return herr_set(e, "%s: not a safetensors file (%zu bytes, shorter than its 8-byte header size)", name, n);
	}
	uint64_t hn = 0;
	for (int i = 7; i >= 0; i--)
		hn = hn << 8 | (uint8_t)p[i];
	if (hn < 2 || hn > n - 8 || hn > (100u << 20)) {
		st_free(f);
		return herr_set(e, "%s: safetensors header size %llu does not fit the file (%zu bytes)", name,
		                (unsigned long long)hn, n);
	}
	const char *data = p + 8 + hn;
	size_t dn = n - 8 - (size_t)hn;
	jarena *a = json_arena_new();
	jerror je;
	jnode *root = json_parse(a, p + 8, (size_t)hn, &je);
	int rc = 0;
	if (!root || root->t != J_OBJ)
		rc = herr_set(e, "%s: safetensors header is not a JSON object%s%s", name, root ? "" : ": ", root ? "" : je.what);
	if (rc == 0) {
		f->t = xcalloc(root->n ? root->n : 1, sizeof *f->t);
		for (const jnode *k = root->kid; k && rc == 0; k = k->next) {
			char *key = xstrndup(k->key, k->klen);
			if (!strcmp(key, "__metadata__")) {
				free(key);
				if (k->t != J_OBJ) {
					rc = herr_set(e, "%s: __metadata__ must be an object of strings", name);
					break;
				}
				f->meta_k = xcalloc(k->n ? k->n : 1, sizeof *f->meta_k);
				f->meta_v = xcalloc(k->n ? k->n : 1, sizeof *f->meta_v);
				for (const jnode *m = k->kid; m; m = m->next) {
					if (m->t != J_STR) {
						rc = herr_set(e, "%s: __metadata__.%.*s must be a string", name, (int)m->klen, m->key);
						break;
					}
					f->meta_k[f->nmeta] = xstrndup(m->key, m->klen);
					f->meta_v[f->nmeta++] = xstrndup(m->s, m->len);
				}
				continue;
			}
			st_tensor *t = &f->t[f->n++];
			t->name = key;
			const jnode *dt = json_member(k, "dtype", 5), *sh = json_member(k, "shape", 5),
			            *of = json_member(k, "data_offsets", 12);
			if (k->t != J_OBJ || !dt || dt->t != J_STR || !sh || sh->t != J_ARR || !of || of->t != J_ARR || of->n != 2) {
				rc = herr_set(e, "%s: tensor '%s': expected {\"dtype\", \"shape\", \"data_offsets\": [begin, end]}", name, key);
				break;
			}
			size_t d;
			for (d = 0; d < NDTYPES; d++)
				if (strlen(dtypes[d].name) == dt->len && !memcmp(dtypes[d].name, dt->s, dt->len))
					break;
			if (d == NDTYPES) {
				rc = herr_set(e, "%s: tensor '%s': unknown dtype \"%.*s\"", name, key, (int)dt->len, dt->s);
				break;
			}
			t->dtype = (st_dtype)d;
			if (sh->n > ST_MAX_DIM) {
				rc = herr_set(e, "%s: tensor '%s': %u dimensions (at most %d)", name, key, sh->n, ST_MAX_DIM);
				break;
			}
			uint64_t count = 1, dim, b0, b1;
			int bad = 0;
			for (const jnode *s = sh->kid; s; s = s->next) {
				if (juint(s, &dim) != 0 || (dim && count > UINT64_MAX / 16 / dim)) {
					bad = 1;
					break;
				}
				t->shape[t->ndim++] = (int64_t)dim;
				count *= dim;
			}
			if (bad) {
				rc = herr_set(e, "%s: tensor '%s': shape must be a list of non-negative integers", name, key);
				break;
			}
			if (juint(of->kid, &b0) != 0 || juint(of->kid->next, &b1) != 0 || b0 > b1 || b1 > dn) {
				rc = herr_set(e, "%s: tensor '%s': data_offsets outside the %zu data bytes", name, key, dn);
				break;
			}
			if (b1 - b0 != count * dtypes[d].size) {
				rc = herr_set(e, "%s: tensor '%s': %llu bytes for a %s tensor of %llu values", name, key,
				              (unsigned long long)(b1 - b0), dtypes[d].name, (unsigned long long)count);
				break;
			}
			t->data = data + b0;
			t->nbytes = (size_t)(b1 - b0);
		}
	}
	if (rc == 0) {
		/* the tensors must tile the data: sorted by start, each begins where
		 * the previous ended */
		st_tensor **by = xcalloc(f->n ? f->n : 1, sizeof *by);
		for (size_t i = 0; i < f->n; i++)
			by[i] = &f->t[i];
		qsort(by, f->n, sizeof *by, cmp_begin);
		size_t at = 0;
		for (size_t i = 0; i < f->n && rc == 0; i++) {
			size_t b0 = (size_t)((const char *)by[i]->data - data);
			if (b0 != at)
				rc = herr_set(e, "%s: tensor '%s' %s", name, by[i]->name,
				              b0 < at ? "overlaps the tensor before it" : "leaves a gap of unused bytes before it");
			at = b0 + by[i]->nbytes;
		}
		if (rc == 0 && at != dn)
			rc = herr_set(e, "%s: %zu data bytes after the last tensor", name, dn - at);
		free(by);
	}
	json_arena_free(a);
	if (rc)
		st_free(f);
	return rc;
}

int st_read(herr *e, st_file *f, const char *path)
{
	buf b;
	buf_init(&b);
	memset(f, 0, sizeof *f);
	if (fs_read(e, path, &b) != 0)
		return -1;
	return st_parse(e, f, b.p, b.len, path);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->t[i].name, name))
			return &f->t[i];
	return NULL;
}

/* "FILE: tensor 'NAME': expected TYPES of shape [..]" (and what it is) */
static int shape_error(herr *e, const char *file, const char *name, const char *types, int ndim, const int64_t *shape,
                       const char *got)
{
	buf want;
	buf_init(&want);
	for (int i = 0; i < ndim; i++)
		buf_printf(&want, "%s%lld", i ? ", " : "", (long long)shape[i]);
	buf_addc(&want, 0);
	herr_set(e, "%s: tensor '%s': expected %s of shape [%s]%s%s", file, name, types, want.p, got ? ", got " : "",
	         got ? got : "");
	buf_free(&want);
	return -1;
}

const float *st_f32(herr *e, const st_file *f, const char *file, const char *name, int ndim, const int64_t *shape)
{
	const st_tensor *t = st_find(f, name);
	if (!t) {
		herr_set(e, "%s: no tensor '%s'", file, name);
		return NULL;
	}
	int same = t->ndim == ndim && t->dtype == ST_F32;
	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same) {
		shape_error(e, file, name, "F32", ndim, shape, NULL);
		return NULL;
	}
	if ((uintptr_t)t->data % 4) {
		herr_set(e, "%s: tensor '%s' is not 4-byte aligned", file, name);
		return NULL;
	}
	return t->data;
}

void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

void st_writer_free(st_writer *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	for (size_t i = 0; i < w->nmeta; i++) {
		free(w->meta_k[i]);
		free(w->meta_v[i]);
	}
	free(w->meta_k);
	free(w->meta_v);
	for (size_t i = 0; i < w->nowned; i++)
		free(w->owned[i]);
	free(w->owned);
	memset(w, 0, sizeof *w);
}

void st_add_f32(st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->t = xrealloc(w->t, w->cap * sizeof *w->t);
	}
	st_tensor *t = &w->t[w->n++];
	memset(t, 0, sizeof *t);
	t->name = xstrdup(name);
	t->dtype = ST_F32;
	t->ndim = ndim;
	size_t count = 1;
	for (int i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		count *= (size_t)shape[i];
	}
	t->data = data;
	t->nbytes = count * 4;
}

uint16_t st_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float st_bf16_f32(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}

void st_add_as(st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape, st_dtype dtype)
{
	st_add_f32(w, name, data, ndim, shape);
	if (dtype != ST_F16 && dtype != ST_BF16)
		return;
	st_tensor *t = &w->t[w->n - 1];
	size_t count = t->nbytes / 4;
	uint16_t *h = xmalloc(count * 2 + 1);
	for (size_t i = 0; i < count; i++)
		h[i] = dtype == ST_BF16 ? st_bf16(data[i]) : gguf_f16(data[i]);
	w->owned = xrealloc(w->owned, (w->nowned + 1) * sizeof *w->owned);
	w->owned[w->nowned++] = h;
	t->dtype = dtype;
	t->data = h;
	t->nbytes = count * 2;
}

int st_to_f32(herr *e, const st_file *f, const char *file, const char *name, int ndim, const int64_t *shape, float *dst,
              st_dtype *dtype)
{
	const st_tensor *t = st_find(f, name);
	if (!t)
		return herr_set(e, "%s: no tensor '%s'", file, name);
	int same = t->ndim == ndim && (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16);
	size_t count = 1;
	for (int i = 0; same && i < ndim; i++) {
		same = t->shape[i] == shape[i];
		count *= (size_t)shape[i];
	}
	if (!same)
		return shape_error(e, file, name, "F32, F16 or BF16", ndim, shape, st_dtype_name(t->dtype));
	const uint8_t *b = t->data;
	for (size_t i = 0; i < count; i++) {
		if (t->dtype == ST_F32) {
			memcpy(dst + i, b + 4 * i, 4);
			continue;
		}
		uint16_t h = (uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
		dst[i] = t->dtype == ST_BF16 ? st_bf16_f32(h) : gguf_f32(h);
	}
	if (dtype)
		*dtype = t->dtype;
	return 0;
}

void st_add_meta(st_writer *w, const char *k, const char *v)
{
	w->meta_k = xrealloc(w->meta_k, (w->nmeta + 1) * sizeof *w->meta_k);
	w->meta_v = xrealloc(w->meta_v, (w->nmeta + 1) * sizeof *w->meta_v);
	w->meta_k[w->nmeta] = xstrdup(k);
	w->meta_v[w->nmeta++] = xstrdup(v);
}

void st_serialize(const st_writer *w, buf *out)
{
	buf h;
	buf_init(&h);
	buf_addc(&h, '{');
	if (w->nmeta) {
		buf_adds(&h, "\"__metadata__\":{");
		for (size_t i = 0; i < w->nmeta; i++) {
			if (i)
				buf_addc(&h, ',');
			buf_json_str(&h, w->meta_k[i]);
			buf_addc(&h, ':');
			buf_json_str(&h, w->meta_v[i]);
		}
		buf_addc(&h, '}');
	}
	size_t at = 0;
	for (size_t i = 0; i < w->n; i++) {
		const st_tensor *t = &w->t[i];
		if (i || w->nmeta)
			buf_addc(&h, ',');
		buf_json_str(&h, t->name);
		buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[t->dtype].name);
		for (int d = 0; d < t->ndim; d++)
			buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
		buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", at, at + t->nbytes);
		at += t->nbytes;
	}
	buf_addc(&h, '}');
	while (h.len % 8)
		buf_addc(&h, ' '); /* data starts 8-byte aligned */
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
	buf_add(out, len8, 8);
	buf_add(out, h.p, h.len);
	for (size_t i = 0; i < w->n; i++)
		buf_add(out, w->t[i].data, w->t[i].nbytes);
	buf_free(&h);
}

int st_write(herr *e, const st_writer *w, const char *path)
{
	buf b;
	buf_init(&b);
	st_serialize(w, &b);
	int rc = fs_write_atomic(e, path, b.p, b.len);
	buf_free(&b);
	return rc;
}

int st_save_pair(herr *e, const char *dir, const char *json_name, const buf *json, const char *st_name, const st_writer *w)
{
	char *cp = path_join(dir, json_name), *wp = path_join(dir, st_name);
	int rc = fs_write_atomic(e, cp, json->p, json->len);
	if (rc == 0)
		rc = st_write(e, w, wp);
	free(cp);
	free(wp);
	return rc;
}
