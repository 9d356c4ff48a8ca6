/*
 * wordpiece — BERT's tokenizer as Hugging Face tokenizers defines it:
 * BertNormalizer (clean text, CJK spacing, accent stripping, lowercase),
 * BertPreTokenizer (whitespace, then punctuation isolated), the WordPiece
 * model (greedy longest match first, "##" on continuation pieces, words over
 * max_input_chars_per_word characters to the unknown token), special tokens
 * matched in the raw text before normalizing, and the post-processor
 * template ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1") with HF's
 * longest_first truncation of pairs.
 *
 * Loads a BERT vocab.txt (one token per line, id = line number - 1) or a
 * tokenizer.json with a WordPiece model; writes both. Ids are identical to
 * HF tokenizers' (tests/fixtures/wordpiece, tests/integration/wordpiece.sh);
 * docs/stages/tokenizer.md says where Unicode versions could differ.
 *
 * Relies on: utf8proc (categories, NFD, lowercase), json, util, xxhash.
 * Ownership: a wordpiece owns its vocabulary, tables and settings;
 * wordpiece_free releases them. A wordpiece_cache belongs to one thread.
 * Encoding writes into caller-owned arrays (grown as needed).
 */
#ifndef HONE_WORDPIECE_H
#define HONE_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>
#include "../util.h"

typedef struct wordpiece wordpiece;

/* BertNormalizer's settings. strip_accents: -1 follows lowercase (HF's
 * null), 0 or 1 as set. */
typedef struct wordpiece_norm {
	int clean_text, handle_chinese_chars, strip_accents, lowercase;
} wordpiece_norm;

/* HF's defaults: clean_text, handle_chinese_chars, strip_accents null,
 * lowercase (bert-base-uncased). */
wordpiece_norm wordpiece_norm_default(void);

/* Loads a vocab.txt (path), with the normalizer given (NULL: the default).
 * Lines are tokens (trailing whitespace trimmed, as HF does); an empty line
 * before the end, a repeated token or a missing [UNK], [CLS] or [SEP] is an
 * error naming the file and line. [PAD] [UNK] [CLS] [SEP] [MASK], where
 * present, are special tokens (matched in raw text, as in HF's BERT
 * tokenizer.json); the template is [CLS] $A [SEP] / [CLS] $A [SEP] $B:1
 * [SEP]:1. */
int wordpiece_load_vocab(herr *e, wordpiece **out, const char *path, const wordpiece_norm *norm);
/* The same from bytes in memory (what: the name for messages). */
int wordpiece_load_vocab_mem(herr *e, wordpiece **out, const char *p, size_t n, const char *what,
                             const wordpiece_norm *norm);
/* Loads a Hugging Face tokenizer.json whose model is WordPiece (what = name
 * for messages). Errors name the key, what was expected, and a hint. */
int wordpiece_load_hf(herr *e, wordpiece **out, const char *json, size_t n, const char *what);
/* A tokenizer stage's folder: its tokenizer.json. */
int wordpiece_load_dir(herr *e, wordpiece **out, const char *dir);

/* What a tokenizer file holds, from its content: 1 a tokenizer.json with
 * a WordPiece model, 2 a tokenizer.json of another model (BPE), 3 a
 * vocab.txt (anything else that is text), 0 empty or binary (a NUL byte
 * in the first 4 KB). */
int wordpiece_sniff(const char *p, size_t n);

/* Writes vocab.txt (one token per line, in id order). */
void wordpiece_vocab_txt(const wordpiece *w, buf *out);
/* Writes a tokenizer.json that HF tokenizers loads: added special tokens,
 * BertNormalizer, BertPreTokenizer, TemplateProcessing, WordPiece decoder
 * and model. */
void wordpiece_hf_json(const wordpiece *w, buf *out);

void wordpiece_free(wordpiece *w);
size_t wordpiece_vocab_size(const wordpiece *w);
/* The id of a token, or -1. */
int64_t wordpiece_token_id(const wordpiece *w, const char *s, size_t n);
/* The bytes of token id (NULL when out of range). */
const char *wordpiece_token(const wordpiece *w, uint32_t id, size_t *len);

/* Special token ids, -1 where the vocabulary has none. */
typedef struct wordpiece_special {
	int64_t pad, unk, cls, sep, mask;
} wordpiece_special;
wordpiece_special wordpiece_specials(const wordpiece *w);
/* The normalizer in force. */
wordpiece_norm wordpiece_normalizer(const wordpiece *w);

/* A tokenizer with no vocabulary, for wordpiece_normalize alone (training). */
wordpiece *wordpiece_new_normalizer(const wordpiece_norm *norm);
/* The normalizer alone: appends the normalized form of s to out. */
void wordpiece_normalize(const wordpiece *w, const char *s, size_t n, buf *out);
/* BertPreTokenizer over normalized text: fn(ud, start, len) per word. */
void wordpiece_pretokenize(const char *s, size_t n, void (*fn)(void *ud, const char *p, size_t len), void *ud);

/* A memo of words already encoded, for one thread; same ids without. */
typedef struct wordpiece_cache wordpiece_cache;
wordpiece_cache *wordpiece_cache_new(void);
void wordpiece_cache_free(wordpiece_cache *c);

/* Encodes text without the template: special tokens in the raw text, then
 * normalize, pre-tokenize and WordPiece. Appends to *ids. cache may be
 * NULL. */
void wordpiece_encode(const wordpiece *w, wordpiece_cache *cache, const char *s, size_t n, uint32_t **ids,
                      size_t *nids, size_t *cap);

/* One row's ids with token types (0: first sequence, 1: second). */
typedef struct wordpiece_enc {
	uint32_t *ids;
	uint8_t *types;
	size_t n, cap;         /* ids and capacity of ids */
	size_t tcap;           /* capacity of types */
	size_t a_kept, b_kept; /* ids of each sequence after truncation */
	size_t a_len, b_len;   /* before */
} wordpiece_enc;
void wordpiece_enc_free(wordpiece_enc *x);

/* Encodes a (and b, when not NULL) as HF's encode(a, b) does: each
 * sequence alone, then truncation to max_len (0: none) counting the
 * template's special tokens (pairs: longest_first; left: keep the ends),
 * then the template (add_special) or plain concatenation. Overwrites *out. */
void wordpiece_encode_pair(const wordpiece *w, wordpiece_cache *cache, const char *a, size_t an, const char *b,
                           size_t bn, size_t max_len, int left, int add_special, wordpiece_enc *out);
/* Special tokens the template adds (single or pair). */
size_t wordpiece_added(const wordpiece *w, int pair);

/* Decodes for display: tokens joined by spaces, the "##" prefix joining a
 * piece to the one before (HF's WordPiece decoder without cleanup). -1 on
 * an unknown id. */
int wordpiece_decode(const wordpiece *w, const uint32_t *ids, size_t n, buf *out);

/* Character classes as HF's BERT code sees them (exported for the tests):
 * whitespace, control (removed by clean_text), punctuation, CJK. */
int wordpiece_is_whitespace(int32_t c);
int wordpiece_is_control(int32_t c);
int wordpiece_is_punct(int32_t c);
int wordpiece_is_cjk(int32_t c);

/* Training (bpe_train.c in WordPiece mode): a vocabulary from tokens in
 * order (specials first), built by the caller. */
int wordpiece_from_tokens(herr *e, wordpiece **out, const char *const *tok, const size_t *len, size_t n,
                          const wordpiece_norm *norm);

#endif
