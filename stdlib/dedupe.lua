-- dedupe { dataset, key = "text", near = 0.85 }
--
-- Native. Removes exact duplicates of the key (after normalization) and,
-- with `near`, near duplicates by MinHash/LSH verified by exact Jaccard
-- similarity, keeping the first of each cluster. See docs/stages/dedupe.md.
return {
  kind = "dedupe",
  takes_each = "dataset",
  gives = "dataset",
  kernel = "dedupe",
  min_inputs = 1,
  max_inputs = 1,
  summary = "remove exact and near-duplicate records",
  params = {
    key = { type = "any", default = "text", doc = "field or list of fields compared" },
    normalize = { type = "boolean", default = true, doc = "compare NFKC, lowercased, whitespace-collapsed keys" },
    near = { type = "number", min = 0, max = 1, doc = "Jaccard threshold for near duplicates (off when absent)" },
    shingle = { type = "integer", min = 1, doc = "shingle size (default 5 characters or 3 words)" },
    shingle_unit = { type = "string", default = "char", enum = { "char", "word" } },
    num_perm = { type = "integer", default = 128, min = 8, max = 1024 },
    bands = { type = "integer", min = 1, doc = "LSH bands (default: chosen from near)" },
    seed = { type = "integer", default = 1 },
    keep_removed = { type = "boolean", default = false, doc = "also write removed rows to removed/" },
  },
  validate = function(p)
    if type(p.key) ~= "string" and type(p.key) ~= "table" then return "parameter 'key' expects a field name or a list of names" end
    if p.bands and p.num_perm % p.bands ~= 0 then return "bands must divide num_perm" end
  end,
}
