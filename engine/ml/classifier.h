/*
 * classifier — the Ludwig-style native model: input features encoded and
 * concatenated, an MLP, and an output head.
 *
 *   text      token embedding bag: the mean of the rows of its token ids,
 *             plus, with `buckets`, rows of hashed token bigrams (fastText)
 *   category  an embedding row per known value (row 0: unknown / null)
 *   number    standardized with the train split's mean and std (null: 0)
 *   binary    0 or 1 (null: 0)
 *   MLP       layers of Linear + activation (relu, gelu (tanh), tanh) +
 *             dropout; then a head: category (softmax), binary (sigmoid,
 *             threshold), number (regression on the standardized target)
 *
 * All parameters live in one float array (so the optimizer is one pass):
 * tables first, in feature order, then each layer's weight [out][in] and
 * bias, then the head's. Forward and backward take a batch of row indices
 * into a clf_data; everything they need is allocated once in a clf_ws.
 * Results never depend on the thread count.
 *
 * Relies on: blas (sgemm, one OpenBLAS thread: the matrices are small),
 * optim (par_run), safetensors, json.
 * Ownership: a model owns its features, labels and parameters; a clf_data
 * owns its columns, not the tokens it points to.
 */
#ifndef HONE_CLASSIFIER_H
#define HONE_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"
#include "safetensors.h"

#define CLF_MAX_LAYERS 8

typedef enum { FEAT_TEXT = 1, FEAT_CAT, FEAT_NUM, FEAT_BIN } feat_type;
typedef enum { ACT_RELU, ACT_GELU, ACT_TANH } act_type;
typedef enum { OUT_CAT = 1, OUT_BIN, OUT_NUM } out_type;

typedef struct clf_feat {
	char *name;        /* the input's name (for text: the field that was tokenized) */
	char *field;       /* dataset field it reads */
	feat_type type;
	int dim;           /* width in the combined vector */
	uint32_t vocab;    /* text: ids below vocab */
	uint32_t buckets;  /* text: hashed bigram rows (0: none) */
	char **labels;     /* category: known values, sorted; code = index + 1 */
	uint32_t nlabels;
	double mean, std;  /* number */
	size_t off, rows;  /* table (text, category) in the parameter array */
} clf_feat;

typedef struct clf_model {
	clf_feat *f;
	int nf;
	int nl;                      /* hidden layers */
	int hidden[CLF_MAX_LAYERS];
	act_type act;
	double dropout;
	out_type out;
	char *target;                /* output field */
	char **classes;              /* category / binary: class names (binary: [negative, positive]) */
	int ncls;
	double *prior;               /* category / binary: class frequencies in the train split */
	double threshold;            /* binary */
	double y_mean, y_std;        /* number */
	int D, O;                    /* combined width; head outputs (ncls, or 1) */
	size_t w_off[CLF_MAX_LAYERS + 1], b_off[CLF_MAX_LAYERS + 1];
	size_t nparams;
	float *p;
	/* how the text was tokenized (so `hone predict` encodes raw text the same way) */
	long long tok_max_len;       /* 0: no limit */
	int tok_left;                /* truncation keeps the end */
	long long tok_eos;           /* id appended to every row, or -1 */
} clf_model;

/* A column per feature, for n rows. */
typedef struct clf_col {
	uint64_t *off;   /* text: first id in tokens */
	uint32_t *len;   /* text: id count */
	uint32_t *code;  /* category: 0 unknown, else index + 1 */
	float *x;        /* number (standardized), binary */
} clf_col;

typedef struct clf_data {
	size_t n;
	const uint32_t *tokens;
	size_t ntokens;
	clf_col *col;    /* one per model feature */
	uint32_t *y;     /* category / binary target: class index */
	float *yv;       /* number target, standardized */
} clf_data;

void clf_data_free(clf_data *d, int nf);

/* Computes offsets and nparams from the features' dims/rows and the layers;
 * allocates p (zeroed). */
void clf_layout(clf_model *m);
/* Initializes the parameters from seed (PyTorch's defaults: Linear weights
 * and biases U(±1/sqrt(in)); tables N(0, 1/dim)). */
void clf_init(clf_model *m, uint64_t seed);
void clf_free(clf_model *m);

/* Tensors of the model as safetensors entries (names like
 * "features.text.embedding", "mlp.0.weight", "head.bias"). */
void clf_tensors(const clf_model *m, st_writer *w);
/* config.json: the features, their statistics, layers and classes. */
void clf_config_json(const clf_model *m, buf *out);
/* The model that config.json describes, with the weights from a
 * safetensors file (what = names for messages). */
int clf_load(herr *e, clf_model *m, const char *config, size_t config_len, const char *config_what,
             const st_file *weights, const char *weights_what);

typedef struct clf_ws clf_ws;
clf_ws *clf_ws_new(const clf_model *m, int max_batch, int threads);
void clf_ws_free(clf_ws *w);
/* Gradients accumulated by clf_backward (nparams floats; zeroed by the
 * optimizer step). */
float *clf_grad(clf_ws *w);

/* Forward over rows idx[0..B): fills the head outputs; with train, applies
 * dropout drawn from (seed, step). Returns the batch loss (weighted mean;
 * cw: weight per class, or NULL) when the data has targets, else 0. */
double clf_forward(const clf_model *m, const clf_data *d, const uint32_t *idx, int B, clf_ws *w, int train,
                   uint64_t seed, uint64_t step, const float *cw);
/* Backward of the last forward (which must have had train set); adds into
 * the gradients. */
void clf_backward(const clf_model *m, const clf_data *d, const uint32_t *idx, int B, clf_ws *w);
/* After a forward: row b's probabilities (ncls; binary: 2) or its value
 * (number: one, de-standardized). */
void clf_outputs(const clf_model *m, const clf_ws *w, int b, double *out);

/* Parses "relu", "gelu", "tanh"; -1 if unknown. */
int clf_act_parse(const char *s);

#endif
