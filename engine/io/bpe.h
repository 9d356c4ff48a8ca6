/*
 * bpe — byte-level BPE as GPT-2 defines it: the pre-tokenization rule
 * (contractions, letters, numbers, other symbols, whitespace, by Unicode
 * category), the byte <-> printable code point mapping, loading GPT-2's
 * encoder.json + vocab.bpe, and encoding / decoding.
 *
 * Relies on: utf8proc (categories), PCRE2 (a tokenizer.json's own split
 * regex), json, util.
 * Ownership: a bpe owns its vocabulary and tables; bpe_free releases them.
 * Encoding writes into caller-owned arrays.
 */
#ifndef HONE_BPE_H
#define HONE_BPE_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"

typedef struct bpe bpe;

/* Loads GPT-2's files (encoder.json: token -> id; vocab.bpe: merges). */
int bpe_load_gpt2(herr *e, bpe **out, const char *encoder_json, const char *vocab_bpe);
/* The same, from a folder (a tokenizer stage's output): its tokenizer.json
 * when it has one (the pre-tokenizer and normalizer are in it), else
 * encoder.json and vocab.bpe. */
int bpe_load_dir(herr *e, bpe **out, const char *dir);
/* Loads a Hugging Face tokenizer.json holding a BPE model (what = name
 * for messages): byte-level with GPT-2's ByteLevel pre-tokenizer, or a
 * regex Split before a ByteLevel (Llama 3's, Qwen2's), normalizer none or
 * NFC; or SentencePiece-style (Llama 2, Mistral, TinyLlama: normalizer
 * Prepend("▁") + Replace(" ", "▁") or a Metaspace pre-tokenizer, byte
 * fallback to <0xNN> tokens, merges ranked by their place in the list). */
int bpe_load_hf(herr *e, bpe **out, const char *json, size_t n, const char *what);
/* Writes b as a Hugging Face tokenizer.json (BPE model, ByteLevel pre-
 * tokenizer and decoder, <|endoftext|> as an added special token). */
void bpe_hf_json(const bpe *b, buf *out);
/* Training (bpe_train.c): feed text, then run. */
typedef struct bpe_trainer bpe_trainer;
bpe_trainer *bpe_trainer_new(void);
void bpe_trainer_free(bpe_trainer *t);
/* Cuts s into pre-tokens and counts them. */
void bpe_trainer_add(bpe_trainer *t, const char *s, size_t n);
/* Counts one word as it is (WordPiece: words come pre-tokenized). */
void bpe_trainer_add_word(bpe_trainer *t, const char *p, size_t n);
/* Distinct pre-tokens so far. */
size_t bpe_trainer_words(const bpe_trainer *t);

typedef struct bpe_train_opts {
	size_t vocab;            /* total, special tokens included */
	uint64_t min_frequency;  /* a pair merges only if it occurs this often */
	size_t nspecial;         /* special tokens take the last ids */
	void (*progress)(void *ud, double done, double total);
	void *ud;
	/* WordPiece (HF's WordPieceTrainer): non-NULL, the continuation
	 * prefix ("##"). Words (bpe_trainer_add_word) start as characters, the
	 * ones after the first with the prefix; a merge joins a + b less b's
	 * prefix; a join that makes a token already there reuses it. The
	 * result's tokens are the alphabet, then the merges; no bytes. */
	const char *wordpiece_prefix;
	size_t limit_alphabet; /* WordPiece: at most this many characters (0: all) */
} bpe_train_opts;

typedef struct bpe_train_result {
	size_t merges, words, ntokens;
	uint32_t *merge_ids;     /* 2 per merge: the ids joined */
	buf tokens;              /* bytes of tokens 0..ntokens-1, concatenated */
	uint32_t *lens;
} bpe_train_result;

/* Learns merges until vocab - nspecial tokens or no pair is frequent
 * enough. The result owns its arrays (bpe_train_result_free). */
int bpe_trainer_run(herr *e, bpe_trainer *t, const bpe_train_opts *o, bpe_train_result *r);
void bpe_train_result_free(bpe_train_result *r);
/* The trained tokenizer as GPT-2's two files, special tokens (printable
 * ASCII, no spaces) after the learned ones. */
void bpe_train_files(const bpe_train_result *r, const char *const *special, size_t nspecial, buf *encoder, buf *merges);

/* Writes b as GPT-2's two files (encoder.json, vocab.bpe). */
void bpe_gpt2_files(const bpe *b, buf *encoder, buf *merges);
void bpe_free(bpe *b);
size_t bpe_vocab_size(const bpe *b);
/* A SentencePiece-style BPE (Llama 2's tokenizer.json: ▁ for spaces,
 * byte fallback, merges ranked by their list): no GPT-2 files, only a
 * tokenizer.json (bpe_gpt2_files is not for it) */
int bpe_is_spm(const bpe *b);
/* Whether a folder holds a BPE tokenizer artifact (encoder.json, or a
 * tokenizer.json that is not WordPiece's: no vocab.txt beside it) */
int bpe_dir_is_bpe(const char *dir);
/* The end-of-text token: <|endoftext|>, </s> or <|end_of_text|>; -1 if none */
int64_t bpe_eos_id(const bpe *b);
/* The tokenizer.json's own Split regex, or NULL (GPT-2's rule) */
const char *bpe_pattern(const bpe *b);
/* The id of the token with these bytes, or -1. */
int64_t bpe_token_id(const bpe *b, const char *s, size_t n);

/* Splits UTF-8 text into pre-tokens by GPT-2's rule:
 *   's 't 're 've 'm 'll 'd | ' '?letters | ' '?numbers |
 *   ' '?(not space, letter or number)+ | spaces not before a non-space | spaces
 * Calls fn(ud, start, len) for each piece, in order, until fn returns
 * nonzero. */
void bpe_pretokenize(const char *s, size_t n, int (*fn)(void *ud, const char *p, size_t len), void *ud);

/* Splits text into pre-tokens as b does: GPT-2's rule above, or the
 * regex Split of its tokenizer.json (Llama 3's, Qwen2's; PCRE2 with
 * Unicode properties), after NFC when the tokenizer normalizes. */
void bpe_pieces(const bpe *b, const char *s, size_t n, int (*fn)(void *ud, const char *p, size_t len), void *ud);

/* Encodes text, appending ids to *ids (grown as needed). */
int bpe_encode(const bpe *b, const char *s, size_t n, uint32_t **ids, size_t *nids, size_t *cap);
/* The same, but stops after the pre-token that brings the ids appended to at
 * least max (0: no limit): the ids it gives are the first ones of the whole
 * encoding, since merges never cross pre-tokens. */
int bpe_encode_max(const bpe *b, const char *s, size_t n, size_t max, uint32_t **ids, size_t *nids, size_t *cap);
/* A memo of pieces already encoded, for one thread at a time: with it,
 * repeated words skip the merges. Same ids with or without. */
typedef struct bpe_cache bpe_cache;
bpe_cache *bpe_cache_new(void);
void bpe_cache_free(bpe_cache *c);
/* bpe_encode_max with a cache (NULL: none). */
int bpe_encode_cached(const bpe *b, bpe_cache *cache, const char *s, size_t n, size_t max, uint32_t **ids,
                      size_t *nids, size_t *cap);
/* Decodes ids to bytes (appended to out); -1 on an unknown id. */
int bpe_decode(const bpe *b, const uint32_t *ids, size_t n, buf *out);

#endif
