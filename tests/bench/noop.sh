#!/usr/bin/env bash
# Benchmark: the no-op re-run and cold hashing, hone side by side with peers.
#
#   (a) `hone run` of an unchanged 7-stage pipeline over 1 GiB of inputs
#   (b) the same pipeline for Snakemake (`snakemake -n`, its no-op dry run)
#       and for GNU make (`make -q`)
#   (c) hashing a cold 1 GiB file: `hone hash` against `xxhsum -H2`
#
# Prints each median and the ratios. Usage: tests/bench/noop.sh [SIZE_MIB]
# (default 1024). Work files go to $BENCH_DIR (default /tmp/hone-bench).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HONE=$ROOT/hone
MIB=${1:-1024}
DIR=${BENCH_DIR:-/tmp/hone-bench}
REPS=${REPS:-21}
mkdir -p "$DIR"
cd "$DIR"

drop_cache() { # evict a file from the page cache (and all caches when root)
	sync
	{ echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true
	dd if="$1" iflag=nocache count=0 2>/dev/null || true
}
export -f drop_cache
time_ms() { # time_ms REPS [hyperfine options] -- CMD -> median milliseconds
	local reps=$1
	shift
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	hyperfine -N -w 1 -r "$reps" "${opts[@]}" --export-json hf.json "$*" >/dev/null 2>&1
	jq '.results[0].median * 1000' hf.json
}

# inputs: four files, MIB in all
part=$((MIB / 4))
for i in 1 2 3 4; do
	if [ ! -f in$i.bin ] || [ "$(stat -c %s in$i.bin)" != $((part * 1048576)) ]; then
		echo "generating in$i.bin ($part MiB)..."
		head -c $((part * 1048576)) /dev/urandom > in$i.bin
	fi
done

if [ ! -f hash.bin ] || [ "$(stat -c %s hash.bin)" != $((MIB * 1048576)) ]; then
	echo "generating hash.bin ($MIB MiB)..."
	head -c $((MIB * 1048576)) /dev/urandom > hash.bin
fi

cat > pipeline.lua <<'LUA'
-- 7 stages over the four inputs
local c1 = wc { "in1.bin", }
local c2 = wc { "in2.bin", }
local c3 = wc { "in3.bin", }
local c4 = wc { "in4.bin", }
local all = concat { c1, c2, c3, c4, output = "counts.tsv" }
local totals = filter { all, fn = function(l) return l:match("^total") ~= nil end }
local report = stage "report" { totals, run = function(ctx, t)
  local bytes = 0
  for l in t:lines() do bytes = bytes + tonumber(l:match("(%d+)$")) end
  ctx:write("report.txt", "bytes\t", tostring(bytes), "\n")
end }
LUA

cat > Snakefile <<'SMK'
rule all:
    input: "sm/report.txt"
rule wc:
    input: "in{i}.bin"
    output: "sm/wc{i}.tsv"
    shell: "wc -l -w -c {input} > {output}"
rule concat:
    input: expand("sm/wc{i}.tsv", i=[1, 2, 3, 4])
    output: "sm/counts.tsv"
    shell: "cat {input} > {output}"
rule totals:
    input: "sm/counts.tsv"
    output: "sm/totals.tsv"
    shell: "awk '{{b += $3}} END {{print b}}' {input} > {output}"
rule report:
    input: "sm/totals.tsv"
    output: "sm/report.txt"
    shell: "sed 's/^/bytes\t/' {input} > {output}"
SMK

cat > Makefile <<'MK'
mk/report.txt: mk/totals.tsv
	sed 's/^/bytes\t/' $< > $@
mk/totals.tsv: mk/counts.tsv
	awk '{b += $$3} END {print b}' $< > $@
mk/counts.tsv: mk/wc1.tsv mk/wc2.tsv mk/wc3.tsv mk/wc4.tsv
	cat $^ > $@
mk/wc%.tsv: in%.bin
	@mkdir -p mk
	wc -l -w -c $< > $@
MK

export HONE_CACHE=$DIR/cache
echo "first runs (populate caches)..."
"$HONE" run pipeline.lua -q -j 2
snakemake -j 2 --quiet >/dev/null 2>&1
make -s -j 2 >/dev/null

echo
echo "no-op re-run, median of $REPS (7 stages, $MIB MiB of inputs):"
hone_ms=$(time_ms "$REPS" -- "$HONE" run pipeline.lua -q)
ran=$("$HONE" runs -1 | awk 'NR > 1 && $1 == "ran"' | wc -l)
smk_ms=$(time_ms 5 -- snakemake -n -j 1 --quiet)
make_ms=$(time_ms "$REPS" -- make -q)
printf '  hone run        %8.2f ms   (stages executed: %d)\n' "$hone_ms" "$ran"
printf '  snakemake -n    %8.2f ms\n' "$smk_ms"
printf '  make -q         %8.2f ms\n' "$make_ms"
printf '  snakemake / hone = %.1fx   make / hone = %.2fx\n' \
	"$(echo "$smk_ms / $hone_ms" | bc -l)" "$(echo "$make_ms / $hone_ms" | bc -l)"

echo
echo "hashing a cold $MIB MiB file (median of 3, page cache dropped before each):"
hone_h=$(time_ms 3 --prepare "bash -c 'drop_cache hash.bin'" -- "$HONE" hash hash.bin)
xxh_h=$(time_ms 3 --prepare "bash -c 'drop_cache hash.bin'" -- xxhsum -H2 hash.bin)
printf '  hone hash       %8.2f ms  %7.0f MB/s\n' "$hone_h" "$(echo "$MIB * 1.048576 / $hone_h * 1000" | bc -l)"
printf '  xxhsum -H2      %8.2f ms  %7.0f MB/s\n' "$xxh_h" "$(echo "$MIB * 1.048576 / $xxh_h * 1000" | bc -l)"
printf '  hone throughput / xxhsum = %.2f\n' "$(echo "$xxh_h / $hone_h" | bc -l)"
