#!/usr/bin/env bash
# Models by their Hugging Face id: model { from = "org/name" } found in the
# local Hugging Face cache, or downloaded into it (libcurl) from a stand-in
# for the Hub on a loopback port (hub_server.py: this machine cannot reach
# the Hub): the cache's layout, the sha256 of LFS files checked, a partial
# file resumed, a gated model's token, offline errors that say where hone
# looked; the model keyed by content like any input.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"

mkdir -p srv/hone-test/tiny-qwen2 srv/hone-test/gated srv/hone-test/broken srv/hone-test/sharded
cp "$ROOT/tests/fixtures/llama/qwen2_v300/"* srv/hone-test/tiny-qwen2/
cp "$ROOT/tests/fixtures/llama/qwen2_v300/"* srv/hone-test/gated/ && echo s3cret > srv/hone-test/gated/.gated
cp "$ROOT/tests/fixtures/llama/qwen2_v300/"* srv/hone-test/broken/ && touch srv/hone-test/broken/.corrupt
cp "$ROOT/tests/fixtures/bert/shard/"* srv/hone-test/sharded/ && rm -f srv/hone-test/sharded/reference.json
python3 "$ROOT/tests/integration/hub_server.py" "$WORK/srv" port &
SRV=$!
trap 'kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
export HF_ENDPOINT=http://127.0.0.1:$(cat port) HF_HUB_CACHE=$WORK/hub
unset HF_TOKEN HF_HUB_OFFLINE HONE_OFFLINE

toy_docs 200 > docs.jsonl
cat > p.lua <<'LUA'
local d = ingest { "docs.jsonl", fields = { text = "text" } }
local tok = tokenizer { d, vocab = 300 }
local ids = tokenize { d, tok, max_len = 24, pack = true }
local q = model { from = "hone-test/tiny-qwen2" }
train { ids, base = q, lr = 0.001, batch = 8, steps = 3, seed = 1, name = "ft" }
LUA
check "model { from = \"org/name\" } downloads it into the Hugging Face cache" "$HONE" run p.lua -q
R=$WORK/hub/models--hone-test--tiny-qwen2
C=$(cat "$R/refs/main" 2>/dev/null)
check "  ... in the cache's layout: refs/main, snapshots/COMMIT/ links into blobs/" bash -c \
	"[ \${#C} = 40 ] 2>/dev/null || [ \$(wc -c < '$R/refs/main') = 40 ]; [ -L '$R/snapshots/$C/model.safetensors' ] && [ -f '$R/snapshots/$C/config.json' ] && ls '$R/blobs' | grep -q ."
check "  ... the weights' blob is named by their sha256 (the LFS pointer's)" test -f "$R/blobs/$(sha256sum < srv/hone-test/tiny-qwen2/model.safetensors | cut -c1-64)"
check "  ... the same bytes as the repository's" cmp "$R/snapshots/$C/model.safetensors" srv/hone-test/tiny-qwen2/model.safetensors
n=$(wc -l < srv/requests.log)
rm -rf cache
check "again, from the cache: no request" "$HONE" run p.lua -q
check "  ... (the server saw none)" eq "$(wc -l < srv/requests.log)" "$n"
check "offline (HF_HUB_OFFLINE=1), the cached model still resolves" env HF_HUB_OFFLINE=1 "$HONE" run p.lua -q --force model
sed 's|hone-test/tiny-qwen2|hone-test/absent|' p.lua > e1.lua
check "offline, a model not in the cache says where it looked" fails_with 2 "not in the Hugging Face cache (looked in $WORK/hub/models--hone-test--absent)" \
	env HF_HUB_OFFLINE=1 "$HONE" run e1.lua -q
check "online, a missing repository is the server's 404, with a hint" fails_with 2 "HTTP 404" "$HONE" run e1.lua -q
check "a local folder of that name wins over the cache (no request, an empty cache)" bash -c "mkdir -p hone-test && cp -r srv/hone-test/tiny-qwen2 hone-test/ && n=\$(wc -l < srv/requests.log) && HF_HUB_CACHE=$WORK/empty '$HONE' run p.lua -q && [ \$(wc -l < srv/requests.log) = \$n ] && rm -rf hone-test"
sed 's|hone-test/tiny-qwen2|hone-test/gated|' p.lua > g.lua
check "a gated model without HF_TOKEN: 401 and the hint to set it" fails_with 2 "set HF_TOKEN" "$HONE" run g.lua -q
check "  ... with HF_TOKEN it downloads (a bearer token)" env HF_TOKEN=s3cret "$HONE" run g.lua -q
check "  ... the token went as Authorization: Bearer" grep -q "Bearer s3cret" srv/requests.log
sed 's|hone-test/tiny-qwen2|hone-test/broken|' p.lua > b.lua
check "weights whose sha256 is not the LFS pointer's are refused" fails_with 2 "is not the 0000" "$HONE" run b.lua -q
check "  ... and nothing is left in the cache for them" bash -c "! ls '$WORK/hub/models--hone-test--broken/blobs/' 2>/dev/null | grep -q '^0000'"
# a partial download is resumed with a Range request
rm -rf "$R" && mkdir -p "$R/blobs"
head -c 5000 srv/hone-test/tiny-qwen2/model.safetensors > "$R/blobs/$C.model.safetensors.incomplete"
check "a partial file is resumed" "$HONE" run p.lua -q --force model
check "  ... with a Range request from where it stopped" grep -q "resolve/$C/model.safetensors bytes=5000-" srv/requests.log
check "  ... and the whole file is the repository's" cmp "$R/snapshots/$C/model.safetensors" srv/hone-test/tiny-qwen2/model.safetensors
# shards: the index's files
printf 'local b = model { from = "hone-test/sharded" }\n' > s.lua
check "a sharded checkpoint: the index and every shard it lists" "$HONE" run s.lua -q
check "  ... the shards are in the snapshot" bash -c "ls '$WORK/hub/models--hone-test--sharded/snapshots/'*/ | grep -c 'model-0000' | grep -qv '^0$'"
check "a revision: org/name@COMMIT" bash -c "printf 'model { from = \"hone-test/tiny-qwen2@$C\" }\n' > r.lua && '$HONE' run r.lua -q"
done_testing
