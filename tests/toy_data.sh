# Small generated corpora for the GPT-2 tests (sourced by
# tests/integration/lm.sh and tests/hf/prepare.sh).

# toy_docs N: word salad from 17 words, with a question "count to k" and its answer "k k+1 k+2"
toy_docs() {
	awk -v n="$1" 'BEGIN { srand(5); split("the cat sat on a mat . a dog ran to the park and the bird sang", W, " ");
	  for (i = 0; i < n; i++) { t = ""; m = 6 + int(rand() * 10); for (k = 0; k < m; k++) t = t (k ? " " : "") W[1 + int(rand() * 17)];
	    printf "{\"text\":\"%s\",\"q\":\"count to %d\",\"a\":\"%d %d %d\"}\n", t, i % 7, i % 7, i % 7 + 1, i % 7 + 2 } }'
}

# toy_classes N: two labels, "pets" and "city", told apart by half of each text's words
toy_classes() {
	awk -v n="$1" 'BEGIN { srand(9); split("cat dog bird mat fish", A, " "); split("park car road town bus", B, " "); split("the a and to of", S, " ");
	  for (i = 0; i < n; i++) { c = i % 2; t = ""; m = 5 + int(rand() * 8);
	    for (k = 0; k < m; k++) { w = rand() < 0.5 ? S[1 + int(rand() * 5)] : (c ? B[1 + int(rand() * 5)] : A[1 + int(rand() * 5)]); t = t (k ? " " : "") w }
	    printf "{\"text\":\"%s\",\"label\":\"%s\"}\n", t, c ? "city" : "pets" } }'
}

# toy_cls_stages: the start of a pipeline over cls.jsonl (toy_classes): a
# stratified split, a 300-token BPE, ids, and a tiny GPT-2 named base
toy_cls_stages() {
	cat <<'LUA'
local d = ingest { "cls.jsonl", fields = { text = "text", label = "label" } }
local parts = split { d, train = 0.7, val = 0.15, test = 0.15, seed = 1, stratify = "label" }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok, max_len = 32 }
local base = model { n_layer = 2, n_head = 2, n_embd = 32, n_positions = 32, vocab = 300, seed = 1 }
LUA
}

# toy_lm_stages: the start of a language-model pipeline over docs.jsonl
# (toy_docs): a split, a 300-token BPE, packed ids of 24, a tiny GPT-2 named base
toy_lm_stages() {
	cat <<'LUA'
local d = ingest { "docs.jsonl", fields = { text = "text" } }
local parts = split { d, train = 0.8, val = 0.2, seed = 1 }
local tok = tokenizer { parts.train, vocab = 300 }
local ids = tokenize { parts, tok, max_len = 24, pack = true }
local base = model { n_layer = 2, n_head = 2, n_embd = 32, n_positions = 32, vocab = 300, seed = 1 }
LUA
}
