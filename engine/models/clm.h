/*
 * clm — a causal language model of any architecture hone has (GPT-2, the
 * Llama family) behind one set of calls, for what does not care which:
 * the trainer's language-model loop, perplexity, generation.
 *
 * A clm points at one model (g or l); clm_load_dir allocates it (clm_free
 * frees it), clm_of_gpt2 / clm_of_llama wrap one the caller owns (clm_free
 * then leaves it alone). Workspaces and caches wrap the architecture's own.
 */
#ifndef HONE_CLM_H
#define HONE_CLM_H

#include "../nn/ptune.h"
#include "gpt2.h"
#include "llama.h"

typedef struct clm {
	model_arch arch;
	gpt2 *g;
	llama *l;
	int owned;
	ptune *pt;   /* prompt tuning attached (clm_set_ptune), or NULL */
	int own_pt;  /* pt is the clm's (clm_load_dir found it) */
} clm;

clm clm_of_gpt2(gpt2 *g);
clm clm_of_llama(llama *l);
/* A folder's GPT-2 or Llama-family language model (a GPT-2 classifier is
 * refused: it has no LM head); BERT is an error saying so. A prompt-tuning
 * adapter in dir/adapter (what train writes, PEFT's PROMPT_TUNING) is
 * attached: its virtual tokens cannot be merged into the weights. */
int clm_load_dir(herr *e, clm *m, const char *dir);
void clm_free(clm *m);
int clm_save_dir(herr *e, const clm *m, const char *dir);
const char *clm_name(const clm *m); /* "GPT-2", "Llama", "Mistral", "Qwen2" */
int clm_vocab(const clm *m);
int clm_max_pos(const clm *m);
int clm_width(const clm *m);          /* n_embd / hidden_size */
size_t clm_nparams(const clm *m);
float *clm_params(const clm *m);
/* Sequences of T tokens can be trained on (Mistral's sliding window) */
int clm_check_len(herr *e, const clm *m, int T, const char *what);

/* Prompt tuning: the virtual tokens before every sequence (NULL: none).
 * Workspaces made after this are pt->n positions longer inside; the caller
 * keeps giving rows of T tokens (the targets of the virtual positions are
 * none: a row's first token stays context). */
void clm_set_ptune(clm *m, ptune *pt);
int clm_heads(const clm *m);
int clm_kv_heads(const clm *m); /* key/value heads (grouped-query: fewer than the heads) */
int clm_kv_width(const clm *m); /* their width: kv heads × head size */
int clm_layers(const clm *m);

/* LoRA: the architecture's sites, its default targets, attaching adapters */
void clm_lora_arch(const clm *m, lora_arch *a);
const char *const *clm_lora_default(const clm *m);
void clm_set_lora(clm *m, const lora *lo);
const lora *clm_lora(const clm *m);
void clm_lora_merge(const lora *lo, clm *m);
int clm_lora_load(herr *e, lora *lo, const clm *m, const char *dir);

typedef struct clm_ws clm_ws;
clm_ws *clm_ws_new_on(const clm *m, int B, int T, int threads, const struct nn_ops *ops);
void clm_ws_free(clm_ws *w);
double clm_forward(clm_ws *w, const uint32_t *ids, const int32_t *targets);
void clm_backward(clm_ws *w);
const float *clm_logits(const clm_ws *w);
float *clm_grad(clm_ws *w);
float *clm_lora_grad(clm_ws *w);
float *clm_ptune_grad(clm_ws *w);      /* prompt tuning: the virtual embeddings' gradient */
float *clm_ws_ptune_params(clm_ws *w); /* ... and the copy the workspace computes with */
float *clm_ws_params(clm_ws *w);
float *clm_ws_lora_params(clm_ws *w);
struct nn_ctx *clm_ws_nn(clm_ws *w);
void clm_ws_dropout(clm_ws *w, uint64_t seed);
size_t clm_ws_bytes(const clm_ws *w);

typedef struct clm_kv clm_kv;
clm_kv *clm_kv_new_on(const clm *m, const struct nn_ops *ops);
void clm_kv_free(clm_kv *kv);
void clm_kv_reset(clm_kv *kv);
int clm_kv_max(const clm_kv *kv); /* positions the cache holds */
int clm_kv_len(const clm_kv *kv); /* positions fed so far (the virtual tokens not counted) */
/* A GPT-2's own cache inside (NULL for another architecture): for callers
 * that batch GPT-2's decode steps themselves (hone serve) */
gpt2_kv *clm_kv_gpt2(clm_kv *kv);
int clm_step(clm_kv *kv, uint32_t id, float *logits);
int clm_prefill(clm_kv *kv, const uint32_t *ids, int n, float *logits);

#endif
