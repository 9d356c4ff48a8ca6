/*
 * lora — low-rank adapters on any linear layer of any architecture, by the
 * names PEFT gives them, written once.
 *
 * An architecture declares its adaptable linears as a table of sites
 * (lora_arch): each a module path with %d for the layer ("transformer.h.%d.
 * attn.c_attn", "bert.encoder.layer.%d.attention.self.query"), its short
 * name ("attn.c_attn", "attention.self.query"), and in/out sizes. A target
 * name selects every site whose short name is it or ends in "." + it, as
 * PEFT matches target_modules: "c_proj" is both of GPT-2's projections,
 * "dense" BERT's three dense layers per block.
 *
 * For an adapted W: y += scale · (x Aᵀ) Bᵀ with A [rank, in], B [out, rank]
 * (PEFT's lora_A / lora_B weights), scale = alpha / rank (alpha / sqrt(rank)
 * with rsLoRA). With adapters the base is frozen: only A, B and the saved
 * modules (PEFT's modules_to_save: a classifier's head, trained in full and
 * kept as a copy at the end of p) have gradients.
 *
 * Ownership: a lora owns its parameters p (host memory); a lora_ws (per
 * batch shape) owns the adapter activations, scratch and gradients,
 * allocated through the nn context, and on a device backend a copy of p
 * that the compute uses and the trainer updates (lora_ws_params).
 */
#ifndef HONE_LORA_H
#define HONE_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "../util.h"
#include "nn.h"

#define LORA_MAX_SITES 8
#define LORA_MAX_SAVED 4

typedef struct lora_site {
	const char *name; /* short name, as target_modules lists it */
	const char *path; /* module path for layer %d, without "base_model.model." */
	int in, out;
} lora_site;

typedef struct lora_arch {
	const char *arch;     /* "GPT-2", for messages */
	int n_layer, nsite;
	lora_site site[LORA_MAX_SITES];
	int fan_in_fan_out;   /* weights stored [in, out] (GPT-2's Conv1D) */
} lora_arch;

typedef struct lora_saved {
	char name[64];        /* the model's tensor, e.g. "score.weight" */
	char module[32];      /* its module for modules_to_save, e.g. "score" */
	size_t off, n;        /* in p */
	int ndim;
	int64_t shape[2];
} lora_saved;

typedef struct lora {
	lora_arch a;
	int rank;
	unsigned targets;     /* bit s: site s adapted in every layer */
	float alpha, scale;
	float dropout;        /* on the adapters' input while training (PEFT's lora_dropout); 0: none */
	float *p;             /* every A and B, then the saved modules */
	size_t n;
	size_t *off;          /* per (layer, site): A's offset; B follows A */
	const char *task_type; /* PEFT's: "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", ... */
	int nsaved;
	lora_saved saved[LORA_MAX_SAVED];
} lora;

/* The sites that target name selects (a bit mask); 0 if none. */
unsigned lora_target(const lora_arch *a, const char *name);
/* "c_attn, c_proj, ..." : the short names, for messages */
void lora_site_names(const lora_arch *a, buf *out);
/* Adapters on the targets: A uniform in ±1/sqrt(in) from seed (PEFT's
 * kaiming-uniform bound), B zero, so training starts at the base. */
void lora_init(lora *l, const lora_arch *a, int rank, float alpha, unsigned targets, uint64_t seed);
void lora_free(lora *l);
/* A module trained in full beside the adapters: its tensor (name, from the
 * model's values src) is copied to the end of p. */
void lora_add_saved(lora *l, const char *module, const char *name, const float *src, int ndim, const int64_t *shape);
/* The saved copy of the model's tensor name, or NULL. */
float *lora_saved_ptr(const lora *l, const char *name);
/* Adapter (layer, site): A; B follows at A + rank·in. NULL if not adapted. */
float *lora_A(const lora *l, int layer, int site);
/* W += scale · Aᵀ Bᵀ (as W is laid out) for every adapter, through
 * weight(ud, layer, site), which returns the model's W; saved modules are
 * copied back through saved(ud, name). */
void lora_merge(const lora *l, float *(*weight)(void *ud, int layer, int site), float *(*saved)(void *ud, const char *name),
                void *ud);
/* PEFT's layout: adapter_config.json + adapter_model.safetensors in dir. */
int lora_save(herr *e, const lora *l, const char *dir);
/* Reads a PEFT LoRA folder for architecture a. DoRA, biases, per-module
 * ranks, unknown modules or tensors are errors naming the file and key.
 * saved_shape(ud, module, name, shape) gives the shape of a saved module's
 * tensor ("score.weight") or returns 0 when the model has no such tensor. */
int lora_load(herr *e, lora *l, const lora_arch *a, const char *dir,
              int (*saved_shape)(void *ud, const char *name, int64_t *shape, int *ndim), void *ud);

/* --- compute -------------------------------------------------------------------- */

typedef struct lora_ws {
	int N, K;
	float **u;            /* per (layer, site): x Aᵀ, N × rank */
	float *du, *xd, *dxd; /* scratch: N × rank, N × max in (dropout) */
	float *g;             /* gradients of p */
	float *p;             /* the parameters on a device backend (NULL on the host: the lora's own) */
	uint64_t drop_seed;   /* dropout for the next forward and backward; 0: off */
	size_t bytes;
} lora_ws;

lora_ws *lora_ws_new(nn_ctx *c, const lora *l, int N);
/* The adapter parameters the compute uses: l->p on the host, else the copy */
float *lora_ws_params(lora_ws *w, const lora *l);
void lora_ws_free(nn_ctx *c, lora_ws *w);
/* y [N, out] (rows ldy apart) += the adapter's share for input x [N, in] */
void lora_forward(nn_ctx *c, lora_ws *w, const lora *l, int layer, int site, float *y, int ldy, const float *x);
/* Given dy (rows ldy apart): dA, dB accumulate; dx += the adapter's share */
void lora_backward(nn_ctx *c, lora_ws *w, const lora *l, int layer, int site, float *dx, const float *dy, int ldy,
                   const float *x);

#endif
