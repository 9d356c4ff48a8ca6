-- train { ids.train, val = ids.val, inputs = { text = "text" }, output = { label = "category" }, ... }
--
-- Native. Fits a Ludwig-style model: input features (text as a token
-- embedding bag, category, number, binary) concatenated, an MLP, and an
-- output head (category, binary, number); AdamW with warmup and decay,
-- clipping, class weights, early stopping on a validation metric,
-- checkpoints and resume. With base = model { ... }: fine-tunes a GPT-2 on
-- token ids (packed blocks, or prompt/completion rows with their loss mask).
-- See docs/stages/train.md.
local function valid_types(t, allowed, what)
  if type(t) ~= "table" then return what .. ": expected a table of field = type" end
  local n = 0
  for k, v in pairs(t) do
    n = n + 1
    if type(k) ~= "string" then return what .. ": keys must be field names" end
    local ok = false
    for _, a in ipairs(allowed) do if v == a then ok = true end end
    if not ok then
      return string.format("%s.%s: expected one of %s, got %s", what, k, table.concat(allowed, ", "), tostring(v))
    end
  end
  if n == 0 then return what .. ": give at least one field" end
  return nil, n
end

return {
  kind = "train",
  takes_each = "ids",
  gives = "model",
  kernel = "train",
  min_inputs = 1,
  max_inputs = 1,
  summary = "train a classifier or regressor (embedding bag + MLP)",
  params = {
    val = { type = "input", takes = "ids", doc = "validation split (early stopping, the best epoch)" },
    base = { type = "input", takes = "model|file|bundle", doc = "a GPT-2 or BERT model (model { ... }): fine-tune a GPT-2 as a language model, pre-train a BERT with objective = \"mlm\", or either with output as a classifier" },
    method = { type = "string", enum = { "full", "lora", "prompt_tuning", "prefix_tuning" }, doc = "with base: every parameter (full), LoRA adapters, prompt tuning (virtual tokens) or prefix tuning (virtual keys and values per layer; language models)" },
    virtual_tokens = { type = "integer", min = 1, max = 65536, doc = "prompt and prefix tuning: the virtual tokens before every row (default 20)" },
    rank = { type = "integer", min = 1, doc = "LoRA rank (default 8)" },
    alpha = { type = "number", min = 0, doc = "LoRA alpha: the update is scaled by alpha / rank (default 16)" },
    lora_dropout = { type = "number", min = 0, max = 0.95, doc = "LoRA: dropout on the adapters' input while training (default 0)" },
    targets = { type = "list", doc = "LoRA: modules by PEFT's names; GPT-2: c_attn, c_proj, attn.c_proj, c_fc, mlp.c_proj (default { \"c_attn\" }); BERT: query, key, value, dense, attention.output.dense, intermediate.dense, output.dense (default { \"query\", \"value\" })" },
    objective = { type = "string", enum = { "mlm" }, doc = "with a BERT base: masked-LM (pre-)training instead of a classifier" },
    mask_id = { type = "integer", min = 1, doc = "mlm: the id of the token to mask with (default: the tokenizer's [MASK])" },
    mlm_rate = { type = "number", min = 0.01, max = 0.9, doc = "mlm: the share of tokens chosen (default 0.15; 80% masked, 10% random, 10% kept)" },
    inputs = { type = "table", doc = "field = \"text\" | \"category\" | \"number\" | \"binary\"" },
    output = { type = "table", doc = "field = \"category\" | \"binary\" | \"number\" (with base: a classification head)" },
    embedding_dim = { type = "integer", default = 64, min = 1, max = 1024, doc = "text embedding width" },
    bigrams = { type = "integer", default = 0, min = 0, max = 16777216, doc = "hashed bigram buckets (0: unigrams only)" },
    category_dim = { type = "integer", default = 8, min = 1, max = 1024 },
    layers = { type = "list", default = { 64 }, doc = "hidden layer widths" },
    activation = { type = "string", default = "relu", enum = { "relu", "gelu", "tanh" } },
    dropout = { type = "number", default = 0.1, min = 0, max = 0.95 },
    lr = { type = "number", default = 0.001, min = 0 },
    batch = { type = "integer", default = 32, min = 1, max = 65536 },
    epochs = { type = "integer", default = 5, min = 1 },
    steps = { type = "integer", default = 0, min = 0, doc = "train this many steps instead of epochs (0: off)" },
    warmup = { type = "integer", default = 0, min = 0, doc = "warmup steps" },
    schedule = { type = "string", default = "cosine", enum = { "constant", "linear", "cosine" } },
    weight_decay = { type = "number", default = 0.01, min = 0 },
    beta1 = { type = "number", default = 0.9, min = 0, max = 1 },
    beta2 = { type = "number", default = 0.999, min = 0, max = 1 },
    eps = { type = "number", default = 1e-8, min = 0 },
    clip = { type = "number", default = 1.0, min = 0, doc = "clip gradients to this global norm (0: off)" },
    class_weights = { type = "any", doc = "\"balanced\" or a table of class = weight" },
    metric = { type = "string", enum = { "loss", "accuracy", "f1", "roc_auc", "rmse", "mae", "r2", "perplexity" },
               doc = "validation metric for early stopping and the best epoch (default f1, or rmse)" },
    patience = { type = "integer", default = 0, min = 0, doc = "stop after this many epochs without a better val metric (0: off)" },
    threshold = { type = "number", default = 0.5, min = 0, max = 1, doc = "binary output: decision threshold" },
    checkpoint_every = { type = "integer", default = 0, min = 0, doc = "also checkpoint every N steps" },
    precision = { type = "string", enum = { "fp32", "bf16" }, doc = "on a GPU: \"bf16\" (default there: matrix products from bf16 copies, fp32 accumulation, fp32 master weights and AdamW) or \"fp32\" (for checking); the CPU computes fp32" },
    device = { type = "string", enum = { "cpu", "cuda" }, doc = "where to train: \"cpu\" (default) or \"cuda\" (a GPU; make cuda builds its backend; GPT-2 and BERT, full or LoRA)" },
    seed = { type = "integer", default = 0 },
  },
  validate = function(p)
    if p.base ~= nil then
      if p.inputs ~= nil then
        return "with base (a GPT-2), the token ids are the input: no inputs (output = { field = \"category\" } adds a classification head)"
      end
      if p.output ~= nil then
        local msg, n = valid_types(p.output, { "category", "binary", "tags" }, "output")
        if msg then return msg end
        if n ~= 1 then return "output: give exactly one field" end
      end
      p.method = p.method or "full"
      if p.method ~= "lora" and (p.rank or p.alpha or p.targets or p.lora_dropout) then
        return "rank, alpha, targets and lora_dropout go with method = \"lora\""
      end
      if p.method == "lora" then
        p.rank = p.rank or 8
        p.alpha = p.alpha or 16
      end
      if p.virtual_tokens and p.method ~= "prompt_tuning" and p.method ~= "prefix_tuning" then
        return "virtual_tokens goes with method = \"prompt_tuning\" or \"prefix_tuning\""
      end
      if p.method == "prompt_tuning" or p.method == "prefix_tuning" then
        p.virtual_tokens = p.virtual_tokens or 20
        if p.output ~= nil or p.objective ~= nil then
          return "method = \"" .. p.method .. "\" trains a language model's virtual tokens: no output or objective"
        end
      end
      if p.objective ~= nil and p.output ~= nil then
        return "give objective = \"mlm\" (masked-LM training of a BERT) or output = { ... } (a classifier), not both"
      end
      if (p.mask_id or p.mlm_rate) and p.objective ~= "mlm" then
        return "mask_id and mlm_rate go with objective = \"mlm\""
      end
      return nil
    end
    if p.method ~= nil or p.rank or p.alpha or p.targets or p.lora_dropout or p.objective then
      return "method, rank, alpha, targets, lora_dropout and objective: only with base = a model (GPT-2 or BERT)"
    end
    if p.inputs == nil then return "give inputs = { field = type, ... }" end
    if p.output == nil then return "give output = { field = type }" end
    local msg = valid_types(p.inputs, { "text", "category", "number", "binary" }, "inputs")
    if msg then return msg end
    local n
    msg, n = valid_types(p.output, { "category", "binary", "number" }, "output")
    if msg then return msg end
    if n ~= 1 then return "output: give exactly one field" end
    for i, w in ipairs(p.layers) do
      if math.type(w) ~= "integer" or w < 1 then return string.format("layers[%d]: expected a positive integer width", i) end
    end
    local cw = p.class_weights
    if cw ~= nil and cw ~= "balanced" and type(cw) ~= "table" then
      return "class_weights: expected \"balanced\" or a table of class = weight"
    end
  end,
}
