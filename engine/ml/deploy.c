#include "deploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/gguf.h"
#include "../io/json.h"

/* The type a matrix with rows of cols values gets: type, or where its rows
 * are not whole blocks, Q8_0 (blocks of 32) for a K-quant, else F16 */
static int fit(int type, size_t cols)
{
	size_t b;
	if (cols % (size_t)gguf_block(type, &b) == 0)
		return type;
	int k = type == GGUF_Q6_K || type == GGUF_Q4_K || type == GGUF_Q5_K;
	return k && cols % 32 == 0 ? GGUF_Q8_0 : GGUF_F16;
}

/* A tensor's type in a file of ftype (base: its main type). The K-quant
 * mixes as llama.cpp chooses them for GPT-2: the head Q6_K and, the
 * embedding being tied to it, the token embedding too; position
 * embeddings kept F32; attn_qkv one step up (Q5_K in Q4_K_M, Q6_K in
 * Q5_K_M); ffn_down Q6_K in the first and last eighth of the layers and
 * every third between; the rest the base. */
static int pick(int ftype, int base, const char *gg, int layer, int nl)
{
	if (ftype != GGUF_FTYPE_Q4_K_M && ftype != GGUF_FTYPE_Q5_K_M)
		return base;
	if (!strcmp(gg, "position_embd.weight"))
		return GGUF_F32;
	if (!strcmp(gg, "output.weight") || !strcmp(gg, "token_embd.weight"))
		return GGUF_Q6_K;
	if (strstr(gg, "attn_qkv"))
		return ftype == GGUF_FTYPE_Q4_K_M ? GGUF_Q5_K : GGUF_Q6_K;
	if (strstr(gg, "ffn_down") && (layer < nl / 8 || layer >= 7 * nl / 8 || (layer - nl / 8) % 3 == 2))
		return GGUF_Q6_K;
	return base;
}

/* the tokenizer's tokens by id (byte-level strings, as encoder.json has
 * them), up to the model's vocabulary (the rest: unused), and its merges */
static int put_tokenizer(herr *e, gguf_w *g, const bpe *b, int V, const char *pre)
{
	buf enc, mer;
	buf_init(&enc);
	buf_init(&mer);
	bpe_gpt2_files(b, &enc, &mer);
	jarena *ja = json_arena_new();
	jerror je;
	const jnode *root = json_parse(ja, enc.p ? enc.p : "{}", enc.len ? enc.len : 2, &je);
	int rc = root ? 0 : herr_set(e, "the tokenizer's encoder.json does not parse");
	char **tok = xcalloc((size_t)V, sizeof *tok);
	int32_t *type = xcalloc((size_t)V, sizeof *type);
	for (const jnode *k = root ? root->kid : NULL; k; k = k->next) {
		long long id;
		if (json_int(k, 0, V - 1, &id) == 0 && !tok[id])
			tok[id] = xstrndup(k->key, k->klen);
	}
	for (int i = 0; i < V; i++) {
		if (!tok[i]) {
			tok[i] = xasprintf("<|unused_%d|>", i);
			type[i] = 5; /* unused */
		} else {
			type[i] = !strcmp(tok[i], "<|endoftext|>") ? 3 : 1; /* control, normal */
		}
	}
	if (rc == 0) {
		gguf_kv_str(g, "tokenizer.ggml.model", "gpt2");
		gguf_kv_str(g, "tokenizer.ggml.pre", pre);
		gguf_kv_strs(g, "tokenizer.ggml.tokens", (const char *const *)tok, (size_t)V);
		gguf_kv_i32s(g, "tokenizer.ggml.token_type", type, (size_t)V);
		/* the merges: vocab.bpe's lines after its version line */
		size_t nm = 0, cap = 1024;
		char **m = xmalloc(cap * sizeof *m);
		char *save = NULL;
		for (char *line = strtok_r(mer.p ? mer.p : (char[]){0}, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (!strncmp(line, "#version", 8) || !*line)
				continue;
			if (nm == cap)
				m = xrealloc(m, (cap *= 2) * sizeof *m);
			m[nm++] = line;
		}
		gguf_kv_strs(g, "tokenizer.ggml.merges", (const char *const *)m, nm);
		free(m);
		int64_t eot = bpe_token_id(b, "<|endoftext|>", 13);
		uint32_t bos = eot >= 0 && eot < V ? (uint32_t)eot : 0;
		gguf_kv_u32(g, "tokenizer.ggml.bos_token_id", bos);
		gguf_kv_u32(g, "tokenizer.ggml.eos_token_id", bos);
	}
	json_arena_free(ja);
	for (int i = 0; i < V; i++)
		free(tok[i]);
	free(tok);
	free(type);
	buf_free(&enc);
	buf_free(&mer);
	return rc;
}

/* tensor name of m (HF), as [rows][cols] fp32, into the file as ggml's
 * name; transposed: HF's Conv1D [in, out] to ggml's rows of out */
static void put_tensor(gguf_w *g, const gpt2 *m, const char *hf, const char *name, int type, int transpose, size_t *bytes)
{
	const gpt2_tensor *t = gpt2_find(m, hf);
	const float *x = m->p + t->off;
	if (t->ndim == 1) {
		uint64_t ne[1] = {(uint64_t)t->shape[0]};
		gguf_tensor(g, name, GGUF_F32, 1, ne, x);
		*bytes += (size_t)t->n * 4;
		return;
	}
	size_t r = (size_t)t->shape[0], c = (size_t)t->shape[1];
	float *tmp = NULL;
	if (transpose) {
		tmp = xmalloc(r * c * sizeof *tmp);
		for (size_t i = 0; i < r; i++)
			for (size_t j = 0; j < c; j++)
				tmp[j * r + i] = x[i * c + j];
		x = tmp;
		size_t s = r;
		r = c;
		c = s;
	}
	type = fit(type, c);
	uint64_t ne[2] = {(uint64_t)c, (uint64_t)r};
	gguf_tensor(g, name, type, 2, ne, x);
	*bytes += gguf_row_bytes(type, r * c);
	free(tmp);
}

/* a block's tensors: the HF name's suffix, ggml's, and whether the weight is
 * Conv1D [in, out], transposed to ggml's rows of outputs */
static const struct {
	const char *hf, *gg;
	int tr;
} blk[] = {{"ln_1.weight", "attn_norm.weight", 0},         {"ln_1.bias", "attn_norm.bias", 0},
           {"attn.c_attn.weight", "attn_qkv.weight", 1},    {"attn.c_attn.bias", "attn_qkv.bias", 0},
           {"attn.c_proj.weight", "attn_output.weight", 1}, {"attn.c_proj.bias", "attn_output.bias", 0},
           {"ln_2.weight", "ffn_norm.weight", 0},           {"ln_2.bias", "ffn_norm.bias", 0},
           {"mlp.c_fc.weight", "ffn_up.weight", 1},         {"mlp.c_fc.bias", "ffn_up.bias", 0},
           {"mlp.c_proj.weight", "ffn_down.weight", 1},     {"mlp.c_proj.bias", "ffn_down.bias", 0}};

/* what the weights become in a file of type: each quantized matrix through
 * the type and back, blocked along ggml's rows as the file has them */
static void round_trip(float *x, size_t rows, size_t cols, int transposed, int type)
{
	float *t = xmalloc(rows * cols * sizeof *t);
	size_t r = transposed ? cols : rows, c = transposed ? rows : cols; /* the file's rows and columns */
	type = fit(type, c);
	for (size_t i = 0; i < rows; i++)
		for (size_t j = 0; j < cols; j++)
			t[transposed ? j * rows + i : i * cols + j] = x[i * cols + j];
	uint8_t *q = xmalloc(gguf_row_bytes(type, c));
	for (size_t i = 0; i < r; i++) {
		gguf_quantize(type, t + i * c, c, q);
		gguf_dequantize(type, q, c, t + i * c);
	}
	for (size_t i = 0; i < rows; i++)
		for (size_t j = 0; j < cols; j++)
			x[i * cols + j] = t[transposed ? j * rows + i : i * cols + j];
	free(q);
	free(t);
}

int deploy_round_trip(herr *e, gpt2 *m, const char *tname)
{
	int ftype, type = gguf_type_parse(tname, &ftype);
	if (type < 0)
		return herr_set(e, "quant \"%s\": expected f32, f16, q8_0, q4_0, q6_k, q4_k_m or q5_k_m", tname);
	const char *top[] = {"wte.weight", "wpe.weight"}, *gtop[] = {"output.weight", "position_embd.weight"};
	for (size_t k = 0; k < 2; k++) {
		const gpt2_tensor *t = gpt2_find(m, top[k]);
		round_trip(m->p + t->off, (size_t)t->shape[0], (size_t)t->shape[1], 0, pick(ftype, type, gtop[k], 0, 1));
	}
	for (int l = 0; l < m->cfg.n_layer; l++)
		for (size_t k = 0; k < sizeof blk / sizeof *blk; k++) {
			char hf[64];
			snprintf(hf, sizeof hf, "h.%d.%s", l, blk[k].hf);
			const gpt2_tensor *t = gpt2_find(m, hf);
			char gg[64];
			snprintf(gg, sizeof gg, "blk.%d.%s", l, blk[k].gg);
			if (t->ndim == 2)
				round_trip(m->p + t->off, (size_t)t->shape[0], (size_t)t->shape[1], blk[k].tr,
				           pick(ftype, type, gg, l, m->cfg.n_layer));
		}
	return 0;
}

int deploy_gguf(herr *e, const gpt2 *m, const bpe *b, const char *tname, const char *path, size_t *bytes)
{
	int ftype, type = gguf_type_parse(tname, &ftype);
	if (type < 0)
		return herr_set(e, "quant \"%s\": expected f32, f16, q8_0, q4_0, q6_k, q4_k_m or q5_k_m", tname);
	if (m->cfg.ncls)
		return herr_set(e, "a classifier (GPT2ForSequenceClassification): GGUF export takes a language model");
	if (bpe_vocab_size(b) > (size_t)m->cfg.vocab)
		return herr_set(e, "the tokenizer has %zu tokens, the model %d", bpe_vocab_size(b), m->cfg.vocab);
	const gpt2_config *cf = &m->cfg;
	gguf_w *g = gguf_new();
	gguf_kv_str(g, "general.architecture", "gpt2");
	gguf_kv_str(g, "general.name", "hone");
	gguf_kv_u32(g, "general.file_type", (uint32_t)ftype);
	gguf_kv_u32(g, "general.quantization_version", 2);
	gguf_kv_u32(g, "gpt2.context_length", (uint32_t)cf->n_positions);
	gguf_kv_u32(g, "gpt2.embedding_length", (uint32_t)cf->n_embd);
	gguf_kv_u32(g, "gpt2.feed_forward_length", (uint32_t)(4 * cf->n_embd));
	gguf_kv_u32(g, "gpt2.block_count", (uint32_t)cf->n_layer);
	gguf_kv_u32(g, "gpt2.attention.head_count", (uint32_t)cf->n_head);
	gguf_kv_f32(g, "gpt2.attention.layer_norm_epsilon", cf->eps);
	int rc = bpe_pattern(b) ? herr_set(e, "the tokenizer cuts text by its own regex; a gpt2 GGUF file's tokenizer is "
	                                   "GPT-2's") : put_tokenizer(e, g, b, cf->vocab, "gpt-2");
	*bytes = 0;
	put_tensor(g, m, "wte.weight", "token_embd.weight", pick(ftype, type, "token_embd.weight", 0, 1), 0, bytes);
	put_tensor(g, m, "wpe.weight", "position_embd.weight", pick(ftype, type, "position_embd.weight", 0, 1), 0, bytes);
	for (int l = 0; l < cf->n_layer; l++)
		for (size_t k = 0; k < sizeof blk / sizeof *blk; k++) {
			char hf[64], gg[64];
			snprintf(hf, sizeof hf, "h.%d.%s", l, blk[k].hf);
			snprintf(gg, sizeof gg, "blk.%d.%s", l, blk[k].gg);
			put_tensor(g, m, hf, gg, pick(ftype, type, gg, l, cf->n_layer), blk[k].tr, bytes);
		}
	put_tensor(g, m, "ln_f.weight", "output_norm.weight", type, 0, bytes);
	put_tensor(g, m, "ln_f.bias", "output_norm.bias", type, 0, bytes);
	put_tensor(g, m, "wte.weight", "output.weight", pick(ftype, type, "output.weight", 0, 1), 0, bytes); /* the tied head, written out */
	if (rc == 0)
		rc = gguf_save(e, g, path);
	gguf_free(g);
	return rc;
}

/* --- the Llama family: llama.cpp's llama and qwen2 architectures ------------------------ */

/* llama.cpp's name for the tokenizer's pre-tokenizer (it applies its own
 * regex by that name): GPT-2's rule, Llama 3's or Qwen2's pattern */
static const char *pre_name(herr *e, const bpe *b)
{
	static const char *const l3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
	                              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	static const char *const q2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
	                              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	const char *p = bpe_pattern(b);
	if (!p)
		return "gpt-2";
	if (!strcmp(p, l3))
		return "llama-bpe";
	if (!strcmp(p, q2))
		return "qwen2";
	herr_set(e, "the tokenizer's split regex is neither Llama 3's nor Qwen2's, and llama.cpp knows pre-tokenizers by name");
	herr_hint(e, "a GGUF file would tokenize otherwise than hone; keep the model in safetensors");
	return NULL;
}

/* rows of one head's q or k from transformers' rotate_half order (the
 * first half of the pairs, then the second) to llama.cpp's llama
 * architecture, which rotates adjacent pairs: row h·D + 2i + j ← h·D + j·D/2 + i */
static float *permuted(const float *x, int heads, int D, size_t cols)
{
	float *t = xmalloc((size_t)heads * (size_t)D * cols * sizeof *t);
	for (int h = 0; h < heads; h++)
		for (int i = 0; i < D / 2; i++)
			for (int j = 0; j < 2; j++)
				memcpy(t + ((size_t)h * D + 2 * (size_t)i + (size_t)j) * cols,
				       x + ((size_t)h * D + (size_t)j * (D / 2) + (size_t)i) * cols, cols * sizeof *t);
	return t;
}

/* one tensor of m ([out, in] as nn.Linear, or 1-D) as ggml's name; perm:
 * the heads whose rows to permute (0: none) */
static void put_llama(gguf_w *g, const llama *m, const char *hf, const char *gg, int type, int perm, size_t *bytes)
{
	const model_tensor *t = llama_find(m, hf);
	const float *x = m->p + t->off;
	float *tmp = perm ? permuted(x, perm, m->cfg.head_dim, t->ndim == 2 ? (size_t)t->shape[1] : 1) : NULL;
	if (tmp)
		x = tmp;
	if (t->ndim == 1) {
		uint64_t ne[1] = {(uint64_t)t->shape[0]};
		gguf_tensor(g, gg, GGUF_F32, 1, ne, x);
		*bytes += t->n * 4;
	} else {
		size_t r = (size_t)t->shape[0], c = (size_t)t->shape[1];
		type = fit(type, c);
		uint64_t ne[2] = {(uint64_t)c, (uint64_t)r};
		gguf_tensor(g, gg, type, 2, ne, x);
		*bytes += gguf_row_bytes(type, r * c);
	}
	free(tmp);
}

int deploy_gguf_llama(herr *e, const llama *m, const bpe *b, const char *tname, const char *path, size_t *bytes)
{
	int ftype, type = gguf_type_parse(tname, &ftype);
	if (type < 0)
		return herr_set(e, "quant \"%s\": expected f32, f16, q8_0, q4_0 or q6_k", tname);
	if (ftype == GGUF_FTYPE_Q4_K_M || ftype == GGUF_FTYPE_Q5_K_M)
		return herr_set(e, "quant \"%s\": the K-quant mixes are written for GPT-2; a Llama takes f32, f16, q8_0, q4_0 "
		                "or q6_k", tname);
	const llama_config *cf = &m->cfg;
	if (bpe_vocab_size(b) > (size_t)cf->vocab)
		return herr_set(e, "the tokenizer has %zu tokens, the model %d", bpe_vocab_size(b), cf->vocab);
	if (cf->mlp_bias || cf->o_bias || (cf->qkv_bias && strcmp(cf->family, "qwen2")))
		return herr_set(e, "a %s with attention_bias or mlp_bias: llama.cpp's llama architecture has no such biases",
		                cf->family);
	if (cf->rope_type == ROPE_LLAMA3)
		return herr_set(e, "llama3 rope scaling is not written to GGUF yet (llama.cpp takes it as a rope_freqs tensor)");
	const char *pre = pre_name(e, b);
	if (!pre)
		return -1;
	int qwen = !strcmp(cf->family, "qwen2");
	const char *a = qwen ? "qwen2" : "llama";
	char k[96];
	gguf_w *g = gguf_new();
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a), k)
	gguf_kv_str(g, "general.architecture", a);
	gguf_kv_str(g, "general.name", "hone");
	gguf_kv_u32(g, "general.file_type", (uint32_t)ftype);
	gguf_kv_u32(g, "general.quantization_version", 2);
	gguf_kv_u32(g, KEY("context_length"), (uint32_t)cf->max_pos);
	gguf_kv_u32(g, KEY("embedding_length"), (uint32_t)cf->hidden);
	gguf_kv_u32(g, KEY("feed_forward_length"), (uint32_t)cf->inter);
	gguf_kv_u32(g, KEY("block_count"), (uint32_t)cf->n_layer);
	gguf_kv_u32(g, KEY("attention.head_count"), (uint32_t)cf->n_head);
	gguf_kv_u32(g, KEY("attention.head_count_kv"), (uint32_t)cf->n_kv);
	gguf_kv_u32(g, KEY("attention.key_length"), (uint32_t)cf->head_dim);
	gguf_kv_u32(g, KEY("attention.value_length"), (uint32_t)cf->head_dim);
	gguf_kv_u32(g, KEY("rope.dimension_count"), (uint32_t)cf->head_dim);
	gguf_kv_f32(g, KEY("rope.freq_base"), (float)cf->theta);
	gguf_kv_f32(g, KEY("attention.layer_norm_rms_epsilon"), cf->eps);
	if (cf->rope_type == ROPE_LINEAR) {
		gguf_kv_str(g, KEY("rope.scaling.type"), "linear");
		gguf_kv_f32(g, KEY("rope.scaling.factor"), (float)cf->rope_factor);
	}
#undef KEY
	int rc = put_tokenizer(e, g, b, cf->vocab, pre);
	*bytes = 0;
	put_llama(g, m, "model.embed_tokens.weight", "token_embd.weight", type, 0, bytes);
	static const struct {
		const char *hf, *gg;
		int perm; /* 1: q's heads, 2: k's */
	} lb[] = {{"input_layernorm.weight", "attn_norm.weight", 0},       {"self_attn.q_proj.weight", "attn_q.weight", 1},
	          {"self_attn.k_proj.weight", "attn_k.weight", 2},         {"self_attn.v_proj.weight", "attn_v.weight", 0},
	          {"self_attn.q_proj.bias", "attn_q.bias", 1},             {"self_attn.k_proj.bias", "attn_k.bias", 2},
	          {"self_attn.v_proj.bias", "attn_v.bias", 0},             {"self_attn.o_proj.weight", "attn_output.weight", 0},
	          {"post_attention_layernorm.weight", "ffn_norm.weight", 0}, {"mlp.gate_proj.weight", "ffn_gate.weight", 0},
	          {"mlp.up_proj.weight", "ffn_up.weight", 0},              {"mlp.down_proj.weight", "ffn_down.weight", 0}};
	for (int l = 0; l < cf->n_layer; l++)
		for (size_t j = 0; j < sizeof lb / sizeof *lb; j++) {
			char hf[96], gg[64];
			snprintf(hf, sizeof hf, "model.layers.%d.%s", l, lb[j].hf);
			snprintf(gg, sizeof gg, "blk.%d.%s", l, lb[j].gg);
			if (!llama_find(m, hf))
				continue; /* a bias the config has not */
			/* qwen2 rotates as transformers does (NEOX order): no permutation */
			int perm = qwen ? 0 : lb[j].perm == 1 ? cf->n_head : lb[j].perm == 2 ? cf->n_kv : 0;
			put_llama(g, m, hf, gg, type, perm, bytes);
		}
	put_llama(g, m, "model.norm.weight", "output_norm.weight", type, 0, bytes);
	if (!cf->tied)
		put_llama(g, m, "lm_head.weight", "output.weight", type, 0, bytes);
	if (rc == 0)
		rc = gguf_save(e, g, path);
	gguf_free(g);
	return rc;
}

int deploy_gguf_lora(herr *e, const gpt2 *m, const lora *lo, const char *path, size_t *bytes)
{
	if (lo->nsaved)
		return herr_set(e, "the adapter trains modules beside LoRA (%s): a GGUF adapter holds LoRA weights only",
		                lo->saved[0].module);
	static const char *const gg[4] = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"};
	gguf_w *g = gguf_new();
	gguf_kv_str(g, "general.architecture", "gpt2");
	gguf_kv_str(g, "general.type", "adapter");
	gguf_kv_str(g, "general.name", "hone");
	gguf_kv_str(g, "adapter.type", "lora");
	gguf_kv_f32(g, "adapter.lora.alpha", lo->scale * (float)lo->rank); /* llama.cpp scales by alpha / rank */
	*bytes = 0;
	for (int l = 0; l < m->cfg.n_layer; l++)
		for (int s = 0; s < lo->a.nsite && s < 4; s++) {
			const float *A = lora_A(lo, l, s);
			if (!A)
				continue;
			int in = lo->a.site[s].in, out = lo->a.site[s].out, r = lo->rank;
			char name[80];
			uint64_t na[2] = {(uint64_t)in, (uint64_t)r}, nb[2] = {(uint64_t)r, (uint64_t)out};
			snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, gg[s]);
			gguf_tensor(g, name, GGUF_F32, 2, na, A);
			snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, gg[s]);
			gguf_tensor(g, name, GGUF_F32, 2, nb, A + (size_t)r * (size_t)in);
			*bytes += ((size_t)r * (size_t)in + (size_t)out * (size_t)r) * 4;
		}
	int rc = gguf_save(e, g, path);
	gguf_free(g);
	return rc;
}

/* --- reading a gpt2 GGUF back --------------------------------------------------------- */

enum { KV_U32 = 4, KV_I32 = 5, KV_F32 = 6, KV_STR = 8, KV_ARR = 9 };

static int kv_u32(const gguf_file *f, const char *k, uint32_t *v)
{
	uint32_t t;
	const uint8_t *p = gguf_get(f, k, &t);
	if (!p || t != KV_U32)
		return -1;
	memcpy(v, p, 4);
	return 0;
}

/* an array of strings: its count and where the first starts */
static const uint8_t *kv_strs(const gguf_file *f, const char *k, uint64_t *n)
{
	uint32_t t, et;
	const uint8_t *p = gguf_get(f, k, &t);
	if (!p || t != KV_ARR)
		return NULL;
	memcpy(&et, p, 4);
	memcpy(n, p + 4, 8);
	return et == KV_STR ? p + 12 : NULL;
}

/* the string at *p (u64 length, bytes), advancing *p; NULL past the end */
static const char *next_str(const gguf_file *f, const uint8_t **p, size_t *len)
{
	uint64_t l;
	if ((size_t)(f->p + f->n - *p) < 8)
		return NULL;
	memcpy(&l, *p, 8);
	if (l > (uint64_t)(f->p + f->n - *p - 8))
		return NULL;
	const char *s = (const char *)*p + 8;
	*p += 8 + l;
	*len = (size_t)l;
	return s;
}

/* the file's tokenizer as a tokenizer.json for bpe_load_hf */
static int gguf_bpe(herr *e, const gguf_file *f, const char *path, bpe **b)
{
	uint64_t nt = 0, nm = 0;
	const uint8_t *tp = kv_strs(f, "tokenizer.ggml.tokens", &nt), *mp = kv_strs(f, "tokenizer.ggml.merges", &nm);
	uint32_t t;
	const uint8_t *model = gguf_get(f, "tokenizer.ggml.model", &t);
	size_t ml = 0;
	const char *mname = model && t == KV_STR ? next_str(f, &model, &ml) : NULL;
	if (!tp || !mp || !mname || ml != 4 || memcmp(mname, "gpt2", 4))
		return herr_set(e, "%s: expected a byte-level BPE tokenizer (tokenizer.ggml.model \"gpt2\" with tokens and merges)",
		                path);
	buf j;
	buf_init(&j);
	buf_adds(&j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
	int rc = 0;
	int64_t eot = -1;
	for (uint64_t i = 0; i < nt && rc == 0; i++) {
		size_t l;
		const char *s = next_str(f, &tp, &l);
		if (!s) {
			rc = herr_set(e, "%s: tokenizer.ggml.tokens is cut short", path);
			break;
		}
		if (l == 13 && !memcmp(s, "<|endoftext|>", 13))
			eot = (int64_t)i;
		if (i)
			buf_adds(&j, ", ");
		buf_json_strn(&j, s, l);
		buf_printf(&j, ": %llu", (unsigned long long)i);
	}
	buf_adds(&j, "}, \"merges\": [");
	for (uint64_t i = 0; i < nm && rc == 0; i++) {
		size_t l;
		const char *s = next_str(f, &mp, &l);
		if (!s) {
			rc = herr_set(e, "%s: tokenizer.ggml.merges is cut short", path);
			break;
		}
		if (i)
			buf_adds(&j, ", ");
		buf_json_strn(&j, s, l);
	}
	buf_adds(&j, "]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}");
	if (eot >= 0)
		buf_printf(&j, ", \"added_tokens\": [{\"id\": %lld, \"content\": \"<|endoftext|>\"}]", (long long)eot);
	buf_adds(&j, "}");
	if (rc == 0) {
		char *what = xasprintf("%s[tokenizer]", path);
		rc = bpe_load_hf(e, b, j.p, j.len, what);
		free(what);
	}
	buf_free(&j);
	return rc;
}

/* tensor gg of the file into HF tensor hf of m (dequantized; Conv1D
 * weights transposed back) */
static int get_tensor(herr *e, const gguf_file *f, const char *path, gpt2 *m, const char *hf, const char *gg, int tr)
{
	const gguf_tinfo *t = gguf_find(f, gg);
	const gpt2_tensor *h = gpt2_find(m, hf);
	size_t n = h->n, rows = h->ndim == 2 ? (size_t)h->shape[0] : 1, cols = h->ndim == 2 ? (size_t)h->shape[1] : n;
	size_t fr = tr ? cols : rows, fc = tr ? rows : cols; /* the file's rows, columns */
	if (!t || (uint64_t)t->ne[0] != fc || (t->ndim == 2 ? t->ne[1] : 1) != fr)
		return herr_set(e, "%s: tensor %s: %s, expected %zu × %zu for this config", path, gg, t ? "another shape" : "missing",
		                fr, fc);
	float *x = m->p + h->off, *tmp = tr ? xmalloc(n * sizeof *tmp) : x;
	gguf_dequantize(t->type, t->data, n, tmp);
	if (tr) {
		for (size_t i = 0; i < fr; i++)
			for (size_t k = 0; k < fc; k++)
				x[k * cols + i] = tmp[i * fc + k];
		free(tmp);
	}
	return 0;
}

int deploy_load_gguf(herr *e, const char *path, gpt2 *m, bpe **b)
{
	gguf_file f;
	if (gguf_open(e, &f, path) != 0)
		return -1;
	uint32_t t;
	const uint8_t *ap = gguf_get(&f, "general.architecture", &t);
	size_t al = 0;
	const char *arch = ap && t == KV_STR ? next_str(&f, &ap, &al) : NULL;
	uint32_t L = 0, C = 0, H = 0, T = 0;
	float eps = 1e-5f;
	const uint8_t *ep = gguf_get(&f, "gpt2.attention.layer_norm_epsilon", &t);
	if (ep && t == KV_F32)
		memcpy(&eps, ep, 4);
	const gguf_tinfo *te = gguf_find(&f, "token_embd.weight");
	int rc = 0;
	if (!arch || al != 4 || memcmp(arch, "gpt2", 4))
		rc = herr_set(e, "%s: general.architecture \"%.*s\": hone reads GPT-2 (gpt2) GGUF files", path, (int)al,
		              arch ? arch : "");
	else if (kv_u32(&f, "gpt2.block_count", &L) || kv_u32(&f, "gpt2.embedding_length", &C) ||
	         kv_u32(&f, "gpt2.attention.head_count", &H) || kv_u32(&f, "gpt2.context_length", &T) || !te || te->ndim != 2)
		rc = herr_set(e, "%s: expected gpt2.block_count, embedding_length, attention.head_count, context_length and "
		              "token_embd.weight", path);
	if (rc == 0) {
		gpt2_config c = {(int)L, (int)H, (int)C, (int)T, (int)te->ne[1], eps, 0};
		rc = gpt2_init(e, m, &c);
	}
	if (rc == 0) {
		rc = get_tensor(e, &f, path, m, "wte.weight", "token_embd.weight", 0);
		if (rc == 0)
			rc = get_tensor(e, &f, path, m, "wpe.weight", "position_embd.weight", 0);
		for (uint32_t l = 0; l < L && rc == 0; l++)
			for (size_t k = 0; k < sizeof blk / sizeof *blk && rc == 0; k++) {
				char hf[64], gg[64];
				snprintf(hf, sizeof hf, "h.%u.%s", l, blk[k].hf);
				snprintf(gg, sizeof gg, "blk.%u.%s", l, blk[k].gg);
				rc = get_tensor(e, &f, path, m, hf, gg, blk[k].tr);
			}
		if (rc == 0)
			rc = get_tensor(e, &f, path, m, "ln_f.weight", "output_norm.weight", 0);
		if (rc == 0)
			rc = get_tensor(e, &f, path, m, "ln_f.bias", "output_norm.bias", 0);
		if (rc != 0)
			gpt2_free(m);
	}
	if (rc == 0 && b && !*b && (rc = gguf_bpe(e, &f, path, b)) != 0)
		gpt2_free(m);
	gguf_close(&f);
	return rc;
}

int deploy_gguf_q8(const gguf_file *f, int L, const uint8_t **w)
{
	static const char *const gg[4] = {"attn_qkv.weight", "attn_output.weight", "ffn_up.weight", "ffn_down.weight"};
	for (int l = 0; l <= L; l++)
		for (int k = 0; k < (l < L ? 4 : 1); k++) {
			char nm[64];
			if (l < L)
				snprintf(nm, sizeof nm, "blk.%d.%s", l, gg[k]);
			else
				snprintf(nm, sizeof nm, "output.weight");
			const gguf_tinfo *t = gguf_find(f, nm);
			if (!t || t->type != GGUF_Q8_0 || t->ndim != 2 || t->ne[0] % 32)
				return -1;
			w[4 * l + k] = t->data;
		}
	return 0;
}

int deploy_kv_q8(const gguf_file *f, const gpt2 *m, gpt2_kv *kv)
{
	const uint8_t **w = xmalloc(((size_t)m->cfg.n_layer * 4 + 1) * sizeof *w);
	int rc = deploy_gguf_q8(f, m->cfg.n_layer, w) == 0 && gpt2_kv_q8(kv, m, w) == 0 ? 0 : -1;
	free(w);
	return rc;
}
