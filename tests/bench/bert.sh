#!/usr/bin/env bash
# Benchmark: training steps of a BERT sequence classifier (6 layers, hidden
# 384, 6 heads, intermediate 1536, T 128, batch 16, vocab 8192), hone's
# native implementation against the same model in plain PyTorch (Debian
# python3-torch), fp32, AdamW, both on THREADS threads, in one run; and
# OpenBLAS sgemm's peak. Then LoRA's memory against full, and hone predict's
# rows/s on one core for a BERT classifier bundle.
# Usage: tests/bench/bert.sh [STEPS] [THREADS] (default 5, 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${1:-5}
TH=${2:-2}
cd "$ROOT"
make -s build/bench_bert hone
CFG="6 384 6 1536 128 16 8192"
echo "BERT classifier training steps ($CFG: layers hidden heads intermediate T batch vocab), $TH threads, fp32:"
h=$(build/bench_bert $CFG "$STEPS" "$TH")
t=$(/usr/bin/python3 tests/bench/bert_torch.py $CFG "$STEPS" "$TH")
echo "$h" | sed 's/^/  /'
echo "  $t"
hs=$(grep '^hone ' <<<"$h" | awk '{print $2}'); ts=$(awk '{print $2}' <<<"$t")
printf '  hone / torch = %.2fx (tokens/s)\n' "$(echo "$hs / $ts" | bc -l)"
echo "  $(build/bench_bert $CFG 2 "$TH" lora | grep '^memory')"
# predict: a small BERT classifier bundle, rows/s on one core
W=$(mktemp -d /tmp/hone-bench-bert-XXXXXX)
trap 'rm -rf "$W"' EXIT
. tests/toy_data.sh
(cd "$W" && toy_classes 2000 > cls.jsonl && cat > p.lua <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.8, val = 0.1, test = 0.1, seed = 1 }
local tok = tokenizer { parts.train, vocab = 500 }
local ids = tokenize { parts, tok, max_len = 64 }
local base = model { arch = "bert", n_layer = 4, n_head = 4, n_embd = 256, n_positions = 64, vocab = 500, seed = 1 }
local clf = train { ids.train, base = base, output = { label = "category" }, lr = 0.001, batch = 32, epochs = 1, seed = 1 }
export { clf, tok, to = "clf.tar.gz" }
LUA
"$ROOT/hone" run p.lua -q 2>/dev/null && taskset -c 0 "$ROOT/hone" predict clf.tar.gz --input cls.jsonl -o /dev/null 2>&1 | sed 's/^/  predict (4 layers, hidden 256, 1 core): /')
