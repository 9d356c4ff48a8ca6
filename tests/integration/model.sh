#!/usr/bin/env bash
# train, evaluate, export and `hone predict` end to end on a generated mail
# corpus: quality, determinism (runs and thread counts), resume after kill -9,
# re-running only what a parameter touches, bundle contents and bytes,
# predictions equal to evaluate's, the tokenizer.json in Hugging Face's
# tokenizers, and the errors.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"

# spam rows draw more from spam words; a link count and a domain ride along
awk -v N=2000 'BEGIN {
  srand(7);
  split("free money win prize click offer cash urgent deal bonus", S, " ");
  split("meeting report lunch project code review team notes plan agenda", H, " ");
  split("the a to of and in is for on with that this it at by", C, " ");
  for (i = 0; i < N; i++) {
    spam = rand() < 0.3; n = 8 + int(rand() * 20); t = "";
    for (k = 0; k < n; k++) {
      r = rand();
      if (r < 0.25) w = (spam ? S[1 + int(rand() * 10)] : H[1 + int(rand() * 10)]);
      else if (r < 0.3) w = (spam ? H[1 + int(rand() * 10)] : S[1 + int(rand() * 10)]);
      else w = C[1 + int(rand() * 15)];
      t = t (k ? " " : "") w;
    }
    printf "{\"id\":\"m%d\",\"text\":\"%s\",\"label\":\"%s\",\"links\":%d,\"domain\":\"%s\"}\n", i, t, spam ? "spam" : "ham",
      int(rand() * 3) + (spam ? 2 : 0), (rand() < 0.5 ? "a.com" : "b.org");
  }
}' > mail.jsonl

cat > p.lua <<'LUA'
local mail = ingest { "mail.jsonl", fields = { id = "id", text = "text", label = "label", links = "links", domain = "domain" },
                      types = { links = "int", label = "category", domain = "category" } }
local parts = split { mail, train = 0.7, val = 0.15, test = 0.15, seed = 1, stratify = "label" }
local tok = tokenizer { gpt2 = true }
local ids = tokenize { parts, tok, max_len = 64 }
local model = train { ids.train, val = ids.val, inputs = { text = "text", links = "number", domain = "category" },
                      output = { label = "category" }, embedding_dim = 16, bigrams = 1024, layers = { 16 },
                      epochs = 3, batch = 16, lr = 0.01, metric = "f1", patience = 2, seed = 3 }
local small = train { ids.train, val = ids.val, inputs = { links = "number", domain = "category" },
                      output = { label = "category" }, epochs = 2, name = "small" }
local score = evaluate { model, ids.test, compare = small }
export { model, tok, score, to = "dist/mail.tar.gz" }
LUA
check "pipeline to an exported bundle runs" "$HONE" run p.lua -q
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
metric() { "$HONE" runs -1 | tr ',{}' '\n\n\n' | grep "^\"$1\":" | head -1 | cut -d: -f2; }
check "test accuracy above 0.95 (the bag of words sees the planted words)" \
	awk -v a="$(metric accuracy)" 'BEGIN { exit !(a > 0.95) }'
check "the model beats the majority baseline and the text-less model" \
	awk -v a="$(metric accuracy)" -v b="$(metric baseline_accuracy)" -v c="$(metric compare_accuracy)" 'BEGIN { exit !(a > b && a > c) }'
M=$(cat "$(obj evaluate)metrics.json")
check "metrics.json: per class, averages, AUCs, confusion, baseline, compare, difference" bash -c \
	"jq -e '.model.classes.spam.f1 and .model.macro.f1 and .model.roc_auc and .model.pr_auc and .model.log_loss and (.model.confusion | length == 2) and .baseline.accuracy and .compare.accuracy and .difference.accuracy' <<<'$M' >/dev/null"
check "evaluate: predictions per row with probabilities" contains "$("$HONE" show p.lua evaluate --limit 2)" "prob_spam"
check "train keeps its curve and a summary" bash -c "grep -q '\"val_f1\"' '$(obj train)curve.jsonl' && jq -e '.best_epoch >= 1' '$(obj train)train.json' >/dev/null"

# determinism: a forced re-run, and another thread count, give the same bits
w1=$(sha256sum < "$(obj train)model.safetensors")
"$HONE" run p.lua -q --force train --threads 1
check "same weights on a re-run with 1 thread" eq "$(sha256sum < "$(obj train)model.safetensors")" "$w1"
"$HONE" run p.lua -q --force train --threads 2
check "  ... and with 2 threads" eq "$(sha256sum < "$(obj train)model.safetensors")" "$w1"
b1=$(sha256sum < dist/mail.tar.gz)
"$HONE" run p.lua -q --force export
check "the bundle's bytes do not change on a re-run" eq "$(sha256sum < dist/mail.tar.gz)" "$b1"
check "bundle members" eq "$(tar tzf dist/mail.tar.gz | tr '\n' ' ')" \
	"config.json lineage.json metrics.json model.safetensors tokenizer.json training/curve.jsonl "
check "lineage names every stage with its key and the source's content id" bash -c \
	"tar xzf dist/mail.tar.gz -O lineage.json | jq -e '[.[] | .stage // empty] | index(\"train\") and index(\"ingest\")' >/dev/null && tar xzf dist/mail.tar.gz -O lineage.json | jq -e '.[0].content | length == 32' >/dev/null"
rm dist/mail.tar.gz
"$HONE" run p.lua -q
check "a removed bundle comes back on the next (cached) run" test -f dist/mail.tar.gz
check "a new learning rate re-runs only train, evaluate and export" bash -c \
	"'$HONE' run p.lua -q --set train.lr=0.02 && [ \"\$('$HONE' runs -1 | awk 'NR > 1 && \$1 == \"ran\" {print \$2}' | sort | tr '\n' ' ')\" = 'evaluate export train ' ]"
"$HONE" run p.lua -q

# predict: the same classes as evaluate, for the test rows given as JSONL and as CSV
"$HONE" show p.lua split.test --jsonl --limit 100000 > test.jsonl
check "hone predict reads JSON Lines" "$HONE" predict dist/mail.tar.gz --input test.jsonl --output pred.jsonl -q
check "  ... one prediction per row, with the row's id" eq "$(wc -l < pred.jsonl):$(head -1 pred.jsonl | jq -r .id)" \
	"$(wc -l < test.jsonl):$(head -1 test.jsonl | jq -r .id)"
check "  ... the classes evaluate predicted" eq "$(jq -r .predicted pred.jsonl | tr '\n' ' ')" \
	"$("$HONE" show p.lua evaluate --jsonl --limit 100000 | jq -r .predicted | tr '\n' ' ')"
check "  ... the probabilities evaluate gave" eq "$(jq -r '.probs.spam * 1000 | round' pred.jsonl | tr '\n' ' ')" \
	"$("$HONE" show p.lua evaluate --jsonl --limit 100000 | jq -r '.prob_spam * 1000 | round' | tr '\n' ' ')"
jq -r '[.id, .text, .links, .domain] | @csv' test.jsonl | sed '1i id,text,links,domain' > test.csv
check "  ... CSV gives the same" eq "$("$HONE" predict dist/mail.tar.gz --input test.csv -q | jq -r .predicted | tr '\n' ' ')" \
	"$(jq -r .predicted pred.jsonl | tr '\n' ' ')"
# rows without the model's input fields are errors, not guesses
head -3 test.jsonl > ok3.jsonl; echo '{"id": "x", "body": "hi", "links": 1, "domain": "a.com"}' >> ok3.jsonl; head -2 test.jsonl >> ok3.jsonl
check "predict: a row without an input field names the row and the field" fails_with 1 "row 4: no field 'text'" \
	"$HONE" predict dist/mail.tar.gz --input ok3.jsonl
check "  ... answering the rows before it" eq "$("$HONE" predict dist/mail.tar.gz --input ok3.jsonl 2>/dev/null | wc -l)" 3
check "  ... --missing skip leaves it out and says so" bash -c \
	"out=\$('$HONE' predict dist/mail.tar.gz --input ok3.jsonl --missing skip 2>err); [ \$(wc -l <<<\"\$out\") = 5 ] && grep -q '1 of 6 rows lacked an input field (first: row 4' err"
check "  ... --missing empty answers it" eq "$("$HONE" predict dist/mail.tar.gz --input ok3.jsonl --missing empty -q | wc -l)" 6
check "  ... a null value is missing too" fails_with 1 "row 1: no field 'domain'" bash -c \
	"echo '{\"text\": \"hi\", \"links\": 1, \"domain\": null}' | '$HONE' predict dist/mail.tar.gz"
printf 'body,links,domain\nhi,1,a.com\n' > nocol.csv
check "predict: a CSV without an input column" fails_with 1 "nocol.csv:1: no column 'text', which the model reads (columns: body, links, domain)" \
	"$HONE" predict dist/mail.tar.gz --input nocol.csv
check "predict: a JSON array on stdin is an error, not 0 rows" fails_with 1 "not a JSON array" bash -c \
	"echo '[{\"text\": \"hi\"}]' | '$HONE' predict dist/mail.tar.gz"
check "  ... and in a file" fails_with 1 "arr.json: expected JSON Lines" bash -c \
	"echo '[{\"text\": \"hi\"}]' > arr.json && '$HONE' predict dist/mail.tar.gz --input arr.json"
check "predict: --missing takes error, skip or empty" fails_with 2 "--missing: expected error, skip or empty" \
	"$HONE" predict dist/mail.tar.gz --missing maybe
check "  ... stdin to stdout, timing on stderr" contains "$(head -3 test.jsonl | "$HONE" predict dist/mail.tar.gz 2>&1 >/dev/null)" "rows/s"

# the exported tokenizer.json in Hugging Face's tokenizers (when make installed them)
HF=$ROOT/build/node/node_modules/@huggingface/tokenizers
if [ -d "$HF" ] && command -v node >/dev/null; then
	tar xzf dist/mail.tar.gz tokenizer.json
	cp "$ROOT/tests/fixtures/gpt2/check_tokenizer_json.mjs" "$ROOT/build/node/"
	check "tokenizer.json gives tiktoken's ids in Hugging Face's tokenizers" node "$ROOT/build/node/check_tokenizer_json.mjs" \
		"$PWD/tokenizer.json" "$ROOT/tests/fixtures/gpt2"
else
	echo "# skipped: @huggingface/tokenizers not installed in build/node"
fi

# the exported tokenizer.json as a tokenizer: the same ids, the same merges file
tar xzf dist/mail.tar.gz tokenizer.json
cat > t.lua <<'LUA'
local d = ingest { "mail.jsonl" }
tokenize { d, tokenizer { gpt2 = true }, name = "a" }
tokenize { d, tokenizer { from = "tokenizer.json", name = "hf" }, name = "b" }
LUA
check "tokenizer { from = tokenizer.json } runs" "$HONE" run t.lua -q
tobj() { "$HONE" show t.lua "$1" | awk '/^path/ {print $2}'; }
check "  ... gives GPT-2's ids" cmp "$(tobj a)tokens.u32" "$(tobj b)tokens.u32"
check "  ... and writes GPT-2's merges file back byte for byte" cmp "$(tobj hf)vocab.bpe" "$ROOT/data/gpt2/vocab.bpe"
jq '.model.type = "WordPiece"' tokenizer.json > wp.json
printf 'tokenizer { from = "wp.json" }\n' > t2.lua
check "  ... a WordPiece model (by content) must have BERT's pre-tokenizer" fails_with 1 'wp.json: pre_tokenizer.type: expected "BertPreTokenizer"' "$HONE" run t2.lua -q
jq '.model.merges |= ([.[1], .[0]] + .[2:])' tokenizer.json > swapped.json
printf 'tokenizer { from = "swapped.json" }\n' > t3.lua
check "  ... refuses merges out of id order, naming the merge" fails_with 1 "merge 2 makes a token of a lower id" "$HONE" run t3.lua -q
head -c 5000 tokenizer.json > cut.json
printf 'tokenizer { from = "cut.json" }\n' > t4.lua
check "  ... a truncated file names file, line and column" fails_with 1 "cut.json:" "$HONE" run t4.lua -q

# resume: kill -9 after the first checkpoint; the next run resumes and ends
# with the bits of an uninterrupted run
cat > r.lua <<'LUA'
local mail = ingest { "mail.jsonl", fields = { text = "text", label = "label" }, types = { label = "category" } }
local parts = split { mail, train = 0.8, val = 0.2, seed = 1 }
local ids = tokenize { parts, tokenizer { gpt2 = true }, max_len = 32 }
train { ids.train, val = ids.val, inputs = { text = "text" }, output = { label = "category" },
        embedding_dim = 8, layers = { 8 }, epochs = 12, batch = 8, lr = 0.01, checkpoint_every = 25, seed = 5 }
LUA
HONE_CACHE=$WORK/c2 "$HONE" run r.lua -q
want=$(HONE_CACHE=$WORK/c2 "$HONE" show r.lua train | awk '/^path/ {print $2}')
want=$(sha256sum < "${want}model.safetensors")
HONE_CACHE=$WORK/c3 "$HONE" run r.lua -q --force train >/dev/null 2>&1 &
pid=$!
for _ in $(seq 400); do
	ls "$WORK"/c3/work/*/ckpt.bin >/dev/null 2>&1 && break
	sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
check "a checkpoint was left by the killed run" bash -c "ls '$WORK'/c3/work/*/ckpt.bin"
HONE_CACHE=$WORK/c3 "$HONE" run r.lua -q
got=$(HONE_CACHE=$WORK/c3 "$HONE" show r.lua train | awk '/^path/ {print $2}')
check "the next run resumed from it" jq -e '.resumed == true' "${got}train.json"
check "  ... and ended with the same weights as an uninterrupted run" eq "$(sha256sum < "${got}model.safetensors")" "$want"
check "  ... and removed the checkpoint" bash -c "! ls '$WORK'/c3/work/*/ckpt.bin 2>/dev/null"

# errors
err() { printf '%s\n' "$1" > e.lua; "$HONE" run e.lua -q; }
base='local ids = tokenize { split { ingest { "mail.jsonl", fields = { text = "text", label = "label" }, types = { label = "category" } }, train = 0.8, val = 0.2 }, tokenizer { gpt2 = true } }'
check "unknown parameter named" fails_with 2 "train: unknown parameter 'epoch'" err "$base
train { ids.train, inputs = { text = \"text\" }, output = { label = \"category\" }, epoch = 3 }"
check "wrong type named" fails_with 2 "parameter 'lr' expects a number" err "$base
train { ids.train, inputs = { text = \"text\" }, output = { label = \"category\" }, lr = \"fast\" }"
check "unknown input type named" fails_with 2 'inputs.text: expected one of text, category, number, binary, got words' err "$base
train { ids.train, inputs = { text = \"words\" }, output = { label = \"category\" } }"
check "missing field named" fails_with 1 "output.grade: tokenize.train has no field 'grade'" err "$base
train { ids.train, inputs = { text = \"text\" }, output = { grade = \"category\" } }"
check "text without token ids" fails_with 2 "train: input 1 must be token ids (tokenize's output, or one of its parts); \`p.train\` is part 'train' of split's output, a dataset" err "local p = split { ingest { \"mail.jsonl\" }, train = 0.5, val = 0.5 }
train { p.train, inputs = { text = \"text\" }, output = { label = \"category\" } }"
check "a number output on a category field" fails_with 1 "a number output needs an int or float field" err "$base
train { ids.train, inputs = { text = \"text\" }, output = { label = \"number\" } }"
head -c 1000 dist/mail.tar.gz > broken.tar.gz
check "predict: a truncated bundle" fails_with 1 "broken.tar.gz" "$HONE" predict broken.tar.gz --input test.jsonl
check "predict: not a bundle" fails_with 1 "mail.jsonl" "$HONE" predict mail.jsonl --input test.jsonl
printf '{"text": "ok", "links": 1, "domain": "a.com"}\n{"text": oops}\n' > bad.jsonl
check "predict: a malformed row names file and line" fails_with 1 "bad.jsonl:2" "$HONE" predict dist/mail.tar.gz --input bad.jsonl
check "  ... after answering the rows before it" eq "$("$HONE" predict dist/mail.tar.gz --input bad.jsonl -q 2>/dev/null | wc -l)" 1
printf '{"text": "x", "links": "many", "domain": "a.com"}\n' > bad2.jsonl
check "predict: a wrong value names the field" fails_with 1 "field 'links': expected a number" "$HONE" predict dist/mail.tar.gz --input bad2.jsonl
mkdir -p m && tar xzf dist/mail.tar.gz -C m && sed -i 's/"layers": \[16\]/"layers": [17]/' m/config.json && (cd m && tar czf ../tamper.tar.gz *)
check "predict: weights that do not fit the config" fails_with 1 "expected F32 of shape" "$HONE" predict tamper.tar.gz --input test.jsonl
check "predict: usage" fails_with 2 "predict: expected BUNDLE" "$HONE" predict
done_testing
