#!/usr/bin/env bash
# Makes the files tests/hf/check_hf.py compares against transformers and peft:
#   tests/hf/prepare.sh OUT
# A toy corpus goes through hone: a trained 300-token BPE, a small GPT-2
# fine-tuned in full and exported as a bundle (OUT/bundle/, unpacked), a LoRA
# adapter on the base (OUT/base/, OUT/adapter/), and hone's own logits and
# token ids for a few texts (OUT/hone_*.json, from `hone generate --logits`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$ROOT/hone}
. "$ROOT/tests/toy_data.sh"
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
W=$(mktemp -d /tmp/hone-hf-XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
toy_docs 600 > docs.jsonl
cat > p.lua <<'LUA'
local d = ingest { "docs.jsonl" }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300, special = { "<|endoftext|>" } }
local ids = tokenize { parts, tok, max_len = 24, pack = true }
local base = model { n_layer = 2, n_head = 2, n_embd = 32, n_positions = 32, vocab = 300, seed = 1 }
local lm = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1 }
local score = evaluate { lm, ids.val, compare = base }
export { lm, tok, score, to = "bundle.tar.gz" }
train { ids.train, base = base, method = "lora", rank = 4, alpha = 8, targets = { "c_attn", "c_proj", "c_fc" },
        lr = 0.01, batch = 8, epochs = 1, seed = 1, name = "lora" }
LUA
"$HONE" run p.lua -q
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
rm -rf "$OUT/bundle" "$OUT/base" "$OUT/adapter"
mkdir -p "$OUT/bundle" "$OUT/base" "$OUT/adapter"
tar -xzf bundle.tar.gz -C "$OUT/bundle"
cp "$(obj model)"config.json "$(obj model)"model.safetensors "$OUT/base/"
cp "$(obj lora)"adapter/* "$OUT/adapter/"
texts=("the cat sat on a mat" "a dog ran to the park and the bird sang . the cat" "zebra 42, über!")
for i in 0 1 2; do
	"$HONE" generate bundle.tar.gz --prompt "${texts[$i]}" --max-tokens 1 --logits "$OUT/hone_bundle_$i.json" -q >/dev/null
	"$HONE" generate "$OUT/base" --tokenizer "$OUT/bundle/tokenizer.json" --adapter "$OUT/adapter" --prompt "${texts[$i]}" \
		--max-tokens 1 --logits "$OUT/hone_lora_$i.json" -q >/dev/null
	jq -n --arg t "${texts[$i]}" '{text: $t}' > "$OUT/text_$i.json"
done
# a classifier: GPT2ForSequenceClassification, its test rows' ids and hone's probabilities
toy_classes 300 > cls.jsonl
{ toy_cls_stages; cat <<'LUA'
local clf = train { ids.train, base = base, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1 }
evaluate { clf, ids.test }
local lc = train { ids.train, base = base, output = { label = "category" }, method = "lora", rank = 4, targets = { "c_attn", "c_fc" },
                   lr = 0.01, batch = 16, epochs = 2, seed = 1, name = "lora_cls" }
evaluate { lc, ids.test, name = "evaluate_lora" }
LUA
} > c.lua
"$HONE" run c.lua -q
rm -rf "$OUT/cls" && mkdir -p "$OUT/cls"
cp "$("$HONE" show c.lua train | awk '/^path/ {print $2}')"{config.json,model.safetensors} "$OUT/cls/"
cp "$("$HONE" show c.lua tokenize.test | awk '/^path/ {print $2}')"tokens.u32 "$OUT/cls/"
"$HONE" show c.lua tokenize.test --jsonl --limit 100000 | jq -c '{tok_off, tok_len}' > "$OUT/cls/rows.jsonl"
"$HONE" show c.lua evaluate --jsonl --limit 100000 | jq -c '{prob_city, prob_pets}' > "$OUT/cls/hone_probs.jsonl"
# its LoRA form: the adapter with the head (modules_to_save), on the language model it started from
rm -rf "$OUT/cls_lora" && mkdir -p "$OUT/cls_lora/base" "$OUT/cls_lora/adapter"
cp "$("$HONE" show c.lua model | awk '/^path/ {print $2}')"{config.json,model.safetensors} "$OUT/cls_lora/base/"
cp "$("$HONE" show c.lua lora_cls | awk '/^path/ {print $2}')"adapter/* "$OUT/cls_lora/adapter/"
"$HONE" show c.lua evaluate_lora --jsonl --limit 100000 | jq -c '{prob_city, prob_pets}' > "$OUT/cls_lora/hone_probs.jsonl"
echo "prepared $OUT"
