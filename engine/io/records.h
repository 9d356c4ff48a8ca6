/*
 * records — the dataset artifact: a column-oriented, mmap-able file of typed
 * records with a schema. Written once by a stage (rec_writer, in memory,
 * then front to back) and read zero-copy by the next (rec_reader, mmap).
 *
 * Relies on: util, key (hashing what it writes), libxxhash (category
 * dictionary).
 * Ownership: a writer owns its column buffers until recw_free; a reader owns
 * its mapping until recr_close, and every pointer it returns points into it.
 *
 * File format (little-endian; every block starts 8-byte aligned). A file is
 * written strictly front to back, so its writer hashes it on the way out:
 *   offset 0   8 bytes  magic "HONEREC\0"
 *          8   u32      version (2)
 *         12   20 bytes zero
 *         32   ...      column blocks, then the field names, then
 *                       the field table
 *   the last 32 bytes, the trailer:
 *          0   8 bytes  "HONEEND\0"
 *          8   u32      zero
 *         12   u32      field count F
 *         16   u64      row count N
 *         24   u64      offset of the field table
 * (Version 1, still read, had no trailer and these counts at 8..32 of the
 * header.)
 *   field table, F entries of 64 bytes:
 *          0   u8 type (1 string, 2 int, 3 float, 4 bool, 5 category)
 *          1   u8 flags (1: has a null bitmap)
 *          2   u16 name length  4 u32 reserved
 *          8   u64 name offset
 *         16   u64 data offset  24 u64 data length
 *         32   u64 aux offset   40 u64 aux length
 *         48   u64 null bitmap offset (N bits, 1 = null)  56 u64 reserved
 *   string:   data = bytes of all values; aux = N+1 u64 offsets into data
 *   int:      data = N i64;  float: data = N f64;  bool: data = N u8
 *   category: data = N u32 codes; aux = dictionary: u32 count C, pad,
 *             C+1 u64 offsets, then the label bytes
 * recr_open checks every offset and length against the file size, string
 * offsets for monotonicity and category codes against the dictionary, so a
 * truncated or corrupt file is an error, never a crash.
 */
#ifndef HONE_RECORDS_H
#define HONE_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"

typedef enum { REC_STR = 1, REC_INT = 2, REC_FLOAT = 3, REC_BOOL = 4, REC_CAT = 5 } rec_type;

#define RECORDS_FILE "data.rec"

const char *rec_type_name(rec_type t);
/* Parses "string", "int", "float", "bool", "category"; 0 if unknown. */
rec_type rec_type_parse(const char *s);

typedef struct rec_writer rec_writer;

rec_writer *recw_new(void);
void recw_free(rec_writer *w);
/* Adds a field; returns its index. */
int recw_field(rec_writer *w, const char *name, rec_type t);
/* Values for the current row; a field not set before recw_end_row is null. */
void recw_str(rec_writer *w, int f, const char *s, size_t n); /* string or category */
void recw_int(rec_writer *w, int f, long long v);
void recw_float(rec_writer *w, int f, double v);
void recw_bool(rec_writer *w, int f, int v);
void recw_end_row(rec_writer *w);
/* Abandons the current row's values. */
void recw_cancel_row(rec_writer *w);
size_t recw_rows(const rec_writer *w);
/* Reserves room for bytes of values in field f (a hint). */
void recw_reserve(rec_writer *w, int f, size_t bytes);
/* Approximate bytes held. */
size_t recw_bytes(const rec_writer *w);
/* Sends the values of field f (a string) straight to the file at path as
 * rows end, instead of holding them: for the big text column. recw_write
 * must then be given the same path. */
int recw_stream(herr *e, rec_writer *w, int f, const char *path);
int recw_write(herr *e, rec_writer *w, const char *path);

typedef struct rec_field {
	char *name;
	rec_type type;
	const uint8_t *nulls;     /* NULL when none */
	const char *data;
	uint64_t data_len;
	const uint64_t *offs;     /* string: N+1 offsets */
	uint32_t ncat;            /* category: dictionary size */
	const uint64_t *cat_offs; /* category: C+1 offsets */
	const char *cat_bytes;
} rec_field;

typedef struct rec_reader {
	void *map;
	size_t size;
	int fd;                   /* the file, open while mapped */
	char *path;
	uint64_t rows;
	uint32_t nfields;
	rec_field *fields;
} rec_reader;

int recr_open(herr *e, rec_reader *r, const char *path);
void recr_close(rec_reader *r);
int recr_find(const rec_reader *r, const char *name);
int recr_is_null(const rec_reader *r, int f, uint64_t row);
/* String or category label of a row (NULL, length 0 for null). */
const char *recr_str(const rec_reader *r, int f, uint64_t row, size_t *len);
/* Reads the values of string field f for rows [lo, hi) into b with one
 * pread: row k's value starts at b->p + offs[k] - offs[lo]. -1 on a read
 * error. For one pass over a big column, where a
 * copy through the kernel beats touching the mapping's pages one by one
 * (on a virtual machine, mapped 4 KiB pages of the page cache read at a
 * sixth of read()'s speed). */
int recr_read_strs(herr *e, const rec_reader *r, int f, uint64_t lo, uint64_t hi, buf *b);
long long recr_int(const rec_reader *r, int f, uint64_t row);
double recr_float(const rec_reader *r, int f, uint64_t row);
int recr_bool(const rec_reader *r, int f, uint64_t row);
uint32_t recr_cat(const rec_reader *r, int f, uint64_t row);
const char *recr_cat_label(const rec_reader *r, int f, uint32_t code, size_t *len);

/* A writer with the reader's schema (same names and types), its columns
 * reserved for about `fraction` of the reader's values (0: no reservation). */
rec_writer *recw_like(const rec_reader *r, double fraction);
/* Sets field wf of w's current row to field rf of row `row` of r (same
 * type); a null stays unset (null). */
void recw_copy_value(rec_writer *w, int wf, const rec_reader *r, int rf, uint64_t row);
/* Appends row `row` of r to w (which must have r's schema). */
void recw_copy_row(rec_writer *w, const rec_reader *r, uint64_t row);

/* Adds to e's hint the field of r closest to name ("did you mean 'label'?")
 * and the fields r has, for an error about a field r lacks; returns -1. */
int recr_hint_field(herr *e, const rec_reader *r, const char *name);

#endif
