/* libFuzzer target: WordPiece's loaders (the input as a tokenizer.json and
 * as a vocab.txt), then encoding a pair with truncation, decoding and
 * writing back with what they accept; and the input as text to encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/wordpiece.h"

static void use(wordpiece *w, const char *text, size_t n)
{
	wordpiece_enc x;
	memset(&x, 0, sizeof x);
	wordpiece_cache *c = wordpiece_cache_new();
	wordpiece_encode_pair(w, c, text, n, "and [SEP] caf\xc3\xa9", 15, 7, 0, 1, &x);
	wordpiece_encode_pair(w, NULL, text, n, NULL, 0, 3, 1, 1, &x);
	buf out;
	buf_init(&out);
	wordpiece_decode(w, x.ids, x.n, &out);
	wordpiece_hf_json(w, &out);
	wordpiece_vocab_txt(w, &out);
	buf_free(&out);
	wordpiece_enc_free(&x);
	wordpiece_cache_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	herr e;
	wordpiece *w;
	const char *p = (const char *)data;
	if (wordpiece_load_hf(&e, &w, p, n, "fuzz") == 0) {
		use(w, "Hello world, it's 2024! \xe4\xb8\xad\xe6\x96\x87", 30);
		wordpiece_free(w);
	}
	if (wordpiece_load_vocab_mem(&e, &w, p, n, "fuzz", NULL) == 0) {
		use(w, p, n);
		wordpiece_free(w);
	}
	static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n##a\n##b\nab\n";
	if (wordpiece_load_vocab_mem(&e, &w, vocab, sizeof vocab - 1, "v", NULL) == 0) {
		use(w, p, n);
		wordpiece_free(w);
	}
	return 0;
}
