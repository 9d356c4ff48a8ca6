-- generate { lm, tok, ids.test, compare = base, max_tokens = 48 }
--
-- Native. For every prompt of a split tokenized as prompt/completion or
-- instruction records, generates a continuation with a GPT-2 (KV cache;
-- greedy, or temperature / top-k / top-p sampling, seeded) and scores it
-- against the reference completion: exact match and ROUGE-L. With compare,
-- another model answers the same prompts. See docs/stages/generate.md.
return {
  kind = "generate",
  takes = { "model|file|bundle", "tokenizer|file", "ids" },
  gives = "generations",
  kernel = "generate",
  min_inputs = 3,
  max_inputs = 3,
  summary = "generate answers for a split's prompts and score them (exact match, ROUGE-L)",
  params = {
    compare = { type = "input", takes = "model|file|bundle", doc = "another model to answer the same prompts (e.g. the base)" },
    max_tokens = { type = "integer", default = 64, min = 1, max = 65536, doc = "tokens generated per prompt at most" },
    temperature = { type = "number", default = 0, min = 0, doc = "0: greedy; above: sampling" },
    top_k = { type = "integer", default = 0, min = 0, doc = "sample among the k most likely (0: all)" },
    top_p = { type = "number", default = 1, min = 0, max = 1, doc = "nucleus: the smallest set with this probability" },
    seed = { type = "integer", default = 0, doc = "sampling seed (each row draws from seed and its index)" },
    stop = { type = "list", doc = "texts that end a generation (not kept)" },
    limit = { type = "integer", default = 0, min = 0, doc = "only the first N rows (0: all)" },
    device = { type = "string", enum = { "cpu", "cuda" }, doc = "where the models run: \"cpu\" (default) or \"cuda\" (a GPU; make cuda builds its backend)" },
  },
}
