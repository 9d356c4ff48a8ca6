#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/bpe.h"
#include "io/gguf.h"
#include "ml/deploy.h"
#include "ml/blas.h"
#include "ml/bundle.h"
#include "models/gpt2.h"
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
	{"quiet", 'q', OPT_FLAG, 0, 0, NULL, "no tokens/s line on stderr", 0},
	{NULL, 0, 0, 0, 0, NULL, NULL, 0}};

const opt_verb generate_verb = {"generate", "MODEL", 1, 1,
	"Continues TEXT with a GPT-2 model. MODEL is a Hugging Face folder (config.json +\n"
	"model.safetensors; `hone show PIPELINE train` prints where train put one), an\n"
	"export bundle (.tar.gz, whose tokenizer.json is used unless --tokenizer is given),\n"
	"or a gpt2 .gguf file (hone quantize's; dequantized, with its own tokenizer).\n"
	"TOK is a tokenizer folder (encoder.json + vocab.bpe) or a tokenizer.json; --adapter\n"
	"a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors), merged into\n"
	"the model. Greedy unless --temperature > 0 (then top-k / top-p sampling, seeded).\n"
	"Stops at <|endoftext|>, at a --stop text (not printed), after --max-tokens (default\n"
	"64), or when the context is full. Prints the continuation; tokens/s go to stderr.\n"
	"--logits FILE writes the prompt's ids and the model's logits at every prompt\n"
	"position as JSON (for checking against another implementation).\n",
	generate_opts, 1};

static void write_logits(herr *e, const gpt2 *m, const uint32_t *ids, size_t n, const char *path, int *rc)
{
	if (n == 0 || n > (size_t)m->cfg.n_positions) {
		*rc = herr_set(e, "--logits: the prompt has %zu tokens; the model takes 1 to %d", n, m->cfg.n_positions);
		return;
	}
	gpt2_ws *w = gpt2_ws_new(m, 1, (int)n, 1);
	gpt2_forward(m, w, ids, NULL);
	const float *lg = gpt2_logits(w);
	buf o;
	buf_init(&o);
	buf_adds(&o, "{\"ids\": [");
	for (size_t i = 0; i < n; i++)
		buf_printf(&o, "%s%u", i ? ", " : "", ids[i]);
	buf_printf(&o, "], \"vocab\": %d, \"logits\": [", m->cfg.vocab);
	for (size_t i = 0; i < n * (size_t)m->cfg.vocab; i++)
		buf_printf(&o, "%s%.9g", i ? ", " : "", (double)lg[i]);
	buf_adds(&o, "]}\n");
	*rc = fs_write_atomic(e, path, o.p, o.len);
	buf_free(&o);
	gpt2_ws_free(w);
}

int generate_main(int argc, char **argv)
{
	const char *model = NULL, *tokp = NULL, *prompt = NULL, *adapter = NULL, *logits = NULL, *stops[16];
	int nstop = 0, maxt = 64, quiet = 0;
	const char *device = "cpu", *quant = NULL;
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
	}
	opt_free(&op);
	int is_bundle = model && !fs_is_dir(model);
	if (!model || (!tokp && !is_bundle) || !prompt)
		return opt_usage_error(&generate_verb, "give MODEL, --tokenizer (unless MODEL is a bundle or a .gguf) and --prompt");
	herr e = {{0}, {0}};
	gpt2 m;
	memset(&m, 0, sizeof m);
	bpe *b = NULL;
	int rc = blas_get(&e) ? 0 : -1;
	const nn_ops *ops = rc == 0 ? nn_backend(&e, device) : NULL;
	if (rc == 0 && !ops)
		rc = herr_prefix(&e, "--device");
	if (rc == 0 && tokp)
		rc = textgen_load_tokenizer(&e, tokp, &b);
	if (rc == 0)
		rc = textgen_load(&e, model, tokp, &m, &b);
	int loaded = rc == 0;
	if (rc == 0 && adapter) {
		gpt2_lora lo;
		rc = gpt2_lora_load(&e, &lo, &m, adapter);
		if (rc == 0) {
			gpt2_lora_merge(&lo, &m);
			gpt2_lora_free(&lo);
		}
	}
	if (rc == 0 && quant && deploy_round_trip(&e, &m, quant) != 0)
		rc = herr_prefix(&e, "--quant");
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	if (rc == 0)
		bpe_encode(b, prompt, strlen(prompt), &ids, &n, &cap);
	if (rc == 0 && logits)
		write_logits(&e, &m, ids, n, logits, &rc);
	if (rc == 0) {
		textgen g;
		textgen_init(&g, &m, b, ops);
		g.smp = smp;
		g.max_tokens = maxt;
		g.stops = stops;
		g.nstop = nstop;
		buf out;
		buf_init(&out);
		const char *why;
		double tp, t1 = now_seconds();
		int made = textgen_run(&g, ids, n, &out, stdout, &why, &tp);
		putchar('\n');
		double t2 = now_seconds();
		if (!quiet)
			fprintf(stderr, "hone: %d tokens in %.3fs (%.1f tokens/s), stopped by %s; prompt %zu tokens in %.3fs\n", made,
			        t2 - t1 - tp, t2 - t1 > tp ? made / (t2 - t1 - tp) : 0, why, n, tp);
		buf_free(&out);
		textgen_free(&g);
	}
	if (rc) {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (e.hint[0])
			fprintf(stderr, "hint: %s\n", e.hint);
	}
	free(ids);
	if (b)
		bpe_free(b);
	if (loaded)
		gpt2_free(&m);
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
