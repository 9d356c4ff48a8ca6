/*
 * encdata — token rows as an encoder (BERT) reads them: batches of ids,
 * token types and padding masks; BERT's masked-LM corruption; and the
 * scores of a classifier and of a masked LM over a split.
 *
 * Relies on: lmdata (the rows), bert.
 * Ownership: nothing is kept; the caller owns every buffer.
 */
#ifndef HONE_ENCDATA_H
#define HONE_ENCDATA_H

#include "../models/bert.h"
#include "lmdata.h"

/* Rows idx[0..nb) into ids, types and mask (B × T): each row's tokens,
 * then pad (mask 0); rows past nb are all padding but their first token. */
void enc_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, uint32_t pad, uint32_t *ids, uint32_t *types,
              uint8_t *mask);

/* Masked-LM corruption (BERT's): each real token that is not special is
 * chosen with probability rate; a chosen one becomes the label and is
 * replaced by mask_id 80% of the time, a random id 10%, itself 10%. The
 * draws are a function of (seed, row, position): the same seed, the same
 * corruption. rows[b] names row b (its index in the split). */
typedef struct mlm_cfg {
	float rate;
	uint32_t mask_id;
	int vocab;
	uint32_t special[8]; /* never chosen ([CLS], [SEP], [PAD]); nspecial of them */
	int nspecial;
} mlm_cfg;
void enc_mlm(const mlm_cfg *mc, uint32_t *ids, int32_t *labels, const uint8_t *mask, const uint32_t *rows, int B, int T,
             uint64_t seed);

/* A sequence classifier over a split: every row's class probabilities
 * (n × K, when prob is given); the mean cross-entropy against y (NULL: 0). */
double enc_cls_eval(const bert *m, bert_ws *w, const lm_split *sp, const uint32_t *y, int B, int T, double *prob);
/* A masked LM over a split, corrupted from seed: the mean loss per chosen
 * token, the share the model predicts (acc) and their number (count). */
double enc_mlm_eval(const bert *m, bert_ws *w, const lm_split *sp, const mlm_cfg *mc, int B, int T, uint64_t seed,
                    double *acc, double *count);
/* Called with (rows done, rows) after each batch of the evaluations below
 * when set (a stage's progress); a nonzero return stops them early. */
typedef int (*enc_progress)(void *ud, double done, double total);
void enc_set_progress(enc_progress fn, void *ud);

/* Tagging (BertForTokenClassification) over a split whose labels.i32
 * gives each token's tag: the mean loss over scored tokens, and each row's
 * gold and predicted tags at those tokens, end to end (row r at
 * [off[r], off[r + 1]); the caller frees the three arrays). */
double enc_tag_eval(const bert *m, bert_ws *w, const lm_split *sp, int B, int T, uint32_t **gold, uint32_t **pred,
                    size_t **off);
/* Rows idx[0..nb) of a tagged split: labels (B × T) from labels.i32, -1
 * where not scored or past the row */
void enc_tag_fill(const lm_split *sp, const uint32_t *idx, int nb, int B, int T, int32_t *labels);

/* mask_id, the special ids and the rate for a split's tokenizer, from its
 * tokenize.json ("mask_token", "cls", "sep", "pad"; mask_id > 0 overrides). */
int enc_mlm_setup(herr *e, mlm_cfg *mc, const char *who, const char *dir, const char *label, int vocab, long long mask_id,
                  double rate);

#endif
