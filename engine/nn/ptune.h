/*
 * ptune — prompt tuning (PEFT's PROMPT_TUNING, Lester et al. 2021): n
 * learned virtual token embeddings put before every sequence, the model
 * itself frozen. Written once for every architecture: a model holding a
 * ptune builds its workspaces n positions longer, and its forward puts the
 * virtual embeddings in the first n rows of each sequence in place of the
 * token embeddings (GPT-2 then adds position embeddings to all rows, as
 * transformers does with inputs_embeds); backward gathers those rows'
 * gradients, summed over the batch in order.
 *
 * The adapter in PEFT's layout: adapter_config.json (peft_type
 * PROMPT_TUNING, num_virtual_tokens, token_dim, ...) and
 * adapter_model.safetensors with "prompt_embeddings" [n, dim].
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

typedef struct ptune {
	int n, dim;
	float *p; /* n × dim */
	size_t np;
	int layers, heads; /* the model's, for the adapter's config */
} ptune;

/* n virtual tokens of dim, N(0, 1) from seed (PEFT's RANDOM init: an
 * nn.Embedding's) */
void ptune_init(ptune *pt, int n, int dim, int layers, int heads, uint64_t seed);
void ptune_free(ptune *pt);
int ptune_save(herr *e, const ptune *pt, const char *dir);
/* A PEFT PROMPT_TUNING folder for a model of width dim; other PEFT types
 * are errors (-2 when the folder is a LoRA adapter, so callers can tell) */
int ptune_load(herr *e, ptune *pt, const char *dir, int dim, int layers, int heads);
/* Whether dir holds a PEFT adapter_config.json of peft_type PROMPT_TUNING */
int ptune_is_dir(const char *dir);

/* x [B·T, dim]: rows 0..n-1 of each sequence of T become the virtual
 * embeddings p (backend memory) */
void ptune_forward(nn_ctx *c, const float *p, const ptune *pt, float *x, int B, int T);
/* g (backend memory, n × dim) += those rows of dx, sequence by sequence */
void ptune_backward(nn_ctx *c, float *g, const ptune *pt, const float *dx, int B, int T);

#endif
