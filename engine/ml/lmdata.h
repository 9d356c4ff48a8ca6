/*
 * lmdata — token-id datasets as a language model reads them: rows of ids
 * (tokenize's output: packed blocks, or prompt/completion rows with
 * mask.u8), batched into ids and next-token targets for a language model (clm), and scored.
 *
 * Relies on: mldata (the dataset), clm, gpt2 (classifiers).
 * Ownership: an lm_split owns its reader, ids, mask and row table; an
 * lm_batch points at a model and workspace it does not own.
 */
#ifndef HONE_LMDATA_H
#define HONE_LMDATA_H

#include "../models/clm.h"
#include "../models/gpt2.h"
#include "mldata.h"

typedef struct lm_split {
	ml_split s;
	buf mask;     /* mask.u8 when the rows are prompt/completion records */
	buf types;    /* types.u8: each token's segment (0, 1) for an encoder's sentence pairs; empty: all 0 */
	buf labels;   /* labels.i32: each token's tag index for tagging (-100: not scored); empty: none */
	uint64_t *off;
	uint32_t *len; /* cut to the model's n_positions */
	size_t n;
	uint64_t targets; /* next-token targets the loss counts (mask 1, within len) */
} lm_split;

/* Opens tokenize's output in dir; every id must be below vocab. */
int lm_open(herr *e, lm_split *l, const char *dir, const char *label, int vocab, int max_t);
void lm_close(lm_split *l);
/* Fails (naming who and the split) when sp has no rows or no target the
 * loss counts, so that a split of prompts alone never scores perfectly. */
int lm_require_targets(herr *e, const lm_split *sp, const char *who, const char *label);

typedef struct lm_batch {
	clm *m;       /* a language model of any architecture */
	clm_ws *ws;
	lm_split *tr, *va;
	int B, T;
	uint32_t *ids;
	int32_t *tg;
	uint64_t seed; /* training: LoRA dropout masks come from seed and the step */
} lm_batch;

/* The rows of the batch starting at row at of n (rows past n repeat row
 * at, as padding); how many are real. */
int lm_batch_rows(uint32_t *idx, size_t at, size_t n, int B);

/* Rows idx[0..nb) into the batch: ids padded with 0, targets the next id
 * (-1 at padding, past the row's end, and where the mask is 0). */
void lm_fill(lm_batch *l, const lm_split *sp, const uint32_t *idx, int nb);
/* Mean loss per target token over a split; with acc, the share of targets
 * that are the model's top prediction; with targets, their number. */
double lm_eval(lm_batch *l, const lm_split *sp, double *acc, double *targets);

/* Sequence classification (gpt2_forward_cls): each row is classified at
 * its last token. */
/* A clf_model that only names the output field and classes (copied): what
 * ml_split_fill needs to read class indices, and the reports to name them. */
void lm_cls_proxy(clf_model *p, const char *target, char *const *classes, int k);
/* Rows idx[0..nb) into ids (B × T, padded with 0) and their last positions. */
void lm_cls_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, uint32_t *ids, int *last);
/* Every row's class probabilities (n × ncls, when prob is given); the mean
 * cross-entropy against y (NULL: none, 0 returned). */
double lm_cls_eval(const gpt2 *m, gpt2_ws *ws, const lm_split *sp, const uint32_t *y, int B, int T, double *prob);

#endif
