#!/usr/bin/env bash
# Benchmark: generation at batch 1 from the same Q8_0 GGUF file (a GPT-2 of
# 6 layers, 384 wide, 6 heads, GPT-2's 50,257-token vocabulary, random
# weights), the same prompt and THREADS threads: hone from the int8
# weights, hone in fp32 (--dequantize), and llama.cpp (node-llama-cpp's
# prebuilt binaries), in one run; the prompt's time, the file's size and
# hone's peak RSS.
# Usage: tests/bench/gguf_gen.sh [TOKENS] [THREADS] (default 128, 2: each count from 1 to THREADS)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-128}
TH=${2:-2}
cd "$ROOT"
make -s hone build/bench_sgemm
W=$(mktemp -d /tmp/hone-gg-XXXXXX)
trap 'rm -rf "$W"' EXIT
cat > "$W/p.lua" <<'LUA'
local tok = tokenizer { gpt2 = true }
model { n_layer = 6, n_head = 6, n_embd = 384, n_positions = 512, vocab = 50257, seed = 1 }
LUA
HONE_CACHE=$W/cache ./hone run "$W/p.lua" -q
M=$(HONE_CACHE=$W/cache ./hone show "$W/p.lua" model | awk '/^path/ {print $2}')
T=$(HONE_CACHE=$W/cache ./hone show "$W/p.lua" tokenizer | awk '/^path/ {print $2}')
./hone quantize "$M" --tokenizer "$T" --to q8_0 -o "$W/m.gguf" >/dev/null
P="The quick brown fox jumps over the lazy dog, and then it runs into the forest where"
echo "GGUF generation, Q8_0 file of $(du -h "$W/m.gguf" | cut -f1), $N tokens after a $(printf '%s' "$P" | wc -w)-word prompt, in one run:"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /  CPU: /'
echo "  $(build/bench_sgemm "$TH")"
rate() { sed -n 's/.*(\([0-9.]*\) tokens\/s.*/\1/p'; }
[ -f build/llama/node_modules/node-llama-cpp/package.json ] && cp tests/node/gguf_gen.mjs build/llama/
# llama.cpp's threads beside node's own on two cores: both thread counts, each side's best counted
for th in $(seq 1 "$TH"); do
	q=$(HONE_THREADS=$th /usr/bin/time -f '%M' ./hone generate "$W/m.gguf" --prompt "$P" --max-tokens "$N" 2>&1 >/dev/null)
	f=$(HONE_THREADS=$th ./hone generate "$W/m.gguf" --prompt "$P" --max-tokens "$N" --dequantize 2>&1 >/dev/null)
	hq=$(echo "$q" | rate | head -1) hf=$(echo "$f" | rate | head -1) rss=$(echo "$q" | tail -1)
	echo " $th thread(s):"
	echo "  hone int8 weights: $hq tokens/s   ($(echo "$q" | grep -o 'prompt .*' | head -1); peak RSS $((rss / 1024)) MiB)"
	echo "  hone fp32:         $hf tokens/s   ($(echo "$f" | grep -o 'prompt .*' | head -1))"
	printf '  int8 / fp32 = %.2fx\n' "$(echo "$hq / $hf" | bc -l)"
	if [ -f build/llama/gguf_gen.mjs ]; then
		l=$(cd build/llama && node gguf_gen.mjs "$W/m.gguf" "$P" "$N" "$th" 2>/dev/null)
		hl=$(echo "$l" | jq .tokens_per_s)
		echo "  llama.cpp:         $(printf '%.1f' "$hl") tokens/s   (prompt $(echo "$l" | jq .prompt_ms | xargs printf '%.1f') ms with the first token)"
		printf '  hone int8 / llama.cpp = %.2fx\n' "$(echo "$hq / $hl" | bc -l)"
		echo "$hq $hl" >> "$W/best"
	fi
done
if [ -f "$W/best" ]; then
	awk '{ if ($1 > h) h = $1; if ($2 > l) l = $2 } END { printf "  best of each: hone int8 %.1f, llama.cpp %.1f tokens/s: %.2fx\n", h, l, h / l }' "$W/best"
fi
