/*
 * tokenizer, tokenize — GPT-2 byte-level BPE as pipeline stages.
 *
 * tokenizer: the artifact is a folder with encoder.json and vocab.bpe (GPT-2
 * format) and the same tokenizer as a Hugging Face tokenizer.json; the two
 * files come from the inputs (GPT-2's, or files given), from a
 * tokenizer.json (from = ...), or from training on a dataset (bpe_train.c).
 *
 * tokenize: encodes a text field of a dataset, or of every dataset of a
 * multi-part input (split's parts), into a token-id artifact per dataset:
 *   tokens.u32  the ids of all rows, concatenated (little-endian u32)
 *   data.rec    the input's other fields, plus tok_off (int: first id of the
 *               row in tokens.u32) and tok_len (int: its count)
 *   tokenize.json  the field, vocabulary size, max_len, truncation and EOS id
 * Rows longer than max_len are cut (right: keep the start; left: keep the
 * end); with add_eos, <|endoftext|> ends every row (within max_len).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/bpe.h"
#include "../io/records.h"
#include "../kernel.h"
#include "stages.h"

static int copy_file(kctx *c, const char *from, const char *outdir, const char *name)
{
	buf b;
	buf_init(&b);
	char *out = NULL;
	int rc = fs_read(&c->err, from, &b);
	if (rc == 0)
		rc = kctx_out_path(c, outdir, name, &out);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, out, b.p, b.len);
	free(out);
	buf_free(&b);
	return rc;
}

static int write_out(kctx *c, const char *outdir, const char *name, const buf *b)
{
	char *out = NULL;
	int rc = kctx_out_path(c, outdir, name, &out);
	if (rc == 0)
		rc = fs_write_atomic(&c->err, out, b->p, b->len);
	free(out);
	return rc;
}

static void train_progress(void *ud, double done, double total)
{
	kctx_progress(ud, done, total, "merges");
}

/* Learns a byte-level BPE on the text fields of a dataset. */
static int train_tokenizer(kctx *c, const hval *p, const kinput *data, const char *outdir)
{
	rec_reader r;
	char *path = path_join(data->path, RECORDS_FILE);
	int rc = recr_open(&c->err, &r, path);
	free(path);
	if (rc)
		return herr_prefix(&c->err, "%s", data->label);
	const hval *fl = hval_get(p, "fields"), *sp = hval_get(p, "special");
	int fs[64], nf = 0;
	for (size_t i = 0; fl && i < fl->n && rc == 0; i++) {
		int f = fl->v[i].t == HV_STR ? recr_find(&r, fl->v[i].s) : -1;
		if (f < 0 || (r.fields[f].type != REC_STR && r.fields[f].type != REC_CAT))
			rc = kctx_fail(c, "tokenizer: fields: %s has no text field '%s'", data->label, fl->v[i].t == HV_STR ? fl->v[i].s : "?");
		else if (nf < 64)
			fs[nf++] = f;
	}
	const char *special[256];
	size_t ns = 0;
	for (size_t i = 0; sp && i < sp->n && ns < 256; i++)
		special[ns++] = sp->v[i].s;
	if (rc) {
		recr_close(&r);
		return -1;
	}
	double t0 = now_seconds();
	bpe_trainer *t = bpe_trainer_new();
	uint64_t bytes = 0;
	for (uint64_t row = 0; row < r.rows; row++) {
		for (int k = 0; k < nf; k++) {
			size_t len;
			const char *s = recr_str(&r, fs[k], row, &len);
			if (s) {
				bpe_trainer_add(t, s, len);
				bytes += len;
			}
		}
		if ((row & 4095) == 0)
			kctx_progress(c, (double)row, (double)r.rows, "rows");
	}
	double t_count = now_seconds() - t0;
	bpe_train_opts o = {(size_t)hval_get_int(p, "vocab", 8000), (uint64_t)hval_get_int(p, "min_frequency", 2), ns,
	                    train_progress, c};
	bpe_train_result res;
	memset(&res, 0, sizeof res);
	rc = bpe_trainer_run(&c->err, t, &o, &res);
	buf enc, mg;
	buf_init(&enc);
	buf_init(&mg);
	if (rc == 0) {
		bpe_train_files(&res, special, ns, &enc, &mg);
		rc = write_out(c, outdir, "encoder.json", &enc);
	}
	if (rc == 0)
		rc = write_out(c, outdir, "vocab.bpe", &mg);
	bpe *b = NULL;
	if (rc == 0) {
		/* load what was written: the checks every tokenizer gets */
		char *ej = path_join(outdir, "encoder.json"), *vb = path_join(outdir, "vocab.bpe");
		rc = bpe_load_gpt2(&c->err, &b, ej, vb);
		free(ej);
		free(vb);
	}
	if (rc == 0) {
		double secs = now_seconds() - t0;
		/* compression on the first MB of text */
		uint32_t *ids = NULL;
		size_t nids = 0, cap = 0;
		uint64_t sample = 0;
		bpe_cache *cache = bpe_cache_new();
		for (uint64_t row = 0; row < r.rows && sample < (1u << 20); row++)
			for (int k = 0; k < nf; k++) {
				size_t len;
				const char *s = recr_str(&r, fs[k], row, &len);
				if (s) {
					bpe_encode_cached(b, cache, s, len, 0, &ids, &nids, &cap);
					sample += len;
				}
			}
		bpe_cache_free(cache);
		free(ids);
		kctx_metric(c, "merges", (double)res.merges);
		kctx_metric(c, "words", (double)res.words);
		kctx_metric(c, "bytes", (double)bytes);
		kctx_metric(c, "seconds", secs);
		kctx_metric(c, "seconds_counting", t_count);
		if (nids)
			kctx_metric(c, "bytes_per_token", (double)sample / (double)nids);
		if (bpe_vocab_size(b) < o.vocab)
			kctx_log(c, "tokenizer: %zu tokens, not %zu: no pair occurs min_frequency = %llu times any more",
			         bpe_vocab_size(b), o.vocab, (unsigned long long)o.min_frequency);
	}
	bpe_free(b);
	bpe_train_result_free(&res);
	buf_free(&enc);
	buf_free(&mg);
	bpe_trainer_free(t);
	recr_close(&r);
	return rc;
}

/* Every tokenizer artifact: GPT-2's two files, loaded back (the checks every
 * tokenizer gets), and the same tokenizer as a Hugging Face tokenizer.json. */
static int finish_tokenizer(kctx *c, const char *outdir)
{
	char *ej = path_join(outdir, "encoder.json"), *vb = path_join(outdir, "vocab.bpe");
	bpe *b;
	int rc = bpe_load_gpt2(&c->err, &b, ej, vb);
	free(ej);
	free(vb);
	if (rc)
		return -1;
	buf js;
	buf_init(&js);
	bpe_hf_json(b, &js);
	rc = write_out(c, outdir, "tokenizer.json", &js);
	kctx_metric(c, "vocab", (double)bpe_vocab_size(b));
	buf_free(&js);
	bpe_free(b);
	return rc;
}

static int k_tokenizer(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *v = kinput_slot(in, nin, "vocab_file"), *m = kinput_slot(in, nin, "merges_file"),
	             *hf = kinput_slot(in, nin, "from"), *data = kinput_slot(in, nin, "1");
	int rc = 0;
	if (data && (v || m || hf))
		return kctx_fail(c, "tokenizer: give a dataset to train on, or gpt2 / from / vocab_file + merges_file, not both");
	if (data) {
		rc = train_tokenizer(c, params, data, outdir);
	} else if (hf) {
		/* a Hugging Face tokenizer.json, kept as GPT-2's two files */
		buf js, enc, mg;
		buf_init(&js);
		buf_init(&enc);
		buf_init(&mg);
		bpe *b = NULL;
		rc = fs_read(&c->err, hf->path, &js);
		if (rc == 0)
			rc = bpe_load_hf(&c->err, &b, js.p, js.len, hf->label);
		if (rc == 0) {
			bpe_gpt2_files(b, &enc, &mg);
			rc = write_out(c, outdir, "encoder.json", &enc);
		}
		if (rc == 0)
			rc = write_out(c, outdir, "vocab.bpe", &mg);
		bpe_free(b);
		buf_free(&js);
		buf_free(&enc);
		buf_free(&mg);
	} else if (!v || !m) {
		return kctx_fail(c, "tokenizer: give gpt2 = true, from = \"tokenizer.json\", or vocab_file and merges_file");
	} else if (copy_file(c, v->path, outdir, "encoder.json") != 0 || copy_file(c, m->path, outdir, "vocab.bpe") != 0) {
		return -1;
	}
	return rc ? rc : finish_tokenizer(c, outdir);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

typedef struct tstats {
	double bytes, truncated, tokens, untruncated;
	uint32_t *lens; /* tokens per row, every dataset */
	size_t n, cap;
} tstats;

/* Encoding a block of rows on several threads: each row's ids land in its
 * own slot; the rows are then written in order, so the output does not
 * depend on the thread count. */
typedef struct row_ids {
	uint32_t *ids;
	size_t n, cap;
} row_ids;

typedef struct enc_job {
	const bpe *b;
	const rec_reader *r;
	int f;
	uint64_t base, end;
	int t, nt;
	row_ids *out;
	bpe_cache *cache;
} enc_job;

static void *encode_rows(void *arg)
{
	enc_job *j = arg;
	for (uint64_t row = j->base + (uint64_t)j->t; row < j->end; row += (uint64_t)j->nt) {
		size_t len;
		const char *s = recr_str(j->r, j->f, row, &len);
		row_ids *o = &j->out[row - j->base];
		o->n = 0;
		bpe_encode_cached(j->b, j->cache, s ? s : "", len, 0, &o->ids, &o->n, &o->cap);
	}
	return NULL;
}

/* Encodes one dataset (dir holding data.rec) into outdir/rel. */
static int tokenize_one(kctx *c, const bpe *b, const hval *p, const char *dir, const char *label,
                        const char *outdir, const char *rel, tstats *st)
{
	rec_reader r;
	char *path = path_join(dir, RECORDS_FILE);
	int rc = recr_open(&c->err, &r, path);
	free(path);
	if (rc)
		return -1;
	const char *field = hval_get_str(p, "field", "text");
	int f = recr_find(&r, field);
	if (f < 0 || (r.fields[f].type != REC_STR && r.fields[f].type != REC_CAT)) {
		recr_close(&r);
		return kctx_fail(c, "tokenize: %s has no text field '%s'", label, field);
	}
	long long max_len = hval_get_int(p, "max_len", 0);
	int left = !strcmp(hval_get_str(p, "truncation", "right"), "left");
	int eos = hval_get_bool(p, "add_eos", 1);
	int64_t eos_tok = bpe_token_id(b, "<|endoftext|>", 13);
	if (eos && eos_tok < 0) {
		recr_close(&r);
		kctx_fail(c, "tokenize: add_eos: the tokenizer has no <|endoftext|> token");
		return herr_hint(&c->err, "give it as a special token (tokenizer { ..., special = { \"<|endoftext|>\" } }) or set add_eos = false");
	}
	uint32_t eos_id = (uint32_t)(eos_tok < 0 ? 0 : eos_tok);
	/* the other fields, then tok_off and tok_len */
	rec_writer *w = recw_new();
	int *to = xcalloc(r.nfields, sizeof *to);
	for (uint32_t k = 0; k < r.nfields; k++)
		to[k] = (int)k == f ? -1 : recw_field(w, r.fields[k].name, r.fields[k].type);
	int f_off = recw_field(w, "tok_off", REC_INT), f_len = recw_field(w, "tok_len", REC_INT);
	char *ids_rel = xasprintf("%s%stokens.u32", rel, rel[0] ? "/" : "");
	char *rec_rel = xasprintf("%s%s%s", rel, rel[0] ? "/" : "", RECORDS_FILE);
	char *ids_path = NULL, *rec_path = NULL;
	FILE *out = NULL;
	if (kctx_out_path(c, outdir, ids_rel, &ids_path) != 0 || kctx_out_path(c, outdir, rec_rel, &rec_path) != 0)
		rc = -1;
	else if (!(out = fopen(ids_path, "wb")))
		rc = kctx_fail(c, "%s: cannot create: %s", ids_path, strerror(errno));
	long long total = 0; /* ids written so far to this dataset's tokens.u32 */
	const uint64_t B = 1024;
	row_ids *block = xcalloc(B, sizeof *block);
	int nt = c->threads > 0 ? (c->threads > 64 ? 64 : c->threads) : 1;
	pthread_t th[64];
	enc_job jobs[64];
	bpe_cache *caches[64];
	for (int t = 0; t < nt; t++)
		caches[t] = bpe_cache_new();
	for (uint64_t row = 0; rc == 0 && row < r.rows; row++) {
		uint64_t base = row - row % B;
		if (row == base) {
			uint64_t end = base + B < r.rows ? base + B : r.rows;
			for (int t = 0; t < nt; t++) {
				jobs[t] = (enc_job){b, &r, f, base, end, t, nt, block, caches[t]};
				if (t > 0 && pthread_create(&th[t], NULL, encode_rows, &jobs[t]) != 0) {
					jobs[t].t = -1;
					enc_job solo = jobs[t];
					solo.t = t;
					encode_rows(&solo);
				}
			}
			encode_rows(&jobs[0]);
			for (int t = 1; t < nt; t++)
				if (jobs[t].t >= 0)
					pthread_join(th[t], NULL);
		}
		size_t len;
		recr_str(&r, f, row, &len);
		uint32_t *ids = block[row - base].ids;
		size_t n = block[row - base].n;
		size_t keep = n + (eos ? 1 : 0);
		if (max_len > 0 && keep > (size_t)max_len) {
			st->truncated++;
			keep = (size_t)max_len;
		}
		size_t body = keep - (eos && keep ? 1 : 0);
		const uint32_t *from = left ? ids + (n - body) : ids;
		if (body && fwrite(from, sizeof *from, body, out) != body)
			rc = kctx_fail(c, "%s: write error", ids_path);
		if (eos && keep && fwrite(&eos_id, 4, 1, out) != 1)
			rc = kctx_fail(c, "%s: write error", ids_path);
		recw_int(w, f_off, total);
		recw_int(w, f_len, (long long)keep);
		/* the other fields travel along */
		for (uint32_t k = 0; k < r.nfields; k++)
			if ((int)k != f)
				recw_copy_value(w, to[k], &r, (int)k, row);
		recw_end_row(w);
		if (st->n == st->cap) {
			st->cap = st->cap ? st->cap * 2 : 1024;
			st->lens = xrealloc(st->lens, st->cap * sizeof *st->lens);
		}
		st->lens[st->n++] = (uint32_t)keep;
		total += (long long)keep;
		st->tokens += (double)keep;
		st->bytes += (double)len;
		st->untruncated += (double)n;
		if ((row & 1023) == 0)
			kctx_progress(c, (double)row, (double)r.rows, "rows");
	}
	if (out && fclose(out) != 0 && rc == 0)
		rc = kctx_fail(c, "%s: write error", ids_path);
	if (rc == 0)
		rc = recw_write(&c->err, w, rec_path);
	if (rc == 0) {
		/* how the ids were made, for the model stages and `hone predict` */
		buf js;
		buf_init(&js);
		buf_adds(&js, "{\"field\": ");
		buf_json_str(&js, field);
		buf_printf(&js, ", \"vocab\": %zu, \"max_len\": %lld, \"truncation\": \"%s\", \"eos\": %lld}\n",
		           bpe_vocab_size(b), max_len, left ? "left" : "right", eos ? (long long)eos_id : -1LL);
		char *meta_rel = xasprintf("%s%s%s", rel, rel[0] ? "/" : "", TOKENIZE_META);
		char *meta_path = NULL;
		rc = kctx_out_path(c, outdir, meta_rel, &meta_path);
		if (rc == 0)
			rc = fs_write_atomic(&c->err, meta_path, js.p, js.len);
		free(meta_rel);
		free(meta_path);
		buf_free(&js);
	}
	for (int t = 0; t < nt; t++)
		bpe_cache_free(caches[t]);
	for (uint64_t k = 0; k < B; k++)
		free(block[k].ids);
	free(block);
	free(to);
	free(ids_rel);
	free(rec_rel);
	free(ids_path);
	free(rec_path);
	recw_free(w);
	recr_close(&r);
	return rc;
}

static int k_tokenize(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *data = NULL, *tok = NULL;
	for (size_t i = 0; i < nin; i++) {
		char *v = path_join(in[i].path, "encoder.json");
		if (in[i].is_dir && fs_exists(v))
			tok = &in[i];
		else if (!data)
			data = &in[i];
		free(v);
	}
	if (!data || !tok)
		return kctx_fail(c, "tokenize: give a dataset (or split parts) and a tokenizer");
	char *ej = path_join(tok->path, "encoder.json"), *vb = path_join(tok->path, "vocab.bpe");
	bpe *b;
	int rc = bpe_load_gpt2(&c->err, &b, ej, vb);
	free(ej);
	free(vb);
	if (rc)
		return -1;
	tstats st = {0, 0, 0, 0, NULL, 0, 0};
	char *top = path_join(data->path, RECORDS_FILE);
	if (fs_exists(top)) {
		rc = tokenize_one(c, b, params, data->path, data->label, outdir, "", &st);
	} else {
		/* parts: every subfolder holding a dataset */
		char **files;
		size_t n;
		rc = fs_list_files(&c->err, data->path, &files, &n);
		size_t parts = 0;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			size_t l = strlen(files[i]), fl = strlen(RECORDS_FILE);
			if (l <= fl + 1 || strcmp(files[i] + l - fl, RECORDS_FILE) || files[i][l - fl - 1] != '/')
				continue;
			char *rel = xstrndup(files[i], l - fl - 1);
			char *dir = path_join(data->path, rel);
			char *label = xasprintf("%s.%s", data->label, rel);
			rc = tokenize_one(c, b, params, dir, label, outdir, rel, &st);
			free(label);
			free(dir);
			free(rel);
			parts++;
		}
		strv_free(files, n);
		if (rc == 0 && parts == 0)
			rc = kctx_fail(c, "tokenize: %s is not a dataset and holds none", data->label);
	}
	free(top);
	if (rc == 0 && st.n) {
		qsort(st.lens, st.n, sizeof *st.lens, cmp_u32);
		kctx_metric(c, "rows", (double)st.n);
		kctx_metric(c, "tokens", st.tokens);
		kctx_metric(c, "tokens_per_row_mean", st.tokens / (double)st.n);
		kctx_metric(c, "tokens_per_row_p50", st.lens[st.n / 2]);
		kctx_metric(c, "tokens_per_row_p95", st.lens[(size_t)((double)(st.n - 1) * 0.95)]);
		kctx_metric(c, "tokens_per_row_max", st.lens[st.n - 1]);
		kctx_metric(c, "truncated", st.truncated);
		kctx_metric(c, "bytes_per_token", st.untruncated ? st.bytes / st.untruncated : 0);
	}
	free(st.lens);
	bpe_free(b);
	return rc;
}

const kernel_def stage_tokenizer = {"tokenizer", 2, k_tokenizer, NULL};
const kernel_def stage_tokenize = {"tokenize", 2, k_tokenize, NULL};
