/*
 * sched — continuous batching for hone serve: one thread decodes every
 * active sequence together, a token each per step (gpt2_step_batch), each
 * sequence in its own KV-cache slot (--parallel of them). Requests wait in
 * a bounded queue and join between steps (their prompt prefilled, their
 * first token taken); a finished or cancelled sequence frees its slot at
 * the next step. The text of each is published as it becomes final
 * (textgen_final: no partial stop text, no cut UTF-8 character).
 *
 * Relies on: models/gpt2, ml/textgen, pthreads.
 * Ownership: a request belongs to its submitter; between sched_submit and
 * its end (state SCHED_DONE, or sched_cancel returning) the scheduler reads
 * it and writes its out fields under the scheduler's lock.
 */
#ifndef HONE_SCHED_H
#define HONE_SCHED_H

#include <pthread.h>
#include <stdint.h>
#include "../io/bpe.h"
#include "../models/clm.h"
#include "../models/gpt2.h"

enum { SCHED_QUEUED, SCHED_RUNNING, SCHED_DONE };

typedef struct sched_req {
	/* in: set before sched_submit */
	uint32_t *ids;
	size_t n;
	gpt2_sampler smp;
	int max_tokens;
	const char *const *stops;
	int nstop;
	int each;         /* wake the submitter at every piece (a stream), not only at the end */
	/* out: read under sched_lock */
	int state;
	buf text;         /* the final text so far */
	size_t *cuts;     /* where each published piece of it ends (a token's, mostly) */
	size_t ncut, capcut;
	int made;         /* tokens generated */
	const char *why;  /* what ended it (textgen's words), once done */
	int stopped;      /* ended by <|endoftext|> or a stop text (finish_reason "stop") */
	double t_first;   /* when the first text was published (now_seconds), 0 before */
	/* the scheduler's */
	int cancel;
	pthread_cond_t cv;
	struct sched_req *next;
} sched_req;

typedef struct sched sched;

/* A scheduler for m and b with `slots` slots, at most `queue` requests
 * waiting, `threads` threads for the batched products; it starts its thread. */
/* m a GPT-2 (its decode steps batched) or another language model (a
 * step per sequence); it must outlive the scheduler. ops: where the caches
 * and steps run (NULL: the CPU; a device: a step per sequence there). */
sched *sched_new(const clm *m, const bpe *b, int slots, int queue, int threads, const struct nn_ops *ops);
/* A GPT-2 from a gpt2 GGUF file whose matrices are Q8_0: every slot decodes
 * from them (deploy_kv_q8), a step per sequence, as hone generate does with
 * the file; -1 (nothing changed) when they are not all Q8_0. Call before the
 * first request; f must outlive the scheduler. */
struct gguf_file;
int sched_q8(sched *s, const struct gguf_file *f);
/* Ends the thread (sequences still running are cancelled) and frees it. */
void sched_free(sched *s);
/* Initializes r's out fields; call before filling in and submitting. */
void sched_req_init(sched_req *r);
void sched_req_free(sched_req *r);
/* Queues r: 0, or -1 when the queue is full. */
int sched_submit(sched *s, sched_req *r);
/* The lock that guards every request's out fields. */
void sched_lock(sched *s);
void sched_unlock(sched *s);
/* With the lock held: waits up to ms milliseconds for r to change. */
void sched_wait(sched *s, sched_req *r, int ms);
/* Takes r out (the lock not held): from the queue at once, from its slot at
 * the next step; when it returns the scheduler no longer touches r. */
void sched_cancel(sched *s, sched_req *r);
/* Requests waiting, and sequences decoding (with the lock not held). */
void sched_counts(sched *s, int *queued, int *active);

#endif
