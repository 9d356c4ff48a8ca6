#!/usr/bin/env bash
# Caching semantics: no-op re-runs, touch, one-byte changes, parameter
# changes, early cut-off, relocation, function edits.
. "$(dirname "$0")/lib.sh"

mkdir -p p/data
printf 'b\na\nc\n' > p/data/x.txt
printf 'hello\n' > p/data/y.txt
cat > p/pipeline.lua <<'LUA'
local sorted = stage "sorted" { "data/x.txt", run = function(ctx, x)
  local t = {}
  for l in x:lines() do t[#t + 1] = l end
  table.sort(t)
  ctx:write("out.txt", table.concat(t, "\n"), "\n")
end }
local upper = map { sorted, fn = function(l) return l:upper() end }
local other = wc { "data/y.txt" }
local both = concat { upper, other, sep = "--\n" }
local last = stage "last" { both, suffix = "!", run = function(ctx, b)
  ctx:write("final.txt", b:read(), ctx.params.suffix, "\n")
end }
LUA
P=p/pipeline.lua

check "first run succeeds" "$HONE" run $P
check "first run records 5 ran" eq "$(ran_count)" 5
check "second run executes zero stages" bash -c "$HONE run $P >/dev/null"
check "  ... per the run record" eq "$(ran_count)" 0
touch p/data/x.txt p/data/y.txt
check "touch without change executes zero stages" bash -c "$HONE run $P >/dev/null"
check "  ... per the run record" eq "$(ran_count)" 0
printf 'b\na\nd\n' > p/data/x.txt
check "one byte changed re-runs" bash -c "$HONE run $P >/dev/null"
check "  ... exactly the downstream stages" eq "$(ran_names)" "concat last map sorted "
check "parameter change re-runs stage and descendants" bash -c "$HONE run $P --set last.suffix=? >/dev/null"
check "  ... only last" eq "$(ran_names)" "last "
# early cut-off: reorder the input so sort gives the same output
printf 'd\nb\na\n' > p/data/x.txt
check "changed input, same sorted output" bash -c "$HONE run $P >/dev/null"
check "  ... early cut-off: only sorted re-ran" eq "$(ran_names)" "sorted "
out1=$(cat "$($HONE show $P last | awk '/^path/ {print $2}')final.txt")
check "final output content" eq "$out1" "$(printf 'A\nB\nD\n--\nfile\tlines\twords\tbytes\ndata/y.txt\t1\t1\t6\ntotal\t1\t1\t6\n!')"

# the same pipeline in another folder hits the same cache
cp -r p q
check "copied pipeline reuses the cache" bash -c "$HONE run q/pipeline.lua >/dev/null"
check "  ... zero stages ran" eq "$(ran_count)" 0

# editing a function re-runs its stage; editing a comment elsewhere does not
sed -i 's/return l:upper()/return l:upper() .. ""/' q/pipeline.lua
check "edited map function re-runs map" bash -c "$HONE run q/pipeline.lua >/dev/null"
check "  ... map ran, output identical so descendants cached" eq "$(ran_names)" "map "
echo "-- a comment" >> q/pipeline.lua
check "comment outside functions" bash -c "$HONE run q/pipeline.lua >/dev/null"
check "  ... changes nothing" eq "$(ran_count)" 0

# a helper function captured as an upvalue is part of the key
cat > h.lua <<'LUA'
local function shout(s) return s .. "!" end
local m = map { "p/data/y.txt", fn = function(l) return shout(l) end }
LUA
check "helper v1" bash -c "$HONE run h.lua >/dev/null"
sed -i 's/"!"/"?"/' h.lua
check "editing a helper the function calls re-runs it" bash -c "$HONE run h.lua >/dev/null"
check "  ... map ran" eq "$(ran_names)" "map "

# --force
check "--force runs a cached stage" bash -c "$HONE run $P --force wc >/dev/null"
check "  ... only wc (same output, so cut-off)" eq "$(ran_names)" "wc "

# --dry-run runs nothing
printf 'z\n' >> p/data/x.txt
before=$($HONE runs | awk 'NR==2 {print $1}')
out=$($HONE run $P --dry-run)
check "--dry-run lists what would run" contains "$out" "would run sorted"
check "  ... and records no run" eq "$($HONE runs | awk 'NR==2 {print $1}')" "$before"
check "  ... the stage is still stale" contains "$($HONE status $P)" "input changed: data/x.txt"

done_testing
