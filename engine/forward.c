#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "ml/blas.h"
#include "ml/bundle.h"
#include "ml/safetensors.h"
#include "models/bert.h"
#include "models/gpt2.h"

static const opt_spec forward_opts[] = {
	{"input", 'i', OPT_STR, 0, 0, "FILE", "rows of token ids, JSON Lines (default: stdin)", 1},
	{"output", 'o', OPT_STR, 0, 0, "FILE", "the logits (and loss) as safetensors, or as JSON when FILE ends in .json", 1},
	{"threads", 0, OPT_INT, 1, 256, "N", "threads (default 2)", 0},
	{"quiet", 'q', OPT_FLAG, 0, 0, NULL, "no summary on stderr", 0},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb forward_verb = {"forward", "MODEL", 1, 1,
	"Runs a model's forward on given token ids and writes its logits and loss, for\n"
	"checking hone against another framework. MODEL is a Hugging Face folder of any\n"
	"architecture hone has (GPT-2: GPT2LMHeadModel, GPT2ForSequenceClassification;\n"
	"BERT: BertModel, BertForMaskedLM, BertForSequenceClassification,\n"
	"BertForTokenClassification) or an export bundle. Each input row is\n"
	"  {\"input_ids\": [...], \"attention_mask\": [...], \"token_type_ids\": [...], \"labels\": ...}\n"
	"(all but input_ids optional; labels as transformers takes them: per token for\n"
	"language models and token classification, with -100 ignored; a class, a list of\n"
	"0/1 per class, or a number for sequence classification). The rows are one batch,\n"
	"padded to the longest (attention_mask 0 there). The output holds \"logits\"\n"
	"([rows, T, vocab or labels], or [rows, labels]), \"hidden\" for a BertModel, and\n"
	"\"loss\" ([1], transformers' mean) when labels were given. With --output x.json the\n"
	"same tensors are written as JSON ({\"logits\": {\"shape\": [...], \"data\": [...]}}).\n",
	forward_opts, 1};

typedef struct rows {
	int B, T;
	uint32_t *ids, *types;
	uint8_t *mask;
	int32_t *lab_i; /* per token, or per row (class) */
	float *lab_f;   /* per row: K floats (multi-label) or 1 (regression) */
	int has_labels, label_per_token;
} rows;

/* st_add_f32 keeps the pointer until the file is written: the outputs are
 * copied out of the workspace first */
static float *kept[4];
static int nkept;

static void add_out(st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	float *c = xmalloc(n * sizeof *c);
	memcpy(c, data, n * sizeof *c);
	if (nkept < 4)
		kept[nkept++] = c;
	st_add_f32(w, name, c, ndim, shape);
}

static int int_list(const jnode *a, long long lo, long long hi, long long *out, int max, int *n)
{
	*n = 0;
	for (const jnode *v = a && a->t == J_ARR ? a->kid : NULL; v; v = v->next) {
		if (*n >= max || json_int(v, lo, hi, &out[*n]) != 0)
			return -1;
		(*n)++;
	}
	return 0;
}

/* The JSON Lines rows into a batch padded to the longest. */
static int read_rows(herr *e, const char *text, size_t len, const char *name, rows *r)
{
	memset(r, 0, sizeof *r);
	jarena *a = json_arena_new();
	size_t pos = 0;
	const jnode **row = NULL;
	int n = 0, rc = 0;
	while (rc == 0) {
		while (pos < len && (text[pos] == '\n' || text[pos] == '\r' || text[pos] == ' '))
			pos++;
		if (pos >= len)
			break;
		jerror je;
		const jnode *j = json_parse_next(a, text, len, &pos, &je);
		if (!j || j->t != J_OBJ) {
			rc = herr_set(e, "%s: row %d: expected a JSON object {\"input_ids\": [...], ...}", name, n + 1);
			break;
		}
		const jnode *ids = json_member(j, "input_ids", 9);
		if (!ids || ids->t != J_ARR || !ids->kid) {
			rc = herr_set(e, "%s: row %d: input_ids: expected a non-empty list of token ids", name, n + 1);
			break;
		}
		int k = 0;
		for (const jnode *v = ids->kid; v; v = v->next)
			k++;
		r->T = k > r->T ? k : r->T;
		row = xrealloc(row, (size_t)(n + 1) * sizeof *row);
		row[n++] = j;
	}
	if (rc == 0 && n == 0)
		rc = herr_set(e, "%s: no rows", name);
	if (rc == 0) {
		r->B = n;
		size_t N = (size_t)n * (size_t)r->T;
		r->ids = xcalloc(N, sizeof *r->ids);
		r->types = xcalloc(N, sizeof *r->types);
		r->mask = xcalloc(N, 1);
		r->lab_i = xmalloc(N * sizeof *r->lab_i);
		for (size_t i = 0; i < N; i++)
			r->lab_i[i] = -100;
		r->lab_f = xcalloc(N, sizeof *r->lab_f);
		long long *tmp = xmalloc((size_t)r->T * sizeof *tmp);
		for (int b = 0; b < n && rc == 0; b++) {
			const char *fields[3] = {"input_ids", "attention_mask", "token_type_ids"};
			int cnt[3];
			for (int f = 0; f < 3 && rc == 0; f++) {
				const jnode *v = json_member(row[b], fields[f], strlen(fields[f]));
				if (!v)
					continue;
				if (int_list(v, 0, (1ll << 32) - 1, tmp, r->T, &cnt[f]) != 0 || (f && cnt[f] != cnt[0])) {
					rc = herr_set(e, "%s: row %d: %s: expected a list of %s%s", name, b + 1, fields[f],
					              f == 0 ? "token ids" : "integers", f ? " as long as input_ids" : "");
					break;
				}
				for (int t = 0; t < cnt[f]; t++) {
					size_t i = (size_t)b * (size_t)r->T + (size_t)t;
					if (f == 0)
						r->ids[i] = (uint32_t)tmp[t], r->mask[i] = 1;
					else if (f == 1)
						r->mask[i] = tmp[t] != 0;
					else
						r->types[i] = (uint32_t)tmp[t];
				}
			}
			const jnode *lab = json_member(row[b], "labels", 6);
			if (!lab || rc)
				continue;
			r->has_labels = 1;
			if (lab->t == J_NUM) {
				double d;
				json_number(lab, &d);
				r->lab_i[b] = (int32_t)d;
				r->lab_f[b] = (float)d;
			} else if (lab->t == J_ARR) {
				int k = 0;
				for (const jnode *v = lab->kid; v; v = v->next, k++) {
					double d;
					if (json_number(v, &d) != 0 || k >= r->T) {
						rc = herr_set(e, "%s: row %d: labels: expected numbers, at most one per token", name, b + 1);
						break;
					}
					r->lab_i[(size_t)b * (size_t)r->T + (size_t)k] = (int32_t)d;
					r->lab_f[(size_t)b * (size_t)r->T + (size_t)k] = (float)d;
				}
				r->label_per_token = 1;
			} else {
				rc = herr_set(e, "%s: row %d: labels: expected a number or a list", name, b + 1);
			}
		}
		free(tmp);
	}
	free(row);
	json_arena_free(a);
	return rc;
}

static void rows_free(rows *r)
{
	free(r->ids);
	free(r->types);
	free(r->mask);
	free(r->lab_i);
	free(r->lab_f);
}

/* A bundle's model files, unpacked into a temporary folder */
static int unpack(herr *e, const char *path, char **dir)
{
	bundle bd;
	if (bundle_read(e, &bd, path, (size_t)16 << 30) != 0)
		return -1;
	int rc = bundle_unpack_model(e, &bd, path, dir);
	bundle_free(&bd);
	return rc;
}

static int run_gpt2(herr *e, const char *dir, const rows *r, int threads, st_writer *w, double *loss, buf *desc)
{
	gpt2 m;
	if (gpt2_load_dir(e, &m, dir) != 0)
		return -1;
	int B = r->B, T = r->T, rc = 0;
	size_t N = (size_t)B * (size_t)T;
	if (T > m.cfg.n_positions)
		rc = herr_set(e, "a row of %d tokens is longer than the model's %d positions", T, m.cfg.n_positions);
	for (size_t i = 0; rc == 0 && i < N; i++)
		if (r->ids[i] >= (uint32_t)m.cfg.vocab)
			rc = herr_set(e, "token id %u is outside the vocabulary of %d", r->ids[i], m.cfg.vocab);
	gpt2_ws *ws = rc == 0 ? gpt2_ws_new(&m, B, T, threads) : NULL;
	if (rc == 0 && m.cfg.ncls) {
		int *last = xmalloc((size_t)B * sizeof *last);
		int32_t *lab = xmalloc((size_t)B * sizeof *lab);
		for (int b = 0; b < B; b++) {
			int l = 0;
			for (int t = 0; t < T; t++)
				l += r->mask[(size_t)b * (size_t)T + (size_t)t];
			last[b] = l - 1;
			lab[b] = r->lab_i[b];
		}
		*loss = gpt2_forward_cls(&m, ws, r->ids, last, r->has_labels ? lab : NULL);
		int64_t sh[2] = {B, m.cfg.ncls};
		add_out(w, "logits", gpt2_cls_logits(ws), 2, sh);
		buf_printf(desc, "GPT2ForSequenceClassification, logits [%d, %d]", B, m.cfg.ncls);
		free(last);
		free(lab);
	} else if (rc == 0) {
		int32_t *tg = xmalloc(N * sizeof *tg);
		for (int b = 0; b < B; b++)
			for (int t = 0; t < T; t++) {
				size_t i = (size_t)b * (size_t)T + (size_t)t;
				tg[i] = t + 1 < T && r->label_per_token ? r->lab_i[i + 1] : -1;
				if (tg[i] == -100)
					tg[i] = -1;
			}
		*loss = gpt2_forward(&m, ws, r->ids, r->has_labels ? tg : NULL);
		int64_t sh[3] = {B, T, m.cfg.vocab};
		add_out(w, "logits", gpt2_logits(ws), 3, sh);
		buf_printf(desc, "GPT2LMHeadModel, logits [%d, %d, %d]", B, T, m.cfg.vocab);
		free(tg);
	}
	gpt2_ws_free(ws);
	gpt2_free(&m);
	return rc;
}

static int run_bert(herr *e, const char *dir, const rows *r, int threads, st_writer *w, double *loss, buf *desc)
{
	bert m;
	if (bert_load_dir(e, &m, dir) != 0)
		return -1;
	int B = r->B, T = r->T, rc = 0, K = m.cfg.nlabels, head = m.cfg.head;
	size_t N = (size_t)B * (size_t)T;
	if (T > m.cfg.max_pos)
		rc = herr_set(e, "a row of %d tokens is longer than the model's %d positions", T, m.cfg.max_pos);
	for (size_t i = 0; rc == 0 && i < N; i++)
		if (r->ids[i] >= (uint32_t)m.cfg.vocab || r->types[i] >= (uint32_t)m.cfg.type_vocab)
			rc = herr_set(e, "row %zu: token id %u or type %u outside the model's vocabulary (%d) or types (%d)", i / (size_t)T + 1,
			              r->ids[i], r->types[i], m.cfg.vocab, m.cfg.type_vocab);
	bert_ws *ws = rc == 0 ? bert_ws_new(&m, B, T, threads) : NULL;
	if (rc == 0) {
		int multi = head == BERT_SEQCLS && m.cfg.problem != BERT_SINGLE;
		float *lf = NULL;
		if (multi && r->has_labels) {
			lf = xcalloc((size_t)B * (size_t)K, sizeof *lf);
			for (int b = 0; b < B; b++)
				for (int k = 0; k < K; k++)
					lf[(size_t)b * (size_t)K + (size_t)k] =
						r->label_per_token ? r->lab_f[(size_t)b * (size_t)T + (size_t)k] : r->lab_f[b];
		}
		int32_t *li = r->lab_i;
		int32_t *rowlab = NULL;
		if (head == BERT_SEQCLS && !multi) {
			rowlab = xmalloc((size_t)B * sizeof *rowlab);
			for (int b = 0; b < B; b++)
				rowlab[b] = r->label_per_token ? r->lab_i[(size_t)b * (size_t)T] : r->lab_i[b];
			li = rowlab;
		}
		bert_batch bb = {r->ids, r->types, r->mask, r->has_labels && !multi ? li : NULL, lf};
		*loss = bert_forward(&m, ws, &bb);
		if (head == BERT_BASE) {
			int64_t sh[3] = {B, T, m.cfg.hidden};
			add_out(w, "hidden", bert_hidden(ws), 3, sh);
			buf_printf(desc, "BertModel, hidden [%d, %d, %d]", B, T, m.cfg.hidden);
		} else if (head == BERT_SEQCLS) {
			int64_t sh[2] = {B, K};
			add_out(w, "logits", bert_logits(ws), 2, sh);
			buf_printf(desc, "BertForSequenceClassification, logits [%d, %d]", B, K);
		} else {
			int D = head == BERT_TOKCLS ? K : m.cfg.vocab;
			int64_t sh[3] = {B, T, D};
			add_out(w, "logits", bert_logits(ws), 3, sh);
			buf_printf(desc, "%s, logits [%d, %d, %d]", head == BERT_TOKCLS ? "BertForTokenClassification" : "BertForMaskedLM",
			           B, T, D);
		}
		free(lf);
		free(rowlab);
	}
	bert_ws_free(ws);
	bert_free(&m);
	return rc;
}

int forward_main(int argc, char **argv)
{
	opt_parsed op;
	int prc = opt_parse(&forward_verb, argc, argv, &op);
	if (prc != OPT_OK)
		return prc == OPT_HELP ? 0 : 2;
	const char *model = op.pos[0], *inp = NULL, *outp = NULL;
	int threads = 2, quiet = 0;
	for (size_t i = 0; i < op.nhits; i++) {
		const opt_hit *h = &op.hits[i];
		if (!strcmp(h->spec->name, "input"))
			inp = h->val;
		else if (!strcmp(h->spec->name, "output"))
			outp = h->val;
		else if (!strcmp(h->spec->name, "threads"))
			threads = (int)h->i;
		else if (!strcmp(h->spec->name, "quiet"))
			quiet = 1;
	}
	if (!outp) {
		opt_free(&op);
		return opt_usage_error(&forward_verb, "give --output FILE (safetensors)");
	}
	herr e = {{0}, {0}};
	buf in;
	buf_init(&in);
	int rc = inp ? fs_read(&e, inp, &in) : fs_read_fd(&e, 0, "stdin", &in);
	char *dir = NULL;
	rows r;
	memset(&r, 0, sizeof r);
	if (rc == 0)
		rc = read_rows(&e, in.p ? in.p : "", in.len, inp ? inp : "stdin", &r);
	if (rc == 0 && !blas_get(&e))
		rc = -1;
	if (rc == 0 && !fs_is_dir(model))
		rc = unpack(&e, model, &dir);
	const char *mdir = dir ? dir : model;
	model_arch arch = ARCH_GPT2;
	if (rc == 0)
		rc = model_detect_dir(&e, mdir, &arch);
	st_writer w;
	st_writer_init(&w);
	st_add_meta(&w, "format", "pt");
	double loss = 0;
	buf desc;
	buf_init(&desc);
	if (rc == 0)
		rc = arch == ARCH_BERT ? run_bert(&e, mdir, &r, threads, &w, &loss, &desc)
		                       : run_gpt2(&e, mdir, &r, threads, &w, &loss, &desc);
	if (rc == 0 && r.has_labels) {
		float l = (float)loss;
		int64_t one = 1;
		add_out(&w, "loss", &l, 1, &one); /* copied: l goes out of scope before the file is written */
	}
	size_t ol = strlen(outp);
	if (rc == 0 && ol > 5 && !strcmp(outp + ol - 5, ".json")) {
		/* the same tensors as JSON: {"logits": {"shape": [...], "data": [...]}, ...} */
		buf js;
		buf_init(&js);
		buf_adds(&js, "{");
		for (size_t k = 0; k < w.n; k++) {
			const st_tensor *t = &w.t[k];
			buf_printf(&js, "%s\"%s\": {\"shape\": [", k ? ", " : "", t->name);
			size_t n = 1;
			for (int d = 0; d < t->ndim; d++) {
				buf_printf(&js, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
				n *= (size_t)t->shape[d];
			}
			buf_adds(&js, "], \"data\": [");
			for (size_t i = 0; i < n; i++) {
				buf_adds(&js, i ? ", " : "");
				buf_json_float(&js, ((const float *)t->data)[i]);
			}
			buf_adds(&js, "]}");
		}
		buf_adds(&js, "}\n");
		rc = fs_write_atomic(&e, outp, js.p, js.len);
		buf_free(&js);
	} else if (rc == 0) {
		rc = st_write(&e, &w, outp);
	}
	if (rc == 0 && !quiet) {
		fprintf(stderr, "forward: %d rows of up to %d tokens: %s", r.B, r.T, desc.p);
		if (r.has_labels)
			fprintf(stderr, ", loss %.6f", loss);
		fprintf(stderr, " -> %s\n", outp);
	}
	if (dir) {
		herr e2;
		fs_rmtree(&e2, dir);
		free(dir);
	}
	buf_free(&desc);
	st_writer_free(&w);
	for (int k = 0; k < nkept; k++)
		free(kept[k]);
	rows_free(&r);
	buf_free(&in);
	opt_free(&op);
	if (rc) {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
		return 1;
	}
	return 0;
}
