#include "chat.h"

#include <string.h>

static const char *const names[CHAT_N] = {"chatml", "llama3", "mistral", "zephyr", "alpaca"};

int chat_template(const char *name)
{
	if (!strcmp(name, "llama-3"))
		return CHAT_LLAMA3;
	for (int t = 0; t < CHAT_N; t++)
		if (!strcmp(name, names[t]))
			return t;
	return -1;
}

const char *chat_template_name(int t) { return t >= 0 && t < CHAT_N ? names[t] : "?"; }

const char *const *chat_specials(int t)
{
	static const char *const chatml[] = {"<|im_start|>", "<|im_end|>", NULL};
	static const char *const llama3[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL};
	static const char *const mistral[] = {"<s>", "</s>", NULL};
	static const char *const zephyr[] = {"</s>", NULL};
	static const char *const alpaca[] = {NULL};
	const char *const *all[CHAT_N] = {chatml, llama3, mistral, zephyr, alpaca};
	return all[t];
}

int chat_by_tokens(const bpe *b)
{
	if (bpe_token_id(b, "<|im_start|>", 12) >= 0)
		return CHAT_CHATML;
	if (bpe_token_id(b, "<|start_header_id|>", 19) >= 0)
		return CHAT_LLAMA3;
	return -1;
}

const char *chat_stop(int t)
{
	static const char *const stop[CHAT_N] = {"<|im_end|>", "<|eot_id|>", "</s>", "</s>", "\n### "};
	return stop[t];
}

static int jeq(const jnode *j, const char *s) { return j && j->t == J_STR && j->len == strlen(s) && !memcmp(j->s, s, j->len); }

#define TXT(s) piece(ud, (s), strlen(s), 0, 0)
#define SP(s, tr) piece(ud, (s), strlen(s), 1, (tr))

/* llama3 trims each message's content */
static void trimmed(const jnode *c, const char **p, size_t *n)
{
	*p = c->s;
	*n = c->len;
	while (*n && strchr(" \t\n\r", **p))
		(*p)++, (*n)--;
	while (*n && strchr(" \t\n\r", (*p)[*n - 1]))
		(*n)--;
}

int chat_render(herr *e, int t, const jnode *messages, int gen_prompt, const char *what, chat_piece piece, void *ud)
{
	if (!messages || messages->t != J_ARR || !messages->n)
		return herr_set(e, "%s: messages: expected a non-empty list of {\"role\", \"content\"}", what);
	size_t k = 0;
	for (const jnode *m = messages->kid; m; m = m->next, k++) {
		const jnode *r = m->t == J_OBJ ? json_member(m, "role", 4) : NULL, *c = m->t == J_OBJ ? json_member(m, "content", 7) : NULL;
		if (!jeq(r, "system") && !jeq(r, "user") && !jeq(r, "assistant"))
			return herr_set(e, "%s: messages[%zu].role: expected \"system\", \"user\" or \"assistant\"", what, k);
		if (!c || c->t != J_STR)
			return herr_set(e, "%s: messages[%zu].content: expected a string", what, k);
	}
	if (t == CHAT_LLAMA3)
		SP("<|begin_of_text|>", 0);
	if (t == CHAT_MISTRAL)
		SP("<s>", 0);
	const jnode *system = NULL; /* mistral: held for the first user message */
	if (t == CHAT_ALPACA) { /* tokenize's instruction preamble, or a system message in its place */
		const jnode *f = messages->kid, *r0 = json_member(f, "role", 4);
		if (jeq(r0, "system")) {
			const jnode *c0 = json_member(f, "content", 7);
			piece(ud, c0->s, c0->len, 0, 0);
			TXT("\n\n");
		} else {
			TXT("Below is an instruction that describes a task. Write a response that appropriately completes the "
			    "request.\n\n");
		}
	}
	for (const jnode *m = messages->kid; m; m = m->next) {
		const jnode *r = json_member(m, "role", 4), *c = json_member(m, "content", 7);
		int asst = jeq(r, "assistant");
		const char *cp = c->s;
		size_t cn = c->len;
		switch (t) {
		case CHAT_CHATML:
			SP("<|im_start|>", 0);
			piece(ud, r->s, r->len, 0, 0);
			TXT("\n");
			piece(ud, cp, cn, 0, asst);
			SP("<|im_end|>", asst);
			TXT("\n");
			break;
		case CHAT_LLAMA3:
			SP("<|start_header_id|>", 0);
			piece(ud, r->s, r->len, 0, 0);
			SP("<|end_header_id|>", 0);
			TXT("\n\n");
			trimmed(c, &cp, &cn);
			piece(ud, cp, cn, 0, asst);
			SP("<|eot_id|>", asst);
			break;
		case CHAT_MISTRAL:
			if (jeq(r, "system")) {
				system = c;
			} else if (jeq(r, "user")) {
				TXT("[INST] ");
				if (system) {
					piece(ud, system->s, system->len, 0, 0);
					TXT("\n\n");
					system = NULL;
				}
				piece(ud, cp, cn, 0, 0);
				TXT(" [/INST]");
			} else {
				piece(ud, cp, cn, 0, 1);
				SP("</s>", 1);
			}
			break;
		case CHAT_ALPACA:
			if (jeq(r, "system") && m == messages->kid)
				break; /* in the preamble's place */
			TXT(asst ? "### Response:\n" : "### Instruction:\n");
			piece(ud, cp, cn, 0, asst);
			TXT("\n\n");
			break;
		default: /* zephyr */
			TXT("<|");
			piece(ud, r->s, r->len, 0, 0);
			TXT("|>\n");
			piece(ud, cp, cn, 0, asst);
			SP("</s>", asst);
			TXT("\n");
			break;
		}
	}
	if (system)
		return herr_set(e, "%s: messages: a system message with no user message after it (the mistral template puts "
		                "it before the first user's)", what);
	if (gen_prompt) {
		if (t == CHAT_CHATML) {
			SP("<|im_start|>", 0);
			TXT("assistant\n");
		} else if (t == CHAT_LLAMA3) {
			SP("<|start_header_id|>", 0);
			TXT("assistant");
			SP("<|end_header_id|>", 0);
			TXT("\n\n");
		} else if (t == CHAT_ZEPHYR) {
			TXT("<|assistant|>\n");
		} else if (t == CHAT_ALPACA) {
			TXT("### Response:\n");
		}
	}
	return 0;
}

int chat_special_ids(herr *e, const bpe *b, int t, uint32_t ids[8])
{
	const char *const *sp = chat_specials(t);
	for (int k = 0; sp[k]; k++) {
		int64_t id = bpe_token_id(b, sp[k], strlen(sp[k]));
		if (id < 0) {
			herr_set(e, "template \"%s\" writes %s, which the tokenizer does not have as a token", chat_template_name(t), sp[k]);
			return herr_hint(e, "train the tokenizer with it as a special token (tokenizer { ..., special = { \"%s\" } }), "
			                 "or use the model's own tokenizer.json", sp[k]);
		}
		ids[k] = (uint32_t)id;
	}
	return 0;
}

typedef struct enc {
	const bpe *b;
	bpe_cache *cache;
	int t;
	const uint32_t *sp;
	chat_ids *o;
	int was_train;
} enc;

static void enc_piece(void *ud, const char *p, size_t n, int special, int train)
{
	enc *c = ud;
	chat_ids *o = c->o;
	size_t before = o->n;
	if (special && c->sp) {
		const char *const *sp = chat_specials(c->t);
		for (int k = 0; sp[k]; k++)
			if (strlen(sp[k]) == n && !memcmp(sp[k], p, n)) {
				if (o->n + 1 > o->cap) {
					o->cap = o->cap ? o->cap * 2 : 64;
					o->ids = xrealloc(o->ids, o->cap * sizeof *o->ids);
				}
				o->ids[o->n++] = c->sp[k];
			}
	} else if (n) {
		bpe_encode_cached(c->b, c->cache, p, n, 0, &o->ids, &o->n, &o->cap);
	}
	if (o->n > o->mcap) {
		o->mcap = o->cap;
		o->mask = xrealloc(o->mask, o->mcap);
	}
	memset(o->mask + before, train, o->n - before);
	if (train && !c->was_train && o->n > before)
		o->last = before;
	if (o->n > before)
		c->was_train = train;
	o->bytes += n;
}

int chat_encode(herr *e, const bpe *b, bpe_cache *cache, int t, const uint32_t sp[8], const jnode *messages, int gen_prompt,
                const char *what, chat_ids *out)
{
	enc c = {b, cache, t, sp, out, 0};
	out->last = (size_t)-1;
	return chat_render(e, t, messages, gen_prompt, what, enc_piece, &c);
}
