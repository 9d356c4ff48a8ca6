/* JSON, CSV, UTF-8 hygiene and the records format: good inputs, bad inputs,
 * and truncation at every byte (never a crash, always a clear error). */
#include "testutil.h"
#include "io/csv.h"
#include "io/json.h"
#include "io/records.h"
#include "io/text.h"
#include "key.h"

static void test_json_values(void **s)
{
	(void)s;
	jarena *a = json_arena_new();
	jerror err;
	const char *doc = "{\"a\": {\"b\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\\n\"]}, \"t\": true, \"n\": null}";
	jnode *j = json_parse(a, doc, strlen(doc), &err);
	assert_non_null(j);
	assert_int_equal(j->t, J_OBJ);
	const jnode *v = json_path(j, "a.b.2");
	assert_non_null(v);
	assert_int_equal(v->t, J_STR);
	assert_int_equal(v->len, strlen("x\xc3\xa9\xf0\x9f\x98\x80\n"));
	assert_memory_equal(v->s, "x\xc3\xa9\xf0\x9f\x98\x80\n", v->len);
	v = json_path(j, "a.b.1");
	assert_int_equal(v->t, J_NUM);
	assert_memory_equal(v->s, "-2.5e3", 6);
	assert_int_equal(json_path(j, "t")->t, J_TRUE);
	assert_int_equal(json_path(j, "n")->t, J_NULL);
	assert_null(json_path(j, "a.c"));
	assert_null(json_path(j, "a.b.9"));
	json_arena_free(a);
}

static void test_json_errors(void **s)
{
	(void)s;
	struct { const char *in; const char *what; } bad[] = {
		{"{\"a\": 1,}", "expected a member name"},
		{"{\"a\" 1}", "expected ':'"},
		{"[1 2]", "expected ',' or ']'"},
		{"\"abc", "unterminated string"},
		{"\"a\\qb\"", "bad escape"},
		{"\"\\ud800\"", "lone surrogate"},
		{"\"a\tb\"", "control character"},
		{"01", "trailing characters"},
		{"1.", "digits expected after '.'"},
		{"tru", "unexpected character"},
		{"", "unexpected end of input"},
		{"{} x", "trailing characters"},
	};
	jarena *a = json_arena_new();
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		jerror err;
		json_arena_reset(a);
		assert_null(json_parse(a, bad[i].in, strlen(bad[i].in), &err));
		assert_non_null(err.what);
		if (!strstr(err.what, bad[i].what))
			fail_msg("%s: got '%s', want '%s'", bad[i].in, err.what, bad[i].what);
	}
	/* deep nesting is an error, not a stack overflow */
	char deep[4096];
	memset(deep, '[', sizeof deep);
	jerror err;
	assert_null(json_parse(a, deep, sizeof deep, &err));
	json_arena_free(a);
}

static void test_json_truncation(void **s)
{
	(void)s;
	const char *doc = "{\"text\": \"a \\\"quoted\\\" \\u00e9 word\", \"n\": [1, 2.5, {\"k\": false}]}";
	size_t n = strlen(doc);
	jarena *a = json_arena_new();
	for (size_t i = 0; i < n; i++) {
		jerror err;
		json_arena_reset(a);
		char *copy = xstrndup(doc, i); /* exact-size buffer: ASan sees overreads */
		char *exact = xmalloc(i ? i : 1);
		memcpy(exact, copy, i);
		assert_null(json_parse(a, exact, i, &err));
		free(exact);
		free(copy);
	}
	json_arena_free(a);
}

static void test_csv(void **s)
{
	(void)s;
	const char *in = "\xEF\xBB\xBFname,note\r\n\"a, b\",\"say \"\"hi\"\"\"\r\nplain,\"two\nlines\"\n,\n";
	csv c;
	csv_init(&c, in, strlen(in), ',');
	size_t len;
	assert_int_equal(csv_next(&c), 1);
	assert_int_equal(c.nf, 2);
	assert_memory_equal(csv_field(&c, 0, &len), "name", 4);
	assert_int_equal(csv_next(&c), 1);
	const char *f = csv_field(&c, 0, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(f, "a, b", 4);
	f = csv_field(&c, 1, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(f, "say \"hi\"", 8);
	assert_int_equal(csv_next(&c), 1);
	f = csv_field(&c, 1, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(f, "two\nlines", 9);
	assert_int_equal(csv_next(&c), 1);
	assert_int_equal(c.nf, 2);
	assert_int_equal(csv_next(&c), 0);
	csv_free(&c);

	const char *bad[] = {"a,\"unterminated\n", "a,\"x\"y\n"};
	for (int i = 0; i < 2; i++) {
		csv_init(&c, bad[i], strlen(bad[i]), ',');
		int rc;
		while ((rc = csv_next(&c)) == 1)
			;
		assert_int_equal(rc, -1);
		assert_non_null(c.err);
		csv_free(&c);
	}
	/* truncation at every byte */
	size_t n = strlen(in);
	for (size_t i = 0; i < n; i++) {
		char *exact = xmalloc(i ? i : 1);
		memcpy(exact, in, i);
		csv_init(&c, exact, i, ',');
		while (csv_next(&c) == 1)
			;
		csv_free(&c);
		free(exact);
	}
}

static void test_utf8(void **s)
{
	(void)s;
	assert_true(utf8_invalid_at("plain ascii text", 16) == (size_t)-1);
	assert_true(utf8_invalid_at("caf\xc3\xa9 \xf0\x9f\x98\x80", 10) == (size_t)-1);
	assert_int_equal(utf8_invalid_at("ab\xff", 3), 2);
	assert_int_equal(utf8_invalid_at("ab\xc3", 3), 2);            /* truncated */
	assert_int_equal(utf8_invalid_at("\xc0\xaf", 2), 0);           /* overlong */
	assert_int_equal(utf8_invalid_at("x\xed\xa0\x80", 4), 1);      /* surrogate */
	assert_int_equal(utf8_invalid_at("12345678\xf5\x80\x80\x80", 12), 8);
	buf b;
	buf_init(&b);
	utf8_repair(&b, "a\xffz\xc3", 4);
	assert_int_equal(b.len, 1 + 3 + 1 + 3);
	assert_memory_equal(b.p, "a\xef\xbf\xbdz\xef\xbf\xbd", 8);
	/* NFC composes e + combining acute; NFKC also folds the ligature */
	assert_int_equal(text_clean(&b, "e\xcc\x81", 3, TEXT_NFC), 0);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.p, "\xc3\xa9", 2);
	assert_int_equal(text_clean(&b, "\xef\xac\x81", 3, TEXT_NFKC), 0);
	assert_string_equal(b.p, "fi");
	assert_int_equal(text_clean(&b, "  Hello\t\tW\xc3\x96RLD \n", 16, TEXT_NFC | TEXT_LOWER | TEXT_COLLAPSE), 0);
	assert_string_equal(b.p, "hello w\xc3\xb6rld");
	buf_free(&b);
}

static void test_records_roundtrip(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	char *p = path_join(d, "data.rec");
	rec_writer *w = recw_new();
	int ft = recw_field(w, "text", REC_STR), fl = recw_field(w, "label", REC_CAT);
	int fi = recw_field(w, "n", REC_INT), ff = recw_field(w, "x", REC_FLOAT), fb = recw_field(w, "ok", REC_BOOL);
	for (int i = 0; i < 1000; i++) {
		char t[32];
		snprintf(t, sizeof t, "row %d", i);
		recw_str(w, ft, t, strlen(t));
		if (i % 7)
			recw_str(w, fl, i % 2 ? "spam" : "ham", i % 2 ? 4 : 3);
		recw_int(w, fi, (long long)i * 1000000007LL);
		recw_float(w, ff, i / 3.0);
		recw_bool(w, fb, i % 3 == 0);
		if (i == 500) {
			recw_cancel_row(w); /* abandoned row leaves no trace */
			recw_str(w, ft, "row 500", 7);
			recw_str(w, fl, "ham", 3);
			recw_int(w, fi, 500LL * 1000000007LL);
			recw_float(w, ff, 500 / 3.0);
			recw_bool(w, fb, 0);
		}
		recw_end_row(w);
	}
	herr e;
	assert_int_equal(recw_write(&e, w, p), 0);
	recw_free(w);
	rec_reader r;
	assert_int_equal(recr_open(&e, &r, p), 0);
	assert_int_equal(r.rows, 1000);
	assert_int_equal(r.nfields, 5);
	assert_int_equal(recr_find(&r, "label"), fl);
	assert_int_equal(r.fields[fl].type, REC_CAT);
	for (uint64_t i = 0; i < 1000; i++) {
		size_t n;
		char t[32];
		snprintf(t, sizeof t, "row %d", (int)i);
		const char *v = recr_str(&r, ft, i, &n);
		assert_int_equal(n, strlen(t));
		assert_memory_equal(v, t, n);
		if (i % 7 || i == 500) {
			assert_false(recr_is_null(&r, fl, i));
			v = recr_str(&r, fl, i, &n);
			assert_memory_equal(v, (i % 2 && i != 500) ? "spam" : "ham", n);
		} else {
			assert_true(recr_is_null(&r, fl, i));
		}
		assert_true(recr_int(&r, fi, i) == (long long)i * 1000000007LL);
		assert_true(recr_float(&r, ff, i) == i / 3.0);
		assert_int_equal(recr_bool(&r, fb, i), i == 500 ? 0 : i % 3 == 0);
	}
	recr_close(&r);
	/* truncated at every 8th byte, and every byte of the header: an error */
	buf full;
	buf_init(&full);
	assert_int_equal(fs_read(&e, p, &full), 0);
	for (size_t n = 0; n < full.len; n += (n < 64 ? 1 : 8)) {
		assert_int_equal(fs_write_atomic(&e, p, full.p, n), 0);
		if (recr_open(&e, &r, p) == 0) {
			recr_close(&r);
			fail_msg("a dataset truncated to %zu of %zu bytes opened", n, full.len);
		}
	}
	/* corrupt string offsets are caught */
	buf_free(&full);
	free(p);
	tmpdir_rm(d);
}

/* The vectorized ASCII fold agrees with a plain reference on random
 * inputs full of spaces, tabs, newlines and capitals. */
static void reference_fold(buf *out, const char *s, size_t n, int lower, int coll)
{
	out->len = 0;
	int space = 1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ws = c == ' ' || (c >= '\t' && c <= '\r');
		if (coll && ws) {
			if (!space)
				buf_addc(out, ' ');
			space = 1;
			continue;
		}
		space = 0;
		buf_addc(out, lower && c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
	}
	if (coll && out->len && out->p[out->len - 1] == ' ')
		out->len--;
	buf_addc(out, 0);
	out->len--;
}

static void test_ascii_fold(void **s)
{
	(void)s;
	/* mostly letters and single spaces (the 32-byte fast path), sometimes
	 * runs of whitespace, control bytes, or a two-byte é (the Unicode path) */
	static const char alphabet[] = "  \t\n\r\v\fAZazMm09@[`{~.abcdefghijKLMNOPqrst";
	uint64_t x = 88172645463325252ULL;
	buf got, want;
	buf_init(&got);
	buf_init(&want);
	for (int iter = 0; iter < 20000; iter++) {
		char in[200];
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t n = (size_t)(x % 199);
		int plain = iter % 3 == 0, accent = iter % 7 == 0;
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			in[i] = plain ? (x % 6 ? "aBcDeF"[x % 6] : ' ') : alphabet[x % (sizeof alphabet - 1)];
		}
		if (accent && n >= 2) {
			size_t at = (size_t)(x >> 20) % (n - 1);
			in[at] = '\xc3', in[at + 1] = '\xa9';
		}
		for (int flags = 0; flags < 4; flags++) {
			int lower = flags & 1, coll = flags & 2;
			assert_int_equal(text_clean(&got, in, n, (lower ? TEXT_LOWER : 0) | (coll ? TEXT_COLLAPSE : 0)), 0);
			reference_fold(&want, in, n, lower, coll);
			if (got.len != want.len || memcmp(got.p, want.p, got.len) != 0)
				fail_msg("input %d (len %zu, flags %d): got \"%.*s\", want \"%.*s\"", iter, n, flags,
				         (int)got.len, got.p, (int)want.len, want.p);
		}
	}
	buf_free(&got);
	buf_free(&want);
}

/* A streamed text column, with flushes (> 1 MiB) and cancelled rows,
 * reads back like one held in memory; the streamed field is not first. */
static void test_records_stream(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	char *p = path_join(d, "data.rec");
	herr e;
	rec_writer *w = recw_new();
	int fl = recw_field(w, "label", REC_CAT), ft = recw_field(w, "text", REC_STR);
	int fn = recw_field(w, "n", REC_INT);
	assert_int_equal(recw_stream(&e, w, ft, p), 0);
	char *text = xmalloc(3001);
	size_t kept = 0;
	for (int i = 0; i < 3000; i++) {
		size_t len = (size_t)(i * 7 % 3000);
		memset(text, 'a' + i % 26, len);
		recw_str(w, ft, text, len);
		recw_str(w, fl, i % 2 ? "x" : "y", 1);
		if (i % 13 == 5) {
			recw_cancel_row(w);
			continue;
		}
		recw_int(w, fn, i);
		recw_end_row(w);
		kept++;
	}
	assert_int_equal(recw_write(&e, w, p), 0);
	recw_free(w);
	rec_reader r;
	if (recr_open(&e, &r, p) != 0) fail_msg("%s", e.msg);
	assert_int_equal(r.rows, kept);
	uint64_t row = 0;
	for (int i = 0; i < 3000; i++) {
		if (i % 13 == 5)
			continue;
		size_t len;
		const char *v = recr_str(&r, ft, row, &len);
		assert_int_equal(len, (size_t)(i * 7 % 3000));
		for (size_t k = 0; k < len; k++)
			if (v[k] != 'a' + i % 26)
				fail_msg("row %d byte %zu", i, k);
		assert_int_equal(recr_int(&r, fn, row), i);
		v = recr_str(&r, fl, row, &len);
		assert_memory_equal(v, i % 2 ? "x" : "y", 1);
		row++;
	}
	recr_close(&r);
	free(text);
	free(p);
	tmpdir_rm(d);
}

/* A records file's key, noted by its writer as it wrote, is the key of its
 * bytes; a file changed since is read again. A version 1 file (counts in
 * the header, no trailer) still reads. recr_read_strs gives the mapped
 * values. */
static void test_records_hash(void **s)
{
	(void)s;
	char *d = tmpdir_new();
	char *p = path_join(d, "data.rec");
	herr e;
	for (int streamed = 0; streamed < 2; streamed++) {
		rec_writer *w = recw_new();
		int ft = recw_field(w, "text", REC_STR), fn = recw_field(w, "n", REC_INT);
		if (streamed)
			assert_int_equal(recw_stream(&e, w, ft, p), 0);
		char t[4096];
		for (int i = 0; i < 2000; i++) {
			size_t len = (size_t)(i * 37 % 4000);
			for (size_t k = 0; k < len; k++)
				t[k] = (char)('a' + (i + k) % 26);
			if (i % 11)
				recw_str(w, ft, t, len);
			recw_int(w, fn, i);
			recw_end_row(w);
		}
		assert_int_equal(recw_write(&e, w, p), 0);
		recw_free(w);
		hkey noted, read;
		uint64_t nsize = 0, rsize = 0;
		assert_int_equal(hkey_file(&e, p, &noted, &nsize), 0); /* takes the note */
		assert_int_equal(hkey_file(&e, p, &read, &rsize), 0);  /* reads */
		assert_true(hkey_eq(&noted, &read));
		assert_int_equal(nsize, rsize);
		buf full;
		buf_init(&full);
		assert_int_equal(fs_read(&e, p, &full), 0);
		assert_int_equal(full.len, rsize);
		assert_true(full.len > 2000 * 2000 / 2);
		/* a file rewritten after its note (a new inode) is read */
		w = recw_new();
		recw_field(w, "n", REC_INT);
		recw_int(w, 0, 7);
		recw_end_row(w);
		char *q = path_join(d, "other.rec");
		assert_int_equal(recw_write(&e, w, q), 0);
		recw_free(w);
		assert_int_equal(fs_write_atomic(&e, q, "x", 1), 0);
		hkey k1, want;
		assert_int_equal(hkey_file(&e, q, &k1, &nsize), 0);
		hkey_of(&want, "x", 1);
		assert_true(hkey_eq(&k1, &want));
		assert_int_equal(nsize, 1);
		free(q);
		/* the values, through the map and through recr_read_strs */
		rec_reader r;
		if (recr_open(&e, &r, p) != 0) fail_msg("%s", e.msg);
		buf win;
		buf_init(&win);
		assert_int_equal(recr_read_strs(&e, &r, ft, 100, 1700, &win), 0);
		for (uint64_t i = 100; i < 1700; i++) {
			size_t n;
			const char *v = recr_str(&r, ft, i, &n);
			assert_int_equal(n, r.fields[ft].offs[i + 1] - r.fields[ft].offs[i]);
			if (n)
				assert_memory_equal(v, win.p + (r.fields[ft].offs[i] - r.fields[ft].offs[100]), n);
		}
		buf_free(&win);
		recr_close(&r);
		/* the same file as version 1 */
		uint32_t nf;
		memcpy(&nf, full.p + full.len - 32 + 12, 4);
		assert_int_equal(nf, 2);
		buf v1;
		buf_init(&v1);
		buf_add(&v1, full.p, full.len - 32);
		v1.p[8] = 1;
		memcpy(v1.p + 12, full.p + full.len - 32 + 12, 20);
		assert_int_equal(fs_write_atomic(&e, p, v1.p, v1.len), 0);
		if (recr_open(&e, &r, p) != 0) fail_msg("version 1: %s", e.msg);
		assert_int_equal(r.rows, 2000);
		for (uint64_t i = 0; i < 2000; i++) {
			size_t n;
			const char *v = recr_str(&r, ft, i, &n);
			assert_int_equal(n, i % 11 ? (size_t)(i * 37 % 4000) : 0);
			if (n)
				assert_int_equal(v[n - 1], (char)('a' + (i + n - 1) % 26));
			assert_int_equal(recr_int(&r, fn, i), (long long)i);
		}
		recr_close(&r);
		/* and a version 2 file without its trailer is refused */
		v1.p[8] = 2;
		assert_int_equal(fs_write_atomic(&e, p, v1.p, v1.len), 0);
		assert_int_equal(recr_open(&e, &r, p), -1);
		assert_non_null(strstr(e.msg, "trailer"));
		buf_free(&v1);
		buf_free(&full);
	}
	free(p);
	tmpdir_rm(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_values),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_json_truncation),
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_records_roundtrip),
		cmocka_unit_test(test_records_stream),
		cmocka_unit_test(test_records_hash),
		cmocka_unit_test(test_ascii_fold),
	};
	return cmocka_run_group_tests_name("parsers", tests, NULL, NULL);
}
