#!/usr/bin/env bash
# Byte-level BPE with a tokenizer.json's own pre-tokenizer regex (Llama 3's
# and Qwen2's Split patterns, Qwen2's NFC normalizer), run through PCRE2:
# ids identical to Hugging Face's tokenizers (the Rust library, npm
# `tokenizers`) on a torture corpus; the stage keeps the pre-tokenizer in
# what it writes; unsupported pre-tokenizers and bad patterns are errors.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
RS=$ROOT/build/node/node_modules/tokenizers
LLAMA3="(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
QWEN2="(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

# the torture corpus: GPT-2's, and what the two patterns treat otherwise
# (digit runs, letters after a symbol, CR/LF runs, decomposed accents for
# NFC: ingest leaves the text as it is, so that only Qwen2's normalizer NFCs it)
jq -c '.[] | {text: .}' "$ROOT/tests/fixtures/gpt2/corpus.json" > rows.jsonl
printf '%s\n' '{"text": "12345678901 1,234,567 x2y3 v1.2.3 ½ ٣٤٥ ²³"}' \
	'{"text": "DON'"'"'T I'"'"'M YOU'"'"'LL we'"'"'Re they'"'"'VE it'"'"'S"}' \
	'{"text": "$hello #world @user (paren) [br] {cu} \"quote\" «guillemets»"}' \
	'{"text": "line\r\n\r\n  indented\n\n\n\ttab\t\n   \n end  "}' \
	'{"text": "cafe\u0301 e\u0301te\u0301 Ångström ﬁ ＡＢＣ ｶﾀｶﾅ"}' \
	'{"text": "中文字符，标点。日本語のテキスト、한국어 텍스트"}' \
	'{"text": "emoji 👍🏽 👨‍👩‍👧 🇫🇷 and ZWJ\u200d joined"}' \
	'{"text": "    leading spaces and trailing    "}' \
	'{"text": "a\u00a0b\u2003c\u3000d"}' >> rows.jsonl
cat > g.lua <<'LUA'
tokenizer { gpt2 = true, name = "tok" }
LUA
"$HONE" run g.lua -q
GT=$("$HONE" show g.lua tok | awk '/^path/ {print $2}')tokenizer.json
mk() { # NAME PATTERN NORMALIZER: GPT-2's vocabulary under another pre-tokenizer
	jq --arg p "$2" --argjson n "$3" '.normalizer = $n | .pre_tokenizer = {type: "Sequence", pretokenizers: [
		{type: "Split", pattern: {Regex: $p}, behavior: "Isolated", invert: false},
		{type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false}]}' "$GT" > "$1.json"
}
mk llama3 "$LLAMA3" null
mk qwen2 "$QWEN2" '{"type": "NFC"}'
for t in llama3 qwen2; do
	cat > $t.lua <<LUA
local d = ingest { "rows.jsonl", normalize = "none" }
tokenize { d, tokenizer { from = "$t.json", name = "t" }, add_eos = false, max_len = 100000, name = "ids" }
LUA
	check "$t: a tokenizer.json with its own Split regex tokenizes" "$HONE" run $t.lua -q
	F=$t.lua
	IDS=$("$HONE" show $t.lua ids | awk '/^path/ {print $2}')
	od -An -tu4 -v "${IDS}tokens.u32" | tr -s ' ' '\n' | grep -v '^$' | tr '\n' ' ' > hone_$t.txt
	TOK=$("$HONE" show $t.lua t | awk '/^path/ {print $2}')
	check "  ... the stage's tokenizer.json keeps the pattern" bash -c "jq -e '.pre_tokenizer.pretokenizers[0].pattern.Regex' '${TOK}tokenizer.json' | grep -qF 'p{N}'"
	if [ -d "$RS" ] && command -v node >/dev/null; then
		cp "$ROOT/tests/fixtures/wordpiece/hf_encode.mjs" "$ROOT/build/node/"
		jq -s '[.[].text]' rows.jsonl > texts.json
		(cd "$ROOT/build/node" && node hf_encode.mjs "$WORK/$t.json" "$WORK/texts.json" 0 plain) |
			jq -r '[.ids[][]] | map(tostring) | join(" ")' > hf_$t.txt
		check "  ... ids identical to Hugging Face's tokenizers ($(wc -w < hf_$t.txt) ids, $(wc -l < rows.jsonl) texts)" \
			bash -c "[ \$(wc -w < hf_$t.txt) -gt 1000 ] && cmp -s <(xargs < hone_$t.txt) <(xargs < hf_$t.txt)"
	else
		echo "# skipped: npm tokenizers not installed in build/node"
	fi
done
# SentencePiece-style BPE (Llama 2's tokenizer.json: ▁ for spaces, byte
# fallback, merges by rank; tests/fixtures/spm, trained by spm_train)
cp "$ROOT/tests/fixtures/spm/tokenizer.json" spm.json
cat > spm.lua <<'LUA'
local d = ingest { "rows.jsonl", normalize = "none" }
tokenize { d, tokenizer { from = "spm.json", name = "t" }, max_len = 100000, name = "ids" }
LUA
F=spm.lua
check "a SentencePiece-style tokenizer.json tokenizes (</s> as the end of each row)" "$HONE" run spm.lua -q
IDS=$("$HONE" show spm.lua ids | awk '/^path/ {print $2}') TOK=$("$HONE" show spm.lua t | awk '/^path/ {print $2}')
od -An -tu4 -v "${IDS}tokens.u32" | tr -s ' ' '\n' | grep -v '^$' | grep -vx 2 | tr '\n' ' ' > hone_spm.txt
check "  ... its artifact is the tokenizer.json alone (no GPT-2 files), read back the same" bash -c \
	"[ ! -e '${TOK}encoder.json' ] && jq -e '.model.byte_fallback' '${TOK}tokenizer.json' >/dev/null"
rows=$("$HONE" show spm.lua ids | grep -o '"rows":[0-9]*' | head -1 | cut -d: -f2)
check "  ... every row ends with </s> ($rows rows)" bash -c "[ '$rows' -gt 30 ] && [ \$(od -An -tu4 -v '${IDS}tokens.u32' | tr -s ' ' '\n' | grep -cx 2) = '$rows' ]"
if [ -d "$RS" ] && command -v node >/dev/null; then
	(cd "$ROOT/build/node" && node hf_encode.mjs "$WORK/spm.json" "$WORK/texts.json" 0 plain) |
		jq -r '[.ids[][]] | map(tostring) | join(" ")' > hf_spm.txt
	check "  ... ids identical to Hugging Face's tokenizers ($(wc -w < hf_spm.txt) ids; newlines and CJK by byte fallback)" \
		bash -c "[ \$(wc -w < hf_spm.txt) -gt 1000 ] && cmp -s <(xargs < hone_spm.txt) <(xargs < hf_spm.txt)"
fi
check "the two patterns cut digits differently (llama3 {1,3}, qwen2 one by one)" bash -c "! cmp -s hone_llama3.txt hone_qwen2.txt"
jq '.pre_tokenizer = {type: "Whitespace"}' "$GT" > ws.json
printf 'local d = ingest { "rows.jsonl" }\ntokenize { d, tokenizer { from = "ws.json" } }\n' > e1.lua
check "an unsupported pre-tokenizer is an error saying what is supported" fails_with 1 "a Sequence of a Split by a Regex" "$HONE" run e1.lua -q
mk bad "(unclosed" null
printf 'local d = ingest { "rows.jsonl" }\ntokenize { d, tokenizer { from = "bad.json" } }\n' > e2.lua
check "a pattern that does not compile names the offset" fails_with 1 "does not compile at offset" "$HONE" run e2.lua -q
jq '.normalizer = {type: "NFKC"}' llama3.json > nfkc.json
printf 'local d = ingest { "rows.jsonl" }\ntokenize { d, tokenizer { from = "nfkc.json" } }\n' > e3.lua
check "a normalizer other than NFC is an error" fails_with 1 "only none or NFC" "$HONE" run e3.lua -q
done_testing
