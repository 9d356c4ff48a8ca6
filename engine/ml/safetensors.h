/*
 * safetensors — reading and writing the safetensors format (Hugging Face):
 *   u64 little-endian N | N bytes of JSON header | data
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data) and may hold "__metadata__"
 * (string -> string). Reading is strict: the header size must fit the file,
 * the JSON must be an object of well-formed entries, every dtype known,
 * every extent equal to its shape's size, and the tensors must tile the data
 * exactly (in bounds, no overlap, no gap). Any violation is an error naming
 * the file and the tensor, never a crash.
 *
 * Relies on: util, json.
 * Ownership: an st_file owns its bytes and table; tensor data points into
 * them. A writer copies nothing: the data must outlive st_write.
 */
#ifndef HONE_SAFETENSORS_H
#define HONE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } st_dtype;

#define ST_MAX_DIM 8

typedef struct st_tensor {
	char *name;
	st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIM];
	const void *data; /* reading: into the file's bytes */
	size_t nbytes;
} st_tensor;

typedef struct st_file {
	buf bytes;
	st_tensor *t;
	size_t n;
	char **meta_k, **meta_v; /* __metadata__ */
	size_t nmeta;
} st_file;

/* Reads and validates a file; name is used in messages. */
int st_read(herr *e, st_file *f, const char *path);
/* Validates bytes already in memory (taken over by f: p must come from
 * malloc). */
int st_parse(herr *e, st_file *f, char *p, size_t n, const char *name);
void st_free(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
/* The tensor name as F32 with exactly this shape, or NULL with a message. */
const float *st_f32(herr *e, const st_file *f, const char *file, const char *name, int ndim, const int64_t *shape);
const char *st_dtype_name(st_dtype t);

typedef struct st_writer {
	st_tensor *t;
	size_t n, cap;
	char **meta_k, **meta_v;
	size_t nmeta;
	void **owned; /* converted copies (st_add_as) */
	size_t nowned;
} st_writer;

void st_writer_init(st_writer *w);
void st_writer_free(st_writer *w);
void st_add_f32(st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape);
void st_add_meta(st_writer *w, const char *k, const char *v);
/* The same, stored as dtype (ST_F32, ST_F16 or ST_BF16, rounded to nearest
 * even): a converted copy the writer owns. */
void st_add_as(st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape, st_dtype dtype);
/* Tensor name of f as floats into dst, from F32, F16 or BF16, checking the
 * shape; its dtype in *dtype (NULL: not wanted). Errors name file and tensor. */
int st_to_f32(herr *e, const st_file *f, const char *file, const char *name, int ndim, const int64_t *shape, float *dst,
              st_dtype *dtype);
/* bfloat16 from a float, rounded to nearest even (NaN kept a NaN), and back */
uint16_t st_bf16(float f);
float st_bf16_f32(uint16_t h);
/* The file's bytes (tensors in the order added). */
void st_serialize(const st_writer *w, buf *out);
int st_write(herr *e, const st_writer *w, const char *path);
/* A JSON file and a safetensors file into dir (a model, an adapter). */
int st_save_pair(herr *e, const char *dir, const char *json_name, const buf *json, const char *st_name, const st_writer *w);

#endif
