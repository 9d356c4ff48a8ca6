#!/usr/bin/env bash
# The engine itself: Lua states kept across stages without one stage seeing
# another's doings, the instruction budget and timeouts of stage bodies,
# interrupted runs (SIGINT, SIGTERM), `hone status` reasons said once, and
# the one-line metrics of the run report.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

# --- a kept Lua state is as good as a fresh one ---------------------------------
echo x > x.txt
cat > keep.lua <<'LUA'
local n = 0
local holder = {}
local view = setmetatable({}, { __index = holder })
for i = 1, 4 do
  stage("count" .. i) { "x.txt", run = function(ctx)
    n = n + 1                                   -- every body starts from the script's n
    ctx:write("n.txt", tostring(n), " ", tostring(math.random(1000000)), "\n")
  end }
end
stage "keeper" { "x.txt", run = function(ctx) holder.ctx = ctx; ctx:write("k.txt", "k\n") end }
stage "reader" { "x.txt", run = function(ctx)
  ctx:write("r.txt", view.ctx and "saw another stage's ctx" or "clean", "\n")
end }
LUA
check "stages in one kept state run" "$HONE" run keep.lua -q -j 1
out=$(for s in count1 count2 count3 count4; do cat "$("$HONE" show keep.lua $s | awk '/^path/ {print $2}')n.txt"; done | sort -u)
check "  ... each body sees the script's values and the same random numbers" eq "$(wc -l <<<"$out")" 1
check "  ... the counter starts from the script's value" contains "$out" "1 "
r=$(cat "$("$HONE" show keep.lua reader | awk '/^path/ {print $2}')r.txt")
check "  ... nothing one body keeps reaches another" eq "$r" "clean"

# --- instruction budget -----------------------------------------------------------
cat > loop.lua <<'LUA'
stage "spin" { "x.txt", budget = 20, run = function(ctx) while true do end end }
LUA
check "an endless stage body is stopped, naming the stage" fails_with 1 "stage spin: its body ran for over" "$HONE" run loop.lua -q
cat > swallow.lua <<'LUA'
stage "spin" { "x.txt", budget = 5, run = function(ctx)
  while true do pcall(function() while true do end end) end
end }
LUA
check "  ... a pcall in the body cannot swallow it" fails_with 1 "over 5 million instructions" timeout 60 "$HONE" run swallow.lua -q
cat > work.lua <<'LUA'
map { "x.txt", budget = 1, fn = function(l) local s = 0; for i = 1, 3e6 do s = s + i end; return l .. s end }
LUA
check "budget bounds map's fn" fails_with 1 "its body ran for over 1 million" "$HONE" run work.lua -q
check "  ... --set raises it" "$HONE" run work.lua -q --set map.budget=100
check "  ... and it is not part of the key: nothing re-runs" eq "$("$HONE" run work.lua --set map.budget=200 | grep -c '^  ran')" 0
cat > nbudget.lua <<'LUA'
concat { "x.txt", budget = 10 }
LUA
check "budget on a native stage is refused" fails_with 2 "applies only to stages with a Lua body" "$HONE" run nbudget.lua

# --- timeouts ---------------------------------------------------------------------
cat > slowlua.lua <<'LUA'
stage "slow" { "x.txt", timeout = 1, run = function(ctx) while true do end end }
LUA
t0=$(date +%s)
check "a Lua stage past its timeout stops" fails_with 1 "stage slow: timed out after 1 s" "$HONE" run slowlua.lua -q
check "  ... soon" test $(($(date +%s) - t0)) -lt 10
truncate -s 400M big.bin
cat > slownat.lua <<'LUA'
concat { "big.bin", timeout = 0.1 }
LUA
check "a native stage past its timeout stops" fails_with 1 "stage concat: timed out after 0.1 s" "$HONE" run slownat.lua -q
check "  ... leaving no work folder" bash -c "[ -z \"\$(ls -A '$HONE_CACHE/tmp')\" ]"
rm -f big.bin
# native kernels stop at their next progress report, not when they would end
# (fewer lines under the sanitizers, which make every line slow)
lines=4000000
case "$HONE" in *asan*) lines=2000000 ;; esac
yes '{"text": "a line of text to ingest, again and again"}' | head -n $lines > big.jsonl
echo 'ingest { "big.jsonl" }' > full.lua
echo 'ingest { "big.jsonl", timeout = 0.05 }' > cut.lua
t0=$(date +%s%N); HONE_CACHE=$WORK/full "$HONE" run full.lua -q; full=$(( ($(date +%s%N) - t0) / 1000000 ))
t0=$(date +%s%N); HONE_CACHE=$WORK/cut "$HONE" run cut.lua -q 2>/dev/null; cut=$(( ($(date +%s%N) - t0) / 1000000 ))
check "ingest stops early when its timeout passes (${cut} ms against ${full} ms for the whole file)" \
	test "$cut" -lt $(( full / 2 ))
rm -f big.jsonl

# --- interrupted runs ----------------------------------------------------------------
cat > long.lua <<'LUA'
local quick = stage "quick" { "x.txt", run = function(ctx) ctx:write("q.txt", "q\n") end }
stage "slow" { quick, n = 4e9, run = function(ctx)
  local s = 0
  for i = 1, ctx.params.n do s = s + i end
  ctx:write("s.txt", tostring(s), "\n")
end }
LUA
interrupt() { # interrupt SIGNAL: starts long.lua, sends SIGNAL once "slow" runs
	"$HONE" run long.lua -j 1 >run.out 2>run.err &
	local pid=$! i
	for i in $(seq 100); do grep -q quick run.out 2>/dev/null && break; sleep 0.1; done
	sleep 0.5
	kill -"$1" $pid
	wait $pid
	echo $? >run.rc
}
interrupt INT
check "Ctrl-C: exit status 130" eq "$(cat run.rc)" 130
check "  ... says it was interrupted, and what ran" contains "$(cat run.err)" "hone: interrupted: 1 ran, 0 cached, 1 not run"
check "  ... the stopped stage is named" contains "$(cat run.out)" "stopped   slow"
check "  ... hone runs shows the run as interrupted" contains "$("$HONE" runs)" "interrupted"
check "  ... and its stages" contains "$("$HONE" runs -1)" "stopped slow"
check "  ... no work folder is left" bash -c "[ -z \"\$(ls -A '$HONE_CACHE/tmp')\" ]"
check "  ... the store verifies" "$HONE" verify
check "  ... status does not take the stopped stage for a finished one" contains "$("$HONE" status long.lua)" "slow               never run"
check "  ... the next run reuses what finished" contains "$("$HONE" run long.lua --set slow.n=10)" "cached    quick"
check "  ... hone diff compares the interrupted run" "$HONE" diff -2 -1
interrupt TERM
check "SIGTERM: exit status 130 and the same report" eq "$(cat run.rc)" 130
check "  ... interrupted" contains "$(cat run.err)" "hone: interrupted"

# --- hone status says each reason once ------------------------------------------------
cat > two.lua <<'LUA'
local a = stage "a" { "x.txt", outputs = { "p", "q" }, run = function(ctx)
  ctx:write("p/p.txt", "p\n"); ctx:write("q/q.txt", "q\n")
end }
stage "b" { a.p, a.q, run = function(ctx, p, q) ctx:write("b.txt", "b\n") end }
LUA
"$HONE" run two.lua -q
echo y > x.txt
out=$("$HONE" status two.lua)
check "status: a reason shared by two inputs is said once" eq "$(grep '^  stale *b ' <<<"$out" | grep -o 'upstream stage a is stale' | wc -l)" 1

# --- the run report's metrics line --------------------------------------------------
cat > metrics.lua <<'LUA'
stage "m" { "x.txt", run = function(ctx)
  for i = 1, 12 do ctx:metric("a_rather_long_metric_name_" .. i, i * 1000) end
  ctx:write("m.txt", "m\n")
end }
LUA
line=$("$HONE" run metrics.lua | grep '^  ran *m ')
check "report: long metrics end with ..." contains "$line" "..."
last=$(sed 's/ *\.\.\.$//' <<<"$line" | awk '{print $NF}')
check "  ... after a whole key=value" bash -c "[[ '$last' =~ ^a_rather_long_metric_name_[0-9]+=[0-9]+$ ]]"

done_testing
