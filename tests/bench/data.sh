#!/usr/bin/env bash
# Benchmark: the data stages, hone side by side with peers.
#
#   ingest of JSON Lines text records from a plain file  vs  jq -c . (same file)
#   ingest of the SpamAssassin .tgz end to end (seconds, MB/s decompressed)
#   exact dedupe and near dedupe (MinHash, 128 permutations, 5-char shingles)
#   peak memory of ingest and dedupe against the dataset size they write
#
# Usage: tests/bench/data.sh [SIZE_MB] (default 300). Work in $BENCH_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HONE=$ROOT/hone
MB=${1:-300}
DIR=${BENCH_DIR:-/tmp/hone-bench-data}
mkdir -p "$DIR"
cd "$DIR"
export HONE_CACHE=$DIR/cache

secs() { "$HONE" runs -1 | awk -v s="$1" '$2 == s {print $3}' | tr -d s; }
peak_kb() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }

if [ ! -f text.jsonl ] || [ "$(stat -c %s text.jsonl)" -lt $((MB * 1000000)) ]; then
	echo "generating text.jsonl (~$MB MB of text records)..."
	# 2000-word vocabulary, 20-300 words per record; 1 in 20 records repeats an
	# earlier one exactly and 1 in 20 with a few words changed
	awk -v target=$((MB * 1000000)) 'BEGIN {
		srand(11)
		for (i = 0; i < 2000; i++) { w = ""; n = 2 + int(rand() * 8); for (k = 0; k < n; k++) w = w sprintf("%c", 97 + int(rand() * 26)); vocab[i] = w }
		size = 0; id = 0
		while (size < target) {
			r = rand()
			if (r < 0.05 && id > 10) { t = prev[int(rand() * 10)] }
			else if (r < 0.10 && id > 10) { t = prev[int(rand() * 10)]; sub(/ [a-z]+ /, " changed ", t) }
			else { n = 20 + int(rand() * 280); t = vocab[int(rand() * 2000)]; for (k = 1; k < n; k++) t = t " " vocab[int(rand() * 2000)] }
			prev[id % 10] = t
			line = sprintf("{\"id\": %d, \"text\": \"%s\", \"label\": \"%s\", \"meta\": {\"src\": \"gen\"}}", id, t, (id % 3 ? "ham" : "spam"))
			print line; size += length(line) + 1; id++
		}
	}' > text.jsonl
fi
bytes=$(stat -c %s text.jsonl)

cat > pipeline.lua <<'LUA'
local d = ingest { "text.jsonl", fields = { text = "text", label = "label" } }
local e = dedupe { d, name = "exact" }
local n = dedupe { d, name = "near", near = 0.85, num_perm = 128, shingle = 5 }
LUA
"$HONE" run pipeline.lua -q --force near --threads 1
near1_s=$(secs near)
"$HONE" run pipeline.lua -q --force ingest --force exact --force near --threads 2
ingest_s=$(secs ingest); near_s=$(secs near)
# exact dedupe on one core: best of 3 (the first run after others can pay
# for the page cache's first touch of fresh memory: see docs/performance.md)
exact1_s=
exact_all=
for i in 1 2 3; do
	"$HONE" run pipeline.lua -q --force exact --threads 1
	s=$(secs exact)
	exact_all="$exact_all $s"
	if [ -z "$exact1_s" ] || [ "$(echo "$s < $exact1_s" | bc -l)" = 1 ]; then exact1_s=$s; fi
done
sync
jq_s=$( { /usr/bin/time -f %e jq -c . text.jsonl >/dev/null; } 2>&1 | tail -1)
rec=$("$HONE" show pipeline.lua ingest | awk '/^path/ {print $2}')data.rec
recbytes=$(stat -c %s "$rec")
mbps() { echo "$1 / 1000000 / $2" | bc -l; }
echo
printf 'JSON Lines, %.0f MB, %s records (one core):\n' "$(echo "$bytes / 1000000" | bc -l)" "$(wc -l < text.jsonl)"
printf '  hone ingest     %6.2f s  %6.0f MB/s\n' "$ingest_s" "$(mbps "$bytes" "$ingest_s")"
printf '  jq -c .         %6.2f s  %6.0f MB/s\n' "$jq_s" "$(mbps "$bytes" "$jq_s")"
printf '  hone / jq = %.1fx\n' "$(echo "$jq_s / $ingest_s" | bc -l)"
textbytes=$("$HONE" runs -1 | awk '$2 == "exact"' | grep -o '"key_bytes":[0-9]*' | cut -d: -f2)
printf 'dedupe over %.0f MB of text:\n' "$(echo "$textbytes / 1000000" | bc -l)"
printf '  exact, 1 thread %6.2f s  %6.0f MB/s  (best of 3 runs:%s s)\n' "$exact1_s" "$(mbps "$textbytes" "$exact1_s")" "$exact_all"
printf '  near, 1 thread  %6.2f s  %6.0f MB/s\n' "$near1_s" "$(mbps "$textbytes" "$near1_s")"
printf '  near, 2 threads %6.2f s  %6.0f MB/s  (%.2fx)\n' "$near_s" "$(mbps "$textbytes" "$near_s")" "$(echo "$near1_s / $near_s" | bc -l)"
"$HONE" runs -1 | awk '$2 == "exact" || $2 == "near"' | grep -o '"[a-z_]*removed":[0-9]*' | paste -sd' ' | sed 's/^/  removed: /'

echo "peak memory (dataset written: $((recbytes / 1048576)) MiB):"
ing_kb=$(peak_kb "$HONE" run pipeline.lua -q --force ingest)
dd_kb=$(peak_kb "$HONE" run pipeline.lua -q --force exact)
printf '  ingest %d MiB (%.2fx)   exact dedupe %d MiB (%.2fx)\n' $((ing_kb / 1024)) \
	"$(echo "$ing_kb * 1024 / $recbytes" | bc -l)" $((dd_kb / 1024)) "$(echo "$dd_kb * 1024 / $recbytes" | bc -l)"

if [ -f "$ROOT/data/spam-assassin.tgz" ]; then
	"$HONE" run "$ROOT/examples/spam/pipeline.lua" -q --force ingest --force dedupe
	s=$("$HONE" runs -1 | awk '$2 == "ingest" {print $3}' | tr -d s)
	b=$("$HONE" runs -1 | awk '$2 == "ingest"' | grep -o '"bytes":[0-9]*' | cut -d: -f2)
	d=$("$HONE" runs -1 | awk '$2 == "dedupe" {print $3}' | tr -d s)
	printf 'SpamAssassin .tgz (6,046 emails, %.1f MB decompressed JSON):\n' "$(echo "$b / 1000000" | bc -l)"
	printf '  ingest          %6.2f s  %6.0f MB/s\n' "$s" "$(mbps "$b" "$s")"
	printf '  dedupe near=0.85 %5.2f s\n' "$d"
fi
