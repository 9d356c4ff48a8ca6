/*
 * metrics — evaluation metrics for classifiers and regressors, defined as
 * scikit-learn 1.2 (Debian 12) defines them, so a number printed here can be
 * compared with one computed in Python: tests/unit/test_metrics.c checks
 * every field against sklearn's own output (tests/fixtures/metrics/).
 *
 *   classification: accuracy; precision, recall, F1 and support per class;
 *   their macro, micro and support-weighted averages; ROC-AUC and average
 *   precision (one-vs-rest, macro, for k > 2); log loss; the confusion matrix.
 *   regression: MAE, RMSE, R².
 *
 * Relies on: util, libm.
 * Ownership: a cls_report owns its arrays (cls_report_free releases them);
 * the inputs are only read. reg_report owns nothing.
 *
 * Where sklearn 1.2 makes a choice, these follow it:
 *   - a ratio with a zero denominator (precision of a class never predicted,
 *     recall of a class absent from y, F1 when both are 0) is 0;
 *   - ROC-AUC is the trapezoid area under the curve of the distinct score
 *     thresholds (tied scores form one point); undefined (NAN) when a class
 *     is absent from y, and for k > 2 also when a row of prob does not sum to
 *     1 (|1 - sum| > 1e-8 + 1e-5·sum; sklearn refuses such rows);
 *   - average precision is Σ (R_i - R_{i-1}) · P_i over the distinct score
 *     thresholds, no interpolation; for a class absent from y sklearn takes
 *     recall as 1 everywhere, which makes it 0 (and averages that 0 in);
 *   - log loss clips each probability to [ε, 1 - ε] with ε = DBL_EPSILON
 *     (eps="auto"), then divides each row by its sum (rows need not sum to 1);
 *   - R² of a constant y is 1.0 for a perfect prediction, else 0.0; R² of a
 *     single row is NAN. Constant means all y equal; sklearn instead tests
 *     Σ (y - mean)² == 0 with a rounded mean, so for y = {0.1, 0.1, 0.1} it
 *     divides by ~1e-34 and reports R² = -5e33 where this reports 0.0.
 * Sums run in row order (sklearn's are pairwise); results agree to ~1e-15
 * relative on the fixture.
 */
#ifndef HONE_METRICS_H
#define HONE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"

typedef struct cls_report {
	size_t n, k;                 /* rows, classes */
	double accuracy;
	double *precision, *recall, *f1, *support; /* per class (k each) */
	double macro_p, macro_r, macro_f1, micro_p, micro_r, micro_f1, weighted_p, weighted_r, weighted_f1;
	/* k == 2: positive class 1, score prob[:,1]; k > 2: one-vs-rest, macro
	 * average over the k classes. NAN as above, or when prob is NULL. */
	double roc_auc, pr_auc;
	double log_loss;             /* mean over rows; NAN when prob is NULL */
	uint64_t *confusion;         /* k*k, row = true class, column = predicted */
} cls_report;

/* y[n]: true class in [0,k); pred[n]: predicted class (the caller applies
 * argmax or a threshold); prob: n*k row-major probabilities (finite), or
 * NULL when there are none (then roc_auc, pr_auc and log_loss are NAN).
 * Fills *r (free it with cls_report_free, also after an error). Returns -1
 * with a message in e on bad input: k < 2, n == 0, a class out of range, a
 * probability that is NaN or infinite. */
int metrics_classify(herr *e, cls_report *r, const uint32_t *y, const uint32_t *pred, const double *prob,
                     size_t n, size_t k);
void cls_report_free(cls_report *r);

/* Appends one JSON object with every metric:
 *   {"n":…,"k":…,"accuracy":…,
 *    "classes":{"<label>":{"precision":…,"recall":…,"f1":…,"support":…},…},
 *    "macro":{"precision":…,"recall":…,"f1":…},"micro":{…},"weighted":{…},
 *    "roc_auc":…,"pr_auc":…,"log_loss":…,"labels":[…],"confusion":[[…],…]}
 * labels[k] name the classes (NULL: "0", "1", …); classes are in index
 * order, and "labels" lists them in that order too (a JSON object's keys
 * need not keep it). Numbers by fmt_double (round-trip exact), counts as
 * integers, NaN as null. */
void cls_report_json(const cls_report *r, const char *const *labels, buf *out);

typedef struct reg_report {
	size_t n;
	double mae, rmse, r2;
} reg_report;

/* sklearn mean_absolute_error, sqrt(mean_squared_error), r2_score (see
 * above for constant y and n == 1). Returns -1 with a message in e when
 * n == 0 or a value is NaN or infinite. */
int metrics_regress(herr *e, reg_report *r, const double *y, const double *pred, size_t n);
/* Appends {"n":…,"mae":…,"rmse":…,"r2":…} (NaN as null). */
void reg_report_json(const reg_report *r, buf *out);

/* Tagging, scored as seqeval does by default (conlleval's chunk rules):
 * tags are "O" or PREFIX-TYPE with PREFIX B, I, E or S; an entity is a
 * chunk of one type, started by B or S, by I or E after O, after another
 * type or after the end of a chunk, and ended the same way. Precision,
 * recall and F1 count exact (type, start, end) matches over all rows
 * (micro averages); per type as well. gold and pred hold each row's tag
 * indices (into names) end to end, row r at [off[r], off[r + 1]). */
typedef struct tag_report {
	double precision, recall, f1, token_accuracy;
	size_t tokens, true_entities, pred_entities, correct;
	int ntypes;
	char **types;                 /* sorted */
	double *tp, *tr, *tf;         /* per type: precision, recall, F1 */
	size_t *support;              /* per type: true entities */
} tag_report;
/* The entities of one row's tags (indices into names), as the scoring
 * reads them: *out[k] = {type, type length, first word, end word}; their
 * number. The caller frees *out. */
typedef struct tag_chunk {
	const char *type;
	size_t tlen, start, end;
} tag_chunk;
size_t metrics_tag_chunks(const char *const *names, const uint32_t *tags, size_t n, tag_chunk **out);
void metrics_tagging(tag_report *r, const char *const *names, const uint32_t *gold, const uint32_t *pred,
                     const size_t *off, size_t nrows);
void tag_report_free(tag_report *r);
void tag_report_json(const tag_report *r, buf *out);

#endif
