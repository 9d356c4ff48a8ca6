/*
 * trainer — the training loop the train stage's learners share (train.c):
 * epochs of shuffled batches, AdamW with the schedule and clipping, the
 * curve, validation, early stopping, checkpoints and resume. A learner
 * gives its parameters, a step (loss and gradients of a batch) and a score
 * (a validation metric); train_bert.c is one.
 */
#ifndef HONE_TRAINER_H
#define HONE_TRAINER_H

#include "../io/records.h"
#include "../ml/classifier.h"
#include "../ml/mldata.h"
#include "../nn/lora.h"
#include "stages.h"

typedef struct tcfg {
	double lr, wd, b1, b2, eps, clip, dropout;
	long long batch, epochs, steps, warmup, patience, ckpt_every, seed;
	int sched;
	const char *metric;
} tcfg;

typedef struct tstate {
	long long step, best_epoch, bad;
	double best;
	float *m, *v, *best_p;
	buf curve;
} tstate;

typedef struct learner {
	float *p;
	size_t n;
	double (*step)(void *ud, const uint32_t *idx, int nb, uint64_t step, float **grad);
	int (*score)(void *ud, herr *e, const char *metric, double *v);
	void *ud;
	/* On a device (NULL: the CPU): the parameters the step computes with
	 * live in dp on nn's backend, and step's gradient there too; the loop
	 * keeps AdamW's state beside them and brings p up to date for
	 * checkpoints, the best epoch and the end. */
	struct nn_ctx *nn;
	float *dp;
} learner;

typedef struct loop_result {
	size_t batch;
	long long spe, stopped, t_start;
	int resumed;
	double t0;
} loop_result;

int train_loop(kctx *c, const tcfg *cf, learner *L, size_t n, int has_val, const char *metric, int higher, tstate *s,
               loop_result *out);
void tstate_init(tstate *s);
void tstate_free(tstate *s);
/* The end of train.json, and the validation metric in the run record */
void train_finish_summary(kctx *c, buf *sum, const tstate *s, const char *metric, int has_val, int resumed, int lm);
/* The distinct values of field f, sorted (the classes of a target) */
char **train_distinct(const rec_reader *r, int f, uint32_t *n);
uint64_t train_mix(uint64_t x);
/* A classifier's classes: target's distinct values in r, sorted (at least
 * two; errors name the field and split) */
int train_find_classes(kctx *c, const rec_reader *r, const char *label, const char *target, char ***cls, uint32_t *k);
/* The proxy that reads class indices of labels[0..K) into ytr (and yva),
 * with the train split's priors */
int train_class_ids(kctx *c, clf_model *proxy, const char *target, char **labels, int K, const kinput *ti,
                    const kinput *vi, ml_split *ytr, ml_split *yva);
/* train.json's "output", "classes" and "priors" (and a comma) */
void train_classes_json(buf *sum, const char *target, char *const *labels, int K, const double *prior);
/* LoRA from train's parameters (targets by PEFT's names, else dflt; rank up
 * to width; alpha; lora_dropout) on architecture a */
int train_lora_init(kctx *c, const hval *p, const lora_arch *a, const char *const *dflt, int width,
                    const char *width_name, lora *lo, uint64_t seed);
/* The batch: train's batch, at most the rows and 4096 */
int train_batch(const tcfg *cf, size_t n);
/* The train split's tokenize.json into the model's folder: how to encode
 * text for it (the field, max_len, truncation), for export and predict */
int train_copy_tokenize(kctx *c, const kinput *ti, const char *outdir);

/* BERT: sequence classification (output = { label = "field" }) or masked-LM
 * pre-training (objective = "mlm"), full or LoRA (train_bert.c). */
int train_bert(kctx *c, const hval *p, const tcfg *cf, const kinput *ti, const kinput *vi, const kinput *base,
               const char *outdir);

#endif
