/*
 * predict — `hone predict BUNDLE [--input FILE] [--output FILE]`: loads an
 * export bundle and prints a prediction per input row (JSON Lines or CSV in;
 * JSON Lines out).
 *
 * Relies on: ml/bundle, ml/classifier, ml/mldata, io/bpe, io/json, io/csv.
 */
#ifndef HONE_PREDICT_H
#define HONE_PREDICT_H

int predict_main(int argc, char **argv);

#include <stdio.h>
#include "util.h"

/* A bundle opened for prediction (hone predict, hone serve's /predict): the
 * classifier and its tokenizer. Not for two threads at once. */
typedef struct predictor predictor;
enum { MISSING_ERROR, MISSING_SKIP, MISSING_EMPTY };
enum { PREDICT_JSONL, PREDICT_CSV, PREDICT_TSV, PREDICT_SNIFF /* CSV unless it starts with '{' */ };
/* Opens the bundle at path; *p is set even on failure (predictor_close it). */
int predictor_open(herr *e, predictor **p, const char *path);
void predictor_close(predictor *p);
/* A tagger (BERT token classification): rows get tags and entities. */
int predictor_is_tagger(const predictor *p);
/* Predicts the rows of in[0..n) (fmt: JSON Lines, CSV, TSV, or sniffed;
 * name names it in messages), one JSON line per row into out as hone predict
 * prints them; a row without an input field as missing says. *rows: rows
 * answered (those before a bad row are answered too). */
int predictor_run(herr *e, predictor *p, const char *name, const char *in, size_t n, int fmt, int missing, FILE *out,
                  size_t *rows);

#include "opt.h"
extern const opt_verb predict_verb;

#endif
