/* libFuzzer target: the safetensors reader, and typed lookups on what it
 * accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ml/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	herr e;
	st_file f;
	char *p = malloc(n ? n : 1);
	if (!p)
		return 0;
	memcpy(p, data, n);
	if (st_parse(&e, &f, p, n, "fuzz") != 0)
		return 0;
	int64_t shape[2] = {2, 3};
	for (size_t i = 0; i < f.n; i++) {
		const float *v = st_f32(&e, &f, "fuzz", f.t[i].name, f.t[i].ndim, f.t[i].shape);
		volatile float s = 0;
		for (size_t k = 0; v && k < f.t[i].nbytes / 4; k++)
			s += v[k];
	}
	st_f32(&e, &f, "fuzz", "x", 2, shape);
	st_free(&f);
	return 0;
}
