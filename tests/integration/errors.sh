#!/usr/bin/env bash
# Errors: every message names the file and line (or key) and what was
# expected; exit status 2 for pipeline errors, 1 for stage failures; the
# cache stays valid and holds nothing half-written.
. "$(dirname "$0")/lib.sh"
echo hi > a.txt

expect() { # expect CODE TEXT SCRIPT [ARGS...]
	local code=$1 text=$2 script=$3
	shift 3
	printf '%s\n' "$script" > p.lua
	fails_with "$code" "$text" "$HONE" run p.lua "$@"
}

check "syntax error names file and line" expect 2 "p.lua:3: '}' expected (to close '{' at line 1)" 'local x = concat { "a.txt"
'
check "runtime error names file and line" expect 2 "p.lua:1: attempt to perform arithmetic" 'local x = 1 + nil'
check "unknown parameter with closest name" expect 2 "p.lua:1: concat: unknown parameter 'sepp'" 'concat { "a.txt", sepp = "," }'
check "  ... and a hint" expect 2 "hint: did you mean 'sep'?" 'concat { "a.txt", sepp = "," }'
check "wrong type says what was expected" expect 2 "parameter 'sep' expects a string, got integer (3)" 'concat { "a.txt", sep = 3 }'
check "missing input names its path" expect 2 "p.lua:1: input file not found: nope.txt" 'concat { "nope.txt" }'
check "unknown stage names file and line" expect 2 "p.lua:1: unknown stage or global 'conkat'" 'conkat { "a.txt" }'
check "cycle names the stages on it" expect 2 "cycle in the pipeline: b -> a -> b" 'stage "a" { ref "b", run = function() end }
stage "b" { ref "a", run = function() end }'
check "unknown ref" expect 2 "no stage named 'nope'" 'stage "a" { ref "nope", run = function() end }'
check "missing run function" expect 2 "parameter 'run' must be a function" 'stage "a" { "a.txt" }'
check "wrong number of inputs" expect 2 "wc: takes 1 input, got 2" 'wc { "a.txt", "a.txt" }'
check "duplicate stage name" expect 2 "stage name 'a' is already used (declared at p.lua:1)" 'stage "a" { run = function() end }
stage "a" { run = function() end }'
check "unknown output" expect 2 "stage 's' has no output 'trian'" 'local s = stage "s" { outputs = {"train"}, run = function() end }
stage "t" { s.trian, run = function() end }'
check "--set of an unknown stage" expect 2 "--set conkat.sep: no stage named 'conkat'" 'concat { "a.txt" }' --set conkat.sep=x
check "--set of an unknown parameter" expect 2 "stage 'concat' has no parameter 'sepp'" 'concat { "a.txt" }' --set concat.sepp=x
check "--set with a value of the wrong type" expect 2 "expected an integer" 'stage "s" { n = 3, run = function() end }' --set s.n=abc
check "malformed --set" expect 2 "expected STAGE.PARAM=VALUE" 'concat { "a.txt" }' --set nodot
check "endless script is stopped" expect 2 "an endless loop?" 'while true do end'
check "missing pipeline file" fails_with 2 "no such pipeline file" "$HONE" run nothere.lua

# sandbox
check "io.open is refused, with how to declare the file" expect 2 'declare it with file "data/a.txt"' 'local f = io.open("a.txt")'
check "os.execute is refused" expect 2 "os.execute is not available" 'os.execute("true")'
check "io.popen is refused" expect 2 "io.popen is not available" 'io.popen("ls")'
check "require is refused" expect 2 "require is not available" 'require("socket")'
check "load is refused" expect 2 "load is not available" 'load("return 1")'
check "stage bodies are sandboxed too" expect 1 "os.getenv is not available" 'stage "s" { run = function(ctx) os.getenv("HOME") end }'
check "builtins cannot be redefined" expect 2 "cannot redefine built-in 'concat'" 'concat = 1'

# stage failures: exit 1, nothing published, the cache stays valid
check "a failing stage exits 1 with its message" expect 1 "stage s: p.lua:1: boom" 'stage "s" { "a.txt", run = function(ctx, a) ctx:write("half.txt", "x") error("boom") end }'
check "  ... publishes nothing" eq "$(find "$HONE_CACHE/objects" -type f | wc -l)" 0
check "  ... leaves no work directory" eq "$(ls "$HONE_CACHE/tmp" | wc -l)" 0
check "  ... and the store verifies" "$HONE" verify
check "writing outside the output is refused" expect 1 'output name "../x"' 'stage "s" { run = function(ctx) ctx:write("../x", "y") end }'
check "reading another input's file is refused" expect 1 "must be relative, without '..'" 'local s = stage "s" { run = function(ctx) ctx:write("a", "y") end }
stage "t" { s, run = function(ctx, s) s:read("../../x") end }'
check "a declared output left empty" expect 1 "declares output 'test' but wrote no file under test/" 'stage "s" { outputs = {"train","test"}, run = function(ctx) ctx:write("train/x", "1") end }'
check "map returning a non-string names the line" expect 1 "a.txt line 1: fn returned a number" 'map { "a.txt", fn = function(l) return 5 end }'
check "downstream of a failure is not run" bash -c "printf '%s\n' 'local s = stage \"s\" { run = function() error(\"x\") end }' 'wc { s }' > q.lua; '$HONE' run q.lua 2>&1 | grep -q '1 failed, 1 not run'"
# the wrong handle is caught at declaration, by what each stage takes and gives
echo '{"text": "a b", "label": "x"}' > rows.jsonl
pre='local d = ingest { "rows.jsonl" }
local parts = split { d, train = 0.5, val = 0.5 }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok }
local lm = train { ids.train, base = model { n_layer = 1, n_head = 1, n_embd = 8, n_positions = 8, vocab = 300 } }'
check "train given the whole of tokenize's parts says which part to use" expect 2 \
	"train: input 1 must be token ids (tokenize's output, or one of its parts); \`ids\` is tokenize's output with parts train, val" "$pre
train { ids, base = lm }"
check "  ... with a hint" expect 2 "hint: use one part, e.g. ids.train" "$pre
train { ids, base = lm }"
check "evaluate given a tokenizer instead of ids" expect 2 \
	"evaluate: input 2 must be token ids (tokenize's output, or one of its parts); \`tok\` is tokenizer's output, a tokenizer" "$pre
evaluate { lm, tok }"
check "a named input of the wrong kind" expect 2 "train: 'val' must be token ids (tokenize's output, or one of its parts); \`parts.val\` is part 'val' of split's output, a dataset" "$pre
train { ids.train, val = parts.val, base = lm }"
check "map refuses a dataset, saying what it takes" expect 2 \
	"map: input 1 must be text lines (a file, concat, map or filter); \`d\` is ingest's output, a dataset" "$pre
map { d, fn = function(l) return l end }"
check "  ... filter too" expect 2 "filter: input 1 must be text lines" "$pre
filter { d, fn = function(l) return true end }"
check "dedupe given a file path" expect 2 'dedupe: input 1 must be a dataset (ingest, dedupe, or a part of split); "rows.jsonl" is a file path' \
	'dedupe { "rows.jsonl" }'
# split: an empty part is an error at split; --set of one ratio scales the others
for i in 1 2 3; do echo "{\"text\": \"r$i\"}"; done > three.jsonl
for i in $(seq 1 40); do echo "{\"text\": \"r$i\"}"; done > forty.jsonl
check "a split part with no rows fails at split, naming it" expect 1 "split: part 'val' gets no rows: 3 rows at ratio 0.15" \
	'split { ingest { "three.jsonl" } }'
printf 'local d = ingest { "forty.jsonl" }\nsplit { d, train = 0.7, val = 0.15, test = 0.15 }\n' > r1.lua
printf 'local d = ingest { "forty.jsonl" }\nsplit { d, train = 0.8, val = 0.1, test = 0.1 }\n' > r2.lua
printf 'local d = ingest { "forty.jsonl" }\nsplit { d }\n' > r3.lua
check "--set split.train=0.8 scales the other parts to fill the rest" bash -c \
	"'$HONE' run r2.lua -q && '$HONE' run r1.lua --set split.train=0.8 | grep -q 'cached    split'"
check "  ... also over the default parts" bash -c "'$HONE' run r3.lua --set split.train=0.8 | grep -q 'cached    split'"
check "list parameters from the command line" bash -c \
	"'$HONE' dag r1.lua >/dev/null && printf 'local s = stage \"s\" { layers = { 64 }, run = function(ctx) ctx:write(\"o.txt\", table.concat(ctx.params.layers, \",\")) end }\n' > l.lua && '$HONE' run l.lua -q --set 's.layers=[128,64]' && [ \"\$(cat \$('$HONE' show l.lua s --set 's.layers=[128,64]' --json | jq -r .path)/o.txt)\" = 128,64 ]"
check "  ... Lua's form too" bash -c "'$HONE' run l.lua -q --set 's.layers={128, 64}' && '$HONE' run l.lua --set 's.layers={128, 64}' | grep -q 'cached    s'"
check "  ... a malformed list says what is expected" expect 2 "expected a list, as in {128, 64} or [128,64]" \
	'stage "s" { layers = { 64 }, run = function(ctx) end }' --set s.layers=128
check "an unknown field suggests the closest" expect 1 "hint: did you mean 'text'? fields: text" \
	'split { ingest { "forty.jsonl" }, stratify = "txet" }'
printf '{"text":"ok"}\n{"text":"bad \xff here"}\n' > u.jsonl
check "invalid UTF-8 gives the byte offset in the file" expect 1 "u.jsonl:2: field 'text': invalid UTF-8 at byte 4 of the value (input byte offset 26)" \
	'ingest { "u.jsonl" }'
check "  ... and hints utf8 = \"replace\"" expect 1 'hint: pass utf8 = "replace"' 'ingest { "u.jsonl" }'
check "os.time says why it is out of reach (determinism)" expect 2 "os.time is not available in a pipeline: its value would differ from run to run" \
	'local t = os.time()'
check "require says why (not in any key)" expect 2 "require is not available in a pipeline: code loaded from other files would not be in any stage's key" \
	'local m = require("x")'
check "the store verifies after all of these" "$HONE" verify
check "CLI: unknown command suggests one" fails_with 2 "did you mean 'hone run'?" "$HONE" rnu
check "CLI: unknown option" fails_with 2 "unknown option '--frobnicate'" "$HONE" run --frobnicate

done_testing
