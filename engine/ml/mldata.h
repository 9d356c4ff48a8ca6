/*
 * mldata — a dataset as the model stages see it: the records of one split
 * (data.rec), its token ids (tokens.u32) and how they were made
 * (tokenize.json), turned into a clf_data for a given model.
 *
 * Relies on: records, classifier, json.
 * Ownership: an ml_split owns its reader, ids and columns; ml_split_close
 * releases them.
 */
#ifndef HONE_MLDATA_H
#define HONE_MLDATA_H

#include "../io/records.h"
#include "classifier.h"

typedef struct ml_split {
	char *label;        /* "tokenize.train", for messages */
	rec_reader r;
	buf ids;            /* tokens.u32 (empty when the dataset has none) */
	int has_tokens;
	char *tok_field;    /* tokenize.json */
	long long vocab, max_len, eos;
	int left;
	clf_data d;
	int nf;             /* features filled in d */
} ml_split;

/* Opens the dataset in folder dir (label for messages). */
int ml_split_open(herr *e, ml_split *s, const char *dir, const char *label);
void ml_split_close(ml_split *s);

/* Fills s->d for model m: the features' columns and, with need_target, the
 * target (an error names the row and value that do not fit). */
int ml_split_fill(herr *e, ml_split *s, const clf_model *m, int need_target);

/* Loads a model folder (train's output: config.json + model.safetensors). */
int ml_model_load_dir(herr *e, clf_model *m, const char *dir, const char *label);

/* Runs the model over every row of d, batch rows at a time: out gets n × K
 * values (K = ml_out_width: class probabilities, or the predicted number). */
void ml_predict(const clf_model *m, const clf_data *d, int threads, double *out);
/* The same in workspace w (clf_ws_new(m, ML_PREDICT_BATCH, threads)), which
 * the caller keeps between calls (hone serve: one per request costs more than
 * the prediction). */
#define ML_PREDICT_BATCH 256
void ml_predict_ws(const clf_model *m, const clf_data *d, clf_ws *w, double *out);
int ml_out_width(const clf_model *m);
/* The class a row of probabilities decides (argmax; binary: p1 >= threshold). */
uint32_t ml_decide(const clf_model *m, const double *prob);

/* Names of the metrics a model of this output can be selected on. */
const char *ml_metric_names(const clf_model *m);
/* Whether larger is better for metric. */
int ml_metric_higher(const char *metric);
/* The value of metric ("loss", "accuracy", "f1", "roc_auc" for classes;
 * "loss", "rmse", "mae", "r2" for numbers) on the predictions out of d;
 * -1 on an unknown name. f1 is macro-F1, or the positive class's for binary. */
int ml_score(herr *e, const clf_model *m, const clf_data *d, const double *out, const char *metric, double *v);

/* Index of the n bytes s in the sorted strings v[0..nv), or -1. */
int ml_find_sorted(char *const *v, size_t nv, const char *s, size_t n);
/* Index of label among the model's classes (sorted), or -1. */
int ml_class_index(const clf_model *m, const char *s, size_t n);

#endif
