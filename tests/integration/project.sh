#!/usr/bin/env bash
# The project root and relocatable keys (sources named from the root, the
# cache found by walking up, two checkouts sharing one cache), read-only
# verbs that never create a store, and the option parser (getopt_long: both
# value forms, bundled flags, range checks, one-line errors, exit codes,
# --json, bash completion).
. "$(dirname "$0")/lib.sh"
unset HONE_CACHE
# `cmd | jq -e` checks must fail when cmd fails (jq -e on no input exits 0)
set -o pipefail
export SHELLOPTS

mkdir -p a/data a/sub
touch a/hone.toml
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "{\"text\": \"row $i is $([ $((i % 2)) = 0 ] && echo good || echo bad)\", \"label\": \"$((i % 2))\"}"; done > a/data/x.jsonl
cat > a/sub/pipeline.lua <<'LUA'
local d = ingest { "../data/x.jsonl", fields = { text = "text", label = "label" }, types = { label = "category" } }
local parts = split { d, train = 0.5, val = 0.5, seed = 1 }
local tok = tokenizer { gpt2 = true }
local ids = tokenize { parts, tok }
local model = train { ids.train, val = ids.val, inputs = { text = "text" }, output = { label = "category" }, epochs = 1, embedding_dim = 4, layers = { 4 } }
export { model, tok, to = "../dist/x.tar.gz", name = "bundle" }
LUA
check "read-only verbs say there is no cache, and create none" bash -c \
	"cd a/sub && ! '$HONE' runs 2>err && grep -q 'no cache at $WORK/a/cache' err && '$HONE' status >out 2>&1 && grep -q 'never run' out && ! test -e cache && ! test -e ../cache"
check "  ... --dry-run too" bash -c "cd a/sub && '$HONE' run --dry-run | grep -q 'would run  ingest' && ! test -e ../cache"
check "  ... show" fails_with 1 "no cache at" bash -c "cd a/sub && '$HONE' show ingest"
check "run from the pipeline's folder uses the project root's cache" bash -c "cd a/sub && '$HONE' run -q && test -d ../cache/objects && ! test -e cache"
check "  ... and the same from the root (zero stages run)" bash -c \
	"cd a && '$HONE' run sub/pipeline.lua | grep -q 'hone: 0 ran, 6 cached'"
check "  ... and from elsewhere" bash -c "'$HONE' run a/sub/pipeline.lua | grep -q 'hone: 0 ran, 6 cached'"
check "sources are named from the project root" bash -c "cd a && '$HONE' dag sub/pipeline.lua | grep -q '^data/x.jsonl'"
check "runs finds the cache from a subfolder" bash -c "cd a/sub && '$HONE' runs | grep -q ' pipeline.lua'"
# a second checkout pointed at the same cache: nothing runs, the bundle is the same
cp -r a b && rm -rf b/cache b/dist
check "a copy of the project on the same cache runs zero stages" bash -c \
	"cd b/sub && '$HONE' run --cache '$WORK/a/cache' | grep -q 'hone: 0 ran, 6 cached'"
check "  ... and writes the same bundle bytes" cmp a/dist/x.tar.gz b/dist/x.tar.gz
check "  ... whose lineage names the source from the root" bash -c \
	"mkdir -p u && tar xzf b/dist/x.tar.gz -C u && grep -q '\"source\":\"data/x.jsonl\"' u/lineage.json && ! grep -q '$WORK' u/lineage.json"
check "HONE_CACHE still overrides" bash -c "cd b/sub && HONE_CACHE='$WORK/c2' '$HONE' run -q && test -d '$WORK/c2/objects' && ! test -e ../cache"

# options
cd a/sub
check "--opt=val and --opt val" bash -c "'$HONE' run --jobs=2 -q && '$HONE' run --jobs 2 -q"
check "bundled short flags (-qn)" bash -c "out=\$('$HONE' run -qn 2>&1); [ \$? = 0 ]"
check "an unknown option: one line and a hint, exit 2" bash -c \
	"'$HONE' run --frobnicate 2>err; [ \$? = 2 ] && [ \$(wc -l < err) = 2 ] && grep -q '^hint: hone run --help' err"
check "an extra positional argument is an error" fails_with 2 "run: unexpected argument 'more.lua'" "$HONE" run pipeline.lua more.lua
check "--force of no stage exits 1, listing the stages" fails_with 1 "--force: no stage named 'nosuch'" "$HONE" run --force nosuch
check "  ... with a hint" fails_with 1 "hint: stages: ingest, split, tokenizer, tokenize, train, bundle" "$HONE" run --force nosuch
check "show of an unknown stage lists them" fails_with 1 "hint: did you mean 'train'? stages: ingest, split, tokenizer, tokenize, train, bundle" "$HONE" show trian
check "numbers are range-checked" fails_with 2 "generate: --temperature expects a number from 0 to 100, got '-1'" \
	"$HONE" generate m --prompt x --temperature -1
check "  ... integers too" fails_with 2 "run: --threads expects an integer, got '1.5'" "$HONE" run --threads 1.5
check "a missing value" fails_with 2 "run: --set needs a value" "$HONE" run --set
check "negative run numbers are positional" bash -c "'$HONE' runs -1 | grep -q '^run '"
check "  ... also for diff" bash -c "'$HONE' diff -2 -1 | grep -q '^run '"
check "a run that does not exist exits 1" fails_with 1 "no run '99'" "$HONE" runs 99
check "runs --json" bash -c "'$HONE' runs --json | jq -e 'length >= 3 and .[0].run >= 1' >/dev/null"
check "  ... one run with its stages" bash -c "'$HONE' runs -1 --json | jq -e '.stages | length == 6' >/dev/null"
check "status --json" bash -c "'$HONE' status --json | jq -e '[.stages[].state | select(. == \"up-to-date\")] | length == 6' >/dev/null"
check "  ... with the reasons of stale stages" bash -c "'$HONE' status --json --set train.epochs=2 | jq -e '(.stages[] | select(.stage == \"train\") | .reasons[0]) == \"params changed: epochs 1 -> 2\" and .stale == 2' >/dev/null"
check "  ... and without a cache" bash -c "cd '$WORK' && mkdir -p nc && echo 'wc { \"../a/data/x.txt\" }' > nc/p.lua && echo hi > a/data/x.txt && '$HONE' status nc/p.lua --json | jq -e '.stages[0].reasons == [\"never run\"]' >/dev/null && ! test -e nc/cache"
check "dag --json" bash -c "'$HONE' dag --json | jq -e '.nodes[1].name == \"ingest\" and .nodes[1].inputs[0].from == \"data/x.jsonl\"' >/dev/null"
check "show --json" bash -c "'$HONE' show train --json | jq -e '.stage == \"train\" and (.object | length == 32)' >/dev/null"
check "bash completion from the option tables" bash -c \
	"'$HONE' completion bash > c.bash && bash -n c.bash && grep -q -- '--dry-run' c.bash && grep -q -- '--missing' c.bash"
check "  ... completes options of a verb" bash -c \
	". ./c.bash; COMP_WORDS=(hone run --dr); COMP_CWORD=2; _hone; [ \"\${COMPREPLY[*]}\" = --dry-run ]"
done_testing
