/*
 * generate — `hone generate MODEL --tokenizer TOK --prompt TEXT [...]`:
 * text from a GPT-2 folder (Hugging Face layout, e.g. train's output with a
 * base), token by token with a key/value cache.
 *
 * Relies on: models/gpt2, io/bpe.
 */
#ifndef HONE_GENERATE_H
#define HONE_GENERATE_H

int generate_main(int argc, char **argv);

#include "opt.h"
extern const opt_verb generate_verb;

#endif
