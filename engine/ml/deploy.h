/*
 * deploy — a GPT-2 as a GGUF file in llama.cpp's gpt2 architecture (its
 * tensor names and keys, the byte-level BPE tokenizer), weights as F32,
 * F16 or Q8_0 (norms and biases F32). What `hone quantize` and
 * `export { format = "gguf" }` write; docs/deploy.md describes the file.
 *
 * Relies on: io/gguf, io/bpe, io/json, models/gpt2.
 */
#ifndef HONE_DEPLOY_H
#define HONE_DEPLOY_H

#include <stddef.h>

#include "../io/bpe.h"
#include "../models/gpt2.h"
#include "../models/llama.h"

/* m with tokenizer b (at most m's vocabulary) as type ("f32", "f16",
 * "q8_0") into path; *bytes: the tensors' bytes. Errors name the type or
 * the tokenizer. */
int deploy_gguf(herr *e, const gpt2 *m, const bpe *b, const char *type, const char *path, size_t *bytes);
/* A LoRA adapter of m as a GGUF adapter (general.type "adapter",
 * adapter.lora.alpha), which llama.cpp applies to the base at load time:
 * per adapted weight, <the base tensor>.lora_a [rank rows of in] and
 * .lora_b [out rows of rank] in F32 (PEFT's lora_A and lora_B as they are),
 * alpha written so that alpha / rank is the adapter's scale. Adapters with
 * saved modules (a classifier's head) are refused. */
/* m's weights as a file of type would hold them: every matrix deploy_gguf
 * quantizes, through the type and back (evaluate { quant }) */
int deploy_round_trip(herr *e, gpt2 *m, const char *type);
/* A gpt2 GGUF file (hone's, or llama.cpp's for a GPT-2) as a model in fp32
 * (every tensor dequantized; the head tied to token_embd, as GPT-2's is),
 * and unless *b is set its byte-level tokenizer. Errors name the file and
 * the key or tensor. */
int deploy_load_gguf(herr *e, const char *path, gpt2 *m, bpe **b);
/* A gpt2 file's Q8_0 matrices as they are, for gpt2_kv_q8: w[4·l + k] layer
 * l's attn_qkv, attn_output, ffn_up, ffn_down, w[4·L] the output head (all
 * must be Q8_0 with whole blocks; -1 if not, nothing set) */
struct gguf_file;
int deploy_gguf_q8(const struct gguf_file *f, int L, const uint8_t **w);
/* kv's decode steps on f's Q8_0 matrices (gpt2_kv_q8); -1 when the file's
 * matrices are not all Q8_0 (kv unchanged). f must stay open while kv
 * decodes. */
int deploy_kv_q8(const struct gguf_file *f, const gpt2 *m, gpt2_kv *kv);
int deploy_gguf_lora(herr *e, const gpt2 *m, const lora *lo, const char *path, size_t *bytes);
/* A Llama-family model in llama.cpp's llama architecture (Llama, Mistral:
 * q and k rows permuted to its adjacent-pair rotation) or qwen2 (q/k/v
 * biases; no permutation), the byte-level tokenizer with its pre-tokenizer
 * by llama.cpp's name (gpt-2, llama-bpe, qwen2); f32, f16, q8_0, q4_0 or
 * q6_k. MLP and o_proj biases and llama3 rope scaling are errors. */
int deploy_gguf_llama(herr *e, const llama *m, const bpe *b, const char *type, const char *path, size_t *bytes);

#endif
