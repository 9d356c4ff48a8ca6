/*
 * forward — `hone forward MODEL --input rows.jsonl --output out.safetensors`:
 * a model's forward (any architecture in engine/models) on given token ids,
 * its logits and loss written as safetensors, to check hone against another
 * framework.
 *
 * Relies on: models/gpt2, models/bert, ml/safetensors.
 */
#ifndef HONE_FORWARD_H
#define HONE_FORWARD_H

#include "opt.h"

int forward_main(int argc, char **argv);
extern const opt_verb forward_verb;

#endif
