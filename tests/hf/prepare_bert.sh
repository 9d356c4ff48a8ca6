#!/usr/bin/env bash
# Makes the files tests/hf/check_bert_hf.py compares against transformers and peft:
#   tests/hf/prepare_bert.sh OUT
# A toy corpus goes through hone: a new BERT pre-trained by masked LM
# (OUT/mlm/), fine-tuned as a classifier in full (OUT/cls/) and with LoRA
# (OUT/lora/base/ + OUT/lora/adapter/), and hone's own logits for the test
# rows from `hone forward` (OUT/*/rows.jsonl, OUT/*/hone.json).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$ROOT/hone}
. "$ROOT/tests/toy_data.sh"
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
W=$(mktemp -d /tmp/hone-hfb-XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
toy_classes 300 > cls.jsonl
cat > b.lua <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 1, stratify = "label" }
local tok = tokenizer { parts.train, vocab = 300, special = { "<|endoftext|>", "[MASK]" } }
local ids = tokenize { parts, tok, max_len = 32 }
local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, intermediate = 64, n_positions = 32, vocab = 300, seed = 1 }
local pre = train { ids.train, base = base, objective = "mlm", mask_id = 299, lr = 0.003, batch = 16, epochs = 2, seed = 1 }
local clf = train { ids.train, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "clf" }
local lc = train { ids.train, base = clf, output = { label = "category" }, method = "lora", rank = 4, targets = { "query", "value", "dense" },
                   lr = 0.01, batch = 16, epochs = 2, seed = 1, name = "lc" }
LUA
"$HONE" run b.lua -q 2>/dev/null
obj() { "$HONE" show b.lua "$1" | awk '/^path/ {print $2}'; }
tk=$(obj tokenize)test/
# the test rows' ids, as forward takes them
"$HONE" show b.lua tokenize.test --jsonl --limit 100000 | jq -c '{tok_off, tok_len}' > offs.jsonl
od -An -tu4 -v "$tk/tokens.u32" | tr -s ' ' '\n' | sed '/^$/d' > ids.txt
jq -r '"\(.tok_off) \(.tok_len)"' offs.jsonl | while read -r o n; do
	sed -n "$((o + 1)),$((o + n))p" ids.txt | jq -s -c '{input_ids: .}'
done > rows.jsonl
for m in train:mlm clf:cls; do
	rm -rf "$OUT/${m#*:}" && mkdir -p "$OUT/${m#*:}"
	cp "$(obj "${m%%:*}")"{config.json,model.safetensors} "$OUT/${m#*:}/"
	cp rows.jsonl "$OUT/${m#*:}/"
	"$HONE" forward "$OUT/${m#*:}" -i rows.jsonl -o "$OUT/${m#*:}/hone.json" -q
done
rm -rf "$OUT/lora" && mkdir -p "$OUT/lora/base" "$OUT/lora/adapter"
cp "$(obj clf)"{config.json,model.safetensors} "$OUT/lora/base/"
cp "$(obj lc)"adapter/* "$OUT/lora/adapter/"
cp rows.jsonl "$OUT/lora/"
"$HONE" forward "$(obj lc)" -i rows.jsonl -o "$OUT/lora/hone.json" -q
# a tagger on a WordPiece tokenizer: its folder, its tokenizer.json and the ids hone gave some texts
awk 'BEGIN { srand(3); split("john mary alice bob anna", n, " "); split("paris london berlin", c, " ");
	for (i = 0; i < 300; i++) printf "{\"text\": \"%s lives in %s .\", \"ner\": \"B-PER O O B-LOC O\"}\n", n[int(rand() * 5) + 1], c[int(rand() * 3) + 1] }' > ner.jsonl
cat > t.lua <<'LUA'
local d = ingest { "ner.jsonl", fields = { text = "text", ner = "ner" } }
local parts = split { d, train = 0.8, val = 0.1, test = 0.1, seed = 1 }
local tok = tokenizer { parts.train, kind = "wordpiece", vocab = 100 }
local ids = tokenize { parts, tok, tags = "ner", max_len = 16 }
local plain = tokenize { parts, tok, max_len = 16, name = "plain" }
local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, n_positions = 16, vocab = 100, seed = 1 }
train { ids.train, base = base, output = { ner = "tags" }, lr = 0.003, batch = 16, epochs = 2, seed = 1 }
LUA
"$HONE" run t.lua -q 2>/dev/null
tobj() { "$HONE" show t.lua "$1" | awk '/^path/ {print $2}'; }
rm -rf "$OUT/tagger" && mkdir -p "$OUT/tagger"
cp "$(tobj train)"{config.json,model.safetensors} "$OUT/tagger/"
cp "$(tobj tokenizer)"tokenizer.json "$OUT/tagger/"
"$HONE" show t.lua plain.test --jsonl --limit 100000 | jq -c '{tok_off, tok_len}' > toffs.jsonl
od -An -tu4 -v "$(tobj plain)test/tokens.u32" | tr -s ' ' '\n' | sed '/^$/d' > tids.txt
jq -r '"\(.tok_off) \(.tok_len)"' toffs.jsonl | while read -r o n; do
	sed -n "$((o + 1)),$((o + n))p" tids.txt | jq -s -c '{input_ids: .}'
done > "$OUT/tagger/rows.jsonl"
"$HONE" show t.lua split.test --jsonl --limit 100000 | jq -c '{text}' > "$OUT/tagger/texts.jsonl"
"$HONE" forward "$OUT/tagger" -i "$OUT/tagger/rows.jsonl" -o "$OUT/tagger/hone.json" -q
echo "prepared $OUT"
