#!/usr/bin/env bash
# Data stages: ingest (formats, archives, hygiene, bad rows), dedupe (exact,
# near-duplicate quality), split (proportions, stratification, groups,
# stability), and `hone show` on datasets.
. "$(dirname "$0")/lib.sh"

rows() { "$HONE" show "$1" "$2" --jsonl --limit 1000000; }
runrows() { "$HONE" run "$1" -q >/dev/null 2>&1; rows "$@"; }
metric() { "$HONE" runs -1 | awk -v s="$1" '$2 == s' | grep -o "\"$2\":[0-9.]*" | sed 's/.*://'; }

# --- formats and fields ------------------------------------------------------
mkdir -p in
printf '%s\n' '{"id": 1, "body": "Hello  World", "meta": {"queue": "billing"}, "n": "42"}' \
	'{"id": 2, "body": "Caf\u00e9", "meta": {"queue": "tech"}, "n": 7}' '' \
	'{"id": 3, "body": "e\u0301", "meta": {"queue": "other"}, "n": 0}' > in/a.jsonl
cat > f.lua <<'LUA'
ingest { "in/a.jsonl", fields = { text = "body", label = "meta.queue", n = "n", id = "id" },
         types = { n = "int", id = "int" }, labels = { billing = "money", ["*"] = "rest" } }
LUA
check "jsonl with dotted paths, coercion and a label map" "$HONE" run f.lua -q
out=$(rows f.lua ingest)
check "  ... row 1" contains "$out" '{"id":1,"label":"money","n":42,"text":"Hello  World"}'
check "  ... NFC by default (e + combining acute -> é)" contains "$out" '"text":"é"'
check "  ... label map default" contains "$out" '"label":"rest"'
out=$("$HONE" show f.lua ingest)
check "show prints the schema" contains "$out" "label            category (2 values)"
check "  ... and a table" contains "$out" "money"
check "show --where filters" eq "$("$HONE" show f.lua ingest --where label=rest --jsonl | wc -l)" 2

printf '\xEF\xBB\xBFtext,label,score\r\n"a, quoted ""x""",pos,1.5\r\n"multi\nline",neg,2\r\n' > in/b.csv
printf 'ingest { "in/b.csv", types = { score = "float" }, fields = { text = "text", label = "label", score = "score" } }\n' > c.lua
check "csv: BOM, CRLF, quotes, embedded newline" "$HONE" run c.lua -q
check "  ... values" contains "$(rows c.lua ingest)" '{"label":"pos","score":1.5,"text":"a, quoted \"x\""}'
printf 'text\tlabel\nalpha\tx\nbeta\ty\n' > in/c.tsv
printf 'ingest { "in/c.tsv", fields = { text = "text", label = "label" } }\n' > t.lua
check "tsv" eq "$(runrows t.lua ingest | wc -l)" 2
printf '[{"t": "one"}, {"t": "two"}]' > in/arr.json
printf 'ingest { "in/arr.json", fields = { text = "t" } }\n' > arr.lua
check "a JSON array of records" eq "$(runrows arr.lua ingest | wc -l)" 2
printf 'line one\n\nline three\n' > in/lines.txt
printf 'ingest { "in/lines.txt" }\n' > txt.lua
check "text: a record per line, empty ones dropped" eq "$(runrows txt.lua ingest | wc -l)" 2
check "  ... and counted" eq "$(metric ingest dropped_empty)" 1

# folders, label from the folder name
mkdir -p mail/spam mail/ham
printf '{"text": "win money"}' > mail/spam/1.json
printf '{"text": "lunch?"}' > mail/ham/2.json
printf '{"text": "meeting"}' > mail/ham/3.json
printf 'ingest { "mail", fields = { text = "text" }, label_from = "dirname" }\n' > dir.lua
check "a folder, one document per file, label from the folder" "$HONE" run dir.lua -q
check "  ... label counts in the metrics" eq "$(metric ingest label.ham)" 2

# globs: every match is an input
printf '{"text": "one"}\n' > in/g1.jsonl
printf '{"text": "two"}\n{"text": "three"}\n' > in/g2.jsonl
printf 'ingest { "in/g*.jsonl" }\n' > glob.lua
check "a glob reads every match" eq "$(runrows glob.lua ingest | wc -l)" 3
printf '{"text": "four"}\n' > in/g3.jsonl
check "  ... and a new match re-runs it" eq "$(runrows glob.lua ingest | wc -l)" 4
check "  ... a glob that matches nothing is an error" fails_with 2 'no file matches "in/none*.jsonl"' \
	bash -c "printf 'ingest { \"in/none*.jsonl\" }\n' > ng.lua; '$HONE' run ng.lua"
: > in/empty.jsonl
printf 'ingest { "in/empty.jsonl", "in/g1.jsonl" }\n' > empty.lua
check "an empty file contributes no rows" eq "$(runrows empty.lua ingest | wc -l)" 1
head -c 20000000 /dev/zero | tr '\0' 'x' | sed 's/.*/{"text": "&"}/' > in/huge.jsonl
printf 'ingest { "in/huge.jsonl" }\n' > huge.lua
check "a 20 MB line" bash -c "'$HONE' run huge.lua -q && '$HONE' show huge.lua ingest | grep -q '1 rows'"

# --- archives ------------------------------------------------------------------
tar cf arch.tar mail; tar czf arch.tgz mail; tar cJf arch.txz mail
tar --zstd -cf arch.tar.zst mail; tar cjf arch.tbz2 mail; zip -qr arch.zip mail
for a in arch.tar arch.tgz arch.txz arch.tar.zst arch.tbz2 arch.zip; do
	printf 'ingest { "%s", members = "mail/*/*.json", fields = { text = "text" }, label_from = "dirname" }\n' "$a" > ar.lua
	check "archive $a read in place" eq "$(runrows ar.lua ingest | wc -l)" 3
done
head -c 150 arch.tgz > broken.tgz
printf 'ingest { "broken.tgz", fields = { text = "text" } }\n' > br.lua
check "a truncated archive is an error, not a partial dataset" fails_with 1 "corrupt or truncated archive" "$HONE" run br.lua
check "  ... nothing published" "$HONE" verify
mkdir -p evil && printf '{"text": "outside"}' > evil.json && ln -sf /etc/hostname evil/link.json
printf '{"text": "fine"}' > evil/good.json
(cd evil && tar cf ../evil.tar -P good.json link.json ../evil.json 2>/dev/null)
printf 'ingest { "evil.tar", fields = { text = "text" }, on_error = "skip" }\n' > ev.lua
"$HONE" run ev.lua -q 2>/dev/null
check "links and .. members are skipped, never followed" eq "$(metric ingest members_skipped)" 2
head -c 3000000 /dev/zero | tr '\0' 'a' | sed 's/.*/{"text": "&"}/' > big.json
tar czf bomb.tgz big.json
printf 'ingest { "bomb.tgz", fields = { text = "text" }, max_bytes = 100000 }\n' > bomb.lua
check "max_bytes stops a decompression bomb" fails_with 1 "exceeds max_bytes" "$HONE" run bomb.lua

# --- bad rows ------------------------------------------------------------------
printf '%s\n' '{"text": "ok", "n": 1}' '{"text": "bad n", "n": "x"}' '{"text": ' '{"n": 3}' > in/bad.jsonl
printf 'ingest { "in/bad.jsonl", fields = { text = "text", n = "n" }, types = { n = "int" } }\n' > bad.lua
check "a wrong type names file and line" fails_with 1 'in/bad.jsonl:2: field '"'"'n'"'"': expected an integer, got "x"' "$HONE" run bad.lua
check "  ... with a hint" fails_with 1 'on_error = "skip"' "$HONE" run bad.lua
printf 'ingest { "in/bad.jsonl", fields = { text = "text", n = "n" }, types = { n = "int" }, on_error = "skip" }\n' > skip.lua
check "on_error = skip keeps the good rows" eq "$("$HONE" run skip.lua -q 2>/dev/null; rows skip.lua ingest | wc -l)" 1
check "  ... and counts each reason" eq "$(metric ingest skipped.malformed_json)" 1
check "  ... missing fields too" eq "$(metric ingest skipped.missing_field)" 1
printf '{"text": "ok \xff here"}\n' > in/u.jsonl
printf 'ingest { "in/u.jsonl", fields = { text = "text" } }\n' > u.lua
check "invalid UTF-8 is an error with the byte offset" fails_with 1 "in/u.jsonl:1: field 'text': invalid UTF-8 at byte 3" "$HONE" run u.lua
printf 'ingest { "in/u.jsonl", fields = { text = "text" }, utf8 = "replace" }\n' > u2.lua
check "utf8 = replace" contains "$("$HONE" run u2.lua -q; rows u2.lua ingest)" "ok � here"
check "unknown ingest parameter is caught at declaration" fails_with 2 "did you mean 'fields'" \
	bash -c "printf 'ingest { \"in/u.jsonl\", feilds = {} }\n' > x.lua; '$HONE' run x.lua"
check "a bad type name is caught at declaration" fails_with 2 "types.text: expected string, int, float, bool, category or json" \
	bash -c "printf 'ingest { \"in/u.jsonl\", fields = { text = \"text\" }, types = { text = \"str\" } }\n' > y.lua; '$HONE' run y.lua"

# --- dedupe ----------------------------------------------------------------------
printf '%s\n' '{"text": "Same  Text"}' '{"text": "other"}' '{"text": "same text"}' '{"text": "SAME TEXT "}' > in/d.jsonl
printf 'local d = ingest { "in/d.jsonl", fields = { text = "text" } }\ndedupe { d }\n' > dd.lua
check "exact dedupe after case/whitespace normalization" eq "$("$HONE" run dd.lua -q; rows dd.lua dedupe | wc -l)" 2
check "  ... keeps the first" contains "$(rows dd.lua dedupe | head -1)" "Same  Text"

# near-duplicate quality: planted pairs with known Jaccard similarity
cat > near.lua <<'LUA'
local gen = stage "gen" { pairs = 400, run = function(ctx)
  math.randomseed(7)
  local vocab = {}
  for i = 1, 4000 do
    local w = {}
    for k = 1, math.random(3, 9) do w[k] = string.char(96 + math.random(26)) end
    vocab[i] = table.concat(w)
  end
  local function shingles(s)
    local set, n = {}, 0
    for i = 1, #s - 4 do local g = s:sub(i, i + 4) if not set[g] then set[g] = true n = n + 1 end end
    return set, n
  end
  local function jaccard(a, b)
    local sa, na = shingles(a)
    local sb, nb = shingles(b)
    local inter = 0
    for g in pairs(sa) do if sb[g] then inter = inter + 1 end end
    return inter / (na + nb - inter)
  end
  local data, truth = ctx:open("docs.jsonl"), ctx:open("pairs.tsv")
  for p = 1, ctx.params.pairs do
    local words = {}
    for i = 1, 80 do words[i] = vocab[math.random(#vocab)] end
    local base = table.concat(words, " ")
    local edits = math.random(0, 14)
    for e = 1, edits do words[math.random(#words)] = vocab[math.random(#vocab)] end
    local variant = table.concat(words, " ")
    data:write(string.format('{"id": "a%d", "text": "%s"}\n', p, base))
    data:write(string.format('{"id": "b%d", "text": "%s"}\n', p, variant))
    truth:write(string.format("b%d\t%.4f\n", p, jaccard(base, variant)))
  end
  data:close()
  truth:close()
end }
local docs = ingest { gen, members = "*.jsonl", fields = { id = "id", text = "text" } }
dedupe { docs, near = 0.85 }
LUA
check "near-duplicate pipeline runs" "$HONE" run near.lua -q
truth="$("$HONE" show near.lua gen | awk '/^path/ {print $2}')pairs.tsv"
rows near.lua dedupe | grep -o '"id":"[ab][0-9]*"' | cut -d'"' -f4 > kept.txt
read -r recall precision nhi nlo < <(awk -F'\t' 'NR == FNR {kept[$1] = 1; next}
	{ removed = !($1 in kept)
	  if ($2 >= 0.90) { hi++; if (removed) hir++ }
	  if ($2 <= 0.80) { lo++; if (!removed) lok++ } }
	END { printf "%.3f %.3f %d %d\n", hir / hi, lok / lo, hi, lo }' kept.txt "$truth")
check "near-dup recall >= 0.95 for pairs with J >= 0.90 (got $recall over $nhi pairs)" \
	bash -c "[ \$(echo '$recall >= 0.95' | bc) = 1 ]"
check "near-dup precision >= 0.95 for pairs with J <= 0.80 (got $precision over $nlo pairs)" \
	bash -c "[ \$(echo '$precision >= 0.95' | bc) = 1 ]"
check "  ... no base document removed" bash -c "[ \$(grep -c '^a' kept.txt) = 400 ]"
obj1=$("$HONE" run near.lua -q --force dedupe --threads 1; "$HONE" runs -1 | awk '$2 == "dedupe" {print $4}')
obj2=$("$HONE" run near.lua -q --force dedupe --threads 2; "$HONE" runs -1 | awk '$2 == "dedupe" {print $4}')
check "dedupe output does not depend on --threads" eq "$obj1" "$obj2"

# --- split ---------------------------------------------------------------------
awk 'BEGIN { for (i = 1; i <= 1000; i++) printf "{\"id\": %d, \"text\": \"row %d\", \"label\": \"%s\", \"g\": \"g%d\"}\n", i, i, (i % 10 < 3 ? "spam" : "ham"), i % 50 }' > in/s.jsonl
cat > sp.lua <<'LUA'
local d = ingest { "in/s.jsonl", fields = { id = "id", text = "text", label = "label", g = "g" }, types = { id = "int" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 42, stratify = "label" }
local byg = split { d, train = 0.8, test = 0.2, group = "g", name = "gsplit" }
local plain = split { d, a = 0.5, b = 0.25, c = 0.25, name = "psplit" }
LUA
check "split runs" "$HONE" run sp.lua -q
for p in train val test; do
	for l in spam ham; do
		n=$(rows sp.lua split.$p | grep -c "\"label\":\"$l\"")
		tot=$([ $l = spam ] && echo 300 || echo 700)
		ratio=$([ $p = train ] && echo 0.7 || echo 0.15)
		check "stratified: $p has $n $l of $tot (exact $(echo "$tot * $ratio" | bc))" \
			bash -c "d=\$(echo '$n - $tot * $ratio' | bc); [ \$(echo \"\$d <= 1 && \$d >= -1\" | bc) = 1 ]"
	done
done
check "parts add up" eq "$(( $(rows sp.lua split.train | wc -l) + $(rows sp.lua split.val | wc -l) + $(rows sp.lua split.test | wc -l) ))" 1000
check "groups never span parts" eq "$(comm -12 <(rows sp.lua gsplit.train | grep -o '"g":"g[0-9]*"' | sort -u) <(rows sp.lua gsplit.test | grep -o '"g":"g[0-9]*"' | sort -u) | wc -l)" 0
check "any names and number of parts" eq "$(rows sp.lua psplit.c | wc -l | awk '{print ($1 > 150 && $1 < 350)}')" 1
rows sp.lua psplit.a | grep -o '"id":[0-9]*' | sort > before.txt
awk 'BEGIN { for (i = 1001; i <= 1200; i++) printf "{\"id\": %d, \"text\": \"row %d\", \"label\": \"ham\", \"g\": \"g1\"}\n", i, i }' >> in/s.jsonl
"$HONE" run sp.lua -q
rows sp.lua psplit.a | grep -o '"id":[0-9]*' | sort > after.txt
check "appending rows moves no existing row (plain split)" eq "$(comm -23 before.txt after.txt | wc -l)" 0
# leakage: near duplicates that cross parts are reported (and vanish after dedupe)
awk 'BEGIN { srand(3); for (i = 1; i <= 300; i++) { t = ""; for (k = 0; k < 60; k++) t = t sprintf("w%d ", int(rand() * 5000)); printf "{\"text\": \"%s\"}\n{\"text\": \"%s extra\"}\n", t, t } }' > in/leak.jsonl
cat > leak.lua <<'LUA'
local d = ingest { "in/leak.jsonl" }
split { d, train = 0.5, test = 0.5, name = "raw" }
split { dedupe { d, near = 0.85 }, train = 0.5, test = 0.5, name = "clean" }
LUA
"$HONE" run leak.lua -q
check "split reports near duplicates across parts" bash -c "[ \$('$HONE' runs -1 | awk '\$2 == \"raw\"' | grep -o '\"leaked_near\":[0-9]*' | cut -d: -f2) -gt 100 ]"
check "  ... and none after dedupe" eq "$("$HONE" runs -1 | awk '$2 == "clean"' | grep -o '"leaked_near":[0-9]*' | cut -d: -f2)" 0

check "bad ratios are caught at declaration" fails_with 2 "part ratios must add up to 1" \
	bash -c "printf 'split { \"in/s.jsonl\", train = 0.7, test = 0.2 }\n' > r.lua; '$HONE' run r.lua"
check "--set on a part ratio" bash -c "'$HONE' run sp.lua -q --set psplit.a=0.6 --set psplit.b=0.15"

# e-mail parts of a text field: a header (folded lines joined) and the body
printf '%s\n' '{"raw": "From: a@b.c\nSubject: Re: the\n\tlong subject\nX-Other: 1\n\nHello,\nSubject: not a header\n"}' \
	'{"raw": "From: x@y.z\r\nSUBJECT: crlf\r\n\r\nbody two"}' '{"raw": "From: n@o.p\n\nno subject here"}' > in/mail.jsonl
printf 'local m = ingest { "in/mail.jsonl", fields = { subject = "raw@subject", body = "raw@body" }, on_error = "skip" }\n' > mail.lua
"$HONE" run mail.lua -q
check "ingest fields path@Header and path@body split a raw message" eq \
	"$(rows mail.lua ingest | jq -c '[.subject, .body]' | tr '\n' ' ')" \
	'["Re: the long subject","Hello,\nSubject: not a header\n"] ["crlf","body two"] '
check "  ... a message without the header is a missing field" contains "$("$HONE" show mail.lua ingest | grep metrics)" '"skipped.missing_field":1'
check "  ... only for JSON input" fails_with 1 "path@body or path@Header-Name" bash -c \
	"printf 'ingest { \"in/s.jsonl\", format = \"csv\", fields = { s = \"raw@subject\" } }\n' > mail2.lua; '$HONE' run mail2.lua -q"

# compressed single files: read as streams, their format by the inner name
mkdir -p zs && printf '{"text":"a b"}\n{"text":"c"}\n' > zs/d.jsonl && printf 'text,label\nhi,1\nyo,2\n' > zs/t.csv
gzip -k zs/d.jsonl && xz -k zs/d.jsonl && zstd -q zs/d.jsonl && bzip2 -k zs/d.jsonl && zstd -q zs/t.csv
for f in d.jsonl.gz d.jsonl.xz d.jsonl.zst d.jsonl.bz2 t.csv.zst; do
	echo "ingest { \"zs/$f\" }" > z.lua
	check "ingest reads a compressed single file: $f" bash -c "'$HONE' run z.lua -q && [ \$('$HONE' show z.lua ingest --jsonl | wc -l) = 2 ]"
done
printf '{"text":"a b"}\n{"text": oops\n' | gzip > zs/bad.jsonl.gz
echo 'ingest { "zs/bad.jsonl.gz" }' > z.lua
check "  ... errors name the member and line" fails_with 1 "zs/bad.jsonl.gz[bad.jsonl]:2: malformed JSON" "$HONE" run z.lua
head -c 20 zs/d.jsonl.gz > zs/tr.jsonl.gz
echo 'ingest { "zs/tr.jsonl.gz" }' > z.lua
check "  ... a truncated stream is an error" fails_with 1 "zs/tr.jsonl.gz: corrupt or truncated archive: truncated gzip input" "$HONE" run z.lua
echo 'ingest { "zs/d.jsonl.gz", max_bytes = 10 }' > z.lua
check "  ... max_bytes bounds the decompressed size" fails_with 1 "zs/d.jsonl.gz[d.jsonl]: input exceeds max_bytes" "$HONE" run z.lua
# types = { f = "json" }: any JSON value kept as its compact JSON text
printf '{"t": "a", "v": [[0, 1, "X"], {"k": true, "n": 2.50}]}\n{"t": "b", "v": "s"}\n' > j.jsonl
echo 'ingest { "j.jsonl", fields = { t = "t", v = "v" }, types = { v = "json" } }' > j.lua
check "a json field keeps an array or object as its JSON text (numbers as written)" \
	bash -c "'$HONE' run j.lua -q && '$HONE' show j.lua ingest --jsonl | jq -e -s '.[0].v == \"[[0,1,\\\"X\\\"],{\\\"k\\\":true,\\\"n\\\":2.50}]\" and .[1].v == \"\\\"s\\\"\"'"
printf 't,v\na,1\n' > j.csv
echo 'ingest { "j.csv", fields = { v = "v" }, types = { v = "json" } }' > j2.lua
check "a json column of a CSV is its text as it is" bash -c "'$HONE' run j2.lua -q && '$HONE' show j2.lua ingest --jsonl | jq -e '.v == \"1\"'"
done_testing
