/*
 * chat — turning chat messages into one prompt with a named template, the
 * way the model was instruction-tuned: ChatML (<|im_start|>role ...
 * <|im_end|>), Alpaca (### Instruction: / ### Response:, tokenize's
 * format = "instruction" text) and Llama-3 (<|start_header_id|>role
 * <|end_header_id|> ... <|eot_id|>). Each ends with the assistant's turn
 * opened, and names the text that closes a turn (a stop text).
 *
 * Relies on: util.
 * Ownership: the caller owns the messages and the output buffer.
 */
#ifndef HONE_CHAT_H
#define HONE_CHAT_H

#include <stddef.h>
#include "../util.h"

typedef enum { CHAT_CHATML, CHAT_ALPACA, CHAT_LLAMA3 } chat_template;

typedef struct chat_msg {
	const char *role, *content; /* role: "system", "user" or "assistant" */
	size_t rlen, clen;
} chat_msg;

/* "chatml", "alpaca" or "llama3" (also "llama-3"); -1 when unknown. */
int chat_template_parse(const char *name);
const char *chat_template_name(chat_template t);
/* The prompt for msgs[0..n) in template t, appended to out. */
void chat_render(chat_template t, const chat_msg *msgs, size_t n, buf *out);
/* The text that ends the assistant's turn in t (a stop text). */
const char *chat_stop(chat_template t);

#endif
