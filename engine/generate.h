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
/* `hone quantize MODEL --to TYPE -o FILE.gguf`: a GPT-2 as GGUF for llama.cpp */
int quantize_main(int argc, char **argv);

#include "opt.h"
extern const opt_verb generate_verb, quantize_verb;

#endif
