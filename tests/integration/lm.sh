#!/usr/bin/env bash
# GPT-2 as a pipeline stage: model { ... } (new, or a Hugging Face folder),
# fine-tuning with train { base = ... } on packed blocks and on
# prompt/completion rows (loss mask), evaluate's perplexity against the
# base, determinism and errors.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"

toy_docs 600 > docs.jsonl
cat > p.lua <<'LUA'
local d = ingest { "docs.jsonl", fields = { text = "text", q = "q", a = "a" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok, max_len = 24, pack = true }
local base = model { n_layer = 2, n_head = 2, n_embd = 32, n_positions = 32, vocab = 300, seed = 1 }
local lm = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1 }
evaluate { lm, ids.val, compare = base, name = "ppl" }
local lora = train { ids.train, val = ids.val, base = lm, method = "lora", rank = 4, alpha = 8, targets = { "c_attn", "c_fc" }, lora_dropout = 0.1,
                     lr = 0.01, batch = 8, epochs = 1, seed = 1, name = "lora" }
evaluate { lora, ids.val, compare = lm, name = "lora_ppl" }
local qa = tokenize { parts, tok, format = "prompt_completion", template = "{q}:", completion = "a", name = "qa" }
local sft = train { qa.train, val = qa.val, base = base, lr = 0.005, batch = 8, epochs = 6, seed = 1, name = "sft" }
evaluate { sft, qa.val, compare = base, name = "sft_ppl" }
generate { sft, tok, qa.val, compare = base, max_tokens = 8, name = "gen" }
export { lm, tok, to = "lm.tar.gz" }
LUA
check "model, fine-tuning on packed blocks and on masked records run" "$HONE" run p.lua -q
metric() { "$HONE" show p.lua "$1" | grep -o "\"$2\":[0-9.e+-]*" | cut -d: -f2; }
check "fine-tuning lowers perplexity against the base ($(metric ppl perplexity) vs $(metric ppl compare_perplexity))" \
	awk -v a="$(metric ppl perplexity)" -v b="$(metric ppl compare_perplexity)" 'BEGIN { exit !(a < b / 2) }'
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
check "the fine-tuned model is a Hugging Face folder" bash -c \
	"jq -e '.model_type == \"gpt2\" and .n_layer == 2' '$(obj train)config.json' >/dev/null && test -s '$(obj train)model.safetensors'"
check "  ... that loads as a base again" bash -c "printf 'model { from = \"%s\" }\n' '$(obj train)' > m2.lua && '$HONE' run m2.lua -q"
w=$(sha256sum < "$(obj train)model.safetensors")
"$HONE" run p.lua -q --force train
check "same weights on a forced re-run" eq "$(sha256sum < "$(obj train)model.safetensors")" "$w"
check "on masked records, perplexity on the completions falls against the base ($(metric sft_ppl perplexity) vs $(metric sft_ppl compare_perplexity))" \
	awk -v a="$(metric sft_ppl perplexity)" -v b="$(metric sft_ppl compare_perplexity)" 'BEGIN { exit !(a < b / 2) }'
check "  ... where only completion tokens are scored" eq "$(metric sft_ppl target_tokens)" \
	"$("$HONE" show p.lua qa.val --jsonl --limit 1000 | jq -s 'map(.tok_len - .prompt_len) | add')"
# answers generated for the held-out prompts, scored against the references
G=$(obj gen)generations.jsonl
check "generate answers every held-out prompt ($(wc -l < "$G") rows)" eq "$(wc -l < "$G")" "$("$HONE" show p.lua qa.val --jsonl --limit 1000 | wc -l)"
check "  ... the fine-tuned model's exact match ($(metric gen exact_match)) beats the base's ($(metric gen compare_exact_match))" \
	awk -v a="$(metric gen exact_match)" -v b="$(metric gen compare_exact_match)" 'BEGIN { exit !(a >= 0.8 && a > b) }'
check "  ... and its ROUGE-L ($(metric gen rouge_l) vs $(metric gen compare_rouge_l))" \
	awk -v a="$(metric gen rouge_l)" -v b="$(metric gen compare_rouge_l)" 'BEGIN { exit !(a >= 0.8 && a > b) }'
check "  ... each row's scores follow from its texts" bash -c \
	"jq -e 'select((.generated | gsub(\"^\\\\s+|\\\\s+$\";\"\")) == (.reference | gsub(\"^\\\\s+|\\\\s+$\";\"\")) and .exact_match != 1)' '$G' | wc -l | grep -qx 0"
g=$(sha256sum < "$G")
"$HONE" run p.lua -q --force gen --threads 1
check "  ... the same generations on one thread" eq "$(sha256sum < "$G")" "$g"

# LoRA on top of the fine-tuned model
check "LoRA trains only the adapters ($(metric lora trainable) of $(metric lora params) parameters)" \
	awk -v a="$(metric lora trainable)" -v b="$(metric lora params)" 'BEGIN { exit !(a > 0 && a * 10 < b) }'
check "  ... writes the adapter in PEFT's layout" bash -c \
	"jq -e '.peft_type == \"LORA\" and .r == 4 and .lora_alpha == 8 and .lora_dropout == 0.1 and (.target_modules | index(\"attn.c_attn\"))' '$(obj lora)adapter/adapter_config.json' >/dev/null"
check "  ... and the base with the adapter merged, which evaluates as the LoRA model did" bash -c \
	"awk -v a=\$('$HONE' show p.lua lora_ppl | grep -o '\"loss\":[0-9.]*' | cut -d: -f2) -v b=\$('$HONE' show p.lua lora | grep -o '\"val_loss\":[0-9.]*' | cut -d: -f2) 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'"
check "  ... and does not make the model worse than its base" \
	awk -v a="$(metric lora_ppl perplexity)" -v b="$(metric lora_ppl compare_perplexity)" 'BEGIN { exit !(a <= b * 1.0001) }'
check "LoRA options without method = lora" fails_with 2 "rank, alpha, targets and lora_dropout go with method" bash -c \
	"printf 'local d = ingest { \"docs.jsonl\" }\ntrain { d, base = model { n_layer = 1, n_head = 1, n_embd = 8 }, rank = 4 }\n' > e6.lua; '$HONE' run e6.lua -q"

# generation with the fine-tuned model and its tokenizer
M=$(obj train); TK=$(obj tokenizer)
g1=$("$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat" --max-tokens 12 -q)
check "hone generate continues a prompt (greedy, deterministic)" bash -c \
	"[ -n '$g1' ] && [ \"\$('$HONE' generate '$M' --tokenizer '$TK' --prompt 'the cat' --max-tokens 12 -q)\" = '$g1' ]"
check "  ... the tokenizer.json form gives the same text" eq \
	"$("$HONE" generate "$M" --tokenizer "${TK}tokenizer.json" --prompt "the cat" --max-tokens 12 -q)" "$g1"
s1=$("$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat" --max-tokens 12 --temperature 1 --top-k 20 --seed 9 -q)
check "  ... sampling with a seed repeats" eq \
	"$("$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat" --max-tokens 12 --temperature 1 --top-k 20 --seed 9 -q)" "$s1"
check "  ... a stop text ends the continuation and is not printed" bash -c \
	"out=\$('$HONE' generate '$M' --tokenizer '$TK' --prompt 'the cat' --max-tokens 40 --temperature 1 --seed 2 --stop ' the' -q); ! grep -q ' the' <<<\"\$out\""
check "  ... reports tokens/s" contains "$("$HONE" generate "$M" --tokenizer "$TK" --prompt "a dog" --max-tokens 5 2>&1 >/dev/null)" "tokens/s"
printf 'model { from = "lm.tar.gz" }\n' > mb.lua
check "model { from = BUNDLE } takes an export bundle, with the same weights" bash -c \
	"'$HONE' run mb.lua -q && cmp \"\$('$HONE' show mb.lua model --json | jq -r .path)/model.safetensors\" '$(obj train)model.safetensors'"
check "  ... from an export bundle, with its tokenizer.json" eq "$("$HONE" generate lm.tar.gz --prompt "the cat" --max-tokens 12 -q)" "$g1"
"$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat sat" --max-tokens 1 --logits lg.json -q >/dev/null
check "  ... --logits writes the prompt's ids and every position's logits" bash -c \
	"jq -e '(.ids | length) == 3 and (.logits | length) == 3 * .vocab and .vocab == 300' lg.json >/dev/null"
L=$(obj lora)
check "  ... --adapter (PEFT) gives what the merged model gives" eq \
	"$("$HONE" generate "$M" --tokenizer "$TK" --adapter "${L}adapter" --prompt "a dog" --max-tokens 12 -q)" \
	"$("$HONE" generate "$L" --tokenizer "$TK" --prompt "a dog" --max-tokens 12 -q)"
check "  ... a broken adapter is an error naming the file" fails_with 1 "adapter_config.json" bash -c \
	"mkdir -p bad && echo '{\"peft_type\": \"LORA\"}' > bad/adapter_config.json && '$HONE' generate '$M' --tokenizer '$TK' --adapter bad --prompt x"
check "  ... usage without a prompt" fails_with 2 "give MODEL, --tokenizer (unless MODEL is a bundle or a .gguf) and --prompt" "$HONE" generate "$M" --tokenizer "$TK"
check "a token id beyond the model's vocabulary" fails_with 1 "outside the model's vocabulary of 50" bash -c \
	"printf 'local d = ingest { \"docs.jsonl\" }\nlocal ids = tokenize { d, tokenizer { gpt2 = true } }\ntrain { ids, base = model { n_layer = 1, n_head = 1, n_embd = 8, n_positions = 64, vocab = 50 } }\n' > e1.lua; '$HONE' run e1.lua -q"
check "inputs with a base" fails_with 2 "the token ids are the input: no inputs" bash -c \
	"printf 'local d = ingest { \"docs.jsonl\" }\ntrain { d, base = model { n_layer = 1, n_head = 1, n_embd = 8 }, inputs = { text = \"text\" } }\n' > e2.lua; '$HONE' run e2.lua -q"
check "a classifier metric for a language model" fails_with 1 "selected on loss or perplexity" bash -c \
	"printf 'local d = ingest { \"docs.jsonl\" }\nlocal ids = tokenize { d, tokenizer { gpt2 = true } }\ntrain { ids, base = model { n_layer = 1, n_head = 1, n_embd = 8, vocab = 50257 }, metric = \"f1\" }\n' > e3.lua; '$HONE' run e3.lua -q"
mkdir -p broken && printf '{"n_layer": 2}' > broken/config.json
check "a broken Hugging Face folder" fails_with 1 "expected integers n_layer, n_head" bash -c \
	"printf 'model { from = \"broken\" }\n' > e4.lua; '$HONE' run e4.lua -q"
check "n_embd not a multiple of n_head" fails_with 2 "must be a multiple of n_head" bash -c \
	"printf 'model { n_head = 5, n_embd = 32 }\n' > e5.lua; '$HONE' run e5.lua -q"
# sequence classification: a GPT-2 with a score head on the last token
toy_classes 500 > cls.jsonl
{ toy_cls_stages; cat <<'LUA'
local clf = train { ids.train, val = ids.val, base = base, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 3, seed = 1 }
evaluate { clf, ids.test }
LUA
} > c.lua
check "a GPT-2 with a classification head trains and evaluates" "$HONE" run c.lua -q
cm() { "$HONE" show c.lua "$1" | grep -o "\"$2\":[0-9.e+-]*" | cut -d: -f2; }
check "  ... accuracy $(cm evaluate accuracy) against the baseline's $(cm evaluate baseline_accuracy)" \
	awk -v a="$(cm evaluate accuracy)" -v b="$(cm evaluate baseline_accuracy)" 'BEGIN { exit !(a >= 0.9 && b < 0.6) }'
CM=$("$HONE" show c.lua train | awk '/^path/ {print $2}')
check "  ... saved as a GPT2ForSequenceClassification folder with its classes" bash -c \
	"jq -e '.architectures == [\"GPT2ForSequenceClassification\"] and .id2label == {\"0\": \"city\", \"1\": \"pets\"} and .label2id.pets == 1' '${CM}config.json' >/dev/null"
check "  ... every test row gets class probabilities" eq \
	"$("$HONE" show c.lua evaluate --jsonl --limit 1000 | jq -s 'map(select(((.prob_city + .prob_pets) - 1 | fabs) < 1e-5)) | length')" \
	"$("$HONE" show c.lua tokenize.test --jsonl --limit 1000 | wc -l)"
w=$(sha256sum < "${CM}model.safetensors")
"$HONE" run c.lua -q --force train --threads 1
check "  ... the same weights on one thread" eq "$(sha256sum < "${CM}model.safetensors")" "$w"
check "  ... generate refuses a classifier" fails_with 1 "is a classifier" "$HONE" generate "$CM" --tokenizer "$("$HONE" show c.lua tokenizer | awk '/^path/ {print $2}')" --prompt "the cat"
sed 's/output = { label = "category" },/output = { label = "category" }, method = "lora", rank = 4, targets = { "c_attn", "c_fc" }, lr = 0.01,/' c.lua > c2.lua
check "  ... with LoRA: adapters and the head train, the base stays frozen" "$HONE" run c2.lua -q
c2() { "$HONE" show c2.lua "$1" | grep -o "\"$2\":[0-9.e+-]*" | cut -d: -f2; }
check "  ... LoRA's accuracy $(c2 evaluate accuracy) with $(c2 train trainable) of $(c2 train params) parameters trained" \
	awk -v a="$(c2 evaluate accuracy)" -v t="$(c2 train trainable)" -v p="$(c2 train params)" 'BEGIN { exit !(a >= 0.9 && t * 5 < p) }'
check "  ... the adapter is saved with the head (modules_to_save)" bash -c \
	"jq -e '.task_type == \"SEQ_CLS\" and .modules_to_save == [\"score\"]' \"\$('$HONE' show c2.lua train | awk '/^path/ {print \$2}')adapter/adapter_config.json\" >/dev/null"
check "  ... a numeric output" fails_with 2 "expected one of category, binary" bash -c \
	"sed 's/output = { label = \"category\" }/output = { label = \"number\" }/' c.lua > c3.lua && '$HONE' run c3.lua -q"

done_testing
