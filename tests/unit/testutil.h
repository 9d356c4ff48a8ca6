/* Helpers shared by the unit tests: cmocka, temp folders, small file I/O. */
#ifndef HONE_TESTUTIL_H
#define HONE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util.h"

/* A fresh empty folder under /tmp; caller frees (and removes with rmtree). */
static inline char *tmpdir_new(void)
{
	char t[] = "/tmp/hone-unit-XXXXXX";
	char *d = mkdtemp(t);
	assert_non_null(d);
	return xstrdup(d);
}

static inline void tmpdir_rm(char *d)
{
	herr e;
	fs_rmtree(&e, d);
	free(d);
}

static inline void write_file(const char *dir, const char *rel, const char *text)
{
	herr e;
	char *p = path_join(dir, rel);
	char *parent = path_dirname(p);
	assert_int_equal(fs_mkdirs(&e, parent), 0);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(parent);
	free(p);
}

#endif
