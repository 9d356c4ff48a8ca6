#!/usr/bin/env bash
# Benchmark: the engine's own cost per stage, at scale.
#
# Generates pipelines of trivial stages, each reading its own one-line input:
#   native  N `concat` stages
#   lua     N `map` stages (a Lua function per line)
# and times, for N in SIZES (default "100 1000 10000"), the first run (empty
# store) and the no-op re-run, then prints the cost per stage. The store's
# per-object files (manifest, key file, folder rename) are what remains.
#
# Usage: tests/bench/stages.sh [SIZES...]   (JOBS, default 2; BENCH_DIR,
# default /tmp/hone-bench-stages)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$ROOT/hone}
DIR=${BENCH_DIR:-/tmp/hone-bench-stages}
JOBS=${JOBS:-2}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 1000 10000)
mkdir -p "$DIR"
cd "$DIR"

secs() { # secs CMD...: wall seconds of one run
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

printf '%-7s %6s  %10s %12s  %10s %12s\n' kind stages "first (s)" "per stage" "no-op (s)" "per stage"
for n in "${SIZES[@]}"; do
	mkdir -p "in$n"
	if [ ! -f "in$n/$n.txt" ]; then
		for ((i = 1; i <= n; i++)); do echo "line $i" > "in$n/$i.txt"; done
	fi
	cat > "native$n.lua" <<LUA
for i = 1, $n do concat { "in$n/" .. i .. ".txt", name = "c" .. i } end
LUA
	cat > "lua$n.lua" <<LUA
for i = 1, $n do map { "in$n/" .. i .. ".txt", name = "m" .. i, fn = function(l) return l end } end
LUA
	for kind in native lua; do
		rm -rf "cache-$kind$n"
		export HONE_CACHE=$DIR/cache-$kind$n
		first=$(secs "$HONE" run "$kind$n.lua" -q -j "$JOBS")
		noop=$(secs "$HONE" run "$kind$n.lua" -q -j "$JOBS")
		printf '%-7s %6d  %10.2f %10.2f ms  %10.3f %10.3f ms\n' "$kind" "$n" "$first" \
			"$(echo "$first * 1000 / $n" | bc -l)" "$noop" "$(echo "$noop * 1000 / $n" | bc -l)"
		rm -rf "cache-$kind$n"
	done
done
