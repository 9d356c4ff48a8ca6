/*
 * objcheck — every object a stage publishes opens with its own reader.
 *
 * Before a stage's output folder is renamed into the store, each file whose
 * name marks it as one of hone's artifacts is opened the way its readers
 * (the next stage, `hone show`, `hone predict`) open it: data.rec as a
 * dataset, tokens.u32 and mask.u8 against their data.rec's token ranges,
 * *.safetensors by its header and tensor table, config.json, tokenizer.json,
 * metrics.json, tokenize.json and tokenizer.json as JSON.
 * A file that fails is an error naming the stage, the file and why, so a
 * kernel's bug or a Lua body writing the wrong bytes never leaves an object
 * in the cache that `hone show` would call corrupt.
 *
 * Relies on: util, io/records, io/json, ml/safetensors.
 * Ownership: reads only; the caller owns the folder.
 */
#ifndef HONE_OBJCHECK_H
#define HONE_OBJCHECK_H

#include "util.h"

/* 0 when every artifact under dir opens; else -1 with the message in e. */
int objcheck_dir(herr *e, const char *dir);

#endif
