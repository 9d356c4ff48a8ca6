/*
 * model — what every architecture in engine/models/ shares: the table of
 * named tensors over one parameter arena (Hugging Face's names and
 * shapes), reading a checkpoint folder (model.safetensors or the shards of
 * model.safetensors.index.json), and the registry that tells from a
 * config.json which architecture a folder holds.
 *
 * Ownership: a model_tensor table belongs to its model; model_load_dir
 * hands each safetensors file to the caller and frees it after.
 */
#ifndef HONE_MODEL_H
#define HONE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../ml/safetensors.h"
#include "../util.h"

typedef struct model_tensor {
	char name[80];
	size_t off, n;  /* in the arena, floats */
	int ndim;
	int64_t shape[2];
} model_tensor;

/* Appends a tensor of shape [d0] (d1 0) or [d0, d1] at *at (advanced). */
void model_add_tensor(model_tensor *t, size_t *nt, size_t *at, const char *name, int64_t d0, int64_t d1);
/* The tensor called name, or NULL. */
const model_tensor *model_find(const model_tensor *t, size_t nt, const char *name);

/* Calls take(ud, e, f, path) for model.safetensors in dir, or for each shard
 * listed once in model.safetensors.index.json's weight_map (names checked
 * to be files in dir). An error if neither exists. */
int model_load_dir(herr *e, const char *dir, int (*take)(void *ud, herr *e, const st_file *f, const char *path), void *ud);

/* The architectures hone has. */
typedef enum { ARCH_GPT2 = 1, ARCH_BERT = 2, ARCH_LLAMA = 3 } model_arch;
/* "GPT-2", "BERT", "Llama" */
const char *model_arch_name(model_arch a);
/* The architecture of a config.json (model_type, else architectures);
 * unknown or missing: an error naming it and listing the supported ones. */
int model_detect(herr *e, const char *json, size_t n, const char *what, model_arch *arch);
/* model_detect on dir/config.json */
int model_detect_dir(herr *e, const char *dir, model_arch *arch);

/* config.json's id2label ({"0": name, ...}, every id below count once,
 * string names) into *labels (count names and a NULL; a missing id named
 * LABEL_<id> as transformers does); what names the file in errors. */
int model_read_labels(herr *e, const char *json, size_t n, const char *what, int count, char ***labels);
/* The "id2label" and "label2id" lines of a config.json */
void model_labels_json(buf *out, char *const *labels, int count);

/* A model's tensors as LoRA sees them: the arena, the table, the name of
 * an adapted weight (a format taking the layer and the site's short name,
 * e.g. "h.%d.%s.weight") and the prefix of the tensors a saved module may
 * replace ("score.", "classifier."). */
struct lora;
struct lora_arch;
typedef struct model_view {
	float *p;
	const model_tensor *t;
	size_t nt;
	const char *weight_fmt;
	const char *saved_prefix;
} model_view;
/* W += the adapters (and the saved modules copied back) */
void model_lora_merge(const struct lora *l, const model_view *v);
/* A PEFT folder for this model (engine/nn/lora.h: lora_load) */
int model_lora_load(herr *e, struct lora *l, const struct lora_arch *a, const char *dir, const model_view *v);

/* A prompt of n ids for a one-forward prefill: the workspace's length (a
 * power of two from 16, at most maxt, so that workspaces are reused across
 * prompts of similar length; causal attention keeps the padding out of the
 * first n positions) and the ids padded with 0 to it (caller frees) */
int model_prefill_len(int n, int maxt);
uint32_t *model_prefill_ids(const uint32_t *ids, int n, int T);

/* Box-Muller normal draws over a 64-bit LCG: the initializers' source */
double model_normal(uint64_t *s);

#endif
