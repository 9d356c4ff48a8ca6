#!/usr/bin/env bash
# The Llama family end to end: a new LlamaForCausalLM (grouped-query heads)
# pre-trained, fine-tuned in full and with LoRA on the seven projections,
# evaluated against its base, generating text; a Hugging Face checkpoint in
# bf16 (Qwen2, tied head) fine-tuned and saved back in bf16 with its
# config; bit-identical re-runs; the emulated device's bits; the errors a
# user meets.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"

toy_docs 400 > docs.jsonl
cat > p.lua <<'LUA'
local d = ingest { "docs.jsonl", fields = { text = "text" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok, max_len = 24, pack = true }
local base = model { arch = "llama", n_layer = 2, n_head = 4, n_kv_head = 2, n_embd = 32, n_positions = 32, vocab = 300,
                     seed = 1, name = "base" }
local full = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1, name = "full" }
local lo = train { ids.train, val = ids.val, base = full, method = "lora", rank = 4, targets = { "q_proj", "v_proj", "o_proj",
                   "gate_proj", "up_proj", "down_proj", "k_proj" }, lora_dropout = 0.1, lr = 0.01, batch = 8, epochs = 1,
                   seed = 1, name = "lora" }
evaluate { full, ids.val, compare = base, name = "ev" }
local pt = train { ids.train, val = ids.val, base = full, method = "prompt_tuning", virtual_tokens = 4, lr = 0.05, batch = 8,
                   epochs = 2, seed = 1, name = "pt" }
evaluate { pt, ids.val, compare = full, name = "evpt" }
local px = train { ids.train, val = ids.val, base = full, method = "prefix_tuning", virtual_tokens = 4, lr = 0.05, batch = 8,
                   epochs = 2, seed = 1, name = "px" }
evaluate { px, ids.val, name = "evpx" }
LUA
obj() { "$HONE" show "${F:-p.lua}" "$1" | awk '/^path/ {print $2}'; }
metric() { "$HONE" show "${F:-p.lua}" "$1" | grep -o "\"$2\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
hashes() { for s in "$@"; do sha256sum < "$(obj "$s")model.safetensors"; done | tr '\n' ' '; }
check "a Llama pipeline runs (new model, full fine-tune, LoRA, evaluate)" "$HONE" run p.lua -q
B=$(obj base)
check "  ... the base is a LlamaForCausalLM with grouped-query heads" bash -c \
	"grep -q '\"LlamaForCausalLM\"' '${B}config.json' && grep -q '\"num_key_value_heads\": 2' '${B}config.json'"
check "  ... training lowers the validation perplexity ($(metric ev perplexity) < $(metric ev compare_perplexity))" \
	awk -v a="$(metric ev perplexity)" -v b="$(metric ev compare_perplexity)" 'BEGIN { exit !(a < b / 2) }'
check "  ... evaluate's perplexity is train's best (the same forward)" awk -v a="$(metric ev perplexity)" \
	-v b="$(metric full val_perplexity)" 'BEGIN { exit !(a - b < 1e-9 * b && b - a < 1e-9 * b) }'
L=$(obj lora)
check "  ... LoRA saves a PEFT adapter on the seven projections" bash -c \
	"grep -q '\"peft_type\": \"LORA\"' '${L}adapter/adapter_config.json' && grep -q down_proj '${L}adapter/adapter_config.json' && test -s '${L}adapter/adapter_model.safetensors'"
check "  ... and trains only the adapters" eq "$(metric lora trainable)" "$((2 * 4 * (32 + 32 + 32 + 16 + 32 + 16 + 32 + 32 + 32 + 96 + 32 + 96 + 96 + 32)))"
P=$(obj pt)
check "prompt tuning trains 4 virtual tokens only (4 x 32 = 128 parameters), the base unchanged" bash -c \
	"[ '$(metric pt trainable)' = 128 ] && cmp -s '${P}model.safetensors' '$(obj full)model.safetensors'"
check "  ... its adapter is PEFT's PROMPT_TUNING (prompt_embeddings [4, 32])" bash -c \
	"jq -e '.peft_type == \"PROMPT_TUNING\" and .num_virtual_tokens == 4 and .token_dim == 32' '${P}adapter/adapter_config.json' >/dev/null"
check "  ... evaluate takes the virtual tokens with the folder (its perplexity is train's)" awk -v a="$(metric evpt perplexity)" \
	-v b="$(metric pt val_perplexity)" 'BEGIN { exit !(a - b < 1e-9 * b && b - a < 1e-9 * b) }'
check "  ... and they change the model's answers: perplexity $(metric evpt perplexity) against $(metric evpt compare_perplexity)" \
	bash -c "[ '$(metric evpt perplexity)' != '$(metric evpt compare_perplexity)' ]"
check "  ... hone generate runs it (the virtual tokens first)" bash -c "'$HONE' generate '$P' --tokenizer '$(obj tokenizer)' --prompt 'the cat' --max-tokens 4 -q | grep -q ."
X=$(obj px)
check "prefix tuning trains 4 virtual keys and values per layer (4 x 2 layers x 2 x 16 = 256 parameters)" eq "$(metric px trainable)" 256
check "  ... PEFT's PREFIX_TUNING adapter; evaluate and generate take it with the folder" bash -c \
	"jq -e '.peft_type == \"PREFIX_TUNING\" and .token_dim == 16 and .num_layers == 2' '${X}adapter/adapter_config.json' >/dev/null && \
	 awk -v a='$(metric evpx perplexity)' -v b='$(metric px val_perplexity)' 'BEGIN { exit !(a - b < 1e-9 * b && b - a < 1e-9 * b) }' && \
	 '$HONE' generate '$X' --tokenizer '$(obj tokenizer)' --prompt 'the cat' --max-tokens 4 -q | grep -q ."
h1=$(hashes full lora)
TK=$(obj tokenizer) M=$(obj full)
check "hone generate runs a Llama with the cache" bash -c "'$HONE' generate '$M' --tokenizer '$TK' --prompt 'the cat' --max-tokens 8 -q | grep -q ."
check "  ... --adapter gives what the merged model gives" eq \
	"$("$HONE" generate "$M" --tokenizer "$TK" --adapter "${L}adapter" --prompt "a dog" --max-tokens 10 -q)" \
	"$("$HONE" generate "$L" --tokenizer "$TK" --prompt "a dog" --max-tokens 10 -q)"
check "  ... --quant says it is for GPT-2" fails_with 1 "for GPT-2 models" "$HONE" generate "$M" --tokenizer "$TK" --prompt a --quant q8_0
rm -rf cache
check "a fresh cache gives the same bits" "$HONE" run p.lua -q
check "  ... full and LoRA weights identical" eq "$(hashes full lora)" "$h1"
check "device = \"cuda\" (emulated on the CPU): the CPU's bits" env HONE_DEVICE_EMULATE=1 "$HONE" run p.lua -q --device cuda
check "  ... full and LoRA weights identical" eq "$(F=p.lua; for s in full lora; do sha256sum < "$(HONE_DEVICE_EMULATE=1 "$HONE" show p.lua $s --device cuda | awk '/^path/ {print $2}')model.safetensors"; done | tr '\n' ' ')" "$h1"

# a Hugging Face checkpoint in bf16 (Qwen2: q/k/v biases, tied head, one kv
# head; made by tests/fixtures/llama/gen_llama_torch.py): fine-tuned, saved
# back in bf16 with its own config.json
sed 's|^local base = model {.*|local base = model { from = "q2" }|; /^ *seed = 1, name = "base" }/d' p.lua > q.lua
cp -r "$ROOT/tests/fixtures/llama/qwen2_v300" q2
F=q.lua
check "a bf16 Qwen2 checkpoint fine-tunes, full and LoRA" "$HONE" run q.lua -q
Q=$(obj full)
check "  ... saved back in bf16 with its config.json" bash -c \
	"head -c 2000 '${Q}model.safetensors' | grep -q '\"BF16\"' && cmp -s '${Q}config.json' q2/config.json"
check "  ... the weights moved" bash -c "! cmp -s '${Q}model.safetensors' q2/model.safetensors"
F=p.lua

# GGUF for llama.cpp: llama's architecture (q and k rows permuted to its
# rotation) and qwen2's (biases, tied head), loaded by a real llama.cpp
# (node-llama-cpp's prebuilt binaries): its tokenizer gives hone's ids and
# its next-token probabilities hone's forward
LJS=$ROOT/build/llama
G=$(obj full)
TEXT="the cat sat on a mat and the dog ran to the park"
for t in f32 f16 q8_0; do
	check "hone quantize --to $t writes a Llama as GGUF" bash -c "'$HONE' quantize '$G' --tokenizer '$TK' --to $t -o l_$t.gguf | grep -q \"llama.cpp's llama architecture\""
done
check "  ... a K-quant mix is refused for a Llama, saying what it takes" fails_with 1 "a Llama takes f32, f16" \
	"$HONE" quantize "$G" --tokenizer "$TK" --to q4_k_m -o x.gguf
"$HONE" quantize q2 --tokenizer "$TK" --to f32 -o q_f32.gguf >/dev/null
if [ -f "$LJS/node_modules/node-llama-cpp/package.json" ]; then
	cp "$ROOT/tests/node/gguf_probs.mjs" "$LJS/"
	"$HONE" generate "$G" --tokenizer "$TK" --prompt "$TEXT" --max-tokens 1 -q --logits hl.json >/dev/null
	for t in f32 f16 q8_0; do
		(cd "$LJS" && node gguf_probs.mjs "$WORK/l_$t.gguf" "$TEXT" 2>/dev/null) > ll_$t.json
		tol=1e-3
		[ $t = q8_0 ] && tol=2e-2
		r=$("$ROOT/tests/integration/gguf_compare.py" hl.json ll_$t.json $tol)
		check "llama.cpp loads the Llama's $t file: $r" "$ROOT/tests/integration/gguf_compare.py" hl.json ll_$t.json $tol
	done
	"$HONE" generate q2 --tokenizer "$TK" --prompt "$TEXT" --max-tokens 1 -q --logits hq.json >/dev/null
	(cd "$LJS" && node gguf_probs.mjs "$WORK/q_f32.gguf" "$TEXT" 2>/dev/null) > lq.json
	r=$("$ROOT/tests/integration/gguf_compare.py" hq.json lq.json 1e-3)
	check "llama.cpp loads the Qwen2 (qwen2 architecture, bf16 weights): $r" "$ROOT/tests/integration/gguf_compare.py" hq.json lq.json 1e-3
else
	echo "# skipped: node-llama-cpp not installed in build/llama"
fi

# chat data: OpenAI-style messages rendered with ChatML, the loss on the
# assistant's turns only (their content and <|im_end|>), a Llama trained on it
awk 'BEGIN { srand(5); split("the cat dog sat ran on a mat park tree bird sang", w, " ");
	for (i = 0; i < 120; i++) { q = ""; a = ""; for (k = 0; k < 5; k++) q = q " " w[int(rand() * 11) + 1];
		for (k = 0; k < 4; k++) a = a " " w[int(rand() * 11) + 1];
		printf "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}", q, a;
		if (i % 3 == 0) printf ", {\"role\": \"user\", \"content\": \"more\"}, {\"role\": \"assistant\", \"content\": \"%s\"}", toupper(a);
		print "]}" } }' > chat.jsonl
cat > c.lua <<'LUA'
local d = ingest { "chat.jsonl", fields = { messages = "messages" }, types = { messages = "json" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { d, fields = { "messages" }, vocab = 400, special = { "<|im_start|>", "<|im_end|>", "<|endoftext|>" } }
local ids = tokenize { parts, tok, format = "chat", max_len = 96 }
local base = model { arch = "llama", n_layer = 2, n_head = 2, n_embd = 32, n_positions = 128, vocab = 400, seed = 1 }
train { ids.train, val = ids.val, base = base, lr = 0.01, batch = 8, epochs = 8, seed = 1, name = "chat" }
LUA
F=c.lua
check "chat data (format = \"chat\", ChatML by the tokenizer's tokens) trains a Llama" "$HONE" run c.lua -q
T=$(obj tokenize)train/
check "  ... tokenize.json records the template" bash -c "grep -q '\"chat_template\": \"chatml\"' '${T}tokenize.json'"
IM=$(jq -r '.model.vocab["<|im_end|>"]' "$(obj tokenizer)tokenizer.json")
paste -d' ' <(od -An -tu4 -v -w4 "${T}tokens.u32" | tr -d ' ') <(od -An -tu1 -v -w1 "${T}mask.u8" | tr -d ' ') > tm.txt
rows=$("$HONE" show c.lua split.train --jsonl --limit 100000)
A=$(grep -o assistant <<<"$rows" | wc -l) U=$(grep -o user <<<"$rows" | wc -l) S=$(grep -o system <<<"$rows" | wc -l)
check "  ... <|im_end|> is trained once per assistant turn ($A), never after the $U user and $S system turns" \
	eq "$(awk -v im="$IM" '$1 == im && $2 == 1' tm.txt | wc -l) $(awk -v im="$IM" '$1 == im && $2 == 0' tm.txt | wc -l)" "$A $((U + S))"
CM=$(obj chat) CT=$(obj tokenizer)
IS=$(jq -r '.model.vocab["<|im_start|>"]' "${CT}tokenizer.json")
"$HONE" generate "$CM" --tokenizer "$CT" --chat --system "be brief" --prompt "the cat sat" --max-tokens 8 --logits cl.json > chat.out 2> chat.err
check "hone generate --chat renders the messages with the model's template (<|im_start|>system ... user ... <|im_start|>assistant)" \
	bash -c "jq -e '.ids[0] == $IS and ([.ids[] | select(. == $IM)] | length) == 2 and .ids[-3] == $IS' cl.json >/dev/null"
check "  ... and stops at the end of the assistant's turn, or after --max-tokens" bash -c "grep -Eq 'stopped by (the end token|max tokens)' chat.err"
check "  ... a template whose tokens the tokenizer lacks is an error" fails_with 1 "writes <|begin_of_text|>" \
	"$HONE" generate "$CM" --tokenizer "$CT" --chat --template llama3 --prompt x
# hone serve with the chat Llama: the chat completion is hone generate --chat's answer
"$HONE" serve "$CM" --tokenizer "$CT" --port 0 2> serve.log &
SP=$!
for _ in $(seq 1 200); do grep -q '^hone: serving' serve.log 2>/dev/null && break; kill -0 $SP 2>/dev/null || break; sleep 0.05; done
SU=http://127.0.0.1:$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' serve.log | head -1)
check "hone serve takes the Llama folder (its chat template from tokenize.json)" bash -c "grep -q '(Llama, 2 layers' serve.log && grep -q 'chat template chatml' serve.log"
curl -s -m 30 "$SU/v1/chat/completions" -H 'Content-Type: application/json' \
	-d '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat sat"}], "temperature": 0, "max_tokens": 8}' > sc.json
check "  ... its chat completion is hone generate --chat's answer ($(cat chat.out | xargs))" bash -c \
	"[ -n \"\$(xargs < chat.out)\" ] && [ \"\$(jq -r '.choices[0].message.content' sc.json)\" = \"\$(cat chat.out)\" ]"
kill -TERM $SP 2>/dev/null; wait $SP 2>/dev/null
sed 's/"<|im_start|>", //; s/format = "chat",/format = "chat", template = "chatml",/' c.lua > e4.lua
check "  ... a tokenizer without the template's tokens is an error naming the token" fails_with 1 "writes <|im_start|>, which the tokenizer does not have" "$HONE" run e4.lua -q
sed 's/"role": "user"/"role": "human"/' chat.jsonl > bad.jsonl
sed 's/chat.jsonl/bad.jsonl/' c.lua > e5.lua
check "  ... a message with another role is an error naming the row and key" fails_with 1 "row 1: messages: messages[1].role" "$HONE" run e5.lua -q
F=p.lua

# errors
sed 's/n_kv_head = 2/n_kv_head = 3/' p.lua > e1.lua
check "n_head not a multiple of n_kv_head" fails_with 2 "multiple of n_kv_head 3" "$HONE" run e1.lua -q
sed 's/targets = { "q_proj"/targets = { "c_attn", "q_proj"/' p.lua > e2.lua
check "a GPT-2 LoRA target on a Llama names the Llama's" fails_with 1 "q_proj" "$HONE" run e2.lua -q
{ cat p.lua; echo 'train { ids.train, base = full, output = { text = "category" }, name = "cls" }'; } > e3.lua
check "a classification head on a Llama is refused, saying what has one" fails_with 1 "GPT-2 and BERT bases have one" "$HONE" run e3.lua -q
done_testing
