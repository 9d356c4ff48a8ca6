#!/usr/bin/env bash
# Store robustness: kill -9 at any moment, concurrent runs, -j parallelism,
# verify catching damage, gc.
. "$(dirname "$0")/lib.sh"

cat > slow.lua <<'LUA'
local gen = stage "gen" { rows = 300000, run = function(ctx)
  local out = ctx:open("rows.txt")
  for i = 1, ctx.params.rows do
    out:write(i, ",", (i * 7919) % 1000, "\n")
    if i % 10000 == 0 then ctx:progress(i, ctx.params.rows, "rows") end
  end
  out:close()
end }
local odd = filter { gen, fn = function(l) return l:sub(-1) == "1" end }
local up = map { odd, fn = function(l) return "row " .. l end }
local n = wc { up }
LUA

# reference: an uninterrupted run in its own cache
HONE_CACHE=$WORK/ref "$HONE" run slow.lua -q
want=$(cat "$(HONE_CACHE=$WORK/ref "$HONE" show slow.lua wc | awk '/^path/ {print $2}')counts.tsv")

for delay in 0.05 0.2 0.4 0.6 0.9; do
	rm -rf "$WORK/cache"
	"$HONE" run slow.lua -q &
	pid=$!
	sleep $delay
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check "kill -9 after ${delay}s leaves a valid store" "$HONE" verify
	check "  ... the next run completes" "$HONE" run slow.lua -q
	got=$(cat "$("$HONE" show slow.lua wc | awk '/^path/ {print $2}')counts.tsv")
	check "  ... with the same outputs as an uninterrupted run" eq "$got" "$want"
done

# two runs on one cache at once
rm -rf "$WORK/cache"
"$HONE" run slow.lua -q > a.out 2>&1 &
p1=$!
"$HONE" run slow.lua -q > b.out 2>&1 &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
check "two concurrent runs both succeed" eq "$r1$r2" "00"
check "  ... the store verifies" "$HONE" verify
check "  ... one of them reused the other's work" bash -c "[ \$('$HONE' runs | awk 'NR>1 {s += \$5} END {print s}') -ge 4 ]"

# -j N runs independent stages at once
cat > par.lua <<'LUA'
local function spin(ctx)
  local x = 0
  for i = 1, ctx.params.n do x = (x + i * ctx.params.k) % 1000003 end
  ctx:write("x.txt", tostring(x))
end
stage "a" { n = 40000000, k = 3, run = spin }
stage "b" { n = 40000000, k = 5, run = spin }
LUA
# the stages overlap: the run takes clearly less than its stages' own times
# added up (a speed-up test would fail where the two cores are busy)
"$HONE" run par.lua -q -j 2 --force a --force b
wall=$("$HONE" runs -1 | awk 'NR == 1 {print $6}' | tr -d s)
sum=$("$HONE" runs -1 | awk '$1 == "ran" {s += $3} END {print s}')
check "-j 2 runs two independent stages at once (run ${wall}s, stages ${sum}s)" \
	bash -c "[ \$(echo '$wall < 0.85 * $sum' | bc) = 1 ]"
"$HONE" run par.lua -q -j 1 --force a --force b
wall=$("$HONE" runs -1 | awk 'NR == 1 {print $6}' | tr -d s)
sum=$("$HONE" runs -1 | awk '$1 == "ran" {s += $3} END {print s}')
check "  ... and -j 1 one after the other (run ${wall}s, stages ${sum}s)" \
	bash -c "[ \$(echo '$wall >= 0.95 * $sum' | bc) = 1 ]"

# verify finds damage, repair removes it, the next run recomputes
rm -rf "$WORK/cache"
"$HONE" run slow.lua -q
obj=$("$HONE" show slow.lua gen | awk '/^path/ {print $2}')
chmod u+w "$obj/rows.txt"
printf 'X' | dd of="$obj/rows.txt" bs=1 seek=100 conv=notrunc 2>/dev/null
check "verify reports a damaged object (exit 1)" fails_with 1 "contents do not match the manifest (rows.txt)" "$HONE" verify
check "verify --repair removes it" "$HONE" verify --repair
check "  ... after which verify is clean" "$HONE" verify
check "  ... and the next run recomputes gen only" bash -c "'$HONE' run slow.lua -q"
check "  ... (gen ran)" eq "$(ran_names)" "gen "

# gc keeps what recorded runs reference; --keep-last 1 drops older objects
"$HONE" run slow.lua -q --set gen.rows=1000
out=$("$HONE" gc)
check "gc with every run recorded removes nothing" contains "$out" "removed 0 of"
out=$("$HONE" gc --keep-last 1)
check "gc --keep-last 1 removes the older objects" bash -c "grep -q 'removed [1-9]' <<<'$out'"
check "  ... the store verifies after gc" "$HONE" verify
check "  ... the latest run is still fully cached" bash -c "'$HONE' run slow.lua -q --set gen.rows=1000"
check "  ... (zero ran)" eq "$(ran_count)" 0

done_testing
