/* Helpers for the unit tests that hold a model to a reference.json made by
 * a fixture script (transformers, peft): numbers, closeness, and where an
 * adapter tensor named as PEFT names it lives in a lora's gradients. */
#ifndef HONE_REFJSON_H
#define HONE_REFJSON_H

#include <math.h>

#include "io/json.h"
#include "nn/lora.h"

static inline double num(const jnode *v)
{
	double d = 0;
	json_number(v, &d);
	return d;
}

/* got[0..n) against the array want: within tol relative, or tol/100 of the
 * array's largest magnitude */
static inline void near(const float *got, const jnode *want, size_t n, double tol, const char *what)
{
	double scale = 0;
	size_t k = 0;
	for (const jnode *v = want->kid; v; v = v->next)
		scale = fmax(scale, fabs(num(v)));
	for (const jnode *v = want->kid; v; v = v->next, k++) {
		double x = num(v);
		if (k >= n || !(fabs(got[k] - x) <= tol * fabs(x) + 1e-2 * tol * scale + 1e-7))
			fail_msg("%s[%zu]: %.9g, reference %.9g", what, k, k < n ? got[k] : NAN, x);
	}
	assert_int_equal(k, n);
}

/* The gradient of PEFT's tensor name ("base_model.model.<path>.lora_A.weight",
 * or a saved module's "base_model.model.<tensor>") in g, its size in *n; NULL if none */
static inline const float *lora_grad_of(const lora *lo, const float *g, const char *name, size_t *n)
{
	const lora_arch *a = &lo->a;
	for (int k = 0; k < a->n_layer * a->nsite; k++)
		for (int ab = 0; ab < 2 && (lo->targets & (1u << (k % a->nsite))); ab++) {
			char want[160], path[120];
			snprintf(path, sizeof path, a->site[k % a->nsite].path, k / a->nsite);
			snprintf(want, sizeof want, "base_model.model.%s.lora_%c.weight", path, ab ? 'B' : 'A');
			if (!strcmp(want, name)) {
				size_t in = (size_t)a->site[k % a->nsite].in;
				*n = (size_t)lo->rank * (ab ? (size_t)a->site[k % a->nsite].out : in);
				return g + lo->off[k] + (ab ? (size_t)lo->rank * in : 0);
			}
		}
	for (int s = 0; s < lo->nsaved; s++)
		if (strlen(name) > 17 && !strcmp(name + 17, lo->saved[s].name)) {
			*n = lo->saved[s].n;
			return g + lo->saved[s].off;
		}
	return NULL;
}

#endif
