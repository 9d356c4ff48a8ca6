/*
 * bert — BERT (Devlin et al. 2019) in Hugging Face's layout and names, as a
 * composition of the layers in engine/nn: word + position + token-type
 * embeddings and a LayerNorm; post-LayerNorm blocks of bidirectional
 * multi-head self-attention (padding mask) and a GELU MLP (exact erf GELU
 * for hidden_act "gelu", the tanh form for "gelu_new"); then one head:
 *
 *   BERT_SEQCLS  BertForSequenceClassification: pooler (dense + tanh on
 *                [CLS]) + classifier; single-label cross-entropy, multi-label
 *                BCE, or regression (MSE, num_labels 1), as transformers
 *                decides from num_labels and problem_type
 *   BERT_TOKCLS  BertForTokenClassification: classifier on every token
 *   BERT_MLM     BertForMaskedLM: transform (dense + GELU + LayerNorm) and
 *                the decoder tied to the word embeddings, plus its bias
 *   BERT_BASE    BertModel (with its pooler): no head, no loss
 *
 * Tensors are named as transformers saves them ("bert.embeddings...",
 * "bert.encoder.layer.<l>.attention.self.query.weight", "bert.pooler...",
 * "classifier.weight", "cls.predictions..."); a checkpoint of BertModel
 * (no "bert." prefix) loads too. Linear weights are [out, in]. In the arena
 * each block's query, key and value weights (then their biases) lie side
 * by side, so that one product makes the packed q | k | v the attention
 * layer takes.
 *
 * Relies on: nn (layers), lora, model (tensor table, checkpoint folders).
 * Ownership: a bert owns its parameters and labels; a bert_ws (per batch
 * shape) its activations and gradients.
 */
#ifndef HONE_BERT_H
#define HONE_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "../nn/lora.h"
#include "model.h"

enum { BERT_BASE = 0, BERT_SEQCLS = 1, BERT_TOKCLS = 2, BERT_MLM = 3 };
enum { BERT_SINGLE = 0, BERT_MULTI = 1, BERT_REGRESSION = 2 };

typedef struct bert_config {
	int n_layer, n_head, hidden, inter, max_pos, type_vocab, vocab;
	float eps;            /* layer_norm_eps */
	int act;              /* NN_GELU_ERF ("gelu") or NN_GELU_TANH ("gelu_new") */
	int head;             /* BERT_* */
	int nlabels;          /* classifier outputs */
	int problem;          /* BERT_SINGLE | BERT_MULTI | BERT_REGRESSION (sequence classification) */
	int pad_id;
	float dropout;        /* hidden_dropout_prob, applied while training (bert_ws_dropout) */
} bert_config;

typedef struct bert {
	bert_config cfg;
	float *p;
	size_t nparams;
	model_tensor *t;
	size_t nt;
	const lora *lora;     /* adapters, or NULL */
	char **labels;        /* nlabels names (id2label), owned */
} bert;

/* Reads config.json (what names it in errors). */
int bert_config_parse(herr *e, bert_config *c, const char *json, size_t n, const char *what);
/* Lays out zeroed parameters for c. */
int bert_init(herr *e, bert *m, const bert_config *c);
void bert_free(bert *m);
/* Weights N(0, 0.02), biases 0, LayerNorm 1/0 (transformers' init), from seed. */
void bert_init_random(bert *m, uint64_t seed);
const model_tensor *bert_find(const bert *m, const char *name);
/* Loads a Hugging Face folder (config.json + model.safetensors or shards);
 * every tensor must be there and none be left over (a tied decoder equal to
 * the word embeddings excepted). */
int bert_load_dir(herr *e, bert *m, const char *dir);
/* config.json and model.safetensors into dir (weights from base, or m->p). */
int bert_save_dir(herr *e, const bert *m, const float *base, const char *dir);
void bert_config_json(const bert *m, buf *out);
/* Replaces the head (the encoder kept): a new classifier (and pooler, for
 * sequence classification, when there is none) drawn from seed, labels
 * copied; or the MLM head. */
void bert_set_head(bert *m, int head, int nlabels, const char *const *labels, int problem, uint64_t seed);

/* LoRA sites: attention.self.query, .key, .value, attention.output.dense,
 * intermediate.dense, output.dense (PEFT's names under bert.encoder.layer.<l>). */
void bert_lora_arch(const bert *m, lora_arch *a);
/* The head's tensors as PEFT's modules_to_save (classifier), task type set */
void bert_lora_add_head(lora *l, const bert *m);
void bert_lora_merge(const lora *l, bert *m);
int bert_lora_load(herr *e, lora *l, const bert *m, const char *dir);

typedef struct bert_ws bert_ws;
bert_ws *bert_ws_new(const bert *m, int B, int T, int threads);
/* The same on backend ops (nn_backend): activations, gradients and a copy
 * of the parameters (and of the adapters) on its device; bert_grad,
 * bert_lora_grad, bert_ws_params and bert_ws_lora_params point there, and
 * bert_logits / bert_hidden bring their values back to the host. */
struct nn_ops;
bert_ws *bert_ws_new_on(const bert *m, int B, int T, int threads, const struct nn_ops *ops);
/* The parameters the workspace computes with (m->p, or the device's copy),
 * the adapters' (NULL without), and its context */
float *bert_ws_params(bert_ws *w, const bert *m);
float *bert_ws_lora_params(bert_ws *w, const bert *m);
struct nn_ctx;
struct nn_ctx *bert_ws_nn(bert_ws *w);
void bert_ws_free(bert_ws *w);
size_t bert_ws_bytes(const bert_ws *w);
/* Dropout (hidden_dropout_prob) for the next forward and backward, masks
 * from seed; 0 turns it off (evaluation). */
void bert_ws_dropout(bert_ws *w, uint64_t seed);

/* Dropout for the next forward and backward (hidden_dropout_prob, as
 * transformers applies it: after the embeddings' LayerNorm, on each
 * block's attention-output and output dense layers before their residual
 * add, and on the classifier's input), masks from seed; 0 turns it off.
 * The workspace must have been made for a config with dropout > 0.
 * Attention probabilities are not dropped. */
void bert_ws_dropout(bert_ws *w, uint64_t seed);

/* Masked LM while training: the head (transform and decoder over the
 * vocabulary) only on the labelled rows, which is all the loss needs; the
 * logits are then those rows' (bert_mlm_rows of them), in order. Off:
 * every row's, as transformers computes them. */
void bert_ws_mlm_sparse(bert_ws *w, int on);
/* Sequence classification (and the bare model's pooler) read the last
 * layer only at each sequence's first token, [CLS]. On: the last layer
 * after its attention (dense, LayerNorms, feed-forward) runs on those B
 * rows alone, forward and backward, and bert_hidden's other rows of it are
 * not computed; the loss and gradients are the same up to summation order
 * (with dropout, the last layer's masks are other draws). Off (the
 * default): every row, as transformers computes them. No effect with LoRA
 * adapters or other heads. */
void bert_ws_cls_only(bert_ws *w, const bert *m, int on);
int bert_mlm_rows(const bert_ws *w);

/* One batch. ids, types (NULL: all 0), mask (NULL: all 1) are B·T. Labels:
 *   SEQCLS single: labels_i[b] (class, -1 none); multi: labels_f[b·K + k];
 *   regression: labels_f[b]; TOKCLS and MLM: labels_i[b·T + t] (-1/-100 none).
 * Returns the mean loss (0 without labels) and keeps the logits: SEQCLS
 * B × K, TOKCLS B·T × K, MLM B·T × V. */
typedef struct bert_batch {
	const uint32_t *ids, *types;
	const uint8_t *mask;
	const int32_t *labels_i;
	const float *labels_f;
} bert_batch;
double bert_forward(const bert *m, bert_ws *w, const bert_batch *b);
/* (host memory, also for a workspace on a device) */
const float *bert_logits(bert_ws *w);
/* The final hidden states, B·T × hidden (host memory) */
const float *bert_hidden(bert_ws *w);
/* Backward of the last forward with labels: adds into the gradients. */
void bert_backward(const bert *m, bert_ws *w);
/* Gradients of the parameters (NULL with adapters: the base is frozen) and
 * of the adapters. */
float *bert_grad(bert_ws *w);
float *bert_lora_grad(bert_ws *w);

#endif
