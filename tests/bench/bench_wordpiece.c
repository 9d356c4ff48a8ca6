/* Encodes the "text" of every JSON line of a file with a WordPiece
 * tokenizer.json ([CLS] ... [SEP] per line, as tokenize does) and prints
 * tokens, tokens/s, MB/s and a checksum of the ids (to compare with
 * tests/bench/hf_wordpiece_bench.mjs on the same file). The lines are
 * parsed first; only encoding is timed, on one thread.
 * Usage: bench_wordpiece TOKENIZER.json ROWS.jsonl */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/wordpiece.h"
#include "util.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_wordpiece TOKENIZER.json ROWS.jsonl\n");
		return 2;
	}
	herr e;
	buf tj, rows;
	buf_init(&tj);
	buf_init(&rows);
	wordpiece *w;
	if (fs_read(&e, argv[1], &tj) != 0 || wordpiece_load_hf(&e, &w, tj.p, tj.len, argv[1]) != 0 ||
	    fs_read(&e, argv[2], &rows) != 0) {
		fprintf(stderr, "bench_wordpiece: %s\n", e.msg);
		return 1;
	}
	jarena *a = json_arena_new();
	size_t n = 0, cap = 1024, bytes = 0;
	const jnode **text = malloc(cap * sizeof *text);
	for (const char *p = rows.p, *end = rows.p + rows.len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		jerror je;
		jnode *r = len ? json_parse(a, p, len, &je) : NULL;
		const jnode *t = r ? json_member(r, "text", 4) : NULL;
		if (t && t->t == J_STR) {
			if (n == cap)
				text = realloc(text, (cap *= 2) * sizeof *text);
			text[n++] = t;
			bytes += t->len;
		}
		p = nl ? nl + 1 : end;
	}
	wordpiece_enc x;
	memset(&x, 0, sizeof x);
	/* with the word cache (as tokenize encodes), then without */
	for (int pass = 0; pass < 2; pass++) {
		wordpiece_cache *cache = pass ? NULL : wordpiece_cache_new();
		unsigned long long sum = 0, tokens = 0;
		double t0 = now_seconds();
		for (size_t i = 0; i < n; i++) {
			wordpiece_encode_pair(w, cache, text[i]->s, text[i]->len, NULL, 0, 0, 0, 1, &x);
			for (size_t k = 0; k < x.n; k++)
				sum = sum * 31 + x.ids[k];
			tokens += x.n;
		}
		double t = now_seconds() - t0;
		printf("%s %llu tokens  %.2f s  %.0f tokens/s  %.2f MB/s  checksum %llu\n", pass ? "hone-nocache" : "hone     ",
		       tokens, t, tokens / t, bytes / t / 1e6, sum);
		wordpiece_cache_free(cache);
	}
	wordpiece_enc_free(&x);
	free(text);
	json_arena_free(a);
	wordpiece_free(w);
	buf_free(&tj);
	buf_free(&rows);
	return 0;
}
