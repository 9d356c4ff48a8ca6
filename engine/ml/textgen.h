/*
 * textgen — continuing a prompt with a causal language model (GPT-2, Llama) and a BPE tokenizer: the KV
 * cache, the sampler, stop texts and <|endoftext|>; shared by `hone
 * generate` and the generate stage. And the scores of generated text
 * against a reference: exact match and ROUGE-L.
 *
 * Relies on: clm, io/bpe.
 * Ownership: the caller owns the model, tokenizer and cache; text goes into
 * the caller's buf.
 */
#ifndef HONE_TEXTGEN_H
#define HONE_TEXTGEN_H

#include <stdio.h>
#include "../io/bpe.h"
#include "../models/clm.h"

typedef struct textgen {
	const clm *m;
	const bpe *b;
	clm_kv *kv;
	float *logits;
	int64_t eos;       /* <|endoftext|>, or -1 */
	gpt2_sampler smp;
	int max_tokens;
	const char *const *stops;
	int nstop;
} textgen;

/* ops: the backend the model runs on (NULL: the CPU) */
void textgen_init(textgen *g, const clm *m, const bpe *b, const struct nn_ops *ops);
void textgen_free(textgen *g);
/* Feeds ids[0..n) from an empty cache and appends the continuation to out
 * (cut before a stop text). With stream, prints it as it comes, holding back
 * what may still become a stop text. Returns the tokens made; *why says what
 * stopped it; *prompt_s the seconds spent on the prompt. */
int textgen_run(textgen *g, const uint32_t *ids, size_t n, buf *out, FILE *stream, const char **why, double *prompt_s);

/* ROUGE-L F1 of cand against ref over lowercase alphanumeric words (as
 * rouge_score's default tokenizer, without stemming); 1 when both are empty. */
double rouge_l(const char *cand, size_t nc, const char *ref, size_t nr);
/* 1 when the texts are equal after trimming whitespace at both ends. */
int exact_match(const char *a, size_t na, const char *b, size_t nb);

#endif
