#include "predict.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/bpe.h"
#include "io/wordpiece.h"
#include "io/csv.h"
#include "io/json.h"
#include "ml/blas.h"
#include "ml/bundle.h"
#include "ml/classifier.h"
#include "ml/lmdata.h"
#include "ml/metrics.h"
#include "ml/mldata.h"
#include "models/bert.h"
#include "models/gpt2.h"

static const opt_spec predict_opts[] = {
	{"input", 'i', OPT_STR, 0, 0, "FILE", "rows to predict: JSON Lines, or CSV/TSV with a header (default: stdin)", 1},
	{"output", 'o', OPT_STR, 0, 0, "FILE", "where the predictions go (default: stdout)", 1},
	{"missing", 0, OPT_STR, 0, 0, "error|skip|empty", "a row without an input field: an error (default), left out, or read as empty", 0},
	{"quiet", 'q', OPT_FLAG, 0, 0, NULL, "no timing line on stderr", 0},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb predict_verb = {"predict", "BUNDLE", 1, 1,
	"Predicts with a bundle written by export. Input rows are JSON Lines, or\n"
	"CSV with a header row (by the file's extension .csv/.tsv, else by its\n"
	"first character); stdin when no --input. Each row gets one JSON line:\n"
	"  {\"id\": ..., \"predicted\": \"spam\", \"probs\": {\"ham\": 0.02, \"spam\": 0.98}}\n"
	"(\"id\" when the row has one). Timing goes to stderr unless --quiet.\n"
	"A row without one of the model's input fields (absent or null) is an\n"
	"error naming the row and field; --missing skip leaves such rows out and\n"
	"--missing empty reads the field as empty text, an unknown category or the\n"
	"training mean; either way they are counted on stderr.\n",
	predict_opts, 1};


/* One input value, as it came. */
typedef struct rawv {
	int kind; /* 0 null/absent, 1 string, 2 number, 3 bool */
	const char *s;
	size_t n;
	int b;
} rawv;

typedef struct source {
	int csv_mode;
	const char *p;
	size_t n, pos;
	jarena *arena;
	const jnode *row;   /* JSONL */
	csv c;              /* CSV */
	char **header;
	size_t nh;
	size_t line;
	const char *name;
} source;

static rawv field_of(const source *s, const char *name)
{
	rawv v = {0, NULL, 0, 0};
	if (s->csv_mode) {
		for (size_t k = 0; k < s->nh && k < s->c.nf; k++)
			if (!strcmp(s->header[k], name)) {
				v.s = csv_field(&s->c, k, &v.n);
				v.kind = 1;
			}
		return v;
	}
	const jnode *j = json_path(s->row, name);
	if (!j)
		return v;
	if (j->t == J_STR || j->t == J_NUM) {
		v.kind = j->t == J_STR ? 1 : 2;
		v.s = j->s;
		v.n = j->len;
	} else if (j->t == J_TRUE || j->t == J_FALSE) {
		v.kind = 3;
		v.b = j->t == J_TRUE;
	}
	return v;
}

/* 1 a row, 0 the end, -1 an error (in e). */
static int next_row(herr *e, source *s)
{
	if (s->csv_mode) {
		int r = csv_next(&s->c);
		if (r < 0)
			return herr_set(e, "%s:%zu: %s", s->name, s->c.err_line, s->c.err);
		return r;
	}
	for (;;) {
		while (s->pos < s->n && (s->p[s->pos] == ' ' || s->p[s->pos] == '\t' || s->p[s->pos] == '\r' || s->p[s->pos] == '\n'))
			s->pos++;
		if (s->pos >= s->n)
			return 0;
		json_arena_reset(s->arena);
		jerror je;
		size_t at = s->pos;
		jnode *j = json_parse_next(s->arena, s->p, s->n, &s->pos, &je);
		size_t line, col;
		if (!j) {
			json_line_col(s->p, je.off, &line, &col);
			return herr_set(e, "%s:%zu:%zu: %s", s->name, line, col, je.what);
		}
		if (j->t != J_OBJ) {
			json_line_col(s->p, at, &line, &col);
			return herr_set(e, "%s:%zu: expected a JSON object per line", s->name, line);
		}
		s->row = j;
		return 1;
	}
}

static int parse_num(const rawv *v, double *out)
{
	char tmp[64];
	if (v->kind == 3) {
		*out = v->b;
		return 0;
	}
	if (v->kind == 0 || v->n == 0 || v->n >= sizeof tmp)
		return v->kind == 0 ? 1 : -1;
	memcpy(tmp, v->s, v->n);
	tmp[v->n] = 0;
	char *end;
	*out = strtod(tmp, &end);
	return *end || !isfinite(*out) ? -1 : 0;
}

/* The ids tokenize would give this text. */
static void encode_text(const bpe *t, bpe_cache *cache, const clf_model *m, const char *s, size_t n, uint32_t **ids,
                        size_t *nids, size_t *cap)
{
	size_t at = *nids;
	int eos = m->tok_eos >= 0;
	size_t max = m->tok_max_len > 0 ? (size_t)m->tok_max_len : 0;
	/* right truncation needs only the first ids */
	bpe_encode_cached(t, cache, s, n, max && !m->tok_left ? max : 0, ids, nids, cap);
	size_t got = *nids - at, keep = got + (size_t)eos;
	if (max && keep > max)
		keep = max;
	size_t body = keep - (eos && keep ? 1 : 0);
	if (m->tok_left && body < got)
		memmove(*ids + at, *ids + at + (got - body), body * sizeof **ids);
	*nids = at + body;
	if (eos && keep) {
		if (*nids == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*ids = xrealloc(*ids, *cap * sizeof **ids);
		}
		(*ids)[(*nids)++] = (uint32_t)m->tok_eos;
	}
}

typedef struct block {
	size_t n, cap;
	uint32_t *ids;
	size_t nids, idcap;
	clf_data d;
	bpe_cache *cache;
	buf idjson; /* each row's "id" as JSON text, NUL-separated */
	size_t *idoff;
} block;

/* The first of the model's input fields the row lacks (absent or null), or NULL. */
static const char *missing_field(const source *s, const clf_model *m)
{
	for (int i = 0; i < m->nf; i++)
		if (field_of(s, m->f[i].field).kind == 0)
			return m->f[i].field;
	return NULL;
}

/* WordPiece text for a BERT: tokenize's own encoding (its template when
 * tokenize added it, its max_len and truncation) */
typedef struct wp_text {
	const wordpiece *w;
	wordpiece_cache *cache;
	int special;
	wordpiece_enc enc;
} wp_text;

static void encode_wordpiece(wp_text *wt, const clf_model *m, const char *s, size_t n, uint32_t **ids, size_t *nids,
                             size_t *cap)
{
	wordpiece_encode_pair(wt->w, wt->cache, s, n, NULL, 0, m->tok_max_len > 0 ? (size_t)m->tok_max_len : 0, m->tok_left,
	                      wt->special, &wt->enc);
	if (*nids + wt->enc.n > *cap) {
		*cap = (*nids + wt->enc.n) * 2 + 256;
		*ids = xrealloc(*ids, *cap * sizeof **ids);
	}
	memcpy(*ids + *nids, wt->enc.ids, wt->enc.n * sizeof **ids);
	*nids += wt->enc.n;
}

static int add_row(herr *e, block *bl, const source *s, const clf_model *m, const bpe *t, wp_text *wt, size_t rowno)
{
	size_t r = bl->n;
	for (int i = 0; i < m->nf; i++) {
		const clf_feat *f = &m->f[i];
		clf_col *c = &bl->d.col[i];
		rawv v = field_of(s, f->field);
		if (f->type == FEAT_TEXT) {
			if (v.kind != 1 && v.kind != 0)
				return herr_set(e, "%s: row %zu: field '%s': expected text", s->name, rowno, f->field);
			c->off[r] = bl->nids;
			if (wt)
				encode_wordpiece(wt, m, v.kind ? v.s : "", v.kind ? v.n : 0, &bl->ids, &bl->nids, &bl->idcap);
			else
				encode_text(t, bl->cache, m, v.kind ? v.s : "", v.kind ? v.n : 0, &bl->ids, &bl->nids, &bl->idcap);
			c->len[r] = (uint32_t)(bl->nids - c->off[r]);
		} else if (f->type == FEAT_CAT) {
			uint32_t code = 0;
			if (v.kind == 1 || v.kind == 2)
				code = (uint32_t)(ml_find_sorted(f->labels, f->nlabels, v.s, v.n) + 1);
			c->code[r] = code;
		} else {
			double x = 0;
			int rc = parse_num(&v, &x);
			if (rc < 0 && !(f->type == FEAT_BIN && v.kind == 1 && (v.n == 4 || v.n == 5)))
				return herr_set(e, "%s: row %zu: field '%s': expected a %s, got \"%.*s\"", s->name, rowno, f->field,
				                f->type == FEAT_NUM ? "number" : "true/false or 0/1", (int)(v.n > 40 ? 40 : v.n), v.s);
			if (rc < 0)
				x = v.n == 4 && !memcmp(v.s, "true", 4);
			if (rc > 0)
				x = f->type == FEAT_NUM ? f->mean : 0;
			c->x[r] = (float)(f->type == FEAT_NUM ? (x - f->mean) / f->std : (x != 0));
		}
	}
	rawv id = field_of(s, "id");
	bl->idoff[r] = bl->idjson.len;
	if (id.kind == 1)
		buf_json_strn(&bl->idjson, id.s, id.n);
	else if (id.kind == 2)
		buf_add(&bl->idjson, id.s, id.n);
	buf_addc(&bl->idjson, 0);
	bl->n++;
	return 0;
}

static void block_init(block *bl, const clf_model *m, size_t cap)
{
	memset(bl, 0, sizeof *bl);
	bl->cap = cap;
	bl->d.col = xcalloc((size_t)m->nf, sizeof *bl->d.col);
	for (int i = 0; i < m->nf; i++) {
		clf_col *c = &bl->d.col[i];
		if (m->f[i].type == FEAT_TEXT) {
			c->off = xmalloc(cap * sizeof *c->off);
			c->len = xmalloc(cap * sizeof *c->len);
		} else if (m->f[i].type == FEAT_CAT) {
			c->code = xmalloc(cap * sizeof *c->code);
		} else {
			c->x = xmalloc(cap * sizeof *c->x);
		}
	}
	bl->idoff = xmalloc(cap * sizeof *bl->idoff);
	bl->cache = bpe_cache_new();
	buf_init(&bl->idjson);
}

static void block_free(block *bl, const clf_model *m)
{
	clf_data_free(&bl->d, m->nf);
	free(bl->ids);
	free(bl->idoff);
	bpe_cache_free(bl->cache);
	buf_free(&bl->idjson);
}

struct seqm;
static void seq_predict(struct seqm *sq, const clf_data *d, double *res);
static void tag_row(struct seqm *sq, const wordpiece *wp, const clf_model *m, const char *s, size_t n, const char *id,
                    FILE *out);

static void emit(FILE *out, const clf_model *m, struct seqm *sq, clf_ws *ws, block *bl, double *res)
{
	int K = ml_out_width(m);
	bl->d.n = bl->n;
	bl->d.tokens = bl->ids;
	bl->d.ntokens = bl->nids;
	if (sq)
		seq_predict(sq, &bl->d, res);
	else
		ml_predict_ws(m, &bl->d, ws, res);
	buf line;
	buf_init(&line);
	for (size_t r = 0; r < bl->n; r++) {
		line.len = 0;
		buf_addc(&line, '{');
		const char *id = bl->idjson.p + bl->idoff[r];
		if (*id)
			buf_printf(&line, "\"id\": %s, ", id);
		const double *o = res + r * (size_t)K;
		if (m->out == OUT_NUM) {
			buf_adds(&line, "\"predicted\": ");
			buf_json_num(&line, o[0]);
		} else {
			buf_adds(&line, "\"predicted\": ");
			buf_json_str(&line, m->classes[ml_decide(m, o)]);
			buf_adds(&line, ", \"probs\": {");
			for (int k = 0; k < K; k++) {
				buf_adds(&line, k ? ", " : "");
				buf_json_str(&line, m->classes[k]);
				buf_printf(&line, ": %.6g", o[k]);
			}
			buf_addc(&line, '}');
		}
		buf_adds(&line, "}\n");
		fwrite(line.p, 1, line.len, out);
	}
	buf_free(&line);
	bl->n = 0;
	bl->nids = 0;
	bl->idjson.len = 0;
}

/* --- sequence classifiers on token ids (a GPT-2 or BERT bundle) ------------------- */

typedef struct seqm {
	model_arch arch;
	gpt2 g;
	bert b;
	int K, B, T, wT; /* wT: the length the workspace is made for */
	int wp_special;  /* tokenize added [CLS] ... [SEP] (tokenize.json "special") */
	int tagger;      /* a BertForTokenClassification: tags per word, and entities */
	gpt2_ws *gw;
	bert_ws *bw;
	uint32_t *ids, *types;
	uint8_t *mask;
	int *last;
} seqm;

/* The bundle's transformer classifier, and a proxy clf_model that reads its
 * one text field and names its classes (tokenize.json says which field and
 * how: max_len, truncation, eos). */
static int seq_open(herr *e, seqm *sq, clf_model *m, const bundle *b, const char *path)
{
	memset(sq, 0, sizeof *sq);
	char *dir = NULL;
	int rc = bundle_unpack_model(e, b, path, &dir);
	if (rc == 0)
		rc = model_detect_dir(e, dir, &sq->arch);
	char **labels = NULL;
	int maxpos = 0;
	if (rc == 0 && sq->arch == ARCH_BERT) {
		rc = bert_load_dir(e, &sq->b, dir);
		sq->tagger = rc == 0 && sq->b.cfg.head == BERT_TOKCLS;
		if (rc == 0 && !sq->tagger && (sq->b.cfg.head != BERT_SEQCLS || sq->b.cfg.problem != BERT_SINGLE))
			rc = herr_set(e, "%s: a BERT without a single-label classifier or tagger head; predict serves those", path);
		if (rc == 0) {
			sq->K = sq->b.cfg.nlabels;
			labels = sq->b.labels;
			maxpos = sq->b.cfg.max_pos;
		}
	} else if (rc == 0) {
		rc = gpt2_load_dir(e, &sq->g, dir);
		if (rc == 0 && !sq->g.cfg.ncls)
			rc = herr_set(e, "%s: a GPT-2 language model, not a classifier; use hone generate", path);
		if (rc == 0) {
			sq->K = sq->g.cfg.ncls;
			labels = sq->g.labels;
			maxpos = sq->g.cfg.n_positions;
		}
	}
	/* how text was tokenized for training */
	char *field = xstrdup("text");
	long long max_len = maxpos, eos = -1;
	int left = 0;
	const buf *tj = bundle_get(b, "tokenize.json");
	if (rc == 0 && tj) {
		jarena *a = json_arena_new();
		jerror je;
		const jnode *r = json_parse(a, tj->p, tj->len, &je);
		const jnode *f = r ? json_member(r, "field", 5) : NULL, *tr = r ? json_member(r, "truncation", 10) : NULL;
		if (f && f->t == J_STR) {
			free(field);
			field = xstrndup(f->s, f->len);
		}
		if (r && json_member(r, "max_len", 7))
			json_int(json_member(r, "max_len", 7), 0, maxpos, &max_len);
		if (r && json_member(r, "eos", 3))
			json_int(json_member(r, "eos", 3), -1, 1 << 24, &eos);
		left = tr && tr->t == J_STR && tr->len == 4 && !memcmp(tr->s, "left", 4);
		const jnode *sp = r ? json_member(r, "special", 7) : NULL, *fl = r ? json_member(r, "fields", 6) : NULL;
		sq->wp_special = sp && sp->t == J_TRUE;
		if (fl && fl->t == J_ARR && fl->kid && fl->kid->next)
			rc = herr_set(e, "%s: the model was trained on pairs of fields; hone predict reads one text field", path);
		json_arena_free(a);
	}
	if (rc == 0) {
		lm_cls_proxy(m, "label", labels, sq->K);
		m->nf = 1;
		m->f = xcalloc(1, sizeof *m->f);
		m->f[0].name = xstrdup(field);
		m->f[0].field = xstrdup(field);
		m->f[0].type = FEAT_TEXT;
		m->tok_max_len = max_len > 0 && max_len < maxpos ? max_len : maxpos;
		m->tok_eos = eos;
		m->tok_left = left;
		sq->B = 16;
		sq->T = (int)m->tok_max_len;
		size_t N = (size_t)sq->B * (size_t)sq->T;
		sq->ids = xmalloc(N * sizeof *sq->ids);
		sq->types = xcalloc(N, sizeof *sq->types);
		sq->mask = xmalloc(N);
		sq->last = xmalloc((size_t)sq->B * sizeof *sq->last);
	}
	free(field);
	if (dir) {
		herr e2;
		fs_rmtree(&e2, dir);
		free(dir);
	}
	return rc;
}

static void seq_close(seqm *sq)
{
	gpt2_ws_free(sq->gw);
	bert_ws_free(sq->bw);
	if (sq->arch == ARCH_BERT)
		bert_free(&sq->b);
	else if (sq->arch == ARCH_GPT2)
		gpt2_free(&sq->g);
	free(sq->ids);
	free(sq->types);
	free(sq->mask);
	free(sq->last);
}

/* a batch's length rounded up to a multiple of 16, at most max: rows of
 * similar lengths reuse one workspace */
static int bucket_len(int T, int max)
{
	T = (T + 15) / 16 * 16;
	return T > max ? max : T;
}

/* class probabilities of the block's rows (n × K into res), 16 at a time,
 * padded to the longest row of each 16 */
static void seq_predict(struct seqm *sq, const clf_data *d, double *res)
{
	const clf_col *c = &d->col[0];
	for (size_t at = 0; at < d->n; at += (size_t)sq->B) {
		int nb = d->n - at < (size_t)sq->B ? (int)(d->n - at) : sq->B, T = 1;
		for (int b = 0; b < nb; b++)
			T = (int)c->len[at + (size_t)b] > T ? (int)c->len[at + (size_t)b] : T;
		T = bucket_len(T, sq->T);
		for (int b = 0; b < sq->B; b++) {
			uint32_t len = b < nb ? c->len[at + (size_t)b] : 0;
			len = len > (uint32_t)T ? (uint32_t)T : len;
			for (int t = 0; t < T; t++) {
				size_t i = (size_t)b * (size_t)T + (size_t)t;
				int in = (uint32_t)t < len;
				sq->ids[i] = in ? d->tokens[c->off[at + (size_t)b] + (size_t)t] : 0;
				sq->mask[i] = in || t == 0;
			}
			sq->last[b] = len ? (int)len - 1 : 0;
		}
		const float *z;
		if (sq->arch == ARCH_BERT) {
			if (!sq->bw || sq->wT != T) {
				bert_ws_free(sq->bw);
				sq->bw = bert_ws_new(&sq->b, sq->B, T, 1);
				sq->wT = T;
			}
			bert_ws *w = sq->bw;
			bert_batch bb = {sq->ids, sq->types, sq->mask, NULL, NULL};
			bert_forward(&sq->b, w, &bb);
			z = bert_logits(w);
			for (int b = 0; b < nb; b++) {
				const float *zb = z + (size_t)b * (size_t)sq->K;
				double mx = zb[0], s = 0;
				for (int k = 1; k < sq->K; k++)
					mx = zb[k] > mx ? zb[k] : mx;
				for (int k = 0; k < sq->K; k++)
					s += exp(zb[k] - mx);
				for (int k = 0; k < sq->K; k++)
					res[(at + (size_t)b) * (size_t)sq->K + (size_t)k] = exp(zb[k] - mx) / s;
			}
		} else {
			if (!sq->gw || sq->wT != T) {
				gpt2_ws_free(sq->gw);
				sq->gw = gpt2_ws_new(&sq->g, sq->B, T, 1);
				sq->wT = T;
			}
			gpt2_ws *w = sq->gw;
			gpt2_forward_cls(&sq->g, w, sq->ids, sq->last, NULL);
			const float *p = gpt2_cls_probs(w);
			for (int b = 0; b < nb; b++)
				for (int k = 0; k < sq->K; k++)
					res[(at + (size_t)b) * (size_t)sq->K + (size_t)k] = p[(size_t)b * (size_t)sq->K + (size_t)k];
		}
	}
}

/* A tagger's answer for one text: each whitespace word encoded on its own
 * (as tokenize { tags = ... } did), the tag predicted at its first piece,
 * and the entities those tags make, with character (code point) offsets:
 *   {"id": ..., "tags": ["B-PER", "O", ...], "entities": [{"type": "PER", "text": "John", "start": 0, "end": 4}]} */
static void tag_row(struct seqm *sq, const wordpiece *wp, const clf_model *m, const char *s, size_t n, const char *id,
                    FILE *out)
{
	wordpiece_special sp = wordpiece_specials(wp);
	size_t cap = 64, nids = 0, nw = 0, wcap = 16, at = 0;
	uint32_t *ids = xmalloc(cap * sizeof *ids);
	size_t *first = xmalloc(wcap * sizeof *first), *wb = xmalloc(wcap * sizeof *wb), *we = xmalloc(wcap * sizeof *we);
	size_t room = m->tok_max_len > 0 ? (size_t)m->tok_max_len - (sq->wp_special ? 1 : 0) : (size_t)-1;
	if (sq->wp_special)
		ids[nids++] = (uint32_t)sp.cls;
	while (at < n) {
		while (at < n && (s[at] == ' ' || s[at] == '\t' || s[at] == '\n' || s[at] == '\r'))
			at++;
		if (at >= n)
			break;
		size_t ws = at;
		while (at < n && !(s[at] == ' ' || s[at] == '\t' || s[at] == '\n' || s[at] == '\r'))
			at++;
		size_t before = nids;
		wordpiece_encode(wp, NULL, s + ws, at - ws, &ids, &nids, &cap);
		if (nids > room)
			nids = room;
		if (nids == before) /* no piece (cut away, or nothing to encode): not tagged */
			continue;
		if (nw == wcap) {
			wcap *= 2;
			first = xrealloc(first, wcap * sizeof *first);
			wb = xrealloc(wb, wcap * sizeof *wb);
			we = xrealloc(we, wcap * sizeof *we);
		}
		first[nw] = before;
		wb[nw] = ws;
		we[nw++] = at;
	}
	if (sq->wp_special) {
		if (nids + 1 > cap)
			ids = xrealloc(ids, (cap = nids + 1) * sizeof *ids);
		ids[nids++] = (uint32_t)sp.sep;
	}
	/* padded to a multiple of 16 (the padding masked), so that rows of
	 * similar length share a workspace */
	int T = bucket_len((int)(nids ? nids : 1), sq->T);
	if (!sq->bw || sq->wT != T) {
		bert_ws_free(sq->bw);
		sq->bw = bert_ws_new(&sq->b, 1, T, 1);
		sq->wT = T;
	}
	if ((size_t)T > cap)
		ids = xrealloc(ids, (size_t)T * sizeof *ids);
	uint8_t *mk = xcalloc((size_t)T, 1);
	for (size_t i = 0; i < (size_t)T; i++) {
		mk[i] = i < nids;
		if (i >= nids)
			ids[i] = (uint32_t)sq->b.cfg.pad_id;
	}
	bert_batch bb = {ids, NULL, mk, NULL, NULL};
	bert_forward(&sq->b, sq->bw, &bb);
	const float *z = bert_logits(sq->bw);
	int K = sq->K;
	uint32_t *tags = xmalloc((nw ? nw : 1) * sizeof *tags);
	for (size_t w = 0; w < nw; w++) {
		const float *zi = z + first[w] * (size_t)K;
		int best = 0;
		for (int k = 1; k < K; k++)
			best = zi[k] > zi[best] ? k : best;
		tags[w] = (uint32_t)best;
	}
	buf line;
	buf_init(&line);
	buf_addc(&line, '{');
	if (*id)
		buf_printf(&line, "\"id\": %s, ", id);
	buf_adds(&line, "\"tags\": [");
	for (size_t w = 0; w < nw; w++) {
		buf_adds(&line, w ? ", " : "");
		buf_json_str(&line, sq->b.labels[tags[w]]);
	}
	buf_adds(&line, "], \"entities\": [");
	tag_chunk *ch;
	size_t nc = metrics_tag_chunks((const char *const *)sq->b.labels, tags, nw, &ch);
	for (size_t k = 0; k < nc; k++) {
		size_t b0 = wb[ch[k].start], b1 = we[ch[k].end - 1], c0 = 0, c1 = 0;
		for (size_t i = 0; i < b1; i++) { /* byte offsets to code points */
			int lead = ((unsigned char)s[i] & 0xC0) != 0x80;
			c0 += lead && i < b0;
			c1 += lead;
		}
		buf_adds(&line, k ? ", " : "");
		buf_adds(&line, "{\"type\": ");
		buf_json_strn(&line, ch[k].type, ch[k].tlen);
		buf_adds(&line, ", \"text\": ");
		buf_json_strn(&line, s + b0, b1 - b0);
		buf_printf(&line, ", \"start\": %zu, \"end\": %zu}", c0, c1);
	}
	buf_adds(&line, "]}\n");
	fwrite(line.p, 1, line.len, out);
	buf_free(&line);
	free(ch);
	free(tags);
	free(mk);
	free(ids);
	free(first);
	free(wb);
	free(we);
}

struct predictor {
	const char *path;
	bundle b;
	clf_model m;
	bpe *tok;
	st_file st;
	seqm sq;
	int seq;
	wp_text wpt;
	wordpiece *wp;
	block bl;    /* rows being encoded, and their BPE cache, kept between runs */
	double *res; /* their outputs */
	clf_ws *ws;  /* hone's own classifier's workspace */
};

int predictor_open(herr *e, predictor **out, const char *bpath)
{
	predictor *p = xcalloc(1, sizeof *p);
	*out = p;
	p->path = bpath;
	int rc = bundle_read(e, &p->b, bpath, (size_t)16 << 30);
	if (rc) {
		memset(&p->b, 0, sizeof p->b);
	} else {
		const buf *cfg = bundle_get(&p->b, "config.json"), *w = bundle_get(&p->b, "model.safetensors");
		if (!cfg || !w) {
			rc = herr_set(e, "%s: not a model bundle (no config.json or model.safetensors)", bpath);
		} else {
			char *what_c = xasprintf("%s[config.json]", bpath), *what_w = xasprintf("%s[model.safetensors]", bpath);
			char *copy = xmalloc(w->len ? w->len : 1);
			memcpy(copy, w->p, w->len);
			/* a Hugging Face classifier (GPT-2, BERT), or hone's own */
			model_arch arch;
			herr pe;
			p->seq = (strstr(cfg->p, "\"model_type\"") || strstr(cfg->p, "\"n_layer\"")) &&
			         model_detect(&pe, cfg->p, cfg->len, what_c, &arch) == 0;
			if (p->seq) {
				free(copy);
				rc = blas_get(e) ? seq_open(e, &p->sq, &p->m, &p->b, bpath) : -1;
			} else {
				rc = st_parse(e, &p->st, copy, w->len, what_w);
				if (rc == 0)
					rc = clf_load(e, &p->m, cfg->p, cfg->len, what_c, &p->st, what_w);
			}
			free(what_c);
			free(what_w);
		}
	}
	for (int i = 0; rc == 0 && i < p->m.nf; i++)
		if (p->m.f[i].type == FEAT_TEXT && !p->tok && !p->wp) {
			const buf *tj = bundle_get(&p->b, "tokenizer.json");
			char *what = xasprintf("%s[tokenizer.json]", bpath);
			if (!tj) {
				rc = herr_set(e, "%s: the model reads text, but the bundle has no tokenizer.json", bpath);
			} else if (wordpiece_sniff(tj->p, tj->len) == 1) {
				/* BERT's WordPiece, with [CLS] ... [SEP] when tokenize added them */
				rc = wordpiece_load_hf(e, &p->wp, tj->p, tj->len, what);
				p->wpt.w = p->wp;
				p->wpt.cache = wordpiece_cache_new();
				p->wpt.special = p->sq.wp_special;
			} else {
				rc = bpe_load_hf(e, &p->tok, tj->p, tj->len, what);
			}
			free(what);
		}
	if (rc == 0 && p->seq && p->sq.tagger && !p->wp)
		rc = herr_set(e, "%s: a tagger's bundle needs its WordPiece tokenizer.json", bpath);
	if (rc == 0 && !blas_get(e))
		rc = -1;
	return rc;
}

void predictor_close(predictor *p)
{
	if (!p)
		return;
	if (p->tok)
		bpe_free(p->tok);
	if (p->wp) {
		wordpiece_free(p->wp);
		wordpiece_cache_free(p->wpt.cache);
		wordpiece_enc_free(&p->wpt.enc);
	}
	if (p->res) {
		clf_ws_free(p->ws);
		free(p->res);
		block_free(&p->bl, &p->m);
	}
	clf_free(&p->m);
	st_free(&p->st);
	if (p->seq)
		seq_close(&p->sq);
	bundle_free(&p->b);
	free(p);
}

int predictor_is_tagger(const predictor *p) { return p->seq && p->sq.tagger; }

int predictor_run(herr *e, predictor *p, const char *name, const char *in, size_t n, int fmt, int missing, FILE *out,
                  size_t *rows)
{
	clf_model *mp = &p->m;
	int rc = 0, seq = p->seq;
	*rows = 0;
	source s;
	memset(&s, 0, sizeof s);
	s.name = name;
	s.p = in ? in : "";
	s.n = n;
	size_t k = 0; /* the first character that is not white space */
	while (k < s.n && (s.p[k] == ' ' || s.p[k] == '\n' || s.p[k] == '\r' || s.p[k] == '\t'))
		k++;
	if (fmt == PREDICT_CSV || fmt == PREDICT_TSV)
		s.csv_mode = 1;
	else if (k < s.n && s.p[k] == '[') {
		rc = herr_set(e, "%s: expected JSON Lines (one object per line), not a JSON array", s.name);
		herr_hint(e, "turn it into lines first: jq -c '.[]' FILE > rows.jsonl");
	} else if (fmt == PREDICT_SNIFF)
		s.csv_mode = k < s.n && s.p[k] != '{';
	if (rc == 0 && s.csv_mode) {
		csv_init(&s.c, s.p, s.n, fmt == PREDICT_TSV ? '\t' : ',');
		int r = csv_next(&s.c);
		if (r <= 0) {
			rc = r < 0 ? herr_set(e, "%s:%zu: %s", s.name, s.c.err_line, s.c.err) : 0;
		} else {
			s.nh = s.c.nf;
			s.header = xcalloc(s.nh, sizeof *s.header);
			for (size_t k = 0; k < s.nh; k++) {
				size_t l;
				const char *f = csv_field(&s.c, k, &l);
				s.header[k] = xstrndup(f, l);
			}
			/* every input field needs its column, unless told otherwise */
			for (int i = 0; missing == MISSING_ERROR && rc == 0 && i < mp->nf; i++) {
				size_t k = 0;
				while (k < s.nh && strcmp(s.header[k], mp->f[i].field))
					k++;
				if (k == s.nh) {
					buf cols;
					buf_init(&cols);
					for (size_t j = 0; j < s.nh; j++)
						buf_printf(&cols, "%s%s", j ? ", " : "", s.header[j]);
					rc = herr_set(e, "%s:1: no column '%s', which the model reads (columns: %s)", s.name,
					              mp->f[i].field, cols.p ? cols.p : "");
					herr_hint(e, "rename the column, or give --missing empty to read it as empty");
					buf_free(&cols);
				}
			}
		}
	} else if (rc == 0) {
		s.arena = json_arena_new();
	}
	if (!p->res) {
		if (!seq)
			p->ws = clf_ws_new(mp, ML_PREDICT_BATCH, 1);
		block_init(&p->bl, mp, 1024);
		p->res = xmalloc(1024 * (size_t)ml_out_width(mp) * sizeof *p->res);
	}
	block *bl = &p->bl;
	double *res = p->res;
	bl->n = bl->nids = bl->idjson.len = 0;
	int r;
	size_t seen = 0, nmiss = 0, first_miss = 0;
	const char *miss_field = NULL;
	while (rc == 0 && (s.nh || !s.csv_mode) && (r = next_row(e, &s)) != 0) {
		if (r < 0) {
			rc = -1;
			break;
		}
		seen++;
		if (seq && p->sq.tagger) {
			/* a tagger: each row answered on its own, words tagged */
			rawv v = field_of(&s, mp->f[0].field), idv = field_of(&s, "id");
			if (v.kind != 1 && !(v.kind == 0 && missing != MISSING_ERROR)) {
				rc = herr_set(e, "%s: row %zu: no text field '%s', which the tagger reads", s.name, seen, mp->f[0].field);
				break;
			}
			buf idj;
			buf_init(&idj);
			if (idv.kind == 1)
				buf_json_strn(&idj, idv.s, idv.n);
			else if (idv.kind == 2)
				buf_add(&idj, idv.s, idv.n);
			buf_addc(&idj, 0);
			tag_row(&p->sq, p->wp, mp, v.kind ? v.s : "", v.kind ? v.n : 0, idj.p, out);
			buf_free(&idj);
			(*rows)++;
			continue;
		}
		const char *mf = missing_field(&s, mp);
		if (mf && !nmiss++) {
			first_miss = seen;
			miss_field = mf;
		}
		if (mf && missing == MISSING_ERROR) {
			rc = herr_set(e, "%s: row %zu: no field '%s', which the model reads", s.name, seen, mf);
			herr_hint(e, "give every row its input fields, or --missing skip|empty to leave such rows out or read them as empty");
			break;
		}
		if (mf && missing == MISSING_SKIP)
			continue;
		if (add_row(e, bl, &s, mp, p->tok, p->wpt.w ? &p->wpt : NULL, seen) != 0) {
			rc = -1;
			break;
		}
		(*rows)++;
		if (bl->n == bl->cap)
			emit(out, mp, seq ? &p->sq : NULL, p->ws, bl, res);
	}
	/* the rows read before a bad one are still answered */
	if (bl->n)
		emit(out, mp, seq ? &p->sq : NULL, p->ws, bl, res);
	if (nmiss && missing != MISSING_ERROR)
		fprintf(stderr, "hone: warning: %zu of %zu rows lacked an input field (first: row %zu, '%s'); %s\n", nmiss,
		        seen, first_miss, miss_field, missing == MISSING_SKIP ? "left out" : "read as empty");
	if (s.csv_mode)
		csv_free(&s.c);
	for (size_t k = 0; k < s.nh; k++)
		free(s.header[k]);
	free(s.header);
	if (s.arena)
		json_arena_free(s.arena);
	return rc;
}

int predict_main(int argc, char **argv)
{
	const char *bpath = NULL, *input = NULL, *output = NULL;
	int quiet = 0, missing = MISSING_ERROR;
	opt_parsed op;
	int prc = opt_parse(&predict_verb, argc, argv, &op);
	if (prc != OPT_OK)
		return prc == OPT_HELP ? 0 : 2;
	bpath = op.pos[0];
	for (size_t i = 0; i < op.nhits; i++) {
		const char *n = op.hits[i].spec->name, *v = op.hits[i].val;
		if (!strcmp(n, "input"))
			input = v;
		else if (!strcmp(n, "output"))
			output = v;
		else if (!strcmp(n, "quiet"))
			quiet = 1;
		else if (!strcmp(n, "missing"))
			missing = !strcmp(v, "skip") ? MISSING_SKIP : !strcmp(v, "empty") ? MISSING_EMPTY : !strcmp(v, "error") ? MISSING_ERROR : -1;
	}
	opt_free(&op);
	if (missing < 0)
		return opt_usage_error(&predict_verb, "--missing: expected error, skip or empty");
	herr e = {{0}, {0}};
	double t0 = now_seconds();
	predictor *p;
	int rc = predictor_open(&e, &p, bpath);
	double t_load = now_seconds() - t0;
	buf in;
	buf_init(&in);
	if (rc == 0)
		rc = input ? fs_read(&e, input, &in) : fs_read_fd(&e, 0, "stdin", &in);
	FILE *out = stdout;
	if (rc == 0 && output && !(out = fopen(output, "w"))) {
		rc = herr_set(&e, "%s: cannot create: %s", output, strerror(errno));
		out = stdout;
	}
	size_t rows = 0, L = input ? strlen(input) : 0;
	int fmt = L > 4 && !strcmp(input + L - 4, ".tsv")   ? PREDICT_TSV
	          : L > 4 && !strcmp(input + L - 4, ".csv") ? PREDICT_CSV
	          : input                                   ? PREDICT_JSONL
	                                                    : PREDICT_SNIFF;
	double t1 = now_seconds();
	if (rc == 0)
		rc = predictor_run(&e, p, input ? input : "stdin", in.p, in.len, fmt, missing, out, &rows);
	double t2 = now_seconds();
	if (out != stdout && fclose(out) != 0 && rc == 0)
		rc = herr_set(&e, "%s: write error", output);
	else if (out == stdout)
		fflush(stdout);
	buf_free(&in);
	predictor_close(p);
	if (rc) {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
		return 1;
	}
	if (!quiet)
		fprintf(stderr, "hone: predicted %zu rows in %.3fs (%.0f rows/s); bundle loaded in %.3fs\n", rows, t2 - t1,
		        t2 > t1 ? (double)rows / (t2 - t1) : 0, t_load);
	return 0;
}
