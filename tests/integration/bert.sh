#!/usr/bin/env bash
# BERT end to end: hone forward against transformers' fixtures, a new BERT
# pre-trained by masked LM and fine-tuned as a classifier (full and LoRA),
# evaluate, export and predict (BERT and GPT-2 classifier bundles),
# determinism, and the errors a user meets.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/toy_data.sh"
FX=$ROOT/tests/fixtures/bert

# --- hone forward against transformers ------------------------------------------------
# rows from each fixture's batch (its padding left to forward), labels as transformers took them
rows_of() { # rows_of HEAD: JSON Lines of the fixture's rows
	jq -c --arg h "$1" '. as $r | [range(0; .B)] | .[] as $b |
		($r.attention_mask[$b*$r.T:($b+1)*$r.T] | add) as $n |
		{input_ids: $r.input_ids[$b*$r.T:$b*$r.T+$n], token_type_ids: $r.token_type_ids[$b*$r.T:$b*$r.T+$n]} +
		(if $h == "tokcls" or $h == "mlm" then {labels: $r.labels[$b*$r.T:$b*$r.T+$n]}
		 elif $h == "multilabel" then {labels: $r.labels[$b*3:($b+1)*3]} else {labels: $r.labels[$b]} end)' "$FX/$1/reference.json"
}
# max |hone - transformers| over the logits, relative to the largest, and the loss's relative error
close_to_ref() { # close_to_ref HEAD OUT.json
	jq -e -n --slurpfile o "$2" --slurpfile r "$FX/$1/reference.json" '
		($r[0].logits | map(fabs) | max) as $s |
		([$o[0].logits.data, $r[0].logits] | transpose | map(.[0] - .[1] | fabs) | max) / $s < 1e-5 and
		(($o[0].loss.data[0] - $r[0].loss) | fabs) / $r[0].loss < 1e-5' >/dev/null
}
for h in seqcls multilabel regression tokcls mlm; do
	rows_of $h > rows_$h.jsonl
	check "forward: $h logits and loss match transformers" \
		bash -c "'$HONE' forward '$FX/$h' -i rows_$h.jsonl -o out_$h.json -q && $(declare -f close_to_ref); FX='$FX' close_to_ref $h out_$h.json"
done
check "forward writes safetensors too" bash -c "'$HONE' forward '$FX/seqcls' -i rows_seqcls.jsonl -o out.safetensors -q && [ -s out.safetensors ]"
check "forward: a row with an id outside the vocabulary is an error" \
	fails_with 1 "outside the model's vocabulary" bash -c "echo '{\"input_ids\": [2, 99]}' | '$HONE' forward '$FX/seqcls' -o x.json"
check "forward: a row without input_ids is an error naming the row" \
	fails_with 1 "row 1: input_ids" bash -c "echo '{\"ids\": [2]}' | '$HONE' forward '$FX/seqcls' -o x.json"
check "forward needs --output" fails_with 2 "--output" "$HONE" forward "$FX/seqcls"

# --- a BERT pipeline ----------------------------------------------------------------------
toy_classes 400 > cls.jsonl
cat > b.lua <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 1, stratify = "label" }
local tok = tokenizer { parts.train, vocab = 300, special = { "<|endoftext|>", "[MASK]" } }
local ids = tokenize { parts, tok, max_len = 32 }
local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, intermediate = 64, n_positions = 32, vocab = 300, seed = 1 }
local pre = train { ids.train, val = ids.val, base = base, objective = "mlm", mask_id = 299, lr = 0.003, batch = 16, epochs = 4, seed = 1 }
evaluate { pre, ids.test, compare = base, name = "mlm_score" }
local clf = train { ids.train, val = ids.val, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 4, seed = 1, name = "clf" }
local score = evaluate { clf, ids.test, name = "score" }
local lc = train { ids.train, val = ids.val, base = pre, output = { label = "category" }, method = "lora", rank = 4, targets = { "query", "value", "dense" },
                   lr = 0.01, batch = 16, epochs = 4, seed = 1, name = "lc" }
evaluate { lc, ids.test, name = "lc_score" }
export { clf, tok, score, to = "bert.tar.gz" }
local gclf = train { ids.train, base = model { n_layer = 1, n_head = 2, n_embd = 32, n_positions = 32, vocab = 300, seed = 1 },
                     output = { label = "category" }, lr = 0.003, batch = 16, epochs = 2, seed = 1, name = "gclf" }
export { gclf, tok, to = "gpt2cls.tar.gz", name = "gexport" }
LUA
check "a BERT pre-trains by masked LM, fine-tunes as a classifier (full, LoRA), exports" "$HONE" run b.lua -q
metric() { "$HONE" show b.lua "$1" | sed -n 's/^metrics *//p' | jq -r ".$2"; }
check "masked-LM pre-training lowers perplexity against the new model ($(metric mlm_score perplexity) vs $(metric mlm_score compare_perplexity))" \
	jq -e -n "$(metric mlm_score perplexity) < 0.5 * $(metric mlm_score compare_perplexity)"
curve() { cat "$("$HONE" show b.lua "$1" | awk '/^path/ {print $2}')curve.jsonl"; }
check "masked-LM training lowers the validation loss epoch by epoch" \
	bash -c "$(declare -f curve); HONE='$HONE' curve train | jq -s -e '[.[] | select(.val_loss != null) | .val_loss] | length == 4 and .[0] > .[1] and .[1] > .[2] and .[2] > .[3]'"
check "fine-tuning lowers the training loss (first epoch against the last)" \
	bash -c "$(declare -f curve); HONE='$HONE' curve clf | jq -s -e '[.[] | select(.train_loss != null) | .train_loss] | .[0] > 1.5 * .[3]'"
check "the classifier beats chance on held-out rows (accuracy $(metric score accuracy))" jq -e -n "$(metric score accuracy) > 0.8"
check "LoRA on BERT trains the adapters and the head only (trainable $(metric lc trainable) of $(metric lc params))" \
	jq -e -n "$(metric lc trainable) < 0.2 * $(metric lc params)"
lcdir=$("$HONE" show b.lua lc | awk '/^path/ {print $2}')
check "the adapter is PEFT's: SEQ_CLS, query/value/dense modules, the classifier saved" \
	jq -e '.task_type == "SEQ_CLS" and .modules_to_save == ["classifier"] and (.target_modules | index("attention.self.query") != null)
	       and (.target_modules | index("intermediate.dense") != null) and .fan_in_fan_out == false' "$lcdir/adapter/adapter_config.json"
check "the fine-tuned folder is a BertForSequenceClassification with the classes" \
	jq -e '.architectures == ["BertForSequenceClassification"] and .id2label["0"] == "city" and .id2label["1"] == "pets"' \
	"$("$HONE" show b.lua clf | awk '/^path/ {print $2}')config.json"

# predict: the bundle's answers agree with evaluate's accuracy on the test rows
testdir=$("$HONE" show b.lua tokenize | awk '/^path/ {print $2}')
"$HONE" run b.lua -q
jq -c 'select(true)' cls.jsonl > all.jsonl
check "hone predict serves the BERT bundle" bash -c "'$HONE' predict bert.tar.gz --input all.jsonl -q > pred.jsonl && [ \$(wc -l < pred.jsonl) = 400 ]"
check "its predictions are right on most rows" \
	bash -c "paste -d' ' <(jq -r .label all.jsonl) <(jq -r .predicted pred.jsonl) | awk '\$1 == \$2 {k++} END {exit !(k > 0.8 * NR)}'"
check "hone predict serves a GPT-2 classifier bundle" \
	bash -c "head -5 all.jsonl | '$HONE' predict gpt2cls.tar.gz -q | jq -e -s 'length == 5 and (.[0].probs | keys) == [\"city\", \"pets\"]'"
check "hone forward runs on an export bundle" bash -c "echo '{\"input_ids\": [5, 6, 7]}' | '$HONE' forward bert.tar.gz -o f.json -q && jq -e '.logits.shape == [1, 2]' f.json"

# determinism: the same pipeline in a fresh store gives the same weights
mkdir -p again && cp cls.jsonl b.lua again/
check "the same seed gives bit-identical BERT weights" bash -c "cd again && HONE_CACHE=\$PWD/cache '$HONE' run b.lua -q && \
	cmp \"\$(HONE_CACHE=\$PWD/cache '$HONE' show b.lua lc | awk '/^path/ {print \$2}')model.safetensors\" '$lcdir/model.safetensors'"

# --- WordPiece: a BERT on its own tokenizer; predict encodes as tokenize did -------------
cat > w.lua <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 1, stratify = "label" }
local tok = tokenizer { parts.train, kind = "wordpiece", vocab = 200 }
local ids = tokenize { parts, tok, max_len = 32 }
local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, n_positions = 32, vocab = 200, seed = 1 }
local pre = train { ids.train, val = ids.val, base = base, objective = "mlm", lr = 0.003, batch = 16, epochs = 3, seed = 1 }
local clf = train { ids.train, val = ids.val, base = pre, output = { label = "category" }, lr = 0.003, batch = 16, epochs = 3, seed = 1, name = "clf" }
local score = evaluate { clf, ids.test }
export { clf, tok, score, to = "wp.tar.gz" }
LUA
check "a BERT pre-trains and fine-tunes on a WordPiece tokenizer (its [MASK] found by itself)" "$HONE" run w.lua -q
check "masked-LM training picked the tokenizer's [MASK]" \
	bash -c "jq -e '.mask_id == 4' \"\$('$HONE' show w.lua train | awk '/^path/ {print \$2}')train.json\""
"$HONE" show w.lua split.test --jsonl --limit 100000 > wtest.jsonl
"$HONE" show w.lua evaluate --jsonl --limit 100000 | jq -r .prob_pets > weval.txt
check "hone predict gives evaluate's probabilities on every test row (WordPiece bundle)" \
	bash -c "'$HONE' predict wp.tar.gz --input wtest.jsonl -q | jq -r .probs.pets | paste -d' ' - weval.txt |
		awk 'function a(x) { return x < 0 ? -x : x } { n++; if (a(\$1 - \$2) > 1e-5) bad++ } END { exit !(n == 60 && bad == 0) }'"

# --- tagging: word tags through tokenize, a BertForTokenClassification, seqeval's scores --
awk 'BEGIN { srand(3); split("john mary alice bob anna", n, " "); split("paris london berlin", c, " ");
	for (i = 0; i < 400; i++) { a = n[int(rand() * 5) + 1]; b = c[int(rand() * 3) + 1];
		if (rand() < 0.5) printf "{\"text\": \"%s lives in %s .\", \"ner\": \"B-PER O O B-LOC O\"}\n", a, b;
		else printf "{\"text\": \"%s visited %s and %s\", \"ner\": \"B-PER O B-LOC O B-PER\"}\n", a, b, n[int(rand() * 5) + 1] } }' > ner.jsonl
cat > t.lua <<'LUA'
local d = ingest { "ner.jsonl", fields = { text = "text", ner = "ner" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 1 }
local tok = tokenizer { parts.train, kind = "wordpiece", vocab = 100 }
local ids = tokenize { parts, tok, tags = "ner", max_len = 16 }
local base = model { arch = "bert", n_layer = 2, n_head = 2, n_embd = 32, n_positions = 16, vocab = 100, seed = 1 }
local tagger = train { ids.train, val = ids.val, base = base, output = { ner = "tags" }, lr = 0.003, batch = 16, epochs = 4, seed = 1 }
evaluate { tagger, ids.test }
export { tagger, tok, to = "tagger.tar.gz" }
LUA
check "tagging: tokenize aligns word tags, train fits a BertForTokenClassification, evaluate scores it" "$HONE" run t.lua -q
tdir=$("$HONE" show t.lua tokenize | awk '/^path/ {print $2}')
check "tokenize writes labels.i32 (a tag on each word's first piece, -100 elsewhere) and the tag set" \
	bash -c "jq -e '.tags == [\"B-LOC\", \"B-PER\", \"O\"] and .tag_field == \"ner\"' '$tdir/train/tokenize.json' &&
		[ \$(stat -c %s '$tdir/train/labels.i32') = \$((\$(stat -c %s '$tdir/train/tokens.u32'))) ] &&
		od -An -td4 -v -N4 '$tdir/train/labels.i32' | grep -q -- -100"
check "the tagger finds the entities (entity F1 $(metric evaluate f1 2>/dev/null; "$HONE" show t.lua evaluate | sed -n 's/^metrics *//p' | jq -r .f1))" \
	bash -c "'$HONE' show t.lua evaluate | sed -n 's/^metrics *//p' | jq -e '.f1 > 0.9 and .token_accuracy > 0.9 and .entities > 50'"
check "hone predict serves the tagger: tags per word, entities with character offsets" \
	bash -c "echo '{\"id\": 7, \"text\": \"mary lives in london .\"}' | '$HONE' predict tagger.tar.gz -q |
		jq -e '.id == 7 and .tags == [\"B-PER\", \"O\", \"O\", \"B-LOC\", \"O\"] and .entities[1] == {\"type\": \"LOC\", \"text\": \"london\", \"start\": 14, \"end\": 20}'"
check "hone show prints the tagging report" bash -c "'$HONE' show t.lua evaluate | grep -q 'entity type'"
check "the tagger's folder is a BertForTokenClassification with the tags" \
	jq -e '.architectures == ["BertForTokenClassification"] and .id2label["1"] == "B-PER"' \
	"$("$HONE" show t.lua train | awk '/^path/ {print $2}')config.json"
sed 's/B-PER O O B-LOC O/B-PER O O B-LOC/' ner.jsonl > ner_bad.jsonl
sed 's/ner.jsonl/ner_bad.jsonl/' t.lua > t2.lua
check "a row whose words and tags do not pair up is an error naming the row" fails_with 1 "5 words in 'text' but 4 tags in 'ner'" "$HONE" run t2.lua -q
sed 's/kind = "wordpiece", vocab = 100/vocab = 300/' t.lua > t3.lua
check "tagging with a byte-level BPE is refused" fails_with 1 "tags = \"ner\" (tagging) needs a WordPiece tokenizer" "$HONE" run t3.lua -q
sed 's/arch = "bert", //' t.lua > t4.lua
check "tagging on a GPT-2 base is refused" fails_with 1 "tagging needs a BERT base" "$HONE" run t4.lua -q

# character spans (code points, as spaCy and doccano write them) give the same labels as the word
# tags (the tag sets equal: spans make B- and I- of every type)
cat > sp.jsonl <<'J'
{"text": "Zoë lives in São Paulo .", "ents": [[0, 3, "PER"], [13, 22, "LOC"]], "ner": "B-PER O O B-LOC I-LOC O"}
{"text": "John Smith met Mary .", "ents": [[0, 10, "PER"], [15, 19, "PER"]], "ner": "B-PER I-PER O B-PER O"}
{"text": "nothing here", "ents": [], "ner": "O O"}
J
cat > sp.lua <<'LUA'
local d = ingest { "sp.jsonl", fields = { text = "text", ents = "ents", ner = "ner" }, types = { ents = "json" } }
local tok = tokenizer { d, kind = "wordpiece", vocab = 80 }
tokenize { d, tok, spans = "ents", name = "from_spans" }
tokenize { d, tok, tags = "ner", name = "from_tags" }
LUA
check "tagging from character spans (ingest types = json): the labels the word tags give" bash -c "'$HONE' run sp.lua -q &&
	cmp \"\$('$HONE' show sp.lua from_spans | awk '/^path/ {print \$2}')labels.i32\" \"\$('$HONE' show sp.lua from_tags | awk '/^path/ {print \$2}')labels.i32\""
sed 's/\[13, 22, "LOC"\]/[13, 99, "LOC"]/' sp.jsonl > sp_bad.jsonl
sed 's/sp.jsonl/sp_bad.jsonl/' sp.lua > sp2.lua
check "a span outside its text is an error naming the row" fails_with 1 "row 1: spans in 'ents': span 2: expected [start, end, \"TYPE\"]" "$HONE" run sp2.lua -q

# --- errors ---------------------------------------------------------------------------------
sed 's/local pre = train.*/local pre = train { ids.train, base = base, lr = 0.003, epochs = 1 }/' b.lua | sed '/mlm_score\|clf\|lc\|gclf\|export/d' > e1.lua
check "a BERT base with neither output nor objective is refused" fails_with 1 "objective = \"mlm\"" "$HONE" run e1.lua -q
cat > e2.lua <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok, max_len = 32 }
local base = model { arch = "bert", n_layer = 1, n_head = 2, n_embd = 16, n_positions = 32, vocab = 300 }
train { ids.train, base = base, objective = "mlm", epochs = 1 }
LUA
check "masked LM without a [MASK] token is refused with a hint" fails_with 1 "mask_id" "$HONE" run e2.lua -q
sed 's/objective = "mlm"/output = { label = "category" }, method = "lora", targets = { "c_attn" }/' e2.lua > e3.lua
check "a GPT-2 LoRA target on a BERT is refused, listing BERT's" fails_with 1 "attention.self.query" "$HONE" run e3.lua -q
sed 's/arch = "bert", //; s/objective = "mlm"/objective = "mlm", mask_id = 5/' e2.lua > e4.lua
check "objective = \"mlm\" on a GPT-2 is refused" fails_with 1 "needs a BERT base" "$HONE" run e4.lua -q
mkdir -p gemma && echo '{"model_type": "gemma", "hidden_size": 16}' > gemma/config.json
echo 'model { from = "gemma" }' > e5.lua
check "an unknown architecture is named, with the supported ones" fails_with 1 "model_type \"gemma\" is not an architecture hone has" "$HONE" run e5.lua -q
done_testing
