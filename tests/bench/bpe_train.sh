#!/usr/bin/env bash
# Benchmark: training a byte-level BPE at vocab 8,000, hone's tokenizer stage
# against SentencePiece's spm_train --model_type=bpe (Debian sentencepiece),
# one thread each, on the same text: the first 90% of the SpamAssassin emails
# (their lines), repeated to SIZE_MB. Then the bytes per token of each
# tokenizer on the held-out last 10% of the emails.
# Usage: tests/bench/bpe_train.sh [SIZE_MB] (default 50)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MB=${1:-50}
DIR=${BENCH_DIR:-/tmp/hone-bench-bpe}
mkdir -p "$DIR"
cd "$ROOT"
command -v spm_train >/dev/null || { echo "bpe_train.sh: needs spm_train (make deps-bench)"; exit 1; }
export HONE_CACHE=$DIR/cache
./hone run examples/spam/pipeline.lua -q
./hone show examples/spam/pipeline.lua ingest --jsonl --limit 100000 | jq -r .text > "$DIR/all.txt"
n=$(wc -l < "$DIR/all.txt")
head -n $((n * 9 / 10)) "$DIR/all.txt" > "$DIR/one.txt"
tail -n +$((n * 9 / 10 + 1)) "$DIR/all.txt" > "$DIR/heldout.txt"
: > "$DIR/train.txt"
while [ "$(stat -c %s "$DIR/train.txt")" -lt $((MB * 1000000)) ]; do cat "$DIR/one.txt" >> "$DIR/train.txt"; done
cd "$DIR"
cat > bpe.lua <<'LUA'
local text = ingest { "train.txt", format = "text", normalize = "none" }
local tok = tokenizer { text, vocab = 8000 }
local held = ingest { "heldout.txt", format = "text", normalize = "none", name = "held" }
tokenize { held, tok, add_eos = false }
LUA
"$ROOT/hone" run bpe.lua -q --threads 1 --force tokenizer
m() { "$ROOT/hone" runs -1 | tr ',{}' '\n\n\n' | grep "^\"$1\":" | head -1 | cut -d: -f2; }
hs=$(m seconds); hb=$(m bytes); ht=$(m tokens)
t0=$(date +%s.%N)
spm_train --input=train.txt --model_prefix=spm --vocab_size=8000 --model_type=bpe --num_threads=1 \
	--input_sentence_size=0 --character_coverage=1.0 --minloglevel=2 >/dev/null 2>&1
t1=$(date +%s.%N)
ss=$(echo "$t1 - $t0" | bc -l)
st=$(spm_encode --model=spm.model --output_format=id < heldout.txt | wc -w)
hbytes=$(stat -c %s heldout.txt)
echo "BPE training at vocab 8000 on $(($(stat -c %s train.txt) / 1000000)) MB of email lines (one thread each):"
printf '  hone tokenizer  %6.2f s   (%d text bytes)\n' "$hs" "$hb"
printf '  spm_train       %6.2f s\n' "$ss"
printf '  spm_train / hone = %.1fx\n' "$(echo "$ss / $hs" | bc -l)"
echo "held-out text, $((hbytes / 1000)) kB ($(wc -l < heldout.txt) lines):"
printf '  hone  %d tokens  %.2f bytes/token\n' "$ht" "$(echo "$hbytes / $ht" | bc -l)"
printf '  spm   %d tokens  %.2f bytes/token\n' "$st" "$(echo "$hbytes / $st" | bc -l)"
