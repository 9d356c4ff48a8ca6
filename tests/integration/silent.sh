#!/usr/bin/env bash
# Paths that once gave silently wrong results: prompts that leave no
# completion token, a split with nothing for the loss, map/filter over a
# dataset, an object that fails its own reader, an untied LM head.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"

toy_docs 100 > docs.jsonl
stages() { # stages TEMPLATE MAX_LEN [TRUNCATION]
	cat <<LUA
local d = ingest { "docs.jsonl", fields = { text = "text", q = "q", a = "a" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300 }
local qa = tokenize { parts, tok, format = "prompt_completion", template = "$1", completion = "a", max_len = $2,
                      truncation = "${3:-right}", name = "qa" }
local base = model { n_layer = 1, n_head = 2, n_embd = 16, n_positions = 64, vocab = 300, seed = 1 }
local sft = train { qa.train, val = qa.val, base = base, batch = 8, epochs = 1, seed = 1, name = "sft" }
evaluate { sft, qa.val, name = "ppl" }
LUA
}
stages "{q} {text}:" 8 > p.lua
check "tokenize fails when no row keeps a completion token" fails_with 1 \
	"tokenize: split.train: no row keeps a completion token (the prompt fills max_len = 8" "$HONE" run p.lua
check "  ... with a hint" fails_with 1 'hint: raise max_len, set truncation = "left"' "$HONE" run p.lua
stages "{q} {text}:" 18 > p.lua
out=$("$HONE" run p.lua 2>&1)
check "tokenize warns when some rows keep no completion token, with the count and rows" contains "$out" \
	"tokenize: warning: split.train: "
check "  ... and examples" bash -c "grep -E 'rows keep no completion token .*e\.g\. rows [0-9]+, [0-9]+, [0-9]+' <<<'$out'"
stages "{q} {text}:" 8 left > p.lua
check "  ... truncation = \"left\" keeps the completions" "$HONE" run p.lua -q
check "  ... (no row without one)" eq "$("$HONE" show p.lua qa | grep -o '"no_completion":[0-9]*')" '"no_completion":0'

# rows of one token each: no next token for the loss to count
for w in the cat sat on a mat dog ran to park; do echo "{\"text\": \"$w\"}"; done > one.jsonl
cat > one.lua <<'LUA'
local d = ingest { "one.jsonl" }
local parts = split { d, train = 0.5, val = 0.5, seed = 1 }
local tok = tokenizer { ingest { "docs.jsonl" }, vocab = 300 }
local ids = tokenize { parts, tok, add_eos = false }
local base = model { n_layer = 1, n_head = 2, n_embd = 16, n_positions = 16, vocab = 300, seed = 1 }
LUA
cp one.lua ev.lua
echo 'train { ids.train, base = base, batch = 2, epochs = 1 }' >> one.lua
echo 'evaluate { base, ids.val }' >> ev.lua
check "train refuses a split with no token for the loss" fails_with 1 "train: tokenize.train has no token the loss counts" "$HONE" run one.lua
check "evaluate refuses one too" fails_with 1 "evaluate: tokenize.val has no token the loss counts" "$HONE" run ev.lua
# an object that would fail its own reader is never published
echo '{"text": "a"}' > x.jsonl
printf 'local d = ingest { "x.jsonl" }\nstage "bad" { d, run = function(ctx, d) ctx:write("data.rec", "not records, not at all: garbage") end }\n' > bad.lua
check "a stage that writes a broken data.rec fails at publish, naming the file" fails_with 1 \
	"stage bad: output is not readable: data.rec: not a dataset (bad magic)" "$HONE" run bad.lua
check "  ... and publishes nothing" fails_with 1 "stage 'bad' has no up-to-date output" "$HONE" show bad.lua bad
printf 'local d = ingest { "x.jsonl" }\nstage "badjson" { d, run = function(ctx, d) ctx:write("sub/metrics.json", "{oops") end }\n' > bj.lua
check "  ... likewise a metrics.json that is not JSON" fails_with 1 "stage badjson: output is not readable: sub/metrics.json:1:2:" \
	"$HONE" run bj.lua
check "the store verifies after these" "$HONE" verify
done_testing
