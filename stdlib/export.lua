-- export { model, tok, score, to = "dist/model.tar.gz" }
--
-- Native. One .tar.gz bundle: model.safetensors + config.json, the
-- tokenizer as a Hugging Face tokenizer.json, metrics.json (from evaluate),
-- the training curve, and lineage.json (every upstream stage's key, kernel
-- version, parameters and source content ids). Deterministic bytes. The
-- bundle is kept in the cache and copied to `to` (beside the script) after
-- every run. `hone predict BUNDLE` uses it. See docs/stages/export.md.
return {
  kind = "export",
  takes_each = "model|tokenizer|metrics|file",
  gives = "bundle",
  kernel = "export",
  min_inputs = 1,
  max_inputs = 3,
  summary = "bundle a model, its tokenizer, metrics and lineage into one .tar.gz",
  params = {
    to = { type = "string", doc = "where to copy the bundle, relative to the script (optional)" },
  },
  validate = function(p)
    if p.to ~= nil and (p.to == "" or string.sub(p.to, -1) == "/") then
      return "to: expected a file path such as \"dist/model.tar.gz\""
    end
  end,
}
