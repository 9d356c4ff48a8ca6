#!/usr/bin/env bash
# tokenizer and tokenize stages: GPT-2 ids identical to tiktoken's (the
# committed fixture), EOS, truncation, split parts, errors.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
FX=$ROOT/tests/fixtures/gpt2

# the first 12 non-empty fixture strings as a dataset, in order
jq -c '.[:12] | map(select(length > 0)) | .[] | {text: .}' "$FX/corpus.json" > rows.jsonl
n=$(wc -l < rows.jsonl)
cat > p.lua <<'LUA'
local d = ingest { "rows.jsonl", normalize = "none" }
local tok = tokenizer { gpt2 = true }
tokenize { d, tok, name = "plain" }
tokenize { d, tok, max_len = 8, name = "right" }
tokenize { d, tok, max_len = 8, truncation = "left", add_eos = false, name = "left" }
LUA
check "gpt2 tokenizer and tokenize run" "$HONE" run p.lua -q
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
ids() { od -An -tu4 -v "$(obj "$1")tokens.u32" | tr -s ' ' '\n' | grep -v '^$'; }
# expected: every string's tiktoken ids followed by <|endoftext|> (50256)
jq -r '.[:12] | to_entries | map(select(.value | length > 0)) | .[].key' "$FX/corpus.json" > keep.txt
: > want.txt
while read -r k; do jq -r ".[$k][]" "$FX/ids.json" >> want.txt; echo 50256 >> want.txt; done < keep.txt
check "ids identical to tiktoken's gpt2, EOS after each row ($n rows)" eq "$(ids plain | tr '\n' ' ')" "$(tr '\n' ' ' < want.txt)"
out=$("$HONE" show p.lua plain --jsonl | head -2)
check "rows carry tok_off and tok_len" contains "$out" '"tok_off":0,"tok_len":'
check "max_len cuts rows, EOS kept last" bash -c "[ \$('$HONE' show p.lua right --jsonl --limit 100 | grep -c '\"tok_len\":8') -ge 5 ]"
check "  ... counted" bash -c "'$HONE' runs -1 | grep -q '\"truncated\":[1-9]'"
first_left=$(ids left | head -8 | tail -1)
k0=$(head -1 keep.txt)
check "truncation = left keeps the end of a row" eq "$first_left" "$(jq -r ".[$k0][-1]" "$FX/ids.json")"

o1=$("$HONE" run p.lua -q --force plain --threads 1; "$HONE" runs -1 | awk '$2 == "plain" {print $4}')
o2=$("$HONE" run p.lua -q --force plain --threads 2; "$HONE" runs -1 | awk '$2 == "plain" {print $4}')
check "tokenize output does not depend on --threads" eq "$o1" "$o2"

# over split's parts: one output per part
cat > sp.lua <<'LUA'
local d = ingest { "rows.jsonl", normalize = "none" }
local parts = split { d, train = 0.5, test = 0.5 }
local ids = tokenize { parts, tokenizer { gpt2 = true } }
stage "use" { ids.train, ids.test, run = function(ctx, a, b) ctx:write("f", table.concat(a:files(), ",")) end }
LUA
check "tokenize over split parts, used as ids.train" "$HONE" run sp.lua -q
check "  ... each part has its ids" contains "$(cat "$("$HONE" show sp.lua use | awk '/^path/ {print $2}')f")" "tokens.u32"

check "a tokenizer needs files" fails_with 2 "give gpt2 = true, or vocab_file and merges_file" \
	bash -c "printf 'tokenizer { }\n' > e1.lua; '$HONE' run e1.lua"
check "tokenize needs a dataset and a tokenizer" fails_with 2 "tokenize: takes 2 inputs, got 1" \
	bash -c "printf 'tokenize { \"rows.jsonl\" }\n' > e2.lua; '$HONE' run e2.lua"
check "a missing text field names it" fails_with 1 "has no text field 'body'" \
	bash -c "printf 'tokenize { ingest { \"rows.jsonl\" }, tokenizer { gpt2 = true }, field = \"body\" }\n' > e3.lua; '$HONE' run e3.lua"

done_testing
