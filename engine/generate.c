#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/bpe.h"
#include "ml/blas.h"
#include "ml/gpt2.h"

static const char *usage =
	"usage: hone generate MODEL --tokenizer TOK --prompt TEXT [--max-tokens N] [--temperature T]\n"
	"                     [--top-k K] [--top-p P] [--seed S] [--stop TEXT]... [--quiet]\n"
	"\n"
	"Continues TEXT with a GPT-2 model: MODEL is a Hugging Face folder (config.json +\n"
	"model.safetensors; `hone show PIPELINE train` prints where train put one), TOK a\n"
	"tokenizer folder (encoder.json + vocab.bpe) or a tokenizer.json. Greedy unless\n"
	"--temperature > 0 (then top-k / top-p sampling, seeded). Stops at <|endoftext|>,\n"
	"at a --stop text (not printed), after --max-tokens (default 64), or when the\n"
	"context is full. Prints the continuation; tokens/s go to stderr.\n";

static int load_tokenizer(herr *e, const char *path, bpe **b)
{
	int rc;
	if (fs_is_dir(path)) {
		rc = bpe_load_dir(e, b, path);
	} else {
		buf js;
		buf_init(&js);
		rc = fs_read(e, path, &js);
		if (rc == 0)
			rc = bpe_load_hf(e, b, js.p, js.len, path);
		buf_free(&js);
	}
	return rc;
}

int generate_main(int argc, char **argv)
{
	const char *model = NULL, *tokp = NULL, *prompt = NULL, *stops[16];
	int nstop = 0, maxt = 64, quiet = 0;
	gpt2_sampler smp = {0, 0, 1, 0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			printf("%s", usage);
			return 0;
		}
#define VAL(name) (!strcmp(a, name) && v && ++i)
		if (VAL("--tokenizer"))
			tokp = v;
		else if (VAL("--prompt"))
			prompt = v;
		else if (VAL("--max-tokens"))
			maxt = atoi(v);
		else if (VAL("--temperature"))
			smp.temperature = (float)atof(v);
		else if (VAL("--top-k"))
			smp.top_k = atoi(v);
		else if (VAL("--top-p"))
			smp.top_p = (float)atof(v);
		else if (VAL("--seed"))
			smp.state = strtoull(v, NULL, 10);
		else if (VAL("--stop")) {
			if (nstop < 16)
				stops[nstop++] = v;
		} else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
			quiet = 1;
		else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hone: error: generate: unknown option or missing value '%s'\n\n%s", a, usage);
			return 2;
		} else if (!model)
			model = a;
		else {
			fprintf(stderr, "hone: error: generate: one model at a time ('%s' is extra)\n\n%s", a, usage);
			return 2;
		}
#undef VAL
	}
	if (!model || !tokp || !prompt || maxt < 0) {
		fprintf(stderr, "hone: error: generate: give MODEL, --tokenizer and --prompt\n\n%s", usage);
		return 2;
	}
	herr e = {{0}, {0}};
	gpt2 m;
	bpe *b = NULL;
	int rc = blas_get(&e) ? 0 : -1;
	if (rc == 0)
		rc = gpt2_load_dir(&e, &m, model);
	if (rc == 0 && load_tokenizer(&e, tokp, &b) != 0) {
		gpt2_free(&m);
		rc = -1;
	}
	if (rc == 0 && bpe_vocab_size(b) > (size_t)m.cfg.vocab)
		rc = herr_set(&e, "%s: the tokenizer has %zu tokens, the model %d", tokp, bpe_vocab_size(b), m.cfg.vocab);
	if (rc) {
		fprintf(stderr, "hone: error: %s\n", e.msg);
		if (b)
			bpe_free(b);
		return 1;
	}
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	bpe_encode(b, prompt, strlen(prompt), &ids, &n, &cap);
	int64_t eos = bpe_token_id(b, "<|endoftext|>", 13);
	gpt2_kv *kv = gpt2_kv_new(&m);
	float *lg = xmalloc((size_t)m.cfg.vocab * sizeof *lg);
	double t0 = now_seconds();
	int full = 0;
	for (size_t i = 0; i < n && !full; i++)
		full = gpt2_step(&m, kv, ids[i], lg) != 0;
	double t1 = now_seconds();
	buf out, piece;
	buf_init(&out);
	buf_init(&piece);
	size_t printed = 0;
	int made = 0, stopped = 0;
	const char *why = full ? "the prompt fills the context" : "max tokens";
	while (!full && !stopped && made < maxt && n) {
		uint32_t id = gpt2_sample(&smp, lg, m.cfg.vocab);
		if (eos >= 0 && id == (uint32_t)eos) {
			why = "<|endoftext|>";
			break;
		}
		made++;
		piece.len = 0;
		if (bpe_decode(b, &id, 1, &piece) == 0)
			buf_add(&out, piece.p, piece.len);
		for (int s = 0; s < nstop; s++) {
			char *hit = out.p ? strstr(out.p, stops[s]) : NULL;
			if (hit) {
				out.len = (size_t)(hit - out.p);
				out.p[out.len] = 0;
				stopped = 1;
				why = "a stop text";
			}
		}
		/* print what can no longer become part of a stop text */
		size_t keep = 0;
		for (int s = 0; s < nstop && !stopped; s++)
			keep = strlen(stops[s]) > keep ? strlen(stops[s]) : keep;
		if (out.len > printed + keep) {
			fwrite(out.p + printed, 1, out.len - keep - printed, stdout);
			fflush(stdout);
			printed = out.len - keep;
		}
		if (gpt2_step(&m, kv, id, lg) != 0) {
			why = "the context is full";
			break;
		}
	}
	if (out.len > printed)
		fwrite(out.p + printed, 1, out.len - printed, stdout);
	putchar('\n');
	double t2 = now_seconds();
	if (!quiet)
		fprintf(stderr, "hone: %d tokens in %.3fs (%.1f tokens/s), stopped by %s; prompt %zu tokens in %.3fs\n", made,
		        t2 - t1, t2 > t1 ? made / (t2 - t1) : 0, why, n, t1 - t0);
	buf_free(&out);
	buf_free(&piece);
	free(lg);
	free(ids);
	gpt2_kv_free(kv);
	bpe_free(b);
	gpt2_free(&m);
	return 0;
}
