#!/usr/bin/env bash
# GPT-2 training on the GPU end to end (make test-gpu): the same pipeline
# trained with device = "cuda" in fp32 and on the CPU, the losses close, the
# GPU's model a plain folder that the CPU evaluates, the same bits on a
# re-run; 300 steps in bf16 whose loss curve stays within 1% of fp32's.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/toy_data.sh"

toy_docs 600 > docs.jsonl
{ toy_lm_stages; cat <<'LUA'
local cpu = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1, name = "cpu" }
local gpu = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1,
                    device = "cuda", precision = "fp32", name = "gpu" }
evaluate { gpu, ids.val, compare = cpu, name = "ev" }
train { ids.train, val = ids.val, base = cpu, method = "lora", rank = 4, targets = { "c_attn", "c_fc" }, lora_dropout = 0.1,
        lr = 0.01, batch = 8, epochs = 1, seed = 1, name = "lora_cpu" }
train { ids.train, val = ids.val, base = cpu, method = "lora", rank = 4, targets = { "c_attn", "c_fc" }, lora_dropout = 0.1,
        lr = 0.01, batch = 8, epochs = 1, seed = 1, device = "cuda", precision = "fp32", name = "lora_gpu" }
local wide = model { n_layer = 4, n_head = 4, n_embd = 128, n_positions = 32, vocab = 300, seed = 2, name = "wide" }
train { ids.train, base = wide, lr = 0.0005, batch = 16, steps = 300, warmup = 30, seed = 1, device = "cuda",
        precision = "fp32", name = "c32" }
train { ids.train, base = wide, lr = 0.0005, batch = 16, steps = 300, warmup = 30, seed = 1, device = "cuda", name = "c16" }
LUA
} > p.lua
check "the pipeline trains on the GPU and on the CPU" "$HONE" run p.lua -q
metric() { "$HONE" show p.lua "$1" | grep -o "\"$2\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
vc=$(metric cpu val_loss) vg=$(metric gpu val_loss)
check "validation loss on the GPU ($vg) within 1% of the CPU's ($vc)" \
	awk -v a="$vg" -v b="$vc" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d / b < 0.01) }'
pc=$(metric ev compare_perplexity) pg=$(metric ev perplexity)
check "the GPU's model evaluates on the CPU (perplexity $pg; the CPU's model $pc)" \
	awk -v a="$pg" -v b="$pc" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d / b < 0.01) }'
lc=$(metric lora_cpu val_loss) lg=$(metric lora_gpu val_loss)
check "LoRA on the GPU: validation loss ($lg) within 1e-4 of the CPU's ($lc)" \
	awk -v a="$lg" -v b="$lc" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d / b < 1e-4) }'
check "  ... the adapter in PEFT's layout" test -s "$(obj lora_gpu)adapter/adapter_model.safetensors"
check "  ... the same trained parameter count" eq "$(metric lora_gpu trainable)" "$(metric lora_cpu trainable)"
check "  ... a Hugging Face folder like the CPU's" bash -c \
	"grep -q '\"model_type\": \"gpt2\"' '$(obj gpu)config.json' && test -s '$(obj gpu)model.safetensors'"
# generation on the GPU: the same greedy text as the CPU's
g1=$("$HONE" generate "$(obj gpu)" --tokenizer "$(obj tokenizer)" --prompt "the cat" --max-tokens 24 -q)
g2=$("$HONE" generate "$(obj gpu)" --tokenizer "$(obj tokenizer)" --prompt "the cat" --max-tokens 24 -q --device cuda)
check "hone generate --device cuda: the CPU's greedy text ($(echo $g2 | wc -w) words)" eq "$g2" "$g1"
w=$(sha256sum < "$(obj gpu)model.safetensors")
"$HONE" run p.lua -q --force gpu
check "same weights on a forced re-run on the GPU" eq "$(sha256sum < "$(obj gpu)model.safetensors")" "$w"
check "the curve is written" test -s "$(obj gpu)curve.jsonl"
losses() { grep -o '"loss": [0-9.e+-]*' "$(obj "$1")curve.jsonl" | awk '{print $2}'; }
# the curve: the mean loss over each 30 steps (10 logged points of 3 steps each)
curve() { losses "$1" | awk '{ s += $1; n++ } n == 10 { print s / n; s = 0; n = 0 }'; }
paste <(curve c16) <(curve c32) > curves.txt
sed "s/^/# curve (bf16, fp32): /" curves.txt
dev=$(awk '{ d = ($1 - $2) / $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.4f", m }' curves.txt)
check "300 steps in bf16 (the default on cuda): the loss curve within 1% of fp32's (largest gap $dev over $(wc -l < curves.txt) windows of 30 steps)" \
	awk -v d="$dev" -v n="$(wc -l < curves.txt)" 'BEGIN { exit !(n >= 9 && d < 0.01) }'
# a GPT-2 classifier (in full, then LoRA with the head saved) on both devices
toy_classes 400 > cls.jsonl
{ toy_cls_stages; cat <<'LUA'
local c1 = train { ids.train, val = ids.val, base = base, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 3, seed = 1, name = "clf_cpu" }
local c2 = train { ids.train, val = ids.val, base = base, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 3, seed = 1,
                   device = "cuda", precision = "fp32", name = "clf_gpu" }
train { ids.train, val = ids.val, base = base, output = { label = "category" }, method = "lora", rank = 4, lr = 0.01, batch = 16,
        epochs = 2, seed = 1, name = "clora_cpu" }
train { ids.train, val = ids.val, base = base, output = { label = "category" }, method = "lora", rank = 4, lr = 0.01, batch = 16,
        epochs = 2, seed = 1, device = "cuda", precision = "fp32", name = "clora_gpu" }
evaluate { c2, ids.test, name = "clf_eval" }
LUA
} > c.lua
check "classifiers train on the GPU" "$HONE" run c.lua -q
cm() { "$HONE" show c.lua "$1" | grep -o "\"$2\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
cobj() { "$HONE" show c.lua "$1" | awk '/^path/ {print $2}'; }
# the last logged training loss of a train stage's output folder
last_loss() { grep -o '"loss": [0-9.e+-]*' "$1curve.jsonl" | tail -1 | awk '{print $2}'; }
for t in clf clora; do
	a=$(last_loss "$(cobj ${t}_gpu)") b=$(last_loss "$(cobj ${t}_cpu)")
	check "$t: the GPU's last training loss ($a) within 1e-4 of the CPU's ($b); val_f1 $(cm ${t}_gpu val_f1) and $(cm ${t}_cpu val_f1)" \
		awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b > 0 && d / b < 1e-4) }'
done
check "  ... the GPU's classifier evaluates on the CPU (accuracy $(cm clf_eval accuracy))" \
	awk -v a="$(cm clf_eval accuracy)" 'BEGIN { exit !(a > 0.5) }'
# BERT: masked LM and a classifier on it, on both devices (fp32)
{ toy_cls_stages | sed 's/local base = model {.*/local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, intermediate = 64, n_positions = 32, vocab = 300, seed = 1 }/'
  cat <<'LUA'
local pre = train { ids.train, base = base, objective = "mlm", mask_id = 299, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "pre_cpu" }
train { ids.train, base = base, objective = "mlm", mask_id = 299, lr = 0.003, batch = 16, epochs = 2, seed = 1,
        device = "cuda", precision = "fp32", name = "pre_gpu" }
train { ids.train, val = ids.val, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "bclf_cpu" }
train { ids.train, val = ids.val, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1,
        device = "cuda", precision = "fp32", name = "bclf_gpu" }
LUA
} > b.lua
check "BERT trains on the GPU (masked LM, classifier)" "$HONE" run b.lua -q
bobj() { "$HONE" show b.lua "$1" | awk '/^path/ {print $2}'; }
for t in pre bclf; do
	a=$(last_loss "$(bobj ${t}_gpu)") b=$(last_loss "$(bobj ${t}_cpu)")
	check "BERT $t: the GPU's last training loss ($a) within 1e-4 of the CPU's ($b)" \
		awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b > 0 && d / b < 1e-4) }'
done
# Llama (grouped-query heads, SwiGLU, rotary): full, LoRA, prompt and prefix tuning on both devices (fp32)
{ toy_lm_stages | sed 's/local base = model {.*/local base = model { arch = "llama", n_layer = 2, n_head = 4, n_kv_head = 2, n_embd = 32, intermediate = 64, n_positions = 32, vocab = 300, seed = 1 }/'
  cat <<'LUA'
local full = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1, name = "l_cpu" }
train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1,
        device = "cuda", precision = "fp32", name = "l_gpu" }
train { ids.train, val = ids.val, base = full, method = "lora", rank = 4, lr = 0.01, batch = 8, epochs = 1, seed = 1, name = "llora_cpu" }
train { ids.train, val = ids.val, base = full, method = "lora", rank = 4, lr = 0.01, batch = 8, epochs = 1, seed = 1,
        device = "cuda", precision = "fp32", name = "llora_gpu" }
train { ids.train, val = ids.val, base = full, method = "prompt_tuning", virtual_tokens = 4, lr = 0.03, batch = 8, epochs = 1, seed = 1,
        name = "lpt_cpu" }
train { ids.train, val = ids.val, base = full, method = "prompt_tuning", virtual_tokens = 4, lr = 0.03, batch = 8, epochs = 1, seed = 1,
        device = "cuda", precision = "fp32", name = "lpt_gpu" }
train { ids.train, val = ids.val, base = full, method = "prefix_tuning", virtual_tokens = 4, lr = 0.03, batch = 8, epochs = 1, seed = 1,
        name = "lpx_cpu" }
train { ids.train, val = ids.val, base = full, method = "prefix_tuning", virtual_tokens = 4, lr = 0.03, batch = 8, epochs = 1, seed = 1,
        device = "cuda", precision = "fp32", name = "lpx_gpu" }
LUA
} > l.lua
check "Llama trains on the GPU (full, LoRA, prompt and prefix tuning)" "$HONE" run l.lua -q
lobj() { "$HONE" show l.lua "$1" | awk '/^path/ {print $2}'; }
for t in l llora lpt lpx; do
	a=$(last_loss "$(lobj ${t}_gpu)") b=$(last_loss "$(lobj ${t}_cpu)")
	check "Llama $t: the GPU's last training loss ($a) within 1e-4 of the CPU's ($b)" \
		awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b > 0 && d / b < 1e-4) }'
done
tk=$("$HONE" show l.lua tokenizer | awk '/^path/ {print $2}')
g1=$("$HONE" generate "$(lobj l_gpu)" --tokenizer "$tk" --prompt "the cat" --max-tokens 24 -q)
g2=$("$HONE" generate "$(lobj l_gpu)" --tokenizer "$tk" --prompt "the cat" --max-tokens 24 -q --device cuda)
check "Llama: hone generate --device cuda gives the CPU's greedy text ($(echo $g2 | wc -w) words)" eq "$g2" "$g1"
# hone serve --device cuda: the GPU's model served from the GPU, generate --device cuda's text
# (curl with the system's libraries: a machine that runs hone from a folder of its own libraries may hold another libcurl)
"$HONE" serve "$(lobj l_gpu)" --tokenizer "$tk" --device cuda --port 0 2> serve.log &
SP=$!
for _ in $(seq 1 200); do grep -q '^hone: serving' serve.log 2>/dev/null && break; sleep 0.05; done
SURL=http://127.0.0.1:$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' serve.log | head -1)
g3=$(env LD_LIBRARY_PATH= curl -s -m 60 "$SURL/v1/completions" -H 'Content-Type: application/json' \
	-d '{"prompt": "the cat", "max_tokens": 24, "temperature": 0}' | jq -r '.choices[0].text')
kill -TERM $SP; wait $SP
check "hone serve --device cuda: generate --device cuda's completion ($(echo $g3 | wc -w) words)" eq "$g3" "$g2"
echo "$((N - FAILS)) passed, $FAILS failed"
done_testing
