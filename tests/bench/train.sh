#!/usr/bin/env bash
# Benchmark: training throughput of the embedding-bag + MLP classifier,
# hone's train stage against the same model, optimizer, schedule and batch in
# PyTorch (Debian python3-torch), both on THREADS threads, on the SpamAssassin
# train split (tokenized by the spam example). Then `hone predict` on the
# test emails repeated to about 20,000 rows, one core.
# Usage: tests/bench/train.sh [EPOCHS] [THREADS] (default 3, 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EPOCHS=${1:-3}
THREADS=${2:-2}
DIR=${BENCH_DIR:-/tmp/hone-bench-train}
mkdir -p "$DIR"
cd "$ROOT"
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "train.sh: needs python3-torch (make deps-bench)"; exit 1; }
export HONE_CACHE=$DIR/cache
./hone run examples/spam/pipeline.lua -q
obj() { ./hone show examples/spam/pipeline.lua "$1" | awk '/^path/ {print $2}'; }
rm -rf "$DIR/ids_train" && cp -r "$(obj tokenize.train)" "$DIR/ids_train" && chmod -R u+w "$DIR/ids_train"
rm -f "$DIR/ids_train/.hone-manifest"
./hone show examples/spam/pipeline.lua tokenize.train --jsonl --limit 1000000 > "$DIR/train_rows.jsonl"
# the model of the example: dim 64, 65,536 bigram buckets, one hidden layer of 64
cat > "$DIR/bench.lua" <<LUA
train { "ids_train", inputs = { text = "text" }, output = { label = "category" },
        embedding_dim = 64, bigrams = 65536, layers = { 64 }, dropout = 0.1,
        lr = 0.005, batch = 32, epochs = $EPOCHS, warmup = 50, schedule = "cosine", seed = 1 }
LUA
(cd "$DIR" && HONE_CACHE=$DIR/cache-bench "$ROOT/hone" run bench.lua --force train --threads "$THREADS" -q)
hrate=$(cd "$DIR" && HONE_CACHE=$DIR/cache-bench "$ROOT/hone" runs -1 | grep -o '"examples_per_s":[0-9]*' | cut -d: -f2)
t=$(/usr/bin/python3 tests/bench/train_torch.py "$DIR/train_rows.jsonl" "$DIR/ids_train/tokens.u32" "$THREADS" "$EPOCHS" 32 64 65536 64 0.005 50)
trate=$(grep -o '= [0-9]*' <<<"$t" | tr -d '= ')
echo "training, $(wc -l < "$DIR/train_rows.jsonl") emails x $EPOCHS epochs, batch 32, $THREADS threads:"
echo "  hone:  $hrate examples/s"
echo "  $t"
printf '  hone / torch = %.2fx\n' "$(echo "$hrate / $trate" | bc -l)"
# prediction: the test split's emails repeated to >= 20,000 rows, one core
./hone show examples/spam/pipeline.lua split.test --jsonl --limit 1000000 > "$DIR/test.jsonl"
: > "$DIR/test_many.jsonl"
while [ "$(wc -l < "$DIR/test_many.jsonl")" -lt 20000 ]; do cat "$DIR/test.jsonl" >> "$DIR/test_many.jsonl"; done
bundle=$(obj export)bundle.tar.gz
echo "hone predict, $(wc -l < "$DIR/test_many.jsonl") emails ($(($(stat -c %s "$DIR/test_many.jsonl") / 1000000)) MB JSONL), one core:"
for i in 1 2 3; do taskset -c 0 ./hone predict "$bundle" --input "$DIR/test_many.jsonl" --output /dev/null 2>&1 | sed 's/^hone: /  /'; done
