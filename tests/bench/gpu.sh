#!/usr/bin/env bash
# Benchmark on a GPU: GPT-2 training steps (forward, backward, AdamW with
# clipping) in hone's CUDA backend and in PyTorch on the same GPU in one run:
# GPT-2 124M (12 × 768, T 1024, batch 16, vocab 50257) and the CPU
# benchmark's shape (6 × 384, T 256, batch 8, vocab 8192). PyTorch runs fp32
# (no TF32), bf16 autocast with flash attention, and the same under
# torch.compile; the GPU's bf16 and fp32 matrix peaks are measured first.
# Needs make cuda and python3 with torch (the device machine has both).
# Usage: tests/bench/gpu.sh [STEPS] [gpt2|llama|all] (default 10 all)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${1:-10}
WHAT=${2:-all}
cd "$ROOT"
[ -x build/bench_gpt2 ] || make -s build/bench_gpt2
[ -f build/libhone-cuda.so ] || make -s cuda
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/GPU: /'
$PY tests/bench/gpt2_torch.py 1 64 1 64 1 64 1 1 peak | sed 's/^/  /'
# family BIN TORCH.py "DIMS" CFG...: each shape's steps in hone (fp32, bf16,
# LoRA where BIN has it, generation) and in PyTorch (fp32, bf16, compiled)
family() {
	local bin=$1 torch=$2 dims=$3 name=$4
	shift 4
	for CFG in "$@"; do
		echo "$name training steps ($CFG: $dims), $STEPS steps:"
		h32=$($bin $CFG "$STEPS" 1 full cuda)
		h=$($bin $CFG "$STEPS" 1 full cuda-bf16)
		echo "$h32" | sed 's/^/  /'
		echo "$h" | sed 's/^/  /'
		hs=$(head -1 <<<"$h" | awk '{print $2}')
		[ "$name" = Llama ] && echo "  lora: $($bin $CFG "$STEPS" 1 lora cuda-bf16 | head -1)"
		echo "  $($bin $CFG 128 1 generate cuda)"
		for mode in fp32 bf16 bf16-compile; do
			t=$($PY "$torch" $CFG "$STEPS" 1 "$mode" 2>/dev/null | tail -1)
			ts=$(awk '{print $2}' <<<"$t")
			echo "  $t"
			awk -v m="$mode" -v a="$hs" -v b="$ts" 'BEGIN { printf "  hone (bf16) / torch %s = %.2fx (tokens/s)\n", m, a / b }'
		done
	done
}
[ "$WHAT" = llama ] || family build/bench_gpt2 tests/bench/gpt2_torch.py "layers embd heads T batch vocab" GPT-2 \
	"12 768 12 1024 16 50257" "6 384 6 256 8 8192"
# Llama (grouped-query heads, SwiGLU, RMSNorm, rotary): a 1B-class shape cut
# to 8 layers (2048 hidden, 16 heads, 4 key/value heads, 5632 intermediate,
# T 1024, batch 8, vocab 32000) and the CPU benchmark's shape
[ -x build/bench_llama ] || make -s build/bench_llama
[ "$WHAT" = gpt2 ] || family build/bench_llama tests/bench/llama_torch.py \
	"layers hidden heads kv_heads intermediate T batch vocab" Llama "8 2048 16 4 5632 1024 8 32000" "6 384 6 2 1024 256 8 8192"
