-- examples/subject/pipeline.lua — fine-tune a GPT-2 base to write an e-mail's
-- subject line from its body: instruction-style fine-tuning with the loss on
-- the completion only, then perplexity, exact match and ROUGE-L of the
-- generated subjects against the base model on held-out mail.
--
--   make base                                   # pipelines/pretrain.lua -> data/base (or bring your own GPT-2)
--   ./hone run examples/subject/pipeline.lua
--
-- data/base is any GPT-2-shaped Hugging Face folder with its tokenizer.json:
-- the base pipelines/pretrain.lua trains, or real GPT-2 weights.

-- the ham half of SpamAssassin: Subject header and body of each message
local mail = ingest { "../../data/spam-assassin.tgz", format = "json", members = "package/data/*ham*/*.json",
                      fields = { subject = "text@Subject", body = "text@body" }, on_error = "skip",
                      collapse_whitespace = true }

local clean = dedupe { mail, key = "body" }

local parts = split { clean, train = 0.90, val = 0.05, test = 0.05, seed = 3 }

local tok = tokenizer { from = "../../data/base/tokenizer.json" }
local base = model { from = "../../data/base" }

-- "<body>\nSubject:" then the subject; long bodies lose their start (truncation
-- from the left keeps the subject and the text just before it)
local ids = tokenize { parts, tok, format = "prompt_completion", template = "{body}\nSubject:", completion = "subject",
                       max_len = 256, truncation = "left" }

local lm = train { ids.train, val = ids.val, base = base, lr = 3e-4, batch = 8, steps = 300, warmup = 30,
                   schedule = "cosine", weight_decay = 0.01, clip = 1.0, checkpoint_every = 100, seed = 1 }

evaluate { lm, ids.test, compare = base }

generate { lm, tok, ids.test, compare = base, max_tokens = 24, stop = { "\n" } }

-- the same with LoRA adapters on every projection (the base frozen)
local lora = train { ids.train, val = ids.val, base = base, method = "lora", rank = 16, alpha = 32,
                     targets = { "c_attn", "c_proj", "c_fc" }, lr = 2e-3, batch = 8, steps = 300, warmup = 30,
                     seed = 1, name = "lora" }

evaluate { lora, ids.test, compare = base, name = "evaluate_lora" }

generate { lora, tok, ids.test, max_tokens = 24, stop = { "\n" }, name = "generate_lora" }
