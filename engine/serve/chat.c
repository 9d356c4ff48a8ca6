#include "chat.h"

#include <string.h>

int chat_template_parse(const char *name)
{
	if (!strcmp(name, "chatml"))
		return CHAT_CHATML;
	if (!strcmp(name, "alpaca"))
		return CHAT_ALPACA;
	if (!strcmp(name, "llama3") || !strcmp(name, "llama-3"))
		return CHAT_LLAMA3;
	return -1;
}

const char *chat_template_name(chat_template t)
{
	return t == CHAT_ALPACA ? "alpaca" : t == CHAT_LLAMA3 ? "llama3" : "chatml";
}

const char *chat_stop(chat_template t)
{
	return t == CHAT_ALPACA ? "\n### " : t == CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>";
}

static int is(const chat_msg *m, const char *role) { return m->rlen == strlen(role) && !memcmp(m->role, role, m->rlen); }

/* Alpaca: tokenize's instruction preamble (without an input), a system
 * message in its place when there is one; user turns as instructions,
 * assistant turns as responses */
static void alpaca(const chat_msg *msgs, size_t n, buf *out)
{
	size_t i = 0;
	if (n && is(&msgs[0], "system")) {
		buf_add(out, msgs[0].content, msgs[0].clen);
		buf_adds(out, "\n\n");
		i = 1;
	} else {
		buf_adds(out, "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n");
	}
	for (; i < n; i++) {
		buf_adds(out, is(&msgs[i], "assistant") ? "### Response:\n" : "### Instruction:\n");
		buf_add(out, msgs[i].content, msgs[i].clen);
		buf_adds(out, "\n\n");
	}
	buf_adds(out, "### Response:\n");
}

void chat_render(chat_template t, const chat_msg *msgs, size_t n, buf *out)
{
	if (t == CHAT_ALPACA) {
		alpaca(msgs, n, out);
		return;
	}
	if (t == CHAT_LLAMA3)
		buf_adds(out, "<|begin_of_text|>");
	for (size_t i = 0; i < n; i++) {
		buf_adds(out, t == CHAT_LLAMA3 ? "<|start_header_id|>" : "<|im_start|>");
		buf_add(out, msgs[i].role, msgs[i].rlen);
		buf_adds(out, t == CHAT_LLAMA3 ? "<|end_header_id|>\n\n" : "\n");
		buf_add(out, msgs[i].content, msgs[i].clen);
		buf_adds(out, t == CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>\n");
	}
	buf_adds(out, t == CHAT_LLAMA3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : "<|im_start|>assistant\n");
}
