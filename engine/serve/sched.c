#include "sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../io/gguf.h"
#include "../ml/deploy.h"
#include "../ml/textgen.h"
#include "../nn/nn.h"

typedef struct slot {
	textgen g;
	buf out;       /* the continuation, published up to `shown` bytes */
	size_t shown;
	sched_req *r;  /* NULL: free */
	int fresh;     /* admitted this step: prefill first */
	int ended;
	uint32_t next; /* the token to feed */
} slot;

struct sched {
	const gpt2 *m;     /* a GPT-2's decode steps batched (gpt2_step_batch); NULL: one step per sequence (clm_step) */
	const clm *cm;
	const bpe *b;
	int nslot, qcap, qlen, stop;
	slot *slots;
	sched_req *qhead, *qtail;
	gpt2_dec *dec;
	gpt2_kv **kvs;
	uint32_t *ids;
	float *logits;
	int *which;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
};

void sched_req_init(sched_req *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->text);
	pthread_cond_init(&r->cv, NULL);
	r->smp.top_p = 1;
}

void sched_req_free(sched_req *r)
{
	buf_free(&r->text);
	free(r->cuts);
	pthread_cond_destroy(&r->cv);
	free(r->ids);
}

void sched_lock(sched *s) { pthread_mutex_lock(&s->mu); }
void sched_unlock(sched *s) { pthread_mutex_unlock(&s->mu); }

void sched_wait(sched *s, sched_req *r, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&r->cv, &s->mu, &ts);
}

void sched_counts(sched *s, int *queued, int *active)
{
	pthread_mutex_lock(&s->mu);
	int a = 0;
	for (int i = 0; i < s->nslot; i++)
		a += s->slots[i].r != NULL;
	*queued = s->qlen;
	*active = a;
	pthread_mutex_unlock(&s->mu);
}

int sched_submit(sched *s, sched_req *r)
{
	pthread_mutex_lock(&s->mu);
	int free_slot = 0;
	for (int i = 0; i < s->nslot; i++)
		free_slot += !s->slots[i].r;
	/* waiting counts beyond the free slots (those join at the next step) */
	if (s->stop || s->qlen - free_slot >= s->qcap) {
		pthread_mutex_unlock(&s->mu);
		return -1;
	}
	r->state = SCHED_QUEUED;
	r->next = NULL;
	if (s->qtail)
		s->qtail->next = r;
	else
		s->qhead = r;
	s->qtail = r;
	s->qlen++;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static void finish(sched_req *r, const char *why, int stopped)
{
	r->state = SCHED_DONE;
	r->why = why;
	r->stopped = stopped;
	pthread_cond_broadcast(&r->cv);
}

void sched_cancel(sched *s, sched_req *r)
{
	pthread_mutex_lock(&s->mu);
	if (r->state == SCHED_QUEUED) {
		sched_req **pp = &s->qhead, *prev = NULL;
		while (*pp && *pp != r) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp) {
			*pp = r->next;
			if (s->qtail == r)
				s->qtail = prev;
			s->qlen--;
			finish(r, "cancelled", 0);
		}
	}
	r->cancel = 1;
	while (r->state != SCHED_DONE) {
		pthread_cond_signal(&s->cv);
		sched_wait(s, r, 50);
	}
	pthread_mutex_unlock(&s->mu);
}

/* with the lock: what the slot has that is final goes to its request */
static void publish(slot *sl)
{
	sched_req *r = sl->r;
	size_t ready = textgen_final(&sl->g, &sl->out, sl->ended);
	if (ready > sl->shown) {
		buf_add(&r->text, sl->out.p + sl->shown, ready - sl->shown);
		sl->shown = ready;
		if (r->ncut == r->capcut)
			r->cuts = xrealloc(r->cuts, (r->capcut = r->capcut ? 2 * r->capcut : 64) * sizeof *r->cuts);
		r->cuts[r->ncut++] = r->text.len;
		if (!r->t_first)
			r->t_first = now_seconds();
	}
	r->made = sl->g.made;
	if (sl->ended) {
		const char *why = sl->g.why;
		finish(r, why, !strcmp(why, "the end token") || !strcmp(why, "a stop text"));
		sl->r = NULL;
	} else if (r->each) {
		pthread_cond_broadcast(&r->cv);
	}
}

static void *run(void *ud)
{
	sched *s = ud;
	int V = clm_vocab(s->cm), ctx = clm_kv_max(s->slots[0].g.kv);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		/* cancelled sequences leave; waiting requests take the free slots */
		int active = 0;
		for (int i = 0; i < s->nslot; i++) {
			slot *sl = &s->slots[i];
			if (sl->r && (sl->r->cancel || s->stop)) {
				finish(sl->r, "cancelled", 0);
				sl->r = NULL;
			}
			if (!sl->r && s->qhead && !s->stop) {
				sched_req *r = s->qhead;
				s->qhead = r->next;
				if (!s->qhead)
					s->qtail = NULL;
				s->qlen--;
				r->state = SCHED_RUNNING;
				sl->r = r;
				sl->fresh = 1;
			}
			active += sl->r != NULL;
		}
		if (s->stop && !active) {
			for (sched_req *r = s->qhead; r; r = r->next)
				finish(r, "cancelled", 0);
			s->qhead = s->qtail = NULL;
			s->qlen = 0;
			break;
		}
		if (!active) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		pthread_mutex_unlock(&s->mu);
		/* the new ones: the prompt, then their first token */
		int nb = 0;
		for (int i = 0; i < s->nslot; i++) {
			slot *sl = &s->slots[i];
			if (!sl->r)
				continue;
			if (sl->fresh) {
				sched_req *r = sl->r;
				textgen *g = &sl->g;
				g->smp = r->smp;
				g->max_tokens = r->max_tokens;
				g->stops = r->stops;
				g->nstop = r->nstop;
				sl->out.len = 0;
				sl->shown = 0;
				sl->fresh = 0;
				sl->ended = !textgen_begin(g, r->ids, r->n, &sl->out) || !textgen_take(g, &sl->out, &sl->next);
			} else if (!sl->ended) {
				if (clm_kv_len(sl->g.kv) >= ctx) {
					sl->g.why = "the context is full";
					sl->ended = 1;
					continue;
				}
				s->kvs[nb] = s->m ? clm_kv_gpt2(sl->g.kv) : NULL;
				s->ids[nb] = sl->next;
				s->which[nb++] = i;
			}
		}
		/* one step for all of them */
		if (nb == 1 || (nb && !s->m)) { /* alone (hone generate's step, to the bit), or no batched step for this model */
			for (int k = 0; k < nb; k++) {
				slot *sl = &s->slots[s->which[k]];
				clm_step(sl->g.kv, sl->next, sl->g.logits);
				sl->ended = !textgen_take(&sl->g, &sl->out, &sl->next);
			}
		} else if (nb) {
			gpt2_step_batch(s->m, s->dec, s->kvs, s->ids, nb, s->logits);
			for (int k = 0; k < nb; k++) {
				slot *sl = &s->slots[s->which[k]];
				memcpy(sl->g.logits, s->logits + (size_t)k * (size_t)V, (size_t)V * sizeof(float));
				sl->ended = !textgen_take(&sl->g, &sl->out, &sl->next);
			}
		}
		pthread_mutex_lock(&s->mu);
		for (int i = 0; i < s->nslot; i++)
			if (s->slots[i].r && !s->slots[i].fresh)
				publish(&s->slots[i]);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

sched *sched_new(const clm *m, const bpe *b, int slots, int queue, int threads, const nn_ops *ops)
{
	sched *s = xcalloc(1, sizeof *s);
	s->cm = m;
	s->m = m->g && !m->pt && (!ops || nn_on_host(ops)) ? m->g : NULL; /* the batched step is the CPU's */
	s->b = b;
	s->nslot = slots;
	s->qcap = queue;
	s->slots = xcalloc((size_t)slots, sizeof *s->slots);
	for (int i = 0; i < slots; i++) {
		textgen_init(&s->slots[i].g, m, b, ops);
		buf_init(&s->slots[i].out);
	}
	s->dec = s->m ? gpt2_dec_new(s->m, slots, threads) : NULL;
	s->kvs = xcalloc((size_t)slots, sizeof *s->kvs);
	s->ids = xcalloc((size_t)slots, sizeof *s->ids);
	s->which = xcalloc((size_t)slots, sizeof *s->which);
	s->logits = xmalloc((size_t)slots * (size_t)clm_vocab(m) * sizeof *s->logits);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_create(&s->th, NULL, run, s);
	return s;
}

int sched_q8(sched *s, const gguf_file *f)
{
	if (!s->cm->g || s->cm->pt)
		return -1;
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	for (int i = 0; rc == 0 && i < s->nslot; i++)
		rc = deploy_kv_q8(f, s->cm->g, clm_kv_gpt2(s->slots[i].g.kv));
	if (rc == 0)
		s->m = NULL; /* the batched step is fp32's: each sequence steps on the int8 weights */
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void sched_free(sched *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->th, NULL);
	for (int i = 0; i < s->nslot; i++) {
		textgen_free(&s->slots[i].g);
		buf_free(&s->slots[i].out);
	}
	free(s->slots);
	if (s->dec)
		gpt2_dec_free(s->dec);
	free(s->kvs);
	free(s->ids);
	free(s->which);
	free(s->logits);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
