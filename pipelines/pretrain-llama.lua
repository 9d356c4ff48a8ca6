-- pipelines/pretrain-llama.lua — a small Llama-shaped base, trained from
-- scratch on the same corpus, tokenizer, blocks and budget as
-- pipelines/pretrain.lua's GPT-2 base, to compare the two architectures.
--
--   ./hone run pipelines/pretrain-llama.lua                        # about 28 minutes on 2 cores
--   ./hone run pipelines/pretrain-llama.lua --set train.steps=20   # a quick look
--
-- The data stages are pretrain.lua's own (the same parameters: the cache
-- runs them once for both).

local mail = ingest { "../data/spam-assassin.tgz", format = "json", members = "package/data/*ham*/*.json",
                      fields = { text = "text" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.97, val = 0.03, seed = 7 }

local tok = tokenizer { parts.train, vocab = 8192, special = { "<|endoftext|>" } }

local ids = tokenize { parts, tok, max_len = 256, pack = true }

-- 6 layers, 6 heads of which 2 key/value heads, 384 wide, a SwiGLU MLP of
-- 768, untied head: 13.95M parameters, as the GPT-2 base's 13.9M
local base = model { arch = "llama", n_layer = 6, n_head = 6, n_kv_head = 2, n_embd = 384, intermediate = 768,
                     n_positions = 256, vocab = 8192, seed = 1 }

-- pretrain.lua's schedule: 1,200 steps of 8 blocks (2.5M tokens)
local lm = train { ids.train, base = base, lr = 6e-4, batch = 8, steps = 1200, warmup = 100,
                   schedule = "cosine", weight_decay = 0.1, clip = 1.0, checkpoint_every = 200, seed = 1 }

evaluate { lm, ids.val, compare = base }
