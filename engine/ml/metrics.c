#include "metrics.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double ratio(double a, double b)
{
	return b != 0 ? a / b : 0.0;
}

/* F1 as sklearn writes it: 2·p·r / (p + r), 0 when p + r == 0. */
static double f1_of(double p, double r)
{
	double d = p + r;
	return d != 0 ? 2.0 * p * r / d : 0.0;
}

/* --- ranking metrics ----------------------------------------------------------- */

typedef struct scored {
	double s;
	size_t i;
} scored;

/* Score descending, then row ascending: a total order, so the result does
 * not depend on the qsort implementation. */
static int by_score_desc(const void *a, const void *b)
{
	const scored *x = a, *y = b;
	if (x->s > y->s)
		return -1;
	if (x->s < y->s)
		return 1;
	return (x->i > y->i) - (x->i < y->i);
}

/* ROC-AUC and average precision of column `col` of prob as the score for
 * "y == pos". v is scratch space for n entries. *roc is NAN when y holds
 * only one side. */
static void rank_metrics(const double *prob, size_t k, size_t col, const uint32_t *y, uint32_t pos, size_t n,
                         scored *v, double *roc, double *ap)
{
	size_t npos = 0;
	for (size_t i = 0; i < n; i++) {
		v[i].s = prob[i * k + col];
		v[i].i = i;
		npos += y[i] == pos;
	}
	qsort(v, n, sizeof *v, by_score_desc);
	double P = (double)npos, N = (double)(n - npos);
	int roc_ok = npos > 0 && npos < n;
	size_t tp = 0, fp = 0;
	double area = 0, fpr0 = 0, tpr0 = 0, sum = 0, rec0 = 0;
	for (size_t i = 0; i < n; i++) {
		if (y[v[i].i] == pos)
			tp++;
		else
			fp++;
		if (i + 1 < n && v[i + 1].s == v[i].s)
			continue; /* a threshold is a distinct score: ties are one point */
		if (roc_ok) {
			double fpr = (double)fp / N, tpr = (double)tp / P;
			area += (fpr - fpr0) * (tpr + tpr0) / 2.0;
			fpr0 = fpr;
			tpr0 = tpr;
		}
		/* no positives: sklearn sets recall to 1 at every threshold */
		double rec = npos ? (double)tp / P : 1.0;
		sum += (rec - rec0) * ((double)tp / (double)(tp + fp));
		rec0 = rec;
	}
	*roc = roc_ok ? area : NAN;
	*ap = sum;
}

/* numpy.allclose(1, s): |1 - s| <= 1e-8 + 1e-5·|s|. */
static int sums_to_one(const double *row, size_t k)
{
	double s = 0;
	for (size_t j = 0; j < k; j++)
		s += row[j];
	return fabs(1.0 - s) <= 1e-8 + 1e-5 * fabs(s);
}

static void ranking(cls_report *r, const uint32_t *y, const double *prob)
{
	size_t n = r->n, k = r->k;
	scored *v = xmalloc(n * sizeof *v);
	if (k == 2) {
		rank_metrics(prob, 2, 1, y, 1, n, v, &r->roc_auc, &r->pr_auc);
	} else {
		int rows_ok = 1;
		for (size_t i = 0; i < n && rows_ok; i++)
			rows_ok = sums_to_one(prob + i * k, k);
		double roc_sum = 0, ap_sum = 0;
		for (size_t c = 0; c < k; c++) {
			double roc, ap;
			rank_metrics(prob, k, c, y, (uint32_t)c, n, v, &roc, &ap);
			roc_sum += roc; /* one NAN (class absent) makes the mean NAN */
			ap_sum += ap;
		}
		r->roc_auc = rows_ok ? roc_sum / (double)k : NAN;
		r->pr_auc = ap_sum / (double)k;
	}
	free(v);
}

/* sklearn 1.2 log_loss(eps="auto"): clip to [ε, 1-ε], renormalize rows. */
static double log_loss_of(const uint32_t *y, const double *prob, size_t n, size_t k)
{
	const double lo = DBL_EPSILON, hi = 1.0 - DBL_EPSILON;
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		const double *row = prob + i * k;
		double s = 0;
		for (size_t j = 0; j < k; j++)
			s += fmin(fmax(row[j], lo), hi);
		total += -log(fmin(fmax(row[y[i]], lo), hi) / s);
	}
	return total / (double)n;
}

/* --- classification -------------------------------------------------------------- */

int metrics_classify(herr *e, cls_report *r, const uint32_t *y, const uint32_t *pred, const double *prob,
                     size_t n, size_t k)
{
	memset(r, 0, sizeof *r);
	if (k < 2)
		return herr_set(e, "metrics: %zu class%s: need at least 2", k, k == 1 ? "" : "es");
	if (n == 0)
		return herr_set(e, "metrics: no rows to evaluate");
	if (k > SIZE_MAX / sizeof(uint64_t) / k)
		return herr_set(e, "metrics: %zu classes: too many", k);
	for (size_t i = 0; i < n; i++) {
		if (y[i] >= k)
			return herr_set(e, "metrics: row %zu: true class %u is out of range 0..%zu", i, y[i], k - 1);
		if (pred[i] >= k)
			return herr_set(e, "metrics: row %zu: predicted class %u is out of range 0..%zu", i, pred[i],
			                k - 1);
	}
	if (prob)
		for (size_t i = 0; i < n * k; i++)
			if (!isfinite(prob[i]))
				return herr_set(e, "metrics: row %zu: probability of class %zu is %g", i / k, i % k,
				                prob[i]);

	r->n = n;
	r->k = k;
	r->precision = xcalloc(k, sizeof(double));
	r->recall = xcalloc(k, sizeof(double));
	r->f1 = xcalloc(k, sizeof(double));
	r->support = xcalloc(k, sizeof(double));
	r->confusion = xcalloc(k * k, sizeof(uint64_t));
	for (size_t i = 0; i < n; i++)
		r->confusion[(size_t)y[i] * k + pred[i]]++;

	uint64_t correct = 0;
	double *predicted = xcalloc(k, sizeof(double));
	for (size_t t = 0; t < k; t++)
		for (size_t p = 0; p < k; p++) {
			uint64_t c = r->confusion[t * k + p];
			r->support[t] += (double)c;
			predicted[p] += (double)c;
			if (t == p)
				correct += c;
		}
	double sum_p = 0, sum_r = 0, sum_f = 0, w_p = 0, w_r = 0, w_f = 0;
	for (size_t c = 0; c < k; c++) {
		double tp = (double)r->confusion[c * k + c];
		r->precision[c] = ratio(tp, predicted[c]);
		r->recall[c] = ratio(tp, r->support[c]);
		r->f1[c] = f1_of(r->precision[c], r->recall[c]);
		sum_p += r->precision[c];
		sum_r += r->recall[c];
		sum_f += r->f1[c];
		w_p += r->precision[c] * r->support[c];
		w_r += r->recall[c] * r->support[c];
		w_f += r->f1[c] * r->support[c];
	}
	free(predicted);
	double dn = (double)n, dk = (double)k;
	r->accuracy = (double)correct / dn;
	r->macro_p = sum_p / dk;
	r->macro_r = sum_r / dk;
	r->macro_f1 = sum_f / dk;
	/* every row has one true and one predicted class in range: both micro
	 * ratios are correct / n */
	r->micro_p = r->micro_r = r->accuracy;
	r->micro_f1 = f1_of(r->micro_p, r->micro_r);
	r->weighted_p = w_p / dn;
	r->weighted_r = w_r / dn;
	r->weighted_f1 = w_f / dn;

	if (prob) {
		ranking(r, y, prob);
		r->log_loss = log_loss_of(y, prob, n, k);
	} else {
		r->roc_auc = r->pr_auc = r->log_loss = NAN;
	}
	return 0;
}

void cls_report_free(cls_report *r)
{
	free(r->precision);
	free(r->recall);
	free(r->f1);
	free(r->support);
	free(r->confusion);
	memset(r, 0, sizeof *r);
}

/* --- JSON ---------------------------------------------------------------------- */

static void json_num(buf *b, const char *key, double v)
{
	char num[40];
	if (key) {
		buf_json_str(b, key);
		buf_addc(b, ':');
	}
	if (isfinite(v)) {
		fmt_double(num, v);
		buf_adds(b, num);
	} else {
		buf_adds(b, "null");
	}
}

static void json_prf(buf *b, const char *key, double p, double r, double f)
{
	buf_json_str(b, key);
	buf_adds(b, ":{");
	json_num(b, "precision", p);
	buf_addc(b, ',');
	json_num(b, "recall", r);
	buf_addc(b, ',');
	json_num(b, "f1", f);
	buf_addc(b, '}');
}

/* labels[c], or c's number when there are no labels */
static const char *label_of(const char *const *labels, size_t c, char num[32])
{
	if (labels)
		return labels[c];
	snprintf(num, 32, "%zu", c);
	return num;
}

void cls_report_json(const cls_report *r, const char *const *labels, buf *out)
{
	char num[32];
	buf_printf(out, "{\"n\":%zu,\"k\":%zu,", r->n, r->k);
	json_num(out, "accuracy", r->accuracy);
	buf_adds(out, ",\"classes\":{");
	for (size_t c = 0; c < r->k; c++) {
		if (c)
			buf_addc(out, ',');
		buf_json_str(out, label_of(labels, c, num));
		buf_adds(out, ":{");
		json_num(out, "precision", r->precision[c]);
		buf_addc(out, ',');
		json_num(out, "recall", r->recall[c]);
		buf_addc(out, ',');
		json_num(out, "f1", r->f1[c]);
		buf_printf(out, ",\"support\":%.0f}", r->support[c]);
	}
	buf_adds(out, "},");
	json_prf(out, "macro", r->macro_p, r->macro_r, r->macro_f1);
	buf_addc(out, ',');
	json_prf(out, "micro", r->micro_p, r->micro_r, r->micro_f1);
	buf_addc(out, ',');
	json_prf(out, "weighted", r->weighted_p, r->weighted_r, r->weighted_f1);
	buf_addc(out, ',');
	json_num(out, "roc_auc", r->roc_auc);
	buf_addc(out, ',');
	json_num(out, "pr_auc", r->pr_auc);
	buf_addc(out, ',');
	json_num(out, "log_loss", r->log_loss);
	buf_adds(out, ",\"labels\":[");
	for (size_t c = 0; c < r->k; c++) {
		if (c)
			buf_addc(out, ',');
		buf_json_str(out, label_of(labels, c, num));
	}
	buf_adds(out, "],\"confusion\":[");
	for (size_t t = 0; t < r->k; t++) {
		buf_adds(out, t ? ",[" : "[");
		for (size_t p = 0; p < r->k; p++)
			buf_printf(out, p ? ",%llu" : "%llu", (unsigned long long)r->confusion[t * r->k + p]);
		buf_addc(out, ']');
	}
	buf_adds(out, "]}");
}

/* --- regression ------------------------------------------------------------------- */

int metrics_regress(herr *e, reg_report *r, const double *y, const double *pred, size_t n)
{
	memset(r, 0, sizeof *r);
	if (n == 0)
		return herr_set(e, "metrics: no rows to evaluate");
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(y[i]))
			return herr_set(e, "metrics: row %zu: true value is %g", i, y[i]);
		if (!isfinite(pred[i]))
			return herr_set(e, "metrics: row %zu: predicted value is %g", i, pred[i]);
	}
	double abs_sum = 0, sq_sum = 0, y_sum = 0;
	int constant = 1;
	for (size_t i = 0; i < n; i++) {
		double d = y[i] - pred[i];
		abs_sum += fabs(d);
		sq_sum += d * d;
		y_sum += y[i];
		constant &= y[i] == y[0];
	}
	double dn = (double)n;
	r->n = n;
	r->mae = abs_sum / dn;
	r->rmse = sqrt(sq_sum / dn);
	if (n < 2) {
		r->r2 = NAN;
	} else if (sq_sum == 0) {
		r->r2 = 1.0;
	} else if (constant) {
		r->r2 = 0.0;
	} else {
		double mean = y_sum / dn, den = 0;
		for (size_t i = 0; i < n; i++)
			den += (y[i] - mean) * (y[i] - mean);
		r->r2 = den != 0 ? 1.0 - sq_sum / den : 0.0;
	}
	return 0;
}

void reg_report_json(const reg_report *r, buf *out)
{
	buf_printf(out, "{\"n\":%zu,", r->n);
	json_num(out, "mae", r->mae);
	buf_addc(out, ',');
	json_num(out, "rmse", r->rmse);
	buf_addc(out, ',');
	json_num(out, "r2", r->r2);
	buf_addc(out, '}');
}

/* --- tagging (seqeval's default scheme) ------------------------------------------------ */

typedef tag_chunk chunk; /* [start, end) within the row */

static void tag_parts(const char *t, char *prefix, const char **type, size_t *tlen)
{
	if (!strcmp(t, "O") || !t[0]) {
		*prefix = 'O';
		*type = "";
		*tlen = 0;
		return;
	}
	*prefix = t[0];
	const char *dash = strchr(t, '-');
	*type = dash ? dash + 1 : t + 1;
	*tlen = strlen(*type);
}

static int same_type(const char *a, size_t al, const char *b, size_t bl) { return al == bl && !memcmp(a, b, al); }

static int chunk_ends(char pp, const char *pt, size_t pl, char p, const char *t, size_t tl)
{
	if (pp == 'E' || pp == 'S')
		return 1;
	if (pp == 'B' && (p == 'B' || p == 'S' || p == 'O'))
		return 1;
	if (pp == 'I' && (p == 'B' || p == 'S' || p == 'O'))
		return 1;
	if (pp != 'O' && !same_type(pt, pl, t, tl))
		return 1;
	return 0;
}

static int chunk_starts(char pp, const char *pt, size_t pl, char p, const char *t, size_t tl)
{
	if (p == 'B' || p == 'S')
		return 1;
	if ((pp == 'E' || pp == 'S' || pp == 'O') && (p == 'E' || p == 'I'))
		return 1;
	if (p != 'O' && !same_type(pt, pl, t, tl))
		return 1;
	return 0;
}

/* the chunks of one row's tags */
static size_t chunks_of(const char *const *names, const uint32_t *tags, size_t n, chunk **out)
{
	size_t m = 0, cap = 0;
	char pp = 'O';
	const char *pt = "";
	size_t pl = 0, start = 0;
	int open = 0;
	for (size_t i = 0; i <= n; i++) {
		char p;
		const char *t;
		size_t tl;
		if (i < n)
			tag_parts(names[tags[i]], &p, &t, &tl);
		else
			p = 'O', t = "", tl = 0;
		if (open && chunk_ends(pp, pt, pl, p, t, tl)) {
			if (m == cap) {
				cap = cap ? cap * 2 : 8;
				*out = xrealloc(*out, cap * sizeof **out);
			}
			(*out)[m++] = (chunk){pt, pl, start, i};
			open = 0;
		}
		if (chunk_starts(pp, pt, pl, p, t, tl)) {
			start = i;
			open = 1;
		}
		pp = p;
		pt = t;
		pl = tl;
	}
	return m;
}

size_t metrics_tag_chunks(const char *const *names, const uint32_t *tags, size_t n, tag_chunk **out)
{
	*out = NULL;
	return chunks_of(names, tags, n, out);
}

static int type_index(const tag_report *r, const char *t, size_t tl)
{
	for (int k = 0; k < r->ntypes; k++)
		if (strlen(r->types[k]) == tl && !memcmp(r->types[k], t, tl))
			return k;
	return -1;
}

void metrics_tagging(tag_report *r, const char *const *names, const uint32_t *gold, const uint32_t *pred,
                     const size_t *off, size_t nrows)
{
	memset(r, 0, sizeof *r);
	chunk *g = NULL, *p = NULL;
	size_t hit = 0, ok = 0;
	/* the entity types, from every tag name */
	for (size_t k = 0; names[k]; k++) {
		char pre;
		const char *t;
		size_t tl;
		tag_parts(names[k], &pre, &t, &tl);
		if (pre == 'O' || type_index(r, t, tl) >= 0)
			continue;
		r->types = xrealloc(r->types, (size_t)(r->ntypes + 1) * sizeof *r->types);
		r->types[r->ntypes++] = xstrndup(t, tl);
	}
	for (int a = 1; a < r->ntypes; a++)
		for (int b = a; b > 0 && strcmp(r->types[b - 1], r->types[b]) > 0; b--) {
			char *x = r->types[b];
			r->types[b] = r->types[b - 1];
			r->types[b - 1] = x;
		}
	size_t K = (size_t)(r->ntypes ? r->ntypes : 1);
	size_t *tt = xcalloc(K, sizeof *tt), *tpd = xcalloc(K, sizeof *tpd), *tc = xcalloc(K, sizeof *tc);
	for (size_t row = 0; row < nrows; row++) {
		size_t n = off[row + 1] - off[row];
		for (size_t i = 0; i < n; i++)
			hit += gold[off[row] + i] == pred[off[row] + i];
		ok += n;
		size_t ng = chunks_of(names, gold + off[row], n, &g), np = chunks_of(names, pred + off[row], n, &p);
		r->true_entities += ng;
		r->pred_entities += np;
		for (size_t a = 0; a < ng; a++) {
			int k = type_index(r, g[a].type, g[a].tlen);
			if (k >= 0)
				tt[k]++;
			for (size_t b = 0; b < np; b++)
				if (g[a].start == p[b].start && g[a].end == p[b].end && same_type(g[a].type, g[a].tlen, p[b].type, p[b].tlen)) {
					r->correct++;
					if (k >= 0)
						tc[k]++;
				}
		}
		for (size_t b = 0; b < np; b++) {
			int k = type_index(r, p[b].type, p[b].tlen);
			if (k >= 0)
				tpd[k]++;
		}
	}
	r->tokens = ok;
	r->token_accuracy = ok ? (double)hit / (double)ok : NAN;
	r->precision = r->pred_entities ? (double)r->correct / (double)r->pred_entities : 0;
	r->recall = r->true_entities ? (double)r->correct / (double)r->true_entities : 0;
	r->f1 = r->precision + r->recall > 0 ? 2 * r->precision * r->recall / (r->precision + r->recall) : 0;
	r->tp = xcalloc(K, sizeof *r->tp);
	r->tr = xcalloc(K, sizeof *r->tr);
	r->tf = xcalloc(K, sizeof *r->tf);
	r->support = xcalloc(K, sizeof *r->support);
	for (int k = 0; k < r->ntypes; k++) {
		r->tp[k] = tpd[k] ? (double)tc[k] / (double)tpd[k] : 0;
		r->tr[k] = tt[k] ? (double)tc[k] / (double)tt[k] : 0;
		r->tf[k] = r->tp[k] + r->tr[k] > 0 ? 2 * r->tp[k] * r->tr[k] / (r->tp[k] + r->tr[k]) : 0;
		r->support[k] = tt[k];
	}
	free(tt);
	free(tpd);
	free(tc);
	free(g);
	free(p);
}

void tag_report_free(tag_report *r)
{
	for (int k = 0; k < r->ntypes; k++)
		free(r->types[k]);
	free(r->types);
	free(r->tp);
	free(r->tr);
	free(r->tf);
	free(r->support);
	memset(r, 0, sizeof *r);
}

void tag_report_json(const tag_report *r, buf *out)
{
	buf_adds(out, "{\"precision\": ");
	buf_json_num(out, r->precision);
	buf_adds(out, ", \"recall\": ");
	buf_json_num(out, r->recall);
	buf_adds(out, ", \"f1\": ");
	buf_json_num(out, r->f1);
	buf_adds(out, ", \"token_accuracy\": ");
	buf_json_num(out, r->token_accuracy);
	buf_printf(out, ", \"tokens\": %zu, \"true_entities\": %zu, \"pred_entities\": %zu, \"correct\": %zu, \"types\": {",
	           r->tokens, r->true_entities, r->pred_entities, r->correct);
	for (int k = 0; k < r->ntypes; k++) {
		buf_adds(out, k ? ", " : "");
		buf_json_str(out, r->types[k]);
		buf_adds(out, ": {\"precision\": ");
		buf_json_num(out, r->tp[k]);
		buf_adds(out, ", \"recall\": ");
		buf_json_num(out, r->tr[k]);
		buf_adds(out, ", \"f1\": ");
		buf_json_num(out, r->tf[k]);
		buf_printf(out, ", \"support\": %zu}", r->support[k]);
	}
	buf_adds(out, "}}");
}
