#include "archive.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

static archive_api api;
static const char *load_error;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen("libarchive.so", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_error = dlerror();
		return;
	}
#define SYM(field, name) do { \
		*(void **)(&api.field) = dlsym(h, name); \
		if (!api.field) { load_error = "missing symbol " name; return; } } while (0)
	SYM(read_new, "archive_read_new");
	SYM(read_support_filter_all, "archive_read_support_filter_all");
	SYM(read_support_format_tar, "archive_read_support_format_tar");
	SYM(read_support_format_gnutar, "archive_read_support_format_gnutar");
	SYM(read_support_format_zip, "archive_read_support_format_zip");
	SYM(read_support_format_raw, "archive_read_support_format_raw");
	SYM(format, "archive_format");
	SYM(read_open_filename, "archive_read_open_filename");
	SYM(read_next_header, "archive_read_next_header");
	SYM(read_data, "archive_read_data");
	SYM(read_free, "archive_read_free");
	SYM(error_string, "archive_error_string");
	SYM(filter_bytes, "archive_filter_bytes");
	SYM(entry_pathname, "archive_entry_pathname");
	SYM(entry_filetype, "archive_entry_filetype");
	SYM(entry_hardlink, "archive_entry_hardlink");
	SYM(entry_symlink, "archive_entry_symlink");
	SYM(entry_size, "archive_entry_size");
	SYM(read_open_memory, "archive_read_open_memory");
	SYM(write_new, "archive_write_new");
	SYM(write_add_filter_gzip, "archive_write_add_filter_gzip");
	SYM(write_set_filter_option, "archive_write_set_filter_option");
	SYM(write_set_format_ustar, "archive_write_set_format_ustar");
	SYM(write_open_memory, "archive_write_open_memory");
	SYM(write_header, "archive_write_header");
	SYM(write_data, "archive_write_data");
	SYM(write_close, "archive_write_close");
	SYM(write_free, "archive_write_free");
	SYM(entry_new, "archive_entry_new");
	SYM(entry_free, "archive_entry_free");
	SYM(entry_set_pathname, "archive_entry_set_pathname");
	SYM(entry_set_size, "archive_entry_set_size");
	SYM(entry_set_filetype, "archive_entry_set_filetype");
	SYM(entry_set_perm, "archive_entry_set_perm");
	SYM(entry_set_mtime, "archive_entry_set_mtime");
#undef SYM
}

const archive_api *archive_api_get(herr *e)
{
	pthread_once(&once, load);
	if (load_error || !api.read_new) {
		herr_set(e, "cannot load libarchive: %s", load_error ? load_error : "unknown error");
		herr_hint(e, "install Debian's libarchive13 (make deps does)");
		return NULL;
	}
	return &api;
}
