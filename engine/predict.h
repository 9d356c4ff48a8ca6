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

#include "opt.h"
extern const opt_verb predict_verb;

#endif
