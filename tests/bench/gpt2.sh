#!/usr/bin/env bash
# Benchmark: training steps of GPT-2 (6 layers, n_embd 384, 6 heads, T 256,
# batch 8, vocab 8192: 13.9M parameters), hone's native implementation
# against the same model in plain PyTorch (Debian python3-torch), fp32,
# AdamW, both on THREADS threads, in one run; and OpenBLAS sgemm's peak.
# Usage: tests/bench/gpt2.sh [STEPS] [THREADS] (default 6, 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${1:-6}
TH=${2:-2}
cd "$ROOT"
make -s build/bench_gpt2
CFG="6 384 6 256 8 8192"
echo "GPT-2 training steps ($CFG: layers embd heads T batch vocab), $TH threads, fp32:"
h=$(build/bench_gpt2 $CFG "$STEPS" "$TH")
t=$(/usr/bin/python3 tests/bench/gpt2_torch.py $CFG "$STEPS" "$TH")
echo "$h" | sed 's/^/  /'
echo "  $t"
hs=$(head -1 <<<"$h" | awk '{print $2}'); ts=$(awk '{print $2}' <<<"$t")
printf '  hone / torch = %.2fx (tokens/s)\n' "$(echo "$hs / $ts" | bc -l)"
# LoRA (rank 8 on c_attn, c_proj, c_fc): the same step's memory, base frozen
echo "  $(build/bench_gpt2 $CFG 2 "$TH" lora | tail -1)"
