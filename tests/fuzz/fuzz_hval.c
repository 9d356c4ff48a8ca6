/* libFuzzer target: decoding canonical parameter encodings (run records);
 * whatever decodes must re-encode to something that decodes the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	hval *v = hval_decode((const char *)data, n);
	if (v) {
		buf b;
		buf_init(&b);
		hval_encode(&b, v);
		hval *w = hval_decode(b.p, b.len);
		if (!w || !hval_equal(v, w))
			abort();
		hval_free(w);
		buf_free(&b);
		hval_free(v);
	}
	return 0;
}
