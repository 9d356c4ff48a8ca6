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
    to = { type = "string", doc = "where to copy the bundle (or the .gguf), relative to the script (optional)" },
    format = { type = "string", enum = { "bundle", "gguf" }, doc = "\"bundle\" (default: the .tar.gz) or \"gguf\": a GPT-2 and its tokenizer as one GGUF file for llama.cpp (docs/deploy.md)" },
    quant = { type = "string", enum = { "f32", "f16", "q8_0", "q4_0", "q6_k", "q4_k_m", "q5_k_m" }, doc = "gguf: the weights' type (default f16)" },
    chat_template = { type = "string", enum = { "chatml", "alpaca", "llama3" }, doc = "the chat template hone serve renders messages with for this model (recorded as chat.json; default: alpaca when tokenize's format was \"instruction\", else chatml)" },
  },
  validate = function(p)
    if p.quant ~= nil and p.format ~= "gguf" then
      return "quant goes with format = \"gguf\""
    end
    if p.to ~= nil and (p.to == "" or string.sub(p.to, -1) == "/") then
      return "to: expected a file path such as \"dist/model.tar.gz\""
    end
  end,
}
