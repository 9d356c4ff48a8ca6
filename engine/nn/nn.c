#include "nn.h"

#include <stdlib.h>

#include "../util.h"

void nn_ctx_init(nn_ctx *c, const nn_ops *ops, int threads)
{
	c->ops = ops;
	c->threads = threads < 1 ? 1 : threads;
	c->scratch = NULL;
	c->scratch_n = 0;
	c->crew = ops == &nn_cpu && c->threads > 1 ? crew_new(c->threads > 64 ? 64 : c->threads) : NULL;
}

void nn_ctx_free(nn_ctx *c)
{
	if (c->crew)
		crew_free(c->crew);
	c->crew = NULL;
	if (c->scratch)
		c->ops->free(c, c->scratch);
	c->scratch = NULL;
	c->scratch_n = 0;
}

void *nn_scratch(nn_ctx *c, size_t n)
{
	if (n > c->scratch_n) {
		if (c->scratch)
			c->ops->free(c, c->scratch);
		c->scratch = c->ops->alloc(c, n);
		c->scratch_n = n;
	}
	return c->scratch;
}

float nn_dropout_keep(uint64_t seed, uint64_t stream, size_t i, float p)
{
	uint64_t z = seed * 0x9E3779B97F4A7C15ull + (stream << 40) + i;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0 < p ? 0.0f : 1.0f / (1.0f - p);
}
