#include "records.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../key.h"

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static const char *type_names[] = {"?", "string", "int", "float", "bool", "category"};

const char *rec_type_name(rec_type t) { return t >= 1 && t <= 5 ? type_names[t] : "?"; }

rec_type rec_type_parse(const char *s)
{
	for (int t = 1; t <= 5; t++)
		if (!strcmp(s, type_names[t]))
			return (rec_type)t;
	if (!strcmp(s, "integer"))
		return REC_INT;
	if (!strcmp(s, "number"))
		return REC_FLOAT;
	if (!strcmp(s, "boolean"))
		return REC_BOOL;
	return 0;
}

/* ---- writer --------------------------------------------------------------- */

/* The file a writer produces. It is written strictly front to back (the
 * header holds nothing that is known only at the end: that is the
 * trailer's), small pieces through a staging buffer, and hashed on the way,
 * so that publishing it need not read it back (hkey_note). */
typedef struct wfile {
	int fd;
	int err;            /* errno of the first failed write, or 0 */
	uint64_t size;      /* bytes put so far */
	keyhash *h;
	size_t n;           /* staged bytes */
	char stage[1 << 16];
} wfile;

static void wf_flush(wfile *f)
{
	if (f->n && !f->err && write_all(f->fd, f->stage, f->n) != 0)
		f->err = errno ? errno : EIO;
	f->n = 0;
}

static void wf_put(wfile *f, const void *p, size_t n)
{
	if (!n)
		return;
	keyhash_bytes(f->h, p, n);
	f->size += n;
	if (n <= sizeof f->stage - f->n) {
		memcpy(f->stage + f->n, p, n);
		f->n += n;
		return;
	}
	wf_flush(f);
	if (n < sizeof f->stage) {
		memcpy(f->stage, p, n);
		f->n = n;
	} else if (!f->err && write_all(f->fd, p, n) != 0) {
		f->err = errno ? errno : EIO;
	}
}

/* Creates path and writes the header. */
static wfile *wf_open(herr *e, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		herr_set(e, "%s: cannot create: %s", path, strerror(errno));
		return NULL;
	}
	wfile *f = xmalloc(sizeof *f);
	f->fd = fd;
	f->err = 0;
	f->size = 0;
	f->n = 0;
	f->h = keyhash_new();
	unsigned char hdr[32] = "HONEREC";
	uint32_t ver = 2;
	memcpy(hdr + 8, &ver, 4);
	wf_put(f, hdr, 32);
	return f;
}

static void wf_abandon(wfile *f)
{
	if (!f)
		return;
	hkey k;
	keyhash_done(f->h, &k);
	close(f->fd);
	free(f);
}

/* Writes what is staged, closes, and notes the file's key; frees f. */
static int wf_close(herr *e, wfile *f, const char *path)
{
	wf_flush(f);
	int err = f->err;
	if (close(f->fd) != 0 && !err)
		err = errno;
	uint64_t size = f->size;
	hkey k;
	keyhash_done(f->h, &k);
	free(f);
	if (err)
		return herr_set(e, "%s: write error: %s", path, strerror(err));
	hkey_note(path, &k, size);
	return 0;
}

typedef struct wcol {
	char *name;
	rec_type type;
	buf data;       /* values */
	buf offs;       /* string: u64 offsets (starts with 0) */
	buf nulls;      /* bitmap, grown per row */
	int has_null;
	int set;        /* set in the current row */
	/* category dictionary: open addressing label -> code */
	uint32_t *slots;
	size_t cap;
	buf labels, label_offs;
	uint32_t ncat;
	uint64_t streamed;  /* bytes of data already written to the file */
} wcol;

struct rec_writer {
	wcol *cols;
	int n;
	size_t rows;
	int stream;         /* field whose values go straight to the file, or -1 */
	wfile *file;        /* the file being written (stream mode) */
	char *path;
};

/* The length of a column's data so far (streamed or not). */
static uint64_t col_len(const wcol *c) { return c->streamed + c->data.len; }

rec_writer *recw_new(void)
{
	rec_writer *w = xcalloc(1, sizeof(rec_writer));
	w->stream = -1;
	return w;
}

void recw_free(rec_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n; i++) {
		wcol *c = &w->cols[i];
		free(c->name);
		buf_free(&c->data);
		buf_free(&c->offs);
		buf_free(&c->nulls);
		buf_free(&c->labels);
		buf_free(&c->label_offs);
		free(c->slots);
	}
	free(w->cols);
	wf_abandon(w->file);
	free(w->path);
	free(w);
}

int recw_field(rec_writer *w, const char *name, rec_type t)
{
	w->cols = xrealloc(w->cols, (size_t)(w->n + 1) * sizeof *w->cols);
	wcol *c = &w->cols[w->n];
	memset(c, 0, sizeof *c);
	c->name = xstrdup(name);
	c->type = t;
	uint64_t zero = 0;
	if (t == REC_STR)
		buf_add(&c->offs, &zero, 8);
	if (t == REC_CAT)
		buf_add(&c->label_offs, &zero, 8);
	return w->n++;
}

static uint32_t cat_code(wcol *c, const char *s, size_t n)
{
	if ((c->ncat + 1) * 2 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		uint32_t *slots = xmalloc(cap * sizeof *slots);
		memset(slots, 0xff, cap * sizeof *slots);
		const uint64_t *lo = (const uint64_t *)(void *)c->label_offs.p;
		for (uint32_t k = 0; k < c->ncat; k++) {
			size_t h = (size_t)XXH3_64bits(c->labels.p + lo[k], lo[k + 1] - lo[k]) & (cap - 1);
			while (slots[h] != UINT32_MAX)
				h = (h + 1) & (cap - 1);
			slots[h] = k;
		}
		free(c->slots);
		c->slots = slots;
		c->cap = cap;
	}
	const uint64_t *lo = (const uint64_t *)(void *)c->label_offs.p;
	size_t h = (size_t)XXH3_64bits(s, n) & (c->cap - 1);
	while (c->slots[h] != UINT32_MAX) {
		uint32_t k = c->slots[h];
		if (lo[k + 1] - lo[k] == n && memcmp(c->labels.p + lo[k], s, n) == 0)
			return k;
		h = (h + 1) & (c->cap - 1);
	}
	uint32_t k = c->ncat++;
	c->slots[h] = k;
	buf_add(&c->labels, s, n);
	uint64_t end = c->labels.len;
	buf_add(&c->label_offs, &end, 8);
	return k;
}

void recw_str(rec_writer *w, int f, const char *s, size_t n)
{
	wcol *c = &w->cols[f];
	if (c->set)
		return;
	c->set = 1;
	if (c->type == REC_CAT) {
		uint32_t k = cat_code(c, s, n);
		buf_add(&c->data, &k, 4);
	} else {
		buf_add(&c->data, s, n);
		uint64_t end = col_len(c);
		buf_add(&c->offs, &end, 8);
	}
}

void recw_int(rec_writer *w, int f, long long v)
{
	wcol *c = &w->cols[f];
	if (c->set)
		return;
	c->set = 1;
	int64_t x = v;
	buf_add(&c->data, &x, 8);
}

void recw_float(rec_writer *w, int f, double v)
{
	wcol *c = &w->cols[f];
	if (c->set)
		return;
	c->set = 1;
	buf_add(&c->data, &v, 8);
}

void recw_bool(rec_writer *w, int f, int v)
{
	wcol *c = &w->cols[f];
	if (c->set)
		return;
	c->set = 1;
	uint8_t b = (uint8_t)!!v;
	buf_add(&c->data, &b, 1);
}

void recw_cancel_row(rec_writer *w)
{
	for (int i = 0; i < w->n; i++) {
		wcol *c = &w->cols[i];
		if (!c->set)
			continue;
		c->set = 0;
		switch (c->type) {
		case REC_STR:
			c->offs.len -= 8;
			c->data.len = ((const uint64_t *)(void *)c->offs.p)[w->rows] - c->streamed;
			break;
		case REC_CAT: c->data.len -= 4; break;
		case REC_BOOL: c->data.len -= 1; break;
		default: c->data.len -= 8;
		}
	}
}

void recw_end_row(rec_writer *w)
{
	size_t row = w->rows;
	for (int i = 0; i < w->n; i++) {
		wcol *c = &w->cols[i];
		if (row % 8 == 0)
			buf_addc(&c->nulls, 0);
		if (!c->set) {
			c->has_null = 1;
			c->nulls.p[row / 8] |= (char)(1 << (row % 8));
			uint64_t z = 0;
			switch (c->type) {
			case REC_STR: {
				uint64_t end = col_len(c);
				buf_add(&c->offs, &end, 8);
				break;
			}
			case REC_CAT: {
				uint32_t k = 0;
				if (c->ncat == 0)
					cat_code(c, "", 0); /* code 0 must exist for nulls */
				buf_add(&c->data, &k, 4);
				break;
			}
			case REC_BOOL: buf_addc(&c->data, 0); break;
			default: buf_add(&c->data, &z, 8);
			}
		}
		c->set = 0;
	}
	w->rows++;
	/* a streamed column is flushed between rows only, so a row can still
	 * be cancelled */
	if (w->stream >= 0) {
		wcol *c = &w->cols[w->stream];
		if (c->data.len >= ((size_t)1 << 20)) {
			wf_put(w->file, c->data.p, c->data.len);
			c->streamed += c->data.len;
			c->data.len = 0;
		}
	}
}

int recw_stream(herr *e, rec_writer *w, int f, const char *path)
{
	if (!(w->file = wf_open(e, path)))
		return -1;
	w->stream = f;
	w->path = xstrdup(path);
	return 0;
}

size_t recw_rows(const rec_writer *w) { return w->rows; }

void recw_reserve(rec_writer *w, int f, size_t bytes)
{
	buf_reserve(&w->cols[f].data, bytes);
}

size_t recw_bytes(const rec_writer *w)
{
	size_t t = 0;
	for (int i = 0; i < w->n; i++)
		t += w->cols[i].data.cap + w->cols[i].offs.cap + w->cols[i].nulls.cap;
	return t;
}

static void pad8(buf *b)
{
	while (b->len % 8)
		buf_addc(b, 0);
}

static void put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

int recw_write(herr *e, rec_writer *w, const char *path)
{
	if (w->stream >= 0 && strcmp(path, w->path) != 0)
		return herr_set(e, "%s: this writer streams into %s", path, w->path);
	wfile *f = w->file;
	w->file = NULL;
	if (!f && !(f = wf_open(e, path)))
		return -1;
	/* compute the layout first, then write the blocks in that order; a
	 * streamed column is already in the file at offset 32 */
	uint64_t off = 32;
	unsigned char *table = xcalloc((size_t)w->n ? (size_t)w->n : 1, 64);
	buf names;
	buf_init(&names);
	typedef struct { const void *p; size_t n; } block;
	block *blocks = xcalloc((size_t)w->n * 6 + 2, sizeof *blocks);
	size_t nb = 0;
	buf *dicts = xcalloc((size_t)w->n ? (size_t)w->n : 1, sizeof *dicts);
#define ADD(ptr, len) do { blocks[nb].p = (ptr); blocks[nb].n = (len); nb++; \
		off += (len); off = (off + 7) & ~(uint64_t)7; } while (0)
	/* a streamed column's first bytes sit at 32 already; the rest of it is
	 * the first block written now, right after them */
	if (w->stream >= 0) {
		wcol *c = &w->cols[w->stream];
		off = 32 + c->streamed;
		ADD(c->data.p, c->data.len);
	}
	for (int i = 0; i < w->n; i++) {
		wcol *c = &w->cols[i];
		unsigned char *t = table + 64 * i;
		t[0] = (unsigned char)c->type;
		t[1] = (unsigned char)(c->has_null ? 1 : 0);
		uint16_t nl = (uint16_t)strlen(c->name);
		memcpy(t + 2, &nl, 2);
		if (i == w->stream) {
			/* written first, below the loop's blocks: see above */
			put64(t + 16, 32);
			put64(t + 24, col_len(c));
		} else {
			put64(t + 16, off);
			put64(t + 24, c->data.len);
			ADD(c->data.p, c->data.len);
		}
		if (c->type == REC_STR) {
			put64(t + 32, off);
			put64(t + 40, c->offs.len);
			ADD(c->offs.p, c->offs.len);
		} else if (c->type == REC_CAT) {
			if (c->ncat == 0)
				cat_code(c, "", 0);
			buf *d = &dicts[i];
			uint32_t cnt = c->ncat, z = 0;
			buf_add(d, &cnt, 4);
			buf_add(d, &z, 4);
			buf_add(d, c->label_offs.p, c->label_offs.len);
			buf_add(d, c->labels.p ? c->labels.p : "", c->labels.len);
			put64(t + 32, off);
			put64(t + 40, d->len);
			ADD(d->p, d->len);
		}
		if (c->has_null) {
			put64(t + 48, off);
			ADD(c->nulls.p, c->nulls.len);
		}
	}
	/* names after the columns, then the table, then the trailer */
	for (int i = 0; i < w->n; i++) {
		put64(table + 64 * i + 8, off + names.len);
		buf_adds(&names, w->cols[i].name);
	}
	pad8(&names);
	ADD(names.p ? names.p : "", names.len);
	unsigned char tail[32] = "HONEEND";
	uint32_t nf = (uint32_t)w->n;
	uint64_t rows = w->rows;
	memcpy(tail + 12, &nf, 4);
	memcpy(tail + 16, &rows, 8);
	memcpy(tail + 24, &off, 8);
	static const char zeros[8] = {0};
	/* padding follows the absolute position: a streamed column's first
	 * part can end anywhere */
	for (size_t k = 0; k < nb; k++) {
		wf_put(f, blocks[k].p, blocks[k].n);
		wf_put(f, zeros, (size_t)((8 - f->size % 8) % 8));
	}
	wf_put(f, table, 64 * (size_t)w->n);
	wf_put(f, tail, 32);
#undef ADD
	for (int i = 0; i < w->n; i++)
		buf_free(&dicts[i]);
	free(dicts);
	free(blocks);
	buf_free(&names);
	free(table);
	return wf_close(e, f, path);
}

/* ---- reader --------------------------------------------------------------- */

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static int in_file(const rec_reader *r, uint64_t off, uint64_t len)
{
	return off <= r->size && len <= r->size - off && off % 8 == 0;
}

int recr_open(herr *e, rec_reader *r, const char *path)
{
	memset(r, 0, sizeof *r);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return herr_set(e, "%s: cannot open dataset: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < 32) {
		close(fd);
		return herr_set(e, "%s: not a dataset (too short)", path);
	}
	r->size = (size_t)st.st_size;
	r->map = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (r->map == MAP_FAILED) {
		close(fd);
		r->map = NULL;
		return herr_set(e, "%s: cannot map: %s", path, strerror(errno));
	}
	r->fd = fd;
	r->path = xstrdup(path);
	const unsigned char *p = r->map;
	uint32_t ver, nf;
	memcpy(&ver, p + 8, 4);
	if (memcmp(p, "HONEREC\0", 8) != 0) {
		recr_close(r);
		return herr_set(e, "%s: not a dataset (bad magic)", path);
	}
	if (ver != 1 && ver != 2) {
		recr_close(r);
		return herr_set(e, "%s: dataset version %u, expected 1 or 2", path, ver);
	}
	/* version 1 has the counts in its header, version 2 in its trailer */
	const unsigned char *counts = p;
	if (ver == 2) {
		counts = p + r->size - 32;
		if (r->size < 64 || memcmp(counts, "HONEEND\0", 8) != 0) {
			recr_close(r);
			return herr_set(e, "%s: dataset is truncated or corrupt (no trailer)", path);
		}
	}
	memcpy(&nf, counts + 12, 4);
	r->rows = get64(counts + 16);
	uint64_t toff = get64(counts + 24);
	if (nf > 65536 || !in_file(r, toff, (uint64_t)nf * 64) || r->rows > r->size * 8) {
		recr_close(r);
		return herr_set(e, "%s: dataset is truncated or corrupt (field table)", path);
	}
	r->nfields = nf;
	r->fields = xcalloc(nf ? nf : 1, sizeof *r->fields);
	uint64_t N = r->rows;
	for (uint32_t i = 0; i < nf; i++) {
		const unsigned char *t = p + toff + 64 * (uint64_t)i;
		rec_field *f = &r->fields[i];
		f->type = (rec_type)t[0];
		uint16_t nl;
		memcpy(&nl, t + 2, 2);
		uint64_t noff = get64(t + 8), doff = get64(t + 16), dlen = get64(t + 24);
		uint64_t aoff = get64(t + 32), alen = get64(t + 40), zoff = get64(t + 48);
		const char *bad = NULL;
		if (f->type < REC_STR || f->type > REC_CAT)
			bad = "unknown field type";
		else if (noff > r->size || nl > r->size - noff)
			bad = "field name out of bounds";
		else if (!in_file(r, doff, dlen))
			bad = "column out of bounds";
		else if ((t[1] & 1) && !in_file(r, zoff, (N + 7) / 8))
			bad = "null bitmap out of bounds";
		if (!bad) {
			f->name = xstrndup((const char *)p + noff, nl);
			f->data = (const char *)p + doff;
			f->data_len = dlen;
			f->nulls = (t[1] & 1) ? p + zoff : NULL;
			uint64_t want = f->type == REC_INT || f->type == REC_FLOAT ? 8 * N
			              : f->type == REC_BOOL ? N : f->type == REC_CAT ? 4 * N : dlen;
			if (dlen != want)
				bad = "column length does not match the row count";
		}
		if (!bad && f->type == REC_STR) {
			if (!in_file(r, aoff, alen) || alen != 8 * (N + 1)) {
				bad = "string offsets out of bounds";
			} else {
				f->offs = (const uint64_t *)(const void *)(p + aoff);
				if (f->offs[0] != 0)
					bad = "string offsets corrupt";
				for (uint64_t k = 0; !bad && k < N; k++)
					if (f->offs[k + 1] < f->offs[k] || f->offs[k + 1] > dlen)
						bad = "string offsets corrupt";
			}
		}
		if (!bad && f->type == REC_CAT) {
			if (!in_file(r, aoff, alen) || alen < 16) {
				bad = "category dictionary out of bounds";
			} else {
				uint32_t c;
				memcpy(&c, p + aoff, 4);
				if ((uint64_t)c + 1 > (alen - 8) / 8) {
					bad = "category dictionary corrupt";
				} else {
					f->ncat = c;
					f->cat_offs = (const uint64_t *)(const void *)(p + aoff + 8);
					f->cat_bytes = (const char *)p + aoff + 8 + 8 * ((uint64_t)c + 1);
					uint64_t room = alen - 8 - 8 * ((uint64_t)c + 1);
					if (f->cat_offs[0] != 0)
						bad = "category dictionary corrupt";
					for (uint32_t k = 0; !bad && k < c; k++)
						if (f->cat_offs[k + 1] < f->cat_offs[k] || f->cat_offs[k + 1] > room)
							bad = "category dictionary corrupt";
					const uint32_t *codes = (const uint32_t *)(const void *)f->data;
					for (uint64_t k = 0; !bad && k < N; k++)
						if (codes[k] >= c)
							bad = "category code out of range";
				}
			}
		}
		if (bad) {
			recr_close(r);
			return herr_set(e, "%s: dataset is corrupt: field %u: %s", path, i, bad);
		}
	}
	return 0;
}

void recr_close(rec_reader *r)
{
	if (r->fields)
		for (uint32_t i = 0; i < r->nfields; i++)
			free(r->fields[i].name);
	free(r->fields);
	if (r->map)
		munmap(r->map, r->size);
	if (r->map)
		close(r->fd);
	free(r->path);
	memset(r, 0, sizeof *r);
}

int recr_find(const rec_reader *r, const char *name)
{
	for (uint32_t i = 0; i < r->nfields; i++)
		if (!strcmp(r->fields[i].name, name))
			return (int)i;
	return -1;
}

int recr_is_null(const rec_reader *r, int f, uint64_t row)
{
	const uint8_t *z = r->fields[f].nulls;
	return z && (z[row / 8] >> (row % 8) & 1);
}

const char *recr_str(const rec_reader *r, int f, uint64_t row, size_t *len)
{
	const rec_field *c = &r->fields[f];
	if (recr_is_null(r, f, row)) {
		*len = 0;
		return NULL;
	}
	if (c->type == REC_CAT)
		return recr_cat_label(r, f, recr_cat(r, f, row), len);
	if (c->type != REC_STR) {
		*len = 0;
		return NULL;
	}
	*len = (size_t)(c->offs[row + 1] - c->offs[row]);
	return c->data + c->offs[row];
}

int recr_read_strs(herr *e, const rec_reader *r, int f, uint64_t lo, uint64_t hi, buf *b)
{
	const rec_field *c = &r->fields[f];
	uint64_t n = c->offs[hi] - c->offs[lo];
	off_t at = (off_t)(c->data - (const char *)r->map) + (off_t)c->offs[lo];
	b->len = 0;
	buf_reserve(b, (size_t)n);
	for (uint64_t got = 0; got < n;) {
		ssize_t k = pread(r->fd, b->p + got, (size_t)(n - got), at + (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			return herr_set(e, "%s: read error: %s", r->path, k < 0 ? strerror(errno) : "the file shrank");
		}
		got += (uint64_t)k;
	}
	b->len = (size_t)n;
	return 0;
}

long long recr_int(const rec_reader *r, int f, uint64_t row)
{
	int64_t v;
	memcpy(&v, r->fields[f].data + 8 * row, 8);
	return v;
}

double recr_float(const rec_reader *r, int f, uint64_t row)
{
	double v;
	memcpy(&v, r->fields[f].data + 8 * row, 8);
	return v;
}

int recr_bool(const rec_reader *r, int f, uint64_t row) { return r->fields[f].data[row] != 0; }

uint32_t recr_cat(const rec_reader *r, int f, uint64_t row)
{
	uint32_t v;
	memcpy(&v, r->fields[f].data + 4 * row, 4);
	return v;
}

const char *recr_cat_label(const rec_reader *r, int f, uint32_t code, size_t *len)
{
	const rec_field *c = &r->fields[f];
	*len = (size_t)(c->cat_offs[code + 1] - c->cat_offs[code]);
	return c->cat_bytes + c->cat_offs[code];
}

rec_writer *recw_like(const rec_reader *r, double fraction)
{
	rec_writer *w = recw_new();
	for (uint32_t i = 0; i < r->nfields; i++) {
		int f = recw_field(w, r->fields[i].name, r->fields[i].type);
		/* expected size plus slack: one reservation instead of doubling */
		if (fraction > 0)
			buf_reserve(&w->cols[f].data, (size_t)((double)r->fields[i].data_len * fraction * 1.02) + 4096);
	}
	return w;
}

void recw_copy_value(rec_writer *w, int wf, const rec_reader *r, int rf, uint64_t row)
{
	if (recr_is_null(r, rf, row))
		return;
	size_t n;
	const char *s;
	switch (r->fields[rf].type) {
	case REC_STR:
	case REC_CAT:
		s = recr_str(r, rf, row, &n);
		recw_str(w, wf, s ? s : "", n);
		break;
	case REC_INT: recw_int(w, wf, recr_int(r, rf, row)); break;
	case REC_FLOAT: recw_float(w, wf, recr_float(r, rf, row)); break;
	case REC_BOOL: recw_bool(w, wf, recr_bool(r, rf, row)); break;
	}
}

void recw_copy_row(rec_writer *w, const rec_reader *r, uint64_t row)
{
	for (uint32_t i = 0; i < r->nfields; i++)
		recw_copy_value(w, (int)i, r, (int)i, row);
	recw_end_row(w);
}

int recr_hint_field(herr *e, const rec_reader *r, const char *name)
{
	buf names;
	buf_init(&names);
	const char *best = NULL;
	size_t bd = (size_t)-1;
	for (uint32_t k = 0; k < r->nfields; k++) {
		buf_printf(&names, "%s%s", k ? ", " : "", r->fields[k].name);
		size_t d = edit_distance(name, r->fields[k].name);
		if (d < bd)
			bd = d, best = r->fields[k].name;
	}
	size_t lim = strlen(name) / 3 > 2 ? strlen(name) / 3 : 2;
	if (best && bd <= lim)
		herr_hint(e, "did you mean '%s'? fields: %s", best, names.p);
	else
		herr_hint(e, "fields: %s", names.p ? names.p : "(none)");
	buf_free(&names);
	return -1;
}
