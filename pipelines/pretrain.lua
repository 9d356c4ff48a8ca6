-- pipelines/pretrain.lua — a small GPT-2-shaped base, trained from scratch
-- on the ham half of the SpamAssassin corpus (`make data` fetches it).
--
--   ./hone run pipelines/pretrain.lua                         # about 45 minutes on 2 cores
--   ./hone run pipelines/pretrain.lua --set train.steps=20    # a quick look
--
-- Then: `hone show pipelines/pretrain.lua train` prints where the model is (a
-- Hugging Face GPT-2 folder), `hone show pipelines/pretrain.lua evaluate` its
-- perplexity against the untrained model, and
--   ./hone generate MODEL --tokenizer TOKENIZER --prompt "Hello" --temperature 0.8 --seed 1
-- continues text with it.

local mail = ingest { "../data/spam-assassin.tgz", format = "json", members = "package/data/*ham*/*.json",
                      fields = { text = "text" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.97, val = 0.03, seed = 7 }

-- an 8k byte-level BPE learned on the training text
local tok = tokenizer { parts.train, vocab = 8192, special = { "<|endoftext|>" } }

-- documents end to end, cut into blocks of 256 tokens
local ids = tokenize { parts, tok, max_len = 256, pack = true }

-- 6 layers, 6 heads, 384 wide: about 14M parameters
local base = model { n_layer = 6, n_head = 6, n_embd = 384, n_positions = 256, vocab = 8192, seed = 1 }

-- 1,200 steps of 8 blocks (about 2.5M tokens) at ~1,000 tokens/s on 2 cores;
-- no val here: evaluate measures the val perplexity once, after training
local lm = train { ids.train, base = base, lr = 6e-4, batch = 8, steps = 1200, warmup = 100,
                   schedule = "cosine", weight_decay = 0.1, clip = 1.0, checkpoint_every = 200, seed = 1 }

evaluate { lm, ids.val, compare = base }
