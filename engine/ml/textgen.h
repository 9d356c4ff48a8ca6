/*
 * textgen — continuing a prompt with a causal language model (GPT-2, Llama) and a BPE tokenizer: the KV
 * cache, the sampler, stop texts and <|endoftext|>; shared by `hone
 * generate` and the generate stage. And the scores of generated text
 * against a reference: exact match and ROUGE-L.
 *
 * Relies on: clm, io/bpe (and bundle, deploy for textgen_load).
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
	/* the continuation under way (textgen_begin, textgen_take) */
	int made;          /* tokens taken */
	size_t start, keep; /* where it starts in out; the longest stop text */
	const char *why;   /* what ended it */
	buf piece;
} textgen;

/* ops: the backend the model runs on (NULL: the CPU) */
void textgen_init(textgen *g, const clm *m, const bpe *b, const struct nn_ops *ops);
void textgen_free(textgen *g);
/* Feeds ids[0..n) from an empty cache and appends the continuation to out
 * (cut before a stop text). With stream, prints it as it comes, holding back
 * what may still become a stop text. Returns the tokens made; *why says what
 * stopped it; *prompt_s the seconds spent on the prompt. */
int textgen_run(textgen *g, const uint32_t *ids, size_t n, buf *out, FILE *stream, const char **why, double *prompt_s);

/* The same, a step at a time, for callers that feed the tokens themselves
 * (hone serve, a batch of sequences per step):
 * textgen_begin feeds ids[0..n) into the emptied cache (g->logits then holds
 * the next token's logits) and returns 1, or 0 when nothing can follow (an
 * empty prompt, or one that fills the context; g->why says which).
 * textgen_take picks a token from g->logits and appends its text to out; 1:
 * feed *id (clm_step, or gpt2_step_batch into g->logits) and take again; 0:
 * the continuation has ended (the end token, a stop text, whose start is cut
 * from out, or max_tokens), g->why says why.
 * textgen_final: how many bytes of out (counted from its start when begun)
 * are final: not what may still become a stop text, nor a UTF-8 character
 * that is not complete yet (all of them once ended is 1). */
int textgen_begin(textgen *g, const uint32_t *ids, size_t n, buf *out);
int textgen_take(textgen *g, buf *out, uint32_t *id);
size_t textgen_final(const textgen *g, const buf *out, int ended);

/* A tokenizer folder (encoder.json + vocab.bpe) or a tokenizer.json file. */
int textgen_load_tokenizer(herr *e, const char *path, bpe **b);
/* A GPT-2 language model and its tokenizer, as hone generate takes them:
 * model a Hugging Face folder, an export bundle (.tar.gz; its tokenizer.json
 * unless *b is already loaded) or a gpt2 .gguf file (dequantized, with its
 * own tokenizer unless *b is loaded). A classifier, or a tokenizer larger
 * than the model's vocabulary, is an error naming tok (the tokenizer's path
 * for messages; NULL: model). On success the caller frees m (gpt2_free) and
 * *b; on failure nothing is left to free but a *b it loaded itself. */
int textgen_load(herr *e, const char *model, const char *tok, gpt2 *m, bpe **b);

/* ROUGE-L F1 of cand against ref over lowercase alphanumeric words (as
 * rouge_score's default tokenizer, without stemming); 1 when both are empty. */
double rouge_l(const char *cand, size_t nc, const char *ref, size_t nr);
/* 1 when the texts are equal after trimming whitespace at both ends. */
int exact_match(const char *a, size_t na, const char *b, size_t nb);

#endif
