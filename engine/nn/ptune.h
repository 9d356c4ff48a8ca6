/*
 * ptune — prompt tuning (PEFT's PROMPT_TUNING, Lester et al. 2021) and
 * prefix tuning (PREFIX_TUNING, Li and Liang 2021). Prompt tuning: n
 * learned virtual token embeddings put before every sequence, the model
 * itself frozen. Written once for every architecture: a model holding a
 * ptune builds its workspaces n positions longer, and its forward puts the
 * virtual embeddings in the first n rows of each sequence in place of the
 * token embeddings (GPT-2 then adds position embeddings to all rows, as
 * transformers does with inputs_embeds); backward gathers those rows'
 * gradients, summed over the batch in order.
 *
 * Prefix tuning: n learned keys and values per layer that every query
 * sees before the tokens (transformers' past_key_values; the tokens'
 * positions start after them, the prefix keys are not rotated). The
 * workspace is n positions longer here too, and each layer's q | k | v
 * rows of those positions are overwritten with the layer's prefix (after
 * rotary embeddings); their gradients are gathered before backward goes on.
 *
 * The adapter in PEFT's layout: adapter_config.json (peft_type
 * PROMPT_TUNING or PREFIX_TUNING, num_virtual_tokens, token_dim, ...) and
 * adapter_model.safetensors with "prompt_embeddings": [n, dim], or for a
 * prefix [n, layers · 2 · kv], per virtual token each layer's key then
 * value (kv = key/value heads × head size: token_dim and the heads as PEFT
 * sets them for grouped-query models).
 *
 * Ownership: a ptune owns its parameters p (host memory); a model's
 * workspace keeps the device copy and the gradient.
 */
#ifndef HONE_PTUNE_H
#define HONE_PTUNE_H

#include <stddef.h>
#include <stdint.h>

#include "../util.h"
#include "nn.h"

enum { PT_PROMPT = 0, PT_PREFIX = 1 };

typedef struct ptune {
	int kind;          /* PT_PROMPT or PT_PREFIX */
	int n, dim;        /* virtual tokens; prompt: the embedding width, prefix: kv (a key's or value's width) */
	float *p;          /* n × dim, or n × layers × 2 × dim */
	size_t np;
	int layers, heads; /* the model's (prefix: key/value heads), for the adapter's config */
} ptune;

/* n virtual tokens of dim, N(0, 1) from seed (PEFT's RANDOM init: an
 * nn.Embedding's) */
void ptune_init(ptune *pt, int n, int dim, int layers, int heads, uint64_t seed);
/* A prefix of n virtual tokens for layers of kv-wide keys and values
 * (heads: the key/value heads), N(0, 1) from seed */
void ptune_init_prefix(ptune *pt, int n, int kv, int layers, int heads, uint64_t seed);
void ptune_free(ptune *pt);
int ptune_save(herr *e, const ptune *pt, const char *dir);
/* A PEFT PROMPT_TUNING folder for a model of width dim, or PREFIX_TUNING
 * for its layers of kv-wide keys and values; other PEFT types are errors
 * (-2 when the folder is a LoRA adapter, so callers can tell) */
int ptune_load(herr *e, ptune *pt, const char *dir, int dim, int kv, int layers, int heads, int kv_heads);
/* Whether dir holds a PEFT adapter_config.json of peft_type PROMPT_TUNING or PREFIX_TUNING */
int ptune_is_dir(const char *dir);

/* A workspace's share: *p the virtual embeddings on backend c (a copy on
 * a device, pt->p itself on the host; *own says which), *g their gradient
 * (zeroed); the bytes taken added to *bytes */
void ptune_ws_new(nn_ctx *c, const ptune *pt, float **p, float **g, int *own, size_t *bytes);
void ptune_ws_free(nn_ctx *c, float *p, float *g, int own);

/* x [B·T, dim]: rows 0..n-1 of each sequence of T become the virtual
 * embeddings p (backend memory) */
void ptune_forward(nn_ctx *c, const float *p, const ptune *pt, float *x, int B, int T);
/* g (backend memory, n × dim) += those rows of dx, sequence by sequence */
void ptune_backward(nn_ctx *c, float *g, const ptune *pt, const float *dx, int B, int T);
/* Prefix: in rows 0..n-1 of each sequence of qkv (rows ld floats apart),
 * the key at koff and the value at voff become layer's prefix */
void prefix_forward(nn_ctx *c, const float *p, const ptune *pt, int layer, float *qkv, int B, int T, int ld, int koff,
                    int voff);
/* g += those rows' key and value gradients in dqkv, which are then zeroed */
void prefix_backward(nn_ctx *c, float *g, const ptune *pt, int layer, float *dqkv, int B, int T, int ld, int koff,
                     int voff);

#endif
