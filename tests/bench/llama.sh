#!/usr/bin/env bash
# Benchmark: training steps of a Llama (6 layers, hidden 384, 6 heads, 2
# key/value heads, intermediate 1024, T 256, batch 8, vocab 8192), hone's
# native implementation against the same model in plain PyTorch (Debian
# python3-torch), fp32, AdamW, both on THREADS threads, in one run; OpenBLAS
# sgemm's peak; LoRA's and prompt tuning's memory against full; generation at batch 1.
# Usage: tests/bench/llama.sh [STEPS] [THREADS] (default 6, 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${1:-6}
TH=${2:-2}
cd "$ROOT"
make -s build/bench_llama
CFG="6 384 6 2 1024 256 8 8192"
echo "Llama training steps ($CFG: layers hidden heads kv_heads intermediate T batch vocab), $TH threads, fp32:"
h=$(build/bench_llama $CFG "$STEPS" "$TH")
t=$(/usr/bin/python3 tests/bench/llama_torch.py $CFG "$STEPS" "$TH")
echo "$h" | sed 's/^/  /'
echo "  $t"
hs=$(head -1 <<<"$h" | awk '{print $2}'); ts=$(awk '{print $2}' <<<"$t")
printf '  hone / torch = %.2fx (tokens/s)\n' "$(echo "$hs / $ts" | bc -l)"
echo "  $(build/bench_llama $CFG 2 "$TH" lora | tail -1)"
echo "  $(build/bench_llama $CFG 2 "$TH" prompt | tail -1)"
echo "  $(build/bench_llama $CFG 64 1 generate)"
