/*
 * gguf — GGUF version 3 files (ggml's docs/gguf.md), the format llama.cpp
 * loads: a header, typed key/value metadata, tensor descriptions (name,
 * dimensions innermost first, ggml type, offset), then the tensors' data,
 * each aligned to general.alignment (32). Little-endian throughout.
 *
 * Block formats written: F32, F16, Q8_0 (blocks of 32 values: an fp16
 * scale d = max|x| / 127 and 32 int8 q = round(x / d)), Q4_0 (blocks of
 * 32: an fp16 scale d = m / -8, m the value of largest magnitude, and 32
 * 4-bit q = min(15, trunc(x / d + 8.5)), value j in the low nibble of byte
 * j and value j + 16 in its high one; x = (q - 8)·d), Q6_K (super-blocks
 * of 256: 16 sub-blocks of 16 with an int8 scale each, an fp16 d for the
 * scales, 6-bit q in [-32, 31], x = d·scale·q; per half of 128 values, the
 * low 4 bits of value l + 32k in a nibble of ql[l + 32(k & 1)] (high
 * nibble for k ≥ 2) and its high 2 bits in bits 2k, 2k + 1 of qh[l]), and
 * Q4_K / Q5_K (super-blocks of 256: 8 sub-blocks of 32, each with a 6-bit
 * scale and a 6-bit min against fp16 d and dmin, packed in 12 bytes as
 * ggml does; x = d·sc·q − dmin·m, q of 4 or 5 bits; sub-blocks 2p and
 * 2p + 1 share 32 bytes of nibbles, low and high, and Q5_K's fifth bits are
 * bits 2p and 2p + 1 of qh[l]). Each has a dequantizer for the tests and
 * for reading back.
 *
 * Ownership: a gguf_w collects everything in memory and writes it at once
 * (atomically); a gguf_file owns its mapped bytes.
 */
#ifndef HONE_GGUF_H
#define HONE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../util.h"

enum { GGUF_F32 = 0, GGUF_F16 = 1, GGUF_Q4_0 = 2, GGUF_Q8_0 = 8, GGUF_Q4_K = 12, GGUF_Q5_K = 13, GGUF_Q6_K = 14 }; /* ggml_type */
enum {
	GGUF_FTYPE_F32 = 0, GGUF_FTYPE_F16 = 1, GGUF_FTYPE_Q4_0 = 2, GGUF_FTYPE_Q8_0 = 7, GGUF_FTYPE_Q4_K_M = 15, GGUF_FTYPE_Q5_K_M = 17,
	GGUF_FTYPE_Q6_K = 18
}; /* general.file_type */

/* "f32", "f16", "q8_0", "q4_0", "q6_k", "q4_k_m", "q5_k_m" → the tensor type
 * (for a mix, its base type: Q4_K, Q5_K), its file type; -1 if unknown */
int gguf_type_parse(const char *s, int *ftype);
const char *gguf_type_name(int type);
/* Values per block and bytes per block of a type */
int gguf_block(int type, size_t *bytes);
/* Bytes of n values (n a multiple of the block) */
size_t gguf_row_bytes(int type, size_t n);
/* n values (a multiple of the type's block) to the type, and back */
void gguf_quantize(int type, const float *x, size_t n, void *out);
void gguf_dequantize(int type, const void *q, size_t n, float *out);
/* IEEE half precision, round to nearest even */
uint16_t gguf_f16(float f);
float gguf_f32(uint16_t h);

typedef struct gguf_w gguf_w;
gguf_w *gguf_new(void);
void gguf_free(gguf_w *g);
void gguf_kv_str(gguf_w *g, const char *key, const char *v);
void gguf_kv_u32(gguf_w *g, const char *key, uint32_t v);
void gguf_kv_f32(gguf_w *g, const char *key, float v);
void gguf_kv_strs(gguf_w *g, const char *key, const char *const *v, size_t n);
void gguf_kv_i32s(gguf_w *g, const char *key, const int32_t *v, size_t n);
/* A tensor of ndim dimensions (ne[0] innermost, contiguous) from fp32
 * values, stored as type. */
void gguf_tensor(gguf_w *g, const char *name, int type, int ndim, const uint64_t *ne, const float *x);
int gguf_save(herr *e, gguf_w *g, const char *path);

/* Reading (what the tests and `hone quantize --check` use) */
typedef struct gguf_tinfo {
	char name[128];
	int ndim, type;
	uint64_t ne[4];
	const uint8_t *data;
} gguf_tinfo;
typedef struct gguf_file {
	uint8_t *p;
	size_t n;
	uint32_t version;
	uint64_t nkv, nt;
	gguf_tinfo *t;
	const uint8_t *kv; /* the metadata's bytes, for gguf_get */
} gguf_file;
int gguf_open(herr *e, gguf_file *f, const char *path);
void gguf_close(gguf_file *f);
/* A metadata value: its type and bytes (strings: u64 length, then bytes);
 * NULL if the key is not there. */
const uint8_t *gguf_get(const gguf_file *f, const char *key, uint32_t *type);
const gguf_tinfo *gguf_find(const gguf_file *f, const char *name);

#endif
