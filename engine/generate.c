#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/bpe.h"
#include "io/gguf.h"
#include "ml/deploy.h"
#include "ml/blas.h"
#include "ml/bundle.h"
#include "models/gpt2.h"
#include "models/llama.h"
#include "nn/nn.h"
#include "ml/chat.h"
#include "ml/textgen.h"

static const opt_spec generate_opts[] = {
	{"tokenizer", 0, OPT_STR, 0, 0, "TOK", "a tokenizer folder or tokenizer.json (a bundle brings its own)", 1},
	{"prompt", 0, OPT_STR, 0, 0, "TEXT", "the text to continue", 0},
	{"adapter", 0, OPT_STR, 0, 0, "DIR", "a PEFT LoRA folder, merged into the model", 1},
	{"max-tokens", 0, OPT_INT, 0, 1 << 20, "N", "tokens to generate at most (default 64)", 0},
	{"temperature", 0, OPT_NUM, 0, 100, "T", "sampling temperature (default 0: greedy)", 0},
	{"top-k", 0, OPT_INT, 0, 1 << 24, "K", "sample from the K most likely tokens (0: all)", 0},
	{"top-p", 0, OPT_NUM, 0, 1, "P", "sample from the smallest set of tokens whose probability reaches P", 0},
	{"seed", 0, OPT_INT, 0, 9007199254740992.0, "S", "the sampler's seed", 0},
	{"stop", 0, OPT_STR, 0, 0, "TEXT", "stop before this text (repeatable, up to 16)", 0},
	{"logits", 0, OPT_STR, 0, 0, "FILE", "write the prompt's ids and logits as JSON", 1},
	{"device", 0, OPT_STR, 0, 0, "cpu|cuda", "where the model runs (default cpu; cuda: make cuda builds its backend)", 0},
	{"quant", 0, OPT_STR, 0, 0, "TYPE", "run the weights as hone quantize --to TYPE would store them (f16, q8_0, ...)", 0},
	{"chat", 0, OPT_FLAG, 0, 0, NULL, "TEXT is a user's message: rendered with the chat template, the answer generated", 0},
	{"system", 0, OPT_STR, 0, 0, "TEXT", "--chat: a system message before the user's", 0},
	{"template", 0, OPT_STR, 0, 0, "NAME", "--chat's template: chatml, llama3, mistral, zephyr or alpaca (default: the one the model was "
	 "tokenized with, else by the tokenizer's special tokens)", 0},
	{"dequantize", 0, OPT_FLAG, 0, 0, NULL, "a Q8_0 .gguf: decode in fp32 from its weights turned back (default: from its int8 weights)", 0},
	{"quiet", 'q', OPT_FLAG, 0, 0, NULL, "no tokens/s line on stderr", 0},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb generate_verb = {"generate", "MODEL", 1, 1,
	"Continues TEXT with a language model (GPT-2, Llama, Mistral, Qwen2). MODEL is a Hugging Face folder (config.json +\n"
	"model.safetensors; `hone show PIPELINE train` prints where train put one), an\n"
	"export bundle (.tar.gz, whose tokenizer.json is used unless --tokenizer is given),\n"
	"or a gpt2 .gguf file (hone quantize's; dequantized, with its own tokenizer).\n"
	"TOK is a tokenizer folder (encoder.json + vocab.bpe) or a tokenizer.json; --adapter\n"
	"a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors), merged into\n"
	"the model. Greedy unless --temperature > 0 (then top-k / top-p sampling, seeded).\n"
	"Stops at <|endoftext|>, at a --stop text (not printed), after --max-tokens (default\n"
	"64), or when the context is full. Prints the continuation; tokens/s go to stderr.\n"
	"With --chat, TEXT is a user's message in the chat template (--template, or the\n"
	"model's: tokenize.json's chat_template) and generation stops at the end of the turn.\n"
	"A Q8_0 .gguf file decodes from its int8 weights as they are (int8 dot products,\n"
	"AVX-512 VNNI where present; the prompt itself runs in fp32); --dequantize turns them\n"
	"back to fp32 instead.\n"
	"--logits FILE writes the prompt's ids and the model's logits at every prompt\n"
	"position as JSON (for checking against another implementation).\n",
	generate_opts, 1};

/* --chat: the user's message rendered with the template (named, the
 * model's tokenize.json's, else by the tokenizer's special tokens) and the
 * assistant's turn opened; *end: the id that ends the turn */
static int chat_prompt(herr *e, const bpe *b, const char *model, const char *tmpl, const char *sys, const char *text,
                       uint32_t **ids,
                       size_t *n, size_t *cap, int64_t *end, const char **stop)
{
	char name[32] = "";
	if (tmpl)
		snprintf(name, sizeof name, "%s", tmpl);
	char *tj = fs_is_dir(model) ? path_join(model, "tokenize.json") : NULL;
	buf meta;
	buf_init(&meta);
	if (!name[0] && tj && fs_exists(tj) && fs_read(e, tj, &meta) == 0) {
		const char *k = meta.p ? strstr(meta.p, "\"chat_template\": \"") : NULL;
		if (k)
			sscanf(k + 18, "%31[^\"]", name);
	}
	free(tj);
	buf_free(&meta);
	int t = name[0] ? chat_template(name) : -1;
	if (!name[0])
		t = chat_by_tokens(b);
	if (t < 0) {
		herr_set(e, "--chat: %s%s%s", name[0] ? "template \"" : "no template given, and the tokenizer has no chat template's tokens",
		         name, name[0] ? "\" is not one hone has (chatml, llama3, mistral, zephyr, alpaca)" : "");
		return herr_hint(e, "give --template chatml | llama3 | mistral | zephyr | alpaca");
	}
	uint32_t sp[8];
	if (chat_special_ids(e, b, t, sp) != 0)
		return herr_prefix(e, "--chat");
	buf js;
	buf_init(&js);
	buf_addc(&js, '[');
	if (sys) {
		buf_adds(&js, "{\"role\": \"system\", \"content\": ");
		buf_json_str(&js, sys);
		buf_adds(&js, "}, ");
	}
	buf_adds(&js, "{\"role\": \"user\", \"content\": ");
	buf_json_str(&js, text);
	buf_adds(&js, "}]");
	jarena *a = json_arena_new();
	jerror je;
	const jnode *m = json_parse(a, js.p, js.len, &je);
	chat_ids ci = {*ids, NULL, *n, *cap, 0, 0, 0};
	int rc = chat_encode(e, b, NULL, t, sp, m, 1, "--prompt", &ci);
	*ids = ci.ids;
	*n = ci.n;
	*cap = ci.cap;
	free(ci.mask);
	json_arena_free(a);
	buf_free(&js);
	/* the turn ends with the token the template trains after the answer
	 * (alpaca's is a text: the caller stops at it) */
	*end = bpe_token_id(b, chat_stop(t), strlen(chat_stop(t)));
	*stop = *end < 0 ? chat_stop(t) : NULL;
	return rc;
}

static void write_logits(herr *e, const clm *m, const uint32_t *ids, size_t n, const char *path, int *rc)
{
	int V = clm_vocab(m);
	if (n == 0 || n > (size_t)clm_max_pos(m)) {
		*rc = herr_set(e, "--logits: the prompt has %zu tokens; the model takes 1 to %d", n, clm_max_pos(m));
		return;
	}
	clm_ws *w = clm_ws_new_on(m, 1, (int)n, 1, &nn_cpu);
	clm_forward(w, ids, NULL);
	const float *lg = clm_logits(w);
	buf o;
	buf_init(&o);
	buf_adds(&o, "{\"ids\": [");
	for (size_t i = 0; i < n; i++)
		buf_printf(&o, "%s%u", i ? ", " : "", ids[i]);
	buf_printf(&o, "], \"vocab\": %d, \"logits\": [", V);
	for (size_t i = 0; i < n * (size_t)V; i++)
		buf_printf(&o, "%s%.9g", i ? ", " : "", (double)lg[i]);
	buf_adds(&o, "]}\n");
	*rc = fs_write_atomic(e, path, o.p, o.len);
	buf_free(&o);
	clm_ws_free(w);
}

int generate_main(int argc, char **argv)
{
	const char *model = NULL, *tokp = NULL, *prompt = NULL, *adapter = NULL, *logits = NULL, *stops[16];
	int nstop = 0, maxt = 64, quiet = 0;
	const char *device = "cpu", *quant = NULL, *tmpl = NULL, *sys = NULL;
	int chat = 0, deq = 0;
	gpt2_sampler smp = {0, 0, 1, 0};
	opt_parsed op;
	int prc = opt_parse(&generate_verb, argc, argv, &op);
	if (prc != OPT_OK)
		return prc == OPT_HELP ? 0 : 2;
	model = op.pos[0];
	for (size_t i = 0; i < op.nhits; i++) {
		const opt_hit *h = &op.hits[i];
		const char *n = h->spec->name, *v = h->val;
		if (!strcmp(n, "tokenizer"))
			tokp = v;
		else if (!strcmp(n, "prompt"))
			prompt = v;
		else if (!strcmp(n, "adapter"))
			adapter = v;
		else if (!strcmp(n, "logits"))
			logits = v;
		else if (!strcmp(n, "max-tokens"))
			maxt = (int)h->i;
		else if (!strcmp(n, "temperature"))
			smp.temperature = (float)h->d;
		else if (!strcmp(n, "top-k"))
			smp.top_k = (int)h->i;
		else if (!strcmp(n, "top-p"))
			smp.top_p = (float)h->d;
		else if (!strcmp(n, "seed"))
			smp.state = (uint64_t)h->i;
		else if (!strcmp(n, "stop") && nstop < 16)
			stops[nstop++] = v;
		else if (!strcmp(n, "quiet"))
			quiet = 1;
		else if (!strcmp(n, "device"))
			device = v;
		else if (!strcmp(n, "quant"))
			quant = v;
		else if (!strcmp(n, "chat"))
			chat = 1;
		else if (!strcmp(n, "template"))
			tmpl = v;
		else if (!strcmp(n, "system"))
			sys = v;
		else if (!strcmp(n, "dequantize"))
			deq = 1;
	}
	opt_free(&op);
	int is_bundle = model && !fs_is_dir(model);
	if (!model || (!tokp && !is_bundle) || !prompt)
		return opt_usage_error(&generate_verb, "give MODEL, --tokenizer (unless MODEL is a bundle or a .gguf) and --prompt");
	herr e = {{0}, {0}};
	gpt2 gm;
	memset(&gm, 0, sizeof gm);
	clm m;
	memset(&m, 0, sizeof m);
	bpe *b = NULL;
	int rc = blas_get(&e) ? 0 : -1;
	const nn_ops *ops = rc == 0 ? nn_backend(&e, device) : NULL;
	if (rc == 0 && !ops)
		rc = herr_prefix(&e, "--device");
	if (rc == 0 && tokp)
		rc = textgen_load_tokenizer(&e, tokp, &b);
	size_t ml = strlen(model);
	int is_gguf = ml > 5 && !strcmp(model + ml - 5, ".gguf");
	/* a GGUF file and a bundle hold a GPT-2 (textgen_load); a folder any language model */
	if (rc == 0 && (is_gguf || is_bundle)) {
		rc = textgen_load(&e, model, tokp, &gm, &b);
		if (rc == 0)
			m = clm_of_gpt2(&gm);
	} else if (rc == 0) {
		rc = clm_load_dir(&e, &m, model);
	}
	int loaded = rc == 0;
	if (rc == 0 && bpe_vocab_size(b) > (size_t)clm_vocab(&m))
		rc = herr_set(&e, "%s: the tokenizer has %zu tokens, the model %d", tokp ? tokp : model, bpe_vocab_size(b),
		              clm_vocab(&m));
	if (rc == 0 && adapter) {
		lora lo;
		rc = clm_lora_load(&e, &lo, &m, adapter);
		if (rc == 0) {
			clm_lora_merge(&lo, &m);
			lora_free(&lo);
		}
	}
	if (rc == 0 && quant && !m.g)
		rc = herr_set(&e, "--quant: the stored GGUF types are for GPT-2 models; %s is a %s", model, clm_name(&m));
	else if (rc == 0 && quant && deploy_round_trip(&e, m.g, quant) != 0)
		rc = herr_prefix(&e, "--quant");
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	int64_t turn_end = -1;
	const char *turn_stop = NULL;
	if (rc == 0 && chat)
		rc = chat_prompt(&e, b, model, tmpl, sys, prompt, &ids, &n, &cap, &turn_end, &turn_stop);
	else if (rc == 0)
		bpe_encode(b, prompt, strlen(prompt), &ids, &n, &cap);
	if (turn_stop && nstop < 16) /* a template whose turns end in a text */
		stops[nstop++] = turn_stop;
	if (rc == 0 && logits)
		write_logits(&e, &m, ids, n, logits, &rc);
	if (rc == 0) {
		textgen g;
		textgen_init(&g, &m, b, ops);
		g.smp = smp;
		g.max_tokens = maxt;
		g.stops = stops;
		g.nstop = nstop;
		if (turn_end >= 0)
			g.eos = turn_end;
		gguf_file qf;
		memset(&qf, 0, sizeof qf);
		int q8 = 0;
		if (is_gguf && !deq && nn_on_host(ops) && gguf_open(&e, &qf, model) == 0) { /* decode from the int8 weights */
			q8 = deploy_kv_q8(&qf, &gm, clm_kv_gpt2(g.kv)) == 0;
		}
		buf out;
		buf_init(&out);
		const char *why;
		double tp, t1 = now_seconds();
		int made = textgen_run(&g, ids, n, &out, stdout, &why, &tp);
		putchar('\n');
		double t2 = now_seconds();
		if (!quiet)
			fprintf(stderr, "hone: %d tokens in %.3fs (%.1f tokens/s%s), stopped by %s; prompt %zu tokens in %.3fs\n", made,
			        t2 - t1 - tp, t2 - t1 > tp ? made / (t2 - t1 - tp) : 0, q8 ? ", from the Q8_0 weights" : "", why, n, tp);
		buf_free(&out);
		textgen_free(&g);
		if (qf.p)
			gguf_close(&qf);
	}
	if (rc) {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
	}
	free(ids);
	if (b)
		bpe_free(b);
	if (loaded && m.g == &gm)
		gpt2_free(&gm);
	else if (loaded)
		clm_free(&m);
	return rc ? 1 : 0;
}

/* --- hone quantize: a GPT-2 as a GGUF file for llama.cpp ------------------------------ */

static const opt_spec quantize_opts[] = {
	{"tokenizer", 0, OPT_STR, 0, 0, "TOK", "a tokenizer folder or tokenizer.json (a bundle brings its own)", 1},
	{"to", 0, OPT_STR, 0, 0, "TYPE", "f32, f16, q8_0, q4_0, q6_k, q4_k_m or q5_k_m (default f16)", 0},
	{"output", 'o', OPT_STR, 0, 0, "FILE", "the .gguf file to write", 1},
	{"adapter", 0, OPT_STR, 0, 0, "DIR", "a PEFT LoRA folder trained on MODEL: write it as a GGUF adapter instead", 1},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb quantize_verb = {"quantize", "MODEL", 1, 1,
	"Writes a GPT-2 (a Hugging Face folder or an export bundle, as for generate) as a\n"
	"GGUF file (version 3) that llama.cpp loads: the gpt2 architecture's tensors and\n"
	"keys, the byte-level BPE tokenizer (tokens, merges, <|endoftext|>), and the\n"
	"weight matrices as TYPE: f32, f16, q8_0, q4_0 (blocks of 32 with an fp16 scale) or\n"
	"q6_k (super-blocks of 256); a matrix whose rows are not whole blocks falls back to\n"
	"q8_0 (q6_k) or f16. Norms and biases\n"
	"stay f32. With --adapter DIR (a PEFT LoRA folder of MODEL), FILE is instead that\n"
	"adapter as a GGUF adapter, which llama.cpp applies to MODEL's GGUF at load time\n"
	"(--lora in its tools). Prints what it wrote.\n",
	quantize_opts, 1};

int quantize_main(int argc, char **argv)
{
	const char *model = NULL, *tokp = NULL, *to = "f16", *out = NULL, *adapter = NULL;
	opt_parsed op;
	int prc = opt_parse(&quantize_verb, argc, argv, &op);
	if (prc != OPT_OK)
		return prc == OPT_HELP ? 0 : 2;
	model = op.pos[0];
	for (size_t i = 0; i < op.nhits; i++) {
		const opt_hit *h = &op.hits[i];
		if (!strcmp(h->spec->name, "tokenizer"))
			tokp = h->val;
		else if (!strcmp(h->spec->name, "to"))
			to = h->val;
		else if (!strcmp(h->spec->name, "output"))
			out = h->val;
		else if (!strcmp(h->spec->name, "adapter"))
			adapter = h->val;
	}
	opt_free(&op);
	int ftype, type = gguf_type_parse(to, &ftype);
	if (type < 0)
		return opt_usage_error(&quantize_verb, "--to: expected f32, f16, q8_0, q4_0, q6_k, q4_k_m or q5_k_m");
	int is_bundle = model && !fs_is_dir(model);
	if (!out || (!tokp && !is_bundle && !adapter))
		return opt_usage_error(&quantize_verb, "give MODEL, --tokenizer (unless MODEL is a bundle) and -o FILE.gguf");
	if (adapter) { /* the adapter alone, for MODEL */
		herr e = {{0}, {0}};
		gpt2 m;
		gpt2_lora lo;
		memset(&lo, 0, sizeof lo);
		bpe *bb = NULL;
		int rc = textgen_load(&e, model, NULL, &m, &bb), loaded = rc == 0;
		if (bb)
			bpe_free(bb);
		if (rc == 0)
			rc = gpt2_lora_load(&e, &lo, &m, adapter);
		size_t bytes = 0;
		if (rc == 0)
			rc = deploy_gguf_lora(&e, &m, &lo, out, &bytes);
		if (rc == 0)
			printf("wrote %s: a LoRA adapter (rank %d, %.1f KiB of F32 tensors) for %s\n", out, lo.rank,
			       (double)bytes / 1024.0, model);
		else {
			fprintf(stderr, "hone: error: %s\n", e.msg);
			if (e.hint[0])
				fprintf(stderr, "hint: %s\n", e.hint);
		}
		gpt2_lora_free(&lo);
		if (loaded)
			gpt2_free(&m);
		return rc ? 1 : 0;
	}
	herr e = {{0}, {0}};
	gpt2 m;
	memset(&m, 0, sizeof m);
	bpe *b = NULL;
	int rc = tokp ? textgen_load_tokenizer(&e, tokp, &b) : 0;
	model_arch arch = ARCH_GPT2;
	if (rc == 0 && !is_bundle && model_detect_dir(&e, model, &arch) == 0 && arch == ARCH_LLAMA) {
		llama lm;
		size_t bytes = 0;
		rc = llama_load_dir(&e, &lm, model);
		if (rc == 0) {
			rc = deploy_gguf_llama(&e, &lm, b, to, out, &bytes);
			if (rc == 0)
				printf("wrote %s: %s (llama.cpp's %s architecture), %d layers, %s weights, %.1f MiB of tensors (%.1f MiB in "
				       "fp32)\n", out, lm.cfg.family, strcmp(lm.cfg.family, "qwen2") ? "llama" : "qwen2", lm.cfg.n_layer,
				       gguf_type_name(type), (double)bytes / 1048576.0, (double)lm.nparams * 4 / 1048576.0);
			llama_free(&lm);
		}
		if (rc) {
			fprintf(stderr, "hone: error: %s\n", e.msg);
			if (e.hint[0])
				fprintf(stderr, "hint: %s\n", e.hint);
		}
		bpe_free(b);
		return rc ? 1 : 0;
	}
	if (rc == 0)
		rc = textgen_load(&e, model, tokp, &m, &b);
	int loaded = rc == 0;
	size_t bytes = 0;
	if (rc == 0)
		rc = deploy_gguf(&e, &m, b, to, out, &bytes);
	if (rc == 0)
		printf("wrote %s: GPT-2, %d layers, %s weights, %.1f MiB of tensors (%.1f MiB in fp32)\n", out, m.cfg.n_layer,
		       gguf_type_name(type), (double)bytes / 1048576.0, (double)(m.nparams + (size_t)m.cfg.vocab * m.cfg.n_embd) * 4 / 1048576.0);
	else {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
	}
	if (b)
		bpe_free(b);
	if (loaded)
		gpt2_free(&m);
	return rc ? 1 : 0;
}
