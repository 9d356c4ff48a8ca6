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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/bpe.h"
#include "../io/json.h"
#include "../io/wordpiece.h"
#include "../io/records.h"
#include "../kernel.h"
#include "../ml/chat.h"
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

static int train_wordpiece(kctx *c, const hval *p, rec_reader *r, const int *fs, int nf, const char *outdir);

/* Learns a byte-level BPE (or, kind = "wordpiece", a WordPiece vocabulary)
 * on the text fields of a dataset. */
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
	if (!strcmp(hval_get_str(p, "kind", "bpe"), "wordpiece")) {
		rc = train_wordpiece(c, p, &r, fs, nf, outdir);
		recr_close(&r);
		return rc == 0 ? 1 : -1; /* 1: the artifact is complete */
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
	                    train_progress, c, NULL, 0};
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
		rc = bpe_load_dir(&c->err, &b, outdir);
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

/* The normalizer a WordPiece tokenizer's parameters ask for. */
static wordpiece_norm norm_params(const hval *p)
{
	wordpiece_norm n = wordpiece_norm_default();
	n.lowercase = hval_get_bool(p, "lowercase", 1);
	n.clean_text = hval_get_bool(p, "clean_text", 1);
	n.handle_chinese_chars = hval_get_bool(p, "handle_chinese_chars", 1);
	const hval *sa = hval_get(p, "strip_accents");
	n.strip_accents = sa && sa->t == HV_BOOL ? hval_get_bool(p, "strip_accents", 0) : -1;
	return n;
}

/* A WordPiece tokenizer's artifact: vocab.txt and tokenizer.json. */
static int write_wordpiece(kctx *c, const wordpiece *w, const char *outdir)
{
	buf v, js;
	buf_init(&v);
	buf_init(&js);
	wordpiece_vocab_txt(w, &v);
	wordpiece_hf_json(w, &js);
	int rc = write_out(c, outdir, "vocab.txt", &v);
	if (rc == 0)
		rc = write_out(c, outdir, "tokenizer.json", &js);
	if (rc == 0)
		kctx_metric(c, "vocab", (double)wordpiece_vocab_size(w));
	buf_free(&v);
	buf_free(&js);
	return rc;
}

typedef struct wp_count {
	bpe_trainer *t;
} wp_count;

static void count_word(void *ud, const char *p, size_t n)
{
	bpe_trainer_add_word(((wp_count *)ud)->t, p, n);
}

/* Learns a WordPiece vocabulary as HF's WordPieceTrainer does: BERT's
 * normalizer and pre-tokenizer, then BPE merges over characters with "##"
 * on the pieces after a word's first; [PAD] [UNK] [CLS] [SEP] [MASK] first. */
static int train_wordpiece(kctx *c, const hval *p, rec_reader *r, const int *fs, int nf, const char *outdir)
{
	static const char *special[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
	wordpiece_norm nm = norm_params(p);
	wordpiece *norm = wordpiece_new_normalizer(&nm);
	double t0 = now_seconds();
	bpe_trainer *t = bpe_trainer_new();
	wp_count wc = {t};
	buf nb;
	buf_init(&nb);
	uint64_t bytes = 0;
	int rc = 0;
	for (uint64_t row = 0; row < r->rows && rc == 0; row++) {
		for (int k = 0; k < nf; k++) {
			size_t len;
			const char *s = recr_str(r, fs[k], row, &len);
			if (!s)
				continue;
			nb.len = 0;
			wordpiece_normalize(norm, s, len, &nb);
			wordpiece_pretokenize(nb.p, nb.len, count_word, &wc);
			bytes += len;
		}
		if ((row & 4095) == 0 && kctx_progress(c, (double)row, (double)r->rows, "rows") != 0)
			rc = -1;
	}
	buf_free(&nb);
	wordpiece_free(norm);
	double t_count = now_seconds() - t0;
	bpe_train_opts o = {(size_t)hval_get_int(p, "vocab", 8000), (uint64_t)hval_get_int(p, "min_frequency", 2), 5,
	                    train_progress, c, "##", (size_t)hval_get_int(p, "limit_alphabet", 1000)};
	bpe_train_result res;
	memset(&res, 0, sizeof res);
	if (rc == 0)
		rc = bpe_trainer_run(&c->err, t, &o, &res);
	wordpiece *w = NULL;
	if (rc == 0) {
		size_t n = res.ntokens + 5;
		const char **tok = xmalloc(n * sizeof *tok);
		size_t *len = xmalloc(n * sizeof *len);
		for (size_t i = 0; i < 5; i++) {
			tok[i] = special[i];
			len[i] = strlen(special[i]);
		}
		size_t at = 0;
		for (size_t i = 0; i < res.ntokens; i++) {
			tok[5 + i] = res.tokens.p + at;
			len[5 + i] = res.lens[i];
			at += res.lens[i];
		}
		rc = wordpiece_from_tokens(&c->err, &w, tok, len, n, &nm);
		free(tok);
		free(len);
	}
	if (rc == 0)
		rc = write_wordpiece(c, w, outdir);
	if (rc == 0) {
		/* compression and unknown words on the first MB of text */
		uint32_t *ids = NULL;
		size_t nids = 0, cap = 0;
		uint64_t sample = 0;
		wordpiece_cache *cache = wordpiece_cache_new();
		for (uint64_t row = 0; row < r->rows && sample < (1u << 20); row++)
			for (int k = 0; k < nf; k++) {
				size_t len;
				const char *s = recr_str(r, fs[k], row, &len);
				if (s) {
					wordpiece_encode(w, cache, s, len, &ids, &nids, &cap);
					sample += len;
				}
			}
		size_t unk = 0;
		for (size_t i = 0; i < nids; i++)
			unk += ids[i] == (uint32_t)wordpiece_specials(w).unk;
		wordpiece_cache_free(cache);
		free(ids);
		kctx_metric(c, "merges", (double)res.merges);
		kctx_metric(c, "words", (double)res.words);
		kctx_metric(c, "bytes", (double)bytes);
		kctx_metric(c, "seconds", now_seconds() - t0);
		kctx_metric(c, "seconds_counting", t_count);
		if (nids) {
			kctx_metric(c, "bytes_per_token", (double)sample / (double)nids);
			kctx_metric(c, "unk_rate", (double)unk / (double)nids);
		}
		if (wordpiece_vocab_size(w) < o.vocab)
			kctx_log(c, "tokenizer: %zu tokens, not %zu: no pair occurs min_frequency = %llu times any more",
			         wordpiece_vocab_size(w), o.vocab, (unsigned long long)o.min_frequency);
		else if (wordpiece_vocab_size(w) > o.vocab)
			kctx_log(c, "tokenizer: %zu tokens, more than vocab = %zu: the characters alone (and their ## forms) "
			         "take that many (as in HF's trainer); a smaller limit_alphabet keeps fewer",
			         wordpiece_vocab_size(w), o.vocab);
	}
	wordpiece_free(w);
	bpe_train_result_free(&res);
	bpe_trainer_free(t);
	return rc;
}

/* Every tokenizer artifact: GPT-2's two files, loaded back (the checks every
 * tokenizer gets; a tokenizer.json already there, from = one, is what is
 * loaded), and the same tokenizer as a Hugging Face tokenizer.json. */
static int finish_tokenizer(kctx *c, const char *outdir)
{
	bpe *b;
	if (bpe_load_dir(&c->err, &b, outdir) != 0)
		return -1;
	buf js;
	buf_init(&js);
	bpe_hf_json(b, &js);
	int rc = write_out(c, outdir, "tokenizer.json", &js);
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
		if (rc == 1)
			return 0; /* WordPiece: written */
	} else if (hf) {
		/* a Hugging Face tokenizer.json (kept as GPT-2's two files, or as
		 * vocab.txt + tokenizer.json for WordPiece) or a BERT vocab.txt:
		 * which one, from the content */
		buf js, enc, mg;
		buf_init(&js);
		buf_init(&enc);
		buf_init(&mg);
		bpe *b = NULL;
		rc = fs_read(&c->err, hf->path, &js);
		int what = rc == 0 ? wordpiece_sniff(js.p, js.len) : 0;
		if (rc == 0 && what == 0)
			rc = kctx_fail(c, "tokenizer: %s is empty or binary: expected a tokenizer.json or a vocab.txt", hf->label);
		if (rc == 0 && (what == 1 || what == 3)) {
			wordpiece *w = NULL;
			wordpiece_norm nm = norm_params(params);
			static const char *nk[4] = {"lowercase", "strip_accents", "clean_text", "handle_chinese_chars"};
			for (int k = 0; k < 4 && what == 1; k++)
				if (hval_get(params, nk[k])) {
					kctx_fail(c, "tokenizer: %s: a tokenizer.json carries its own normalizer (%s)", nk[k], hf->label);
					buf_free(&js);
					return herr_hint(&c->err, "leave %s out, or give a vocab.txt", nk[k]);
				}
			rc = what == 1 ? wordpiece_load_hf(&c->err, &w, js.p, js.len, hf->label)
			               : wordpiece_load_vocab_mem(&c->err, &w, js.p, js.len, hf->label, &nm);
			if (rc == 0)
				rc = write_wordpiece(c, w, outdir);
			wordpiece_free(w);
			buf_free(&js);
			return rc;
		}
		if (rc == 0)
			rc = bpe_load_hf(&c->err, &b, js.p, js.len, hf->label);
		if (rc == 0 && !bpe_is_spm(b)) { /* a SentencePiece-style BPE has no GPT-2 files */
			bpe_gpt2_files(b, &enc, &mg);
			rc = write_out(c, outdir, "encoder.json", &enc);
		}
		if (rc == 0 && !bpe_is_spm(b))
			rc = write_out(c, outdir, "vocab.bpe", &mg);
		if (rc == 0) { /* its pre-tokenizer and normalizer live in the tokenizer.json only */
			js.len = 0;
			bpe_hf_json(b, &js);
			rc = write_out(c, outdir, "tokenizer.json", &js);
		}
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
	double bytes, truncated, tokens, untruncated, no_completion, blocks, pack_dropped;
	uint32_t *lens; /* tokens per row, every dataset */
	size_t n, cap;
} tstats;

/* How rows become ids. Plain: one text field. Prompt/completion: a prompt
 * made from a template over the row's fields, then a completion field; the
 * mask is 0 on the prompt's ids and 1 after. */
typedef struct seg {
	const char *lit; /* literal text, or NULL for a field */
	size_t n;
	int field;
} seg;

typedef struct tspec {
	int f;                  /* plain: the text field; -1 in prompt mode */
	int f2;                 /* WordPiece pairs: the second text field, or -1 */
	seg *tmpl, *alt;        /* prompt templates (alt: when f_input is empty) */
	size_t ntmpl, nalt;
	int f_input;            /* -1: no alternative template */
	int f_completion;
	int f_tags;             /* WordPiece tagging: one label per whitespace word of f, or -1 */
	int spans;              /* f_tags holds entity spans [[start, end, "TYPE"], ...] instead */
	char **tags;            /* the tag set, sorted; a tag's id is its index */
	size_t ntags;
	int f_chat, chat;       /* format = "chat": the messages field (JSON) and the template; -1: none */
	uint32_t chat_ids[8];   /* the template's special tokens' ids, in chat_specials' order */
} tspec;

/* Parses "text {field} text" into segments; -1 with the unknown name. */
static int compile_template(kctx *c, const rec_reader *r, const char *label, const char *t, seg **out, size_t *n)
{
	size_t cap = 8;
	*out = xmalloc(cap * sizeof **out);
	*n = 0;
	while (*t) {
		if (*n + 1 >= cap)
			*out = xrealloc(*out, (cap *= 2) * sizeof **out);
		const char *open = strchr(t, '{'), *close = open ? strchr(open, '}') : NULL;
		if (!open || !close) {
			(*out)[(*n)++] = (seg){t, strlen(t), -1};
			break;
		}
		if (open > t)
			(*out)[(*n)++] = (seg){t, (size_t)(open - t), -1};
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)(close - open - 1), open + 1);
		int f = recr_find(r, name);
		if (f < 0 || (r->fields[f].type != REC_STR && r->fields[f].type != REC_CAT)) {
			free(*out);
			*out = NULL;
			return kctx_fail(c, "tokenize: template: %s has no text field '%s'", label, name);
		}
		(*out)[(*n)++] = (seg){NULL, 0, f};
		t = close + 1;
	}
	return 0;
}

static void fill_template(const seg *sg, size_t n, const rec_reader *r, uint64_t row, buf *out)
{
	out->len = 0;
	for (size_t i = 0; i < n; i++) {
		if (sg[i].lit) {
			buf_add(out, sg[i].lit, sg[i].n);
		} else {
			size_t len;
			const char *v = recr_str(r, sg[i].field, row, &len);
			if (v)
				buf_add(out, v, len);
		}
	}
}

/* Encoding a block of rows on several threads: each row's ids land in its
 * own slot; the rows are then written in order, so the output does not
 * depend on the thread count. */
typedef struct row_ids {
	uint32_t *ids;
	size_t n, cap;
	size_t prompt_n; /* ids of the prompt (prompt mode) */
	size_t bytes;
	wordpiece_enc wp; /* WordPiece: ids, token types, lengths before and after cutting */
	int32_t *labels;  /* tagging: per id, the word's tag on its first piece, else -100 */
	size_t lcap;
	long long bad_words, bad_tags; /* tagging: the counts when they differ (else -1) */
	char bad_span[96];             /* spans: what is wrong with the row's spans, or "" */
	int cut;          /* tagging: the row was cut to max_len */
	uint8_t *mask;    /* chat: per id, 1 where the loss counts (else prompt_n's rule) */
	size_t mcap;
	char bad_chat[160]; /* chat: what is wrong with the row's messages, or "" */
} row_ids;

/* A block of rows to encode, shared by the crew; member t has its own BPE
 * cache and prompt buffer. */
typedef struct enc_job {
	const bpe *b;
	const wordpiece *wp;     /* or NULL: byte-level BPE */
	wordpiece_cache **wcaches;
	size_t max_len;          /* WordPiece: cut as HF does, inside the encoding */
	int left, special;
	const rec_reader *r;
	const tspec *ts;
	uint64_t base, end;
	row_ids *out;
	bpe_cache **caches;
	buf *prompts;
} enc_job;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* [s, s + n) split at ASCII white space: the next word's start and length */
static int next_word(const char *s, size_t n, size_t *at, size_t *ws, size_t *wl)
{
	while (*at < n && (s[*at] == ' ' || s[*at] == '\t' || s[*at] == '\n' || s[*at] == '\r'))
		(*at)++;
	if (*at >= n)
		return 0;
	*ws = *at;
	while (*at < n && !(s[*at] == ' ' || s[*at] == '\t' || s[*at] == '\n' || s[*at] == '\r'))
		(*at)++;
	*wl = *at - *ws;
	return 1;
}

static void push_id(row_ids *o, uint32_t id, int32_t label)
{
	if (o->n + 1 > o->cap) {
		o->cap = o->cap ? o->cap * 2 : 64;
		o->ids = xrealloc(o->ids, o->cap * sizeof *o->ids);
	}
	if (o->n + 1 > o->lcap) {
		o->lcap = o->cap;
		o->labels = xrealloc(o->labels, o->lcap * sizeof *o->labels);
	}
	o->ids[o->n] = id;
	o->labels[o->n++] = label;
}

/* Tagging (HF's run_ner way): [CLS], then each whitespace word's pieces
 * with the word's tag on the first piece and -100 on the rest, cut to
 * max_len - 1, then [SEP]. The words and tags must pair up. */
static void encode_tagged(const struct enc_job *j, wordpiece_cache *cache, const char *s, size_t n, const char *tg,
                          size_t tn, row_ids *o);

/* chat rows: the conversation rendered and encoded (chat_encode); prompt_n:
 * where the last assistant turn's trained part starts */
static void encode_chat(const struct enc_job *j, bpe_cache *cache, uint64_t row, row_ids *o)
{
	const tspec *ts = j->ts;
	size_t len;
	const char *s = recr_str(j->r, ts->f_chat, row, &len);
	o->bad_chat[0] = 0;
	jarena *a = json_arena_new();
	jerror je;
	const jnode *m = s ? json_parse(a, s, len, &je) : NULL;
	chat_ids ci = {o->ids, o->mask, 0, o->cap, o->mcap, 0, 0};
	herr e;
	if (!m)
		snprintf(o->bad_chat, sizeof o->bad_chat, "not JSON (ingest the field with types = { messages = \"json\" })");
	else if (chat_encode(&e, j->b, cache, ts->chat, ts->chat_ids, m, 0, "messages", &ci) != 0)
		snprintf(o->bad_chat, sizeof o->bad_chat, "%.150s", e.msg);
	o->ids = ci.ids;
	o->mask = ci.mask;
	o->cap = ci.cap;
	o->mcap = ci.mcap;
	o->n = ci.n;
	o->bytes = ci.bytes;
	o->prompt_n = ci.last == (size_t)-1 ? ci.n : ci.last; /* no assistant turn: nothing to train on */
	json_arena_free(a);
}

static void encode_rows(void *ud, int t, int nt)
{
	enc_job *j = ud;
	const tspec *ts = j->ts;
	bpe_cache *cache = j->caches[t];
	buf *prompt = &j->prompts[t];
	for (uint64_t row = j->base + (uint64_t)t; row < j->end; row += (uint64_t)nt) {
		row_ids *o = &j->out[row - j->base];
		o->n = 0;
		o->prompt_n = 0;
		size_t len;
		if (j->wp && ts->f_tags >= 0) {
			size_t tl = 0;
			const char *s = recr_str(j->r, ts->f, row, &len), *tg = recr_str(j->r, ts->f_tags, row, &tl);
			encode_tagged(j, j->wcaches[t], s ? s : "", s ? len : 0, tg ? tg : "", tg ? tl : 0, o);
			o->bytes = len;
			continue;
		}
		if (j->wp) {
			size_t len2 = 0;
			const char *s = recr_str(j->r, ts->f, row, &len);
			const char *s2 = ts->f2 >= 0 ? recr_str(j->r, ts->f2, row, &len2) : NULL;
			if (!s)
				len = 0;
			if (ts->f2 >= 0 && !s2)
				s2 = "", len2 = 0;
			wordpiece_encode_pair(j->wp, j->wcaches[t], s ? s : "", len, s2, len2, j->max_len, j->left, j->special,
			                      &o->wp);
			o->bytes = len + len2;
			continue;
		}
		if (ts->f >= 0) {
			const char *s = recr_str(j->r, ts->f, row, &len);
			bpe_encode_cached(j->b, cache, s ? s : "", len, 0, &o->ids, &o->n, &o->cap);
			o->bytes = len;
			continue;
		}
		if (ts->f_chat >= 0) {
			encode_chat(j, cache, row, o);
			continue;
		}
		int alt = ts->f_input >= 0 && (recr_str(j->r, ts->f_input, row, &len), len == 0);
		fill_template(alt ? ts->alt : ts->tmpl, alt ? ts->nalt : ts->ntmpl, j->r, row, prompt);
		bpe_encode_cached(j->b, cache, prompt->p ? prompt->p : "", prompt->len, 0, &o->ids, &o->n, &o->cap);
		o->prompt_n = o->n;
		const char *s = recr_str(j->r, ts->f_completion, row, &len);
		bpe_encode_cached(j->b, cache, s ? s : "", len, 0, &o->ids, &o->n, &o->cap);
		o->bytes = prompt->len + len;
	}
}

typedef struct span {
	size_t start, end; /* bytes of the text */
	const char *type;
	size_t tlen;
} span;

/* A spans field, [[start, end, "TYPE"], ...] in characters (code points)
 * of text, end exclusive, as spaCy and doccano write them, into byte spans
 * (the arena holds the types); NULL with why when it is not that. */
static span *parse_spans(jarena *a, const char *js, size_t jn, const char *text, size_t tn, size_t *n, char *why,
                         size_t wn)
{
	jerror je;
	const jnode *r = json_parse(a, js, jn, &je);
	*n = 0;
	if (!r || r->t != J_ARR) {
		snprintf(why, wn, "expected a JSON list of [start, end, \"TYPE\"]");
		return NULL;
	}
	span *sp = xcalloc(r->n + 1, sizeof *sp);
	/* code point offsets to bytes: the byte where each code point starts */
	size_t ncp = 0;
	for (size_t i = 0; i < tn; i++)
		ncp += ((unsigned char)text[i] & 0xC0) != 0x80;
	size_t *at = xmalloc((ncp + 1) * sizeof *at), c = 0;
	for (size_t i = 0; i < tn; i++)
		if (((unsigned char)text[i] & 0xC0) != 0x80)
			at[c++] = i;
	at[ncp] = tn;
	for (const jnode *e = r->kid; e; e = e->next) {
		long long st, en;
		const jnode *k0 = e->t == J_ARR ? e->kid : NULL, *k1 = k0 ? k0->next : NULL, *k2 = k1 ? k1->next : NULL;
		if (!k2 || k2->t != J_STR || json_int(k0, 0, (long long)ncp, &st) || json_int(k1, 0, (long long)ncp, &en) ||
		    en <= st || !k2->len) {
			snprintf(why, wn, "span %zu: expected [start, end, \"TYPE\"] with 0 <= start < end <= %zu", *n + 1, ncp);
			free(sp);
			free(at);
			return NULL;
		}
		sp[*n] = (span){at[st], at[en], k2->s, k2->len};
		(*n)++;
	}
	free(at);
	return sp;
}

static void encode_tagged(const enc_job *j, wordpiece_cache *cache, const char *s, size_t n, const char *tg, size_t tn,
                          row_ids *o)
{
	const tspec *ts = j->ts;
	o->bad_span[0] = 0;
	if (ts->spans) {
		/* spans to word tags: a word that overlaps a span is B- (the span's
		 * first word) or I- of its type; the others O */
		jarena *a = json_arena_new();
		size_t ns, at = 0, ws, wl, last = (size_t)-1;
		span *sp = parse_spans(a, tg, tn, s, n, &ns, o->bad_span, sizeof o->bad_span);
		buf tags;
		buf_init(&tags);
		while (sp && next_word(s, n, &at, &ws, &wl)) {
			size_t k = 0;
			while (k < ns && !(sp[k].start < ws + wl && sp[k].end > ws))
				k++;
			if (tags.len)
				buf_addc(&tags, ' ');
			if (k == ns)
				buf_adds(&tags, "O");
			else
				buf_printf(&tags, "%s-%.*s", k == last ? "I" : "B", (int)sp[k].tlen, sp[k].type);
			last = k < ns ? k : (size_t)-1;
		}
		if (sp) {
			tspec t2 = *ts;
			t2.spans = 0;
			enc_job j2 = *j;
			j2.ts = &t2;
			encode_tagged(&j2, cache, s, n, tags.p ? tags.p : "", tags.len, o);
		} else {
			o->n = 0;
		}
		free(sp);
		buf_free(&tags);
		json_arena_free(a);
		return;
	}
	wordpiece_special sp = wordpiece_specials(j->wp);
	size_t at = 0, ta = 0, ws, wl, tws, twl;
	long long words = 0, tags = 0;
	o->bad_words = o->bad_tags = -1;
	o->cut = 0;
	if (j->special)
		push_id(o, (uint32_t)sp.cls, -100);
	size_t room = j->max_len ? j->max_len - (j->special ? 1 : 0) : (size_t)-1;
	for (;;) {
		int hw = next_word(s, n, &at, &ws, &wl), ht = next_word(tg, tn, &ta, &tws, &twl);
		words += hw;
		tags += ht;
		if (!hw || !ht) {
			/* count what is left, to report a mismatch */
			while (next_word(s, n, &at, &ws, &wl))
				words++;
			while (next_word(tg, tn, &ta, &tws, &twl))
				tags++;
			break;
		}
		char key[128];
		snprintf(key, sizeof key, "%.*s", (int)(twl < 127 ? twl : 127), tg + tws);
		const char *kp = key;
		char **hit = bsearch(&kp, ts->tags, ts->ntags, sizeof *ts->tags, cmp_str);
		size_t before = o->n;
		wordpiece_encode(j->wp, cache, s + ws, wl, &o->ids, &o->n, &o->cap);
		if (o->lcap < o->cap) {
			o->lcap = o->cap;
			o->labels = xrealloc(o->labels, o->lcap * sizeof *o->labels);
		}
		for (size_t k = before; k < o->n; k++)
			o->labels[k] = k == before && hit ? (int32_t)(hit - ts->tags) : -100;
		if (o->n > room) {
			o->n = room;
			o->cut = 1;
		}
	}
	if (words != tags) {
		o->bad_words = words;
		o->bad_tags = tags;
	}
	if (o->n > room)
		o->n = room;
	if (j->special)
		push_id(o, (uint32_t)sp.sep, -100);
}

static const char *alpaca =
	"Below is an instruction that describes a task, paired with an input that provides further context. "
	"Write a response that appropriately completes the request.\n\n"
	"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
static const char *alpaca_noinput =
	"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
	"### Instruction:\n{instruction}\n\n### Response:\n";

typedef struct out_files {
	FILE *ids, *mask, *types, *labels;
	char *ids_path, *mask_path, *types_path, *labels_path;
} out_files;

static int put(kctx *c, out_files *o, const uint32_t *ids, const uint8_t *mask, size_t n)
{
	if (n && fwrite(ids, sizeof *ids, n, o->ids) != n)
		return kctx_fail(c, "%s: write error", o->ids_path);
	if (n && o->mask && fwrite(mask, 1, n, o->mask) != n)
		return kctx_fail(c, "%s: write error", o->mask_path);
	return 0;
}

static int put_types(kctx *c, out_files *o, const uint8_t *types, size_t n)
{
	if (n && o->types && fwrite(types, 1, n, o->types) != n)
		return kctx_fail(c, "%s: write error", o->types_path);
	return 0;
}

/* A text field of the dataset (what: "", " (the tags)", ...) by name, marked
 * to drop from the output's fields; -1 with the error and a hint */
static int text_field(kctx *c, const rec_reader *r, const char *label, const char *name, const char *what, int *idx,
                      uint8_t *drop)
{
	*idx = recr_find(r, name);
	if (*idx < 0 || (r->fields[*idx].type != REC_STR && r->fields[*idx].type != REC_CAT)) {
		kctx_fail(c, "tokenize: %s has no text field '%s'%s", label, name, what);
		return recr_hint_field(&c->err, r, name);
	}
	drop[*idx] = 1;
	return 0;
}

/* Encodes one dataset (dir holding data.rec) into outdir/rel, with a
 * byte-level BPE (b) or a WordPiece tokenizer (wp). */
static int tokenize_one(kctx *c, const bpe *b, const wordpiece *wp, const hval *p, const char *dir, const char *label,
                        const char *outdir, const char *rel, tstats *st, char **tagset, size_t ntags)
{
	rec_reader r;
	char *path = path_join(dir, RECORDS_FILE);
	int rc = recr_open(&c->err, &r, path);
	free(path);
	if (rc)
		return -1;
	const char *format = hval_get_str(p, "format", "text");
	const char *field = hval_get_str(p, "field", "text");
	int prompt_mode = strcmp(format, "text") != 0;
	tspec ts = {-1, -1, NULL, NULL, 0, 0, -1, -1, -1, 0, tagset, ntags, -1, -1, {0}};
	int chat = !strcmp(format, "chat");
	const char *tags = hval_get_str(p, "tags", NULL);
	if (!tags && hval_get_str(p, "spans", NULL)) {
		tags = hval_get_str(p, "spans", NULL);
		ts.spans = 1;
	}
	uint8_t *drop = xcalloc(r.nfields + 1, 1);
	const hval *fl = hval_get(p, "fields");
	const char *field2 = NULL;
	if (fl && fl->n >= 1) {
		field = fl->v[0].s;
		field2 = fl->n >= 2 ? fl->v[1].s : NULL;
	}
	if (prompt_mode && wp) {
		kctx_fail(c, "tokenize: format = \"%s\" goes with a byte-level BPE tokenizer, not WordPiece", format);
		rc = herr_hint(&c->err, "with a WordPiece tokenizer, give the text as field = \"...\" or a pair as "
		               "fields = { \"a\", \"b\" }");
	} else if (field2 && !wp) {
		kctx_fail(c, "tokenize: fields = { \"%s\", \"%s\" }: pairs of texts need a WordPiece tokenizer", field, field2);
		rc = herr_hint(&c->err, "use one field with a byte-level BPE, or a tokenizer { kind = \"wordpiece\" }");
	} else if (tags && (!wp || field2 || prompt_mode || hval_get_bool(p, "pack", 0))) {
		kctx_fail(c, "tokenize: %s = \"%s\" (tagging) needs a WordPiece tokenizer, one text field, format = \"text\" "
		          "and no pack", ts.spans ? "spans" : "tags", tags);
		rc = herr_hint(&c->err, "tokenize the words with a tokenizer { kind = \"wordpiece\" } (a BERT's)");
	} else if (chat) {
		const char *tn = hval_get_str(p, "template", NULL);
		ts.chat = tn ? chat_template(tn) : -1;
		if (!tn) /* by the tokenizer's special tokens */
			ts.chat = chat_by_tokens(b);
		if (ts.chat < 0) {
			kctx_fail(c, "tokenize: format = \"chat\": %s%s%s", tn ? "template \"" : "the tokenizer has no chat template's special tokens",
			          tn ? tn : "", tn ? "\" is not one hone has (chatml, llama3, mistral, zephyr)" : "");
			rc = herr_hint(&c->err, "give template = \"chatml\" | \"llama3\" | \"mistral\" | \"zephyr\", and a tokenizer "
			               "with its special tokens (tokenizer { ..., special = { \"<|im_start|>\", \"<|im_end|>\" } })");
		}
		if (rc == 0 && chat_special_ids(&c->err, b, ts.chat, ts.chat_ids) != 0)
			rc = herr_prefix(&c->err, "tokenize");
		if (rc == 0)
			rc = text_field(c, &r, label, strcmp(field, "text") ? field : "messages", " (the messages)", &ts.f_chat, drop);
	} else if (!prompt_mode) {
		rc = text_field(c, &r, label, field, "", &ts.f, drop);
		if (rc == 0 && tags)
			rc = text_field(c, &r, label, tags, " (the tags)", &ts.f_tags, drop);
		if (rc == 0 && field2)
			rc = text_field(c, &r, label, field2, "", &ts.f2, drop);
	} else {
		int instr = !strcmp(format, "instruction");
		const char *tmpl = hval_get_str(p, "template", NULL);
		const char *comp = hval_get_str(p, "completion", instr ? "output" : "completion");
		rc = compile_template(c, &r, label, tmpl ? tmpl : instr ? alpaca : "{prompt}", &ts.tmpl, &ts.ntmpl);
		if (rc == 0 && instr && !tmpl) {
			rc = compile_template(c, &r, label, alpaca_noinput, &ts.alt, &ts.nalt);
			ts.f_input = recr_find(&r, "input");
		}
		if (rc == 0)
			rc = text_field(c, &r, label, comp, " (the completion)", &ts.f_completion, drop);
		for (size_t i = 0; rc == 0 && i < ts.ntmpl; i++)
			if (!ts.tmpl[i].lit)
				drop[ts.tmpl[i].field] = 1;
		if (rc == 0 && ts.f_input >= 0)
			drop[ts.f_input] = 1;
	}
	long long max_len = hval_get_int(p, "max_len", 0);
	int left = !strcmp(hval_get_str(p, "truncation", "right"), "left");
	int eos = hval_get_bool(p, "add_eos", 1) && !chat, pack = hval_get_bool(p, "pack", 0); /* a chat's turns end themselves */
	/* WordPiece: the template's [CLS] ... [SEP] instead of an EOS, and the
	 * cut made in the encoding (HF's truncation) */
	int special = wp ? eos : 0;
	if (wp)
		eos = 0;
	int64_t eos_tok = wp ? -1 : bpe_eos_id(b);
	if (rc == 0 && wp && pack && field2)
		rc = kctx_fail(c, "tokenize: pack = true takes one text field, not a pair");
	if (rc == 0 && wp && !pack && special && max_len > 0 && (size_t)max_len <= wordpiece_added(wp, field2 != NULL))
		rc = kctx_fail(c, "tokenize: max_len = %lld leaves no room for text after the %zu special tokens", max_len,
		               wordpiece_added(wp, field2 != NULL));
	if (rc == 0 && eos && eos_tok < 0) {
		kctx_fail(c, "tokenize: add_eos: the tokenizer has no <|endoftext|> token");
		rc = herr_hint(&c->err, "give it as a special token (tokenizer { ..., special = { \"<|endoftext|>\" } }) or set add_eos = false");
	}
	if (rc == 0 && pack && max_len <= 0)
		rc = kctx_fail(c, "tokenize: pack = true needs max_len, the block length");
	if (rc) {
		free(ts.tmpl);
		free(ts.alt);
		free(drop);
		recr_close(&r);
		return -1;
	}
	uint32_t eos_id = (uint32_t)(eos_tok < 0 ? 0 : eos_tok);
	/* rows: the other fields, then tok_off, tok_len (and prompt_len);
	 * packed: block, tok_off, tok_len */
	rec_writer *w = recw_new();
	int *to = xcalloc(r.nfields, sizeof *to);
	int f_block = pack ? recw_field(w, "block", REC_INT) : -1;
	for (uint32_t k = 0; k < r.nfields; k++)
		to[k] = drop[k] || pack ? -1 : recw_field(w, r.fields[k].name, r.fields[k].type);
	int f_off = recw_field(w, "tok_off", REC_INT), f_len = recw_field(w, "tok_len", REC_INT);
	int f_plen = prompt_mode && !pack ? recw_field(w, "prompt_len", REC_INT) : -1;
	char *ids_rel = xasprintf("%s%stokens.u32", rel, rel[0] ? "/" : "");
	char *mask_rel = xasprintf("%s%smask.u8", rel, rel[0] ? "/" : "");
	char *types_rel = xasprintf("%s%stypes.u8", rel, rel[0] ? "/" : "");
	char *rec_rel = xasprintf("%s%s%s", rel, rel[0] ? "/" : "", RECORDS_FILE);
	char *rec_path = NULL;
	out_files of = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
	if (kctx_out_path(c, outdir, ids_rel, &of.ids_path) != 0 || kctx_out_path(c, outdir, rec_rel, &rec_path) != 0 ||
	    (prompt_mode && kctx_out_path(c, outdir, mask_rel, &of.mask_path) != 0) ||
	    (field2 && kctx_out_path(c, outdir, types_rel, &of.types_path) != 0))
		rc = -1;
	else if (!(of.ids = fopen(of.ids_path, "wb")))
		rc = kctx_fail(c, "%s: cannot create: %s", of.ids_path, strerror(errno));
	else if (prompt_mode && !(of.mask = fopen(of.mask_path, "wb")))
		rc = kctx_fail(c, "%s: cannot create: %s", of.mask_path, strerror(errno));
	else if (field2 && !(of.types = fopen(of.types_path, "wb")))
		rc = kctx_fail(c, "%s: cannot create: %s", of.types_path, strerror(errno));
	char *labels_rel = xasprintf("%s%slabels.i32", rel, rel[0] ? "/" : "");
	if (rc == 0 && ts.f_tags >= 0 && kctx_out_path(c, outdir, labels_rel, &of.labels_path) != 0)
		rc = -1;
	else if (rc == 0 && ts.f_tags >= 0 && !(of.labels = fopen(of.labels_path, "wb")))
		rc = kctx_fail(c, "%s: cannot create: %s", of.labels_path, strerror(errno));
	free(labels_rel);
	long long total = 0; /* ids written so far to this dataset's tokens.u32 */
	const uint64_t B = 1024;
	row_ids *block = xcalloc(B, sizeof *block);
	crew *cw = crew_new(c->threads > 0 ? c->threads : 1);
	int nt = crew_size(cw);
	bpe_cache *caches[64];
	wordpiece_cache *wcaches[64];
	buf prompts[64];
	for (int t = 0; t < nt; t++) {
		caches[t] = wp ? NULL : bpe_cache_new();
		wcaches[t] = wp ? wordpiece_cache_new() : NULL;
		buf_init(&prompts[t]);
	}
	/* one row's ids and mask, after EOS and truncation; the packing stream */
	uint32_t *rid = NULL, *pk = NULL;
	uint8_t *rmask = NULL, *pkm = NULL;
	size_t rcap = 0, npk = 0, pkcap = 0;
	long long blocks = 0;
	uint64_t no_comp = 0, no_comp_ex[3]; /* rows left without a completion token, the first ones */
	for (uint64_t row = 0; rc == 0 && row < r.rows; row++) {
		uint64_t base = row - row % B;
		if (row == base) {
			uint64_t end = base + B < r.rows ? base + B : r.rows;
			enc_job job = {b, wp, wcaches, pack ? 0 : (size_t)max_len, left, special, &r, &ts, base, end, block, caches,
			               prompts};
			crew_run(cw, encode_rows, &job);
		}
		row_ids *ro = &block[row - base];
		if (ts.f_tags >= 0 && ro->bad_span[0]) {
			rc = kctx_fail(c, "tokenize: %s: row %llu: spans in '%s': %s", label, (unsigned long long)row + 1, tags,
			               ro->bad_span);
			break;
		}
		if (ts.f_tags >= 0 && ro->bad_words >= 0) {
			rc = kctx_fail(c, "tokenize: %s: row %llu: %lld words in '%s' but %lld tags in '%s' (one tag per "
			               "whitespace-separated word)", label, (unsigned long long)row + 1, ro->bad_words, field,
			               ro->bad_tags, tags);
			break;
		}
		if (ts.f_tags >= 0 && ro->cut)
			st->truncated++;
		if (wp && ts.f_tags < 0) {
			/* the ids as HF gives them (cut, template): the row as it is */
			uint32_t *t = ro->ids;
			size_t tc = ro->cap;
			ro->ids = ro->wp.ids;
			ro->n = ro->wp.n;
			ro->cap = ro->wp.cap;
			ro->wp.ids = t; /* the arrays swap: the encoder reuses them */
			ro->wp.cap = tc;
		}
		size_t n = ro->n, keep = n + (eos ? 1 : 0);
		if (rcap < keep + 1) {
			rcap = keep + 1;
			rid = xrealloc(rid, rcap * sizeof *rid);
			rmask = xrealloc(rmask, rcap);
		}
		if (ts.f_chat >= 0 && ro->bad_chat[0]) {
			rc = kctx_fail(c, "tokenize: %s: row %llu: %s", label, (unsigned long long)row + 1, ro->bad_chat);
			break;
		}
		if (n)
			memcpy(rid, ro->ids, n * sizeof *rid);
		for (size_t k = 0; k < n; k++)
			rmask[k] = ts.f_chat >= 0 ? ro->mask[k] : k >= ro->prompt_n;
		if (eos) {
			rid[n] = eos_id;
			rmask[n] = 1;
		}
		size_t start = 0;
		if (wp && ts.f_tags < 0 && (ro->wp.a_kept < ro->wp.a_len || ro->wp.b_kept < ro->wp.b_len))
			st->truncated++;
		if (!wp && !pack && max_len > 0 && keep > (size_t)max_len) {
			st->truncated++;
			/* the EOS stays last */
			size_t body = (size_t)max_len - (eos ? 1 : 0);
			start = left ? n - body : 0;
			if (eos) {
				memmove(rid + start + body, rid + n, sizeof *rid);
				rmask[start + body] = 1;
			}
			keep = (size_t)max_len;
		}
		if (prompt_mode && ro->prompt_n >= (left ? n : start + keep - (eos ? 1 : 0))) {
			st->no_completion++;
			if (no_comp < 3)
				no_comp_ex[no_comp] = row + 1;
			no_comp++;
		}
		if (!pack) {
			rc = put(c, &of, rid + start, rmask + start, keep);
			if (rc == 0 && of.types)
				rc = put_types(c, &of, ro->wp.types, keep);
			if (rc == 0 && of.labels && keep && fwrite(ro->labels, sizeof *ro->labels, keep, of.labels) != keep)
				rc = kctx_fail(c, "%s: write error", of.labels_path);
			recw_int(w, f_off, total);
			recw_int(w, f_len, (long long)keep);
			if (f_plen >= 0) {
				size_t pl = ro->prompt_n > start ? ro->prompt_n - start : 0;
				recw_int(w, f_plen, (long long)(pl < keep ? pl : keep));
			}
			for (uint32_t k = 0; k < r.nfields; k++)
				if (to[k] >= 0)
					recw_copy_value(w, to[k], &r, (int)k, row);
			recw_end_row(w);
			total += (long long)keep;
		} else {
			/* documents end to end, cut into blocks of max_len */
			if (npk + keep > pkcap) {
				pkcap = (npk + keep) * 2;
				pk = xrealloc(pk, pkcap * sizeof *pk);
				pkm = xrealloc(pkm, pkcap);
			}
			memcpy(pk + npk, rid, keep * sizeof *pk);
			memcpy(pkm + npk, rmask, keep);
			npk += keep;
			size_t at = 0;
			while (rc == 0 && npk - at >= (size_t)max_len) {
				rc = put(c, &of, pk + at, pkm + at, (size_t)max_len);
				recw_int(w, f_block, blocks++);
				recw_int(w, f_off, total);
				recw_int(w, f_len, max_len);
				recw_end_row(w);
				total += max_len;
				at += (size_t)max_len;
			}
			memmove(pk, pk + at, (npk - at) * sizeof *pk);
			memmove(pkm, pkm + at, npk - at);
			npk -= at;
		}
		if (st->n == st->cap) {
			st->cap = st->cap ? st->cap * 2 : 1024;
			st->lens = xrealloc(st->lens, st->cap * sizeof *st->lens);
		}
		st->lens[st->n++] = (uint32_t)keep;
		st->tokens += (double)keep;
		st->bytes += (double)ro->bytes;
		st->untruncated += wp ? (double)(ro->wp.a_len + ro->wp.b_len) : (double)n;
		if ((row & 1023) == 0 && kctx_progress(c, (double)row, (double)r.rows, "rows") != 0)
			rc = -1; /* timed out or interrupted */
	}
	st->pack_dropped += (double)npk;
	st->blocks += (double)blocks;
	if (rc == 0 && no_comp) {
		/* a row whose completion is cut away (or empty) trains on nothing
		 * but its EOS: a perplexity near 1 that means nothing */
		char ex[96];
		int at = 0;
		for (uint64_t k = 0; k < no_comp && k < 3; k++)
			at += snprintf(ex + at, sizeof ex - (size_t)at, "%s%llu", k ? ", " : "", (unsigned long long)no_comp_ex[k]);
		char why[96] = "the completion is empty";
		if (max_len > 0)
			snprintf(why, sizeof why, "the prompt fills max_len = %lld, or the completion is empty", max_len);
		const char *hint = left ? "raise max_len or shorten the template"
		                        : "raise max_len, set truncation = \"left\" to cut the prompt from the left, "
		                          "or shorten the template";
		if (no_comp == r.rows) {
			kctx_fail(c, "tokenize: %s: no row keeps a completion token (%s); training or scoring it would "
			          "measure nothing", label, why);
			rc = herr_hint(&c->err, "%s", hint);
		} else {
			kctx_log(c, "tokenize: warning: %s: %llu of %llu rows keep no completion token (%s), e.g. row%s %s; "
			         "they add nothing to the loss\nhint: %s", label, (unsigned long long)no_comp,
			         (unsigned long long)r.rows, why, no_comp > 1 ? "s" : "", ex, hint);
		}
	}
	free(rid);
	free(rmask);
	free(pk);
	free(pkm);
	if (of.ids && fclose(of.ids) != 0 && rc == 0)
		rc = kctx_fail(c, "%s: write error", of.ids_path);
	if (of.mask && fclose(of.mask) != 0 && rc == 0)
		rc = kctx_fail(c, "%s: write error", of.mask_path);
	if (of.types && fclose(of.types) != 0 && rc == 0)
		rc = kctx_fail(c, "%s: write error", of.types_path);
	if (of.labels && fclose(of.labels) != 0 && rc == 0)
		rc = kctx_fail(c, "%s: write error", of.labels_path);
	free(of.labels_path);
	if (rc == 0)
		rc = recw_write(&c->err, w, rec_path);
	if (rc == 0) {
		/* how the ids were made, for the model stages and `hone predict` */
		buf js;
		buf_init(&js);
		buf_adds(&js, "{\"field\": ");
		buf_json_str(&js, prompt_mode ? "" : field);
		buf_printf(&js, ", \"vocab\": %zu, \"max_len\": %lld, \"truncation\": \"%s\", \"eos\": %lld, \"format\": ",
		           wp ? wordpiece_vocab_size(wp) : bpe_vocab_size(b), max_len, left ? "left" : "right",
		           eos ? (long long)eos_id : -1LL);
		buf_json_str(&js, format);
		buf_printf(&js, ", \"pack\": %s, \"mask\": %s", pack ? "true" : "false", prompt_mode ? "true" : "false");
		if (chat) /* the template the model is then trained on, for generation and serving */
			buf_printf(&js, ", \"chat_template\": \"%s\"", chat_template_name(ts.chat));
		if (wp) {
			/* what a BERT model needs: the special ids, whether the
			 * template was added, the pair's fields and types.u8 */
			wordpiece_special sp = wordpiece_specials(wp);
			buf_printf(&js, ", \"tokenizer\": \"wordpiece\", \"special\": %s, \"pad\": %lld, \"unk\": %lld, "
			           "\"cls\": %lld, \"sep\": %lld, \"mask_token\": %lld, \"fields\": [", special ? "true" : "false",
			           (long long)sp.pad, (long long)sp.unk, (long long)sp.cls, (long long)sp.sep, (long long)sp.mask);
			buf_json_str(&js, field);
			if (field2) {
				buf_adds(&js, ", ");
				buf_json_str(&js, field2);
			}
			buf_printf(&js, "], \"types\": %s", field2 ? "true" : "false");
			if (ts.f_tags >= 0) {
				/* tagging: labels.i32 holds each id's tag index (-100: not scored) */
				buf_adds(&js, ", \"tag_field\": ");
				buf_json_str(&js, tags);
				buf_printf(&js, ", \"tag_source\": \"%s\"", ts.spans ? "spans" : "tags");
				buf_adds(&js, ", \"tags\": [");
				for (size_t k = 0; k < ts.ntags; k++) {
					buf_adds(&js, k ? ", " : "");
					buf_json_str(&js, ts.tags[k]);
				}
				buf_adds(&js, "]");
			}
		}
		buf_adds(&js, "}\n");
		char *meta_rel = xasprintf("%s%s%s", rel, rel[0] ? "/" : "", TOKENIZE_META);
		char *meta_path = NULL;
		rc = kctx_out_path(c, outdir, meta_rel, &meta_path);
		if (rc == 0)
			rc = fs_write_atomic(&c->err, meta_path, js.p, js.len);
		free(meta_rel);
		free(meta_path);
		buf_free(&js);
	}
	crew_free(cw);
	for (int t = 0; t < nt; t++) {
		bpe_cache_free(caches[t]);
		wordpiece_cache_free(wcaches[t]);
		buf_free(&prompts[t]);
	}
	for (uint64_t k = 0; k < B; k++) {
		free(block[k].ids);
		free(block[k].labels);
		free(block[k].mask);
		wordpiece_enc_free(&block[k].wp);
	}
	free(block);
	free(to);
	free(drop);
	free(ts.tmpl);
	free(ts.alt);
	free(ids_rel);
	free(mask_rel);
	free(types_rel);
	free(rec_rel);
	free(of.ids_path);
	free(of.mask_path);
	free(of.types_path);
	free(rec_path);
	recw_free(w);
	recr_close(&r);
	return rc;
}

/* the distinct whitespace-separated tags of field f in one dataset, added to *set */
static int add_tag(char ***set, size_t *n, const char *t, size_t tl)
{
	for (size_t k = 0; k < *n; k++)
		if (strlen((*set)[k]) == tl && !memcmp((*set)[k], t, tl))
			return 0;
	if (*n >= 4096)
		return -1;
	*set = xrealloc(*set, (*n + 1) * sizeof **set);
	(*set)[(*n)++] = xstrndup(t, tl);
	return 0;
}

/* the B-/I- tags of every span type in field f, and O */
static int span_tags_of(kctx *c, rec_reader *r, int ft, int fx, const char *dir, const char *field, char ***set, size_t *n)
{
	int rc = add_tag(set, n, "O", 1);
	for (uint64_t row = 0; row < r->rows && rc == 0; row++) {
		size_t len, tl;
		const char *s = recr_str(r, ft, row, &len), *tx = fx >= 0 ? recr_str(r, fx, row, &tl) : NULL;
		jarena *a = json_arena_new();
		size_t ns;
		char why[96];
		span *sp = parse_spans(a, s ? s : "[]", s ? len : 2, tx ? tx : "", tx ? tl : 0, &ns, why, sizeof why);
		if (!sp)
			rc = kctx_fail(c, "tokenize: %s: row %llu: spans in '%s': %s", dir, (unsigned long long)row + 1, field, why);
		for (size_t k = 0; sp && k < ns && rc == 0; k++) {
			char t[160];
			int m = snprintf(t, sizeof t, "B-%.*s", (int)(sp[k].tlen < 100 ? sp[k].tlen : 100), sp[k].type);
			rc = add_tag(set, n, t, (size_t)m);
			t[0] = 'I';
			if (rc == 0)
				rc = add_tag(set, n, t, (size_t)m);
			if (rc)
				rc = kctx_fail(c, "tokenize: '%s' has more than 4096 distinct tags", field);
		}
		free(sp);
		json_arena_free(a);
	}
	return rc;
}

static int tags_of(kctx *c, const char *dir, const char *field, const char *text, int spans, char ***set, size_t *n)
{
	rec_reader r;
	char *path = path_join(dir, RECORDS_FILE);
	int rc = recr_open(&c->err, &r, path);
	free(path);
	if (rc)
		return -1;
	int f = recr_find(&r, field);
	if (f < 0 || (r.fields[f].type != REC_STR && r.fields[f].type != REC_CAT)) {
		recr_close(&r);
		return 0; /* tokenize_one says which field is missing */
	}
	if (spans) {
		rc = span_tags_of(c, &r, f, recr_find(&r, text), dir, field, set, n);
		recr_close(&r);
		return rc;
	}
	for (uint64_t row = 0; row < r.rows && rc == 0; row++) {
		size_t len, at = 0, ws, wl;
		const char *s = recr_str(&r, f, row, &len);
		while (s && next_word(s, len, &at, &ws, &wl)) {
			if (wl > 100) {
				rc = kctx_fail(c, "tokenize: %s: row %llu: a tag of %zu bytes in '%s' (tags are short labels "
				               "like B-PER, one per word)", dir, (unsigned long long)row + 1, wl, field);
				break;
			}
			char *t = xstrndup(s + ws, wl);
			int dup = 0;
			for (size_t k = 0; k < *n && !dup; k++)
				dup = !strcmp((*set)[k], t);
			if (dup) {
				free(t);
				continue;
			}
			if (*n >= 4096) {
				free(t);
				rc = kctx_fail(c, "tokenize: '%s' has more than 4096 distinct tags; is it a tag field?", field);
				break;
			}
			*set = xrealloc(*set, (*n + 1) * sizeof **set);
			(*set)[(*n)++] = t;
		}
	}
	recr_close(&r);
	return rc;
}

static int collect_tags(kctx *c, const char *path, const char *field, const char *text, int spans, char ***set,
                        size_t *n)
{
	char *top = path_join(path, RECORDS_FILE);
	int rc = 0;
	if (fs_exists(top)) {
		rc = tags_of(c, path, field, text, spans, set, n);
	} else {
		char **files = NULL;
		size_t nf = 0;
		int listed = (rc = fs_list_files(&c->err, path, &files, &nf)) == 0;
		for (size_t i = 0; rc == 0 && i < nf; i++) {
			size_t l = strlen(files[i]), fl = strlen(RECORDS_FILE);
			if (l <= fl + 1 || strcmp(files[i] + l - fl, RECORDS_FILE) || files[i][l - fl - 1] != '/')
				continue;
			char *rel = xstrndup(files[i], l - fl - 1), *dir = path_join(path, rel);
			rc = tags_of(c, dir, field, text, spans, set, n);
			free(rel);
			free(dir);
		}
		if (listed)
			strv_free(files, nf);
	}
	free(top);
	if (rc == 0 && *n)
		qsort(*set, *n, sizeof **set, cmp_str);
	return rc;
}

static int k_tokenize(kctx *c, const hval *params, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *data = NULL, *tok = NULL;
	int is_wp = 0;
	for (size_t i = 0; i < nin; i++) {
		char *v = path_join(in[i].path, "encoder.json"), *vt = path_join(in[i].path, "vocab.txt");
		if (in[i].is_dir && (bpe_dir_is_bpe(in[i].path) || fs_exists(vt))) {
			tok = &in[i];
			is_wp = !bpe_dir_is_bpe(in[i].path);
		} else if (!data) {
			data = &in[i];
		}
		free(v);
		free(vt);
	}
	if (!data || !tok)
		return kctx_fail(c, "tokenize: give a dataset (or split parts) and a tokenizer");
	bpe *b = NULL;
	wordpiece *wp = NULL;
	if (is_wp ? wordpiece_load_dir(&c->err, &wp, tok->path) != 0 : bpe_load_dir(&c->err, &b, tok->path) != 0)
		return -1;
	int rc;
	tstats st;
	memset(&st, 0, sizeof st);
	char *top = path_join(data->path, RECORDS_FILE);
	/* tagging: the tag set of every part, so that a tag has one id in all */
	char **tagset = NULL;
	size_t ntags = 0;
	const char *tags = hval_get_str(params, "tags", NULL), *spans = hval_get_str(params, "spans", NULL);
	const char *tfield = hval_get(params, "fields") ? hval_get(params, "fields")->v[0].s : hval_get_str(params, "field", "text");
	if (tags && spans)
		rc = kctx_fail(c, "tokenize: give tags = \"...\" (one per word) or spans = \"...\" (character spans), not both");
	else
		rc = tags || spans ? collect_tags(c, data->path, tags ? tags : spans, tfield, spans && !tags, &tagset, &ntags) : 0;
	if (rc) {
		strv_free(tagset, ntags);
		free(top);
		bpe_free(b);
		wordpiece_free(wp);
		return -1;
	}
	if (fs_exists(top)) {
		rc = tokenize_one(c, b, wp, params, data->path, data->label, outdir, "", &st, tagset, ntags);
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
			rc = tokenize_one(c, b, wp, params, dir, label, outdir, rel, &st, tagset, ntags);
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
		kctx_metric(c, "tokens_per_row_p95", st.lens[(size_t)ceil(0.95 * (double)st.n) - 1]); /* nearest rank */
		kctx_metric(c, "tokens_per_row_max", st.lens[st.n - 1]);
		kctx_metric(c, "truncated", st.truncated);
		kctx_metric(c, "bytes_per_token", st.untruncated ? st.bytes / st.untruncated : 0);
		if (hval_get_bool(params, "pack", 0)) {
			kctx_metric(c, "blocks", st.blocks);
			kctx_metric(c, "pack_dropped_tokens", st.pack_dropped);
		}
		if (strcmp(hval_get_str(params, "format", "text"), "text"))
			kctx_metric(c, "no_completion", st.no_completion);
	}
	if (rc == 0 && (tags || spans))
		kctx_metric(c, "tags", (double)ntags);
	strv_free(tagset, ntags);
	free(st.lens);
	bpe_free(b);
	wordpiece_free(wp);
	return rc;
}

const kernel_def stage_tokenizer = {"tokenizer", 2, k_tokenizer, NULL};
const kernel_def stage_tokenize = {"tokenize", 3, k_tokenize, NULL};
