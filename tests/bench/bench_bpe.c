/* Encodes a file with GPT-2's BPE and prints tokens, MB/s and a checksum of
 * the ids (to compare with tests/bench/tiktoken_bench.mjs on the same file).
 * Usage: bench_bpe GPT2_DIR FILE */
#include <stdio.h>
#include <stdlib.h>

#include "io/bpe.h"
#include "util.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_bpe GPT2_DIR FILE\n");
		return 2;
	}
	herr e;
	bpe *b;
	char *ej = path_join(argv[1], "encoder.json"), *vb = path_join(argv[1], "vocab.bpe");
	if (bpe_load_gpt2(&e, &b, ej, vb) != 0) {
		fprintf(stderr, "bench_bpe: %s\n", e.msg);
		return 1;
	}
	buf text;
	buf_init(&text);
	if (fs_read(&e, argv[2], &text) != 0) {
		fprintf(stderr, "bench_bpe: %s\n", e.msg);
		return 1;
	}
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	/* with the piece cache, as the tokenize stage and `hone predict` encode */
	bpe_cache *cache = bpe_cache_new();
	double t0 = now_seconds();
	bpe_encode_cached(b, cache, text.p, text.len, 0, &ids, &n, &cap);
	double t = now_seconds() - t0;
	bpe_cache_free(cache);
	unsigned long long sum = 0;
	for (size_t i = 0; i < n; i++)
		sum = sum * 31 + ids[i];
	printf("hone      %zu tokens  %.2f s  %.2f MB/s  checksum %llu\n", n, t, text.len / t / 1e6, sum);
	free(ids);
	buf_free(&text);
	bpe_free(b);
	free(ej);
	free(vb);
	return 0;
}
