-- pipelines/pretrain-bert.lua — a small BERT base, pre-trained from scratch
-- by masked LM on the ham half of the SpamAssassin corpus (`make data`
-- fetches it): the corpus, dedupe and split of pipelines/pretrain.lua (the
-- same cache entries), an 8k WordPiece vocabulary learned on the train
-- part, blocks of 128 tokens, a 6-layer, 384-wide BERT (about 14M
-- parameters), BERT's masking (15% of tokens: 80% [MASK], 10% random, 10%
-- kept).
--
--   ./hone run pipelines/pretrain-bert.lua                        # about 35 minutes on 2 cores
--   ./hone run pipelines/pretrain-bert.lua --set train.steps=20   # a quick look
--   make base-bert                                                # runs it and copies the result to data/base-bert
--
-- Then `hone show pipelines/pretrain-bert.lua evaluate` prints its masked-LM
-- perplexity and accuracy against the untrained model; examples/spam/bert.lua
-- fine-tunes it as a spam classifier.

local mail = ingest { "../data/spam-assassin.tgz", format = "json", members = "package/data/*ham*/*.json",
                      fields = { text = "text" } }

local clean = dedupe { mail, key = "text", near = 0.85 }

local parts = split { clean, train = 0.97, val = 0.03, seed = 7 }

-- BERT's tokenizer: lowercased, accents stripped, [PAD] [UNK] [CLS] [SEP] [MASK] first
local tok = tokenizer { parts.train, kind = "wordpiece", vocab = 8192 }

-- [CLS] document [SEP] rows end to end, cut into blocks of 128 ids
local ids = tokenize { parts, tok, max_len = 128, pack = true }

-- 6 layers, 6 heads, 384 wide, MLP 1536: about 14M parameters
local base = model { arch = "bert", n_layer = 6, n_head = 6, n_embd = 384, intermediate = 1536, n_positions = 128,
                     vocab = 8192, seed = 1 }

-- 1,200 steps of 16 blocks (about 2.5M tokens) at ~1,300 tokens/s on 2 cores
local mlm = train { ids.train, base = base, objective = "mlm", lr = 5e-4, batch = 16, steps = 1200, warmup = 100,
                    schedule = "cosine", weight_decay = 0.01, clip = 1.0, checkpoint_every = 200, seed = 1 }

evaluate { mlm, ids.val, compare = base }
