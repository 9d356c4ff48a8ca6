#!/usr/bin/env bash
# The device code paths without a GPU: HONE_DEVICE_EMULATE=1 makes
# device = "cuda" the CPU's kernels behind the GPU's code (its own copy of
# the parameters, AdamW's state beside them, checkpoints brought back to the
# host, the KV cache on the backend), so each run must end with the CPU's
# bits: language model in full and with LoRA, a classifier, BERT's heads,
# generation, and a resume after kill -9. The CUDA kernels themselves: tests/gpu/ (make test-gpu).
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"

toy_docs 400 > docs.jsonl
toy_classes 300 > cls.jsonl
{ toy_lm_stages; cat <<'LUA'
local lm = train { ids.train, val = ids.val, base = base, lr = 0.003, batch = 8, epochs = 2, warmup = 5, seed = 1 }
train { ids.train, val = ids.val, base = lm, method = "lora", rank = 4, targets = { "c_attn", "c_fc" }, lora_dropout = 0.1,
        lr = 0.01, batch = 8, epochs = 1, seed = 1, name = "lora" }
LUA
} > p.lua
{ toy_cls_stages; echo 'train { ids.train, val = ids.val, base = base, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "clf" }'; } > c.lua
hashes() { for s in "$@"; do sha256sum < "$("$HONE" show "$F" "$s" | awk '/^path/ {print $2}')model.safetensors"; done | tr '\n' ' '; }
F=p.lua
check "the CPU trains" "$HONE" run p.lua -q
cpu=$(hashes train lora)
check "--device cuda is another key: train would run again" bash -c "'$HONE' run p.lua -n --device cuda | grep -q 'would run train'"
check "device = \"cuda\" trains, emulated (hone run --device cuda)" env HONE_DEVICE_EMULATE=1 "$HONE" run p.lua -q --device cuda
check "  ... the log says where" bash -c "'$HONE' runs -1 >/dev/null && HONE_DEVICE_EMULATE=1 '$HONE' run p.lua --device cuda --force train 2>&1 | grep -q 'on device cuda (emulated on the CPU)'"
check "  ... the language model and its LoRA end with the CPU's bits" eq "$(hashes train lora)" "$cpu"
F=c.lua
"$HONE" run c.lua -q
cc=$(hashes clf)
check "a classifier on the emulated device: the CPU's bits within the head's rounding" env HONE_DEVICE_EMULATE=1 "$HONE" run c.lua -q --device cuda
check "  ... its validation score is the CPU's" eq "$(HONE_DEVICE_EMULATE=1 "$HONE" show c.lua clf --device cuda | grep -o '"val_f1":[0-9.]*')" \
	"$("$HONE" show c.lua clf | grep -o '"val_f1":[0-9.]*')"
# BERT: masked LM, then a classifier and its LoRA on it
{ toy_cls_stages | sed 's/local base = model {.*/local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, intermediate = 64, n_positions = 32, vocab = 300, seed = 1 }/'
  cat <<'LUA'
local pre = train { ids.train, base = base, objective = "mlm", mask_id = 299, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "pre" }
train { ids.train, val = ids.val, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "bclf" }
train { ids.train, val = ids.val, base = pre, output = { label = "category" }, method = "lora", rank = 4, lr = 0.01, batch = 16,
        epochs = 2, seed = 1, name = "blora" }
LUA
} > b.lua
F=b.lua
"$HONE" run b.lua -q
bc=$(hashes pre bclf blora)
check "BERT on the emulated device (masked LM, classifier, LoRA)" env HONE_DEVICE_EMULATE=1 "$HONE" run b.lua -q --device cuda
check "  ... the CPU's bits" eq "$(hashes pre bclf blora)" "$bc"
F=p.lua
M=$("$HONE" show p.lua train | awk '/^path/ {print $2}') TK=$("$HONE" show p.lua tokenizer | awk '/^path/ {print $2}')
check "hone generate --device cuda (emulated): the CPU's text" eq \
	"$(HONE_DEVICE_EMULATE=1 "$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat" --max-tokens 16 -q --device cuda)" \
	"$("$HONE" generate "$M" --tokenizer "$TK" --prompt "the cat" --max-tokens 16 -q)"
check "without the backend built, --device cuda says how to get it" fails_with 1 "make cuda" \
	env HONE_CUDA_LIB=/nonexistent "$HONE" generate "$M" --tokenizer "$TK" --prompt "a" --device cuda

# resume on the device: kill -9 after a checkpoint; the next run ends with
# the bits of an uninterrupted one (parameters and AdamW's state went to the
# host for the checkpoint and come back up)
sed 's/epochs = 2, warmup = 5, seed = 1 }/epochs = 6, warmup = 5, seed = 1, checkpoint_every = 20 }/' p.lua > r.lua
HONE_DEVICE_EMULATE=1 HONE_CACHE=$WORK/r1 "$HONE" run r.lua -q --device cuda
want=$(HONE_CACHE=$WORK/r1 "$HONE" show r.lua train --device cuda | awk '/^path/ {print $2}')
want=$(sha256sum < "${want}model.safetensors")
HONE_DEVICE_EMULATE=1 HONE_CACHE=$WORK/r2 "$HONE" run r.lua -q --device cuda --force train >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
	ls "$WORK"/r2/work/*/ckpt.bin >/dev/null 2>&1 && break
	sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
check "a checkpoint was left by the killed run" bash -c "ls '$WORK'/r2/work/*/ckpt.bin"
HONE_DEVICE_EMULATE=1 HONE_CACHE=$WORK/r2 "$HONE" run r.lua -q --device cuda
got=$(HONE_CACHE=$WORK/r2 "$HONE" show r.lua train --device cuda | awk '/^path/ {print $2}')
check "the next run resumed from it" jq -e '.resumed == true' "${got}train.json"
check "  ... and ended with the uninterrupted run's weights" eq "$(sha256sum < "${got}model.safetensors")" "$want"

done_testing
