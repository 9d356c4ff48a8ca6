/*
 * chat (engine/ml/chat.c): each template renders conversations as the
 * model families document their chat format (transformers'
 * apply_chat_template with these templates gives these strings), special
 * tokens marked, the assistant's content and end-of-turn token marked as
 * trained; errors name the message and key.
 */
#include "testutil.h"
#include "ml/chat.h"

typedef struct out {
	buf text, train; /* the rendering; the trained parts, '|' between */
	int nspecial;
} out;

static void take(void *ud, const char *p, size_t n, int special, int train)
{
	out *o = ud;
	buf_add(&o->text, p, n);
	o->nspecial += special;
	if (train) {
		buf_add(&o->train, p, n);
		buf_addc(&o->train, '|');
	}
}

static void render(int t, const char *json, int gen, const char *want, const char *want_train, int nspecial)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *m = json_parse(a, json, strlen(json), &je);
	assert_non_null(m);
	out o;
	buf_init(&o.text);
	buf_init(&o.train);
	o.nspecial = 0;
	herr e;
	if (chat_render(&e, t, m, gen, "row 1", take, &o) != 0)
		fail_msg("%s", e.msg);
	buf_addc(&o.text, 0);
	buf_addc(&o.train, 0);
	if (strcmp(o.text.p, want))
		fail_msg("%s: got\n[%s]\nwant\n[%s]", chat_template_name(t), o.text.p, want);
	if (want_train && strcmp(o.train.p, want_train))
		fail_msg("%s: trained [%s], want [%s]", chat_template_name(t), o.train.p, want_train);
	assert_int_equal(o.nspecial, nspecial);
	buf_free(&o.text);
	buf_free(&o.train);
	json_arena_free(a);
}

#define CONV "[{\"role\": \"system\", \"content\": \"You are a friendly chatbot who always responds in the style of a pirate\"}, " \
             "{\"role\": \"user\", \"content\": \"How many helicopters can a human eat in one sitting?\"}]"
#define TURNS "[{\"role\": \"user\", \"content\": \"Hello, how are you?\"}, " \
              "{\"role\": \"assistant\", \"content\": \"I'm doing great. How can I help you today?\"}, " \
              "{\"role\": \"user\", \"content\": \"I'd like to show off how chat templating works!\"}]"

static void test_templates(void **st)
{
	(void)st;
	/* zephyr: the example of transformers' chat templating guide */
	render(CHAT_ZEPHYR, CONV, 1,
	       "<|system|>\nYou are a friendly chatbot who always responds in the style of a pirate</s>\n<|user|>\n"
	       "How many helicopters can a human eat in one sitting?</s>\n<|assistant|>\n", "", 2);
	/* mistral (v0.1's template): the guide's example, as the template writes it */
	render(CHAT_MISTRAL, TURNS, 0,
	       "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s>[INST] I'd like to show off "
	       "how chat templating works! [/INST]", "I'm doing great. How can I help you today?|</s>|", 2);
	render(CHAT_CHATML, TURNS, 1,
	       "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\nI'm doing great. How can I help you "
	       "today?<|im_end|>\n<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n"
	       "<|im_start|>assistant\n", "I'm doing great. How can I help you today?|<|im_end|>|", 7);
	render(CHAT_LLAMA3, "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \" Hi \"}, "
	       "{\"role\": \"assistant\", \"content\": \"Hello!\\n\"}]", 0,
	       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
	       "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
	       "Hello!|<|eot_id|>|", 10);
	/* alpaca: tokenize's format = "instruction" text, a system message in the preamble's place */
	render(CHAT_ALPACA, "[{\"role\": \"user\", \"content\": \"Say hi\"}, {\"role\": \"assistant\", \"content\": \"Hi\"}]", 1,
	       "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
	       "### Instruction:\nSay hi\n\n### Response:\nHi\n\n### Response:\n", "Hi|", 0);
	render(CHAT_ALPACA, "[{\"role\": \"system\", \"content\": \"Be kind.\"}, {\"role\": \"user\", \"content\": \"Q\"}]", 1,
	       "Be kind.\n\n### Instruction:\nQ\n\n### Response:\n", "", 0);
	/* mistral: a system message goes before the first user's */
	render(CHAT_MISTRAL, "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}]", 0,
	       "<s>[INST] S\n\nU [/INST]", "", 1);
}

static void fails(int t, const char *json, const char *needle)
{
	jarena *a = json_arena_new();
	jerror je;
	const jnode *m = json_parse(a, json, strlen(json), &je);
	out o;
	buf_init(&o.text);
	buf_init(&o.train);
	herr e;
	assert_int_equal(chat_render(&e, t, m, 0, "row 3", take, &o), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error '%s' does not say '%s'", e.msg, needle);
	assert_non_null(strstr(e.msg, "row 3"));
	buf_free(&o.text);
	buf_free(&o.train);
	json_arena_free(a);
}

static void test_errors(void **st)
{
	(void)st;
	fails(CHAT_CHATML, "[{\"role\": \"bot\", \"content\": \"x\"}]", "messages[0].role");
	fails(CHAT_CHATML, "[{\"role\": \"user\", \"content\": 3}]", "messages[0].content: expected a string");
	fails(CHAT_CHATML, "[]", "non-empty list");
	fails(CHAT_CHATML, "{\"role\": \"user\"}", "non-empty list");
	fails(CHAT_MISTRAL, "[{\"role\": \"system\", \"content\": \"x\"}]", "a system message with no user message");
	assert_int_equal(chat_template("chatml"), CHAT_CHATML);
	assert_int_equal(chat_template("vicuna"), -1);
	assert_int_equal(chat_template("llama-3"), CHAT_LLAMA3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_templates), cmocka_unit_test(test_errors)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
