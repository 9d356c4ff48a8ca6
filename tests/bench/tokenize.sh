#!/usr/bin/env bash
# Benchmark: GPT-2 BPE encoding, hone against tiktoken (npm), one thread
# each, on the same text (the SpamAssassin emails, repeated to SIZE_MB).
# Both print a checksum of the ids: they must agree.
# Usage: tests/bench/tokenize.sh [SIZE_MB] (default 50)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MB=${1:-50}
DIR=${BENCH_DIR:-/tmp/hone-bench-tok}
mkdir -p "$DIR"
cd "$ROOT"
make -s build/bench_bpe data/gpt2/encoder.json >/dev/null
if [ ! -d build/node/node_modules/tiktoken ]; then
	mkdir -p build/node
	(cd build/node && npm install --silent --no-audit --no-fund tiktoken@1.0.22 >/dev/null)
fi
cp tests/bench/tiktoken_bench.mjs build/node/
if [ ! -f "$DIR/text.txt" ] || [ "$(stat -c %s "$DIR/text.txt")" -lt $((MB * 1000000)) ]; then
	HONE_CACHE=$DIR/cache ./hone run examples/spam/pipeline.lua -q
	HONE_CACHE=$DIR/cache ./hone show examples/spam/pipeline.lua ingest --jsonl --limit 100000 > "$DIR/one.txt"
	: > "$DIR/text.txt"
	while [ "$(stat -c %s "$DIR/text.txt")" -lt $((MB * 1000000)) ]; do cat "$DIR/one.txt" >> "$DIR/text.txt"; done
fi
echo "GPT-2 encoding of $(($(stat -c %s "$DIR/text.txt") / 1000000)) MB of email text (one thread each):"
h=$(build/bench_bpe data/gpt2 "$DIR/text.txt")
t=$(cd build/node && node tiktoken_bench.mjs "$DIR/text.txt")
echo "  $h"
echo "  $t"
hs=$(awk '{print $6}' <<<"$h"); ts=$(awk '{print $6}' <<<"$t")
printf '  hone / tiktoken = %.1fx   ids identical: %s\n' "$(echo "$hs / $ts" | bc -l)" \
	"$([ "$(awk '{print $NF}' <<<"$h")" = "$(awk '{print $NF}' <<<"$t")" ] && echo yes || echo NO)"
