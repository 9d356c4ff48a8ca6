/*
 * gpt2 — the GPT-2 architecture in fp32 over OpenBLAS: token and position
 * embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a
 * GELU (tanh) MLP, a final LayerNorm, and the LM head tied to the token
 * embedding. Forward, loss (next-token cross-entropy) and backward for every
 * parameter.
 *
 * Parameters are one float array in Hugging Face's layout and names
 * (Conv1D weights stored [in, out]): "wte.weight", "wpe.weight",
 * "h.<l>.ln_1.weight", "h.<l>.attn.c_attn.weight", "h.<l>.attn.c_proj.weight",
 * "h.<l>.ln_2.weight", "h.<l>.mlp.c_fc.weight", "h.<l>.mlp.c_proj.weight"
 * (and .bias), "ln_f.weight"/".bias". Checkpoints may prefix them with
 * "transformer." (GPT2LMHeadModel); a separate "lm_head.weight" equal to
 * wte is accepted and ignored (the head is tied).
 *
 * Relies on: nn (the layers, through the backend seam), lora, safetensors, json.
 * Ownership: a model owns its parameters; activations and gradients live
 * in a gpt2_ws sized for a batch shape, allocated once.
 */
#ifndef HONE_GPT2_H
#define HONE_GPT2_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"
#include "../ml/safetensors.h"

typedef struct gpt2_config {
	int n_layer, n_head, n_embd, n_positions, vocab;
	float eps; /* layer_norm_epsilon */
	int ncls;  /* sequence classification (GPT2ForSequenceClassification): classes; 0 for a language model */
} gpt2_config;

#include "model.h"

typedef model_tensor gpt2_tensor;

#include "../nn/lora.h"

typedef struct gpt2 {
	gpt2_config cfg;
	float *p;
	size_t nparams;
	gpt2_tensor *t;
	size_t nt;
	const lora *lora;  /* adapters applied in forward/backward, or NULL */
	const struct ptune *ptune; /* prompt tuning: virtual tokens before every sequence (the ws is that much longer), or NULL */
	char **labels;                /* ncls class names (config.json id2label), owned */
} gpt2;

/* LoRA on GPT-2 (engine/nn/lora.h): the four sites of a block, in this
 * order (their bits in a target mask): attn.c_attn, attn.c_proj, mlp.c_fc,
 * mlp.c_proj; PEFT's names base_model.model.transformer.h.<l>.<site>. */
enum { LORA_C_ATTN = 1, LORA_ATTN_C_PROJ = 2, LORA_C_FC = 4, LORA_MLP_C_PROJ = 8 };
typedef lora gpt2_lora;
/* GPT-2's sites for m's sizes */
void gpt2_lora_arch(const gpt2 *m, lora_arch *a);

/* Adapters for the targets (a LORA_* mask): A uniform in ±1/sqrt(in) from
 * seed (PEFT's kaiming-uniform bound), B zero, so training starts at the base. */
void gpt2_lora_init(gpt2_lora *l, const gpt2 *m, int rank, float alpha, int targets, uint64_t seed);
void gpt2_lora_free(gpt2_lora *l);
/* Parses "c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", or "c_proj" (both
 * projections, as PEFT matches it); 0 if unknown. */
int gpt2_lora_target(const char *name);
/* W += scale · Aᵀ Bᵀ for every adapter (and the head copied back). */
void gpt2_lora_merge(const gpt2_lora *l, gpt2 *m);
/* For a classifier (m->cfg.ncls > 0): its score.weight joins the trained
 * parameters (a copy at the end of p); forward and backward use that copy. */
void gpt2_lora_add_head(gpt2_lora *l, const gpt2 *m);
/* The adapter in PEFT's layout: adapter_config.json +
 * adapter_model.safetensors (names base_model.model.transformer.h.<l>.<module>.lora_A.weight). */
int gpt2_lora_save(herr *e, const gpt2_lora *l, const char *dir);
/* Reads a PEFT LoRA adapter folder (adapter_config.json with peft_type LORA,
 * r, lora_alpha, target_modules, optional use_rslora; and
 * adapter_model.safetensors) for model m. DoRA, biases, per-module ranks,
 * unknown modules or tensors are errors naming the file and key. */
int gpt2_lora_load(herr *e, gpt2_lora *l, const gpt2 *m, const char *dir);


/* Reads config.json (n_layer, n_head, n_embd, n_positions, vocab_size,
 * layer_norm_epsilon; activation gelu_new). */
int gpt2_config_parse(herr *e, gpt2_config *c, const char *json, size_t n, const char *what);
/* Lays out (zeroed) parameters for a configuration. */
int gpt2_init(herr *e, gpt2 *m, const gpt2_config *c);
void gpt2_free(gpt2 *m);
/* Copies every parameter from a safetensors file (F32), checking names and
 * shapes; unknown tensors other than attention mask buffers and a tied
 * lm_head are errors. */
int gpt2_load_weights(herr *e, gpt2 *m, const st_file *f, const char *what);
/* Loads a Hugging Face folder: config.json + model.safetensors, or the
 * shards listed in model.safetensors.index.json. */
int gpt2_load_dir(herr *e, gpt2 *m, const char *dir);
/* The parameters as safetensors entries with HF names (no prefix). */
void gpt2_tensors(const gpt2 *m, st_writer *w, const float *base);
/* config.json for c (Hugging Face's GPT2Config fields). */
void gpt2_config_json(const gpt2_config *c, const char *const *labels, buf *out);
/* Writes config.json and model.safetensors (weights from base, or m->p
 * when base is NULL) into dir, which must exist. */
int gpt2_save_dir(herr *e, const gpt2 *m, const float *base, const char *dir);
/* GPT-2's initialization (as transformers does it): weights N(0, 0.02),
 * residual projections N(0, 0.02/sqrt(2·n_layer)), biases 0, LayerNorm 1/0. */
void gpt2_init_random(gpt2 *m, uint64_t seed);

/* The tensor called name (HF name, no prefix), or NULL. */
const gpt2_tensor *gpt2_find(const gpt2 *m, const char *name);

typedef struct gpt2_ws gpt2_ws;
gpt2_ws *gpt2_ws_new(const gpt2 *m, int B, int T, int threads);
/* The same on backend ops (nn_backend): activations, gradients and a copy
 * of the parameters (and of the adapters) live on its device, and
 * gpt2_grad, gpt2_lora_grad, gpt2_logits, gpt2_ws_params and
 * gpt2_ws_lora_params point there. NULL for a classifier, which the device
 * path does not run yet. */
struct nn_ops;
gpt2_ws *gpt2_ws_new_on(const gpt2 *m, int B, int T, int threads, const struct nn_ops *ops);
/* The parameters the workspace computes with: m->p on the CPU, else the
 * device copy (which the trainer updates; nn_download it back into m->p). */
float *gpt2_ws_params(gpt2_ws *w, const gpt2 *m);
/* The adapters' parameters it computes with (m->lora's, or their copy) */
float *gpt2_ws_lora_params(gpt2_ws *w, const gpt2 *m);
struct nn_ctx;
struct nn_ctx *gpt2_ws_nn(gpt2_ws *w);
void gpt2_ws_free(gpt2_ws *w);
/* Bytes the workspace holds: activations, gradients (the model's, and the
 * adapters'), backward scratch. */
size_t gpt2_ws_bytes(const gpt2_ws *w);
/* LoRA dropout for the next forward and backward: masks drawn from seed
 * (nonzero; the same seed, the same masks); 0 turns it off (evaluation). */
void gpt2_ws_dropout(gpt2_ws *w, uint64_t seed);
/* Forward over ids[B·T]; with targets (B·T ids, -1 = ignore) returns the
 * mean cross-entropy, else 0. Logits (B·T·vocab) are kept in the ws. */
double gpt2_forward(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int32_t *targets);
const float *gpt2_logits(const gpt2_ws *w);
/* Backward of the last forward (with targets): adds into the gradients. */
void gpt2_backward(const gpt2 *m, gpt2_ws *w);
/* The model's gradients; NULL for a ws made with adapters (m->lora set):
 * the base is frozen, and no gradient of it is kept. */
float *gpt2_grad(gpt2_ws *w);
/* Gradients of the adapters (after a backward with m->lora set when the ws
 * was made). */
float *gpt2_lora_grad(gpt2_ws *w);
/* Prompt tuning (m->ptune when the ws was made): the virtual embeddings
 * the ws computes with, and their gradient */
float *gpt2_ws_ptune_params(gpt2_ws *w);
float *gpt2_ptune_grad(gpt2_ws *w);

/* Sequence classification (Hugging Face's GPT2ForSequenceClassification):
 * "score.weight" [ncls, n_embd], no bias, applied to the final LayerNorm's
 * output at each row's last token. */
/* Turns a language model into a classifier of labels[0..ncls): adds
 * score.weight, N(0, 0.02) from seed (labels are copied). */
void gpt2_add_classifier(gpt2 *m, int ncls, const char *const *labels, uint64_t seed);
/* Forward for a batch: last[b] the index of row b's last token; with labels
 * (class index, -1: none), the mean cross-entropy, ready for backward.
 * Class probabilities: gpt2_cls_probs (B × ncls). */
double gpt2_forward_cls(const gpt2 *m, gpt2_ws *w, const uint32_t *ids, const int *last, const int32_t *labels);
const float *gpt2_cls_probs(const gpt2_ws *w);
/* The last classification forward's logits (B × ncls) */
const float *gpt2_cls_logits(const gpt2_ws *w);

/* Generation, one token at a time with a key/value cache. */
typedef struct gpt2_kv gpt2_kv;
gpt2_kv *gpt2_kv_new(const gpt2 *m);
/* The same on backend ops: the cache, the activations and a copy of the
 * parameters on its device (the model must not change while it lives). */
gpt2_kv *gpt2_kv_new_on(const gpt2 *m, const struct nn_ops *ops);
void gpt2_kv_free(gpt2_kv *kv);
/* Decode steps from Q8_0 weights as they are (engine/nn/q8.h) instead of
 * the model's fp32 ones: w[4·l + k] layer l's attn.c_attn, attn.c_proj,
 * mlp.c_fc, mlp.c_proj and w[4·n_layer] the head, each as ggml's rows of
 * outputs (a GGUF file's Q8_0 tensors; they must outlive kv), products
 * split over the cache's threads (default_threads). The prefill stays
 * fp32. CPU caches only; -1 when the sizes are not whole blocks. */
int gpt2_kv_q8(gpt2_kv *kv, const gpt2 *m, const uint8_t *const *w);
/* Empties the cache for a new prompt. */
void gpt2_kv_reset(gpt2_kv *kv);
/* Tokens fed so far. */
int gpt2_kv_len(const gpt2_kv *kv);
/* Feeds id at the next position and writes the next-token logits (vocab
 * floats); -1 when the context (n_positions) is full. */
int gpt2_step(const gpt2 *m, gpt2_kv *kv, uint32_t id, float *logits);
/* Feeds n ids and writes the logits after the last; into an empty cache in
 * one batched forward (the same values as n steps, to rounding). -1 if they
 * do not fit. The model must have no adapters attached (merge them). */
int gpt2_prefill(const gpt2 *m, gpt2_kv *kv, const uint32_t *ids, int n, float *logits);

/* Batched decoding (continuous batching in hone serve): one step feeds one
 * token to each of n sequences, each with its own cache, doing the linear
 * layers as one product over the n rows. A gpt2_dec holds the activations
 * for up to nmax rows (CPU; threads for the products). */
typedef struct gpt2_dec gpt2_dec;
gpt2_dec *gpt2_dec_new(const gpt2 *m, int nmax, int threads);
void gpt2_dec_free(gpt2_dec *d);
/* Feeds ids[i] at the next position of kv[i] (CPU caches; no adapters
 * attached) for i < n <= nmax and writes each one's next-token logits
 * (n × vocab floats, row i for kv[i]): gpt2_step's values per sequence, to
 * rounding. -1 (nothing fed) when a cache is full or n is out of range. */
int gpt2_step_batch(const gpt2 *m, gpt2_dec *d, gpt2_kv *const *kv, const uint32_t *ids, int n, float *logits);

typedef struct gpt2_sampler {
	float temperature; /* 0: greedy */
	int top_k;         /* 0: all */
	float top_p;       /* 1: all */
	uint64_t state;    /* the seed, advanced as it draws */
} gpt2_sampler;
/* Picks the next id from logits (modified in place). */
uint32_t gpt2_sample(gpt2_sampler *s, float *logits, int vocab);

struct bundle;
/* The GPT-2 in an export bundle (its config.json and model.safetensors;
 * path names it in errors). A classifier's bundle is refused. */
int gpt2_load_bundle(herr *e, gpt2 *m, const struct bundle *bd, const char *path);

#endif
