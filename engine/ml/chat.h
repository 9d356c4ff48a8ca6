/*
 * chat — conversations (OpenAI-style messages: system, user, assistant)
 * rendered with a model family's chat template, as pieces of text and
 * special tokens, each marked as trained on or not: the assistant's
 * content and the token that ends its turn are the loss; the rest is
 * context. Shared by tokenize's format = "chat" and generation.
 *
 * Templates (as transformers' chat templates render them):
 *   chatml   <|im_start|>ROLE\nCONTENT<|im_end|>\n            (Qwen2, many fine-tunes)
 *   llama3   <|begin_of_text|> then <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *   mistral  <s>[INST] USER [/INST]ASSISTANT</s> ...           (a system message goes before the first user's, "\n\n")
 *   zephyr   <|ROLE|>\nCONTENT</s>\n                           (the role markers are text)
 *   alpaca   tokenize's format = "instruction" text: the preamble (or a system
 *            message in its place), ### Instruction:\nUSER\n\n, ### Response:\nASSISTANT\n\n
 *
 * Relies on: io/json, io/bpe, util.
 */
#ifndef HONE_CHAT_H
#define HONE_CHAT_H

#include <stddef.h>

#include <stdint.h>

#include "../io/bpe.h"
#include "../io/json.h"
#include "../util.h"

enum { CHAT_CHATML = 0, CHAT_LLAMA3, CHAT_MISTRAL, CHAT_ZEPHYR, CHAT_ALPACA, CHAT_N };

/* The template called name ("llama-3" is llama3 too), or -1 */
int chat_template(const char *name);
const char *chat_template_name(int t);
/* The special tokens the template writes (NULL-terminated): the tokenizer
 * must have each as one token */
const char *const *chat_specials(int t);
/* The text that ends the assistant's turn (a stop text when generating) */
const char *chat_stop(int t);
/* The template a tokenizer's special tokens name: chatml for <|im_start|>,
 * llama3 for <|start_header_id|>; -1 for none */
int chat_by_tokens(const bpe *b);

/* One piece: text (special: a special token's text, to be its one id);
 * train: part of the loss */
typedef void (*chat_piece)(void *ud, const char *p, size_t n, int special, int train);

/* Renders messages (a JSON array of {"role", "content"}) with template t,
 * calling piece for each part in order; with gen_prompt, the opening of an
 * assistant turn at the end (to generate one). what names the row in
 * errors: a role other than system, user or assistant, content that is not
 * a string, an empty conversation. */
int chat_render(herr *e, int t, const jnode *messages, int gen_prompt, const char *what, chat_piece piece, void *ud);

/* The template's special tokens' ids in b (chat_specials' order, at most
 * 8); an error naming the first one b lacks, with how to add it */
int chat_special_ids(herr *e, const bpe *b, int t, uint32_t ids[8]);

/* A conversation as ids: each piece encoded on its own (a special token as
 * its id from sp), appended to *ids, and for each id its loss mask (1:
 * trained) to *mask; *last (may be NULL): where the last trained part
 * starts ((size_t)-1: none). cache may be NULL. */
typedef struct chat_ids {
	uint32_t *ids;
	uint8_t *mask;
	size_t n, cap, mcap, last;
	size_t bytes;
} chat_ids;
int chat_encode(herr *e, const bpe *b, bpe_cache *cache, int t, const uint32_t sp[8], const jnode *messages, int gen_prompt,
                const char *what, chat_ids *out);
/* sp NULL: the special tokens encoded as the text they are (for a
 * tokenizer that lacks them: a model tuned on chats rendered as text) */

#endif
