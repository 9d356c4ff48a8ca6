-- model { from = "path/to/hf-gpt2-folder" }
-- model { from = "HuggingFaceTB/SmolLM2-135M" }                      -- the Hugging Face cache
-- model { n_layer = 6, n_head = 6, n_embd = 384, n_positions = 256, vocab = 8192, seed = 1 }
-- model { arch = "bert", n_layer = 6, n_head = 6, n_embd = 384, intermediate = 1536, n_positions = 512, vocab = 8192 }
-- model { arch = "llama", n_layer = 6, n_head = 6, n_kv_head = 2, n_embd = 384, intermediate = 1024, vocab = 8192 }
--
-- Native. A base model: a Hugging Face folder (config.json +
-- model.safetensors, or shards; GPT-2, BERT, Llama, Mistral or Qwen2, told by its config.json),
-- content-hashed like any source, or a new one initialized as transformers
-- does. See docs/models.md.
return {
  kind = "model",
  gives = "model",
  kernel = "model",
  max_inputs = 0,
  summary = "a GPT-2, BERT or Llama-family base model (a Hugging Face folder, or newly initialized)",
  params = {
    from = { type = "input", takes = "file|bundle|model", hub = true,
             doc = "a Hugging Face GPT-2, BERT, Llama, Mistral or Qwen2 folder, an export bundle (.tar.gz), or a model id (\"org/name\", \"org/name@rev\") in the Hugging Face cache, downloaded into it when missing" },
    arch = { type = "string", enum = { "gpt2", "bert", "llama" }, doc = "a new model: GPT-2 (default), BERT (BertForMaskedLM, for pre-training) or Llama (LlamaForCausalLM)" },
    intermediate = { type = "integer", min = 1, max = 1048576, doc = "BERT, Llama: the MLP's width (default 4 n_embd for BERT, 8/3 n_embd rounded up to 32 for Llama)" },
    n_kv_head = { type = "integer", min = 1, max = 1024, doc = "Llama: key/value heads (grouped-query attention; default n_head)" },
    rope_theta = { type = "number", min = 1, doc = "Llama: the rotary embeddings' base (default 10000)" },
    tie = { type = "boolean", doc = "Llama: the LM head tied to the token embeddings (default false)" },
    type_vocab = { type = "integer", min = 1, max = 65536, doc = "BERT: token types (segments; default 2)" },
    n_layer = { type = "integer", min = 1, max = 1024 },
    n_head = { type = "integer", min = 1, max = 1024 },
    n_embd = { type = "integer", min = 1, max = 65536 },
    n_positions = { type = "integer", min = 1, max = 1048576 },
    vocab = { type = "integer", min = 1, max = 16777216 },
    seed = { type = "integer" },
  },
  validate = function(p)
    local shape = { "n_layer", "n_head", "n_embd", "n_positions", "vocab", "seed", "arch", "intermediate", "type_vocab",
                    "n_kv_head", "rope_theta", "tie" }
    if p.from ~= nil then
      for _, k in ipairs(shape) do
        if p[k] ~= nil then return k .. ": give from = folder, or a shape to initialize, not both" end
      end
      return nil
    end
    if p.arch ~= "bert" and p.type_vocab then
      return "type_vocab goes with arch = \"bert\""
    end
    if p.arch ~= "bert" and p.arch ~= "llama" and p.intermediate then
      return "intermediate goes with arch = \"bert\" or \"llama\""
    end
    if p.arch ~= "llama" and (p.n_kv_head or p.rope_theta or p.tie ~= nil) then
      return "n_kv_head, rope_theta and tie go with arch = \"llama\""
    end
    if p.arch == "llama" then
      local C, H = p.n_embd or 384, p.n_head or 6
      p.intermediate = p.intermediate or (C * 8 // 3 + 31) // 32 * 32
      p.n_kv_head = p.n_kv_head or H
      p.rope_theta = p.rope_theta or 10000
      if p.tie == nil then p.tie = false end
      if H % p.n_kv_head ~= 0 then
        return string.format("n_head %d must be a multiple of n_kv_head %d", H, p.n_kv_head)
      end
      if C % H == 0 and (C // H) % 2 ~= 0 then
        return string.format("the head size n_embd / n_head = %d must be even (rotary embeddings)", C // H)
      end
    end
    if p.arch == "bert" then
      p.intermediate = p.intermediate or 4 * (p.n_embd or 384)
      p.type_vocab = p.type_vocab or 2
    end
    p.n_layer = p.n_layer or 6
    p.n_head = p.n_head or 6
    p.n_embd = p.n_embd or 384
    p.n_positions = p.n_positions or 256
    p.vocab = p.vocab or 8192
    p.seed = p.seed or 0
    if p.n_embd % p.n_head ~= 0 then
      return string.format("n_embd %d must be a multiple of n_head %d", p.n_embd, p.n_head)
    end
  end,
}
