#!/usr/bin/env bash
# Benchmark: hone serve on loopback, in one run.
#   classifier: 64 concurrent clients (hey) POSTing one record to /predict for
#     SECONDS: errors, requests/s, p50/p99 latency, and the ratio to hone
#     predict's batch rate (rows/s) on the same bundle;
#   generation: 8 concurrent clients against one (a 4-layer, 256-wide GPT-2,
#     context 512, 128 tokens each, greedy) for SECONDS: aggregate tokens/s
#     (counted by /metrics) and its ratio; p50/p99 time to first token of
#     streamed requests, 1 and 8 at once;
#   soak: 8 clients (hey) on /v1/completions for SOAK seconds, the server's
#     RSS sampled every second (start, end, max, drift);
#   and OpenBLAS sgemm's peak on the same threads.
# Usage: tests/bench/serve.sh [SECONDS] [SOAK] [THREADS]   (default 10, 20, 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-10}
SOAK=${2:-20}
TH=${3:-2}
HONE=$ROOT/hone
W=$ROOT/tests/bench/work/serve
mkdir -p "$W"
cd "$ROOT"
make -s build/bench_sgemm
command -v hey >/dev/null || { echo "serve.sh: hey is missing (make deps-bench installs it)"; exit 1; }
. "$ROOT/tests/toy_data.sh"
cd "$W"
export HONE_CACHE=$W/cache
toy_docs 2000 > docs.jsonl
awk 'BEGIN { srand(3) } { sub(/}$/, ",\"id\":\"r" NR "\",\"n\":" int(rand() * 5) "}"); print }' <(toy_classes 20000) > cls.jsonl
cat > p.lua <<'LUA'
local c = ingest { "cls.jsonl", fields = { id = "id", text = "text", label = "label", n = "n" }, types = { n = "int", label = "category" } }
local parts = split { c, train = 0.8, val = 0.1, test = 0.1, seed = 1, stratify = "label" }
local tok = tokenizer { parts.train, vocab = 1000 }
local ids = tokenize { parts, tok, max_len = 64 }
local clf = train { ids.train, val = ids.val, inputs = { text = "text", n = "number" }, output = { label = "category" },
                    embedding_dim = 32, layers = { 32 }, epochs = 1, batch = 32, lr = 0.01, seed = 3 }
export { clf, tok, to = "cls.tar.gz" }
local d = ingest { "docs.jsonl", fields = { text = "text" }, name = "docs" }
local dtok = tokenizer { d, vocab = 1000, name = "dtok" }
local dids = tokenize { d, dtok, max_len = 64, pack = true, name = "dids" }
local base = model { n_layer = 4, n_head = 4, n_embd = 256, n_positions = 512, vocab = 1000, seed = 2 }
local lm = train { dids, base = base, steps = 1, batch = 2, lr = 0.001, seed = 1, name = "lm" }
export { lm, dtok, to = "lm.tar.gz", name = "lm_export" }
LUA
"$HONE" run p.lua -q

PID=
start() { # start ARGS...: hone serve in the background; PORT once it listens
	"$HONE" serve "$@" --port 0 --threads "$TH" 2> serve.log &
	PID=$!
	for _ in $(seq 1 200); do grep -q '^hone: serving' serve.log && break; sleep 0.05; done
	PORT=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' serve.log | head -1)
}
finish() { kill -TERM "$PID"; wait "$PID"; }
trap '[ -n "$PID" ] && kill -TERM $PID 2>/dev/null; true' EXIT
heyv() { sed -n "s|^ *$1[: \t]*\([0-9.]*\).*|\1|p" hey.txt | head -1; }

echo "hone serve benchmark: loopback, $TH threads, $(nproc) cores"
echo "  $("$ROOT/build/bench_sgemm" "$TH")"

# --- the classifier ------------------------------------------------------------------------
jq -c 'del(.label)' cls.jsonl > rows.jsonl
rate=$("$HONE" predict cls.tar.gz --input rows.jsonl 2>&1 >/dev/null | sed -n 's/.*(\([0-9]*\) rows\/s).*/\1/p')
head -1 rows.jsonl > one.json
start cls.tar.gz --queue 256
hey -z "${SECS}s" -c 64 -m POST -T application/json -D one.json "http://127.0.0.1:$PORT/predict" > hey.txt
rps=$(heyv "Requests/sec"); p50=$(sed -n 's/^ *50% in \([0-9.]*\).*/\1/p' hey.txt); p99=$(sed -n 's/^ *99% in \([0-9.]*\).*/\1/p' hey.txt)
ok=$(sed -n 's/^ *\[200\][ \t]*\([0-9]*\).*/\1/p' hey.txt); ok=${ok:-0}
tot=$(awk '/Status code distribution/ {f = 1; next} f && /responses/ {s += $2} END {print s + 0}' hey.txt)
errs=$(awk '/Error distribution/ {f = 1; next} f && /\[/ {gsub(/[\[\]]/, "", $1); s += $1} END {print s + 0}' hey.txt)
finish
echo "classifier /predict, 64 clients for ${SECS}s (one record per request):"
printf '  %s requests/s, p50 %.2f ms, p99 %.2f ms, %d answered, %d not 200, %d connection errors\n' "$rps" \
	"$(echo "$p50 * 1000" | bc -l)" "$(echo "$p99 * 1000" | bc -l)" "$tot" "$((tot - ok))" "$errs"
printf '  hone predict (batch, %d rows): %d rows/s; serve / predict = %.1f%%\n' "$(wc -l < rows.jsonl)" "$rate" \
	"$(echo "100 * $rps / $rate" | bc -l)"
# /batch_predict with 100 records per request, 8 clients: the batched path
jq -s -c '.[:100]' rows.jsonl > hundred.json
start cls.tar.gz --queue 256
hey -z "${SECS}s" -c 8 -m POST -T application/json -D hundred.json "http://127.0.0.1:$PORT/batch_predict" > hey.txt
brps=$(heyv "Requests/sec")
finish
printf '  /batch_predict, 100 records per request, 8 clients: %.0f rows/s = %.1f%% of hone predict\n' \
	"$(echo "$brps * 100" | bc -l)" "$(echo "100 * $brps * 100 / $rate" | bc -l)"

# --- generation: 8 streams against 1 -----------------------------------------------------------
# aggregate tokens/s: hey's clients (non-streaming) for SECONDS, the tokens
# counted by the server's /metrics; time to first token: streamed requests
tokens() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^hone_tokens_generated_total/ {print $2}'; }
echo '{"prompt": "the cat sat on the mat", "max_tokens": 128, "temperature": 0}' > gen128.json
start lm.tar.gz --parallel 8
python3 "$ROOT/tests/bench/serve_gen.py" "127.0.0.1:$PORT" 1 1 8 >/dev/null # warm up
agg() { # agg CLIENTS: tokens/s
	local t0 t1
	t0=$(tokens)
	hey -z "${SECS}s" -c "$1" -m POST -T application/json -D gen128.json "http://127.0.0.1:$PORT/v1/completions" > hey.txt
	t1=$(tokens)
	echo "($t1 - $t0) / $SECS" | bc -l
}
a1=$(agg 1)
a8=$(agg 8)
one=$(python3 "$ROOT/tests/bench/serve_gen.py" "127.0.0.1:$PORT" 1 4 128)
eight=$(python3 "$ROOT/tests/bench/serve_gen.py" "127.0.0.1:$PORT" 8 2 128)
finish
echo "generation /v1/completions, 128 tokens per request (GPT-2 4 x 256, context 512, --parallel 8), ${SECS}s each:"
printf '  1 client:  %.0f tokens/s;  8 clients: %.0f tokens/s aggregate = %.2fx\n' "$a1" "$a8" "$(echo "$a8 / $a1" | bc -l)"
for r in "$one" "$eight"; do
	jq -r '"  streamed, \(.clients) at once: time to first token p50 \(.ttft_p50_ms) ms, p99 \(.ttft_p99_ms) ms (\(.requests) requests, \(.errors) errors, \(.tokens_per_s) tokens/s as the client saw them)"' <<<"$r"
done

# --- the soak: RSS over time -------------------------------------------------------------------
start lm.tar.gz --parallel 8
echo '{"prompt": "the cat sat", "max_tokens": 64, "temperature": 0.8}' > gen.json
hey -z "${SOAK}s" -c 8 -m POST -T application/json -D gen.json "http://127.0.0.1:$PORT/v1/completions" > hey.txt &
HEY=$!
: > rss.txt
for _ in $(seq 1 "$SOAK"); do
	sleep 1
	awk '/^VmRSS/ {print $2}' "/proc/$PID/status" >> rss.txt
done
wait "$HEY"
srps=$(heyv "Requests/sec")
finish
echo "soak: 8 clients on /v1/completions (64 tokens each) for ${SOAK}s, $srps requests/s:"
awk 'NR == 1 {a = $1} {m = $1 > m ? $1 : m; z = $1} END {printf "  RSS %.1f MiB after 1 s, %.1f MiB at the end, %.1f MiB at most: %+.1f%% from the first second\n", a / 1024, z / 1024, m / 1024, 100 * (z - a) / a}' rss.txt
awk 'NR == int(n / 2) {a = $1} {z = $1} END {printf "  second half: %+.1f%%\n", 100 * (z - a) / a}' n="$(wc -l < rss.txt)" rss.txt
