/*
 * util — errors, growable buffers and file-system helpers shared by every
 * module of the engine.
 *
 * Relies on: libc and POSIX only (threads for crew).
 * Ownership: a buffer owns its bytes; whoever calls buf_free releases them.
 *
 * Errors: functions return 0 on success and -1 on failure; the message is
 * written into an `herr` that the caller passes in (first argument, or
 * reached through the module's context). Nothing in the engine exits except
 * main.c.
 */
#ifndef HONE_UTIL_H
#define HONE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define HONE_VERSION "0.1.0"

typedef struct herr {
	char msg[2048];  /* "file:line: what went wrong" */
	char hint[512];  /* optional "hint:" line, empty when none */
} herr;

/* Sets e->msg (printf-style) and clears the hint; returns -1. */
int herr_set(herr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the hint line; returns -1. */
int herr_hint(herr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: ". Returns -1. */
int herr_prefix(herr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable byte buffer, always NUL-terminated after len bytes. */
typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reserve(buf *b, size_t extra);
void buf_add(buf *b, const void *p, size_t n);
void buf_adds(buf *b, const char *s);
void buf_addc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Detaches the bytes (NUL-terminated) and leaves b empty. */
char *buf_take(buf *b);
/* A JSON string literal of s (quotes, backslashes and control bytes escaped;
 * other bytes as they are). */
void buf_json_str(buf *b, const char *s);
void buf_json_strn(buf *b, const char *s, size_t n);
/* A JSON number (integers without a fraction, others round-trip exact);
 * NaN and infinities as null. */
void buf_json_num(buf *b, double v);
/* the shortest decimal that reads back as the same float: 1e-05, not 9.99999974e-06 */
void buf_json_float(buf *b, float v);

/* Allocation that never returns NULL: aborts with a message on OOM. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
/* Zeroed memory for a big table touched all over (a hash set): from the
 * kernel directly, on huge pages where it gives them, so that first touches
 * cost a few page faults instead of one per 4 KiB. Free with xfree_big and
 * the same n and m. */
void *xcalloc_big(size_t n, size_t m);
void xfree_big(void *p, size_t n, size_t m);
char *xstrdup(const char *s);

/* A crew of threads kept for many rounds of parallel work: crew_run calls
 * fn(ud, t, nt) on every member, t = 0 on the caller, and returns when all
 * are done. A round costs a wake-up, not a thread start. nt is at most 64;
 * where threads cannot be started the crew is smaller (crew_size). */
typedef struct crew crew;
crew *crew_new(int nt);
int crew_size(const crew *c);
void crew_run(crew *c, void (*fn)(void *ud, int t, int nt), void *ud);
void crew_free(crew *c);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file into *out (NUL-terminated). */
int fs_read(herr *e, const char *path, buf *out);
/* Reads what is left of an open file (name for messages); NUL-terminated. */
int fs_read_fd(herr *e, int fd, const char *name, buf *out);
/* Writes bytes to path through a temporary file and rename (atomic). */
int fs_write_atomic(herr *e, const char *path, const void *p, size_t n);
/* mkdir -p. */
int fs_mkdirs(herr *e, const char *path);
/* rm -rf; a missing path is not an error. */
int fs_rmtree(herr *e, const char *path);
/* 1 if path exists (any type), 0 if not. */
int fs_exists(const char *path);
int fs_is_dir(const char *path);
/* Joins two path parts with one '/'. Caller frees. */
char *path_join(const char *a, const char *b);
/* Directory part of path ("." when none). Caller frees. */
char *path_dirname(const char *path);
/* Makes path absolute against base when relative, and normalizes "." and
 * ".." components lexically. Caller frees. */
char *path_resolve(const char *base, const char *path);
/* Path of `path` relative to `base` when it lies under it, else a copy of
 * path. Caller frees. */
char *path_relative(const char *base, const char *path);

/* 1 when rel is a relative path with no empty, "." or ".." component and
 * no newline: safe to join under a folder without escaping it. */
int path_safe_relative(const char *rel);

/* Recursively lists regular files under dir, relative paths, sorted by
 * byte order. Symbolic links are reported as errors. */
int fs_list_files(herr *e, const char *dir, char ***out, size_t *n);
void strv_free(char **v, size_t n);

/* Monotonic seconds. */
double now_seconds(void);

/* Threads to use when none is given: $HONE_THREADS, else the cores (≥ 1). */
int default_threads(void);

/* Levenshtein distance, for "did you mean" hints. */
size_t edit_distance(const char *a, const char *b);

/* Shortest decimal that round-trips a double exactly ("0.1", "2e-05",
 * "1.0" for integral values so floats and integers stay distinct). */
void fmt_double(char out[40], double v);

/* Human-readable byte count ("1.5 MiB"). */
void fmt_bytes(char out[32], double n);

#endif
