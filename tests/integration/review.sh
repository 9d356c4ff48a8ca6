#!/usr/bin/env bash
# Regressions for defects found in review: sandbox escapes, cache-key holes,
# crashes, races and misleading messages. Each check failed before its fix.
. "$(dirname "$0")/lib.sh"
printf 'hello\n' > a.txt
printf 'hello\n' > b.txt

# sandbox: the string metatable is not a way back to the privileged library
cat > esc.lua <<'LUA'
local S = getmetatable("")
assert(S == false, "string metatable visible")
LUA
check "getmetatable(\"\") reveals nothing" "$HONE" run esc.lua -q
cat > esc2.lua <<'LUA'
string.match = function() return true end
LUA
check "library tables are read-only" fails_with 2 "cannot modify string.match" "$HONE" run esc2.lua
cat > esc3.lua <<'LUA'
local s = stage "s" { outputs = { ("../"):rep(3) .. "etc" }, run = function() end }
LUA
check "output names cannot climb out of the store" fails_with 2 "output name" "$HONE" run esc3.lua
cat > esc4.lua <<'LUA'
local s = stage "s" { run = function(ctx) ctx:write("x", "1") end }
stage "t" { s, run = function(ctx, x) ctx:write("y", x:read("../../../../etc/hostname")) end }
LUA
check "reading outside an input is refused" fails_with 1 "must be relative" "$HONE" run esc4.lua
cat > gc.lua <<'LUA'
setmetatable({}, { __gc = function() while true do end end })
LUA
check "finalizers (which could not be stopped) are refused" fails_with 2 "__gc finalizers are not available" timeout 20 "$HONE" dag gc.lua

# keys: functions on one line differ
cat > same.lua <<'LUA'
local f1, f2 = function(l) return l .. "-ONE" end, function(l) return l .. "-TWO" end
map { "a.txt", fn = f1, name = "m1" }
map { "a.txt", fn = f2, name = "m2" }
LUA
"$HONE" run same.lua -q
o1=$(cat "$("$HONE" show same.lua m1 | awk '/^path/ {print $2}')a.txt")
o2=$(cat "$("$HONE" show same.lua m2 | awk '/^path/ {print $2}')a.txt")
check "two functions on one line are told apart" eq "$o1 $o2" "hello-ONE hello-TWO"

# keys: digests see the script's final state
cat > late.lua <<'LUA'
local suffix = "-A"
map { "a.txt", fn = function(l) return l .. suffix end }
suffix = "-B"
LUA
"$HONE" run late.lua -q
sed -i 's/"-B"/"-C"/' late.lua
"$HONE" run late.lua -q
out=$(cat "$("$HONE" show late.lua map | awk '/^path/ {print $2}')a.txt")
check "a value changed later in the script re-runs the stage" eq "$out" "hello-C"

# keys: a table with __index is a table, not a function marker
cat > idx.lua <<'LUA'
local opts = setmetatable({ suffix = "-A" }, { __index = function() return "x" end })
stage "s" { opts = opts, run = function(ctx) ctx:write("o", ctx.params.opts.suffix) end }
LUA
"$HONE" run idx.lua -q
sed -i 's/"-A"/"-B"/' idx.lua
"$HONE" run idx.lua -q
out=$(cat "$("$HONE" show idx.lua s | awk '/^path/ {print $2}')o")
check "tables with __index keep their contents in the key" eq "$out" "-B"

# keys: file names kernels can see are part of the key
printf 'wc { "a.txt" }\n' > wa.lua
printf 'wc { "b.txt" }\n' > wb.lua
"$HONE" run wa.lua -q
"$HONE" run wb.lua -q
out=$(cat "$("$HONE" show wb.lua wc | awk '/^path/ {print $2}')counts.tsv")
check "same bytes under another name: wc reports the right name" contains "$out" "b.txt"
cat > names.lua <<'LUA'
local function body(ctx) ctx:write("n", ctx.stage) end
stage "s" { run = body }
stage "t" { run = body }
LUA
"$HONE" run names.lua -q
check "a body that reads ctx.stage is keyed by it" eq "$(cat "$("$HONE" show names.lua t | awk '/^path/ {print $2}')n")" "t"

# many inputs to a Lua stage
{
	printf 'stage "s" { '
	for i in $(seq 300); do printf '"a.txt", '; done
	printf 'run = function(ctx, ...) ctx:write("n", tostring(select("#", ...))) end }\n'
} > many.lua
check "300 inputs to a Lua stage" "$HONE" run many.lua -q
check "  ... all passed" eq "$(cat "$("$HONE" show many.lua s | awk '/^path/ {print $2}')n")" "300"

# identical stages at -j 16 do not race on their key entry
{
	for i in $(seq 40); do printf 'wc { "a.txt", name = "w%d" }\n' "$i"; done
} > same40.lua
ok=1
for round in 1 2 3; do
	rm -rf "$HONE_CACHE"
	"$HONE" run same40.lua -q -j 16 || ok=0
done
check "40 identical stages at -j 16, three times" eq "$ok" 1

# an output left open is closed and checked
cat > open.lua <<'LUA'
stage "s" { run = function(ctx) local f = ctx:open("o") f:write("data") end }
LUA
check "an unclosed output is still complete" bash -c "'$HONE' run open.lua -q && [ \"\$(cat \"\$('$HONE' show open.lua s | awk '/^path/ {print \$2}')o\")\" = data ]"

# --force heals a damaged object
printf 'wc { "a.txt" }\n' > heal.lua
"$HONE" run heal.lua -q
obj=$("$HONE" show heal.lua wc | awk '/^path/ {print $2}')
chmod u+w "$obj/counts.tsv"
echo garbage > "$obj/counts.tsv"
"$HONE" run heal.lua -q --force wc
check "--force replaces a damaged object" "$HONE" verify
check "  ... with the right content" contains "$(cat "$obj/counts.tsv")" "total"

# CLI
check "-j0 is refused" fails_with 2 "run: --jobs expects an integer from 1 to 1024, got '0'" "$HONE" run heal.lua -j0
check "runs -n 1 lists one run" eq "$("$HONE" runs -n 1 | tail -n +2 | wc -l)" 1
check "the manifest name cannot be written" fails_with 1 'output name "./.hone-manifest"' \
	bash -c "printf '%s\n' 'stage \"s\" { run = function(ctx) ctx:write(\"./.hone-manifest\", \"x\") end }' > m.lua; '$HONE' run m.lua"
check "names with .. inside are fine" bash -c "printf '%s\n' 'stage \"s\" { run = function(ctx) ctx:write(\"a..b\", \"x\") end }' > d.lua; '$HONE' run d.lua -q"

done_testing
