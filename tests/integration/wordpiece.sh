#!/usr/bin/env bash
# WordPiece (BERT) through the tokenizer and tokenize stages: training,
# from = vocab.txt / tokenizer.json by content, [CLS] A [SEP] rows and pairs
# with types.u8, ids identical to the committed Hugging Face fixture and,
# when npm's `tokenizers` is in build/node (make test installs it), to HF
# live on the torture corpus, pairs with truncation, a few hundred
# SpamAssassin messages, and every code point; errors.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
FX=$ROOT/tests/fixtures/wordpiece

jq -c '.[] | {text: .}' "$FX/corpus.json" > corpus.jsonl
n=$(jq length "$FX/corpus.json")
jq -c '. as $c | [range(0; length)] | .[] | {a: $c[.], b: $c[(. * 7 + 3) % ($c | length)]}' "$FX/corpus.json" > pairs.jsonl
cp "$FX/vocab_uncased.txt" vocab.txt
cat > p.lua <<'LUA'
local d = ingest { "corpus.jsonl", normalize = "none" }
local pr = ingest { "pairs.jsonl", normalize = "none", fields = { a = "a", b = "b" }, name = "pr" }
local tok = tokenizer { from = "vocab.txt" }
tokenize { d, tok, name = "single" }
tokenize { pr, tok, fields = { "a", "b" }, name = "pairs" }
tokenize { pr, tok, fields = { "a", "b" }, max_len = 16, name = "pairs16" }
tokenize { d, tok, max_len = 8, truncation = "left", name = "left8" }
tokenize { d, tok, add_eos = false, name = "plain" }
LUA
check "tokenizer { from = vocab.txt } and tokenize run" "$HONE" run p.lua -q
obj() { "$HONE" show p.lua "$1" | awk '/^path/ {print $2}'; }
ids() { od -An -tu4 -v "$(obj "$1")tokens.u32" | tr -s ' ' '\n' | grep -v '^$' | tr '\n' ' '; }
tobj=$(obj tokenizer)
check "the artifact holds vocab.txt and tokenizer.json" bash -c "[ -s '${tobj}vocab.txt' ] && [ -s '${tobj}tokenizer.json' ]"
check "  ... vocab.txt as given" cmp "${tobj}vocab.txt" vocab.txt
# the fixture's ids for the rows the dataset keeps (ingest drops empty rows)
want() { # want VARIANT CASE-INDEX KIND
	jq -r --argjson v "$1" --argjson k "$2" --slurpfile c "$FX/corpus.json" '
		.pairs as $p | .variants[$v].cases[$k].ids | to_entries
		| map(select(if "'"$3"'" == "single" then $c[0][.key] != "" else true end)) | .[].value[]' "$FX/ids.json" | tr '\n' ' '
}
check "ids identical to Hugging Face's (fixture): [CLS] ... [SEP] per row" eq "$(ids single)" "$(want 0 0 single)"
check "  ... without the template (add_eos = false)" eq "$(ids plain)" "$(want 0 2 single)"
check "  ... left truncation to 8" eq "$(ids left8)" "$(want 0 4 single)"
check "pairs: [CLS] A [SEP] B [SEP], ids as HF's" eq "$(ids pairs)" "$(want 0 3 pair)"
zeros=$(jq -r '.variants[0].cases[3].a_n[]' "$FX/ids.json" | tr '\n' ' ')
types=$(od -An -tu1 -v "$(obj pairs)types.u8" | tr -s ' ' '\n' | grep -v '^$' | tr '\n' ' ')
lens=$("$HONE" show p.lua pairs --jsonl --limit 1000 | jq -r .tok_len | tr '\n' ' ')
expect_types=$(python3 -c "
import sys
z=[int(x) for x in sys.argv[1].split()]; l=[int(x) for x in sys.argv[2].split()]
print(' '.join(' '.join(['0']*a + ['1']*(b-a)) for a,b in zip(z,l)))" "$zeros" "$lens")
check "  ... token types in types.u8: 0 up to the first [SEP], 1 after" eq "$types" "$expect_types "
check "  ... tokenize.json names the special ids and the fields" contains \
	"$(cat "$(obj pairs)tokenize.json")" '"tokenizer": "wordpiece", "special": true, "pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask_token": 4, "fields": ["a", "b"], "types": true'
# HF's longest_first on pairs at max_len 16 (the fixture cycles lengths; this one is every row at 16)
check "pairs at max_len = 16: every row 16 ids or fewer" bash -c \
	"'$HONE' show p.lua pairs16 --jsonl --limit 1000 | jq -e -s 'all(.tok_len <= 16)' >/dev/null"
out=$("$HONE" show p.lua single --limit 3)
check "hone show decodes WordPiece tokens" contains "$out" "[CLS]|hel|##lo|,|world|!|this|is|a|test|of|the|be|##r|##t|to|##ke|##n|##ize|##r|.|[SEP]"

# the artifact's tokenizer.json loads back by content, same ids
cp "${tobj}tokenizer.json" tok.json
cat > q.lua <<'LUA'
local d = ingest { "corpus.jsonl", normalize = "none" }
tokenize { d, tokenizer { from = "tok.json" }, name = "again" }
LUA
check "from = tokenizer.json (WordPiece, by content) gives the same ids" bash -c \
	"'$HONE' run q.lua -q && [ \"\$(od -An -tu4 -v \"\$('$HONE' show q.lua again | awk '/^path/ {print \$2}')tokens.u32\")\" = \"\$(od -An -tu4 -v '$(obj single)tokens.u32')\" ]"

# training
cat > t.lua <<'LUA'
local d = ingest { "corpus.jsonl", normalize = "none" }
local tok = tokenizer { d, kind = "wordpiece", vocab = 800, min_frequency = 1 }
tokenize { d, tok, name = "ids" }
tokenizer { d, kind = "wordpiece", vocab = 800, min_frequency = 1, lowercase = false, name = "cased" }
LUA
check "tokenizer { kind = \"wordpiece\" } trains" "$HONE" run t.lua -q
tt=$("$HONE" show t.lua tokenizer | awk '/^path/ {print $2}')
check "  ... [PAD] [UNK] [CLS] [SEP] [MASK] take ids 0..4" eq "$(head -5 "${tt}vocab.txt" | tr '\n' ' ')" "[PAD] [UNK] [CLS] [SEP] [MASK] "
check "  ... vocab entries, one per line, 800 at most" bash -c "[ \$(wc -l < '${tt}vocab.txt') -le 800 ] && [ \$(LC_ALL=C sort '${tt}vocab.txt' | LC_ALL=C uniq -d | wc -l) = 0 ]"
check "  ... continuation pieces carry ##" bash -c "grep -q '^##' '${tt}vocab.txt'"
check "  ... lowercase = false keeps capitals" bash -c "grep -q '^[A-Z]' \"\$('$HONE' show t.lua cased | awk '/^path/ {print \$2}')vocab.txt\""
check "  ... the same text gives the same vocabulary" bash -c \
	"h1=\$(md5sum < '${tt}vocab.txt'); '$HONE' run t.lua -q --force tokenizer; [ \"\$(md5sum < \"\$('$HONE' show t.lua tokenizer | awk '/^path/ {print \$2}')vocab.txt\")\" = \"\$h1\" ]"

# errors
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n' > dup.txt
check "a repeated token in vocab.txt names the file and line" fails_with 1 "dup.txt:7: token \"hello\" repeats line 5" \
	bash -c "printf 'tokenizer { from = \"dup.txt\" }\n' > e1.lua; '$HONE' run e1.lua -q"
printf '[PAD]\n[CLS]\n[SEP]\nhello\n' > nounk.txt
check "a vocab.txt without [UNK]" fails_with 1 "no [UNK] token" \
	bash -c "printf 'tokenizer { from = \"nounk.txt\" }\n' > e2.lua; '$HONE' run e2.lua -q"
check "pairs need WordPiece" fails_with 1 "pairs of texts need a WordPiece tokenizer" \
	bash -c "printf 'local pr = ingest { \"pairs.jsonl\", fields = { a = \"a\", b = \"b\" } }\ntokenize { pr, tokenizer { gpt2 = true }, fields = { \"a\", \"b\" } }\n' > e3.lua; '$HONE' run e3.lua -q"
check "a tokenizer.json carries its own normalizer" fails_with 1 "lowercase: a tokenizer.json carries its own normalizer" \
	bash -c "printf 'tokenizer { from = \"tok.json\", lowercase = false }\n' > e4.lua; '$HONE' run e4.lua -q"
check "max_len must leave room after [CLS] and [SEP]" fails_with 1 "max_len = 2 leaves no room" \
	bash -c "printf 'tokenize { ingest { \"corpus.jsonl\" }, tokenizer { from = \"vocab.txt\" }, max_len = 2 }\n' > e5.lua; '$HONE' run e5.lua -q"
check "normalizer settings go with WordPiece" fails_with 2 "lowercase: goes with kind = \"wordpiece\"" \
	bash -c "printf 'tokenizer { ingest { \"corpus.jsonl\" }, lowercase = true }\n' > e6.lua; '$HONE' run e6.lua -q"

HFT=$ROOT/build/node/node_modules/tokenizers
if [ -d "$HFT" ] && command -v node >/dev/null; then
	hf() { (cd "$ROOT/build/node" && node "$FX/hf_encode.mjs" "$@"); }
	# the texts as the datasets hold them
	"$HONE" show p.lua ingest --jsonl --limit 100000 | jq -s 'map(.text)' > texts.json
	"$HONE" show p.lua pr --jsonl --limit 100000 | jq -s 'map([.a, .b])' > ptexts.json
	check "HF live: hone's tokenizer.json, the torture corpus: same ids" eq \
		"$(hf "$PWD/tok.json" "$PWD/texts.json" | jq -r '.ids | flatten | .[]' | tr '\n' ' ')" "$(ids single)"
	check "HF live: pairs at max_len = 16 (longest_first): same ids" eq \
		"$(hf "$PWD/tok.json" "$PWD/ptexts.json" 16 | jq -r '.ids | flatten | .[]' | tr '\n' ' ')" "$(ids pairs16)"
	hf_types=$(hf "$PWD/tok.json" "$PWD/ptexts.json" | jq -r '.types | flatten | .[]' | tr '\n' ' ')
	check "HF live: token types of pairs" eq "$hf_types" "$types"
	# a few hundred SpamAssassin messages, with hone's and HF's tokenizer.json
	if [ -f "$ROOT/data/spam-assassin.tgz" ]; then
		cat > s.lua <<LUA
local mail = ingest { "$ROOT/data/spam-assassin.tgz", format = "json", members = "package/data/easy-ham-1/00[0-2]*.json",
                      fields = { text = "text" } }
local tok = tokenizer { mail, kind = "wordpiece", vocab = 2000 }
tokenize { mail, tok, name = "ids" }
tokenize { mail, tok, max_len = 64, name = "ids64" }
tokenize { mail, tokenizer { from = "$FX/vocab_cased.txt", lowercase = false, name = "cased_tok" }, name = "cased" }
LUA
		check "SpamAssassin messages: train WordPiece, tokenize" "$HONE" run s.lua -q
		so() { "$HONE" show s.lua "$1" | awk '/^path/ {print $2}'; }
		sids() { od -An -tu4 -v "$(so "$1")tokens.u32" | tr -s ' ' '\n' | grep -v '^$' | tr '\n' ' '; }
		"$HONE" show s.lua ingest --jsonl --limit 100000 | jq -s 'map(.text)' > mail.json
		rows=$(jq length mail.json)
		check "  ... $rows messages (a few hundred)" bash -c "[ $rows -ge 200 ]"
		check "HF live: SpamAssassin, trained vocabulary: same ids" eq \
			"$(hf "$(so tokenizer)tokenizer.json" "$PWD/mail.json" | jq -r '.ids | flatten | .[]' | tr '\n' ' ')" "$(sids ids)"
		check "HF live: SpamAssassin at max_len = 64: same ids" eq \
			"$(hf "$(so tokenizer)tokenizer.json" "$PWD/mail.json" 64 | jq -r '.ids | flatten | .[]' | tr '\n' ' ')" "$(sids ids64)"
		check "HF live: SpamAssassin, cased vocab.txt (lowercase = false): same ids" eq \
			"$(hf "$(so cased_tok)tokenizer.json" "$PWD/mail.json" | jq -r '.ids | flatten | .[]' | tr '\n' ' ')" "$(sids cased)"
	else
		echo "# skipped: data/spam-assassin.tgz not fetched (make data)"
	fi
	# every code point through the normalizer and pre-tokenizer
	if [ -x "$ROOT/build/tests/test_wordpiece" ]; then
		(cd "$ROOT/build/node" && node "$FX/gen_sweep.mjs" "$WORK/sweep.json" >/dev/null)
		check "HF live: BertNormalizer and BertPreTokenizer on every code point" bash -c \
			"cd '$ROOT' && HONE_WP_SWEEP='$WORK/sweep.json' CMOCKA_MESSAGE_OUTPUT=stdout build/tests/test_wordpiece"
	fi
else
	echo "# skipped: npm tokenizers not installed in build/node (make test installs it)"
fi

done_testing
