/*
 * act — activation functions shared by the models: GELU in its tanh form
 * (GPT-2's "gelu_new") and its derivative.
 */
#ifndef HONE_ACT_H
#define HONE_ACT_H

#include <math.h>

static inline float gelu_tanh(float z)
{
	const float c = 0.7978845608028654f; /* sqrt(2/pi) */
	return 0.5f * z * (1.0f + tanhf(c * (z + 0.044715f * z * z * z)));
}

static inline float gelu_tanh_grad(float z)
{
	const float c = 0.7978845608028654f;
	float t = tanhf(c * (z + 0.044715f * z * z * z));
	return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * z * z);
}

#endif
