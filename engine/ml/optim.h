/*
 * optim — AdamW, learning-rate schedules, gradient clipping, and a small
 * parallel-for. Every routine gives the same bits whatever the thread count:
 * element-wise work is split by range, and sums go over fixed-size chunks
 * added in order.
 *
 * AdamW is PyTorch's torch.optim.AdamW (decoupled weight decay):
 *   p -= lr·wd·p;  m = b1·m + (1-b1)·g;  v = b2·v + (1-b2)·g²
 *   p -= lr/(1-b1^t) · m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * The schedules are those of transformers' get_{constant,linear,cosine}_
 * schedule_with_warmup: a factor on lr of step/warmup during warmup, then
 * 1 (constant), (total-step)/(total-warmup) (linear) or
 * 0.5·(1+cos(π·(step-warmup)/(total-warmup))) (cosine), never below 0;
 * `step` counts the updates already made.
 *
 * Relies on: pthreads, libm.
 * Ownership: callers own every array.
 */
#ifndef HONE_OPTIM_H
#define HONE_OPTIM_H

#include <stddef.h>

typedef struct adamw_cfg {
	float b1, b2, eps, wd;
} adamw_cfg;

/* Update t (1-based) of n parameters with learning rate lr; the gradient is
 * first multiplied by gscale (clipping), then zeroed. */
void adamw_step(const adamw_cfg *c, float lr, long long t, float gscale, float *p, float *g, float *m, float *v,
                size_t n, int threads);

/* sqrt(Σ g²), summed in double over fixed chunks; and Σ g² itself. */
double grad_norm(const float *g, size_t n, int threads);
double grad_sumsq(const float *g, size_t n, int threads);
/* The factor clipping by global norm applies: max_norm/(norm+1e-6) when that
 * is below 1 (as torch.nn.utils.clip_grad_norm_), else 1; 1 when max_norm <= 0. */
float clip_factor(double norm, double max_norm);

typedef enum { SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE } sched_kind;
/* Parses "constant", "linear", "cosine"; -1 if unknown. */
int sched_parse(const char *s);
double lr_factor(sched_kind k, long long step, long long warmup, long long total);

/* Runs fn(ud, t, nt) for t in [0, nt) on nt threads (the caller runs t = 0). */
void par_run(int nt, void (*fn)(void *ud, int t, int nt), void *ud);

#endif
