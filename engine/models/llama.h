/*
 * llama — the Llama family of decoders (Hugging Face's LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM) on the layer library: token
 * embeddings, pre-RMSNorm blocks of causal self-attention with rotary
 * position embeddings (rotate_half layout) and grouped-query heads, a
 * SwiGLU MLP, a final RMSNorm and the LM head (tied or untied, as the
 * config says). Forward, loss (next-token cross-entropy), backward for
 * every parameter, LoRA on the seven projections, and generation with a
 * key/value cache.
 *
 * Parameters are one float array with Hugging Face's names
 * ("model.embed_tokens.weight", "model.layers.<l>.self_attn.q_proj.weight",
 * ..., "model.norm.weight", "lm_head.weight") and nn.Linear's [out, in]
 * layout. A block's q, k and v projections are laid out one after the
 * other (and so are their biases, and gate and up), so that each group is
 * one product.
 *
 * Relies on: nn (the layers, through the backend seam), lora, safetensors,
 * json. Ownership: a model owns its parameters and the config.json it was
 * read from (saved back as it was, with the weights in the dtype they came
 * in); activations and gradients live in a llama_ws for one batch shape.
 */
#ifndef HONE_LLAMA_H
#define HONE_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "../ml/safetensors.h"
#include "../nn/lora.h"
#include "../util.h"
#include "model.h"

enum { ROPE_DEFAULT = 0, ROPE_LINEAR = 1, ROPE_LLAMA3 = 2 };

typedef struct llama_config {
	int n_layer, hidden, inter, n_head, n_kv, head_dim, max_pos, vocab;
	float eps;            /* rms_norm_eps */
	double theta;         /* rope_theta */
	int rope_type;        /* ROPE_*: rope_scaling's (or rope_parameters') type */
	double rope_factor, low_freq, high_freq; /* linear and llama3 scaling */
	int rope_orig_max;    /* llama3: original_max_position_embeddings */
	int qkv_bias, o_bias, mlp_bias;
	int tied;             /* tie_word_embeddings */
	int sliding_window;   /* Mistral's (0: none): sequences may not be longer */
	char family[16];      /* "llama", "mistral", "qwen2" */
} llama_config;

typedef struct llama {
	llama_config cfg;
	float *p;
	size_t nparams;
	model_tensor *t;
	size_t nt;
	const lora *lora;  /* adapters applied in forward/backward, or NULL */
	const struct ptune *ptune; /* prompt tuning (engine/nn/ptune.h), or NULL */
	char *config_json; /* the config.json read (saved back unchanged), or NULL: written from cfg */
	st_dtype dtype;    /* the weights' dtype on disk, kept when saving */
} llama;

/* Reads config.json: the family's fields (hidden_act silu; rope_theta and
 * rope_scaling, or transformers' rope_parameters); what names it in errors. */
int llama_config_parse(herr *e, llama_config *c, const char *json, size_t n, const char *what);
/* Lays out (zeroed) parameters for a configuration. */
int llama_init(herr *e, llama *m, const llama_config *c);
void llama_free(llama *m);
/* Normal(0, 0.02) weights (transformers' initializer_range), RMSNorm 1, biases 0. */
void llama_init_random(llama *m, uint64_t seed);
/* A Hugging Face folder: config.json + model.safetensors, or the shards of
 * model.safetensors.index.json; F32, F16 or BF16 weights. */
int llama_load_dir(herr *e, llama *m, const char *dir);
/* config.json and model.safetensors into dir (which must exist); weights
 * from base, or m->p when base is NULL, in m->dtype. */
int llama_save_dir(herr *e, const llama *m, const float *base, const char *dir);
/* config.json for m's configuration (when it has no file of its own) */
void llama_config_json(const llama_config *c, buf *out);
const model_tensor *llama_find(const llama *m, const char *name);
/* Mistral's sliding window: sequences of T tokens must fit in it (hone's
 * attention has no window); an error naming the limit otherwise. */
int llama_check_len(herr *e, const llama *m, int T, const char *what);

/* The cosines and sines rope reads (nn.h), [P, head_dim]: per position
 * the head_dim/2 cosines, then the sines, of position · inv_freq. */
void llama_rope_table(const llama_config *c, int P, float *cs);

/* LoRA: the seven projections of a block, in this order: q_proj, k_proj,
 * v_proj, o_proj, gate_proj, up_proj, down_proj (PEFT's names
 * base_model.model.model.layers.<l>.self_attn.q_proj, ...). */
void llama_lora_arch(const llama *m, lora_arch *a);
void llama_lora_merge(const lora *l, llama *m);
int llama_lora_load(herr *e, lora *l, const llama *m, const char *dir);

typedef struct llama_ws llama_ws;
struct nn_ops;
struct nn_ctx;
/* Activations and gradients for batches of B rows of T tokens, on backend
 * ops (the CPU's: nn_cpu); on a device, a copy of the parameters too. */
llama_ws *llama_ws_new_on(const llama *m, int B, int T, int threads, const struct nn_ops *ops);
void llama_ws_free(llama_ws *w);
size_t llama_ws_bytes(const llama_ws *w);
struct nn_ctx *llama_ws_nn(llama_ws *w);
float *llama_ws_params(llama_ws *w, const llama *m);
float *llama_ws_lora_params(llama_ws *w, const llama *m);
void llama_ws_dropout(llama_ws *w, uint64_t seed);
/* Forward over ids[B·T]; with targets (-1 ignored) the mean cross-entropy. */
double llama_forward(const llama *m, llama_ws *w, const uint32_t *ids, const int32_t *targets);
const float *llama_logits(const llama_ws *w);
void llama_backward(const llama *m, llama_ws *w);
float *llama_grad(llama_ws *w);      /* NULL with adapters: the base is frozen */
float *llama_lora_grad(llama_ws *w);
float *llama_ws_ptune_params(llama_ws *w); /* prompt tuning: the virtual embeddings used, their gradient */
float *llama_ptune_grad(llama_ws *w);

/* Generation with a key/value cache of ctx positions (0: the model's
 * max_position_embeddings, at most 4096). */
typedef struct llama_kv llama_kv;
llama_kv *llama_kv_new_on(const llama *m, const struct nn_ops *ops, int ctx);
void llama_kv_free(llama_kv *kv);
void llama_kv_reset(llama_kv *kv);
int llama_kv_len(const llama_kv *kv);
int llama_kv_max(const llama_kv *kv);
/* Feeds id at the next position; the next-token logits (vocab floats). -1: full. */
int llama_step(const llama *m, llama_kv *kv, uint32_t id, float *logits);
/* Feeds n ids (one batched forward into an empty cache); logits after the
 * last. Generation runs the model as it is: merge adapters first. */
int llama_prefill(const llama *m, llama_kv *kv, const uint32_t *ids, int n, float *logits);

#endif
