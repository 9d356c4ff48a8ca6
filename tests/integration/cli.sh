#!/usr/bin/env bash
# The CLI: help, version, status reasons, dag, show, runs, diff, hash.
. "$(dirname "$0")/lib.sh"

mkdir -p proj/data
printf 'one two\nthree\n' > proj/data/a.txt
cat > proj/pipeline.lua <<'LUA'
local parts = stage "split" { "data/a.txt", outputs = { "train", "test" }, run = function(ctx, a)
  local i = 0
  for l in a:lines() do
    i = i + 1
    ctx:write((i % 2 == 1 and "train" or "test") .. "/" .. i .. ".txt", l, "\n")
  end
end }
local train = stage "train" { parts.train, lr = 0.002, epochs = 3, run = function(ctx, t)
  ctx:write("model.txt", "lr=", tostring(ctx.params.lr), "\n")
  ctx:metric("loss", ctx.params.lr * 100)
end }
local ev = stage "evaluate" { train, test = parts.test, run = function(ctx, m)
  ctx:write("metrics.txt", m:read(), ctx.inputs.test:read("2.txt"))
  ctx:metric("accuracy", 0.5)
end }
LUA
cd proj

check "--version" bash -c "'$HONE' --version | grep -q '^hone [0-9]'"
check "--help lists the commands" bash -c "'$HONE' --help | grep -q 'status \[FILE\]'"
check "run --help" bash -c "'$HONE' run --help | grep -q -- '--dry-run'"
out=$("$HONE" status)
check "status before any run: never run" contains "$out" "stale      split              never run"
check "default FILE is pipeline.lua; run prints outputs" bash -c "'$HONE' run | grep -q '^outputs:'"
check "status after run: up to date" contains "$("$HONE" status)" "hone: 0 of 3 stages stale"
out=$("$HONE" status --set train.lr=1e-4)
check "status: params changed with old and new value" contains "$out" "params changed: lr 0.002 -> 0.0001"
check "status: downstream stale because upstream is" contains "$out" "upstream stage train is stale"
printf 'one two\nthree!\n' > data/a.txt
out=$("$HONE" status)
check "status: input changed names the file" contains "$out" "input changed: data/a.txt"
printf 'one two\nthree\n' > data/a.txt
out=$("$HONE" run --set train.lr=1e-4 --set train.epochs=4)
check "run with --set" contains "$out" "ran       train"
out=$("$HONE" runs)
check "runs lists both runs" bash -c "[ \$(grep -c pipeline.lua <<<'$out') = 2 ]"
out=$("$HONE" diff 1 2)
check "diff shows changed params" contains "$out" "train.lr  0.002 -> 0.0001"
check "  ... all of them" contains "$out" "train.epochs  3 -> 4"
check "diff shows changed metrics" contains "$out" "train.loss  0.2 -> 0.01"
check "diff accepts -2 -1" contains "$("$HONE" diff -2 -1)" "run 1 -> run 2"
check "diff of an unknown run" fails_with 1 "no run '99'" "$HONE" diff 1 99
check "runs RUN shows stages with metrics" contains "$("$HONE" runs 2)" '"accuracy":0.5'

out=$("$HONE" dag)
check "dag lists named-output edges" contains "$out" "<- split.train"
check "dag shows named inputs" contains "$out" "<- split.test (as test)"
out=$("$HONE" dag --dot)
check "dag --dot is a digraph" contains "$out" "digraph pipeline {"
check "dag --dot labels output edges" contains "$out" '[label="train"]'

out=$("$HONE" show split.train --set train.lr=1e-4 --set train.epochs=4)
check "show STAGE.OUTPUT previews its files" contains "$out" "1.txt"
out=$("$HONE" show evaluate --set train.lr=1e-4 --set train.epochs=4)
check "show prints metrics and a preview" contains "$out" "preview of metrics.txt:"
check "show of a stale stage says so" fails_with 1 "has no up-to-date output" "$HONE" show evaluate --set train.lr=5
check "show of an unknown stage" fails_with 1 "no stage named 'nope'" "$HONE" show nope

# hash agrees with xxhsum -H2 (XXH3-128, the same canonical hex)
head -c 3000000 /dev/urandom > big.bin
printf '' > empty.bin
for f in big.bin empty.bin data/a.txt; do
	check "hash $f matches xxhsum -H2" eq "$("$HONE" hash "$f" | cut -d' ' -f1)" "$(xxhsum -H2 "$f" 2>/dev/null | cut -d' ' -f1)"
done

# a run log from an unknown version is moved aside, not trusted
"$HONE" runs >/dev/null
sqlite_file=$HONE_CACHE/runs.sqlite
printf 'garbage that is not a database' > "$sqlite_file"
rm -f "$sqlite_file-wal" "$sqlite_file-shm"
check "damaged run log: run still works" bash -c "'$HONE' run -q --set train.lr=1e-4 --set train.epochs=4 2>&1 | grep -q 'moved aside'"
check "  ... and records runs afresh" bash -c "'$HONE' runs | grep -q '^ *1 '"

done_testing
