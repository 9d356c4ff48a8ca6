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

/* Index of label among the model's classes (sorted), or -1. */
int ml_class_index(const clf_model *m, const char *s, size_t n);

#endif
