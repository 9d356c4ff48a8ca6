#!/usr/bin/env bash
# Benchmark: WordPiece (BERT) encoding, hone against Hugging Face's
# tokenizers (npm `tokenizers` 0.23.2, the Rust library), one thread each
# (RAYON_NUM_THREADS=1, both pinned to one core), on the same text: the
# SpamAssassin emails repeated to SIZE_MB, with a WordPiece vocabulary of
# 8,000 trained by hone on them. Both print a checksum of the ids: they must
# agree. Usage: tests/bench/wordpiece.sh [SIZE_MB] (default 20)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MB=${1:-20}
DIR=${BENCH_DIR:-/tmp/hone-bench-wp}
mkdir -p "$DIR"
cd "$ROOT"
make -s hone build/bench_wordpiece build/node/node_modules/tokenizers/package.json >/dev/null
[ -d build/node/node_modules/tokenizers ] || { echo "wordpiece bench: npm tokenizers is not installed"; exit 1; }
cat > "$DIR/p.lua" <<LUA
local mail = ingest { "$ROOT/data/spam-assassin.tgz", format = "json", members = "package/data/*/*.json",
                      fields = { text = "text" } }
tokenizer { mail, kind = "wordpiece", vocab = 8000 }
LUA
HONE_CACHE=$DIR/cache ./hone run "$DIR/p.lua" -q
tok=$(HONE_CACHE=$DIR/cache ./hone show "$DIR/p.lua" tokenizer | awk '/^path/ {print $2}')tokenizer.json
if [ ! -f "$DIR/rows.jsonl" ] || [ "$(stat -c %s "$DIR/rows.jsonl")" -lt $((MB * 1000000)) ]; then
	HONE_CACHE=$DIR/cache ./hone show "$DIR/p.lua" ingest --jsonl --limit 100000 > "$DIR/one.jsonl"
	: > "$DIR/rows.jsonl"
	while [ "$(stat -c %s "$DIR/rows.jsonl")" -lt $((MB * 1000000)) ]; do cat "$DIR/one.jsonl" >> "$DIR/rows.jsonl"; done
fi
echo "WordPiece encoding of $(($(stat -c %s "$DIR/rows.jsonl") / 1000000)) MB of email (JSON lines), vocab 8000, one thread each:"
h=$(taskset -c 0 build/bench_wordpiece "$tok" "$DIR/rows.jsonl")
t=$(cd build/node && RAYON_NUM_THREADS=1 taskset -c 0 node "$ROOT/tests/bench/hf_wordpiece_bench.mjs" "$tok" "$DIR/rows.jsonl")
echo "$h" | sed 's/^/  /'
echo "  $t"
hs=$(awk 'NR == 1 {print $6}' <<<"$h"); hn=$(awk 'NR == 2 {print $6}' <<<"$h"); ts=$(awk '{print $6}' <<<"$t")
same=$([ "$(awk 'NR == 1 {print $NF}' <<<"$h")" = "$(awk '{print $NF}' <<<"$t")" ] && \
	[ "$(awk 'NR == 2 {print $NF}' <<<"$h")" = "$(awk '{print $NF}' <<<"$t")" ] && echo yes || echo NO)
printf '  hone / HF tokenizers = %.1fx (tokens/s; %.1fx without the word cache)   ids identical: %s\n' \
	"$(echo "$hs / $ts" | bc -l)" "$(echo "$hn / $ts" | bc -l)" "$same"
