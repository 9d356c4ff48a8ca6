/*
 * model — a base model (GPT-2, BERT or the Llama family) as a pipeline artifact: a Hugging Face folder
 * (`from`, content-hashed like any source; sharded or not, with or without
 * the transformer. prefix), or a new one initialized from a seed as GPT-2
 * is (for pre-training). The output is always the same plain layout:
 * config.json + model.safetensors (HF names, no prefix; F32, or for the
 * Llama family the dtype the checkpoint came in, with its config.json).
 */
#include <stdlib.h>
#include <string.h>

#include "../ml/bundle.h"
#include "../models/bert.h"
#include "../models/gpt2.h"
#include "../models/llama.h"
#include "../nn/nn.h"
#include "stages.h"

/* the output folder made (the model's save writes into it) */
static int out_dir(kctx *c, const char *outdir)
{
	char *dir = NULL;
	int rc = kctx_out_path(c, outdir, "config.json", &dir);
	free(dir);
	return rc;
}

static void shape_metrics(kctx *c, size_t params, int layers, int embd, int vocab)
{
	kctx_metric(c, "params", (double)params);
	kctx_metric(c, "n_layer", layers);
	kctx_metric(c, "n_embd", embd);
	kctx_metric(c, "vocab", vocab);
}

/* a BERT: a folder loaded, or a new BertForMaskedLM for pre-training */
static int k_bert(kctx *c, const hval *p, const kinput *from, const char *outdir)
{
	bert m;
	int rc;
	if (from) {
		rc = bert_load_dir(&c->err, &m, from->path);
	} else {
		bert_config cfg = {(int)hval_get_int(p, "n_layer", 6), (int)hval_get_int(p, "n_head", 6),
		                   (int)hval_get_int(p, "n_embd", 384), (int)hval_get_int(p, "intermediate", 1536),
		                   (int)hval_get_int(p, "n_positions", 256), (int)hval_get_int(p, "type_vocab", 2),
		                   (int)hval_get_int(p, "vocab", 8192), 1e-12f, NN_GELU_ERF, BERT_MLM, 0, 0, 0, 0.0f};
		if (cfg.hidden % cfg.n_head)
			return kctx_fail(c, "model: n_embd %d is not a multiple of n_head %d", cfg.hidden, cfg.n_head);
		rc = bert_init(&c->err, &m, &cfg);
		if (rc == 0)
			bert_init_random(&m, (uint64_t)hval_get_int(p, "seed", 0));
	}
	if (rc)
		return -1;
	rc = out_dir(c, outdir);
	if (rc == 0)
		rc = bert_save_dir(&c->err, &m, NULL, outdir);
	if (rc == 0)
		shape_metrics(c, m.nparams, m.cfg.n_layer, m.cfg.hidden, m.cfg.vocab);
	bert_free(&m);
	return rc;
}

/* a Llama-family decoder: a folder loaded (config.json and dtype kept), or
 * a new LlamaForCausalLM for pre-training */
static int k_llama(kctx *c, const hval *p, const kinput *from, const char *outdir)
{
	llama m;
	int rc;
	if (from) {
		rc = llama_load_dir(&c->err, &m, from->path);
	} else {
		int C = (int)hval_get_int(p, "n_embd", 384), H = (int)hval_get_int(p, "n_head", 6);
		/* SwiGLU's usual width: 8/3 of the embedding, a multiple of 32 */
		int I = (int)hval_get_int(p, "intermediate", (C * 8 / 3 + 31) / 32 * 32);
		llama_config cfg = {.n_layer = (int)hval_get_int(p, "n_layer", 6), .hidden = C, .inter = I, .n_head = H,
		                    .n_kv = (int)hval_get_int(p, "n_kv_head", H), .head_dim = H > 0 ? C / H : 0,
		                    .max_pos = (int)hval_get_int(p, "n_positions", 256), .vocab = (int)hval_get_int(p, "vocab", 8192),
		                    .eps = 1e-5f, .theta = hval_get_num(p, "rope_theta", 10000), .tied = hval_get_bool(p, "tie", 0),
		                    .family = "llama"};
		if (H < 1 || C % H || (C / H) % 2)
			return kctx_fail(c, "model: n_embd %d is not a multiple of n_head %d with an even head size", C, H);
		if (cfg.n_kv < 1 || H % cfg.n_kv)
			return kctx_fail(c, "model: n_head %d is not a multiple of n_kv_head %d", H, cfg.n_kv);
		if (cfg.n_layer < 1 || I < 1 || cfg.max_pos < 1 || cfg.vocab < 1 || !(cfg.theta > 0))
			return kctx_fail(c, "model: n_layer, intermediate, n_positions, vocab and rope_theta must be positive");
		rc = llama_init(&c->err, &m, &cfg);
		if (rc == 0)
			llama_init_random(&m, (uint64_t)hval_get_int(p, "seed", 0));
	}
	if (rc)
		return -1;
	rc = out_dir(c, outdir);
	if (rc == 0)
		rc = llama_save_dir(&c->err, &m, NULL, outdir);
	if (rc == 0)
		shape_metrics(c, m.nparams, m.cfg.n_layer, m.cfg.hidden, m.cfg.vocab);
	llama_free(&m);
	return rc;
}

static int k_model(kctx *c, const hval *p, const kinput *in, size_t nin, const char *outdir)
{
	const kinput *from = kinput_slot(in, nin, "from");
	const char *an = hval_get_str(p, "arch", "gpt2");
	model_arch arch = !strcmp(an, "bert") ? ARCH_BERT : !strcmp(an, "llama") ? ARCH_LLAMA : ARCH_GPT2;
	if (!from && strcmp(an, "gpt2") && strcmp(an, "bert") && strcmp(an, "llama"))
		return kctx_fail(c, "model: arch: expected \"gpt2\", \"bert\" or \"llama\", got \"%s\"", an);
	if (from && from->is_dir && model_detect_dir(&c->err, from->path, &arch) != 0)
		return herr_prefix(&c->err, "model: from %s", from->label);
	if (arch == ARCH_BERT)
		return k_bert(c, p, from, outdir);
	if (arch == ARCH_LLAMA)
		return k_llama(c, p, from, outdir);
	gpt2 m;
	int rc;
	if (from) {
		if (from->is_dir) {
			rc = gpt2_load_dir(&c->err, &m, from->path);
		} else {
			/* an export bundle, as hone generate takes */
			bundle bd;
			rc = bundle_read(&c->err, &bd, from->path, (size_t)16 << 30);
			if (rc == 0) {
				rc = gpt2_load_bundle(&c->err, &m, &bd, from->label);
				bundle_free(&bd);
			}
			if (rc)
				herr_prefix(&c->err, "model: from");
		}
	} else {
		gpt2_config cfg = {(int)hval_get_int(p, "n_layer", 6), (int)hval_get_int(p, "n_head", 6),
		                   (int)hval_get_int(p, "n_embd", 384), (int)hval_get_int(p, "n_positions", 256),
		                   (int)hval_get_int(p, "vocab", 8192), 1e-5f, 0};
		if (cfg.n_embd % cfg.n_head)
			return kctx_fail(c, "model: n_embd %d is not a multiple of n_head %d", cfg.n_embd, cfg.n_head);
		rc = gpt2_init(&c->err, &m, &cfg);
		if (rc == 0)
			gpt2_init_random(&m, (uint64_t)hval_get_int(p, "seed", 0));
	}
	if (rc)
		return -1;
	rc = out_dir(c, outdir);
	if (rc == 0)
		rc = gpt2_save_dir(&c->err, &m, NULL, outdir);
	if (rc == 0)
		shape_metrics(c, m.nparams, m.cfg.n_layer, m.cfg.n_embd, m.cfg.vocab);
	gpt2_free(&m);
	return rc;
}

const kernel_def stage_model = {"model", 1, k_model, NULL};
