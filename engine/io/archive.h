/*
 * archive — libarchive, loaded on first use (dlopen) rather than at start:
 * it pulls in some fifteen libraries (xml2, ICU, crypto, ...) whose loading
 * would cost every `hone` command several milliseconds, the no-op re-run
 * included. The headers come from pkg-config as usual; the calls go through
 * the table below.
 *
 * Relies on: libarchive (libarchive.so.13 at run time), libdl.
 * Ownership: the table is process-wide, filled once, never freed.
 */
#ifndef HONE_ARCHIVE_H
#define HONE_ARCHIVE_H

#include <archive.h>
#include <archive_entry.h>
#include "../util.h"

typedef struct archive_api {
	struct archive *(*read_new)(void);
	int (*read_support_filter_all)(struct archive *);
	int (*read_support_format_tar)(struct archive *);
	int (*read_support_format_gnutar)(struct archive *);
	int (*read_support_format_zip)(struct archive *);
	int (*read_support_format_raw)(struct archive *); /* a compressed single file */
	int (*format)(struct archive *);
	int (*read_open_filename)(struct archive *, const char *, size_t);
	int (*read_next_header)(struct archive *, struct archive_entry **);
	la_ssize_t (*read_data)(struct archive *, void *, size_t);
	int (*read_free)(struct archive *);
	const char *(*error_string)(struct archive *);
	la_int64_t (*filter_bytes)(struct archive *, int);
	const char *(*entry_pathname)(struct archive_entry *);
	__LA_MODE_T (*entry_filetype)(struct archive_entry *);
	const char *(*entry_hardlink)(struct archive_entry *);
	const char *(*entry_symlink)(struct archive_entry *);
	la_int64_t (*entry_size)(struct archive_entry *);
	int (*read_open_memory)(struct archive *, const void *, size_t);
	/* writing (export's bundles) */
	struct archive *(*write_new)(void);
	int (*write_add_filter_gzip)(struct archive *);
	int (*write_set_filter_option)(struct archive *, const char *, const char *, const char *);
	int (*write_set_format_ustar)(struct archive *);
	int (*write_open_memory)(struct archive *, void *, size_t, size_t *);
	int (*write_header)(struct archive *, struct archive_entry *);
	la_ssize_t (*write_data)(struct archive *, const void *, size_t);
	int (*write_close)(struct archive *);
	int (*write_free)(struct archive *);
	struct archive_entry *(*entry_new)(void);
	void (*entry_free)(struct archive_entry *);
	void (*entry_set_pathname)(struct archive_entry *, const char *);
	void (*entry_set_size)(struct archive_entry *, la_int64_t);
	void (*entry_set_filetype)(struct archive_entry *, unsigned int);
	void (*entry_set_perm)(struct archive_entry *, __LA_MODE_T);
	void (*entry_set_mtime)(struct archive_entry *, time_t, long);
} archive_api;

/* The table, loading the library on the first call (thread-safe); NULL
 * with a message in e when it cannot be loaded. */
const archive_api *archive_api_get(herr *e);

#endif
