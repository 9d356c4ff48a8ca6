/* libFuzzer target: the Hugging Face tokenizer.json loader, and encoding and
 * writing back with what it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	herr e;
	bpe *b;
	if (bpe_load_hf(&e, &b, (const char *)data, n, "fuzz") != 0)
		return 0;
	uint32_t *ids = NULL;
	size_t k = 0, cap = 0;
	bpe_encode(b, "Hello world, it's 2024!", 23, &ids, &k, &cap);
	buf out;
	buf_init(&out);
	bpe_decode(b, ids, k, &out);
	buf_free(&out);
	buf_init(&out);
	bpe_hf_json(b, &out);
	buf_free(&out);
	free(ids);
	bpe_free(b);
	return 0;
}
